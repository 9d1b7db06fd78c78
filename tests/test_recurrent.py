"""The time loop against torch.nn's RNN/LSTM/GRU, the fast paths against the step loop,
padding, truncation, traces and argument checks."""

import copy
import itertools
import re

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from biornn import CELL_NAMES, Recurrent
from biornn.fast import supports

TOL = dict(rtol=1e-5, atol=1e-5)

TWINS = {
    "elman": lambda I, H, **kw: nn.RNN(I, H, nonlinearity="tanh", **kw),
    "elman-relu": lambda I, H, **kw: nn.RNN(I, H, nonlinearity="relu", **kw),
    "irnn": lambda I, H, **kw: nn.RNN(I, H, nonlinearity="relu", **kw),
    "lstm": lambda I, H, **kw: nn.LSTM(I, H, **kw),
    "gru": lambda I, H, **kw: nn.GRU(I, H, **kw),
}


def _lengths(B, T):
    # one full-length sequence, the rest shorter, not sorted
    lengths = torch.randint(1, T + 1, (B,))
    lengths[B // 2] = T
    return lengths


def _run_twin(twin, x, lengths, state):
    if lengths is None:
        return twin(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=twin.batch_first, enforce_sorted=False)
    out, final = twin(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=twin.batch_first, total_length=x.shape[1 if twin.batch_first else 0])
    return out, final


def _loss(out, final):
    g = torch.Generator().manual_seed(1)
    total = (out * torch.randn(out.shape, generator=g)).sum()
    for f in final:
        total = total + (f * torch.randn(f.shape, generator=g)).sum()
    return total


CASES = list(
    itertools.product(
        TWINS, [1, 2], [False, True], [False, True], [True, False], [(3, 6), (1, 1), (5, 11)]
    )
)


@pytest.mark.parametrize(
    "name,layers,bidirectional,variable,fast,shape",
    CASES,
    ids=[f"{n}-L{l}-{'bi' if b else 'uni'}-{'var' if v else 'full'}-{'fast' if f else 'loop'}-B{s[0]}T{s[1]}"
         for n, l, b, v, f, s in CASES],
)
def test_recurrent_equals_torch_twin(name, layers, bidirectional, variable, fast, shape):
    B, T = shape
    I, H = 4, 5
    twin = TWINS[name](I, H, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    rnn = Recurrent(name, I, H, num_layers=layers, bidirectional=bidirectional, fast=fast)
    rnn.load_state_dict(twin.state_dict(), strict=True)
    assert rnn.uses_fast_path() == fast
    D = 2 if bidirectional else 1
    x = torch.randn(B, T, I)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    lengths = _lengths(B, T) if variable else None
    h0 = torch.randn(layers * D, B, H)
    state = (h0, torch.randn(layers * D, B, H)) if name == "lstm" else h0
    out, final = rnn(xa, state, lengths)
    tout, tfinal = _run_twin(twin, xb, lengths, state)
    tfinal = tfinal if isinstance(tfinal, tuple) else (tfinal,)
    torch.testing.assert_close(out, tout, **TOL)
    for a, b in zip(final, tfinal):
        torch.testing.assert_close(a, b, **TOL)
    _loss(out, final).backward()
    _loss(tout, tfinal).backward()
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    ours = dict(rnn.named_parameters())
    for pname, p in twin.named_parameters():
        torch.testing.assert_close(ours[pname].grad, p.grad, **TOL, msg=lambda m: f"{pname}: {m}")


@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_time_major_and_unbatched_match_torch(name):
    twin = TWINS[name](3, 4, num_layers=2, batch_first=False)
    rnn = Recurrent(name, 3, 4, num_layers=2, batch_first=False)
    rnn.load_state_dict(twin.state_dict())
    x = torch.randn(7, 2, 3)  # (T, B, I)
    torch.testing.assert_close(rnn(x)[0], twin(x)[0], **TOL)
    x1 = torch.randn(7, 3)  # unbatched (T, I)
    out, final = rnn(x1)
    tout, tfinal = twin(x1)
    torch.testing.assert_close(out, tout, **TOL)
    torch.testing.assert_close(final[0], tfinal[0] if name == "lstm" else tfinal, **TOL)


def test_state_dict_round_trip_with_torch():
    lstm = nn.LSTM(3, 6, num_layers=2, bidirectional=True, batch_first=True)
    rnn = Recurrent("lstm", 3, 6, num_layers=2, bidirectional=True)
    rnn.load_state_dict(lstm.state_dict())
    back = nn.LSTM(3, 6, num_layers=2, bidirectional=True, batch_first=True)
    back.load_state_dict(rnn.state_dict())
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(back(x)[0], lstm(x)[0], rtol=0, atol=0)
    assert list(rnn.state_dict()) == list(lstm.state_dict())


def _lstm_with_forget_gate_at_one(rnn: Recurrent) -> nn.LSTM:
    """Build, independently of biornn.fast, the nn.LSTM that a 1997 LSTM (S=1, tanh) is."""
    H = rnn.hidden_size
    twin = nn.LSTM(rnn.input_size, H, num_layers=rnn.num_layers, bidirectional=rnn.bidirectional,
                   batch_first=True)
    with torch.no_grad():
        for name, p in twin.named_parameters():
            ours = dict(rnn.named_parameters())[name]  # rows i, g, o
            p.zero_()
            p[0:H] = ours[0:H]  # i
            p[2 * H:3 * H] = ours[H:2 * H]  # g
            p[3 * H:4 * H] = ours[2 * H:3 * H]  # o
            if name.startswith("bias_ih"):
                p[H:2 * H] = 1e4  # sigmoid(1e4) == 1.0: the forget gate held open
    return twin


@pytest.mark.parametrize("variable", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm1997_equals_lstm_with_forget_gate_held_at_one(bidirectional, variable):
    rnn = Recurrent("lstm1997", 3, 4, num_layers=2, bidirectional=bidirectional, fast=False)
    twin = _lstm_with_forget_gate_at_one(rnn)
    x = torch.randn(5, 9, 3)
    lengths = _lengths(5, 9) if variable else None
    out, (h, c) = rnn(x, lengths=lengths)
    tout, (th, tc) = _run_twin(twin, x, lengths, None)
    torch.testing.assert_close(out, tout, **TOL)
    torch.testing.assert_close(c, tc, **TOL)
    _loss(out, (h, c)).backward()
    _loss(tout, (th, tc)).backward()
    H = 4
    theirs = dict(twin.named_parameters())
    for name, p in rnn.named_parameters():
        g = theirs[name].grad
        torch.testing.assert_close(p.grad, torch.cat([g[:H], g[2 * H:]]), **TOL)


FAST_CONFIGS = {
    "elman": {},
    "elman-relu": {},
    "irnn": {},
    "lstm": {},
    "gru": {},
    "lstm1997": {},
    "lstm1997-blocks": {"cells_per_block": 2},
    "lstm1997-paper": {"g": "scaled-sigmoid", "h": "scaled-sigmoid"},
    "lstm1997-paper-blocks-nobias": {"g": "scaled-sigmoid", "h": "scaled-sigmoid", "cells_per_block": 2, "bias": False},
    # the hand-written BPTT (biornn.fast's "bptt" route)
    "lstm-peephole": {},
    "lstm-peephole-nobias": {"bias": False},
    "fully-recurrent": {},
    "fully-recurrent-O2-relu-sigmoid": {"output_size": 2, "nonlinearity": "relu", "output_nonlinearity": "sigmoid"},
    "fully-recurrent-identity-nobias": {"nonlinearity": "identity", "output_nonlinearity": "identity", "bias": False},
    "elman-sigmoid": {"nonlinearity": "sigmoid"},
    "elman-identity-nobias": {"nonlinearity": "identity", "bias": False},
    "lstm1997-g-only": {"g": "scaled-sigmoid"},
    "lstm1997-h-only-blocks": {"h": "scaled-sigmoid", "cells_per_block": 2},
    "gru-nobias": {"bias": False},
}


def _cell_name(key):
    for n in sorted(CELL_NAMES, key=len, reverse=True):
        if key.startswith(n):
            return n
    raise KeyError(key)


@pytest.mark.parametrize("loops", ["compiled", "python"])
@pytest.mark.parametrize("key", FAST_CONFIGS)
@pytest.mark.parametrize("variable,truncate", [(False, None), (True, None), (False, 3)])
def test_fast_path_equals_step_loop(key, variable, truncate, loops, monkeypatch):
    """Every fast route: the hand-written BPTT's loops compiled (where built) and in Python."""
    if loops == "python":
        monkeypatch.setenv("BIORNN_NATIVE", "0")
    name = _cell_name(key)
    loop = Recurrent(name, 3, 4, num_layers=2, bidirectional=True, fast=False, truncate=truncate,
                     **FAST_CONFIGS[key])
    fused = copy.deepcopy(loop)
    fused.fast = True
    assert fused.uses_fast_path() and not loop.uses_fast_path()
    x = torch.randn(4, 8, 3) * 2
    lengths = _lengths(4, 8) if variable else None
    state = tuple(torch.randn(4, 4, n) * 0.5 for n in loop.cells[0][0].state_sizes())
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, fin_a = loop(xa, state, lengths)
    out_b, fin_b = fused(xb, state, lengths)
    torch.testing.assert_close(out_a, out_b, **TOL)
    for a, b in zip(fin_a, fin_b):
        torch.testing.assert_close(a, b, **TOL)
    _loss(out_a, fin_a).backward()
    _loss(out_b, fin_b).backward()
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    for (n, p), q in zip(loop.named_parameters(), fused.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **TOL, msg=lambda m: f"{n}: {m}")


def test_the_route_is_chosen_by_the_maths_and_shown(monkeypatch):
    # the Python loops of the hand-written BPTT (without the compiled ones: tests/test_native.py)
    monkeypatch.setenv("BIORNN_NATIVE", "0")
    for name in ("elman", "elman-relu", "irnn", "lstm1997", "lstm"):
        assert Recurrent(name, 2, 3).path() == "fused"
    for name in ("fully-recurrent", "lstm-peephole", "gru"):
        assert Recurrent(name, 2, 3).path() == "bptt"
    assert Recurrent("elman", 2, 3, nonlinearity="sigmoid").path() == "bptt"
    assert Recurrent("lstm1997", 2, 3, g="scaled-sigmoid").path() == "bptt"
    # fused kernels cannot truncate variable-length batches; the hand-written BPTT can
    assert Recurrent("lstm", 2, 3, truncate=2).path(lengths=torch.tensor([1])) == "bptt"
    assert Recurrent("lstm", 2, 3).path(return_traces=True) == "loop"
    # one step at a time (streaming): oneDNN's per-call set-up costs more than the step
    assert Recurrent("lstm1997", 2, 3).path(steps=1) == "bptt"
    assert Recurrent("lstm", 2, 3).path(steps=2) == "fused"
    assert Recurrent("lstm", 2, 3, fast=False).path() == "loop"
    assert "path='bptt'" in repr(Recurrent("gru", 2, 3))
    for name in CELL_NAMES:
        assert supports(Recurrent(name, 2, 3).cells[0][0])


def scan_against_loop(cell, params, x, s0, lengths, truncate, how):
    """One scan by the step loop and by ``fast.scan(how=how)``: for each, the outputs, final
    states and the gradients of a random loss w.r.t. x, the initial state and ``params``."""
    from biornn import fast

    T = x.shape[1]
    mask = None if lengths is None else torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    results = []
    for run in (lambda xx, ss: Recurrent.scan(cell, xx, ss, mask, truncate)[:2],
                lambda xx, ss: fast.scan(cell, xx, ss, lengths, truncate, how=how)):
        xx = x.clone().requires_grad_()
        ss = cell.state_type(*(s.clone().requires_grad_() for s in s0))
        out, fin = run(xx, ss)
        _loss(out, fin).backward()
        results.append([out, *fin, xx.grad, *(s.grad for s in ss), *(p.grad.clone() for p in params)])
        for p in params:
            p.grad = None
    return results


BPTT_FORCED = ["elman", "elman-relu", "lstm", "lstm1997", "lstm1997-paper-blocks-nobias", "gru"]


@pytest.mark.parametrize("key", BPTT_FORCED)
@pytest.mark.parametrize("variable,truncate", [(False, None), (True, None), (True, 3)])
def test_hand_written_bptt_equals_step_loop_for_fused_cells_too(key, variable, truncate):
    """The "bptt" route for cells that normally take a fused kernel (it serves them
    when truncation meets variable lengths), one scan against the step loop."""
    torch.manual_seed(5)
    rnn = Recurrent(_cell_name(key), 3, 4, fast=False, **FAST_CONFIGS[key]).double()
    cell = rnn.cells[0][0]
    B, T = 5, 9
    lengths = _lengths(B, T) if variable else None
    x = torch.randn(B, T, 3, dtype=torch.float64)
    if lengths is not None:
        x = x * (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
    s0 = cell.state_type(*(torch.randn(B, n, dtype=torch.float64) * 0.5 for n in cell.state_sizes()))
    loop, fast_ = scan_against_loop(cell, list(rnn.parameters()), x, s0, lengths, truncate, "bptt")
    assert len(loop) == len(fast_)
    for a, b in zip(loop, fast_):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("loops", ["python", "compiled"])
@pytest.mark.parametrize("key", ["lstm-peephole", "fully-recurrent-O2-relu-sigmoid", "gru", "lstm1997-g-only"])
def test_gradcheck_hand_written_bptt(key, loops, monkeypatch):
    """The hand-written BPTT, its loops in Python and compiled (biornn.native)."""
    from biornn import native

    if loops == "python":
        monkeypatch.setenv("BIORNN_NATIVE", "0")
    elif not native.available():
        pytest.skip(f"compiled loops not available: {native.status()['error']}")
    # (no truncation here: it changes the gradient, not the function, so finite
    # differences cannot check it; the step-loop comparisons above do)
    rnn = Recurrent(_cell_name(key), 2, 3, num_layers=2, bidirectional=True, **FAST_CONFIGS[key]).double()
    assert rnn.path(lengths=[3, 1]) == ("bptt" if loops == "python" else "native")
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    params = tuple(rnn.parameters())

    def f(x, *ps):
        out, final = torch.func.functional_call(rnn, dict(zip(dict(rnn.named_parameters()), ps)), (x,),
                                                {"lengths": torch.tensor([3, 1])})
        return out, *final

    assert torch.autograd.gradcheck(f, (x, *[p.detach().requires_grad_() for p in params]))


ALL_CONFIGS = {
    **{n: {} for n in CELL_NAMES},
    "elman-sigmoid": {"nonlinearity": "sigmoid"},
    "fully-recurrent-O2": {"output_size": 2},
    "lstm1997-paper-blocks": {"g": "scaled-sigmoid", "h": "scaled-sigmoid", "cells_per_block": 2},
}


def _base(key):
    for n in sorted(CELL_NAMES, key=len, reverse=True):
        if key.startswith(n):
            return n
    raise KeyError(key)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "loop"])
@pytest.mark.parametrize("key", ALL_CONFIGS)
def test_padding_never_changes_real_steps(key, fast):
    """Outputs, final states and every gradient of a padded batch equal those of each
    sequence run alone, whatever the padding holds (even NaN)."""
    torch.manual_seed(3)
    rnn = Recurrent(_base(key), 3, 4, num_layers=2, bidirectional=True, fast=fast, **ALL_CONFIGS[key])
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 3)
    pad = torch.arange(6).unsqueeze(0) >= lengths.unsqueeze(1)
    x_nan = x.masked_fill(pad.unsqueeze(2), float("nan")).requires_grad_()
    out, final = rnn(x_nan, lengths=lengths)
    assert torch.isfinite(out).all()
    assert (out[pad] == 0).all()
    (out.square().sum() + sum(f.square().sum() for f in final)).backward()
    grads = [p.grad.clone() for p in rnn.parameters()]
    assert all(torch.isfinite(g).all() for g in grads)
    assert (x_nan.grad[pad] == 0).all()

    rnn.zero_grad()
    alone_grads = [torch.zeros_like(g) for g in grads]
    for b in range(3):
        L = int(lengths[b])
        xb = x[b : b + 1, :L].clone().requires_grad_()
        ob, fb = rnn(xb)
        torch.testing.assert_close(out[b : b + 1, :L], ob, **TOL)
        for f, g in zip(final, fb):
            torch.testing.assert_close(f[:, b : b + 1], g, **TOL)
        (ob.square().sum() + sum(f.square().sum() for f in fb)).backward()
        torch.testing.assert_close(x_nan.grad[b, :L], xb.grad[0], **TOL)
    for g, p in zip(grads, rnn.parameters()):
        torch.testing.assert_close(g, p.grad, **TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_gradcheck_every_cell(name):
    # default init for irnn too: its tiny input weights put ReLU pre-activations
    # within gradcheck's finite-difference step of the kink at 0
    rnn = Recurrent(name, 2, 2, num_layers=2, bidirectional=True, fast=False, init="default").double()
    lengths = torch.tensor([3, 2])
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    params = list(rnn.parameters())

    def f(x, *ps):
        out, final = torch.func.functional_call(rnn, dict(zip(dict(rnn.named_parameters()), ps)), (x,), {"lengths": lengths})
        return out, *final

    assert torch.autograd.gradcheck(f, (x, *[p.detach().clone().requires_grad_() for p in params]))


@pytest.mark.parametrize("fast", [True, False])
def test_truncated_bptt_cuts_the_gradient_not_the_values(fast):
    rnn = Recurrent("lstm", 2, 3, num_layers=2, fast=fast)
    x = torch.randn(2, 10, 2)
    full, _ = rnn(x)
    xt = x.clone().requires_grad_()
    out, _ = rnn(xt, truncate=4)
    torch.testing.assert_close(out, full, rtol=0, atol=0)
    out[:, -1].sum().backward()
    # the state is detached before steps 4 and 8: step 9 sees x_8 and x_9 only
    assert (xt.grad[:, :8] == 0).all()
    assert (xt.grad[:, 8:].abs() > 0).all()


def test_traces_are_the_loops_states_and_gates():
    rnn = Recurrent("lstm", 2, 3, num_layers=2, bidirectional=True)
    x = torch.randn(4, 6, 2)
    lengths = torch.tensor([6, 3, 5, 1])
    out, (h, c), traces = rnn(x, lengths=lengths, return_traces=True)
    out_fast, _ = rnn(x, lengths=lengths)
    torch.testing.assert_close(out, out_fast, **TOL)
    assert len(traces) == 4  # layer * 2 + direction
    assert set(traces[0]) == {"h", "c", "input_gate", "forget_gate", "cell_input", "output_gate"}
    # the last layer's traces are its outputs: forward half, then the reverse half
    torch.testing.assert_close(traces[2]["h"], out[..., :3])
    torch.testing.assert_close(traces[3]["h"], out[..., 3:])
    # the forward trace's c at each true last step is the final c
    last = traces[2]["c"][torch.arange(4), lengths - 1]
    torch.testing.assert_close(last, c[2])
    # the reverse direction ends at t = 0
    torch.testing.assert_close(traces[3]["c"][:, 0], c[3])
    gates = traces[0]["forget_gate"]
    assert gates.shape == (4, 6, 3) and (gates >= 0).all() and (gates <= 1).all()
    assert (traces[0]["c"][1, 3:] == 0).all()  # zero past the end


def test_lstm1997_cell_state_is_the_running_sum_of_gated_inputs():
    rnn = Recurrent("lstm1997", 1, 3)
    _, _, (tr,) = rnn(torch.randn(2, 20, 1), return_traces=True)
    torch.testing.assert_close(tr["c"], torch.cumsum(tr["input_gate"] * tr["cell_input"], dim=1))


def test_fully_recurrent_outputs_are_its_output_units():
    rnn = Recurrent("fully-recurrent", 3, 6, num_layers=2, output_size=2)
    out, final, traces = rnn(torch.randn(4, 5, 3), return_traces=True)
    assert out.shape == (4, 5, 2) and final.h.shape == (2, 4, 6) and final.o.shape == (2, 4, 2)
    torch.testing.assert_close(out, traces[1]["o"])
    assert rnn.cells[1][0].input_size == 2


def test_dropout_between_layers_only_in_training():
    rnn = Recurrent("gru", 3, 8, num_layers=2, dropout=0.5)
    x = torch.randn(4, 5, 3)
    rnn.eval()
    a, _ = rnn(x)
    b, _ = rnn(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    rnn.train()
    torch.manual_seed(0)
    c, _ = rnn(x)
    torch.manual_seed(0)
    rnn.fast = False
    d, _ = rnn(x)
    assert not torch.allclose(a, c)
    torch.testing.assert_close(c, d, **TOL)  # the same dropout masks on both paths


@pytest.mark.parametrize("name", ["lstm", "elman", "elman-relu", "lstm1997"])
@pytest.mark.parametrize("layers,bidirectional,variable,dropout", [
    (1, False, False, 0.0), (1, True, True, 0.0), (3, True, False, 0.0), (2, True, True, 0.5), (3, False, True, 0.3),
])
def test_a_stack_on_the_multi_layer_kernel_equals_the_step_loop(name, layers, bidirectional, variable, dropout,
                                                               monkeypatch):
    """Where every cell takes the fused kernel, the whole stack (layers and directions) is one call of
    torch's multi-layer kernel -- or one call per layer where dropout is drawn between them -- and
    gives the step loop's outputs, final states and gradients, with the same dropout masks."""
    from biornn import fast

    calls = []
    real = fast.fused_stack
    monkeypatch.setattr(fast, "fused_stack", lambda *a: calls.append(1) or real(*a))
    loop = Recurrent(name, 3, 5, num_layers=layers, bidirectional=bidirectional, dropout=dropout, fast=False)
    stacked = copy.deepcopy(loop)
    stacked.fast = True
    x = torch.randn(4, 7, 3) * 2
    lengths = _lengths(4, 7) if variable else None
    D = 2 if bidirectional else 1
    state = tuple(torch.randn(layers * D, 4, n) * 0.5 for n in loop.cells[0][0].state_sizes())
    results = []
    for rnn in (loop, stacked):
        xx = x.clone().requires_grad_()
        ss = tuple(s.clone().requires_grad_() for s in state)
        torch.manual_seed(3)
        if rnn is stacked and variable:
            # on the CPU a call with variable lengths takes the hand-written BPTT (torch's kernels run
            # packed sequences there without oneDNN), so the packed stack -- a GPU's route -- is called
            # here by itself
            out, fin = fast.fused_stack(rnn.cells, xx, ss, lengths, dropout)
        else:
            out, fin = rnn(xx, ss, lengths)
        _loss(out, fin).backward()
        results.append([out, *fin, xx.grad, *(s.grad for s in ss), *(p.grad for p in rnn.parameters())])
    assert calls == [1]
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **TOL)
    if dropout:  # the masks were drawn: another seed gives other outputs
        torch.manual_seed(4)
        assert not torch.allclose(fast.fused_stack(stacked.cells, x, state, lengths, dropout)[0], results[1][0])


def test_the_multi_layer_kernel_serves_only_whole_fused_stacks():
    from biornn import fast

    def stacks(rnn, lengths=None, steps=12):
        return fast.stacks(rnn.cells, lengths, rnn.truncate, steps)

    assert stacks(Recurrent("lstm", 2, 3, num_layers=2, bidirectional=True))
    assert stacks(Recurrent("lstm1997", 2, 3, num_layers=2))
    assert not stacks(Recurrent("lstm", 2, 3, truncate=4))  # truncation: a call per cell, chunk by chunk
    # from 32 steps the 1997 LSTM takes the compiled loops, where they are built
    assert stacks(Recurrent("lstm1997", 2, 3), steps=fast.LSTM1997_MIN_STEPS) is not fast._native.available()
    assert not stacks(Recurrent("lstm1997", 2, 3, g="scaled-sigmoid", h="scaled-sigmoid"))  # its state is scaled
    assert not stacks(Recurrent("gru", 2, 3))
    assert not stacks(Recurrent("lstm", 2, 3), steps=1)  # a single LSTM step: the compiled loops
    # variable lengths on the CPU: the hand-written BPTT, one layer and direction at a time
    assert not stacks(Recurrent("lstm", 2, 3, num_layers=2), lengths=torch.tensor([12, 5]))


@pytest.mark.parametrize("name", ["lstm", "elman", "lstm1997"])
def test_variable_lengths_on_the_cpu_take_the_hand_written_bptt(name, monkeypatch):
    """torch's kernels run packed sequences on the CPU without oneDNN (a loop of per-step operations,
    1.5-8x slower than the hand-written BPTT): a call with variable lengths takes the latter, and a
    call whose lengths are all T takes the fused kernel as if none had been given."""
    from biornn import fast

    routes = []
    real = fast.scan
    monkeypatch.setattr(fast, "scan", lambda cell, x, s, lengths, truncate, how=None: routes.append(
        fast.method(cell, lengths, truncate, x.shape[1], x.device)) or real(cell, x, s, lengths, truncate, how))
    rnn = Recurrent(name, 3, 4)
    x = torch.randn(3, 6, 3)
    hand = "native" if fast._native_maths(rnn.cells[0][0]) and fast._native.available() else "bptt"
    assert rnn.path(lengths=torch.tensor([6, 2, 4]), steps=6) == hand
    rnn(x, lengths=torch.tensor([6, 2, 4]))
    assert routes == [hand]
    assert rnn.path(lengths=torch.tensor([6, 6, 6]), steps=6) == "fused"
    routes.clear()
    out, _ = rnn(x, lengths=torch.tensor([6, 6, 6]))
    assert routes == []  # the whole stack on the fused kernel, no call per cell
    torch.testing.assert_close(out, rnn(x)[0], rtol=0, atol=0)
    assert fast.method(rnn.cells[0][0], torch.tensor([6, 2]), None, 6, "cuda") == "fused"  # cuDNN takes packed
    with torch.no_grad():  # inference: only the compiled loops beat the packed kernel
        assert rnn.path(lengths=torch.tensor([6, 2, 4]), steps=6) == ("native" if hand == "native" else "fused")


def test_module_conversions_keep_cells_in_sync():
    rnn = Recurrent("lstm-peephole", 2, 3)
    rnn.double()
    out, _ = rnn(torch.randn(1, 4, 2, dtype=torch.float64))
    assert out.dtype == torch.float64
    other = Recurrent("lstm-peephole", 2, 3).double()
    rnn.load_state_dict(other.state_dict(), assign=True)
    x = torch.randn(1, 4, 2, dtype=torch.float64)
    torch.testing.assert_close(rnn(x)[0], other(x)[0], rtol=0, atol=0)
    clone = copy.deepcopy(rnn)
    with torch.no_grad():
        clone.weight_hh_l0.add_(1.0)
    assert not torch.allclose(clone(x)[0], rnn(x)[0])


@pytest.mark.parametrize(
    "call,argument",
    [
        (lambda: Recurrent("lsmt", 3, 4), "cell"),
        (lambda: Recurrent("lstm", 3, 0), "hidden_size"),
        (lambda: Recurrent("lstm", 3, -1), "hidden_size"),
        (lambda: Recurrent("lstm", 0, 4), "input_size"),
        (lambda: Recurrent("lstm", 3, 4, num_layers=0), "num_layers"),
        (lambda: Recurrent("lstm", 3, 4, dropout=1.5), "dropout"),
        (lambda: Recurrent("lstm", 3, 4, truncate=0), "truncate"),
        (lambda: Recurrent("lstm", 3, 4, init="he"), "init"),
        (lambda: Recurrent("gru", 3, 4, cells_per_block=2), "cells_per_block"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 4)), "input_size"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5)), "input_size"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(5, 3, 2, 1)), "input"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3), lengths=[5, 6]), "lengths"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3), lengths=[5, 0]), "lengths"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3), lengths=[5, -1]), "lengths"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3), lengths=[5]), "lengths"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3), lengths=[5.0, 2.0]), "lengths"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3), state=torch.zeros(1, 2, 4)), "state"),
        (lambda: Recurrent("gru", 3, 4)(torch.randn(2, 5, 3), state=torch.zeros(1, 3, 4)), "state"),
        (lambda: Recurrent("gru", 3, 4)(torch.randn(2, 5, 3), truncate=-1), "truncate"),
        (lambda: Recurrent("lstm", 3, 4, init=3), "init"),
        (lambda: Recurrent("lstm1997", 3, 4, g=["tanh"]), "g"),
        (lambda: Recurrent("lstm", 3, 4, peepholes="no"), "peepholes"),
        (lambda: Recurrent("lstm", 3, 4, batch_first="no"), "batch_first"),
        (lambda: Recurrent("lstm", 3, 4, bidirectional=1), "bidirectional"),
        (lambda: Recurrent("lstm", 3, 4, fast=None), "fast"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3), return_traces="no"), "return_traces"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3).double()), "dtype"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randint(0, 3, (2, 5, 3))), "floating"),
        (lambda: Recurrent("lstm", 3, 4)([[0.0, 1.0, 2.0]]), "tensor"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3), state=(torch.zeros(1, 2, 4).double(),) * 2), "state.h"),
        (lambda: Recurrent("lstm", 3, 4)(torch.randn(2, 5, 3), state=Recurrent("fully-recurrent", 3, 4)(torch.randn(2, 5, 3))[1]), "state"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, argument):
    with pytest.raises(ValueError, match=rf"(?:^|\b){argument}\b"):
        call()


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_time_major_with_lengths_matches_torch(name):
    twin = TWINS[name](3, 4, num_layers=2, bidirectional=True, batch_first=False)
    rnn = Recurrent(name, 3, 4, num_layers=2, bidirectional=True, batch_first=False)
    rnn.load_state_dict(twin.state_dict())
    x = torch.randn(7, 3, 3)  # (T, B, I)
    lengths = torch.tensor([3, 7, 5])
    out, final = rnn(x, lengths=lengths)
    tout, tfinal = _run_twin(twin, x, lengths, None)
    torch.testing.assert_close(out, tout, **TOL)
    for a, b in zip(final, tfinal if name == "lstm" else (tfinal,)):
        torch.testing.assert_close(a, b, **TOL)


