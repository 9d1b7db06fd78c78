"""The ``classify`` task: the user's own sequences or series -> one class each (many-to-one).

``biornn train classify --train A.tsv [--val V.tsv] [--test B.tsv]``: the files
are read by :mod:`biornn.tasks.userdata` (FASTA with ``label=`` headers, a
CSV/TSV table with a sequence or numeric columns and a label column, a UCR
table, an NPZ archive of multivariate, variable-length series).

- the inputs are residue weights (symbols) or per-feature normalised values,
  (T_i, F) for record i; the training file fixes the alphabet and the classes;
- a bidirectional recurrent layer reads the whole record and the read-out sees
  the maximum of every output unit over the real steps
  (:class:`biornn.models.VectorClassifier`, ``pool="max"``): the evidence may
  lie anywhere in a user's record, and the maximum finds it wherever it is
  (on the splice file, 20 epochs, test accuracy 0.94 and 0.88 for seeds 0
  and 1 with ``max``, 0.85 and 0.69 reading the ends, ``last``); an ensemble
  of ``ensemble`` models averages probabilities;
- measured by accuracy, balanced accuracy and macro-F1 on the test part,
  beside a logistic regression without recurrence on the same parts (the
  ``baseline``, :func:`baseline_features`): one-hot residues flattened when
  every sequence has the same length, else the frequencies of 1-, 2- and
  3-mers; for numeric series each feature resampled to at most
  :data:`RESAMPLE` steps plus its mean, standard deviation, minimum and maximum.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from ..config import TrainConfig
from ..metrics import classification_metrics
from ..models import Ensemble, VectorClassifier
from . import userdata
from .common import Batch, batches_per_epoch, shuffled_batches, load_model_state
from .names import class_weights
from .splice import pad_vectors

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s
DEFAULTS = {
    "hidden_size": 32, "num_layers": 1, "bidirectional": True, "dropout": 0.2, "embedding_dim": 0,
    "ensemble": 1, "logit_adjustment": 0.0, "optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-2,
    "lr_schedule": "onecycle", "batch_size": 32, "epochs": 20, "clip_norm": 1.0, "monitor": "accuracy",
    # a record of more steps is an input error unless max_length says otherwise (0 = no limit): one
    # backpropagation through 10^5 steps is already minutes, and a stray 100 MB line is not a record
    "max_length": 100_000,
}

KIND = "classification"
DISTRIBUTED = False
#: ``refit`` can train on the training and validation parts together (:func:`.common.with_val_in_train`)
REFIT = True
NOT_DISTRIBUTED = "the user's files train in one process"
LOG_FIELDS = ("val_accuracy", "val_balanced_accuracy", "val_macro_f1")
LOG_SHOW = (("accuracy", "val acc"), ("balanced_accuracy", "val bal acc"))
METRIC_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")
#: the summary of the recurrent outputs the read-out sees (:class:`biornn.models.VectorClassifier`)
POOL = "max"
#: the baseline's L2 strengths, one picked by validation accuracy
BASELINE_C = (0.03, 0.1, 0.3, 1.0, 3.0)
#: steps each numeric feature is resampled to for the baseline
RESAMPLE = 64
#: the longest k-mers the baseline counts, while K**k stays at most MAX_KMER_FEATURES
KMERS = 3
MAX_KMER_FEATURES = 1000


def build_model(cfg: TrainConfig, n_features: int, n_classes: int) -> VectorClassifier | Ensemble:
    def one() -> VectorClassifier:
        return VectorClassifier(n_features, n_classes, cell=cfg.cell, hidden_size=cfg.hidden_size,
                                num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                                init=cfg.init, forget_bias=cfg.forget_bias, truncate=cfg.truncate or None,
                                pool=cfg.pool or POOL)

    return Ensemble([one() for _ in range(cfg.ensemble)]) if cfg.ensemble > 1 else one()


def logits_of(model: torch.nn.Module, xs: list[np.ndarray], batch_size: int = 256) -> Tensor:
    """The model's logits (N, K) for records (T_i, F), in eval mode without gradients; records of
    similar length are batched together so that a long one pads nothing else."""
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    out: list[Tensor | None] = [None] * len(xs)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            x, lengths = pad_vectors([xs[i] for i in chunk])
            for i, row in zip(chunk, model(x, lengths)):
                out[i] = row
    return torch.stack(out) if out else torch.zeros(0, 0)  # type: ignore[arg-type]


def evaluate_part(model: torch.nn.Module, part: userdata.Part, labels: list[str],
                  logits: Tensor | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of ``model`` on one part, and its predictions (N,)."""
    if logits is None:
        logits = logits_of(model, part.x)
    pred = logits.argmax(dim=1).numpy() if len(part.y) else np.zeros(0, dtype=np.int64)
    return classification_metrics(part.y, pred, labels), pred


