"""Readers for the user's sequence files that need no heavy dependency: FASTA, UCR/UEA, CSV/TSV, NPZ.

Every reader checks what it reads and raises ``ValueError`` with one line that
names the file, the record or line, and the problem: an empty file, a
character outside the alphabet (which record, which character, where), a
NaN or infinite value, a row of another length where equal lengths are
required, a missing column or label.

FASTA is parsed here in pure Python (the format is a ``>`` header line then
sequence lines); Biopython is not needed.  A record's label comes from its
header (``>id label=X``) or from a labels file (``id label`` per line).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import first_line
from .alphabets import Alphabet

__all__ = ["FastaRecord", "Table", "read_fasta", "read_labels", "read_npz", "read_table", "read_text_file", "read_ucr"]

#: the longest line a table reader splits into values (characters): ten million is a series of about a
#: million numbers, far beyond any UCR/UEA series (the longest hold tens of thousands); a longer line is
#: refused before it is split, instead of building a list of tens of millions of strings
MAX_LINE_CHARS = 10_000_000


def check_regular(path: str | Path, allow_pipe: bool = False) -> None:
    """``ValueError`` naming ``path`` if it is a device or socket, or a pipe unless ``allow_pipe``: a device
    may never end (``/dev/zero``), and a pipe with no writer waits for ever; data files are also read
    twice (their fingerprint), which a pipe cannot give.  A missing path or a directory is left to the
    reader's own message."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or (allow_pipe and stat.S_ISFIFO(mode)):
        return
    raise ValueError(f"{path}: not a regular file (a {'device or socket' if allow_pipe else 'pipe, socket or device'});"
                     f" give a file")


#: the most text a gzip-compressed file may unpack to (bytes): far above any data set here, and a
#: bound on what a malformed or malicious archive can make the reader hold
GZIP_MAX_BYTES = 4 << 30


