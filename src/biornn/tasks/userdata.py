"""The user's own files, as the generic tasks ``classify``, ``tag`` and ``forecast`` read them.

One loader for the three tasks: it reads the training file (and the
validation and test files, if given), checks every record, splits what was not
given, and fits the per-feature normalisation on the training part alone.

Formats (``format``; empty: from the file's extension)
    ``fasta`` (``.fa .fasta .fna .faa .ffn .frn .fas``): symbol sequences; a
    record's class from its header, ``>id label=X``.
    ``ucr`` (``.txt .ucr``, or a ``.tsv``/``.csv`` whose first line is all
    numbers, as the UCR 2018 archive's ``*_TRAIN.tsv``): one univariate series
    per line, the label first; every line of a file (and of the other files)
    must have the same length.
    ``csv``/``tsv`` (``.csv``; ``.tsv .tab``) with a header row: a column of
    symbol sequences (``sequence_column``; empty: a column named ``sequence``
    if there is one) and ``label_column``; without a sequence column the other
    columns are numbers -- for ``classify`` each row is one univariate series
    (its columns are the time steps), for ``forecast`` the whole file is one
    multivariate series (rows are the time steps, columns the features).
    ``npz``: ``X`` (N, T, F) or (N, T), ``y``, optional ``lengths`` (N,) for
    variable-length records (:func:`biornn.data.readers.read_npz`).

Targets by task
    ``classify``: one label per record (FASTA header, label column, UCR first
    value, NPZ ``y`` (N,)).  ``tag``: one label per step -- in CSV/TSV the label
    column holds a string of one character per residue, as long as the
    sequence (``ACGTTA`` / ``eeiiie``); in NPZ ``y`` is (N, T) (labels of
    padded steps are ignored).  ``forecast``: none; the series is its own
    target (the next ``horizon`` steps).

Inputs
    Symbol sequences (FASTA, a sequence column) are encoded as residue weights
    over ``alphabet`` (:mod:`biornn.data.alphabets`; empty: DNA if the
    training sequences hold only A, C, G, T, N -- or also IUPAC ambiguity codes,
    with at least 90 % A, C, G, T, N; RNA alike with U; protein if only
    letters; else the training file's characters).  Numeric
    values are (T, F) series, normalised per feature, ``z = (x - mean) / std``
    with the mean and standard deviation of every real step of the *training
    part* alone (``normalize``; never the validation or test data), kept in the
    weights' metadata and applied again by ``evaluate`` and ``predict``.

Splits
    Without ``val_file``, 20 % of the training file's records validate (pick
    the best epoch and the baseline's C); without ``test_file``, another 20 %
    are held out for the test.  Records are dealt out stratified by label and
    seeded by ``split_seed`` (identical symbol sequences stay in one part); a
    single series (forecast from one CSV) is cut in time instead: the last
    20 % validates (and the 20 % before it tests).

Bad input is one ``ValueError`` line naming the file and the record: an empty
file, a character outside the alphabet (which record, which character), rows
of unequal length in a UCR table, NaN or infinite values, a label of the
validation or test file that the training file does not have, a record longer
than ``max_length``, a file whose features differ from the training file's.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data import alphabets
from ..data.alphabets import Alphabet
from .common import stratified_group_split

#: file extension -> format
EXTENSIONS = {**dict.fromkeys((".fa", ".fasta", ".fna", ".faa", ".ffn", ".frn", ".fas"), "fasta"),
              ".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".npz": "npz", ".txt": "ucr", ".ucr": "ucr"}
#: fractions of the training file held out when no validation or test file is given
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2
#: what each task reads as its target: a label per record, a label per step, or nothing
TARGETS = {"classify": "record", "tag": "step", "forecast": "none"}
PARTS = ("train", "val", "test")


# -- reading one file ---------------------------------------------------------------------

def file_format(path: str | Path, fmt: str = "") -> str:
    """The format of ``path``: ``fmt`` if given, else from its extension.

    A ``.tsv``/``.csv``/``.tab`` file whose first non-blank line is all numbers has no header:
    it is read as a UCR table (the UCR 2018 archive's ``*_TRAIN.tsv``).
    ``ValueError`` naming the file if the extension says nothing.
    """
    if fmt:
        return fmt
    p = Path(path)
    gz = p.suffix.lower() == ".gz"  # reads.fa.gz: the format of reads.fa, read through gunzip
    ext = Path(p.stem).suffix.lower() if gz else p.suffix.lower()
    if ext not in EXTENSIONS:
        shown = repr(ext or "(none)") + (" under .gz" if gz else "")
        raise ValueError(f"{p}: cannot tell the format from the extension {shown}; give --format "
                         f"(fasta, ucr, csv, tsv, npz)")
    found = EXTENSIONS[ext]
    if found in ("csv", "tsv"):
        from ..data.readers import check_regular

        check_regular(p)  # its first line is read below: a pipe with no writer would wait for ever
        try:
            with (gzip.open(p, "rt", encoding="utf-8-sig") if gz else open(p, encoding="utf-8-sig")) as fh:
                first = next((line for line in fh if line.strip()), "")
        except (OSError, EOFError, UnicodeDecodeError, zlib.error):
            return found  # the reader names the problem
        fields = [x for x in re.split(r"[\s,]+", first.strip()) if x]
        if fields and all(_is_number(x) for x in fields):
            return "ucr"
    return found


def _has_bool(value) -> bool:
    """Whether a parsed JSON value holds ``true`` or ``false`` anywhere (bool is an int to NumPy)."""
    if isinstance(value, bool):
        return True
    return isinstance(value, list) and any(_has_bool(v) for v in value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def target_task(target: str) -> str:
    """The generic task that reads labels of this kind (``record``: classify, ``step``: tag)."""
    return {"record": "classify", "step": "tag"}.get(target, target)


def _label_text(value: Any) -> str:
    """A stored label as a class name: ``1.0`` -> ``"1"``, bytes decoded."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


@dataclass
class Records:
    """What one file holds.

    Attributes
    ----------
    path : Path
    ids : list of str
        How each record is named in messages (``'seq7'``, ``row 3``).
    texts : list of str or None
        Symbol sequences (FASTA, a sequence column); None for numeric values.
    values : list of ndarray of float32, shape (T_i, F), or None
        Numeric records, before normalisation.
    labels : list of str or None
        One label per record (``classify``).
    tags : list of list of str or None
        One label per step of every record (``tag``).
    columns : list of str or None
        The names of a CSV/TSV table's numeric columns, in file order: a series' features
        (``forecast``) or a row-per-series table's steps (``classify``).
    """

    path: Path
    ids: list[str]
    texts: list[str] | None = None
    values: list[np.ndarray] | None = None
    labels: list[str] | None = None
    tags: list[list[str]] | None = None
    columns: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def length(self, i: int) -> int:
        return len(self.texts[i]) if self.texts is not None else len(self.values[i])  # type: ignore[index]


def read_records(path: str | Path, cfg: TrainConfig, target: str) -> Records:
    """Read one of the user's files for a task whose ``target`` is ``record``, ``step`` or ``none``.

    ``ValueError`` with one line naming the file (and record) on any problem; see the module's docstring.
    """
    from ..data.readers import read_fasta, read_npz, read_ucr

    p = Path(path)
    fmt = file_format(p, cfg.format)
    if fmt == "fasta":
        if target == "step":
            raise ValueError(f"{p}: FASTA has no per-step labels; task tag reads CSV/TSV (a label string as long "
                             f"as each sequence) or NPZ (y of shape (N, T))")
        if target == "none":
            raise ValueError(f"{p}: task forecast predicts numeric series; FASTA holds symbol sequences")
        recs = read_fasta(p, require_labels=True)
        out = Records(p, [f"record {r.id!r}" for r in recs], texts=[r.sequence for r in recs],
                      labels=[r.label for r in recs])  # type: ignore[misc]
    elif fmt == "ucr":
        if target == "step":
            raise ValueError(f"{p}: a UCR table has one label per series; task tag reads CSV/TSV or NPZ")
        lines: list[int] = []
        X, y = read_ucr(p, equal_length=True, line_numbers=lines)
        out = Records(p, [f"line {n}" for n in lines], values=[row[:, None] for row in X],
                      labels=list(y) if target == "record" else None)
    elif fmt in ("csv", "tsv"):
        out = _read_csv(p, cfg, target, "\t" if fmt == "tsv" else ",")
    else:  # npz
        X, y, lengths = read_npz(p, y=target)
        if y is not None and np.issubdtype(y.dtype, np.floating):
            real = y if target == "record" else y[np.arange(y.shape[1])[None, :] < lengths[:, None]]
            odd = real[real != np.round(real)]
            if odd.size:  # a regression target, or values by mistake: not class labels
                raise ValueError(f"{p}: y holds non-integer numbers (e.g. {float(odd[0]):g}); task {target_task(target)} "
                                 f"reads class labels (integers or strings)")
        ids = [f"record {i}" for i in range(len(X))]
        values = [X[i, : lengths[i]] for i in range(len(X))]
        labels = [_label_text(v) for v in y] if target == "record" else None
        tags = [[_label_text(v) for v in y[i, : lengths[i]]] for i in range(len(X))] if target == "step" else None
        out = Records(p, ids, values=values, labels=labels, tags=tags)
    if not len(out):
        raise ValueError(f"{p}: no records")
    if cfg.max_length:
        for i in range(len(out)):
            if out.length(i) > cfg.max_length:
                raise ValueError(f"{p}: {out.ids[i]}: {out.length(i)} steps is longer than max_length "
                                 f"{cfg.max_length}")
    return out


def _read_csv(p: Path, cfg: TrainConfig, target: str, delimiter: str) -> Records:
    """A CSV/TSV table with a header: symbol sequences and labels, or numeric columns."""
    from ..data.readers import _read_text, read_table

    _, text = _read_text(p)
    try:
        header = [h.strip() for h in next(csv.reader(text.splitlines(), delimiter=delimiter))]
    except csv.Error as e:  # e.g. a field over csv's size limit (131,072 characters)
        raise ValueError(f"{p}: line 1: {e}") from None
    except StopIteration:
        raise ValueError(f"{p}: no header line") from None
    seq_col = cfg.sequence_column or ("sequence" if "sequence" in header else "")
    if seq_col and seq_col == cfg.label_column:  # the default column named sequence, given as the labels
        raise ValueError(f"{p}: label_column {cfg.label_column!r} is also the sequence column (a column named "
                         f"'sequence' holds the sequences unless sequence_column names another); set "
                         f"sequence_column to the column of sequences")
    id_col = "id" if "id" in header and "id" not in (seq_col, cfg.label_column) else None
    if target == "none":
        if seq_col:
            raise ValueError(f"{p}: task forecast predicts numeric series; column {seq_col!r} holds symbols")
        table = read_table(p, label=None, id=id_col, delimiter=delimiter)
        # the whole table is one multivariate series: rows are the steps, columns the features
        return Records(p, ["the series"], values=[table.values], columns=list(table.columns))
    table = read_table(p, label=cfg.label_column, sequence=seq_col or None, id=id_col, delimiter=delimiter)
    # data rows are numbered as the file's lines, blank lines skipped
    lines = [n for n, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1)
             if n > 1 and row and any(c.strip() for c in row)]
    ids = [f"line {n}" + (f" ({table.ids[i]})" if table.ids else "") for i, n in enumerate(lines)]
    if target == "step":
        if not seq_col:
            raise ValueError(f"{p}: task tag reads a sequence column (sequence_column) and a label column holding "
                             f"one label character per residue")
        tags = []
        for i, (seq, lab) in enumerate(zip(table.sequences, table.labels)):  # type: ignore[arg-type]
            raw, lab = lab, "".join(lab.split())
            if len(lab) != len(seq):
                spaces = " (white space is not a label: it is left out)" if lab != raw else ""
                raise ValueError(f"{p}: {ids[i]}: {len(lab)} labels for {len(seq)} residues{spaces}; the label "
                                 f"column needs one character per residue")
            tags.append(list(lab))
        return Records(p, ids, texts=table.sequences, tags=tags)
    if seq_col:
        return Records(p, ids, texts=table.sequences, labels=table.labels)
    # a numeric row is one univariate series: its columns are the time steps
    return Records(p, ids, values=[row[:, None] for row in table.values], labels=table.labels,  # type: ignore[union-attr]
                   columns=list(table.columns))


