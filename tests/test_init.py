"""Initialisers: each scheme does what its paper says, per gate block and per layer."""

import pytest
import torch

from biornn import Recurrent
from biornn.init import SCHEMES, forget_bias_, init_cell, initialize


def test_irnn_cell_is_identity_initialised():
    rnn = Recurrent("irnn", 3, 5)
    torch.testing.assert_close(rnn.weight_hh_l0, torch.eye(5))
    assert (rnn.bias_ih_l0 == 0).all() and (rnn.bias_hh_l0 == 0).all()
    assert rnn.weight_ih_l0.std() < 0.01  # N(0, 0.001^2)
    # a plain ReLU Elman net keeps torch's default
    assert not torch.allclose(Recurrent("elman-relu", 3, 5).weight_hh_l0, torch.eye(5))


def test_identity_per_gate_block_with_scale():
    rnn = Recurrent("gru", 2, 4, init="identity")
    initialize(rnn, "identity", scale=0.5)
    for block in rnn.weight_hh_l0.split(4):
        torch.testing.assert_close(block, 0.5 * torch.eye(4))


def test_orthogonal_blocks_are_orthogonal():
    rnn = Recurrent("lstm", 3, 6, init="orthogonal")
    for block in rnn.weight_hh_l0.split(6):
        torch.testing.assert_close(block @ block.T, torch.eye(6), atol=1e-5, rtol=0)
    assert (rnn.bias_ih_l0 == 0).all()


def test_xavier_bound():
    rnn = Recurrent("elman", 30, 20, init="xavier")
    bound = (6 / (30 + 20)) ** 0.5
    assert rnn.weight_ih_l0.abs().max() <= bound
    assert rnn.weight_ih_l0.abs().max() > 0.8 * bound


def test_default_is_torchs_uniform():
    rnn = Recurrent("lstm", 3, 64, init="orthogonal")  # biases zero ...
    initialize(rnn, "default")  # ... and back to U(-1/8, 1/8) everywhere
    for name, p in rnn.named_parameters():
        assert p.abs().max() <= 1 / 8, name
        assert p.abs().max() > 0.9 / 8, name  # spans the range
        assert abs(p.std().item() - (1 / 8) / 3**0.5) < 0.01, name  # the uniform's std


def test_per_layer_and_selected_layers():
    rnn = Recurrent("elman-relu", 2, 4, num_layers=3, init=["irnn", "orthogonal", "default"])
    torch.testing.assert_close(rnn.weight_hh_l0, torch.eye(4))
    w = rnn.weight_hh_l1
    torch.testing.assert_close(w @ w.T, torch.eye(4), atol=1e-5, rtol=0)
    before = rnn.weight_hh_l2.clone()
    initialize(rnn, "identity", layers=[0])
    torch.testing.assert_close(rnn.weight_hh_l2, before)
    with pytest.raises(ValueError, match="layers"):
        initialize(rnn, "identity", layers=[3])
    with pytest.raises(ValueError, match="init"):
        initialize(rnn, ["identity", "orthogonal"])  # 2 schemes for 3 layers


def test_bidirectional_reverse_direction_is_initialised_too():
    rnn = Recurrent("elman-relu", 2, 4, bidirectional=True, init="identity")
    torch.testing.assert_close(rnn.weight_hh_l0_reverse, torch.eye(4))


def test_forget_bias():
    rnn = Recurrent("lstm", 2, 3)
    initialize(rnn, "default", forget_bias=1.0)
    f = slice(3, 6)
    torch.testing.assert_close(rnn.bias_ih_l0[f] + rnn.bias_hh_l0[f], torch.ones(3))
    with pytest.raises(ValueError, match="forget"):
        forget_bias_(Recurrent("lstm1997", 2, 3).cells[0][0], 1.0)


def test_unknown_names_are_refused():
    cell = Recurrent("gru", 2, 3).cells[0][0]
    with pytest.raises(ValueError, match="recurrent"):
        init_cell(cell, recurrent="he")
    with pytest.raises(ValueError, match="init"):
        initialize(cell, "kaiming")
    assert set(SCHEMES) == {"default", "identity", "irnn", "orthogonal", "xavier"}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_scheme_draws_the_peepholes_anew(scheme):
    """initialize(r, 'default') said 'every parameter' but kept edited or trained peephole weights."""
    r = Recurrent("lstm-peephole", 2, 4)
    with torch.no_grad():
        for name in ("weight_ci_l0", "weight_cf_l0", "weight_co_l0"):
            getattr(r, name).fill_(5.0)
    initialize(r, scheme)
    for name in ("weight_ci_l0", "weight_cf_l0", "weight_co_l0"):
        w = getattr(r, name)
        assert w.abs().max() <= 0.5 and len(set(w.tolist())) == 4, (name, w)


@pytest.mark.parametrize("kwargs, name", [
    ({"gain": float("nan")}, "gain"), ({"gain": -1.0}, "gain"), ({"gain": 0.0}, "gain"), ({"gain": "a"}, "gain"),
    ({"scale": float("nan")}, "scale"), ({"scale": float("inf")}, "scale"), ({"scale": True}, "scale"),
    ({"layers": 1}, "layers"), ({"layers": ["0"]}, "layers"), ({"layers": "0"}, "layers"),
    ({"forget_bias": float("nan")}, "forget_bias"),
])
def test_bad_numbers_are_a_value_error_naming_them_and_change_nothing(kwargs, name):
    r = Recurrent("lstm", 2, 3, num_layers=2)
    before = [p.detach().clone() for p in r.parameters()]
    scheme = "identity" if "scale" in kwargs else "orthogonal"
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        initialize(r, scheme, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, r.parameters()))
    with pytest.raises(ValueError, match=r"^std must be"):
        init_cell(r.cells[0][0], input="normal", std=0.0)


def test_gain_multiplies_the_input_blocks_xavier_too():
    """As documented (README table, docstrings): gain= scales every orthogonal and Xavier matrix."""
    torch.manual_seed(0)
    r = Recurrent("elman", 6, 3)
    initialize(r, "orthogonal", gain=2.0)
    bound = (6 / (6 + 3)) ** 0.5
    assert bound < r.weight_ih_l0.abs().max() <= 2 * bound
    torch.testing.assert_close(r.weight_hh_l0 @ r.weight_hh_l0.T, 4 * torch.eye(3))


def test_init_cell_refuses_a_bad_forget_bias_before_drawing_anything():
    """init_cell wrote NaN biases, or redrew a GRU's weights and then refused its forget bias."""
    import numpy as np

    from biornn.cells import make_cell

    for cell, value, match in ((make_cell("lstm", 2, 3), float("nan"), "^forget_bias must be"),
                               (make_cell("gru", 2, 3), 1.0, "no forget gate")):
        before = [p.detach().clone() for p in cell.parameters()]
        with pytest.raises(ValueError, match=match):
            init_cell(cell, "orthogonal", "xavier", "zeros", forget_bias=value)
        assert all(torch.equal(a, b) for a, b in zip(before, cell.parameters()))
    # NumPy numbers are numbers (the checks refused them for a while)
    r = Recurrent("lstm", 2, 3, num_layers=2)
    initialize(r, "identity", layers=np.array([1]), scale=np.float64(0.5), gain=np.int64(1))
    assert torch.equal(r.weight_hh_l1[:3], 0.5 * torch.eye(3))
