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

from .recurrent import Recurrent


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


class Ensemble(nn.Module):
    """Members trained side by side on the same batches; predicts the mean of their
    class probabilities.

    ``forward`` returns log mean probabilities (B, K), which serve as logits:
    ``softmax`` of them gives the ensemble's probabilities back.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("ensemble: needs at least one member")
        self.members = nn.ModuleList(members)

    def member_logits(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Every member's logits, (M, B, K)."""
        return torch.stack([m(x, lengths) for m in self.members])

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        log_probs = torch.log_softmax(self.member_logits(x, lengths), dim=-1)  # (M, B, K)
        return torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(self.members))))


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
    """

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
        **cell_options: Any,
    ) -> None:
        super().__init__()
        self.vocab_size, self.n_classes = vocab_size, n_classes
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0) if embedding_dim else None
        input_size = embedding_dim or vocab_size
        self.rnn = Recurrent(
            cell, input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0, truncate=truncate,
            # "default" leaves each cell's own default (irnn keeps its identity init)
            init=None if init == "default" else init, **cell_options,
        )
        if forget_bias is not None:
            from .init import forget_bias_

            for row in self.rnn.cells:
                for c in row:
                    forget_bias_(c, forget_bias)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(self.rnn.output_size, n_classes)  # y = W_hy h + b_y

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` (B, T) int64 symbols, ``lengths`` (B,) -> logits (B, K)."""
        if self.embedding is not None:
            inputs = self.embedding(x)  # (B, T, E)
        else:
            inputs = F.one_hot(x, self.vocab_size).to(self.readout.weight.dtype)  # (B, T, V)
        out, _ = self.rnn(inputs, lengths=lengths)
        summary = last_outputs(out, lengths, 2 if self.rnn.bidirectional else 1)
        return self.readout(self.dropout(summary))


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
        self.rnn = Recurrent(
            cell, n_features, hidden_size, num_layers=num_layers, bidirectional=False,
            dropout=dropout if num_layers > 1 else 0.0,
            init=None if init == "default" else init, **cell_options,
        )
        if forget_bias is not None:
            from .init import forget_bias_

            for row in self.rnn.cells:
                for c in row:
                    forget_bias_(c, forget_bias)
        self.readout = nn.Linear(self.rnn.output_size, horizon * n_features)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """``x`` (B, T, L), carried ``state`` (or None) -> predictions (B, T, k, L) and the final state."""
        out, final = self.rnn(x, state)  # (B, T, H)
        B, T, L = x.shape
        delta = self.readout(out).view(B, T, self.horizon, L)
        return x.unsqueeze(2) + delta, final
