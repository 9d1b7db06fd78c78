"""Fast paths for the time loop: torch's fused recurrent kernels where the maths is the same.

:class:`biornn.Recurrent` runs every layer and direction as a *scan*: one
direction of one layer over a batch-first sequence.  The step loop in
:mod:`biornn.recurrent` is the definition; this module gives the same scan on
torch's fused ``RNN``/``LSTM``/``GRU`` kernels (``torch._VF``, what
``torch.nn.LSTM`` itself calls), fed with the cell's own parameters, so
gradients flow back to them unchanged.

- ``elman`` (tanh, ReLU) -> ``rnn_tanh`` / ``rnn_relu``; ``lstm`` -> ``lstm``;
  ``gru`` -> ``gru``: the same parameters, as they are.
- ``lstm1997`` -> ``lstm`` with the forget-gate rows of both weight matrices
  at zero and the forget bias at +1e4: ``sigmoid(1e4)`` is exactly 1.0 in
  float32 and float64, so ``c_t = 1.0 * c_{t-1} + i_t z_t``, the constant error
  carousel.  The zeros and the 1e4 are constants, not parameters, so they get
  no gradient.  Memory blocks (S cells sharing gates) repeat each block's gate
  rows S times (``repeat_interleave``, whose backward sums the S copies back
  into the block's row).  The paper's squashing functions are tanh in
  disguise: ``g(x) = 4 sigmoid(x) - 2 = 2 tanh(x/2)`` and
  ``h(x) = 2 sigmoid(x) - 1 = tanh(x/2)``, so with both of them the fused LSTM
  runs on halved cell-input rows and a halved cell state ``c' = c/2``, whose
  ``tanh(c')`` is exactly ``h(c)``.

Cells without a fused twin (fully recurrent, peepholes, sigmoid or identity
Elman units, only one of g/h scaled) use the step loop; see :func:`supports`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .cells import Cell, ElmanCell, GRUCell, LSTM1997Cell, LSTMCell

#: forget-gate bias that holds the fused LSTM's forget gate at exactly 1.0
FORGET_OPEN = 1e4


def supports(cell: Cell) -> bool:
    """Whether ``cell`` has a fused kernel with the same maths."""
    if type(cell) is ElmanCell:
        return cell.nonlinearity in ("tanh", "relu")
    if type(cell) is LSTMCell:
        return not cell.peepholes
    if type(cell) is GRUCell:
        return True
    if type(cell) is LSTM1997Cell:
        return cell.g_name == cell.h_name  # both tanh, or both the paper's scaled sigmoids
    return False


def _lstm1997_weights(cell: LSTM1997Cell) -> tuple[list[Tensor], float]:
    """The 1997 cell's parameters laid out as a forget-gate LSTM's (4H rows, i f g o)."""
    H, S = cell.hidden_size, cell.cells_per_block
    sl = cell.gate_slices()
    z_scale = 0.5 if cell.g_name == "scaled-sigmoid" else 1.0

    def expand(w: Tensor | None, forget: float, like: Tensor) -> Tensor:
        if w is None:  # bias=False: the fused LSTM still needs the forget bias
            w = like.new_zeros(like.shape[0])
        w_i, w_z, w_o = w[sl["i"]], w[sl["g"]], w[sl["o"]]
        if S > 1:  # one gate row per block -> one per memory cell
            w_i, w_o = w_i.repeat_interleave(S, dim=0), w_o.repeat_interleave(S, dim=0)
        w_f = torch.full((H, *w.shape[1:]), forget, dtype=w.dtype, device=w.device)
        if z_scale != 1.0:
            w_z = w_z * z_scale
        return torch.cat([w_i, w_f, w_z, w_o], dim=0)

    weights = [
        expand(cell.weight_ih, 0.0, cell.weight_ih),
        expand(cell.weight_hh, 0.0, cell.weight_hh),
        expand(cell.bias_ih, FORGET_OPEN, cell.weight_ih),
        expand(cell.bias_hh, 0.0, cell.weight_ih),
    ]
    return weights, z_scale


def scan(
    cell: Cell, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None, truncate: int | None
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One direction of one layer on a fused kernel; the same results as the step loop.

    Parameters
    ----------
    cell : Cell
        A cell for which :func:`supports` is true.
    x : Tensor, shape (B, T, I)
        Batch-first input (already reversed for a backward direction).
    state : cell.state_type
        Initial state, each field (B, H).
    lengths : Tensor of int64, shape (B,), or None
        True lengths; outputs past them are zero and the final state is the
        state at each sequence's last step.
    truncate : int or None
        Detach the state every ``truncate`` steps (truncated BPTT); only
        without ``lengths`` (the caller falls back to the step loop otherwise).

    Returns
    -------
    out : Tensor, shape (B, T, H)
    state : cell.state_type, each field (B, H)
    """
    if type(cell) is LSTM1997Cell:
        weights, c_scale = _lstm1997_weights(cell)
        kernel, has_bias = torch._VF.lstm, True
    else:
        weights = [cell.weight_ih, cell.weight_hh]
        has_bias = cell.bias_ih is not None
        if has_bias:
            weights += [cell.bias_ih, cell.bias_hh]
        c_scale = 1.0
        if type(cell) is LSTMCell:
            kernel = torch._VF.lstm
        elif type(cell) is GRUCell:
            kernel = torch._VF.gru
        else:
            kernel = torch._VF.rnn_tanh if cell.nonlinearity == "tanh" else torch._VF.rnn_relu
    is_lstm = kernel is torch._VF.lstm
    if is_lstm:
        hx: Tensor | tuple[Tensor, Tensor] = (state.h.unsqueeze(0), (state.c * c_scale).unsqueeze(0))
    else:
        hx = state.h.unsqueeze(0)
    # train=True only matters to cuDNN (it keeps what backward needs); dropout is 0
    train = torch.is_grad_enabled()

    def run(inp: Tensor, hx):
        res = kernel(inp, hx, weights, has_bias, 1, 0.0, train, False, True)
        return res[0], (res[1], res[2]) if is_lstm else res[1]

    if lengths is None:
        T = x.shape[1]
        step = truncate or T
        outs = []
        for start in range(0, T, step):
            if start:  # truncated BPTT: no gradient flows into the previous chunk
                hx = tuple(h.detach() for h in hx) if is_lstm else hx.detach()
            out, hx = run(x[:, start : start + step], hx)
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    else:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        order = packed.sorted_indices.to(x.device)
        unorder = packed.unsorted_indices.to(x.device)
        if is_lstm:
            hx = tuple(h.index_select(1, order) for h in hx)
        else:
            hx = hx.index_select(1, order)
        res = kernel(packed.data, packed.batch_sizes, hx, weights, has_bias, 1, 0.0, train, False)
        packed_out = packed._replace(data=res[0])
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        hx = (res[1].index_select(1, unorder), res[2].index_select(1, unorder)) if is_lstm else (
            res[1].index_select(1, unorder)
        )
    if is_lstm:
        h, c = hx
        return out, cell.state_type(h.squeeze(0), c.squeeze(0) / c_scale)
    return out, cell.state_type(hx.squeeze(0))
