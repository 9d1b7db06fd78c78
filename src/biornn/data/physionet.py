"""PhysioNet WFDB records and their beat annotations, read with the ``wfdb`` package.

A WFDB record is a header (``NAME.hea``: sampling rate, number of signals,
samples per signal, each signal's file, format, gain and name) and one or more
signal files (``NAME.dat``); an annotator's labels lie beside them
(``NAME.atr`` for the reference beat annotations of the MIT-BIH databases).
See https://physionet.org/physiotools/wag/header-5.htm and ``annot-5.htm``.

The ``wfdb`` package (the ``wfdb`` extra: ``pip install biornn[wfdb]``) does
the decoding; it is imported inside the functions.  What this module adds is
the checking: a record is refused with a ``ValueError`` of one line naming the
file and the problem -- a missing header or signal file, a header whose sample
count or number of signals does not fit the size of its signal file, missing
(NaN) samples, an empty record -- before anything is trained on it.

Only beat annotations are beats (:data:`BEAT_CODES`): the MIT-BIH ``.atr``
files also hold rhythm changes (``+``), signal-quality and comment labels,
which a beat detector must neither find nor be blamed for missing (ANSI/AAMI
EC57, section 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import first_line

__all__ = ["BEAT_CODES", "Beats", "Record", "read_beats", "read_record", "record_path"]

#: the WFDB annotation codes that mark a QRS complex (wfdb's ``isqrs``): normal, left/right bundle
#: branch block, aberrated atrial premature, atrial premature, nodal premature, supraventricular
#: premature, premature ventricular contraction, R-on-T, fusion, atrial/nodal/ventricular escape, paced,
#: fusion of paced and normal, unclassifiable, and "beat not classified during learning"
BEAT_CODES = frozenset("NLRBAaJSVrFejnE/fQ?")

#: bytes per sample of each WFDB signal format (https://physionet.org/physiotools/wag/signal-5.htm);
#: 212 packs two 12-bit samples into 3 bytes, 310 and 311 three 10-bit samples into 4
_BYTES_PER_SAMPLE = {"8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0,
                     "212": 1.5, "310": 4 / 3, "311": 4 / 3}


@dataclass
class Record:
    """One WFDB record, in physical units.

    Attributes
    ----------
    name : str
        The record's path without extension (``.../mitdb/100``).
    signal : ndarray of float64, shape (T, C)
        T samples of C signals (leads), in ``units``.
    fs : float
        Samples per second.
    leads : list of str, length C
        The signals' names (``["MLII", "V5"]``).
    units : list of str, length C
    """

    name: str
    signal: np.ndarray
    fs: float
    leads: list[str]
    units: list[str]


@dataclass
class Beats:
    """The beat annotations of a record.

    Attributes
    ----------
    sample : ndarray of int64, shape (N,)
        Each beat's sample index (the QRS fiducial point), increasing.
    symbol : list of str, length N
        Each beat's WFDB code (one of :data:`BEAT_CODES`).
    skipped : dict of str to int
        The non-beat annotations left out (rhythm ``+``, noise ``~``, comments ...), by code.
    """

    sample: np.ndarray
    symbol: list[str]
    skipped: dict[str, int]


def record_path(path: str | Path) -> Path:
    """A record's path without extension: ``100``, ``100.hea``, ``100.dat`` and ``100.atr`` all name ``100``.

    >>> record_path("data/mitdb/100.hea").as_posix()
    'data/mitdb/100'
    >>> record_path("data/mitdb/100").as_posix()
    'data/mitdb/100'
    """
    if not str(path).strip():
        raise ValueError("an empty record path (give a WFDB record, e.g. data/mitdb/100 or data/mitdb/100.hea)")
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".hea", ".dat", ".atr") else p


def wfdb_module(name: str = "wfdb"):
    """The ``wfdb`` package (or its submodule ``name``), the ``wfdb`` extra; ``ValueError`` (one line, the
    command to install it) where it is not installed."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ValueError("reading WFDB records needs the wfdb package; install it with: "
                         "pip install 'biornn[wfdb]'") from None


