"""Data: the registry (search order, verify, fetch from local and HTTP mirrors), names, batching.

Every test makes its own small data in tmp_path; the tests marked ``shared``
read the reference mirror ($BIORNN_DATA, or ../shared/data beside the checkout)
and are skipped where it is absent. No test goes beyond 127.0.0.1.
"""

import functools
import hashlib
import http.server
import json
import os
import random
import socket
import threading
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import torch

from biornn.data import (
    DATASETS,
    SPLITS,
    DataError,
    DataFile,
    Dataset,
    NetworkError,
    Vocabulary,
    batches,
    fetch,
    languages,
    locate,
    pad_batch,
    read_names,
    search_path,
    split_names,
    verify,
)
from biornn.data import registry


def _shared_data() -> Path | None:
    for cand in (os.environ.get("BIORNN_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if cand and (Path(cand) / "SHA256SUMS").is_file():
            return Path(cand)
    return None


SHARED = _shared_data()
shared = pytest.mark.skipif(SHARED is None, reason="reference data mirror not present (BIORNN_DATA, ../shared/data)")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test sees the user's cache or $BIORNN_DATA."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("BIORNN_DATA", raising=False)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


FAKE_FILES = {"fake/a.txt": b"alpha\n", "fake/sub/b.bin": bytes(range(256)) * 40}


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    return root


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A tiny data set 'fake' in the registry, with a complete mirror directory."""
    ds = Dataset("fake", "A fake data set", "CC0-1.0", "the test",
                 tuple(DataFile(rel, _sha(b), None) for rel, b in FAKE_FILES.items()))
    monkeypatch.setitem(DATASETS, "fake", ds)
    return _write(tmp_path / "mirror", FAKE_FILES)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(directory or handler class) -> base URL of an HTTP server on 127.0.0.1."""
    servers = []

    def start(what) -> str:
        handler = functools.partial(_Quiet, directory=str(what)) if isinstance(what, Path) else what
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- registry


def test_every_data_set_is_listed_with_its_files():
    assert sorted(DATASETS) == ["ecg-discords", "mitdb-100", "names", "promoters", "protein-ss", "splice"]
    for name, ds in DATASETS.items():
        assert ds.name == name and ds.title and ds.licence and ds.source and ds.files
        for f in ds.files:
            assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
            assert not f.path.startswith("/") and ".." not in f.path.split("/")
            assert f.url is None or f.url.startswith("https://")
            if f.url is None:  # a file with no public copy says why
                assert ds.note
    assert len(DATASETS["names"].files) == 19
    paths = [f.path for ds in DATASETS.values() for f in ds.files]
    assert len(paths) == len(set(paths)) == 37


def test_search_order_data_dir_then_env_then_cache(monkeypatch, tmp_path, fake):
    a, b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "xdg" / "biornn"
    for d in (a, b, cache):
        _write(d, FAKE_FILES)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("BIORNN_DATA", str(b))
    assert search_path(a) == [(a, "--data-dir"), (b, "BIORNN_DATA"), (cache, "cache")]
    assert locate("fake", a) == a
    assert locate("fake") == b
    monkeypatch.delenv("BIORNN_DATA")
    assert search_path() == [(cache, "cache")]
    assert locate("fake") == cache
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert search_path()[-1] == (tmp_path / "home" / ".cache" / "biornn", "cache")


def test_locate_skips_an_incomplete_directory(monkeypatch, tmp_path, fake):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, {"fake/a.txt": b"alpha\n"})  # one of two files
    _write(b, FAKE_FILES)
    monkeypatch.setenv("BIORNN_DATA", str(b))
    assert locate("fake", a) == b


def test_locate_says_where_it_looked_in_one_line(monkeypatch, tmp_path, fake):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    _write(b, {"fake/a.txt": b"alpha\n"})
    monkeypatch.setenv("BIORNN_DATA", str(b))
    with pytest.raises(DataError) as e:
        locate("fake", a)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("data set 'fake' not found: looked in ")
    assert f"{a} (--data-dir)" in msg and f"{b} (BIORNN_DATA, 1 of 2 files)" in msg
    assert f"{tmp_path / 'xdg-cache' / 'biornn'} (cache)" in msg
    assert "biornn data fetch fake" in msg and "--data-dir" in msg


def test_a_data_dir_that_does_not_exist_does_not_fall_through(monkeypatch, tmp_path, fake):
    """A typo in --data-dir trained silently on $BIORNN_DATA's copy; an existing directory without the set
    still falls through (the lookup order)."""
    monkeypatch.setenv("BIORNN_DATA", str(fake))  # a complete mirror
    with pytest.raises(DataError, match=r"typo \(--data-dir\): no such directory$"):
        locate("fake", tmp_path / "typo")
    (tmp_path / "empty").mkdir()
    assert locate("fake", tmp_path / "empty") == fake


def test_unknown_data_set_lists_the_known_ones():
    for call in (lambda: locate("nope"), lambda: verify("nope"), lambda: fetch("nope")):
        with pytest.raises(DataError, match=r"unknown data set 'nope'; known: ecg-discords, mitdb-100, names"):
            call()


def test_verify_finds_missing_and_corrupted_files(tmp_path, fake):
    d = _write(tmp_path / "d", FAKE_FILES)
    assert {r["status"] for r in verify("fake", d)} == {"ok"}
    (d / "fake/a.txt").write_bytes(b"alpha?\n")
    (d / "fake/sub/b.bin").unlink()
    rows = {r["path"]: r for r in verify("fake", d)}
    assert rows["fake/a.txt"]["status"] == "checksum mismatch"
    assert rows["fake/sub/b.bin"]["status"] == "missing"
    assert all(r["where"] == str(d) and r["dataset"] == "fake" for r in rows.values())


def test_verify_checks_an_incomplete_copy_in_data_dir_not_another(monkeypatch, tmp_path, fake):
    """locate passes over an incomplete --data-dir to $BIORNN_DATA's copy; verify must check the user's
    own copy, or a missing file there is reported as "all ok" elsewhere."""
    a = _write(tmp_path / "a", {"fake/a.txt": b"alpha\n"})  # one of two files
    monkeypatch.setenv("BIORNN_DATA", str(fake))  # a complete mirror
    rows = {r["path"]: r for r in verify("fake", a)}
    assert rows["fake/sub/b.bin"]["status"] == "missing" and rows["fake/a.txt"]["status"] == "ok"
    assert {r["where"] for r in rows.values()} == {str(a)}
    (tmp_path / "empty").mkdir()
    assert {r["where"] for r in verify("fake", tmp_path / "empty")} == {str(fake)}  # no copy there: the mirror


def test_verify_all_covers_every_file(tmp_path, fake):
    rows = verify(data_dir=tmp_path / "empty")
    assert len(rows) == sum(len(ds.files) for ds in DATASETS.values())
    assert {r["status"] for r in rows} == {"missing"}
    assert {r["where"] for r in rows} == {str(tmp_path / "empty")}  # the first place searched


def test_fetch_from_a_local_mirror(tmp_path, fake):
    dest = tmp_path / "dest"
    lines = []
    assert fetch("fake", dest, mirror=str(fake), log=lines.append) == dest
    assert _leftovers(dest) == sorted(FAKE_FILES)
    assert {r["status"] for r in verify("fake", dest)} == {"ok"}
    assert len(lines) == 2 and all(line.startswith("fetched") for line in lines)
    lines.clear()  # a second fetch finds everything in place
    fetch("fake", dest, mirror="file://" + str(fake), log=lines.append)
    assert len(lines) == 2 and all(line.startswith("ok") for line in lines)


def test_fetch_writes_to_the_cache_by_default(tmp_path, fake):
    assert fetch("fake", mirror=str(fake)) == tmp_path / "xdg-cache" / "biornn"
    assert locate("fake") == tmp_path / "xdg-cache" / "biornn"


def test_fetch_from_an_http_mirror(tmp_path, fake, serve):
    base = serve(fake)
    dest = tmp_path / "dest"
    fetch("fake", dest, mirror=base + "/", timeout=10)
    assert {r["status"] for r in verify("fake", dest)} == {"ok"}
    (dest / "fake/a.txt").write_bytes(b"corrupted")  # a bad copy is replaced
    fetch("fake", dest, mirror=base, timeout=10)
    assert (dest / "fake/a.txt").read_bytes() == b"alpha\n"


def test_fetch_from_the_canonical_url(monkeypatch, tmp_path, fake, serve):
    base = serve(fake)
    ds = DATASETS["fake"]
    files = tuple(DataFile(f.path, f.sha256, f"{base}/{f.path}") for f in ds.files)
    monkeypatch.setitem(DATASETS, "fake", Dataset(ds.name, ds.title, ds.licence, ds.source, files))
    fetch("fake", tmp_path / "dest", timeout=10)
    assert _leftovers(tmp_path / "dest") == sorted(FAKE_FILES)


def test_fetch_without_a_source_says_how_to_get_the_file(tmp_path, fake):
    with pytest.raises(DataError) as e:
        fetch("fake", tmp_path / "dest")
    msg = str(e.value)
    assert "\n" not in msg and "fake/a.txt" in msg and "no public byte-identical copy" in msg and "--mirror" in msg
    assert not (tmp_path / "dest").exists()


def test_fetch_checksum_mismatch_leaves_nothing_behind(tmp_path, fake):
    (fake / "fake/sub/b.bin").write_bytes(b"not the file")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"fake/sub/b\.bin .* has SHA-256 .* expected .*nothing was written"):
        fetch("fake", dest, mirror=str(fake))
    assert _leftovers(dest) == ["fake/a.txt"]  # fetched before; no b.bin, no temporary file
    _write(dest, {"fake/sub/b.bin": b"an old bad copy"})
    with pytest.raises(DataError):
        fetch("fake", dest, mirror=str(fake))
    assert (dest / "fake/sub/b.bin").read_bytes() == b"an old bad copy"  # untouched, not half-overwritten
    assert _leftovers(dest) == ["fake/a.txt", "fake/sub/b.bin"]


