r"""Export a run's model to ONNX or TorchScript, with a dynamic batch size and sequence length.

``biornn export RUN --format onnx|torchscript`` writes one self-contained file:
inputs ``symbols`` (B, T) int64 (the run's vocabulary indices, 0 = padding,
1 = unknown) and ``lengths`` (B,) int64; outputs ``logits`` (B, K) -- with
the run's logit adjustment applied, so they are what ``biornn predict`` ranks
by -- and ``probabilities`` (B, K), their softmax.  The run's task, cell,
labels and vocabulary travel inside the file (ONNX ``metadata_props``, a
TorchScript extra file ``biornn.json``), so a caller needs nothing else to
encode an input and name the answer (:func:`read_onnx_metadata`,
:func:`encode_for_export`).

A run of :class:`biornn.models.VectorClassifier` (``splice``, ``promoters``,
``classify``) is exported with the input ``vectors`` (B, T, F) float32 in
place of ``symbols``: the residue weights of its alphabet (one-hot, IUPAC
codes spread) or the values normalised with the training part's statistics,
zero after each length; the metadata's ``encoding`` holds what makes them
(alphabet or ``normalize`` means and standard deviations, F, the fixed
length) and :func:`encode_vectors_for_export` applies it.  The pooling
(``last``, ``max``, ``mean``, ``split`` at T // 2) is rebuilt with the
lengths, so T stays free; a ``split`` model is checked only at full lengths,
as it is only defined there.

The model is not exported as biornn runs it.  The fast paths call
``torch._VF`` on packed sequences and the step loop is a Python ``for``, and
tracing a Python loop writes a graph that only knows the example's length --
the silent fixed-length graph behind torch issues 24235, 34800 and 72399.
:func:`build_export_model` rebuilds the same function from exportable parts,
with the run's parameters:

``native`` (cells with torch's maths: ``lstm``, ``gru``, ``lstm1997`` with g and
h both tanh or both the paper's scaled sigmoids; for TorchScript also
``elman``, ``elman-relu``, ``irnn``)
    each layer and direction becomes a one-layer ``torch.nn.LSTM``/``GRU``/``RNN``
    holding the cell's parameters (the 1997 LSTM as :mod:`biornn.fast` lays it
    out: forget rows zero, forget bias +1e4, block gates repeated); ONNX gets
    its ``LSTM``/``GRU`` operators, TorchScript ``aten::lstm`` and friends, all
    with the time axis free.
``scan`` (``lstm-peephole``, ``fully-recurrent``, Elman with sigmoid or identity
units, a 1997 LSTM with mixed squashing functions; for ONNX every Elman cell,
because torch's exporter fixes ``nn.RNN`` to the example's length)
    the cell's own ``step`` inside a loop that the file keeps as a loop:
    ``torch.ops.higher_order.scan`` for ONNX (an ONNX ``Scan`` over time),
    and for TorchScript a scripted ``for t in range(T)`` around the traced step.

When a native file fails its check (torch's ONNX exporter fixes the length
after a stack of one-direction ``nn.LSTM`` layers), :func:`export_model` exports
again with every layer on ``scan``; ``routes`` in the result says which it took.

Variable lengths need no packing: every sequence starts at step 0, the
backward direction reads each sequence reversed within its own length (a
``gather``, as :func:`biornn.recurrent.reverse_padded`), so padding only ever
comes *after* the real steps and is never read: the summary is the model's
pooling (:func:`biornn.models.pool_outputs`) written with the lengths -- for
``last`` the forward output at step L-1 and the backward output at step 0.

Every export is checked before it takes its name: the written file is loaded
(onnxruntime, ``torch.jit.load``) and run at the example's shape and at a
different batch size and length, and must match biornn's model within 1e-4;
otherwise nothing is written and a ``ValueError`` says why.  A graph that
froze the example's length cannot pass.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import checkpoint
from .cells import Cell, ElmanCell, GRUCell, LSTM1997Cell, LSTMCell
from .errors import first_line

FORMATS = ("onnx", "torchscript")
#: the file a format is written to inside the run directory when no --out is given
DEFAULT_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
INPUT_NAMES = ("symbols", "lengths")
#: the inputs of an exported VectorClassifier
VECTOR_INPUT_NAMES = ("vectors", "lengths")
OUTPUT_NAMES = ("logits", "probabilities")
#: largest difference allowed between the exported file and biornn's model
TOLERANCE = 1e-4
#: the ONNX opset the dynamo exporter writes (18 has Scan, LSTM, GRU, RNN)
OPSET = 18


def require(module: str, extra: str) -> Any:
    """Import an optional dependency, or ``ValueError`` naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{module} is not installed; install it with: pip install 'biornn[{extra}]'") from None


# ---------------------------------------------------------------------------
# The exportable model
# ---------------------------------------------------------------------------

def route(cell: Cell, fmt: str = "onnx") -> str:
    """How a cell's recurrence is exported to ``fmt``: ``"native"`` (a torch.nn RNN/LSTM/GRU) or ``"scan"``.

    >>> from biornn.cells import make_cell
    >>> route(make_cell("lstm", 3, 4)), route(make_cell("lstm-peephole", 3, 4)), route(make_cell("elman", 3, 4))
    ('native', 'scan', 'scan')
    >>> route(make_cell("elman", 3, 4), "torchscript")
    'native'
    """
    from .fast import _fused_maths

    if fmt == "onnx" and type(cell) is ElmanCell:
        # through nn.RNN torch's ONNX exporter writes a graph fixed to the
        # example's shape (the export check refuses it); a scan keeps T free
        return "scan"
    # the GRU has torch's maths too: fast.py only prefers its own BPTT for speed
    return "native" if _fused_maths(cell) or type(cell) is GRUCell else "scan"


