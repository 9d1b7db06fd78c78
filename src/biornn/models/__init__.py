"""Models over :class:`biornn.Recurrent`, by the shape of their input and output.

Many-to-one (:class:`SequenceClassifier`): a whole sequence in, one label out,
read from the last real step of the forward direction and the first step of
the backward direction.  The other shapes (one-to-many, many-to-many,
encoder-decoder) come with the tasks that use them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..recurrent import Recurrent


def last_outputs(out: Tensor, lengths: Tensor | None, directions: int) -> Tensor:
    """The sequence summary a many-to-one model reads.

    Parameters
    ----------
    out : Tensor, shape (B, T, D * O)
        A :class:`Recurrent`'s batch-first outputs.
    lengths : Tensor of int, shape (B,), or None
    directions : int
        D, 1 or 2.

    Returns
    -------
    Tensor, shape (B, D * O)
        The forward direction's output at each sequence's last real step and,
        if bidirectional, the backward direction's output at step 0 (where
        it has read the whole sequence).
    """
    B, T, width = out.shape
    O = width // directions
    last = (lengths.to(out.device) - 1) if lengths is not None else torch.full((B,), T - 1, device=out.device)
    forward = out[torch.arange(B, device=out.device), last, :O]  # (B, O)
    if directions == 1:
        return forward
    return torch.cat([forward, out[:, 0, O:]], dim=1)


def pool_outputs(out: Tensor, lengths: Tensor | None, pool: str, directions: int,
                 split_at: int | None = None) -> Tensor:
    """A recurrent layer's outputs as one summary per sequence.

    Parameters
    ----------
    out : Tensor, shape (B, T, D * H)
        Outputs; steps past a sequence's length are padding.
    lengths : Tensor of int, shape (B,), or None
    pool : {"last", "max", "mean", "split"}
        ``last``: :func:`last_outputs` (the forward direction's last real step, the backward
        direction's first); ``max`` / ``mean``: over the real steps, per unit; ``split``: a
        bidirectional model's forward output at step ``split_at - 1`` and backward output at
        ``split_at`` (default T // 2).
    directions : int
        D.
    split_at : int, optional

    Returns
    -------
    Tensor, shape (B, D * H)
    """
    if pool == "last":
        return last_outputs(out, lengths, directions)
    if pool == "split":
        at = split_at if split_at is not None else out.shape[1] // 2
        if lengths is not None and int(lengths.min()) <= at:
            raise ValueError(f"pool='split' at step {at}: a sequence of {int(lengths.min())} steps is too short")
        H = out.shape[2] // 2
        return torch.cat([out[:, at - 1, :H], out[:, at, H:]], dim=1)  # (B, 2H)
    B, T, _ = out.shape
    real = (torch.arange(T, device=out.device)[None, :] < lengths.to(out.device)[:, None]
            if lengths is not None else torch.ones(B, T, dtype=torch.bool, device=out.device))
    real = real.unsqueeze(2)  # (B, T, 1)
    if pool == "max":
        return out.masked_fill(~real, float("-inf")).amax(dim=1)
    return (out * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)


def window_layer(n_in: int, channels: int, kernel: int, owner: str) -> nn.Conv1d | None:
    """The optional window layer before a recurrence: ``channels`` filters ``kernel`` steps wide, centred
    (``None`` when ``channels`` is 0); ``ValueError`` naming ``owner`` on a bad size."""
    if channels < 0 or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"{owner}: conv_channels must be >= 0 and conv_kernel odd and >= 1; got {channels}, {kernel}")
    return nn.Conv1d(n_in, channels, kernel, padding=kernel // 2) if channels else None


def window_features(conv: nn.Conv1d | None, x: Tensor, lengths: Tensor | None) -> Tensor:
    """What a recurrence with a window layer reads: ``x`` (B, T, F) itself without one, else
    ``[x, relu(conv1d(x))]`` (B, T, F + C), the padding zeroed first so that a short sequence's
    window sees zeros past its end, as the sequence alone would."""
    if conv is None:
        return x
    if lengths is not None:
        real = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T)
        x = x * real.unsqueeze(2).to(x.dtype)
    c = torch.relu(conv(x.transpose(1, 2))).transpose(1, 2)  # (B, T, C)
    return torch.cat([x, c], dim=2)


def build_recurrent(
    cell: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, dropout: float,
    init: str | None, forget_bias: float | None, truncate: int | None = None, **cell_options: Any,
) -> Recurrent:
    """The recurrent body every model here shares.

    Dropout between layers only (a single layer has none inside the
    recurrence); ``init="default"`` leaves each cell's own default (irnn keeps
    its identity init); ``forget_bias`` sets the LSTM forget-gate bias after
    initialisation.
    """
    rnn = Recurrent(
        cell, input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
        dropout=dropout if num_layers > 1 else 0.0, truncate=truncate,
        init=None if init == "default" else init, **cell_options,
    )
    if forget_bias is not None:
        from ..init import forget_bias_

        for row in rnn.cells:
            for c in row:
                forget_bias_(c, forget_bias)
    return rnn


def check_symbols(x: Any, vocab_size: int) -> None:
    """Refuse symbols a model over ``vocab_size`` symbols cannot read, naming the problem
    (``ValueError``): not a 2-D (B, T) integer tensor, or a symbol outside 0 .. vocab_size - 1
    (0 is the padding)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"symbols must be a tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"symbols must be 2-D (B, T), got shape {tuple(x.shape)}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"symbols must be integers (indices into the vocabulary), got dtype {x.dtype}")
    if x.numel() and x.device.type != "meta":
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"symbols must lie in 0..{vocab_size - 1} (the vocabulary; 0 pads), got {lo}..{hi}")


