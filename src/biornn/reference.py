r"""A NumPy forward pass and a hand-written BPTT for every cell: the oracle and the lesson.

This module is what the torch code is tested against (in float64, to 1e-8),
and it is written to be read: every backward step sits next to the line of the
derivation it implements.  It uses NumPy only -- no autograd anywhere.

Backpropagation through time on the unfolded network
====================================================

A recurrent network run for T steps is, once *unfolded* in time, an ordinary
feed-forward network with T layers that all share the same weights.  In the
usual textbook notation (Elman's net, one sequence):

.. math::

    a_t &= W_{xh} x_t + W_{hh} h_{t-1} + b          &\text{(pre-activation)}\\
    h_t &= f(a_t)                                   &\text{(hidden state)}\\
    y_t &= W_{hy} h_t + b_y                         &\text{(read-out)}\\
    E   &= \textstyle\sum_t E_t(y_t, d_t)           &\text{(error over the sequence)}

with :math:`h_0` the initial state.  Backpropagation on the unfolded net
walks the layers from the last (t = T) to the first (t = 1).  Write

.. math::

    e_t = \frac{\partial E_t}{\partial y_t}, \qquad
    \delta_t = \frac{\partial E}{\partial h_t}.

:math:`h_t` influences :math:`E` along two paths -- through its own output
:math:`y_t`, and through the next hidden state :math:`h_{t+1}` -- so

.. math::

    \delta_t = W_{hy}^\top e_t
             + W_{hh}^\top \big(f'(a_{t+1}) \odot \delta_{t+1}\big),
    \qquad \delta_{T+1} = 0 .

That is the whole algorithm: one backward sweep computing :math:`\delta_t`
from :math:`\delta_{t+1}`.  Because every unfolded layer uses the *same*
weights, a weight's gradient is the sum of its gradients in every layer:

.. math::

    \frac{\partial E}{\partial W_{hh}} = \sum_t \big(f'(a_t) \odot \delta_t\big)\, h_{t-1}^\top,\quad
    \frac{\partial E}{\partial W_{xh}} = \sum_t \big(f'(a_t) \odot \delta_t\big)\, x_t^\top,\quad
    \frac{\partial E}{\partial W_{hy}} = \sum_t e_t\, h_t^\top .

Unrolling the recursion shows why plain recurrent nets forget: the error that
reaches step t from step t + k is multiplied by k Jacobians
:math:`W_{hh}^\top \operatorname{diag} f'(a)`, so it shrinks (or blows up)
geometrically in k.  The 1997 LSTM's *constant error carousel*
:math:`c_t = c_{t-1} + z_t \odot i_t` has the direct derivative
:math:`\partial c_t / \partial c_{t-1} = 1` and carries error back along itself
unchanged; see :func:`_lstm1997_step_backward`.  That is the whole story only
in the paper's truncated gradient, which cut the other paths from
:math:`c_{t-1}` to :math:`c_t` (through :math:`h_{t-1}` into the gates and the
cell input).  This module, like autograd, computes the full BPTT gradient,
which includes them.

Every cell, the same sweep
--------------------------

Each cell here is a map :math:`s_t = F(x_t, s_{t-1}; \theta)` from the
previous *state* :math:`s_{t-1}` (``(h,)``, ``(h, c)`` or ``(h, o)``) to the
next, plus an emitted output (``h``, or ``o`` for the fully recurrent net).
BPTT only needs, per cell, the vector-Jacobian product of one step: given
:math:`\partial E/\partial s_t`, return :math:`\partial E/\partial s_{t-1}`,
:math:`\partial E/\partial x_t`, and add the step's share to
:math:`\partial E/\partial \theta`.  Each cell below is therefore a pair,
``_<cell>_step`` and ``_<cell>_step_backward``, and :func:`backward` runs the
loop t = T-1, ..., 0 (0-based in the code) that chains them:

.. math::

    \frac{\partial E}{\partial s_t}
      = \underbrace{\frac{\partial E_t}{\partial s_t}}_{\text{output at } t}
      + \underbrace{\Big(\frac{\partial s_{t+1}}{\partial s_t}\Big)^{\!\top}
        \frac{\partial E}{\partial s_{t+1}}}_{\text{recurrent term from } t+1} .

Batches and padding
-------------------

Arrays are batch-first: ``x`` is (B, T, I), a state field is (B, H).  Vectors
are stored as *rows*, so :math:`W^\top \delta` is written ``delta @ W`` and
:math:`\delta\, h^\top` summed over the batch is ``delta.T @ h``.

Sequences of different lengths share a batch by padding.  At a padded step
(t >= ``lengths[b]``) the state is carried unchanged, :math:`s_t = s_{t-1}`,
the emitted output is 0 and the step adds nothing to the loss.  In the
backward sweep the Jacobian of that step is the identity, so
:math:`\partial E/\partial s_t` passes through to :math:`s_{t-1}` unchanged.

Cells without biases
--------------------

Every cell takes ``bias=False``, as the torch cells do: then it has no
``bias_ih``/``bias_hh`` (and the fully recurrent net no ``bias_ho``), the
pre-activation is just :math:`W_{xh} x_t + W_{hh} h_{t-1}`, and BPTT is the same
sweep minus the bias gradients.  The read-out's ``bias_y`` (in
:func:`loss_and_grads`) belongs to the read-out, not to the cell, and stays.

Everything is computed in float64.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = [
    "CELL_NAMES",
    "backward",
    "forward",
    "loss_and_grads",
    "param_shapes",
    "random_params",
    "state_names",
]

Array = np.ndarray
State = tuple[np.ndarray, ...]

# --------------------------------------------------------------------------
# Activation functions and their derivatives f'(a), as functions of the
# pre-activation a.
# --------------------------------------------------------------------------


def _sigmoid(a: Array) -> Array:
    """The logistic function, written via tanh so that it never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _dsigmoid(a: Array) -> Array:
    s = _sigmoid(a)
    return s * (1.0 - s)


def _dtanh(a: Array) -> Array:
    return 1.0 - np.tanh(a) ** 2


