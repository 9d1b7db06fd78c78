"""``--track tensorboard`` and ``--track mlflow`` on a tiny names run: the logs read back, with log.csv's values."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from biornn.cli.main import main
from biornn.train import train
from biornn.config import resolve
from test_train import TINY, data_dir  # noqa: F401  (the tiny names data set, a module fixture)


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch, tmp_path):
    # nothing may land in the working directory (MLflow's default ./mlruns, for one)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _run(data_dir, out, *track) -> None:  # noqa: F811
    args = [a for t in track for a in ("--track", t)]
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(out), *TINY, *args]) == 0


def test_tensorboard_event_files_hold_log_csv(data_dir, tmp_path):  # noqa: F811
    pytest.importorskip("tensorboard", reason="the track extra is part of dev")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    _run(data_dir, run, "tensorboard")
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    log, steps = _rows(run / "log.csv"), _rows(run / "steps.csv")
    for column in ("train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "grad_norm_mean", "lr"):
        events = acc.Scalars(column)
        assert [e.step for e in events] == [int(r["epoch"]) for r in log]
        # TensorBoard keeps float32
        assert [e.value for e in events] == pytest.approx([float(r[column]) for r in log], rel=1e-6), column
    grad = acc.Scalars("step/grad_norm")
    assert [e.step for e in grad] == [int(r["step"]) for r in steps]
    assert [e.value for e in grad] == pytest.approx([float(r["grad_norm"]) for r in steps], rel=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())
    assert acc.Scalars("test/accuracy")[-1].value == pytest.approx(metrics["test"]["accuracy"], rel=1e-6)
    assert {"curves", "confusion"} <= set(tags["images"])
    assert any(t.startswith("config") for t in tags["tensors"])
    assert {p.name for p in tmp_path.iterdir()} <= {"cache", "run"}


def test_mlflow_sqlite_store_holds_log_csv(data_dir, tmp_path):  # noqa: F811
    pytest.importorskip("mlflow", reason="the track extra is part of dev")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    _run(data_dir, run, "mlflow", "tensorboard")
    kept = json.loads((run / "tracking.json").read_text())
    uri = f"sqlite:///{run.resolve() / 'mlflow.db'}"
    assert kept["mlflow_uri"] == uri
    client = MlflowClient(tracking_uri=uri)
    found = client.get_run(kept["mlflow_run_id"])
    assert found.info.status == "FINISHED"
    assert found.data.params["hidden_size"] == "8" and found.data.params["cell"] == "lstm"
    log, steps = _rows(run / "log.csv"), _rows(run / "steps.csv")
    for column in ("train_loss", "val_loss", "val_macro_f1", "grad_norm_max", "lr"):
        history = sorted(client.get_metric_history(found.info.run_id, column), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), float(r[column])) for r in log], column
    history = sorted(client.get_metric_history(found.info.run_id, "step/grad_norm"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(int(r["step"]), float(r["grad_norm"])) for r in steps]
    metrics = json.loads((run / "metrics.json").read_text())
    assert found.data.metrics["test/balanced_accuracy"] == metrics["test"]["balanced_accuracy"]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"curves.png", "confusion.png", "metrics.json"} <= artifacts
    assert (run / "mlartifacts").is_dir()
    assert {p.name for p in tmp_path.iterdir()} <= {"cache", "run"}


def test_resume_continues_the_same_mlflow_run(data_dir, tmp_path):  # noqa: F811
    pytest.importorskip("mlflow", reason="the track extra is part of dev")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    cfg = resolve("names", overrides=[*TINY, "epochs=3"])
    quiet = lambda line: None  # noqa: E731
    assert train(cfg, run, str(data_dir), log=quiet, stop_after_epochs=1, track=["mlflow"]) == {}
    kept = json.loads((run / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=kept["mlflow_uri"])
    assert client.get_run(kept["mlflow_run_id"]).info.status == "KILLED"
    assert main(["train", "--resume", str(run), "--data-dir", str(data_dir), "--track", "mlflow"]) == 0
    assert json.loads((run / "tracking.json").read_text()) == kept
    found = client.get_run(kept["mlflow_run_id"])
    assert found.info.status == "FINISHED"
    history = client.get_metric_history(found.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert len(client.search_runs([found.info.experiment_id])) == 1


def test_bad_track_options_are_one_line_exit_2(data_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    base = ["train", "names", "--data-dir", str(data_dir), "--out", str(tmp_path / "run"), *TINY]
    assert main([*base, "--track", "wandb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--track: invalid choice: 'wandb' (choose from 'tensorboard', 'mlflow')" in err[0], err
    assert main([*base, "--track-uri", "sqlite:///x.db"]) == 2
    assert "--track-uri: applies to --track mlflow" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main([*base, "--track", "mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "biornn: error: --track mlflow: needs the mlflow package(s); pip install 'biornn[track]'"
    assert not (tmp_path / "run").exists()


def test_a_tracking_uri_mlflow_cannot_use_is_one_line_exit_2(data_dir, tmp_path, capsys):  # noqa: F811
    pytest.importorskip("mlflow", reason="the track extra is part of dev")
    base = ["train", "names", "--data-dir", str(data_dir), "--out", str(tmp_path / "run"), *TINY]
    assert main([*base, "--track", "mlflow", "--track-uri", "bogus://x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("biornn: error: --track mlflow: cannot open the tracking store bogus://x")
    assert not (tmp_path / "run").exists()


def test_an_unreachable_tracking_server_is_refused_before_training(data_dir, tmp_path, capsys):  # noqa: F811
    # MLflow itself retries with back-off for minutes on the first value; biornn asks once, briefly
    import socket

    pytest.importorskip("mlflow", reason="the track extra is part of dev")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = ["train", "names", "--data-dir", str(data_dir), "--out", str(tmp_path / "run"), *TINY, "--track", "mlflow"]
    assert main([*base, "--track-uri", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--track-uri http://127.0.0.1:{port}: cannot reach the tracking server" in err[0]
    assert main([*base, "--track-uri", "http://127.0.0.1:99999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--track-uri http://127.0.0.1:99999: " in err[0] and "port" in err[0].lower()
    assert not (tmp_path / "run").exists()
    # a server that answers is let through to MLflow (here a bare socket: MLflow's own error then follows)
    from biornn.tracking import check_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_server(f"http://127.0.0.1:{s.getsockname()[1]}/")
    check_server("sqlite:///x.db")  # not a server: nothing to ask


def test_an_interrupted_epoch_reaches_the_trackers_once(data_dir, tmp_path, monkeypatch):  # noqa: F811
    """Ctrl-C in the middle of epoch 2: the run shows as KILLED, and after --resume every step is in
    MLflow and TensorBoard once (the interrupted epoch's first steps, trained again, were sent twice)."""
    pytest.importorskip("mlflow", reason="the track extra is part of dev")
    pytest.importorskip("tensorboard", reason="the track extra is part of dev")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from biornn import tracking

    run = tmp_path / "run"
    epochs_logged, steps_after = [], []
    real_step, real_epoch = tracking.Trackers.log_step, tracking.Trackers.log_epoch

    def log_epoch(self, row):
        epochs_logged.append(row["epoch"])
        real_epoch(self, row)

    def log_step(self, row):
        real_step(self, row)
        if epochs_logged:
            steps_after.append(row["step"])
            if len(steps_after) == 2:  # two steps into epoch 2
                raise KeyboardInterrupt

    monkeypatch.setattr(tracking.Trackers, "log_step", log_step)
    monkeypatch.setattr(tracking.Trackers, "log_epoch", log_epoch)
    args = ["--track", "mlflow", "--track", "tensorboard"]
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(run), *TINY, "epochs=3", *args]) == 130
    kept = json.loads((run / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=kept["mlflow_uri"])
    assert client.get_run(kept["mlflow_run_id"]).info.status == "KILLED"
    monkeypatch.setattr(tracking.Trackers, "log_step", real_step)
    assert main(["train", "--resume", str(run), "--data-dir", str(data_dir), *args]) == 0
    steps = [int(r["step"]) for r in _rows(run / "steps.csv")]
    history = client.get_metric_history(kept["mlflow_run_id"], "step/loss")
    assert sorted(m.step for m in history) == steps  # each once
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    assert sorted(e.step for e in acc.Scalars("step/loss")) == steps


def test_moved_runs_and_in_memory_stores_are_refused(data_dir, tmp_path, capsys):  # noqa: F811
    pytest.importorskip("mlflow", reason="the track extra is part of dev")
    base = ["train", "names", "--data-dir", str(data_dir), *TINY]
    assert main([*base, "--out", str(tmp_path / "mem"), "--track", "mlflow", "--track-uri", "sqlite://"]) == 2
    assert "names no database file" in capsys.readouterr().err and not (tmp_path / "mem").exists()
    run = tmp_path / "run"
    cfg = resolve("names", overrides=[*TINY, "epochs=2"])
    assert train(cfg, run, str(data_dir), log=lambda line: None, stop_after_epochs=1, track=["mlflow"]) == {}
    moved = tmp_path / "moved"
    run.rename(moved)
    assert main(["train", "--resume", str(moved), "--data-dir", str(data_dir), "--track", "mlflow"]) == 2
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if line.startswith("biornn: error:")]
    assert len(errors) == 1 and f"the run was moved from {run.resolve()}" in errors[0], err
    assert not run.exists()  # nothing written at the old place


def test_first_line_cuts_at_a_word():
    from biornn.errors import first_line

    text = "the store is in maintenance mode and will not receive further updates; please migrate " * 3
    line = first_line(ValueError(text))
    assert len(line) <= 120 and line.endswith("...") and not line[:-3].endswith(" ")
    assert text.startswith(line[:-3])
    assert first_line(ValueError("short")) == "short"
