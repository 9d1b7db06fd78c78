"""The ``forecast`` task: the next ``horizon`` steps of the user's series (many-to-many regression).

``biornn train forecast --train A.csv [--val V.csv] [--test B.csv]``: a
CSV/TSV of numeric columns is one multivariate series (rows are steps,
columns features); a UCR table holds one univariate series per line (its
label is ignored); an NPZ archive holds ``X`` (N, T, F) with optional
``lengths`` (:mod:`biornn.tasks.userdata`).  Every feature is normalised with
the training part's mean and standard deviation.

- a causal recurrent model predicts, after every step t, the next k =
  ``horizon`` steps of every feature, as a change from x_t
  (:class:`biornn.models.SequencePredictor`: ``pred[t, j-1] = x_t + W h_t + b``
  for x_{t+j}); it trains by truncated BPTT on windows of ``truncate`` steps
  (from the zero state; the window grid is shifted at random every epoch),
  the loss the mean squared error of every target that lies inside its series;
- validation and test run each series whole from the zero state;
- measured by RMSE and MAE in the data's own units, and RMSE of the
  normalised values (the mean over features), on the test steps t with
  ``t >= p - 1`` and ``t + k < T`` (p = ``baseline_order``), beside a linear
  autoregression of order p fitted by least squares on the training part
  (:class:`biornn.baselines.LinearAR`, the ``baseline``) and the persistence
  forecast x_{t+j} = x_t (``persistence``), on the same steps.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..config import TrainConfig
from ..models import SequencePredictor
from . import userdata
from .common import Batch, epoch_generator, load_model_state

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s
DEFAULTS = {
    "hidden_size": 64, "num_layers": 1, "bidirectional": False, "dropout": 0.0, "embedding_dim": 0,
    "ensemble": 1, "logit_adjustment": 0.0, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4,
    "lr_schedule": "onecycle", "batch_size": 16, "epochs": 20, "clip_norm": 1.0, "monitor": "loss",
    "horizon": 1, "truncate": 200, "baseline_order": 8,
}

KIND = "regression"
DISTRIBUTED = False
NOT_DISTRIBUTED = "the user's files train in one process"
LOG_FIELDS = ("val_rmse",)
LOG_SHOW = (("rmse", "val rmse"),)
#: steps run at once when a long series is predicted (the state is carried between chunks)
CHUNK = 20_000


def build_model(cfg: TrainConfig, n_features: int) -> SequencePredictor:
    return SequencePredictor(n_features, cfg.horizon, cell=cfg.cell, hidden_size=cfg.hidden_size,
                             num_layers=cfg.num_layers, dropout=cfg.dropout, init=cfg.init,
                             forget_bias=cfg.forget_bias)


def targets(z: np.ndarray, k: int) -> np.ndarray:
    """``y[t, j-1] = z[t + j]`` for j = 1..k: (T, k, F), NaN where t + j is past the series' end."""
    T, F = z.shape
    y = np.full((T, k, F), np.nan, dtype=np.float32)
    for j in range(1, k + 1):
        y[: T - j, j - 1] = z[j:]
    return y


def predict_series(model: SequencePredictor, z: np.ndarray) -> np.ndarray:
    """The model's predictions (T, k, F) after every step of a normalised series z (T, F), from the zero
    state, in chunks of :data:`CHUNK` steps whose state is carried."""
    model.eval()
    out, state = [], None
    with torch.no_grad():
        for s in range(0, len(z), CHUNK):
            pred, state = model(torch.as_tensor(z[s : s + CHUNK], dtype=torch.float32)[None], state)
            out.append(pred[0].double().numpy())
    return np.concatenate(out)


# -- the baselines -------------------------------------------------------------------------

