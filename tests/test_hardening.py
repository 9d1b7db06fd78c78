"""No work lost to crashes or NaNs, no code run from a checkpoint.

- a NaN/Inf loss or gradient is never applied; the run stops with exit 1 and keeps its last
  checkpoint, or skips the batch / lowers the learning rate as configured;
- training killed with SIGKILL mid-epoch and resumed ends with bit-identical weights;
- a checkpoint carrying a pickle payload is refused and the payload never runs;
- run directories of another format or version are refused naming both versions.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from biornn import checkpoint
from biornn import train as train_module
from biornn.cli.main import main
from biornn.config import resolve
from biornn.train import TrainingError, train

SPLICE_TINY = ["hidden_size=4", "ensemble=1", "batch_size=16", "epochs=3", "threads=1", "lr_schedule=none", "refit=false"]  # the first phase alone: these tests count its steps


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A made-up splice data set: 90 sequences of 60 bp with a junction signal."""
    root = tmp_path_factory.mktemp("data")
    (root / "dna").mkdir()
    rng = random.Random(0)
    rows = ["label,instance_name,sequence"]
    for k in range(90):
        label = ("EI", "IE", "N")[k % 3]
        s = [rng.choice("ACGT") for _ in range(60)]
        if label == "EI":
            s[30:32] = "GT"
        elif label == "IE":
            s[28:30] = "AG"
        rows.append(f"{label},S{k},{''.join(s)}")
    (root / "dna" / "splice.csv").write_text("\n".join(rows) + "\n")
    return root


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- non-finite losses and gradients -------------------------------------------------------


class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


def _poison(monkeypatch, at_steps: set[int], kind: str = "loss") -> list[int]:
    """Make the loss (or its gradient) non-finite at the given 1-based training steps."""
    calls = [0]
    real = train_module.loss_fn

    def loss_fn(cfg, outputs, target, weight):
        loss = real(cfg, outputs, target, weight)
        if not outputs.requires_grad:  # validation
            return loss
        calls[0] += 1
        if calls[0] in at_steps:
            return loss * float("nan") if kind == "loss" else _InfGrad.apply(loss)
        return loss

    monkeypatch.setattr(train_module, "loss_fn", loss_fn)
    return calls


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_nonfinite_stops_the_run_keeping_the_last_checkpoint(data_dir, tmp_path, monkeypatch, capsys, kind):
    # 63 training sequences, batch 16: 4 steps an epoch; step 6 is in epoch 2
    out = tmp_path / "run"
    clean = tmp_path / "clean"
    cfg = resolve("splice", overrides=SPLICE_TINY)
    train(cfg, clean, str(data_dir), log=lambda line: None, stop_after_epochs=1)
    _poison(monkeypatch, {6}, kind)
    code = main(["train", "splice", "--data-dir", str(data_dir), "--out", str(out), *SPLICE_TINY])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("biornn: training failed: epoch 2, step 6: the ")
    assert ("loss became nan" if kind == "loss" else "gradient norm became ") in err[-1]
    assert "the step was not applied" in err[-1] and "keeps epoch 1" in err[-1]
    # the checkpoint of epoch 1 is kept, identical to a clean run's epoch 1, and no metrics claim a finished run
    state = checkpoint.load_state(out / "checkpoint.pt")
    assert state["epoch"] == 1 and not (out / "metrics.json").exists()
    ref = checkpoint.load_state(clean / "checkpoint.pt")
    assert all(torch.equal(state["model"][k], ref["model"][k]) for k in ref["model"])


def test_nonfinite_at_the_first_epoch_leaves_nothing(data_dir, tmp_path, monkeypatch, capsys):
    _poison(monkeypatch, {2})
    out = tmp_path / "run"
    assert main(["train", "splice", "--data-dir", str(data_dir), "--out", str(out), *SPLICE_TINY]) == 1
    assert "epoch 1, step 2: the loss became nan" in capsys.readouterr().err
    assert not out.exists()


def test_nonfinite_skip_drops_the_batch_and_goes_on(data_dir, tmp_path, monkeypatch):
    lines: list[str] = []
    _poison(monkeypatch, {3, 6}, "grad")
    cfg = resolve("splice", overrides=[*SPLICE_TINY, "nonfinite=skip"])
    metrics = train(cfg, tmp_path / "run", str(data_dir), log=lines.append)
    assert metrics["epochs"] == 3
    log = _rows(tmp_path / "run" / "log.csv")
    assert [int(r["skipped_steps"]) for r in log] == [1, 1, 0]
    steps = _rows(tmp_path / "run" / "steps.csv")
    assert len(steps) == 12 and {steps[2]["grad_norm"], steps[5]["grad_norm"]} <= {"inf", "nan"}
    assert sum("the batch is skipped (2 so far)" in line for line in lines) == 1
    assert all(torch.isfinite(v).all() for v in torch.load(tmp_path / "run" / "checkpoint.pt",
                                                            weights_only=True)["model"].values())