def _header(base: Path):
    """The parsed header of record ``base``; ``ValueError`` naming the ``.hea`` file if absent or unreadable."""
    wfdb = wfdb_module()

    hea = base.with_name(base.name + ".hea")
    if not hea.is_file():
        raise ValueError(f"{hea}: no such WFDB header (a record needs NAME.hea and its signal file)")
    try:
        return wfdb.rdheader(str(base))
    except Exception as e:  # wfdb raises bare exceptions of many kinds on a malformed header
        raise ValueError(f"{hea}: not a readable WFDB header ({first_line(e)})") from None


def _field(header, name: str, k: int, default):
    """Signal ``k``'s entry of the header's per-signal list ``name`` (``default`` where absent or None)."""
    values = getattr(header, name, None) or []
    return values[k] if k < len(values) and values[k] is not None else default


def _check_signal_files(base: Path, header) -> None:
    """Every signal file exists and its size fits the header's sample count and signals.

    A signal file holding C signals of format f for T samples has
    ceil(C * T * bytes_per_sample(f)) bytes after its byte offset; a header that
    says more or fewer samples or signals than the file holds is refused (the
    decoder would otherwise read garbage or stop short without a word).
    """
    hea = base.with_name(base.name + ".hea")
    n_sig = int(header.n_sig or 0)
    if n_sig <= 0:
        raise ValueError(f"{hea}: the header names no signals")
    # a damaged header can leave a signal line's fields out; wfdb then hands back None or short lists
    names = [_field(header, "file_name", k, None) for k in range(n_sig)]
    if not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"{hea}: the header says {n_sig} signal(s) but does not name a signal file for each")
    files: dict[str, list[int]] = {}
    for k, name in enumerate(names):
        files.setdefault(name, []).append(k)
    for name, channels in files.items():
        dat = base.parent / name
        if not dat.is_file():
            raise ValueError(f"{dat}: no such signal file (named by {hea.name})")
        fmts = {_field(header, "fmt", k, None) for k in channels}
        frames = [int(_field(header, "samps_per_frame", k, 1) or 1) for k in channels]
        offsets = {int(_field(header, "byte_offset", k, 0) or 0) for k in channels}
        size = dat.stat().st_size
        if size <= min(offsets):
            raise ValueError(f"{dat}: empty signal file")
        if header.sig_len is None or len(fmts) != 1 or len(offsets) != 1 or next(iter(fmts)) not in _BYTES_PER_SAMPLE:
            continue  # no sample count to check, or a layout wfdb checks itself
        per = _BYTES_PER_SAMPLE[next(iter(fmts))]
        expected = math.ceil(sum(frames) * int(header.sig_len) * per) + next(iter(offsets))
        # 212/310/311 pad an odd last group, and some writers add a byte; more than one frame off is a mismatch
        slack = math.ceil(sum(frames) * per) + 1
        if abs(size - expected) > slack:
            raise ValueError(
                f"{dat}: {size} bytes, but {hea.name} says {len(channels)} signal(s) of format "
                f"{next(iter(fmts))} x {header.sig_len} samples ({expected} bytes); the header does not match "
                f"its signal file")