def _native_rnn(cell: Cell) -> nn.Module:
    """A one-layer, one-direction, batch-first torch.nn twin of ``cell`` holding its parameters.

    Values are copied (the twin is for inference only); for the 1997 LSTM the
    copy is :mod:`biornn.fast`'s layout, whose ``tanh(c/2)`` equals h(c) when
    both squashing functions are the paper's (the halved cell state starts at 0).
    """
    from .fast import _lstm1997_weights

    I, H = cell.input_size, cell.hidden_size
    if type(cell) is LSTM1997Cell:
        weights, _ = _lstm1997_weights(cell)
        twin: nn.Module = nn.LSTM(I, H, batch_first=True)
    else:
        weights = [cell.weight_ih, cell.weight_hh]
        bias = cell.bias_ih is not None
        if bias:
            weights += [cell.bias_ih, cell.bias_hh]
        if type(cell) is LSTMCell:
            twin = nn.LSTM(I, H, bias=bias, batch_first=True)
        elif type(cell) is GRUCell:
            twin = nn.GRU(I, H, bias=bias, batch_first=True)
        elif type(cell) is ElmanCell:
            twin = nn.RNN(I, H, nonlinearity=cell.nonlinearity, bias=bias, batch_first=True)
        else:  # route() said native: unreachable unless fast.py learns a new kernel
            raise ValueError(f"{type(cell).__name__}: no torch.nn twin to export")
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"][: len(weights)]
    with torch.no_grad():
        for name, w in zip(names, weights):
            getattr(twin, name).copy_(w.detach())
    return twin


class NativeScan(nn.Module):
    """One layer and direction on torch.nn's RNN/LSTM/GRU: (B, T, I) -> outputs (B, T, H), zero initial state."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.rnn = _native_rnn(cell)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return out


class _CellStep(nn.Module):
    """``cell.step`` with the state packed in one tensor (B, sum of state sizes): one type for any cell."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.cell = cell  # a bound view: its parameters are the Recurrent's
        self.sizes = list(cell.state_sizes())

    def forward(self, x_t: Tensor, packed: Tensor) -> tuple[Tensor, Tensor]:
        state = self.cell.state_type(*packed.split(self.sizes, dim=1))
        new, _ = self.cell.step(x_t, state)
        # clone: scan refuses an output that aliases the carry (h is both for most cells)
        return torch.cat(list(new), dim=1), self.cell.output(new).clone()


class ScanStep(nn.Module):
    """One layer and direction as ``torch.ops.higher_order.scan`` over the cell's step (ONNX ``Scan``)."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.cell = cell  # a bound view: its parameters are the Recurrent's
        self.sizes = tuple(cell.state_sizes())

    def forward(self, x: Tensor) -> Tensor:
        from torch._higher_order_ops.scan import scan

        cell = self.cell

        def step(carry: tuple[Tensor, ...], x_t: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
            new, _ = cell.step(x_t, cell.state_type(*carry))
            # clone: scan refuses an output that aliases the carry (h is both for most cells)
            return tuple(new), cell.output(new).clone()

        init = tuple(x.new_zeros(x.shape[0], n) for n in self.sizes)  # each (B, size)
        _, out = scan(step, init, x.transpose(0, 1))  # (T, B, O)
        return out.transpose(0, 1)


class LoopStep(nn.Module):
    """One layer and direction as a scripted loop over the traced step (TorchScript)."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        step = _CellStep(cell)
        self.state_size = sum(step.sizes)
        example = (torch.zeros(2, cell.input_size), torch.zeros(2, self.state_size))
        with warnings.catch_warnings():  # tracing a step has no loop to unroll
            warnings.simplefilter("ignore")
            self.step = torch.jit.trace(step, example)

    def forward(self, x: Tensor) -> Tensor:
        state = torch.zeros(x.size(0), self.state_size, dtype=x.dtype, device=x.device)
        outs: list[Tensor] = []
        for t in range(x.size(1)):
            state, out = self.step(x.select(1, t), state)
            outs.append(out)
        return torch.stack(outs, dim=1)


def reverse_within(x: Tensor, lengths: Tensor) -> Tensor:
    """Each sequence of (B, T, F) reversed within its own length; padding stays in place.

    The same map as :func:`biornn.recurrent.reverse_padded`, written so that
    every exporter keeps T symbolic.
    """
    t = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, T)
    L = lengths.unsqueeze(1)  # (B, 1)
    index = torch.where(t < L, L - 1 - t, t)  # (B, T)
    return torch.gather(x, 1, index.unsqueeze(2).expand(-1, -1, x.size(2)))


class UniLayer(nn.Module):
    """A forward-only layer: (B, T, I) -> (B, T, O)."""

    def __init__(self, forward_scan: nn.Module) -> None:
        super().__init__()
        self.fwd = forward_scan

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.fwd(x)