# -- the alphabet, the classes, the normalisation ----------------------------------------

def infer_alphabet(name: str, texts: list[str]) -> Alphabet:
    """``alphabet`` by name, or (empty) guessed from the training sequences (see the module docstring)."""
    if name == "text":
        return alphabets.text_alphabet(texts)
    if name:
        return alphabets.get(name)
    joined = "".join(texts)
    chars = set(joined)
    # ASCII only: str.upper() would read 'ß' as 'SS' and the dotless 'ı' as 'I'
    if all(c.isascii() for c in chars):
        upper = {c.upper() for c in chars}
        if upper <= set("ACGTN"):
            return alphabets.DNA
        if upper <= set("ACGUN"):
            return alphabets.RNA
        # IUPAC ambiguity codes (R, Y, ...) among mostly plain bases: nucleotides. They are amino-acid
        # letters too, but a protein also uses E, F, I, L, P, Q and is never 90 % A, C, G, T/U and N
        codes = set(alphabets.DNA.ambiguity)
        folded = joined.upper()
        bases = sum(folded.count(c) for c in "ACGTUN")
        if bases >= 0.9 * len(joined):
            if upper <= set("ACGT") | codes:
                return alphabets.DNA
            if upper <= set("ACGU") | codes:
                return alphabets.RNA
        if all(c.isalpha() for c in upper):
            return alphabets.PROTEIN
    return alphabets.text_alphabet(texts)


