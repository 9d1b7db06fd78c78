"""Diagnostics: dL/dh_t against direct autograd, a linear RNN with a known answer, traces
against the loop's outputs, explanations of a tiny trained model, the commands' bad input."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from biornn import Recurrent
from biornn.cells import CELL_NAMES, FullyRecurrentCell
from biornn.cli.main import main
from biornn.config import resolve
from biornn.data.registry import DATASETS
from biornn.diagnostics import (
    cell_state_stream,
    explain_run,
    final_state_jacobian_norms,
    fresh_gradient_flow,
    gradient_flow,
    integrated_gradients,
    member_logits,
    model_logits,
    state_traces,
)
from biornn.evaluate import load_run
from biornn.train import train


def _hand_step(cell, x_t: Tensor, state, leaf: Tensor):
    """One step of ``cell`` with ``leaf`` (B, H) added to the hidden state before anything reads it.

    Written out by hand for the fully recurrent net, whose output units o_t read s_t within the
    step; the other cells derive nothing from h within a step, so their own ``step`` serves."""
    if isinstance(cell, FullyRecurrentCell):
        a = (x_t @ cell.weight_ih.T + cell.bias_ih + state.h @ cell.weight_hh.T + cell.bias_hh
             + state.o @ cell.weight_oh.T)
        s = cell.f_h(a) + leaf
        return type(state)(s, cell.f_o(s @ cell.weight_ho.T + cell.bias_ho))
    new, _ = cell.step(x_t, state)
    return new._replace(h=new.h + leaf)


def _direct_dl_dh(rnn: Recurrent, x: Tensor, loss_fn, lengths=None) -> list[Tensor]:
    """dL_b/dh_{b,t} per direction of a one-layer net, by an independent oracle: every sequence is
    unrolled by hand on its own real steps only (no padding, no masking), each direction in its own
    time order, with a zero leaf requiring grad added to every h_t before any use; autograd of the
    sequence's own loss with respect to the leaves.  Returns one (B, T, H) tensor per direction
    (zero past each sequence's end)."""
    B, T = x.shape[:2]
    D = 2 if rnn.bidirectional else 1
    cells = rnn.cells[0]
    H = rnn.hidden_size
    out_grads = [torch.zeros(B, T, H, dtype=x.dtype) for _ in range(D)]
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        outs, finals, leaves = [], [], []
        for d in range(D):
            xs = x[b : b + 1, :L]
            if d == 1:
                xs = xs.flip(1)
            cell = cells[d]
            state = cell.initial_state(1, x.dtype)
            steps, mine = [], []
            for t in range(L):
                leaf = torch.zeros(1, H, dtype=x.dtype, requires_grad=True)
                mine.append(leaf)
                state = _hand_step(cell, xs[:, t], state, leaf)
                steps.append(cell.output(state))
            out = torch.stack(steps, 1)  # (1, L, O)
            outs.append(out.flip(1) if d == 1 else out)
            finals.append(state)
            leaves.append(mine)
        out = torch.cat(outs, 2)
        out = torch.cat([out, torch.zeros(1, T - L, out.shape[2], dtype=x.dtype)], 1)  # (1, T, D*O)
        final = type(finals[0])(*(torch.stack(f) for f in zip(*finals)))  # each (D, 1, size)
        (loss,) = loss_fn(out, final)
        grads = torch.autograd.grad(loss, [leaf for mine in leaves for leaf in mine])
        for d in range(D):
            g = torch.cat(grads[d * L : (d + 1) * L])  # (L, H), in the direction's own order
            out_grads[d][b, :L] = g.flip(0) if d == 1 else g
    return out_grads


Tensor = torch.Tensor


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_dl_dh_equals_an_independent_oracle(cell, with_lengths, bidirectional):
    """The probes give the total derivative dL/dh_t through every later use of h_t, for every cell.
    (The fully recurrent net's probe used to be added after its output units had read s_t: it missed
    s_t -> o_t -> loss and s_t -> o_t -> s_{t+1}, and dL/dh at the last step read 0.)"""
    torch.manual_seed(1)
    rnn = Recurrent(cell, 3, 5, bidirectional=bidirectional).double()
    B, T = 4, 9
    x = torch.randn(B, T, 3, dtype=torch.double)
    lengths = torch.tensor([9, 7, 4, 1]) if with_lengths else None
    w = torch.randn(rnn.output_size, dtype=torch.double)

    def loss(out, final):  # a loss on every step's output and on the final hidden state
        return (out @ w).pow(2).sum(1) + final[0].sum((0, 2))

    expected = _direct_dl_dh(rnn, x, loss, lengths)
    D = 2 if bidirectional else 1
    probes = [torch.zeros(B, T, 5, dtype=torch.double, requires_grad=True) for _ in range(D)]
    out, final = rnn(x, lengths=lengths, probes=probes)
    got = torch.autograd.grad(loss(out, final).sum(), probes)
    for d in range(D):
        assert torch.allclose(got[d], expected[d], rtol=1e-10, atol=1e-12), (cell, d)
        assert expected[d][:, -1 if d == 0 else 0].abs().sum() > 0  # not trivially zero at the loss's end
    r = gradient_flow(rnn, x, loss, lengths, jacobian_batch=0)
    mask = torch.ones(B, T, dtype=torch.bool) if lengths is None else torch.arange(T) < lengths.unsqueeze(1)
    for d in range(D):
        mean = (expected[d].norm(dim=2) * mask).sum(0) / mask.sum(0)
        assert torch.allclose(torch.tensor(r["dl_dh"][d], dtype=torch.double), mean, rtol=1e-10, atol=1e-12)


def test_fully_recurrent_probe_sees_the_output_units():
    """A loss on the last output alone: dL/ds_{T-1} = V^T (f_o' * dL/do) is not zero (it read 0.0), and
    dh_T/dh_t flows along s_t -> o_t -> s_{t+1} (the only path left with W_hh = 0)."""
    torch.manual_seed(0)
    rnn = Recurrent("fully-recurrent", 2, 4).double()
    x = torch.randn(3, 6, 2, dtype=torch.double)
    r = gradient_flow(rnn, x, lambda out, final: out[:, -1].sum(1), jacobian_batch=0)
    assert r["dl_dh"][0][-1] > 1e-3
    with torch.no_grad():
        rnn.weight_hh_l0.zero_()
    r = gradient_flow(rnn, x, lambda out, final: out[:, -1].sum(1), jacobian_batch=3)
    assert r["dh_final_dh"][0][-2] > 1e-3


def test_probes_change_no_value_and_reach_every_layer_and_direction():
    torch.manual_seed(0)
    rnn = Recurrent("gru", 2, 4, num_layers=2, bidirectional=True).double()
    x = torch.randn(3, 6, 2, dtype=torch.double)
    lengths = torch.tensor([6, 4, 2])
    probes = [torch.zeros(3, 6, 4, dtype=torch.double, requires_grad=True) for _ in range(4)]
    out0, _ = rnn(x, lengths=lengths)
    out1, _ = rnn(x, lengths=lengths, probes=probes)
    assert torch.allclose(out0, out1, atol=1e-12)
    out1.sum().backward()
    for p in probes:
        assert p.grad.abs().sum() > 0
        assert torch.all(p.grad[2, 2:] == 0)  # padded steps: no gradient
    with pytest.raises(ValueError, match="probes must be a list of 4"):
        rnn(x, probes=probes[:3])


def test_identity_linear_rnn_gradient_is_constant_over_time():
    """h_t = h_{t-1} + W x_t: dh_T/dh_t = I, so dL/dh_t is the same at every step."""
    torch.manual_seed(0)
    H, T = 6, 40
    rnn = Recurrent("elman", 2, H, nonlinearity="identity", init="identity").double()
    assert torch.equal(rnn.weight_hh_l0, torch.eye(H, dtype=torch.double))
    x = torch.randn(5, T, 2, dtype=torch.double)
    w = torch.randn(H, dtype=torch.double)
    r = gradient_flow(rnn, x, lambda out, final: out[:, -1] @ w, jacobian_batch=5)
    g = torch.tensor(r["dl_dh"][0], dtype=torch.double)
    assert torch.allclose(g, torch.full((T,), float(w.norm()), dtype=torch.double), rtol=1e-12)
    assert torch.allclose(torch.tensor(r["dh_final_dh"][0], dtype=torch.double), torch.full((T,), math.sqrt(H), dtype=torch.double))
    # and a contraction W = 0.5 I loses a factor 2 per step: a known geometric decay
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(0.5)
    r = gradient_flow(rnn, x, lambda out, final: out[:, -1] @ w, jacobian_batch=0)
    g = torch.tensor(r["dl_dh"][0], dtype=torch.double)
    assert torch.allclose(g[:-1] / g[1:], torch.full((T - 1,), 0.5, dtype=torch.double))


def test_jacobian_norms_match_full_jacobian():
    torch.manual_seed(2)
    rnn = Recurrent("lstm", 2, 3).double()
    x = torch.randn(2, 5, 2, dtype=torch.double)
    norms = final_state_jacobian_norms(rnn, x, chunk=2)[0]  # (T,)
    for t in range(5):
        expected = []
        for b in range(2):
            def f(h_t, b=b):  # h_T as a function of h_t, by the probe at step t
                p = torch.zeros(1, 5, 3, dtype=torch.double)
                p = torch.cat([p[:, :t], (h_t - h_t.detach()).view(1, 1, 3), p[:, t + 1:]], 1)
                return rnn(x[b : b + 1], probes=[p])[1][0][0, 0]
            h = torch.zeros(3, dtype=torch.double)
            expected.append(torch.autograd.functional.jacobian(f, h).norm())
        assert torch.isclose(norms[t], torch.stack(expected).mean())


def test_elman_vanishes_lstm1997_keeps_its_gradient():
    el = fresh_gradient_flow("elman", 60, hidden_size=64, batch=4, jacobian_batch=0)["dl_dh"][0]
    l97 = fresh_gradient_flow("lstm1997", 60, hidden_size=64, batch=4, jacobian_batch=0)["dl_dh"][0]
    assert el[0] / el[-1] < 1e-6  # many orders of magnitude over 60 steps
    assert l97[0] / l97[-1] > 0.1


def test_state_traces_equal_the_loops_outputs():
    torch.manual_seed(0)
    for cell in ("lstm", "gru", "lstm1997"):
        rnn = Recurrent(cell, 3, 4, num_layers=2, bidirectional=True)
        x = torch.randn(2, 7, 3)
        lengths = torch.tensor([7, 5])
        out, (h, *_) = rnn(x, lengths=lengths)  # the fast path where it applies
        tr = state_traces(rnn, x, lengths)
        assert torch.allclose(torch.cat([tr[2]["h"], tr[3]["h"]], dim=2), out, atol=1e-6)
        assert torch.allclose(tr[2]["h"][1, 4], h[2, 1], atol=1e-6)  # last real step = final state
        assert torch.allclose(tr[3]["h"][1, 0], h[3, 1], atol=1e-6)  # reverse: step 0
        assert torch.all(tr[0]["h"][1, 5:] == 0)


def test_cell_state_grows_without_forget_gate():
    s = cell_state_stream(("lstm1997", "lstm"), length=600, hidden_size=8, batch=2)
    l97, lstm = s["cells"]["lstm1997"], s["cells"]["lstm"]
    assert l97["final_mean_abs_c"] > 5 * lstm["final_mean_abs_c"]
    assert l97["slope"] > 10 * abs(lstm["slope"])
    assert lstm["max_abs_c"] < 5


def test_integrated_gradients_completeness_on_a_known_function():
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])

    def score(b):  # quadratic: the trapezoid rule with many steps is nearly exact
        return (b * w).sum((1, 2)).pow(2)

    gxi, ig, fx, fb = integrated_gradients(score, x, steps=200)
    assert fb == 0.0
    assert abs(float(ig.sum()) - fx) < 1e-3 * abs(fx)
    assert torch.allclose(gxi, x * 2 * float((x * w).sum()) * w)


