"""The ``protein-ss`` task: secondary structure of every residue (many-to-many, synced).

Qian & Sejnowski's globular-protein set (J Mol Biol 202:865-884, 1988): each
residue of a protein is labelled helix (``h``), strand (``e``) or coil (``_``).
The data set comes with its own split, kept here: ``protein-secondary-structure.train``
(111 chains, 18,105 residues; one chain at line 2400 follows an ``end``
without a ``<>``) and ``.test`` (17 proteins, 3,520 residues).

- every residue is checked against the protein alphabet and encoded as a
  20-wide weight vector (:mod:`biornn.data.alphabets`; ambiguity codes such as
  X spread over the amino acids);
- ``val_fraction`` of the training proteins (by ``split_seed``; whole proteins)
  are held out to pick the best epoch and the baseline's C; the model trains on
  the rest;
- a bidirectional recurrent model labels every residue from the whole chain
  (:class:`biornn.models.SequenceTagger`), an ensemble averaging probabilities;
- the measure is Q3, the fraction of test residues whose label is right
  (``accuracy`` in ``metrics.json``), with balanced accuracy and macro-F1 over
  the three states, beside a 13-residue window logistic regression (the
  paper's window network without its hidden layer; the ``baseline``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from ..config import TrainConfig
from ..data.alphabets import PROTEIN, Alphabet
from ..data.registry import locate
from ..metrics import classification_metrics
from ..models import Ensemble, SequenceTagger
from .common import Batch, batches_per_epoch, shuffled_batches, load_model_state
from .names import class_weights
from .splice import pad_vectors

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s
DEFAULTS = {
    "hidden_size": 64, "num_layers": 2, "bidirectional": True, "dropout": 0.5, "embedding_dim": 0,
    "ensemble": 1, "logit_adjustment": 0.0, "optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-2,
    "lr_schedule": "onecycle", "batch_size": 8, "epochs": 15, "clip_norm": 1.0, "monitor": "accuracy",
    "label_smoothing": 0.1,
}

KIND = "classification"
DISTRIBUTED = False
#: ``refit`` can train on the training and validation parts together (:func:`.common.with_val_in_train`)
REFIT = True
#: a window layer before the recurrence (``conv_channels``) is an option of this task's tagger
CONV = True
NOT_DISTRIBUTED = "the protein data set trains in one process"
LOG_FIELDS = ("val_accuracy", "val_balanced_accuracy", "val_macro_f1")
LOG_SHOW = (("accuracy", "val Q3"), ("balanced_accuracy", "val bal acc"))

FILES = {"train": "protein/protein-secondary-structure.train", "test": "protein/protein-secondary-structure.test"}
#: the file's state symbols, in class order, and their names
STATES = "he_"
LABELS = ["helix", "strand", "coil"]
METRIC_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")
#: proteins of the training file held out for validation
VAL_FRACTION = 0.1
#: residues in the baseline's window (Qian & Sejnowski's best network)
WINDOW = 13
BASELINE_C = (0.03, 0.1, 0.3, 1.0)


def read_ss(path: Path) -> list[tuple[str, str]]:
    """A Qian & Sejnowski file: ``(sequence, states)`` per protein.

    One ``residue state`` pair per line; ``<>``, ``end`` and ``<end>`` each end the
    protein before them (the training file ends chains with ``end``, the test file with
    ``<end>``; one training chain starts after an ``end`` with no ``<>``).  ``ValueError`` naming the file and line on
    a residue outside the protein alphabet, a state other than h, e or _, or a
    malformed line; an empty file or a file with no protein is refused too.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    if not text.strip():
        raise ValueError(f"{path}: empty file")
    proteins: list[tuple[str, str]] = []
    residues: list[str] = []
    states: list[str] = []

    def close() -> None:
        if residues:
            proteins.append(("".join(residues), "".join(states)))
        residues.clear()
        states.clear()

    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line in ("<>", "end", "<end>"):
            close()
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 1 or len(parts[1]) != 1:
            raise ValueError(f"{path}: line {n}: expected 'residue state', got {line[:40]!r}")
        aa, state = parts
        PROTEIN.indices(aa, f"{path}: line {n} (protein {len(proteins) + 1})")
        if state not in STATES:
            raise ValueError(f"{path}: line {n} (protein {len(proteins) + 1}): state {state!r} is not one of h, e, _")
        residues.append(aa.upper())
        states.append(state)
    close()
    if not proteins:
        raise ValueError(f"{path}: no protein in the file")
    return proteins


@dataclass
class Split:
    """One part: the proteins' sequences, their (T_i, 20) residue weights and (T_i,) state classes."""

    texts: list[str]
    encoded: list[np.ndarray]
    states: list[np.ndarray]

    @property
    def y(self) -> np.ndarray:
        """Every residue's class, concatenated (sum T_i,)."""
        return np.concatenate(self.states) if self.states else np.zeros(0, dtype=np.int64)