def near_alphabet(texts: list[str]) -> tuple[str, set[str]] | None:
    """``(name, odd characters)`` when all but at most 1 % of the characters are of one biological alphabet
    (dna, rna, protein; either case) -- a file that a few stray characters made "text" -- else None."""
    import string
    from collections import Counter

    counts = Counter("".join(texts))
    total = sum(counts.values())
    for name, allowed in (("dna", set("ACGTNacgtn")), ("rna", set("ACGUNacgun")), ("protein", set(string.ascii_letters))):
        odd = {c for c in counts if c not in allowed}
        if odd and sum(counts[c] for c in odd) <= 0.01 * total:
            return name, odd
    return None


def class_order(labels: set[str]) -> list[str]:
    """Class names in a stable order: numerically if every label is a number, else as text."""
    if all(_is_number(x) for x in labels):
        return sorted(labels, key=lambda x: (float(x), x))
    return sorted(labels)


def fit_normalizer(values: list[np.ndarray]) -> dict[str, list[float]]:
    """Per-feature mean and standard deviation over every step of the training records.

    ``mean_f = (1/N) sum_{i,t} x_{i,t,f}``, ``std_f = sqrt((1/N) sum (x - mean_f)^2)`` with N the
    training steps; a constant feature keeps std 1 (it is only shifted).
    """
    allx = np.concatenate(values).astype(np.float64)  # (sum T_i, F)
    mean = allx.mean(axis=0)
    std = allx.std(axis=0)
    std[~(std > 1e-12)] = 1.0
    return {"mean": mean.tolist(), "std": std.tolist()}


