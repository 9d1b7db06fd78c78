r"""The one loop over time: layers, directions, variable lengths, truncation, traces.

Everything that iterates over time steps lives here (DESIGN principle 3).  A
:class:`Recurrent` stacks ``num_layers`` layers of one cell type, each
optionally bidirectional, and unrolls them over a batch of sequences:

.. math::

    s^{(l)}_t = \text{cell}^{(l)}\big(x^{(l)}_t,\; s^{(l)}_{t-1}\big), \qquad
    x^{(l+1)}_t = \big[\,\text{out}(s^{(l)}_t);\ \text{out}(\overleftarrow{s}^{(l)}_t)\,\big]

Backpropagation through time is autograd through this unrolled graph; the
hand-written version of the same gradients is :mod:`biornn.reference`.

Parameters are named exactly like ``torch.nn.RNN``/``LSTM``/``GRU``'s
(``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, and
``..._reverse`` for the backward direction), so a ``state_dict`` copies between
a biornn network and its torch twin in both directions.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import fast
from .cells import CELLS, Cell, make_cell
from .cells.base import check_flag, check_input, check_sizes, coerce_state

Traces = list[dict[str, Tensor]]


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of a batch-first tensor within its own length.

    Position t < L_b maps to L_b - 1 - t; padding stays in place.  Applying it
    twice gives ``x`` back.

    Parameters
    ----------
    x : Tensor, shape (B, T, ...)
    lengths : Tensor of int, shape (B,), or None (every sequence has length T)

    Returns
    -------
    Tensor, shape (B, T, ...)
    """
    if lengths is None:
        return x.flip(1)
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
    L = lengths.to(x.device).unsqueeze(1)  # (B, 1)
    index = torch.where(t < L, L - 1 - t, t)  # (B, T)
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def probe_state(cell: Cell, state: NamedTuple, probe: Tensor) -> NamedTuple:
    """``state`` (what ``cell.step`` returned) with ``probe`` (B, H) added to its hidden state ``h``.

    A cell whose state holds fields computed from ``h`` within the same step
    (:class:`~biornn.cells.FullyRecurrentCell`: the output units o_t read s_t)
    defines ``probe_state(state, probe)``, which adds the probe to ``h`` and
    recomputes those fields from it, so that the probe sits on ``h`` before
    anything reads it.  For the other cells nothing in the state is derived from
    ``h``, and the probe is simply added to it.

    Parameters
    ----------
    cell : Cell
    state : cell.state_type, each field (B, size)
    probe : Tensor, shape (B, H)

    Returns
    -------
    cell.state_type
    """
    own = getattr(cell, "probe_state", None)
    if own is not None:
        return own(state, probe)
    return state._replace(h=state.h + probe)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_own_cell(cell: Cell) -> None:
    """A cell's weights must be its own direct parameters, as the built-in cells' are: Recurrent
    registers those under torch.nn's names, and only those (a submodule's weights or a buffer would
    be left out of parameters(), state_dict() and .to())."""
    name = type(cell).__name__
    held = [n for n, m in cell.named_children() if any(True for _ in m.parameters()) or any(True for _ in m.buffers())]
    if held:
        raise ValueError(f"cell {name}: holds its weights in a submodule ({held[0]!r}); a cell's weights must be "
                         f"its own nn.Parameter attributes (e.g. self.weight_ih = nn.Parameter(...))")
    if cell._buffers:
        raise ValueError(f"cell {name}: has a buffer ({next(iter(cell._buffers))!r}); a cell may hold only "
                         f"nn.Parameter attributes (a fixed tensor: a Parameter with requires_grad=False)")
    if not any(p is not None for p in cell._parameters.values()):
        raise ValueError(f"cell {name}: has no parameters; a cell's weights are its own nn.Parameter attributes")


def _to_dtype(value: Any, dtype: torch.dtype) -> Any:
    """``value`` (a tensor, a state tuple or NamedTuple of them, or anything else) with its floating
    tensors in ``dtype``; what is not a floating tensor stays as it is, for the checks to judge."""
    if isinstance(value, Tensor):
        return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_to_dtype(v, dtype) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_to_dtype(v, dtype) for v in value)
    return value


