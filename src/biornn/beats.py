"""Beat detection: per-sample beat probabilities -> beat times, and the scoring of beat detectors.

Scoring follows ANSI/AAMI EC57 (and PhysioNet's ``bxb``): a detection matches
a reference beat when they lie within 150 ms of each other; each reference
beat and each detection is matched at most once.  With TP matched pairs, FN
reference beats left unmatched and FP detections left unmatched,

.. math::

    Se = \\frac{TP}{TP + FN}, \\qquad +P = \\frac{TP}{TP + FP}, \\qquad
    F_1 = \\frac{2\\,TP}{2\\,TP + FN + FP}.

EC57 leaves the first 5 minutes of each record out of the statistics, as a
learning period for detectors that adapt; here the scored excerpt is given
explicitly (``start``, ``end``: the ``mitdb-qrs`` task scores its last 10
minutes, which no detector has seen before), and nothing else is left out.
Where nothing can be counted (no reference beat for Se, no detection for +P)
the ratio is 1.0: nothing was missed, nothing was wrong.

Turning a per-sample probability into detections: the samples whose
probability reaches a threshold form runs; each run is one candidate beat at
its centre, scored by its peak probability; of two candidates closer than a
refractory period (200 ms: no two QRS complexes of one heart come closer) the
weaker is dropped.

Everything here is NumPy.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["beat_labels", "detect_beats", "match_beats", "score_beats"]

#: EC57's match window: a detection within 150 ms of a reference beat finds it
MATCH_WINDOW_S = 0.150
#: the shortest time between two beats of one heart that a detector keeps
REFRACTORY_S = 0.200


def _finite(name: str, value, positive: bool = False, nonnegative: bool = False) -> float:
    """``value`` as a float; ``ValueError`` naming the argument if it is not a finite number (> 0, >= 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or (positive and v <= 0) or (nonnegative and v < 0):
        want = "a positive" if positive else "a non-negative" if nonnegative else "a"
        raise ValueError(f"{name} must be {want} finite number, got {value!r}")
    return v


def _beat_times(name: str, value, increasing: bool = True) -> np.ndarray:
    """Sample indices as int64 (N,); ``ValueError`` naming the argument unless 1-D, finite (and increasing)."""
    a = np.asarray(value)
    if a.ndim != 1 or (a.size and not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating))):
        raise ValueError(f"{name} must be a 1-D array of sample indices, got shape {a.shape} dtype {a.dtype}")
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"{name}: sample indices must be finite")
    a = a.astype(np.int64)
    if increasing and np.any(np.diff(a) < 0):
        raise ValueError(f"{name}: sample indices must be increasing")
    return a


def beat_labels(beats: np.ndarray, n: int, half_width: int) -> np.ndarray:
    """Per-sample targets: 1 within ``half_width`` samples of a beat, else 0.

    Parameters
    ----------
    beats : ndarray of int, shape (N,)
        Beat sample indices (any order; outside [0, n) they still mark the samples in range).
    n : int
        Samples.
    half_width : int
        w: sample t is 1 when |t - beat| <= w for some beat.

    Returns
    -------
    ndarray of int64, shape (n,)

    >>> beat_labels(np.array([3, 9]), 12, 1).tolist()
    [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0]
    """
    marks = np.zeros(n + 1, dtype=np.int64)
    beats = np.asarray(beats, dtype=np.int64)
    lo = np.clip(beats - half_width, 0, n)
    hi = np.clip(beats + half_width + 1, 0, n)
    # a difference array: +1 where a window opens, -1 after it closes; the running sum counts open windows
    np.add.at(marks, lo, 1)
    np.add.at(marks, hi, -1)
    return (np.cumsum(marks[:n]) > 0).astype(np.int64)