def normalize(x: np.ndarray, norm: dict[str, list[float]] | None, where: str = "values") -> np.ndarray:
    """(T, F) raw values -> (T, F) float32 ``(x - mean) / std`` (unchanged without a normaliser).

    ``ValueError`` naming ``where`` if a result does not fit float32: a value far outside the
    training part's range, divided by its (tiny) standard deviation, would reach the model as inf.
    """
    if norm is None:
        z = np.asarray(x, dtype=np.float64)
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # checked below, with a message of its own
            z = (x - np.asarray(norm["mean"], dtype=np.float64)) / np.asarray(norm["std"], dtype=np.float64)
    big = ~(np.abs(z) <= np.finfo(np.float32).max)
    if big.any():
        t, f = np.argwhere(big)[0]
        raise ValueError(f"{where}: step {int(t) + 1}, feature {int(f) + 1}: {float(x[t, f]):.6g} normalised is "
                         f"{float(z[t, f]):.3g}, beyond float32 (the training part's std of that feature is "
                         f"{float(norm['std'][f]) if norm else 1.0:.3g}); check the value, or train with "
                         f"normalize=false")
    return z.astype(np.float32)


# -- the task data ------------------------------------------------------------------------

@dataclass
class Part:
    """One part (train, val or test).

    Attributes
    ----------
    ids : list of str
        Record names, for messages.
    x : list of ndarray of float32, shape (T_i, F)
        The model's inputs: residue weights, or normalised values.
    texts : list of str or None
        The symbol sequences (None for numeric records).
    y : ndarray of int64, shape (N,), or None
        Class of each record (``classify``).
    tags : list of ndarray of int64, shape (T_i,), or None
        Class of every step (``tag``).
    """

    ids: list[str]
    x: list[np.ndarray]
    texts: list[str] | None = None
    y: np.ndarray | None = None
    tags: list[np.ndarray] | None = None

    @property
    def steps_y(self) -> np.ndarray:
        """Every step's class, records concatenated (sum T_i,)."""
        return np.concatenate(self.tags) if self.tags else np.zeros(0, dtype=np.int64)


