"""The ``ecg-anomaly`` task: an LSTM that predicts the next k ECG samples, scored by surprise.

On one of the nine two-lead ECG excerpts of ``ecg/discords/`` (the UCR
discord archive; ``labels.json`` gives each file's anomaly window and its
train/test rows):

- the training rows are split in time into a *fit* part and a *held-out* part
  (its last ``holdout`` fraction); both leads are normalised with the fit
  part's mean and standard deviation;
- a unidirectional stacked LSTM (:class:`biornn.models.SequencePredictor`)
  learns to predict the next ``horizon`` samples of both leads after every
  step (many-to-many, squared error), by truncated BPTT: the fit part is cut
  into ``batch_size`` parallel streams (their start shifted at random each
  epoch) and each step trains on the next ``truncate`` samples of every
  stream, the state carried (detached) from window to window -- memory
  does not depend on the record's length;
- the epoch with the lowest held-out prediction loss is kept; on the
  held-out rows the prediction-error vectors are fitted with a Gaussian and
  the default threshold is set (:mod:`biornn.anomaly`), all without test labels;
- the detector then runs over the whole record from its first row, as it
  would on a live stream, and is measured on the test rows.

A linear autoregressive predictor (:class:`biornn.baselines.LinearAR`) fitted
on the same fit rows and scored the same way is the ``baseline``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .. import anomaly
from ..config import TrainConfig
from ..data.ecg import RecordLabels, read_discord, read_labels
from ..data.registry import locate
from ..models import SequencePredictor
from .common import Batch, epoch_generator, load_model_state

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s
DEFAULTS = {
    "record": "chfdb_chf13_45590", "hidden_size": 64, "num_layers": 2, "bidirectional": False,
    "dropout": 0.0, "embedding_dim": 0, "ensemble": 1, "logit_adjustment": 0.0, "loss": "mse",
    "optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.0, "lr_schedule": "cosine", "batch_size": 4,
    "epochs": 150, "clip_norm": 1.0, "truncate": 100, "monitor": "loss",
}

KIND = "regression"
#: why this task refuses torchrun: each optimiser step trains ``batch_size`` parallel streams whose
#: recurrent state carries from one truncated-BPTT window to the next; sharding the streams across
#: processes would change which stream a window continues, so it trains in one process
NOT_DISTRIBUTED = ("its truncated-BPTT windows carry each stream's state from one step to the next; "
                   "train it in one process")
#: the columns log.csv gets after val_loss
LOG_FIELDS = ("val_rmse",)
#: what the per-epoch line shows beside the losses
LOG_SHOW = (("rmse", "val rmse"),)
DATASET = "ecg-discords"


@dataclass
class TaskData:
    """One record: its leads, rows and normalisation.

    ``x`` (N, L) raw samples; ``fit``, ``hold``, ``test`` are ``[start, stop)``
    row slices (``fit`` and ``hold`` split the labelled training rows in time).
    """

    record: str
    path: Path
    x: np.ndarray
    fs: float
    labels: RecordLabels
    fit: tuple[int, int]
    hold: tuple[int, int]
    test: tuple[int, int]
    mean: np.ndarray
    std: np.ndarray
    fingerprint: str = ""

    def z(self, rows: tuple[int, int] | None = None) -> np.ndarray:
        """Normalised samples of ``rows`` (all by default), (n, L) float64."""
        x = self.x if rows is None else self.x[rows[0]:rows[1]]
        return (x - self.mean) / self.std

    def meta(self) -> dict[str, Any]:
        """What a run keeps to use the model on new signals (JSON-able)."""
        return {"record": self.record, "leads": int(self.x.shape[1]), "fs": self.fs,
                "norm_mean": self.mean.tolist(), "norm_std": self.std.tolist()}


def records(data_dir: str | None = None) -> list[str]:
    """The record names (file stems) that ``labels.json`` lists."""
    root = locate(DATASET, data_dir) / "ecg" / "discords"
    return sorted(Path(n).stem for n in read_labels(root / "labels.json"))


def check_config(cfg: TrainConfig) -> None:
    """What only this task requires; ``ValueError`` naming the key."""
    if cfg.bidirectional:
        raise ValueError("config: bidirectional must be false for ecg-anomaly (a predictor reads only the past)")
    if cfg.ensemble != 1:
        raise ValueError("config: ensemble must be 1 for ecg-anomaly")
    if cfg.monitor != "loss":
        raise ValueError(f"config: monitor must be loss for ecg-anomaly, got {cfg.monitor!r}")
    if cfg.loss != "mse":
        raise ValueError(f"config: loss must be mse for ecg-anomaly (a regression), got {cfg.loss!r}")
    if not cfg.record:
        raise ValueError("config: record must name a discord record (or all)")


def subruns(cfg: TrainConfig, data_dir: str | None) -> list[tuple[str, TrainConfig]] | None:
    """``record=all``: one config per record of ``labels.json``; else None (a single run)."""
    if cfg.record != "all":
        return None
    return [(name, replace(cfg, record=name)) for name in records(data_dir)]


def load(cfg: TrainConfig, data_dir: str | None = None) -> TaskData:
    """The record ``cfg.record`` with its rows; ``ValueError`` naming the file and the problem."""
    root = locate(DATASET, data_dir) / "ecg" / "discords"
    labels_path = root / "labels.json"
    labels = read_labels(labels_path)
    name = cfg.record.removesuffix(".txt")
    if f"{name}.txt" not in labels:
        known = ", ".join(sorted(Path(n).stem for n in labels))
        raise ValueError(f"{labels_path}: no record {name!r}; records: {known} (or all)")
    lab = labels[f"{name}.txt"]
    path = root / f"{name}.txt"
    x, fs = read_discord(path)
    N = len(x)
    for what, (a, b) in (("train", lab.train), ("test", lab.test)):
        if b > N:
            raise ValueError(f"{labels_path}: {name!r} {what} rows [{a}, {b}) run past the end of {path.name} "
                             f"({N} rows)")
    for lo, hi in lab.anomaly:
        if not (lab.test[0] <= lo + 1 and hi <= lab.test[1]):
            raise ValueError(f"{labels_path}: {name!r} anomaly window [{lo}, {hi}] is not inside the test rows")
    n_train = lab.train[1] - lab.train[0]
    n_hold = int(round(cfg.holdout * n_train))
    fit = (lab.train[0], lab.train[1] - n_hold)
    hold = (fit[1], lab.train[1])
    if not lab.anomaly:
        raise ValueError(f"{labels_path}: {name!r} has no anomaly window; nothing to evaluate the detector on")
    # the fit part must give each of the batch_size streams some samples to learn from
    # (ten, after the k-step targets), the held-out part enough error vectors for the
    # cross-fitted Gaussians (k * L dimensions, fitted on each half)
    need_fit = 10 * cfg.batch_size + cfg.horizon
    need_hold = 4 * cfg.horizon * x.shape[1] + cfg.horizon
    if fit[1] - fit[0] < need_fit or hold[1] - hold[0] < need_hold:
        raise ValueError(f"{path}: too few training rows ({n_train}; with holdout={cfg.holdout:g}, "
                         f"batch_size={cfg.batch_size}, truncate={cfg.truncate}, horizon={cfg.horizon} "
                         f"this record needs at least {need_fit} to fit and {need_hold} held out)")
    mean, std = x[fit[0]:fit[1]].mean(axis=0), x[fit[0]:fit[1]].std(axis=0)
    if np.any(std <= 0):
        raise ValueError(f"{path}: a lead is constant over the training rows; nothing to predict")
    digest = hashlib.sha256(path.read_bytes())
    digest.update(repr((lab.anomaly, lab.train, lab.test, fit, hold)).encode())
    return TaskData(name, path, x, fs, lab, fit, hold, lab.test, mean, std, digest.hexdigest())


def build_model(cfg: TrainConfig, n_leads: int) -> SequencePredictor:
    return SequencePredictor(n_leads, cfg.horizon, cell=cfg.cell, hidden_size=cfg.hidden_size,
                             num_layers=cfg.num_layers, dropout=cfg.dropout, init=cfg.init,
                             forget_bias=cfg.forget_bias)


def build(cfg: TrainConfig, data: TaskData) -> SequencePredictor:
    return build_model(cfg, data.x.shape[1])


def _targets(z: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (N - k, L) and targets (N - k, k, L): ``y[t, j-1] = z[t + j]``."""
    zt = torch.as_tensor(z, dtype=torch.float32)
    y = zt.unfold(0, k + 1, 1)[:, :, 1:].permute(0, 2, 1)  # (N - k, k, L)
    return zt[: len(y)], y.contiguous()


