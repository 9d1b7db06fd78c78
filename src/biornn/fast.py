"""Fast paths for the time loop: the same scan as the step loop, much faster.

:class:`biornn.Recurrent` runs every layer and direction as a *scan*: one
direction of one layer over a batch-first sequence.  The step loop in
:mod:`biornn.recurrent` is the definition; this module gives the same scan by
two faster routes, chosen automatically (:func:`method`):

``fused``
    torch's fused ``RNN``/``LSTM``/``GRU`` kernels (``torch._VF``, what
    ``torch.nn.LSTM`` itself calls; oneDNN on CPU, cuDNN on GPU), fed with the
    cell's own parameters, so gradients flow back to them unchanged.

    - ``elman`` (tanh, ReLU) -> ``rnn_tanh`` / ``rnn_relu``; ``lstm`` -> ``lstm``:
      the same parameters, as they are.
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

``bptt``
    an ``autograd.Function`` per cell family whose forward runs the recurrence
    without autograd into preallocated buffers (input projection hoisted out of
    the loop, a step's gates in one matmul) and whose backward is BPTT written
    out by hand -- the equations of :mod:`biornn.reference`, in torch -- with
    every weight gradient one matmul over all steps.  It serves the cells torch
    has no kernel for (peepholes, the fully recurrent net, sigmoid and identity
    Elman units, a 1997 LSTM with only one of g/h scaled), the GRU (faster than
    ``torch.nn.GRU``, which on CPU has no oneDNN kernel), and truncated BPTT
    together with variable lengths, which the fused kernels cannot do.

``native``
    the same hand-written BPTT with its time loops compiled (:mod:`biornn.native`,
    ``csrc/native.cpp``): per step one recurrent product and one fused, vectorised
    pass over the step's gates.  It serves the peephole and 1997 LSTMs (one cell
    per block), the GRU, the fully recurrent net and single LSTM steps whenever it
    is built (``biornn native build``) and the tensors are float32/float64 on the
    CPU; ``bptt`` serves them otherwise.

All give the step loop's outputs, final states and gradients (tested to 1e-5).
Traces (``return_traces=True``) always use the step loop: it is what records them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import native as _native
from .cells import Cell, ElmanCell, FullyRecurrentCell, GRUCell, LSTM1997Cell, LSTMCell

#: forget-gate bias that holds the fused LSTM's forget gate at exactly 1.0
FORGET_OPEN = 1e4


def _fused_maths(cell: Cell) -> bool:
    """Whether torch has a fused kernel with ``cell``'s maths."""
    if type(cell) is ElmanCell:
        return cell.nonlinearity in ("tanh", "relu")
    if type(cell) is LSTMCell:
        return not cell.peepholes
    if type(cell) is LSTM1997Cell:
        return cell.g_name == cell.h_name  # both tanh, or both the paper's scaled sigmoids
    return False  # GRU: the hand-written BPTT is faster than torch's CPU kernel


_BPTT_CELLS = (ElmanCell, LSTMCell, LSTM1997Cell, GRUCell, FullyRecurrentCell)


#: from this many steps on, the 1997 LSTM runs on the compiled loops rather than the fused kernel
LSTM1997_MIN_STEPS = 32

#: activation codes of csrc/native.cpp
_NATIVE_ACTS = {"tanh": 0, "sigmoid": 1, "relu": 2, "identity": 3}


def _native_maths(cell: Cell) -> bool:
    """Whether the compiled loops (``csrc/native.cpp``) have ``cell``'s maths."""
    if type(cell) in (LSTMCell, GRUCell):
        return True
    if type(cell) is LSTM1997Cell:
        return cell.cells_per_block == 1
    if type(cell) is FullyRecurrentCell:
        return cell.nonlinearity in _NATIVE_ACTS and cell.output_nonlinearity in _NATIVE_ACTS
    return False


def method(
    cell: Cell,
    lengths: Tensor | None = None,
    truncate: int | None = None,
    steps: int | None = None,
    device: torch.device | str | None = None,
) -> str | None:
    """The fast path that serves ``cell`` for a call with these arguments.

    ``steps`` is the call's sequence length T, if known: a single step
    (streaming, one sample per call) of an LSTM is faster by the hand-written
    route, because oneDNN's LSTM re-lays out its weights on every call
    (``biornn bench``'s streaming table).  ``lengths`` (variable lengths, some
    shorter than T) on the CPU take the hand-written route too where it records
    gradients or its loops are compiled: torch's kernels run packed sequences
    there without oneDNN.  ``device`` is where the tensors are (default: the
    CPU); the compiled loops run on the CPU only.

    Returns
    -------
    ``"fused"`` (a torch kernel), ``"native"`` (the hand-written BPTT, compiled),
    ``"bptt"`` (the hand-written BPTT in Python), or ``None`` (no fast path: a
    cell class biornn does not know; the step loop runs).
    """
    on_cpu = device is None or torch.device(device).type == "cpu"
    compiled = on_cpu and _native_maths(cell) and _native.available()
    single_lstm_step = steps == 1 and type(cell) in (LSTMCell, LSTM1997Cell)
    # the 1997 LSTM does 3/4 of the LSTM kernel's work on the compiled loops (3 gates, no
    # weight assembly): faster from a few dozen steps on; below, the fused kernel's single
    # call wins (biornn bench: names, T = 12)
    lstm1997_compiled = compiled and type(cell) is LSTM1997Cell and (steps is None or steps >= LSTM1997_MIN_STEPS)
    # torch.compile cannot trace the LSTM kernel's backward (aten.mkldnn_rnn_layer, torch 2.13): a
    # compiled training step takes the hand-written BPTT, which it runs as an autograd.Function
    compiling_lstm = type(cell) in (LSTMCell, LSTM1997Cell) and _compiling_with_grad()
    # variable lengths on the CPU: torch's kernels take a packed sequence there without oneDNN, by
    # a generic loop of per-step operations that autograd records one by one -- the hand-written
    # BPTT (which also runs only the rows still going at each step) trains 1.1-6x faster
    # (docs/speed.md, "Variable lengths"); without gradients only the compiled loops are faster
    # (the Python loops are not); on a GPU cuDNN takes packed sequences as they are
    packed_on_cpu = lengths is not None and on_cpu and (compiled or torch.is_grad_enabled())
    if (_fused_maths(cell) and not (truncate and lengths is not None) and not single_lstm_step
            and not lstm1997_compiled and not compiling_lstm and not packed_on_cpu):
        return "fused"
    if type(cell) in _BPTT_CELLS:
        return "native" if compiled else "bptt"
    return None


def _compiling_with_grad() -> bool:
    """Whether torch.compile is tracing a call that records gradients."""
    try:
        return torch.compiler.is_compiling() and torch.is_grad_enabled()
    except AttributeError:  # an older torch
        return False


def supports(cell: Cell) -> bool:
    """Whether ``cell`` has a fast path (every built-in cell has)."""
    return method(cell) is not None


