r"""Prediction-error anomaly scoring (Malhotra et al., ESANN 2015), offline and on a stream.

A predictor reads a signal x (T, L) of L leads and, after each step t, predicts
the next k samples of every lead: ``pred[t, j-1]`` predicts ``x[t + j]``,
j = 1..k.  Every sample x_t (t >= k) is thus predicted k times, and its
**error vector** collects those k errors per lead:

.. math::

    e_t = \big(x_t - \hat x_{t \mid t-j}\big)_{j = 1..k} \in \mathbb{R}^{k \times L}

On a held-out part of the (normal) training rows the error vectors are fitted
with a multivariate Gaussian N(mu, Sigma); each step is scored by its
**Mahalanobis distance** ``sqrt((e_t - mu)^T Sigma^{-1} (e_t - mu))``, for
the joint vector of all leads (``both``) and for each lead alone (``lead1``,
...).  The score is then smoothed by a centred moving average of ``w``
samples (chosen on training data: by default one heart beat, the period of
the training rows' autocorrelation), and a step is flagged when its smoothed
score exceeds a threshold taken from the held-out training scores alone
(their ``q``-quantile times a margin).  Test labels are never used to choose
anything; the best threshold on test labels is reported separately, labelled
as such.

:class:`StreamingDetector` computes the same scores one sample at a time,
carrying the recurrent state, with memory that does not grow with the stream.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import numpy as np

#: the channels a detector scores: all leads jointly, then each lead alone
JOINT = "both"


def channels(n_leads: int) -> list[str]:
    """``["both", "lead1", ..., "leadL"]``."""
    return [JOINT, *(f"lead{i + 1}" for i in range(n_leads))]


# -- error vectors and the Gaussian ------------------------------------------------

def error_vectors(pred: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The error vector of every step.

    Parameters
    ----------
    pred : ndarray, shape (T, k, L)
        ``pred[t, j-1]`` is the prediction of ``x[t + j]`` made after step t.
    x : ndarray, shape (T, L)

    Returns
    -------
    ndarray, shape (T, k, L)
        ``E[t, j-1] = x[t] - pred[t - j, j-1]``; NaN for t < k (not yet
        predicted k times).
    """
    T, k, L = pred.shape
    if x.shape != (T, L):
        raise ValueError(f"x must have shape {(T, L)}, got {x.shape}")
    E = np.full((T, k, L), np.nan)
    for j in range(1, k + 1):
        if j < T:
            E[j:, j - 1] = x[j:] - pred[:-j, j - 1]
    E[:k] = np.nan  # a step counts only once all k predictions of it exist
    return E


def channel_vectors(E: np.ndarray, channel: str) -> np.ndarray:
    """The vectors one channel scores: (T, k * L) for ``both``, (T, k) for ``leadI``."""
    T, k, L = E.shape
    if channel == JOINT:
        return E.reshape(T, k * L)
    lead = int(channel.removeprefix("lead")) - 1
    if not 0 <= lead < L:
        raise ValueError(f"no channel {channel!r} for {L} leads")
    return E[:, :, lead]


