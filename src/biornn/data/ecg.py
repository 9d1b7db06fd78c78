"""Readers for multi-lead signals: the ECG discord excerpts, their labels, text/CSV/WFDB files.

A signal is a float64 array of shape (T, L): T samples of L leads.  Every
reader refuses what it cannot read faithfully -- a non-numeric field, a line
with another number of columns, a NaN or infinite sample -- with a
``ValueError`` of one line naming the file (and the line) and the problem.

The discord excerpts (``ecg/discords/*.txt``) have three whitespace-separated
columns: time in seconds, lead 1, lead 2.  ``labels.json`` gives each file's
anomaly windows (rows ``lo < r < hi``, both ends exclusive) and its train and
test row slices ``[start, stop)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .readers import read_text_file, split_fields


@dataclass
class RecordLabels:
    """One record's entry of ``labels.json``.

    Attributes
    ----------
    anomaly : list of (lo, hi)
        Anomalous rows are ``lo < r < hi`` (both ends exclusive).
    train, test : (start, stop)
        Row slices ``[start, stop)``.
    """

    anomaly: list[tuple[int, int]]
    train: tuple[int, int]
    test: tuple[int, int]

    def mask(self, n: int) -> np.ndarray:
        """Boolean (n,): True on the anomalous rows."""
        y = np.zeros(n, dtype=bool)
        for lo, hi in self.anomaly:
            y[max(lo + 1, 0):max(min(hi, n), 0)] = True
        return y


def _pair(value, what: str, path: Path) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise ValueError(f"{path}: {what} must be a pair of non-negative integers [start, stop], got {value!r}")
    if value[0] >= value[1]:
        raise ValueError(f"{path}: {what} is empty or reversed: {value!r}")
    return value[0], value[1]


def read_labels(path: str | Path) -> dict[str, RecordLabels]:
    """Parse a discord ``labels.json``: file name -> :class:`RecordLabels`.

    Raises
    ------
    ValueError
        One line naming the file and the problem (not JSON, no ``files``
        object, a record without ``anomaly``/``train``/``test``, a range that
        is not a pair of non-negative integers, overlapping train and test rows).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deeply)") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not files:
        raise ValueError(f"{path}: needs a non-empty 'files' object (file name -> anomaly, train, test)")
    out: dict[str, RecordLabels] = {}
    for name, entry in files.items():
        if not isinstance(entry, dict) or not all(k in entry for k in ("anomaly", "train", "test")):
            raise ValueError(f"{path}: {name!r} needs 'anomaly', 'train' and 'test'")
        windows = entry["anomaly"]
        if not isinstance(windows, list):
            raise ValueError(f"{path}: {name!r} 'anomaly' must be a list of [lo, hi] pairs")
        anomaly = [_pair(w, f"{name!r} anomaly window", path) for w in windows]
        train = _pair(entry["train"], f"{name!r} train", path)
        test = _pair(entry["test"], f"{name!r} test", path)
        if train[0] < test[1] and test[0] < train[1]:
            raise ValueError(f"{path}: {name!r} train rows {list(train)} overlap test rows {list(test)}")
        out[name] = RecordLabels(anomaly, train, test)
    return out


#: the longest line :func:`read_columns` splits: one sample of even a thousand leads takes ~30,000 characters
MAX_LINE_CHARS = 1_000_000