def fit_ar(series: list[np.ndarray], order: int, horizon: int):
    """:class:`biornn.baselines.LinearAR` fitted on several series at once: the lagged rows of every
    series stacked (no window spans two series), least squares ``min ||X A - Y||^2 + ridge``."""
    from ..baselines import LinearAR, _lagged

    ar = LinearAR(order, horizon)
    rows, outs = [], []
    for x in series:
        T, L = x.shape
        if T < order + horizon + 1:
            continue
        X = _lagged(x[: T - horizon].astype(np.float64), order)  # rows for t = p-1 .. T-k-1
        t = np.arange(order - 1, T - horizon)
        rows.append(np.hstack([X, np.ones((len(X), 1))]))
        outs.append(np.stack([x[t + j] - x[t] for j in range(1, horizon + 1)], axis=1).reshape(len(t), -1))
    if not rows:
        raise ValueError(f"baseline: no training series is longer than baseline_order + horizon = "
                         f"{order + horizon}; lower baseline_order")
    X, Y = np.concatenate(rows), np.concatenate(outs)
    G = X.T @ X
    G += ar.ridge * np.trace(G) / len(G) * np.eye(len(G))
    ar.coef = np.linalg.solve(G, X.T @ Y)  # (p*L + 1, k*L)
    return ar


def scored_steps(T: int, order: int, horizon: int) -> slice:
    """The steps t scored for every method: the AR has its p past steps and every target lies inside."""
    return slice(order - 1, max(order - 1, T - horizon))


def _errors(preds: list[np.ndarray], part: userdata.Part, cfg: TrainConfig) -> np.ndarray:
    """Errors (n, k, F) in normalised units of ``preds`` (each (T_i, k, F)) on the scored steps."""
    out = []
    for p, z in zip(preds, part.x):
        steps = scored_steps(len(z), cfg.baseline_order, cfg.horizon)
        out.append(p[steps] - targets(z, cfg.horizon)[steps])
    return np.concatenate(out) if out else np.zeros((0, cfg.horizon, 1))