class BiLayer(nn.Module):
    """A bidirectional layer: (B, T, I) -> (B, T, 2 O), the backward scan on each sequence reversed in place."""

    def __init__(self, forward_scan: nn.Module, backward_scan: nn.Module) -> None:
        super().__init__()
        self.fwd, self.bwd = forward_scan, backward_scan

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        back = reverse_within(self.bwd(reverse_within(x, lengths)), lengths)
        return torch.cat([self.fwd(x), back], dim=2)


def _export_layers(rnn: nn.Module, fmt: str, native: bool) -> nn.ModuleList:
    """Each layer of a :class:`biornn.Recurrent` as a :class:`UniLayer` or :class:`BiLayer` of exportable scans."""
    scan_type = ScanStep if fmt == "onnx" else LoopStep
    layers = []
    for row in rnn.cells:
        scans = [NativeScan(c) if native and route(c, fmt) == "native" else scan_type(c) for c in row]
        layers.append(BiLayer(*scans) if len(scans) == 2 else UniLayer(scans[0]))
    return nn.ModuleList(layers)


def _export_pool(h: Tensor, real: Tensor, lengths: Tensor, pool: str, width: int, bidirectional: bool,
                 split_at: int = -1) -> Tensor:
    """:func:`biornn.models.pool_outputs` written with the lengths, so that every exporter keeps T
    symbolic: ``h`` (B, T, D * O), ``real`` (B, T, 1) -> (B, D * O)."""
    if pool == "max":
        return h.masked_fill(~real, float("-inf")).amax(dim=1)
    if pool == "mean":
        count = real.to(h.dtype).sum(dim=1).clamp(min=1.0)  # (B, 1)
        return (h * real.to(h.dtype)).sum(dim=1) / count
    if pool == "split":
        at = h.size(1) // 2 if split_at < 0 else split_at
        return torch.cat([h[:, at - 1, :width], h[:, at, width:]], dim=1)
    last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, h.size(2))  # (B, 1, D * O)
    at_end = torch.gather(h, 1, last).squeeze(1)  # (B, D * O)
    if bidirectional:  # forward at the last real step, backward at step 0
        return torch.cat([at_end[:, :width], h[:, 0, width:]], dim=1)
    return at_end


class ExportVectorMember(nn.Module):
    """One :class:`biornn.models.VectorClassifier` rebuilt for export: vectors (B, T, F), lengths (B,) -> logits (B, K).

    The pooling is :meth:`VectorClassifier.forward`'s, written with the lengths
    so that every exporter keeps T symbolic: ``last`` (forward output at step
    L-1, backward at step 0), ``max`` and ``mean`` over the real steps
    (padding masked), ``split`` (forward at ``at - 1``, backward at ``at``,
    ``at = split_at`` or T // 2).
    """

    def __init__(self, model: nn.Module, fmt: str, native: bool = True) -> None:
        super().__init__()
        rnn = model.rnn
        self.layers = _export_layers(rnn, fmt, native)
        self.width = rnn.output_size // (2 if rnn.bidirectional else 1)  # O, one direction's width
        self.bidirectional = bool(rnn.bidirectional)
        self.pool = str(model.pool)
        self.split_at = -1 if model.split_at is None else int(model.split_at)  # -1: the middle, T // 2
        self.readout = model.readout

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, T)
        real = (steps < lengths.unsqueeze(1)).unsqueeze(2)  # (B, T, 1)
        h = torch.where(real, x, torch.zeros_like(x))  # as Recurrent: padding never enters the maths
        for layer in self.layers:
            h = layer(h, lengths)  # (B, T, D * O)
        return self.readout(_export_pool(h, real, lengths, self.pool, self.width, self.bidirectional, self.split_at))


class ExportMember(nn.Module):
    """One :class:`biornn.models.SequenceClassifier` rebuilt for export: symbols (B, T), lengths (B,) -> logits (B, K)."""

    def __init__(self, model: nn.Module, fmt: str, native: bool = True) -> None:
        super().__init__()
        rnn = model.rnn
        V = model.vocab_size
        if model.embedding is not None:
            self.embedding = nn.Embedding(V, model.embedding.embedding_dim)
            weight = model.embedding.weight.detach()
        else:  # one-hot input: a lookup in the identity matrix
            self.embedding = nn.Embedding(V, V)
            weight = torch.eye(V, dtype=model.readout.weight.dtype)
        with torch.no_grad():
            self.embedding.weight.copy_(weight)
        self.layers = _export_layers(rnn, fmt, native)
        self.width = rnn.output_size // (2 if rnn.bidirectional else 1)  # O, one direction's width
        self.bidirectional = bool(rnn.bidirectional)
        self.pool = str(model.pool)
        self.readout = model.readout
        conv = getattr(model, "conv", None)  # the window layer, if any (TorchScript: plain tensors and ints)
        self.has_conv = conv is not None
        self.conv_kernel = int(conv.kernel_size[0]) if conv is not None else 0
        self.register_buffer("conv_weight", conv.weight.detach().clone() if conv is not None else torch.zeros(0))
        self.register_buffer("conv_bias", conv.bias.detach().clone() if conv is not None else torch.zeros(0))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h = self.embedding(x)  # (B, T, E)
        steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, T)
        real = (steps < lengths.unsqueeze(1)).unsqueeze(2)  # (B, T, 1)
        h = torch.where(real, h, torch.zeros_like(h))  # as Recurrent: padding never enters the maths
        if self.has_conv:
            h = torch.cat([h, _window(self.conv_weight, self.conv_bias, self.conv_kernel, h)], dim=2)
        for layer in self.layers:
            h = layer(h, lengths)  # (B, T, D * O)
        return self.readout(_export_pool(h, real, lengths, self.pool, self.width, self.bidirectional))