def read_columns(path: str | Path, columns: int | tuple[int, ...] | None = None) -> np.ndarray:
    """A text file of numbers, whitespace- or comma-separated, one sample per line.

    Blank lines and lines starting with ``#`` are skipped; a first line that is
    not numeric is taken as a header (CSV) and skipped.

    Parameters
    ----------
    path : path
    columns : int or tuple of int, optional
        The number of columns every line must have (one of them, for a tuple).

    Returns
    -------
    ndarray of float64, shape (T, C)

    Raises
    ------
    ValueError
        The file is missing, empty, not text; a line with a non-numeric field
        or another number of columns, or longer than ``MAX_LINE_CHARS``; a NaN
        or infinite value (naming the line).
    """
    path = Path(path)
    text = read_text_file(path)
    rows: list[list[float]] = []
    width = None
    allowed = (columns,) if isinstance(columns, int) else columns
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if len(s) > MAX_LINE_CHARS:  # refused before it is split into millions of fields
            raise ValueError(f"{path}: line {lineno}: {len(s):,} characters on one line; a line holds one "
                             f"sample (a number per column), at most {MAX_LINE_CHARS:,} characters")
        try:
            values = parse_line(s)
        except ValueError as e:
            if not rows and lineno == _first_content_line(text) and is_header(s):  # a CSV header
                continue
            raise ValueError(f"{path}: line {lineno}: {e}") from None
        if width is None:
            width = len(values)
            if allowed is not None and width not in allowed:
                want = " or ".join(str(c) for c in allowed)
                raise ValueError(f"{path}: line {lineno} has {width} columns, expected {want}")
        elif len(values) != width:
            raise ValueError(f"{path}: line {lineno} has {len(values)} columns, the lines before have {width}")
        rows.append(values)
    if not rows:
        raise ValueError(f"{path}: no samples (empty file)")
    return np.asarray(rows, dtype=np.float64)


def is_header(line: str) -> bool:
    """Whether a first line that is not a sample is column names: no ';' (a semicolon-separated
    file is said at once) and no field that reads as a number (split at commas when it has any, else
    at white space), so that ``lead 1,lead 2`` is a header and ``nan 0.1`` or ``1.0 2.o`` is a bad sample.

    >>> is_header("lead 1,lead 2"), is_header("time mlii v5"), is_header("nan 0.1"), is_header("1.0 2.o")
    (True, True, False, False)
    """
    if ";" in line:
        return False
    for f in split_fields(line):
        try:
            float(f)
            return False
        except ValueError:
            pass
    return True


def _first_content_line(text: str) -> int:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.strip().startswith("#"):
            return lineno
    return 0


def parse_line(line: str) -> list[float]:
    """The numbers of one line (whitespace- or comma-separated); ``ValueError`` saying what is wrong.

    >>> parse_line("0.004, -1.5,2")
    [0.004, -1.5, 2.0]
    """
    fields = line.replace(",", " ").split()
    if not fields:
        raise ValueError("an empty line")
    out = []
    for f in fields:
        try:
            v = float(f)
        except ValueError:
            hint = ("; the fields are separated by ';': separate them with commas or white space (and write "
                    "decimals with a point)" if ";" in f else "")
            raise ValueError(f"{f[:20]!r} is not a number{hint}") from None
        if not math.isfinite(v):
            raise ValueError(f"a sample is {f[:20]} (not a finite number)")
        out.append(v)
    return out


def read_discord(path: str | Path) -> tuple[np.ndarray, float]:
    """One discord excerpt: the leads (T, 2) and the sampling rate in Hz (from the time column)."""
    path = Path(path)
    data = read_columns(path, columns=3)
    t, x = data[:, 0], data[:, 1:]
    with np.errstate(all="ignore"):  # times near the float limits: inf steps, then no usable rate (below)
        dt = np.diff(t)
    if len(dt) == 0 or not np.all(dt > 0):
        raise ValueError(f"{path}: the time column (column 1) must increase from line to line")
    fs = _rate(t, dt)
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"{path}: the time column gives no usable sampling rate ({fs} Hz)")
    return x, fs


