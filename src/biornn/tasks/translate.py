"""The ``translate`` task: a DNA coding sequence -> its protein (many-to-many, encoder-decoder).

The data are generated, not read: random open reading frames -- ``ATG``, then
random sense codons (uniform over the 61 of the standard genetic code), then
one of the three stop codons -- each translated by Biopython
(``Bio.Seq.Seq.translate``, NCBI table 1), so the target of ``ATGGCCTAA`` is
``MA*``: one residue per codon, ``*`` for the stop codon.  The model has to
learn the genetic code *and* the reading frame from examples.

- ``split_seed`` fixes the data: ``n_sequences`` training ORFs (0 = 4000) and
  validation and test ORFs of :data:`TRAIN_CODONS` codons (5-40: proteins of
  5-40 residues, ``*`` included), and a second test part of
  :data:`LONGER_CODONS` codons (41-80), longer than any training sequence;
  no sequence lies in two parts;
- :class:`biornn.models.seq2seq.EncoderDecoder`: a bidirectional recurrent
  encoder over the one-hot bases, a recurrent decoder over the residues so far
  started from the encoder's final state, with location-aware attention
  (Chorowski et al. 2015), trained by per-residue cross-entropy with teacher
  forcing; decoded greedily or with a beam of ``beam`` (1 = greedy), ``*``
  ending a protein;
- measured on both test parts by exact match (the whole protein right) and
  per-residue accuracy (the share of true residues predicted at their place),
  by length, beside a logistic regression that is *told the reading frame*:
  residue i from the one-hot bases 3i, 3i+1, 3i+2 (the ``baseline``; given
  the alignment, the code itself is linearly separable, so it is exact).
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
from ..data.alphabets import DNA
from ..models.seq2seq import EncoderDecoder
from .common import Batch, batches_per_epoch, shuffled_batches, load_model_state
from .splice import pad_vectors

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s
DEFAULTS = {
    "cell": "lstm", "hidden_size": 64, "num_layers": 1, "bidirectional": True, "dropout": 0.0, "embedding_dim": 16,
    "ensemble": 1, "logit_adjustment": 0.0, "class_weighting": "none", "optimizer": "adam", "lr": 3e-3,
    "weight_decay": 0.0, "lr_schedule": "onecycle", "batch_size": 32, "epochs": 6, "clip_norm": 1.0,
    "monitor": "loss",
}

KIND = "sequence"
DISTRIBUTED = False
DEVICE = False
NOT_ON_DEVICE = "its validation decodes with the encoder-decoder's own step-by-step methods"
NOT_DISTRIBUTED = "the generated translation data train in one process"
#: the validation columns of log.csv: greedy exact match and per-residue accuracy
LOG_FIELDS = ("val_accuracy", "val_residue_accuracy")
LOG_SHOW = (("accuracy", "val exact match"), ("residue_accuracy", "val residue acc"))

#: target tokens: ``^`` the start token fed before the first residue (index 0, never a target), the 20 amino
#: acids, and ``*`` (the stop codon's residue, which also ends a decoded protein)
TOKENS = "^ACDEFGHIKLMNPQRSTVWY*"
BOS, EOS = 0, len(TOKENS) - 1
#: codons per ORF (start and stop included) of the training, validation and first test part
TRAIN_CODONS = (5, 40)
#: codons per ORF of the second test part: longer than any training sequence
LONGER_CODONS = (41, 80)
#: training ORFs when ``n_sequences`` is 0
DEFAULT_N = 4000
#: the decoder's attention (:class:`biornn.models.seq2seq.EncoderDecoder`): ``"location"`` or ``"none"``
#: (no config key: ``benchmarks/translate.py --attention none`` sets it for a comparison; the run records it)
ATTENTION = "location"
#: the attention starts out moving this many bases per residue, a codon (None: a random start; see the docs)
LOCATION_SHIFT: int | None = 3
#: the NCBI genetic code: 1, the standard code
TABLE = 1
PARTS = ("train", "val", "test", "test_longer")
METRIC_KEYS = ("exact_match", "residue_accuracy", "exact_match_longer", "residue_accuracy_longer")
#: the length buckets of the by-length metrics, in codons
BUCKETS = ((5, 10), (11, 20), (21, 30), (31, 40), (41, 50), (51, 60), (61, 70), (71, 80))


@dataclass
class Split:
    """One part: ORFs (DNA), their proteins, (S_i, 4) base weights and (T_i,) target tokens."""

    dna: list[str]
    protein: list[str]
    src: list[np.ndarray]
    tgt: list[np.ndarray]

    @property
    def codons(self) -> np.ndarray:
        """Codons per ORF, (N,)."""
        return np.array([len(s) // 3 for s in self.dna], dtype=np.int64)


@dataclass
class TaskData:
    splits: dict[str, Split]
    fingerprint: str = ""

    def meta(self) -> dict[str, Any]:
        return {"tokens": TOKENS, "alphabet": DNA.to_json(), "train_codons": list(TRAIN_CODONS),
                "table": TABLE}


def sizes(n_sequences: int) -> dict[str, int]:
    """ORFs per part: ``n_sequences`` (0 = :data:`DEFAULT_N`) to train on; validation and tests in proportion,
    at least 10 each and at most 500 (validation, longer test) or 1000 (test)."""
    n = n_sequences or DEFAULT_N
    return {"train": n, "val": min(500, max(10, n // 10)), "test": min(1000, max(10, n // 4)),
            "test_longer": min(500, max(10, n // 8))}


def _bio():
    """Biopython (the ``bio`` extra), with ``Bio.Seq`` and ``Bio.Data.CodonTable`` loaded; a one-line
    ``ValueError`` if it is not installed."""
    try:
        import Bio
        import Bio.Data.CodonTable  # noqa: F401
        import Bio.Seq  # noqa: F401
    except ImportError:
        raise ValueError("task translate: needs Biopython to generate and translate ORFs; "
                         "pip install 'biornn[bio]'") from None
    return Bio


def random_orfs(n: int, codons: tuple[int, int], rng: np.random.Generator, seen: set[str]) -> list[str]:
    """``n`` random open reading frames, none in ``seen`` (which they join).

    Each is ``ATG``, k - 2 sense codons drawn uniformly from the 61 of the
    standard code, and a stop codon drawn from TAA, TAG, TGA; k is uniform in
    ``codons`` (inclusive).  The codons come from Biopython's table, not from a
    copy of it here.
    """
    table = _bio().Data.CodonTable.unambiguous_dna_by_id[TABLE]
    sense = sorted(table.forward_table)  # the 61 codons that code an amino acid
    stops = sorted(table.stop_codons)
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(codons[0], codons[1] + 1))
        middle = rng.integers(len(sense), size=k - 2)
        orf = "ATG" + "".join(sense[i] for i in middle) + stops[int(rng.integers(len(stops)))]
        if orf not in seen:  # never the same ORF in two parts (or twice in one)
            seen.add(orf)
            out.append(orf)
    return out


def translate_dna(dna: str) -> str:
    """Biopython's translation of a DNA sequence with the standard code, the stop codon as ``*``."""
    return str(_bio().Seq.Seq(dna).translate(table=TABLE))


