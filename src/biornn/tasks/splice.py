"""The ``splice`` task: primate splice junctions, 60 bp of DNA -> EI, IE or N (many-to-one).

UCI "Molecular Biology (Splice-junction Gene Sequences)": 3190 sequences of
60 bp around a possible exon/intron boundary (EI, a donor site), an
intron/exon boundary (IE, an acceptor site) or neither (N).

- read from ``dna/splice.csv`` of the data directory (label, instance name,
  sequence), every base checked against the DNA alphabet; the few IUPAC
  ambiguity codes (N, D, R, S) are encoded explicitly, as equal weight on the
  bases they stand for (:mod:`biornn.data.alphabets`);
- split by ``split_seed`` (default 0, so the split is fixed) into a stratified
  held-out test set of 20 % and, of the rest, 10 % of the whole for validation
  (the best epoch) and 70 % for training; identical sequences (185 exact
  duplicates in the file) stay in one part, so none is both trained on and tested;
- a bidirectional recurrent layer reads the (60, 4) base weights; the read-out
  sees the forward direction's output after base 30 and the backward
  direction's output at base 31 (``pool="split"`` of
  :class:`biornn.models.VectorClassifier`): each direction has read its half and
  ends at the candidate junction, so the bases that decide the class are the
  most recent ones for both.  Reading the ends of the sequence instead
  (``last``) or max-pooling reached only 0.86-0.93 test accuracy in 30 epochs;
  an ensemble of ``ensemble`` such models averages its class probabilities;
- measured by accuracy, balanced accuracy and macro-F1 beside a one-hot
  logistic regression on the same training part (the ``baseline``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..config import TrainConfig
from ..data.alphabets import DNA, Alphabet
from ..data.readers import read_table
from ..data.registry import locate
from ..metrics import classification_metrics
from ..models import Ensemble, VectorClassifier
from .common import Batch, stratified_group_split, batches_per_epoch, shuffled_batches, load_model_state
from .names import class_weights, log_prior

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s
DEFAULTS = {
    "hidden_size": 32, "num_layers": 1, "bidirectional": True, "dropout": 0.5, "embedding_dim": 0,
    "ensemble": 5, "logit_adjustment": 0.0, "optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-2,
    "lr_schedule": "onecycle", "batch_size": 32, "epochs": 20, "clip_norm": 1.0, "monitor": "accuracy",
    "refit": True,
}

KIND = "classification"
DISTRIBUTED = False
#: ``refit`` can train on the training and validation parts together (:func:`.common.with_val_in_train`)
REFIT = True
NOT_DISTRIBUTED = "the splice data set trains in seconds in one process"
LOG_FIELDS = ("val_accuracy", "val_balanced_accuracy", "val_macro_f1")
LOG_SHOW = (("accuracy", "val acc"), ("balanced_accuracy", "val bal acc"))

#: the data set's file within the data directory
FILE = "dna/splice.csv"
LABELS = ["EI", "IE", "N"]
#: test 20 % (held out), validation 10 %, training 70 % of every class
FRACTIONS = {"test": 0.2, "val": 0.1, "train": 0.7}
METRIC_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")
#: the summary of the recurrent outputs the read-out sees (:class:`biornn.models.VectorClassifier`)
POOL = "split"
#: every sequence is 60 bp, the candidate junction between bases 30 and 31
LENGTH = 60
#: the baseline's L2 strengths, one picked by validation accuracy
BASELINE_C = (0.03, 0.1, 0.3, 1.0)


@dataclass
class Split:
    """One part: the sequences, their (T, 4) base weights and integer labels (N,)."""

    texts: list[str]
    encoded: list[np.ndarray]
    y: np.ndarray


@dataclass
class TaskData:
    alphabet: Alphabet
    labels: list[str]
    splits: dict[str, Split]
    fingerprint: str = ""

    def meta(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet.to_json(), "labels": self.labels}


def read_splice(path: Path) -> tuple[list[str], list[str], list[str]]:
    """``dna/splice.csv``: (labels, instance names, sequences); ``ValueError`` naming the file and line
    on a label other than EI/IE/N or a character outside the DNA alphabet."""
    table = read_table(path, label="label", sequence="sequence", id="instance_name", alphabet=DNA)
    for n, label in enumerate(table.labels, start=2):
        if label not in LABELS:
            raise ValueError(f"{path}: record {table.ids[n - 2]!r}: label {label!r} is not one of {', '.join(LABELS)}")
    for ident, seq in zip(table.ids, table.sequences):
        if len(seq) != LENGTH:
            raise ValueError(f"{path}: record {ident!r}: {len(seq)} bases; every sequence must have {LENGTH}")
    return table.labels, table.ids, [s.upper() for s in table.sequences]


def load(cfg: TrainConfig, data_dir: str | None = None) -> TaskData:
    """The splice data set, split by ``cfg.split_seed`` (stratified, duplicates grouped)."""
    root = locate("splice", data_dir)
    path = root / FILE
    labels, ids, seqs = read_splice(path)
    y = np.array([LABELS.index(label) for label in labels], dtype=np.int64)
    parts = stratified_group_split(y, seqs, FRACTIONS, cfg.split_seed)
    digest = hashlib.sha256()
    splits = {}
    for part in ("train", "val", "test"):
        idx = parts[part]
        for i in idx:
            digest.update(f"{part}\t{seqs[i]}\t{labels[i]}\n".encode())
        splits[part] = Split(texts=[seqs[i] for i in idx],
                             encoded=[DNA.encode(seqs[i], f"{path}: record {ids[i]!r}") for i in idx],
                             y=y[idx])
    return TaskData(DNA, list(LABELS), splits, digest.hexdigest())


def pad_vectors(encoded: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """(T_i, F) arrays -> zero-padded (B, T, F) float32 and lengths (B,)."""
    lengths = torch.tensor([len(e) for e in encoded], dtype=torch.int64)
    T = int(lengths.max()) if len(encoded) else 0
    F = encoded[0].shape[1] if encoded else 0
    x = np.zeros((len(encoded), T, F), dtype=np.float32)
    for i, e in enumerate(encoded):
        x[i, : len(e)] = e
    return torch.from_numpy(x), lengths


def build_model(cfg: TrainConfig, n_features: int, n_classes: int) -> VectorClassifier | Ensemble:
    def one() -> VectorClassifier:
        return VectorClassifier(n_features, n_classes, cell=cfg.cell, hidden_size=cfg.hidden_size,
                                num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                                init=cfg.init, forget_bias=cfg.forget_bias, truncate=cfg.truncate or None,
                                pool=cfg.pool or POOL)

    return Ensemble([one() for _ in range(cfg.ensemble)]) if cfg.ensemble > 1 else one()


def encode_inputs(texts: list[str], alphabet: Alphabet, length: int = LENGTH,
                  reads: str = "centred on the candidate junction") -> tuple[Tensor, Tensor]:
    """DNA sequences of ``length`` bases -> (B, T, 4) base weights and lengths (B,); ``ValueError``
    naming the bad input (``reads`` says what the model's window is)."""
    encoded = []
    for text in texts:
        seq = "".join(text.split())
        if not seq:
            raise ValueError(f"{text!r}: an empty sequence")
        if len(seq) != length:
            raise ValueError(f"input {seq[:20]!r}{'...' if len(seq) > 20 else ''}: {len(seq)} bases; the model "
                             f"reads {length} bp {reads}")
        encoded.append(alphabet.encode(seq, f"input {seq[:20]!r}{'...' if len(seq) > 20 else ''}"))
    return pad_vectors(encoded)


def split_logits(model: torch.nn.Module, split: Split, batch_size: int = 512) -> Tensor:
    """The model's logits (N, K) for a part, in eval mode without gradients."""
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split.encoded), batch_size):
            x, lengths = pad_vectors(split.encoded[start : start + batch_size])
            out.append(model(x, lengths))
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate_split(model: torch.nn.Module, split: Split, labels: list[str], adjust: Tensor | None,
                   logits: Tensor | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of ``model`` on one part, and its predictions (N,)."""
    if logits is None:
        logits = split_logits(model, split)
    pred = (logits - adjust if adjust is not None else logits).argmax(dim=1).numpy() if len(split.y) else \
        np.zeros(0, dtype=np.int64)
    return classification_metrics(split.y, pred, labels), pred


def baseline(data: TaskData, refit: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """One-hot logistic regression (the IUPAC weights flattened, 240 features) on the training part,
    its L2 strength C picked from :data:`BASELINE_C` by validation accuracy, measured on the test part.

    Returns its metrics and its test predictions (N,).
    """
    from ..baselines import select_logreg

    train, val, test = data.splits["train"], data.splits["val"], data.splits["test"]
    X_val = np.stack(val.encoded) if val.encoded else np.zeros((0, *train.encoded[0].shape))
    lr, C, seconds = select_logreg(np.stack(train.encoded), train.y, X_val, val.y, len(data.labels), BASELINE_C,
                                   refit=refit)
    pred = lr.predict(np.stack(test.encoded))
    m = classification_metrics(test.y, pred, data.labels)
    return {"name": "onehot-logreg", **{k: m[k] for k in METRIC_KEYS}, "C": C,
            **({"refit": True} if refit else {}),
            "train_seconds": round(seconds, 2)}, pred


# -- the training loop's hooks (biornn.train) ----------------------------------------

def check_config(cfg: TrainConfig) -> None:
    if cfg.embedding_dim:
        raise ValueError("task splice: the bases are read as weight vectors; embedding_dim must be 0")
    if not cfg.bidirectional:
        raise ValueError("task splice: the read-out takes both directions at the junction; bidirectional must be true")


def subruns(cfg: TrainConfig, data_dir: str | None) -> None:
    return None


def build(cfg: TrainConfig, data: TaskData) -> VectorClassifier | Ensemble:
    return build_model(cfg, data.alphabet.size, len(data.labels))


def steps_per_epoch(cfg: TrainConfig, data: TaskData) -> int:
    return batches_per_epoch(len(data.splits["train"].encoded), cfg.batch_size)


def train_batches(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, epoch: int) -> Iterator[Batch]:
    """Shuffled mini-batches of the training part, seeded by the seed and the epoch."""
    split = data.splits["train"]
    n = len(split.encoded)
    weight = class_weights(cfg, split.y, len(data.labels))
    for batch in shuffled_batches(n, cfg.batch_size, cfg.seed, epoch):
        idx = batch
        x, lengths = pad_vectors([split.encoded[i] for i in idx])
        y = torch.from_numpy(split.y[idx])
        if hasattr(model, "member_logits"):
            yield Batch(model.member_logits(x, lengths), y, weight, len(idx), members=True)
        else:
            yield Batch(model(x, lengths), y, weight, len(idx))


def _adjust(cfg: TrainConfig, prior: Tensor) -> Tensor | None:
    return cfg.logit_adjustment * prior if cfg.logit_adjustment else None


def validate(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, loss_fn) -> dict[str, float]:
    train, val = data.splits["train"], data.splits["val"]
    K = len(data.labels)
    logits = split_logits(model, val)
    vm, _ = evaluate_split(model, val, data.labels, _adjust(cfg, log_prior(train.y, K)), logits=logits)
    loss = 0.0
    if len(val.y):
        total = loss_fn(dataclasses.replace(cfg, reduction="sum"), logits, torch.from_numpy(val.y),
                        class_weights(cfg, train.y, K))
        loss = float(total) / len(val.y)
    return {"loss": loss, **{k: vm[k] for k in METRIC_KEYS}}


def run_meta(cfg: TrainConfig, data: TaskData) -> dict[str, Any]:
    return {"log_prior": log_prior(data.splits["train"].y, len(data.labels)).tolist()}


def finish(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, out: Path, log) -> tuple[dict, dict]:
    """Test metrics of the best weights beside the one-hot logistic regression, and the confusion plots."""
    from ..metrics import confusion_matrix
    from ..plots import plot_confusion

    K = len(data.labels)
    test = data.splits["test"]
    m, pred = evaluate_split(model, test, data.labels, _adjust(cfg, log_prior(data.splits["train"].y, K)))
    log("training the one-hot logistic-regression baseline on the same split ...")
    base, base_pred = baseline(data, cfg.refit)
    metrics = {
        "test": {k: m[k] for k in METRIC_KEYS},
        "baseline": base,
        "per_class": m["per_class"],
        "n": {part: len(s.encoded) for part, s in data.splits.items()},
    }
    plot_confusion(confusion_matrix(test.y, pred, K), data.labels, out / "confusion.png")
    plot_confusion(confusion_matrix(test.y, base_pred, K), data.labels, out / "confusion_baseline.png")
    return metrics, {}


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path,
                 build: Callable[[TrainConfig, int, int], torch.nn.Module] | None = None) -> torch.nn.Module:
    """The model of a run's ``model.safetensors``; its alphabet goes into ``meta["vocab_obj"]``
    (what ``evaluate`` and ``predict`` encode with).  ``build`` makes the empty model (default:
    this task's :func:`build_model`; ``promoters`` passes its own)."""
    for key in ("alphabet", "labels", "log_prior", "data_fingerprint"):
        if meta.get(key) is None:
            raise ValueError(f"{path}: metadata has no {key!r}")
    try:
        alphabet = Alphabet.from_json(meta["alphabet"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: metadata has an unusable alphabet ({e})") from None
    labels, prior = meta["labels"], meta["log_prior"]
    if (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)
            or not isinstance(prior, list) or len(prior) != len(labels)):
        raise ValueError(f"{path}: metadata labels and log_prior do not match")
    model = (build or build_model)(cfg, alphabet.size, len(labels))
    load_model_state(model, tensors, path)
    meta["vocab_obj"] = alphabet
    return model
