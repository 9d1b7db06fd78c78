"""The ``names`` task: surname -> language of origin (many-to-one), done properly.

The lecture's live demo is the PyTorch "classifying names with a
character-level RNN" tutorial.  Here the same 18 surname files are

- read with Unicode kept (NFC): accented letters (é, ß, ł, ż, ñ) carry
  language information, so names are not transliterated to ASCII as the
  tutorial does; exact duplicate (name, language) pairs are dropped (the
  Arabic file's 2000 lines hold 108 distinct names);
- split by ``split_seed`` into train/validation/test (70/15/15), stratified by
  language and grouped so that no name string is in two splits;
- trained in batches of variable-length names (packed; never one name at a
  time), the class imbalance handled by logit adjustment at prediction
  (``logit_adjustment`` tau, default 0.5: argmax of logit - tau * log prior)
  or by a class-weighted loss (``class_weighting``: ``balanced`` weights each
  language by N / (K n_k), ``sqrt`` by its square root), the cross-entropy
  with label smoothing (``label_smoothing``, default 0.1);
- measured by accuracy, balanced accuracy (mean per-language recall) and
  macro-F1, beside a character 1-4-gram TF-IDF logistic regression trained on
  the same split (the ``baseline`` in ``metrics.json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from ..config import TrainConfig
from ..data.batching import UNK as UNKNOWN, Vocabulary, pad_batch
from ..data.names import read_names, split_names
from ..data.registry import locate
from ..distributed import shard
from ..metrics import classification_metrics
from ..models import Ensemble, SequenceClassifier
from ..models.ngram import NgramScorer
from .common import Batch, batches_per_epoch, shuffled_batches, load_model_state

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s (otherwise its own):
#: label smoothing, whose class default stays 0 for the runs written before the option
DEFAULTS = {"label_smoothing": 0.1, "ngram_blend": 0.5}

KIND = "classification"
#: trains under torchrun, each rank on its share of every global batch
DISTRIBUTED = True
#: a window layer over the embedded characters (``conv_channels``) is an option of this task's classifier
CONV = True
#: a character n-gram part blended with the recurrent members (``ngram_blend``) is an option of this task
NGRAM = True
#: the columns log.csv gets after val_loss
LOG_FIELDS = ("val_accuracy", "val_balanced_accuracy", "val_macro_f1")
#: what the per-epoch line shows beside the losses
LOG_SHOW = (("accuracy", "val acc"), ("balanced_accuracy", "val bal acc"))


@dataclass
class Split:
    """One split: the texts, their encodings and integer labels (N,)."""

    texts: list[str]
    encoded: list[list[int]]
    y: np.ndarray


@dataclass
class TaskData:
    vocab: Vocabulary
    labels: list[str]
    splits: dict[str, Split]
    fingerprint: str = ""  # SHA-256 of the (name, language) pairs and the split

    def meta(self) -> dict[str, Any]:
        """What a run directory keeps to use the model later (JSON-able)."""
        return {"vocab": self.vocab.to_json(), "labels": self.labels}


def load(cfg: TrainConfig, data_dir: str | None = None) -> TaskData:
    """The names data set, split by ``cfg.split_seed``, encoded with the training split's characters."""
    root = locate("names", data_dir)
    pairs = read_names(root)
    labels = sorted({lang for _, lang in pairs})
    index = {lang: k for k, lang in enumerate(labels)}
    parts = split_names(pairs, seed=cfg.split_seed)
    vocab = Vocabulary.build(name for name, _ in parts["train"])
    digest = hashlib.sha256()
    for part in ("train", "val", "test"):
        for name, lang in parts[part]:
            digest.update(f"{part}\t{name}\t{lang}\n".encode())
    splits = {
        part: Split(
            texts=[n for n, _ in rows],
            encoded=[vocab.encode(n) for n, _ in rows],
            y=np.array([index[lang] for _, lang in rows], dtype=np.int64),
        )
        for part, rows in parts.items()
    }
    return TaskData(vocab, labels, splits, digest.hexdigest())