def detect_beats(prob: np.ndarray, fs: float, threshold: float = 0.5, refractory_s: float = REFRACTORY_S,
                 min_width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Beat times from per-sample beat probabilities.

    Parameters
    ----------
    prob : ndarray of float, shape (T,)
        Each sample's probability of lying near a beat.
    fs : float
        Samples per second.
    threshold : float
        A sample belongs to a beat when its probability is at least this.
    refractory_s : float
        Of two detections closer than this (seconds), the one with the lower
        peak probability is dropped (the earlier one on a tie).
    min_width : int
        Runs shorter than this many samples are ignored (1: none are).

    Returns
    -------
    samples : ndarray of int64, shape (K,)
        Each detection's sample: the centre of its run, increasing.
    scores : ndarray of float64, shape (K,)
        Each detection's peak probability.

    Raises
    ------
    ValueError
        ``prob`` not 1-D, ``fs`` not a positive finite number, ``threshold`` or
        ``refractory_s`` not finite, ``min_width`` not a positive integer.

    >>> p = np.array([0, .9, .9, .9, 0, 0, .6, 0, 0, 0, 0, .7, .8, 0])
    >>> detect_beats(p, fs=10.0, refractory_s=0.5)[0].tolist()
    [2, 11]
    >>> detect_beats(p, fs=10.0, refractory_s=0.0)[0].tolist()
    [2, 6, 11]
    """
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim != 1:
        raise ValueError(f"detect_beats: prob must be 1-D (T,), got shape {prob.shape}")
    fs = _finite("detect_beats: fs", fs, positive=True)
    threshold = _finite("detect_beats: threshold", threshold)
    refractory_s = _finite("detect_beats: refractory_s", refractory_s)
    if isinstance(min_width, bool) or not isinstance(min_width, (int, np.integer)) or min_width < 1:
        raise ValueError(f"detect_beats: min_width must be a positive integer, got {min_width!r}")
    above = np.concatenate([[False], prob >= threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]  # each run is prob[start:end]
    keep = (ends - starts) >= min_width
    starts, ends = starts[keep], ends[keep]
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    centres = (starts + ends - 1) // 2
    peaks = _run_max(prob, starts, ends)  # (K,)
    gap = refractory_s * fs
    if gap <= 0:
        return centres.astype(np.int64), peaks
    # strongest first: a candidate survives if no stronger survivor lies within the refractory period
    order = np.lexsort((centres, -peaks))
    kept: list[int] = []
    taken = np.zeros(0, dtype=np.int64)
    for i in order:
        c = centres[i]
        j = np.searchsorted(taken, c)
        if (j < len(taken) and taken[j] - c < gap) or (j > 0 and c - taken[j - 1] < gap):
            continue
        taken = np.insert(taken, j, c)
        kept.append(i)
    kept_arr = np.sort(np.array(kept, dtype=np.int64))
    return centres[kept_arr].astype(np.int64), peaks[kept_arr]


def _run_max(prob: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The maximum of ``prob[s:e]`` for each run (runs disjoint and increasing), vectorised."""
    # interleave run starts and ends: reduceat over [s_i, e_i) are the even-indexed results
    bounds = np.stack([starts, ends], axis=1).ravel()
    padded = np.concatenate([prob, [-np.inf]])  # an end equal to len(prob) stays a valid index
    return np.maximum.reduceat(padded, bounds)[0::2]


def match_beats(reference: np.ndarray, detected: np.ndarray, tolerance: int) -> np.ndarray:
    """Pairs (reference index, detection index) matched within ``tolerance`` samples.

    Each beat and each detection is matched at most once, and as many pairs
    as possible are matched: the closest pairs first (ties: the earlier
    reference beat), the nearest unmatched reference for every detection --
    except in a group of beats joined by detections within reach of two of
    them (beats under 2 x ``tolerance`` apart) where that leaves fewer pairs
    than there can be; such a group is matched in time order instead, the
    earliest unmatched detection to the earliest beat within reach, which
    matches the most.  So TP is never undercounted, and every other beat
    keeps its nearest detection.

    Parameters
    ----------
    reference, detected : ndarray of int, shape (N,), (K,)
        Sample indices, increasing.
    tolerance : int
        The largest |reference - detection| that matches, in samples.

    Returns
    -------
    ndarray of int64, shape (TP, 2)

    Raises
    ------
    ValueError
        Sample indices not 1-D, not finite or not increasing; a negative ``tolerance``.

    >>> match_beats(np.array([100, 200, 300]), np.array([105, 195, 199, 420]), 10).tolist()
    [[0, 0], [1, 2]]
    >>> match_beats(np.array([1000, 1080]), np.array([950, 1040]), 54).tolist()  # not [[1, 1]] alone
    [[0, 0], [1, 1]]
    """
    reference = _beat_times("match_beats: reference", reference)
    detected = _beat_times("match_beats: detected", detected)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"match_beats: tolerance must be a non-negative integer (samples), got {tolerance!r}")
    lo = np.searchsorted(reference, detected - tolerance, side="left")
    hi = np.searchsorted(reference, detected + tolerance, side="right")
    counts = hi - lo
    if counts.sum() == 0:
        return np.zeros((0, 2), dtype=np.int64)
    det_idx = np.repeat(np.arange(len(detected)), counts)
    ref_idx = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi) if b > a])
    dist = np.abs(reference[ref_idx] - detected[det_idx])
    order = np.lexsort((det_idx, ref_idx, dist))
    used_ref = np.zeros(len(reference), dtype=bool)
    used_det = np.zeros(len(detected), dtype=bool)
    pairs = []
    for k in order:
        r, d = ref_idx[k], det_idx[k]
        if not used_ref[r] and not used_det[d]:
            used_ref[r] = used_det[d] = True
            pairs.append((r, d))
    nearest = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    in_order = _match_in_time_order(reference, detected, tolerance)
    if len(in_order) == len(nearest):
        return nearest
    # only the groups of beats where nearest-first matched fewer take the time-ordered pairs; the
    # others keep their nearest pairs (and the offsets they give)
    group = _reach_groups(lo, hi)  # of every detection
    n = int(group.max()) + 1
    better = np.bincount(group[in_order[:, 1]], minlength=n) > np.bincount(group[nearest[:, 1]], minlength=n)
    kept = np.concatenate([nearest[~better[group[nearest[:, 1]]]], in_order[better[group[in_order[:, 1]]]]])
    return kept[np.lexsort((kept[:, 1], kept[:, 0]))]