def _measures(err: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """RMSE and MAE in the data's units (errors times each feature's std), RMSE in normalised units."""
    raw = err * std  # (n, k, F)
    return {"rmse": float(np.sqrt(np.mean(raw**2))), "mae": float(np.mean(np.abs(raw))),
            "rmse_normalized": float(np.sqrt(np.mean(err**2)))}


def _std(data_norm: dict | None, F: int) -> np.ndarray:
    return np.asarray(data_norm["std"]) if data_norm is not None else np.ones(F)


def test_metrics(cfg: TrainConfig, model: SequencePredictor, data: userdata.UserData) -> dict[str, Any]:
    """The model's, the linear AR's and persistence's test measures on the same steps."""
    test = data.parts["test"]
    std = _std(data.norm, data.n_features)
    err = _errors([predict_series(model, z) for z in test.x], test, cfg)
    if not len(err):
        raise ValueError(f"{cfg.test_file or cfg.train_file}: no test series is longer than baseline_order + "
                         f"horizon = {cfg.baseline_order + cfg.horizon} steps; lower baseline_order")
    ar = fit_ar(data.parts["train"].x, cfg.baseline_order, cfg.horizon)
    ar_err = _errors([ar.predict(z.astype(np.float64)) for z in test.x], test, cfg)
    still = _errors([np.repeat(z[:, None, :].astype(np.float64), cfg.horizon, axis=1) for z in test.x], test, cfg)
    return {"test": {**_measures(err, std), "n_steps": int(len(err))},
            "baseline": {"name": "linear-ar", "order": cfg.baseline_order, **_measures(ar_err, std)},
            "persistence": _measures(still, std)}


# -- the training loop's hooks (biornn.train) ----------------------------------------

def check_config(cfg: TrainConfig) -> None:
    if not cfg.train_file:
        raise ValueError("task forecast: give the training file (--train FILE or train_file=...)")
    if cfg.monitor != "loss":
        raise ValueError(f"config: monitor must be loss for forecast, got {cfg.monitor!r}")
    if cfg.ensemble != 1:
        raise ValueError("task forecast: ensemble must be 1")
    if cfg.bidirectional:
        raise ValueError("task forecast: a forecast reads the past only; bidirectional must be false")
    if cfg.embedding_dim:
        raise ValueError("task forecast: values are read as vectors; embedding_dim must be 0")


def subruns(cfg: TrainConfig, data_dir: str | None) -> None:
    return None


def load(cfg: TrainConfig, data_dir: str | None = None) -> userdata.UserData:
    """The user's series (``train_file``, ``val_file``, ``test_file``); ``data_dir`` is not used."""
    data = userdata.load(cfg, "forecast")
    files = {"train": cfg.train_file, "val": cfg.val_file or cfg.train_file, "test": cfg.test_file or cfg.train_file}
    for part in ("train", "val"):
        p = data.parts[part]
        if not any(len(z) > cfg.horizon for z in p.x):
            raise ValueError(f"{files[part]}: no {part} series is longer than horizon {cfg.horizon}")
    # what the linear AR baseline and the scoring need, checked before any training (not after it)
    need = cfg.baseline_order + cfg.horizon
    if not any(len(z) > need for z in data.parts["train"].x):  # fit_ar's rows
        raise ValueError(f"{files['train']}: no train series is longer than baseline_order + horizon = {need} "
                         f"steps; lower baseline_order")
    if not any(len(z) >= need for z in data.parts["test"].x):  # scored_steps: at least one step
        raise ValueError(f"{files['test']}: no test series has baseline_order + horizon = {need} steps or more; "
                         f"lower baseline_order")
    return data


def build(cfg: TrainConfig, data: userdata.UserData) -> SequencePredictor:
    return build_model(cfg, data.n_features)


def _windows(cfg: TrainConfig, data: userdata.UserData, epoch: int) -> list[tuple[int, int, int]]:
    """(series, start, stop) of this epoch's training windows, shuffled: each series cut every
    ``truncate`` steps from an offset drawn for the epoch (so that window edges move)."""
    W = cfg.truncate or max(len(z) for z in data.parts["train"].x)
    g = epoch_generator(cfg.seed, epoch)
    out = []
    for i, z in enumerate(data.parts["train"].x):
        T = len(z) - cfg.horizon  # steps with at least one target inside the series
        if T <= 0:
            continue
        offset = int(torch.randint(0, min(W, T), (1,), generator=g))
        starts = [0, *range(offset, T, W)] if offset else list(range(0, T, W))
        for a, b in zip(starts, [*starts[1:], T]):
            if b > a:
                out.append((i, a, b))
    order = torch.randperm(len(out), generator=g).tolist()
    return [out[j] for j in order]


def steps_per_epoch(cfg: TrainConfig, data: userdata.UserData) -> int:
    return math.ceil(len(_windows(cfg, data, 1)) / cfg.batch_size)


def train_batches(cfg: TrainConfig, model: SequencePredictor, data: userdata.UserData, epoch: int) -> Iterator[Batch]:
    """Batches of windows (B, W, F) from the zero state; the loss is over the targets (n, k, F) that exist."""
    part = data.parts["train"]
    k = cfg.horizon
    windows = _windows(cfg, data, epoch)
    for s in range(0, len(windows), cfg.batch_size):
        chunk = windows[s : s + cfg.batch_size]
        W = max(b - a for _, a, b in chunk)
        F = data.n_features
        x = np.zeros((len(chunk), W, F), dtype=np.float32)
        y = np.full((len(chunk), W, k, F), np.nan, dtype=np.float32)
        for r, (i, a, b) in enumerate(chunk):
            z = part.x[i]
            x[r, : b - a] = z[a:b]
            y[r, : b - a] = targets(z, k)[a:b]
        valid = torch.from_numpy(~np.isnan(y).any(axis=(2, 3)))  # (B, W): every target of the step exists
        pred, _ = model(torch.from_numpy(x))  # (B, W, k, F); padding follows the real steps, so it changes none
        yield Batch(pred[valid], torch.from_numpy(y)[valid], None, int(valid.sum()))


def validate(cfg: TrainConfig, model: SequencePredictor, data: userdata.UserData, loss_fn) -> dict[str, float]:
    """Mean squared error (normalised units) of every validation step whose k targets exist."""
    errs = []
    for z in data.parts["val"].x:
        y = targets(z, cfg.horizon)
        ok = ~np.isnan(y).any(axis=(1, 2))
        errs.append((predict_series(model, z)[ok] - y[ok]).reshape(-1))
    mse = float(np.mean(np.concatenate(errs) ** 2))
    return {"loss": mse, "rmse": mse**0.5}


def run_meta(cfg: TrainConfig, data: userdata.UserData) -> dict[str, Any]:
    return {}


def finish(cfg: TrainConfig, model: SequencePredictor, data: userdata.UserData, out: Path, log) -> tuple[dict, dict]:
    """Test measures of the best weights beside the linear AR and persistence; the forecast plot."""
    log(f"fitting the linear autoregression (order {cfg.baseline_order}) on the same training part ...")
    metrics = test_metrics(cfg, model, data)
    metrics["n"] = {part: len(p.x) for part, p in data.parts.items()}
    metrics["steps"] = {part: int(sum(len(x) for x in p.x)) for part, p in data.parts.items()}
    plot_forecast(cfg, model, data, out / "forecast.png")
    return metrics, {}


def plot_forecast(cfg: TrainConfig, model: SequencePredictor, data: userdata.UserData, path: Path,
                  most: int = 2000) -> None:
    """The first test series' first feature (at most ``most`` steps) in the data's units, with the
    model's and the linear AR's one-step-ahead predictions."""
    from ..checkpoint import atomic_path
    from ..plots import _pyplot

    z = data.parts["test"].x[0]
    mean = np.asarray(data.norm["mean"]) if data.norm is not None else np.zeros(data.n_features)
    std = _std(data.norm, data.n_features)
    T = min(len(z), most)
    ar = fit_ar(data.parts["train"].x, cfg.baseline_order, cfg.horizon)
    model_next = predict_series(model, z)[: T - 1, 0, 0]  # the prediction of step t + 1, made at t
    ar_next = ar.predict(z.astype(np.float64))[: T - 1, 0, 0]
    unit = lambda v: v * std[0] + mean[0]  # noqa: E731
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 4))
    t = np.arange(T)
    ax.plot(t, unit(z[:T, 0]), color="black", lw=1, label="series")
    ax.plot(t[1:], unit(model_next), lw=1, label=f"{cfg.cell} (1 step ahead)")
    ax.plot(t[1:], unit(ar_next), lw=1, ls="--", label=f"linear AR({cfg.baseline_order})")
    ax.set(xlabel="step", ylabel="feature 1", title=f"test series {data.parts['test'].ids[0]}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def evaluate_saved(cfg: TrainConfig, model: SequencePredictor, meta: dict, data: userdata.UserData) -> dict[str, Any]:
    """``biornn evaluate``: the saved model's test measures (beside the AR and persistence)."""
    return test_metrics(cfg, model, data)


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> SequencePredictor:
    """The model of a run's ``model.safetensors``."""
    userdata.check_meta(meta, path)
    model = build_model(cfg, meta["n_features"])
    load_model_state(model, tensors, path)
    return model


def predict_rows(model: SequencePredictor, meta: dict, inputs: list[str]) -> list[dict[str, Any]]:
    """For each input series (a JSON array, or numbers separated by commas): the next ``horizon`` steps
    after its last one, in the data's units (a list of k numbers for one feature, else k lists of F)."""
    cfg = meta.get("config", {})
    xs = userdata.parse_inputs(meta, inputs, int(cfg.get("max_length", 0) or 0))
    norm = meta["normalize"]
    F = int(meta["n_features"])
    mean = np.asarray(norm["mean"]) if norm is not None else np.zeros(F)
    std = np.asarray(norm["std"]) if norm is not None else np.ones(F)
    rows = []
    for text, z in zip(inputs, xs):
        nxt = predict_series(model, z)[-1] * std + mean  # (k, F)
        values = [round(float(v), 6) for v in nxt[:, 0]] if F == 1 else \
            [[round(float(v), 6) for v in step] for step in nxt]
        rows.append({"input_steps": len(z), "forecast": values})
    return rows