def _rate(t: np.ndarray, dt: np.ndarray) -> float:
    """The sampling rate of a time column: the least-squares slope of time against sample number
    where every step is within half a step of the mean (a regular series whose times are rounded:
    the discord excerpts at 360 Hz give their times to 3 decimals, steps of 0.002 and 0.003 s, whose
    median says 333 Hz), else the median step (a series with gaps).

    >>> t = np.round(np.arange(5400) / 360, 3)
    >>> _rate(t, np.diff(t))
    360.0
    """
    with np.errstate(all="ignore"):  # times near the float limits: not regular, the median below decides
        mean = (t[-1] - t[0]) / len(dt)
        regular = bool(np.all(np.abs(dt - mean) < 0.5 * mean))
    if regular:
        i = np.arange(len(t), dtype=np.float64)
        i -= i.mean()
        with np.errstate(all="ignore"):
            fs = 1.0 / float(np.dot(i, t - t.mean()) / np.dot(i, i))
        if math.isfinite(fs) and fs > 0:
            return float(f"{fs:.6g}")  # what rounded times can tell: 360.000016 -> 360
    with np.errstate(all="ignore"):  # a subnormal step: an infinite rate, which the caller refuses
        return float(1.0 / np.median(dt))


def read_wfdb(path: str | Path) -> np.ndarray:
    """A WFDB record (``NAME.hea`` and its signal file) in physical units, (T, L).

    Reads the header and the two storage formats of the MIT-BIH and most
    PhysioNet ECG databases -- ``212`` (two 12-bit samples in three bytes)
    and ``16`` (16-bit little-endian) -- with all signals in one file, one
    sample per frame.  Physical value = (stored - baseline) / gain, the
    baseline being the ADC zero unless the gain field names one
    (``200(0)/mV``), a gain of 0 meaning 200 (WFDB's default).

    Raises
    ------
    ValueError
        A missing or malformed header, another format, a signal file shorter
        than the header says (naming the file).
    """
    path = Path(path)
    record = path.with_suffix("") if path.suffix in (".hea", ".dat") else path
    hea = record.with_suffix(".hea")
    try:
        text = hea.read_text(encoding="latin-1")
    except FileNotFoundError:
        raise ValueError(f"{hea}: no such WFDB header") from None
    except OSError as e:
        raise ValueError(f"{hea}: cannot read ({e.strerror})") from None
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    try:
        head = lines[0]
        n_sig = int(head[1])
        n_samples = int(head[3]) if len(head) > 3 else None
        sigs = lines[1:1 + n_sig]
        if n_sig < 1 or len(sigs) != n_sig:
            raise ValueError
        files, fmts, gains, bases = set(), set(), [], []
        for f in sigs:
            files.add(f[0])
            fmts.add(f[1])
            g = f[2] if len(f) > 2 else "200"
            gain = float(g.split("(")[0].split("/")[0])
            zero = int(f[4]) if len(f) > 4 else 0
            base = int(g.split("(")[1].split(")")[0]) if "(" in g else zero
            gains.append(gain if gain != 0 else 200.0)
            bases.append(base)
    except (ValueError, IndexError):
        raise ValueError(f"{hea}: not a WFDB header this reader understands (record line, then one line "
                         f"per signal)") from None
    if len(files) != 1 or len(fmts) != 1 or next(iter(fmts)) not in ("212", "16"):
        raise ValueError(f"{hea}: reads WFDB format 212 or 16 with every signal in one file; this record has "
                         f"format {', '.join(sorted(fmts))} in {len(files)} file(s)")
    dat = hea.parent / next(iter(files))
    try:
        raw = np.fromfile(dat, dtype=np.uint8)
    except FileNotFoundError:
        raise ValueError(f"{dat}: no such WFDB signal file (named by {hea.name})") from None
    except OSError as e:  # a directory in its place, no permission: bad input (exit 2), not a crash
        raise ValueError(f"{dat}: cannot read the WFDB signal file ({e.strerror})") from None
    if next(iter(fmts)) == "16":
        n = len(raw) // 2
        d = raw[: 2 * n].view("<i2").astype(np.int64)
    else:
        n = len(raw) // 3
        b = raw[: 3 * n].reshape(n, 3).astype(np.int64)
        odd = len(raw) % 3 == 2  # an odd number of samples ends with a lone sample in two bytes
        d = np.empty(2 * n + odd, dtype=np.int64)
        d[0 : 2 * n : 2] = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
        d[1 : 2 * n : 2] = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
        if odd:
            d[-1] = int(raw[-2]) | ((int(raw[-1]) & 0x0F) << 8)
        d[d > 2047] -= 4096  # 12-bit two's complement
    T = len(d) // n_sig
    if n_samples is not None and n_samples > T:
        raise ValueError(f"{dat}: holds {T} samples per signal, its header {hea.name} says {n_samples}")
    T = n_samples if n_samples else T
    if T < 1:
        raise ValueError(f"{dat}: no samples")
    d = d[: T * n_sig].reshape(T, n_sig)
    with np.errstate(all="ignore"):  # a gain that overflows is refused just below, in one line
        x = (d - np.asarray(bases)) / np.asarray(gains)
    if not np.isfinite(x).all():
        raise ValueError(f"{hea}: a gain of {', '.join(map(str, gains))} gives NaN or infinite samples")
    return x


