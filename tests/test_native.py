"""The compiled time loops (biornn.native, csrc/native.cpp) against the step loop, their routes and CLI."""

import os
import shutil

import pytest
import torch

from biornn import Recurrent, fast, native
from biornn.cells import CELL_NAMES
from biornn.cli.main import main
from conftest import NATIVE_BUILD
from test_recurrent import _cell_name, _lengths, _loss, scan_against_loop

HAVE_COMPILER = shutil.which(os.environ.get("CXX", "c++")) is not None

# every configuration the compiled loops serve (biornn.fast._native_maths)
CONFIGS = {
    "lstm": {},
    "lstm-peephole": {},
    "lstm-peephole-nobias": {"bias": False},
    "lstm1997": {},
    "lstm1997-paper": {"g": "scaled-sigmoid", "h": "scaled-sigmoid"},
    "lstm1997-g-only": {"g": "scaled-sigmoid"},
    "lstm1997-h-only-nobias": {"h": "scaled-sigmoid", "bias": False},
    "gru": {},
    "gru-nobias": {"bias": False},
    "fully-recurrent": {},
    "fully-recurrent-O3-relu-sigmoid": {"output_size": 3, "nonlinearity": "relu", "output_nonlinearity": "sigmoid"},
    "fully-recurrent-identity-nobias": {"nonlinearity": "identity", "output_nonlinearity": "identity", "bias": False},
    "fully-recurrent-sigmoid-tanh": {"nonlinearity": "sigmoid", "output_nonlinearity": "tanh"},
}


def test_the_loops_build_here():
    """Where there is a C++ compiler, the session's build (conftest) must have worked."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler: biornn runs its Python loops")
    if native.disabled():
        pytest.skip("BIORNN_NATIVE=0: the compiled loops are off for this run")
    ok, why = NATIVE_BUILD[0]
    assert ok, why
    assert native.available()
    assert native.library_path().exists()


@pytest.fixture
def compiled():
    if not native.available():
        pytest.skip(f"compiled loops not available: {native.status()['error']}")
    yield torch.ops.biornn_native


@pytest.fixture(params=["f32-blas", "f32-onednn", "f64"])
def route(request, compiled, monkeypatch):
    """The dtype, and the route of the products: torch's BLAS, or oneDNN's matmul (forced for
    every size, per step and over all steps; it serves float32 only)."""
    if request.param == "f32-onednn":
        monkeypatch.setattr(fast, "LINEAR_ONEDNN_MIN", 0)
    old = compiled.set_onednn_min(0 if request.param == "f32-onednn" else -1)
    yield torch.float64 if request.param == "f64" else torch.float32
    compiled.set_onednn_min(old)


@pytest.mark.parametrize("variable,truncate", [(False, None), (True, None), (False, 3), (True, 3)],
                         ids=["plain", "lengths", "truncate", "lengths+truncate"])
@pytest.mark.parametrize("key", CONFIGS)
def test_compiled_loops_equal_the_step_loop(key, variable, truncate, route):
    """Outputs, final states and every gradient, with lengths and truncation, on both product
    routes; H = 37 so that full vectors and a ragged tail are both exercised."""
    dtype = route
    torch.manual_seed(7)
    rnn = Recurrent(_cell_name(key), 3, 37, fast=False, **CONFIGS[key]).to(dtype)
    cell = rnn.cells[0][0]
    assert fast._native_maths(cell)
    B, T = 6, 9
    lengths = _lengths(B, T) if variable else None
    x = torch.randn(B, T, 3, dtype=dtype) * 2
    if lengths is not None:
        x = x * (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
    s0 = cell.state_type(*(torch.randn(B, n, dtype=dtype) * 0.5 for n in cell.state_sizes()))
    loop, comp = scan_against_loop(cell, list(rnn.parameters()), x, s0, lengths, truncate, "native")
    assert len(loop) == len(comp)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    for a, b in zip(loop, comp):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "plain"])
@pytest.mark.parametrize("key", ["lstm-peephole", "lstm1997-paper", "gru", "fully-recurrent-O3-relu-sigmoid"])
def test_onednn_products_with_the_weight_laid_out_once(key, pack, compiled, monkeypatch):
    """From 32 steps the per-step oneDNN products read the weight in oneDNN's blocked layout,
    laid out once per call (set_pack_weights(False) keeps the plain layout, for A/B runs): both
    equal the step loop, with lengths and truncation."""
    monkeypatch.setattr(fast, "LINEAR_ONEDNN_MIN", 0)
    old_min, old_pack = compiled.set_onednn_min(0), compiled.set_pack_weights(pack)
    try:
        torch.manual_seed(13)
        rnn = Recurrent(_cell_name(key), 3, 37, fast=False, **CONFIGS[key])
        cell = rnn.cells[0][0]
        B, T = 5, 40
        lengths = _lengths(B, T)
        x = torch.randn(B, T, 3) * (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
        s0 = cell.state_type(*(torch.randn(B, n) * 0.5 for n in cell.state_sizes()))
        loop, comp = scan_against_loop(cell, list(rnn.parameters()), x, s0, lengths, 16, "native")
    finally:
        compiled.set_onednn_min(old_min)
        compiled.set_pack_weights(old_pack)
    for a, b in zip(loop, comp):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", ["lstm-peephole", "lstm1997-paper", "gru", "fully-recurrent"])
@pytest.mark.parametrize("wants", ["none", "first", "last"])
def test_initial_states_without_gradients_leave_the_others_unchanged(key, wants, route):
    """Where no initial state needs a gradient the backward skips step 0's carry (its product
    into the initial state); the gradients of x and of every weight, and those of the initial
    states that do need one, equal the step loop's."""
    dtype = route
    torch.manual_seed(11)
    rnn = Recurrent(_cell_name(key), 3, 37, fast=False, **CONFIGS[key]).to(dtype)
    cell = rnn.cells[0][0]
    B, T = 6, 7
    x = torch.randn(B, T, 3, dtype=dtype)
    s0 = [torch.randn(B, n, dtype=dtype) * 0.5 for n in cell.state_sizes()]
    grads = {"none": [], "first": [0], "last": [len(s0) - 1]}[wants]
    results = []
    for run in (lambda xx, ss: Recurrent.scan(cell, xx, ss, None, None)[:2],
                lambda xx, ss: fast.scan(cell, xx, ss, None, None, how="native")):
        xx = x.clone().requires_grad_()
        ss = cell.state_type(*(s.clone().requires_grad_(k in grads) for k, s in enumerate(s0)))
        out, fin = run(xx, ss)
        _loss(out, fin).backward()
        results.append([out, xx.grad, *(ss[k].grad for k in grads), *(p.grad.clone() for p in rnn.parameters())])
        rnn.zero_grad(set_to_none=True)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("key", ["lstm-peephole", "gru", "fully-recurrent", "lstm1997-paper"])