def _reach_groups(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The group of every detection (K,): detections joined by a beat within reach of both.

    ``[lo[j], hi[j])`` are the reference beats within reach of detection j; as
    both bounds only grow with j, detection j shares a beat with detection
    j + 1 exactly when those ranges overlap, and with no later one otherwise --
    so the groups (the connected parts of the beats-and-detections graph) are
    runs of detections.

    >>> _reach_groups(np.array([0, 0, 2, 2]), np.array([1, 2, 3, 2])).tolist()
    [0, 0, 1, 2]
    """
    if not len(lo):
        return np.zeros(0, dtype=np.int64)
    joined = (hi[:-1] > lo[1:]) & (hi[:-1] > lo[:-1]) & (hi[1:] > lo[1:])
    return np.concatenate([[0], np.cumsum(~joined)]).astype(np.int64)


def _match_in_time_order(reference: np.ndarray, detected: np.ndarray, tolerance: int) -> np.ndarray:
    """A maximum matching: the earliest unmatched detection to the earliest reference beat it reaches.

    Every beat's window is as wide as every other's, so matching in time
    order (a detection before the current beat's window can serve no later
    beat; a beat whose window ends before the next detection can be served
    by none) leaves no pair that another order would add.
    """
    pairs = []
    i = j = 0
    while i < len(reference) and j < len(detected):
        if detected[j] < reference[i] - tolerance:
            j += 1
        elif detected[j] > reference[i] + tolerance:
            i += 1
        else:
            pairs.append((i, j))
            i += 1
            j += 1
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def score_beats(reference: np.ndarray, detected: np.ndarray, fs: float, window_s: float = MATCH_WINDOW_S,
                start: int | None = None, end: int | None = None) -> dict[str, float | int]:
    """Se, +P and F1 of a beat detector against reference beats (EC57: a 150 ms match window).

    Parameters
    ----------
    reference : ndarray of int, shape (N,)
        Reference beat samples (beat annotations only).
    detected : ndarray of int, shape (K,)
        Detected beat samples.
    fs : float
        Samples per second.
    window_s : float
        The match window, seconds.
    start, end : int, optional
        Score only beats and detections in [start, end) (default: all).

    Returns
    -------
    dict
        ``sensitivity``, ``positive_predictivity``, ``f1``, ``tp``, ``fn``, ``fp``,
        ``n_reference``, ``n_detected``, ``window_ms``, ``mean_abs_offset_ms`` (of the matched pairs).

    Raises
    ------
    ValueError
        ``fs`` not a positive finite number, ``window_s`` negative or not finite,
        sample indices not 1-D or not finite.

    >>> s = score_beats(np.array([100, 200, 300]), np.array([105, 195, 420]), fs=100.0)
    >>> s["tp"], s["fn"], s["fp"], round(s["sensitivity"], 3), round(s["positive_predictivity"], 3)
    (2, 1, 1, 0.667, 0.667)
    """
    fs = _finite("score_beats: fs", fs, positive=True)
    window_s = _finite("score_beats: window_s", window_s, nonnegative=True)
    reference = np.sort(_beat_times("score_beats: reference", reference, increasing=False))
    detected = np.sort(_beat_times("score_beats: detected", detected, increasing=False))
    lo = -np.inf if start is None else start
    hi = np.inf if end is None else end
    reference = reference[(reference >= lo) & (reference < hi)]
    detected = detected[(detected >= lo) & (detected < hi)]
    tolerance = int(round(window_s * fs))
    pairs = match_beats(reference, detected, tolerance)
    tp = len(pairs)
    fn, fp = len(reference) - tp, len(detected) - tp
    offset = float(np.abs(reference[pairs[:, 0]] - detected[pairs[:, 1]]).mean() / fs * 1000.0) if tp else 0.0
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else 1.0,
        "positive_predictivity": tp / (tp + fp) if tp + fp else 1.0,
        "f1": 2 * tp / (2 * tp + fn + fp) if tp + fn + fp else 1.0,
        "tp": tp, "fn": fn, "fp": fp,
        "n_reference": int(len(reference)), "n_detected": int(len(detected)),
        "window_ms": round(window_s * 1000.0, 3), "mean_abs_offset_ms": round(offset, 3),
    }
