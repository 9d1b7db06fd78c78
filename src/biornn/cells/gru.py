r"""The gated recurrent unit: Cho et al. (2014), "Learning phrase representations
using RNN encoder-decoder for statistical machine translation", EMNLP.

Cho et al. apply the reset gate *before* the recurrent matrix product,
:math:`n_t = \tanh(W_{xn} x_t + W_{hn}(r_t \odot h_{t-1}))`.  biornn computes
``torch.nn.GRUCell``'s form (the one cuDNN and torch compute), which applies
it *after* the product, so that weights copy to and from ``torch.nn.GRU``.
The two are not the same function of the weights:

.. math::

    r_t &= \sigma(W_{xr} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr})   &\text{reset gate}\\
    z_t &= \sigma(W_{xz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz})   &\text{update gate}\\
    n_t &= \tanh(W_{xn} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))  &\text{candidate}\\
    h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

PyTorch's layout: ``weight_ih`` (3H, I) and ``weight_hh`` (3H, H), gate rows r, z, n.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Cell, check_flag, check_sizes


class GRUState(NamedTuple):
    """State of a GRU cell: ``h`` (B, H)."""

    h: Tensor


class GRUCell(Cell):
    r"""Gated recurrent unit (Cho et al. 2014), the same maths as ``torch.nn.GRUCell``.

    .. math::

        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    Parameters
    ----------
    input_size : int
        I, the number of input features.
    hidden_size : int
        H, the number of hidden units.
    bias : bool
        Whether to have ``bias_ih`` and ``bias_hh``.

    Examples
    --------
    >>> cell = GRUCell(3, 8)
    >>> cell(torch.randn(4, 3)).h.shape
    torch.Size([4, 8])
    """

    state_type = GRUState
    gate_names = ("reset_gate", "update_gate", "candidate")

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size)
        check_flag("bias", bias)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.bias = bias
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * H))
            self.bias_hh = nn.Parameter(torch.empty(3 * H))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def gate_slices(self) -> dict[str, slice]:
        """Rows of ``weight_ih``/``weight_hh``/biases that belong to each gate."""
        H = self.hidden_size
        return {g: slice(k * H, (k + 1) * H) for k, g in enumerate("rzn")}

    def step(self, x: Tensor, state: GRUState) -> tuple[GRUState, dict[str, Tensor]]:
        gi = F.linear(x, self.weight_ih, self.bias_ih)  # (B, 3H)
        gh = F.linear(state.h, self.weight_hh, self.bias_hh)  # (B, 3H)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = (1.0 - z) * n + z * state.h
        return GRUState(h), {"reset_gate": r, "update_gate": z, "candidate": n}
