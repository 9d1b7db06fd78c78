"""The ``generate-names`` task: a language-conditioned character model of surnames (one-to-many).

The 18 surname files of the ``names`` task (read and split exactly as there:
:func:`biornn.data.names.read_names`, :func:`biornn.data.names.split_names`,
70/15/15, stratified by language, grouped by name) train a
:class:`biornn.models.generator.ConditionalGenerator`: the language conditions
every step, the model predicts each next character and the end of the name.

- Symbols: the characters seen at least twice in the training names; rarer
  ones (and, in validation, test and user input, characters never seen) are one
  "unknown" symbol -- the out-of-vocabulary convention of language modelling,
  so that the unknown symbol has a trained probability and a held-out name
  with an unseen letter does not get an arbitrary one.
- Measure: the held-out negative log-likelihood per character,
  ``NLL = -(1/N) sum_names sum_{t=1}^{L+1} ln p(c_t | c_<t, language)`` in nats,
  over N = every character of every test name plus its END symbol; also in bits
  (NLL / ln 2) and as perplexity exp(NLL).  The best epoch is the one with the
  lowest validation NLL (``monitor = "loss"``).
- Baseline, same run, same test characters: a language-conditioned
  interpolated character n-gram model (:class:`NgramLM`), its order and
  smoothing chosen on the validation names.
- Samples: ``SAMPLES_PER_LANGUAGE`` names per language at ``temperature``
  from both models: the fraction that are novel (no training name of any
  language), the fraction that are real held-out test names of that language,
  and the mean length.
- The generative model is a classifier too (Bayes' rule):
  argmax_k ln p(name | k) + ln p(k), with the training prior p(k); its test
  accuracy and balanced accuracy are reported for both models, and that is
  what ``biornn predict`` prints for a surname.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..config import LIMITS, TrainConfig
from ..data.batching import UNK, Vocabulary, pad_batch
from ..data.names import read_names, split_names
from ..data.registry import locate
from ..models.generator import END, ConditionalGenerator, teacher_forcing
from .common import Batch, batches_per_epoch, shuffled_batches, load_model_state

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s (the ``names`` task's)
DEFAULTS = {
    "cell": "lstm", "hidden_size": 256, "num_layers": 1, "bidirectional": False, "dropout": 0.3,
    "embedding_dim": 32, "ensemble": 1, "logit_adjustment": 0.0, "optimizer": "adamw", "lr": 3e-3,
    "weight_decay": 1e-4, "lr_schedule": "onecycle", "batch_size": 64, "epochs": 20, "clip_norm": 1.0,
    "monitor": "loss", "temperature": 1.0,
}

#: not "classification": the loop plots the loss and LOG_FIELDS, evaluate/predict use this module's hooks
KIND = "generation"
DISTRIBUTED = False
DEVICE = False
NOT_ON_DEVICE = "its validation and sampling call the generator's own step-by-step methods"
NOT_DISTRIBUTED = "the surname model trains in one process"
LOG_FIELDS = ("val_bits_per_char", "val_perplexity")
LOG_SHOW = (("bits_per_char", "val bits/char"),)

#: characters seen fewer times than this in the training names are the unknown symbol
MIN_COUNT = 2
#: names sampled per language from each model, for the novelty figures
SAMPLES_PER_LANGUAGE = 100
#: the sampling cap when ``max_length`` is 0 (the longest surname in the data has 20 characters)
DEFAULT_MAX_LENGTH = 30
#: the largest sampling cap (``max_length``, ``--max-length``): samples are drawn step by step in one
#: (n, L) buffer, and a greedy sample that never ends would otherwise run for L steps
MAX_SAMPLE_LENGTH = 1000
#: the n-gram baseline's grid: orders (characters of context + 1) and Dirichlet strengths alpha
NGRAM_ORDERS = (2, 3, 4, 5, 6, 7)
NGRAM_ALPHAS = (1.0, 3.0, 10.0, 30.0, 100.0)
METRIC_KEYS = ("nll_per_char", "bits_per_char", "perplexity", "n_chars")


@dataclass
class Split:
    """One part: the names, their symbol indices (no START or END) and language classes (N,)."""

    texts: list[str]
    encoded: list[list[int]]
    y: np.ndarray

    @property
    def n_chars(self) -> int:
        """Predicted symbols of the part: every character and one END per name."""
        return int(sum(len(e) + 1 for e in self.encoded))


@dataclass
class TaskData:
    vocab: Vocabulary
    labels: list[str]
    splits: dict[str, Split]
    fingerprint: str = ""

    def meta(self) -> dict[str, Any]:
        return {"vocab": self.vocab.to_json(), "labels": self.labels}


def encode_splits(parts: dict[str, list[tuple[str, str]]], vocab: Vocabulary, labels: list[str]) -> dict[str, Split]:
    index = {lang: k for k, lang in enumerate(labels)}
    return {part: Split(texts=[n for n, _ in rows], encoded=[vocab.encode(n) for n, _ in rows],
                        y=np.array([index[lang] for _, lang in rows], dtype=np.int64))
            for part, rows in parts.items()}


def load(cfg: TrainConfig, data_dir: str | None = None) -> TaskData:
    """The names data set split by ``cfg.split_seed`` (the ``names`` task's split), encoded with the
    training names' characters (those seen at least ``MIN_COUNT`` times)."""
    root = locate("names", data_dir)
    pairs = read_names(root)
    labels = sorted({lang for _, lang in pairs})
    parts = split_names(pairs, seed=cfg.split_seed)
    if not parts["train"] or not parts["val"] or not parts["test"]:
        raise ValueError(f"{root}/names: too few names to split into train, validation and test "
                         f"({', '.join(f'{k} {len(v)}' for k, v in parts.items())})")
    vocab = Vocabulary.build((name for name, _ in parts["train"]), min_count=MIN_COUNT)
    if not vocab.symbols:
        raise ValueError(f"{root}/names: no character occurs {MIN_COUNT} times in the training names")
    digest = hashlib.sha256()
    for part in ("train", "val", "test"):
        for name, lang in parts[part]:
            digest.update(f"{part}\t{name}\t{lang}\n".encode())
    return TaskData(vocab, labels, encode_splits(parts, vocab, labels), digest.hexdigest())


def build_model(cfg: TrainConfig, vocab_size: int, n_languages: int) -> ConditionalGenerator:
    return ConditionalGenerator(vocab_size, n_languages, cell=cfg.cell, hidden_size=cfg.hidden_size,
                                num_layers=cfg.num_layers, dropout=cfg.dropout, embedding_dim=cfg.embedding_dim,
                                init=None if cfg.init == "default" else cfg.init, forget_bias=cfg.forget_bias,
                                truncate=cfg.truncate or None)


def log_prior(y: np.ndarray, n_classes: int) -> np.ndarray:
    """ln p(language) on the training names (add-one smoothed), (K,)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64) + 1.0
    return np.log(counts / counts.sum())


# -- the recurrent model's measures ---------------------------------------------------


def name_nll(model: ConditionalGenerator, encoded: list[list[int]], y: np.ndarray,
             batch_size: int = 512) -> np.ndarray:
    """Each name's NLL in nats (its characters and END), (N,); eval mode, no gradients."""
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            x, lengths = pad_batch(encoded[start:start + batch_size])
            cond = torch.from_numpy(y[start:start + batch_size])
            out.append(model.nll(x, cond, lengths).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def nll_metrics(total_nats: float, n_chars: int) -> dict[str, float]:
    """NLL per character (nats), bits per character (NLL / ln 2), perplexity exp(NLL), and the count."""
    nll = total_nats / n_chars if n_chars else 0.0
    return {"nll_per_char": round(nll, 6), "bits_per_char": round(nll / math.log(2), 6),
            "perplexity": round(math.exp(nll), 6), "n_chars": int(n_chars)}


def language_scores(score_fn, encoded: list[list[int]], n_languages: int) -> np.ndarray:
    """ln p(name | k) of every name under every language, (N, K), from ``score_fn(encoded, y) -> (N,) NLL``."""
    N = len(encoded)
    return np.stack([-score_fn(encoded, np.full(N, k, dtype=np.int64)) for k in range(n_languages)], axis=1) \
        if N else np.zeros((0, n_languages))


def bayes_metrics(loglik: np.ndarray, prior: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Accuracy and balanced accuracy of argmax_k ln p(name | k) + ln p(k)."""
    from ..metrics import classification_metrics

    pred = (loglik + prior[None, :]).argmax(axis=1) if len(y) else np.zeros(0, dtype=np.int64)
    m = classification_metrics(y, pred, labels)
    return {"language_accuracy": round(m["accuracy"], 6),
            "language_balanced_accuracy": round(m["balanced_accuracy"], 6)}


def sample_metrics(samples: list[tuple[int, str]], data: TaskData) -> dict[str, float]:
    """Of ``(language, name)`` samples: the fraction that are novel (not empty and not a training name
    of any language), the fraction that are held-out test names of their language, and the mean length."""
    train = set(data.splits["train"].texts)
    test = {(int(k), n) for n, k in zip(data.splits["test"].texts, data.splits["test"].y)}
    n = len(samples)
    return {"samples": n,
            "novel_fraction": round(sum(bool(name) and name not in train for _, name in samples) / n, 4) if n else 0.0,
            "test_name_fraction": round(sum((k, name) in test for k, name in samples) / n, 4) if n else 0.0,
            "mean_sample_length": round(float(np.mean([len(s) for _, s in samples])), 3) if n else 0.0}


def model_samples(model: ConditionalGenerator, vocab: Vocabulary, n_languages: int, n: int, temperature: float,
                  seed: int, max_length: int) -> list[tuple[int, str]]:
    """``n`` names per language, ``(language, name)``, drawn with a generator seeded by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for k in range(n_languages):
        x, lengths = model.sample(k, n, temperature, gen, max_length)
        out += [(k, vocab.decode(row[:int(L)].tolist())) for row, L in zip(x, lengths)]
    return out


# -- the n-gram baseline ------------------------------------------------------------


class NgramLM:
    r"""A language-conditioned character n-gram model, smoothed by interpolation with lower orders.

    Over the same V outcomes as the recurrent model (0 = END, 1 = unknown,
    2.. characters), with the context padded by START symbols, each order n
    interpolates its counts with order n - 1 (a hierarchical Dirichlet prior,
    MacKay & Peto 1995; the additive form of Jelinek-Mercer interpolation
    whose weight grows with the context's count):

    .. math::  P_n(c \mid h) = \frac{N_k(h, c) + \alpha P_{n-1}(c \mid h')}{N_k(h) + \alpha},
               \qquad P_0(c) = 1 / V,

    where h is the n - 1 symbols before c, h' its last n - 2, and N_k counts in
    language k's training names.  Every outcome gets a probability > 0.

    Parameters
    ----------
    order : int
        n >= 1 (1: a unigram of each language; 3: a trigram).
    alpha : float
        The prior's strength, > 0.
    vocab_size : int
        V.
    """

    def __init__(self, order: int, alpha: float, vocab_size: int) -> None:
        if order < 1 or not alpha > 0 or vocab_size < 2:
            raise ValueError(f"n-gram: need order >= 1, alpha > 0, vocab_size >= 2; got {order}, {alpha}, {vocab_size}")
        self.order, self.alpha, self.V = order, float(alpha), vocab_size
        self.start = vocab_size  # the padding of the context before the first character
        # counts[j][(k, context of j symbols)] -> Counter of the next symbol, for j = 0..order-1
        self.counts: list[dict[tuple, Counter]] = [defaultdict(Counter) for _ in range(order)]
        self.totals: list[Counter] = [Counter() for _ in range(order)]

    def _events(self, seq: list[int]) -> Iterator[tuple[tuple[int, ...], int]]:
        """(the ``order - 1`` symbols before, the symbol) for every character and END of ``seq``."""
        padded = [self.start] * (self.order - 1) + list(seq)
        for t, c in enumerate(list(seq) + [END]):
            yield tuple(padded[t:t + self.order - 1]), c

    def fit(self, encoded: list[list[int]], y: np.ndarray) -> "NgramLM":
        """Count every (language, context, symbol) of the training names."""
        for seq, k in zip(encoded, y):
            k = int(k)
            for h, c in self._events(seq):
                for j in range(self.order):
                    ctx = (k, h[len(h) - j:] if j else ())
                    self.counts[j][ctx][c] += 1
                    self.totals[j][ctx] += 1
        return self

    def view(self, order: int, alpha: float) -> "NgramLM":
        """The model of a lower ``order`` and another ``alpha`` on the same counts (no refit)."""
        if not 1 <= order <= self.order:
            raise ValueError(f"n-gram: a view needs an order in 1..{self.order}, got {order}")
        out = NgramLM(order, alpha, self.V)
        out.counts, out.totals = self.counts[:order], self.totals[:order]
        return out

    def prob(self, k: int, h: tuple[int, ...], c: int) -> float:
        """P_order(c | h) in language k; ``h`` holds at least ``order - 1`` symbols (only the last are used)."""
        p = 1.0 / self.V
        for j in range(self.order):
            ctx = (k, tuple(h[len(h) - j:]) if j else ())
            counts = self.counts[j].get(ctx)
            if counts is not None:  # an unseen context has N(h) = 0: P_n = P_{n-1}
                p = (counts[c] + self.alpha * p) / (self.totals[j][ctx] + self.alpha)
        return p

    def distribution(self, k: int, h: tuple[int, ...]) -> np.ndarray:
        """P_order(. | h) in language k over the V outcomes, (V,)."""
        p = np.full(self.V, 1.0 / self.V)
        for j in range(self.order):
            ctx = (k, tuple(h[len(h) - j:]) if j else ())
            counts = self.counts[j].get(ctx)
            if counts is not None:
                n = np.zeros(self.V)
                for c, m in counts.items():
                    n[c] = m
                p = (n + self.alpha * p) / (self.totals[j][ctx] + self.alpha)
        return p

    def nll(self, encoded: list[list[int]], y: np.ndarray) -> np.ndarray:
        """Each name's NLL in nats (its characters and END), (N,)."""
        return np.array([-sum(math.log(self.prob(int(k), h, c)) for h, c in self._events(seq))
                         for seq, k in zip(encoded, y)], dtype=np.float64)

    def sample(self, k: int, n: int, temperature: float, rng: np.random.Generator,
               max_length: int) -> list[list[int]]:
        """``n`` symbol lists of language k, each drawn symbol by symbol from P^(1/temperature) (0: the
        most likely symbol), never the unknown symbol, cut at ``max_length``."""
        out = []
        for _ in range(n):
            seq: list[int] = []
            while len(seq) < max_length:
                h = tuple([self.start] * (self.order - 1) + seq)[len(seq):] if self.order > 1 else ()
                p = self.distribution(k, h)
                p[UNK] = 0.0
                if temperature == 0.0:
                    c = int(p.argmax())
                else:
                    logp = np.log(np.maximum(p, 1e-300)) / temperature
                    q = np.exp(logp - logp.max()) * (p > 0)
                    c = int(rng.choice(self.V, p=q / q.sum()))
                if c == END:
                    break
                seq.append(c)
            out.append(seq)
        return out


def fit_baseline(data: TaskData) -> tuple[NgramLM, dict[str, Any]]:
    """The n-gram model whose (order, alpha) has the lowest validation NLL per character, and its choice."""
    train, val = data.splits["train"], data.splits["val"]
    V = len(data.vocab)
    full = NgramLM(max(NGRAM_ORDERS), 1.0, V).fit(train.encoded, train.y)  # every order's counts, once
    best = None
    for order in NGRAM_ORDERS:
        for alpha in NGRAM_ALPHAS:
            lm = full.view(order, alpha)
            nll = float(lm.nll(val.encoded, val.y).sum()) / val.n_chars
            if best is None or nll < best[0]:
                best = (nll, lm)
    nll, lm = best
    return lm, {"name": f"{lm.order}-gram", "order": lm.order, "alpha": lm.alpha,
                "val_nll_per_char": round(nll, 6)}


def baseline_metrics(cfg: TrainConfig, data: TaskData, prior: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """The n-gram baseline's test metrics (the keys of the model's) and each test name's NLL (N,)."""
    t0 = time.perf_counter()
    lm, chosen = fit_baseline(data)
    seconds = time.perf_counter() - t0
    test = data.splits["test"]
    per_name = lm.nll(test.encoded, test.y)
    rng = np.random.default_rng(cfg.seed)
    K = len(data.labels)
    samples = [(k, data.vocab.decode(s)) for k in range(K)
               for s in lm.sample(k, SAMPLES_PER_LANGUAGE, cfg.temperature, rng, sample_cap(cfg))]
    return {**chosen, **nll_metrics(float(per_name.sum()), test.n_chars),
            **bayes_metrics(language_scores(lm.nll, test.encoded, K), prior, test.y, data.labels),
            **sample_metrics(samples, data), "train_seconds": round(seconds, 2)}, per_name


def sample_cap(cfg: TrainConfig) -> int:
    """The longest name sampled: ``max_length``, or ``DEFAULT_MAX_LENGTH`` when 0."""
    return cfg.max_length or DEFAULT_MAX_LENGTH


def model_metrics(cfg: TrainConfig, model: ConditionalGenerator, data: TaskData,
                  prior: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """The recurrent model's test metrics and each test name's NLL (N,)."""
    test = data.splits["test"]
    per_name = name_nll(model, test.encoded, test.y)
    K = len(data.labels)
    samples = model_samples(model, data.vocab, K, SAMPLES_PER_LANGUAGE, cfg.temperature, cfg.seed, sample_cap(cfg))
    return {**nll_metrics(float(per_name.sum()), test.n_chars),
            **bayes_metrics(language_scores(lambda e, y: name_nll(model, e, y), test.encoded, K), prior, test.y,
                            data.labels),
            **sample_metrics(samples, data)}, per_name


def per_language_bits(per_name: np.ndarray, split: Split, labels: list[str]) -> dict[str, float]:
    """Bits per character of each language's test names."""
    out = {}
    for k, lang in enumerate(labels):
        sel = split.y == k
        n = sum(len(e) + 1 for e, s in zip(split.encoded, sel) if s)
        out[lang] = round(float(per_name[sel].sum()) / n / math.log(2), 4) if n else float("nan")
    return out


def plot_per_language(model_bits: dict[str, float], base_bits: dict[str, float], base_name: str,
                      path: Path) -> None:
    """Test bits per character of each language, the recurrent model beside the n-gram baseline."""
    from ..plots import _pyplot

    plt = _pyplot()
    langs = list(model_bits)
    x = np.arange(len(langs))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(x - 0.2, [model_bits[k] for k in langs], 0.4, label="recurrent model")
    ax.bar(x + 0.2, [base_bits[k] for k in langs], 0.4, label=base_name)
    ax.set_xticks(x, langs, rotation=60, ha="right")
    ax.set_ylabel("test bits per character")
    ax.legend(loc="lower right")
    fig.tight_layout()
    from ..checkpoint import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# -- the training loop's hooks (biornn.train) ----------------------------------------


def check_config(cfg: TrainConfig) -> None:
    """A causal, single, likelihood-trained generator."""
    if cfg.bidirectional:
        raise ValueError("task generate-names: a generator reads only the characters before; "
                         "bidirectional must be false")
    if cfg.ensemble != 1:
        raise ValueError("task generate-names: ensembles are not supported; ensemble must be 1")
    if cfg.loss != "ce":
        raise ValueError("task generate-names: the model is trained by its likelihood; loss must be ce")
    if cfg.class_weighting != "none":
        raise ValueError("task generate-names: class_weighting must be none (the NLL is per character)")
    if cfg.logit_adjustment:
        raise ValueError("task generate-names: logit_adjustment is not supported; set it to 0")
    if cfg.monitor != "loss":
        raise ValueError("task generate-names: the best epoch is the lowest validation NLL; monitor must be loss")
    if cfg.max_length > MAX_SAMPLE_LENGTH:
        raise ValueError(f"task generate-names: max_length is the sampling cap, at most {MAX_SAMPLE_LENGTH} "
                         f"characters; got {cfg.max_length}")


def subruns(cfg: TrainConfig, data_dir: str | None) -> None:
    return None


def build(cfg: TrainConfig, data: TaskData) -> ConditionalGenerator:
    return build_model(cfg, len(data.vocab), len(data.labels))


def steps_per_epoch(cfg: TrainConfig, data: TaskData) -> int:
    return batches_per_epoch(len(data.splits["train"].encoded), cfg.batch_size)


def train_batches(cfg: TrainConfig, model: ConditionalGenerator, data: TaskData, epoch: int) -> Iterator[Batch]:
    """Shuffled mini-batches of names under teacher forcing; the loss is the cross-entropy of every
    real next symbol (characters and END; padding selected out), so its mean is the NLL per character."""
    split = data.splits["train"]
    for idx in shuffled_batches(len(split.encoded), cfg.batch_size, cfg.seed, epoch):
        x, lengths = pad_batch([split.encoded[i] for i in idx])
        inputs, targets, steps = teacher_forcing(x, lengths, model.start)
        logits = model(inputs, torch.from_numpy(split.y[idx]), steps)  # (B, T + 1, V)
        real = targets >= 0  # (B, T + 1)
        yield Batch(logits[real], targets[real], None, int(real.sum()))  # (n, V), (n,)


def validate(cfg: TrainConfig, model: ConditionalGenerator, data: TaskData, loss_fn) -> dict[str, float]:
    """The validation NLL per character (the loss) in nats, bits and perplexity."""
    val = data.splits["val"]
    m = nll_metrics(float(name_nll(model, val.encoded, val.y).sum()), val.n_chars)
    return {"loss": m["nll_per_char"], "bits_per_char": m["bits_per_char"], "perplexity": m["perplexity"]}


def run_meta(cfg: TrainConfig, data: TaskData) -> dict[str, Any]:
    """The training prior (Bayes' rule in ``predict``) and the training names (``novel`` in ``generate``)."""
    return {"log_prior": log_prior(data.splits["train"].y, len(data.labels)).tolist(),
            "train_names": "\n".join(sorted(set(data.splits["train"].texts)))}


def finish(cfg: TrainConfig, model: ConditionalGenerator, data: TaskData, out: Path, log) -> tuple[dict, dict]:
    """Test NLL per character of the best weights beside the n-gram baseline's; per-language bits plot."""
    metrics = evaluate_saved(cfg, model, {"log_prior": log_prior(data.splits["train"].y, len(data.labels)).tolist()},
                             data, log=log, plot=out / "bits_per_language.png")
    return metrics, {}


def evaluate_saved(cfg: TrainConfig, model: ConditionalGenerator, meta: dict, data: TaskData,
                   log=lambda line: None, plot: Path | None = None) -> dict[str, Any]:
    """``{"test", "baseline", "per_language", "n"}`` of a model on ``data`` (encoded with the model's
    own vocabulary, ``meta["vocab_obj"]``, when it has one)."""
    vocab = meta.get("vocab_obj")
    if vocab is not None and vocab != data.vocab:
        parts = {p: list(zip(s.texts, (data.labels[int(k)] for k in s.y))) for p, s in data.splits.items()}
        data = TaskData(vocab, data.labels, encode_splits(parts, vocab, data.labels), data.fingerprint)
    prior = np.asarray(meta["log_prior"], dtype=np.float64)
    test = data.splits["test"]
    with torch.no_grad():
        m, per_name = model_metrics(cfg, model, data, prior)
    log("fitting the n-gram baseline on the same names ...")
    base, base_per_name = baseline_metrics(cfg, data, prior)
    model_bits = per_language_bits(per_name, test, data.labels)
    base_bits = per_language_bits(base_per_name, test, data.labels)
    if plot is not None:
        plot_per_language(model_bits, base_bits, base["name"], plot)
    return {"test": m, "baseline": base,
            "per_language": {lang: {"bits_per_char": model_bits[lang], "baseline_bits_per_char": base_bits[lang]}
                             for lang in data.labels},
            "n": {part: len(s.encoded) for part, s in data.splits.items()}}


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> ConditionalGenerator:
    """The model of a run's ``model.safetensors``; its vocabulary goes into ``meta["vocab_obj"]``."""
    for key in ("vocab", "labels", "log_prior", "data_fingerprint"):
        if meta.get(key) is None:
            raise ValueError(f"{path}: metadata has no {key!r}")
    try:
        vocab = Vocabulary.from_json(meta["vocab"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: metadata has an unusable vocabulary ({e})") from None
    labels, prior = meta["labels"], meta["log_prior"]
    if (not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels)
            or not isinstance(prior, list) or len(prior) != len(labels)):
        raise ValueError(f"{path}: metadata labels and log_prior do not match")
    model = build_model(cfg, len(vocab), len(labels))
    load_model_state(model, tensors, path)
    meta["vocab_obj"] = vocab
    return model


def predict_rows(model: ConditionalGenerator, meta: dict, inputs: list[str], top: int = 3) -> list[dict[str, Any]]:
    """For each surname: its most likely languages by Bayes' rule, p(k | name) proportional to
    p(name | k) p(k) with the training prior, and its NLL per character (nats) under every language.
    Characters the model does not know count as the unknown symbol (listed in ``unknown``)."""
    vocab: Vocabulary = meta["vocab_obj"]
    labels = meta["labels"]
    prior = np.asarray(meta["log_prior"], dtype=np.float64)
    names = []
    for text in inputs:
        name = text.strip()
        if not name:
            raise ValueError(f"{text!r}: an empty name")
        names.append(name)
    encoded = [vocab.encode(n) for n in names]
    loglik = language_scores(lambda e, y: name_nll(model, e, y), encoded, len(labels))  # (N, K)
    post = loglik + prior[None, :]
    post = np.exp(post - post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    rows = []
    for i, name in enumerate(names):
        order = np.argsort(-post[i])[:min(top, len(labels))]
        chars = len(encoded[i]) + 1
        rows.append({"input": name,
                     "top": [{"label": labels[k], "probability": round(float(post[i, k]), 4)} for k in order],
                     "nll_per_char": {lang: round(float(-loglik[i, k]) / chars, 4) for k, lang in enumerate(labels)},
                     **({"unknown": sorted({c for c in name if c not in vocab})}
                        if any(c == UNK for c in encoded[i]) else {})})
    return rows


# -- biornn generate -------------------------------------------------------------------


#: the most samples per language one ``generate`` call draws (they are drawn as one batch)
MAX_SAMPLES = 100_000
#: the smallest sampling temperature above 0 (0 itself is greedy)
MIN_TEMPERATURE = 1e-3


def generate(run: str | Path, condition: str | None = None, n: int = 10, temperature: float | None = None,
             seed: int = 0, max_length: int | None = None) -> list[dict[str, Any]]:
    """Sample surnames from a ``generate-names`` run: ``n`` per language (``condition``: one language,
    matched without regard to case; None: every language).

    Returns one dict per sample: ``{"condition", "name", "length", "nll_per_char", "novel"}`` --
    the NLL per character (nats, END included) of the name under the model at temperature 1, and
    whether it is no training name of any language.  ``temperature`` and ``max_length`` default to
    the run's config (``max_length`` 0: ``DEFAULT_MAX_LENGTH``).  ``ValueError`` for a run of
    another task, an unknown language (listing the languages) or a bad number.
    """
    from ..config import read_config
    from ..evaluate import load_run
    from ..checkpoint import check_run_dir

    run = check_run_dir(run)
    cfg = read_config(run / "config.json")
    if cfg.task != "generate-names":
        raise ValueError(f"{run}: a {cfg.task} run; 'biornn generate' samples from a generate-names run")
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"-n must be in 1..{MAX_SAMPLES} (samples per language, drawn in one batch), got {n}")
    temperature = cfg.temperature if temperature is None else temperature
    if not (temperature >= 0.0 and math.isfinite(temperature)):
        raise ValueError(f"--temperature must be a finite number >= 0, got {temperature}")
    if temperature > LIMITS["temperature"] or 0.0 < temperature < MIN_TEMPERATURE:
        # logits / T overflow below the floor; above the cap every character is as likely as any other
        raise ValueError(f"--temperature must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, {LIMITS['temperature']:g}], "
                         f"got {temperature:g}")
    max_length = sample_cap(cfg) if max_length is None else max_length
    if not 1 <= max_length <= MAX_SAMPLE_LENGTH:
        raise ValueError(f"--max-length must be in 1..{MAX_SAMPLE_LENGTH} (characters per sample), got {max_length}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"--seed must be in 0..{2**63 - 1}, got {seed}")
    _, _, model, meta = load_run(run)
    labels: list[str] = meta["labels"]
    if condition is None:
        chosen = list(range(len(labels)))
    else:
        match = [k for k, lang in enumerate(labels) if lang.lower() == condition.strip().lower()]
        if not match:
            raise ValueError(f"unknown language {condition!r}; the run's languages: {', '.join(labels)}")
        chosen = match[:1]
    vocab: Vocabulary = meta["vocab_obj"]
    train_names = set(str(meta.get("train_names", "")).split("\n")) - {""}
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for k in chosen:
        x, lengths = model.sample(k, n, temperature, gen, max_length)
        names = [vocab.decode(row[:int(L)].tolist()) for row, L in zip(x, lengths)]
        encoded = [vocab.encode(s) for s in names]
        nll = _nll_allow_empty(model, encoded, k)
        for name, e, v in zip(names, encoded, nll):
            rows.append({"condition": labels[k], "name": name, "length": len(name),
                         "nll_per_char": round(float(v) / (len(e) + 1), 4),
                         "novel": bool(name) and name not in train_names})  # an empty sample is no new name
    return rows


def _nll_allow_empty(model: ConditionalGenerator, encoded: list[list[int]], k: int) -> np.ndarray:
    """NLL of samples where some are empty (END drawn first): the empty ones score -ln p(END | START)."""
    out = np.zeros(len(encoded))
    full = [i for i, e in enumerate(encoded) if e]
    if full:
        out[full] = name_nll(model, [encoded[i] for i in full], np.full(len(full), k, dtype=np.int64))
    empty = [i for i, e in enumerate(encoded) if not e]
    if empty:
        model.eval()
        with torch.no_grad():
            logits = model(torch.full((1, 1), model.start, dtype=torch.long), torch.tensor([k]))[0, 0]
            out[empty] = -float(torch.log_softmax(logits, dim=0)[END])
    return out
