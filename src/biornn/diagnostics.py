r"""Measure what the lectures claim: gradient flow over time, trajectories, saliency.

Everything here reads what the one loop (:class:`biornn.Recurrent`) records;
nothing re-implements a recurrence (DESIGN principle 3).

**Gradient flow over time.**  Backpropagation through time multiplies the
error by one Jacobian per step (Hochreiter 1991; Bengio, Simard & Frasconi
1994; Pascanu, Mikolov & Bengio 2013):

.. math::

    \frac{\partial L}{\partial h_t}
      = \frac{\partial L_t}{\partial h_t}
      + \frac{\partial L}{\partial h_{t+1}} \frac{\partial h_{t+1}}{\partial h_t},
    \qquad
    \frac{\partial h_T}{\partial h_t} = \prod_{k=t+1}^{T} \frac{\partial h_k}{\partial h_{k-1}} .

For an Elman net :math:`\partial h_k / \partial h_{k-1} = \mathrm{diag}(f'(a_k)) W_{hh}`,
so the product shrinks (or grows) geometrically with :math:`T - t`; the
LSTM's constant error carousel has :math:`\partial c_k / \partial c_{k-1} = 1`
(1997) or :math:`f_k` (forget gate).  The quantity to watch is
:math:`\|\partial L / \partial h_t\|` per step, not :math:`\|\partial L / \partial W\|`.
It is read through zero *probes* that :meth:`Recurrent.forward` adds to every
step's hidden state: :math:`\partial L / \partial p_t = \partial L / \partial h_t`.

**Saliency** (Simonyan et al. 2014; Sundararajan, Taly & Yan 2017).  For a
score :math:`F` (the logit of a class) and an input :math:`x`, gradient x
input is :math:`x \odot \nabla F(x)`; integrated gradients from a baseline
:math:`x'` are

.. math::

    \mathrm{IG}(x) = (x - x') \odot \int_0^1 \nabla F\big(x' + \alpha (x - x')\big)\, d\alpha ,
    \qquad \sum \mathrm{IG}(x) = F(x) - F(x') \quad\text{(completeness)},

the integral taken by the trapezoid rule.  Symbols enter as one-hot vectors
(an embedding is a linear map of them), so both are attributions per input
step; the baseline is the all-zero input.
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .cells import ElmanCell, FullyRecurrentCell, GRUCell, LSTM1997Cell, LSTMCell
from .checkpoint import atomic_path
from .models import Ensemble, SequenceClassifier
from .recurrent import Recurrent

#: a sigmoid unit below EPS or above 1 - EPS, a tanh unit beyond +-(1 - EPS), counts as saturated:
#: there the derivative is below ~0.05 (sigmoid) or ~0.1 (tanh), and error barely passes
SATURATION_EPS = 0.05
#: the default cells compared in the diagnostics and experiments
COMPARE_CELLS = ("elman", "irnn", "lstm1997", "lstm", "gru")


# -- helpers -----------------------------------------------------------------

def _real_mask(B: int, T: int, lengths: Tensor | None, device: torch.device) -> Tensor:
    """(B, T) bool, True at real steps."""
    if lengths is None:
        return torch.ones(B, T, dtype=torch.bool, device=device)
    return torch.arange(T, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


def _mean_over_real(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over the batch of (B, T) ``values`` at real steps -> (T,) (NaN where no sequence is real)."""
    m = mask.to(values.dtype)
    count = m.sum(0)
    return (values * m).sum(0) / count.where(count > 0, torch.nan)


def layer_labels(rnn: Recurrent) -> list[str]:
    """Names of the traces' entries, ``layer * D + direction``: ``layer 0``, ``layer 0 reverse``, ..."""
    D = 2 if rnn.bidirectional else 1
    return [f"layer {k // D}{' reverse' if k % D else ''}" for k in range(rnn.num_layers * D)]


def _squashing(cell: nn.Module) -> dict[str, tuple[str, float, str]]:
    """What saturates in a cell: trace name -> (kind, bound, source trace).

    ``kind`` is ``sigmoid`` (range (0, 1)), ``tanh`` (range (-bound, bound)) or
    ``relu`` (saturated = inactive, at zero).  ``cell_output`` is the LSTM's
    squashed cell state h(c_t), computed from the trace ``c``.
    """
    if isinstance(cell, (ElmanCell, FullyRecurrentCell)):
        out = {}
        kinds = {"tanh": ("tanh", 1.0), "sigmoid": ("sigmoid", 1.0), "relu": ("relu", 0.0)}
        if cell.nonlinearity in kinds:
            out["h"] = (*kinds[cell.nonlinearity], "h")
        if isinstance(cell, FullyRecurrentCell) and cell.output_nonlinearity in kinds:
            out["o"] = (*kinds[cell.output_nonlinearity], "o")
        return out
    if isinstance(cell, LSTM1997Cell):
        g_bound = 2.0 if cell.g_name == "scaled-sigmoid" else 1.0
        return {"input_gate": ("sigmoid", 1.0, "input_gate"), "output_gate": ("sigmoid", 1.0, "output_gate"),
                "cell_input": ("tanh", g_bound, "cell_input"),
                "cell_output": ("tanh" if cell.h_name == "tanh" else "scaled-h", 1.0, "c")}
    if isinstance(cell, LSTMCell):
        return {"input_gate": ("sigmoid", 1.0, "input_gate"), "forget_gate": ("sigmoid", 1.0, "forget_gate"),
                "output_gate": ("sigmoid", 1.0, "output_gate"), "cell_input": ("tanh", 1.0, "cell_input"),
                "cell_output": ("tanh", 1.0, "c")}
    if isinstance(cell, GRUCell):
        return {"reset_gate": ("sigmoid", 1.0, "reset_gate"), "update_gate": ("sigmoid", 1.0, "update_gate"),
                "candidate": ("tanh", 1.0, "candidate")}
    return {}


