r"""Initialisers for the recurrent weights, selectable per layer.

- ``identity``: :math:`W_{hh} = \lambda I` -- Le, Jaitly & Hinton (2015), "A simple
  way to initialize recurrent networks of rectified linear units" (IRNN: ReLU
  units, identity recurrence, zero biases, input weights ~ N(0, 0.001^2)).
  With :math:`\lambda = 1` and ReLU, the recurrence starts as a perfect memory.
- ``orthogonal``: a random orthogonal :math:`W_{hh}` (Saxe, McClelland & Ganguli
  2014): all its singular values are 1, so the linearised recurrence neither
  shrinks nor grows the gradient at the start.
- ``xavier``: Glorot & Bengio (2010) uniform, :math:`U(\pm\sqrt{6/(n_{in}+n_{out})})`.
- ``default``: PyTorch's :math:`U(\pm 1/\sqrt{H})` for every parameter, what
  ``torch.nn.RNN``/``LSTM``/``GRU`` do.
- a forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1.0) so
  that a fresh LSTM remembers by default.

Gated cells stack one block of rows per gate (PyTorch's layout), and every
block is initialised as its own matrix: ``identity`` puts an identity in each
gate's (H, H) block of ``weight_hh``, ``orthogonal`` an independent orthogonal
matrix.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .cells import Cell, LSTMCell

RECURRENT_INITS = ("default", "identity", "orthogonal", "xavier")
INPUT_INITS = ("default", "xavier", "orthogonal", "normal")
BIAS_INITS = ("default", "zeros")

#: named schemes: what each sets for weight_hh, weight_ih (and the other
#: matrices) and the biases.
SCHEMES: dict[str, dict[str, str]] = {
    "default": {"recurrent": "default", "input": "default", "bias": "default"},
    "identity": {"recurrent": "identity", "input": "xavier", "bias": "zeros"},
    "irnn": {"recurrent": "identity", "input": "normal", "bias": "zeros"},
    "orthogonal": {"recurrent": "orthogonal", "input": "xavier", "bias": "zeros"},
    "xavier": {"recurrent": "xavier", "input": "xavier", "bias": "zeros"},
}


def _check_number(name: str, value: object, positive: bool = False) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a finite real number (and > 0 if ``positive``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}; got {value!r}")


def _blocks(weight: Tensor, slices: Iterable[slice]) -> list[Tensor]:
    return [weight[s] for s in slices]


@torch.no_grad()
def identity_(weight: Tensor, scale: float = 1.0) -> Tensor:
    """Fill a square block (or the top-left of a rectangular one) with ``scale * I``, in place.

    Parameters
    ----------
    weight : Tensor, shape (R, C)
    scale : float

    Returns
    -------
    Tensor
        ``weight``: zero but ``weight[i, i] = scale`` for i < min(R, C).
    """
    weight.zero_()
    n = min(weight.shape)
    weight[range(n), range(n)] = scale
    return weight


@torch.no_grad()
def orthogonal_(weight: Tensor, gain: float = 1.0) -> Tensor:
    """A random (semi-)orthogonal matrix times ``gain`` (``torch.nn.init.orthogonal_``), in place.

    Parameters
    ----------
    weight : Tensor, shape (R, C)
    gain : float

    Returns
    -------
    Tensor
        ``weight``, with orthonormal rows (R <= C) or columns (R > C), times ``gain``.
    """
    return nn.init.orthogonal_(weight, gain=gain)


@torch.no_grad()
def xavier_(weight: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot/Xavier uniform for one block, in place: fan_in = columns, fan_out = rows.

    Parameters
    ----------
    weight : Tensor, shape (R, C)
    gain : float

    Returns
    -------
    Tensor
        ``weight`` ~ U(-a, a), a = gain * sqrt(6 / (R + C)).
    """
    return nn.init.xavier_uniform_(weight, gain=gain)