def test_nonfinite_skip_leaves_the_weights_as_they_were(data_dir, tmp_path, monkeypatch):
    """A dropped step changes nothing: the run with a NaN at its last step ends with the weights
    of a run one step shorter."""
    cfg = resolve("splice", overrides=[*SPLICE_TINY, "epochs=1", "nonfinite=skip", "optimizer=sgd", "momentum=0"])
    calls = _poison(monkeypatch, {4})
    train(cfg, tmp_path / "poisoned", str(data_dir), log=lambda line: None)
    assert calls[0] == 4
    a = checkpoint.load_state(tmp_path / "poisoned" / "checkpoint.pt")["model"]

    # the same run stopped before its 4th step: replay by hand with the task's batches
    from biornn.tasks import splice

    monkeypatch.undo()
    torch.manual_seed(cfg.seed)
    data = splice.load(cfg, str(data_dir))
    model = splice.build(cfg, data)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.0, weight_decay=cfg.weight_decay)
    model.train()
    for i, batch in enumerate(splice.train_batches(cfg, model, data, 1)):
        if i == 3:
            break
        opt.zero_grad()
        train_module.loss_fn(cfg, batch.outputs, batch.target, batch.weight).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
    assert all(torch.equal(a[k], v) for k, v in model.state_dict().items())


def test_nonfinite_lower_lr_scales_the_learning_rate(data_dir, tmp_path, monkeypatch):
    _poison(monkeypatch, {2, 7})
    cfg = resolve("splice", overrides=[*SPLICE_TINY, "nonfinite=lower-lr", "lr=0.01", "lr_gamma=0.5"])
    train(cfg, tmp_path / "run", str(data_dir), log=lambda line: None)
    log = _rows(tmp_path / "run" / "log.csv")
    assert [float(r["lr"]) for r in log] == pytest.approx([0.005, 0.0025, 0.0025])


def test_nonfinite_lower_lr_moves_a_one_cycle_schedule(data_dir, tmp_path, monkeypatch):
    base = resolve("splice", overrides=[*SPLICE_TINY, "lr_schedule=onecycle", "nonfinite=lower-lr"])
    train(base, tmp_path / "clean", str(data_dir), log=lambda line: None)
    _poison(monkeypatch, {1})
    train(base, tmp_path / "low", str(data_dir), log=lambda line: None)
    clean = [float(r["lr"]) for r in _rows(tmp_path / "clean" / "steps.csv")]
    low = [float(r["lr"]) for r in _rows(tmp_path / "low" / "steps.csv")]
    # from step 2 on, the schedule runs one step behind at half the level
    assert low[1:] == pytest.approx([x * base.lr_gamma for x in clean[:-1]])


def test_nonfinite_limit_stops_a_skipping_run(data_dir, tmp_path, monkeypatch, capsys):
    _poison(monkeypatch, {1, 2, 3})
    out = tmp_path / "run"
    assert main(["train", "splice", "--data-dir", str(data_dir), "--out", str(out), *SPLICE_TINY,
                 "nonfinite=skip", "nonfinite_limit=2"]) == 1
    assert "3 steps were not finite, more than nonfinite_limit=2" in capsys.readouterr().err


# -- SIGKILL mid-epoch, then --resume ------------------------------------------------------------