@dataclass
class UserData:
    """What :func:`load` returns: the parts, and what the model must keep to read new inputs."""

    task: str
    alphabet: Alphabet | None
    n_features: int
    labels: list[str]
    parts: dict[str, Part]
    norm: dict[str, list[float]] | None
    fingerprint: str = ""

    @property
    def splits(self) -> dict[str, Part]:
        return self.parts

    def meta(self) -> dict[str, Any]:
        return {"input": "symbols" if self.alphabet is not None else "values",
                "alphabet": self.alphabet.to_json() if self.alphabet is not None else None,
                "n_features": self.n_features, "labels": self.labels, "normalize": self.norm}


def _fingerprint(task: str, cfg: TrainConfig, files: dict[str, str]) -> str:
    """SHA-256 of the files' bytes and of every setting that changes what is read or how it is split."""
    digest = hashlib.sha256()
    settings = {k: getattr(cfg, k) for k in ("format", "label_column", "sequence_column", "alphabet", "max_length",
                                              "normalize", "split_seed")}
    digest.update(json.dumps({"task": task, **settings}, sort_keys=True).encode())
    for part, f in files.items():
        digest.update(f"\n{part}\n".encode())
        try:
            digest.update(Path(f).read_bytes())
        except OSError as e:
            raise ValueError(f"{f}: cannot read ({e.strerror})") from None
    return digest.hexdigest()


def _subset(rec: Records, idx: np.ndarray) -> Records:
    pick = lambda xs: [xs[i] for i in idx] if xs is not None else None  # noqa: E731
    return Records(rec.path, pick(rec.ids), pick(rec.texts), pick(rec.values), pick(rec.labels), pick(rec.tags))