def test_parametrizations_and_pruning_apply():
    """torch's parametrizations (orthogonal recurrent weights) and pruning work as on nn.RNN."""
    from torch.nn.utils import parametrizations, prune

    rnn = Recurrent("elman", 3, 4)
    twin = nn.RNN(3, 4, batch_first=True)
    twin.load_state_dict(rnn.state_dict())
    parametrizations.orthogonal(rnn, "weight_hh_l0")
    parametrizations.orthogonal(twin, "weight_hh_l0")
    w = rnn.weight_hh_l0
    torch.testing.assert_close(w @ w.T, torch.eye(4), atol=1e-5, rtol=0)
    with torch.no_grad():
        twin.parametrizations.weight_hh_l0.original.copy_(rnn.parametrizations.weight_hh_l0.original)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(rnn(x)[0], twin(x)[0], **TOL)
    out, _ = rnn(x)
    out.sum().backward()
    assert rnn.parametrizations.weight_hh_l0.original.grad is not None

    pruned = Recurrent("gru", 3, 4)
    prune.l1_unstructured(pruned, "weight_hh_l0", amount=0.5)
    pruned_out, _ = pruned(x)
    assert (pruned.weight_hh_l0 == 0).sum() == 24
    step_out, _ = Recurrent.scan(pruned.cells[0][0], x, pruned.cells[0][0].initial_state(2))[:2]
    torch.testing.assert_close(pruned_out, step_out, **TOL)


