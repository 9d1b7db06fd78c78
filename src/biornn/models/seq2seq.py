r"""Many-to-many, encoder-decoder: a source sequence in, a target sequence of another length out.

The encoder (a :class:`biornn.Recurrent`, bidirectional by default) reads the
source vectors; the decoder (a unidirectional :class:`biornn.Recurrent` of the
same cell) reads the target tokens, starting from the encoder's final state --
the "thought vector" of Sutskever, Vinyals & Le (2014) and Cho et al. (2014):

.. math::

    s_0 = h^{enc}_{S} \quad(\text{forward direction, every layer}), \qquad
    s_i = \text{cell}\big(E\,y_{i-1},\ s_{i-1}\big), \qquad y_{-1} = \langle\text{bos}\rangle

Training feeds the true previous token (teacher forcing, Williams & Zipser
1989), so the whole target sequence goes through the decoder in one call;
prediction feeds back the model's own choice (:meth:`EncoderDecoder.greedy`,
:meth:`EncoderDecoder.beam_search`).

A fixed-size final state has to hold the whole source, and its errors grow
with the length (Cho et al. 2014, "On the properties of neural machine
translation"); so by default the decoder also *attends* to the encoder
outputs with the location-aware attention of Chorowski et al. (2015,
"Attention-based models for speech recognition", eqs. 8-9).  The alignment
of step i is computed from the previous alignment, convolved, as well as
from the decoder state and the encoder outputs:

.. math::

    f_i = F * \alpha_{i-1}, \qquad
    e_{i,j} = w^\top \tanh\big(W s_i + V h_j + U f_{i,j} + b\big), \qquad
    \alpha_{i} = \operatorname{softmax}_j(e_{i,\cdot}), \qquad
    c_i = \textstyle\sum_j \alpha_{i,j} h_j

and the read-out is Luong et al.'s (2015) attentional state
:math:`\tilde h_i = \tanh(W_c [s_i; c_i])`, :math:`p(y_i) = \operatorname{softmax}(W_s \tilde h_i)`.
Why location-aware: an alignment that moves relative to where it was ("three
bases on") does not depend on the absolute position, so it carries over to
sequences longer than any in training, where a purely content-based score
(Bahdanau et al. 2015) has to tell position 150 from position 153 by content
alone.  The memory has one extra slot before the first source step (a learned
vector, where :math:`\alpha_{-1}` starts), so that every decoder step, the
first included, moves the alignment by the same amount.  ``location_shift``
starts the location filter as a fixed move per token (a prior: 3 bases per
residue for translation); from a random start the alignment may not be found
at all in a short training run (measured in ``docs/tasks.md``, ``translate``).
``attention="none"`` gives the plain encoder-decoder of Sutskever et al.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import build_recurrent

#: the decoding state :func:`beam_decode` carries: any object, reordered by the caller's function
State = Any


def _length_mask(lengths: Tensor, T: int) -> Tensor:
    """(B, T) bool, True at real steps."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