def wfdb_fs(path: str | Path) -> float | None:
    """The sampling frequency (Hz) a WFDB header's record line gives (``NAME N FS[/CF][(BASE)] ...``);
    ``None`` when it gives none or cannot be read (:func:`read_wfdb` reports those)."""
    hea = Path(path).with_suffix(".hea")
    try:
        for line in hea.read_text(encoding="latin-1").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                fields = line.split()
                return float(fields[2].split("/")[0].split("(")[0]) if len(fields) > 2 else None
    except (OSError, ValueError):
        return None
    return None


def read_signal(path: str | Path, n_leads: int, fs: float | None = None) -> np.ndarray:
    """A signal file for a model of ``n_leads`` leads: (T, n_leads).

    A ``.hea`` (or ``.dat``) path is a WFDB record; anything else is text
    (whitespace or CSV) with ``n_leads`` columns, or ``n_leads + 1`` columns
    whose first is time (as in the discord excerpts) and is dropped.  ``fs``:
    the rate (Hz) the model was trained at; a WFDB record sampled at another
    rate (by more than 1 %) is refused, since the model's steps would mean
    other times; so is a text file whose time column gives another rate (a
    first column that does not increase is not a time column: refused too).
    Text without a time column carries no rate and is read as sampled at ``fs``.
    """
    path = Path(path)
    if path.suffix in (".hea", ".dat"):
        x = read_wfdb(path)
        if x.shape[1] != n_leads:
            raise ValueError(f"{path}: has {x.shape[1]} leads, the run was trained on {n_leads}")
        rate = wfdb_fs(path)
        if fs and rate and abs(rate - fs) > 0.01 * fs:
            raise ValueError(f"{path}: sampled at {rate:g} Hz, the run was trained at {fs:g} Hz; resample the "
                             f"record to {fs:g} Hz first")
        return x
    try:
        data = read_columns(path, columns=(n_leads, n_leads + 1))
    except ValueError as e:
        msg = str(e)
        if "columns, expected" in msg:
            raise ValueError(f"{msg} (the run was trained on {n_leads} leads; a first time column is allowed)") \
                from None
        raise
    if data.shape[1] == n_leads:
        return data
    t = data[:, 0]
    if len(t) > 1 and not np.all(np.diff(t) > 0):
        raise ValueError(f"{path}: {n_leads + 1} columns, but the first is no time column (it does not increase "
                         f"from line to line); the run was trained on {n_leads} leads")
    if fs and len(t) > 2:  # the time column carries a rate: check it as a WFDB header's
        rate = _rate(t, np.diff(t))
        if math.isfinite(rate) and abs(rate - fs) > 0.01 * fs:
            raise ValueError(f"{path}: its time column gives {rate:g} Hz, the run was trained at {fs:g} Hz; "
                             f"resample the signal to {fs:g} Hz first")
    return data[:, 1:]