# -- a tiny trained names model ----------------------------------------------------------------

LANGS = [Path(f.path).stem for f in DATASETS["names"].files if f.path.endswith(".txt")]
TINY = ["hidden_size=8", "embedding_dim=4", "batch_size=16", "epochs=2", "ensemble=1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    names = root / "names"
    names.mkdir()
    rng = random.Random(0)
    letters = "abcdefghijklmnoprstuvz"
    for k, lang in enumerate(LANGS):
        ending = letters[k % len(letters)] + letters[(3 * k + 1) % len(letters)]
        rows = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 5))).title() + ending for _ in range(12)}
        (names / f"{lang}.txt").write_text("\n".join(sorted(rows)) + "\n", encoding="utf-8")
    (names / "LICENSE").write_text("made up for tests\n")
    return root


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    train(resolve("names", overrides=TINY), out, data_dir=str(data_dir), progress=False, log=lambda s: None)
    return out


@pytest.fixture(scope="module")
def ensemble_run(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "e"
    # one-hot GRUs with the window layer over the characters (conv_channels): member_logits, explain and gradient flow read it
    # and no n-gram part (``run`` has the names default's)
    cfg = resolve("names", overrides=[*TINY, "ensemble=2", "epochs=1", "embedding_dim=0", "cell=gru",
                                      "conv_channels=3", "conv_kernel=3", "ngram_blend=0"])
    train(cfg, out, data_dir=str(data_dir), progress=False, log=lambda s: None)
    return out


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_onehot_forward_equals_the_models_own(run, ensemble_run):
    for r in (run, ensemble_run):
        _, _, model, meta = load_run(r)
        x = torch.tensor([[2, 3, 4, 5], [5, 6, 0, 0]])
        lengths = torch.tensor([4, 2])
        onehot = torch.nn.functional.one_hot(x, len(meta["vocab_obj"])).float()
        with torch.no_grad():
            assert torch.allclose(model_logits(model, onehot, lengths), model(x, lengths), atol=1e-5)


def test_explain_completeness_and_probabilities(run, ensemble_run):
    for r in (run, ensemble_run):
        [row] = explain_run(r, ["Abcdeab"], steps=128)
        T = len("Abcdeab")
        assert len(row["integrated_gradients"]) == len(row["grad_x_input"]) == T == len(row["hidden"])
        delta = row["score"] - row["score_baseline"]
        assert abs(row["ig_sum"] - delta) <= 0.01 * max(1.0, abs(delta)), row
        assert row["completeness_gap"] == pytest.approx(abs(row["ig_sum"] - delta))
        final = {k: v[-1] for k, v in row["probability_after_step"].items()}
        assert max(final, key=final.get) == row["prediction"]
        assert final[row["prediction"]] == pytest.approx(row["probability"], abs=1e-5)
        for p in row["probability_after_step"].values():
            assert all(0.0 <= q <= 1.0 for q in p)


def test_explain_cli_writes_json_and_png(run, tmp_path, capsys):
    out = tmp_path / "ex"
    assert main(["explain", str(run), "Abcdeab", "Zuvab", "--out", str(out), "--steps", "32"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in lines] == ["Abcdeab", "Zuvab"]
    saved = json.loads((out / "explain.json").read_text())
    assert len(saved["inputs"]) == 2
    assert (out / "explain-0.png").stat().st_size > 1000 and (out / "explain-1.png").exists()
    assert not list(out.glob(".*"))  # no temporary files left
    # one input into the same folder: the earlier explain-1.png does not stay beside an explain.json of one
    assert main(["explain", str(run), "Zuvab", "--out", str(out), "--steps", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["explain-0.png", "explain.json"]
    capsys.readouterr()
    (tmp_path / "afile").write_text("x")
    assert main(["explain", str(run), "Zuvab", "--out", str(tmp_path / "afile" / "sub")]) == 2
    _one_line_error(capsys, "afile", "not a directory")


def test_diagnose_gradients_of_a_run(run, data_dir, tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["diagnose", "gradients", str(run), "--data-dir", str(data_dir), "--out", str(out),
                 "--batch", "8"]) == 0
    res = json.loads((out / "gradients.json").read_text())
    [m] = res["members"]
    assert len(m["dl_dh"]) == 2  # bidirectional: forward and reverse
    assert "weight_hh_l0" in " ".join(m["weight_grad_norms"]) and (out / "gradients.png").exists()
    assert "forget_gate" in m["saturation"][0]


def test_diagnose_gradients_and_states_of_a_run_with_a_window_layer(ensemble_run, data_dir, tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["diagnose", "gradients", str(ensemble_run), "--data-dir", str(data_dir), "--out", str(out),
                 "--batch", "8"]) == 0
    res = json.loads((out / "gradients.json").read_text())
    assert len(res["members"]) == 2 and all(len(m["dl_dh"]) == 2 for m in res["members"])
    assert main(["diagnose", "states", str(ensemble_run), "Abcde", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "states-0.png").exists()


def test_diagnose_gradients_fresh_cells(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["diagnose", "gradients", "--cell", "elman", "lstm1997", "--length", "50", "--hidden", "8",
                 "--batch", "4", "--out", str(out)]) == 0
    res = json.loads((out / "gradients.json").read_text())
    assert set(res["cells"]) == {"elman", "lstm1997"}
    assert len(res["cells"]["elman"]["dl_dh"][0]) == 50
    assert (out / "gradients.png").stat().st_size > 1000
    assert "elman" in capsys.readouterr().out


def test_diagnose_states_run_and_stream(run, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["diagnose", "states", str(run), "Abcab", "--out", str(out)]) == 0
    res = json.loads((out / "states.json").read_text())
    assert set(res["inputs"][0]["traces"]) >= {"h", "c", "input_gate", "forget_gate"}
    assert (out / "states-0.png").exists()
    out2 = tmp_path / "s2"
    assert main(["diagnose", "states", "--stream", "300", "--hidden", "4", "--out", str(out2)]) == 0
    res = json.loads((out2 / "cell_state.json").read_text())
    assert set(res["cells"]) == {"lstm1997", "lstm"} and (out2 / "cell_state.png").exists()


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_bad_inputs_exit_2_with_one_line(run, tmp_path, capsys):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")
    assert main(["explain", str(incomplete), "Smith"]) == 2
    _one_line_error(capsys, "missing", "model.safetensors")
    assert main(["explain", str(tmp_path / "nothing"), "Smith"]) == 2
    _one_line_error(capsys, "no such run directory")
    assert main(["explain", str(run), "Ab\u4e2d"]) == 2
    _one_line_error(capsys, "not in the alphabet", "\u4e2d")
    assert main(["diagnose", "states", str(run), "\u4e2d\u6587"]) == 2
    _one_line_error(capsys, "not in the alphabet")
    assert main(["diagnose", "gradients", str(incomplete)]) == 2
    _one_line_error(capsys, "missing")
    assert main(["diagnose", "gradients", "--cell", "lsmt"]) == 2
    _one_line_error(capsys, "lsmt")
    # a numeric input with the wrong number of features per step
    csv = tmp_path / "x.csv"
    csv.write_text("0.1,0.2,0.3\n0.4,0.5,0.6\n")
    assert main(["diagnose", "states", "--cell", "lstm", "--input", str(csv), "--input-size", "2",
                 "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "x.csv", "3 features", "2")
    assert main(["explain", str(run), "Smith", "--target", "Klingon"]) == 2
    _one_line_error(capsys, "Klingon")


def test_gradient_plot_without_the_jacobian_panel_warns_nothing(tmp_path):
    """--jacobian-batch 0 measures no dh_T/dh_t: that panel says so instead of an empty legend
    (matplotlib's "No artists with labels" warning went to stderr)."""
    import warnings

    from biornn.diagnostics import plot_gradient_flow

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_gradient_flow({"lstm": {"dl_dh": [1.0, 0.5, 0.1]}}, tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0


def test_jacobian_batch_larger_than_the_batch_is_refused(tmp_path, capsys):
    """The Jacobians are taken over the first sequences of the batch: asking for more was capped without a
    word; the default follows a smaller --batch."""
    out = tmp_path / "g"
    assert main(["diagnose", "gradients", "--cell", "elman", "--length", "10", "--hidden", "4", "--batch", "4",
                 "--jacobian-batch", "9", "--out", str(out)]) == 2
    _one_line_error(capsys, "--jacobian-batch 9 is more than --batch 4")
    assert not out.exists()
    assert main(["diagnose", "gradients", "--cell", "elman", "--length", "10", "--hidden", "4", "--batch", "4",
                 "--out", str(out)]) == 0
    assert json.loads((out / "gradients.json").read_text())["cells"]["elman"]["dh_final_dh"]


def test_integrated_gradients_names_what_is_wrong():
    from biornn.diagnostics import integrated_gradients

    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"one score per input, \(N,\) = \(65,\)"):
        integrated_gradients(lambda z: z.sum(), x)  # one number for the whole path
    with pytest.raises(ValueError, match="x must be a floating"):
        integrated_gradients(lambda z: z.sum((1, 2)), torch.ones(5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="baseline must be"):
        integrated_gradients(lambda z: z.sum((1, 2)), x, baseline=torch.zeros(4, 3))
    _, ig, fx, f0 = integrated_gradients(lambda z: z.sum((1, 2)), x)
    assert abs(float(ig.sum()) - (fx - f0)) < 1e-4


def _halving_linear_rnn(bidirectional: bool, H: int = 4) -> Recurrent:
    """h_t = 0.5 h_{t-1} + W x_t + b in every direction: dh_t/dh_{t-1} = 0.5 I, a known geometric decay."""
    torch.manual_seed(0)
    rnn = Recurrent("elman", 2, H, nonlinearity="identity", init="identity", bidirectional=bidirectional).double()
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith("weight_hh"):
                p.mul_(0.5)
    return rnn


def test_summary_reads_each_direction_along_its_own_time():
    """A loss on both directions' final states: each direction's error vanishes by (T-1) log10 2 orders
    in its own time.  The reverse direction's was read backwards, as growing by as much (it "exploded"),
    and its dh_T/dh_t at "the first step" was t = 0, where h_T is h_t itself (sqrt(H))."""
    H, T = 4, 12
    rnn = _halving_linear_rnn(True, H)
    x = torch.randn(3, T, 2, dtype=torch.double)
    r = gradient_flow(rnn, x, lambda out, final: final[0].sum((0, 2)), jacobian_batch=3)
    lost = (T - 1) * math.log10(2)
    for k, direction in enumerate(("forward", "reverse")):
        s = r["summary"][k]
        assert s["direction"] == direction
        assert s["orders"] == pytest.approx(lost, rel=1e-9)
        assert s["last"] == pytest.approx(math.sqrt(H)) and s["first"] == pytest.approx(math.sqrt(H) * 0.5 ** (T - 1))
        assert s["dh_final_dh_first"] == pytest.approx(math.sqrt(H) * 0.5 ** (T - 1))
    assert r["summary"][1]["min_step"] == T - 1 and r["summary"][0]["min_step"] == 0


def test_summary_takes_each_sequence_at_its_own_ends():
    """With variable lengths the curve's t = T-1 holds only the longest sequences: the summary takes every
    sequence at its own last and first step (for the reverse direction, t = 0 and t = L_b - 1)."""
    H, T = 4, 10
    lengths = torch.tensor([10, 6, 3])
    rnn = _halving_linear_rnn(True, H)
    x = torch.randn(3, T, 2, dtype=torch.double)
    weight = torch.tensor([1.0, 2.0, 4.0], dtype=torch.double)  # each sequence's loss on its final states

    r = gradient_flow(rnn, x, lambda out, final: weight * final[0].sum((0, 2)), lengths, jacobian_batch=3)
    last = float(weight.mean()) * math.sqrt(H)  # every sequence at its own last step
    first = float((weight * 0.5 ** (lengths.double() - 1)).mean()) * math.sqrt(H)
    for s in r["summary"]:
        assert s["last"] == pytest.approx(last) and s["first"] == pytest.approx(first)
        assert s["orders"] == pytest.approx(math.log10(last / first))
        assert s["dh_final_dh_first"] == pytest.approx(math.sqrt(H) * float((0.5 ** (lengths.double() - 1)).mean()))
    # the curve itself: the mean over the sequences real at t (t = 9: the longest alone)
    assert r["dl_dh"][0][T - 1] == pytest.approx(1.0 * math.sqrt(H))


def test_decay_summary_reports_the_dip_between_the_ends():
    from biornn.diagnostics import decay_summary

    d = decay_summary([1.2, 0.5, 0.01, 0.3, 1.0])  # the ends agree, a step in between lost 2 orders
    assert d["orders"] == pytest.approx(math.log10(1.0 / 1.2))
    assert d["min"] == 0.01 and d["min_step"] == 2 and d["orders_to_min"] == pytest.approx(2.0)
    assert d["max_step"] == 0 and d["orders_to_max"] == pytest.approx(math.log10(1.0 / 1.2))
    r = decay_summary([1.0, 0.1, 0.001], reverse=True)  # a reverse direction: its last step is t = 0
    assert (r["last"], r["first"], r["direction"]) == (1.0, 0.001, "reverse") and r["orders"] == pytest.approx(3.0)


def test_lstm1997_dips_under_full_bptt():
    """What docs/claims.md states: under full BPTT the 1997 cell's ||dL/dh_t|| is not undiminished; it
    falls by more than an order of magnitude within a few steps of the loss (then climbs back)."""
    r = fresh_gradient_flow("lstm1997", 60, hidden_size=64, batch=4, jacobian_batch=0)
    s = r["summary"][0]
    assert s["orders_to_min"] > 1.0 and s["min_step"] > 40
    assert abs(s["orders"]) < 1.0


def test_diagnose_gradients_prints_the_reverse_direction_in_its_own_time():
    from biornn.cli import diagnose

    rows = diagnose._summary_rows("elman", gradient_flow(
        _halving_linear_rnn(True), torch.randn(2, 8, 2, dtype=torch.double),
        lambda out, final: final[0].sum((0, 2)), jacobian_batch=2))
    assert [r["time"] for r in rows] == ["forward", "reverse"]
    assert rows[1]["orders_of_magnitude"] == rows[0]["orders_of_magnitude"] == round(7 * math.log10(2), 2)
    assert rows[1]["dhT_dh_first_step"] == pytest.approx(2 * 0.5 ** 7)


def test_exploding_figure_marks_divergence_only_when_a_run_diverged():
    from biornn.experiments import _exploding_figure

    def run(clip, diverged):
        hist = [{"step": s, "grad_norm": 1.0 + s, "test_mse": 0.1} for s in (0, 10)]
        return {"clip": clip, "history": hist, "diverged": diverged, "steps": 10, "scale": 1.1, "lag": 20}

    import matplotlib.pyplot as plt

    for runs, diverged in (([run(0.0, False), run(1.0, False)], False), ([run(0.0, True), run(1.0, False)], True)):
        fig = _exploding_figure(runs)
        right = fig.axes[1]
        labels = right.get_legend_handles_labels()[1]
        texts = " ".join([right.get_title(), *labels])
        assert ("diverged" in texts) == diverged, texts
        assert any("baseline" in lab and "0.167" in lab for lab in labels), labels  # the dotted line is named
        plt.close(fig)


def test_gradient_flow_title_names_the_forget_bias_only_with_an_lstm():
    from biornn.experiments import gradient_flow_title

    assert "forget bias 3" in gradient_flow_title(50, ["elman", "lstm"], 3.0)
    assert "forget bias" not in gradient_flow_title(50, ["elman", "gru"], 3.0)


def test_cell_state_stream_keys_are_those_documented():
    s = cell_state_stream(("lstm",), length=250, hidden_size=4, batch=2)
    doc = cell_state_stream.__doc__
    for key in s["cells"]["lstm"]:
        assert f"``{key}``" in doc, key
    assert len(s["cells"]["lstm"]["saturated_output_every_100"]) == 3


def test_diagnose_options_are_checked_and_named(tmp_path, capsys):
    out = tmp_path / "o"
    for argv, needle in ((["--scale", "0"], "--scale must be positive"),
                         (["--scale", "inf"], "--scale must be positive"),
                         (["--length", "1"], "--length must be positive and at least 2"),
                         (["--length", "0"], "--length must be positive and at least 2")):
        assert main(["diagnose", "gradients", "--cell", "elman", *argv, "--out", str(out)]) == 2
        _one_line_error(capsys, needle, argv[1])
    csv = tmp_path / "x.csv"
    csv.write_text("0.1,0.2\n0.4,0.5\n")
    # a fresh network has one layer and one direction: --layer 3 drew layer 0 without a word
    assert main(["diagnose", "states", "--cell", "lstm", "--input", str(csv), "--layer", "3", "--out", str(out)]) == 2
    _one_line_error(capsys, "--layer", "3")
    assert main(["diagnose", "states", "--stream", "50", "--layer", "1", "--out", str(out)]) == 2
    _one_line_error(capsys, "--layer")
    assert main(["diagnose", "states", "--stream", "50", "--threads", "-1", "--out", str(out)]) == 2
    _one_line_error(capsys, "--threads")
    assert not out.exists()
    before = torch.get_num_threads()
    want = 2 if before != 2 else 1
    try:
        assert main(["diagnose", "states", "--cell", "lstm", "--input", str(csv), "--threads", str(want),
                     "--out", str(out)]) == 0
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)


def test_scale_help_says_above_one_is_not_sufficient(capsys):
    with pytest.raises(SystemExit):
        main(["diagnose", "gradients", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ">1 to make gradients explode" not in text
    assert "not sufficient" in text and ">= 2" in text


def test_quick_grid_help_says_what_was_measured(capsys):
    """--quick was said to take "under 3 minutes" (README: "under a minute"); it took 16 s on one thread."""
    with pytest.raises(SystemExit):
        main(["experiment", "long-lag", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "under 3 minutes" not in text and "under a minute" in text


def _strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, as JavaScript's JSON.parse does."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_decay_summary_survives_overflow_and_underflow():
    from biornn.diagnostics import decay_summary

    d = decay_summary([1.0, 2.0, 3.0], first=math.inf)  # the first step's norm overflowed
    assert d["orders"] == -math.inf
    d = decay_summary([0.0, 1e-5, 1.0])  # underflowed to 0: every order lost
    assert d["orders"] == math.inf and d["orders_to_min"] == math.inf
    d = decay_summary([1e-300, 1.0, 1e300])  # the ratio itself would underflow; the logs do not
    assert d["orders"] == pytest.approx(600.0)


def test_diagnose_gradients_explodes_to_strict_json_with_a_note(tmp_path, capsys):
    """The exploding demo past float64 (irnn x 1.2 over 1000 steps) is a result, not an error: exit 0,
    strict JSON on stdout and in gradients.json (no NaN/Infinity), and a note saying what the nulls mean."""
    out = tmp_path / "g"
    assert main(["diagnose", "gradients", "--cell", "irnn", "--scale", "1.2", "--length", "1000", "--hidden", "8",
                 "--batch", "2", "--jacobian-batch", "0", "--threads", "1", "--out", str(out)]) == 0
    [row] = [_strict_loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["orders_of_magnitude"] is None and "overflowed" in row["note"]
    res = _strict_loads((out / "gradients.json").read_text())
    assert any("overflowed" in n for n in res["notes"])
    assert main(["diagnose", "gradients", "--cell", "elman", "--length", "2000", "--hidden", "16", "--batch", "2",
                 "--jacobian-batch", "0", "--threads", "1", "--out", str(tmp_path / "v")]) == 0
    [row] = [_strict_loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["dl_dh_first_step"] == 0.0 and row["orders_of_magnitude"] is None and "underflowed" in row["note"]
    _strict_loads((tmp_path / "v" / "gradients.json").read_text())


def test_sizes_that_do_not_fit_are_one_line_and_leave_no_folder(tmp_path, capsys):
    csv = tmp_path / "in.csv"
    csv.write_text("0.1,0.2\n")
    for argv in (["diagnose", "states", "--stream", "10000000000"],
                 ["diagnose", "states", "--stream", "2", "--hidden", "100000"],
                 ["diagnose", "states", "--cell", "gru", "--input", str(csv), "--hidden", "100000"],
                 ["experiment", "long-lag", "--cells", "elman", "--lags", "3", "--steps", "2", "--hidden", "100000",
                  "--batch", "2", "--explode-scale", "0"]):
        out = tmp_path / "o"
        assert main([*argv, "--threads", "1", "--out", str(out)]) == 2, argv
        _one_line_error(capsys, "GiB")
        assert not out.exists(), argv


def test_diagnose_writes_all_its_files_or_none(run, tmp_path, capsys):
    """A result file that cannot be written (here a folder in its place) is found before any work: exit 2,
    nothing printed on stdout, no plot left; a later run of fewer inputs removes the earlier run's extra plots."""
    out = tmp_path / "s"
    (out / "states.json").mkdir(parents=True)
    assert main(["diagnose", "states", str(run), "Abcab", "Bcd", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "states.json" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["states.json"]
    (out / "states.json").rmdir()
    assert main(["diagnose", "states", str(run), "Abcab", "Bcd", "Cab", "--out", str(out)]) == 0
    assert main(["diagnose", "states", str(run), "Abcab", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["states-0.png", "states.json"]
    capsys.readouterr()
    g = tmp_path / "g"
    (g / "gradients.png").mkdir(parents=True)
    assert main(["diagnose", "gradients", "--cell", "elman", "--length", "5", "--hidden", "3", "--batch", "2",
                 "--out", str(g)]) == 2
    assert capsys.readouterr().out == "" and sorted(p.name for p in g.iterdir()) == ["gradients.png"]
    assert main(["diagnose", "states", "--stream", "20", "--out", ""]) == 2
    _one_line_error(capsys, "--out", "empty")


def test_output_set_is_all_or_nothing(tmp_path):
    from biornn.checkpoint import output_set

    out = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with output_set(out) as files:
            files.path("a.json").write_text("1")
            raise RuntimeError("the second file failed")
    assert not out.exists()  # made by the set, left empty: removed
    out.mkdir()
    (out / "a.json").write_text("old")
    (out / "plot-7.png").write_text("old")
    (out / "plot-overview.png").write_text("the user's own")  # not a numbered plot: never removed
    with pytest.raises(RuntimeError):
        with output_set(out, stale=(r"plot-\d+\.png",)) as files:
            files.path("a.json").write_text("new")
            raise RuntimeError("failed")
    assert (out / "a.json").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "plot-7.png", "plot-overview.png"]
    with output_set(out, stale=(r"plot-\d+\.png",)) as files:
        files.path("a.json").write_text("new")
        files.path("plot-0.png").write_text("new")
    assert (out / "a.json").read_text() == "new"
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "plot-0.png", "plot-overview.png"]
    deep = tmp_path / "deep" / "a" / "b"
    with pytest.raises(RuntimeError):
        with output_set(deep) as files:
            files.path("x.json").write_text("1")
            raise RuntimeError("failed")
    assert not (tmp_path / "deep").exists()  # every folder the set made, not only the last


def test_run_gradient_flow_uses_the_runs_own_loss():
    """per_sequence_loss is train.loss_fn per sequence: label smoothing, class weights, and the squared error."""
    from biornn.diagnostics import per_sequence_loss
    from biornn.train import loss_fn

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 3, 1, 1])
    w = torch.tensor([0.5, 1.0, 2.0, 1.5])
    for loss in ("ce", "mse"):
        for smoothing in (0.0, 0.1):
            for weight in (None, w):
                cfg = resolve("names", overrides=[f"loss={loss}", f"label_smoothing={smoothing}", "reduction=sum"])
                per = per_sequence_loss(cfg, logits, y, weight)
                assert per.shape == (6,)
                torch.testing.assert_close(per.sum(), loss_fn(cfg, logits, y, weight))
