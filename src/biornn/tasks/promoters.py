"""The ``promoters`` task: E. coli promoters, 57 bp of DNA -> promoter (+) or not (-), 10-fold cross-validated.

UCI "Molecular Biology (Promoter Gene Sequences)" (Harley, Reynolds &
Noordewier): 106 sequences of 57 bp, 53 promoters and 53 non-promoters,
aligned so that the promoters' transcription start lies at the same place.

106 sequences are too few for one held-out split -- a 20 % test set of 21
sequences measures accuracy to +-0.1 -- so the task is measured by
stratified ``folds``-fold cross-validation (default 10), as the data set is
usually reported:

- ``biornn train promoters`` (``fold=0``) trains one run per fold into
  ``RUN/fold-01`` ... ``RUN/fold-10`` and writes ``RUN/summary.md``,
  ``RUN/summary.json`` and ``RUN/metrics.json``, whose ``test`` and
  ``baseline`` are the means over the folds (each sequence is tested exactly
  once); ``fold=k`` trains fold k alone;
- in fold k the k-th part is the test set, the next part (k+1, cyclically)
  picks the best epoch and the baseline's regularisation, and the other
  ``folds - 2`` parts train; the parts are stratified and fixed by
  ``split_seed``;
- the recurrent model is :class:`biornn.models.VectorClassifier` over the
  (57, 4) base weights, max-pooled over the sequence (a promoter is
  recognised by short motifs, the -35 and -10 boxes, wherever the alignment
  puts them);
- beside it, on the same parts, the one-hot logistic regression
  (``baseline``, as in ``splice``) and the one-to-one feed-forward network
  (``feedforward``: :class:`biornn.baselines.FeedForwardBaseline`, the
  "vanilla" shape with no recurrence).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import TrainConfig
from ..data.alphabets import DNA, Alphabet
from ..data.readers import read_table
from ..data.registry import locate
from ..metrics import classification_metrics
from ..models import Ensemble, VectorClassifier
from . import splice
from .splice import Split, TaskData, evaluate_split, run_meta, train_batches, validate  # noqa: F401  (task hooks)

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s
DEFAULTS = {
    "hidden_size": 16, "num_layers": 1, "bidirectional": True, "dropout": 0.5, "embedding_dim": 0,
    "ensemble": 1, "logit_adjustment": 0.0, "optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-2,
    "lr_schedule": "onecycle", "batch_size": 16, "epochs": 100, "clip_norm": 1.0, "monitor": "loss",
}

KIND = "classification"
DISTRIBUTED = False
NOT_DISTRIBUTED = "a promoters fold trains in seconds in one process"
LOG_FIELDS = splice.LOG_FIELDS
LOG_SHOW = splice.LOG_SHOW
METRIC_KEYS = splice.METRIC_KEYS
#: the folds' summary has these groups beside ``test`` (``RUN/metrics.json``)
SUMMARY_GROUPS = ("baseline", "feedforward")

FILE = "dna/promoters.csv"
LABELS = ["+", "-"]
LENGTH = 57
POOL = "max"
BASELINE_C = splice.BASELINE_C


def read_promoters(path: Path) -> tuple[list[str], list[str]]:
    """``dna/promoters.csv`` (header ``class,sequence``): (labels, upper-case sequences);
    ``ValueError`` naming the file and record on a label other than + or -, a character outside
    the DNA alphabet or a length other than 57."""
    table = read_table(path, label="class", sequence="sequence", alphabet=DNA)
    for n, label, seq in zip(table.lines, table.labels, table.sequences, strict=True):
        if label not in LABELS:
            raise ValueError(f"{path}: line {n}: class {label!r} is not + or -")
        if len(seq) != LENGTH:
            raise ValueError(f"{path}: line {n}: {len(seq)} bases; every sequence must have {LENGTH}")
    return table.labels, [s.upper() for s in table.sequences]


def fold_parts(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each example's fold (N,) in 0..folds-1: every class shuffled by ``seed`` and dealt out in turn,
    so that each fold holds about 1/folds of every class.

    >>> fold_parts(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 2, 0).tolist().count(0)
    4
    """
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        # each class starts dealing where the last one stopped, so fold sizes differ by at most one
        fold[idx] = (offset + np.arange(len(idx))) % folds
        offset = (offset + len(idx)) % folds
    return fold


def load(cfg: TrainConfig, data_dir: str | None = None) -> TaskData:
    """Fold ``cfg.fold`` of the promoters: test = that fold, validation = the next, training = the rest."""
    if cfg.fold < 1:
        raise ValueError("task promoters: load one fold (fold=1..folds); fold=0 trains them all")
    root = locate("promoters", data_dir)
    path = root / FILE
    labels, seqs = read_promoters(path)
    y = np.array([LABELS.index(label) for label in labels], dtype=np.int64)
    if min(np.bincount(y, minlength=2)) < cfg.folds:
        raise ValueError(f"{path}: {cfg.folds} folds need at least {cfg.folds} sequences of each class")
    fold = fold_parts(y, cfg.folds, cfg.split_seed)
    test_fold, val_fold = cfg.fold - 1, cfg.fold % cfg.folds
    parts = {"train": np.flatnonzero((fold != test_fold) & (fold != val_fold)),
             "val": np.flatnonzero(fold == val_fold), "test": np.flatnonzero(fold == test_fold)}
    digest = hashlib.sha256()
    splits = {}
    for part, idx in parts.items():
        for i in idx:
            digest.update(f"{part}\t{seqs[i]}\t{labels[i]}\n".encode())
        splits[part] = Split(texts=[seqs[i] for i in idx],
                             encoded=[DNA.encode(seqs[i], f"{path}: record {i + 1}") for i in idx], y=y[idx])
    return TaskData(DNA, list(LABELS), splits, digest.hexdigest())


