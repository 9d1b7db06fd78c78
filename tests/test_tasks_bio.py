"""The ``splice`` task: its data preparation on the real file, and a tiny end-to-end run on made-up data
(train, run directory, evaluate, predict, resume, bad input)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from biornn.cli.main import main
from biornn.config import resolve
from biornn.tasks import splice
from biornn.train import train

REAL = Path(os.environ.get("BIORNN_DATA", "/work/shared/data"))
TINY = ["hidden_size=4", "ensemble=2", "batch_size=16", "epochs=2", "threads=1"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# -- the real data ------------------------------------------------------------------


@pytest.mark.skipif(not (REAL / splice.FILE).is_file(), reason="no data directory with dna/splice.csv")
def test_splice_preparation_on_the_real_file():
    data = splice.load(resolve("splice"), str(REAL))
    parts = data.splits
    n = {k: len(s.y) for k, s in parts.items()}
    assert sum(n.values()) == 3190
    assert data.labels == ["EI", "IE", "N"]
    totals = np.bincount(np.concatenate([s.y for s in parts.values()]), minlength=3)
    assert totals.tolist() == [767, 768, 1655]
    # stratified: every class has about 20 % of its sequences in the test part
    test_counts = np.bincount(parts["test"].y, minlength=3)
    assert np.all(np.abs(test_counts / totals - 0.2) < 0.02)
    assert np.all(np.abs(np.bincount(parts["val"].y, minlength=3) / totals - 0.1) < 0.02)
    # grouped: no sequence is both trained on and tested
    assert not set(parts["train"].texts) & set(parts["test"].texts)
    assert not set(parts["val"].texts) & set(parts["test"].texts)
    x = np.stack(parts["train"].encoded + parts["val"].encoded + parts["test"].encoded)
    assert x.shape == (3190, 60, 4)
    np.testing.assert_allclose(x.sum(axis=2), 1.0, rtol=1e-6)
    # the few N bases are read as equal weight on A, C, G, T
    assert np.isclose(x, 0.25).all(axis=2).sum() == 56
    # the same split_seed gives the same split; another gives another
    again = splice.load(resolve("splice"), str(REAL))
    assert again.fingerprint == data.fingerprint
    assert splice.load(resolve("splice", overrides=["split_seed=1"]), str(REAL)).fingerprint != data.fingerprint


# -- a tiny data directory ----------------------------------------------------------


def _sequence(rng: random.Random, label: str) -> str:
    """60 random bases with a made-up junction signal at bases 29-32."""
    s = [rng.choice("ACGT") for _ in range(60)]
    if label == "EI":
        s[30:32] = "GT"
    elif label == "IE":
        s[28:30] = "AG"
    return "".join(s)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "dna").mkdir()
    rng = random.Random(0)
    rows = ["label,instance_name,sequence"]
    for k in range(90):
        label = ("EI", "IE", "N")[k % 3]
        seq = _sequence(rng, label)
        if k == 5:
            seq = seq[:10] + "N" + seq[11:]
        rows.append(f"{label},    SEQ-{k},    {seq}")
    (root / "dna" / "splice.csv").write_text("\n".join(rows) + "\n")
    return root


def _bad_dir(tmp_path: Path, text: str) -> Path:
    root = tmp_path / "bad"
    (root / "dna").mkdir(parents=True)
    (root / "dna" / "splice.csv").write_text(text)
    return root


def test_splice_end_to_end(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "splice", "--data-dir", str(data_dir), "--out", str(out), *TINY]) == 0
    for name in ("config.json", "model.safetensors", "metrics.json", "log.csv", "steps.csv", "curves.png",
                 "confusion.png", "confusion_baseline.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "splice" and metrics["epochs"] == 2
    assert set(metrics["test"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert metrics["baseline"]["name"] == "onehot-logreg" and 0.0 <= metrics["baseline"]["accuracy"] <= 1.0
    assert sum(metrics["n"].values()) == 90
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["task"] == "splice" and cfg["embedding_dim"] == 0 and cfg["ensemble"] == 2
    capsys.readouterr()

    assert main(["evaluate", str(out), "--data-dir", str(data_dir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])

    seq = _sequence(random.Random(1), "EI")
    assert main(["predict", str(out), seq, seq.lower()[:-1] + "n"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert sorted(t["label"] for t in row["top"]) == ["EI", "IE", "N"]
        assert sum(t["probability"] for t in row["top"]) == pytest.approx(1.0, abs=1e-3)

    assert main(["predict", str(out), seq[:-1] + "X"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "character 'X' at position 60 is not in the DNA alphabet" in err
    assert main(["predict", str(out), seq[:50]]) == 2
    assert "50 bases" in capsys.readouterr().err


def test_splice_resume_gives_the_same_weights(data_dir, tmp_path):
    from safetensors.torch import load_file

    cfg = resolve("splice", overrides=[*TINY, "epochs=3", "ensemble=1"])
    train(cfg, tmp_path / "whole", str(data_dir), log=lambda line: None)
    assert train(cfg, tmp_path / "cut", str(data_dir), log=lambda line: None, stop_after_epochs=1) == {}
    assert not (tmp_path / "cut" / "metrics.json").exists()
    assert main(["train", "--resume", str(tmp_path / "cut"), "--data-dir", str(data_dir)]) == 0
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_splice_splits_benchmark_runs_each_split_beside_its_baseline(data_dir, tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "splice_splits.py"
    res = subprocess.run([sys.executable, str(script), "--quick", "--json", "--threads", "1", "--data-dir",
                          str(data_dir), "hidden_size=4"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert [r["split_seed"] for r in out["rows"]] == [0, 1]
    # each split is its own run: its own baseline on its own test part
    for r in out["rows"]:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 <= r["baseline_accuracy"] <= 1.0
    s = out["summary"]
    assert s["splits"] == 2
    assert s["model_mean"] == pytest.approx(np.mean([r["test_accuracy"] for r in out["rows"]]))
    assert s["gain_mean"] == pytest.approx(s["model_mean"] - s["baseline_mean"])
    assert out["overrides"] == ["hidden_size=4"]


@pytest.mark.parametrize("text, match", [
    ("", "splice.csv: empty file"),
    ("label,instance_name,sequence\nEI,  S1,  " + "A" * 30 + "X" + "C" * 29 + "\n",
     "splice.csv: line 2 (S1): character 'X' at position 31 is not in the DNA alphabet"),
    ("label,instance_name,sequence\nXX,  S1,  " + "A" * 60 + "\n", "record 'S1': label 'XX' is not one of EI, IE, N"),
    ("label,instance_name,sequence\nEI,  S1,  " + "A" * 59 + "\n", "record 'S1': 59 bases; every sequence must have 60"),
    ("label,name,sequence\nEI,  S1,  " + "A" * 60 + "\n", "no id column 'instance_name'"),
])
def test_splice_bad_data_exits_2_and_writes_nothing(tmp_path, capsys, text, match):
    root = _bad_dir(tmp_path, text)
    out = tmp_path / "run"
    assert main(["train", "splice", "--data-dir", str(root), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_splice_config_checks(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "splice", "--data-dir", str(data_dir), "--out", str(out), *TINY,
                 "bidirectional=false"]) == 2
    assert "bidirectional must be true" in capsys.readouterr().err
    assert main(["train", "splice", "--data-dir", str(data_dir), "--out", str(out), *TINY, "embedding_dim=8"]) == 2
    assert "embedding_dim must be 0" in capsys.readouterr().err
    assert not out.exists()


# -- refit ------------------------------------------------------------------------------

def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "model.safetensors")


def test_refit_is_the_training_loop_on_train_and_val_for_the_best_epochs(data_dir, tmp_path, monkeypatch, capsys):
    from biornn.tasks.common import with_val_in_train

    cfg = resolve("splice", overrides=[*TINY, "epochs=3", "ensemble=1", "refit=true"])
    refit = train(cfg, tmp_path / "refit", str(data_dir), log=lambda line: None)
    assert refit["refit"]["epochs"] == refit["best_epoch"] and refit["refit"]["parts"] == ["train", "val"]
    assert refit["baseline"]["refit"] is True
    plain = train(resolve("splice", overrides=[*TINY, "epochs=3", "ensemble=1", "refit=false"]), tmp_path / "plain",
                  str(data_dir), log=lambda line: None)
    assert "refit" not in plain and "refit" not in plain["baseline"]
    assert plain["best_epoch"] == refit["best_epoch"]  # the first phase is the plain run
    a, b = _weights(tmp_path / "refit"), _weights(tmp_path / "plain")
    assert not all(torch.equal(a[k], b[k]) for k in a)
    # the refitted weights are what a plain run of best-epoch epochs on the joined parts ends with:
    # the same seed, batches and dropout, the schedule laid out over those epochs
    real_load = splice.load
    monkeypatch.setattr(splice, "load", lambda c, d=None: with_val_in_train(real_load(c, d)))
    E = refit["best_epoch"]
    joined = resolve("splice", overrides=[*TINY, f"epochs={E}", "ensemble=1", "monitor=loss", "refit=false"])
    train(joined, tmp_path / "joined", str(data_dir), log=lambda line: None)
    ckpt = torch.load(tmp_path / "joined" / "checkpoint.pt", weights_only=True)  # the last epoch's model
    assert all(torch.equal(a[k], ckpt["model"][k]) for k in a)
    # evaluate measures the refitted weights: the figures of metrics.json
    monkeypatch.setattr(splice, "load", real_load)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "refit"), "--data-dir", str(data_dir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    recorded = json.loads((tmp_path / "refit" / "metrics.json").read_text())
    assert evaluated["test"]["accuracy"] == pytest.approx(recorded["test"]["accuracy"], abs=1e-9)


def test_refit_resumes_to_the_same_weights(data_dir, tmp_path):
    cfg = resolve("splice", overrides=[*TINY, "epochs=3", "ensemble=1", "refit=true"])
    whole = train(cfg, tmp_path / "whole", str(data_dir), log=lambda line: None)
    assert train(cfg, tmp_path / "cut", str(data_dir), log=lambda line: None, stop_after_epochs=2) == {}
    assert main(["train", "--resume", str(tmp_path / "cut"), "--data-dir", str(data_dir)]) == 0
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["test"] == whole["test"]


def test_refit_where_it_cannot_apply_is_one_line_exit_2(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "names", "--data-dir", str(data_dir), "--out", str(out), "refit=true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refit applies to the tasks with a validation part" in err[0] and "'names'" in err[0]
    assert "splice" in err[0] and "protein-ss" in err[0]
    assert main(["train", "splice", "--data-dir", str(data_dir), "--out", str(out), *TINY, "refit=true",
                 "lr_schedule=plateau"]) == 2
    assert "lr_schedule=plateau follows the validation metric" in capsys.readouterr().err
    assert not out.exists()


# -- protein-ss -------------------------------------------------------------------------

from biornn.tasks import protein_ss  # noqa: E402

PS_TINY = ["hidden_size=4", "num_layers=1", "ensemble=2", "batch_size=4", "epochs=2", "threads=1"]


@pytest.mark.skipif(not all((REAL / f).is_file() for f in protein_ss.FILES.values()),
                    reason="no data directory with the protein files")
def test_protein_ss_preparation_on_the_real_files():
    data = protein_ss.load(resolve("protein-ss"), str(REAL))
    s = data.splits
    residues = {k: sum(len(e) for e in v.encoded) for k, v in s.items()}
    assert residues["train"] + residues["val"] == 18105 and residues["test"] == 3520
    # 110 '<>' lines in the training file, and one chain that starts after an 'end' with no '<>' (line 2400)
    assert len(s["test"].encoded) == 17 and len(s["train"].encoded) + len(s["val"].encoded) == 111
    assert len(s["val"].encoded) == 11
    assert all(e.shape[1] == 20 for e in s["test"].encoded)
    assert all(len(e) == len(st) for e, st in zip(s["train"].encoded, s["train"].states))
    counts = np.bincount(np.concatenate([s["train"].y, s["val"].y]), minlength=3)
    assert counts.tolist() == [4601, 3636, 9868]  # h, e, _
    assert data.labels == ["helix", "strand", "coil"]


def test_tagger_window_layer_sees_each_sequence_as_if_alone():
    """conv_channels > 0: a padded batch gives every chain the logits it gets on its own (zeros past its end
    in both), the recurrence reads F + C features, and the window layer gets gradients."""
    from biornn.models import SequenceTagger

    torch.manual_seed(0)
    m = SequenceTagger(5, 3, hidden_size=6, conv_channels=4, conv_kernel=5).eval()
    assert m.rnn.input_size == 9 and m.conv.weight.shape == (4, 5, 5)
    chains = [torch.randn(L, 5) for L in (7, 3, 1)]
    x = torch.zeros(3, 7, 5)
    for i, c in enumerate(chains):
        x[i, : len(c)] = c
    x[1, 3:] = 9.0  # garbage in the padding must not reach a real step
    lengths = torch.tensor([7, 3, 1])
    out = m(x, lengths)
    for i, c in enumerate(chains):
        torch.testing.assert_close(out[i, : len(c)], m(c[None])[0], rtol=1e-5, atol=1e-6)
    out[0].sum().backward()
    assert m.conv.weight.grad is not None and m.conv.weight.grad.abs().sum() > 0
    plain = SequenceTagger(5, 3, hidden_size=6)
    assert plain.conv is None and plain.rnn.input_size == 5 and not any("conv" in k for k in plain.state_dict())
    with pytest.raises(ValueError, match="conv_kernel odd"):
        SequenceTagger(5, 3, conv_channels=2, conv_kernel=4)


def test_protein_ss_cv_benchmark_tests_on_training_chains_only(protein_dir, tmp_path):
    """benchmarks/protein_ss_cv.py: each fold's test part is a part of the training file (the test file is
    never read), the folds cover every training chain once, and the pooled Q3 weighs folds by residues."""
    import importlib.util
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "protein_ss_cv.py"
    spec = importlib.util.spec_from_file_location("protein_ss_cv", script)
    cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cv)
    cfg = resolve("protein-ss")
    train_chains = {s for s, _ in protein_ss.read_ss(protein_dir / protein_ss.FILES["train"])}
    seen = []
    for k in range(3):
        data = cv.cv_load(k, 3, 100)(cfg, str(protein_dir))
        parts = {p: set(d.texts) for p, d in data.splits.items()}
        assert parts["test"] <= train_chains and not parts["test"] & (parts["train"] | parts["val"])
        assert parts["train"] | parts["val"] | parts["test"] == train_chains
        seen += data.splits["test"].texts
    assert sorted(seen) == sorted(s for s, _ in protein_ss.read_ss(protein_dir / protein_ss.FILES["train"]))
    res = subprocess.run([sys.executable, str(script), "--quick", "--json", "--threads", "1", "--data-dir",
                          str(protein_dir), "hidden_size=4", "conv_channels=2"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert [r["fold"] for r in out["rows"]] == [0, 1]
    rows = out["rows"]
    pooled = sum(r["q3"] * r["residues"] for r in rows) / sum(r["residues"] for r in rows)
    assert out["summary"]["q3_pooled"] == pytest.approx(pooled)
    bad = subprocess.run([sys.executable, str(script), "--quick", "conv_kernel=4"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "conv_kernel must be an odd number" in bad.stderr


def test_protein_ss_cv_family_folds_keep_homologues_together():
    """--homology-cutoff: chains above the cutoff's identity share a family and so a fold; no chain is
    tested beside a relative it was trained on; random-chain folds are the old permutation dealt round."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "protein_ss_cv.py"
    spec = importlib.util.spec_from_file_location("protein_ss_cv", script)
    cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cv)
    rng = random.Random(3)
    aa = "ACDEFGHIKLMNPQRSTVWY"
    base = ["".join(rng.choice(aa) for _ in range(60)) for _ in range(6)]
    seqs = list(base)
    for b in base[:3]:  # a relative of each of the first three: 5 of 60 residues changed
        s = list(b)
        for i in rng.sample(range(60), 5):
            s[i] = rng.choice(aa)
        seqs.append("".join(s))
    fam = cv.families(seqs, 0.4)
    for k in range(3):
        assert fam[k] == fam[6 + k]
    assert len(set(fam)) == 6
    where = cv.fold_of(tuple(seqs), 3, 100, 0.4)
    assert sorted(set(where)) == [0, 1, 2]
    for k in range(3):
        assert where[k] == where[6 + k]
    loads = [sum(len(s) for s, w in zip(seqs, where) if w == f) for f in range(3)]
    assert max(loads) - min(loads) <= 120  # families of 120 or 60 residues, dealt largest first
    plain = cv.fold_of(tuple(seqs), 3, 100, None)
    perm = np.random.default_rng(100).permutation(len(seqs))
    assert [plain[int(i)] for i in perm] == [k % 3 for k in range(len(seqs))]