class Ensemble(nn.Module):
    """Members trained side by side on the same batches; predicts the mean of their
    class probabilities, optionally blended with a fixed n-gram scorer.

    ``forward`` returns log mean probabilities (B, K), which serve as logits:
    ``softmax`` of them gives the ensemble's probabilities back.  With an
    ``ngram`` part (:class:`biornn.models.ngram.NgramScorer`, fitted before the
    members train, not trained with them) and its weight ``ngram_weight`` = a
    in [0, 1), the logits are

        (1 - a) * log mean_m p_m(k | x) + a * log q(k | x),

    a weighted geometric mean of the members' mean probability p and the
    n-gram model's q (a product of experts, Hinton 2002); ``softmax`` of them
    is that blend normalised.  :meth:`member_logits`, what training reads, is
    the members' alone.

    Parameters
    ----------
    members : list of nn.Module
        Each maps the input to logits (B, K).
    ngram : nn.Module, optional
        Maps the same input to logits (B, K).
    ngram_weight : float
        a; 0 without ``ngram``.
    """

    def __init__(self, members: list[nn.Module], ngram: nn.Module | None = None, ngram_weight: float = 0.0) -> None:
        super().__init__()
        if not members:
            raise ValueError("ensemble: needs at least one member")
        if not 0.0 <= ngram_weight < 1.0:
            raise ValueError(f"ensemble: ngram_weight must be in [0, 1), got {ngram_weight}")
        if (ngram is None) != (ngram_weight == 0.0):
            raise ValueError("ensemble: an n-gram part needs a weight in (0, 1), and a weight needs the part")
        self.members = nn.ModuleList(members)
        self.ngram = ngram
        self.ngram_weight = float(ngram_weight)

    def member_logits(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Every member's logits, (M, B, K)."""
        return torch.stack([m(x, lengths) for m in self.members])

    def recurrent_logits(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The members' log mean probabilities (B, K), without the n-gram part."""
        log_probs = torch.log_softmax(self.member_logits(x, lengths), dim=-1)  # (M, B, K)
        return torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(self.members))))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        out = self.recurrent_logits(x, lengths)
        if self.ngram is not None:
            w = self.ngram_weight
            out = (1.0 - w) * out + w * torch.log_softmax(self.ngram(x, lengths), dim=-1)
        return out

    def extra_repr(self) -> str:
        return f"ngram_weight={self.ngram_weight:g}" if self.ngram is not None else ""