def build_model(cfg: TrainConfig, n_features: int, n_classes: int) -> VectorClassifier | Ensemble:
    def one() -> VectorClassifier:
        return VectorClassifier(n_features, n_classes, cell=cfg.cell, hidden_size=cfg.hidden_size,
                                num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                                init=cfg.init, forget_bias=cfg.forget_bias, truncate=cfg.truncate or None,
                                pool=cfg.pool or POOL)

    return Ensemble([one() for _ in range(cfg.ensemble)]) if cfg.ensemble > 1 else one()


def encode_inputs(texts: list[str], alphabet: Alphabet) -> tuple[Tensor, Tensor]:
    """57-bp DNA sequences -> (B, 57, 4) base weights and lengths (B,)."""
    return splice.encode_inputs(texts, alphabet, LENGTH, "aligned at the transcription start, as in the data set")


#: the one-to-one network's settings: fixed, so that the baseline beside the LSTM does not move with the
#: LSTM's own hidden_size, dropout, lr or weight_decay (it took them until session 13)
FEEDFORWARD = {"hidden_size": 16, "dropout": 0.5, "lr": 1e-2, "weight_decay": 1e-2}


def feedforward_baseline(cfg: TrainConfig, data: TaskData) -> tuple[dict[str, Any], np.ndarray]:
    """The one-to-one network on the flattened (57 x 4) one-hot input (:data:`FEEDFORWARD`), trained on
    the same parts (best epoch by validation accuracy); its test metrics and predictions (N,)."""
    from ..baselines import FeedForwardBaseline

    train, val, test = data.splits["train"], data.splits["val"], data.splits["test"]
    t0 = time.perf_counter()
    net = FeedForwardBaseline(**FEEDFORWARD, seed=cfg.seed)
    net.fit(np.stack(train.encoded), train.y, len(data.labels), np.stack(val.encoded), val.y)
    pred = net.predict(np.stack(test.encoded))
    m = classification_metrics(test.y, pred, data.labels)
    return {"name": "feedforward", **{k: m[k] for k in METRIC_KEYS}, "hidden_size": FEEDFORWARD["hidden_size"],
            "best_epoch": net.best_epoch, "train_seconds": round(time.perf_counter() - t0, 2)}, pred


# -- the training loop's hooks (biornn.train) ----------------------------------------

def check_config(cfg: TrainConfig) -> None:
    if cfg.embedding_dim:
        raise ValueError("task promoters: the bases are read as weight vectors; embedding_dim must be 0")
    if cfg.folds < 3:
        raise ValueError("task promoters: folds must be at least 3 (a test fold, a validation fold, training folds)")


def subruns(cfg: TrainConfig, data_dir: str | None) -> list[tuple[str, TrainConfig]] | None:
    """``fold=0``: one config per fold (``fold-01`` ...); ``fold=k``: None (that fold alone)."""
    if cfg.fold:
        return None
    width = len(str(cfg.folds))
    return [(f"fold-{k:0{max(width, 2)}d}", dataclasses.replace(cfg, fold=k)) for k in range(1, cfg.folds + 1)]


def build(cfg: TrainConfig, data: TaskData) -> VectorClassifier | Ensemble:
    return build_model(cfg, data.alphabet.size, len(data.labels))


def steps_per_epoch(cfg: TrainConfig, data: TaskData) -> int:
    return splice.steps_per_epoch(cfg, data)


def finish(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, out: Path, log) -> tuple[dict, dict]:
    """The fold's test metrics beside the logistic regression and the feed-forward network."""
    metrics, extra = splice.finish(cfg, model, data, out, log)
    log("training the one-to-one feed-forward network on the same split ...")
    metrics["feedforward"], _ = feedforward_baseline(cfg, data)
    metrics["fold"] = cfg.fold
    return metrics, extra


def summary_row(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """One fold's line of the cross-validation table."""
    row: dict[str, Any] = {"fold": name, **{k: metrics["test"][k] for k in METRIC_KEYS}}
    for group in SUMMARY_GROUPS:
        row.update({f"{group}_{k}": metrics[group][k] for k in METRIC_KEYS})
    row.update({"n_test": metrics["n"]["test"], "train_seconds": metrics["train_seconds"],
                "epochs": metrics["epochs"]})
    return row


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> VectorClassifier | Ensemble:
    """The model of one fold's ``model.safetensors``."""
    return splice.from_weights(cfg, tensors, meta, path, build=build_model)
