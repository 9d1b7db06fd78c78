"""biornn: recurrent neural networks for biomedical sequences.

The textbook recurrences (Elman, fully recurrent, the 1997 LSTM, the
forget-gate LSTM with optional peepholes, GRU) as one-step cells, one loop over
time (:class:`Recurrent`), torch's fused kernels where the maths is the same,
and a NumPy reference with hand-written backpropagation through time.
"""

from .cells import (
    CELL_NAMES,
    ElmanCell,
    ElmanState,
    FullyRecurrentCell,
    FullyRecurrentState,
    GRUCell,
    GRUState,
    LSTM1997Cell,
    LSTMCell,
    LSTMState,
    make_cell,
)
from .recurrent import Recurrent

__version__ = "0.1.0"

__all__ = [
    "CELL_NAMES",
    "ElmanCell",
    "ElmanState",
    "FullyRecurrentCell",
    "FullyRecurrentState",
    "GRUCell",
    "GRUState",
    "LSTM1997Cell",
    "LSTMCell",
    "LSTMState",
    "Recurrent",
    "make_cell",
    "__version__",
]
