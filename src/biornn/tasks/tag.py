"""The ``tag`` task: one label for every step of the user's sequences (many-to-many, synced).

``biornn train tag --train A.tsv [--val V.tsv] [--test B.tsv]``: a CSV/TSV
table with a sequence column and a label column whose string has one label
character per residue (``sequence=MKVLA...``, ``label=__hhh...``), or an NPZ
archive with ``X`` (N, T, F), per-step labels ``y`` (N, T) and ``lengths``
(:mod:`biornn.tasks.userdata`).

- a bidirectional recurrent model labels step t from the whole record
  (:class:`biornn.models.SequenceTagger`), an ensemble averaging probabilities;
- measured per step -- accuracy (Q3 for three secondary-structure states),
  balanced accuracy and macro-F1 over every real step of the test part --
  beside a window logistic regression (the ``baseline``: the :data:`WINDOW`
  steps centred on each step, with an off-the-end column per position,
  :func:`biornn.baselines.residue_windows`), as Qian & Sejnowski's window
  network without its hidden layer.
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
from ..models import Ensemble, SequenceTagger
from . import userdata
from .common import Batch, batches_per_epoch, shuffled_batches, load_model_state
from .names import class_weights
from .splice import pad_vectors

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s
DEFAULTS = {
    "hidden_size": 32, "num_layers": 1, "bidirectional": True, "dropout": 0.2, "embedding_dim": 0,
    "ensemble": 1, "logit_adjustment": 0.0, "optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-2,
    "lr_schedule": "onecycle", "batch_size": 16, "epochs": 20, "clip_norm": 1.0, "monitor": "accuracy",
    # a record of more steps is an input error unless max_length says otherwise (0 = no limit): one
    # backpropagation through 10^5 steps is already minutes, and a stray 100 MB line is not a record
    "max_length": 100_000,
}

KIND = "classification"
DISTRIBUTED = False
#: ``refit`` can train on the training and validation parts together (:func:`.common.with_val_in_train`)
REFIT = True
#: a window layer before the recurrence (``conv_channels``) is an option of this task's tagger
CONV = True
NOT_DISTRIBUTED = "the user's files train in one process"
LOG_FIELDS = ("val_accuracy", "val_balanced_accuracy", "val_macro_f1")
LOG_SHOW = (("accuracy", "val acc"), ("balanced_accuracy", "val bal acc"))
METRIC_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")
#: steps in the baseline's window (odd: centred on the step it labels)
WINDOW = 9
BASELINE_C = (0.03, 0.1, 0.3, 1.0)


def build_model(cfg: TrainConfig, n_features: int, n_classes: int) -> SequenceTagger | Ensemble:
    def one() -> SequenceTagger:
        return SequenceTagger(n_features, n_classes, cell=cfg.cell, hidden_size=cfg.hidden_size,
                              num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                              init=cfg.init, forget_bias=cfg.forget_bias, conv_channels=cfg.conv_channels,
                              conv_kernel=cfg.conv_kernel)

    return Ensemble([one() for _ in range(cfg.ensemble)]) if cfg.ensemble > 1 else one()


def _mask(lengths: Tensor, T: int) -> Tensor:
    return torch.arange(T)[None, :] < lengths[:, None]  # (B, T)


def step_logits(model: torch.nn.Module, xs: list[np.ndarray], batch_size: int = 64) -> list[Tensor]:
    """Each record's per-step logits (T_i, K), in eval mode without gradients."""
    out: list[Tensor] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(xs), batch_size):
            x, lengths = pad_vectors(xs[start : start + batch_size])
            logits = model(x, lengths)  # (B, T, K)
            out.extend(logits[i, : int(n)] for i, n in enumerate(lengths))
    return out