@dataclass
class TaskData:
    alphabet: Alphabet
    labels: list[str]
    splits: dict[str, Split]
    fingerprint: str = ""

    def meta(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet.to_json(), "labels": self.labels}


def load(cfg: TrainConfig, data_dir: str | None = None) -> TaskData:
    """The training file (less ``VAL_FRACTION`` of its proteins, chosen by ``split_seed``) and the test file."""
    root = locate("protein-ss", data_dir)
    read = {part: read_ss(root / f) for part, f in FILES.items()}
    rng = np.random.default_rng(cfg.split_seed)
    order = rng.permutation(len(read["train"]))
    n_val = max(1, round(VAL_FRACTION * len(order))) if len(order) > 1 else 0
    val_idx = set(order[:n_val].tolist())
    parts = {"train": [p for i, p in enumerate(read["train"]) if i not in val_idx],
             "val": [p for i, p in enumerate(read["train"]) if i in val_idx],
             "test": read["test"]}
    digest = hashlib.sha256()
    splits = {}
    for part in ("train", "val", "test"):
        for seq, st in parts[part]:
            digest.update(f"{part}\t{seq}\t{st}\n".encode())
        splits[part] = Split(texts=[s for s, _ in parts[part]],
                             encoded=[PROTEIN.encode(s) for s, _ in parts[part]],
                             states=[np.array([STATES.index(c) for c in st], dtype=np.int64) for _, st in parts[part]])
    return TaskData(PROTEIN, list(LABELS), splits, digest.hexdigest())


def build_model(cfg: TrainConfig, n_features: int, n_classes: int) -> SequenceTagger | Ensemble:
    def one() -> SequenceTagger:
        return SequenceTagger(n_features, n_classes, cell=cfg.cell, hidden_size=cfg.hidden_size,
                              num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                              init=cfg.init, forget_bias=cfg.forget_bias, conv_channels=cfg.conv_channels,
                              conv_kernel=cfg.conv_kernel)

    return Ensemble([one() for _ in range(cfg.ensemble)]) if cfg.ensemble > 1 else one()


def _mask(lengths: Tensor, T: int) -> Tensor:
    return torch.arange(T)[None, :] < lengths[:, None]  # (B, T)


def split_logits(model: torch.nn.Module, split: Split, batch_size: int = 64) -> Tensor:
    """Logits of every residue of a part, concatenated in order, (sum T_i, K); eval mode, no gradients."""
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split.encoded), batch_size):
            x, lengths = pad_vectors(split.encoded[start : start + batch_size])
            out.append(model(x, lengths)[_mask(lengths, x.shape[1])])  # (n, K)
    return torch.cat(out) if out else torch.zeros(0, len(LABELS))