def test_compiled_loops_equal_python_bptt_on_wide_steps(key, compiled):
    """A step wide enough that its rows are split between threads (B = 64, H = 256)."""
    torch.manual_seed(2)
    rnn = Recurrent(_cell_name(key), 5, 256, **CONFIGS[key])
    cell = rnn.cells[0][0]
    x = torch.randn(64, 4, 5)
    lengths = torch.randint(1, 5, (64,))
    s0 = cell.state_type(*(torch.randn(64, n) * 0.5 for n in cell.state_sizes()))
    res = []
    for how in ("bptt", "native"):
        xx = x.clone().requires_grad_()
        out, fin = fast.scan(cell, xx, s0, lengths, None, how=how)
        _loss(out, fin).backward()
        res.append([out, *fin, xx.grad, *(p.grad.clone() for p in rnn.parameters())])
        rnn.zero_grad()
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", ["gru", "lstm-peephole", "fully-recurrent-O3-relu-sigmoid", "lstm1997-paper"])
def test_python_loops_with_onednn_products_equal_the_step_loop(key, monkeypatch):
    """The products over all steps (projection, input and weight gradients, the GRU's strided
    r/z block among them) by oneDNN, on the Python loops."""
    monkeypatch.setenv("BIORNN_NATIVE", "0")
    monkeypatch.setattr(fast, "LINEAR_ONEDNN_MIN", 0)
    torch.manual_seed(3)
    rnn = Recurrent(_cell_name(key), 3, 37, fast=False, **CONFIGS[key])
    cell = rnn.cells[0][0]
    lengths = _lengths(6, 9)
    x = torch.randn(6, 9, 3) * (torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
    s0 = cell.state_type(*(torch.randn(6, n) * 0.5 for n in cell.state_sizes()))
    loop, py = scan_against_loop(cell, list(rnn.parameters()), x, s0, lengths, None, "bptt")
    for a, b in zip(loop, py):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "lstm-peephole", "lstm1997", "gru", "fully-recurrent"])
def test_nan_reaches_the_outputs_as_on_the_other_routes(name, compiled):
    """float32 uses a fast exp that clamps its argument; a NaN must still come out as NaN."""
    rnn = Recurrent(name, 2, 20)
    cell = rnn.cells[0][0]
    x = torch.randn(3, 12, 2)
    x[0, 5, 1] = float("nan")
    s0 = cell.state_type(*(torch.zeros(3, n) for n in cell.state_sizes()))
    with torch.no_grad():
        out_c, _ = fast.scan(cell, x, s0, None, None, how="native")
        out_p, _ = fast.scan(cell, x, s0, None, None, how="bptt")
    assert torch.equal(out_c.isnan(), out_p.isnan())
    assert out_c[0, 5:].isnan().all() and not out_c[1:].isnan().any()


