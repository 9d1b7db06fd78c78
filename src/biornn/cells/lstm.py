r"""Long short-term memory: the original 1997 cell and the forget-gate cell.

Two different recurrences carry the name LSTM, and biornn keeps them apart.

**LSTM1997Cell** -- Hochreiter & Schmidhuber (1997), "Long short-term memory",
Neural Computation 9(8):1735-1780.  Input gate and output gate, *no forget
gate*: the memory cell is a constant error carousel (CEC), a self-connection
of fixed weight 1.0,

.. math::

    i_t &= \sigma(W_{xi} x_t + W_{hi} h_{t-1} + b_i)       &\text{input gate}\\
    z_t &= g(W_{xz} x_t + W_{hz} h_{t-1} + b_z)            &\text{cell input}\\
    o_t &= \sigma(W_{xo} x_t + W_{ho} h_{t-1} + b_o)       &\text{output gate}\\
    c_t &= z_t \odot i_t + c_{t-1}                          &\text{the CEC}\\
    y_t &= h(c_t) \odot o_t                                 &\text{cell output, also written } h_t

The carousel's own derivative is :math:`\partial c_t / \partial c_{t-1} = 1`.  In the
paper's truncated gradient, which cuts the paths from :math:`c_{t-1}` through
:math:`h_{t-1}` into the gates and the cell input, error therefore flows back along it
exactly constant.  Under full BPTT (what autograd and :mod:`biornn.reference` compute)
those paths add to it: at initialisation the norm of :math:`\partial L / \partial c_t` grows going
back and that of :math:`\partial L / \partial h_t` dips by over an order of magnitude within a
few steps of the loss before it recovers (``biornn diagnose gradients``; docs/claims.md,
section 1), so the error is not lost over long lags, but it is not carried back
undiminished either.  On a continuous stream :math:`c_t` grows without bound, which is
what the forget gate was added to fix.

**LSTMCell** -- Gers, Schmidhuber & Cummins (2000), "Learning to forget:
continual prediction with LSTM", Neural Computation 12(10):2451-2471, adds the
forget gate; Gers & Schmidhuber (2000), "Recurrent nets that time and count",
IJCNN, add peephole connections from the cell state to the gates:

.. math::

    i_t &= \sigma(W_{xi} x_t + W_{hi} h_{t-1} + w_{ci} \odot c_{t-1} + b_i) \\
    f_t &= \sigma(W_{xf} x_t + W_{hf} h_{t-1} + w_{cf} \odot c_{t-1} + b_f) \\
    g_t &= \tanh(W_{xg} x_t + W_{hg} h_{t-1} + b_g) \\
    c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
    o_t &= \sigma(W_{xo} x_t + W_{ho} h_{t-1} + w_{co} \odot c_t + b_o) \\
    h_t &= o_t \odot \tanh(c_t)

(the peephole terms :math:`w_{c\cdot}` only with ``peepholes=True``; without
them this is exactly ``torch.nn.LSTMCell``).  Keras' documentation calls this
forget-gate cell "Hochreiter 1997"; it is not.

Both use PyTorch's layout: ``weight_ih`` stacks the gates' input weights
row-wise in the order i, f, g, o (the 1997 cell, having no f, uses i, g, o),
``weight_hh`` likewise, and each bias is split into ``bias_ih + bias_hh``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Cell, check_flag, check_sizes, scaled_sigmoid_g, scaled_sigmoid_h

SQUASHINGS = {
    "g": {"tanh": torch.tanh, "scaled-sigmoid": scaled_sigmoid_g},
    "h": {"tanh": torch.tanh, "scaled-sigmoid": scaled_sigmoid_h},
}


class LSTMState(NamedTuple):
    """State of an LSTM cell: output ``h`` (B, H) and cell state ``c`` (B, H)."""

    h: Tensor
    c: Tensor


class LSTM1997Cell(Cell):
    r"""The original LSTM (Hochreiter & Schmidhuber 1997): no forget gate.

    .. math::

        c_t = z_t \odot i_t + c_{t-1}, \qquad h_t = h(c_t) \odot o_t

    with :math:`i_t, o_t` sigmoid gates and :math:`z_t = g(\cdot)` the cell
    input (full equations in the module docstring).

    The paper's *memory cell blocks*: ``cells_per_block`` = S memory cells share
    one input gate and one output gate (a "memory cell block of size S",
    Sec. 4 of the paper; in the course slides, "memory blocks allow cells to
    share the same gates").  With H = ``hidden_size`` memory cells there are H/S blocks,
    and the parameters stack the rows [input gates (H/S), cell inputs (H),
    output gates (H/S)]: ``weight_ih`` is (2H/S + H, I), which is PyTorch's
    (G*H, I) with G = 3 when S = 1.

    Parameters
    ----------
    input_size : int
        I, the number of input features.
    hidden_size : int
        H, the number of memory cells.
    bias : bool
        Whether to have ``bias_ih`` and ``bias_hh``.
    cells_per_block : int
        S, memory cells per block (default 1); must divide ``hidden_size``.
    g, h : {"tanh", "scaled-sigmoid"}
        The squashing of the cell input and of the cell state.  The paper's
        functions are ``g(x) = 4 sigmoid(x) - 2`` and ``h(x) = 2 sigmoid(x) - 1``
        ("scaled-sigmoid"); tanh (the default) is the modern choice.

    Examples
    --------
    >>> cell = LSTM1997Cell(3, 8, cells_per_block=2, g="scaled-sigmoid", h="scaled-sigmoid")
    >>> state = cell(torch.randn(4, 3))
    >>> state.c.shape
    torch.Size([4, 8])
    """

    state_type = LSTMState
    gate_names = ("input_gate", "cell_input", "output_gate")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        cells_per_block: int = 1,
        g: str = "tanh",
        h: str = "tanh",
    ) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size)
        check_flag("bias", bias)
        if (
            isinstance(cells_per_block, bool)
            or not isinstance(cells_per_block, int)
            or cells_per_block <= 0
            or hidden_size % cells_per_block
        ):
            raise ValueError(
                f"cells_per_block must be a positive integer dividing hidden_size={hidden_size}, "
                f"got {cells_per_block!r}"
            )
        for name, value in (("g", g), ("h", h)):
            if not isinstance(value, str) or value not in SQUASHINGS[name]:
                raise ValueError(f"{name} must be one of {sorted(SQUASHINGS[name])}, got {value!r}")
        self.g_name, self.h_name = g, h
        self.g, self.h = SQUASHINGS["g"][g], SQUASHINGS["h"][h]
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.cells_per_block = cells_per_block
        self.num_blocks = hidden_size // cells_per_block
        self.bias = bias
        rows = 2 * self.num_blocks + hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(rows))
            self.bias_hh = nn.Parameter(torch.empty(rows))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def gate_slices(self) -> dict[str, slice]:
        """Rows of ``weight_ih``/``weight_hh``/biases that belong to each gate."""
        nb, H = self.num_blocks, self.hidden_size
        return {"i": slice(0, nb), "g": slice(nb, nb + H), "o": slice(nb + H, 2 * nb + H)}

    def step(self, x: Tensor, state: LSTMState) -> tuple[LSTMState, dict[str, Tensor]]:
        nb, H, S = self.num_blocks, self.hidden_size, self.cells_per_block
        a = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(state.h, self.weight_hh, self.bias_hh)
        i = torch.sigmoid(a[:, :nb])  # (B, H/S) one input gate per block
        z = self.g(a[:, nb : nb + H])  # (B, H) cell input
        o = torch.sigmoid(a[:, nb + H :])  # (B, H/S) one output gate per block
        if S > 1:  # every cell of a block reads its block's gates
            i_cells, o_cells = i.repeat_interleave(S, dim=1), o.repeat_interleave(S, dim=1)
        else:
            i_cells, o_cells = i, o
        c = z * i_cells + state.c  # the constant error carousel: dc_t/dc_{t-1} = 1
        h = self.h(c) * o_cells
        return LSTMState(h, c), {"input_gate": i, "cell_input": z, "output_gate": o}

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, cells_per_block={self.cells_per_block}, "
            f"g={self.g_name!r}, h={self.h_name!r}"
        )


class LSTMCell(Cell):
    r"""LSTM with a forget gate (Gers et al. 2000), optionally with peepholes.

    .. math::

        c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh(c_t)

    (full equations in the module docstring).  Without peepholes this is
    ``torch.nn.LSTMCell`` to the bit layout: ``weight_ih`` (4H, I) with gate
    rows i, f, g, o.

    Parameters
    ----------
    input_size : int
        I, the number of input features.
    hidden_size : int
        H, the number of memory cells.
    bias : bool
        Whether to have ``bias_ih`` and ``bias_hh``.
    peepholes : bool
        Add the diagonal peephole weights ``weight_ci``, ``weight_cf``
        (from :math:`c_{t-1}` to the input and forget gates) and ``weight_co``
        (from :math:`c_t` to the output gate), each (H,) (Gers & Schmidhuber 2000).

    Examples
    --------
    >>> cell = LSTMCell(3, 8, peepholes=True)
    >>> h, c = cell(torch.randn(4, 3))
    >>> h.shape
    torch.Size([4, 8])
    """

    state_type = LSTMState
    gate_names = ("input_gate", "forget_gate", "cell_input", "output_gate")

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, peepholes: bool = False
    ) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size)
        check_flag("peepholes", peepholes)
        check_flag("bias", bias)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.bias, self.peepholes = bias, peepholes
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * H))
            self.bias_hh = nn.Parameter(torch.empty(4 * H))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if self.peepholes:
            self.weight_ci = nn.Parameter(torch.empty(H))
            self.weight_cf = nn.Parameter(torch.empty(H))
            self.weight_co = nn.Parameter(torch.empty(H))
        self.reset_parameters()

    def gate_slices(self) -> dict[str, slice]:
        """Rows of ``weight_ih``/``weight_hh``/biases that belong to each gate."""
        H = self.hidden_size
        return {g: slice(k * H, (k + 1) * H) for k, g in enumerate("ifgo")}

    def step(self, x: Tensor, state: LSTMState) -> tuple[LSTMState, dict[str, Tensor]]:
        a = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(state.h, self.weight_hh, self.bias_hh)
        a_i, a_f, a_g, a_o = a.chunk(4, dim=1)  # each (B, H)
        if self.peepholes:
            a_i = a_i + self.weight_ci * state.c
            a_f = a_f + self.weight_cf * state.c
        i, f, g = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g)
        c = f * state.c + i * g
        if self.peepholes:
            a_o = a_o + self.weight_co * c
        o = torch.sigmoid(a_o)
        h = o * torch.tanh(c)
        return LSTMState(h, c), {"input_gate": i, "forget_gate": f, "cell_input": g, "output_gate": o}

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, peepholes={self.peepholes}"
