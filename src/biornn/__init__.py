"""biornn: recurrent neural networks for biomedical sequences.

The textbook recurrences (Elman, fully recurrent, the 1997 LSTM, the
forget-gate LSTM with optional peepholes, GRU) as one-step cells, one loop over
time (:class:`Recurrent`), torch's fused kernels where the maths is the same,
and a NumPy reference with hand-written backpropagation through time.
"""

import importlib as _importlib

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

#: the names above and the module each comes from, imported on first use: ``import biornn`` (and so
#: the ``biornn`` command, whose Ctrl-C handling starts in its ``main``) does not wait for torch
_EXPORTS = {name: "cells" for name in __all__ if name not in ("Recurrent", "__version__")}
_EXPORTS["Recurrent"] = "recurrent"


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    else:  # a submodule: biornn.fast after a bare import biornn
        try:
            value = _importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