def saturation(cell: nn.Module, traces: dict[str, Tensor], mask: Tensor,
               eps: float = SATURATION_EPS) -> dict[str, float]:
    """Fraction of saturated units per gate / activation, over real steps.

    Parameters
    ----------
    cell : Cell
        The cell the traces came from (its activations decide the rule).
    traces : dict of name -> Tensor (B, T, size)
        One entry of :meth:`Recurrent.forward`'s traces.
    mask : Tensor of bool, shape (B, T)
    eps : float
        Sigmoid units outside (eps, 1 - eps), tanh units outside
        (-(1 - eps), 1 - eps) times their bound, count as saturated; ReLU
        units at zero count as inactive (their gradient is zero).

    Returns
    -------
    dict of name -> fraction in [0, 1]
    """
    out = {}
    m = mask.unsqueeze(2)  # (B, T, 1)
    for name, (kind, bound, source) in _squashing(cell).items():
        if source not in traces:
            continue
        a = traces[source].detach()
        if kind == "tanh" and name == "cell_output":
            a = torch.tanh(a)
        elif kind == "scaled-h":  # h(c) = 2 sigmoid(c) - 1
            a, kind = 2.0 * torch.sigmoid(a) - 1.0, "tanh"
        if kind == "sigmoid":
            sat = (a < eps) | (a > 1.0 - eps)
        elif kind == "tanh":
            sat = a.abs() > bound * (1.0 - eps)
        else:  # relu: inactive
            sat = a <= 0.0
        sat = sat & m
        n = int(m.sum()) * a.shape[2]
        out[name] = float(sat.sum()) / n if n else float("nan")
    return out


# -- gradient flow -------------------------------------------------------------

def gradient_flow(
    rnn: Recurrent,
    inputs: Tensor,
    loss_fn: Callable[[Tensor, tuple[Tensor, ...]], Tensor],
    lengths: Tensor | None = None,
    *,
    params: dict[str, Tensor] | None = None,
    jacobian_batch: int = 8,
) -> dict[str, Any]:
    r"""Norms of dL/dh_t and dh_T/dh_t for every step, layer and direction, averaged over a batch.

    Parameters
    ----------
    rnn : Recurrent
        batch_first.
    inputs : Tensor, shape (B, T, I)
    loss_fn : callable (out (B, T, D*O), final state) -> Tensor (B,)
        Each sequence's loss :math:`L_b`.  The per-step gradients are those of
        :math:`L_b` (sequences are independent); the weight gradients are those
        of the mean :math:`\frac{1}{B} \sum_b L_b`, as training sees them.
    lengths : Tensor of int, shape (B,), optional
    params : dict of name -> Parameter, optional
        Whose gradient norms to report (default ``rnn.named_parameters()``).
    jacobian_batch : int
        :math:`\|\partial h_T / \partial h_t\|_F` (Frobenius, with :math:`h_T`
        the layer's final state: after the last real step, or after step 0
        for a reverse direction) is computed exactly, one backward pass per
        hidden unit, on the first ``jacobian_batch`` sequences; 0 skips it.

    Returns
    -------
    dict
        ``loss`` (mean), ``steps`` T, ``layers`` (labels), ``dl_dh``: per
        layer a list of T floats, indexed by absolute time t for both
        directions (the mean, over the sequences real at t only, of
        :math:`\|\partial L_b / \partial h_{b,t}\|_2`: with variable lengths
        the late steps average fewer, longer sequences), ``dh_final_dh``:
        likewise (or ``None``), ``weight_grad_norms``: name -> Frobenius norm,
        ``saturation``: per layer, name -> fraction (:func:`saturation`),
        ``summary``: per layer, :func:`decay_summary` measured along the
        layer's own time direction with ``last`` and ``first`` taken at each
        sequence's own ends (so every sequence counts at both), plus
        ``dh_final_dh_first`` (:math:`\|\partial h_T / \partial h_t\|_F` at
        each sequence's own first step, mean; ``None`` without Jacobians).
    """
    if not rnn.batch_first:
        raise ValueError("gradient_flow needs a batch_first Recurrent")
    B, T = inputs.shape[:2]
    D = 2 if rnn.bidirectional else 1
    LD = rnn.num_layers * D
    lengths = None if lengths is None else torch.as_tensor(lengths)
    mask = _real_mask(B, T, lengths, inputs.device)
    probes = [torch.zeros(B, T, rnn.hidden_size, dtype=inputs.dtype, device=inputs.device, requires_grad=True)
              for _ in range(LD)]
    out, final, traces = rnn(inputs, lengths=lengths, return_traces=True, probes=probes)
    per_seq = loss_fn(out, final)
    if per_seq.shape != (B,):
        raise ValueError(f"loss_fn must return one loss per sequence, shape ({B},); got {tuple(per_seq.shape)}")
    named = dict(rnn.named_parameters()) if params is None else dict(params)
    named = {k: p for k, p in named.items() if p.requires_grad}
    grads = torch.autograd.grad(per_seq.sum(), [*probes, *named.values()], allow_unused=True)
    norms = [g.norm(dim=2) for g in grads[:LD]]  # each (B, T)
    dl_dh = [_mean_over_real(v, mask) for v in norms]  # each (T,)
    weight_norms = {name: (float(g.norm()) / B if g is not None else 0.0)
                    for name, g in zip(named, grads[LD:])}
    cells = [c for row in rnn.cells for c in row]
    sat = [saturation(cells[k], traces[k], mask) for k in range(LD)]
    jac = jac_ends = None
    if jacobian_batch:
        jl = None if lengths is None else lengths[:jacobian_batch]
        per = _final_state_jacobian_per_sequence(rnn, inputs[:jacobian_batch], jl)  # each (B', T)
        jmask = mask[:jacobian_batch]
        jac = [_mean_over_real(v, jmask).tolist() for v in per]
        jac_ends = [_own_ends(v, jl, k % D == 1) for k, v in enumerate(per)]
    summary = []
    for k in range(LD):
        reverse = k % D == 1
        last, first = _own_ends(norms[k], lengths, reverse)
        row = decay_summary(dl_dh[k].tolist(), reverse=reverse, last=last, first=first)
        row["dh_final_dh_first"] = jac_ends[k][1] if jac_ends is not None else None
        summary.append(row)
    return {
        "loss": float(per_seq.detach().mean()),
        "steps": T,
        "batch": B,
        "layers": layer_labels(rnn),
        "dl_dh": [v.tolist() for v in dl_dh],
        "dh_final_dh": jac,
        "weight_grad_norms": weight_norms,
        "saturation": sat,
        "summary": summary,
    }


