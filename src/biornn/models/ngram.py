"""A character n-gram logistic regression as a PyTorch module, to blend with a recurrent classifier.

:class:`NgramScorer` reads the same input as :class:`biornn.models.SequenceClassifier`
(symbols (B, T) and lengths (B,)) and returns class logits (B, K) of a
multinomial logistic regression on the TF-IDF vector of the sequence's
character 1..n-grams.  It is fitted once, before the recurrent model trains,
with scikit-learn (:meth:`NgramScorer.fit`); after that it is a fixed part of
the model: its numbers are buffers, saved in ``model.safetensors`` with the
weights, exported to ONNX and TorchScript with the recurrent members, and the
same in training, evaluation, ``predict`` and ``serve``.

The features, for one sequence of symbols s_1 .. s_L:

- each symbol is folded to lower case (``"A"`` and ``"a"`` are one symbol
  here; the recurrent model still sees both), and the sequence is framed by a
  start and an end mark: ``^ s_1 .. s_L $``;
- every run of n = 1 .. ``n_max`` consecutive marks and symbols is an n-gram
  (the marks alone are not unigrams), so that ``"^mc"`` or ``"ski$"`` mark the
  start or the end of a name;
- an n-gram seen in training has a column f; the sequence's vector holds
  ``count_f * idf_f`` with ``idf_f = ln((1 + N) / (1 + df_f)) + 1`` (N training
  sequences, df_f of them contain the n-gram: scikit-learn's smoothed idf),
  scaled to unit length; unseen n-grams (an unknown symbol) are left out;
- logits = W v + b, W (K, F) and b (K,) from an L2-regularised multinomial
  logistic regression (scikit-learn's ``LogisticRegression``, lbfgs, inverse
  strength ``C``).

An n-gram's column is found by binary search over the sorted integer codes of
the training n-grams (code = sum_j d_j * base**j over its marks and symbols
d_j in 1 .. base - 1), in plain tensor operations, so the module exports.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

#: logit of a class the training sequences never showed (so the blend never picks it for the n-grams' sake)
MISSING_CLASS_LOGIT = -30.0


def _base(fold: Tensor) -> int:
    """The code base of a fold table: its symbols and the unknown symbol (1 .. max), then the start
    and end marks (max + 1, max + 2), and 0 kept for padding."""
    return int(fold.max()) + 3 if fold.numel() else 4


class NgramScorer(nn.Module):
    """Character n-gram TF-IDF logistic regression over symbol indices (see the module docstring).

    Parameters
    ----------
    fold : LongTensor (V,)
        Folded symbol of each input index: 0 for padding, 1 .. base - 4 for a
        symbol, base - 3 for the unknown symbol; base - 2 and base - 1 are the
        start and end marks.
    codes : LongTensor (F,)
        Sorted codes of the training n-grams.
    idf : Tensor (F,)
    weight : Tensor (K, F)
    bias : Tensor (K,)
    n_max : int
        The longest n-gram.

    Use :meth:`fit` to make one from training sequences, or :meth:`empty` to
    make one of a saved model's sizes and then load its state.
    """

    __jit_unused_properties__ = ["n_features"]

    def __init__(self, fold: Tensor, codes: Tensor, idf: Tensor, weight: Tensor, bias: Tensor, n_max: int) -> None:
        super().__init__()
        if n_max < 1:
            raise ValueError(f"n-gram scorer: n_max must be >= 1, got {n_max}")
        F_ = codes.numel()
        if idf.shape != (F_,) or weight.dim() != 2 or weight.shape[1] != F_ or bias.shape != (weight.shape[0],):
            raise ValueError(f"n-gram scorer: sizes do not match (codes {tuple(codes.shape)}, idf {tuple(idf.shape)}, "
                             f"weight {tuple(weight.shape)}, bias {tuple(bias.shape)})")
        self.register_buffer("fold", fold.to(torch.long))
        self.register_buffer("codes", codes.to(torch.long))
        self.register_buffer("idf", idf.to(torch.float32))
        self.register_buffer("weight", weight.to(torch.float32))
        self.register_buffer("bias", bias.to(torch.float32))
        self.n_max = int(n_max)
        self.base = _base(self.fold)
        # steps of the binary search over F codes
        self.search_steps = max(1, math.ceil(math.log2(F_ + 1)))
        self.fit_seconds: float | None = None

    @property
    def n_features(self) -> int:
        """F, the number of training n-grams."""
        return int(self.codes.numel())

    @classmethod
    def empty(cls, vocab_size: int, n_features: int, n_classes: int, n_max: int) -> "NgramScorer":
        """A scorer of the given sizes with placeholder numbers, for ``load_state_dict``."""
        return cls(torch.zeros(vocab_size, dtype=torch.long), torch.zeros(n_features, dtype=torch.long),
                   torch.ones(n_features), torch.zeros(n_classes, n_features), torch.zeros(n_classes), n_max)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D102
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # the start and end marks follow the loaded symbols
        self.base = _base(self.fold)

    def check(self) -> None:
        """``ValueError`` saying what is wrong if the numbers cannot be a fitted scorer's (a damaged
        or hand-edited file): at least one n-gram, codes sorted and distinct and within n_max symbols,
        the fold table in range (padding 0, the unknown symbol the largest), finite weights."""
        F_ = self.codes.numel()
        if F_ == 0:
            raise ValueError("the n-gram part has no n-gram")
        fold = self.fold
        top = int(fold.max()) if fold.numel() else 0
        if fold.numel() < 2 or int(fold[0]) != 0 or int(fold[1]) != top or top < 1 or \
                (fold.numel() > 2 and (int(fold[2:].min()) < 1 or int(fold[2:].max()) >= top)):
            raise ValueError("the n-gram part's symbol table (ngram.fold) is damaged")
        base = _base(fold)
        if base ** self.n_max >= 2 ** 62:
            raise ValueError(f"the n-gram part's symbol table (ngram.fold) is damaged ({top - 1} symbols "
                             f"overflow 64-bit codes)")
        codes = self.codes
        if int(codes[0]) < 1 or int(codes[-1]) >= base ** self.n_max or (F_ > 1 and not bool((codes[1:] > codes[:-1]).all())):
            raise ValueError("the n-gram part's codes (ngram.codes) are not sorted, distinct n-gram codes")
        for name in ("idf", "weight", "bias"):
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise ValueError(f"the n-gram part's ngram.{name} holds NaN or infinite values")
        if not bool((self.idf > 0).all()):
            raise ValueError("the n-gram part's ngram.idf holds values <= 0")

    # -- the features ------------------------------------------------------
    def gram_codes(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Every n-gram of every sequence as an integer code.

        Parameters
        ----------
        x : LongTensor (B, T)
            Symbol indices, padded at the end with 0.
        lengths : LongTensor (B,), optional
            Real lengths; ``None``: every sequence has T symbols.

        Returns
        -------
        codes : LongTensor (B, N)
            N = sum over n of (T + 3 - n) candidate n-grams per sequence.
        valid : BoolTensor (B, N)
            False for a candidate that runs past the end mark or is a mark alone.
        """
        B, T = x.shape
        start, end = self.base - 2, self.base - 1
        s = self.fold[x]  # (B, T): 0 for padding
        if lengths is not None:
            lengths = lengths.to(device=x.device, dtype=torch.long)  # kept on the CPU by device.place
            steps = torch.arange(T, device=x.device).unsqueeze(0)
            s = torch.where(steps < lengths.unsqueeze(1), s, torch.zeros_like(s))
            last = lengths  # the end mark's place in the framed row (after the start mark)
        else:
            last = torch.full((B,), T, dtype=torch.long, device=x.device)
        framed = torch.cat([torch.full((B, 1), start, dtype=torch.long, device=x.device), s,
                            torch.zeros((B, 1), dtype=torch.long, device=x.device)], dim=1)  # (B, T + 2)
        places = torch.arange(T + 2, device=x.device).unsqueeze(0)
        framed = torch.where(places == (last + 1).unsqueeze(1), torch.full_like(framed, end), framed)
        all_codes, all_valid = [], []
        for n in range(1, self.n_max + 1):
            width = T + 3 - n
            code = torch.zeros((B, width), dtype=torch.long, device=x.device)
            valid = torch.ones((B, width), dtype=torch.bool, device=x.device)
            scale = 1
            for j in range(n):
                digit = framed[:, j : j + width]
                code = code + digit * scale
                valid = valid & (digit > 0)
                scale = scale * self.base
            if n == 1:  # the marks alone say nothing
                valid = valid & (framed[:, :width] < start)
            all_codes.append(code)
            all_valid.append(valid)
        return torch.cat(all_codes, dim=1), torch.cat(all_valid, dim=1)

    def columns(self, codes: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Each code's column among the training n-grams, (B, N), and whether it is one of them.

        A binary search over the sorted codes in ``search_steps`` fixed steps
        (gathers and comparisons only, so that ONNX and TorchScript take it).
        """
        F_ = self.codes.numel()
        lo = torch.zeros_like(codes)
        hi = torch.full_like(codes, F_)
        for _ in range(self.search_steps):
            mid = torch.div(lo + hi, 2, rounding_mode="floor")
            probe = self.codes[mid.clamp(max=max(F_ - 1, 0))]
            right = (probe < codes) & (mid < hi)
            lo = torch.where(right, mid + 1, lo)
            hi = torch.where(right, hi, mid)
        col = lo.clamp(max=max(F_ - 1, 0))
        found = valid & (lo < F_) & (self.codes[col] == codes)
        return col, found

    def features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The unit-length TF-IDF vectors, (B, F) (zero for a sequence with no known n-gram)."""
        codes, valid = self.gram_codes(x, lengths)
        col, found = self.columns(codes, valid)
        values = torch.where(found, self.idf[col], torch.zeros((), dtype=self.idf.dtype, device=x.device))
        v = torch.zeros((x.shape[0], self.codes.numel()), dtype=self.idf.dtype, device=x.device)
        v = v.scatter_add(1, col, values)
        norm = torch.sqrt((v * v).sum(dim=1, keepdim=True))
        return v / torch.where(norm > 0, norm, torch.ones_like(norm))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Class logits (B, K) of symbols (B, T)."""
        return self.features(x, lengths) @ self.weight.t() + self.bias

    def extra_repr(self) -> str:
        return (f"n_max={self.n_max}, n_features={self.n_features}, n_classes={self.weight.shape[0]}, "
                f"symbols={self.base - 3}")

    # -- fitting -----------------------------------------------------------
    @classmethod
    def fit(cls, sequences: Sequence[Sequence[int]], labels: Sequence[int], n_classes: int,
            symbols: Sequence[str], n_max: int = 4, C: float = 10.0, max_iter: int = 3000,
            batch_size: int = 512, class_weight: Sequence[float] | None = None) -> "NgramScorer":
        """Fit the n-gram vocabulary, the idf and the logistic regression on encoded training sequences.

        Parameters
        ----------
        sequences : sequence of N non-empty sequences of int
            Symbol indices as :class:`biornn.data.batching.Vocabulary` encodes
            them (0 padding, 1 unknown, ``symbols[i]`` is i + 2).
        labels : sequence of int, shape (N,), values in 0 .. n_classes - 1
        n_classes : int
            K.
        symbols : sequence of str
            The vocabulary's symbols, for folding case.
        n_max : int
            The longest n-gram (default 4).
        C : float
            Inverse L2 regularisation strength (default 10, as the names baseline's).
        max_iter : int
            lbfgs iterations.
        class_weight : sequence of float, shape (K,), optional
            Per-class weights of the log-likelihood (each sequence weighted by its class's), as the
            recurrent model's class-weighted loss; ``None``: every sequence counts once.

        Returns
        -------
        NgramScorer
            With ``fit_seconds``, the time the fit took (not saved with the state).
        """
        from scipy import sparse
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        from ..data.batching import pad_batch

        t0 = time.perf_counter()
        y = np.asarray(labels, dtype=np.int64)
        if len(sequences) == 0 or len(y) != len(sequences):
            raise ValueError(f"n-gram scorer: {len(sequences)} sequences and {len(y)} labels")
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"n-gram scorer: labels must be in 0..{n_classes - 1}")
        lowered = sorted({s.lower() for s in symbols})
        fold = torch.zeros(len(symbols) + 2, dtype=torch.long)
        fold[1] = len(lowered) + 1  # the unknown symbol: a value of its own, in no training n-gram
        for i, s in enumerate(symbols):
            fold[i + 2] = lowered.index(s.lower()) + 1
        base = len(lowered) + 4
        if base ** n_max >= 2 ** 62:
            raise ValueError(f"n-gram scorer: {len(lowered)} symbols and n_max={n_max} overflow 64-bit codes")
        probe = cls(fold, torch.zeros(1, dtype=torch.long), torch.ones(1), torch.zeros(1, 1), torch.zeros(1), n_max)
        rows, cols = [], []
        with torch.no_grad():
            for start in range(0, len(sequences), batch_size):
                x, lengths = pad_batch(sequences[start : start + batch_size])
                codes, valid = probe.gram_codes(x, lengths)
                r, c = valid.nonzero(as_tuple=True)
                rows.append((r + start).numpy())
                cols.append(codes[r, c].numpy())
        rows_np, codes_np = np.concatenate(rows), np.concatenate(cols)
        vocabulary = np.unique(codes_np)  # sorted
        counts = sparse.csr_matrix((np.ones(len(rows_np)), (rows_np, np.searchsorted(vocabulary, codes_np))),
                                   shape=(len(sequences), len(vocabulary)))  # duplicates summed: counts
        tfidf = TfidfTransformer(norm="l2", use_idf=True, smooth_idf=True, sublinear_tf=False)
        X = tfidf.fit_transform(counts)
        weight = np.zeros((n_classes, len(vocabulary)))
        bias = np.full(n_classes, MISSING_CLASS_LOGIT)
        present = np.unique(y)
        if len(present) == 1:  # LogisticRegression wants two classes; one is certain anyway
            bias[present[0]] = 0.0
        else:
            weights = None if class_weight is None else np.asarray(class_weight, dtype=np.float64)[y]
            lr = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs").fit(X, y, sample_weight=weights)
            coef, intercept = lr.coef_, lr.intercept_
            if len(lr.classes_) == 2:  # scikit-learn's binary form: one row for class 1
                coef = np.vstack([-coef[0] / 2, coef[0] / 2])
                intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
            weight[lr.classes_] = coef
            bias[lr.classes_] = intercept
        scorer = cls(fold, torch.from_numpy(vocabulary), torch.from_numpy(tfidf.idf_).float(),
                     torch.from_numpy(weight).float(), torch.from_numpy(bias).float(), n_max)
        scorer.fit_seconds = time.perf_counter() - t0
        return scorer
