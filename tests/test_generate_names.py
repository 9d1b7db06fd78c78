"""The one-to-many generator, the n-gram baseline, and the ``generate-names`` task end to end
(train, evaluate, generate, predict, resume, bad input) on a tiny names directory the test writes;
the data preparation on the real names files."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from biornn.cells import CELL_NAMES
from biornn.cli.main import main
from biornn.config import resolve
from biornn.models.generator import END, IGNORE, ConditionalGenerator, teacher_forcing
from biornn.tasks import generate_names as gn
from biornn.train import train

from conftest import NAMES_LANGS

REAL = Path(os.environ.get("BIORNN_DATA", "/work/shared/data"))
TINY = ["hidden_size=8", "embedding_dim=4", "batch_size=32", "epochs=2", "threads=1"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend
    yield
    torch.set_num_threads(threads)


# -- the model ------------------------------------------------------------------------


def test_teacher_forcing_shifts_and_masks():
    x, lengths = torch.tensor([[2, 3, 4], [5, 0, 0]]), torch.tensor([3, 1])
    inputs, targets, steps = teacher_forcing(x, lengths, start=9)
    assert inputs.tolist() == [[9, 2, 3, 4], [9, 5, 0, 0]]
    assert targets.tolist() == [[2, 3, 4, END], [5, END, IGNORE, IGNORE]]
    assert steps.tolist() == [4, 2]


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("embedding_dim", [0, 4])
def test_every_cell_forward_nll_and_sample(cell, embedding_dim):
    g = ConditionalGenerator(7, 3, cell=cell, hidden_size=6, embedding_dim=embedding_dim)
    x, lengths = torch.tensor([[2, 3, 4], [5, 6, 0]]), torch.tensor([3, 2])
    inputs, targets, steps = teacher_forcing(x, lengths, g.start)
    cond = torch.tensor([0, 2])
    logits = g(inputs, cond, steps)
    assert logits.shape == (2, 4, 7)
    # the NLL is the sum of -log softmax at the real targets, END included, padding not
    logp = torch.log_softmax(logits, dim=-1)
    expected = torch.stack([-sum(logp[i, t, targets[i, t]] for t in range(int(steps[i]))) for i in range(2)])
    torch.testing.assert_close(g.nll(x, cond, lengths), expected)
    # teacher forcing is causal: changing a later character leaves the earlier steps' logits
    x2 = x.clone()
    x2[0, 2] = 6
    logits2 = g(teacher_forcing(x2, lengths, g.start)[0], cond, steps)
    torch.testing.assert_close(logits2[0, :3], logits[0, :3])
    assert not torch.allclose(logits2[0, 3], logits[0, 3])
    s, n = g.sample(1, n=4, generator=torch.Generator().manual_seed(0), max_length=5)
    assert s.shape[0] == 4 and n.shape == (4,) and int(n.max()) <= 5 and s.shape[1] == int(n.max())
    assert not (s == 1).any()  # the unknown symbol is never written


def test_sampling_is_reproducible_with_a_seeded_generator():
    g = ConditionalGenerator(8, 2, hidden_size=8, embedding_dim=4)
    a = g.sample(0, n=20, generator=torch.Generator().manual_seed(3), max_length=12)
    b = g.sample(0, n=20, generator=torch.Generator().manual_seed(3), max_length=12)
    c = g.sample(0, n=20, generator=torch.Generator().manual_seed(4), max_length=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (a[0].shape == c[0].shape and torch.equal(a[0], c[0]))
    # past each sample's end: padding
    for row, L in zip(*a):
        assert (row[int(L):] == 0).all() and (row[:int(L)] >= 2).all()


def _biased(temperature_free_logit: float = 3.0) -> ConditionalGenerator:
    """A generator whose read-out ignores the state and scores symbol 3 highest, then END."""
    g = ConditionalGenerator(6, 2, cell="gru", hidden_size=4, embedding_dim=2)
    with torch.no_grad():
        g.readout.weight.zero_()
        g.readout.bias.copy_(torch.tensor([1.0, 0.0, 0.0, temperature_free_logit, 0.0, 0.0]))
    return g


def test_temperature_sharpens_flattens_and_zero_is_greedy():
    g = _biased()
    gen = torch.Generator().manual_seed(0)
    # greedy: always symbol 3 (its logit is the largest), never END, so every sample runs to max_length
    s, n = g.sample(0, n=5, temperature=0.0, generator=gen, max_length=4)
    assert s.tolist() == [[3, 3, 3, 3]] * 5 and n.tolist() == [4] * 5
    # first symbols: p(3) = e^3 / (e^1 + 3 e^0 + e^3) = 0.78 at temperature 1; ~ 1 at 0.1; ~ 1/5 at 100
    # (the unknown symbol is excluded: 5 outcomes)
    first = {t: g.sample(0, n=2000, temperature=t, generator=gen, max_length=1)[0][:, 0] for t in (0.1, 1.0, 100.0)}
    frac = {t: float((f == 3).float().mean()) for t, f in first.items()}
    p1 = math.exp(3) / (math.exp(1) + 3 + math.exp(3))
    assert frac[0.1] > 0.99
    assert abs(frac[1.0] - p1) < 0.04
    assert abs(frac[100.0] - 0.2) < 0.04
    with pytest.raises(ValueError, match="temperature"):
        g.sample(0, temperature=-1.0)


def test_the_condition_changes_the_distribution():
    # language 0 writes "aaa", language 1 writes "bb": a few steps of training tell them apart
    torch.manual_seed(0)
    g = ConditionalGenerator(4, 2, cell="lstm", hidden_size=16, embedding_dim=4)
    x = torch.tensor([[2, 2, 2], [3, 3, 0]])
    lengths, cond = torch.tensor([3, 2]), torch.tensor([0, 1])
    opt = torch.optim.Adam(g.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        g.nll(x, cond, lengths).sum().backward()
        opt.step()
    gen = torch.Generator().manual_seed(0)
    a, na = g.sample(0, n=20, temperature=0.5, generator=gen, max_length=6)
    b, nb = g.sample(1, n=20, temperature=0.5, generator=gen, max_length=6)
    assert {tuple(r[:int(n)].tolist()) for r, n in zip(a, na)} == {(2, 2, 2)}
    assert {tuple(r[:int(n)].tolist()) for r, n in zip(b, nb)} == {(3, 3)}
    # and the likelihood of a name depends on its language
    with torch.no_grad():
        nll = g.nll(torch.tensor([[2, 2, 2], [2, 2, 2]]), torch.tensor([0, 1]), torch.tensor([3, 3]))
    assert float(nll[0]) < 0.2 < float(nll[1])


def test_bad_model_inputs():
    g = ConditionalGenerator(5, 2, hidden_size=4, embedding_dim=2)
    with pytest.raises(ValueError, match="condition out of range"):
        g(torch.tensor([[5, 2]]), torch.tensor([2]))
    with pytest.raises(ValueError, match="input symbols out of range"):
        g(torch.tensor([[6, 2]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="vocab_size"):
        ConditionalGenerator(2, 2)


# -- the n-gram baseline --------------------------------------------------------------


def test_ngram_probabilities_by_hand():
    # V = 4 outcomes: END 0, unknown 1, "a" 2, "b" 3.  Language 0: "ab", "a"; language 1: "b".
    names, y = [[2, 3], [2]], np.array([0, 0])
    uni = gn.NgramLM(1, 1.0, 4).fit(names + [[3]], np.array([0, 0, 1]))
    # language 0 unigram counts: a 2, b 1, END 2 (N = 5): P(a) = (2 + 1 * 1/4) / (5 + 1)
    assert uni.prob(0, (), 2) == pytest.approx(2.25 / 6)
    assert uni.prob(0, (), END) == pytest.approx(2.25 / 6)
    assert uni.prob(0, (), 1) == pytest.approx(0.25 / 6)
    assert uni.prob(1, (), 3) == pytest.approx(1.25 / 3)  # language 1: b 1, END 1
    assert uni.distribution(0, ()).sum() == pytest.approx(1.0)
    bi = gn.NgramLM(2, 2.0, 4).fit(names, y)
    # after START (index 4): a twice (N = 2); P1(a) = (2 + 2/4) / (5 + 2) = 2.5/7
    p1_a = 2.5 / 7
    assert bi.prob(0, (4,), 2) == pytest.approx((2 + 2 * p1_a) / (2 + 2))
    # after "a": b once, END once; P1(END) = (2 + 0.5) / 7
    assert bi.prob(0, (2,), END) == pytest.approx((1 + 2 * 2.5 / 7) / (2 + 2))
    # an unseen context falls back to the lower order
    assert bi.prob(0, (1,), 3) == pytest.approx(1.5 / 7)  # P1(b) = (1 + 2/4) / 7
    assert bi.prob(1, (2,), 3) == pytest.approx(1 / 4)  # a language with no names: uniform
    for h in ((4,), (2,), (3,)):
        assert bi.distribution(0, h).sum() == pytest.approx(1.0)
        assert [bi.prob(0, h, c) for c in range(4)] == pytest.approx(bi.distribution(0, h).tolist())
    # a lower order on the same counts is the model fitted at that order
    tri = gn.NgramLM(3, 0.5, 4).fit(names, y)
    assert [tri.view(2, 2.0).prob(0, h, c) for h in ((4, 4), (4, 2), (2, 3)) for c in range(4)] == pytest.approx(
        [bi.prob(0, h, c) for h in ((4, 4), (4, 2), (2, 3)) for c in range(4)])
    # the NLL of a name: every character and END
    expected = -(math.log(bi.prob(0, (4,), 2)) + math.log(bi.prob(0, (2,), 3)) + math.log(bi.prob(0, (3,), END)))
    assert bi.nll([[2, 3]], np.array([0]))[0] == pytest.approx(expected)
    # sampling: seeded, never the unknown symbol, greedy at temperature 0
    rng = np.random.default_rng(0)
    s = bi.sample(0, 50, 1.0, rng, max_length=6)
    assert all(1 not in x and len(x) <= 6 for x in s)
    assert s == bi.sample(0, 50, 1.0, np.random.default_rng(0), max_length=6)
    # greedy: P(a | START) = 0.68 is the largest, then P(END | a) = 0.43 > P(b | a) = 0.36
    assert bi.sample(0, 2, 0.0, rng, 6) == [[2], [2]]


# -- the real data --------------------------------------------------------------------


@pytest.mark.skipif(not (REAL / "names" / "Russian.txt").is_file(), reason="no data directory with names/")
def test_preparation_on_the_real_names():
    data = gn.load(resolve("generate-names"), str(REAL))
    s = data.splits
    assert len(data.labels) == 18 and "Russian" in data.labels
    assert {k: len(v.texts) for k, v in s.items()} == {"train": 12609, "val": 2706, "test": 2697}
    assert not set(s["train"].texts) & set(s["test"].texts)
    # the names task's split exactly
    from biornn.tasks import names

    ref = names.load(resolve("names"), str(REAL))
    assert ref.splits["test"].texts == s["test"].texts and (ref.splits["test"].y == s["test"].y).all()
    # characters seen once in training are the unknown symbol; the held-out characters are counted with END
    assert "ł" not in data.vocab and "a" in data.vocab
    assert s["test"].n_chars == sum(len(n) + 1 for n in s["test"].texts)
    assert any(1 in e for e in s["test"].encoded)


# -- a tiny data directory ----------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Made-up names: each language its own ending, 10 names each."""
    root = tmp_path_factory.mktemp("gdata")
    names = root / "names"
    names.mkdir()
    rng = random.Random(0)
    letters = "abdeiklmnoprstuv"
    for k, lang in enumerate(NAMES_LANGS):
        end = letters[k % len(letters)] + letters[(5 * k + 3) % len(letters)]
        rows = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 5))).title() + end for _ in range(10)}
        (names / f"{lang}.txt").write_text("\n".join(sorted(rows)) + "\n", encoding="utf-8")
    (names / "LICENSE").write_text("made up for tests\n")
    return root


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grun") / "run"
    assert main(["train", "generate-names", "--data-dir", str(data_dir), "--out", str(out), *TINY]) == 0
    return out