def tokens_of(protein: str) -> np.ndarray:
    """A protein string -> target tokens (T,) int64 of :data:`TOKENS`."""
    return np.array([TOKENS.index(c) for c in protein], dtype=np.int64)


def protein_of(tokens) -> str:
    """Target tokens -> a protein string, up to and including the first ``*``."""
    out = []
    for t in tokens:
        t = int(t)
        out.append(TOKENS[t] if t != BOS else "?")
        if t == EOS:
            break
    return "".join(out)


def make_split(dna: list[str]) -> Split:
    protein = [translate_dna(s) for s in dna]
    return Split(dna=dna, protein=protein, src=[DNA.encode(s) for s in dna], tgt=[tokens_of(p) for p in protein])


def load(cfg: TrainConfig, data_dir: str | None = None) -> TaskData:
    """The generated ORFs of every part, drawn by ``cfg.split_seed``; the data directory is not used."""
    rng = np.random.default_rng(cfg.split_seed)
    n = sizes(cfg.n_sequences)
    seen: set[str] = set()
    # the test parts first: for one split_seed they do not depend on how many training ORFs are drawn after them
    # (as long as the part sizes are the same)
    dna = {"test": random_orfs(n["test"], TRAIN_CODONS, rng, seen),
           "test_longer": random_orfs(n["test_longer"], LONGER_CODONS, rng, seen),
           "val": random_orfs(n["val"], TRAIN_CODONS, rng, seen),
           "train": random_orfs(n["train"], TRAIN_CODONS, rng, seen)}
    digest = hashlib.sha256()
    splits = {}
    for part in PARTS:
        splits[part] = make_split(dna[part])
        for s, p in zip(splits[part].dna, splits[part].protein):
            digest.update(f"{part}\t{s}\t{p}\n".encode())
    return TaskData(splits, digest.hexdigest())


