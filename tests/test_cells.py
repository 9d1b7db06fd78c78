"""Each biornn cell against its torch.nn twin, with copied weights: values and every gradient."""

import pytest
import torch
from torch import nn

from biornn.cells import (
    CELL_NAMES,
    ElmanCell,
    FullyRecurrentCell,
    GRUCell,
    LSTM1997Cell,
    LSTMCell,
    make_cell,
)

TOL = dict(rtol=1e-5, atol=1e-5)


def _copy(src: nn.Module, dst: nn.Module) -> None:
    dst.load_state_dict(src.state_dict(), strict=True)


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda: ElmanCell(5, 7), lambda: nn.RNNCell(5, 7, nonlinearity="tanh")),
        (lambda: ElmanCell(5, 7, nonlinearity="relu"), lambda: nn.RNNCell(5, 7, nonlinearity="relu")),
        (lambda: ElmanCell(5, 7, bias=False), lambda: nn.RNNCell(5, 7, bias=False)),
        (lambda: LSTMCell(5, 7), lambda: nn.LSTMCell(5, 7)),
        (lambda: LSTMCell(5, 7, bias=False), lambda: nn.LSTMCell(5, 7, bias=False)),
        (lambda: GRUCell(5, 7), lambda: nn.GRUCell(5, 7)),
    ],
    ids=["elman-tanh", "elman-relu", "elman-nobias", "lstm", "lstm-nobias", "gru"],
)
def test_cell_equals_torch_twin(ours, theirs):
    cell, twin = ours(), theirs()
    _copy(twin, cell)
    x = torch.randn(3, 5, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    h0 = torch.randn(3, 7)
    if isinstance(cell, LSTMCell):
        c0 = torch.randn(3, 7)
        h, c = cell(x, (h0, c0))
        th, tc = twin(x2, (h0, c0))
        torch.testing.assert_close(c, tc, **TOL)
        loss, tloss = (h * 1.3).sum() + (c**2).sum(), (th * 1.3).sum() + (tc**2).sum()
    else:
        (h,) = cell(x, (h0,))
        th = twin(x2, h0)
        loss, tloss = (h**2).sum(), (th**2).sum()
    torch.testing.assert_close(h, th, **TOL)
    loss.backward()
    tloss.backward()
    torch.testing.assert_close(x.grad, x2.grad, **TOL)
    for name, g in _grads(twin).items():
        torch.testing.assert_close(dict(cell.named_parameters())[name].grad, g, **TOL)


def test_parameter_layout_is_torchs():
    assert LSTMCell(3, 4).weight_ih.shape == (16, 3)
    assert GRUCell(3, 4).weight_hh.shape == (12, 4)
    assert LSTM1997Cell(3, 4).weight_ih.shape == (12, 3)  # i, g, o
    # two cells per memory block: 2 blocks -> 2 input gates + 4 cell inputs + 2 output gates
    assert LSTM1997Cell(3, 4, cells_per_block=2).weight_hh.shape == (8, 4)
    names = [n for n, _ in LSTMCell(3, 4, peepholes=True).named_parameters()]
    assert names == ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ci", "weight_cf", "weight_co"]


def test_lstm1997_is_a_constant_error_carousel():
    """c_t = z_t * i_t + c_{t-1}: with the input gate shut, the cell state never changes."""
    cell = LSTM1997Cell(2, 3)
    with torch.no_grad():
        cell.bias_ih[:3] = -1e4  # input gates -> 0
    c0 = torch.randn(4, 3)
    state = (torch.zeros(4, 3), c0)
    for _ in range(50):
        state = cell(torch.randn(4, 2), state)
    torch.testing.assert_close(state.c, c0, rtol=0, atol=0)
    # and dc_T/dc_0 is the identity: the error flows back undiminished
    c0 = c0.clone().requires_grad_()
    state = (torch.zeros(4, 3), c0)
    for _ in range(50):
        state = cell(torch.randn(4, 2), state)
    state.c.sum().backward()
    torch.testing.assert_close(c0.grad, torch.ones_like(c0))


def test_lstm1997_memory_blocks_share_gates():
    cell = LSTM1997Cell(2, 6, cells_per_block=3)
    state, gates = cell.step(torch.randn(5, 2), cell.initial_state(5))
    assert gates["input_gate"].shape == (5, 2) and gates["output_gate"].shape == (5, 2)
    assert gates["cell_input"].shape == (5, 6)
    # every cell of block 0 is gated by the same input gate: c = z * i_block
    torch.testing.assert_close(state.c[:, :3], gates["cell_input"][:, :3] * gates["input_gate"][:, :1])


def test_lstm1997_scaled_sigmoid_squashing():
    cell = LSTM1997Cell(2, 3, g="scaled-sigmoid", h="scaled-sigmoid")
    state, gates = cell.step(torch.randn(4, 2) * 10, cell.initial_state(4))
    z = gates["cell_input"]
    assert z.abs().max() <= 2.0 and z.abs().max() > 1.0  # g has range (-2, 2)
    expected_h = (2 * torch.sigmoid(state.c) - 1) * gates["output_gate"]
    torch.testing.assert_close(state.h, expected_h)


def test_peepholes_change_the_gates():
    cell = LSTMCell(2, 3, peepholes=True)
    state = (torch.zeros(4, 3), torch.randn(4, 3))
    x = torch.randn(4, 2)
    with_peep = cell(x, state)
    with torch.no_grad():
        for p in (cell.weight_ci, cell.weight_cf, cell.weight_co):
            p.zero_()
    plain = LSTMCell(2, 3)
    plain.load_state_dict({k: v for k, v in cell.state_dict().items() if not k.startswith("weight_c")})
    torch.testing.assert_close(cell(x, state).h, plain(x, state).h)
    assert not torch.allclose(with_peep.h, plain(x, state).h)


def test_fully_recurrent_feeds_outputs_back():
    cell = FullyRecurrentCell(3, 5, output_size=2)
    elman = ElmanCell(3, 5)
    elman.load_state_dict({k: v for k, v in cell.state_dict().items() if k in elman.state_dict()})
    x, h0, o0 = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 2)
    s = cell(x, (h0, o0))
    # s_t = tanh(W_xh x + W_hh s + W_oh o + b); o_t = tanh(V s_t + b_o)
    a = x @ cell.weight_ih.T + cell.bias_ih + h0 @ cell.weight_hh.T + cell.bias_hh + o0 @ cell.weight_oh.T
    torch.testing.assert_close(s.h, torch.tanh(a))
    torch.testing.assert_close(s.o, torch.tanh(s.h @ cell.weight_ho.T + cell.bias_ho))
    assert not torch.allclose(s.h, elman(x, (h0,)).h)
    with torch.no_grad():
        cell.weight_oh.zero_()  # no feedback: the hidden units are Elman's
    torch.testing.assert_close(cell(x, (h0, o0)).h, elman(x, (h0,)).h)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_make_cell_every_name(name):
    cell = make_cell(name, 3, 4)
    state = cell(torch.randn(2, 3))
    assert state.h.shape == (2, 4)