class Recurrent(nn.Module):
    r"""A stack of recurrent layers of one cell type, unrolled over time.

    Parameters
    ----------
    cell : str or Cell subclass
        A cell name -- ``elman``, ``elman-relu``, ``irnn``, ``fully-recurrent``,
        ``lstm1997``, ``lstm``, ``lstm-peephole``, ``gru`` -- or a
        :class:`biornn.cells.Cell` subclass.
    input_size : int
        I, input features per time step.
    hidden_size : int
        H, units per layer and direction.
    num_layers : int
        Stacked layers; layer l+1 reads layer l's outputs (both directions concatenated).
    bidirectional : bool
        Add a backward direction to every layer; outputs are (…, 2 * H).
    batch_first : bool
        Inputs and outputs are (B, T, F) if True (the default), else (T, B, F).
    dropout : float
        Dropout on the outputs of every layer but the last, in training (as torch.nn).
    truncate : int, optional
        Truncated BPTT: detach the state every ``truncate`` steps, so gradients
        flow back at most that far.  Can be overridden per call.
    init : str or sequence of str, optional
        An initialisation scheme from :mod:`biornn.init` (``default``,
        ``identity``, ``irnn``, ``orthogonal``, ``xavier``), or one per layer.
        ``irnn`` cells default to ``irnn``, the others to PyTorch's default.
    fast : bool
        Use a fast path when no traces are asked for (:mod:`biornn.fast`):
        torch's fused kernels where the cell has the same maths, else the
        hand-written BPTT (compiled loops when built); results equal the step
        loop.  :meth:`path` says which route a call takes.
    **cell_options
        Passed to every cell: ``nonlinearity``, ``output_size``,
        ``output_nonlinearity``, ``cells_per_block``, ``g``, ``h``,
        ``peepholes``, ``bias``.

    Examples
    --------
    >>> rnn = Recurrent("lstm1997", input_size=1, hidden_size=16)
    >>> x = torch.randn(4, 100, 1)                       # (B, T, I)
    >>> out, (h, c) = rnn(x, lengths=torch.tensor([100, 80, 50, 7]))
    >>> out.shape, h.shape                               # (B, T, H), (L*D, B, H)
    (torch.Size([4, 100, 16]), torch.Size([1, 4, 16]))
    """

    def __init__(
        self,
        cell: str | type[Cell],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        batch_first: bool = True,
        dropout: float = 0.0,
        *,
        truncate: int | None = None,
        init: str | Sequence[str] | None = None,
        fast: bool = True,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size)
        _positive_int("num_layers", num_layers)
        for flag, value in (("bidirectional", bidirectional), ("batch_first", batch_first), ("fast", fast)):
            check_flag(flag, value)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if truncate is not None:
            _positive_int("truncate", truncate)
        if isinstance(cell, str):
            if cell not in CELLS:
                raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {cell!r}")
            self.cell_name = cell

            def build(i: int) -> Cell:
                return make_cell(cell, i, hidden_size, **cell_options)

            default_init = CELLS[cell][2]
        elif isinstance(cell, type) and issubclass(cell, Cell):
            self.cell_name = cell.__name__

            def build(i: int) -> Cell:
                try:
                    return cell(i, hidden_size, **cell_options)
                except TypeError as e:
                    raise ValueError(f"cell {cell.__name__}: {e}") from None

            default_init = None
        else:
            raise ValueError(f"cell must be a cell name or a Cell subclass, got {cell!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.batch_first = bidirectional, batch_first
        self.dropout, self.truncate, self.fast = float(dropout), truncate, fast
        self.cell_options = dict(cell_options)
        D = 2 if self.bidirectional else 1
        cells: list[list[Cell]] = []
        layer_input = input_size
        for _ in range(num_layers):
            row = [build(layer_input) for _ in range(D)]
            cells.append(row)
            layer_input = row[0].output_size * D
        self.output_size = layer_input
        _check_own_cell(cells[0][0])
        # The cells are kept in a plain list, not as submodules: their
        # parameters are registered here under torch.nn's names instead, and
        # every call runs on views of the cells bound to them (see _bound).
        self._cells = cells
        for name in self._torch_names():
            layer, direction, pname = name
            self.register_parameter(self._param_name(*name), getattr(cells[layer][direction], pname))
        self._init_scheme = init if init is not None else default_init
        if self._init_scheme is not None:
            from .init import initialize

            initialize(self, self._init_scheme)

    def reset_parameters(self) -> None:
        """Initialise every weight afresh, as at construction: each cell's own default (PyTorch's
        uniform), then the ``init`` scheme given to the constructor or the cell's default (``irnn``'s
        identity), as ``torch.nn.LSTM.reset_parameters`` does for its module."""
        for row in self.cells:
            for cell in row:
                cell.reset_parameters()
        scheme = getattr(self, "_init_scheme", None)  # (a module pickled by an older biornn has none)
        if scheme is not None:
            from .init import initialize

            initialize(self, scheme)

    # -- parameters under torch.nn's names ---------------------------------
    def _torch_names(self) -> list[tuple[int, int, str]]:
        return [
            (layer, direction, pname)
            for layer, row in enumerate(self._cells)
            for direction, cell in enumerate(row)
            for pname, p in cell._parameters.items()
            if p is not None
        ]

    @staticmethod
    def _param_name(layer: int, direction: int, pname: str) -> str:
        return f"{pname}_l{layer}{'_reverse' if direction else ''}"

    def _bound(self, cell: Cell, layer: int, direction: int) -> Cell:
        """A shallow copy of ``cell`` whose parameters are this module's, as they are now.

        Read through ``getattr`` so that parametrizations (e.g.
        ``torch.nn.utils.parametrizations.orthogonal``) and pruning apply; a
        fresh copy per call, so nothing shared is mutated (``DataParallel``
        replicas, ``load_state_dict(assign=True)``, ``.to()`` all just work).
        """
        view = object.__new__(type(cell))
        view.__dict__.update(cell.__dict__)
        view.__dict__["_parameters"] = {
            pname: (getattr(self, self._param_name(layer, direction, pname)) if p is not None else None)
            for pname, p in cell._parameters.items()
        }
        return view

    @property
    def cells(self) -> list[list[Cell]]:
        """The cells, ``cells[layer][direction]``, using this module's parameters.

        Each access returns fresh views; in-place changes to their parameters
        (as :mod:`biornn.init` makes) change this module's.
        """
        return [
            [self._bound(cell, layer, direction) for direction, cell in enumerate(row)]
            for layer, row in enumerate(self._cells)
        ]

    @property
    def state_type(self) -> type:
        return self._cells[0][0].state_type

    def extra_repr(self) -> str:
        s = f"{self.cell_name!r}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if not self.batch_first:
            s += ", batch_first=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.truncate:
            s += f", truncate={self.truncate}"
        if self.cell_options:
            s += ", " + ", ".join(f"{k}={v!r}" for k, v in self.cell_options.items())
        return s + f", path={self.path()!r}"

    # -- argument checks ---------------------------------------------------
    def _check_lengths(self, lengths: Any, B: int, T: int) -> Tensor | None:
        if lengths is None:
            return None
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError("lengths must be a 1-D sequence of integers") from None
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
        if lengths.dim() != 1 or lengths.shape[0] != B:
            raise ValueError(f"lengths must have shape ({B},) (one per sequence), got {tuple(lengths.shape)}")
        lengths = lengths.to(torch.int64)
        if lengths.numel() == 0:  # an empty batch: nothing to pad
            return None
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo <= 0 or hi > T:
            raise ValueError(f"lengths must lie in 1..{T} (the sequence length T), got min {lo}, max {hi}")
        if lo == T:  # nothing is padded
            return None
        return lengths

    def _check_state(self, state: Any, B: int, like: Tensor, unbatched: bool) -> list[Tensor]:
        """The initial state's fields, each (num_layers * num_directions, B, size)."""
        cell = self._cells[0][0]
        LD = self.num_layers * (2 if self.bidirectional else 1)
        if state is None:
            return [torch.zeros(LD, B, n, dtype=like.dtype, device=like.device) for n in cell.state_sizes()]
        shapes = [((LD, n),) if unbatched else ((LD, B, n),) for n in cell.state_sizes()]
        fields = coerce_state(state, cell.state_type, shapes, like)
        return [f.unsqueeze(1) for f in fields] if unbatched else fields

    def _check_probes(self, probes: Any, x: Tensor, unbatched: bool, D: int) -> list[Tensor]:
        """The probes as batch-first (B, T, H) tensors, one per layer and direction."""
        LD = self.num_layers * D
        if not isinstance(probes, (list, tuple)) or len(probes) != LD:
            raise ValueError(f"probes must be a list of {LD} tensors (one per layer and direction)")
        B, T = x.shape[:2]
        out = []
        for k, p in enumerate(probes):
            if not isinstance(p, Tensor):
                raise ValueError(f"probes[{k}] must be a tensor, got {type(p).__name__}")
            if unbatched:
                p = p.unsqueeze(0)
            elif not self.batch_first:
                p = p.transpose(0, 1)
            if tuple(p.shape) != (B, T, self.hidden_size) or p.dtype != x.dtype:
                raise ValueError(
                    f"probes[{k}] must be {x.dtype} of the input's layout with {self.hidden_size} features, "
                    f"got {p.dtype} {tuple(p.shape)}"
                )
            out.append(p)
        return out

    # -- the loop ----------------------------------------------------------
    @staticmethod
    def scan(
        cell: Cell,
        x: Tensor,
        state: NamedTuple,
        mask: Tensor | None = None,
        truncate: int | None = None,
        traces: bool = False,
        probe: Tensor | None = None,
    ) -> tuple[Tensor, NamedTuple, dict[str, Tensor]]:
        """Run one cell over time, step by step: the definition of the recurrence.

        Parameters
        ----------
        cell : Cell
        x : Tensor, shape (B, T, I)
            Batch-first input.
        state : cell.state_type
            Initial state, each field (B, size).
        mask : Tensor of bool, shape (B, T), optional
            True at real steps.  At a padded step the state is carried
            unchanged and the output (and every trace) is zero.
        truncate : int, optional
            Detach the state before steps k, 2k, ... (truncated BPTT).
        traces : bool
            Also return every step's state fields and gate activations.
        probe : Tensor, shape (B, T, H), optional
            Added to the hidden state ``h`` of each step before anything reads
            it -- the cell's output, the next step, and any state field
            computed from ``h`` within the step (the fully recurrent net's
            output units): ``h_t <- h_t + p_t`` (:func:`probe_state`).  Called
            with zeros it changes no value, but puts every ``h_t`` on the
            autograd path, so that ``dL/dp_t = dL/dh_t``, the total
            derivative through all later steps (used by
            :mod:`biornn.diagnostics`).  At padded steps it is ignored.

        Returns
        -------
        out : Tensor, shape (B, T, O)
        state : cell.state_type, the state after each sequence's last real step
        traces : dict of name -> Tensor (B, T, size); empty unless ``traces``
        """
        outs: list[Tensor] = []
        record: dict[str, list[Tensor]] = {}
        # unbind, not x[:, t]: the backward of T separate indexings would write T
        # full-size zero tensors (O(T^2)); unbind's backward is one stack
        probes = probe.unbind(1) if probe is not None else None
        for t, x_t in enumerate(x.unbind(1)):
            if truncate and t and t % truncate == 0:
                if mask is None:
                    state = type(state)(*(s.detach() for s in state))
                else:  # a finished sequence's final state keeps its gradient
                    m = mask[:, t].unsqueeze(1)
                    state = type(state)(*(torch.where(m, s.detach(), s) for s in state))
            new, gates = cell.step(x_t, state)
            if probes is not None:  # h_t + p_t: a handle on dL/dh_t (zero in value)
                new = probe_state(cell, new, probes[t])
            out = cell.output(new)
            if mask is not None:
                m = mask[:, t].unsqueeze(1)  # (B, 1)
                new = type(new)(*(torch.where(m, n, s) for n, s in zip(new, state)))
                out = torch.where(m, out, 0.0)
            state = new
            outs.append(out)
            if traces:
                for name, value in (*zip(state._fields, state), *gates.items()):
                    if mask is not None:
                        value = torch.where(m, value, 0.0)
                    record.setdefault(name, []).append(value)
        return torch.stack(outs, dim=1), state, {k: torch.stack(v, dim=1) for k, v in record.items()}

    def uses_fast_path(
        self, lengths: Any = None, return_traces: bool = False, truncate: int | None = None
    ) -> bool:
        """Whether a call with these arguments runs on a fast path, not the step loop.

        Every built-in cell has a fast path (:mod:`biornn.fast`: torch's fused
        kernels or the hand-written BPTT) for every call without traces; the
        step loop runs when ``fast`` is off, traces are asked for, or the cell
        is a class biornn does not know.  :meth:`path` says which route.
        """
        return self.path(lengths, return_traces, truncate) != "loop"

    def path(
        self, lengths: Any = None, return_traces: bool = False, truncate: int | None = None, steps: int | None = None
    ) -> str:
        """Which route a call with these arguments takes: ``"fused"``, ``"native"``, ``"bptt"`` or ``"loop"``.

        ``fused``: torch's fused kernels; ``native``: biornn's hand-written
        BPTT with compiled loops (:mod:`biornn.native`); ``bptt``: the same BPTT
        as Python loops (:mod:`biornn.fast`); ``loop``: the step loop.
        ``steps`` is the call's sequence length, if known.  (All layers use
        one cell type; a cell that has a fused kernel takes it unless the call
        combines truncation with ``lengths``, or is a single LSTM step; the
        compiled loops serve on the CPU when built.)
        """
        truncate = self.truncate if truncate is None else truncate
        if not self.fast or return_traces:
            return "loop"
        if lengths is not None and steps is not None:
            try:
                if int(torch.as_tensor(lengths).min()) >= steps:
                    lengths = None  # nothing is padded: forward drops them too
            except (TypeError, ValueError, RuntimeError):
                pass  # forward refuses them
        first = next(self.parameters())
        methods = {fast.method(c, lengths, truncate, steps, first.device) for row in self._cells for c in row}
        if None in methods:
            return "loop"
        how = methods.pop() if len(methods) == 1 else "bptt"
        if how == "native" and first.dtype not in (torch.float32, torch.float64):
            return "bptt"  # as fast.scan does: the compiled loops take float32 and float64
        return how

    def forward(
        self,
        x: Tensor,
        state: Any = None,
        lengths: Tensor | Sequence[int] | None = None,
        *,
        return_traces: bool = False,
        truncate: int | None = None,
        probes: Sequence[Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]] | tuple[Tensor, tuple[Tensor, ...], Traces]:
        """Unroll the network over a batch of sequences.

        Parameters
        ----------
        x : Tensor, shape (B, T, I) (or (T, B, I) if not batch_first, or (T, I) unbatched)
        state : NamedTuple or tuple of Tensor or Tensor, optional
            Initial state: each field (num_layers * num_directions, B, size),
            in torch.nn's order (layer-major, forward before reverse).  A
            single-field state (Elman, GRU) may be a bare tensor.  Default zeros.
        lengths : Tensor of int or sequence of int, shape (B,), optional
            True lengths, each in 1..T.  Outputs past a sequence's end are
            zero and the final state is the state at its last real step.
        return_traces : bool
            Also return every step's states and gate activations (step loop only).
        truncate : int, optional
            Override the module's truncated-BPTT length for this call.
        probes : sequence of Tensor, optional
            One per layer and direction (index ``layer * D + direction``), each
            shaped like ``x`` with H features: (B, T, H), (T, B, H) if not
            batch_first, (T, H) unbatched.  Added to each step's hidden state
            (see :meth:`scan`); zeros give ``dL/dh_t`` as the gradient of the
            probe, for :mod:`biornn.diagnostics`.  Runs the step loop.

        Returns
        -------
        out : Tensor, shape (B, T, D * O)
            The last layer's outputs, both directions concatenated.
        state : cell.state_type
            Final state, each field (num_layers * num_directions, B, size).
        traces : list of dict, only if ``return_traces``
            ``traces[layer * D + direction][name]`` of shape (B, T, size), for
            ``name`` in the state fields (``h``, ``c``, ``o``) and the cell's
            ``gate_names``; zero past each sequence's end.
        """
        first = next(self.parameters())
        dtype = first.dtype
        if isinstance(x, Tensor) and x.device != first.device:
            raise ValueError(f"input is on {x.device} but the parameters are on {first.device}; move one of them "
                             f"(e.g. x.to({str(first.device)!r}))")
        if isinstance(x, Tensor) and fast._autocast(x.device.type):
            # under autocast a layer before may hand over its lower-precision output, and a fused
            # kernel returns its state in autocast's dtype: read both in the parameters' dtype (the
            # fused kernels go to autocast's dtype themselves)
            x, state = _to_dtype(x, dtype), _to_dtype(state, dtype)
        check_input(x, self.input_size, (2, 3), dtype)
        check_flag("return_traces", return_traces)
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0)
        elif not self.batch_first:
            x = x.transpose(0, 1)
        B, T = x.shape[:2]
        if T == 0:
            raise ValueError("input has no time steps (T = 0)")
        if truncate is not None:
            _positive_int("truncate", truncate)
        truncate = self.truncate if truncate is None else truncate
        # decided on the lengths as given, so that uses_fast_path(lengths) tells the truth
        # (an empty batch: the step loop, whose every operation takes zero rows)
        use_fast = self.uses_fast_path(lengths, return_traces, truncate) and probes is None and B > 0
        D = 2 if self.bidirectional else 1
        if probes is not None:
            probes = self._check_probes(probes, x, unbatched, D)
        lengths = self._check_lengths(lengths, B, T)
        state_in = self._check_state(state, B, x, unbatched)
        cells = self.cells
        state_type = cells[0][0].state_type

        mask = None
        if lengths is not None:
            mask = torch.arange(T, device=x.device).unsqueeze(0) < lengths.to(x.device).unsqueeze(1)
            # padding never reaches the maths: not even a NaN in the padding can
            # leak into a gradient through 0 * NaN
            x = torch.where(mask.unsqueeze(2), x, 0.0)

        layer_in = x
        finals: list[NamedTuple] = []
        traces: Traces = []
        # every layer and direction on torch's multi-layer kernel in one call, where it serves them all
        stacked = use_fast and fast.stacks(cells, lengths, truncate, T, x.device)
        for layer in range(0 if stacked else self.num_layers):
            outs = []
            for direction in range(D):
                k = layer * D + direction
                cell = cells[layer][direction]
                s0 = state_type(*(s[k] for s in state_in))
                inp = layer_in if direction == 0 else reverse_padded(layer_in, lengths)
                if use_fast:
                    out, s, tr = *fast.scan(cell, inp, s0, lengths, truncate), {}
                else:
                    probe = None
                    if probes is not None:
                        probe = probes[k] if direction == 0 else reverse_padded(probes[k], lengths)
                    out, s, tr = self.scan(cell, inp, s0, mask, truncate, return_traces, probe)
                if direction == 1:
                    out = reverse_padded(out, lengths)
                    tr = {name: reverse_padded(v, lengths) for name, v in tr.items()}
                outs.append(out)
                finals.append(s)
                traces.append(tr)
            layer_in = outs[0] if D == 1 else torch.cat(outs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                # contiguous: dropout draws its mask in memory order, and the fused
                # kernels return time-major memory; this way both paths drop the same units
                layer_in = F.dropout(layer_in.contiguous(), self.dropout, training=True)

        if stacked:
            out, fields = fast.fused_stack(cells, x, state_in, lengths, self.dropout if self.training else 0.0)
            final = state_type(*fields)
            traces = [{} for _ in range(self.num_layers * D)]
        else:
            out = layer_in
            final = state_type(*(torch.stack([s[j] for s in finals]) for j in range(len(state_type._fields))))
        if unbatched:
            out = out.squeeze(0)
            final = state_type(*(f.squeeze(1) for f in final))
            traces = [{n: v.squeeze(0) for n, v in tr.items()} for tr in traces]
        elif not self.batch_first:
            out = out.transpose(0, 1)
            traces = [{n: v.transpose(0, 1) for n, v in tr.items()} for tr in traces]
        if return_traces:
            return out, final, traces
        return out, final