def build_model(cfg: TrainConfig, vocab_size: int, n_classes: int,
                ngram: NgramScorer | None = None) -> SequenceClassifier | Ensemble:
    """The many-to-one classifier the config describes; ``cfg.ensemble`` > 1 members
    (each its own initialisation) make an :class:`Ensemble`, and so does an n-gram part
    (``cfg.ngram_blend`` > 0: ``ngram``, fitted by :func:`fit_ngram`, blended with weight
    ``ngram_blend``)."""
    if cfg.ngram_blend:
        if ngram is None:
            raise ValueError(f"ngram_blend={cfg.ngram_blend:g} needs the fitted n-gram part")
        return Ensemble([_classifier(cfg, vocab_size, n_classes) for _ in range(cfg.ensemble)],
                        ngram=ngram, ngram_weight=cfg.ngram_blend)
    if cfg.ensemble > 1:
        return Ensemble([_classifier(cfg, vocab_size, n_classes) for _ in range(cfg.ensemble)])
    return _classifier(cfg, vocab_size, n_classes)


#: the n-gram part's longest n-gram and inverse regularisation strength (those of the names baseline)
NGRAM_MAX, NGRAM_C = 4, 10.0


def fit_ngram(encoded: list[list[int]], y: np.ndarray, n_classes: int, vocab: Vocabulary,
              weight: Tensor | None = None) -> NgramScorer:
    """The n-gram part of the blend (:class:`biornn.models.ngram.NgramScorer`), fitted on the
    encoded training names: character 1-4-grams, case folded, C = 10; ``weight`` (K,): the
    recurrent model's class weights (``class_weighting``), applied to the n-gram part's
    likelihood alike."""
    return NgramScorer.fit(encoded, y, n_classes, vocab.symbols, n_max=NGRAM_MAX, C=NGRAM_C,
                           class_weight=None if weight is None else weight.tolist())


def _classifier(cfg: TrainConfig, vocab_size: int, n_classes: int) -> SequenceClassifier:
    return SequenceClassifier(
        vocab_size,
        n_classes,
        cell=cfg.cell,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional,
        dropout=cfg.dropout,
        embedding_dim=cfg.embedding_dim,
        init=cfg.init,
        forget_bias=cfg.forget_bias,
        truncate=cfg.truncate or None,
        pool=cfg.pool or "last",  # "" (runs from before the option): the last step's read-out
        conv_channels=cfg.conv_channels,
        conv_kernel=cfg.conv_kernel,
    )


def class_weights(cfg: TrainConfig, y: np.ndarray, n_classes: int) -> Tensor | None:
    """Per-class loss weights from the training labels, or None (``class_weighting=none``)."""
    if cfg.class_weighting == "none":
        return None
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    if cfg.class_weighting == "sqrt":
        w = np.sqrt(w)
    return torch.tensor(w, dtype=torch.float32)


def log_prior(y: np.ndarray, n_classes: int) -> Tensor:
    """log p(class) on the training labels (add-one smoothed), for logit adjustment."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64) + 1.0
    return torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32)


def encode_inputs(texts: list[str], vocab: Vocabulary) -> tuple[Tensor, Tensor]:
    """Names -> padded symbols (B, T) and lengths (B,).  A name with no character the
    model knows is refused (``ValueError`` naming it)."""
    encoded = []
    for text in texts:
        name = text.strip()
        if not name:
            raise ValueError(f"{text!r}: an empty name")
        codes = vocab.encode(name)  # the vocabulary NFC-normalises
        if all(c == UNKNOWN for c in codes):
            raise ValueError(f"{text!r}: no character the model was trained on")
        encoded.append(codes)
    return pad_batch(encoded)


def split_logits(model: torch.nn.Module, split: Split, batch_size: int = 512, fn=None) -> Tensor:
    """The model's logits for every example of a split, (N, K), in eval mode without gradients
    (``fn(x, lengths)``, e.g. one part of a blend, in place of ``model(x, lengths)`` if given)."""
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split.encoded), batch_size):
            x, lengths = pad_batch(split.encoded[start : start + batch_size])
            out.append((fn or model)(x, lengths))
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate_split(model: torch.nn.Module, split: Split, labels: list[str], adjust: Tensor | None,
                   logits: Tensor | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of ``model`` on one split (from ``logits`` if already computed), and its predictions (N,)."""
    if logits is None:
        logits = split_logits(model, split)
    if not len(split.encoded):
        pred = np.zeros(0, dtype=np.int64)
    else:
        pred = (logits - adjust if adjust is not None else logits).argmax(dim=1).numpy()
    return classification_metrics(split.y, pred, labels), pred