class SequenceClassifier(nn.Module):
    """Many-to-one: symbols (B, T) -> class logits (B, K).

    Parameters
    ----------
    vocab_size : int
        Number of input symbols, index 0 being padding.
    n_classes : int
        K.
    cell, hidden_size, num_layers, bidirectional : as :class:`Recurrent`
    dropout : float
        Between recurrent layers and before the read-out.
    embedding_dim : int
        Size of a learned embedding of the symbols; 0 feeds one-hot vectors
        (the textbook input).
    init : str, optional
        A :mod:`biornn.init` scheme for the recurrent layers.
    forget_bias : float, optional
        Forget-gate bias (forget-gate LSTMs).
    truncate : int, optional
        Truncated BPTT length.
    pool : {"last", "max", "mean"}
        How the outputs (B, T, D * H) become one summary (:func:`pool_outputs`): ``last``, the
        textbook many-to-one read-out (the forward direction after the last character, the
        backward direction after the first); ``max`` or ``mean`` over every character's output.
    conv_channels, conv_kernel : int
        A window layer over the embedded (or one-hot) symbols before the recurrence, as in
        :class:`SequenceTagger` (learned character n-grams, read beside each character); 0: none.
    """

    POOLS = ("last", "max", "mean")

    def __init__(
        self,
        vocab_size: int,
        n_classes: int,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        embedding_dim: int = 0,
        init: str | None = None,
        forget_bias: float | None = None,
        truncate: int | None = None,
        pool: str = "last",
        conv_channels: int = 0,
        conv_kernel: int = 7,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if pool not in self.POOLS:
            raise ValueError(f"pool must be one of {', '.join(self.POOLS)}, got {pool!r}")
        self.vocab_size, self.n_classes, self.pool = vocab_size, n_classes, pool
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0) if embedding_dim else None
        input_size = embedding_dim or vocab_size
        self.conv = window_layer(input_size, conv_channels, conv_kernel, "SequenceClassifier")
        self.rnn = build_recurrent(cell, input_size + conv_channels, hidden_size, num_layers, bidirectional,
                                   dropout, init, forget_bias, truncate=truncate, **cell_options)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(self.rnn.output_size, n_classes)  # y = W_hy h + b_y

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` (B, T) int64 symbols, ``lengths`` (B,) -> logits (B, K)."""
        check_symbols(x, self.vocab_size)
        if self.embedding is not None:
            inputs = self.embedding(x)  # (B, T, E)
        else:
            inputs = F.one_hot(x, self.vocab_size).to(self.readout.weight.dtype)  # (B, T, V)
        out, _ = self.rnn(self.features(inputs, lengths), lengths=lengths)
        return self.readout(self.dropout(self.summary(out, lengths)))

    def features(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """What the recurrence reads from the embedded symbols (B, T, E): themselves, or with the
        window layer ``[inputs, relu(conv1d(inputs))]`` (B, T, E + C), :func:`window_features`."""
        return window_features(self.conv, inputs, lengths)

    def summary(self, out: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The recurrent outputs (B, T, D * H) as the read-out's input (B, D * H): :func:`pool_outputs`."""
        return pool_outputs(out, lengths, self.pool, 2 if self.rnn.bidirectional else 1)


class SequencePredictor(nn.Module):
    """Many-to-many: after every step, predict the next ``horizon`` samples of every feature.

    ``pred[:, t, j-1]`` predicts ``x[:, t + j]`` (j = 1..k) from ``x[:, :t+1]``:
    a causal (unidirectional) stack of recurrent layers and a linear read-out
    of the last layer's output, added to the current sample -- the read-out
    predicts the change from x_t, which for a smooth signal is small.

    Parameters
    ----------
    n_features : int
        L, features (leads) per step.
    horizon : int
        k, samples predicted after each step.
    cell, hidden_size, num_layers, dropout, init, forget_bias :
        As :class:`SequenceClassifier` (dropout acts between layers).
    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.0,
        init: str | None = None,
        forget_bias: float | None = None,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        self.n_features, self.horizon = n_features, horizon
        self.rnn = build_recurrent(cell, n_features, hidden_size, num_layers, False, dropout, init,
                                   forget_bias, **cell_options)
        self.readout = nn.Linear(self.rnn.output_size, horizon * n_features)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """``x`` (B, T, L), carried ``state`` (or None) -> predictions (B, T, k, L) and the final state."""
        out, final = self.rnn(x, state)  # (B, T, H)
        B, T, L = x.shape
        delta = self.readout(out).view(B, T, self.horizon, L)
        return x.unsqueeze(2) + delta, final


class VectorClassifier(nn.Module):
    """Many-to-one over vectors: residue weights or features (B, T, F) -> class logits (B, K).

    The input of a biological sequence is one weight vector per residue
    (:mod:`biornn.data.alphabets`: one-hot, or spread over the bases an IUPAC
    ambiguity code stands for), so there is no symbol index to embed; the
    recurrent layers read the vectors directly.  The summary is
    :func:`last_outputs`, as in :class:`SequenceClassifier`.

    Parameters
    ----------
    n_features : int
        F, the width of an input step (4 for DNA).
    n_classes : int
        K.
    cell, hidden_size, num_layers, bidirectional, dropout, init, forget_bias, truncate :
        As :class:`SequenceClassifier`.
    pool : str
        How the outputs (B, T, D * H) become one summary: ``"last"`` (:func:`last_outputs`),
        ``"max"`` or ``"mean"`` over the real steps, or ``"split"``: a bidirectional model's
        forward output at step ``split_at - 1`` and backward output at step ``split_at``
        (each direction has then read its half of the sequence and ends at the split; the
        split defaults to the middle, T // 2).  Where the evidence sits at a known place (a
        candidate splice junction between bases 30 and 31 of 60), ``"split"`` reads the
        network's state right there: the bases nearest the junction are the most recent
        ones for both directions.
    split_at : int, optional
        The step of ``pool="split"``; every sequence must be longer than it.
    """

    POOLS = ("last", "max", "mean", "split")

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        init: str | None = None,
        forget_bias: float | None = None,
        truncate: int | None = None,
        pool: str = "last",
        split_at: int | None = None,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if pool not in self.POOLS:
            raise ValueError(f"pool must be one of {', '.join(self.POOLS)}, got {pool!r}")
        if pool == "split" and not bidirectional:
            raise ValueError("pool='split' reads both directions; it needs bidirectional=True")
        self.n_features, self.n_classes, self.pool, self.split_at = n_features, n_classes, pool, split_at
        self.rnn = build_recurrent(cell, n_features, hidden_size, num_layers, bidirectional, dropout, init,
                                   forget_bias, truncate=truncate, **cell_options)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(self.rnn.output_size, n_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` (B, T, F) float, ``lengths`` (B,) -> logits (B, K)."""
        out, _ = self.rnn(x, lengths=lengths)  # (B, T, D * H)
        return self.readout(self.dropout(self.summary(out, lengths)))

    def summary(self, out: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The recurrent outputs (B, T, D * H) as the read-out's input (B, D * H): :func:`pool_outputs`."""
        return pool_outputs(out, lengths, self.pool, 2 if self.rnn.bidirectional else 1, self.split_at)


