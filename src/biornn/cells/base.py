"""What every cell shares: the activation functions by name and the cell protocol.

A cell is one time step of a recurrence, ``cell(x_t, state) -> state``.  It
knows nothing about batch layout, sequence lengths, devices or losses; the one
loop over time lives in :mod:`biornn.recurrent`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn


def scaled_sigmoid_g(x: Tensor) -> Tensor:
    """The 1997 LSTM's cell-input squashing ``g(x) = 4 sigmoid(x) - 2``, range (-2, 2)."""
    return 4.0 * torch.sigmoid(x) - 2.0


def scaled_sigmoid_h(x: Tensor) -> Tensor:
    """The 1997 LSTM's cell-output squashing ``h(x) = 2 sigmoid(x) - 1``, range (-1, 1)."""
    return 2.0 * torch.sigmoid(x) - 1.0


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def activation(name: str, argument: str = "nonlinearity") -> Callable[[Tensor], Tensor]:
    """Return the activation called ``name``; ``ValueError`` naming ``argument`` if unknown."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"{argument} must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None


def check_sizes(input_size: int, hidden_size: int) -> None:
    """Refuse sizes that cannot make a layer, naming the argument."""
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class Cell(nn.Module):
    """Base class of the cells: one time step, PyTorch's parameter layout.

    Subclasses set ``state_type`` (a ``NamedTuple`` whose first field is ``h``),
    ``gate_names`` (the names of the activations :meth:`step` reports, in the
    order they are computed) and ``output_size`` (the width of what the cell
    emits to the layer above), and implement :meth:`step`.
    """

    state_type: type = NamedTuple
    gate_names: tuple[str, ...] = ()
    input_size: int
    hidden_size: int
    output_size: int

    def reset_parameters(self) -> None:
        """PyTorch's default: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)).

        This is what ``torch.nn.RNN``/``LSTM``/``GRU`` do, so a freshly built
        biornn cell has the same distribution as its torch twin.
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def gate_slices(self) -> dict[str, slice]:
        """Rows of ``weight_ih``/``weight_hh``/biases that belong to each gate block."""
        return {"h": slice(0, self.hidden_size)}

    def state_sizes(self) -> tuple[int, ...]:
        """Width of each state field, in ``state_type`` order."""
        return (self.hidden_size,) * len(self.state_type._fields)

    def initial_state(
        self, batch_size: int, dtype: torch.dtype | None = None, device: torch.device | None = None
    ):
        """The zero state for a batch: each field of shape (B, size)."""
        return self.state_type(
            *(torch.zeros(batch_size, n, dtype=dtype, device=device) for n in self.state_sizes())
        )

    def output(self, state) -> Tensor:
        """What the cell emits at this step (B, output_size): ``h`` unless overridden."""
        return state.h

    def step(self, x: Tensor, state) -> tuple[object, dict[str, Tensor]]:
        """One time step: ``x`` (B, I), ``state`` -> (new state, gate activations)."""
        raise NotImplementedError

    def forward(self, x: Tensor, state=None):
        """One time step without the gate activations.

        Parameters
        ----------
        x : Tensor, shape (B, I)
            The input at time t.
        state : state_type or None
            The state at time t-1, each field (B, size); ``None`` is the zero state.

        Returns
        -------
        state_type
            The state at time t.
        """
        return self.step(x, self.as_state(state, x))[0]

    def as_state(self, state, x: Tensor):
        """Accept ``None`` (zeros), a plain tuple or, for one-field states, a tensor."""
        if state is None:
            return self.initial_state(x.shape[0], x.dtype, x.device)
        if isinstance(state, Tensor):
            state = (state,)
        if not isinstance(state, tuple) or len(state) != len(self.state_type._fields):
            raise ValueError(
                f"state must be a tuple of {len(self.state_type._fields)} tensor(s) "
                f"({', '.join(self.state_type._fields)})"
            )
        return state if isinstance(state, self.state_type) else self.state_type(*state)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"
