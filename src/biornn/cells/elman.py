r"""The simple recurrent networks: Elman's partly recurrent net and the fully recurrent net.

Elman (1990), "Finding structure in time", Cognitive Science 14:179-211.  In
the usual textbook notation, with the input-to-hidden weights :math:`W_{xh}` and
the recurrent (context-to-hidden) weights :math:`W_{hh}`:

.. math::

    h_t = f_h(W_{xh} x_t + W_{hh} h_{t-1} + b), \qquad y_t = f_o(W_{hy} h_t + b_y)

The output layer :math:`y_t = f_o(W_{hy} h_t + b_y)` is not part of the cell: it
is the model's read-out, put on top of the recurrence (biornn's models use a
linear read-out, :math:`f_o` the identity, with the softmax or sigmoid in the loss).  Only in the fully
recurrent net below are output units part of the recurrence.

PyTorch's layout: ``weight_ih`` is :math:`W_{xh}` (H, I), ``weight_hh`` is
:math:`W_{hh}` (H, H), and the bias :math:`b` is split into ``bias_ih + bias_hh``
so that weights copy to and from ``torch.nn.RNN`` unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Cell, activation, check_flag, check_sizes


class ElmanState(NamedTuple):
    """State of an Elman cell: ``h`` (B, H), the hidden (context) units."""

    h: Tensor


class ElmanCell(Cell):
    r"""Elman's partly recurrent cell, one time step.

    .. math::

        h_t = f_h(W_{xh} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    With ``nonlinearity="tanh"`` or ``"relu"`` this is ``torch.nn.RNNCell``;
    ``"sigmoid"`` is Elman's original logistic unit; ``"identity"`` makes the
    linear recurrence used to study gradient flow.

    Parameters
    ----------
    input_size : int
        I, the number of input features.
    hidden_size : int
        H, the number of hidden (and context) units.
    bias : bool
        Whether to have ``bias_ih`` and ``bias_hh`` (default True).
    nonlinearity : {"tanh", "relu", "sigmoid", "identity"}
        The hidden activation :math:`f_h`.

    Examples
    --------
    >>> cell = ElmanCell(3, 8)
    >>> state = cell(torch.randn(2, 3))          # zero initial state
    >>> state.h.shape
    torch.Size([2, 8])
    """

    state_type = ElmanState
    gate_names = ()

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"
    ) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size)
        check_flag("bias", bias)
        self.f_h = activation(nonlinearity, "nonlinearity")
        self.nonlinearity = nonlinearity
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.bias = bias
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # W_xh (H, I)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))  # W_hh (H, H)
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(hidden_size))
            self.bias_hh = nn.Parameter(torch.empty(hidden_size))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def step(self, x: Tensor, state: ElmanState) -> tuple[ElmanState, dict[str, Tensor]]:
        # a_t = W_xh x_t + b_ih + W_hh h_{t-1} + b_hh   (B, H)
        a = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(state.h, self.weight_hh, self.bias_hh)
        return ElmanState(self.f_h(a)), {}

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"


class FullyRecurrentState(NamedTuple):
    """State of a fully recurrent cell: hidden units ``h`` (B, H) and output units ``o`` (B, O)."""

    h: Tensor
    o: Tensor


class FullyRecurrentCell(Cell):
    r"""The fully recurrent net: the output units feed back into the hidden units.

    In a partly recurrent (Elman) net only the hidden units are recurrent and
    the output layer is a read-out.  Here the output units are part of the
    recurrence: every hidden unit receives the inputs, all hidden units and all
    output units of the previous step (Elman's context units and Jordan's
    output feedback at once), and the output units read the hidden units of
    the same step:

    .. math::

        s_t &= f_h(W_{xh} x_t + W_{hh} s_{t-1} + W_{oh} o_{t-1} + b_h) \\
        o_t &= f_o(V s_t + b_o)

    The state field ``h`` holds :math:`s_t`, the field ``o`` holds :math:`o_t`.
    The cell emits :math:`o_t` (B, O), so a layer stacked on it reads the
    output units.  With ``weight_oh`` at zero it is an Elman cell followed by a
    read-out.

    This is a layered form of the fully recurrent net.  In Williams & Zipser's
    (1989) fully connected net every unit, outputs included, reads every unit
    and every input of the previous step, with no hidden-then-output order
    within a step; here the outputs read only the current hidden units.

    Parameters
    ----------
    input_size : int
        I, the number of input features.
    hidden_size : int
        H, the number of hidden units :math:`s`.
    output_size : int, optional
        O, the number of (recurrent) output units :math:`o`; default H.
    bias : bool
        Whether to have ``bias_ih``, ``bias_hh`` and ``bias_ho``.
    nonlinearity, output_nonlinearity : {"tanh", "relu", "sigmoid", "identity"}
        :math:`f_h` and :math:`f_o` (both tanh by default, which keeps the
        fed-back outputs bounded).

    Parameters of the module: ``weight_ih`` (H, I), ``weight_hh`` (H, H),
    ``weight_oh`` (H, O) (output -> hidden feedback), ``weight_ho`` (O, H)
    (:math:`V`), ``bias_ih``, ``bias_hh`` (H) and ``bias_ho`` (O).

    Examples
    --------
    >>> cell = FullyRecurrentCell(3, 8, output_size=2)
    >>> state = cell(torch.randn(4, 3))
    >>> state.h.shape, state.o.shape
    (torch.Size([4, 8]), torch.Size([4, 2]))
    """

    state_type = FullyRecurrentState
    gate_names = ()

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        bias: bool = True,
        nonlinearity: str = "tanh",
        output_nonlinearity: str = "tanh",
    ) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size)
        check_flag("bias", bias)
        if output_size is None:
            output_size = hidden_size
        if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size <= 0:
            raise ValueError(f"output_size must be a positive integer, got {output_size!r}")
        self.f_h = activation(nonlinearity, "nonlinearity")
        self.f_o = activation(output_nonlinearity, "output_nonlinearity")
        self.nonlinearity, self.output_nonlinearity = nonlinearity, output_nonlinearity
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.bias = bias
        H, I, O = hidden_size, input_size, output_size
        self.weight_ih = nn.Parameter(torch.empty(H, I))  # W_xh
        self.weight_hh = nn.Parameter(torch.empty(H, H))  # W_hh
        self.weight_oh = nn.Parameter(torch.empty(H, O))  # W_oh: o_{t-1} -> s_t
        self.weight_ho = nn.Parameter(torch.empty(O, H))  # V: s_t -> o_t
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(H))
            self.bias_hh = nn.Parameter(torch.empty(H))
            self.bias_ho = nn.Parameter(torch.empty(O))
        else:
            for name in ("bias_ih", "bias_hh", "bias_ho"):
                self.register_parameter(name, None)
        self.reset_parameters()

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size, self.output_size)

    def output(self, state: FullyRecurrentState) -> Tensor:
        return state.o

    def _output_units(self, s: Tensor) -> Tensor:
        """o_t = f_o(V s_t + b_o), (B, O), from the hidden units s_t (B, H)."""
        return self.f_o(F.linear(s, self.weight_ho, self.bias_ho))

    def step(
        self, x: Tensor, state: FullyRecurrentState
    ) -> tuple[FullyRecurrentState, dict[str, Tensor]]:
        a = (
            F.linear(x, self.weight_ih, self.bias_ih)
            + F.linear(state.h, self.weight_hh, self.bias_hh)
            + F.linear(state.o, self.weight_oh)
        )  # (B, H)
        s = self.f_h(a)
        return FullyRecurrentState(s, self._output_units(s)), {}

    def probe_state(self, state: FullyRecurrentState, probe: Tensor) -> FullyRecurrentState:
        """The state with ``probe`` (B, H) added to the hidden units s_t *before* the output units read them.

        :meth:`biornn.Recurrent.scan` calls it (when given probes) on the state :meth:`step`
        returned.  The output units o_t are recomputed from s_t + p_t, so that the gradient of the
        probe is the total derivative dL/ds_t, through s_t -> o_t -> loss and s_t -> o_t -> s_{t+1}
        as well as s_t -> s_{t+1}; adding p_t to ``h`` alone would miss the paths through o_t.
        """
        s = state.h + probe
        return FullyRecurrentState(s, self._output_units(s))

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, output_size={self.output_size}, "
            f"nonlinearity={self.nonlinearity!r}, output_nonlinearity={self.output_nonlinearity!r}"
        )