def _own_ends(values: Tensor, lengths: Tensor | None, reverse: bool) -> tuple[float, float]:
    """Mean over the batch of (B, T) per-sequence ``values`` at each sequence's own last and first step.

    In a forward direction a sequence's last step is t = L_b - 1 and its first t = 0; a reverse
    direction reads the sequence backwards, so its last step is t = 0 and its first t = L_b - 1.
    Every sequence counts at both ends, whatever its length.
    """
    B, T = values.shape
    if B == 0:
        return float("nan"), float("nan")
    end = (torch.full((B,), T, dtype=torch.int64) if lengths is None else lengths.to(torch.int64).cpu()) - 1
    start = torch.zeros(B, dtype=torch.int64)
    last_t, first_t = (start, end) if reverse else (end, start)
    rows = torch.arange(B)
    v = values.detach().cpu()
    return float(v[rows, last_t].mean()), float(v[rows, first_t].mean())


def final_state_jacobian_norms(rnn: Recurrent, inputs: Tensor, lengths: Tensor | None = None,
                               chunk: int = 16) -> list[Tensor]:
    r"""Mean over the batch of :math:`\|\partial h_T / \partial h_t\|_F` per step, per layer and direction.

    Parameters
    ----------
    rnn : Recurrent
    inputs : Tensor, shape (B, T, I)
    lengths : Tensor of int, shape (B,), optional
    chunk : int
        Hidden units whose rows of the Jacobian are computed in one vectorised
        backward pass (``is_grads_batched``); bounds memory to chunk * B * T * H.

    Returns
    -------
    list of Tensor, each (T,): ``[layer * D + direction]``; the Jacobian of the
    layer's own final hidden state with respect to its hidden state at step t.
    """
    mask = _real_mask(*inputs.shape[:2], lengths, inputs.device)
    return [_mean_over_real(v, mask) for v in _final_state_jacobian_per_sequence(rnn, inputs, lengths, chunk)]


def _final_state_jacobian_per_sequence(rnn: Recurrent, inputs: Tensor, lengths: Tensor | None = None,
                                       chunk: int = 16) -> list[Tensor]:
    r""":math:`\|\partial h_{b,T} / \partial h_{b,t}\|_F` per sequence and step: one (B, T) tensor per layer
    and direction (zero at padded steps); see :func:`final_state_jacobian_norms`."""
    B, T = inputs.shape[:2]
    H = rnn.hidden_size
    D = 2 if rnn.bidirectional else 1
    LD = rnn.num_layers * D
    probes = [torch.zeros(B, T, H, dtype=inputs.dtype, device=inputs.device, requires_grad=True)
              for _ in range(LD)]
    _, final, _ = rnn(inputs, lengths=lengths, return_traces=True, probes=probes)
    h_final = final[0]  # (LD, B, H)
    out = []
    for k in range(LD):
        squares = torch.zeros(B, T, dtype=inputs.dtype, device=inputs.device)
        for start in range(0, H, chunk):
            units = range(start, min(start + chunk, H))
            # one grad_output per unit j: ones at h_T[k, :, j], so row j of every
            # sequence's Jacobian comes back at once (sequences are independent)
            seeds = torch.zeros(len(units), *h_final.shape, dtype=inputs.dtype, device=inputs.device)
            for n, j in enumerate(units):
                seeds[n, k, :, j] = 1.0
            (rows,) = torch.autograd.grad(h_final, probes[k], grad_outputs=seeds, retain_graph=True,
                                          is_grads_batched=True)  # (chunk, B, T, H)
            squares += rows.pow(2).sum(dim=(0, 3))
        out.append(squares.sqrt())
    return out


def adding_loss(readout: nn.Module, targets: Tensor) -> Callable[[Tensor, tuple[Tensor, ...]], Tensor]:
    """Per-sequence squared error of a linear read-out of the last output, for the adding problem."""
    def loss(out: Tensor, final: tuple[Tensor, ...]) -> Tensor:
        return (readout(out[:, -1]).squeeze(1) - targets).pow(2)

    return loss