#: name -> (f, f').  ReLU's derivative at exactly 0 is taken as 0, as torch does.
_ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "tanh": (np.tanh, _dtanh),
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0.0).astype(a.dtype)),
    "sigmoid": (_sigmoid, _dsigmoid),
    "identity": (lambda a: a, np.ones_like),
}

#: The 1997 LSTM's squashing functions: g(x) = 4 sigmoid(x) - 2 (cell input),
#: h(x) = 2 sigmoid(x) - 1 (cell output), or tanh for both.
_SQUASH_G: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "tanh": (np.tanh, _dtanh),
    "scaled-sigmoid": (lambda a: 4.0 * _sigmoid(a) - 2.0, lambda a: 4.0 * _dsigmoid(a)),
}
_SQUASH_H: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "tanh": (np.tanh, _dtanh),
    "scaled-sigmoid": (lambda a: 2.0 * _sigmoid(a) - 1.0, lambda a: 2.0 * _dsigmoid(a)),
}

# --------------------------------------------------------------------------
# The cells by name: which recurrence, which default options.
# --------------------------------------------------------------------------

#: CLI name -> (recurrence, default options).  ``irnn`` differs from
#: ``elman-relu`` only in its initialisation, which is not this module's business.
_CELLS: dict[str, tuple[str, dict[str, Any]]] = {
    "elman": ("elman", {"nonlinearity": "tanh"}),
    "elman-relu": ("elman", {"nonlinearity": "relu"}),
    "irnn": ("elman", {"nonlinearity": "relu"}),
    "fully-recurrent": (
        "fully-recurrent",
        {"nonlinearity": "tanh", "output_nonlinearity": "tanh", "output_size": None},
    ),
    "lstm1997": ("lstm1997", {"cells_per_block": 1, "g": "tanh", "h": "tanh"}),
    "lstm": ("lstm", {"peepholes": False}),
    "lstm-peephole": ("lstm", {"peepholes": True}),
    "gru": ("gru", {}),
}

#: Options that every cell takes, with their defaults.  ``bias=False``: the cell
#: has no ``bias_ih``/``bias_hh`` (nor the fully recurrent net's ``bias_ho``).
_COMMON_OPTIONS: dict[str, Any] = {"bias": True}

#: The cell's own biases, as named in ``params`` (the read-out's ``bias_y`` is not one).
_BIAS_KEYS = ("bias_ih", "bias_hh", "bias_ho")

#: The cell names this module knows, as on the command line.
CELL_NAMES: tuple[str, ...] = tuple(_CELLS)

_STATE_NAMES = {
    "elman": ("h",),
    "fully-recurrent": ("h", "o"),
    "lstm1997": ("h", "c"),
    "lstm": ("h", "c"),
    "gru": ("h",),
}

#: Which state field the cell emits as its output: h, except o for the fully recurrent net.
_OUTPUT_FIELD = {"elman": 0, "fully-recurrent": 1, "lstm1997": 0, "lstm": 0, "gru": 0}

