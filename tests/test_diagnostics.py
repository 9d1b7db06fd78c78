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


def _direct_dl_dh(rnn: Recurrent, x: Tensor, loss_fn, lengths=None):
    """dL_b/dh_{b,t} by unrolling the cell by hand and asking autograd for every h_t (one layer)."""
    cell = rnn.cells[0][0]
    B, T = x.shape[:2]
    state = cell.initial_state(B, x.dtype)
    hs, outs = [], []
    for t in range(T):
        new, _ = cell.step(x[:, t], state)
        if lengths is not None:
            m = (t < lengths).unsqueeze(1)
            new = type(new)(*(torch.where(m, n, s) for n, s in zip(new, state)))
        hs.append(new.h)
        out = cell.output(new)
        outs.append(out if lengths is None else torch.where((t < lengths).unsqueeze(1), out, 0.0))
        state = new
    out = torch.stack(outs, 1)
    final = type(state)(*(s.unsqueeze(0) for s in state))
    grads = torch.autograd.grad(loss_fn(out, final).sum(), hs)
    return torch.stack(grads, 1)  # (B, T, H)


Tensor = torch.Tensor


@pytest.mark.parametrize("cell", ["elman", "lstm1997", "lstm", "gru", "fully-recurrent"])
def test_dl_dh_equals_direct_autograd(cell):
    torch.manual_seed(1)
    rnn = Recurrent(cell, 3, 5).double()
    x = torch.randn(4, 9, 3, dtype=torch.double)
    lengths = torch.tensor([9, 7, 4, 1])
    w = torch.randn(rnn.output_size, dtype=torch.double)

    def loss(out, final):  # a loss on every step's output and on the final state
        return (out @ w).pow(2).sum(1) + final[0][0].sum(1)

    r = gradient_flow(rnn, x, loss, lengths, jacobian_batch=0)
    direct = _direct_dl_dh(rnn, x, loss, lengths).norm(dim=2)  # (B, T)
    mask = torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1)
    expected = (direct * mask).sum(0) / mask.sum(0)
    assert torch.allclose(torch.tensor(r["dl_dh"][0], dtype=torch.double), expected, rtol=1e-10, atol=1e-12)
    assert r["dl_dh"][0][0] > 0  # the test could fail: the gradient is not trivially zero


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
    cfg = resolve("names", overrides=[*TINY, "ensemble=2", "epochs=1", "embedding_dim=0", "cell=gru",
                                      "conv_channels=3", "conv_kernel=3"])
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
