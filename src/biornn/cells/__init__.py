"""One time step of each recurrence: the maths, nothing else.

Cell names used on the command line and by :class:`biornn.Recurrent`:

=================  ==========================================================
name               cell
=================  ==========================================================
``elman``          :class:`ElmanCell`, tanh (Elman 1990; ``nn.RNN``)
``elman-relu``     :class:`ElmanCell`, ReLU (``nn.RNN(nonlinearity="relu")``)
``irnn``           ReLU Elman cell, identity-initialised (Le, Jaitly & Hinton 2015)
``fully-recurrent`` :class:`FullyRecurrentCell`, outputs fed back
``lstm1997``       :class:`LSTM1997Cell`, no forget gate (Hochreiter & Schmidhuber 1997)
``lstm``           :class:`LSTMCell`, forget gate (Gers et al. 2000; ``nn.LSTM``)
``lstm-peephole``  :class:`LSTMCell` with peepholes (Gers & Schmidhuber 2000)
``gru``            :class:`GRUCell` (Cho et al. 2014; ``nn.GRU``)
=================  ==========================================================
"""

from __future__ import annotations

from typing import Any

from .base import ACTIVATIONS, Cell
from .elman import ElmanCell, ElmanState, FullyRecurrentCell, FullyRecurrentState
from .gru import GRUCell, GRUState
from .lstm import LSTM1997Cell, LSTMCell, LSTMState

#: name -> (cell class, default options, initialiser name or None)
CELLS: dict[str, tuple[type[Cell], dict[str, Any], str | None]] = {
    "elman": (ElmanCell, {"nonlinearity": "tanh"}, None),
    "elman-relu": (ElmanCell, {"nonlinearity": "relu"}, None),
    "irnn": (ElmanCell, {"nonlinearity": "relu"}, "irnn"),
    "fully-recurrent": (FullyRecurrentCell, {}, None),
    "lstm1997": (LSTM1997Cell, {}, None),
    "lstm": (LSTMCell, {}, None),
    "lstm-peephole": (LSTMCell, {"peepholes": True}, None),
    "gru": (GRUCell, {}, None),
}

CELL_NAMES: tuple[str, ...] = tuple(CELLS)


def make_cell(name: str, input_size: int, hidden_size: int, **options: Any) -> Cell:
    """Build the cell called ``name`` (see the table above) with its default options.

    Parameters
    ----------
    name : str
        One of :data:`CELL_NAMES`.
    input_size : int
        I, features of x_t.
    hidden_size : int
        H, units of h_t.
    **options
        Override the defaults (for example ``nonlinearity="sigmoid"`` for
        ``elman``, ``cells_per_block=2`` for ``lstm1997``).

    Returns
    -------
    Cell
        One time step: ``cell(x_t, state)``, x_t (B, I) or (I,), each state
        field (B, H) or (H,).

    Raises
    ------
    ValueError
        An unknown name, or an option the cell does not take, named.

    >>> make_cell("lstm1997", 3, 4)
    LSTM1997Cell(3, 4, cells_per_block=1, g='tanh', h='tanh')
    """
    if name not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELL_NAMES)}; got {name!r}")
    cls, defaults, _ = CELLS[name]
    kwargs = {**defaults, **options}
    try:
        return cls(input_size, hidden_size, **kwargs)
    except TypeError as e:  # an option this cell does not have
        raise ValueError(f"cell {name!r}: {e}") from None


__all__ = [
    "ACTIVATIONS",
    "CELLS",
    "CELL_NAMES",
    "Cell",
    "ElmanCell",
    "ElmanState",
    "FullyRecurrentCell",
    "FullyRecurrentState",
    "GRUCell",
    "GRUState",
    "LSTM1997Cell",
    "LSTMCell",
    "LSTMState",
    "make_cell",
]