# -- the baseline ------------------------------------------------------------------------

def _resample(x: np.ndarray, steps: int) -> np.ndarray:
    """(T, F) -> (steps, F) by linear interpolation over the record's own time axis, 0..1."""
    T = len(x)
    if T == steps:
        return x
    if T == 1:
        return np.repeat(x, steps, axis=0)
    grid = np.linspace(0.0, 1.0, steps)
    src = np.linspace(0.0, 1.0, T)
    return np.stack([np.interp(grid, src, x[:, f]) for f in range(x.shape[1])], axis=1)


def _kmer_frequencies(x: np.ndarray, k: int) -> np.ndarray:
    """Mean outer product of k consecutive residue weights: the k-mer frequencies (K**k,), ambiguity codes
    spread over the k-mers they may be."""
    T, K = x.shape
    if T < k:
        return np.zeros(K**k)
    acc = x[: T - k + 1]
    for j in range(1, k):
        acc = (acc[:, :, None] * x[j : T - k + 1 + j, None, :]).reshape(T - k + 1, -1)
    return acc.mean(axis=0)


def _one_length(data: userdata.UserData) -> bool:
    """Every record of every part has the same length."""
    return len({len(x) for part in data.parts.values() for x in part.x}) == 1


def baseline_features(data: userdata.UserData, xs: list[np.ndarray]) -> np.ndarray:
    """The baseline's inputs for records ``xs`` (T_i, F): (N, D), the same D for every part.

    Symbols of one length everywhere: the one-hot (weight) rows flattened (T * K).  Symbols of
    several lengths: frequencies of every k-mer, k = 1..3 (while K**k <= 1000).  Numeric series:
    each feature resampled to min(longest training record, 64) steps, then per feature the mean,
    standard deviation, minimum and maximum over the real steps.
    """
    if data.alphabet is not None:
        if _one_length(data):
            return np.stack([x.reshape(-1) for x in xs])
        K = data.alphabet.size
        ks = [k for k in range(1, KMERS + 1) if K**k <= MAX_KMER_FEATURES]
        return np.stack([np.concatenate([_kmer_frequencies(x, k) for k in ks]) for x in xs])
    steps = min(max(len(x) for x in data.parts["train"].x), RESAMPLE)
    xs = [x.astype(np.float64) for x in xs]  # float32's mean/std overflow from about 1e19 (normalize=false)
    return np.stack([np.concatenate([_resample(x, steps).reshape(-1), x.mean(axis=0), x.std(axis=0),
                                     x.min(axis=0), x.max(axis=0)]) for x in xs])