class _Expand1997(torch.autograd.Function):
    """A 1997 cell's parameters (rows i, z, o) laid out as a forget-gate LSTM's (rows i, f, g, o),
    all four tensors as one autograd node: its backward slices the gradients back (summing a
    block's S copies of its gate rows, scaling the cell-input rows) instead of replaying some
    thirty small operations -- and one node instead of four, which matters at short sequences
    (names, 12 steps), where the Python autograd.Function's own cost is not small."""

    @staticmethod
    def forward(ctx, nb, S, z_scale, forgets, *ws):
        H = nb * S
        ctx.nb, ctx.S, ctx.z_scale = nb, S, z_scale
        out = []
        for w, forget in zip(ws, forgets):
            w_f = torch.full((H, *w.shape[1:]), forget, dtype=w.dtype, device=w.device)
            if S == 1 and z_scale == 1.0:  # i, z, o -> i, f, z, o: one copy
                out.append(torch.cat([w[:H], w_f, w[H:]]))
                continue
            w_i, w_z, w_o = w[:nb], w[nb : nb + H], w[nb + H :]
            if S > 1:  # one gate row per block -> one per memory cell
                w_i, w_o = w_i.repeat_interleave(S, dim=0), w_o.repeat_interleave(S, dim=0)
            out.append(torch.cat([w_i, w_f, w_z * z_scale if z_scale != 1.0 else w_z, w_o], dim=0))
        return tuple(out)

    @staticmethod
    def backward(ctx, *gs):
        nb, S, z_scale = ctx.nb, ctx.S, ctx.z_scale
        H = nb * S
        grads = []
        for g, need in zip(gs, ctx.needs_input_grad[4:]):
            if not need:
                grads.append(None)
            elif S == 1 and z_scale == 1.0:
                grads.append(torch.cat([g[:H], g[2 * H :]]))
            else:
                g_i, _, g_z, g_o = g.split(H, dim=0)
                if S > 1:
                    g_i = g_i.reshape(nb, S, *g.shape[1:]).sum(1)
                    g_o = g_o.reshape(nb, S, *g.shape[1:]).sum(1)
                if z_scale != 1.0:
                    g_z = g_z * z_scale
                grads.append(torch.cat([g_i, g_z, g_o], dim=0))
        return (None, None, None, None, *grads)


def _lstm1997_weights(cell: LSTM1997Cell) -> tuple[list[Tensor], float]:
    """The 1997 cell's parameters laid out as a forget-gate LSTM's (4H rows, i f g o)."""
    H, S = cell.hidden_size, cell.cells_per_block
    nb = H // S
    sl = cell.gate_slices()
    assert (sl["i"], sl["g"], sl["o"]) == (slice(0, nb), slice(nb, nb + H), slice(nb + H, 2 * nb + H)), sl
    z_scale = 0.5 if cell.g_name == "scaled-sigmoid" else 1.0
    w_ih = cell.weight_ih
    # bias=False: the fused LSTM still needs the forget bias
    b_ih = cell.bias_ih if cell.bias_ih is not None else w_ih.new_zeros(w_ih.shape[0])
    b_hh = cell.bias_hh if cell.bias_hh is not None else w_ih.new_zeros(w_ih.shape[0])
    weights = _Expand1997.apply(nb, S, z_scale, (0.0, 0.0, FORGET_OPEN, 0.0), w_ih, cell.weight_hh, b_ih, b_hh)
    return list(weights), z_scale