def build_fresh(cell: str, input_size: int, hidden_size: int, init: str | None = None,
                scale: float = 1.0, forget_bias: float | None = None, num_layers: int = 1) -> Recurrent:
    """A freshly initialised :class:`Recurrent` for the diagnostics and experiments.

    ``init`` is a :mod:`biornn.init` scheme (default: the cell's own, so ``irnn``
    is identity-initialised); ``scale`` then multiplies every recurrent matrix
    :math:`W_{hh}` (identity x 1.1 is the IRNN with lambda = 1.1: the exploding
    case); ``forget_bias`` sets the forget-gate LSTM's forget bias.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    rnn = Recurrent(cell, input_size, hidden_size, num_layers=num_layers, init=init)
    with torch.no_grad():
        if scale != 1.0:
            for name, p in rnn.named_parameters():
                if name.startswith("weight_hh"):
                    p.mul_(scale)
    if forget_bias is not None:
        from .init import forget_bias_

        for row in rnn.cells:
            for c in row:
                forget_bias_(c, forget_bias)
    return rnn


def fresh_gradient_flow(cell: str, length: int, hidden_size: int = 64, batch: int = 32, *,
                        init: str | None = None, scale: float = 1.0, forget_bias: float | None = None,
                        num_layers: int = 1, seed: int = 0, jacobian_batch: int = 8,
                        double: bool = True) -> dict[str, Any]:
    """:func:`gradient_flow` of a fresh network on an adding-problem batch of length T.

    The network reads the adding problem's two inputs per step; a linear
    read-out of its last output is scored by squared error against the sum.
    In float64 by default: a vanishing gradient falls below float32's
    smallest number (1e-45) within a few hundred steps and would read as 0.
    """
    from .longlag import adding_problem

    torch.manual_seed(seed)
    rnn = build_fresh(cell, 2, hidden_size, init, scale, forget_bias, num_layers)
    readout = nn.Linear(rnn.output_size, 1)
    x, y = adding_problem(batch, length, torch.Generator().manual_seed(seed))
    if double:
        rnn, readout, x, y = rnn.double(), readout.double(), x.double(), y.double()
    result = gradient_flow(rnn, x, adding_loss(readout, y), jacobian_batch=jacobian_batch)
    result.update(cell=cell, init=init or "cell default", scale=scale, hidden_size=hidden_size, task="adding")
    return result


def decay_summary(values: Sequence[float], *, reverse: bool = False, last: float | None = None,
                  first: float | None = None) -> dict[str, Any]:
    """How much a per-step norm falls from the last step of a direction back to its first.

    Parameters
    ----------
    values : sequence of float, length T
        A per-step curve indexed by absolute time t (``dl_dh`` of :func:`gradient_flow`).
    reverse : bool
        The curve belongs to a reverse direction, which reads the sequence from
        t = T-1 down to t = 0: its last step is t = 0 and its first t = T-1, and
        the error travels from t = 0 towards t = T-1.
    last, first : float, optional
        The values at the direction's last and first step, if known better than
        the curve's endpoints (:func:`gradient_flow` passes the mean over the
        sequences at each one's own ends, which differ with variable lengths).

    Returns
    -------
    dict
        ``last`` and ``first`` (the norm at the direction's last and first
        step), ``orders``: log10(last / first), the orders of magnitude lost
        from the last step back to the first (negative: the norm grew going
        back, it explodes); ``direction`` (``forward`` or ``reverse``); and, as
        the two endpoints alone can hide a dip in between (the 1997 LSTM's
        ||dL/dh_t|| falls by 1.6 orders within a few steps, then climbs back),
        ``min`` and ``max`` over all steps, ``min_step`` and ``max_step`` (their
        absolute t), ``orders_to_min``: log10(last / min), the most lost at any
        step, and ``orders_to_max``: log10(last / max) (negative where some
        step's norm is above the last one's).  NaN (``None`` for the steps) where
        undefined; ``inf`` where the first step's norm underflowed to 0 (every
        order the precision holds lost), ``-inf`` where it overflowed (exploded).
    """
    v = np.asarray(values, dtype=np.float64)
    nan = float("nan")
    direction = "reverse" if reverse else "forward"
    finite = np.flatnonzero(np.isfinite(v))
    if not len(finite):
        return {"last": nan, "first": nan, "orders": nan, "direction": direction, "min": nan, "min_step": None,
                "max": nan, "max_step": None, "orders_to_min": nan, "orders_to_max": nan}
    ends = (finite[0], finite[-1]) if reverse else (finite[-1], finite[0])
    last = float(v[ends[0]]) if last is None else float(last)
    first = float(v[ends[1]]) if first is None else float(first)

    def orders(a: float, b: float) -> float:
        # norms are >= 0: log10 of 0 is -inf and of an overflowed norm +inf, so a first step that
        # underflowed to 0 gives +inf (everything lost) and one that overflowed gives -inf (it exploded)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.log10(a) - np.log10(b))

    lo, hi = int(finite[np.argmin(v[finite])]), int(finite[np.argmax(v[finite])])
    return {"last": last, "first": first, "orders": orders(last, first), "direction": direction,
            "min": float(v[lo]), "min_step": lo, "max": float(v[hi]), "max_step": hi,
            "orders_to_min": orders(last, float(v[lo])), "orders_to_max": orders(last, float(v[hi]))}


# -- classifiers (runs) read from one-hot inputs ------------------------------

def members(model: nn.Module) -> list[SequenceClassifier]:
    """The classifiers of a model: itself, or an ensemble's members."""
    ms = list(model.members) if isinstance(model, Ensemble) else [model]
    for m in ms:
        if not isinstance(m, SequenceClassifier):
            raise ValueError(f"diagnostics read SequenceClassifier models (or ensembles of them), "
                             f"got {type(m).__name__}")
    return ms