def test_sigkill_mid_epoch_then_resume_gives_bit_identical_weights(data_dir, tmp_path):
    from safetensors.torch import load_file

    args = ["train", "splice", "--data-dir", str(data_dir), "hidden_size=48", "ensemble=1", "batch_size=2",
            "epochs=12", "threads=1", "--no-progress"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main([*args, "--out", str(whole)]) == 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "biornn", *args, "--out", str(cut)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # kill it at once after epoch 2's line: while epoch 2's files are written, or during epoch 3
        deadline = time.monotonic() + 120
        for line in proc.stderr:
            if line.startswith("epoch 2/12"):
                break
            assert time.monotonic() < deadline
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    state = checkpoint.load_state(cut / "checkpoint.pt")
    assert 1 <= state["epoch"] < 12 and not (cut / "metrics.json").exists()
    # what a kill during a write leaves: a partial temporary file beside its intact target
    (cut / ".checkpoint.pt.ab3_x9zq.pt").write_bytes(b"partial")
    (cut / ".log.csv.k2m8p0aa.csv").write_text("epoch,tr")
    (cut / "notes.txt").write_text("the user's own file stays\n")
    assert main(["train", "--resume", str(cut), "--data-dir", str(data_dir), "--no-progress"]) == 0
    assert sorted(f.name for f in cut.iterdir() if f.name.startswith(".")) == []
    assert (cut / "notes.txt").exists()
    a, b = load_file(whole / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _rows(whole / "log.csv")[-1]["val_loss"] == _rows(cut / "log.csv")[-1]["val_loss"]


# -- safe loading ------------------------------------------------------------------------------


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_with_a_pickle_payload_is_refused_and_nothing_runs(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = resolve("splice", overrides=SPLICE_TINY)
    train(cfg, out, str(data_dir), log=lambda line: None, stop_after_epochs=1)
    marker = tmp_path / "pwned"
    state = checkpoint.load_state(out / "checkpoint.pt")
    state["history"] = _Payload(marker)
    torch.save(state, out / "checkpoint.pt")
    assert main(["train", "--resume", str(out), "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint.pt: not a loadable checkpoint" in err
    assert not marker.exists()
    # safetensors weights cannot carry code at all: a pickle in their place is not read
    torch.save({"w": _Payload(marker)}, out / "model.safetensors")
    (out / "metrics.json").write_text("{}")
    assert main(["evaluate", str(out), "--data-dir", str(data_dir)]) == 2
    assert "model.safetensors: not a readable safetensors file" in capsys.readouterr().err
    assert not marker.exists()


def test_runs_of_another_version_are_refused_naming_both(data_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "run"
    cfg = resolve("splice", overrides=[*SPLICE_TINY, "epochs=2"])
    train(cfg, out, str(data_dir), log=lambda line: None, stop_after_epochs=1)
    state = checkpoint.load_state(out / "checkpoint.pt")
    torch.save({**state, "biornn_version": "0.0.1"}, out / "checkpoint.pt")
    assert main(["train", "--resume", str(out), "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "written by biornn 0.0.1, this is " in err and "resume with that version" in err

    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    save_file(load_file(out / "model.safetensors"), str(out / "model.safetensors"),
              metadata={**meta, "format_version": "0"})
    (out / "metrics.json").write_text("{}")
    assert main(["evaluate", str(out), "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert f"different biornn run format ('0', this version reads '{checkpoint.FORMAT_VERSION}')" in err


def test_every_source_file_compiles_without_warnings():
    """An invalid escape such as '\\d' in a docstring is a DeprecationWarning now and a SyntaxWarning
    from Python 3.12: every .py file of the package, the tests and the benchmarks compiles cleanly."""
    import warnings

    root = Path(__file__).resolve().parents[1]
    files = [p for d in ("src", "tests", "benchmarks") for p in sorted((root / d).rglob("*.py"))]
    assert len(files) > 50
    for p in files:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(p.read_text(encoding="utf-8"), str(p), "exec")


def _full_disk(monkeypatch, where: str) -> None:
    """Writes of files whose name contains ``where`` fail as a full disk fails them."""
    import errno

    real = Path.write_bytes

    def write_bytes(self, data):
        if where in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


@pytest.mark.parametrize("save, name", [
    (lambda p: checkpoint.save_state(p, {"a": torch.zeros(3)}), "checkpoint.pt"),
    (lambda p: checkpoint.save_weights(p, torch.nn.Linear(2, 2), {"k": 1}), "model.safetensors"),
])
def test_a_full_disk_is_an_oserror_naming_the_file_and_leaves_no_temp(tmp_path, monkeypatch, save, name):
    """torch.save reported it as RuntimeError('unexpected pos ...') and safetensors as SafetensorError,
    neither naming the file: a traceback."""
    _full_disk(monkeypatch, name)
    with pytest.raises(OSError) as e:
        save(tmp_path / name)
    assert e.value.filename == str(tmp_path / name) and "No space left on device" in e.value.strerror
    assert list(tmp_path.iterdir()) == []


def test_training_on_a_full_disk_ends_with_one_line_naming_the_file(data_dir, tmp_path, monkeypatch, capsys):
    _full_disk(monkeypatch, "checkpoint.pt")
    out = tmp_path / "run"
    code = main(["train", "splice", "--data-dir", str(data_dir), "--out", str(out), *SPLICE_TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1] == f"biornn: error: {out / 'checkpoint.pt'}: cannot write it: No space left on device"
    assert not [f for f in (out.iterdir() if out.exists() else []) if f.name.startswith(".")]