def scan(
    cell: Cell,
    x: Tensor,
    state: tuple[Tensor, ...],
    lengths: Tensor | None,
    truncate: int | None,
    how: str | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One direction of one layer on a fast path; the same results as the step loop.

    Parameters
    ----------
    cell : Cell
        A cell for which :func:`supports` is true.
    x : Tensor, shape (B, T, I)
        Batch-first input (already reversed for a backward direction).
    state : cell.state_type
        Initial state, each field (B, size).
    lengths : Tensor of int64, shape (B,), or None
        True lengths; outputs past them are zero and the final state is the
        state at each sequence's last step.
    truncate : int or None
        Detach the state every ``truncate`` steps (truncated BPTT).
    how : {"fused", "native", "bptt"}, optional
        Force a route (tests and benchmarks); default :func:`method`'s choice.

    Returns
    -------
    out : Tensor, shape (B, T, O)
    state : cell.state_type, each field (B, size)
    """
    if how is None:
        how = method(cell, lengths, truncate, x.shape[1], x.device)
        if how == "native" and x.dtype not in (torch.float32, torch.float64):
            how = "bptt"  # the compiled loops take float32 and float64 as they are
    elif how == "native" and not (_native_maths(cell) and _native.available() and x.device.type == "cpu"):
        raise ValueError(f"{type(cell).__name__}: the compiled loops cannot serve this cell and call")
    if how in ("bptt", "native") and _autocast(x.device.type):
        # the hand-written BPTT runs in the parameters' precision under autocast: autocast would
        # turn some of its products (not the in-place ones) into bfloat16 and mix the two dtypes,
        # and the compiled loops in float32 are faster than the Python loops in bfloat16 anyway
        with torch.autocast(x.device.type, enabled=False):
            return scan(cell, x, state, lengths, truncate, how)
    if how == "fused":
        if not _fused_maths(cell) or (truncate and lengths is not None):
            raise ValueError(f"{type(cell).__name__}: no fused kernel for this cell and call")
        return _fused_scan(cell, x, state, lengths, truncate)
    if how in ("bptt", "native") and type(cell) in _BPTT_CELLS:
        return _bptt_scan(cell, x, state, lengths, truncate, how == "native")
    raise ValueError(f"{type(cell).__name__}: no fast path {how!r}")


def _autocast(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (its lower-precision products would reach the
    hand-written BPTT)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # an older torch
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()
    except RuntimeError:  # a device type autocast does not know (meta, lazy): never on there
        return False


def _without_autocast(backward):
    """A hand-written backward run with autocast off, as its forward ran (:func:`scan`): a
    ``backward()`` called inside an autocast block would otherwise mix bfloat16 and float32."""

    @functools.wraps(backward)
    def run(ctx, *grads):
        device = next((g.device.type for g in grads if g is not None), "cpu")
        if not _autocast(device):
            return backward(ctx, *grads)
        with torch.autocast(device, enabled=False):
            return backward(ctx, *grads)

    return run


def _fused_scan(
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
        c0 = state.c * c_scale if c_scale != 1.0 else state.c
        hx: Tensor | tuple[Tensor, Tensor] = (state.h.unsqueeze(0), c0.unsqueeze(0))
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
        c = c.squeeze(0)
        return out, cell.state_type(h.squeeze(0), c / c_scale if c_scale != 1.0 else c)
    return out, cell.state_type(hx.squeeze(0))


def stacks(cells: Sequence[Sequence[Cell]], lengths: Tensor | None, truncate: int | None, steps: int | None,
           device: torch.device | str | None = None) -> bool:
    """Whether a whole stack of layers (both directions) runs as torch's multi-layer kernel in one call.

    Where every cell takes the fused route (:func:`method`) and there is no truncation, the layers
    and directions need not be called one by one: torch's kernel takes them all, as ``nn.LSTM``
    does, and runs the backward direction inside itself -- no reversing of the input and output
    copies, no concatenation of the directions, one call instead of ``num_layers * D``
    (:func:`fused_stack`).  A 1997 cell with the paper's scaled sigmoids (its state is scaled)
    keeps the call per cell.
    """
    if truncate:
        return False
    for row in cells:
        for cell in row:
            if method(cell, lengths, truncate, steps, device) != "fused":
                return False
            if type(cell) is LSTM1997Cell and cell.g_name != "tanh":
                return False
    return True


def fused_stack(cells: Sequence[Sequence[Cell]], x: Tensor, state: Sequence[Tensor], lengths: Tensor | None,
                dropout: float = 0.0) -> tuple[Tensor, tuple[Tensor, ...]]:
    """A whole stack on torch's multi-layer kernel (where :func:`stacks` is true); the same results as
    calling :func:`scan` for every layer and direction.

    Parameters
    ----------
    cells : sequence of sequence of Cell
        ``cells[layer][direction]``, all of one class.
    x : Tensor, shape (B, T, I)
        Batch-first input.
    state : sequence of Tensor
        The initial state's fields, each (num_layers * D, B, size), torch.nn's order.
    lengths : Tensor of int64, shape (B,), or None
        True lengths; outputs past them are zero and the final state is read at each sequence's
        last step (the backward direction's at its first).
    dropout : float
        Dropout on the outputs of every layer but the last (0 when not training).  Dropout is drawn
        as the layer-by-layer route draws it (on the batch-first outputs, in memory order), so the
        layers are then called one at a time, both directions in each call.

    Returns
    -------
    out : Tensor, shape (B, T, D * H)
    state : tuple of Tensor, each (num_layers * D, B, size)
    """
    L, D = len(cells), len(cells[0])
    first = cells[0][0]
    if type(first) is LSTM1997Cell:
        layer_weights = [[w for cell in row for w in _lstm1997_weights(cell)[0]] for row in cells]
        kernel, has_bias = torch._VF.lstm, True
    else:
        has_bias = first.bias_ih is not None
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if has_bias else ("weight_ih", "weight_hh")
        layer_weights = [[getattr(cell, n) for cell in row for n in names] for row in cells]
        if type(first) is LSTMCell:
            kernel = torch._VF.lstm
        else:
            kernel = torch._VF.rnn_tanh if first.nonlinearity == "tanh" else torch._VF.rnn_relu
    is_lstm = kernel is torch._VF.lstm
    train = torch.is_grad_enabled()  # as in _fused_scan: only cuDNN reads it
    packed = None
    if lengths is not None:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        order = packed.sorted_indices.to(x.device)
        unorder = packed.unsorted_indices.to(x.device)
        state = [s.index_select(1, order) for s in state]

    def run(inp: Tensor, hx: list[Tensor], weights: list[Tensor], layers: int) -> tuple[Tensor, list[Tensor]]:
        h = tuple(hx) if is_lstm else hx[0]
        if packed is None:
            res = kernel(inp, h, weights, has_bias, layers, 0.0, train, D == 2, True)
        else:
            data = pack_padded_sequence(inp, lengths.cpu(), batch_first=True, enforce_sorted=False).data \
                if inp is not x else packed.data
            res = kernel(data, packed.batch_sizes, h, weights, has_bias, layers, 0.0, train, D == 2)
            out, _ = pad_packed_sequence(packed._replace(data=res[0]), batch_first=True, total_length=x.shape[1])
            res = (out, *res[1:])
        return res[0], list(res[1:])

    if not dropout or L == 1:
        out, final = run(x, list(state), [w for ws in layer_weights for w in ws], L)
    else:
        out, parts = x, []
        for layer in range(L):
            rows = slice(layer * D, (layer + 1) * D)
            out, fin = run(out, [s[rows] for s in state], layer_weights[layer], 1)
            parts.append(fin)
            if layer < L - 1:
                out = F.dropout(out.contiguous(), dropout, training=True)
        final = [torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))]
    if packed is not None:
        final = [f.index_select(1, unorder) for f in final]
    if D == 2:
        out = out.contiguous()  # as the layer-by-layer route's concatenation of the directions
    return out, tuple(final)


# ---------------------------------------------------------------------------
# Hand-written BPTT: one autograd.Function per cell family
# ---------------------------------------------------------------------------
#
# The step loop records every small operation of every step on autograd's
# tape, and its backward replays them one by one.  Here the forward pass runs
# the same maths under no autograd at all, into preallocated (T, B, .) buffers,
# with the input projection hoisted out of the loop (one matmul for all steps)
# and the gates of a step in one matmul; the backward is BPTT written out -- the
# equations of biornn.reference, in torch -- and the weight gradients are one
# matmul over all steps (sum_t da_t^T h_{t-1} is a (G, T*B) x (T*B, H) product).
#
# Variable lengths are handled as packed sequences are: the batch is sorted by
# length, so the sequences still running at step t are the first n_t rows and
# every step works on those rows only; outputs past a sequence's end stay zero
# and its state is read at its last step.  Truncated BPTT drops the gradient
# that flows from step k into the state before it (k = truncate, 2 truncate, ...).

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward.grad_input


def _ops():
    """The compiled loops' operators (:mod:`biornn.native`)."""
    return torch.ops.biornn_native


def _bs(batch_sizes) -> list[int]:
    return list(batch_sizes) if batch_sizes is not None else []


def _act_(name: str, a: Tensor) -> Tensor:
    """Apply an activation in place."""
    if name == "tanh":
        return a.tanh_()
    if name == "sigmoid":
        return a.sigmoid_()
    if name == "relu":
        return a.relu_()
    return a  # identity


def _act_backward_(name: str, grad: Tensor, out: Tensor) -> Tensor:
    """grad <- f'(a) * grad in place, f'(a) written in terms of the output f(a)."""
    if name == "tanh":
        return _tanh_backward(grad, out, grad_input=grad)
    if name == "sigmoid":
        return _sigmoid_backward(grad, out, grad_input=grad)
    if name == "relu":
        return grad.masked_fill_(out <= 0, 0.0)
    return grad


#: oneDNN's matmul (what torch.compile calls on CPU), for the products over all steps at once:
#: on CPUs where the BLAS is slow for these short-and-wide shapes it is about 2x faster
#: (benchmarks/products.py); None where this torch has no such operator
_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


#: multiply-adds from which _linear calls oneDNN (below, its per-call set-up costs more than it saves)
LINEAR_ONEDNN_MIN = 1 << 20


def _linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x W^T (+ b) for 2-D x, by oneDNN for large float32 products on the CPU, else torch's addmm/mm."""
    if (_LINEAR is not None and x.dtype == torch.float32 and x.device.type == "cpu"
            and x.shape[0] * w.shape[0] * w.shape[1] >= LINEAR_ONEDNN_MIN):
        try:
            return _LINEAR(x, w, b, "none", [], "")
        except RuntimeError:  # a build whose oneDNN refuses: the BLAS serves
            pass
    return torch.addmm(b, x, w.t()) if b is not None else x @ w.t()


def _project(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """x W^T + b for every step at once: (T, B, I) -> (T, B, G), a fresh buffer."""
    T, B, I = x.shape
    return _linear(x.reshape(T * B, I), w, b).view(T, B, -1)


def _input_grad(d: Tensor, w: Tensor) -> Tensor:
    """dL/dx_t = d_t W for every step at once: (T, B, G) x (G, I) -> (T, B, I)."""
    T, B, G = d.shape
    return _linear(d.reshape(T * B, G), w.t().contiguous()).view(T, B, -1)


def _rows(batch_sizes: tuple[int, ...] | None, B: int, t: int) -> int:
    return batch_sizes[t] if batch_sizes is not None else B


def _steps(buf: Tensor, batch_sizes: tuple[int, ...] | None) -> list[Tensor] | tuple[Tensor, ...]:
    """Every step of a (T, B, ...) buffer, cut to the rows still running: T views (n_t, ...).

    Made once before a loop: one ``unbind`` makes T views in C++, where slicing
    inside the loop would pay Python's and the dispatcher's overhead per view per step.
    """
    steps = buf.unbind(0)
    if batch_sizes is None:
        return steps
    return [s[:n] for s, n in zip(steps, batch_sizes)]


def _gate_steps(buf: Tensor, batch_sizes, size: int, *blocks: tuple[int, int]) -> list:
    """Per-step views of blocks of gate columns: ``(k0, k1)`` is columns k0*size .. k1*size."""
    return [_steps(buf[:, :, k0 * size : k1 * size], batch_sizes) for k0, k1 in blocks]


def _cut(truncate: int, t: int) -> bool:
    """Whether truncated BPTT stops the gradient from step t into step t-1."""
    return bool(truncate) and t % truncate == 0


def _zero_padding_(batch_sizes, *seqs: Tensor) -> None:
    """Zero rows n_t: of every step: outputs (and their gradients) past each sequence's end."""
    if batch_sizes is None:
        return
    for t, n in enumerate(batch_sizes):
        if n < seqs[0].shape[1]:
            for s in seqs:
                s[t, n:] = 0.0


def _grad_seq(g: Tensor | None, like: Tensor, batch_sizes) -> Tensor:
    """A writable, contiguous copy of an incoming gradient, zero in the padding."""
    # one copy whatever the incoming layout (contiguous() then clone() would copy twice)
    g = torch.zeros_like(like) if g is None else g.clone(memory_format=torch.contiguous_format)
    _zero_padding_(batch_sizes, g)
    return g


def _delta_buffer(like: Tensor, batch_sizes) -> Tensor:
    """A buffer for per-step pre-activation gradients: every real row of every step is
    written by the backward loop, so only the padding needs zeros."""
    return torch.empty_like(like) if batch_sizes is None else torch.zeros_like(like)


def _onednn_ok(t: Tensor, macs: int) -> bool:
    return _LINEAR is not None and t.dtype == torch.float32 and t.device.type == "cpu" and macs >= LINEAR_ONEDNN_MIN


#: _grad_w copies a^T (N x K), and d (N x G) if strided, for oneDNN; above this many elements
#: (16 MB of fresh pages at float32) a copy costs more than oneDNN saves, unless (a^T) the
#: product is at least 4x wider than the copy
GRAD_W_COPY_MAX = 1 << 22


def _grad_w_onednn(d: Tensor, N: int, G: int, K: int) -> bool:
    """Whether :func:`_grad_w` takes oneDNN for a (G, K) gradient summed over N rows."""
    copies_fit = N * K <= GRAD_W_COPY_MAX or G >= 4 * K  # a^T is copied
    return (_onednn_ok(d, N * G * K) and copies_fit
            and (d.is_contiguous() or N * G <= GRAD_W_COPY_MAX))  # a strided d is copied too


def _grad_w(d: Tensor, a: Tensor) -> Tensor:
    """d^T a for d (N, G), a (N, K): a weight's gradient summed over N = T*B rows, (G, K).

    oneDNN computes it as (a^T d)^T with a^T made contiguous (K is small) and d read through a
    transposed view: 1.4-1.6x faster than the BLAS's d^T a at the shapes of ``biornn bench``
    (``benchmarks/products.py``), as long as the copy of a^T is small or the product wide
    (:data:`GRAD_W_COPY_MAX`; at long-wide the fully recurrent net and the GRU were slower).
    """
    N, G = d.shape
    K = a.shape[1]
    if _grad_w_onednn(d, N, G, K):
        try:  # (a strided d, e.g. a block of a wider buffer's columns, would take oneDNN's slow path)
            return _LINEAR(a.t().contiguous(), d.contiguous().t(), None, "none", [], "").t().contiguous()
        except RuntimeError:
            pass
    return d.t() @ a


def _weight_grads(dA: Tensor, x: Tensor, prev0: Tensor, seq: Tensor, want: tuple[bool, bool, bool]):
    """Gradients of W_ih, W_hh and the bias from the pre-activation gradients dA (T, B, G).

    ``dW_hh = sum_t dA_t^T s_{t-1}`` with s_{-1} = prev0 (B, H) and s_t = seq[t]: one
    product over all steps (:func:`_grad_w`), or with the BLAS one matmul over steps
    1..T-1 plus the first step's, no copy of the sequence.
    """
    T, B, G = dA.shape
    flat = dA.view(T * B, G)
    d_ih = _grad_w(flat, x.reshape(T * B, -1)) if want[0] else None
    d_hh = None
    if want[1]:
        H = seq.shape[2]
        if _grad_w_onednn(flat, T * B, G, H):
            prev = torch.cat([prev0.unsqueeze(0), seq[:-1]]).view(T * B, H)
            d_hh = _grad_w(flat, prev)
        else:
            d_hh = dA[0].t() @ prev0
            if T > 1:
                d_hh.addmm_(dA[1:].reshape(-1, G).t(), seq[:-1].reshape(-1, H))
    d_b = flat.sum(0) if want[2] else None
    return d_ih, d_hh, d_b


class _ElmanBPTT(torch.autograd.Function):
    r"""Elman layer, :math:`h_t = f(W_{xh} x_t + W_{hh} h_{t-1} + b)`, and its BPTT:

    .. math::

        \delta_t = f'(a_t) \odot \big(\partial L/\partial h_t + W_{hh}^\top \delta_{t+1}\big)
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b, act, batch_sizes, truncate):
        T, B, _ = x.shape
        Hs = _project(x, w_ih, b)  # (T, B, H): a_t, then h_t in place
        w_hhT = w_hh.t()
        h = h0
        for a in _steps(Hs, batch_sizes):
            if a.shape[0] < h.shape[0]:
                h = h[: a.shape[0]]
            h = _act_(act, a.addmm_(h, w_hhT))
        _zero_padding_(batch_sizes, Hs)
        ctx.save_for_backward(x, h0, w_ih, w_hh, Hs)
        ctx.act, ctx.batch_sizes, ctx.truncate, ctx.has_bias = act, batch_sizes, truncate, b is not None
        return Hs

    @staticmethod
    @once_differentiable
    @_without_autocast
    def backward(ctx, dHs):
        x, h0, w_ih, w_hh, Hs = ctx.saved_tensors
        T, B, _ = Hs.shape
        dA = _grad_seq(dHs, Hs, ctx.batch_sizes)  # dL/dh_t, then delta_t in place
        dh0 = torch.zeros_like(h0)
        da_s, h_s = _steps(dA, ctx.batch_sizes), _steps(Hs, ctx.batch_sizes)
        for t in range(T - 1, -1, -1):
            d = _act_backward_(ctx.act, da_s[t], h_s[t])
            if t == 0:
                dh0 = d @ w_hh
            elif not _cut(ctx.truncate, t):
                prev = da_s[t - 1]
                (prev if prev.shape[0] == d.shape[0] else prev[: d.shape[0]]).addmm_(d, w_hh)
        need = ctx.needs_input_grad
        dx = _input_grad(dA, w_ih) if need[0] else None
        d_ih, d_hh, d_b = _weight_grads(dA, x, h0, Hs, (need[2], need[3], ctx.has_bias and need[4]))
        return dx, dh0 if need[1] else None, d_ih, d_hh, d_b, None, None, None


class _LSTMBPTT(torch.autograd.Function):
    r"""LSTM layer with a forget gate, optionally with peepholes, and its BPTT.

    Forward (gate rows i, f, g, o as torch; :math:`p` the peephole weights):

    .. math::

        i, f &= \sigma(a_{i,f} + p_{i,f} \odot c_{t-1}), \quad g = \tanh(a_g), \quad
        c_t = f \odot c_{t-1} + i \odot g \\
        o &= \sigma(a_o + p_o \odot c_t), \quad h_t = o \odot \tanh(c_t)

    Backward, with :math:`\bar h, \bar c` the gradients reaching :math:`h_t, c_t`:

    .. math::

        \delta_o &= \bar h \tanh(c_t)\, o(1-o), \quad
        \bar c \mathrel{+}= \bar h\, o\, (1 - \tanh^2 c_t) + p_o \delta_o \\
        \delta_i &= \bar c\, g\, i(1-i), \quad \delta_f = \bar c\, c_{t-1} f(1-f), \quad
        \delta_g = \bar c\, i\, (1-g^2) \\
        \bar c_{t-1} &= \bar c f + p_i \delta_i + p_f \delta_f, \quad
        \bar h_{t-1} = W_{hh}^\top \delta
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b, w_ci, w_cf, w_co, batch_sizes, truncate, compiled=False):
        T, B, _ = x.shape
        H = h0.shape[1]
        peep = w_ci is not None
        A = _project(x, w_ih, b)  # (T, B, 4H): pre-activations, then the gates in place
        ctx.compiled = compiled
        if compiled:  # tanh(c_t) is recomputed in the backward rather than kept
            Cs, TC, Hs = x.new_empty(T, B, H), x.new_empty(0), x.new_empty(T, B, H)
            _ops().lstm_forward(A, Cs, TC, Hs, h0, c0, w_hh, w_ci, w_cf, w_co, _bs(batch_sizes))
            ctx.save_for_backward(x, h0, c0, w_ih, w_hh, w_ci, w_cf, w_co, A, Cs, TC, Hs)
            ctx.batch_sizes, ctx.truncate, ctx.has_bias = batch_sizes, truncate, b is not None
            return Hs, Cs
        Cs, TC, Hs = (x.new_empty(T, B, H) for _ in range(3))
        w_hhT = w_hh.t()
        w_cif = torch.stack([w_ci, w_cf]).unsqueeze(0) if peep else None  # (1, 2, H)
        bs = batch_sizes
        a_s, if_s, i_s, f_s, g_s, o_s = _steps(A, bs), *_gate_steps(A, bs, H, (0, 2), (0, 1), (1, 2), (2, 3), (3, 4))
        c_s, tc_s, h_s = _steps(Cs, bs), _steps(TC, bs), _steps(Hs, bs)
        h, c = h0, c0
        for t in range(T):
            n = a_s[t].shape[0]
            if n < h.shape[0]:
                h, c = h[:n], c[:n]
            a = a_s[t].addmm_(h, w_hhT)
            if peep:
                a.view(n, 4, H)[:, :2].addcmul_(c.unsqueeze(1), w_cif)
            if_s[t].sigmoid_()
            g = g_s[t].tanh_()
            c = torch.mul(f_s[t], c, out=c_s[t]).addcmul_(i_s[t], g)
            o = o_s[t]
            if peep:
                o.addcmul_(c, w_co)
            h = torch.mul(o.sigmoid_(), torch.tanh(c, out=tc_s[t]), out=h_s[t])
        _zero_padding_(batch_sizes, Hs, Cs)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, w_ci, w_cf, w_co, A, Cs, TC, Hs)
        ctx.batch_sizes, ctx.truncate, ctx.has_bias = batch_sizes, truncate, b is not None
        return Hs, Cs

    @staticmethod
    @once_differentiable
    @_without_autocast
    def backward(ctx, dHs, dCs):
        x, h0, c0, w_ih, w_hh, w_ci, w_cf, w_co, A, Cs, TC, Hs = ctx.saved_tensors
        T, B, H = Hs.shape
        peep = w_ci is not None
        bs = ctx.batch_sizes
        need = ctx.needs_input_grad
        if ctx.compiled:
            dA = torch.empty_like(A)  # every row written, the padding with zeros
            dh0, dc0, dpeep = _ops().lstm_backward(A, Cs, TC, c0, dHs, dCs, dA, w_hh, w_ci, w_cf, w_co,
                                                   _bs(bs), ctx.truncate, need[1] or need[2])
            dx = _input_grad(dA, w_ih) if need[0] else None
            d_ih, d_hh, d_b = _weight_grads(dA, x, h0, Hs, (need[3], need[4], ctx.has_bias and need[5]))
            d_ci, d_cf, d_co = dpeep.unbind(0) if peep else (None, None, None)
            return (dx, dh0 if need[1] else None, dc0 if need[2] else None, d_ih, d_hh, d_b,
                    d_ci, d_cf, d_co, None, None, None)
        dH = _grad_seq(dHs, Hs, bs)  # gradients reaching h_t (and c_t), accumulated backwards
        dC = _grad_seq(dCs, Cs, bs)
        dA = _delta_buffer(A, bs)
        i_s, f_s, g_s, o_s = _gate_steps(A, bs, H, (0, 1), (1, 2), (2, 3), (3, 4))
        da_s = _steps(dA, bs)
        di_s, df_s, dg_s, do_s = _gate_steps(dA, bs, H, (0, 1), (1, 2), (2, 3), (3, 4))
        c_s, tc_s, dh_s, dc_s = _steps(Cs, bs), _steps(TC, bs), _steps(dH, bs), _steps(dC, bs)
        tmp = torch.empty_like(h0)
        dh0, dc0 = torch.zeros_like(h0), torch.zeros_like(c0)
        for t in range(T - 1, -1, -1):
            da, i, f, g, o = da_s[t], i_s[t], f_s[t], g_s[t], o_s[t]
            n = da.shape[0]
            c_prev = (c_s[t - 1] if n == c_s[t - 1].shape[0] else c_s[t - 1][:n]) if t else c0
            tc, dh, dc = tc_s[t], dh_s[t], dc_s[t]
            u = tmp if n == B else tmp[:n]
            _sigmoid_backward(torch.mul(dh, tc, out=u), o, grad_input=do_s[t])
            dc.add_(_tanh_backward(torch.mul(dh, o, out=u), tc, grad_input=u))
            if peep:
                dc.addcmul_(do_s[t], w_co)
            _sigmoid_backward(torch.mul(dc, g, out=u), i, grad_input=di_s[t])
            _sigmoid_backward(torch.mul(dc, c_prev, out=u), f, grad_input=df_s[t])
            _tanh_backward(torch.mul(dc, i, out=u), g, grad_input=dg_s[t])
            if t == 0:
                dh_prev, dc_prev = dh0, dc0
            elif not _cut(ctx.truncate, t):
                dh_prev, dc_prev = dh_s[t - 1], dc_s[t - 1]
                if dh_prev.shape[0] != n:
                    dh_prev, dc_prev = dh_prev[:n], dc_prev[:n]
            else:
                continue
            dh_prev.addmm_(da, w_hh)
            dc_prev.addcmul_(dc, f)
            if peep:
                dc_prev.addcmul_(di_s[t], w_ci).addcmul_(df_s[t], w_cf)
        need = ctx.needs_input_grad
        dx = _input_grad(dA, w_ih) if need[0] else None
        d_ih, d_hh, d_b = _weight_grads(dA, x, h0, Hs, (need[3], need[4], ctx.has_bias and need[5]))
        d_ci = d_cf = d_co = None
        if peep:
            # the peepholes' gradients: sum over steps and batch of delta * the cell state they read
            c_prev_seq = torch.cat([c0.unsqueeze(0), Cs[:-1]])
            d_ci = (dA[:, :, :H] * c_prev_seq).sum((0, 1))
            d_cf = (dA[:, :, H : 2 * H] * c_prev_seq).sum((0, 1))
            d_co = (dA[:, :, 3 * H :] * Cs).sum((0, 1))
        return (dx, dh0 if need[1] else None, dc0 if need[2] else None, d_ih, d_hh, d_b,
                d_ci, d_cf, d_co, None, None, None)


class _LSTM1997BPTT(torch.autograd.Function):
    r"""The 1997 LSTM layer, natively with its 3 gate groups, memory blocks and squashings.

    Rows i (H/S), z (H), o (H/S); the S cells of a block share its gates:

    .. math::

        c_t = c_{t-1} + i \odot g(a_z), \qquad h_t = o \odot h(c_t)

    and backward the constant error carousel: :math:`\bar c_{t-1} = \bar c_t`
    (plus what reaches :math:`c_{t-1}` through :math:`h_{t-1}`).  A gate's
    gradient sums over the S cells of its block.
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b, S, g_name, h_name, batch_sizes, truncate, compiled=False):
        T, B, _ = x.shape
        H = h0.shape[1]
        nb = H // S
        A = _project(x, w_ih, b)  # (T, B, 2H/S + H)
        Cs, HC, Hs = (x.new_empty(T, B, H) for _ in range(3))
        ctx.S, ctx.g_name, ctx.h_name, ctx.compiled = S, g_name, h_name, compiled
        ctx.batch_sizes, ctx.truncate, ctx.has_bias = batch_sizes, truncate, b is not None
        if compiled:  # one cell per block
            _ops().lstm1997_forward(A, Cs, HC, Hs, h0, c0, w_hh, g_name != "tanh", h_name != "tanh",
                                    _bs(batch_sizes))
            ctx.save_for_backward(x, h0, c0, w_ih, w_hh, A, Cs, HC, Hs)
            return Hs, Cs
        w_hhT = w_hh.t()
        h, c = h0, c0
        for t in range(T):
            n = _rows(batch_sizes, B, t)
            a = A[t, :n].addmm_(h[:n], w_hhT)
            i, z, o = a[:, :nb].sigmoid_(), a[:, nb : nb + H], a[:, nb + H :].sigmoid_()
            if g_name == "tanh":
                z.tanh_()
            else:  # g(x) = 4 sigmoid(x) - 2
                z.sigmoid_().mul_(4.0).sub_(2.0)
            c = torch.addcmul(c[:n].view(n, nb, S), i.unsqueeze(2), z.view(n, nb, S),
                              out=Cs[t, :n].view(n, nb, S)).view(n, H)
            hc = HC[t, :n]
            if h_name == "tanh":
                torch.tanh(c, out=hc)
            else:  # h(x) = 2 sigmoid(x) - 1
                torch.sigmoid(c, out=hc).mul_(2.0).sub_(1.0)
            h = torch.mul(hc.view(n, nb, S), o.unsqueeze(2), out=Hs[t, :n].view(n, nb, S)).view(n, H)
        _zero_padding_(batch_sizes, Hs, Cs)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, A, Cs, HC, Hs)
        return Hs, Cs

    @staticmethod
    @once_differentiable
    @_without_autocast
    def backward(ctx, dHs, dCs):
        x, h0, c0, w_ih, w_hh, A, Cs, HC, Hs = ctx.saved_tensors
        T, B, H = Hs.shape
        S = ctx.S
        nb = H // S
        bs = ctx.batch_sizes
        need = ctx.needs_input_grad
        if ctx.compiled:
            dA = torch.empty_like(A)
            dh0, dc0 = _ops().lstm1997_backward(A, HC, dHs, dCs, dA, w_hh, ctx.g_name != "tanh",
                                                ctx.h_name != "tanh", _bs(bs), ctx.truncate, need[1] or need[2])
            dx = _input_grad(dA, w_ih) if need[0] else None
            d_ih, d_hh, d_b = _weight_grads(dA, x, h0, Hs, (need[3], need[4], ctx.has_bias and need[5]))
            return (dx, dh0 if need[1] else None, dc0 if need[2] else None, d_ih, d_hh, d_b,
                    None, None, None, None, None, None)
        dH, dC = _grad_seq(dHs, Hs, bs), _grad_seq(dCs, Cs, bs)
        dA = _delta_buffer(A, bs)
        tmp = torch.empty_like(h0)
        dh0, dc0 = torch.zeros_like(h0), torch.zeros_like(c0)
        for t in range(T - 1, -1, -1):
            n = _rows(bs, B, t)
            a, da = A[t, :n], dA[t, :n]
            i, z, o = a[:, :nb], a[:, nb : nb + H], a[:, nb + H :]
            hc, dh, dc, u = HC[t, :n], dH[t, :n], dC[t, :n], tmp[:n]
            # h = o * h(c): the output gate's gradient sums over its block's cells
            torch.mul(dh, hc, out=u)
            _sigmoid_backward(u.view(n, nb, S).sum(2) if S > 1 else u, o, grad_input=da[:, nb + H :])
            torch.mul(dh.view(n, nb, S), o.unsqueeze(2), out=u.view(n, nb, S))
            _tanh_backward(u, hc, grad_input=u)
            if ctx.h_name != "tanh":  # h(c) = tanh(c / 2)
                u.mul_(0.5)
            dc.add_(u)
            # c = c_prev + i * g(a_z)
            torch.mul(dc, z, out=u)
            _sigmoid_backward(u.view(n, nb, S).sum(2) if S > 1 else u, i, grad_input=da[:, :nb])
            d_z = torch.mul(dc.view(n, nb, S), i.unsqueeze(2), out=da[:, nb : nb + H].view(n, nb, S)).view(n, H)
            if ctx.g_name == "tanh":
                _tanh_backward(d_z, z, grad_input=d_z)
            else:  # g = 4 sigmoid - 2: g' = (2 + g)(2 - g) / 4
                d_z.mul_(torch.mul(z, z, out=u).sub_(4.0).mul_(-0.25))
            if t == 0:
                dh0.addmm_(da, w_hh)
                dc0.add_(dc)
            elif not _cut(ctx.truncate, t):
                dH[t - 1, :n].addmm_(da, w_hh)
                dC[t - 1, :n].add_(dc)  # the constant error carousel
        need = ctx.needs_input_grad
        dx = _input_grad(dA, w_ih) if need[0] else None
        d_ih, d_hh, d_b = _weight_grads(dA, x, h0, Hs, (need[3], need[4], ctx.has_bias and need[5]))
        return (dx, dh0 if need[1] else None, dc0 if need[2] else None, d_ih, d_hh, d_b,
                None, None, None, None, None, None)


class _GRUBPTT(torch.autograd.Function):
    r"""GRU layer (torch's form, reset after the recurrent product) and its BPTT.

    With :math:`g^x = W_{ih} x_t + b_{ih}` and :math:`g^h = W_{hh} h_{t-1} + b_{hh}`:
    :math:`r, z = \sigma(g^x_{r,z} + g^h_{r,z})`, :math:`n = \tanh(g^x_n + r \odot g^h_n)`,
    :math:`h_t = n + z \odot (h_{t-1} - n)`.  Backward:

    .. math::

        \delta_n &= \bar h (1 - z)(1 - n^2), \quad
        \delta_z = \bar h (h_{t-1} - n)\, z(1-z), \quad
        \delta_r = \delta_n g^h_n\, r(1-r) \\
        \bar h_{t-1} &= \bar h z + W_{hh}^\top [\delta_r, \delta_z, r \delta_n]
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, truncate, compiled=False):
        T, B, _ = x.shape
        H = h0.shape[1]
        bs = batch_sizes
        A = _project(x, w_ih, b_ih)  # (T, B, 3H): g^x, then r, z, n in place
        GH = x.new_empty(T, B, 3 * H)  # g^h, kept for the backward
        Hs = x.new_empty(T, B, H)
        ctx.batch_sizes, ctx.truncate, ctx.has_bias, ctx.compiled = batch_sizes, truncate, b_ih is not None, compiled
        if compiled:
            _ops().gru_forward(A, GH, Hs, h0, w_hh, b_hh, _bs(bs))
            ctx.save_for_backward(x, h0, w_ih, w_hh, A, GH, Hs)
            return Hs
        w_hhT = w_hh.t()
        rz_s, r_s, z_s, n_s = _gate_steps(A, bs, H, (0, 2), (0, 1), (1, 2), (2, 3))
        gh_s, ghrz_s, ghn_s = _steps(GH, bs), *_gate_steps(GH, bs, H, (0, 2), (2, 3))
        h_s = _steps(Hs, bs)
        h = h0
        for t in range(T):
            gh = gh_s[t]
            n = gh.shape[0]
            if n < h.shape[0]:
                h = h[:n]
            if b_hh is not None:
                torch.addmm(b_hh, h, w_hhT, out=gh)
            else:
                torch.mm(h, w_hhT, out=gh)
            rz_s[t].add_(ghrz_s[t]).sigmoid_()
            cand = n_s[t].addcmul_(r_s[t], ghn_s[t]).tanh_()
            h = torch.sub(h, cand, out=h_s[t]).mul_(z_s[t]).add_(cand)
        _zero_padding_(batch_sizes, Hs)
        ctx.save_for_backward(x, h0, w_ih, w_hh, A, GH, Hs)
        return Hs

    @staticmethod
    @once_differentiable
    @_without_autocast
    def backward(ctx, dHs):
        x, h0, w_ih, w_hh, A, GH, Hs = ctx.saved_tensors
        T, B, H = Hs.shape
        bs = ctx.batch_sizes
        if ctx.compiled:
            dGH, dN = torch.empty_like(GH), torch.empty_like(Hs)
            dh0 = _ops().gru_backward(A, GH, Hs, h0, dHs, dGH, dN, w_hh, _bs(bs), ctx.truncate,
                                      ctx.needs_input_grad[1])
            return _GRUBPTT._param_grads(ctx, x, h0, w_ih, w_hh, Hs, dGH, dN, dh0)
        dH = _grad_seq(dHs, Hs, bs)
        dGH = _delta_buffer(GH, bs)  # gradient reaching g^h
        dN = _delta_buffer(Hs, bs)  # gradient reaching g^x_n
        r_s, z_s, n_s = _gate_steps(A, bs, H, (0, 1), (1, 2), (2, 3))
        ghn_s = _gate_steps(GH, bs, H, (2, 3))[0]
        dgh_s, dr_s, dz_s, dghn_s = _steps(dGH, bs), *_gate_steps(dGH, bs, H, (0, 1), (1, 2), (2, 3))
        h_s, dh_s, dn_s = _steps(Hs, bs), _steps(dH, bs), _steps(dN, bs)
        tmp = torch.empty_like(h0)
        dh0 = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            r, z, cand, dh, d_n = r_s[t], z_s[t], n_s[t], dh_s[t], dn_s[t]
            n = dh.shape[0]
            h_prev = (h_s[t - 1] if h_s[t - 1].shape[0] == n else h_s[t - 1][:n]) if t else h0
            u = tmp if n == B else tmp[:n]
            torch.mul(dh, z, out=u)
            _tanh_backward(torch.sub(dh, u, out=d_n), cand, grad_input=d_n)
            torch.sub(h_prev, cand, out=u).mul_(dh)
            _sigmoid_backward(u, z, grad_input=dz_s[t])
            _sigmoid_backward(torch.mul(d_n, ghn_s[t], out=u), r, grad_input=dr_s[t])
            torch.mul(d_n, r, out=dghn_s[t])
            if t == 0:
                dh_prev = dh0
            elif not _cut(ctx.truncate, t):
                dh_prev = dh_s[t - 1] if dh_s[t - 1].shape[0] == n else dh_s[t - 1][:n]
            else:
                continue
            dh_prev.addcmul_(dh, z).addmm_(dgh_s[t], w_hh)
        return _GRUBPTT._param_grads(ctx, x, h0, w_ih, w_hh, Hs, dGH, dN, dh0)

    @staticmethod
    def _param_grads(ctx, x, h0, w_ih, w_hh, Hs, dGH, dN, dh0):
        T, B, H = Hs.shape
        need = ctx.needs_input_grad
        # the gradient reaching g^x is dGH's for r and z and delta_n (dN) for n: used in
        # two blocks rather than copied into one (T, B, 3H) tensor
        d_rz, d_n = dGH.view(T * B, 3 * H)[:, : 2 * H], dN.view(T * B, H)
        dx = None
        if need[0]:
            dx = _linear(d_rz, w_ih[: 2 * H].t().contiguous())
            dx = dx.add_(_linear(d_n, w_ih[2 * H :].t().contiguous())).view(T, B, -1)
        d_ih = None
        if need[2]:
            xf = x.reshape(T * B, -1)
            d_ih = torch.cat([_grad_w(d_rz, xf), _grad_w(d_n, xf)])
        _, d_hh, d_bhh = _weight_grads(dGH, x, h0, Hs, (False, need[3], ctx.has_bias and need[5]))
        d_bih = torch.cat([d_rz.sum(0), d_n.sum(0)]) if ctx.has_bias and need[4] else None
        return dx, dh0 if need[1] else None, d_ih, d_hh, d_bih, d_bhh, None, None, None


class _FullyRecurrentBPTT(torch.autograd.Function):
    r"""Fully recurrent layer and its BPTT.

    :math:`s_t = f_h(W_{xh} x_t + W_{hh} s_{t-1} + W_{oh} o_{t-1} + b_h)`,
    :math:`o_t = f_o(V s_t + b_o)`.  Backward, with :math:`\bar s, \bar o` the
    gradients reaching :math:`s_t, o_t`:

    .. math::

        \epsilon_t = f_o'\, \bar o, \quad
        \delta_t = f_h' \odot (\bar s + V^\top \epsilon_t), \quad
        \bar s_{t-1} \mathrel{+}= W_{hh}^\top \delta_t, \quad
        \bar o_{t-1} \mathrel{+}= W_{oh}^\top \delta_t
    """

    @staticmethod
    def forward(ctx, x, s0, o0, w_ih, w_hh, w_oh, w_ho, b_h, b_o, f_h, f_o, batch_sizes, truncate,
                compiled=False):
        T, B, _ = x.shape
        S = _project(x, w_ih, b_h)  # (T, B, H): a_t, then s_t in place
        O = x.new_empty(T, B, w_ho.shape[0])
        ctx.f_h, ctx.f_o, ctx.compiled = f_h, f_o, compiled
        ctx.batch_sizes, ctx.truncate, ctx.has_bias = batch_sizes, truncate, b_h is not None
        if compiled:
            _ops().fully_recurrent_forward(S, O, s0, o0, w_hh, w_oh, w_ho, b_o, _NATIVE_ACTS[f_h],
                                           _NATIVE_ACTS[f_o], _bs(batch_sizes))
            ctx.save_for_backward(x, s0, o0, w_ih, w_hh, w_oh, w_ho, S, O)
            return S, O
        w_hhT, w_ohT, w_hoT = w_hh.t(), w_oh.t(), w_ho.t()
        s, o = s0, o0
        for a, o_t in zip(_steps(S, batch_sizes), _steps(O, batch_sizes)):
            n = a.shape[0]
            if n < s.shape[0]:
                s, o = s[:n], o[:n]
            s = _act_(f_h, a.addmm_(s, w_hhT).addmm_(o, w_ohT))
            if b_o is not None:
                o = torch.addmm(b_o, s, w_hoT, out=o_t)
            else:
                o = torch.mm(s, w_hoT, out=o_t)
            _act_(f_o, o)
        _zero_padding_(batch_sizes, S, O)
        ctx.save_for_backward(x, s0, o0, w_ih, w_hh, w_oh, w_ho, S, O)
        return S, O

    @staticmethod
    @once_differentiable
    @_without_autocast
    def backward(ctx, dSs, dOs):
        x, s0, o0, w_ih, w_hh, w_oh, w_ho, S, O = ctx.saved_tensors
        T, B, H = S.shape
        bs = ctx.batch_sizes
        if ctx.compiled:
            dS, dO = torch.empty_like(S), torch.empty_like(O)
            ds0, do0 = _ops().fully_recurrent_backward(S, O, dSs, dOs, dS, dO, w_hh, w_oh, w_ho,
                                                       _NATIVE_ACTS[ctx.f_h], _NATIVE_ACTS[ctx.f_o], _bs(bs),
                                                       ctx.truncate, any(ctx.needs_input_grad[1:3]))
            return _FullyRecurrentBPTT._param_grads(ctx, x, s0, o0, w_ih, S, O, dS, dO, ds0, do0)
        dS = _grad_seq(dSs, S, bs)  # gradient reaching s_t, then delta_t in place
        dO = _grad_seq(dOs, O, bs)  # gradient reaching o_t, then epsilon_t in place
        ds0, do0 = torch.zeros_like(s0), torch.zeros_like(o0)
        ds_s, do_s, s_s, o_s = _steps(dS, bs), _steps(dO, bs), _steps(S, bs), _steps(O, bs)
        for t in range(T - 1, -1, -1):
            eps = _act_backward_(ctx.f_o, do_s[t], o_s[t])
            delta = _act_backward_(ctx.f_h, ds_s[t].addmm_(eps, w_ho), s_s[t])
            n = delta.shape[0]
            if t == 0:
                ds_prev, do_prev = ds0, do0
            elif not _cut(ctx.truncate, t):
                ds_prev, do_prev = ds_s[t - 1], do_s[t - 1]
                if ds_prev.shape[0] != n:
                    ds_prev, do_prev = ds_prev[:n], do_prev[:n]
            else:
                continue
            ds_prev.addmm_(delta, w_hh)
            do_prev.addmm_(delta, w_oh)
        return _FullyRecurrentBPTT._param_grads(ctx, x, s0, o0, w_ih, S, O, dS, dO, ds0, do0)

    @staticmethod
    def _param_grads(ctx, x, s0, o0, w_ih, S, O, dS, dO, ds0, do0):
        T, B, H = S.shape
        need = ctx.needs_input_grad
        dx = _input_grad(dS, w_ih) if need[0] else None
        d_ih, d_hh, d_bh = _weight_grads(dS, x, s0, S, (need[3], need[4], ctx.has_bias and need[7]))
        _, d_oh, _ = _weight_grads(dS, x, o0, O, (False, need[5], False))
        d_ho = _grad_w(dO.view(T * B, -1), S.view(T * B, H)) if need[6] else None
        d_bo = dO.view(T * B, -1).sum(0) if ctx.has_bias and need[8] else None
        return (dx, ds0 if need[1] else None, do0 if need[2] else None, d_ih, d_hh, d_oh, d_ho,
                d_bh, d_bo, None, None, None, None, None)


def _bptt_scan(
    cell: Cell, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None, truncate: int | None,
    compiled: bool = False,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One direction of one layer by the hand-written BPTT (arguments as :func:`scan`;
    ``compiled``: its loops from :mod:`biornn.native`)."""
    B, T, _ = x.shape
    batch_sizes = order = last = None
    if lengths is not None:
        # sorted longest first, the sequences still running at step t are rows :n_t
        sorted_lengths, order = torch.sort(lengths.to(x.device), descending=True, stable=True)
        x = x.index_select(0, order)
        state = type(state)(*(s.index_select(0, order) for s in state))
        steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
        batch_sizes = tuple((sorted_lengths.unsqueeze(0) > steps).sum(1).tolist())
        last = sorted_lengths - 1
    xt = x.transpose(0, 1).contiguous()  # (T, B, I): step t is one contiguous block
    seqs = _bptt_apply(cell, xt, state, batch_sizes, int(truncate or 0), compiled)  # each (T, B, size)
    if last is None:
        finals = [s[-1] for s in seqs]
    else:
        rows = torch.arange(B, device=x.device)
        finals = [s[last, rows] for s in seqs]  # each sequence's state at its last step
    out = seqs[cell.state_type._fields.index("o") if type(cell) is FullyRecurrentCell else 0]
    out = out.transpose(0, 1)  # (B, T, O), a view of time-major memory
    if order is not None:
        undo = torch.empty_like(order)
        undo[order] = torch.arange(B, device=x.device)
        out = out.index_select(0, undo)
        finals = [f.index_select(0, undo) for f in finals]
    return out, cell.state_type(*finals)


def _sum_bias(cell: Cell) -> Tensor | None:
    return cell.bias_ih + cell.bias_hh if cell.bias_ih is not None else None


def _bptt_apply(cell: Cell, x: Tensor, state, batch_sizes, truncate: int, compiled: bool = False) -> tuple[Tensor, ...]:
    """Run the cell family's Function; returns the per-step state sequences (T, B, size)."""
    if type(cell) is ElmanCell:
        return (_ElmanBPTT.apply(x, state.h, cell.weight_ih, cell.weight_hh, _sum_bias(cell),
                                 cell.nonlinearity, batch_sizes, truncate),)
    if type(cell) is LSTMCell:
        peep = (cell.weight_ci, cell.weight_cf, cell.weight_co) if cell.peepholes else (None, None, None)
        return _LSTMBPTT.apply(x, state.h, state.c, cell.weight_ih, cell.weight_hh, _sum_bias(cell), *peep,
                               batch_sizes, truncate, compiled)
    if type(cell) is LSTM1997Cell:
        return _LSTM1997BPTT.apply(x, state.h, state.c, cell.weight_ih, cell.weight_hh, _sum_bias(cell),
                                   cell.cells_per_block, cell.g_name, cell.h_name, batch_sizes, truncate, compiled)
    if type(cell) is GRUCell:
        return (_GRUBPTT.apply(x, state.h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh,
                               batch_sizes, truncate, compiled),)
    return _FullyRecurrentBPTT.apply(
        x, state.h, state.o, cell.weight_ih, cell.weight_hh, cell.weight_oh, cell.weight_ho, _sum_bias(cell),
        cell.bias_ho, cell.nonlinearity, cell.output_nonlinearity, batch_sizes, truncate, compiled)
