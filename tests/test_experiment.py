"""The long-lag experiment: data, a tiny grid end to end, refusals before starting, help."""

from __future__ import annotations

import json

import pytest
import torch

from biornn.cli.main import main
from biornn.experiments import check_grid, estimate_memory, format_table, train_adding
from biornn.longlag import ADDING_BASELINE_MSE, adding_problem, temporal_order


def test_adding_problem_targets_and_baseline():
    x, y = adding_problem(20000, 30, torch.Generator().manual_seed(0))
    marks = x[..., 1]
    assert torch.all(marks.sum(1) == 2)
    assert torch.all(marks[:, :15].sum(1) == 1) and torch.all(marks[:, 15:].sum(1) == 1)
    assert torch.allclose((x[..., 0] * marks).sum(1), y)
    # always answering 1 scores Var(y) = 1/6
    assert float((y - 1.0).pow(2).mean()) == pytest.approx(ADDING_BASELINE_MSE, abs=0.005)


def test_temporal_order_classes():
    x, y = temporal_order(500, 20, torch.Generator().manual_seed(0))
    symbols = x.argmax(2)
    xy = symbols >= 4
    assert torch.all(xy.sum(1) == 2) and torch.all(x.sum(2) == 1)
    first = symbols[:, :10][xy[:, :10]] - 4
    second = symbols[:, 10:][xy[:, 10:]] - 4
    assert torch.equal(2 * first + second, y)


def test_lstm_learns_a_short_adding_problem():
    r = train_adding("lstm", 10, steps=600, hidden=16, batch=32, lr=1e-2, clip=1.0, forget_bias=1.0,
                     eval_every=50, test_size=200)
    assert r["solved"] and r["test_mse"] < 0.01 and not r["diverged"]
    assert r["steps"] < 600  # stopped as soon as it was solved


def test_exploding_irnn_without_clipping_diverges_and_with_clipping_does_not():
    kw = dict(steps=30, hidden=16, batch=8, lr=1e-3, optimizer="sgd", scale=1.3, eval_every=5, test_size=50,
              stop_when_solved=False)
    free = train_adding("irnn", 60, clip=0.0, **kw)
    clipped = train_adding("irnn", 60, clip=1.0, **kw)
    assert free["diverged"] and free["test_mse"] is None
    assert not clipped["diverged"] and clipped["max_grad_norm"] > 1e6


def test_memory_estimate_refuses_before_starting():
    assert estimate_memory(400, 64, 32) < 2**30
    with pytest.raises(ValueError, match="does not fit in memory"):
        check_grid([10**8], 64, 32)
    with pytest.raises(ValueError, match="lag must be a positive integer"):
        check_grid([0], 64, 32)