def read_record(path: str | Path, channels: list[int] | None = None) -> Record:
    """A WFDB record's signals in physical units, its sampling rate and lead names.

    Parameters
    ----------
    path : str or Path
        The record, with or without extension (``.../mitdb/100``).
    channels : list of int, optional
        The signals to keep, by index (default: all).

    Returns
    -------
    Record
        ``signal`` (T, C) float64.

    Raises
    ------
    ValueError
        One line naming the file: no header, a missing signal file, a header
        that does not match its signal file, no samples, missing (NaN) or
        infinite samples, or a channel the record does not have.
    """
    wfdb = wfdb_module()

    base = record_path(path)
    header = _header(base)
    _check_signal_files(base, header)
    if channels is not None:
        bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < header.n_sig]
        if len(set(channels)) != len(channels):
            raise ValueError(f"{base}: channels {list(channels)} name a signal twice")
        if bad:
            leads = ", ".join(str(_field(header, "sig_name", k, "?")) for k in range(int(header.n_sig)))
            raise ValueError(f"{base}: no signal {bad[0]}; the record has {header.n_sig} ({leads})")
    try:
        rec = wfdb.rdrecord(str(base), channels=channels, physical=True)
    except Exception as e:
        msg = first_line(e)
        # the signal files' sizes were checked against the header above, to within a frame of padding;
        # what wfdb still cannot decode is most often a header a frame or a field off its signal file
        raise ValueError(f"{base}: cannot decode the WFDB record; does {base.name}.hea match its signal "
                         f"file? ({msg})") from None
    signal = rec.p_signal
    if signal is None or signal.size == 0 or signal.shape[0] == 0:
        raise ValueError(f"{base}: the record has no samples")
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[:, None]
    C = signal.shape[1]
    leads = [str(x) for x in rec.sig_name] if rec.sig_name and len(rec.sig_name) == C else [f"signal {k}" for k in range(C)]
    units = [str(x) for x in rec.units] if rec.units and len(rec.units) == C else [""] * C
    bad = ~np.isfinite(signal)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        raise ValueError(f"{base}: signal {leads[c]!r} has {int(bad[:, c].sum())} missing (NaN) or infinite "
                         f"sample(s), the first at sample {int(t)}")
    if not rec.fs or not math.isfinite(rec.fs) or rec.fs <= 0:
        raise ValueError(f"{base}.hea: no valid sampling frequency")
    return Record(name=str(base), signal=signal, fs=float(rec.fs), leads=leads, units=units)


def read_beats(path: str | Path, extension: str = "atr", n_samples: int | None = None) -> Beats:
    """A record's beat annotations (:data:`BEAT_CODES` only), in time order.

    Parameters
    ----------
    path : str or Path
        The record, with or without extension.
    extension : str
        The annotator (``atr``: the reference annotations).
    n_samples : int, optional
        The record's length: a beat at or past it is refused.

    Returns
    -------
    Beats

    Raises
    ------
    ValueError
        One line naming the annotation file: missing, unreadable, no beat
        annotation in it, samples out of order or outside the record.
    """
    wfdb = wfdb_module()

    base = record_path(path)
    ann = base.with_name(f"{base.name}.{extension}")
    if not ann.is_file():
        raise ValueError(f"{ann}: no such annotation file")
    if ann.stat().st_size == 0:
        raise ValueError(f"{ann}: empty annotation file")
    try:
        a = wfdb.rdann(str(base), extension)
    except Exception as e:
        msg = first_line(e)
        raise ValueError(f"{ann}: not a readable WFDB annotation file ({msg})") from None
    samples = np.asarray(a.sample, dtype=np.int64)
    symbols = list(a.symbol or [])
    if len(symbols) != len(samples):
        raise ValueError(f"{ann}: {len(samples)} annotation times but {len(symbols)} labels")
    keep = np.array([s in BEAT_CODES for s in symbols], dtype=bool)
    skipped: dict[str, int] = {}
    for s, k in zip(symbols, keep):
        if not k:
            skipped[s] = skipped.get(s, 0) + 1
    sample = samples[keep]
    if len(sample) == 0:
        raise ValueError(f"{ann}: no beat annotation (codes {''.join(sorted(BEAT_CODES))}) in the file")
    if np.any(np.diff(sample) < 0):
        i = int(np.argmax(np.diff(sample) < 0)) + 1
        raise ValueError(f"{ann}: beat {i} (sample {int(sample[i])}) comes before the beat ahead of it")
    if sample[0] < 0 or (n_samples is not None and sample[-1] >= n_samples):
        where = int(sample[0]) if sample[0] < 0 else int(sample[-1])
        raise ValueError(f"{ann}: a beat at sample {where} lies outside the record's {n_samples} samples")
    return Beats(sample=sample, symbol=[s for s, k in zip(symbols, keep) if k], skipped=skipped)
