"""Experiment tracking besides the always-on log.csv: TensorBoard and MLflow.

``biornn train names --track tensorboard --track mlflow`` sends, from rank 0
of the run:

- the config (TensorBoard: a ``config`` text; MLflow: one parameter per key);
- every optimiser step's loss, gradient norm (before clipping) and learning
  rate, the rows of steps.csv (tags ``step/loss``, ``step/grad_norm``, ``step/lr``);
- every epoch's log.csv row, one metric per column under the column's name
  (``train_loss``, ``val_loss``, ``val_accuracy``, ..., step = the epoch);
- at the end the test metrics (``test/accuracy``, ...), metrics.json and the
  run's plots (TensorBoard: images; MLflow: artifacts).

TensorBoard writes event files to ``RUN/tensorboard`` (``tensorboard --logdir
RUN/tensorboard``).  MLflow writes to a SQLite backend store,
``sqlite:///RUN/mlflow.db`` unless ``--track-uri`` names another tracking URI,
with the artifacts in ``RUN/mlartifacts`` (a new experiment ``biornn-TASK``
on another URI keeps that server's default artifact location); the MLflow
run id is kept in ``RUN/tracking.json`` so that ``--resume`` continues the
same MLflow run.  ``mlflow ui --backend-store-uri sqlite:///RUN/mlflow.db``
shows it.

Both are optional extras (``pip install 'biornn[track]'``); the packages are
imported only here, inside the functions that use them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from . import checkpoint
from .config import TrainConfig
from .errors import first_line

TRACKERS = ("tensorboard", "mlflow")

#: what each tracker imports, and the extra that installs it
_NEEDS = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow", "sqlalchemy", "alembic")}
EXTRA = "track"


def check_trackers(track: tuple[str, ...] | list[str], uri: str | None = None) -> None:
    """Refuse unknown trackers, ``uri`` without mlflow, and a tracker whose package is missing
    (``ValueError``, one line naming ``pip install 'biornn[track]'``)."""
    import importlib.util

    for name in track:
        if name not in TRACKERS:
            raise ValueError(f"--track: unknown tracker {name!r}; choose {' or '.join(TRACKERS)}")
    if uri is not None and "mlflow" not in track:
        raise ValueError("--track-uri: applies to --track mlflow")
    if uri is not None and not uri.strip():
        raise ValueError("--track-uri: empty")
    if uri is not None and uri.strip().startswith("sqlite:") and uri.strip().rstrip("/") in ("sqlite:", "sqlite:/",
                                                                                           "sqlite://"):
        raise ValueError(f"--track-uri {uri}: names no database file (an in-memory store: everything logged "
                         f"would be lost); give sqlite:////absolute/path.db")
    for name in dict.fromkeys(track):
        missing = [m for m in _NEEDS[name] if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(f"--track {name}: needs the {', '.join(missing)} package(s); "
                             f"pip install 'biornn[{EXTRA}]'")
    if uri is not None:
        check_server(uri)


#: seconds to wait for a tracking server to accept a connection before training starts
CONNECT_TIMEOUT = 5.0


def check_server(uri: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """For an ``http(s)://`` tracking URI, refuse (``ValueError``, one line) a server that does not
    accept a TCP connection within ``timeout`` seconds -- before training, instead of MLflow's
    retries with back-off (minutes) on the first logged value.  Other URIs are left to MLflow."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri.strip())
    if parts.scheme not in ("http", "https"):
        return
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:  # a port that is not a number or out of range
        raise ValueError(f"--track-uri {uri}: {e}") from None
    if not host:
        raise ValueError(f"--track-uri {uri}: no host name")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or first_line(e))
        raise ValueError(f"--track-uri {uri}: cannot reach the tracking server at {host}:{port} ({reason})") from None


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    """The finite numeric values of a row (log.csv, steps.csv, the test metrics)."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


class _TensorBoard:
    def __init__(self, out: Path, cfg: TrainConfig, resume: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))
        self.pending: list[dict[str, Any]] = []
        if not resume:
            text = "```json\n" + cfg.to_json() + "\n```"  # TensorBoard renders the text as Markdown
            self.writer.add_text("config", text, 0)

    def log_step(self, row: dict[str, Any]) -> None:
        # held until the epoch is checkpointed: an interrupted epoch is trained again on --resume, and
        # its steps written now would be there twice
        self.pending.append(row)

    def log_epoch(self, row: dict[str, Any]) -> None:
        for step in self.pending:
            for key in ("loss", "grad_norm", "lr"):
                self.writer.add_scalar(f"step/{key}", float(step[key]), step["step"])
        self.pending = []
        for key, value in _numbers(row).items():
            if key != "epoch":
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()  # an interrupted run keeps what it logged

    def log_finish(self, metrics: dict[str, Any], images: list[Path], epoch: int) -> None:
        import matplotlib.image

        for key, value in _numbers(metrics.get("test", {})).items():
            self.writer.add_scalar(f"test/{key}", value, epoch)
        self.writer.add_text("metrics", "```json\n" + json.dumps(metrics, indent=2) + "\n```", epoch)
        for path in images:
            pixels = matplotlib.image.imread(path)[..., :3]  # RGBA floats in [0, 1] -> RGB
            self.writer.add_image(path.stem, pixels, epoch, dataformats="HWC")

    def close(self, status: str) -> None:
        self.pending = []  # the steps of an epoch that was not checkpointed: --resume trains it again
        self.writer.close()


def _retry_new_store(call: Any, tries: int = 5) -> Any:
    """``call()``, tried again where another process is creating the same new SQLite store's tables at
    the same moment (MLflow: "table ... already exists"): two runs started together on one shared file."""
    import time

    for attempt in range(tries):
        try:
            return call()
        except Exception as e:
            if "already exists" not in str(e) or attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


class _MLflow:
    def __init__(self, out: Path, cfg: TrainConfig, uri: str | None, resume: bool) -> None:
        import logging

        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        # MLflow announces creating its tables at INFO on stderr, and warns about some stores at WARNING
        # before failing on them; the run's own lines (one, for an error) are what the user reads
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        logging.getLogger("mlflow.utils.databricks_utils").setLevel(logging.ERROR)
        self.out = out
        if uri is not None and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            # a relative database path: made absolute, so that a resume from another directory opens it
            uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
        self.uri = uri or f"sqlite:///{(out / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.pending: list = []
        kept = out / "tracking.json"
        run_id = None
        if resume and kept.is_file():
            try:
                saved = json.loads(kept.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise ValueError(f"{kept}: not readable JSON") from None
            if saved.get("mlflow_uri") == self.uri:
                run_id = saved.get("mlflow_run_id")
            elif uri is None and str(saved.get("mlflow_uri", "")).endswith("/mlflow.db"):
                # the run's own store, recorded under the folder the run was in: it was moved, and the
                # store keeps its artifact folder as an absolute path there
                before = Path(str(saved["mlflow_uri"]).removeprefix("sqlite:///")).parent
                raise ValueError(f"{out}: the run was moved from {before}, and its MLflow store records its "
                                 f"artifact folder there; resume it at {before}, or resume without --track mlflow")
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
        else:
            name = f"biornn-{cfg.task}"
            experiment = _retry_new_store(lambda: self.client.get_experiment_by_name(name))
            if experiment is not None:
                experiment_id = experiment.experiment_id
            else:  # the default store keeps its artifacts in the run directory too, not in ./mlruns
                where = (out / "mlartifacts").resolve().as_uri() if uri is None else None
                experiment_id = self.client.create_experiment(name, artifact_location=where)
            run = self.client.create_run(experiment_id, run_name=out.name,
                                         tags={"biornn.run_dir": str(out.resolve()), "biornn.task": cfg.task})
            run_id = run.info.run_id
            params = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in cfg.to_dict().items()]
            self.client.log_batch(run_id, params=params)
            checkpoint.write_json(kept, {"mlflow_uri": self.uri, "mlflow_run_id": run_id})
        self.run_id = run_id

    def _metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.pending.extend(Metric(k, v, stamp, step) for k, v in values.items())

    def _flush(self) -> None:
        # one SQLite transaction per 1000 values, not one per value: a names epoch has hundreds of steps
        while self.pending:
            chunk, self.pending = self.pending[:1000], self.pending[1000:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_step(self, row: dict[str, Any]) -> None:
        self._metrics({f"step/{k}": float(row[k]) for k in ("loss", "grad_norm", "lr")}, row["step"])

    def log_epoch(self, row: dict[str, Any]) -> None:
        self._metrics({k: v for k, v in _numbers(row).items() if k != "epoch"}, row["epoch"])
        self._flush()

    def log_finish(self, metrics: dict[str, Any], images: list[Path], epoch: int) -> None:
        self._metrics({f"test/{k}": v for k, v in _numbers(metrics.get("test", {})).items()}, epoch)
        self._flush()
        for path in [*images, self.out / "metrics.json"]:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        if status != "FINISHED":  # the steps of an epoch that was not checkpointed: --resume trains it again
            self.pending = []
        self._flush()
        self.client.set_terminated(self.run_id, status=status)


class Trackers:
    """The trackers of one run (rank 0 only); each method sends to all of them."""

    def __init__(self, backends: list) -> None:
        self.backends = backends
        self.epoch = 0
        self.closed = False

    def log_step(self, row: dict[str, Any]) -> None:
        """One steps.csv row: ``step``, ``loss``, ``grad_norm``, ``lr``."""
        for b in self.backends:
            b.log_step(row)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """One log.csv row (``epoch`` is the step of its metrics)."""
        self.epoch = row["epoch"]
        for b in self.backends:
            b.log_epoch(row)

    def log_finish(self, metrics: dict[str, Any], images: list[Path]) -> None:
        """The test metrics of metrics.json and the plots (PNG files)."""
        for b in self.backends:
            b.log_finish(metrics, images, self.epoch)

    def close(self, failed: bool = False, finished: bool = True, interrupted: bool = False) -> None:
        """Flush and close; MLflow's run ends FINISHED, FAILED or (interrupted, to resume) KILLED."""
        if self.closed:
            return
        self.closed = True
        status = "KILLED" if interrupted or not (failed or finished) else ("FAILED" if failed else "FINISHED")
        for b in self.backends:
            b.close(status)


def open_trackers(track: tuple[str, ...] | list[str], out: Path, cfg: TrainConfig, uri: str | None = None,
                  resume: bool = False) -> Trackers | None:
    """The trackers ``track`` names for the run directory ``out``; ``None`` for none."""
    if not track:
        return None
    backends: list = []
    for name in dict.fromkeys(track):
        try:
            backends.append(_TensorBoard(out, cfg, resume) if name == "tensorboard" else
                            _MLflow(out, cfg, uri, resume))
        except Exception as e:  # e.g. a tracking URI MLflow has no store for: one line, not its traceback
            for b in backends:
                b.close("FAILED")
            if isinstance(e, ValueError) and not type(e).__module__.startswith("mlflow"):
                raise
            where = f" {uri}" if uri and name == "mlflow" else ""
            raise ValueError(f"--track {name}: cannot open the tracking store{where} ({first_line(e)})") from None
    return Trackers(backends)