def fit_gaussian(V: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision matrix of the rows of V, NaN rows left out.

    The covariance gets ``ridge * trace / d`` on its diagonal, so that
    nearly collinear errors (neighbouring horizons) still invert stably.

    Parameters
    ----------
    V : ndarray, shape (N, d)
        Error vectors, one per row.
    ridge : float

    Returns
    -------
    mean : ndarray, shape (d,)
    precision : ndarray, shape (d, d)
        The inverse of the (ridged) covariance.

    Raises
    ------
    ValueError
        No more finite rows than dimensions (N <= d).
    """
    V = V[~np.isnan(V).any(axis=1)]
    N, d = V.shape
    if N <= d:
        raise ValueError(f"too few error vectors to fit a {d}-dimensional Gaussian ({N}; need more than {d})")
    mean = V.mean(axis=0)
    cov = np.cov(V, rowvar=False).reshape(d, d)
    cov = cov + ridge * max(np.trace(cov) / d, 1e-12) * np.eye(d)
    return mean, np.linalg.inv(cov)


def mahalanobis(V: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The Mahalanobis distance of every row: sqrt((v - mean)^T P (v - mean)).

    Parameters
    ----------
    V : ndarray, shape (T, d)
    mean : ndarray, shape (d,)
    precision : ndarray, shape (d, d)
        P, from :func:`fit_gaussian`.

    Returns
    -------
    ndarray, shape (T,)
        NaN where the row has a NaN.

    >>> float(mahalanobis(np.array([[3.0, 0.0]]), np.zeros(2), np.diag([1.0, 0.25]))[0])
    3.0
    """
    D = V - mean
    return np.sqrt(np.maximum(np.einsum("ti,ij,tj->t", D, precision, D), 0.0))


# -- smoothing and the label-free choices ------------------------------------------------

def window_bounds(w: int) -> tuple[int, int]:
    """(a, b): the centred window of ``w`` samples at t is t-a .. t+b (a + b + 1 = w)."""
    return (w - 1) // 2, w // 2


def moving_average(s: np.ndarray, w: int) -> np.ndarray:
    """Centred moving average of w samples, NaN-aware, windows cut at the ends.

    Parameters
    ----------
    s : ndarray, shape (T,)
    w : int
        Window length; 1 returns ``s``.

    Returns
    -------
    ndarray, shape (T,)
        Mean of the finite values among ``s[t-a : t+b+1]``; NaN where none is.

    >>> moving_average(np.array([0.0, 3.0, 6.0, np.nan]), 3).tolist()
    [1.5, 3.0, 4.5, 6.0]
    """
    if w <= 1:
        return s.astype(np.float64, copy=True)
    a, b = window_bounds(w)
    ok = np.isfinite(s)
    total = np.concatenate([[0.0], np.cumsum(np.where(ok, s, 0.0))])
    count = np.concatenate([[0], np.cumsum(ok)])
    t = np.arange(len(s))
    lo, hi = np.maximum(t - a, 0), np.minimum(t + b + 1, len(s))
    n = count[hi] - count[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total[hi] - total[lo]) / np.maximum(n, 1), np.nan)