def baseline(data: userdata.UserData, refit: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """A logistic regression on :func:`baseline_features` of the training part, its C picked from
    :data:`BASELINE_C` by validation accuracy; its test metrics and test predictions (N,)."""
    from ..baselines import select_logreg

    train, val, test = (data.parts[p] for p in userdata.PARTS)
    lr, C, seconds = select_logreg(baseline_features(data, train.x), train.y, baseline_features(data, val.x), val.y,
                                   len(data.labels), BASELINE_C, max_iter=1000, refit=refit)
    pred = lr.predict(baseline_features(data, test.x))
    m = classification_metrics(test.y, pred, data.labels)
    if data.alphabet is None:
        name = "summary-logreg"
    else:
        name = "onehot-logreg" if _one_length(data) else "kmer-logreg"
    return {"name": name, **{k: m[k] for k in METRIC_KEYS}, "C": C, **({"refit": True} if refit else {}),
            "train_seconds": round(seconds, 2)}, pred


# -- the training loop's hooks (biornn.train) ----------------------------------------

def check_config(cfg: TrainConfig) -> None:
    if not cfg.train_file:
        raise ValueError("task classify: give the training file (--train FILE or train_file=...)")
    if cfg.embedding_dim:
        raise ValueError("task classify: inputs are read as weight or value vectors; embedding_dim must be 0")
    if cfg.logit_adjustment:
        raise ValueError("task classify: logit_adjustment is not supported; set it to 0")


def subruns(cfg: TrainConfig, data_dir: str | None) -> None:
    return None


def load(cfg: TrainConfig, data_dir: str | None = None) -> userdata.UserData:
    """The user's files (``train_file``, ``val_file``, ``test_file``); ``data_dir`` is not used."""
    return userdata.load(cfg, "classify")


def build(cfg: TrainConfig, data: userdata.UserData) -> VectorClassifier | Ensemble:
    return build_model(cfg, data.n_features, len(data.labels))


def steps_per_epoch(cfg: TrainConfig, data: userdata.UserData) -> int:
    return batches_per_epoch(len(data.parts["train"].x), cfg.batch_size)


def train_batches(cfg: TrainConfig, model: torch.nn.Module, data: userdata.UserData, epoch: int) -> Iterator[Batch]:
    """Shuffled mini-batches of the training part (padded to their longest record), seeded by seed and epoch."""
    part = data.parts["train"]
    weight = class_weights(cfg, part.y, len(data.labels))
    for idx in shuffled_batches(len(part.x), cfg.batch_size, cfg.seed, epoch):
        x, lengths = pad_vectors([part.x[i] for i in idx])
        y = torch.from_numpy(part.y[idx])
        if hasattr(model, "member_logits"):
            yield Batch(model.member_logits(x, lengths), y, weight, len(idx), members=True)
        else:
            yield Batch(model(x, lengths), y, weight, len(idx))


def validate(cfg: TrainConfig, model: torch.nn.Module, data: userdata.UserData, loss_fn) -> dict[str, float]:
    train, val = data.parts["train"], data.parts["val"]
    logits = logits_of(model, val.x)
    vm, _ = evaluate_part(model, val, data.labels, logits=logits)
    total = loss_fn(dataclasses.replace(cfg, reduction="sum"), logits, torch.from_numpy(val.y),
                    class_weights(cfg, train.y, len(data.labels)))
    return {"loss": float(total) / len(val.y), **{k: vm[k] for k in METRIC_KEYS}}


def run_meta(cfg: TrainConfig, data: userdata.UserData) -> dict[str, Any]:
    return {}


def _test_metrics(model: torch.nn.Module, data: userdata.UserData) -> tuple[dict[str, Any], dict, np.ndarray]:
    m, pred = evaluate_part(model, data.parts["test"], data.labels)
    return {k: m[k] for k in METRIC_KEYS}, m, pred


def finish(cfg: TrainConfig, model: torch.nn.Module, data: userdata.UserData, out: Path, log) -> tuple[dict, dict]:
    """Test metrics of the best weights beside the logistic regression, and the confusion plots."""
    from ..metrics import confusion_matrix
    from ..plots import plot_confusion

    K = len(data.labels)
    test = data.parts["test"]
    metrics_test, m, pred = _test_metrics(model, data)
    log("training the logistic-regression baseline on the same parts ...")
    base, base_pred = baseline(data, cfg.refit)
    metrics = {
        "test": metrics_test,
        "baseline": base,
        "per_class": m["per_class"],
        "n": {part: len(p.x) for part, p in data.parts.items()},
    }
    plot_confusion(confusion_matrix(test.y, pred, K), data.labels, out / "confusion.png")
    plot_confusion(confusion_matrix(test.y, base_pred, K), data.labels, out / "confusion_baseline.png",
                   title="test confusion (baseline)")
    return metrics, {}


def evaluate_saved(cfg: TrainConfig, model: torch.nn.Module, meta: dict, data: userdata.UserData) -> dict[str, Any]:
    """``biornn evaluate``: the saved model's metrics on the recorded test part."""
    metrics_test, m, _ = _test_metrics(model, data)
    return {"test": metrics_test, "n": m["n"]}


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> VectorClassifier | Ensemble:
    """The model of a run's ``model.safetensors``; the alphabet (or None) goes into ``meta["vocab_obj"]``."""
    userdata.check_meta(meta, path)
    model = build_model(cfg, meta["n_features"], len(meta["labels"]))
    load_model_state(model, tensors, path)
    return model


def predict_rows(model: torch.nn.Module, meta: dict, inputs: list[str], top: int = 3) -> list[dict[str, Any]]:
    """For each input (a sequence, or a series as a JSON array): the predicted label and the ``top``
    classes with their probabilities.  ``ValueError`` naming the input on bad input."""
    cfg = meta.get("config", {})
    xs = userdata.parse_inputs(meta, inputs, int(cfg.get("max_length", 0) or 0))
    probs = torch.softmax(logits_of(model, xs), dim=1)  # (N, K)
    labels = meta["labels"]
    rows = []
    for text, p in zip(inputs, probs):
        values, index = p.topk(min(top, len(labels)))
        rows.append({"input": text.strip(), "label": labels[int(index[0])],
                     "top": [{"label": labels[int(j)], "probability": round(float(v), 4)}
                             for v, j in zip(values, index)]})
    return rows