def test_fetch_writes_atomically_beside_the_target(monkeypatch, tmp_path, fake):
    real_replace = os.replace
    seen = []

    def spy(src, dst):
        src, dst = Path(src), Path(dst)
        assert src.parent == dst.parent and src.name.startswith(".") and src.name.endswith(".part")
        assert not dst.exists()  # the target appears only by the rename
        assert _sha(src.read_bytes()) == _sha(FAKE_FILES[str(dst.relative_to(tmp_path / "dest"))])
        seen.append(dst.name)
        real_replace(src, dst)

    monkeypatch.setattr(registry.os, "replace", spy)
    fetch("fake", tmp_path / "dest", mirror=str(fake))
    assert sorted(seen) == ["a.txt", "b.bin"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "dest/fake/a.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # like any new file


def test_fetch_truncated_download_is_a_network_error_and_leaves_nothing(tmp_path, fake, serve):
    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    dest = tmp_path / "dest"
    with pytest.raises(NetworkError) as e:
        fetch("fake", dest, mirror=serve(Truncating), timeout=10)
    assert "\n" not in str(e.value) and "could not download fake/a.txt" in str(e.value)
    assert _leftovers(dest) == []


def test_fetch_http_404_and_refused_connection_are_network_errors(tmp_path, fake, serve):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NetworkError, match="HTTP 404"):
        fetch("fake", tmp_path / "dest", mirror=serve(empty), timeout=10)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError, match="could not download"):
        fetch("fake", tmp_path / "dest", mirror=f"http://127.0.0.1:{port}", timeout=10)
    assert _leftovers(tmp_path / "dest") == []


