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
    if isinstance(name, str) and name in ACTIVATIONS:
        return ACTIVATIONS[name]
    else:
        raise ValueError(
            f"{argument} must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None


def check_flag(name: str, value: object) -> None:
    """Refuse a non-bool where a flag is expected (``bool("no")`` is True)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_sizes(input_size: int, hidden_size: int) -> None:
    """Refuse sizes that cannot make a layer, naming the argument."""
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _param_dtype(module: nn.Module) -> torch.dtype | None:
    p = next(iter(module.parameters()), None)
    return None if p is None else p.dtype


def check_input(x: object, input_size: int, dims: tuple[int, ...], dtype: torch.dtype | None) -> None:
    """Refuse an input that is not a floating tensor of ``dims`` dimensions, ``input_size``
    features in the last one and the parameters' dtype, naming the problem."""
    if not isinstance(x, Tensor):
        raise ValueError(f"input must be a tensor, got {type(x).__name__}")
    if x.dim() not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"input must be {want} (..., features), got shape {tuple(x.shape)}")
    if x.shape[-1] != input_size:
        raise ValueError(f"input has {x.shape[-1]} features per step but input_size is {input_size}")
    if not x.is_floating_point():
        raise ValueError(f"input must be a floating-point tensor, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"input has dtype {x.dtype} but the parameters are {dtype}; convert one of them")


def coerce_state(
    state: object,
    state_type: type,
    shapes: list[tuple[tuple[int, ...], ...]],
    like: Tensor,
) -> list[Tensor]:
    """Check a user-given state against the cell's ``state_type`` and return its fields.

    ``state`` may be a ``state_type``, a plain tuple or list of tensors, or,
    for a one-field state, a bare tensor.  ``shapes[k]`` lists the shapes the
    k-th field may have.  Every field must match ``like``'s dtype and device.
    A ``NamedTuple`` of another cell's type is refused.
    """
    fields = state_type._fields
    if isinstance(state, Tensor):
        state = (state,)
    if hasattr(state, "_fields") and tuple(state._fields) != tuple(fields):
        raise ValueError(
            f"state is a {type(state).__name__} ({', '.join(state._fields)}) but this cell's state is "
            f"{state_type.__name__} ({', '.join(fields)})"
        )
    if not isinstance(state, (tuple, list)) or len(state) != len(fields):
        raise ValueError(f"state must be a tuple of {len(fields)} tensor(s) ({', '.join(fields)})")
    out = []
    for name, s, allowed in zip(fields, state, shapes):
        if not isinstance(s, Tensor):
            raise ValueError(f"state.{name} must be a tensor, got {type(s).__name__}")
        if tuple(s.shape) not in allowed:
            raise ValueError(
                f"state.{name} must have shape {' or '.join(map(str, allowed))}, got {tuple(s.shape)}"
            )
        if s.dtype != like.dtype or s.device != like.device:
            raise ValueError(
                f"state.{name} is {s.dtype} on {s.device} but the input is {like.dtype} on {like.device}"
            )
        out.append(s)
    return out


class Cell(nn.Module):
    """Base class of the cells: one time step, PyTorch's parameter layout.

    Subclasses set ``state_type`` (a ``NamedTuple`` whose first field is ``h``),
    ``gate_names`` (the names of the activations :meth:`step` reports, in the
    order they are computed) and ``output_size`` (the width of what the cell
    emits to the layer above), and implement :meth:`step`.  A cell's weights are its own
    ``nn.Parameter`` attributes (as ``weight_ih``, ``weight_hh``): :class:`biornn.Recurrent`
    registers exactly those under torch.nn's names, and refuses a cell that keeps weights in a
    submodule or a buffer, which would be left out of ``parameters()`` and ``state_dict()``.
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
    ) -> tuple[Tensor, ...]:
        """The zero state for a batch: a ``state_type``, each field of shape (B, size)."""
        return self.state_type(
            *(torch.zeros(batch_size, n, dtype=dtype, device=device) for n in self.state_sizes())
        )

    def output(self, state: tuple[Tensor, ...]) -> Tensor:
        """What the cell emits at this step (B, output_size): ``h`` unless overridden."""
        return state.h

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], dict[str, Tensor]]:
        """One time step, with the gate activations.

        Parameters
        ----------
        x : Tensor, shape (B, I)
            The input at time t.
        state : state_type
            The state at time t-1, each field (B, size).

        Returns
        -------
        state : state_type
            The state at time t, each field (B, size).
        gates : dict of str -> Tensor
            The gate activations at time t by name (``gate_names``), each (B, size).
        """
        raise NotImplementedError

    def forward(self, x: Tensor, state: tuple[Tensor, ...] | Tensor | None = None) -> tuple[Tensor, ...]:
        """One time step without the gate activations.

        Parameters
        ----------
        x : Tensor, shape (B, I), or (I,) unbatched
            The input at time t.
        state : state_type, tuple of Tensor, Tensor or None
            The state at time t-1, each field (B, size) (or (size,) or (1, size) unbatched);
            a one-field state may be a bare tensor; ``None`` is the zero state.

        Returns
        -------
        state_type
            The state at time t, each field (B, size) (or (size,) unbatched).
        """
        check_input(x, self.input_size, (1, 2), _param_dtype(self))
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        B = x.shape[0]
        if state is None:
            state = self.initial_state(B, x.dtype, x.device)
        else:
            fields = coerce_state(
                state, self.state_type, [((B, n), (n,)) if unbatched else ((B, n),) for n in self.state_sizes()],
                x,
            )
            # an unbatched input may come with (size,) or (1, size) fields (initial_state(1) gives those)
            state = self.state_type(*(f.unsqueeze(0) if f.dim() == 1 else f for f in fields))
        new = self.step(x, state)[0]
        return self.state_type(*(f.squeeze(0) for f in new)) if unbatched else new

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"