def _time_cut(rec: Records, fractions: dict[str, float]) -> dict[str, Records]:
    """One series cut in time into consecutive parts (train first); ``ValueError`` if a part is too short."""
    x = rec.values[0]  # type: ignore[index]
    T = len(x)
    # validation follows training in time and the test comes last: no part sees its own future
    # (only the parts asked for: a given --val file leaves train and test to cut, a --test file train and val)
    order = [name for name in PARTS if name in fractions]
    out, start = {}, 0
    for k, name in enumerate(order):
        stop = T if k == len(order) - 1 else start + round(fractions[name] * T)
        if stop - start < 4:
            raise ValueError(f"{rec.path}: a series of {T} steps is too short to cut into {', '.join(order)} parts; "
                             f"give --val (and --test) files")
        out[name] = Records(rec.path, [f"steps {start}..{stop - 1}"], values=[x[start:stop]])
        start = stop
    return out


def _carve(rec: Records, want: list[str], seed: int) -> dict[str, Records]:
    """Hold parts ``want`` (``val``, ``test``) out of the training file's records."""
    fractions = {name: (VAL_FRACTION if name == "val" else TEST_FRACTION) for name in want}
    fractions["train"] = 1.0 - sum(fractions.values())
    if rec.values is not None and len(rec) == 1:
        return _time_cut(rec, fractions)
    labels = rec.labels if rec.labels is not None else ["all"] * len(rec)
    groups = rec.texts if rec.texts is not None else list(range(len(rec)))
    ordered = {name: fractions[name] for name in (*want, "train")}
    idx = stratified_group_split(labels, groups, ordered, seed)
    for name in ordered:
        if len(idx[name]) == 0:
            what = "leave a training part" if name == "train" else f"hold out a {name} part"
            raise ValueError(f"{rec.path}: {len(rec)} records (identical sequences kept together) are too few to "
                             f"{what}; give {' and '.join(f'--{w} FILE' for w in want)}")
    return {name: _subset(rec, idx[name]) for name in ordered}