def _window(weight: Tensor, bias: Tensor, k: int, h: Tensor) -> Tensor:
    """The window layer of :func:`biornn.models.window_features` (a ``Conv1d``'s ``weight`` (C, F, k) and
    ``bias`` (C,)) on ``h`` (B, T, F), padding already zero: relu of one product per tap over shifted
    slices, (B, T, C)."""
    p = k // 2
    T = h.size(1)
    padded = F.pad(h, (0, 0, p, p))  # (B, T + 2p, F): zeros past both ends
    out = bias
    for j in range(k):  # tap j reads step t + j - p
        out = out + padded[:, j : j + T] @ weight[:, :, j].t()
    return torch.relu(out)


class ExportModel(nn.Module):
    """A run's classifier for export: ``(symbols (B, T), lengths (B,)) -> (logits (B, K), probabilities (B, K))``.

    ``logits`` already carry the run's logit adjustment (minus
    ``logit_adjustment * log_prior``); for an ensemble they are the log mean of
    the members' probabilities, as :class:`biornn.models.Ensemble`.
    """

    def __init__(self, members: list[nn.Module], adjust: Tensor, ensemble: bool) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("adjust", adjust)  # (K,)
        self.ensemble = ensemble
        self.log_count = float(np.log(len(members)))

    def members_logits(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The members' logits before the adjustment (B, K): an ensemble's log mean probability."""
        outs: list[Tensor] = []
        for member in self.members:
            outs.append(member(x, lengths))
        if self.ensemble:
            log_probs = torch.log_softmax(torch.stack(outs), dim=-1)  # (M, B, K)
            return torch.logsumexp(log_probs, dim=0) - self.log_count
        return outs[0]

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.members_logits(x, lengths) - self.adjust
        return logits, torch.softmax(logits, dim=1)


class ExportBlendModel(ExportModel):
    """:class:`ExportModel` with the run's n-gram part blended in, as :class:`biornn.models.Ensemble`:
    logits = (1 - a) * log mean member probability + a * log_softmax(n-gram logits), then adjusted."""

    def __init__(self, members: list[nn.Module], adjust: Tensor, ngram: nn.Module, weight: float) -> None:
        super().__init__(members, adjust, True)
        self.ngram = ngram
        self.weight = float(weight)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        q = torch.log_softmax(self.ngram(x, lengths), dim=-1)
        logits = (1.0 - self.weight) * self.members_logits(x, lengths) + self.weight * q - self.adjust
        return logits, torch.softmax(logits, dim=1)


def build_export_model(model: nn.Module, adjust: Tensor | None, fmt: str, native: bool = True) -> ExportModel:
    """The exportable twin of a run's classifier (see the module docstring).

    Parameters
    ----------
    model : SequenceClassifier or Ensemble
        In eval mode.
    adjust : Tensor, shape (K,), or None
        Subtracted from the logits (``logit_adjustment * log_prior``).
    fmt : {"onnx", "torchscript"}
        Picks how a cell without torch's maths loops: ``scan`` or a scripted loop.
    native : bool
        Use torch.nn's RNN/LSTM/GRU where :func:`route` allows; False puts every
        layer on the cell's own step (the fallback of :func:`export_model`).

    Returns
    -------
    ExportModel, in eval mode, without gradients; its parameters are copies of ``model``'s.
    """
    from .models import Ensemble, SequenceClassifier, VectorClassifier

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    for m in members:
        if type(m) not in (SequenceClassifier, VectorClassifier) or type(m) is not type(members[0]):
            raise ValueError(f"export supports sequence classifiers (SequenceClassifier, VectorClassifier), "
                             f"not {type(m).__name__}")
        for row in m.rnn.cells:
            for c in row:
                if type(c) not in (ElmanCell, LSTMCell, LSTM1997Cell, GRUCell) and route(c, fmt) == "native":
                    raise ValueError(f"{type(c).__name__}: no exportable form")
    with torch.no_grad():
        K = members[0].n_classes
        adjust = torch.zeros(K) if adjust is None else adjust.detach().to(torch.float32).clone()
        # a copy: the scan layers use the model's parameters, which an exported
        # file wants without gradients (scan and TorchScript trace autograd otherwise)
        members = copy.deepcopy(members)
        member_type = ExportMember if type(members[0]) is SequenceClassifier else ExportVectorMember
        ngram = getattr(model, "ngram", None) if isinstance(model, Ensemble) else None
        if ngram is not None:
            out = ExportBlendModel([member_type(m, fmt, native) for m in members], adjust,
                                   _export_ngram(ngram), model.ngram_weight)
        else:
            out = ExportModel([member_type(m, fmt, native) for m in members], adjust, isinstance(model, Ensemble))
    return out.requires_grad_(False).eval()


def _export_ngram(ngram: nn.Module) -> nn.Module:
    """A copy of an n-gram scorer with only what its forward reads (TorchScript types every attribute)."""
    from .models.ngram import NgramScorer

    copy_ = NgramScorer(ngram.fold.clone(), ngram.codes.clone(), ngram.idf.clone(), ngram.weight.clone(),
                        ngram.bias.clone(), ngram.n_max)
    del copy_.fit_seconds
    return copy_


# ---------------------------------------------------------------------------
# Writing and checking the files
# ---------------------------------------------------------------------------

def example_inputs(vocab_size: int, batch: int, steps: int, seed: int = 0, n_features: int = 0,
                   full_length: bool = False) -> tuple[Tensor, Tensor]:
    """Random symbols (B, T) in 2..V-1 padded after random lengths (B,), the longest T.

    With ``n_features`` F > 0: random vectors (B, T, F) float32 (standard
    normal, zero after each length) for a VectorClassifier; ``vocab_size`` is
    then unused.  ``full_length``: every length T (a ``split`` model).
    """
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    lengths[0] = steps
    if full_length:
        lengths[:] = steps
    pad = torch.arange(steps).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, T)
    if n_features:
        x = torch.randn(batch, steps, n_features, generator=g)
        x[pad] = 0.0
        return x, lengths
    x = torch.randint(2, max(vocab_size, 3), (batch, steps), generator=g)
    x[pad] = 0
    return x, lengths


#: (B, T) of the example the exporter sees, then the shapes every export is checked at
EXAMPLE_SHAPE = (3, 7)
CHECK_SHAPES = ((3, 7), (2, 12), (1, 1), (4, 2))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress lines and warnings (the result is checked instead)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _input_names(x: Tensor) -> tuple[str, str]:
    """``symbols``/``lengths`` for (B, T) symbols, ``vectors``/``lengths`` for (B, T, F) vectors."""
    return VECTOR_INPUT_NAMES if x.dim() == 3 else INPUT_NAMES


def _forget_rnn_dispatch() -> None:
    """Clear the dispatch caches of ``aten.lstm``/``aten.gru``.

    To keep T free, torch's ONNX exporter puts a while-loop decomposition of
    these ops into their ``py_kernels`` while it captures the graph, without
    clearing the op's dispatch cache; the export's later steps cache torch's
    Python-loop decomposition instead, and the next export in the same process
    found that one cached: it unrolls the example's 7 steps, so the graph came
    out fixed to length 7 (refused by the check, then exported again on the
    slower ``scan`` route). Cleared before and after each export.
    """
    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def _write_onnx(model: ExportModel, x: Tensor, lengths: Tensor, path: Path, metadata: dict[str, str]) -> None:
    require("onnxscript", "export")
    require("onnx", "export")
    batch, steps = torch.export.Dim("batch"), torch.export.Dim("steps")
    _forget_rnn_dispatch()
    try:
        with _quiet():
            program = torch.onnx.export(
                model, (x, lengths), dynamo=True, opset_version=OPSET, verbose=False,
                input_names=list(_input_names(x)), output_names=list(OUTPUT_NAMES),
                dynamic_shapes={"x": {0: batch, 1: steps}, "lengths": {0: batch}},
            )
    finally:
        _forget_rnn_dispatch()
    program.model.metadata_props.update(metadata)
    program.save(str(path), external_data=False)


def _write_torchscript(model: ExportModel, path: Path, metadata: dict[str, str]) -> None:
    with _quiet():
        scripted = torch.jit.script(model)
    # into memory, then written by Python: torch.jit.save to a full disk aborts the process (a C++
    # exception thrown from a destructor) instead of raising
    buf = io.BytesIO()
    torch.jit.save(scripted, buf, _extra_files={"biornn.json": json.dumps(metadata)})
    path.write_bytes(buf.getbuffer())


def _runner(path: Path, fmt: str) -> Callable[[Tensor, Tensor], np.ndarray]:
    """A function running the written file: (symbols or vectors, lengths) -> logits (B, K) as NumPy."""
    if fmt == "onnx":
        ort = require("onnxruntime", "export")
        options = ort.SessionOptions()
        # errors come back as exceptions, which the check turns into its own message (or, for a
        # stacked LSTM that torch exported with a fixed length, into the scan route): not also as
        # onnxruntime's log lines on stderr
        options.log_severity_level = 4
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x, lengths: session.run(["logits"], dict(zip(_input_names(x), (x.numpy(), lengths.numpy()))))[0]
    loaded = torch.jit.load(str(path))

    def run(x: Tensor, lengths: Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x, lengths)[0].numpy()

    return run


def check_export(path: Path, fmt: str, reference: Callable[[Tensor, Tensor], Tensor], vocab_size: int,
                 shapes: tuple[tuple[int, int], ...] = CHECK_SHAPES, n_features: int = 0,
                 full_length: bool = False) -> float:
    """Run the written file at several batch sizes and lengths against ``reference``.

    ``n_features`` and ``full_length`` as :func:`example_inputs` (a VectorClassifier's inputs).
    Returns the largest absolute difference; ``ValueError`` if the file does
    not run at some shape (a graph frozen to the example's shape) or differs
    by more than :data:`TOLERANCE`.
    """
    run = _runner(path, fmt)
    worst = 0.0
    for k, (B, T) in enumerate(shapes):
        x, lengths = example_inputs(vocab_size, B, T, seed=k + 1, n_features=n_features, full_length=full_length)
        with torch.no_grad():
            want = reference(x, lengths).numpy()
        try:
            got = run(x, lengths)
        except Exception as e:  # onnxruntime's and TorchScript's errors have no common type
            raise ValueError(f"the exported {fmt} file does not run at batch {B}, length {T} "
                             f"({first_line(e, 160)}); refusing a fixed-shape export") from None
        if got.shape != want.shape:
            raise ValueError(f"the exported {fmt} file answers shape {got.shape} at batch {B}, length {T} "
                             f"(want {want.shape}); refusing a fixed-shape export")
        worst = max(worst, float(np.abs(got - want).max()))
        if not worst <= TOLERANCE:
            raise ValueError(f"the exported {fmt} file differs from the run's model by {worst:.3g} at batch {B}, "
                             f"length {T} (tolerance {TOLERANCE}); refusing it")
    return worst


def _metadata(cfg: Any, meta: dict[str, Any], fmt: str, encoding: dict[str, Any] | None = None) -> dict[str, str]:
    from . import __version__

    if encoding is not None:  # a VectorClassifier: vectors in, made as ``encoding`` says
        return {
            "biornn_version": __version__, "task": cfg.task, "cell": cfg.cell, "format": fmt,
            "labels": json.dumps(meta["labels"]), "encoding": json.dumps(encoding),
            "inputs": json.dumps({"vectors": "(B, T, F) float32: residue weights or normalised values (see "
                                  "encoding), zero after each length", "lengths": "(B,) int64, each in 1..T"}),
            "outputs": json.dumps({"logits": "(B, K) adjusted logits", "probabilities": "(B, K) softmax"}),
        }
    return {
        "biornn_version": __version__, "task": cfg.task, "cell": cfg.cell, "format": fmt,
        "labels": json.dumps(meta["labels"]), "vocab": json.dumps(meta["vocab"]),
        "inputs": json.dumps({"symbols": "(B, T) int64 vocabulary indices, 0 = padding, 1 = unknown",
                              "lengths": "(B,) int64, each in 1..T"}),
        "outputs": json.dumps({"logits": "(B, K) adjusted logits", "probabilities": "(B, K) softmax"}),
    }


#: file name endings that say "another format": a file must not be named for what it is not.  The onnx
#: package reads and writes by the name's ending, and these name its text encodings (a binary model
#: saved as x.json came out as JSON that onnxruntime could not load: a traceback)
WRONG_SUFFIXES = {"onnx": (".pt", ".pth", ".torchscript", ".json", ".onnxjson", ".textproto", ".prototxt",
                           ".txtpb", ".pbtxt", ".onnxtxt", ".onnxtext"),
                  "torchscript": (".onnx", ".pb")}


def _out_path(run: Path, fmt: str, out: str | os.PathLike | None) -> Path:
    path = Path(out) if out is not None else run / DEFAULT_NAMES[fmt]
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file name")
    checkpoint.refuse_overwriting(path, run)
    if path.suffix.lower() in WRONG_SUFFIXES[fmt]:
        raise ValueError(f"{path}: the {fmt} file would carry a {path.suffix} name, another format's ending; "
                         f"name it like {DEFAULT_NAMES[fmt]}, or give the matching --format")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot write into {parent}")
    return path


def _routes(exported: ExportModel) -> list[str]:
    """``native`` or ``scan`` for each layer and direction of the first member."""
    first = exported.members[0]
    return ["native" if isinstance(scan, NativeScan) else "scan" for layer in first.layers
            for scan in ([layer.fwd, layer.bwd] if isinstance(layer, BiLayer) else [layer.fwd])]


def _write(exported: ExportModel, fmt: str, x: Tensor, lengths: Tensor, path: Path, metadata: dict[str, str],
           name: str) -> None:
    """Write ``exported`` to ``path``; the exporters' own errors become one ``ValueError`` line."""
    try:
        if fmt == "onnx":
            _write_onnx(exported, x, lengths, path, metadata)
        else:
            _write_torchscript(exported, path, metadata)
    except (ValueError, OSError):  # an OSError is the disk's (full, a quota), not the model's
        raise
    except Exception as e:  # the exporters raise many types; name the model and the reason
        reason = first_line(e, 200) if str(e).strip() else ""
        raise ValueError(f"{name}: torch cannot export this model to {fmt} with a dynamic length "
                         f"({type(e).__name__}: {reason})") from None


def export_model(model: nn.Module, adjust: Tensor | None, fmt: str, path: str | os.PathLike, vocab_size: int,
                 metadata: dict[str, str] | None = None, name: str = "model", n_features: int = 0,
                 full_length: bool = False) -> dict[str, Any]:
    """Write ``model`` (a classifier) to ``path`` atomically, only if the file passes :func:`check_export`.

    Parameters
    ----------
    model : SequenceClassifier or Ensemble
        In eval mode; its input is symbols in 0..``vocab_size``-1.
    adjust : Tensor, shape (K,), or None
        Subtracted from the logits (the run's logit adjustment).
    fmt : {"onnx", "torchscript"}
    path : path
        The file to write; its directory must exist.
    vocab_size : int
        V, for the check's random inputs.
    metadata : dict of str, optional
        Stored in the file (ONNX ``metadata_props``, TorchScript ``biornn.json``).
    name : str
        What to call the model in error messages (the run directory).
    n_features : int
        F > 0 for a VectorClassifier (inputs (B, T, F)); 0 for symbols.
    full_length : bool
        Check at full lengths only (``pool="split"``: defined only there).

    Returns
    -------
    dict
        ``routes`` (``native`` or ``scan`` per layer and direction of the
        first member) and ``max_abs_diff`` (against ``model`` over :data:`CHECK_SHAPES`).
    """
    path = Path(path)

    def reference(x: Tensor, lengths: Tensor) -> Tensor:  # what biornn predict ranks by
        logits = model(x, lengths)
        return logits - adjust if adjust is not None else logits

    members = getattr(model, "members", None)
    first = members[0] if members else model
    own = getattr(first, "vocab_size", None)
    if not n_features and own is not None and vocab_size != own:
        raise ValueError(f"{name}: vocab_size={vocab_size}, but the model reads {own} symbols")
    x, lengths = example_inputs(vocab_size, *EXAMPLE_SHAPE, n_features=n_features, full_length=full_length)
    if adjust is not None:
        with torch.no_grad():
            K = model(x, lengths).shape[-1]
        if not isinstance(adjust, Tensor) or tuple(adjust.shape) != (K,):
            raise ValueError(f"{name}: adjust must be a ({K},) tensor, one value per class; "
                             f"got {getattr(adjust, 'shape', type(adjust).__name__)}")
    # a split model reads steps T // 2 - 1 and T // 2: no check at one step
    shapes = tuple(sh for sh in CHECK_SHAPES if sh[1] >= 2) if full_length else CHECK_SHAPES
    try:
        with checkpoint.atomic_path(path) as tmp:
            for native in (True, False):
                exported = build_export_model(model, adjust, fmt, native)
                routes = _routes(exported)
                try:
                    _write(exported, fmt, x, lengths, tmp, {**(metadata or {}), "routes": json.dumps(routes)}, name)
                    worst = check_export(tmp, fmt, reference, vocab_size, shapes, n_features, full_length)
                    break
                except ValueError:
                    # torch's exporters have length bugs in some native layouts (a
                    # reshape to the example's T after a stacked nn.LSTM in ONNX):
                    # the cell's own step in a loop is slower but keeps T
                    if not native or "native" not in routes:
                        raise
    except PermissionError as e:  # atomic_path's message already names the file and says what failed
        raise ValueError(f"{path}: {e.strerror}" if str(e.strerror).startswith("cannot write")
                         else f"{path}: cannot write it ({e.strerror})") from None
    return {"routes": routes, "max_abs_diff": worst}


def export_run(run: str | os.PathLike, fmt: str = "onnx", out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Export a run directory's model; the file is written only if it passes :func:`check_export`.

    Parameters
    ----------
    run : path
        A run directory written by ``biornn train`` (a classification task).
    fmt : {"onnx", "torchscript"}
    out : path, optional
        Where to write; default ``RUN/model.onnx`` or ``RUN/model.torchscript.pt``.

    Returns
    -------
    dict
        ``path``, ``format``, ``task``, ``cell``, ``routes`` (per layer and
        direction of the first member: ``native`` or ``scan``), ``inputs``,
        ``outputs``, ``max_abs_diff`` (against biornn's model over
        :data:`CHECK_SHAPES`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":  # before the (slow) load: a missing extra is the first thing to say
        for module in ("onnx", "onnxscript", "onnxruntime"):
            require(module, "export")
    from .models import Ensemble, VectorClassifier

    run_dir = checkpoint.check_run_dir(run)
    path = _out_path(run_dir, fmt, out)
    cfg, task, model, meta = load_classifier_run(run_dir)
    adjust = cfg.logit_adjustment * torch.tensor(meta["log_prior"]) if cfg.logit_adjustment else None
    first = model.members[0] if isinstance(model, Ensemble) else model
    if isinstance(first, VectorClassifier):
        encoding = vector_encoding(task, meta, first)
        result = export_model(model, adjust, fmt, path, 0, _metadata(cfg, meta, fmt, encoding), name=str(run_dir),
                              n_features=first.n_features, full_length=first.pool == "split")
        inputs = list(VECTOR_INPUT_NAMES)
    else:
        result = export_model(model, adjust, fmt, path, len(meta["vocab_obj"]), _metadata(cfg, meta, fmt),
                              name=str(run_dir))
        inputs = list(INPUT_NAMES)
    return {"path": str(path), "format": fmt, "task": cfg.task, "cell": cfg.cell, **result,
            "inputs": inputs, "outputs": list(OUTPUT_NAMES)}


def vector_encoding(task: Any, meta: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """How a VectorClassifier run makes its (T, F) inputs, for the exported file's ``encoding`` metadata.

    ``kind`` ``residues`` (``alphabet``: :meth:`biornn.data.alphabets.Alphabet.to_json`;
    ``length``: the one length the task reads, or None) or ``values``
    (``normalize``: per-feature ``mean`` and ``std``, or None); ``n_features`` F;
    ``pool``.
    """
    alphabet = meta.get("vocab_obj")
    if alphabet is not None:
        return {"kind": "residues", "alphabet": alphabet.to_json(), "length": getattr(task, "LENGTH", None),
                "n_features": alphabet.size, "pool": model.pool}
    return {"kind": "values", "normalize": meta.get("normalize"), "n_features": int(meta["n_features"]),
            "length": None, "pool": model.pool}


def load_classifier_run(run: str | os.PathLike) -> tuple[Any, Any, nn.Module, dict[str, Any]]:
    """:func:`biornn.evaluate.load_run` for a classification run; ``ValueError`` for another task.

    Export and serving read inputs and answer one class per input: they need a
    classification task and a model that is a :class:`biornn.models.SequenceClassifier`
    (names: symbols), a :class:`biornn.models.VectorClassifier` (splice,
    promoters, classify: residue weights or values), or an ensemble of one of them.
    """
    from . import tasks
    from .config import read_config
    from .evaluate import load_run
    from .models import Ensemble, SequenceClassifier, VectorClassifier

    run_dir = checkpoint.check_run_dir(run)
    cfg = read_config(run_dir / "config.json")
    task = tasks.get(cfg.task)
    if getattr(task, "KIND", "classification") != "classification" or not (
            hasattr(task, "encode_inputs") or hasattr(task, "predict_rows")):
        raise ValueError(f"{run_dir}: task {cfg.task!r} is not a classification task; "
                         f"export and serve take classifier runs (e.g. names, splice, classify)")
    cfg, task, model, meta = load_run(run_dir)
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    if not all(type(m) is type(members[0]) and isinstance(m, (SequenceClassifier, VectorClassifier))
               for m in members):
        what = type(members[0]).__name__ if members else "empty"
        raise ValueError(f"{run_dir}: a {what} model (one label per input step, not per input); export and serve "
                         f"take sequence classifiers (names, splice, promoters, classify)")
    return cfg, task, model, meta


# ---------------------------------------------------------------------------
# Using an exported file without biornn's model
# ---------------------------------------------------------------------------

def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The biornn metadata of an exported ONNX file: task, cell, labels, vocab (decoded JSON)."""
    onnx = require("onnx", "export")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except Exception as e:
        raise ValueError(f"{path}: not a readable ONNX file ({first_line(e)})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if "labels" not in props or ("vocab" not in props and "encoding" not in props):
        raise ValueError(f"{path}: not exported by biornn (no labels/vocab metadata)")
    return {k: (json.loads(v) if k in ("labels", "vocab", "encoding", "inputs", "outputs", "routes") else v)
            for k, v in props.items()}


def read_torchscript_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The biornn metadata of an exported TorchScript file (its ``biornn.json`` extra file), with the
    same decoded JSON values as :func:`read_onnx_metadata` (labels, vocab or encoding, ...)."""
    files = {"biornn.json": ""}
    try:
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except Exception as e:
        raise ValueError(f"{path}: not a readable TorchScript file ({first_line(e)})") from None
    try:
        props = json.loads(files["biornn.json"] or "{}")
    except ValueError:
        raise ValueError(f"{path}: its biornn.json is not JSON") from None
    if not isinstance(props, dict) or "labels" not in props or ("vocab" not in props and "encoding" not in props):
        raise ValueError(f"{path}: not exported by biornn (no labels/vocab metadata)")
    return {k: (json.loads(v) if isinstance(v, str) and k in ("labels", "vocab", "encoding", "inputs", "outputs",
                                                              "routes") else v)
            for k, v in props.items()}


def encode_for_export(texts: list[str], vocab: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> ``symbols`` (B, T) and ``lengths`` (B,) int64 arrays for an exported file.

    ``vocab`` is the file's ``vocab`` metadata; encoding is the run's own
    (NFC, unknown characters -> 1), so the file answers as ``biornn predict``.
    """
    from .data.batching import Vocabulary, pad_batch

    v = Vocabulary.from_json(vocab)
    x, lengths = pad_batch([v.encode(t) for t in texts])
    return x.numpy(), lengths.numpy()


def encode_vectors_for_export(inputs: list[Any], encoding: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs -> ``vectors`` (B, T, F) float32 and ``lengths`` (B,) int64 for an exported VectorClassifier.

    ``encoding`` is the file's ``encoding`` metadata.  Residues: strings over
    its alphabet (white space ignored), weights as the run makes them.
    Values: arrays of T numbers (F = 1) or of T steps of F numbers, normalised
    with the saved means and standard deviations.  ``ValueError`` naming the
    input on anything else, so the file answers as ``biornn predict``.
    """
    from .data.alphabets import Alphabet
    from .tasks.splice import pad_vectors
    from .tasks.userdata import normalize

    F, out = int(encoding["n_features"]), []
    for n, item in enumerate(inputs, start=1):
        where = f"input {n}"
        if encoding["kind"] == "residues":
            text = "".join(str(item).split())
            if not text:
                raise ValueError(f"{where}: an empty sequence")
            if encoding.get("length") and len(text) != encoding["length"]:
                raise ValueError(f"{where}: {len(text)} residues; the model reads exactly {encoding['length']}")
            out.append(Alphabet.from_json(encoding["alphabet"]).encode(text, where))
            continue
        arr = np.asarray(item, dtype=np.float64)
        if arr.size == 0:
            raise ValueError(f"{where}: an empty series")
        if arr.ndim == 1 and F == 1:
            arr = arr[:, None]  # (T,) -> (T, 1)
        if arr.ndim != 2 or arr.shape[1] != F or len(arr) == 0:
            raise ValueError(f"{where}: a series of shape {arr.shape}; the model reads (T, {F})")
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}: NaN or infinite values are not accepted")
        out.append(normalize(arr, encoding.get("normalize"), where))
    x, lengths = pad_vectors(out)
    return x.numpy(), lengths.numpy()