#: The read-out's parameters, y_t = W_hy out_t + b_y (used by :func:`loss_and_grads`).
_READOUT_KEYS = ("weight_hy", "bias_y")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _resolve(cell: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Check the cell name and its options; return (recurrence, options with defaults)."""
    if not isinstance(cell, str) or cell not in _CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELL_NAMES)}; got {cell!r}")
    kind, cell_defaults = _CELLS[cell]
    defaults = {**_COMMON_OPTIONS, **cell_defaults}
    for key in options:
        if key not in defaults:
            allowed = ", ".join(defaults) or "none"
            raise ValueError(f"cell {cell!r} has no option {key!r} (options: {allowed})")
    opt = {**defaults, **options}
    for key, table in (
        ("nonlinearity", _ACTIVATIONS),
        ("output_nonlinearity", _ACTIVATIONS),
        ("g", _SQUASH_G),
        ("h", _SQUASH_H),
    ):
        if key in opt and (not isinstance(opt[key], str) or opt[key] not in table):
            raise ValueError(f"{key} must be one of {sorted(table)}, got {opt[key]!r}")
    if "cells_per_block" in opt:
        s = opt["cells_per_block"]
        if not _is_int(s) or s <= 0:
            raise ValueError(f"cells_per_block must be a positive integer, got {s!r}")
        opt["cells_per_block"] = int(s)
    if "output_size" in opt and opt["output_size"] is not None:
        o = opt["output_size"]
        if not _is_int(o) or o <= 0:
            raise ValueError(f"output_size must be a positive integer, got {o!r}")
        opt["output_size"] = int(o)
    for key in ("bias", "peepholes"):  # switches: a real bool, not merely truthy (no "no", 0.0, ...)
        if key in opt:
            if not isinstance(opt[key], (bool, np.bool_)):
                raise ValueError(f"{key} must be True or False, got {opt[key]!r}")
            opt[key] = bool(opt[key])
    return kind, opt


def _shapes(kind: str, opt: dict[str, Any], I: int, H: int) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape for one recurrence (``opt`` already resolved).

    With ``opt["bias"]`` False the biases (:data:`_BIAS_KEYS`) are left out.
    """
    shapes = _shapes_with_bias(kind, opt, I, H)
    if not opt["bias"]:
        shapes = {k: v for k, v in shapes.items() if k not in _BIAS_KEYS}
    return shapes


def _shapes_with_bias(kind: str, opt: dict[str, Any], I: int, H: int) -> dict[str, tuple[int, ...]]:
    """Every parameter of the recurrence, biases included."""
    if kind == "elman":
        return {"weight_ih": (H, I), "weight_hh": (H, H), "bias_ih": (H,), "bias_hh": (H,)}
    if kind == "fully-recurrent":
        O = H if opt["output_size"] is None else opt["output_size"]
        return {
            "weight_ih": (H, I),
            "weight_hh": (H, H),
            "weight_oh": (H, O),
            "weight_ho": (O, H),
            "bias_ih": (H,),
            "bias_hh": (H,),
            "bias_ho": (O,),
        }
    if kind == "lstm1997":
        S = opt["cells_per_block"]
        if H % S:
            raise ValueError(
                f"cells_per_block must be a positive integer dividing hidden_size={H}, got {S}"
            )
        G = 2 * (H // S) + H  # rows: input gates (H/S), cell inputs (H), output gates (H/S)
        return {"weight_ih": (G, I), "weight_hh": (G, H), "bias_ih": (G,), "bias_hh": (G,)}
    G = 4 * H if kind == "lstm" else 3 * H  # lstm: i, f, g, o; gru: r, z, n
    shapes = {"weight_ih": (G, I), "weight_hh": (G, H), "bias_ih": (G,), "bias_hh": (G,)}
    if kind == "lstm" and opt["peepholes"]:
        shapes.update(weight_ci=(H,), weight_cf=(H,), weight_co=(H,))
    return shapes


def param_shapes(cell: str, input_size: int, hidden_size: int, **options: Any) -> dict[str, tuple[int, ...]]:
    """The parameters a cell needs, with their shapes (PyTorch's layout, no ``_l0`` suffix).

    Parameters
    ----------
    cell : str
        One of :data:`CELL_NAMES`.
    input_size, hidden_size : int
        I and H.
    **options
        The cell's options (``nonlinearity``, ``output_size``, ``cells_per_block``,
        ``bias``, ...).

    Returns
    -------
    dict[str, tuple[int, ...]]
        For example ``{"weight_ih": (H, I), "weight_hh": (H, H), "bias_ih": (H,),
        "bias_hh": (H,)}`` for ``elman``, and only the two weights with ``bias=False``.
    """
    kind, opt = _resolve(cell, options)
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not _is_int(value) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return _shapes(kind, opt, int(input_size), int(hidden_size))


def state_names(cell: str) -> tuple[str, ...]:
    """The cell's state fields in order: ``("h",)``, ``("h", "c")`` or ``("h", "o")``."""
    return _STATE_NAMES[_resolve(cell, {})[0]]


def random_params(
    cell: str,
    input_size: int,
    hidden_size: int,
    rng: np.random.Generator,
    scale: float = 0.5,
    readout_size: int | None = None,
    **options: Any,
) -> dict[str, Array]:
    """Random float64 parameters ~ N(0, scale^2) for a cell, optionally with a read-out.

    Parameters
    ----------
    cell : str
        One of :data:`CELL_NAMES`.
    input_size, hidden_size : int
        I and H.
    rng : numpy.random.Generator or int
        The source of randomness, or a seed for one.
    scale : float
        Standard deviation of every entry.
    readout_size : int, optional
        K: add ``weight_hy`` (K, O) and ``bias_y`` (K,) for :func:`loss_and_grads`.
    **options
        The cell's options.
    """
    shapes = param_shapes(cell, input_size, hidden_size, **options)
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) or not np.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    if readout_size is not None and (not _is_int(readout_size) or readout_size <= 0):
        raise ValueError(f"readout_size must be a positive integer, got {readout_size!r}")
    if _is_int(rng):  # a seed
        if rng < 0:
            raise ValueError(f"rng: a seed must be a non-negative integer, got {rng}")
        rng = np.random.default_rng(rng)
    elif not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator or an integer seed, got {type(rng).__name__}")
    params = {k: scale * rng.standard_normal(s) for k, s in shapes.items()}
    if readout_size is not None:
        kind, opt = _resolve(cell, options)
        O = shapes["weight_ho"][0] if kind == "fully-recurrent" else hidden_size
        params["weight_hy"] = scale * rng.standard_normal((readout_size, O))
        params["bias_y"] = scale * rng.standard_normal(readout_size)
    return params


# ==========================================================================
# The cells: one forward step and its vector-Jacobian product.
#
# Every ``_<cell>_step(p, x, state, opt)`` takes the parameters ``p``, the input
# x_t (B, I) and the state s_{t-1} (a tuple of (B, size) arrays) and returns
# (s_t, cache).  Every ``_<cell>_step_backward(p, cache, d_state, opt, grads)``
# takes dE/ds_t (a tuple like the state), ADDS this step's share of dE/dtheta
# into ``grads`` and returns (dE/ds_{t-1}, dE/dx_t).
#
# Shared pattern: a pre-activation a = W_ih x + b_ih + W_hh h_{t-1} + b_hh, so
# once delta_a = dE/da (B, G) is known,
#     dE/dW_ih += delta_a x^T        dE/dW_hh += delta_a h_{t-1}^T   (outer products,
#                                                                summed over the batch:
#                                                                ``da.T @ x`` in row-vector code)
#     dE/db_ih += sum_b delta_a      dE/db_hh += sum_b delta_a
#     dE/dx_t   = W_ih^T delta_a     dE/dh_{t-1} += W_hh^T delta_a
# (in row-vector code: ``delta_a @ W``).  _affine_backward does exactly that.
#
# A cell built with bias=False has no bias keys in ``p`` at all (_check_params
# makes sure of that), so every "+ b" below is written ``if "bias_.." in p``:
# the bias terms, and their gradients, simply drop out.
# ==========================================================================


def _affine(p: dict[str, Array], x: Array, h: Array) -> Array:
    """a = W_ih x + b_ih + W_hh h + b_hh, (B, G); without biases a = W_ih x + W_hh h."""
    a = x @ p["weight_ih"].T + h @ p["weight_hh"].T
    if "bias_ih" in p:  # bias=True
        a = a + p["bias_ih"] + p["bias_hh"]
    return a


def _affine_backward(
    p: dict[str, Array], da: Array, x: Array, h: Array, grads: dict[str, Array]
) -> tuple[Array, Array]:
    """Backward of :func:`_affine`: accumulate the weight grads, return (dE/dx, dE/dh)."""
    grads["weight_ih"] += da.T @ x  # (G, I): sum over the batch of delta_a x^T
    grads["weight_hh"] += da.T @ h  # (G, H)
    if "bias_ih" in p:  # da/db_ih = da/db_hh = identity: both get the batch sum of delta_a
        grads["bias_ih"] += da.sum(axis=0)
        grads["bias_hh"] += da.sum(axis=0)
    return da @ p["weight_ih"], da @ p["weight_hh"]  # W^T delta_a, as rows


# --- Elman (1990): h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) -----------


def _elman_step(p: dict[str, Array], x: Array, state: State, opt: dict[str, Any]) -> tuple[State, dict]:
    (h_prev,) = state
    f, _ = _ACTIVATIONS[opt["nonlinearity"]]
    a = _affine(p, x, h_prev)  # a_t (B, H)
    h = f(a)  # h_t = f(a_t)
    return (h,), {"x": x, "h_prev": h_prev, "a": a}


def _elman_step_backward(
    p: dict[str, Array], cache: dict, d_state: State, opt: dict[str, Any], grads: dict[str, Array]
) -> tuple[State, Array]:
    (dh,) = d_state  # delta_t = dE/dh_t, already including W_hy^T e_t
    _, df = _ACTIVATIONS[opt["nonlinearity"]]
    da = dh * df(cache["a"])  # dE/da_t = f'(a_t) * delta_t
    dx, dh_prev = _affine_backward(p, da, cache["x"], cache["h_prev"], grads)
    # dh_prev = W_hh^T (f'(a_t) * delta_t): the recurrent term of delta_{t-1}
    return (dh_prev,), dx


# --- Fully recurrent net: the output units feed back ------------------------
#   s_t = f_h(W_ih x_t + b_ih + W_hh s_{t-1} + b_hh + W_oh o_{t-1})
#   o_t = f_o(W_ho s_t + b_ho)
# (with bias=False: no b_ih, b_hh and no b_ho either)


def _fully_recurrent_step(
    p: dict[str, Array], x: Array, state: State, opt: dict[str, Any]
) -> tuple[State, dict]:
    s_prev, o_prev = state
    f_h, _ = _ACTIVATIONS[opt["nonlinearity"]]
    f_o, _ = _ACTIVATIONS[opt["output_nonlinearity"]]
    a = _affine(p, x, s_prev) + o_prev @ p["weight_oh"].T  # (B, H)
    s = f_h(a)
    b = s @ p["weight_ho"].T  # (B, O)
    if "bias_ho" in p:
        b = b + p["bias_ho"]
    o = f_o(b)
    return (s, o), {"x": x, "s_prev": s_prev, "o_prev": o_prev, "a": a, "s": s, "b": b}


def _fully_recurrent_step_backward(
    p: dict[str, Array], cache: dict, d_state: State, opt: dict[str, Any], grads: dict[str, Array]
) -> tuple[State, Array]:
    # ds = dE/ds_t (only from step t+1, through W_hh and nothing else);
    # do = dE/do_t (from the read-out at t and from step t+1 through W_oh).
    ds, do = d_state
    _, df_h = _ACTIVATIONS[opt["nonlinearity"]]
    _, df_o = _ACTIVATIONS[opt["output_nonlinearity"]]
    # o_t = f_o(b_t), b_t = W_ho s_t + b_ho
    db = do * df_o(cache["b"])  # (B, O)
    grads["weight_ho"] += db.T @ cache["s"]
    if "bias_ho" in p:
        grads["bias_ho"] += db.sum(axis=0)
    ds = ds + db @ p["weight_ho"]  # s_t reaches E through o_t as well
    # s_t = f_h(a_t), a_t = W_ih x_t + b_ih + W_hh s_{t-1} + b_hh + W_oh o_{t-1}
    da = ds * df_h(cache["a"])  # (B, H)
    dx, ds_prev = _affine_backward(p, da, cache["x"], cache["s_prev"], grads)
    grads["weight_oh"] += da.T @ cache["o_prev"]
    do_prev = da @ p["weight_oh"]
    return (ds_prev, do_prev), dx


# --- LSTM, Hochreiter & Schmidhuber 1997: no forget gate --------------------
#   i_t = sigma(a_i)   (one input gate per block of S cells)
#   z_t = g(a_z)       (cell input)
#   o_t = sigma(a_o)   (one output gate per block)
#   c_t = z_t * i_t + c_{t-1}      (the constant error carousel)
#   h_t = h(c_t) * o_t
# Rows of the pre-activation a (B, 2H/S + H): [a_i (H/S), a_z (H), a_o (H/S)].


def _lstm1997_step(p: dict[str, Array], x: Array, state: State, opt: dict[str, Any]) -> tuple[State, dict]:
    h_prev, c_prev = state
    H, S = h_prev.shape[1], opt["cells_per_block"]
    nb = H // S  # number of memory blocks
    g, _ = _SQUASH_G[opt["g"]]
    hf, _ = _SQUASH_H[opt["h"]]
    a = _affine(p, x, h_prev)
    a_i, a_z, a_o = a[:, :nb], a[:, nb : nb + H], a[:, nb + H :]
    i, z, o = _sigmoid(a_i), g(a_z), _sigmoid(a_o)
    # every cell of a block reads its block's gate: (B, H/S) -> (B, H)
    i_cells, o_cells = np.repeat(i, S, axis=1), np.repeat(o, S, axis=1)
    c = z * i_cells + c_prev
    h = hf(c) * o_cells
    cache = {"x": x, "h_prev": h_prev, "a_i": a_i, "a_z": a_z, "a_o": a_o, "c": c}
    cache.update(i_cells=i_cells, o_cells=o_cells, z=z)
    return (h, c), cache


def _block_sum(d_cells: Array, S: int) -> Array:
    """Backward of ``np.repeat(gate, S, axis=1)``: sum the S cells of each block, (B, H) -> (B, H/S)."""
    B, H = d_cells.shape
    return d_cells.reshape(B, H // S, S).sum(axis=2)


def _lstm1997_step_backward(
    p: dict[str, Array], cache: dict, d_state: State, opt: dict[str, Any], grads: dict[str, Array]
) -> tuple[State, Array]:
    dh, dc = d_state  # dE/dh_t; dE/dc_t from step t+1 (through the carousel)
    S = opt["cells_per_block"]
    _, dg = _SQUASH_G[opt["g"]]
    hf, dhf = _SQUASH_H[opt["h"]]
    c = cache["c"]
    # h_t = h(c_t) * o_t
    do_cells = dh * hf(c)
    dc = dc + dh * cache["o_cells"] * dhf(c)  # total dE/dc_t
    # c_t = z_t * i_t + c_{t-1}
    dz = dc * cache["i_cells"]
    di_cells = dc * cache["z"]
    dc_prev = dc  # dc_t/dc_{t-1} = 1: the error flows back through the carousel unchanged
    # through the gate non-linearities to the pre-activations
    da_i = _block_sum(di_cells, S) * _dsigmoid(cache["a_i"])  # (B, H/S)
    da_z = dz * dg(cache["a_z"])  # (B, H)
    da_o = _block_sum(do_cells, S) * _dsigmoid(cache["a_o"])  # (B, H/S)
    da = np.concatenate([da_i, da_z, da_o], axis=1)
    dx, dh_prev = _affine_backward(p, da, cache["x"], cache["h_prev"], grads)
    return (dh_prev, dc_prev), dx


# --- LSTM with forget gate (Gers et al. 2000), optional peepholes -----------
#   i_t = sigma(a_i + w_ci * c_{t-1})     f_t = sigma(a_f + w_cf * c_{t-1})
#   g_t = tanh(a_g)
#   c_t = f_t * c_{t-1} + i_t * g_t
#   o_t = sigma(a_o + w_co * c_t)         h_t = o_t * tanh(c_t)
# Rows of a (B, 4H): i, f, g, o (torch.nn.LSTM's order).


def _lstm_step(p: dict[str, Array], x: Array, state: State, opt: dict[str, Any]) -> tuple[State, dict]:
    h_prev, c_prev = state
    H = h_prev.shape[1]
    a = _affine(p, x, h_prev)
    a_i, a_f, a_g, a_o = (a[:, k * H : (k + 1) * H] for k in range(4))
    if opt["peepholes"]:
        a_i = a_i + p["weight_ci"] * c_prev
        a_f = a_f + p["weight_cf"] * c_prev
    i, f, g = _sigmoid(a_i), _sigmoid(a_f), np.tanh(a_g)
    c = f * c_prev + i * g
    if opt["peepholes"]:
        a_o = a_o + p["weight_co"] * c  # the output gate peeks at the *new* cell state
    o = _sigmoid(a_o)
    tanh_c = np.tanh(c)
    h = o * tanh_c
    cache = {"x": x, "h_prev": h_prev, "c_prev": c_prev, "c": c, "tanh_c": tanh_c}
    cache.update(i=i, f=f, g=g, o=o)
    return (h, c), cache


def _lstm_step_backward(
    p: dict[str, Array], cache: dict, d_state: State, opt: dict[str, Any], grads: dict[str, Array]
) -> tuple[State, Array]:
    dh, dc = d_state
    i, f, g, o = cache["i"], cache["f"], cache["g"], cache["o"]
    c, c_prev, tanh_c = cache["c"], cache["c_prev"], cache["tanh_c"]
    # h_t = o_t * tanh(c_t)
    da_o = dh * tanh_c * o * (1.0 - o)  # sigma'(a) = sigma (1 - sigma)
    dc = dc + dh * o * (1.0 - tanh_c**2)  # total dE/dc_t ...
    if opt["peepholes"]:
        dc = dc + da_o * p["weight_co"]  # ... including the path c_t -> o_t
        grads["weight_co"] += (da_o * c).sum(axis=0)
    # c_t = f_t * c_{t-1} + i_t * g_t
    da_i = dc * g * i * (1.0 - i)
    da_f = dc * c_prev * f * (1.0 - f)
    da_g = dc * i * (1.0 - g**2)
    dc_prev = dc * f  # the forget gate scales the error flowing back along the cell
    if opt["peepholes"]:
        dc_prev = dc_prev + da_i * p["weight_ci"] + da_f * p["weight_cf"]
        grads["weight_ci"] += (da_i * c_prev).sum(axis=0)
        grads["weight_cf"] += (da_f * c_prev).sum(axis=0)
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # (B, 4H), rows i, f, g, o
    dx, dh_prev = _affine_backward(p, da, cache["x"], cache["h_prev"], grads)
    return (dh_prev, dc_prev), dx


# --- GRU (Cho et al. 2014), torch.nn.GRUCell's form --------------------------
#   r_t = sigma(i_r + h_r)      z_t = sigma(i_z + h_z)
#   n_t = tanh(i_n + r_t * h_n)
#   h_t = (1 - z_t) * n_t + z_t * h_{t-1}
# where (i_r, i_z, i_n) = W_ih x_t + b_ih and (h_r, h_z, h_n) = W_hh h_{t-1} + b_hh
# (without the b's for bias=False).
# The reset gate multiplies h_n *after* the matrix product, so the input and
# recurrent halves must be kept apart (no single _affine here).


def _gru_step(p: dict[str, Array], x: Array, state: State, opt: dict[str, Any]) -> tuple[State, dict]:
    (h_prev,) = state
    H = h_prev.shape[1]
    gi = x @ p["weight_ih"].T  # (B, 3H)
    gh = h_prev @ p["weight_hh"].T  # (B, 3H)
    if "bias_ih" in p:  # bias=True
        gi, gh = gi + p["bias_ih"], gh + p["bias_hh"]
    r = _sigmoid(gi[:, :H] + gh[:, :H])
    z = _sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
    h_n = gh[:, 2 * H :]
    n = np.tanh(gi[:, 2 * H :] + r * h_n)
    h = (1.0 - z) * n + z * h_prev
    return (h,), {"x": x, "h_prev": h_prev, "r": r, "z": z, "n": n, "h_n": h_n}


def _gru_step_backward(
    p: dict[str, Array], cache: dict, d_state: State, opt: dict[str, Any], grads: dict[str, Array]
) -> tuple[State, Array]:
    (dh,) = d_state
    x, h_prev, r, z, n, h_n = (cache[k] for k in ("x", "h_prev", "r", "z", "n", "h_n"))
    # h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    dn = dh * (1.0 - z)
    dz = dh * (h_prev - n)
    dh_prev = dh * z  # the direct path: the update gate copies h_{t-1}
    # n_t = tanh(i_n + r_t * h_n)
    da_n = dn * (1.0 - n**2)
    dr = da_n * h_n
    # r_t, z_t = sigma(.)
    da_r = dr * r * (1.0 - r)
    da_z = dz * z * (1.0 - z)
    dgi = np.concatenate([da_r, da_z, da_n], axis=1)  # dE/d(W_ih x + b_ih)
    dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)  # dE/d(W_hh h + b_hh)
    grads["weight_ih"] += dgi.T @ x
    grads["weight_hh"] += dgh.T @ h_prev
    if "bias_ih" in p:
        grads["bias_ih"] += dgi.sum(axis=0)
        grads["bias_hh"] += dgh.sum(axis=0)
    dx = dgi @ p["weight_ih"]
    dh_prev = dh_prev + dgh @ p["weight_hh"]
    return (dh_prev,), dx


_STEPS = {
    "elman": (_elman_step, _elman_step_backward),
    "fully-recurrent": (_fully_recurrent_step, _fully_recurrent_step_backward),
    "lstm1997": (_lstm1997_step, _lstm1997_step_backward),
    "lstm": (_lstm_step, _lstm_step_backward),
    "gru": (_gru_step, _gru_step_backward),
}

# ==========================================================================
# Argument checks
# ==========================================================================


def _check_params(
    kind: str, opt: dict[str, Any], params: dict[str, Array], I: int, allow_readout: bool
) -> tuple[dict[str, Array], int]:
    """Check names and shapes of ``params``; return (float64 copies of the cell's params, H)."""
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of arrays, got {type(params).__name__}")
    w_hh = params.get("weight_hh")
    if w_hh is None or np.ndim(w_hh) != 2:
        raise ValueError("params must hold 'weight_hh' as a 2-D array (its columns give hidden_size)")
    H = int(np.shape(w_hh)[1])
    if kind == "fully-recurrent" and opt["output_size"] is None and "weight_ho" in params:
        opt["output_size"] = int(np.shape(params["weight_ho"])[0])  # O from the weights
    shapes = _shapes(kind, opt, I, H)
    O = opt.get("output_size")
    if kind == "fully-recurrent" and "weight_ho" in params and np.shape(params["weight_ho"])[:1] != (O,):
        raise ValueError(
            f"output_size={opt['output_size']} does not match params['weight_ho'] of shape "
            f"{tuple(np.shape(params.get('weight_ho', ())))}"
        )
    if not opt["bias"]:
        # a cell without biases has none: a bias key here is a mistake, not something to ignore
        present = sorted((set(_shapes_with_bias(kind, opt, I, H)) - set(shapes)) & set(params))
        if present:
            names = ", ".join(map(repr, present))
            raise ValueError(f"params has {names}, but bias=False: this cell has no biases")
    for name, shape in shapes.items():
        if name not in params:
            hint = " (or pass bias=False for a cell without biases)" if name in _BIAS_KEYS else ""
            raise ValueError(f"params is missing {name!r} (shape {shape}){hint}")
        if np.shape(params[name]) != shape:
            raise ValueError(
                f"params[{name!r}] must have shape {shape}, got {tuple(np.shape(params[name]))}"
            )
    extra = set(params) - set(shapes) - (set(_READOUT_KEYS) if allow_readout else set())
    if extra:
        raise ValueError(f"params has unexpected keys {sorted(extra)} for this cell")
    return {k: np.asarray(params[k], dtype=np.float64) for k in shapes}, H


def _check_x(x: Array) -> Array:
    x = np.asarray(x)
    if x.ndim != 3 or 0 in x.shape or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"x must be a non-empty numeric array of shape (B, T, I), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"x must be real, got dtype {x.dtype}")
    return x.astype(np.float64)


def _check_lengths(lengths: Array | None, B: int, T: int) -> Array:
    """Return the mask (B, T): True at the real steps t < lengths[b]."""
    if lengths is None:
        return np.ones((B, T), dtype=bool)
    lengths = np.asarray(lengths)
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(
            f"lengths must be an integer array of shape ({B},), got {lengths.dtype} {lengths.shape}"
        )
    if lengths.min() < 1 or lengths.max() > T:
        raise ValueError(f"lengths must lie in 1..{T}, got {lengths.tolist()}")
    return np.arange(T)[None, :] < lengths[:, None]


def _check_state(state: State | None, kind: str, sizes: tuple[int, ...], B: int) -> State:
    names = _STATE_NAMES[kind]
    if state is None:
        return tuple(np.zeros((B, n)) for n in sizes)
    if not isinstance(state, (tuple, list)) or len(state) != len(names):
        raise ValueError(f"state must be a tuple of {len(names)} arrays {names}, or None")
    out = []
    for name, n, s in zip(names, sizes, state):
        if np.shape(s) != (B, n):
            raise ValueError(f"state field {name!r} must have shape ({B}, {n}), got {tuple(np.shape(s))}")
        out.append(np.asarray(s, dtype=np.float64))
    return tuple(out)


# ==========================================================================
# The loop over time, forward and backward
# ==========================================================================


def forward(
    cell: str,
    params: dict[str, Array],
    x: Array,
    state: State | None = None,
    lengths: Array | None = None,
    **options: Any,
) -> tuple[Array, State, dict]:
    """Run a cell over a batch of sequences (one layer, one direction).

    Parameters
    ----------
    cell : str
        One of :data:`CELL_NAMES` (``"elman"``, ``"lstm1997"``, ``"gru"``, ...).
    params : dict[str, ndarray]
        The cell's parameters in PyTorch's layout (see :func:`param_shapes`),
        e.g. ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih``,
        ``bias_hh`` (G*H,) -- the biases present exactly when ``bias`` is True.
        A read-out ``weight_hy``/``bias_y`` may be present and is ignored here.
    x : ndarray, shape (B, T, I)
        The inputs, batch first.
    state : tuple of ndarray, optional
        The initial state, one (B, size) array per field: ``(h,)`` for elman
        and gru, ``(h, c)`` for the LSTMs, ``(h, o)`` for fully-recurrent.
        ``None`` is the zero state.
    lengths : ndarray of int, shape (B,), optional
        True lengths in 1..T.  Steps t >= ``lengths[b]`` leave sequence b's
        state unchanged and emit 0.  ``None``: every sequence has length T.
    **options
        The cell's options: ``bias`` (every cell; False: no ``bias_ih``,
        ``bias_hh``, ``bias_ho``), ``nonlinearity`` (elman, fully-recurrent),
        ``output_nonlinearity`` and ``output_size`` (fully-recurrent),
        ``cells_per_block``, ``g``, ``h`` (lstm1997), ``peepholes`` (lstm).

    Returns
    -------
    outputs : ndarray, shape (B, T, O)
        What the cell emits at every step (h, or o for fully-recurrent); 0 at
        padded steps.
    final : tuple of ndarray
        The state after each sequence's last real step, fields (B, size).
    cache : dict
        Everything :func:`backward` needs.

    Raises
    ------
    ValueError
        For an unknown cell, an option it does not take or a bad option value,
        arrays of the wrong shape, or a bias in ``params`` of a cell with
        ``bias=False`` (or none with ``bias=True``); the message names the argument.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> params = random_params("lstm1997", 3, 4, rng, cells_per_block=2)
    >>> sorted(params), params["weight_ih"].shape    # rows: 2 input gates, 4 cells, 2 output gates
    (['bias_hh', 'bias_ih', 'weight_hh', 'weight_ih'], (8, 3))
    >>> x = rng.standard_normal((2, 5, 3))            # (B, T, I)
    >>> out, (h, c), cache = forward("lstm1997", params, x, lengths=np.array([5, 2]), cells_per_block=2)
    >>> out.shape, h.shape, bool(np.all(out[1, 2:] == 0))
    ((2, 5, 4), (2, 4), True)
    """
    kind, opt = _resolve(cell, options)
    x = _check_x(x)
    B, T, I = x.shape
    p, H = _check_params(kind, opt, params, I, allow_readout=True)
    sizes = (H, opt["output_size"]) if kind == "fully-recurrent" else (H, H)[: len(_STATE_NAMES[kind])]
    state = _check_state(state, kind, sizes, B)
    mask = _check_lengths(lengths, B, T)
    step, _ = _STEPS[kind]
    out_field = _OUTPUT_FIELD[kind]

    outputs = np.zeros((B, T, sizes[out_field]))
    initial = state
    steps = []
    for t in range(T):
        new, step_cache = step(p, x[:, t], state, opt)
        m = mask[:, t : t + 1]  # (B, 1): is step t real for sequence b?
        # a padded step carries the state unchanged: s_t = s_{t-1}
        state = tuple(np.where(m, n, s) for n, s in zip(new, state))
        outputs[:, t] = np.where(m, new[out_field], 0.0)
        steps.append(step_cache)
    cache = {
        "kind": kind,
        "options": opt,
        "params": p,
        "x": x,
        "mask": mask,
        "initial": initial,
        "steps": steps,
        "outputs": outputs,
    }
    return outputs, state, cache


def backward(cache: dict, d_outputs: Array, d_final: State | None = None) -> dict[str, Array]:
    """Backpropagation through time: the backward sweep t = T-1, ..., 0.

    Parameters
    ----------
    cache : dict
        From :func:`forward`.
    d_outputs : ndarray, shape (B, T, O)
        dE/d(outputs): what the loss sends into each emitted output
        (:math:`W_{hy}^\\top e_t` for a linear read-out).  Entries at padded
        steps are ignored (those outputs are the constant 0).
    d_final : tuple of ndarray, optional
        dE/d(final state), e.g. from a following chunk of the sequence; ``None`` is 0.

    Returns
    -------
    dict[str, ndarray]
        dE/d(every cell parameter) (same shapes), ``"x"`` (B, T, I), and the
        initial-state gradients ``"h0"`` plus ``"c0"`` (LSTMs) or ``"o0"``
        (fully-recurrent), each (B, size).
    """
    kind, opt, p, x, mask = (cache[k] for k in ("kind", "options", "params", "x", "mask"))
    _, step_backward = _STEPS[kind]
    out_field = _OUTPUT_FIELD[kind]
    B, T, _ = x.shape
    d_outputs = np.asarray(d_outputs, dtype=np.float64)
    if d_outputs.shape != cache["outputs"].shape:
        raise ValueError(f"d_outputs must have shape {cache['outputs'].shape}, got {d_outputs.shape}")

    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros_like(x)
    # d_state = dE/ds_t flowing back from step t+1 (the "recurrent term");
    # at t = T-1 it is what lies beyond the sequence: d_final, or 0.
    if d_final is None:
        d_state = tuple(np.zeros_like(s) for s in cache["initial"])
    else:  # checked as an initial state is: one (B, size) array per state field
        sizes = tuple(np.shape(s)[1] for s in cache["initial"])
        try:
            d_state = _check_state(d_final, kind, sizes, B)
        except ValueError as e:
            raise ValueError(f"d_final: {e}".replace("state must", "d_final must")) from None
    for t in range(T - 1, -1, -1):
        m = mask[:, t : t + 1]  # (B, 1)
        # delta_t = (output term: what the output at t receives) + (recurrent term from t+1)
        delta = list(d_state)
        delta[out_field] = delta[out_field] + d_outputs[:, t]
        # only real steps run the cell; at a padded step nothing flows into the cell ...
        delta = tuple(np.where(m, d, 0.0) for d in delta)
        d_prev, dx[:, t] = step_backward(p, cache["steps"][t], delta, opt, grads)
        # ... and dE/ds_t passes unchanged to s_{t-1}, because s_t = s_{t-1} there.
        d_state = tuple(np.where(m, dp, d) for dp, d in zip(d_prev, d_state))
    grads["x"] = dx
    for name, d in zip(_STATE_NAMES[kind], d_state):
        grads[name + "0"] = d  # dE/ds_0: the initial state's gradient
    return grads


def loss_and_grads(
    cell: str,
    params: dict[str, Array],
    x: Array,
    target: Array,
    *,
    loss: str = "mse",
    reduction: str = "sum",
    state: State | None = None,
    lengths: Array | None = None,
    **options: Any,
) -> tuple[float, dict[str, Array]]:
    """Loss of a cell plus linear read-out, and its gradients by hand-written BPTT.

    The model is :math:`y_t = W_{hy}\\, \\mathrm{out}_t + b_y` on top of
    :func:`forward`'s outputs, and the loss sums over the real steps only:

    * ``"mse"``: :math:`E = \\sum_t \\tfrac12 \\lVert y_t - d_t \\rVert^2`
      (the squared error of the INT301 course lectures), so :math:`e_t = y_t - d_t`;
    * ``"ce"``: :math:`E = -\\sum_t \\log \\mathrm{softmax}(y_t)_{d_t}`,
      so :math:`e_t = \\mathrm{softmax}(y_t) - \\mathrm{onehot}(d_t)`.

    Parameters
    ----------
    cell : str
        One of :data:`CELL_NAMES`.
    params : dict[str, ndarray]
        The cell's parameters plus the read-out ``weight_hy`` (K, O) and ``bias_y`` (K,)
        (``bias_y`` is needed with ``bias=False`` too: that option is the cell's).
    x : ndarray, shape (B, T, I)
        Inputs.
    target : ndarray
        (B, T, K) floats for ``"mse"``; (B, T) integer class indices in 0..K-1
        for ``"ce"``.  Values at padded steps are ignored.
    loss : {"mse", "ce"}
        Squared error or softmax cross-entropy.
    reduction : {"sum", "mean"}
        ``"mean"`` divides by the number of real (b, t) steps.
    state, lengths, **options
        As in :func:`forward` (``bias`` among the options).

    Returns
    -------
    loss : float
        E.
    grads : dict[str, ndarray]
        dE/d(each key of ``params``) with the same shape, ``"x"`` (B, T, I),
        ``"h0"`` and ``"c0"`` (LSTMs) or ``"o0"`` (fully-recurrent).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> params = random_params("elman", 3, 4, rng, readout_size=2)   # with W_hy (2, 4), b_y (2,)
    >>> x, d = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    >>> E, grads = loss_and_grads("elman", params, x, d)
    >>> sorted(grads)
    ['bias_hh', 'bias_ih', 'bias_y', 'h0', 'weight_hh', 'weight_hy', 'weight_ih', 'x']
    """
    if loss not in ("mse", "ce"):
        raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    for key in _READOUT_KEYS:
        if key not in params:
            raise ValueError(f"params is missing the read-out {key!r}")
    cell_params = {k: v for k, v in params.items() if k not in _READOUT_KEYS}
    outputs, _, cache = forward(cell, cell_params, x, state=state, lengths=lengths, **options)
    B, T, O = outputs.shape
    W_hy = np.asarray(params["weight_hy"], dtype=np.float64)
    b_y = np.asarray(params["bias_y"], dtype=np.float64)
    if W_hy.ndim != 2 or W_hy.shape[1] != O:
        raise ValueError(f"params['weight_hy'] must have shape (K, {O}), got {W_hy.shape}")
    K = W_hy.shape[0]
    if b_y.shape != (K,):
        raise ValueError(f"params['bias_y'] must have shape ({K},), got {b_y.shape}")
    mask = cache["mask"]  # (B, T)
    n_real = int(mask.sum())
    scale = 1.0 / n_real if reduction == "mean" else 1.0

    # the read-out at every step: y_t = W_hy out_t + b_y   (B, T, K)
    y = outputs @ W_hy.T + b_y
    target = np.asarray(target)
    if loss == "mse":
        if target.shape != (B, T, K) or not np.issubdtype(target.dtype, np.number):
            raise ValueError(
                f"target must be a float array of shape ({B}, {T}, {K}) for loss 'mse', got {target.shape}"
            )
        e = np.where(mask[..., None], y - target.astype(np.float64), 0.0)  # e_t = y_t - d_t
        E = 0.5 * float((e**2).sum())
    else:
        if target.shape != (B, T) or not np.issubdtype(target.dtype, np.integer):
            raise ValueError(
                f"target must be an integer array of shape ({B}, {T}) for loss 'ce', "
                f"got {target.dtype} {target.shape}"
            )
        real = target[mask]
        if real.size and (real.min() < 0 or real.max() >= K):
            raise ValueError(f"target class indices must lie in 0..{K - 1}")
        d = np.where(mask, target, 0)  # any valid index at padded steps; masked out below
        y_max = y.max(axis=2, keepdims=True)  # subtract the max: a stable log-sum-exp
        log_z = y_max[..., 0] + np.log(np.exp(y - y_max).sum(axis=2))
        log_p = np.take_along_axis(y, d[..., None], axis=2)[..., 0] - log_z  # log softmax(y_t)[d_t]
        E = -float(np.where(mask, log_p, 0.0).sum())
        # e_t = dE_t/dy_t = softmax(y_t) - onehot(d_t)
        e = np.exp(y - log_z[..., None])
        np.put_along_axis(e, d[..., None], np.take_along_axis(e, d[..., None], axis=2) - 1.0, axis=2)
        e = np.where(mask[..., None], e, 0.0)
    E *= scale
    e = e * scale

    # read-out gradients: dE/dW_hy = sum_t e_t out_t^T, dE/db_y = sum_t e_t
    d_W_hy = np.einsum("btk,bto->ko", e, outputs)
    d_b_y = e.sum(axis=(0, 1))
    # the output term of delta_t: W_hy^T e_t
    d_outputs = e @ W_hy  # (B, T, O)
    grads = backward(cache, d_outputs)
    grads["weight_hy"], grads["bias_y"] = d_W_hy, d_b_y
    return E, grads