def beat_period(x: np.ndarray, fs: float, lo_s: float = 0.3, hi_s: float = 2.0) -> int:
    """The heart-beat period of a signal (T, L), in samples, from its autocorrelation (leads averaged).

    The first local maximum at a lag between ``lo_s`` and ``hi_s`` seconds (a
    heart rate of 30-200/min) that reaches 90 % of the highest one there: the
    first, because the multiples of the period are peaks of the same height.

    >>> spikes = (np.arange(3000) % 200 < 5).astype(float)[:, None]   # a beat every 200 samples
    >>> beat_period(spikes, 250.0)                                     # 75 beats/min at 250 Hz
    200
    """
    z = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    T = len(z)
    lo, hi = max(int(lo_s * fs), 2), min(int(hi_s * fs), T // 2)
    if hi <= lo + 2:
        raise ValueError(f"a signal of {T} samples is too short to find a beat period at {fs:g} Hz")
    n = 1 << (2 * T - 1).bit_length()
    spec = np.fft.rfft(z, n=n, axis=0)
    ac = np.fft.irfft(spec * spec.conj(), n=n, axis=0)[:T].mean(axis=1)  # (T,)
    ac = ac / (T - np.arange(T))  # unbiased: every lag on the same footing
    lags = np.arange(lo + 1, hi)
    peaks = lags[(ac[lags] >= ac[lags - 1]) & (ac[lags] >= ac[lags + 1])]
    if not len(peaks):
        return int(lo + np.argmax(ac[lo:hi + 1]))
    top = ac[peaks].max()
    return int(peaks[np.argmax(ac[peaks] >= 0.9 * top)])


def label_free_threshold(scores: np.ndarray, quantile: float = 1.0, margin: float = 1.0) -> float:
    """The default threshold: ``margin`` times the ``quantile`` of the (smoothed) scores of
    normal held-out training rows.  No test label is involved.

    >>> label_free_threshold(np.array([1.0, 2.0, np.nan, 4.0]), 1.0, 1.5)
    6.0
    """
    s = scores[np.isfinite(scores)]
    if not len(s):
        raise ValueError("no finite held-out score to set a threshold from")
    return float(margin * np.quantile(s, quantile))


# -- evaluation ------------------------------------------------------------------------

def events(flags: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of flagged steps as ``[start, stop)`` pairs.

    >>> events(np.array([0, 1, 1, 0, 0, 1, 0, 1], dtype=bool))
    [(1, 3), (5, 6), (7, 8)]
    """
    f = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]])
    d = np.diff(f.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def event_metrics(flags: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Event-level results: was each labelled window hit, and how many alarms were false.

    Parameters
    ----------
    flags : ndarray of bool, shape (T,)
        The detector's flags.
    y : ndarray of bool, shape (T,)
        The labels (True inside an anomaly window).

    Returns
    -------
    dict
        ``windows`` (labelled runs), ``windows_hit`` (those with a flagged step inside),
        ``hit`` (every window hit, and at least one), ``false_alarms`` (flagged runs that
        touch no labelled step) and ``alarm_events`` (all flagged runs).

    >>> event_metrics(np.array([0, 1, 0, 0, 1, 1], bool), np.array([0, 1, 1, 0, 0, 0], bool))["false_alarms"]
    1
    """
    alarms = events(flags)
    windows = events(y)
    hit = [bool(flags[a:b].any()) for a, b in windows]
    false = sum(1 for a, b in alarms if not y[a:b].any())
    return {"windows": len(windows), "windows_hit": int(sum(hit)), "hit": bool(windows) and all(hit),
            "false_alarms": int(false), "alarm_events": len(alarms)}


def point_metrics(y: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """Point-wise precision, recall and F1 of flags against labels.

    Parameters
    ----------
    y, flags : ndarray of bool, shape (T,)

    Returns
    -------
    dict of str -> float
        ``precision``, ``recall``, ``f1``; 0 where undefined.
    """
    tp = float(np.sum(flags & y))
    fp, fn = float(np.sum(flags & ~y)), float(np.sum(~flags & y))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def best_threshold(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """The threshold with the best point-wise F1 **on these labels** (a reference, not a detector).

    As the detector flags a step when its score is *above* the threshold, the threshold returned is
    the largest number below the best cut score (scikit-learn's curve counts scores >= a cut), so
    that ``s > threshold`` gives exactly the precision, recall and F1 returned.
    """
    from sklearn.metrics import precision_recall_curve

    p, r, th = precision_recall_curve(y, s)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)[:-1]
    i = int(np.argmax(f1))
    threshold = float(np.nextafter(np.float64(th[i]), -np.inf))
    return {"threshold": threshold, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i])}


def score_metrics(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every metric of one channel's (smoothed) scores on labelled rows.

    Parameters
    ----------
    scores : ndarray, shape (N,)
        NaN (not yet scorable) counts as the lowest score and is never flagged.
    y : ndarray of bool, shape (N,)
    threshold : float
        The label-free default threshold.

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc`` (average precision), ``precision``/``recall``/``f1``
        at ``threshold``, ``best_threshold_on_test`` with its precision/recall/F1,
        and the event-level ``hit``, ``windows_hit``, ``false_alarms``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y, dtype=bool)
    finite = np.isfinite(scores)
    s = np.where(finite, scores, np.nanmin(scores) if finite.any() else 0.0)
    if y.all() or not y.any():
        raise ValueError("the evaluated rows need both anomalous and normal steps")
    flags = finite & (scores > threshold)
    best = best_threshold(y, s)
    out: dict[str, Any] = {"roc_auc": float(roc_auc_score(y, s)), "pr_auc": float(average_precision_score(y, s)),
                           "threshold": float(threshold), **point_metrics(y, flags)}
    ev = event_metrics(flags, y)
    out.update(hit=ev["hit"], windows_hit=ev["windows_hit"], false_alarms=ev["false_alarms"])
    out["best_threshold_on_test"] = best["threshold"]
    out.update({f"best_{k}": best[k] for k in ("precision", "recall", "f1")})
    return out


# -- a fitted scorer ------------------------------------------------------------------

def fit_scorer(E_hold: np.ndarray, smooth: int, quantile: float, margin: float,
               crossfit: bool = True) -> dict[str, Any]:
    """Fit every channel's Gaussian on held-out error vectors (N, k, L) and set its threshold.

    The threshold is ``margin`` times the ``quantile`` of smoothed held-out
    scores.  With ``crossfit`` (the default) those scores are out of sample:
    the held-out rows are cut into two halves in time, each half is scored
    by a Gaussian fitted on the other, and the threshold is taken from both
    halves' scores -- a Gaussian scores the rows it was fitted on lower than
    new normal rows, so an in-sample threshold sits too low.  Without it the
    threshold comes from the same rows' in-sample scores.  The Gaussian kept
    is fitted on all held-out rows.  No test label is involved.

    Returns
    -------
    dict
        JSON-able: ``{"smooth", "quantile", "margin", "crossfit", "channels": {name: {"mean",
        "precision", "threshold"}}}``.
    """
    out: dict[str, Any] = {"smooth": int(smooth), "quantile": quantile, "margin": margin, "crossfit": crossfit,
                           "channels": {}}
    half = len(E_hold) // 2
    for ch in channels(E_hold.shape[2]):
        V = channel_vectors(E_hold, ch)
        mean, prec = fit_gaussian(V)
        if crossfit:
            parts = []
            for fit_rows, score_rows in ((V[half:], V[:half]), (V[:half], V[half:])):
                m, p = fit_gaussian(fit_rows)
                parts.append(moving_average(mahalanobis(score_rows, m, p), smooth))
            s = np.concatenate(parts)
        else:
            s = moving_average(mahalanobis(V, mean, prec), smooth)
        out["channels"][ch] = {"mean": mean.tolist(), "precision": prec.tolist(),
                               "threshold": label_free_threshold(s, quantile, margin)}
    return out


def score(E: np.ndarray, scorer: dict[str, Any], smoothed: bool = True) -> dict[str, np.ndarray]:
    """Every channel's score per step.

    Parameters
    ----------
    E : ndarray, shape (T, k, L)
        Error vectors (:func:`error_vectors`).
    scorer : dict
        From :func:`fit_scorer`.
    smoothed : bool
        Apply the scorer's moving average (else the raw Mahalanobis distances).

    Returns
    -------
    dict of str -> ndarray, shape (T,)
        One score per channel (``both`` and each lead); NaN for the first k steps.
    """
    out = {}
    for ch, g in scorer["channels"].items():
        raw = mahalanobis(channel_vectors(E, ch), np.asarray(g["mean"]), np.asarray(g["precision"]))
        out[ch] = moving_average(raw, scorer["smooth"]) if smoothed else raw
    return out


# -- online ---------------------------------------------------------------------------

class StreamingDetector:
    """Score a stream one sample at a time, carrying the recurrent state.

    Memory is constant: the recurrent state, the last k predictions and the
    last ``smooth`` raw scores.  A sample's smoothed score needs the
    ``smooth // 2`` samples after it (the window is centred), so
    :meth:`push` returns the rows that became final with this sample --
    one, none during the first ``smooth // 2`` samples -- and
    :meth:`finish` the rest at the end of the stream.  The scores equal the
    offline ones (:func:`score` on the whole signal) up to float rounding.

    Each sample takes one step of every layer's cell (``cell(x_t, state)``,
    the recurrence's own definition of a step, as :class:`biornn.Recurrent`
    runs it) and the model's read-out, without the per-call argument checks
    of a whole forward pass.

    Parameters
    ----------
    model : SequencePredictor
        Unidirectional; put in eval mode.
    scorer : dict
        From :func:`fit_scorer`.
    mean, std : sequence of float, (L,)
        The normalisation the model was trained with.
    """

    def __init__(self, model, scorer: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> None:
        import torch

        self._torch = torch
        self.model = model.eval()
        self.cells = [row[0] for row in model.rnn.cells]  # one per layer, bound to the model's weights
        self.mean, self.std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        self.L, self.k = len(self.mean), model.horizon
        g = scorer["channels"][JOINT]
        self.g_mean, self.g_prec = np.asarray(g["mean"]), np.asarray(g["precision"])
        self.threshold = float(g["threshold"])
        self.w = max(int(scorer["smooth"]), 1)
        self.a, self.b = window_bounds(self.w)
        self.state = [c.state_type(*(torch.zeros(1, n) for n in c.state_sizes())) for c in self.cells]
        self.preds: deque[np.ndarray] = deque(maxlen=self.k)  # the last k predictions, each (k, L)
        self.raw = np.full(self.w, np.nan)  # raw scores of the last w steps, step i at i % w
        self.t = 0  # samples seen
        self.emitted = 0  # rows returned

    def _row(self, j: int) -> tuple[int, float, bool]:
        """The final row of step j: its raw scores j-a .. j+b are in the ring (or the stream ended)."""
        lo, hi = max(j - self.a, 0), min(j + self.b + 1, self.t)
        vals = self.raw[np.arange(lo, hi) % self.w]
        vals = vals[np.isfinite(vals)]
        s = float(vals.mean()) if len(vals) else float("nan")
        return j, s, bool(np.isfinite(s) and s > self.threshold)

    def _predict(self, z: np.ndarray) -> np.ndarray:
        """One step of every layer and the read-out: the prediction (k, L) after this sample."""
        torch = self._torch
        with torch.no_grad():
            inp = torch.as_tensor(z, dtype=torch.float32).view(1, self.L)
            x_t = inp
            for i, cell in enumerate(self.cells):
                self.state[i] = cell(x_t, self.state[i])
                x_t = cell.output(self.state[i])
            pred = inp.view(1, 1, self.L) + self.model.readout(x_t).view(1, self.k, self.L)
        return pred[0].double().numpy()

    def push(self, sample: Sequence[float]) -> list[tuple[int, float, bool]]:
        """Feed one sample (L values); the (step, smoothed score, flag) rows now final."""
        x = np.asarray(sample, dtype=np.float64)
        if x.shape != (self.L,):
            raise ValueError(f"a sample needs {self.L} values, got {x.size}")
        z = (x - self.mean) / self.std
        if len(self.preds) == self.k:  # x_t has been predicted k times
            e = np.stack([z - self.preds[-j][j - 1] for j in range(1, self.k + 1)])  # (k, L)
            raw = float(mahalanobis(e.reshape(1, -1), self.g_mean, self.g_prec)[0])
        else:
            raw = float("nan")
        self.preds.append(self._predict(z))
        self.raw[self.t % self.w] = raw
        self.t += 1
        out = []
        while self.emitted <= self.t - 1 - self.b:
            out.append(self._row(self.emitted))
            self.emitted += 1
        return out

    def finish(self) -> list[tuple[int, float, bool]]:
        """The remaining rows at the end of the stream (windows cut at the end)."""
        out = []
        while self.emitted < self.t:
            out.append(self._row(self.emitted))
            self.emitted += 1
        return out