@pytest.mark.parametrize("loops", ["compiled", "python"])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_under_autocast_the_hand_written_bptt_runs_in_float32(name, loops, compiled, monkeypatch):
    """Under CPU autocast every cell trains (autocast's bfloat16 products used to meet the hand-written
    BPTT's float32 in-place ones: a dtype error for the peephole and 1997 LSTMs and the fully recurrent
    net); the hand-written BPTT runs in float32, so its results are those without autocast; a bfloat16
    input (a layer before under autocast) is read in float32."""
    if loops == "python":
        monkeypatch.setenv("BIORNN_NATIVE", "0")
    torch.manual_seed(0)
    rnn = Recurrent(name, 3, 8, num_layers=2, bidirectional=True)
    x = torch.randn(4, 40, 3)  # 40 steps: the 1997 LSTM takes the compiled loops too
    lengths = [40, 33, 40, 12]
    route = rnn.path(lengths, steps=40)
    out0, _ = rnn(x, lengths=lengths)
    for given, inside in ((x, False), (x, True), (x.bfloat16(), False)):
        xa = given.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, state = rnn(xa, lengths=lengths)
            if inside:  # backward() within the autocast block: the hand-written backward too
                out.float().sum().backward()
        if not inside:
            out.float().sum().backward()
        assert xa.grad is not None and all(p.grad is not None for p in rnn.parameters())
        rnn.zero_grad()
        if route != "fused" and given.dtype == torch.float32:
            assert out.dtype == torch.float32
            torch.testing.assert_close(out, out0, rtol=0, atol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the state fed back (bfloat16 from a fused kernel)
            out2, _ = rnn(x[:, :5], state)
        assert out2.shape == (4, 5, 16)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_a_meta_device_module_runs_every_route(name):
    """Shape inference on the meta device: autocast's state is asked of the device type, which autocast
    does not know for meta (never on there), on every route."""
    out, _ = Recurrent(name, 3, 4).to("meta")(torch.randn(2, 5, 3, device="meta"))
    assert out.shape == (2, 5, 4) and out.device.type == "meta"


def test_the_operators_refuse_inconsistent_batch_sizes(compiled):
    T, B, H = 3, 4, 5
    A, Cs, HC, Hs = torch.zeros(T, B, 3 * H), torch.zeros(T, B, H), torch.zeros(T, B, H), torch.zeros(T, B, H)
    w = torch.zeros(3 * H, H)
    for bad in ([4, 4], [4, 5, 1], [2, 3, 1], [4, 2, -1]):
        with pytest.raises(RuntimeError, match="batch_sizes"):
            compiled.lstm1997_forward(A, Cs, HC, Hs, torch.zeros(B, H), torch.zeros(B, H), w, False, False, bad)


def test_routes_native_where_built_python_elsewhere(compiled, monkeypatch):
    for name in ("lstm-peephole", "gru", "fully-recurrent"):
        assert Recurrent(name, 2, 3).path() == "native"
        assert "path='native'" in repr(Recurrent(name, 2, 3))
    # the 1997 LSTM: the compiled loops from LSTM1997_MIN_STEPS steps on and for single steps,
    # torch's fused kernel for short sequences
    assert Recurrent("lstm1997", 2, 3).path(steps=fast.LSTM1997_MIN_STEPS) == "native"
    assert Recurrent("lstm1997", 2, 3).path(steps=fast.LSTM1997_MIN_STEPS - 1) == "fused"
    assert Recurrent("lstm1997", 2, 3).path(steps=1) == "native"
    assert Recurrent("lstm1997", 2, 4, cells_per_block=2).path(steps=100) == "fused"
    assert Recurrent("lstm1997", 2, 3, g="scaled-sigmoid").path() == "native"
    # memory blocks of several cells, sigmoid Elman units: the Python loops
    assert Recurrent("lstm1997", 2, 4, cells_per_block=2, g="scaled-sigmoid").path() == "bptt"
    assert Recurrent("elman", 2, 3, nonlinearity="sigmoid").path() == "bptt"
    # not on the CPU: the Python loops
    assert fast.method(Recurrent("gru", 2, 3).cells[0][0], device="cuda") == "bptt"
    assert fast.method(Recurrent("gru", 2, 3).cells[0][0], device="cpu") == "native"
    monkeypatch.setenv("BIORNN_NATIVE", "0")
    assert Recurrent("gru", 2, 3).path() == "bptt"


def test_other_dtypes_fall_back_to_python_loops(compiled, monkeypatch):
    seen = []
    real = fast._bptt_scan
    monkeypatch.setattr(fast, "_bptt_scan", lambda *a: seen.append(a[5]) or real(*a))
    rnn = Recurrent("gru", 2, 3).to(torch.bfloat16)
    out, _ = rnn(torch.randn(2, 4, 2, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and seen == [False]
    Recurrent("gru", 2, 3)(torch.randn(2, 4, 2))
    assert seen == [False, True]


def test_forcing_the_compiled_loops_where_they_cannot_serve_is_refused(compiled):
    cell = Recurrent("lstm1997", 2, 4, cells_per_block=2).cells[0][0]
    with pytest.raises(ValueError, match="compiled loops cannot serve"):
        fast.scan(cell, torch.randn(1, 2, 2), cell.state_type(torch.zeros(1, 4), torch.zeros(1, 4)), None, None,
                  how="native")


def test_streaming_steps_carry_the_state_like_one_call(compiled):
    """One sample per call (the state carried) gives what one call over the sequence gives."""
    torch.manual_seed(4)
    for name in ("lstm", "lstm1997", "lstm-peephole", "gru", "fully-recurrent"):
        rnn = Recurrent(name, 2, 5)
        x = torch.randn(3, 7, 2)
        with torch.no_grad():
            whole, final = rnn(x)
            state, outs = None, []
            for t in range(7):
                assert rnn.path(steps=1) == "native"
                out, state = rnn(x[:, t : t + 1], state)
                outs.append(out)
        torch.testing.assert_close(torch.cat(outs, 1), whole, rtol=1e-5, atol=1e-6)
        for a, b in zip(state, final):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cli_status_and_bad_usage(compiled, capsys):
    assert main(["native", "status", "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["loaded"] is True and info["built"] is True and info["error"] is None
    assert main(["native"]) == 2
    assert "required" in capsys.readouterr().err
    assert main(["native", "build"]) == 0
    assert capsys.readouterr().out.startswith("up to date: ")


def test_build_without_a_compiler_is_one_line_and_keeps_the_build(compiled, monkeypatch, capsys):
    before = native.library_path().read_bytes()
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    assert main(["native", "build", "--force"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no C++ compiler" in err
    assert native.library_path().read_bytes() == before


def test_build_into_an_unusable_cache_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    assert main(["native", "build"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the build there (Not a directory)" in err and "XDG_CACHE_HOME" in err


@pytest.mark.slow
def test_build_into_a_fresh_cache_leaves_only_the_library(compiled, monkeypatch, tmp_path):
    """A build (a child process compiles; this process already has the operators) lands
    atomically under the user cache: the library and nothing else."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = native.build()
    assert path == tmp_path / "biornn" / "native" / native.key() / "biornn_native.so"
    assert [p.name for p in path.parent.iterdir()] == ["biornn_native.so"]
    (path.parent.parent / (native.key().rsplit("-", 1)[0] + "-000000000000")).mkdir()  # another source's build
    assert main(["native", "build"]) == 0  # kept: another checkout may use it
    assert len(list(path.parent.parent.iterdir())) == 2
    assert main(["native", "build", "--prune"]) == 0
    assert [p.name for p in path.parent.parent.iterdir()] == [native.key()]


def test_a_failed_build_is_told_by_the_compiler_s_own_line():
    """torch's cpp_extension prints a traceback before ninja's output; the line shown was its
    ``raise CalledProcessError(...`` (the first line mentioning an error), not the compiler's."""
    from biornn.native import compiler_error

    output = """Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/torch/utils/cpp_extension.py", line 2600, in _run_ninja_build
    subprocess.run(
  File "/usr/lib/python3.11/subprocess.py", line 571, in run
    raise CalledProcessError(retcode, process.args,
subprocess.CalledProcessError: Command '['ninja', '-v']' returned non-zero exit status 1.
[1/2] c++ -MMD -MF native.o.d -DTORCH_EXTENSION_NAME=biornn_native -c native.cpp -o native.o
FAILED: native.o
c++ -MMD -MF native.o.d -include Python_missing.h -c native.cpp -o native.o
<command-line>: fatal error: Python_missing.h: No such file or directory
compilation terminated.
ninja: build stopped: subcommand failed.
"""
    assert compiler_error(output) == "<command-line>: fatal error: Python_missing.h: No such file or directory"
    gcc = "native.cpp: In function 'void f()':\nnative.cpp:12:3: error: 'x' was not declared in this scope\n"
    assert compiler_error(gcc) == "native.cpp:12:3: error: 'x' was not declared in this scope"
    assert compiler_error("FAILED: native.o\n/bin/sh: 1: false: not found\n") == "/bin/sh: 1: false: not found"
    assert compiler_error("") == "no output"
    assert compiler_error("something odd\nat the end\n") == "at the end"