def test_end_to_end_run_directory_and_evaluate(run_dir, data_dir, capsys):
    for name in ("config.json", "model.safetensors", "metrics.json", "log.csv", "curves.png",
                 "bits_per_language.png", "checkpoint.pt"):
        assert (run_dir / name).is_file(), name
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["task"] == "generate-names" and m["epochs"] == 2
    test, base = m["test"], m["baseline"]
    for part in (test, base):
        assert part["nll_per_char"] > 0 and part["n_chars"] == test["n_chars"]
        assert part["bits_per_char"] == pytest.approx(part["nll_per_char"] / math.log(2), rel=1e-4)
        assert part["perplexity"] == pytest.approx(math.exp(part["nll_per_char"]), rel=1e-4)
        assert part["samples"] == 100 * len(NAMES_LANGS) and 0 <= part["novel_fraction"] <= 1
        assert 0 <= part["language_accuracy"] <= 1
    assert base["order"] in gn.NGRAM_ORDERS and base["alpha"] in gn.NGRAM_ALPHAS
    assert set(m["per_language"]) == set(NAMES_LANGS)
    assert "val_bits_per_char" in (run_dir / "log.csv").read_text().splitlines()[0]
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--data-dir", str(data_dir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"] == pytest.approx(test) and evaluated["baseline"]["nll_per_char"] == base["nll_per_char"]