# -- batches, decoding, metrics ---------------------------------------------------------

def pad_tokens(seqs: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """(T_i,) token arrays -> (B, T) int64 padded with ``*`` and lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    T = int(lengths.max()) if len(seqs) else 0
    y = np.full((len(seqs), T), EOS, dtype=np.int64)
    for i, s in enumerate(seqs):
        y[i, : len(s)] = s
    return torch.from_numpy(y), lengths


def teacher_inputs(tgt: Tensor) -> Tensor:
    """Decoder inputs for teacher forcing: ``^`` then the targets but the last, (B, T)."""
    return torch.cat([torch.full((tgt.shape[0], 1), BOS, dtype=tgt.dtype), tgt[:, :-1]], dim=1)


def _batch(split: Split, idx: list[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(B, S, 4) bases, source lengths (B,), targets (B, T), real-target mask (B, T) of the rows ``idx``."""
    x, lengths = pad_vectors([split.src[i] for i in idx])
    y, tl = pad_tokens([split.tgt[i] for i in idx])
    mask = torch.arange(y.shape[1])[None, :] < tl[:, None]
    return x, lengths, y, mask


def decode(model: EncoderDecoder, dna: list[str], beam: int = 1, batch_size: int = 256) -> tuple[list[str], list[float]]:
    """Translate ORFs with the model: proteins (at most one residue per codon) and their log-probabilities.

    Parameters
    ----------
    model : EncoderDecoder
    dna : list of str
        Sequences of A, C, G, T whose lengths are multiples of 3 (checked by the callers).
    beam : int
        1: greedy decoding; more: beam search of that width.
    batch_size : int

    Returns
    -------
    proteins : list of str
        Each up to and including its first ``*``, cut at one residue per codon.
    scores : list of float
        log p(protein | ORF) under the model.
    """
    model.eval()
    proteins: list[str] = [""] * len(dna)
    scores: list[float] = [0.0] * len(dna)
    order = sorted(range(len(dna)), key=lambda i: len(dna[i]))  # similar lengths together: little padding
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            x, lengths = pad_vectors([DNA.encode(dna[i]) for i in chunk])
            max_len = lengths // 3  # one residue per codon, never more: each ORF's own cap, so that
            # a protein and its score do not depend on the other ORFs of its batch
            if beam > 1:
                tokens, score = model.beam_search(x, lengths, max_len, beam)
            else:
                tokens, score = model.greedy(x, lengths, max_len)
            for row, i in enumerate(chunk):
                proteins[i] = protein_of(tokens[row, : len(dna[i]) // 3])
                scores[i] = float(score[row])
    return proteins, scores


def sequence_metrics(pred: list[str], true: list[str]) -> dict[str, float]:
    """Exact match (the share of proteins predicted whole and right) and per-residue accuracy (the share of
    true residues, ``*`` included, predicted at their position; a missing residue counts as wrong)."""
    if not true:
        return {"exact_match": 0.0, "residue_accuracy": 0.0, "n": 0}
    exact = sum(p == t for p, t in zip(pred, true)) / len(true)
    right = sum(sum(a == b for a, b in zip(p, t)) for p, t in zip(pred, true))
    return {"exact_match": round(exact, 6), "residue_accuracy": round(right / sum(len(t) for t in true), 6),
            "n": len(true)}


def by_length(pred: list[str], true: list[str], codons: np.ndarray) -> list[dict[str, Any]]:
    """:func:`sequence_metrics` per length bucket (:data:`BUCKETS`, in codons) that holds sequences."""
    rows = []
    for lo, hi in BUCKETS:
        idx = [i for i, k in enumerate(codons) if lo <= k <= hi]
        if idx:
            rows.append({"codons": f"{lo}-{hi}", **sequence_metrics([pred[i] for i in idx], [true[i] for i in idx])})
    return rows


def test_metrics(preds: dict[str, list[str]], data: TaskData) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The ``test`` object (both test parts) and the by-length rows of predictions ``preds[part]``."""
    within = sequence_metrics(preds["test"], data.splits["test"].protein)
    longer = sequence_metrics(preds["test_longer"], data.splits["test_longer"].protein)
    test = {"exact_match": within["exact_match"], "residue_accuracy": within["residue_accuracy"],
            "exact_match_longer": longer["exact_match"], "residue_accuracy_longer": longer["residue_accuracy"]}
    rows = []
    for part in ("test", "test_longer"):
        s = data.splits[part]
        rows += by_length(preds[part], s.protein, s.codons)
    return test, rows


def frame_windows(split: Split) -> np.ndarray:
    """Every codon's one-hot bases 3i, 3i+1, 3i+2: (sum codons, 12)."""
    return np.concatenate([s.reshape(-1, 12) for s in split.src]) if split.src else np.zeros((0, 12), np.float32)


def baseline(data: TaskData) -> tuple[dict[str, Any], dict[str, list[str]], list[dict[str, Any]]]:
    """A multinomial logistic regression told the reading frame: residue i from the one-hot bases 3i..3i+2.

    Each residue's score is a sum of one weight per (position in the codon,
    base): no interaction between the bases.  Even so, the standard genetic
    code is exactly representable this way (an argmax over 21 such additive
    scores separates all 64 codons; checked: weakly regularised, it fits the
    table with no error), so on random ORFs this baseline is exact.  What it is
    *given* is the alignment -- which three bases make residue i, and that the
    protein has one residue per codon; the encoder-decoder has to find both
    from the examples, and to keep them for lengths it was not trained on.

    Returns its metrics, its predicted proteins per test part and its by-length rows.
    """
    from sklearn.linear_model import LogisticRegression

    train = data.splits["train"]
    t0 = time.perf_counter()
    lr = LogisticRegression(C=1.0, max_iter=1000)
    lr.fit(frame_windows(train), np.concatenate(train.tgt))
    seconds = time.perf_counter() - t0
    preds = {}
    for part in ("test", "test_longer"):
        s = data.splits[part]
        flat = lr.predict(frame_windows(s)) if s.src else np.zeros(0, dtype=np.int64)
        bounds = np.cumsum([0] + [len(t) for t in s.tgt])
        # one residue per codon, a "*" inside included: the baseline classifies codons, it does not decode
        preds[part] = ["".join(TOKENS[int(t)] for t in flat[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    test, rows = test_metrics(preds, data)
    return {"name": "frame-window-logreg", **test, "train_seconds": round(seconds, 2)}, preds, rows


def plot_by_length(model_rows: list[dict], base_rows: list[dict], path: Path, title: str) -> None:
    """Exact match and per-residue accuracy by length bucket, the model beside the baseline."""
    from ..checkpoint import atomic_path
    from ..plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [r["codons"] for r in model_rows]
    x = np.arange(len(labels))
    for ax, key, name in ((axes[0], "exact_match", "exact match"), (axes[1], "residue_accuracy", "residue accuracy")):
        ax.plot(x, [r[key] for r in model_rows], "o-", label=title)
        ax.plot(x, [r[key] for r in base_rows], "s--", label="frame-window logistic regression")
        trained = [i for i, lab in enumerate(labels) if int(lab.split("-")[1]) <= TRAIN_CODONS[1]]
        if trained and trained[-1] < len(labels) - 1:
            ax.axvline(trained[-1] + 0.5, color="grey", lw=1, ls=":")
            ax.text(trained[-1] + 0.6, 0.02, "longer than training", color="grey", fontsize=8)
        ax.set_xticks(x, labels, rotation=45)
        ax.set(xlabel="codons per ORF", ylabel=name, ylim=(0, 1.02), title=f"test {name} by length")
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


# -- the training loop's hooks (biornn.train) ----------------------------------------

def check_config(cfg: TrainConfig) -> None:
    for key, ok, need in (("embedding_dim", cfg.embedding_dim > 0, "> 0 (the decoder embeds the residues)"),
                          ("ensemble", cfg.ensemble == 1, "1"), ("truncate", cfg.truncate == 0, "0"),
                          ("logit_adjustment", cfg.logit_adjustment == 0, "0"),
                          ("class_weighting", cfg.class_weighting == "none", "none")):
        if not ok:
            raise ValueError(f"task translate: {key} must be {need}")
    if cfg.monitor not in ("accuracy", "loss"):
        raise ValueError("task translate: monitor must be accuracy (greedy exact match) or loss")


def subruns(cfg: TrainConfig, data_dir: str | None) -> None:
    return None


def build_model(cfg: TrainConfig, attention: str, location_shift: int | None) -> EncoderDecoder:
    """The encoder-decoder of a config: one-hot bases in, :data:`TOKENS` out."""
    return EncoderDecoder(DNA.size, len(TOKENS), BOS, EOS, cell=cfg.cell, hidden_size=cfg.hidden_size,
                          num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                          embedding_dim=cfg.embedding_dim, attention=attention,
                          location_shift=location_shift if attention == "location" else None, init=cfg.init,
                          forget_bias=cfg.forget_bias)


def build(cfg: TrainConfig, data: TaskData) -> EncoderDecoder:
    return build_model(cfg, ATTENTION, LOCATION_SHIFT)


def steps_per_epoch(cfg: TrainConfig, data: TaskData) -> int:
    return batches_per_epoch(len(data.splits["train"].dna), cfg.batch_size)


def train_batches(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, epoch: int) -> Iterator[Batch]:
    """Shuffled mini-batches of ORFs; the outputs are the teacher-forced logits of every real residue, (n, V)."""
    split = data.splits["train"]
    for idx in shuffled_batches(len(split.dna), cfg.batch_size, cfg.seed, epoch):
        x, lengths, y, mask = _batch(split, idx)
        logits = model(x, lengths, teacher_inputs(y))  # (B, T, V)
        yield Batch(logits[mask], y[mask], None, int(mask.sum()))


def validate(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, loss_fn) -> dict[str, float]:
    """Teacher-forced loss per residue and greedy-decoding exact match (``accuracy``) on the validation ORFs."""
    val = data.splits["val"]
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(val.dna), 256):
            x, lengths, y, mask = _batch(val, list(range(start, min(start + 256, len(val.dna)))))
            logits = model(x, lengths, teacher_inputs(y))
            total += float(loss_fn(dataclasses.replace(cfg, reduction="sum"), logits[mask], y[mask], None))
            n += int(mask.sum())
    pred, _ = decode(model, val.dna)
    m = sequence_metrics(pred, val.protein)
    return {"loss": total / max(n, 1), "accuracy": m["exact_match"], "exact_match": m["exact_match"],
            "residue_accuracy": m["residue_accuracy"]}


def run_meta(cfg: TrainConfig, data: TaskData) -> dict[str, Any]:
    return {"attention": ATTENTION, "location_shift": LOCATION_SHIFT}


def measure(cfg: TrainConfig, model: EncoderDecoder, data: TaskData) -> tuple[dict, list, dict[str, list[str]]]:
    """Both test parts decoded with ``cfg.beam``: the ``test`` object, the by-length rows, the predictions."""
    preds = {part: decode(model, data.splits[part].dna, cfg.beam)[0] for part in ("test", "test_longer")}
    test, rows = test_metrics(preds, data)
    return test, rows, preds


def _decoding(cfg: TrainConfig) -> str:
    return "greedy" if cfg.beam == 1 else f"beam {cfg.beam}"


def finish(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, out: Path, log) -> tuple[dict, dict]:
    """Both test parts decoded by the best weights, beside the frame-window logistic regression; the plot
    ``accuracy_by_length.png``."""
    test, rows, preds = measure(cfg, model, data)
    log("training the frame-window logistic-regression baseline on the same ORFs ...")
    base, _, base_rows = baseline(data)
    s = data.splits["test"]
    metrics = {
        "test": test,
        "baseline": base,
        "decoding": _decoding(cfg),
        "by_length": {"model": rows, "baseline": base_rows},
        "n": {part: len(data.splits[part].dna) for part in PARTS},
        "codons": {"train": list(TRAIN_CODONS), "test": list(TRAIN_CODONS), "test_longer": list(LONGER_CODONS)},
        "examples": [{"dna": s.dna[i], "protein": s.protein[i], "predicted": preds["test"][i]}
                     for i in range(min(3, len(s.dna)))],
    }
    plot_by_length(rows, base_rows, out / "accuracy_by_length.png", f"{cfg.cell} encoder-decoder ({_decoding(cfg)})")
    return metrics, {}


def evaluate_saved(cfg: TrainConfig, model: EncoderDecoder, meta: dict, data: TaskData) -> dict[str, Any]:
    """The saved model's ``test`` metrics and by-length rows, decoded as the run was (``beam``)."""
    test, rows, _ = measure(cfg, model, data)
    return {"test": test, "decoding": _decoding(cfg), "by_length": rows,
            "n": {part: len(data.splits[part].dna) for part in ("test", "test_longer")}}


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> EncoderDecoder:
    """The model of a run's ``model.safetensors``."""
    for key in ("tokens", "data_fingerprint"):
        if meta.get(key) is None:
            raise ValueError(f"{path}: metadata has no {key!r}")
    if meta["tokens"] != TOKENS:
        raise ValueError(f"{path}: metadata tokens {meta['tokens']!r} are not this version's {TOKENS!r}")
    attention = meta.get("attention", "location")
    if attention not in EncoderDecoder.ATTENTIONS:
        raise ValueError(f"{path}: metadata attention {attention!r} is not one of {', '.join(EncoderDecoder.ATTENTIONS)}")
    model = build_model(cfg, attention, None)  # the starting point does not matter: the weights are loaded
    load_model_state(model, tensors, path)
    return model


#: the longest input ``biornn predict`` decodes, in codons: decoding is step by step with attention over
#: the whole input (about 20 ms a codon on one core at 1,000 codons), and the model was trained on
#: :data:`TRAIN_CODONS`
MAX_PREDICT_CODONS = 1000


def check_orf(text: str) -> str:
    """An input DNA sequence, whitespace removed and upper-cased; ``ValueError`` naming it unless it is
    A, C, G, T only, a whole number of codons and at most :data:`MAX_PREDICT_CODONS` codons."""
    seq = "".join(text.split()).upper()
    name = f"input {seq[:20]!r}{'...' if len(seq) > 20 else ''}"
    if not seq:
        raise ValueError(f"{text!r}: an empty sequence")
    for pos, c in enumerate(seq, start=1):
        if c not in "ACGT":
            what = "ambiguity code" if c in DNA.ambiguity else "character"
            raise ValueError(f"{name}: {what} {c!r} at position {pos}; translate reads A, C, G, T only")
    if len(seq) % 3:
        raise ValueError(f"{name}: {len(seq)} bases is not a whole number of codons (a multiple of 3)")
    if len(seq) // 3 > MAX_PREDICT_CODONS:
        raise ValueError(f"{name}: {len(seq) // 3} codons; translate decodes at most {MAX_PREDICT_CODONS} codons "
                         f"per sequence (this model was trained on {TRAIN_CODONS[0]}-{TRAIN_CODONS[1]})")
    return seq


def predict_rows(model: EncoderDecoder, meta: dict, inputs: list[str]) -> list[dict[str, Any]]:
    """For each DNA sequence: the model's protein (decoded as the run was: greedy or beam), its
    log-probability, and Biopython's translation to compare.  Every input is checked before any is decoded."""
    seqs = [check_orf(text) for text in inputs]
    beam = int(meta.get("config", {}).get("beam", 1))
    proteins, scores = decode(model, seqs, beam)
    return [{"input": s, "protein": p, "log_probability": round(sc, 4), "biopython": translate_dna(s)}
            for s, p, sc in zip(seqs, proteins, scores)]
