"""The NumPy reference (forward pass and hand-written BPTT) against torch autograd and
against finite differences.

* every cell configuration, with biases and without (``bias=False``): forward
  outputs, final state and the gradients of every parameter, of the input and
  of the initial state equal those of :class:`biornn.Recurrent` under torch
  autograd, in float64, to 1e-8 -- with and without variable lengths, both
  losses, both reductions, a non-zero initial state;
* the same gradients by central finite differences, independent of torch;
* bad arguments raise ValueError naming the argument.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biornn import Recurrent
from biornn import reference as ref

B, T, I, H, K = 3, 5, 3, 4, 2
LENGTHS = np.array([3, 5, 1])  # unsorted, one full-length sequence, one of length 1

# (cell name, options), id
CONFIGS = [
    pytest.param("elman", {}, id="elman-tanh"),
    pytest.param("elman", {"nonlinearity": "relu"}, id="elman-relu-option"),
    pytest.param("elman", {"nonlinearity": "sigmoid"}, id="elman-sigmoid"),
    pytest.param("elman", {"nonlinearity": "identity"}, id="elman-identity"),
    pytest.param("elman-relu", {}, id="elman-relu"),
    pytest.param("irnn", {}, id="irnn"),
    pytest.param("fully-recurrent", {}, id="fully-recurrent"),
    pytest.param(
        "fully-recurrent",
        {"output_size": 3, "nonlinearity": "sigmoid", "output_nonlinearity": "identity"},
        id="fully-recurrent-O3-sigmoid-identity",
    ),
    pytest.param("fully-recurrent", {"output_size": 6}, id="fully-recurrent-O6"),
    pytest.param("lstm1997", {}, id="lstm1997-S1-tanh"),
    pytest.param("lstm1997", {"cells_per_block": 2}, id="lstm1997-S2-tanh"),
    pytest.param("lstm1997", {"g": "scaled-sigmoid", "h": "scaled-sigmoid"}, id="lstm1997-S1-scaled"),
    pytest.param(
        "lstm1997", {"cells_per_block": 2, "g": "scaled-sigmoid", "h": "scaled-sigmoid"}, id="lstm1997-S2-scaled"
    ),
    pytest.param("lstm1997", {"cells_per_block": 4, "g": "scaled-sigmoid"}, id="lstm1997-S4-g-scaled"),
    pytest.param("lstm", {}, id="lstm"),
    pytest.param("lstm", {"peepholes": True}, id="lstm-peepholes-option"),
    pytest.param("lstm-peephole", {}, id="lstm-peephole"),
    pytest.param("gru", {}, id="gru"),
]

# every configuration again without biases: no bias_ih/bias_hh (nor bias_ho for fully-recurrent)
NO_BIAS_CONFIGS = [
    pytest.param(p.values[0], {**p.values[1], "bias": False}, id=f"{p.id}-nobias") for p in CONFIGS
]

#: The cell's own biases (the read-out's bias_y is not one of them).
BIAS_KEYS = {"bias_ih", "bias_hh", "bias_ho"}

ATOL, RTOL = 1e-10, 1e-8


def _state_sizes(cell: str, params: dict[str, np.ndarray]) -> list[int]:
    O = params["weight_hy"].shape[1]  # the cell's output width
    return [O if name == "o" else H for name in ref.state_names(cell)]


def _problem(cell: str, options: dict, loss: str, lengths: np.ndarray | None, seed: int = 0):
    """Random params (with read-out), input, non-zero initial state and target.

    At padded steps the target is junk (NaN for mse, -1 for ce) that must never
    reach the loss.
    """
    rng = np.random.default_rng(seed)
    params = ref.random_params(cell, I, H, rng, readout_size=K, **options)
    x = rng.standard_normal((B, T, I))
    state = tuple(0.5 * rng.standard_normal((B, n)) for n in _state_sizes(cell, params))
    mask = np.ones((B, T), bool) if lengths is None else np.arange(T)[None] < lengths[:, None]
    if loss == "mse":
        target = np.where(mask[..., None], rng.standard_normal((B, T, K)), np.nan)
    else:
        target = np.where(mask, rng.integers(0, K, (B, T)), -1)
    return params, x, state, target


def _torch_run(cell, options, params, x, state, lengths):
    """biornn.Recurrent with ``params`` copied in; leaves that require grad."""
    rnn = Recurrent(cell, I, H, fast=False, **options).double()
    names = {name.removesuffix("_l0") for name, _ in rnn.named_parameters()}
    cell_keys = set(params) - {"weight_hy", "bias_y"}
    assert names == cell_keys, f"torch parameters {sorted(names)} vs reference {sorted(cell_keys)}"
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            p.copy_(torch.from_numpy(params[name.removesuffix("_l0")]))
    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s[None], requires_grad=True) for s in state)  # (1, B, size)
    lt = None if lengths is None else torch.tensor(lengths, dtype=torch.int64)
    out, final = rnn(xt, state=st, lengths=lt)
    return rnn, xt, st, out, final


def _close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("cell, options", CONFIGS + NO_BIAS_CONFIGS)
def test_matches_torch_autograd(cell, options, lengths, loss, reduction):
    params, x, state, target = _problem(cell, options, loss, lengths)
    if options.get("bias", True) is False:
        assert not BIAS_KEYS & set(params) and "bias_y" in params

    # --- NumPy: forward, then loss and hand-written BPTT
    out_np, final_np, _ = ref.forward(cell, params, x, state=state, lengths=lengths, **options)
    E, grads = ref.loss_and_grads(
        cell, params, x, target, loss=loss, reduction=reduction, state=state, lengths=lengths, **options
    )
    names = ref.state_names(cell)
    assert set(grads) == set(params) | {"x"} | {n + "0" for n in names}
    for key, g in grads.items():
        assert np.all(np.isfinite(g)), key

    # --- torch: biornn.Recurrent + read-out + loss, autograd
    rnn, xt, st, out, final = _torch_run(cell, options, params, x, state, lengths)
    W_hy = torch.tensor(params["weight_hy"], requires_grad=True)
    b_y = torch.tensor(params["bias_y"], requires_grad=True)
    y = out @ W_hy.T + b_y  # (B, T, K)
    mask = torch.ones(B, T, dtype=torch.bool)
    if lengths is not None:
        mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    if loss == "mse":
        E_t = 0.5 * ((y[mask] - torch.tensor(target)[mask]) ** 2).sum()
    else:
        E_t = F.cross_entropy(y[mask], torch.tensor(target)[mask], reduction="sum")
    if reduction == "mean":
        E_t = E_t / mask.sum()
    E_t.backward()

    _close(out_np, out.detach().numpy(), "outputs")
    if lengths is not None:
        assert np.all(out_np[~mask.numpy()] == 0.0)
    for name, f_np, f_t in zip(names, final_np, final):
        _close(f_np, f_t[0].detach().numpy(), f"final state {name}")
    _close(E, E_t.item(), "loss")
    for name, p in rnn.named_parameters():
        _close(grads[name.removesuffix("_l0")], p.grad.numpy(), f"d{name}")
    _close(grads["weight_hy"], W_hy.grad.numpy(), "dweight_hy")
    _close(grads["bias_y"], b_y.grad.numpy(), "dbias_y")
    _close(grads["x"], xt.grad.numpy(), "dx")
    for name, s in zip(names, st):
        _close(grads[name + "0"], s.grad[0].numpy(), f"d{name}0")


@pytest.mark.parametrize(
    "cell, options",
    [
        pytest.param("elman", {}, id="elman"),
        pytest.param("fully-recurrent", {"output_size": 3}, id="fully-recurrent-O3"),
        pytest.param("lstm1997", {"cells_per_block": 2}, id="lstm1997-S2"),
        pytest.param("lstm-peephole", {}, id="lstm-peephole"),
        pytest.param("gru", {}, id="gru"),
        pytest.param("fully-recurrent", {"output_size": 3, "bias": False}, id="fully-recurrent-O3-nobias"),
        pytest.param("lstm-peephole", {"bias": False}, id="lstm-peephole-nobias"),
        pytest.param("gru", {"bias": False}, id="gru-nobias"),
    ],
)
def test_backward_from_final_state_matches_torch(cell, options):
    """``backward(cache, d_outputs, d_final)``: a loss on the outputs *and* the final state."""
    params, x, state, _ = _problem(cell, options, "mse", LENGTHS, seed=1)
    cell_params = {k: v for k, v in params.items() if k not in ("weight_hy", "bias_y")}
    rng = np.random.default_rng(2)
    out_np, final_np, cache = ref.forward(cell, cell_params, x, state=state, lengths=LENGTHS, **options)
    A = rng.standard_normal(out_np.shape)
    C = [rng.standard_normal(f.shape) for f in final_np]
    grads = ref.backward(cache, A, tuple(C))  # E = sum(A * out) + sum_k sum(C_k * final_k)

    rnn, xt, st, out, final = _torch_run(cell, options, cell_params, x, state, LENGTHS)
    E = (out * torch.tensor(A)).sum() + sum((f[0] * torch.tensor(c)).sum() for f, c in zip(final, C))
    E.backward()
    for name, p in rnn.named_parameters():
        _close(grads[name.removesuffix("_l0")], p.grad.numpy(), f"d{name}")
    _close(grads["x"], xt.grad.numpy(), "dx")
    for name, s in zip(ref.state_names(cell), st):
        _close(grads[name + "0"], s.grad[0].numpy(), f"d{name}0")


# --------------------------------------------------------------------------
# Finite differences: independent of torch
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell, options, loss",
    [
        pytest.param("elman", {}, "mse", id="elman-mse"),
        pytest.param("elman-relu", {}, "ce", id="elman-relu-ce"),
        pytest.param("irnn", {}, "mse", id="irnn-mse"),
        pytest.param("fully-recurrent", {"output_size": 3}, "mse", id="fully-recurrent-O3-mse"),
        pytest.param("lstm1997", {"cells_per_block": 2, "g": "scaled-sigmoid", "h": "scaled-sigmoid"}, "ce",
                     id="lstm1997-S2-scaled-ce"),
        pytest.param("lstm", {}, "mse", id="lstm-mse"),
        pytest.param("lstm-peephole", {}, "ce", id="lstm-peephole-ce"),
        pytest.param("gru", {}, "mse", id="gru-mse"),
        pytest.param("elman", {"bias": False}, "ce", id="elman-nobias-ce"),
        pytest.param("fully-recurrent", {"output_size": 3, "bias": False}, "mse", id="fully-recurrent-O3-nobias-mse"),
        pytest.param("lstm1997", {"cells_per_block": 2, "g": "scaled-sigmoid", "bias": False}, "mse",
                     id="lstm1997-S2-nobias-mse"),
        pytest.param("lstm-peephole", {"bias": False}, "mse", id="lstm-peephole-nobias-mse"),
        pytest.param("gru", {"bias": False}, "ce", id="gru-nobias-ce"),
    ],
)
def test_gradients_match_finite_differences(cell, options, loss):
    lengths = np.array([2, 4])
    rng = np.random.default_rng(3)
    b, t, i, h, k = 2, 4, 2, 4, 3
    params = ref.random_params(cell, i, h, rng, readout_size=k, **options)
    x = rng.standard_normal((b, t, i))
    sizes = [params["weight_hy"].shape[1] if n == "o" else h for n in ref.state_names(cell)]
    state = tuple(0.5 * rng.standard_normal((b, n)) for n in sizes)
    target = rng.standard_normal((b, t, k)) if loss == "mse" else rng.integers(0, k, (b, t))

    def E(params=params, x=x, state=state):
        return ref.loss_and_grads(
            cell, params, x, target, loss=loss, reduction="mean", state=state, lengths=lengths, **options
        )[0]

    _, grads = ref.loss_and_grads(
        cell, params, x, target, loss=loss, reduction="mean", state=state, lengths=lengths, **options
    )
    # every array we differentiate with respect to, and how to rebuild the call with it changed
    arrays = {key: (value, lambda v, key=key: E(params={**params, key: v})) for key, value in params.items()}
    arrays["x"] = (x, lambda v: E(x=v))
    for j, name in enumerate(ref.state_names(cell)):
        arrays[name + "0"] = (state[j], lambda v, j=j: E(state=state[:j] + (v,) + state[j + 1 :]))

    eps = 1e-6
    for key, (value, loss_with) in arrays.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus, minus = value.copy(), value.copy()
            plus[idx] += eps
            minus[idx] -= eps
            numeric[idx] = (loss_with(plus) - loss_with(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-6, atol=1e-8, err_msg=f"d{key}")
    # the padded steps of x get no gradient at all
    assert np.all(grads["x"][0, 2:] == 0.0)


# --------------------------------------------------------------------------
# Small properties
# --------------------------------------------------------------------------


def test_full_lengths_equal_no_lengths():
    params, x, state, target = _problem("lstm", {}, "mse", None)
    a = ref.loss_and_grads("lstm", params, x, target, state=state)
    b = ref.loss_and_grads("lstm", params, x, target, state=state, lengths=np.full(B, T))
    assert a[0] == b[0]
    for key in a[1]:
        np.testing.assert_array_equal(a[1][key], b[1][key])


@pytest.mark.parametrize(
    "cell, options",
    [
        pytest.param("elman", {}, id="elman"),
        pytest.param("fully-recurrent", {"output_size": 3}, id="fully-recurrent-O3"),
        pytest.param("lstm1997", {"cells_per_block": 2}, id="lstm1997-S2"),
        pytest.param("lstm-peephole", {}, id="lstm-peephole"),
        pytest.param("gru", {}, id="gru"),
    ],
)
def test_no_bias_equals_zero_bias(cell, options):
    """bias=False is the same network as bias=True with every bias 0, minus the bias gradients."""
    params, x, state, target = _problem(cell, {**options, "bias": False}, "mse", LENGTHS)
    assert set(params) == set(ref.param_shapes(cell, I, H, bias=False, **options)) | {"weight_hy", "bias_y"}
    zero = {**params, **{k: np.zeros(s) for k, s in ref.param_shapes(cell, I, H, **options).items()
                         if k in BIAS_KEYS}}
    assert BIAS_KEYS & set(zero)
    E0, g0 = ref.loss_and_grads(cell, params, x, target, state=state, lengths=LENGTHS, bias=False, **options)
    E1, g1 = ref.loss_and_grads(cell, zero, x, target, state=state, lengths=LENGTHS, **options)
    assert set(g1) - set(g0) == BIAS_KEYS & set(zero)
    np.testing.assert_allclose(E0, E1, rtol=1e-14)
    for key in g0:
        np.testing.assert_allclose(g0[key], g1[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_padded_steps_carry_the_state():
    """A sequence of length L gives the same final state as its first L steps alone."""
    params, x, state, _ = _problem("gru", {}, "mse", None)
    params = {k: v for k, v in params.items() if k not in ("weight_hy", "bias_y")}
    _, final, _ = ref.forward("gru", params, x, state=state, lengths=np.array([2, 2, 2]))
    _, final_short, _ = ref.forward("gru", params, x[:, :2], state=state)
    np.testing.assert_array_equal(final[0], final_short[0])


def test_reference_does_not_import_torch():
    source = Path(ref.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0] if node.level == 0 else "biornn")
    assert imported <= {"__future__", "typing", "numpy"}, imported


# --------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------


def _valid_call():
    cell, options = "lstm1997", {"cells_per_block": 2}
    params, x, state, target = _problem(cell, options, "ce", LENGTHS)
    return {
        "cell": cell,
        "params": params,
        "x": x,
        "target": target,
        "loss": "ce",
        "reduction": "sum",
        "state": state,
        "lengths": LENGTHS,
        **options,
    }


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


BAD = [
    pytest.param({"cell": "lstm2000"}, r"^cell must be one of", id="unknown-cell"),
    pytest.param({"cell": "elman", "cells_per_block": 2}, "cells_per_block", id="option-of-another-cell"),
    pytest.param({"cells_per_block": 3}, "cells_per_block", id="cells_per_block-not-dividing-H"),
    pytest.param({"cells_per_block": 0}, "cells_per_block", id="cells_per_block-zero"),
    pytest.param({"cells_per_block": "2"}, "cells_per_block", id="cells_per_block-str"),
    pytest.param({"g": "relu"}, r"^g must be one of", id="bad-g"),
    pytest.param({"h": "sigmoid"}, r"^h must be one of", id="bad-h"),
    pytest.param({"bias": "no"}, r"^bias must be True or False", id="bias-str"),
    pytest.param({"bias": 1}, r"^bias must be True or False", id="bias-int"),
    pytest.param({"loss": "l1"}, "loss", id="bad-loss"),
    pytest.param({"reduction": "none"}, "reduction", id="bad-reduction"),
    pytest.param({"lengths": np.array([0, 5, 1])}, "lengths", id="lengths-zero"),
    pytest.param({"lengths": np.array([3, 6, 1])}, "lengths", id="lengths-beyond-T"),
    pytest.param({"lengths": np.array([3, 5])}, "lengths", id="lengths-wrong-shape"),
    pytest.param({"lengths": np.array([3.0, 5.0, 1.0])}, "lengths", id="lengths-float"),
    pytest.param({"x": np.zeros((B, T))}, r"^x must be", id="x-2d"),
    pytest.param({"x": np.zeros((B, T, I), dtype=complex)}, r"^x must be real", id="x-complex"),
    pytest.param({"state": (np.zeros((B, H)),)}, "state", id="state-one-field-for-lstm"),
    pytest.param({"state": (np.zeros((B, H)), np.zeros((B, H + 1)))}, "state", id="state-wrong-size"),
    pytest.param({"target": np.zeros((B, T, K))}, "target", id="ce-target-float"),
    pytest.param({"target": np.full((B, T), K)}, "target", id="ce-target-out-of-range"),
    pytest.param({"loss": "mse"}, "target", id="mse-target-wrong-shape"),
]


@pytest.mark.parametrize("change, name", BAD)
def test_bad_arguments_raise_value_error_naming_them(change, name):
    call = {**_valid_call(), **change}
    with pytest.raises(ValueError, match=name):
        ref.loss_and_grads(**call)


@pytest.mark.parametrize(
    "cell, options, name",
    [
        pytest.param("elman", {"nonlinearity": "softplus"}, "nonlinearity", id="elman-nonlinearity"),
        pytest.param("fully-recurrent", {"output_nonlinearity": "gelu"}, "output_nonlinearity",
                     id="fully-recurrent-output_nonlinearity"),
        pytest.param("fully-recurrent", {"output_size": 0}, "output_size", id="fully-recurrent-output_size"),
        pytest.param("lstm", {"peepholes": "yes"}, "peepholes", id="lstm-peepholes"),
        pytest.param("gru", {"nonlinearity": "tanh"}, "nonlinearity", id="gru-has-no-options"),
        pytest.param("elman", {"bias": "False"}, r"^bias must be True or False", id="elman-bias-str"),
        pytest.param("fully-recurrent", {"bias": 0}, r"^bias must be True or False", id="fully-recurrent-bias-0"),
        pytest.param("lstm1997", {"bias": None}, r"^bias must be True or False", id="lstm1997-bias-None"),
        pytest.param("lstm", {"bias": 1.0}, r"^bias must be True or False", id="lstm-bias-float"),
        pytest.param("gru", {"bias": np.array([True])}, r"^bias must be True or False", id="gru-bias-array"),
    ],
)
def test_bad_cell_options_raise_value_error_naming_them(cell, options, name):
    rng = np.random.default_rng(0)
    params = ref.random_params(cell, I, H, rng)
    with pytest.raises(ValueError, match=name):
        ref.forward(cell, params, np.zeros((B, T, I)), **options)


def test_bad_params_raise_value_error_naming_them():
    rng = np.random.default_rng(0)
    params = ref.random_params("lstm-peephole", I, H, rng, readout_size=K)
    x = np.zeros((B, T, I))
    with pytest.raises(ValueError, match="weight_co"):
        ref.forward("lstm-peephole", _without(params, "weight_co"), x)
    with pytest.raises(ValueError, match="weight_co"):  # peepholes of a cell without them
        ref.forward("lstm", params, x)
    with pytest.raises(ValueError, match="bias_hh"):
        ref.forward("lstm-peephole", {**params, "bias_hh": np.zeros(3 * H)}, x)
    with pytest.raises(ValueError, match="weight_ih"):  # input width disagrees with x
        ref.forward("lstm-peephole", params, np.zeros((B, T, I + 1)))
    with pytest.raises(ValueError, match="bias_y"):
        ref.loss_and_grads("lstm-peephole", _without(params, "bias_y"), x, np.zeros((B, T, K)))
    with pytest.raises(ValueError, match="weight_hy"):
        bad = {**params, "weight_hy": np.zeros((K, H + 1))}
        ref.loss_and_grads("lstm-peephole", bad, x, np.zeros((B, T, K)))
    fr = ref.random_params("fully-recurrent", I, H, rng, output_size=3)
    with pytest.raises(ValueError, match="output_size"):
        ref.forward("fully-recurrent", fr, x, output_size=2)


@pytest.mark.parametrize("kwargs, name", [({"readout_size": 2.5}, "readout_size"), ({"readout_size": -1}, "readout_size"),
                                          ({"readout_size": 0}, "readout_size"), ({"scale": float("nan")}, "scale"),
                                          ({"scale": -0.1}, "scale"), ({"scale": "0.5"}, "scale"),
                                          ({"rng": -1}, "rng")])
def test_random_params_names_a_bad_argument(kwargs, name):
    args = {"rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(ValueError, match=name):
        ref.random_params("elman", 3, 4, **args)


def test_bias_option_is_checked_everywhere():
    rng = np.random.default_rng(0)
    for call in (
        lambda: ref.param_shapes("gru", I, H, bias="no"),
        lambda: ref.random_params("lstm", I, H, rng, bias=0),
    ):
        with pytest.raises(ValueError, match=r"^bias must be True or False"):
            call()
    # numpy's bool is a real bool too
    assert ref.param_shapes("gru", I, H, bias=np.False_) == {"weight_ih": (3 * H, I), "weight_hh": (3 * H, H)}
    assert set(ref.param_shapes("fully-recurrent", I, H, output_size=3, bias=False)) == {
        "weight_ih", "weight_hh", "weight_oh", "weight_ho"
    }


@pytest.mark.parametrize(
    "cell, options",
    [
        pytest.param("elman", {}, id="elman"),
        pytest.param("lstm1997", {"cells_per_block": 2}, id="lstm1997-S2"),
        pytest.param("lstm-peephole", {}, id="lstm-peephole"),
        pytest.param("gru", {}, id="gru"),
    ],
)
def test_bias_keys_must_match_the_bias_option(cell, options):
    rng = np.random.default_rng(0)
    x = np.zeros((B, T, I))
    with_bias = ref.random_params(cell, I, H, rng, readout_size=K, **options)
    no_bias = _without(_without(with_bias, "bias_ih"), "bias_hh")
    # bias=False but the biases are there: an error naming them
    with pytest.raises(ValueError, match=r"'bias_hh', 'bias_ih', but bias=False"):
        ref.forward(cell, with_bias, x, bias=False, **options)
    with pytest.raises(ValueError, match=r"'bias_ih', but bias=False"):  # only one of them
        ref.forward(cell, _without(with_bias, "bias_hh"), x, bias=False, **options)
    with pytest.raises(ValueError, match=r"'bias_hh', but bias=False"):
        ref.loss_and_grads(cell, _without(with_bias, "bias_ih"), x, np.zeros((B, T, K)), bias=False, **options)
    # bias=True (the default) and a bias missing: an error naming it
    with pytest.raises(ValueError, match=r"missing 'bias_ih'"):
        ref.forward(cell, no_bias, x, **options)
    with pytest.raises(ValueError, match=r"missing 'bias_hh'"):
        ref.forward(cell, _without(with_bias, "bias_hh"), x, bias=True, **options)
    # and the matching pairs work; the read-out's bias_y is not the cell's and stays
    ref.forward(cell, with_bias, x, bias=True, **options)
    _, grads = ref.loss_and_grads(cell, no_bias, x, np.zeros((B, T, K)), bias=False, **options)
    assert "bias_y" in grads and not BIAS_KEYS & set(grads)
    with pytest.raises(ValueError, match=r"bias_y"):
        ref.loss_and_grads(cell, _without(no_bias, "bias_y"), x, np.zeros((B, T, K)), bias=False, **options)


def test_fully_recurrent_bias_ho_follows_the_bias_option():
    rng = np.random.default_rng(0)
    x = np.zeros((B, T, I))
    params = ref.random_params("fully-recurrent", I, H, rng, output_size=3)
    only_bias_ho = _without(_without(params, "bias_ih"), "bias_hh")
    with pytest.raises(ValueError, match=r"'bias_ho', but bias=False"):
        ref.forward("fully-recurrent", only_bias_ho, x, bias=False)
    with pytest.raises(ValueError, match=r"missing 'bias_ho'"):
        ref.forward("fully-recurrent", _without(params, "bias_ho"), x)
    ref.forward("fully-recurrent", _without(only_bias_ho, "bias_ho"), x, bias=False)


def test_random_params_take_a_seed_and_backward_checks_d_final():
    p = ref.random_params("lstm", 3, 4, 0)
    assert all(np.array_equal(v, ref.random_params("lstm", 3, 4, np.random.default_rng(0))[k]) for k, v in p.items())
    with pytest.raises(ValueError, match="rng must be"):
        ref.random_params("lstm", 3, 4, "zero")
    outputs, _, cache = ref.forward("lstm", p, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"d_final: .*\(2, 4\)"):
        ref.backward(cache, np.zeros_like(outputs), d_final=(np.zeros((3, 4)), np.zeros((2, 4))))
    with pytest.raises(ValueError, match="d_final must be a tuple of 2"):
        ref.backward(cache, np.zeros_like(outputs), d_final=(np.zeros((2, 4)),))