def test_tiny_grid_end_to_end(tmp_path, capsys):
    out = tmp_path / "grid"
    code = main(["experiment", "long-lag", "--cells", "elman", "lstm", "--lags", "6", "10", "--steps", "30",
                 "--hidden", "8", "--batch", "8", "--explode-scale", "1.2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| elman | none |" in printed and "| lstm | norm 1 |" in printed
    res = json.loads((out / "long_lag.json").read_text())
    assert len(res["runs"]) == 2 * 2 * 2
    assert {r["cell"] for r in res["runs"]} == {"elman", "lstm"}
    assert set(res["gradient_flow"]) == {"6", "10"} and len(res["gradient_flow"]["10"]["elman"]["dl_dh"]) == 10
    assert len(res["exploding"]) == 2 and [r["clip"] for r in res["exploding"]] == [0.0, 1.0]
    for png in ("success.png", "gradient_flow.png", "exploding.png"):
        assert (out / png).stat().st_size > 1000
    assert not list(out.glob(".*"))
    assert "| T = 6 | T = 10 |" in format_table(res["table"], [6, 10])
    # the same folder again without the exploding runs: the earlier exploding.png does not stay beside it
    capsys.readouterr()
    assert main(["experiment", "long-lag", "--cells", "elman", "--lags", "6", "--steps", "5", "--hidden", "4",
                 "--batch", "4", "--explode-scale", "0", "--out", str(out), "--json"]) == 0
    assert json.loads((out / "long_lag.json").read_text())["exploding"] == []
    printed = json.loads(capsys.readouterr().out)  # --json: one object alone, no Markdown table before it
    assert printed["out"] == str(out) and printed["table"] == json.loads((out / "long_lag.json").read_text())["table"]
    assert sorted(p.name for p in out.iterdir()) == ["gradient_flow.png", "long_lag.json", "success.png"]


def test_an_interrupted_grid_leaves_no_plot_of_an_earlier_one(tmp_path, capsys, monkeypatch):
    """Interrupted in its first run, a new grid in the folder of a finished one left the earlier
    success.png and exploding.png beside its own long_lag.json."""
    from biornn import experiments

    out = tmp_path / "grid"
    args = ["experiment", "long-lag", "--cells", "elman", "--lags", "6", "--steps", "5", "--hidden", "4",
            "--batch", "4", "--explode-scale", "1.2", "--out", str(out)]
    assert main(args) == 0
    assert {"success.png", "exploding.png"} <= {p.name for p in out.iterdir()}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "train_adding", interrupted)
    assert main([*args[:3], "gru", *args[4:]]) == 130
    assert sorted(p.name for p in out.iterdir()) == ["gradient_flow.png", "long_lag.json"]
    assert json.loads((out / "long_lag.json").read_text())["config"]["cells"] == ["gru"]


def test_jobs_run_the_grid_in_processes_with_the_same_results(tmp_path, capsys):
    args = ["experiment", "long-lag", "--cells", "elman", "gru", "--lags", "5", "9", "--steps", "20",
            "--hidden", "8", "--batch", "4", "--explode-scale", "0"]
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        assert main([*args, "--jobs", str(jobs), "--out", str(out)]) == 0
        res = json.loads((out / "long_lag.json").read_text())
        assert res["config"]["jobs"] == jobs
        runs[jobs] = [(r["cell"], r["lag"], r["clip"], r["test_mse"], r["steps"]) for r in res["runs"]]
    capsys.readouterr()
    assert [r[:3] for r in runs[1]] == [(c, lag, clip) for lag in (5, 9) for c in ("elman", "gru")
                                        for clip in (0.0, 1.0)]  # grid order, whatever order they finished in
    assert runs[1] == runs[2]  # every run seeds itself; one thread each way
    assert main([*args, "--jobs", "0", "--out", str(tmp_path / "none")]) == 2
    _one_line_error(capsys, "--jobs must be >= 1")
    with pytest.raises(ValueError, match="3 runs at once"):
        check_grid([10**7], 64, 32, memory=estimate_memory(10**7, 64, 32) * 2, jobs=3)


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_oversized_grid_and_bad_options_exit_2(tmp_path, capsys):
    out = tmp_path / "big"
    assert main(["experiment", "long-lag", "--lags", "100", "100000000", "--out", str(out)]) == 2
    _one_line_error(capsys, "does not fit in memory", "100000000")
    assert not out.exists()  # refused before anything was written
    assert main(["experiment", "long-lag", "--lr", "lstm=fast", "--out", str(out)]) == 2
    _one_line_error(capsys, "--lr")
    assert main(["experiment", "long-lag", "--cells", "lsmt"]) == 2
    _one_line_error(capsys, "lsmt")
    assert main(["experiment", "long-lag", "--lags", "1", "--out", str(out)]) == 2
    _one_line_error(capsys, "lags must be >= 2")


@pytest.mark.parametrize("argv", [["diagnose"], ["diagnose", "gradients"], ["diagnose", "states"],
                                  ["experiment"], ["experiment", "long-lag"], ["explain"]])
def test_every_new_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert "usage: biornn " + " ".join(argv) in capsys.readouterr().out


def test_a_killed_grid_with_jobs_stops_its_workers_at_once(tmp_path):
    """SIGTERM reaches the parent alone: it must stop the pool's workers, not wait for their runs."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "grid"
    exe = os.path.join(os.path.dirname(sys.executable), "biornn")
    proc = subprocess.Popen([exe, "experiment", "long-lag", "--cells", "elman", "lstm", "--lags", "50", "100",
                             "--steps", "100000", "--hidden", "32", "--batch", "32", "--explode-scale", "0",
                             "--jobs", "2", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "long_lag.json").exists():  # the gradient flow is written before the runs start
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.2)
        time.sleep(3)
        children: list[str] = []
        while not children and time.monotonic() < deadline:  # the workers (else the test checks nothing)
            children = subprocess.run(["ps", "--ppid", str(proc.pid), "-o", "pid="], capture_output=True,
                                      text=True).stdout.split()
            time.sleep(0.2)
        assert children, "no worker process had started"
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 20, "the parent waited for its workers' runs"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143 and err.strip().endswith("biornn: terminated"), err
    time.sleep(2)
    alive = [pid for pid in children if os.path.exists(f"/proc/{pid}") and
             "Z" not in open(f"/proc/{pid}/stat").read().split()[2]]
    assert not alive, alive