def load(cfg: TrainConfig, task: str) -> UserData:
    """Read, check, split and encode the files named by ``cfg`` for ``task`` (classify, tag, forecast).

    Returns
    -------
    UserData
        Parts ``train``, ``val``, ``test``: inputs (T_i, F) normalised with the training part's statistics.
    """
    if not cfg.train_file:
        raise ValueError(f"task {task}: give the training file (--train FILE or train_file=...)")
    target = TARGETS[task]
    files = {"train": cfg.train_file, **({"val": cfg.val_file} if cfg.val_file else {}),
             **({"test": cfg.test_file} if cfg.test_file else {})}
    read = {part: read_records(f, cfg, target) for part, f in files.items()}
    train = read["train"]
    kinds = {part: r.texts is not None for part, r in read.items()}
    if len(set(kinds.values())) > 1:
        other = next(part for part in read if kinds[part] != kinds["train"])
        raise ValueError(f"{read[other].path}: holds {'symbol sequences' if kinds[other] else 'numeric values'} "
                         f"but the training file {train.path} holds "
                         f"{'symbol sequences' if kinds['train'] else 'numeric values'}")
    symbols = kinds["train"]
    # the alphabet and the classes come from the training file; every other file is checked against them
    alphabet = infer_alphabet(cfg.alphabet, train.texts) if symbols else None  # type: ignore[arg-type]
    note = ""
    if symbols and not cfg.alphabet and alphabet is not None and alphabet.name == "text":
        near = near_alphabet(train.texts)  # type: ignore[arg-type]
        if near is not None:  # a stray character turned a DNA file into text: say so, once, on stderr
            name, odd = near
            shown = ", ".join(repr(c) for c in sorted(odd)[:5])
            note = (f"note: {train.path}: the alphabet was guessed as text (every character a symbol, case kept) "
                    f"because of {shown}, rare among {name.upper()} letters; alphabet={name} refuses them, "
                    f"alphabet=text keeps this guess")
    if not symbols:
        F = train.values[0].shape[1]  # type: ignore[index]
        for r in read.values():
            for i, v in enumerate(r.values):  # type: ignore[union-attr, arg-type]
                if v.shape[1] != F:
                    raise ValueError(f"{r.path}: {r.ids[i]}: {v.shape[1]} features, the training file has {F}")
            if r.columns is not None and train.columns is not None and r.columns != train.columns:
                # the model reads features by position: the same names in another order would be misread
                how = "in another order" if sorted(r.columns) == sorted(train.columns) else "with other names"
                shown = ", ".join(c if c.isprintable() else repr(c) for c in train.columns)
                what = "feature" if target == "none" else "step"
                raise ValueError(f"{r.path}: {what} columns {how} than the training file's ({shown[:120]})")
        fmt = {part: file_format(r.path, cfg.format) for part, r in read.items()}
        if fmt["train"] == "ucr" or target == "record":
            # a UCR table or a row-per-series table needs the same length in every file
            T = train.length(0)
            for part, r in read.items():
                if fmt[part] in ("ucr", "csv", "tsv") and r.length(0) != T:
                    raise ValueError(f"{r.path}: {r.ids[0]}: {r.length(0)} values, but the training file "
                                     f"{train.path} has {T}; equal lengths are required")
    else:
        F = alphabet.size  # type: ignore[union-attr]
        # every file's characters are checked before anything else is done with them
        for r in read.values():
            for ident, seq in zip(r.ids, r.texts):  # type: ignore[arg-type]
                alphabet.indices(seq, f"{r.path}: {ident}")  # type: ignore[union-attr]
    labels: list[str] = []
    if target == "record":
        labels = class_order(set(train.labels))  # type: ignore[arg-type]
    elif target == "step":
        labels = class_order({t for tags in train.tags for t in tags})  # type: ignore[union-attr]
    for part, r in read.items():
        if part == "train":
            continue
        known = set(labels)
        per_record = r.labels if target == "record" else r.tags if target == "step" else None
        for i, lab in enumerate(per_record or []):
            for value in ([lab] if target == "record" else lab):
                if value not in known:
                    raise ValueError(f"{r.path}: {r.ids[i]}: label {value!r} is not in the training file "
                                     f"{train.path} (its labels: {', '.join(labels)[:120]})")
    if target != "none" and len(labels) < 2 and task == "classify":
        raise ValueError(f"{train.path}: one class ({labels[0]!r}); classification needs at least two")
    missing = [part for part in ("val", "test") if part not in read]
    if missing:
        read.update(_carve(train, missing, cfg.split_seed))
    # the normaliser sees the training part alone: no statistic of the validation or test data leaks in
    norm = fit_normalizer(read["train"].values) if (not symbols and cfg.normalize) else None  # type: ignore[arg-type]
    index = {label: k for k, label in enumerate(labels)}
    parts = {}
    for part in PARTS:
        r = read[part]
        if symbols:
            x = [alphabet.encode(s, f"{r.path}: {r.ids[i]}")  # type: ignore[union-attr]
                 for i, s in enumerate(r.texts)]  # type: ignore[arg-type]
        else:
            x = [normalize(v, norm, f"{r.path}: {r.ids[i]}") for i, v in enumerate(r.values)]  # type: ignore[union-attr,arg-type]
        y = np.array([index[lab] for lab in r.labels], dtype=np.int64) if target == "record" else None  # type: ignore[union-attr]
        tags = [np.array([index[t] for t in tg], dtype=np.int64) for tg in r.tags] if target == "step" else None  # type: ignore[union-attr]
        parts[part] = Part(r.ids, x, r.texts, y, tags)
    if note:  # once every file has passed its checks: a refusal stays one line
        print(note, file=sys.stderr)
    return UserData(task, alphabet, F, labels, parts, norm, _fingerprint(task, cfg, files))


# -- inputs given to `biornn predict` ---------------------------------------------------------