def baseline(cfg: TrainConfig, data: TaskData) -> dict[str, Any]:
    """Character 1-4-gram TF-IDF logistic regression, unweighted and class-balanced,
    trained on the training split and measured on the test split."""
    from ..baselines import NgramLogReg

    out: dict[str, Any] = {}
    train, test = data.splits["train"], data.splits["test"]
    for name, weighting in (("ngram-logreg", None), ("ngram-logreg-balanced", "balanced")):
        t0 = time.perf_counter()
        model = NgramLogReg(class_weight=weighting).fit(train.texts, train.y, len(data.labels))
        seconds = time.perf_counter() - t0
        m = classification_metrics(test.y, model.predict(test.texts), data.labels)
        out[name] = {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}
        out[name]["train_seconds"] = round(seconds, 2)
    return out


# -- the training loop's hooks (biornn.train) ----------------------------------------

def check_config(cfg: TrainConfig) -> None:
    if cfg.pool not in ("",) + SequenceClassifier.POOLS:
        raise ValueError(f"task {cfg.task}: pool must be one of {', '.join(SequenceClassifier.POOLS)}; got {cfg.pool!r}")


def subruns(cfg: TrainConfig, data_dir: str | None) -> None:
    """A names run is always one run."""
    return None


def build(cfg: TrainConfig, data: TaskData) -> SequenceClassifier | Ensemble:
    """The model to train; with ``ngram_blend`` its n-gram part is fitted here, on the training split."""
    ngram = None
    if cfg.ngram_blend:
        train = data.splits["train"]
        ngram = fit_ngram(train.encoded, train.y, len(data.labels), data.vocab,
                          class_weights(cfg, train.y, len(data.labels)))
    return build_model(cfg, len(data.vocab), len(data.labels), ngram)


def steps_per_epoch(cfg: TrainConfig, data: TaskData) -> int:
    return batches_per_epoch(len(data.splits["train"].encoded), cfg.batch_size)


def train_batches(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, epoch: int) -> Iterator[Batch]:
    """Mini-batches of the training split, shuffled by a generator seeded by the seed and the epoch
    (so a resumed run shuffles exactly as an uninterrupted one).  Under torchrun every rank draws the
    same order and takes its share of each global batch of ``batch_size`` (:func:`biornn.distributed.shard`)."""
    split = data.splits["train"]
    n = len(split.encoded)
    weight = class_weights(cfg, split.y, len(data.labels))
    for batch in shuffled_batches(n, cfg.batch_size, cfg.seed, epoch):
        # several processes (torchrun): each takes its share of the global batch; one process: all of it
        idx, n_mine = shard(batch)
        x, lengths = pad_batch([split.encoded[i] for i in idx])
        y = torch.from_numpy(split.y[idx])
        if hasattr(model, "member_logits"):  # an ensemble: each member learns from its own loss
            yield Batch(model.member_logits(x, lengths), y, weight, n_mine, members=True)
        else:
            yield Batch(model(x, lengths), y, weight, n_mine)