def test_conv_channels_is_one_line_where_it_cannot_apply(data_dir, protein_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "splice", "--data-dir", str(data_dir), "--out", str(out), *TINY, "conv_channels=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "protein-ss" in err and "'splice'" in err, err
    assert main(["train", "protein-ss", "--data-dir", str(protein_dir), "--out", str(out), *PS_TINY,
                 "conv_channels=8", "conv_kernel=4"]) == 2
    assert "conv_kernel must be an odd number" in capsys.readouterr().err
    assert main(["train", "protein-ss", "--data-dir", str(protein_dir), "--out", str(out), *PS_TINY,
                 "conv_channels=16384", "conv_kernel=1001"]) == 2
    assert "conv_channels x conv_kernel = 16,400,384 weights per input feature" in capsys.readouterr().err
    # a kernel without channels sizes nothing: said, not ignored (any task)
    for task, data in (("protein-ss", protein_dir), ("splice", data_dir)):
        assert main(["train", task, "--data-dir", str(data), "--out", str(out), *(PS_TINY if task == "protein-ss"
                     else TINY), "conv_kernel=5"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "conv_kernel=5 sizes the window layer, which conv_channels=0" in err
    assert not out.exists()


def _protein(rng: random.Random) -> tuple[str, str]:
    """A made-up chain whose state follows its residues: A/L/E helix, V/I strand, else coil."""
    seq = "".join(rng.choice("ALEVIGPSTKND") for _ in range(rng.randint(8, 20)))
    return seq, "".join("h" if c in "ALE" else "e" if c in "VI" else "_" for c in seq)


def _ss_file(proteins: list[tuple[str, str]], closer: str) -> str:
    lines = []
    for seq, st in proteins:
        lines.append("<>")
        lines += [f"{a} {b}" for a, b in zip(seq, st)]
        lines.append(closer)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def protein_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pdata")
    (root / "protein").mkdir()
    rng = random.Random(0)
    (root / "protein" / "protein-secondary-structure.train").write_text(
        _ss_file([_protein(rng) for _ in range(20)], "end") + "<end>\n")
    (root / "protein" / "protein-secondary-structure.test").write_text(
        _ss_file([_protein(rng) for _ in range(5)], "<end>"))
    (root / "protein" / "protein-secondary-structure.names").write_text("made up for tests\n")
    return root


def test_protein_ss_end_to_end(protein_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "protein-ss", "--data-dir", str(protein_dir), "--out", str(out), *PS_TINY]) == 0
    for name in ("config.json", "model.safetensors", "metrics.json", "log.csv", "curves.png", "confusion.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["baseline"]["name"] == "window13-logreg"
    assert set(metrics["test"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert metrics["n"] == {"train": 18, "val": 2, "test": 5}
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data-dir", str(protein_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert main(["predict", str(out), "ALEVIGPX", "kndv"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(r["states"]) for r in rows] == [8, 4] and set("".join(r["states"] for r in rows)) <= set("he_")
    assert sorted(rows[0]["probabilities"]) == ["coil", "helix", "strand"]
    p = np.array([rows[0]["probabilities"][k] for k in ("helix", "strand", "coil")])
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=2e-3)
    assert main(["predict", str(out), "AL1E"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "character '1' at position 3 is not in the protein alphabet" in err


@pytest.mark.parametrize("text, match", [
    ("", "empty file"),
    ("<>\nA h\nB x\n", "line 3 (protein 1): state 'x' is not one of h, e, _"),
    ("<>\nA h\n1 e\n", "line 3 (protein 1): character '1' at position 1 is not in the protein alphabet"),
    ("<>\nA h e\n", "line 2: expected 'residue state'"),
    ("<>\nend\n<end>\n", "no protein in the file"),
])
def test_protein_ss_bad_data_exits_2_and_writes_nothing(protein_dir, tmp_path, capsys, text, match):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(protein_dir, root)
    (root / protein_ss.FILES["test"]).write_text(text)
    out = tmp_path / "run"
    assert main(["train", "protein-ss", "--data-dir", str(root), "--out", str(out), *PS_TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and "protein-secondary-structure.test" in err, err
    assert not out.exists()


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["splice_splits.py", "protein_ss_cv.py", "names_raw_split.py"])
@pytest.mark.parametrize("args, message", [
    (["nosuchkey=1"], "override: unknown key 'nosuchkey'"),
    (["hidden_size=x"], "hidden_size must be int"),
    (["task=names"], "this script trains"),
    (["seed=3"], "the script sets seed itself"),
    (["threads=1"], "the script sets threads itself; use --threads"),
    (["--threads", "-1"], "--threads must be >= 1"),
    (["noequals"], "expected KEY=VALUE"),
])
def test_benchmark_scripts_refuse_bad_arguments_in_one_line(script, args, message, tmp_path, monkeypatch, capsys):
    """Before any training: one line naming the problem, exit 2 (they were tracebacks, exit 1).

    Run in this process as ``python SCRIPT ARGS`` runs it (``__main__``, ``sys.argv``), so that the 21
    cases do not each start an interpreter and import torch; one case per script runs as a real
    process below."""
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / script), *args])
    monkeypatch.setenv("BIORNN_DATA", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(), pytest.raises(SystemExit) as done:
            runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2, err[-20:]
    assert len(err) == 1 and message in err[0] and err[0].startswith(script), err


@pytest.mark.parametrize("script", ["splice_splits.py", "protein_ss_cv.py", "names_raw_split.py"])
def test_benchmark_scripts_refuse_bad_arguments_as_a_process(script, tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, str(BENCHMARKS / script), "noequals"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env={**os.environ, "BIORNN_DATA": str(tmp_path / "none")})
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "expected KEY=VALUE" in err[0] and err[0].startswith(script), err


def test_names_raw_split_benchmark_runs_one_model_too(tmp_path):
    """`ensemble=1` (a plain classifier, no member_logits) crashed; a missing data directory is one line."""
    import subprocess
    import sys

    from conftest import NAMES_LANGS

    names = tmp_path / "data" / "names"
    names.mkdir(parents=True)
    rng = random.Random(0)
    for k, lang in enumerate(NAMES_LANGS):
        rows = {"".join(rng.choice("abcdefgh") for _ in range(4)).title() + "xyz"[k % 3] for _ in range(6)}
        (names / f"{lang}.txt").write_text("\n".join(sorted(rows)) + "\n", encoding="utf-8")
    (names / "LICENSE").write_text("made up for tests\n")
    cmd = [sys.executable, str(BENCHMARKS / "names_raw_split.py"), "--threads", "1", "--data-dir",
           str(tmp_path / "data"), "epochs=1", "hidden_size=4", "embedding_dim=4", "ensemble=1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "logit adjustment tau=0.5 (default)" in res.stdout and "n-gram LR, balanced" in res.stdout
    cmd[cmd.index("--data-dir") + 1] = str(tmp_path / "nothing")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if k != "BIORNN_DATA"})
    assert res.returncode == 2 and "nothing (--data-dir): no such directory" in res.stderr.strip().splitlines()[-1]