def test_uses_fast_path_tells_what_forward_does(monkeypatch):
    from biornn import fast

    calls = []
    real = fast.scan
    monkeypatch.setattr(fast, "scan", lambda *a: calls.append(1) or real(*a))
    rnn = Recurrent("lstm", 2, 3, truncate=2)
    x = torch.randn(2, 5, 2)
    for lengths in (None, torch.tensor([5, 5]), torch.tensor([5, 3])):
        calls.clear()
        rnn(x, lengths=lengths)
        assert bool(calls) == rnn.uses_fast_path(lengths)


def test_empty_batch():
    rnn = Recurrent("lstm", 3, 4)
    out, (h, c) = rnn(torch.randn(0, 5, 3), lengths=torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 5, 4) and h.shape == (1, 0, 4)


def test_calls_do_not_mutate_shared_cells():
    """Every call binds fresh views of the cells, so copies sharing the templates
    (DataParallel replicas do) never see each other's parameters."""
    rnn = Recurrent("gru", 3, 4)
    shallow = copy.copy(rnn)
    shallow._parameters = {k: nn.Parameter(v.detach() + 1) for k, v in rnn._parameters.items()}
    x = torch.randn(2, 5, 3)
    before, _ = rnn(x)
    shallow(x)
    after, _ = rnn(x)
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    assert rnn._cells[0][0].weight_hh is not shallow._parameters["weight_hh_l0"]