@torch.no_grad()
def default_(param: Tensor, hidden_size: int) -> Tensor:
    """PyTorch's RNN default, in place: ``U(-1/sqrt(H), 1/sqrt(H))``.

    Parameters
    ----------
    param : Tensor, any shape
    hidden_size : int
        H of the cell the parameter belongs to.

    Returns
    -------
    Tensor
        ``param``.
    """
    bound = 1.0 / math.sqrt(hidden_size)
    return nn.init.uniform_(param, -bound, bound)


@torch.no_grad()
def forget_bias_(cell: Cell, value: float = 1.0) -> None:
    """Set the forget-gate bias of an LSTM cell: ``bias_ih[f] = value``, ``bias_hh[f] = 0``.

    The effective bias is ``bias_ih + bias_hh``, so this makes it exactly
    ``value``.

    Parameters
    ----------
    cell : LSTMCell
        ``lstm`` or ``lstm-peephole`` (with biases).
    value : float

    Raises
    ------
    ValueError
        A cell without a forget gate (the 1997 LSTM, GRU, Elman) or without biases.
    """
    if not isinstance(cell, LSTMCell):
        raise ValueError(
            f"forget_bias applies to the forget-gate LSTM ('lstm', 'lstm-peephole'); "
            f"{type(cell).__name__} has no forget gate"
        )
    if cell.bias_ih is None:
        raise ValueError("forget_bias needs a cell with biases (bias=True)")
    rows = cell.gate_slices()["f"]
    cell.bias_ih[rows] = value
    cell.bias_hh[rows] = 0.0


@torch.no_grad()
def init_cell(
    cell: Cell,
    recurrent: str = "default",
    input: str = "default",
    bias: str = "default",
    *,
    scale: float = 1.0,
    gain: float = 1.0,
    std: float = 0.001,
    forget_bias: float | None = None,
) -> Cell:
    """Initialise one cell in place.

    Parameters
    ----------
    cell : Cell
        The cell (one layer, one direction).
    recurrent : {"default", "identity", "orthogonal", "xavier"}
        For each gate's (H, H) block of ``weight_hh``.  ``identity`` uses ``scale``,
        ``orthogonal`` and ``xavier`` use ``gain``.
    input : {"default", "xavier", "orthogonal", "normal"}
        For each gate's block of ``weight_ih`` and the fully recurrent cell's
        ``weight_oh`` and ``weight_ho``; ``normal`` is N(0, std^2).
    bias : {"default", "zeros"}
        For every bias vector.
    scale : float
        The identity's scale (finite).
    gain : float
        Multiplies every orthogonal and Xavier matrix drawn, recurrent and
        input blocks alike (finite, > 0).
    std : float
        The standard deviation of ``normal`` (finite, > 0).
    forget_bias : float, optional
        Then set the forget-gate bias (``lstm``, ``lstm-peephole`` only).

    Returns
    -------
    Cell
        ``cell``, initialised.

    Any other parameter (the peephole weights ``weight_ci``, ``weight_cf``,
    ``weight_co``) is drawn anew from PyTorch's default U(±1/√H), whatever
    the scheme.
    """
    _check_number("scale", scale)
    _check_number("gain", gain, positive=True)
    _check_number("std", std, positive=True)
    if forget_bias is not None:  # refused before any weight is drawn, so that a refusal changes nothing
        _check_number("forget_bias", forget_bias)
        if not isinstance(cell, LSTMCell) or cell.bias_ih is None:
            forget_bias_(cell, forget_bias)  # raises, naming the missing forget gate or biases
    for name, value, allowed in (
        ("recurrent", recurrent, RECURRENT_INITS),
        ("input", input, INPUT_INITS),
        ("bias", bias, BIAS_INITS),
    ):
        if value not in allowed:
            raise ValueError(f"{name} init must be one of {', '.join(allowed)}; got {value!r}")
    H = cell.hidden_size
    slices = list(cell.gate_slices().values())
    for block in _blocks(cell.weight_hh, slices):
        if recurrent == "default":
            default_(block, H)
        elif recurrent == "identity":
            identity_(block, scale)
        elif recurrent == "orthogonal":
            orthogonal_(block, gain)
        else:
            xavier_(block, gain)
    input_blocks = _blocks(cell.weight_ih, slices)
    for name in ("weight_oh", "weight_ho"):
        if getattr(cell, name, None) is not None:
            input_blocks.append(getattr(cell, name))
    for block in input_blocks:
        if input == "default":
            default_(block, H)
        elif input == "xavier":
            xavier_(block, gain)
        elif input == "orthogonal":
            orthogonal_(block, gain)
        else:
            nn.init.normal_(block, 0.0, std)
    for name, p in cell.named_parameters(recurse=False):
        if name.startswith("bias"):
            if bias == "default":
                default_(p, H)
            else:
                p.zero_()
        elif name not in ("weight_hh", "weight_ih", "weight_oh", "weight_ho"):
            default_(p, H)  # the peepholes
    if forget_bias is not None:
        forget_bias_(cell, forget_bias)
    return cell