def load_symbol_run(run: str | Path, what: str) -> tuple[Any, Any, nn.Module, dict]:
    """A run whose model reads symbols (a :class:`SequenceClassifier` or an ensemble of them, with its
    vocabulary): ``(cfg, task, model, meta)``; any other run is refused with one ``ValueError`` line
    saying what ``what`` (a command) reads."""
    from .evaluate import load_run

    cfg, task, model, meta = load_run(run)
    vocab = meta.get("vocab_obj")
    ms = list(model.members) if isinstance(model, Ensemble) else [model]
    if vocab is None or not hasattr(vocab, "encode") or not all(isinstance(m, SequenceClassifier) for m in ms):
        raise ValueError(f"{run}: a {cfg.task} run ({type(ms[0]).__name__}); {what} reads runs of classifiers "
                         f"over symbols, such as names")
    return cfg, task, model, meta


def member_logits(member: SequenceClassifier, onehot: Tensor, lengths: Tensor | None, *,
                  probes: Sequence[Tensor] | None = None, return_traces: bool = False
                  ) -> tuple[Tensor, tuple[Tensor, ...], list[dict[str, Tensor]]]:
    """A classifier's logits from one-hot symbols (so that they can be differentiated).

    The same computation as :meth:`SequenceClassifier.forward`, with the
    embedding lookup written as the product ``onehot @ E`` it equals.

    Parameters
    ----------
    member : SequenceClassifier
    onehot : Tensor, shape (B, T, V)
    lengths : Tensor of int, shape (B,), optional

    Returns
    -------
    logits : Tensor, shape (B, K)
    final : the recurrent state, each field (L*D, B, size)
    traces : list of dict (empty unless ``return_traces``)
    """
    inputs = onehot @ member.embedding.weight if member.embedding is not None else onehot  # (B, T, E or V)
    inputs = member.features(inputs, lengths)  # with a window layer: (B, T, E + C)
    res = member.rnn(inputs, lengths=lengths, return_traces=return_traces, probes=probes)
    out, final = res[0], res[1]
    return member.readout(member.dropout(member.summary(out, lengths))), final, (res[2] if return_traces else [])


def model_logits(model: nn.Module, onehot: Tensor, lengths: Tensor | None,
                 symbols: Tensor | None = None) -> Tensor:
    """A run's model (classifier or ensemble) from one-hot inputs (B, T, V): logits (B, K).

    An ensemble's n-gram part (the ``names`` blend, :class:`biornn.models.Ensemble`)
    reads symbols, not vectors: its term is computed from ``symbols`` (B, T) or (1, T)
    (default: the argmax of ``onehot``, exact for one-hot rows).  It does not depend
    on ``onehot``, so gradients -- and integrated gradients -- are the recurrent
    members' alone, scaled by 1 - ``ngram_weight``.
    """
    ms = members(model)
    if isinstance(model, Ensemble):
        # Ensemble.forward: log of the members' mean probability
        log_probs = torch.stack([torch.log_softmax(member_logits(m, onehot, lengths)[0], dim=-1) for m in ms])
        out = torch.logsumexp(log_probs, dim=0) - math.log(len(ms))
        if model.ngram is not None:
            if symbols is None:
                symbols = onehot.argmax(dim=-1)
            with torch.no_grad():
                q = torch.log_softmax(model.ngram(symbols, lengths), dim=-1).to(out.dtype)  # (1 or B, K)
            w = model.ngram_weight
            out = (1.0 - w) * out + w * q
        return out
    return member_logits(ms[0], onehot, lengths)[0]


def per_sequence_loss(cfg: Any, logits: Tensor, y: Tensor, weight: Tensor | None) -> Tensor:
    """The run's training loss (:func:`biornn.train.loss_fn`) of each sequence, unreduced, (B,):
    cross-entropy or ½‖logits - target‖², with its label smoothing and class weights."""
    if cfg.loss == "ce":
        return F.cross_entropy(logits, y, weight=weight, reduction="none", label_smoothing=cfg.label_smoothing)
    K = logits.shape[1]
    target = F.one_hot(y, K).to(logits.dtype)
    if cfg.label_smoothing:
        target = target * (1.0 - cfg.label_smoothing) + cfg.label_smoothing / K
    per = 0.5 * (logits - target).square().sum(dim=1)
    return per * weight[y] if weight is not None else per


def run_gradient_flow(run: str | Path, data_dir: str | None = None, batch: int = 64, seed: int = 0,
                      jacobian_batch: int = 8) -> dict[str, Any]:
    """:func:`gradient_flow` of a trained run on a batch of its test split.

    Each member (one, or an ensemble's) is measured on the loss it was trained
    on, per sequence against the true labels: the run's ``loss`` (cross-entropy
    or the squared error), its ``label_smoothing`` and its ``class_weighting``
    (weights from the training labels).  Returns
    ``{"run": ..., "members": [gradient_flow dicts]}``.
    """
    from .data.batching import pad_batch

    cfg, task, model, meta = load_symbol_run(run, "diagnose gradients")
    data = task.load(cfg, data_dir)
    if data.fingerprint != meta["data_fingerprint"]:
        from .evaluate import other_data

        raise ValueError(f"{run}: {other_data(cfg)} (fingerprint differs)")
    split = data.splits["test"]
    if not split.texts:
        raise ValueError(f"{run}: the test split is empty")
    vocab = meta["vocab_obj"]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(split.texts), generator=g)[:batch].tolist()
    x, lengths = pad_batch([vocab.encode(split.texts[i]) for i in pick])
    y = torch.as_tensor(split.y[pick])
    from .tasks.names import class_weights

    weight = class_weights(cfg, np.asarray(data.splits["train"].y), len(data.labels))
    results = []
    for member in members(model):
        onehot = F.one_hot(x, member.vocab_size).to(member.readout.weight.dtype)
        rnn = member.rnn

        def loss(out: Tensor, final: tuple[Tensor, ...], member=member, lengths=lengths) -> Tensor:
            return per_sequence_loss(cfg, member.readout(member.dropout(member.summary(out, lengths))), y, weight)

        inputs = member.features(onehot @ member.embedding.weight if member.embedding is not None else onehot,
                                 lengths)
        r = gradient_flow(rnn, inputs, loss, lengths, params=dict(member.named_parameters()),
                          jacobian_batch=jacobian_batch)
        r.update(cell=cfg.cell, task=cfg.task)
        results.append(r)
    return {"run": str(run), "task": cfg.task, "cell": cfg.cell, "batch": len(pick), "members": results}


