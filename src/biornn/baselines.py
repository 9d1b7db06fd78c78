"""Simple baselines to measure the recurrent models against.

Two reference points for the names task (surname -> language of origin):

* :class:`NgramLogReg`: no recurrence at all.  Character 1..4-grams, TF-IDF
  weighted, into a multinomial logistic regression.  A strong classic baseline
  for short strings; if a recurrent net does not beat it, the recurrence is
  not earning its keep.
* :class:`TutorialRNN`: the recipe of PyTorch's tutorial "Classifying names
  with a character-level RNN" (Sean Robertson,
  ``intermediate_source/char_rnn_classification_tutorial.py``, the classic
  version with ``i2h`` / ``i2o``), kept faithful: ASCII transliteration, one-hot
  letters, a *linear* recurrence, LogSoftmax read-out, NLLLoss, one name per
  plain-SGD step at learning rate 0.005, 100,000 steps of "random language,
  then a random name of that language".  It is the number people remember for
  this data set, so it is the number we should be able to reproduce.

Both take the raw strings and integer labels ``0 .. K-1`` and return
probabilities of shape (N, K), with a column for every class even when a class
is absent from the training data.  scikit-learn is an optional dependency and
is imported only inside :class:`NgramLogReg`'s methods.
"""

from __future__ import annotations

import string
import time
import unicodedata
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .metrics import classification_metrics

# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def evaluate_probs(
    probs: np.ndarray, labels: Sequence[int], label_names: Sequence[str]
) -> dict[str, object]:
    """Metrics of class probabilities against the true labels.

    Parameters
    ----------
    probs : array, shape (N, K)
        Class probabilities (rows sum to 1); the prediction is the arg-max.
    labels : sequence of int, shape (N,)
        True classes in ``0 .. K-1``.
    label_names : sequence of str, shape (K,)

    Returns
    -------
    dict
        :func:`biornn.metrics.classification_metrics` (``accuracy``,
        ``balanced_accuracy``, ``macro_f1``, ``n``, ``per_class``) plus
        ``log_loss``, the mean negative log-probability of the true class
        (probabilities clipped at 1e-12).

    Examples
    --------
    >>> m = evaluate_probs(np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]), [0, 1, 1], ["a", "b"])
    >>> m["accuracy"], m["balanced_accuracy"]
    (0.6666666666666666, 0.75)
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or p.shape != (len(y), len(label_names)):
        raise ValueError(f"probs must have shape ({len(y)}, {len(label_names)}), got {p.shape}")
    out = classification_metrics(y, p.argmax(axis=1), list(label_names))
    out["log_loss"] = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean()) if len(y) else 0.0
    return out


def _check_fit_args(texts: Sequence[str], labels: Sequence[int], n_classes: int) -> np.ndarray:
    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 1 or len(y) != len(texts):
        raise ValueError(f"labels must have shape ({len(texts)},), got {y.shape}")
    if len(y) == 0:
        raise ValueError("no training examples")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return y


# --------------------------------------------------------------------------
# Character n-grams + logistic regression
# --------------------------------------------------------------------------


class NgramLogReg:
    """Character n-gram TF-IDF features and multinomial logistic regression.

    Parameters
    ----------
    C : float
        Inverse L2 regularisation strength of the logistic regression.  The
        default, 10, was chosen on the validation split of the names data
        (seed 0); names are short, so the features are sparse and little
        regularisation is wanted.
    analyzer : {"char_wb", "char"}
        scikit-learn's character analyser.  ``"char_wb"`` pads each word with
        spaces, so that n-grams mark the start and the end of a name
        (``" mc"``, ``"ski "``), the most telling places for a surname.
    ngram_range : (int, int)
        Smallest and largest n (default 1..4).
    class_weight : None or "balanced"
        ``"balanced"`` weights each class by the inverse of its frequency,
        trading accuracy for balanced accuracy on skewed data.
    max_iter : int
        Iterations of the L-BFGS solver (enough to converge on the names).

    Attributes
    ----------
    n_classes_ : int
        K, set by :meth:`fit`.
    classes_ : array of int, shape (K',)
        The classes seen in training (K' <= K).

    Examples
    --------
    >>> texts = ["aaab", "aaba", "abaa", "bbba", "bbab", "babb"]
    >>> m = NgramLogReg().fit(texts, [0, 0, 0, 1, 1, 1], n_classes=3)
    >>> m.predict_proba(["aaaa", "bbbb"]).shape
    (2, 3)
    >>> m.predict(["aaaa", "bbbb"]).tolist()
    [0, 1]
    """

    def __init__(
        self,
        C: float = 10.0,
        analyzer: str = "char_wb",
        ngram_range: tuple[int, int] = (1, 4),
        class_weight: str | None = None,
        max_iter: int = 3000,
    ) -> None:
        if analyzer not in ("char", "char_wb"):
            raise ValueError(f"analyzer must be 'char' or 'char_wb', got {analyzer!r}")
        if class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
        self.C = C
        self.analyzer = analyzer
        self.ngram_range = tuple(ngram_range)
        self.class_weight = class_weight
        self.max_iter = max_iter

    def fit(self, texts: Sequence[str], labels: Sequence[int], n_classes: int) -> "NgramLogReg":
        """Fit the vectoriser and the classifier.

        Parameters
        ----------
        texts : sequence of str, shape (N,)
        labels : sequence of int, shape (N,), values in ``0 .. n_classes - 1``
        n_classes : int
            K, the number of columns :meth:`predict_proba` returns.

        Returns
        -------
        self
        """
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        y = _check_fit_args(texts, labels, n_classes)
        self.n_classes_ = int(n_classes)
        self.vectorizer_ = TfidfVectorizer(
            analyzer=self.analyzer, ngram_range=self.ngram_range, lowercase=True, sublinear_tf=True
        )
        X = self.vectorizer_.fit_transform(list(texts))  # (N, F) sparse
        self.classes_ = np.unique(y)
        if len(self.classes_) == 1:
            # LogisticRegression refuses a single class; the answer is certain anyway
            self.model_ = None
            return self
        # lbfgs on more than two classes is the multinomial (softmax) model
        self.model_ = LogisticRegression(
            C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, solver="lbfgs"
        ).fit(X, y)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (N, K); classes unseen in training get 0."""
        out = np.zeros((len(texts), self.n_classes_))
        if self.model_ is None:
            out[:, self.classes_[0]] = 1.0
            return out
        p = self.model_.predict_proba(self.vectorizer_.transform(list(texts)))  # (N, K')
        out[:, self.model_.classes_] = p
        return out

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable class of each text, shape (N,), int."""
        return self.predict_proba(texts).argmax(axis=1)


# --------------------------------------------------------------------------
# The PyTorch tutorial's character-level RNN
# --------------------------------------------------------------------------

ALL_LETTERS = string.ascii_letters + " .,;'"
"""The tutorial's alphabet: 52 ASCII letters and `` .,;'``."""
N_LETTERS = len(ALL_LETTERS)  # 57
_LETTER_INDEX = {c: i for i, c in enumerate(ALL_LETTERS)}


def unicode_to_ascii(s: str) -> str:
    """The tutorial's ``unicodeToAscii``: NFD, drop combining marks, keep the alphabet.

    Every character that is not in :data:`ALL_LETTERS` after decomposition is
    dropped (``ß``, ``ł``, ``-``, ``/`` and any non-Latin script).

    Examples
    --------
    >>> unicode_to_ascii("Ślusàrski")
    'Slusarski'
    >>> unicode_to_ascii("Groß-Müller")
    'GroMuller'
    """
    return "".join(
        c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn" and c in _LETTER_INDEX
    )


def line_to_indices(line: str) -> np.ndarray:
    """Letter indices of an already transliterated line, shape (T,), int64.

    The tutorial's ``lineToTensor`` builds the (T, 1, 57) one-hot tensor; a
    one-hot vector times a weight matrix is one column of it, so the index is
    all that is needed.
    """
    return np.fromiter((_LETTER_INDEX[c] for c in line), dtype=np.int64, count=len(line))


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite at SGD step ``step`` (1-based)."""

    def __init__(self, step: int) -> None:
        super().__init__(
            f"training diverged at step {step} (the loss is not finite); the tutorial's linear recurrence "
            "can do this with its own settings too (pytorch/tutorials#847): try another seed"
        )
        self.step = step


class TutorialNet(nn.Module):
    """The tutorial's network, as written there (for checking and for export).

    .. math::

        c_t = [x_t; h_{t-1}], \\quad h_t = W_{i2h} c_t + b_{i2h}, \\quad
        y_t = \\mathrm{LogSoftmax}(W_{i2o} c_t + b_{i2o})

    The recurrence is linear (no squashing function), exactly as in the
    tutorial, and the read-out at step t sees ``h_{t-1}``, not ``h_t``.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        57, 128 and K in the tutorial.
    device : torch.device, optional
        Lets ``torch.nn.utils.skip_init`` build it without initialising.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, device=None) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size, device=device)
        self.i2o = nn.Linear(input_size + hidden_size, output_size, device=device)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, input: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One letter: ``input`` (1, I) one-hot, ``hidden`` (1, H) -> log-probs (1, K), hidden (1, H)."""
        combined = torch.cat((input, hidden), 1)  # (1, I + H)
        hidden = self.i2h(combined)
        output = self.softmax(self.i2o(combined))
        return output, hidden

    def init_hidden(self) -> torch.Tensor:
        """The zero initial state, (1, H)."""
        return torch.zeros(1, self.hidden_size)


class TutorialRNN:
    """The PyTorch names tutorial's character-level RNN and training recipe.

    Training is the tutorial's loop: ``steps`` times, pick a language uniformly
    at random, then a name of that language uniformly at random, run the
    network over its one-hot letters from a zero state, take the NLL loss of
    the last output, back-propagate and update every parameter by
    ``p -= learning_rate * grad``.  Languages are therefore seen equally
    often whatever their size, which favours balanced accuracy over accuracy.

    What differs from the tutorial is speed only.  The forward pass and the
    back-propagation through time of this tiny linear net are written out in
    NumPy (float32, as the tutorial's tensors), one-hot products are column
    look-ups, and every name is converted once; torch's per-operation overhead
    would otherwise dominate a batch of one.  ``tests/test_baselines.py``
    checks the updates against autograd on :class:`TutorialNet`.  The random
    numbers come from seeded generators (``torch.Generator`` for the
    ``nn.Linear`` initialisation, ``numpy.random.Generator`` for sampling),
    never from the global ones.

    Parameters
    ----------
    hidden_size : int
        H, 128 in the tutorial.
    learning_rate : float
        0.005 in the tutorial ("If you set this too high, it might explode").

    Attributes
    ----------
    losses_ : list of float
        Mean training loss over each block of 1000 steps (the tutorial's
        ``all_losses`` with ``plot_every = 1000``).

    Examples
    --------
    >>> m = TutorialRNN(hidden_size=16).fit(["ab", "abab", "ba", "baba"], [0, 0, 1, 1], 2, steps=300)
    >>> m.predict_proba(["aab"]).shape
    (1, 2)
    """

    def __init__(self, hidden_size: int = 128, learning_rate: float = 0.005) -> None:
        self.hidden_size = hidden_size
        self.learning_rate = learning_rate

    # -- parameters ------------------------------------------------------

    def _init_params(self, n_classes: int, seed: int) -> None:
        """``nn.Linear``'s default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), seeded."""
        g = torch.Generator().manual_seed(seed)
        fan_in = N_LETTERS + self.hidden_size
        bound = 1.0 / fan_in**0.5

        def u(*shape: int) -> torch.Tensor:
            return torch.empty(shape).uniform_(-bound, bound, generator=g)

        # the same order as nn.Linear: i2h.weight, i2h.bias, i2o.weight, i2o.bias
        w, bh = u(self.hidden_size, fan_in), u(self.hidden_size)
        v, bo = u(n_classes, fan_in), u(n_classes)
        self._set_weights(w.numpy(), bh.numpy(), v.numpy(), bo.numpy())

    def _set_weights(self, w: np.ndarray, bh: np.ndarray, v: np.ndarray, bo: np.ndarray) -> None:
        """Split the tutorial's weights, i2h (H, I + H) and i2o (K, I + H), for the NumPy loop."""
        I = N_LETTERS
        # one-hot x_t times W[:, :I] is column a_t; kept as rows for contiguous look-ups
        self.Wx_ = np.array(w[:, :I].T, dtype=np.float32, order="C")  # (I, H)
        self.Wh_ = np.array(w[:, I:], dtype=np.float32, order="C")  # (H, H)
        self.b_ = np.array(bh, dtype=np.float32)  # (H,)
        self.Vx_ = np.array(v[:, :I].T, dtype=np.float32, order="C")  # (I, K)
        self.Vh_ = np.array(v[:, I:], dtype=np.float32, order="C")  # (K, H)
        self.c_ = np.array(bo, dtype=np.float32)  # (K,)
        self.n_classes_ = int(self.c_.shape[0])

    def from_module(self, net: TutorialNet) -> "TutorialRNN":
        """Take the weights of a tutorial network (the inverse of :meth:`to_module`)."""
        self.hidden_size = net.hidden_size
        self._set_weights(
            net.i2h.weight.detach().numpy(), net.i2h.bias.detach().numpy(),
            net.i2o.weight.detach().numpy(), net.i2o.bias.detach().numpy(),
        )
        return self

    def to_module(self) -> TutorialNet:
        """The fitted weights in the tutorial's own :class:`TutorialNet`."""
        # skip_init: no throw-away initialisation drawing from the global RNG
        net = torch.nn.utils.skip_init(TutorialNet, N_LETTERS, self.hidden_size, self.n_classes_)
        with torch.no_grad():
            net.i2h.weight.copy_(torch.from_numpy(np.hstack([self.Wx_.T, self.Wh_])))
            net.i2h.bias.copy_(torch.from_numpy(self.b_))
            net.i2o.weight.copy_(torch.from_numpy(np.hstack([self.Vx_.T, self.Vh_])))
            net.i2o.bias.copy_(torch.from_numpy(self.c_))
        return net

    # -- the recurrence --------------------------------------------------

    def _hidden_inputs(self, seq: np.ndarray) -> np.ndarray:
        """The states fed into each step, h_{t-1} for t = 0..T-1, shape (T, H); row 0 is zeros."""
        T = len(seq)
        hs = np.zeros((T, self.hidden_size), dtype=np.float32)
        Wx, Wh, b = self.Wx_, self.Wh_, self.b_
        for t in range(T - 1):  # h_{T-1} feeds no read-out, so it is never needed
            hs[t + 1] = Wx[seq[t]] + Wh @ hs[t] + b
        return hs

    def _log_probs(self, seq: np.ndarray, hs: np.ndarray) -> np.ndarray:
        """Log-softmax of the last step's read-out, shape (K,)."""
        o = self.Vx_[seq[-1]] + self.Vh_ @ hs[-1] + self.c_  # (K,)
        o = o - o.max()
        return o - np.log(np.exp(o).sum())

    def _sgd_step(self, seq: np.ndarray, y: int) -> float:
        """One tutorial ``train(category_tensor, line_tensor)`` call; returns the loss.

        Back-propagation through time of the linear recurrence: with
        ``do = softmax(o) - onehot(y)`` and ``g_{T-2} = Vh^T do``, the
        gradient reaching ``h_t`` is ``g_{t-1} = Wh^T g_t``.  All gradients are
        taken before any weight moves, as autograd's ``backward`` does.
        """
        lr = self.learning_rate
        T = len(seq)
        hs = self._hidden_inputs(seq)  # (T, H)
        logp = self._log_probs(seq, hs)  # (K,)
        loss = float(-logp[y])
        do = np.exp(logp)
        do[y] -= 1.0  # dL/do, (K,)
        if T > 1:
            G = np.empty((T - 1, self.hidden_size), dtype=np.float32)  # dL/dh_t, t = 0..T-2
            g = self.Vh_.T @ do
            G[T - 2] = g
            Wh_T = self.Wh_.T
            for t in range(T - 3, -1, -1):
                g = Wh_T @ g
                G[t] = g
            dWh = G.T @ hs[: T - 1]  # sum_t g_t h_{t-1}^T, (H, H)
            self.Wh_ -= lr * dWh
            np.subtract.at(self.Wx_, seq[: T - 1], lr * G)  # repeated letters add up
            self.b_ -= lr * G.sum(axis=0)
        self.Vh_ -= lr * np.outer(do, hs[-1])
        self.Vx_[seq[-1]] -= lr * do
        self.c_ -= lr * do
        return loss

    # -- public API ------------------------------------------------------

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        n_classes: int,
        steps: int = 100_000,
        seed: int = 0,
    ) -> "TutorialRNN":
        """Train with the tutorial's loop.

        Parameters
        ----------
        texts : sequence of str, shape (N,)
            Raw names; transliterated with :func:`unicode_to_ascii`.  Names
            that come out empty are left out of training.
        labels : sequence of int, shape (N,), values in ``0 .. n_classes - 1``
        n_classes : int
            K, the network's outputs.  Classes with no (non-empty) training
            name are never drawn.
        steps : int
            Names shown, one SGD step each (the tutorial's ``n_iters``).
        seed : int
            Seeds the initialisation and the sampling.

        Returns
        -------
        self

        Raises
        ------
        TrainingDiverged
            The loss became NaN or infinite.  The recipe has no gradient
            clipping and a linear recurrence, and with its own settings it
            sometimes blows up: the tutorial's rendered page once showed
            ``nan`` from step 35,000 on (pytorch/tutorials#847).  On the names
            training split (split seed 0) seed 0 diverges near step 34,000;
            seeds 1 and 2 do not.
        """
        y = _check_fit_args(texts, labels, n_classes)
        seqs = [line_to_indices(unicode_to_ascii(t)) for t in texts]
        by_class = [[s for s, yi in zip(seqs, y) if yi == k and len(s)] for k in range(n_classes)]
        present = [k for k in range(n_classes) if by_class[k]]
        if not present:
            raise ValueError("no training name is left after transliteration to ASCII")
        self._init_params(n_classes, seed)
        rng = np.random.default_rng(seed)
        # draw all the random choices at once: language, then a uniform name within it
        cats = np.asarray(present)[rng.integers(0, len(present), size=steps)]
        picks = rng.random(steps)
        self.losses_ = []
        running = 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below, once
            for i in range(steps):
                k = int(cats[i])
                pool = by_class[k]
                loss = self._sgd_step(pool[int(picks[i] * len(pool))], k)
                if not np.isfinite(loss):
                    raise TrainingDiverged(i + 1)
                running += loss
                if (i + 1) % 1000 == 0:
                    self.losses_.append(running / 1000)
                    running = 0.0
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (N, K).

        The softmax of the last step's output.  A name that is empty after
        transliteration gives no output in the tutorial; here it gets the
        uniform distribution.
        """
        out = np.full((len(texts), self.n_classes_), 1.0 / self.n_classes_)
        for i, t in enumerate(texts):
            seq = line_to_indices(unicode_to_ascii(t))
            if len(seq):
                out[i] = np.exp(self._log_probs(seq, self._hidden_inputs(seq)))
        return out

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable class of each name, shape (N,), int."""
        return self.predict_proba(texts).argmax(axis=1)


# --------------------------------------------------------------------------
# Signals: a linear autoregressive predictor
# --------------------------------------------------------------------------


def _lagged(x: np.ndarray, order: int) -> np.ndarray:
    """Rows [x_t, x_{t-1}, ..., x_{t-p+1}] flattened, for t = p-1 .. T-1: (T - p + 1, p * L)."""
    from numpy.lib.stride_tricks import sliding_window_view

    w = sliding_window_view(x, order, axis=0)  # (T-p+1, L, p), window oldest first
    return w[:, :, ::-1].reshape(len(w), -1)


class LinearAR:
    """Least-squares linear autoregression: the next k samples of every lead from the last p of all leads.

    ``pred[t, j-1] = x_t + A_j [x_t, ..., x_{t-p+1}] + b_j`` -- like the
    recurrent predictor it predicts the change from the current sample --
    fitted by ridge-regularised least squares (``ridge`` times the mean
    diagonal of the normal matrix, for stability only).
    """

    def __init__(self, order: int, horizon: int, ridge: float = 1e-6) -> None:
        self.order, self.horizon, self.ridge = order, horizon, ridge
        self.coef: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> LinearAR:
        """Fit on a signal (T, L); ``ValueError`` if it is shorter than ``order + horizon``."""
        T, L = x.shape
        p, k = self.order, self.horizon
        if T < p + k + 1:
            raise ValueError(f"a linear AR of order {p} and horizon {k} needs more than {p + k} samples, got {T}")
        X = _lagged(x[: T - k], p)  # rows for t = p-1 .. T-k-1
        X = np.hstack([X, np.ones((len(X), 1))])
        t = np.arange(p - 1, T - k)
        Y = np.stack([x[t + j] - x[t] for j in range(1, k + 1)], axis=1).reshape(len(t), k * L)
        G = X.T @ X
        G += self.ridge * np.trace(G) / len(G) * np.eye(len(G))
        self.coef = np.linalg.solve(G, X.T @ Y)  # (p*L + 1, k*L)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions (T, k, L) after every step of ``x`` (T, L); NaN for the first p-1 steps."""
        T, L = x.shape
        out = np.full((T, self.horizon, L), np.nan)
        if T >= self.order:
            X = _lagged(x, self.order)
            X = np.hstack([X, np.ones((len(X), 1))])
            delta = (X @ self.coef).reshape(len(X), self.horizon, L)
            out[self.order - 1:] = x[self.order - 1:, None, :] + delta
        return out


# --------------------------------------------------------------------------
# One-hot / window logistic regression for biological sequences
# --------------------------------------------------------------------------


class OneHotLogReg:
    """Multinomial logistic regression on flattened residue weights: the non-recurrent baseline
    of a fixed-length sequence task (``splice``) or, on windows, of per-residue tagging.

    Parameters
    ----------
    C : float
        Inverse L2 regularisation strength.
    max_iter : int
        L-BFGS iterations.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000) -> None:
        self.C, self.max_iter = C, max_iter
        self.model = None
        self.n_classes = 0

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> "OneHotLogReg":
        """``X`` (N, ...) weights (flattened to (N, D)), ``y`` (N,) in 0..K-1."""
        from sklearn.linear_model import LogisticRegression

        y = _check_fit_args(X, y, n_classes)
        self.n_classes = n_classes
        self.model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        self.model.fit(np.asarray(X, dtype=np.float64).reshape(len(X), -1), y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, K) probabilities, a column for every class (0 for classes absent from training)."""
        if self.model is None:
            raise RuntimeError("fit the model first")
        p = self.model.predict_proba(np.asarray(X, dtype=np.float64).reshape(len(X), -1))
        out = np.zeros((len(X), self.n_classes))
        out[:, self.model.classes_] = p
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def select_logreg(X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, n_classes: int,
                  Cs: Sequence[float], max_iter: int = 2000, refit: bool = False) -> tuple[OneHotLogReg, float, float]:
    """A :class:`OneHotLogReg` for each L2 strength in ``Cs``, trained on the training part; the one
    with the best validation accuracy (the first of equals; the first C without a validation part).
    With ``refit``, the chosen C is then fitted again on the training and validation parts together
    (as ``refit`` does for the recurrent model).

    Returns the fitted model, its C and the seconds spent on all of them.
    """
    t0 = time.perf_counter()
    best = None
    for C in Cs:
        lr = OneHotLogReg(C=C, max_iter=max_iter).fit(X_train, y_train, n_classes)
        acc = float((lr.predict(X_val) == np.asarray(y_val)).mean()) if len(y_val) else 0.0
        if best is None or acc > best[0]:
            best = (acc, C, lr)
    model = best[2]
    if refit and len(y_val):
        model = OneHotLogReg(C=best[1], max_iter=max_iter).fit(
            np.concatenate([X_train, X_val]), np.concatenate([np.asarray(y_train), np.asarray(y_val)]), n_classes)
    return model, best[1], time.perf_counter() - t0


class FeedForwardBaseline:
    """The one-to-one network (:class:`biornn.models.feedforward.FeedForward`) as a baseline:
    trained on the flattened residue weights of a fixed-length task, its best epoch picked by
    validation accuracy.

    Full-batch AdamW (the data sets it serves hold hundreds of sequences), cross-entropy, a
    fixed number of epochs; seeded, so the same seed gives the same weights.

    Parameters
    ----------
    hidden_size, num_layers, dropout :
        Of the network.
    lr, weight_decay, epochs : float, float, int
        Of the optimiser.
    seed : int
    """

    def __init__(self, hidden_size: int = 32, num_layers: int = 1, dropout: float = 0.5, lr: float = 1e-2,
                 weight_decay: float = 1e-2, epochs: int = 200, seed: int = 0) -> None:
        self.hidden_size, self.num_layers, self.dropout = hidden_size, num_layers, dropout
        self.lr, self.weight_decay, self.epochs, self.seed = lr, weight_decay, epochs, seed
        self.net = None
        self.best_epoch = 0

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> "FeedForwardBaseline":
        """``X`` (N, T, F) weights, ``y`` (N,) in 0..K-1; the validation part picks the best epoch
        (without one, the last epoch is kept)."""
        import torch
        from torch.nn import functional as F

        from .models.feedforward import FeedForward

        y = _check_fit_args(X, y, n_classes)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3:
            raise ValueError(f"X must be (N, T, F), got shape {X.shape}")
        xt, yt = torch.from_numpy(X), torch.from_numpy(np.asarray(y, dtype=np.int64))
        xv = torch.from_numpy(np.asarray(X_val, dtype=np.float32)) if X_val is not None else None
        has_val = xv is not None and y_val is not None and len(y_val) > 0
        best, best_state = None, None
        # initialisation and dropout draw from the seed; the caller's torch random state is left alone
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            net = FeedForward(X.shape[1], X.shape[2], n_classes, self.hidden_size, self.num_layers, self.dropout)
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            for epoch in range(1, self.epochs + 1):
                net.train()
                loss = F.cross_entropy(net(xt), yt)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if has_val:
                    net.eval()
                    with torch.no_grad():
                        acc = float((net(xv).argmax(1).numpy() == np.asarray(y_val)).mean())
                    if best is None or acc > best:
                        best, self.best_epoch = acc, epoch
                        best_state = {k: v.clone() for k, v in net.state_dict().items()}
        if best_state is not None:
            net.load_state_dict(best_state)
        else:
            self.best_epoch = self.epochs
        net.eval()
        self.net = net
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, K) probabilities."""
        import torch

        if self.net is None:
            raise RuntimeError("fit the model first")
        with torch.no_grad():
            return torch.softmax(self.net(torch.from_numpy(np.asarray(X, dtype=np.float32))), dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def residue_windows(X: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """The window of ``width`` residues centred on every real residue, for a window baseline.

    Parameters
    ----------
    X : ndarray, shape (N, T, K)
        Residue weights, padded after each sequence's length.
    lengths : ndarray of int, shape (N,)
    width : int
        Odd window width (13 in Qian & Sejnowski).

    Returns
    -------
    ndarray of float32, shape (sum(lengths), width * (K + 1))
        Per residue, in order: each window position's weights and a last
        column that is 1 where the window runs past the sequence's end.
    """
    if width % 2 != 1:
        raise ValueError(f"window width must be odd, got {width}")
    N, T, K = X.shape
    half = width // 2
    rows = []
    for i in range(N):
        L = int(lengths[i])
        padded = np.zeros((L + 2 * half, K + 1), dtype=np.float32)
        padded[:, K] = 1.0
        padded[half:half + L, :K] = X[i, :L]
        padded[half:half + L, K] = 0.0
        idx = np.arange(L)[:, None] + np.arange(width)[None, :]  # (L, width)
        rows.append(padded[idx].reshape(L, width * (K + 1)))
    return np.concatenate(rows) if rows else np.zeros((0, width * (K + 1)), dtype=np.float32)