def steps_per_epoch(cfg: TrainConfig, data: TaskData) -> int:
    """The most steps an epoch can take (with stream offset 0)."""
    n = data.fit[1] - data.fit[0] - cfg.horizon
    M = n // cfg.batch_size
    W = cfg.truncate or M
    return max(1, -(-M // W))


def train_batches(cfg: TrainConfig, model: SequencePredictor, data: TaskData, epoch: int) -> Iterator[Batch]:
    """Truncated BPTT over ``batch_size`` parallel streams of the fit rows, the state carried.

    The streams start at an offset drawn from a generator seeded by the seed
    and the epoch (so a resumed run sees the same windows), cut the fit rows
    into ``batch_size`` equal consecutive parts, and are read ``truncate``
    samples at a time.
    """
    x, y = _targets(data.z(data.fit), cfg.horizon)
    B = cfg.batch_size
    W0 = cfg.truncate or len(x) // B
    g = epoch_generator(cfg.seed, epoch)
    offset = int(torch.randint(0, max(1, min(W0, len(x) - B)), (1,), generator=g))
    M = (len(x) - offset) // B
    W = cfg.truncate or M
    L, k = x.shape[1], cfg.horizon
    xs = x[offset: offset + B * M].view(B, M, L)  # (B, M, L)
    ys = y[offset: offset + B * M].view(B, M, k, L)  # (B, M, k, L)
    state = None
    for s in range(0, M, W):
        pred, state = model(xs[:, s:s + W], state)
        yield Batch(pred, ys[:, s:s + W], None, B * xs[:, s:s + W].shape[1])
        state = type(state)(*(t.detach() for t in state))  # truncation: no gradient into the last window


def predict(model: SequencePredictor, z: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    """The model's predictions (T, k, L) after every step of a normalised signal z (T, L), from the zero
    state, in chunks whose state is carried (memory bounded by ``chunk``)."""
    model.eval()
    out, state = [], None
    with torch.no_grad():
        for s in range(0, len(z), chunk):
            inp = torch.as_tensor(z[s:s + chunk], dtype=torch.float32).unsqueeze(0)
            pred, state = model(inp, state)
            out.append(pred[0].double().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.horizon, model.n_features))


def validate(cfg: TrainConfig, model: SequencePredictor, data: TaskData, loss_fn) -> dict[str, float]:
    """Held-out prediction loss: the model runs over the training rows from the zero state and its
    predictions of the held-out rows (whose targets are known) are compared."""
    train_rows = (data.fit[0], data.hold[1])
    z = data.z(train_rows)
    pred = predict(model, z)  # (T, k, L)
    k = cfg.horizon
    start = data.hold[0] - train_rows[0]
    _, y = _targets(z, k)
    stop = len(y)
    p = torch.as_tensor(pred[start:stop], dtype=torch.float32)
    loss = float(loss_fn(replace(cfg, reduction="mean"), p, y[start:stop], None))
    mse = float(torch.mean((p - y[start:stop]) ** 2))
    return {"loss": loss, "rmse": mse ** 0.5}


def run_meta(cfg: TrainConfig, data: TaskData) -> dict[str, Any]:
    return {}


def _smooth_window(cfg: TrainConfig, data: TaskData) -> int:
    """``smooth``, or (0) one heart beat: the autocorrelation period of the training rows."""
    if cfg.smooth:
        return cfg.smooth
    return anomaly.beat_period(data.x[data.fit[0]:data.hold[1]], data.fs)


def detector_scores(pred_train: np.ndarray, pred_all: np.ndarray, data: TaskData, cfg: TrainConfig,
                    w: int) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """(scorer fitted on the held-out rows, every channel's smoothed score over the whole record,
    the record's error vectors (N, k, L))."""
    z_train = data.z((data.fit[0], data.hold[1]))
    E_train = anomaly.error_vectors(pred_train, z_train)
    E_hold = E_train[data.hold[0] - data.fit[0]:]
    scorer = anomaly.fit_scorer(E_hold, w, cfg.threshold_quantile, cfg.threshold_margin,
                                cfg.threshold_crossfit)
    E_all = anomaly.error_vectors(pred_all, data.z())
    return scorer, anomaly.score(E_all, scorer), E_all


def _test_metrics(scores: dict[str, np.ndarray], scorer: dict[str, Any],
                  data: TaskData) -> tuple[dict[str, Any], dict[str, dict]]:
    """(the joint channel's metrics as flat numbers, every channel's metrics) on the test rows."""
    a, b = data.test
    y = data.labels.mask(len(data.x))[a:b]
    per = {ch: anomaly.score_metrics(s[a:b], y, scorer["channels"][ch]["threshold"]) for ch, s in scores.items()}
    per = {ch: {k: (int(v) if isinstance(v, bool) else v) for k, v in m.items()} for ch, m in per.items()}
    flat = {k: round(v, 6) if isinstance(v, float) else v for k, v in per[anomaly.JOINT].items()}
    return flat, per


def finish(cfg: TrainConfig, model: SequencePredictor, data: TaskData, out: Path, log) -> tuple[dict, dict]:
    """Fit the scorer, measure the detector and the linear baseline on the test rows, plot.

    Returns ``(metrics, weights_meta)``: the task's part of ``metrics.json`` and
    what ``model.safetensors`` must also hold (the scorer) for ``biornn detect``.
    """
    w = _smooth_window(cfg, data)
    train_rows = (data.fit[0], data.hold[1])
    pred_train = predict(model, data.z(train_rows))
    pred_all = predict(model, data.z())
    scorer, scores, _ = detector_scores(pred_train, pred_all, data, cfg, w)
    test, test_leads = _test_metrics(scores, scorer, data)

    log("fitting the linear AR baseline on the same rows ...")
    from ..baselines import LinearAR

    t0 = time.perf_counter()
    ar = LinearAR(cfg.baseline_order, cfg.horizon).fit(data.z(data.fit))
    seconds = time.perf_counter() - t0
    b_scorer, b_scores, _ = detector_scores(ar.predict(data.z(train_rows)), ar.predict(data.z()), data, cfg, w)
    base, base_leads = _test_metrics(b_scores, b_scorer, data)
    base = {"name": "linear-ar", "order": cfg.baseline_order, **base, "train_seconds": round(seconds, 3)}

    from ..plots import plot_detection

    pred1 = np.full_like(data.x, np.nan)  # the prediction of x_t made after step t-1, in the leads' units
    pred1[1:] = pred_all[:-1, 0] * data.std + data.mean
    plot_detection(data.x, data.labels.mask(len(data.x)), data.test, pred1,
                   scores[anomaly.JOINT], scorer["channels"][anomaly.JOINT]["threshold"],
                   out / "detection.png", title=f"{data.record}: {cfg.cell} (horizon-1 prediction), score "
                   f"(smoothed over {w}), label-free threshold")
    metrics = {
        "record": data.record,
        "test": test,
        "baseline": base,
        # every channel: both leads jointly ("both", the detector's score) and each lead alone
        "per_lead": {"test": test_leads, "baseline": base_leads},
        "smooth": w,
        "threshold": scorer["channels"][anomaly.JOINT]["threshold"],
        "fs": data.fs,
        "n": {"fit": data.fit[1] - data.fit[0], "holdout": data.hold[1] - data.hold[0],
              "test": data.test[1] - data.test[0]},
    }
    return metrics, {"scorer": scorer}


# -- using a trained run -------------------------------------------------------------

def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> SequencePredictor:
    """The model of a run's ``model.safetensors``; ``ValueError`` naming it when the metadata is unusable."""
    for key in ("leads", "norm_mean", "norm_std", "scorer", "data_fingerprint"):
        if key not in meta:
            raise ValueError(f"{path}: metadata has no {key!r} (was the run finished?)")
    L = meta["leads"]
    if (not isinstance(L, int) or L < 1 or not isinstance(meta["norm_mean"], list) or len(meta["norm_mean"]) != L
            or not isinstance(meta["norm_std"], list) or len(meta["norm_std"]) != L):
        raise ValueError(f"{path}: metadata leads and normalisation do not match")
    scorer = meta["scorer"]
    try:
        ok = isinstance(scorer["smooth"], int) and scorer["smooth"] >= 0 and all(
            len(scorer["channels"][ch]["mean"]) == len(scorer["channels"][ch]["precision"])
            and isinstance(scorer["channels"][ch]["threshold"], float) for ch in anomaly.channels(L))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise ValueError(f"{path}: metadata has an unusable anomaly scorer")
    model = build_model(cfg, L)
    load_model_state(model, tensors, path)
    return model.eval()


def evaluate_saved(cfg: TrainConfig, model: SequencePredictor, meta: dict, data: TaskData) -> dict[str, Any]:
    """The test metrics of a saved detector (its scorer as saved) on the record's test rows."""
    scorer = meta["scorer"]
    pred_all = predict(model, data.z())
    scores = anomaly.score(anomaly.error_vectors(pred_all, data.z()), scorer)
    test, leads = _test_metrics(scores, scorer, data)
    return {"record": data.record, "test": test, "per_lead": leads}


def detect(model: SequencePredictor, meta: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offline detection on a raw signal (T, L): smoothed joint score (T,) and flags (T,)."""
    z = (x - np.asarray(meta["norm_mean"])) / np.asarray(meta["norm_std"])
    scorer = meta["scorer"]
    pred = predict(model, z)
    s = anomaly.score(anomaly.error_vectors(pred, z), scorer)[anomaly.JOINT]
    th = scorer["channels"][anomaly.JOINT]["threshold"]
    return s, np.isfinite(s) & (s > th)


def summary_row(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """One record's line of the ``record=all`` table."""
    t, b = metrics["test"], metrics["baseline"]
    return {"record": name, "roc_auc": t["roc_auc"], "pr_auc": t["pr_auc"], "f1": t["f1"], "best_f1": t["best_f1"],
            "hit": t["hit"], "false_alarms": t["false_alarms"], "baseline_roc_auc": b["roc_auc"],
            "baseline_pr_auc": b["pr_auc"], "baseline_f1": b["f1"], "baseline_best_f1": b["best_f1"],
            "baseline_hit": b["hit"], "baseline_false_alarms": b["false_alarms"],
            "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs"], "smooth": metrics["smooth"]}