def test_fetch_times_out(tmp_path, fake):
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        with pytest.raises(NetworkError, match="timed out"):
            fetch("fake", tmp_path / "dest", mirror=f"http://127.0.0.1:{s.getsockname()[1]}", timeout=0.3)
    assert _leftovers(tmp_path / "dest") == []


def test_fetch_from_a_mirror_lacking_a_file_or_not_a_directory(tmp_path, fake):
    (fake / "fake/a.txt").unlink()
    with pytest.raises(DataError, match=r"the mirror has no fake/a\.txt"):
        fetch("fake", tmp_path / "dest", mirror=str(fake))
    with pytest.raises(DataError, match="is not a directory"):
        fetch("fake", tmp_path / "dest", mirror=str(tmp_path / "nowhere"))


@shared
def test_registry_matches_the_mirrors_sha256sums():
    sums = {}
    for line in (SHARED / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split()
        sums[path.removeprefix("./")] = digest
    assert {f.path: f.sha256 for ds in DATASETS.values() for f in ds.files} == sums


@shared
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_the_reference_mirror_verifies(name):
    rows = verify(name, SHARED)
    assert rows and all(r["status"] == "ok" and r["where"] == str(SHARED) for r in rows)
    assert locate(name, SHARED) == SHARED


@shared
def test_fetch_from_the_reference_mirror_as_a_local_mirror(tmp_path):
    fetch("names", tmp_path / "copy", mirror=str(SHARED))
    assert {r["status"] for r in verify("names", tmp_path / "copy")} == {"ok"}


# ---------------------------------------------------------------- names


def _names_dir(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    root = tmp_path / "data"
    (root / "names").mkdir(parents=True, exist_ok=True)
    for lang, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        (root / "names" / f"{lang}.txt").write_bytes(data)
    return root


def test_read_names_dedupes_normalises_and_sorts(tmp_path):
    decomposed = unicodedata.normalize("NFD", "José")
    assert decomposed != "José"
    root = _names_dir(tmp_path, {
        "Spanish": f"José\n{decomposed}\n  Ruiz  \r\n\nJosé\n",
        "Arabic": "\ufeffNader\nNader\nNader\n",
        "Polish": "Żak\nŁuczak",
    })
    (root / "names" / "LICENSE").write_text("not a language")
    pairs = read_names(root)
    assert pairs == [("Nader", "Arabic"), ("Łuczak", "Polish"), ("Żak", "Polish"),
                     ("José", "Spanish"), ("Ruiz", "Spanish")]
    assert all(unicodedata.is_normalized("NFC", n) for n, _ in pairs)
    assert languages(pairs) == ["Arabic", "Polish", "Spanish"]
    assert read_names(str(root)) == pairs


def test_read_names_bad_utf8_names_the_file_and_line(tmp_path):
    root = _names_dir(tmp_path, {"Czech": b"Novak\nDvorak\nSm\xe9tana\n"})
    with pytest.raises(DataError, match=r"^names/Czech\.txt line 3: not UTF-8$"):
        read_names(root)


def test_read_names_without_files(tmp_path):
    with pytest.raises(DataError, match="no names/ folder"):
        read_names(tmp_path)
    (tmp_path / "names").mkdir()
    with pytest.raises(DataError, match="holds no .txt files"):
        read_names(tmp_path)
    (tmp_path / "names" / "Empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="holds no names"):
        read_names(tmp_path)


def _synthetic(seed: int, n_langs: int = 6, shared_names: int = 15) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = set()
    for k in range(n_langs):
        for i in range(rng.choice([3, 4, 5, 12, 40, 200])):
            pairs.add((f"L{k}n{i}", f"Lang{k}"))
    for j in range(shared_names):  # names in two or three languages
        for k in rng.sample(range(n_langs), rng.choice([2, 3])):
            pairs.add((f"shared{j}", f"Lang{k}"))
    return sorted(pairs)


def _check_split(pairs, s, fractions=(0.7, 0.15, 0.15)):
    assert set(s) == set(SPLITS)
    together = [p for k in SPLITS for p in s[k]]
    assert sorted(together) == sorted(pairs) and len(together) == len(set(together))  # a partition
    strings = {k: {n for n, _ in s[k]} for k in SPLITS}
    assert not strings["train"] & strings["val"] and not strings["train"] & strings["test"]
    assert not strings["val"] & strings["test"]  # grouped: no name string in two splits
    count = Counter(lang for _, lang in pairs)
    for k, frac in zip(SPLITS, fractions):
        got = Counter(lang for _, lang in s[k])
        for lang, n in count.items():
            if frac > 0 and n >= 3:
                assert got[lang] >= 1, (k, lang)
            if frac == 0:
                assert got[lang] == 0
    for k in SPLITS:
        assert s[k] == sorted(s[k], key=lambda p: (p[1], p[0]))


@pytest.mark.parametrize("data_seed", range(8))
def test_split_names_is_a_grouped_stratified_partition(data_seed):
    pairs = _synthetic(data_seed)
    for seed in (0, 1, 12345):
        _check_split(pairs, split_names(pairs, seed))


def test_split_names_cuts_each_language_by_the_fractions():
    pairs = [(f"{lang}{i}", lang) for lang in ("A", "B") for i in range(100)]  # no shared names
    s = split_names(pairs, 3)
    for lang in ("A", "B"):
        assert [sum(1 for _, x in s[k] if x == lang) for k in SPLITS] == [70, 15, 15]
    s = split_names([(f"m{i}", "C") for i in range(3)], 0)
    assert [len(s[k]) for k in SPLITS] == [1, 1, 1]  # three names: one in each split
    s = split_names(pairs, 0, fractions=(0.8, 0.2, 0.0))
    _check_split(pairs, s, (0.8, 0.2, 0.0))
    assert [len(s[k]) for k in SPLITS] == [160, 40, 0]


def test_split_names_is_deterministic_by_seed():
    pairs = _synthetic(0)
    assert split_names(pairs, 7) == split_names(list(reversed(pairs)), 7)
    assert split_names(pairs, 7) != split_names(pairs, 8)


@pytest.mark.parametrize("bad", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_split_names_checks_fractions(bad):
    with pytest.raises(ValueError, match="fractions"):
        split_names([("a", "A")], 0, bad)


@shared
def test_the_reference_names():
    pairs = read_names(SHARED)
    assert len(pairs) == 18012
    assert len(languages(pairs)) == 18
    assert sum(1 for _, lang in pairs if lang == "Arabic") == 108
    assert ("Żak", "Polish") in pairs or any("ż" in n.lower() for n, lang in pairs if lang == "Polish")
    s = split_names(pairs, 0)
    _check_split(pairs, s)
    assert abs(len(s["train"]) / len(pairs) - 0.7) < 0.01


# ---------------------------------------------------------------- batching


def test_vocabulary_encodes_with_padding_and_unknown():
    v = Vocabulary.build(["bca", "ab", "é"])
    assert v.symbols == ("a", "b", "c", "é") and len(v) == 6
    assert v.encode("cab") == [4, 2, 3]
    assert v.encode("abz") == [2, 3, 1]
    assert v.encode(unicodedata.normalize("NFD", "é")) == [5]  # NFC before lookup
    assert v.decode([4, 2, 1, 0, 0]) == "ca\ufffd"
    assert "a" in v and "z" not in v
    assert Vocabulary.build(["aab", "a"], min_count=2).symbols == ("a",)


def test_vocabulary_json_round_trip():
    v = Vocabulary.build(["Żak", "Łuczak", "Müller"])
    back = Vocabulary.from_json(json.loads(json.dumps(v.to_json())))
    assert back == v and back.encode("Müller") == v.encode("Müller")
    with pytest.raises(ValueError, match="symbols"):
        Vocabulary.from_json({"chars": []})
    with pytest.raises(ValueError, match="pad=5"):
        Vocabulary.from_json({"symbols": ["a"], "pad": 5, "unk": 1})


def test_vocabulary_rejects_bad_symbols():
    with pytest.raises(ValueError, match="one character"):
        Vocabulary(["ab"])
    with pytest.raises(ValueError, match="twice"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(["a"], min_count=0)


def test_pad_batch():
    x, lengths = pad_batch([[5, 6, 7], [8], torch.tensor([9, 10])])
    assert x.dtype == torch.long and lengths.dtype == torch.long
    assert x.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    with pytest.raises(ValueError, match="sequence 1 of the batch is empty"):
        pad_batch([[1], []])
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([])


def test_batches_cover_every_index_once():
    got = list(batches(10, 4, torch.Generator().manual_seed(0), shuffle=True))
    assert [len(b) for b in got] == [4, 4, 2] and all(b.dtype == torch.long for b in got)
    assert sorted(torch.cat(got).tolist()) == list(range(10))
    again = list(batches(10, 4, torch.Generator().manual_seed(0), shuffle=True))
    assert all(torch.equal(a, b) for a, b in zip(got, again))
    # shuffled: not the file's order, and another seed's order is another one
    assert torch.cat(got).tolist() != list(range(10))
    other = list(batches(10, 4, torch.Generator().manual_seed(1), shuffle=True))
    assert torch.cat(other).tolist() != torch.cat(got).tolist()
    assert [b.tolist() for b in batches(5, 2, None, shuffle=False)] == [[0, 1], [2, 3], [4]]
    assert [len(b) for b in batches(10, 4, None, shuffle=True, drop_last=True)] == [4, 4]
    assert list(batches(0, 3, None, shuffle=True)) == []
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(3, 0, None, shuffle=False))


def test_a_missing_mirror_only_set_is_told_to_fetch_from_a_mirror(tmp_path, monkeypatch):
    """'run biornn data fetch splice' was the advice, and that command refuses: splice has no public copy."""
    from biornn.data.registry import fetch_command

    monkeypatch.setenv("BIORNN_DATA", str(tmp_path / "none"))
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"run 'biornn data fetch splice --mirror URL\|DIR'"):
        locate("splice")
    with pytest.raises(DataError, match=r"run 'biornn data fetch names' or"):
        locate("names")
    mitdb = DATASETS["mitdb-100"]
    public = [f.path for f in mitdb.files if f.url]
    assert public and fetch_command("mitdb-100", public) == "biornn data fetch mitdb-100"
    assert fetch_command("mitdb-100").endswith("--mirror URL|DIR")  # 100.atr's conversion is mirror-only