def evaluate_part(model: torch.nn.Module, part: userdata.Part, labels: list[str],
                  logits: Tensor | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Per-step metrics of one part, and every real step's predicted class (sum T_i,)."""
    if logits is None:
        logits = torch.cat(step_logits(model, part.x))
    pred = logits.argmax(dim=1).numpy()
    return classification_metrics(part.steps_y, pred, labels), pred


def baseline(data: userdata.UserData, refit: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """A :data:`WINDOW`-step window logistic regression, C picked on the validation part; its test
    metrics and every test step's prediction."""
    from ..baselines import residue_windows, select_logreg

    def windows(part: userdata.Part) -> np.ndarray:
        x, lengths = pad_vectors(part.x)
        return residue_windows(x.numpy(), lengths.numpy(), WINDOW)

    train, val, test = (data.parts[p] for p in userdata.PARTS)
    lr, C, seconds = select_logreg(windows(train), train.steps_y, windows(val), val.steps_y, len(data.labels),
                                   BASELINE_C, max_iter=500, refit=refit)
    pred = lr.predict(windows(test))
    m = classification_metrics(test.steps_y, pred, data.labels)
    return {"name": f"window{WINDOW}-logreg", **{k: m[k] for k in METRIC_KEYS}, "C": C,
            **({"refit": True} if refit else {}),
            "train_seconds": round(seconds, 2)}, pred


# -- the training loop's hooks (biornn.train) ----------------------------------------

def check_config(cfg: TrainConfig) -> None:
    if not cfg.train_file:
        raise ValueError("task tag: give the training file (--train FILE or train_file=...)")
    if cfg.embedding_dim:
        raise ValueError("task tag: inputs are read as weight or value vectors; embedding_dim must be 0")
    if cfg.logit_adjustment:
        raise ValueError("task tag: logit_adjustment is not supported; set it to 0")
    if cfg.truncate:
        raise ValueError("task tag: the tagger reads whole records; truncate must be 0")


def subruns(cfg: TrainConfig, data_dir: str | None) -> None:
    return None


def load(cfg: TrainConfig, data_dir: str | None = None) -> userdata.UserData:
    """The user's files (``train_file``, ``val_file``, ``test_file``); ``data_dir`` is not used."""
    data = userdata.load(cfg, "tag")
    if len(data.labels) < 2:
        raise ValueError(f"{cfg.train_file}: every step has the label {data.labels[0]!r}; tagging needs at least two")
    return data


def build(cfg: TrainConfig, data: userdata.UserData) -> SequenceTagger | Ensemble:
    return build_model(cfg, data.n_features, len(data.labels))


def steps_per_epoch(cfg: TrainConfig, data: userdata.UserData) -> int:
    return batches_per_epoch(len(data.parts["train"].x), cfg.batch_size)


def train_batches(cfg: TrainConfig, model: torch.nn.Module, data: userdata.UserData, epoch: int) -> Iterator[Batch]:
    """Shuffled mini-batches of whole records; the loss is over every real step of the batch."""
    part = data.parts["train"]
    weight = class_weights(cfg, part.steps_y, len(data.labels))
    for idx in shuffled_batches(len(part.x), cfg.batch_size, cfg.seed, epoch):
        x, lengths = pad_vectors([part.x[i] for i in idx])
        mask = _mask(lengths, x.shape[1])  # (B, T)
        y = torch.from_numpy(np.concatenate([part.tags[i] for i in idx]))  # (n,) in the mask's order
        if hasattr(model, "member_logits"):
            yield Batch(model.member_logits(x, lengths)[:, mask], y, weight, len(y), members=True)
        else:
            yield Batch(model(x, lengths)[mask], y, weight, len(y))


def validate(cfg: TrainConfig, model: torch.nn.Module, data: userdata.UserData, loss_fn) -> dict[str, float]:
    train, val = data.parts["train"], data.parts["val"]
    logits = torch.cat(step_logits(model, val.x))
    vm, _ = evaluate_part(model, val, data.labels, logits=logits)
    total = loss_fn(dataclasses.replace(cfg, reduction="sum"), logits, torch.from_numpy(val.steps_y),
                    class_weights(cfg, train.steps_y, len(data.labels)))
    return {"loss": float(total) / len(logits), **{k: vm[k] for k in METRIC_KEYS}}


def run_meta(cfg: TrainConfig, data: userdata.UserData) -> dict[str, Any]:
    return {}


def finish(cfg: TrainConfig, model: torch.nn.Module, data: userdata.UserData, out: Path, log) -> tuple[dict, dict]:
    """Per-step test metrics of the best weights beside the window logistic regression; confusion plots."""
    from ..metrics import confusion_matrix
    from ..plots import plot_confusion

    K = len(data.labels)
    test = data.parts["test"]
    m, pred = evaluate_part(model, test, data.labels)
    log(f"training the {WINDOW}-step window logistic-regression baseline on the same parts ...")
    base, base_pred = baseline(data, cfg.refit)
    metrics = {
        "test": {k: m[k] for k in METRIC_KEYS},
        "baseline": base,
        "per_class": m["per_class"],
        "n": {part: len(p.x) for part, p in data.parts.items()},
        "steps": {part: int(sum(len(x) for x in p.x)) for part, p in data.parts.items()},
    }
    plot_confusion(confusion_matrix(test.steps_y, pred, K), data.labels, out / "confusion.png")
    plot_confusion(confusion_matrix(test.steps_y, base_pred, K), data.labels, out / "confusion_baseline.png",
                   title="test confusion (baseline)")
    return metrics, {}


def evaluate_saved(cfg: TrainConfig, model: torch.nn.Module, meta: dict, data: userdata.UserData) -> dict[str, Any]:
    """``biornn evaluate``: the saved model's per-step metrics on the recorded test part."""
    m, _ = evaluate_part(model, data.parts["test"], data.labels)
    return {"test": {k: m[k] for k in METRIC_KEYS}, "n": m["n"]}


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> SequenceTagger | Ensemble:
    """The model of a run's ``model.safetensors``; the alphabet (or None) goes into ``meta["vocab_obj"]``."""
    userdata.check_meta(meta, path)
    model = build_model(cfg, meta["n_features"], len(meta["labels"]))
    load_model_state(model, tensors, path)
    return model


def predict_rows(model: torch.nn.Module, meta: dict, inputs: list[str]) -> list[dict[str, Any]]:
    """For each input (a sequence, or a series as a JSON array): every step's label (``tags``; also as one
    string, ``tag_string``, when every label is one character) and each label's probability per step."""
    cfg = meta.get("config", {})
    xs = userdata.parse_inputs(meta, inputs, int(cfg.get("max_length", 0) or 0))
    labels = meta["labels"]
    rows = []
    for text, logits in zip(inputs, step_logits(model, xs)):
        probs = torch.softmax(logits, dim=-1)  # (T, K)
        tags = [labels[int(k)] for k in probs.argmax(dim=1)]
        row: dict[str, Any] = {"input": text.strip(), "tags": tags}
        if all(len(label) == 1 for label in labels):
            row["tag_string"] = "".join(tags)
        row["probabilities"] = {label: [round(float(p), 3) for p in probs[:, k]] for k, label in enumerate(labels)}
        rows.append(row)
    return rows