class SequenceTagger(nn.Module):
    """Many-to-many, one label per step (synced): vectors (B, T, F) -> per-step logits (B, T, K).

    A bidirectional model labels step t from the whole sequence: the forward
    direction has read steps 0..t, the backward direction steps t..T-1.

    Parameters
    ----------
    n_features : int
        F, the width of an input step (20 for protein residues).
    n_classes : int
        K, labels per step.
    cell, hidden_size, num_layers, bidirectional, dropout, init, forget_bias :
        As :class:`SequenceClassifier`; ``dropout`` also acts before the read-out.
    conv_channels : int
        C; 0 (the default): the recurrence reads the steps as they are.  Above 0, a
        window layer first: ``relu(conv1d(x))`` with C filters of ``conv_kernel`` steps,
        centred, over the sequence with zeros beyond its ends (a window network's hidden
        layer, as in Qian & Sejnowski's), and the recurrence reads ``[x_t, c_t]``, F + C wide.
    conv_kernel : int
        The window's width in steps, odd.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        init: str | None = None,
        forget_bias: float | None = None,
        conv_channels: int = 0,
        conv_kernel: int = 7,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        self.n_features, self.n_classes = n_features, n_classes
        self.conv = window_layer(n_features, conv_channels, conv_kernel, "SequenceTagger")
        self.rnn = build_recurrent(cell, n_features + conv_channels, hidden_size, num_layers, bidirectional,
                                   dropout, init, forget_bias, **cell_options)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(self.rnn.output_size, n_classes)

    def features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """What the recurrence reads: ``x`` (B, T, F) itself, or with the window layer,
        ``[x, relu(conv1d(x))]`` (B, T, F + C): :func:`window_features`."""
        return window_features(self.conv, x, lengths)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` (B, T, F) float, ``lengths`` (B,) -> logits (B, T, K); steps past a length are padding."""
        out, _ = self.rnn(self.features(x, lengths), lengths=lengths)  # (B, T, D * H)
        return self.readout(self.dropout(out))