def read_text_file(path: str | Path, allow_pipe: bool = False) -> str:
    """A file's text (UTF-8, a byte-order mark dropped, line ends as ``\n``), gzip-compressed or not
    (``reads.fa.gz``: told by its first bytes); ``ValueError`` naming the file if it is missing, not
    UTF-8, a damaged gzip file or not readable (a directory, no permission, a device; a pipe unless
    ``allow_pipe``, for inputs read once, such as ``predict --file /dev/stdin``)."""
    p = Path(path)
    check_regular(p, allow_pipe)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except (IsADirectoryError, PermissionError) as e:
        raise ValueError(f"{p}: cannot read ({e.strerror})") from None
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(p, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not UTF-8 text{' (after gunzip)' if p.suffix.lower() == '.gz' else ''}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as reading in text mode does


def _gunzip(p: Path, data: bytes) -> bytes:
    """The content of a gzip file (every member), at most :data:`GZIP_MAX_BYTES`."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            out = fh.read(GZIP_MAX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOFError: cut short
        raise ValueError(f"{p}: a damaged gzip file ({e or 'it ends too early'})") from None
    if len(out) > GZIP_MAX_BYTES:
        raise ValueError(f"{p}: unpacks to more than {GZIP_MAX_BYTES >> 30} GiB; unpack it and give the file")
    return out


def _read_text(path: str | Path) -> tuple[Path, str]:
    """The file's text (:func:`read_text_file`); ``ValueError`` naming the file if it is also empty."""
    p = Path(path)
    text = read_text_file(p)
    if not text.strip():
        raise ValueError(f"{p}: empty file")
    return p, text


# -- FASTA ---------------------------------------------------------------------------

@dataclass
class FastaRecord:
    """One FASTA record.

    Attributes
    ----------
    id : str
        The header's first word.
    description : str
        The rest of the header line.
    sequence : str
        The residues, sequence lines joined, white space removed.
    label : str or None
        From ``label=X`` in the header or from the labels file.
    """

    id: str
    description: str
    sequence: str
    label: str | None = None


#: ``label=X`` in a FASTA header, or ``label="two words"`` (a label with spaces must be quoted)
_LABEL = re.compile(r'(?:^|\s)label=(?:"([^"]*)"|(\S+))')


def read_labels(path: str | Path) -> dict[str, str]:
    """A labels file: one ``id label`` pair per line (white space, tab or comma between); ``#`` comments.

    Returns
    -------
    dict of str to str
        id -> label.  ``ValueError`` naming the line on a malformed or repeated id.
    """
    p, text = _read_text(path)
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [x for x in re.split(r"[\s,]+", line) if x]
        if len(parts) != 2:
            raise ValueError(f"{p}: line {n}: expected 'id label', got {line[:60]!r}")
        if parts[0] in out:
            raise ValueError(f"{p}: line {n}: id {parts[0]!r} given twice")
        out[parts[0]] = parts[1]
    if not out:
        raise ValueError(f"{p}: no labels in the file")
    return out


def read_fasta(path: str | Path, alphabet: Alphabet | None = None, labels: str | Path | dict | None = None,
               require_labels: bool = False, max_length: int | None = None) -> list[FastaRecord]:
    """Read a FASTA file.

    Parameters
    ----------
    path : path
    alphabet : Alphabet, optional
        If given, every residue is checked against it (IUPAC codes included).
    labels : path or dict, optional
        A labels file (:func:`read_labels`) or a dict id -> label; overrides
        ``label=`` in the headers.
    require_labels : bool
        Every record must have a label.
    max_length : int, optional
        Longest sequence allowed.

    Returns
    -------
    list of FastaRecord
        In file order.

    Raises
    ------
    ValueError
        One line naming the file and record: empty file, text before the first
        header, a record without residues, a repeated id, a character outside the
        alphabet, a sequence longer than ``max_length``, a missing label.
    """
    p, text = _read_text(path)
    label_map = read_labels(labels) if isinstance(labels, (str, Path)) else labels
    records: list[FastaRecord] = []
    seen: set[str] = set()
    lines: list[str] = []
    header: tuple[int, str] | None = None

    def close() -> None:
        line_no, head = header  # type: ignore[misc]
        # the id ends at the first white space, a tab as well as a space
        ident, desc = (head.split(None, 1) + [""])[:2] if head.split() else ("", "")
        where = f"{p}: record {ident!r} (line {line_no})"
        if not ident:
            raise ValueError(f"{p}: line {line_no}: a header with no id")
        if ident in seen:
            raise ValueError(f"{where}: id given twice")
        seq = "".join("".join(x.split()) for x in lines)
        if not seq:
            raise ValueError(f"{where}: no sequence")
        if max_length is not None and len(seq) > max_length:
            raise ValueError(f"{where}: sequence of {len(seq)} residues is longer than the maximum {max_length}")
        if alphabet is not None:
            alphabet.indices(seq, where)
        found = _LABEL.findall(desc)
        if len(found) > 1:
            raise ValueError(f"{where}: the header gives label= {len(found)} times; give one")
        label = (found[0][0] or found[0][1]) if found else None
        if found and not label:
            raise ValueError(f"{where}: an empty label (label=\"\")")
        if label_map is not None:
            label = label_map.get(ident, None)
        if require_labels and label is None:
            source = "the labels file" if label_map is not None else "its header (label=X)"
            raise ValueError(f"{where}: no label in {source}")
        seen.add(ident)
        records.append(FastaRecord(ident, desc.strip(), seq, label))

    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith(">"):
            if header is not None:
                close()
            header, lines = (n, line[1:].strip()), []
        elif line.startswith(";") or not line:
            continue  # old-style comment or blank line
        elif header is None:
            raise ValueError(f"{p}: line {n}: sequence before the first '>' header; not a FASTA file")
        else:
            lines.append(line)
    if header is None:
        raise ValueError(f"{p}: no '>' header; not a FASTA file")
    close()
    return records


# -- UCR / UEA text tables ----------------------------------------------------------

def _number(text: str, p: Path, n: int, col: int) -> float:
    if not text:
        raise ValueError(f"{p}: line {n}, value {col}: empty (a missing value is not accepted)")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{p}: line {n}, value {col}: {text[:30]!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{p}: line {n}, value {col}: {text} (NaN or infinite values are not accepted)")
    if abs(value) > float(np.finfo(np.float32).max):  # it would become inf in the float32 the models read
        raise ValueError(f"{p}: line {n}, value {col}: {text[:30]} is beyond float32's range (+-3.4e38)")
    return value


def split_fields(line: str) -> list[str]:
    """The fields of one line of numbers: split at commas when it has any (each field stripped; an
    empty field stays, to be refused as a missing value, and one trailing comma is allowed), else at
    white space.

    >>> split_fields("1, 2.5,,3"), split_fields(" 1  2\t3 "), split_fields("1,2,")
    (['1', '2.5', '', '3'], ['1', '2', '3'], ['1', '2'])
    """
    line = line.strip()
    if "," not in line:
        return line.split()
    fields = [x.strip() for x in line.split(",")]
    return fields[:-1] if len(fields) > 1 and fields[-1] == "" else fields


def _non_finite(text: str) -> bool:
    """``text`` reads as a NaN or infinite number (``nan``, ``-inf``, ``Infinity``)."""
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


def read_ucr(path: str | Path, equal_length: bool = True,
             line_numbers: list[int] | None = None) -> tuple[np.ndarray | list[np.ndarray], list[str]]:
    """A UCR/UEA time-series table: one series per line, the label first, then the values.

    Values are separated by white space or by commas (both UCR formats); between commas an empty
    field is a missing value, refused like NaN.

    Parameters
    ----------
    path : path
    equal_length : bool
        Require every series to have the same length (and return one array).
    line_numbers : list, optional
        Receives the file's line number (from 1) of every series, for messages.

    Returns
    -------
    X : ndarray of float32, shape (N, T), or list of N arrays (T_i,) when not ``equal_length``
    y : list of str
        The labels as written (``"1"``, ``"-1"``, ``"abnormal"``).

    Raises
    ------
    ValueError
        Empty file, a line with no values, a value or label that is not a finite
        number, a line of another length than the first when ``equal_length``, a
        line longer than ``MAX_LINE_CHARS`` (refused before it is split).
    """
    p, text = _read_text(path)
    rows: list[np.ndarray] = []
    labels: list[str] = []
    first: tuple[int, int] | None = None
    for n, line in enumerate(text.splitlines(), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise ValueError(f"{p}: line {n}: {len(line):,} characters on one line, more than the "
                             f"{MAX_LINE_CHARS:,} a series may take")
        parts = split_fields(line)  # an empty field between commas is a missing value, refused below
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(f"{p}: line {n}: a label and no values")
        if not parts[0]:
            raise ValueError(f"{p}: line {n}: empty label")
        if _non_finite(parts[0]):  # what a table writer puts for a missing label
            raise ValueError(f"{p}: line {n}: the label is {parts[0]!r} (NaN or infinite labels are not accepted)")
        values = np.array([_number(x, p, n, i) for i, x in enumerate(parts[1:], start=1)], dtype=np.float32)
        if first is None:
            first = (n, len(values))
        elif equal_length and len(values) != first[1]:
            raise ValueError(f"{p}: line {n}: {len(values)} values, but line {first[0]} has {first[1]}; "
                             f"equal lengths are required")
        label = parts[0]
        # some UCR files write integer labels as 1.0000000e+00: the class is "1"
        if re.fullmatch(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?", label) and float(label).is_integer():
            label = str(int(float(label)))
        labels.append(label)
        rows.append(values)
        if line_numbers is not None:
            line_numbers.append(n)
    if not rows:
        raise ValueError(f"{p}: no series (only separators)")
    if equal_length:
        return np.stack(rows), labels
    return rows, labels


# -- CSV / TSV ------------------------------------------------------------------------

@dataclass
class Table:
    """What :func:`read_table` read.

    Attributes
    ----------
    labels : list of str or None
        The label column (N,).
    ids : list of str or None
        The id column (N,), if one was named.
    sequences : list of str or None
        The sequence column (N,), white space stripped, if one was named.
    values : ndarray of float32, shape (N, F), or None
        The numeric columns, if no sequence column was named.
    columns : list of str
        The names of the numeric columns (F).
    lines : list of int
        The file's line number of each row (N,), for messages about a row.
    """

    labels: list[str] | None
    ids: list[str] | None
    sequences: list[str] | None
    values: np.ndarray | None
    columns: list[str]
    lines: list[int] = field(default_factory=list)


def read_table(path: str | Path, label: str | None = "label", sequence: str | None = None, id: str | None = None,
               delimiter: str | None = None, alphabet: Alphabet | None = None) -> Table:
    """A CSV or TSV file with a header row: a sequence column, or numeric columns, and a label column.

    Parameters
    ----------
    path : path
        ``.tsv``/``.tab`` files are tab-separated, others comma-separated, unless ``delimiter``.
    label : str or None
        The label column's name (None: no labels).
    sequence : str, optional
        The sequence column's name; without it every other column (but ``id``) must be numeric.
    id : str, optional
        A column of record names, used in messages and returned.
    delimiter : str, optional
    alphabet : Alphabet, optional
        Checks every sequence.

    Raises
    ------
    ValueError
        Empty file, a named column missing, a row with another number of fields,
        an empty label or sequence, a character outside the alphabet, a value
        that is not a finite number, a field over the ``csv`` module's size limit.
    """
    p, text = _read_text(path)
    if delimiter is None:
        delimiter = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        return _read_table(p, reader, label, sequence, id, alphabet)
    except csv.Error as e:  # a field over csv's size limit (131,072 characters): bad input, with its line
        raise ValueError(f"{p}: line {reader.line_num}: {e}") from None


def _read_table(p: Path, reader, label: str | None, sequence: str | None, id: str | None,
                alphabet: Alphabet | None) -> Table:
    """The rows of :func:`read_table` from its ``csv.reader``."""
    header = [h.strip() for h in next(reader)]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:  # a row would silently keep the last of them
        raise ValueError(f"{p}: line 1: column name(s) given twice: {', '.join(map(repr, repeated))[:120]}")
    for role, name in (("label", label), ("sequence", sequence), ("id", id)):
        if name is not None and name not in header:
            shown = ", ".join(h if h.isprintable() else repr(h) for h in header)  # no raw control characters
            raise ValueError(f"{p}: line 1: no {role} column {name!r} (columns: {shown[:120]})")
    named = {c for c in (label, sequence, id) if c is not None}
    numeric = [j for j, h in enumerate(header) if h not in named] if sequence is None else []
    if sequence is None and not numeric:
        raise ValueError(f"{p}: no value columns besides the label")
    labels: list[str] = []
    ids: list[str] = []
    seqs: list[str] = []
    values: list[list[float]] = []
    lines: list[int] = []
    end = reader.line_num  # the header's last line
    for row in reader:
        # the line the row starts on: a quoted field may run over several lines
        n, end = end + 1, reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        lines.append(n)
        if len(row) != len(header):
            raise ValueError(f"{p}: line {n}: {len(row)} fields, the header has {len(header)}")
        cells = dict(zip(header, (c.strip() for c in row)))
        ident = cells[id] if id is not None else None
        where = f"{p}: line {n}" + (f" ({ident})" if ident else "")
        if label is not None:
            if not cells[label]:
                raise ValueError(f"{where}: empty label")
            if _non_finite(cells[label]):  # as the UCR reader: NaN is a missing label, not a class
                raise ValueError(f"{where}: label {cells[label]!r} (NaN or infinite labels are not accepted)")
            labels.append(cells[label])
        if ident is not None:
            ids.append(ident)
        if sequence is not None:
            seq = "".join(cells[sequence].split())
            if not seq:
                raise ValueError(f"{where}: empty sequence")
            if alphabet is not None:
                alphabet.indices(seq, where)
            seqs.append(seq)
        else:
            values.append([_number(row[j].strip(), p, n, j + 1) for j in numeric])
    if not (labels or seqs or values):
        raise ValueError(f"{p}: a header and no rows")
    return Table(
        labels=labels if label is not None else None,
        ids=ids if id is not None else None,
        sequences=seqs if sequence is not None else None,
        values=np.array(values, dtype=np.float32) if sequence is None else None,
        columns=[header[j] for j in numeric],
        lines=lines,
    )


# -- NPZ --------------------------------------------------------------------------------

def read_npz(path: str | Path, y: str = "record") -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """A NumPy ``.npz`` archive with ``X`` (N, T, F) or (N, T), ``y`` (N,) and optionally ``lengths`` (N,).

    ``y="record"`` (default) requires one target per record, ``y (N,)``;
    ``y="step"`` one label per step, ``y (N, T)`` (per-step tagging; steps past
    a record's length are padding); ``y="none"`` ignores any ``y`` and returns
    None for it (a forecast reads the series alone).

    Returns
    -------
    X : ndarray of float32, shape (N, T, F)
    y : ndarray, shape (N,) or (N, T), or None
        As stored (integer class ids, strings, or floats for a regression); (N, T)
        with ``y="step"``, None with ``y="none"``.
    lengths : ndarray of int64, shape (N,)
        Each sequence's real steps (T for all if the archive has none); steps
        past a sequence's length are padding and are not checked.

    Raises
    ------
    ValueError
        Not an archive, ``X`` or ``y`` missing, wrong shapes, lengths outside
        1..T, NaN or infinite values within the lengths.
    """
    p = Path(path)
    check_regular(p)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(4)
    except OSError:
        magic = b""  # np.load below names the problem
    if magic and magic[:2] != b"PK":  # np.load would take any other file for a pickle and say so
        if magic[:2] == b"\x1f\x8b":
            raise ValueError(f"{p}: a gzip file, not a NumPy .npz archive (an .npz is a zip archive already; "
                             f"gunzip it first)")
        raise ValueError(f"{p}: not a NumPy .npz archive (not a zip file; it starts with {magic!r})")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except Exception as e:  # a damaged archive raises zlib, zipfile, tokenize, syntax errors... all one refusal
        if p.is_file() and p.stat().st_size == 0:
            raise ValueError(f"{p}: empty file") from None
        if "allow_pickle" in str(e):  # a valid archive of object arrays (ragged records)
            raise ValueError(f"{p}: an array of Python objects (e.g. records of different lengths); give X as "
                             f"one (N, T, F) number array padded to the longest record, with lengths (N,)") from None
        raise ValueError(f"{p}: not a NumPy .npz archive ({first_line(e, 80)})") from None
    if y not in ("record", "step", "none"):
        raise ValueError(f"read_npz: y must be 'record', 'step' or 'none', got {y!r}")
    mode = y
    for key in ("X", "y") if mode != "none" else ("X",):
        if key not in arrays:
            raise ValueError(f"{p}: no array {key!r} (arrays: {', '.join(arrays) or 'none'})")
    raw = [k for k, a in arrays.items() if not isinstance(a, np.ndarray)]
    if raw:
        raise ValueError(f"{p}: member {raw[0]!r} is not a .npy array")
    X = arrays["X"]
    y = arrays["y"] if mode != "none" else None
    if X.ndim == 2:
        X = X[:, :, None]
    if X.ndim != 3 or X.shape[0] == 0 or X.shape[1] == 0 or X.shape[2] == 0:
        raise ValueError(f"{p}: X must be (N, T, F) or (N, T) with N, T, F > 0, got shape {arrays['X'].shape}")
    if not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)):  # complex: not values
        raise ValueError(f"{p}: X must be integer or floating-point numbers, got {X.dtype}")
    if mode == "record" and (y.ndim != 1 or len(y) != len(X)):
        raise ValueError(f"{p}: y must be (N,) = ({len(X)},), got shape {y.shape}")
    if mode == "step" and y.shape != X.shape[:2]:
        raise ValueError(f"{p}: per-step labels y must be (N, T) = {X.shape[:2]}, got shape {y.shape}")
    N, T = X.shape[:2]
    if "lengths" in arrays:
        lengths = arrays["lengths"]
        if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"{p}: lengths must be (N,) = ({N},) integers, got {lengths.dtype} {lengths.shape}")
        bad = np.flatnonzero((lengths < 1) | (lengths > T))
        if bad.size:
            raise ValueError(f"{p}: record {bad[0]}: length {lengths[bad[0]]} is outside 1..{T}")
        lengths = lengths.astype(np.int64)
    else:
        lengths = np.full(N, T, dtype=np.int64)
    given = X
    with np.errstate(over="ignore"):  # a value beyond float32's range becomes inf, refused just below
        X = X.astype(np.float32)
    real = np.arange(T)[None, :] < lengths[:, None]  # (N, T)
    bad_steps = ~np.isfinite(X).all(axis=2) & real
    if bad_steps.any():
        i, t = np.argwhere(bad_steps)[0]
        if np.issubdtype(given.dtype, np.number) and np.isfinite(given[i, t]).all():
            raise ValueError(f"{p}: record {i}, step {t}: a value beyond float32's range (+-3.4e38)")
        raise ValueError(f"{p}: record {i}, step {t}: NaN or infinite value")
    if mode == "record" and np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise ValueError(f"{p}: record {int(np.flatnonzero(~np.isfinite(y))[0])}: y is NaN or infinite")
    if mode == "step" and np.issubdtype(y.dtype, np.floating):
        bad_y = ~np.isfinite(y) & real
        if bad_y.any():
            i, t = np.argwhere(bad_y)[0]
            raise ValueError(f"{p}: record {i}, step {t}: y is NaN or infinite")
    X[~real] = 0.0
    return X, y, lengths