def initialize(
    rnn: nn.Module,
    scheme: str | Sequence[str] = "default",
    *,
    layers: Sequence[int] | None = None,
    scale: float = 1.0,
    gain: float = 1.0,
    forget_bias: float | None = None,
) -> nn.Module:
    """Initialise a :class:`biornn.Recurrent` (or a single cell) in place.

    Parameters
    ----------
    rnn : Recurrent or Cell
    scheme : str or sequence of str
        One of ``default``, ``identity``, ``irnn``, ``orthogonal``, ``xavier``
        (see :data:`SCHEMES`), for every layer, or one name per layer.
    layers : sequence of int, optional
        Only these layers (default: all).
    scale : float
        The identity's scale :math:`\\lambda` (finite).
    gain : float
        Multiplies every orthogonal and Xavier matrix the scheme draws, the
        input blocks' Xavier matrices included (finite, > 0).
    forget_bias : float, optional
        Forget-gate bias for ``lstm``/``lstm-peephole``.

    Returns
    -------
    nn.Module
        ``rnn``, initialised; on an error every parameter is as it was.

    Examples
    --------
    >>> from biornn import Recurrent
    >>> rnn = Recurrent("elman-relu", 1, 100, num_layers=2)
    >>> _ = initialize(rnn, ["irnn", "orthogonal"])  # layer 0 IRNN, layer 1 orthogonal
    >>> bool((rnn.weight_hh_l0 == torch.eye(100)).all())
    True
    """
    cells: list[list[Cell]]
    if isinstance(rnn, Cell):
        cells = [[rnn]]
    elif hasattr(rnn, "cells"):
        cells = rnn.cells
    else:
        raise ValueError(f"initialize expects a Recurrent or a Cell, got {type(rnn).__name__}")
    n = len(cells)
    if isinstance(scheme, str):
        names = [scheme] * n
    elif isinstance(scheme, (list, tuple)) and all(isinstance(x, str) for x in scheme):
        names = list(scheme)
    else:
        raise ValueError(f"init must be a scheme name or a list of them, one per layer; got {scheme!r}")
    if len(names) != n:
        raise ValueError(f"init: got {len(names)} schemes for {n} layers")
    for name in names:
        if name not in SCHEMES:
            raise ValueError(f"init must be one of {', '.join(SCHEMES)}; got {name!r}")
    if layers is not None and (isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable)
                               or not all(isinstance(k, numbers.Integral) and not isinstance(k, (bool, np.bool_))
                                          for k in layers)):
        raise ValueError(f"layers must be a list of layer numbers; got {layers!r}")
    chosen = range(n) if layers is None else [int(k) for k in layers]
    for layer in chosen:
        if not 0 <= layer < n:
            raise ValueError(f"layers: no layer {layer} in a {n}-layer network")
    # all or nothing: a scheme refused for a later cell (a forget bias for a cell without a forget
    # gate) must not leave the earlier ones re-initialised
    params = [q for layer in chosen for cell in cells[layer] for q in cell.parameters()]
    saved = [q.detach().clone() for q in params]
    try:
        for layer in chosen:
            for cell in cells[layer]:
                init_cell(cell, **SCHEMES[names[layer]], scale=scale, gain=gain, forget_bias=forget_bias)
    except BaseException:
        with torch.no_grad():
            for q, v in zip(params, saved):
                q.copy_(v)
        raise
    return rnn