# -- from an API walk-through (session 9) -----------------------------------------------


def _own_cell(kind):
    """A cell of one's own, its weights held as ``kind`` says."""
    from biornn.cells import ElmanCell
    from biornn.cells.base import Cell

    class Mine(ElmanCell):
        def __init__(self, input_size, hidden_size):
            super().__init__(input_size, hidden_size)
            if kind == "submodule":
                self.extra = nn.Linear(hidden_size, hidden_size)
            elif kind == "buffer":
                self.register_buffer("mask", torch.ones(hidden_size))

    class Empty(Cell):
        state_type = ElmanCell.state_type

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size

    return Empty if kind == "none" else Mine


@pytest.mark.parametrize("kind,needle", [("submodule", "submodule ('extra')"), ("buffer", "buffer ('mask')"),
                                         ("none", "no parameters")])
def test_a_cell_of_ones_own_must_hold_its_weights_as_parameters(kind, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        Recurrent(_own_cell(kind), 3, 4)
    assert [n for n, _ in Recurrent(_own_cell("plain"), 3, 4).named_parameters()][:2] == ["weight_ih_l0",
                                                                                          "weight_hh_l0"]


@pytest.mark.parametrize("name", CELL_NAMES)
@pytest.mark.parametrize("T", [1, 12, 40])
def test_an_empty_batch_gives_empty_outputs_on_every_route(name, T):
    rnn = Recurrent(name, 3, 4, bidirectional=True)
    x = torch.randn(0, T, 3, requires_grad=True)
    out, state = rnn(x)
    assert out.shape == (0, T, 8) and all(f.shape == (2, 0, n) for f, n in zip(state, rnn.cells[0][0].state_sizes()))
    out.sum().backward()


def test_an_input_on_another_device_is_refused_naming_both():
    with pytest.raises(ValueError, match="input is on meta but the parameters are on cpu"):
        Recurrent("gru", 3, 4)(torch.randn(2, 5, 3, device="meta"))


def test_path_says_bptt_where_half_precision_leaves_the_compiled_loops():
    assert Recurrent("gru", 3, 4).half().path(steps=5) == "bptt"
    assert Recurrent("gru", 3, 4).path(steps=5) in ("native", "bptt")


def test_reset_parameters_as_at_construction():
    rnn = Recurrent("irnn", 2, 6, num_layers=2)
    with torch.no_grad():
        for p in rnn.parameters():
            p.fill_(0.5)
    rnn.reset_parameters()
    assert torch.equal(rnn.weight_hh_l0, torch.eye(6)) and torch.equal(rnn.weight_hh_l1, torch.eye(6))
    assert not (rnn.weight_ih_l0 == 0.5).any()  # the cell's own default drew them afresh


def test_initialize_changes_nothing_when_it_refuses():
    from biornn.init import initialize

    rnn = Recurrent("irnn", 1, 10, num_layers=2)
    before = {k: v.clone() for k, v in rnn.state_dict().items()}
    with pytest.raises(ValueError, match="forget_bias"):
        initialize(rnn, "default", forget_bias=1.0)
    assert all(torch.equal(before[k], v) for k, v in rnn.state_dict().items())


@pytest.mark.parametrize("name", ["lstm", "lstm1997"])
def test_torch_compile_trains_the_lstms(name):
    """A compiled training step: the fused LSTM kernel's backward cannot be traced (torch 2.13), so
    under torch.compile with gradients the LSTMs take the hand-written BPTT; same outputs and gradients."""
    torch.manual_seed(0)
    rnn = Recurrent(name, 3, 4)
    compiled = torch.compile(rnn)
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 3])
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a = compiled(xa, lengths=lengths)[0]
    out_a.sum().backward()
    grads_a = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()
    out_b = rnn(xb, lengths=lengths)[0]
    out_b.sum().backward()
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(xa.grad, xb.grad)
    for a, p in zip(grads_a, rnn.parameters()):
        torch.testing.assert_close(a, p.grad)
