"""Two processes on the CPU (torchrun, gloo on 127.0.0.1) train what one process does with the same
global batch, and only rank 0 writes the run directory."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import free_port
from safetensors.torch import load_file

from biornn.checkpoint import load_state
from biornn.cli.main import main
from biornn.config import resolve
from biornn.train import train
from test_train import TINY, data_dir  # noqa: F401  (the tiny names data set, a module fixture)

pytestmark = pytest.mark.distributed

# dropout off: its masks are drawn per process; an odd global batch gives the ranks unequal shares;
# an ensemble of two takes the members' path through DDP
ARGS = [*TINY, "batch_size=15", "ensemble=2", "dropout=0", "threads=1"]

# every process of the torchrun launch records the files it opens for writing, creates, renames
# or removes under the watched directory (a Python audit hook, loaded by PYTHONPATH as sitecustomize)
AUDIT = textwrap.dedent('''
    import os, sys
    _watch = os.environ.get("BIORNN_TEST_WATCH")
    _record = os.environ.get("BIORNN_TEST_RECORD", "") + "." + os.environ.get("RANK", "none")
    _busy = []

    def _hook(event, args):
        if _busy or not _watch:
            return
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags > 0 and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "shutil.rmtree"):
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            p = os.fsdecode(os.fspath(path))
            if os.path.abspath(p).startswith(_watch):
                _busy.append(1)
                try:
                    with open(_record, "a") as fh:
                        fh.write(event + " " + p + "\\n")
                finally:
                    _busy.pop()

    sys.addaudithook(_hook)
''')


def _torchrun(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "biornn", *args]
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_two_processes_train_what_one_does(data_dir, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(one), *ARGS]) == 0

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    env = {k: v for k, v in os.environ.items() if k not in ("BIORNN_DATA", "RANK", "WORLD_SIZE")}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "BIORNN_TEST_WATCH": str(two), "BIORNN_TEST_RECORD": str(tmp_path / "writes"),
        "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"),
    })
    done = _torchrun(["train", "names", "--data-dir", str(data_dir), "--out", str(two), *ARGS], env, tmp_path)
    # one JSON summary (rank 0's), not two
    assert done.stdout.count('"run"') == 1, done.stdout

    # the same weights, best and last, within float rounding (the ranks' sums are added in another order)
    for name in ("model.safetensors",):
        a, b = load_file(one / name), load_file(two / name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5, msg=k)
    last_a, last_b = load_state(one / "checkpoint.pt")["model"], load_state(two / "checkpoint.pt")["model"]
    for k in last_a:
        torch.testing.assert_close(last_b[k], last_a[k], rtol=0, atol=1e-5, msg=k)
    assert len(load_state(two / "checkpoint.pt")["rng_ranks"]) == 2

    # the logged losses are the global batch's, as one process logs them
    log_a, log_b = _rows(one / "log.csv"), _rows(two / "log.csv")
    assert len(log_a) == len(log_b) == 2
    for ra, rb in zip(log_a, log_b):
        for key in ("train_loss", "val_loss", "val_accuracy", "grad_norm_mean", "grad_norm_max", "lr"):
            assert float(rb[key]) == pytest.approx(float(ra[key]), abs=2e-5), key
    steps_a, steps_b = _rows(one / "steps.csv"), _rows(two / "steps.csv")
    assert [r["step"] for r in steps_a] == [r["step"] for r in steps_b]
    for ra, rb in zip(steps_a, steps_b):
        assert float(rb["loss"]) == pytest.approx(float(ra["loss"]), abs=2e-5)
        assert float(rb["grad_norm"]) == pytest.approx(float(ra["grad_norm"]), abs=2e-5)
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())

    # rank 0 wrote the run directory, rank 1 nothing at all
    rank0 = (tmp_path / "writes.0").read_text()
    assert "checkpoint.pt" in rank0 and "metrics.json" in rank0
    assert not (tmp_path / "writes.1").exists(), (tmp_path / "writes.1").read_text()

    # a run interrupted after its first epoch in one process, resumed by two, ends where one process ends
    part = tmp_path / "part"
    cfg = resolve("names", overrides=ARGS)
    assert train(cfg, part, str(data_dir), log=lambda line: None, stop_after_epochs=1) == {}
    env["BIORNN_TEST_WATCH"] = str(part)
    _torchrun(["train", "--resume", str(part), "--data-dir", str(data_dir)], env, tmp_path)
    a, b = load_file(one / "model.safetensors"), load_file(part / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5, msg=k)
    assert len(_rows(part / "log.csv")) == 2
    assert not (tmp_path / "writes.1").exists(), (tmp_path / "writes.1").read_text()


def test_ecg_anomaly_refuses_several_processes(monkeypatch, tmp_path):
    """A task whose batches cannot be sharded says so in one line before it reads any data."""
    from biornn import distributed
    from biornn.config import resolve
    from biornn.train import _train

    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "on_main", lambda fn: fn())
    monkeypatch.setattr(distributed, "is_main", lambda: True)
    cfg = resolve("ecg-anomaly", overrides=["epochs=1"])
    with pytest.raises(ValueError, match="ecg-anomaly: multi-process training .* train it in one process"):
        _train(cfg, tmp_path / "run", str(tmp_path), False, False, lambda line: None, None, (), None)
    assert not (tmp_path / "run").exists()