def evaluate_split(model: torch.nn.Module, split: Split, labels: list[str], adjust: Tensor | None = None,
                   logits: Tensor | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Per-residue metrics (``accuracy`` is Q3) of one part, and every residue's predicted class."""
    if logits is None:
        logits = split_logits(model, split)
    pred = logits.argmax(dim=1).numpy() if len(logits) else np.zeros(0, dtype=np.int64)
    return classification_metrics(split.y, pred, labels), pred


def baseline(data: TaskData, refit: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """A 13-residue window logistic regression (each residue's window of weights, plus an off-the-end
    column per position), C picked on the validation proteins; its test metrics and predictions."""
    from ..baselines import residue_windows, select_logreg

    def windows(split: Split) -> np.ndarray:
        x, lengths = pad_vectors(split.encoded)
        return residue_windows(x.numpy(), lengths.numpy(), WINDOW)

    train, val, test = (data.splits[p] for p in ("train", "val", "test"))
    lr, C, seconds = select_logreg(windows(train), train.y, windows(val), val.y, len(data.labels), BASELINE_C,
                                   max_iter=500, refit=refit)
    pred = lr.predict(windows(test))
    m = classification_metrics(test.y, pred, data.labels)
    return {"name": f"window{WINDOW}-logreg", **{k: m[k] for k in METRIC_KEYS}, "C": C,
            **({"refit": True} if refit else {}),
            "train_seconds": round(seconds, 2)}, pred


# -- the training loop's hooks (biornn.train) ----------------------------------------

def check_config(cfg: TrainConfig) -> None:
    if cfg.embedding_dim:
        raise ValueError("task protein-ss: residues are read as weight vectors; embedding_dim must be 0")
    if cfg.logit_adjustment:
        raise ValueError("task protein-ss: logit_adjustment is not supported; set it to 0")
    if cfg.truncate:
        raise ValueError("task protein-ss: a bidirectional tagger reads whole chains; truncate must be 0")


def subruns(cfg: TrainConfig, data_dir: str | None) -> None:
    return None


def build(cfg: TrainConfig, data: TaskData) -> SequenceTagger | Ensemble:
    return build_model(cfg, data.alphabet.size, len(data.labels))


def steps_per_epoch(cfg: TrainConfig, data: TaskData) -> int:
    return batches_per_epoch(len(data.splits["train"].encoded), cfg.batch_size)


def train_batches(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, epoch: int) -> Iterator[Batch]:
    """Shuffled mini-batches of whole proteins; the loss is over every real residue of the batch."""
    split = data.splits["train"]
    n = len(split.encoded)
    weight = class_weights(cfg, split.y, len(data.labels))
    for batch in shuffled_batches(n, cfg.batch_size, cfg.seed, epoch):
        idx = batch
        x, lengths = pad_vectors([split.encoded[i] for i in idx])
        mask = _mask(lengths, x.shape[1])  # (B, T)
        y = torch.from_numpy(np.concatenate([split.states[i] for i in idx]))  # (n,) in the mask's order
        if hasattr(model, "member_logits"):
            yield Batch(model.member_logits(x, lengths)[:, mask], y, weight, len(y), members=True)
        else:
            yield Batch(model(x, lengths)[mask], y, weight, len(y))


def validate(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, loss_fn) -> dict[str, float]:
    train, val = data.splits["train"], data.splits["val"]
    logits = split_logits(model, val)
    vm, _ = evaluate_split(model, val, data.labels, logits=logits)
    loss = 0.0
    if len(logits):
        total = loss_fn(dataclasses.replace(cfg, reduction="sum"), logits, torch.from_numpy(val.y),
                        class_weights(cfg, train.y, len(data.labels)))
        loss = float(total) / len(logits)
    return {"loss": loss, **{k: vm[k] for k in METRIC_KEYS}}


def run_meta(cfg: TrainConfig, data: TaskData) -> dict[str, Any]:
    counts = np.bincount(data.splits["train"].y, minlength=len(data.labels)).astype(np.float64) + 1.0
    return {"log_prior": np.log(counts / counts.sum()).tolist(), "states": STATES}


def finish(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, out: Path, log) -> tuple[dict, dict]:
    """Q3 of the best weights on the test file beside the window logistic regression; confusion plots."""
    from ..metrics import confusion_matrix
    from ..plots import plot_confusion

    K = len(data.labels)
    test = data.splits["test"]
    m, pred = evaluate_split(model, test, data.labels)
    log(f"training the {WINDOW}-residue window logistic-regression baseline on the same proteins ...")
    base, base_pred = baseline(data, cfg.refit)
    metrics = {
        "test": {k: m[k] for k in METRIC_KEYS},
        "baseline": base,
        "per_class": m["per_class"],
        "n": {part: len(s.encoded) for part, s in data.splits.items()},
        "residues": {part: int(sum(len(e) for e in s.encoded)) for part, s in data.splits.items()},
    }
    plot_confusion(confusion_matrix(test.y, pred, K), data.labels, out / "confusion.png")
    plot_confusion(confusion_matrix(test.y, base_pred, K), data.labels, out / "confusion_baseline.png")
    return metrics, {}


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> SequenceTagger | Ensemble:
    """The model of a run's ``model.safetensors``; its alphabet goes into ``meta["vocab_obj"]``."""
    for key in ("alphabet", "labels", "data_fingerprint"):
        if meta.get(key) is None:
            raise ValueError(f"{path}: metadata has no {key!r}")
    try:
        alphabet = Alphabet.from_json(meta["alphabet"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: metadata has an unusable alphabet ({e})") from None
    labels = meta["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{path}: metadata labels are not a list of names")
    model = build_model(cfg, alphabet.size, len(labels))
    load_model_state(model, tensors, path)
    meta["vocab_obj"] = alphabet
    return model


def predict_rows(model: torch.nn.Module, meta: dict, inputs: list[str]) -> list[dict[str, Any]]:
    """For each protein sequence: its predicted states (h, e, _ per residue) and each state's probability
    per residue.  ``ValueError`` naming the input on a character outside the protein alphabet."""
    alphabet: Alphabet = meta["vocab_obj"]
    states = meta.get("states", STATES)
    rows = []
    for text in inputs:
        seq = "".join(text.split())
        if not seq:
            raise ValueError(f"{text!r}: an empty sequence")
        x = torch.from_numpy(alphabet.encode(seq, f"input {seq[:20]!r}{'...' if len(seq) > 20 else ''}"))[None]
        with torch.no_grad():
            probs = torch.softmax(model(x, torch.tensor([len(seq)])), dim=-1)[0]  # (T, K)
        rows.append({"input": seq, "states": "".join(states[int(k)] for k in probs.argmax(dim=1)),
                     "probabilities": {label: [round(float(p), 3) for p in probs[:, k]]
                                       for k, label in enumerate(meta["labels"])}})
    return rows
