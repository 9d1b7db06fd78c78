"""One-to-many: a class (a language) conditions a character sequence (a surname).

:class:`ConditionalGenerator` is a character-level language model
p(c_1 .. c_L, END | k) = prod_t p(c_t | c_<t, k), one recurrent step per
character, whose every step also reads an embedding of the condition k.

Symbols
    A :class:`biornn.data.batching.Vocabulary` of V = ``len(vocab)`` indices
    (0 padding, 1 unknown, 2.. characters).  Inputs add one index, V, the
    START symbol read before the first character.  Outputs are V classes
    where class 0 -- never a character, since 0 is padding -- is END:
    ``targets = [c_1, ..., c_L, 0]`` for ``inputs = [V, c_1, ..., c_L]``, so
    a name of L characters is L + 1 predictions.

>>> import torch
>>> g = ConditionalGenerator(vocab_size=6, n_conditions=3, hidden_size=8, embedding_dim=4)
>>> x, lengths = torch.tensor([[2, 3, 4], [5, 0, 0]]), torch.tensor([3, 1])
>>> inputs, targets, steps = teacher_forcing(x, lengths, start=6)
>>> inputs.tolist(), targets.tolist(), steps.tolist()
([[6, 2, 3, 4], [6, 5, 0, 0]], [[2, 3, 4, 0], [5, 0, -100, -100]], [4, 2])
>>> g(inputs, torch.tensor([0, 2]), steps).shape                    # (B, T + 1, V)
torch.Size([2, 4, 6])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import build_recurrent

#: output class 0 is the end of the name (index 0 is padding on the input side, never a target)
END = 0
#: a padded target: ignored by the loss (torch's cross-entropy convention)
IGNORE = -100


def teacher_forcing(x: Tensor, lengths: Tensor, start: int) -> tuple[Tensor, Tensor, Tensor]:
    """Inputs and targets of teacher forcing from padded names.

    Parameters
    ----------
    x : LongTensor, shape (B, T)
        Character indices, padded with 0 after each name's ``lengths[i]`` characters.
    lengths : LongTensor, shape (B,)
    start : int
        The START index (the vocabulary's size V).

    Returns
    -------
    inputs : LongTensor, shape (B, T + 1)
        START, then the characters; padding 0.
    targets : LongTensor, shape (B, T + 1)
        The characters, then END (0); :data:`IGNORE` past the end.
    steps : LongTensor, shape (B,)
        ``lengths + 1``: the predictions of each name (its characters and END).
    """
    B, T = x.shape
    steps = lengths + 1
    inputs = torch.cat([torch.full((B, 1), start, dtype=x.dtype, device=x.device), x], dim=1)  # (B, T + 1)
    targets = torch.cat([x, torch.zeros(B, 1, dtype=x.dtype, device=x.device)], dim=1)  # END where x was padding
    valid = torch.arange(T + 1, device=x.device)[None, :] < steps.to(x.device)[:, None]  # (B, T + 1)
    return inputs, torch.where(valid, targets, torch.full_like(targets, IGNORE)), steps


class ConditionalGenerator(nn.Module):
    r"""A class-conditioned character-level recurrent generator (one-to-many).

    At every step t the recurrence reads the previous character's embedding
    concatenated with the condition's embedding,

    .. math::  u_t = [E c_{t-1};\ C k], \qquad h_t = \mathrm{cell}(u_t, h_{t-1}), \qquad
               p(c_t \mid c_{<t}, k) = \mathrm{softmax}(W_{hy} h_t + b_y),

    with ``c_0`` = START and h_0 = 0.

    Why the condition is concatenated to every input rather than used as the
    initial state: it works the same for every cell (an LSTM's state is (h, c),
    the fully recurrent cell's has its own output units; a concatenated input
    needs no mapping onto any of them), and the condition does not have to be
    carried through the recurrence -- an Elman net forgets its initial state in
    a few steps (the vanishing gradient), while an input present at every step
    stays available to the last character.  This is the conditioning of the
    PyTorch "generating names with a character-level RNN" tutorial (its
    category one-hot is part of every step's input).

    Parameters
    ----------
    vocab_size : int
        V, the vocabulary's indices (0 padding, 1 unknown, 2.. characters);
        the input side adds START = V, the output side has V classes (0 = END).
    n_conditions : int
        K, the classes that condition a sequence (languages).
    cell, hidden_size, num_layers : as :class:`biornn.Recurrent` (always unidirectional: a generator is causal)
    dropout : float
        Between recurrent layers and on the last layer's output before the read-out.
    embedding_dim : int
        Size of the learned character and condition embeddings; 0 feeds one-hot
        vectors of both (V + 1 and K wide, the textbook input).
    init, forget_bias, truncate : as :func:`biornn.models.build_recurrent`
    """

    def __init__(
        self,
        vocab_size: int,
        n_conditions: int,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        embedding_dim: int = 32,
        init: str | None = None,
        forget_bias: float | None = None,
        truncate: int | None = None,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if vocab_size < 3:
            raise ValueError(f"vocab_size must be at least 3 (padding, unknown, one character), got {vocab_size}")
        if n_conditions < 1:
            raise ValueError(f"n_conditions must be at least 1, got {n_conditions}")
        self.vocab_size, self.n_conditions, self.embedding_dim = vocab_size, n_conditions, embedding_dim
        self.start = vocab_size  # the START input index
        if embedding_dim:
            self.char_embedding: nn.Embedding | None = nn.Embedding(vocab_size + 1, embedding_dim, padding_idx=0)
            self.condition_embedding: nn.Embedding | None = nn.Embedding(n_conditions, embedding_dim)
            input_size = 2 * embedding_dim
        else:
            self.char_embedding = self.condition_embedding = None
            input_size = vocab_size + 1 + n_conditions
        self.rnn = build_recurrent(cell, input_size, hidden_size, num_layers, False, dropout, init, forget_bias,
                                   truncate=truncate, **cell_options)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(self.rnn.output_size, vocab_size)  # y_t = W_hy h_t + b_y

    def _inputs(self, inputs: Tensor, condition: Tensor) -> Tensor:
        """u_t = [E c_{t-1}; C k] for every step: (B, T) symbols, (B,) conditions -> (B, T, I)."""
        B, T = inputs.shape
        dtype = self.readout.weight.dtype
        if self.char_embedding is not None:
            chars = self.char_embedding(inputs)  # (B, T, E)
            cond = self.condition_embedding(condition)  # (B, E)
        else:
            chars = F.one_hot(inputs, self.vocab_size + 1).to(dtype)  # (B, T, V + 1)
            cond = F.one_hot(condition, self.n_conditions).to(dtype)  # (B, K)
        return torch.cat([chars, cond[:, None, :].expand(B, T, cond.shape[1])], dim=2)

    def _check(self, inputs: Tensor, condition: Tensor) -> None:
        if inputs.dim() != 2 or inputs.dtype != torch.long:
            raise ValueError(f"inputs must be a (B, T) LongTensor, got {tuple(inputs.shape)} {inputs.dtype}")
        if condition.shape != (inputs.shape[0],) or condition.dtype != torch.long:
            raise ValueError(f"condition must be a ({inputs.shape[0]},) LongTensor, got {tuple(condition.shape)}")
        if len(condition) and (int(condition.min()) < 0 or int(condition.max()) >= self.n_conditions):
            raise ValueError(f"condition out of range 0..{self.n_conditions - 1}")
        if inputs.numel() and (int(inputs.min()) < 0 or int(inputs.max()) > self.start):
            raise ValueError(f"input symbols out of range 0..{self.start}")

    def forward(self, inputs: Tensor, condition: Tensor, lengths: Tensor | None = None,
                state: Any = None) -> Tensor:
        """Next-character logits under teacher forcing.

        Parameters
        ----------
        inputs : LongTensor, shape (B, T)
            START then characters (:func:`teacher_forcing`), padded with 0.
        condition : LongTensor, shape (B,)
            Each sequence's class.
        lengths : LongTensor, shape (B,), optional
            Real steps of each sequence; outputs past them are not meaningful.
        state : optional
            The recurrence's initial state (default zeros), as :class:`biornn.Recurrent`.

        Returns
        -------
        Tensor, shape (B, T, V)
            ``logits[:, t]`` scores the symbol after ``inputs[:, t]`` (class 0 = END).
        """
        self._check(inputs, condition)
        out, _ = self.rnn(self._inputs(inputs, condition), state, lengths=lengths)  # (B, T, H)
        return self.readout(self.dropout(out))

    def nll(self, x: Tensor, condition: Tensor, lengths: Tensor) -> Tensor:
        r"""Negative log-likelihood of whole names, in nats.

        Parameters
        ----------
        x : LongTensor, shape (B, T)
            Characters (no START, no END), padded with 0.
        condition : LongTensor, shape (B,)
        lengths : LongTensor, shape (B,)

        Returns
        -------
        Tensor, shape (B,)
            :math:`-\sum_{t=1}^{L+1} \log p(c_t \mid c_{<t}, k)` of each name, its END
            included: divide by ``lengths + 1`` for the NLL per character.
        """
        inputs, targets, steps = teacher_forcing(x, lengths, self.start)
        logits = self(inputs, condition, steps)  # (B, T + 1, V)
        per_step = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        return per_step.sum(dim=1)  # ignored steps count 0

    @torch.no_grad()
    def sample(self, condition: int | Tensor, n: int = 1, temperature: float = 1.0,
               generator: torch.Generator | None = None, max_length: int = 30) -> tuple[Tensor, Tensor]:
        r"""Draw sequences one character at a time, each fed back as the next input.

        :math:`c_t \sim \mathrm{softmax}(z_t / \tau)`: ``temperature`` :math:`\tau` < 1
        sharpens the distribution, > 1 flattens it, and 0 takes the most likely
        character every step (greedy: every sample is the same).  The unknown
        symbol (index 1) is never drawn, padding never exists as an output.

        Parameters
        ----------
        condition : int or LongTensor of shape (n,)
            The class of every sample, or one per sample.
        n : int
            Samples (when ``condition`` is an int).
        temperature : float
            >= 0.
        generator : torch.Generator, optional
            Seeds the draws: the same seed gives the same samples.
        max_length : int
            A sample that has not drawn END after this many characters is cut there.

        Returns
        -------
        x : LongTensor, shape (n, T)
            Characters drawn, padded with 0 (END is not included).
        lengths : LongTensor, shape (n,)
            Characters of each sample, 0..max_length.
        """
        if not temperature >= 0.0 or temperature == float("inf"):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        device = self.readout.weight.device  # ``generator`` must live there too
        if isinstance(condition, Tensor):
            cond = condition.to(device=device, dtype=torch.long).reshape(-1)
        else:
            cond = torch.full((n,), int(condition), dtype=torch.long, device=device)
        B = len(cond)
        was_training = self.training
        self.eval()  # no dropout while sampling
        try:
            symbol = torch.full((B, 1), self.start, dtype=torch.long, device=device)
            state = None
            drawn = torch.zeros(B, max_length, dtype=torch.long, device=device)
            lengths = torch.full((B,), max_length, dtype=torch.long, device=device)
            done = torch.zeros(B, dtype=torch.bool, device=device)
            for t in range(max_length):
                self._check(symbol, cond)
                out, state = self.rnn(self._inputs(symbol, cond), state)  # (B, 1, H)
                logits = self.readout(out[:, 0]).clone()  # (B, V)
                logits[:, 1] = -torch.inf  # the unknown symbol is not a character to write
                if temperature == 0.0:
                    nxt = logits.argmax(dim=1)
                else:
                    probs = torch.softmax(logits / temperature, dim=1)
                    nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
                ended = (nxt == END) & ~done
                lengths[ended] = t
                done |= ended
                drawn[:, t] = torch.where(done, 0, nxt)
                if bool(done.all()):
                    break
                symbol = nxt[:, None]
        finally:
            self.train(was_training)
        T = int(lengths.max()) if B else 0
        return drawn[:, :T], lengths