def test_generate_samples_names(run_dir, capsys):
    capsys.readouterr()
    assert main(["generate", str(run_dir), "--condition", "russian", "-n", "7", "--seed", "5"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 7 and {r["condition"] for r in rows} == {"Russian"}
    assert all(r["length"] == len(r["name"]) <= 30 and r["nll_per_char"] > 0 and isinstance(r["novel"], bool)
               for r in rows)
    assert main(["generate", str(run_dir), "--condition", "Russian", "-n", "7", "--seed", "5"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows
    # no condition: n of every language; greedy: all alike; a length cap
    assert main(["generate", str(run_dir), "-n", "2", "--temperature", "0", "--max-length", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["condition"] for r in rows] == [lang for lang in sorted(NAMES_LANGS) for _ in range(2)]
    assert all(a["name"] == b["name"] and a["length"] <= 3 for a, b in zip(rows[::2], rows[1::2]))


def test_generate_bad_usage_exits_2(run_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["generate", str(run_dir), "--condition", "Klingon"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown language 'Klingon'" in err and "Russian" in err
    for args, match in ((["-n", "0"], "-n must be in 1..100000"), (["--temperature", "-1"], "--temperature"),
                        (["--max-length", "0"], "--max-length"), (["-n", "100000000"], "-n must be in 1..100000"),
                        # the (n, L) buffer of draws was allocated before any check (a MemoryError traceback)
                        (["--max-length", "10000000000000"], "--max-length must be in 1..1000"),
                        # logits / T overflow to NaN probabilities (torch.multinomial raised)
                        (["--temperature", "1e-320"], "--temperature must be 0 (greedy) or in [0.001, 100]"),
                        (["--temperature", "1e308"], "--temperature must be 0 (greedy) or in [0.001, 100]"),
                        (["--seed", "99999999999999999999"], "--seed must be in 0..")):
        assert main(["generate", str(run_dir), *args]) == 2
        assert match in capsys.readouterr().err
    # a run of another task (its config says names): refused before its weights are read
    names_run = tmp_path / "names-run"
    names_run.mkdir()
    for f in ("model.safetensors", "metrics.json"):
        shutil.copy(run_dir / f, names_run / f)
    cfg = json.loads((run_dir / "config.json").read_text())
    (names_run / "config.json").write_text(json.dumps({**cfg, "task": "names"}))
    capsys.readouterr()
    assert main(["generate", str(names_run)]) == 2
    err = capsys.readouterr().err
    assert "a names run" in err and "generate-names" in err
    assert main(["generate", str(tmp_path / "nothing")]) == 2


def test_predict_scores_languages(run_dir, capsys):
    capsys.readouterr()
    assert main(["predict", str(run_dir), "Abcde", "Xyzé"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["Abcde", "Xyzé"]
    for r in rows:
        assert len(r["top"]) == 3 and set(r["nll_per_char"]) == set(NAMES_LANGS)
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-3
    assert "c" in rows[0]["unknown"] and set("Xyzé") <= set(rows[1]["unknown"])
    assert main(["predict", str(run_dir), "  "]) == 2


def test_resume_gives_the_same_weights(data_dir, tmp_path):
    from safetensors.torch import load_file

    cfg = resolve("generate-names", overrides=[*TINY, "epochs=3"])
    train(cfg, tmp_path / "whole", str(data_dir), log=lambda line: None)
    assert train(cfg, tmp_path / "cut", str(data_dir), log=lambda line: None, stop_after_epochs=1) == {}
    assert main(["train", "--resume", str(tmp_path / "cut"), "--data-dir", str(data_dir)]) == 0
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert (json.loads((tmp_path / "whole" / "metrics.json").read_text())["test"]
            == json.loads((tmp_path / "cut" / "metrics.json").read_text())["test"])


@pytest.mark.parametrize("override, match", [
    ("bidirectional=true", "bidirectional must be false"),
    ("ensemble=2", "ensemble must be 1"),
    ("loss=mse", "loss must be ce"),
    ("monitor=accuracy", "monitor must be loss"),
    ("max_length=1001", "max_length is the sampling cap, at most 1000"),
])
def test_config_checks_exit_2_and_write_nothing(data_dir, tmp_path, capsys, override, match):
    out = tmp_path / "run"
    assert main(["train", "generate-names", "--data-dir", str(data_dir), "--out", str(out), *TINY, override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_bad_names_files_exit_2_and_write_nothing(tmp_path, capsys):
    root = tmp_path / "bad"
    (root / "names").mkdir(parents=True)
    (root / "names" / "LICENSE").write_text("x\n")
    for lang in NAMES_LANGS:
        (root / "names" / f"{lang}.txt").write_text("Abc\nAbd\nAbe\n", encoding="utf-8")
    (root / "names" / "Czech.txt").write_bytes(b"Novak\nNov\xe1k\n")
    out = tmp_path / "run"
    assert main(["train", "generate-names", "--data-dir", str(root), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Czech.txt line 2: not UTF-8" in err, err
    assert not out.exists()


def test_an_empty_sample_is_not_a_novel_name():
    """A sample whose first symbol is the end (high temperatures) was counted as a new surname."""
    from types import SimpleNamespace

    from biornn.tasks.generate_names import sample_metrics

    part = lambda texts, y: SimpleNamespace(texts=texts, y=y)  # noqa: E731
    data = SimpleNamespace(splits={"train": part(["Smith", "Rossi"], [0, 1]), "test": part(["Jones"], [0])})
    m = sample_metrics([(0, ""), (0, "Smith"), (0, "Jones"), (1, "Verdi")], data)
    assert m["novel_fraction"] == 0.5  # Jones and Verdi; not Smith (trained on), not the empty sample
    assert m["test_name_fraction"] == 0.25 and m["samples"] == 4
