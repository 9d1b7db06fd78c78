"""``biornn bench``: a quick run gives valid JSON with every field; bad input exits 2.

No timing assertions: timings belong to the benchmark, not to the tests."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from biornn import bench, native
from biornn.cli.main import main

RESULT_FIELDS = {"shape", "B", "T", "I", "H", "impl", "path", "train_ms", "infer_ms", "train_gflops",
                 "infer_gflops", "vs_lstm", "vs_twin", "twin", "warmup_s", "peak_mib", "autocast_train_ms",
                 "autocast_vs_lstm"}


def test_quick_json_has_every_field(capsys):
    assert main(["bench", "--quick", "--json", "--cells", "lstm,gru,lstm-peephole,fully-recurrent"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shapes"] == {"tiny": {"B": 4, "T": 16, "I": 3, "H": 8}}
    assert report["flops_formula"] and report["threads"] >= 1
    impls = [r["impl"] for r in report["results"]]
    assert impls == ["nn.LSTM", "nn.GRU", "lstm", "gru", "lstm-peephole", "fully-recurrent"]
    for r in report["results"]:
        assert set(r) == RESULT_FIELDS
        for key in ("train_ms", "infer_ms", "train_gflops", "warmup_s"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["impl"], key)
        assert r["peak_mib"] is None or r["peak_mib"] >= 0
    paths = {r["impl"]: r["path"] for r in report["results"]}
    own = "native" if native.available() else "bptt"  # the compiled loops where built (make install builds them)
    assert report["native_loops"].startswith("loaded" if native.available() else "not loaded")
    assert paths == {"nn.LSTM": "torch", "nn.GRU": "torch", "lstm": "fused", "gru": own,
                     "lstm-peephole": own, "fully-recurrent": own}
    by = {r["impl"]: r for r in report["results"]}
    assert by["nn.LSTM"]["vs_lstm"] == 1.0
    assert by["gru"]["twin"] == "nn.GRU" and by["gru"]["vs_twin"] > 0
    assert by["lstm-peephole"]["twin"] is None and by["lstm-peephole"]["vs_twin"] is None
    assert [s["impl"] for s in report["streaming"]] == impls
    assert all(s["us_per_step"] > 0 for s in report["streaming"])


def test_autocast_times_every_implementation_in_the_same_run(capsys):
    assert main(["bench", "--quick", "--json", "--autocast", "--cells", "lstm-peephole,lstm"]) == 0
    report = json.loads(capsys.readouterr().out)
    for r in report["results"]:
        assert r["autocast_train_ms"] > 0 and r["autocast_vs_lstm"] > 0, r["impl"]
    assert main(["bench", "--quick", "--cells", "gru"]) == 0  # without it: the fields stay empty
    assert "autocast" not in capsys.readouterr().out
    assert main(["bench", "--quick", "--autocast", "--cells", "gru"]) == 0
    out = capsys.readouterr().out
    assert "torch.autocast('cpu', dtype=torch.bfloat16)" in out and "gru" in out


def test_table_names_every_implementation(capsys):
    assert main(["bench", "--shapes", "2x5x2x4", "--cells", "lstm1997", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "2x5x2x4" in out and "lstm1997" in out and "nn.LSTM" in out and "streaming" in out


def test_flops_formula():
    assert bench.flops("lstm", 2, 3, 4, 5) == 2 * 2 * 3 * 4 * 5 * 9
    assert bench.flops("lstm1997", 2, 3, 4, 5) == 2 * 2 * 3 * 3 * 5 * 9
    assert bench.flops("elman", 1, 1, 1, 1) == 4


@pytest.mark.parametrize("args,message", [
    (["--cells", "lstm,nope"], "argument --cells: invalid choice: 'nope' (unknown cell;"),
    (["--cells", ","], "argument --cells: names no cell"),
    (["--shapes", "ecg,12x3"], "unknown shape '12x3'"),
    (["--shapes", "0x1x1x1"], "unknown shape"),
    (["--shapes", "100000x100000x1x1024"], "needs about"),
    (["--threads", "0"], "--threads"),
    (["--repeats", "0", "--quick"], "repeats"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_every_benchmark_script_answers_help_without_running(script):
    """--help prints the usage and runs nothing (a script without argparse ran its whole benchmark)."""
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("usage:"), (out.stdout[:200], out.stderr[-300:])


VARIABLE_LENGTHS = Path(__file__).resolve().parents[1] / "benchmarks" / "variable_lengths.py"


def _variable_lengths(args, monkeypatch):
    import runpy

    import torch

    monkeypatch.setattr(sys, "argv", [str(VARIABLE_LENGTHS), *args])
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(VARIABLE_LENGTHS), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    return done.value.code


def test_the_variable_lengths_benchmark_times_both_routes(monkeypatch, capsys):
    assert _variable_lengths(["--cells", "elman,lstm", "--shapes", "names-var", "--repeats", "1"], monkeypatch) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("names-var")]
    assert len(rows) == 2 and all(r.count("before (fused)") == 2 and r.count("now/before") == 2 for r in rows)
    # training: the hand-written BPTT; inference: the compiled loops only (the Python loops are slower there)
    assert "train: before (fused)" in rows[0] and "now (bptt)" in rows[0] and "infer: before (fused)" in rows[0]
    hand = "native" if native.available() else "bptt"
    assert f"now ({hand})" in rows[1].split("infer:")[0]
    assert f"now ({'native' if native.available() else 'fused'})" in rows[1].split("infer:")[1]


@pytest.mark.parametrize("args, message", [
    (["--cells", "gru"], "--cells: 'gru' is not one of lstm, lstm1997, elman"),
    (["--shapes", "ecg"], "--shapes: 'ecg' is not one of names-var"),
    (["--repeats", "0"], "--repeats must be >= 1"),
])
def test_the_variable_lengths_benchmark_refuses_bad_arguments(args, message, monkeypatch, capsys):
    assert _variable_lengths(args, monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("variable_lengths.py: ") and message in err[0], err