@pytest.mark.parametrize(
    "call,argument",
    [
        (lambda: make_cell("lstm97", 3, 4), "cell"),
        (lambda: make_cell("lstm", 3, 0), "hidden_size"),
        (lambda: make_cell("lstm", 3, -2), "hidden_size"),
        (lambda: make_cell("gru", 0, 4), "input_size"),
        (lambda: ElmanCell(3, 4, nonlinearity="softsign"), "nonlinearity"),
        (lambda: ElmanCell(3, 4, nonlinearity=["tanh"]), "nonlinearity"),
        (lambda: FullyRecurrentCell(3, 4, output_nonlinearity="x"), "output_nonlinearity"),
        (lambda: FullyRecurrentCell(3, 4, output_size=0), "output_size"),
        (lambda: LSTM1997Cell(3, 4, cells_per_block=3), "cells_per_block"),
        (lambda: LSTM1997Cell(3, 4, g="sigmoid"), "g"),
        (lambda: LSTM1997Cell(3, 4, h=["tanh"]), "h"),
        (lambda: LSTMCell(3, 4, peepholes="no"), "peepholes"),
        (lambda: GRUCell(3, 4, bias=0), "bias"),
        (lambda: make_cell("gru", 3, 4, peepholes=True), "peepholes"),
        (lambda: GRUCell(3, 4)(torch.randn(2, 5)), "input_size"),
        (lambda: GRUCell(3, 4)(torch.randn(2, 3, 3)), "input"),
        (lambda: GRUCell(3, 4)(torch.randn(2, 3).double()), "dtype"),
        (lambda: ElmanCell(3, 4)(torch.randn(1, 3), torch.randn(5, 4)), "state.h"),
        (lambda: LSTMCell(3, 4)(torch.randn(2, 3), (torch.randn(2, 4),)), "state"),
        (lambda: LSTMCell(3, 4)(torch.randn(2, 3), FullyRecurrentCell(3, 4).initial_state(2)), "state"),
    ],
)
def test_bad_cell_arguments(call, argument):
    # the argument must be named as a whole word, so a one-letter name cannot match by chance
    with pytest.raises(ValueError, match=rf"(?:^|\b){argument}\b"):
        call()


@pytest.mark.parametrize("name", CELL_NAMES)
def test_unbatched_step_is_the_batched_step_of_one(name):
    cell = make_cell(name, 3, 4)
    x = torch.randn(3)
    state = cell(x)
    batched = cell(x.unsqueeze(0))
    for a, b in zip(state, batched):
        assert a.shape == b.shape[1:]
        torch.testing.assert_close(a, b[0])
    again = cell(x, state)  # an unbatched state is accepted back
    assert again.h.shape == (4,)
    # so is a batch-of-one state beside an unbatched input (initial_state(1) gives one): the LSTMs and
    # the GRU crashed on it, Elman and the fully recurrent net answered (1, H)
    from_one = cell(x, tuple(f.unsqueeze(0) for f in state))
    for a, b in zip(from_one, again):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)
    assert all(f.shape == (n,) for f, n in zip(cell(x, cell.initial_state(1)), cell.state_sizes()))