def parse_inputs(meta: dict[str, Any], inputs: list[str], max_length: int = 0) -> list[np.ndarray]:
    """The inputs of ``biornn predict`` as the model reads them: (T_i, F) float32 each.

    A symbol model reads sequences (white space ignored) over its alphabet; a value model reads a
    JSON array per input, ``[x_1, ..., x_T]`` (one feature) or ``[[...F values], ...]`` (T steps),
    or numbers separated by commas or white space (one feature), normalised with the training
    part's statistics.  ``ValueError`` naming the input on anything else.
    """
    out = []
    F = int(meta["n_features"])
    for n, text in enumerate(inputs, start=1):
        where = f"input {n}"
        if meta.get("alphabet") is not None:
            alphabet = meta["vocab_obj"]
            seq = "".join(text.split())
            if not seq:
                raise ValueError(f"{where}: an empty sequence")
            x = alphabet.encode(seq, f"{where} ({seq[:20]!r}{'...' if len(seq) > 20 else ''})")
        else:
            from ..data.readers import split_fields

            raw = text.strip()
            if not raw or raw.replace(" ", "") in ("[]", "[[]]"):
                raise ValueError(f"{where}: an empty series")
            try:
                value = json.loads(raw) if raw.startswith("[") else [float(v) for v in split_fields(raw)]
                if _has_bool(value):  # np.asarray reads true as 1.0
                    raise TypeError("a boolean")
                arr = np.asarray(value, dtype=np.float64)
            except RecursionError:
                raise ValueError(f"{where}: arrays nested too deeply; a series is [x, ...] or [[x, ...], ...]") \
                    from None
            except OverflowError:
                raise ValueError(f"{where}: a number too large for a float (over 1.8e308)") from None
            except (ValueError, TypeError):
                raise ValueError(f"{where}: not a series of numbers (give a JSON array, or numbers separated by "
                                 f"commas) -- {raw[:40]!r}") from None
            if arr.ndim == 1 and F == 1:
                arr = arr[:, None]
            if arr.ndim != 2 or arr.shape[1] != F or len(arr) == 0:
                raise ValueError(f"{where}: a series of shape {arr.shape}; the model reads (T, {F}) "
                                 f"({'a flat list of numbers' if F == 1 else f'a list of steps of {F} values'})")
            if not np.isfinite(arr).all():
                raise ValueError(f"{where}: NaN or infinite values are not accepted")
            x = normalize(arr, meta.get("normalize"), where)
        if max_length and len(x) > max_length:
            raise ValueError(f"{where}: {len(x)} steps is longer than max_length {max_length}")
        out.append(x)
    return out


def check_meta(meta: dict[str, Any], path: Path) -> None:
    """``ValueError`` naming the weights file if its metadata cannot rebuild the input encoding;
    sets ``meta["vocab_obj"]`` to the alphabet (or None)."""
    for key in ("input", "n_features", "labels", "normalize", "data_fingerprint"):
        if key not in meta:
            raise ValueError(f"{path}: metadata has no {key!r}")
    meta["vocab_obj"] = None
    if meta.get("alphabet") is not None:
        try:
            meta["vocab_obj"] = Alphabet.from_json(meta["alphabet"])
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ValueError(f"{path}: metadata has an unusable alphabet ({e})") from None
    norm = meta["normalize"]
    F = meta["n_features"]
    if not isinstance(F, int) or F <= 0:
        raise ValueError(f"{path}: metadata n_features is not a positive integer")
    if norm is not None and not (isinstance(norm, dict) and len(norm.get("mean", [])) == F
                                 and len(norm.get("std", [])) == F):
        raise ValueError(f"{path}: metadata normalize does not have {F} means and standard deviations")
    if not isinstance(meta["labels"], list) or not all(isinstance(x, str) for x in meta["labels"]):
        raise ValueError(f"{path}: metadata labels are not a list of names")