class EncoderDecoder(nn.Module):
    """Source vectors (B, S, F) -> logits over target tokens (B, T, V).

    Parameters
    ----------
    n_features : int
        F, the width of a source step (4 for DNA base weights).
    vocab_size : int
        V, target tokens, including ``bos`` and ``eos``.
    bos, eos : int
        The start token (fed before the first target token, never predicted
        in training) and the end token (ends a decoded sequence).
    cell : str
        Any cell name of :class:`biornn.Recurrent`; encoder and decoder use the
        same cell, so the encoder's final state fits the decoder.
    hidden_size, num_layers : int
        Of both the encoder (per direction) and the decoder.
    bidirectional : bool
        A bidirectional encoder (its outputs are 2H wide); the decoder starts
        from the forward direction's final state.
    dropout : float
        Between recurrent layers.
    embedding_dim : int
        E, the width of a target token's learned embedding.
    attention : str
        ``"location"`` (the default; see the module's docstring) or ``"none"``.
    attention_size : int
        A, the width of the attention's hidden layer.
    location_filters, location_width : int
        K filters of width r (odd) of the convolution F over the previous alignment;
        r must exceed twice the largest move per step (3 source steps per token here).
    location_shift : int, optional
        Initialise the attention to move this many source steps per target token
        (a prior on the step, e.g. 3 bases per codon; every weight still learns).
        None: a random initialisation.
    init, forget_bias : as :func:`biornn.models.build_recurrent`
    """

    ATTENTIONS = ("location", "none")

    def __init__(
        self,
        n_features: int,
        vocab_size: int,
        bos: int,
        eos: int,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        embedding_dim: int = 16,
        attention: str = "location",
        attention_size: int = 32,
        location_filters: int = 8,
        location_width: int = 11,
        location_shift: int | None = None,
        init: str | None = None,
        forget_bias: float | None = None,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if location_shift is not None and not 0 < location_shift <= location_width // 2:
            raise ValueError(f"location_shift must be in 1..{location_width // 2} (half the filter width)")
        if attention not in self.ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(self.ATTENTIONS)}, got {attention!r}")
        if not 0 <= bos < vocab_size or not 0 <= eos < vocab_size or bos == eos:
            raise ValueError(f"bos and eos must be two different tokens in 0..{vocab_size - 1}")
        if location_width % 2 != 1:
            raise ValueError(f"location_width must be odd, got {location_width}")
        self.n_features, self.vocab_size, self.bos, self.eos = n_features, vocab_size, bos, eos
        self.attention = attention
        self.encoder = build_recurrent(cell, n_features, hidden_size, num_layers, bidirectional, dropout, init,
                                       forget_bias, **cell_options)
        self.directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.decoder = build_recurrent(cell, embedding_dim, hidden_size, num_layers, False, dropout, init,
                                       forget_bias, **cell_options)
        H, C = self.decoder.output_size, self.encoder.output_size
        if attention == "location":
            self.start = nn.Parameter(torch.zeros(C))  # memory slot 0, before the first source step
            self.query = nn.Linear(H, attention_size, bias=False)  # W s_i
            self.key = nn.Linear(C, attention_size)  # V h_j + b
            self.location = nn.Conv1d(1, location_filters, location_width, padding=location_width // 2,
                                      bias=False)  # F * alpha_{i-1}
            self.location_proj = nn.Linear(location_filters, attention_size, bias=False)  # U f_{i,j}
            self.score = nn.Linear(attention_size, 1, bias=False)  # w^T tanh(...)
            self.combine = nn.Linear(H + C, H)  # h~_i = tanh(W_c [s_i; c_i])
            if location_shift is not None:
                self._init_shift(location_shift)
        self.readout = nn.Linear(H, vocab_size)  # W_s h~_i

    @torch.no_grad()
    def _init_shift(self, shift: int) -> None:
        """Start the alignment moving ``shift`` source steps per target token: filter 0 of F becomes a
        shift, f_{i,j,0} = alpha_{i-1, j - shift}, and U and w score it up.  Only the starting point: every
        weight still learns.  (The conv is a cross-correlation: out[j] = sum_k w[k] in[j + k - r // 2].)"""
        pad = self.location.padding[0]
        self.location.weight[0].zero_()
        self.location.weight[0, 0, pad - shift] = 1.0
        sign = torch.sign(self.score.weight[0])
        sign[sign == 0] = 1.0
        self.score.weight[0] = 0.25 * sign  # w
        self.location_proj.weight[:, 0] = 2.0 * sign  # U's column of that filter: w^T tanh(U f) grows with f

    # -- the parts ---------------------------------------------------------
    def encode(self, src: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None, Any]:
        """Read the source.

        Parameters
        ----------
        src : Tensor, shape (B, S, F)
        lengths : Tensor of int, shape (B,), optional

        Returns
        -------
        memory : Tensor, shape (B, S + 1, C)
            The encoder outputs after the learned start slot (C = D * H); empty (B, 0, C) without attention.
        mask : Tensor of bool, shape (B, S + 1), or None
            True at the start slot and the real source steps.
        state : the decoder's initial state, each field (num_layers, B, size)
        """
        B, S, _ = src.shape
        out, final = self.encoder(src, lengths=lengths)  # (B, S, C), fields (L * D, B, size)
        # the forward direction's final state of every layer (rows 0, D, 2D, ...)
        state = type(final)(*(f[:: self.directions] for f in final))
        if self.attention == "none":
            return out[:, :0], None, state
        memory = torch.cat([self.start.expand(B, 1, -1), out], dim=1)  # (B, S + 1, C)
        n = (lengths.to(src.device) if lengths is not None else torch.full((B,), S, device=src.device)) + 1
        return memory, _length_mask(n, S + 1), state

    def first_alignment(self, memory: Tensor) -> Tensor:
        """alpha_{-1}: all weight on the start slot, (B, S + 1)."""
        alpha = torch.zeros(memory.shape[:2], dtype=memory.dtype, device=memory.device)
        alpha[:, 0] = 1.0
        return alpha

    def attend(self, s: Tensor, alpha: Tensor, memory: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """One step of location-aware attention.

        Parameters
        ----------
        s : Tensor, shape (B, H)
            The decoder's output s_i.
        alpha : Tensor, shape (B, S + 1)
            The previous alignment alpha_{i-1}.
        memory : Tensor, shape (B, S + 1, C)
        keys : Tensor, shape (B, S + 1, A)
            ``V h_j + b``, computed once per source.
        mask : Tensor of bool, shape (B, S + 1)

        Returns
        -------
        context : Tensor, shape (B, C)
            c_i = sum_j alpha_ij h_j.
        alpha : Tensor, shape (B, S + 1)
            alpha_i.
        """
        f = self.location(alpha.unsqueeze(1)).transpose(1, 2)  # (B, S + 1, K)
        e = self.score(torch.tanh(self.query(s).unsqueeze(1) + keys + self.location_proj(f))).squeeze(2)
        alpha = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=1)  # (B, S + 1)
        return torch.bmm(alpha.unsqueeze(1), memory).squeeze(1), alpha

    def _logits(self, s: Tensor, context: Tensor | None) -> Tensor:
        """Logits (..., V) from the decoder output s_i (..., H) and the context c_i (..., C)."""
        if context is None:
            return self.readout(s)
        return self.readout(torch.tanh(self.combine(torch.cat([s, context], dim=-1))))

    # -- training: teacher forcing ------------------------------------------
    def forward(self, src: Tensor, lengths: Tensor | None, tgt_in: Tensor) -> Tensor:
        """Teacher forcing.

        Parameters
        ----------
        src : Tensor, shape (B, S, F)
        lengths : Tensor of int, shape (B,), or None
            Source lengths.
        tgt_in : Tensor of int64, shape (B, T)
            The decoder's inputs: ``bos`` then the target tokens but the last
            (steps past a target's end may hold anything; their logits are to be ignored).

        Returns
        -------
        Tensor, shape (B, T, V)
            Logits of target token i given the source and the true tokens before it.
        """
        memory, mask, state = self.encode(src, lengths)
        s, _ = self.decoder(self.embedding(tgt_in), state)  # (B, T, H): one call, the tokens are known
        if self.attention == "none":
            return self._logits(s, None)
        keys = self.key(memory)  # (B, S + 1, A)
        alpha = self.first_alignment(memory)
        contexts = []
        for s_i in s.unbind(1):  # the alignment is a recurrence of its own: alpha_i needs alpha_{i-1}
            c, alpha = self.attend(s_i, alpha, memory, keys, mask)
            contexts.append(c)
        return self._logits(s, torch.stack(contexts, dim=1))

    def sequence_log_prob(self, src: Tensor, lengths: Tensor | None, tokens: Tensor) -> Tensor:
        """log p(tokens | src) of whole target sequences, (B,), summed up to and including each first ``eos``
        (the score :meth:`greedy` and :meth:`beam_search` maximise)."""
        B = tokens.shape[0]
        tgt_in = torch.cat([torch.full((B, 1), self.bos, dtype=tokens.dtype, device=tokens.device),
                            tokens[:, :-1]], dim=1)
        logp = torch.log_softmax(self.forward(src, lengths, tgt_in), dim=-1)
        picked = logp.gather(2, tokens.unsqueeze(2)).squeeze(2)  # (B, T)
        return (picked * _until_eos(tokens, self.eos)).sum(dim=1)

    # -- prediction -----------------------------------------------------------
    def _start(self, src: Tensor, lengths: Tensor | None) -> dict[str, Any]:
        memory, mask, state = self.encode(src, lengths)
        d = {"state": state, "memory": memory, "mask": mask}
        if self.attention == "location":
            d["keys"] = self.key(memory)
            d["alpha"] = self.first_alignment(memory)
        return d

    def _step(self, tokens: Tensor, d: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """One decoder step for every row: previous tokens (N,) -> log-probabilities (N, V) and the new state."""
        s, state = self.decoder(self.embedding(tokens).unsqueeze(1), d["state"])  # (N, 1, H)
        s = s.squeeze(1)
        d = {**d, "state": state}
        context = None
        if self.attention == "location":
            context, d["alpha"] = self.attend(s, d["alpha"], d["memory"], d["keys"], d["mask"])
        return torch.log_softmax(self._logits(s, context), dim=-1), d

    @staticmethod
    def _reorder(d: dict[str, Any], index: Tensor) -> dict[str, Any]:
        """The decoding state of rows ``index`` (recurrent state fields are (L, N, size), the rest (N, ...))."""
        out = {k: (v.index_select(0, index) if isinstance(v, Tensor) else v) for k, v in d.items()}
        out["state"] = type(d["state"])(*(f.index_select(1, index) for f in d["state"]))
        return out

    @torch.no_grad()
    def greedy(self, src: Tensor, lengths: Tensor | None, max_len: int | Tensor) -> tuple[Tensor, Tensor]:
        """Greedy decoding: feed back the most probable token until ``eos`` or ``max_len`` tokens.

        Parameters
        ----------
        src : Tensor, shape (B, S, F)
        lengths : Tensor of int, shape (B,), or None
        max_len : int, or Tensor of int, shape (B,)
            At most this many tokens per sequence (``eos`` included); a tensor gives each
            sequence its own cap, so that a sequence decodes and scores as it would alone.

        Returns
        -------
        tokens : Tensor of int64, shape (B, T), T <= max_len
            Each sequence's tokens up to its first ``eos``, then ``eos`` as padding.
        scores : Tensor, shape (B,)
            log p(tokens | src), summed up to and including the first ``eos``.
        """
        B = src.shape[0]
        d = self._start(src, lengths)
        prev = torch.full((B,), self.bos, dtype=torch.int64, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        scores = torch.zeros(B, dtype=src.dtype, device=src.device)
        caps = _caps(max_len, B, src.device)
        out = []
        for t in range(int(caps.max()) if B else 0):
            logp, d = self._step(prev, d)
            done = done | (caps <= t)  # a sequence at its cap is cut there
            best, token = logp.max(dim=1)
            token = torch.where(done, self.eos, token)  # a finished sequence pads with eos at no cost
            scores = scores + torch.where(done, 0.0, best)
            out.append(token)
            done = done | (token == self.eos)
            prev = token
            if bool(done.all()):
                break
        return (torch.stack(out, dim=1) if out else torch.zeros(B, 0, dtype=torch.int64, device=src.device)), scores

    @torch.no_grad()
    def beam_search(self, src: Tensor, lengths: Tensor | None, max_len: int | Tensor,
                    beam: int = 4) -> tuple[Tensor, Tensor]:
        """Beam search (:func:`beam_decode`) for the most probable target sequence; ``beam=1`` is greedy.

        Same arguments and returns as :meth:`greedy`.
        """
        return beam_decode(self._step, self._reorder, self._start(src, lengths), src.shape[0], beam, max_len,
                           self.bos, self.eos, src.device)


def _caps(max_len: int | Tensor, B: int, device: torch.device | str) -> Tensor:
    """Each sequence's most tokens, (B,) int64: ``max_len`` for all, or one per sequence."""
    caps = torch.as_tensor(max_len, dtype=torch.int64, device=device)
    if caps.dim() == 0:
        return caps.expand(B)
    if caps.shape != (B,):
        raise ValueError(f"max_len: one cap per sequence ({B}), got shape {tuple(caps.shape)}")
    return caps


def _until_eos(tokens: Tensor, eos: int) -> Tensor:
    """(B, T) float, 1 at every token up to and including the first ``eos``, 0 after it."""
    is_eos = (tokens == eos).to(torch.int64)
    before = torch.cumsum(is_eos, dim=1) - is_eos  # eos tokens strictly before step t
    return (before == 0).to(torch.float32)


def beam_decode(
    step: Callable[[Tensor, State], tuple[Tensor, State]],
    reorder: Callable[[State, Tensor], State],
    state: State,
    batch_size: int,
    beam: int,
    max_len: int | Tensor,
    bos: int,
    eos: int,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Beam search over any left-to-right model, batched: each sequence keeps its ``beam`` best prefixes.

    At every step each kept prefix is extended by every token; of the beam x V
    candidates of a sequence the ``beam`` with the highest total log-probability
    stay.  A prefix that has emitted ``eos`` is finished: it stays a candidate
    with its score unchanged (extended by ``eos`` at no cost) and competes with
    the unfinished ones.  Scores are not length-normalised: the result is the
    most probable sequence the beam found.

    Parameters
    ----------
    step : callable
        ``step(tokens (N,), state) -> (log_probs (N, V), state)``, one step for N rows.
    reorder : callable
        ``reorder(state, index (N',)) -> state``: the state of rows ``index``.
    state : object
        The state of the ``batch_size`` sequences before the first step.
    batch_size, beam : int
        B and K.
    max_len : int, or Tensor of int, shape (B,)
        The most tokens per sequence (``eos`` included), or each sequence's own cap: a
        sequence at its cap is finished there, and decodes and scores as it would alone.
    bos, eos : int
    device : torch.device or str

    Returns
    -------
    tokens : Tensor of int64, shape (B, T), T <= max_len
        The best sequence of each input, ``eos``-padded after its first ``eos``.
    scores : Tensor, shape (B,)
        Their log-probabilities.
    """
    if beam < 1:
        raise ValueError(f"beam must be at least 1, got {beam}")
    B, K = batch_size, beam
    # every sequence starts as K copies; only copy 0 is live, so the first step's K best differ
    state = reorder(state, torch.arange(B, device=device).repeat_interleave(K))
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    prev = torch.full((B * K,), bos, dtype=torch.int64, device=device)
    done = torch.zeros(B * K, dtype=torch.bool, device=device)
    history = torch.zeros(B * K, 0, dtype=torch.int64, device=device)
    caps = _caps(max_len, B, device).repeat_interleave(K)
    for t in range(int(caps.max()) if B else 0):
        logp, state = step(prev, state)  # (B * K, V)
        done = done | (caps <= t)  # a sequence at its cap is cut there: its prefixes are finished
        V = logp.shape[1]
        logp = logp.to(scores.dtype)
        # a finished prefix can only be followed by eos, at no cost
        finished_row = torch.full((V,), float("-inf"), device=device)
        finished_row[eos] = 0.0
        logp = torch.where(done.unsqueeze(1), finished_row, logp)
        candidates = (scores.view(B, K, 1) + logp.view(B, K, V)).view(B, K * V)
        scores, flat = candidates.topk(K, dim=1)  # (B, K), best first
        origin = (flat // V + torch.arange(B, device=device).unsqueeze(1) * K).view(-1)  # rows of B * K
        token = (flat % V).view(-1)
        state = reorder(state, origin)
        history = torch.cat([history.index_select(0, origin), token.unsqueeze(1)], dim=1)
        done = done.index_select(0, origin) | (token == eos)
        prev = token
        if bool((done | torch.isinf(scores.view(-1))).all()):
            break  # every kept prefix has ended (or is a dead copy): no score can still change
    best = history.view(B, K, -1)[:, 0]  # topk sorts: column 0 is the best
    return best, scores[:, 0]