# -- trajectories --------------------------------------------------------------

@torch.no_grad()
def state_traces(rnn: Recurrent, inputs: Tensor, lengths: Tensor | None = None) -> list[dict[str, Tensor]]:
    """Every step's states and gate activations, as the loop records them.

    Parameters
    ----------
    rnn : Recurrent
    inputs : Tensor, shape (B, T, I)
    lengths : Tensor of int, shape (B,), optional

    Returns
    -------
    list of dict of name -> Tensor (B, T, size), ``[layer * D + direction]``
    """
    return rnn(inputs, lengths=lengths, return_traces=True)[2]


@torch.no_grad()
def cell_state_stream(cells: Sequence[str] = ("lstm1997", "lstm"), length: int = 5000, hidden_size: int = 32,
                      batch: int = 8, seed: int = 0) -> dict[str, Any]:
    r"""Cell-state magnitude of fresh LSTMs over one long continuous stream.

    The 1997 cell's carousel :math:`c_t = c_{t-1} + i_t z_t` sums its inputs
    forever, so on a stream that is never reset :math:`|c_t|` grows (about
    linearly: the increments :math:`i_t z_t` do not average to zero) and
    :math:`h(c_t)` saturates; the forget gate (Gers et al. 2000) keeps it
    bounded.  The stream is the adding problem's inputs (values in (0, 1), no markers).

    Returns
    -------
    dict
        per cell: ``mean_abs_c`` (T floats: mean over units and the batch of
        :math:`|c_t|`), ``max_abs_c``, ``slope`` (least-squares growth of
        mean |c| per step over the second half), ``final_mean_abs_c``,
        ``saturation`` (:func:`saturation` over the whole stream) and
        ``saturated_output_every_100`` (fraction of units with
        :math:`|\tanh(c_t)|` beyond 0.95, at t = 0, 100, 200, ...).
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.rand(batch, length, generator=g), torch.zeros(batch, length)], dim=2)  # (B, T, 2)
    out: dict[str, Any] = {"length": length, "hidden_size": hidden_size, "batch": batch, "cells": {}}
    for name in cells:
        rnn = build_fresh(name, 2, hidden_size)
        tr = state_traces(rnn, x)[0]
        if "c" not in tr:
            raise ValueError(f"cell {name!r} has no cell state c; the stream compares LSTM cells")
        c = tr["c"].abs()  # (B, T, H)
        mean_c = c.mean(dim=(0, 2))  # (T,)
        half = length // 2
        t = torch.arange(half, length, dtype=torch.float64)
        slope = float(np.polyfit(t.numpy(), mean_c[half:].double().numpy(), 1)[0]) if length - half >= 2 else 0.0
        cell = rnn.cells[0][0]
        sat = saturation(cell, tr, torch.ones(batch, length, dtype=torch.bool))
        sat_t = (torch.tanh(tr["c"]).abs() > 1.0 - SATURATION_EPS).float().mean(dim=(0, 2))  # (T,)
        out["cells"][name] = {
            "mean_abs_c": mean_c.tolist(),
            "max_abs_c": float(c.max()),
            "final_mean_abs_c": float(mean_c[-1]),
            "slope": slope,
            "saturation": sat,
            "saturated_output_every_100": sat_t[::100].tolist(),
        }
    return out


# -- saliency ------------------------------------------------------------------

def integrated_gradients(score: Callable[[Tensor], Tensor], x: Tensor, baseline: Tensor | None = None,
                         steps: int = 64) -> tuple[Tensor, Tensor, float, float]:
    r"""Gradient x input and integrated gradients of a scalar score of one input.

    Parameters
    ----------
    score : callable Tensor (N, T, F) -> Tensor (N,)
        The score of each of N inputs (e.g. the logit of one class).
    x : Tensor, shape (T, F)
    baseline : Tensor, shape (T, F), optional
        Default zeros.
    steps : int
        Trapezoid-rule intervals for the path integral (steps + 1 points).

    Returns
    -------
    grad_x_input : Tensor (T, F)
    ig : Tensor (T, F)
    score_x : float, F(x)
    score_baseline : float, F(x'); completeness: ``ig.sum()`` ~ ``score_x - score_baseline``
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating (T, F) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if baseline is None:
        baseline = torch.zeros_like(x)
    if not isinstance(baseline, Tensor) or baseline.shape != x.shape:
        raise ValueError(f"baseline must be a tensor shaped like x {tuple(x.shape)}, "
                         f"got {getattr(baseline, 'shape', type(baseline).__name__)}")
    alphas = torch.linspace(0.0, 1.0, steps + 1, dtype=x.dtype)  # (S+1,)
    path = (baseline + alphas.view(-1, 1, 1) * (x - baseline)).detach().requires_grad_(True)  # (S+1, T, F)
    scores = score(path)  # (S+1,)
    if not isinstance(scores, Tensor) or scores.shape != (steps + 1,):
        raise ValueError(f"score must map the (N, T, F) path to one score per input, (N,) = ({steps + 1},); "
                         f"got {getattr(scores, 'shape', type(scores).__name__)}")
    (grads,) = torch.autograd.grad(scores.sum(), path)  # each path point's own gradient
    weights = torch.full((steps + 1,), 1.0 / steps, dtype=x.dtype)
    weights[0] = weights[-1] = 0.5 / steps  # trapezoid
    avg = (weights.view(-1, 1, 1) * grads).sum(0)  # (T, F)
    ig = (x - baseline) * avg
    gxi = x * grads[-1]  # alpha = 1 is x itself
    return gxi.detach(), ig.detach(), float(scores[-1].detach()), float(scores[0].detach())


def explain_symbols(model: nn.Module, symbols: Sequence[int], labels: Sequence[str], *,
                    adjust: Tensor | None = None, target: int | None = None, steps: int = 64,
                    top: int = 3) -> dict[str, Any]:
    """Explain one classification of a symbol sequence.

    Parameters
    ----------
    model : SequenceClassifier or Ensemble
        In eval mode.
    symbols : sequence of int
        The encoded input, T symbols.
    labels : sequence of str
        The K class names.
    adjust : Tensor (K,), optional
        Subtracted from the logits before the softmax (logit adjustment, as
        ``biornn predict`` does); a constant, so it changes no gradient.
    target : int, optional
        The class to explain (default: the predicted one).
    steps : int
        Integrated-gradients intervals.
    top : int
        Classes whose probability after each step is reported (the final top ones).

    Returns
    -------
    dict
        ``prediction``, ``target``, ``probability``; ``grad_x_input`` and
        ``integrated_gradients`` (T floats each: per input step);
        ``score``, ``score_baseline``, ``ig_sum`` and ``completeness_gap``
        (``|ig_sum - (score - score_baseline)|``; with an n-gram part, its term is
        the same at every point of the path, so the attributions are the
        recurrent members' and the n-gram term is in both scores);
        ``ngram_term`` (the n-gram part's share of ``score``, a * log q_k; 0.0
        without one); ``probability_after_step``:
        label -> T floats, the class probability having read steps 0..t (the
        model run on each prefix); ``hidden`` (T x H: the first member's layer-0
        forward hidden state ``h_t``).
    """
    ms = members(model)
    V = ms[0].vocab_size
    T = len(symbols)
    x = torch.as_tensor(list(symbols), dtype=torch.int64).unsqueeze(0)  # (1, T)
    dtype = ms[0].readout.weight.dtype
    onehot = F.one_hot(x[0], V).to(dtype)  # (T, V)
    shift = adjust.to(dtype) if adjust is not None else torch.zeros(len(labels), dtype=dtype)

    with torch.no_grad():
        logits = model_logits(model, onehot.unsqueeze(0), None, x)[0] - shift  # (K,)
        probs = torch.softmax(logits, dim=0)
    pred = int(probs.argmax())
    k = pred if target is None else target
    if not 0 <= k < len(labels):
        raise ValueError(f"target class {k} out of range 0..{len(labels) - 1}")

    def score(batch: Tensor) -> Tensor:  # the (adjusted) logit of class k, (N,)
        return model_logits(model, batch, None, x)[:, k] - shift[k]  # an n-gram part: a constant here

    gxi, ig, s_x, s_b = integrated_gradients(score, onehot, steps=steps)
    ig_sum = float(ig.sum())
    ngram_term = 0.0
    if getattr(model, "ngram", None) is not None:
        with torch.no_grad():
            ngram_term = float(model.ngram_weight * torch.log_softmax(model.ngram(x, None), dim=-1)[0, k])

    # how the decision forms: the model on every prefix (exact for any topology)
    with torch.no_grad():
        prefixes = x.expand(T, T).clone()  # (T, T), row t read up to step t
        prefix_lengths = torch.arange(1, T + 1)
        prefixes = torch.where(torch.arange(T).unsqueeze(0) < prefix_lengths.unsqueeze(1), prefixes, 0)
        p_after = torch.softmax(model(prefixes, prefix_lengths) - shift, dim=1)  # (T, K)
        hidden = member_logits(ms[0], onehot.unsqueeze(0), None, return_traces=True)[2][0]["h"][0]  # (T, H)
    shown = probs.topk(min(top, len(labels))).indices.tolist()
    if k not in shown:
        shown.append(k)
    return {
        "prediction": labels[pred],
        "probability": float(probs[pred]),
        "target": labels[k],
        "grad_x_input": gxi.sum(1).tolist(),
        "integrated_gradients": ig.sum(1).tolist(),
        "score": s_x,
        "score_baseline": s_b,
        "ig_sum": ig_sum,
        "completeness_gap": abs(ig_sum - (s_x - s_b)),
        "ngram_term": ngram_term,
        "probability_after_step": {labels[j]: p_after[:, j].tolist() for j in shown},
        "hidden": hidden.tolist(),
    }


def encode_checked(vocab: Any, text: str, run: str | Path) -> tuple[str, list[int]]:
    """(stripped text, its symbols); ``ValueError`` if empty or with a character the run's alphabet lacks."""
    name = unicodedata.normalize("NFC", text.strip())
    if not name:
        raise ValueError(f"{text!r}: an empty input")
    codes = vocab.encode(name)
    unknown = sorted({ch for ch, c in zip(name, codes) if c == vocab.UNK})
    if unknown:
        raise ValueError(f"{text!r}: characters not in the alphabet of {run}: {' '.join(map(repr, unknown))}")
    return name, codes


def explain_run(run: str | Path, inputs: Sequence[str], *, target: str | None = None, steps: int = 64,
                top: int = 3) -> list[dict[str, Any]]:
    """Explain a run's prediction for each input (names: one surname each).

    A character the run's alphabet does not have is refused (``ValueError``
    naming it): its saliency would be that of the unknown symbol.
    """
    cfg, task, model, meta = load_symbol_run(run, "explain")
    vocab, labels = meta["vocab_obj"], meta["labels"]
    if not inputs:
        raise ValueError("give at least one INPUT")
    k = None
    if target is not None:
        if target not in labels:
            raise ValueError(f"--target {target!r} is not a class of {run} ({', '.join(labels)})")
        k = labels.index(target)
    adjust = cfg.logit_adjustment * torch.tensor(meta["log_prior"]) if cfg.logit_adjustment else None
    out = []
    for text in inputs:
        name, codes = encode_checked(vocab, text, run)
        row = explain_symbols(model, codes, labels, adjust=adjust, target=k, steps=steps, top=top)
        row = {"input": name, "steps": list(vocab.decode([c]) for c in codes), **row}
        out.append(row)
    return out


# -- plots ---------------------------------------------------------------------

def _pyplot():
    from .plots import _pyplot as pyplot

    return pyplot()


def _save(fig: Any, path: str | Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def plot_gradient_flow(curves: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> None:
    """dL/dh_t (left) and dh_T/dh_t (right) per step, log scale, one line per label.

    ``curves`` maps a label (a cell name, ``member 0 layer 0``) to a dict with
    ``dl_dh`` (T floats) and optionally ``dh_final_dh`` (T floats).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, c in curves.items():
        for ax, key in zip(axes, ("dl_dh", "dh_final_dh")):
            v = c.get(key)
            if v is None:
                continue
            v = np.asarray(v, dtype=np.float64)
            ax.semilogy(np.arange(len(v)), np.where(v > 0, v, np.nan), label=label)
    axes[0].set(xlabel="time step t", ylabel="mean ||dL/dh_t||", title="error reaching step t")
    axes[1].set(xlabel="time step t", ylabel="mean ||dh_T/dh_t||_F", title="final state's sensitivity to h_t")
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel with no curve (--jacobian-batch 0) gets no legend
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="0.5")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_traces(traces: dict[str, Tensor | np.ndarray], path: str | Path, step_labels: Sequence[str] | None = None,
                title: str = "") -> None:
    """Heatmaps over time (x) and units (y), one panel per trace (h, c, gates)."""
    plt = _pyplot()
    names = list(traces)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.6 + 1.7 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        v = np.asarray(traces[name], dtype=np.float64)  # (T, size)
        lim = float(np.abs(v).max()) or 1.0
        sigmoid_like = name.endswith("_gate")
        im = ax.imshow(v.T, aspect="auto", interpolation="nearest",
                       cmap="viridis" if sigmoid_like else "RdBu_r",
                       vmin=0.0 if sigmoid_like else -lim, vmax=1.0 if sigmoid_like else lim)
        ax.set_ylabel(f"{name}\nunit")
        fig.colorbar(im, ax=ax, fraction=0.03)
        if step_labels is not None and len(step_labels) <= 60:
            ax.set_xticks(range(len(step_labels)), list(step_labels))
    axes[-1, 0].set_xlabel("time step")
    if title:
        axes[0, 0].set_title(title)
    _save(fig, path)


def plot_cell_stream(stream: dict[str, Any], path: str | Path) -> None:
    """Mean |c_t| over a long stream, one line per cell."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, c in stream["cells"].items():
        ax.plot(np.arange(len(c["mean_abs_c"])), c["mean_abs_c"], label=name)
    ax.set(xlabel="time step t (one continuous stream, never reset)", ylabel="mean |c_t|",
           title="cell state on a continuous stream")
    ax.legend()
    ax.grid(True, alpha=0.3)
    _save(fig, path)


def plot_explanation(row: dict[str, Any], path: str | Path) -> None:
    """Saliency per input step, class probability after each step, hidden-state heatmap."""
    plt = _pyplot()
    steps = row["steps"]
    T = len(steps)
    fig, axes = plt.subplots(3, 1, figsize=(max(6, 0.5 * T + 3), 9))
    pos = np.arange(T)
    axes[0].bar(pos - 0.2, row["grad_x_input"], width=0.4, label="gradient x input")
    axes[0].bar(pos + 0.2, row["integrated_gradients"], width=0.4, label="integrated gradients")
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set(ylabel=f"attribution to\nlogit of {row['target']}",
                title=f"{row['input']!r} -> {row['prediction']} (p = {row['probability']:.2f})")
    axes[0].legend(fontsize=8)
    for label, p in row["probability_after_step"].items():
        axes[1].plot(pos, p, marker="o", label=label)
    axes[1].set(ylabel="probability\nafter step", ylim=(0, 1))
    axes[1].legend(fontsize=8)
    h = np.asarray(row["hidden"], dtype=np.float64)
    lim = float(np.abs(h).max()) or 1.0
    axes[2].imshow(h.T, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[2].set(ylabel="h_t unit\n(layer 0)", xlabel="input step")
    for ax in axes:
        ax.set_xticks(pos, steps)
    _save(fig, path)