def validate(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, loss_fn) -> dict[str, float]:
    """Validation metrics and the loss per example (``loss_fn`` summed over the split, divided by N)."""
    train, val = data.splits["train"], data.splits["val"]
    K = len(data.labels)
    adjust = cfg.logit_adjustment * log_prior(train.y, K) if cfg.logit_adjustment else None
    logits = split_logits(model, val)
    vm, _ = evaluate_split(model, val, data.labels, adjust, logits=logits)
    loss = 0.0
    if len(val.y):
        total = loss_fn(dataclasses.replace(cfg, reduction="sum"), logits, torch.from_numpy(val.y),
                        class_weights(cfg, train.y, K))
        loss = float(total) / len(val.y)
    return {"loss": loss, **{k: vm[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}}


def run_meta(cfg: TrainConfig, data: TaskData) -> dict[str, Any]:
    """What model.safetensors keeps beside the vocabulary and labels: the training prior, and with
    an n-gram part its longest n-gram (``ngram_n_max``)."""
    out: dict[str, Any] = {"log_prior": log_prior(data.splits["train"].y, len(data.labels)).tolist()}
    if cfg.ngram_blend:
        out["ngram_n_max"] = NGRAM_MAX
    return out


def finish(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, out: Path, log) -> tuple[dict, dict]:
    """Test metrics of the best weights beside the n-gram baselines, and the confusion plot.

    Returns ``(metrics, weights_meta)``: the task's part of ``metrics.json``, and
    nothing more for ``model.safetensors``.
    """
    from ..metrics import confusion_matrix
    from ..plots import plot_confusion

    K = len(data.labels)
    train = data.splits["train"]
    adjust = cfg.logit_adjustment * log_prior(train.y, K) if cfg.logit_adjustment else None
    test_metrics, test_pred = evaluate_split(model, data.splits["test"], data.labels, adjust)
    parts = blend_parts(model, data.splits["test"], data.labels, adjust)
    log("training the baseline on the same split ...")
    baselines = baseline(cfg, data)
    base_name = "ngram-logreg-balanced"
    metrics = {
        "test": {k: test_metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")},
        "baseline": {"name": base_name, **baselines[base_name]},
        "baselines": baselines,
        "per_class": test_metrics["per_class"],
        "n": {part: len(s.encoded) for part, s in data.splits.items()},
    }
    if parts:
        metrics["parts"] = parts
    plot_confusion(confusion_matrix(data.splits["test"].y, test_pred, K), data.labels, out / "confusion.png")
    return metrics, {}


def blend_parts(model: torch.nn.Module, split: Split, labels: list[str], adjust: Tensor | None) -> dict[str, Any]:
    """Test metrics of a blend's two parts alone, each with the same logit adjustment: ``recurrent``
    (the members' mean probability) and ``ngram`` (the n-gram scorer); {} for a model without an n-gram part."""
    if getattr(model, "ngram", None) is None or not len(split.encoded):
        return {}
    out: dict[str, Any] = {}
    for name, part in (("recurrent", model.recurrent_logits), ("ngram", model.ngram)):
        m, _ = evaluate_split(model, split, labels, adjust, logits=split_logits(model, split, fn=part))
        out[name] = {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}
    out["ngram_weight"] = model.ngram_weight
    out["ngram_features"] = model.ngram.n_features
    if model.ngram.fit_seconds is not None:
        out["ngram_fit_seconds"] = round(model.ngram.fit_seconds, 2)
    return out


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> SequenceClassifier | Ensemble:
    """The model of a run's ``model.safetensors``; its vocabulary goes into ``meta["vocab_obj"]``.
    ``ValueError`` naming the file when the metadata or the weights do not fit."""
    for key in ("vocab", "labels", "log_prior"):
        if key not in meta:
            raise ValueError(f"{path}: metadata has no {key!r}")
    try:
        vocab = Vocabulary.from_json(meta["vocab"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: metadata has an unusable vocabulary ({e})") from None
    labels, prior = meta["labels"], meta["log_prior"]
    if (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)
            or not isinstance(prior, list) or len(prior) != len(labels)):
        raise ValueError(f"{path}: metadata labels and log_prior do not match")
    if meta.get("data_fingerprint") is None:
        raise ValueError(f"{path}: metadata has no 'data_fingerprint'")
    ngram = None
    if cfg.ngram_blend:
        codes, weight = tensors.get("ngram.codes"), tensors.get("ngram.weight")
        if codes is None or weight is None:
            raise ValueError(f"{path}: config.json sets ngram_blend={cfg.ngram_blend:g}, but the file has no "
                             f"n-gram part (ngram.codes, ngram.weight); config.json was edited, or is another run's")
        if codes.dim() != 1 or weight.dim() != 2:
            raise ValueError(f"{path}: the n-gram part has the wrong shapes (ngram.codes {tuple(codes.shape)}, "
                             f"ngram.weight {tuple(weight.shape)}); the file is damaged")
        n_max = meta.get("ngram_n_max")
        if isinstance(n_max, bool) or not isinstance(n_max, int) or not 1 <= n_max <= 8:
            raise ValueError(f"{path}: metadata has no usable 'ngram_n_max' (the n-gram part's longest n-gram)")
        ngram = NgramScorer.empty(len(vocab), codes.numel(), len(labels), n_max)
    model = build_model(cfg, len(vocab), len(labels), ngram)
    load_model_state(model, tensors, path)
    if ngram is not None:
        try:
            model.ngram.check()
        except ValueError as e:
            raise ValueError(f"{path}: {e}; the file is damaged") from None
    meta["vocab_obj"] = vocab
    return model
