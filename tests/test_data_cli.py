"""``biornn data``: help, list, fetch and verify, exit codes and one-line errors (no network beyond 127.0.0.1)."""

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from biornn.cli.main import main
from biornn.data import DATASETS, DataFile, Dataset

FILES = {"fake/a.txt": b"alpha\n", "fake/b.txt": b"beta\n" * 300}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("BIORNN_DATA", raising=False)


@pytest.fixture
def mirror(monkeypatch, tmp_path) -> Path:
    """A data set 'fake' in the registry, and a complete mirror of it."""
    ds = Dataset("fake", "A fake data set", "CC0-1.0", "the test",
                 tuple(DataFile(p, hashlib.sha256(b).hexdigest(), None) for p, b in FILES.items()),
                 note="made by the test")
    monkeypatch.setitem(DATASETS, "fake", ds)
    root = tmp_path / "mirror"
    for p, b in FILES.items():
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b)
    return root


def _one_error_line(err: str, needle: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("biornn: error:") and needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("argv", [["data"], ["data", "list"], ["data", "fetch"], ["data", "verify"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: biornn " + " ".join(argv))
    assert "--data-dir" in out or argv == ["data"]


def test_console_script_lists_data():
    exe = os.path.join(os.path.dirname(sys.executable), "biornn")
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "data" in res.stdout


def test_data_without_subcommand_exits_2(capsys):
    assert main(["data"]) == 2
    captured = capsys.readouterr()
    assert "list" in captured.out and "fetch" in captured.out
    _one_error_line(captured.err, "no data subcommand")


def test_list_shows_every_data_set_and_where(mirror, capsys):
    assert main(["data", "list", "--data-dir", str(mirror)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(DATASETS)
    fake = next(line for line in lines if line.startswith("fake "))
    assert "2 files" in fake and "1.5 kB" in fake and f"{mirror} (--data-dir)" in fake
    assert "CC0-1.0" in fake and fake.endswith("A fake data set")
    names = next(line for line in lines if line.startswith("names "))
    assert "19 files" in names and "not found" in names and "MIT" in names
    assert "mirror-only" not in names  # every file has its public copy
    splice = next(line for line in lines if line.startswith("splice "))
    assert "1 file (all mirror-only)" in splice  # a format conversion: fetched from a mirror only


def test_list_json(mirror, capsys):
    assert main(["data", "list", "--json", "--data-dir", str(mirror)]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == set(DATASETS)
    assert rows["fake"]["files"] == 2 and rows["fake"]["bytes"] == sum(map(len, FILES.values()))
    assert rows["fake"]["where"] == str(mirror) and rows["fake"]["found_via"] == "--data-dir"
    assert rows["names"]["where"] is None and rows["names"]["bytes"] is None
    assert rows["names"]["licence"] == "MIT" and rows["names"]["source"]
    assert rows["names"]["mirror_only"] == [] and rows["splice"]["mirror_only"] == ["dna/splice.csv"]


def test_list_says_when_data_dir_holds_part_of_a_set(mirror, monkeypatch, tmp_path, capsys):
    part = tmp_path / "part"
    first = next(iter(FILES))
    (part / first).parent.mkdir(parents=True)
    (part / first).write_bytes(FILES[first])
    monkeypatch.setenv("BIORNN_DATA", str(mirror))  # the lookup passes over the incomplete copy to this one
    assert main(["data", "list", "--data-dir", str(part)]) == 0
    fake = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("fake "))
    assert f"{mirror} (BIORNN_DATA); only 1 of 2 files in {part} (--data-dir)" in fake
    assert main(["data", "list", "--json", "--data-dir", str(part)]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["fake"]["partial"] == f"1 of 2 files in {part} (--data-dir)" and rows["names"]["partial"] is None


def test_verify_exit_codes(mirror, capsys):
    assert main(["data", "verify", "fake", "--data-dir", str(mirror)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "fake/a.txt" in out and "all 2 files ok" in out

    (mirror / "fake/a.txt").write_bytes(b"changed\n")
    assert main(["data", "verify", "fake", "--data-dir", str(mirror)]) == 1
    captured = capsys.readouterr()
    assert "checksum mismatch" in captured.out
    line = _one_error_line(captured.err, "1 of 2 files not ok")
    assert "fake/a.txt (checksum mismatch)" in line and "biornn data fetch fake" in line

    (mirror / "fake/b.txt").unlink()
    assert main(["data", "verify", "--json", "fake", "--data-dir", str(mirror)]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["status"] for r in rows] == ["checksum mismatch", "missing"]
    _one_error_line(captured.err, "fake/b.txt (missing)")


def test_verify_all_when_nothing_is_there(capsys):
    assert main(["data", "verify"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("missing") == sum(len(ds.files) for ds in DATASETS.values())
    _one_error_line(captured.err, "biornn data fetch NAME")


@pytest.mark.parametrize("argv", [["data", "verify", "nope"], ["data", "fetch", "nope"],
                                  ["data", "fetch", "nope", "--mirror", "/tmp"]])
def test_unknown_data_set_exits_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, "unknown data set 'nope'")
    assert "names" in line


@pytest.mark.parametrize("argv,needle", [(["data", "fetch"], "NAME"), (["data", "frob"], "frob"),
                                         (["data", "fetch", "names", "--timeout", "x"], "--timeout"),
                                         (["data", "fetch", "names", "--timeout", "0"], "--timeout")])
def test_bad_usage_exits_2(argv, needle, capsys):
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, needle)


def test_fetch_from_a_mirror(mirror, tmp_path, capsys):
    dest = tmp_path / "dest"
    assert main(["data", "fetch", "fake", "--mirror", str(mirror), "--data-dir", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "fetched  fake/a.txt" in out and out.splitlines()[-1] == f"fake: 2 files verified in {dest}"
    assert main(["data", "verify", "fake", "--data-dir", str(dest)]) == 0
    capsys.readouterr()
    # into the user cache by default, where list then finds it
    assert main(["data", "fetch", "fake", "--mirror", str(mirror)]) == 0
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    fake = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("fake "))
    assert "(cache)" in fake


def test_fetch_without_a_source_exits_2(mirror, tmp_path, capsys):
    assert main(["data", "fetch", "fake", "--data-dir", str(tmp_path / "dest")]) == 2
    _one_error_line(capsys.readouterr().err, "--mirror")


def test_fetch_checksum_mismatch_exits_2(mirror, tmp_path, capsys):
    (mirror / "fake/b.txt").write_bytes(b"other")
    assert main(["data", "fetch", "fake", "--mirror", str(mirror), "--data-dir", str(tmp_path / "d")]) == 2
    _one_error_line(capsys.readouterr().err, "SHA-256")
    assert not (tmp_path / "d" / "fake" / "b.txt").exists()


def test_fetch_network_failure_exits_1_with_one_line(mirror, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["data", "fetch", "fake", "--mirror", f"http://127.0.0.1:{port}", "--data-dir", str(tmp_path / "d"),
            "--timeout", "5"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    _one_error_line(captured.err, "could not download fake/a.txt")
    assert "Traceback" not in captured.err
