"""The ``promoters`` task (k-fold cross-validation) and the one-to-one feed-forward model."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from biornn.baselines import FeedForwardBaseline
from biornn.cli.main import main
from biornn.config import resolve
from biornn.models.feedforward import FeedForward
from biornn.tasks import promoters

REAL = Path(os.environ.get("BIORNN_DATA", "/work/shared/data"))
TINY = ["hidden_size=4", "batch_size=8", "epochs=2", "threads=1", "folds=3"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# -- the one-to-one model --------------------------------------------------------------


def test_feedforward_has_no_weight_shared_over_time():
    torch.manual_seed(0)
    net = FeedForward(length=6, n_features=4, n_classes=3, hidden_size=5, num_layers=2)
    x = torch.randn(2, 6, 4)
    assert net(x).shape == (2, 3)
    # every position has its own weights: the first layer sees all 6 x 4 inputs
    assert net.net[0].weight.shape == (5, 24)
    # swapping two steps changes the output (a pooled or shared-weight model over steps might not)
    assert not torch.allclose(net(x), net(x[:, [1, 0, 2, 3, 4, 5]]))
    linear = FeedForward(length=6, n_features=4, n_classes=3, num_layers=0)
    assert [type(m).__name__ for m in linear.net] == ["Linear"]
    with pytest.raises(ValueError, match=r"reads \(B, 6, 4\) inputs"):
        net(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="activation"):
        FeedForward(6, 4, 3, activation="gelu")


def test_feedforward_baseline_learns_a_position_rule_and_is_seeded():
    rng = np.random.default_rng(0)
    X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(120, 5))]  # (120, 5, 4) one-hot
    y = (X[:, 2, 0] == 1).astype(np.int64)  # class 1 iff base 2 is "A"
    a = FeedForwardBaseline(hidden_size=8, epochs=80, dropout=0.0, seed=3).fit(X[:80], y[:80], 2, X[80:100], y[80:100])
    assert (a.predict(X[100:]) == y[100:]).mean() >= 0.95
    assert 1 <= a.best_epoch <= 80
    b = FeedForwardBaseline(hidden_size=8, epochs=80, dropout=0.0, seed=3).fit(X[:80], y[:80], 2, X[80:100], y[80:100])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    with pytest.raises(RuntimeError):
        FeedForwardBaseline().predict(X)


# -- folds ---------------------------------------------------------------------------------


def test_fold_parts_are_stratified_and_cover_every_example_once():
    y = np.array([0] * 53 + [1] * 53)
    fold = promoters.fold_parts(y, 10, 0)
    assert sorted(np.bincount(fold).tolist()) == [10, 10, 10, 10, 11, 11, 11, 11, 11, 11]
    for k in range(10):
        assert abs(np.sum(y[fold == k] == 0) - np.sum(y[fold == k] == 1)) <= 1
    np.testing.assert_array_equal(fold, promoters.fold_parts(y, 10, 0))
    assert not np.array_equal(fold, promoters.fold_parts(y, 10, 1))


@pytest.mark.skipif(not (REAL / promoters.FILE).is_file(), reason="no data directory with dna/promoters.csv")
def test_promoters_preparation_on_the_real_file():
    tested = []
    for k in range(1, 11):
        data = promoters.load(resolve("promoters", overrides=[f"fold={k}"]), str(REAL))
        s = data.splits
        assert sum(len(p.y) for p in s.values()) == 106
        assert not set(s["train"].texts) & (set(s["test"].texts) | set(s["val"].texts))
        assert all(e.shape == (57, 4) for e in s["test"].encoded)
        tested += s["test"].texts
    assert len(tested) == 106 and len(set(tested)) == 106  # each sequence is tested exactly once
    assert data.labels == ["+", "-"]
    with pytest.raises(ValueError, match="fold=0 trains them all"):
        promoters.load(resolve("promoters"), str(REAL))


# -- a tiny data directory ---------------------------------------------------------------


def _sequence(rng: random.Random, label: str) -> str:
    """57 random bases, a made-up "-10 box" TATAAT at bases 38-43 in the promoters."""
    s = [rng.choice("acgt") for _ in range(57)]
    if label == "+":
        s[38:44] = "tataat"
    return "".join(s)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "dna").mkdir()
    rng = random.Random(0)
    rows = ["class,sequence"] + [f"{'+-'[k % 2]},{_sequence(rng, '+-'[k % 2])}" for k in range(30)]
    (root / "dna" / "promoters.csv").write_text("\n".join(rows) + "\n")
    return root


def test_promoters_cross_validation_end_to_end(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "promoters", "--data-dir", str(data_dir), "--out", str(out), *TINY]) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["runs"] == ["fold-01", "fold-02", "fold-03"]
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["runs"]
    assert [r["fold"] for r in rows] == metrics["runs"] and sum(r["n_test"] for r in rows) == 30
    # the summary's test, baseline and feed-forward figures are the means over the folds
    for group, prefix in (("test", ""), ("baseline", "baseline_"), ("feedforward", "feedforward_")):
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert metrics[group][key] == pytest.approx(np.mean([r[f"{prefix}{key}"] for r in rows]), abs=1e-6), \
                (group, key)
    assert set(metrics["test"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    for group in ("baseline", "feedforward"):  # each with its name, as the folds' metrics.json have them
        assert set(metrics[group]) == {"name", "accuracy", "balanced_accuracy", "macro_f1"}, metrics[group]
    assert metrics["baseline"]["name"] == "onehot-logreg" and metrics["feedforward"]["name"] == "feedforward"
    assert printed["test"] == metrics["test"]
    for k in (1, 2, 3):
        fold = out / f"fold-0{k}"
        for name in ("model.safetensors", "metrics.json", "confusion.png", "curves.png"):
            assert (fold / name).is_file()
        assert json.loads((fold / "config.json").read_text())["fold"] == k
    assert "| fold-01 |" in (out / "summary.md").read_text()

    assert main(["evaluate", str(out), "--data-dir", str(data_dir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert set(evaluated["runs"]) == {"fold-01", "fold-02", "fold-03"}
    one = json.loads((out / "fold-02" / "metrics.json").read_text())
    assert evaluated["runs"]["fold-02"]["test"]["accuracy"] == pytest.approx(one["test"]["accuracy"])
    # the cross-validated figures themselves, as the top-level metrics.json has them
    top = json.loads((out / "metrics.json").read_text())
    assert evaluated["test"]["accuracy"] == pytest.approx(top["test"]["accuracy"], abs=1e-6)

    seq = _sequence(random.Random(5), "+")
    assert main(["predict", str(out / "fold-01"), seq]) == 0
    row = json.loads(capsys.readouterr().out)
    assert sorted(t["label"] for t in row["top"]) == ["+", "-"]
    assert main(["predict", str(out / "fold-01"), seq[:50]]) == 2
    assert "50 bases; the model reads 57 bp" in capsys.readouterr().err


def _baseline_unnamed(m):
    del m["baseline"]["name"]


def _seconds_null(m):
    m["train_seconds"] = None


def _accuracy_text(m):
    m["test"]["accuracy"] = "x"


@pytest.mark.parametrize("damage, match", [
    ('{"task": ', "not readable JSON (Expecting value: line 1 column 10"),
    ("{}", "not a finished run's metrics (KeyError: 'test')"),
    (_baseline_unnamed, "not a finished run's metrics (no baseline.name)"),
    (_seconds_null, "not a finished run's metrics (train_seconds is None)"),
    (_accuracy_text, "not a finished run's metrics (accuracy is 'x', not a number)"),
])
def test_resuming_with_a_damaged_finished_fold_names_its_metrics(data_dir, tmp_path, capsys, damage, match):
    """A folds run interrupted after fold 1: resuming reads fold 1's metrics.json for the summary; damaged,
    it was 'Expecting value: ...' with no file named, or a KeyError or TypeError traceback."""
    import shutil

    out = tmp_path / "run"
    assert main(["train", "promoters", "--data-dir", str(data_dir), "--out", str(out), *TINY]) == 0
    for name in ("metrics.json", "summary.json", "summary.md"):  # as an interruption before the summary leaves it
        (out / name).unlink()
    shutil.rmtree(out / "fold-03")
    fold = out / "fold-01" / "metrics.json"
    if callable(damage):
        m = json.loads(fold.read_text())
        damage(m)
        fold.write_text(json.dumps(m))
    else:
        fold.write_text(damage)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"biornn: error: {out / 'fold-01' / 'metrics.json'}: {match}"), err
    assert err[-1].endswith(f"remove {out / 'fold-01'} to train that run again")


def test_a_fold_being_written_by_another_process_stops_the_run(data_dir, tmp_path, capsys):
    """The lock covers each run of a several-run train too: a resume of one fold alone, started beside
    the whole, wrote the same fold at the same time."""
    from biornn import checkpoint

    out = tmp_path / "run"
    with checkpoint.run_lock(out / "fold-02"):
        assert main(["train", "promoters", "--data-dir", str(data_dir), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"biornn: error: {out / 'fold-02'}: another biornn process (pid "), err
    assert (out / "fold-01" / "metrics.json").is_file() and not (out / "fold-02").exists()


def test_promoters_one_fold_alone(data_dir, tmp_path, capsys):
    out = tmp_path / "one"
    assert main(["train", "promoters", "--data-dir", str(data_dir), "--out", str(out), *TINY, "fold=2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fold"] == 2 and metrics["n"]["test"] == 10 and "feedforward" in metrics
    # the one-to-one baseline keeps its own settings: it took the LSTM's hidden_size (4 here)
    assert metrics["feedforward"]["hidden_size"] == promoters.FEEDFORWARD["hidden_size"] == 16


@pytest.mark.parametrize("text, args, match", [
    ("class,sequence\n+," + "a" * 56 + "\n", [], "line 2: 56 bases; every sequence must have 57"),
    ("class,sequence\n?," + "a" * 57 + "\n", [], "line 2: class '?' is not + or -"),
    # line numbers as the character errors give them (it said 'record 2' for line 4)
    ("class,sequence\n+," + "a" * 57 + "\n\n-," + "a" * 57 + "\n?," + "a" * 57 + "\n", [],
     "line 5: class '?' is not + or -"),
    ("class,sequence\n+," + "a" * 20 + "x" + "a" * 36 + "\n", [], "character 'x' at position 21 is not in the DNA"),
    ("class,sequence\n" + "".join(f"{'+-'[k % 2]},{'a' * 57}\n" for k in range(4)), [],
     "3 folds need at least 3 sequences of each class"),
    ("class,sequence\n+," + "a" * 57 + "\n", ["folds=2"], "folds must be at least 3"),
    ("class,sequence\n+," + "a" * 57 + "\n", ["fold=4"], "fold must be between 0"),
])
def test_promoters_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, text, args, match):
    root = tmp_path / "bad"
    (root / "dna").mkdir(parents=True)
    (root / "dna" / "promoters.csv").write_text(text)
    out = tmp_path / "run"
    assert main(["train", "promoters", "--data-dir", str(root), "--out", str(out), *TINY, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()
