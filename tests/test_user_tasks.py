"""The generic tasks on the user's own files -- ``classify``, ``tag``, ``forecast`` -- end to end on tiny
files the tests write (TSV of symbol sequences, UCR table, multivariate variable-length NPZ, FASTA with
``label=`` headers, CSV series): train, run directory, evaluate, predict, resume, the normalisation fitted
on the training part alone, and every bad input (exit 2, one line, no run directory)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from biornn.cli.main import main
from biornn.config import resolve
from biornn.tasks import userdata
from biornn.train import train

TINY = ["hidden_size=4", "batch_size=16", "epochs=2", "threads=1"]
RUN_FILES = ("config.json", "model.safetensors", "metrics.json", "log.csv", "steps.csv", "curves.png",
             "checkpoint.pt")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _dna(rng: random.Random, label: str, n: int) -> str:
    """n random bases; class "pos" carries the motif GATA somewhere."""
    s = [rng.choice("ACGT") for _ in range(n)]
    if label == "pos":
        i = rng.randrange(n - 4)
        s[i:i + 4] = "GATA"
    return "".join(s)


def _tsv(path: Path, n: int, seed: int, lengths=(15, 25)) -> Path:
    rng = random.Random(seed)
    rows = ["id\tlabel\tsequence"]
    for k in range(n):
        label = ("pos", "neg")[k % 2]
        rows.append(f"s{k}\t{label}\t{_dna(rng, label, rng.randint(*lengths))}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _rows(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


# -- format detection ------------------------------------------------------------------


def test_format_from_the_extension(tmp_path):
    (tmp_path / "a.tsv").write_text("label\tsequence\nx\tACGT\n")
    (tmp_path / "b.tsv").write_text("1\t0.5\t0.25\n")  # UCR 2018: no header, label first
    (tmp_path / "c.dat").write_text("x")
    assert userdata.file_format(tmp_path / "a.tsv") == "tsv"
    assert userdata.file_format(tmp_path / "b.tsv") == "ucr"
    assert userdata.file_format(tmp_path / "x.FASTA") == "fasta"
    assert userdata.file_format(tmp_path / "x.npz") == "npz"
    assert userdata.file_format(tmp_path / "x.txt") == "ucr"
    assert userdata.file_format(tmp_path / "c.dat", "csv") == "csv"  # --format overrides
    with pytest.raises(ValueError, match="cannot tell the format from the extension '.dat'; give --format"):
        userdata.file_format(tmp_path / "c.dat")


def test_alphabet_inferred_from_the_training_sequences():
    assert userdata.infer_alphabet("", ["ACGTN", "acg"]).name == "DNA"
    assert userdata.infer_alphabet("", ["ACGU"]).name == "RNA"
    assert userdata.infer_alphabet("", ["MKVLA"]).name == "protein"
    assert userdata.infer_alphabet("", ["a b!"]).name == "text"
    assert userdata.infer_alphabet("protein", ["ACGT"]).name == "protein"


# -- classify ----------------------------------------------------------------------------


def test_classify_tsv_end_to_end_from_relative_paths(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    _tsv(work / "train.tsv", 60, 0)
    _tsv(work / "test.tsv", 20, 1)
    monkeypatch.chdir(work)
    assert main(["train", "classify", "--train", "train.tsv", "--test", "test.tsv", "--out", "run", *TINY]) == 0
    run = work / "run"
    for name in (*RUN_FILES, "confusion.png", "confusion_baseline.png"):
        assert (run / name).is_file(), name
    m = _metrics(run)
    assert m["task"] == "classify" and m["epochs"] == 2
    assert set(m["test"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert m["baseline"]["name"] == "kmer-logreg" and 0.0 <= m["baseline"]["accuracy"] <= 1.0
    assert m["n"] == {"train": 48, "val": 12, "test": 20}  # 20 % of the training file validates
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train_file"] == str(work / "train.tsv") and cfg["test_file"] == str(work / "test.tsv")
    capsys.readouterr()

    monkeypatch.chdir(tmp_path)  # the recorded absolute paths are found from anywhere
    assert main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["accuracy"] == pytest.approx(m["test"]["accuracy"])
    assert main(["predict", str(run), "ACGTGATAACGT", "acgtnnacg"]) == 0
    rows = _rows(capsys)
    assert len(rows) == 2
    for row in rows:
        assert row["label"] in ("neg", "pos") and sorted(t["label"] for t in row["top"]) == ["neg", "pos"]
        assert sum(t["probability"] for t in row["top"]) == pytest.approx(1.0, abs=1e-3)
    assert main(["predict", str(run), "ACGTJ"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "character 'J' at position 5 is not in the DNA alphabet" in err

    # the recorded file changed: evaluate refuses to measure other data
    _tsv(work / "test.tsv", 20, 2)
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "fingerprint differs" in err and "its files (train_file" in err and "data directory" not in err


def test_resume_refuses_edited_records(tmp_path, capsys):
    """An interrupted run resumed on a training file with one record edited -- same labels, same
    alphabet, so the data's meta is unchanged -- is refused, as evaluate refuses it afterwards."""
    train_file = _tsv(tmp_path / "train.tsv", 40, 0)
    cfg = resolve("classify", overrides=[*TINY, "epochs=3", f"train_file={train_file}"])
    run = tmp_path / "run"
    train(cfg, run, progress=False, log=lambda s: None, stop_after_epochs=1)
    lines = train_file.read_text().splitlines()
    lines[1] = lines[1][:-1] + ("A" if lines[1][-1] != "A" else "C")  # one base of one record
    train_file.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fingerprint differs" in err and "checkpoint.pt" in err
    assert not (run / "metrics.json").exists()


def _ucr(path: Path, n: int, seed: int, T: int = 24) -> Path:
    """Two classes of noisy series: a bump early (class 1) or late (class 2)."""
    rng = np.random.default_rng(seed)
    lines = []
    for k in range(n):
        label = 1 + k % 2
        x = rng.normal(0, 0.3, T)
        centre = T // 4 if label == 1 else 3 * T // 4
        x[centre - 2:centre + 2] += 2.0
        lines.append(" ".join([f"{label:.7e}", *(f"{v:.5f}" for v in x)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_refit_run_killed_in_its_finish_resumes_into_it(tmp_path, monkeypatch):
    """refit=true: killed after the refit's weights were written but before metrics.json, the run
    resumes into the refit again (deterministic) and the finish, ending as the uninterrupted run."""
    from safetensors.torch import load_file

    from biornn.tasks import classify

    _tsv(tmp_path / "train.tsv", 60, 0)
    _tsv(tmp_path / "test.tsv", 20, 1)
    cfg = resolve("classify", overrides=[*TINY, "refit=true", f"train_file={tmp_path / 'train.tsv'}",
                                         f"test_file={tmp_path / 'test.tsv'}"])
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg, full, progress=False, log=lambda s: None)
    real = classify.finish

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(classify, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, part, progress=False, log=lambda s: None)
    monkeypatch.setattr(classify, "finish", real)
    assert not (part / "metrics.json").exists()
    assert main(["train", "--resume", str(part)]) == 0
    ma, mb = _metrics(full), _metrics(part)
    assert ma["refit"]["epochs"] == mb["refit"]["epochs"] and ma["test"] == mb["test"]
    wa, wb = (load_file(str(r / "model.safetensors")) for r in (full, part))
    assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)


def test_classify_ucr_table(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "classify", "--train", str(_ucr(tmp_path / "A_TRAIN.txt", 40, 0)),
                 "--test", str(_ucr(tmp_path / "A_TEST.txt", 20, 1)), "--out", str(run), *TINY]) == 0
    m = _metrics(run)
    assert m["baseline"]["name"] == "summary-logreg" and m["n"]["test"] == 20
    # the early/late bump is plain to the summary baseline
    assert m["baseline"]["accuracy"] >= 0.9
    capsys.readouterr()
    series = ", ".join(["0"] * 24)
    assert main(["predict", str(run), series, f"[{series}]"]) == 0
    rows = _rows(capsys)
    assert rows[0]["top"] == rows[1]["top"] and {t["label"] for t in rows[0]["top"]} == {"1", "2"}
    assert main(["predict", str(run), "1, x, 3"]) == 2
    assert "input 1: not a series of numbers" in capsys.readouterr().err


def _npz_classes(path: Path, n: int, seed: int, offset: float = 0.0) -> Path:
    """Multivariate (F = 3), variable-length records; the class is the sign of feature 2's trend."""
    rng = np.random.default_rng(seed)
    T = 30
    X = np.zeros((n, T, 3))
    lengths = rng.integers(10, T + 1, n)
    y = np.array(["up", "down"] * (n // 2))
    for i in range(n):
        L = lengths[i]
        X[i, :L, 0] = rng.normal(100.0, 10.0, L) + offset
        X[i, :L, 1] = np.linspace(0, 1, L) * (1 if y[i] == "up" else -1) + rng.normal(0, 0.1, L)
        X[i, :L, 2] = rng.normal(0, 0.01, L)
        X[i, L:] = np.nan  # padding is not read
    np.savez(path, X=X, y=y, lengths=lengths)
    return path


def test_classify_multivariate_variable_length_npz(tmp_path, capsys):
    run = tmp_path / "run"
    train_file = _npz_classes(tmp_path / "train.npz", 40, 0)
    assert main(["train", "classify", "--train", str(train_file), "--test", str(_npz_classes(tmp_path / "t.npz", 10, 1)),
                 "--out", str(run), *TINY]) == 0
    from biornn.checkpoint import load_weights

    _, meta = load_weights(run / "model.safetensors")
    assert meta["n_features"] == 3 and meta["labels"] == ["down", "up"] and meta["input"] == "values"
    assert len(meta["normalize"]["mean"]) == 3 and meta["normalize"]["mean"][0] == pytest.approx(100.0, abs=3.0)
    capsys.readouterr()
    assert main(["predict", str(run), "[[100, 0, 0], [101, 0.5, 0], [99, 1, 0]]"]) == 0
    assert _rows(capsys)[0]["label"] in ("down", "up")
    assert main(["predict", str(run), "[[100, 0], [101, 0.5]]"]) == 2
    assert "the model reads (T, 3)" in capsys.readouterr().err


def test_classify_fasta_with_label_headers_and_held_out_parts(tmp_path, capsys):
    rng = random.Random(0)
    records = []
    for k in range(50):
        label = ("pos", "neg")[k % 2]
        seq = _dna(rng, label, 30)
        records.append(f">seq{k} some description label={label}\n{seq[:15]}\n{seq[15:]}")
    fasta = tmp_path / "reads.fa"
    fasta.write_text("\n".join(records) + "\n")
    run = tmp_path / "run"
    assert main(["train", "classify", "--train", str(fasta), "--out", str(run), *TINY, "alphabet=dna"]) == 0
    m = _metrics(run)
    # no --val and no --test: 20 % validates and 20 % tests, stratified
    assert m["n"] == {"train": 30, "val": 10, "test": 10}
    assert m["baseline"]["name"] == "onehot-logreg"  # every sequence has 30 bases
    data = userdata.load(resolve("classify", overrides=[f"train_file={fasta}"]), "classify")
    seen = [set(p.texts) for p in data.parts.values()]
    assert not (seen[0] & seen[2]) and sorted(np.bincount(data.parts["test"].y).tolist()) == [5, 5]


def test_classify_resume_gives_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    cfg = resolve("classify", overrides=[*TINY, "epochs=3", f"train_file={_tsv(tmp_path / 'a.tsv', 40, 0)}"])
    train(cfg, tmp_path / "whole", log=lambda line: None)
    assert train(cfg, tmp_path / "cut", log=lambda line: None, stop_after_epochs=1) == {}
    assert not (tmp_path / "cut" / "metrics.json").exists()
    assert main(["train", "--resume", str(tmp_path / "cut")]) == 0
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("task, make", [
    ("classify", lambda d: _tsv(d / "a.tsv", 40, 0)),
    ("tag", lambda d: _tag_tsv(d / "a.tsv", 40, 0)),
])
def test_refit_on_the_users_files(tmp_path, capsys, task, make):
    from biornn.tasks.common import with_val_in_train

    f = make(tmp_path)
    data = userdata.load(resolve(task, overrides=[f"train_file={f}"]), task)
    joined = with_val_in_train(data)
    n = {part: len(p.ids) for part, p in data.parts.items()}
    assert len(joined.parts["train"].ids) == n["train"] + n["val"]
    assert joined.parts["train"].ids == data.parts["train"].ids + data.parts["val"].ids
    assert joined.parts["test"] is data.parts["test"] and joined.parts["val"] is data.parts["val"]
    run = tmp_path / "run"
    assert main(["train", task, "--train", str(f), "--out", str(run), *TINY, "refit=true"]) == 0
    m = _metrics(run)
    assert m["refit"]["epochs"] == m["best_epoch"] and m["baseline"]["refit"] is True
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["accuracy"] == pytest.approx(m["test"]["accuracy"])


# -- the normalisation sees the training part alone -------------------------------------


def test_normalisation_is_fitted_on_the_training_part_alone(tmp_path):
    # the test file lies far away (offset 1e4): any of its values in the statistics would move them
    train_file = _npz_classes(tmp_path / "train.npz", 40, 0)
    test_file = _npz_classes(tmp_path / "test.npz", 10, 1, offset=1e4)
    data = userdata.load(resolve("classify", overrides=[f"train_file={train_file}", f"test_file={test_file}"]),
                         "classify")
    train_x = np.concatenate(data.parts["train"].x).astype(np.float64)
    # z-scores of the training part have mean 0 and std 1 exactly: the statistics are that part's own ...
    np.testing.assert_allclose(train_x.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train_x.std(axis=0), 1.0, atol=1e-4)
    # ... not the validation part's (held out of the same file) nor the test file's
    val_x = np.concatenate(data.parts["val"].x).astype(np.float64)
    assert np.abs(val_x.mean(axis=0)).max() > 1e-3
    assert np.concatenate(data.parts["test"].x)[:, 0].mean() > 100.0
    with np.load(train_file) as z:
        raw, lengths = z["X"], z["lengths"]
    train_idx = [int(i.split()[1]) for i in data.parts["train"].ids]
    expected = np.concatenate([raw[i, :lengths[i]] for i in train_idx]).mean(axis=0)
    np.testing.assert_allclose(data.norm["mean"], expected, rtol=1e-6)
    # and the test part is scaled with those statistics (raw values also have a mean above 100)
    with np.load(test_file) as z:
        raw_test, test_lengths = z["X"], z["lengths"]
    want = np.concatenate([(raw_test[i, :test_lengths[i]] - np.asarray(data.norm["mean"])) / np.asarray(data.norm["std"])
                           for i in range(len(raw_test))])
    np.testing.assert_allclose(np.concatenate(data.parts["test"].x), want, rtol=1e-4)
    # normalize=false keeps the values
    plain = userdata.load(resolve("classify", overrides=[f"train_file={train_file}", "normalize=false"]), "classify")
    assert plain.norm is None and np.concatenate(plain.parts["train"].x)[:, 0].mean() > 50.0


# -- tag ---------------------------------------------------------------------------------


def _tag_tsv(path: Path, n: int, seed: int) -> Path:
    """Sequences labelled per residue: x on a base followed by G, . elsewhere (a rule of the neighbour)."""
    rng = random.Random(seed)
    rows = ["sequence\tlabel"]
    for _ in range(n):
        s = "".join(rng.choice("ACGT") for _ in range(rng.randint(12, 30)))
        tags = ["x" if s[i + 1:i + 2] == "G" else "." for i in range(len(s))]
        rows.append(f"{s}\t{''.join(tags)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_tag_tsv_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "tag", "--train", str(_tag_tsv(tmp_path / "a.tsv", 50, 0)),
                 "--test", str(_tag_tsv(tmp_path / "b.tsv", 15, 1)), "--out", str(run), *TINY]) == 0
    for name in (*RUN_FILES, "confusion.png", "confusion_baseline.png"):
        assert (run / name).is_file(), name
    m = _metrics(run)
    assert m["task"] == "tag" and m["baseline"]["name"] == "window9-logreg"
    # a window that sees the next base finds every label
    assert m["baseline"]["accuracy"] == pytest.approx(1.0)
    assert m["steps"]["test"] == sum(len(line.split("\t")[0]) for line in
                                     (tmp_path / "b.tsv").read_text().splitlines()[1:])
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["accuracy"] == pytest.approx(m["test"]["accuracy"])
    assert main(["predict", str(run), "ACGTTA"]) == 0
    row = _rows(capsys)[0]
    assert len(row["tags"]) == 6 and len(row["tag_string"]) == 6 and set(row["probabilities"]) == {".", "x"}


def test_tag_npz_per_step_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n, T = 30, 20
    X = rng.normal(0, 1, (n, T, 2))
    y = (X[:, :, 0] > 0).astype(np.int64)  # the label of a step is the sign of its first feature
    lengths = rng.integers(5, T + 1, n)
    np.savez(tmp_path / "tags.npz", X=X, y=y, lengths=lengths)
    run = tmp_path / "run"
    assert main(["train", "tag", "--train", str(tmp_path / "tags.npz"), "--out", str(run), *TINY]) == 0
    m = _metrics(run)
    assert m["baseline"]["accuracy"] > 0.9 and m["n"] == {"train": 18, "val": 6, "test": 6}
    capsys.readouterr()
    assert main(["predict", str(run), "[[1, 0], [-1, 0], [2, 1]]"]) == 0
    assert _rows(capsys)[0]["tags"][0] in ("0", "1")


# -- forecast ----------------------------------------------------------------------------


def _series_csv(path: Path, T: int, seed: int) -> Path:
    """Two features in different units: a noisy sine around 0 and a cosine around 20."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    x = np.stack([np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(T), 5 * np.cos(2 * np.pi * t / 40) + 20], 1)
    path.write_text("a,b\n" + "".join(f"{r[0]:.5f},{r[1]:.5f}\n" for r in x))
    return path


def test_forecast_csv_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "forecast", "--train", str(_series_csv(tmp_path / "train.csv", 400, 0)),
                 "--test", str(_series_csv(tmp_path / "test.csv", 150, 1)), "--out", str(run), *TINY,
                 "horizon=2", "truncate=50"]) == 0
    for name in (*RUN_FILES, "forecast.png"):
        assert (run / name).is_file(), name
    m = _metrics(run)
    assert set(m["test"]) == {"rmse", "mae", "rmse_normalized", "n_steps"}
    # scored steps: t >= p - 1 = 7 and t + k < 150
    assert m["test"]["n_steps"] == 150 - 2 - 7
    assert m["baseline"]["name"] == "linear-ar" and m["baseline"]["order"] == 8
    # the AR(8) follows two sines far better than "tomorrow is today"
    assert m["baseline"]["rmse"] < m["persistence"]["rmse"]
    assert m["n"] == {"train": 1, "val": 1, "test": 1} and m["steps"]["train"] == 320
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"]["rmse"] == pytest.approx(m["test"]["rmse"])
    assert main(["predict", str(run), "[[0, 25], [0.2, 24.9], [0.5, 24.7]]"]) == 0
    row = _rows(capsys)[0]
    assert row["input_steps"] == 3 and np.asarray(row["forecast"]).shape == (2, 2)
    assert main(["predict", str(run), "[[0, NaN]]"]) == 2
    assert "NaN or infinite" in capsys.readouterr().err


def test_forecast_ucr_rows_are_separate_series(tmp_path):
    data = userdata.load(resolve("forecast", overrides=[f"train_file={_ucr(tmp_path / 'A.txt', 20, 0)}"]), "forecast")
    assert [len(p.x) for p in data.parts.values()] == [12, 4, 4]
    assert all(x.shape == (24, 1) for p in data.parts.values() for x in p.x)


# -- bad input ---------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD_TSV = "label\tsequence\n" + "".join(f"{'ab'[k % 2]}\tACGTACGT{'ACGT'[k % 4]}{'ACGT'[k // 4]}\n" for k in range(10))


@pytest.mark.parametrize("task, files, extra, match", [
    ("classify", {"train.fa": ">r1 label=a\nACGT\n>r2 label=b\nACJT\n"}, ["alphabet=dna"],
     "train.fa: record 'r2': character 'J' at position 3 is not in the DNA alphabet"),
    ("classify", {"train.tsv": GOOD_TSV, "test.fa": ">q1 label=a\nACGT\n>q2 label=b\nAC1T\n"}, [],
     "test.fa: record 'q2': character '1' at position 3 is not in the DNA alphabet"),
    ("classify", {"train.txt": "1 0.1 0.2 0.3\n2 0.1 0.2\n"}, [],
     "train.txt: line 2: 2 values, but line 1 has 3; equal lengths are required"),
    ("classify", {"train.txt": "1 0.1 0.2 0.3\n2 0.3 0.2 0.1\n", "test.txt": "1 0.1 0.2\n"}, [],
     "test.txt: line 1: 2 values, but the training file"),
    ("classify", {"train.txt": "1 0.1 nan 0.3\n2 0.1 0.2 0.3\n"}, [], "train.txt: line 1, value 2: nan"),
    ("forecast", {"train.csv": "a,b\n1,2\n3,inf\n"}, [], "train.csv: line 3, value 2: inf"),
    ("classify", {"train.tsv": ""}, [], "train.tsv: empty file"),
    ("classify", {"train.tsv": GOOD_TSV, "test.tsv": "label\tsequence\na\tACGT\nc\tACGT\n"}, [],
     "test.tsv: line 3: label 'c' is not in the training file"),
    ("classify", {"train.tsv": GOOD_TSV + "a\t" + "A" * 40 + "\n"}, ["max_length=20"],
     "train.tsv: line 12: 40 steps is longer than max_length 20"),
    ("classify", {"train.tsv": "label\tsequence\na\tACGT\na\tACGA\n"}, [], "one class ('a')"),
    ("tag", {"train.tsv": "sequence\tlabel\nACGT\tab\n"}, [], "train.tsv: line 2: 2 labels for 4 residues"),
    ("tag", {"train.tsv": "sequence\tlabel\nACGT\ta b a\n"}, [],
     "train.tsv: line 2: 3 labels for 4 residues (white space is not a label"),
    ("tag", {"train.fa": ">r1 label=a\nACGT\n"}, [], "FASTA has no per-step labels"),
    ("classify", {"train.fa": ">r1 label=a\nACGT\n>r2\nACGA\n"}, [],
     "train.fa: record 'r2' (line 3): no label in its header (label=X)"),
    ("forecast", {"train.tsv": GOOD_TSV}, [], "column 'sequence' holds symbols"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, task, files, extra, match):
    paths = {name: _write(tmp_path / name, text) for name, text in files.items()}
    args = []
    for name, path in paths.items():
        args += ["--train" if name.startswith("train") else "--test", str(path)]
    out = tmp_path / "run"
    assert main(["train", task, *args, "--out", str(out), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_no_training_file_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "classify", "--out", str(tmp_path / "run"), *TINY]) == 2
    assert "give the training file (--train FILE" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, message", [
    ("[[" + "9" * 400 + ", 0.2]]", "input 1: a number too large for a float"),
    ("9" * 400, "input 1: NaN or infinite values"),  # float("99...9") is inf
    ("[" * 3000 + "]" * 3000, "input 1: arrays nested too deeply"),
    # an empty field between commas was skipped (1,2,,3 read as 1,2,3); JSON true was read as 1.0
    ("1,2,,3", "input 1: not a series of numbers"),
    ("[1, 2, true]", "input 1: not a series of numbers"),
    ("[[1], [false]]", "input 1: not a series of numbers"),
])
def test_predict_inputs_that_python_parses_but_no_series_holds(text, message):
    """Valid JSON (an integer of 400 digits, arrays 3000 deep) was an OverflowError / RecursionError
    traceback from `biornn predict` and a 500 from serve."""
    from biornn.tasks.userdata import parse_inputs

    meta = {"alphabet": None, "n_features": 1, "normalize": None}
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_inputs(meta, [text])


def test_ucr_messages_name_the_file_line(tmp_path, capsys):
    """Errors about a UCR record counted data rows ('row 4') where the file's line was 7 (blank lines)."""
    train_file = _ucr(tmp_path / "train.txt", 20, 0)
    rows = train_file.read_text().splitlines()
    bad = "7" + rows[3][rows[3].index(" "):]  # a label the training file lacks
    (tmp_path / "test.txt").write_text("\n\n" + "\n".join(rows[:3]) + "\n\n" + bad + "\n")
    assert main(["train", "classify", "--train", str(train_file), "--test", str(tmp_path / "test.txt"),
                 "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "test.txt: line 7: label '7'" in err, err


def test_iupac_codes_among_bases_are_guessed_as_nucleotides():
    """One R among DNA bases made the guess protein (R = arginine, N = asparagine) without a word."""
    from biornn.tasks.userdata import infer_alphabet

    assert infer_alphabet("", ["ACGTACGTRA", "ACGTNNACGT"]).name == "DNA"
    assert infer_alphabet("", ["ACGUACGUYA"]).name == "RNA"
    assert infer_alphabet("", ["MKVLAAGRST"]).name == "protein"  # few plain bases: a protein
    assert infer_alphabet("", ["ACDEFGHIKLMNPQRSTVWY"]).name == "protein"


def test_predict_numbers_separated_by_commas_or_spaces():
    from biornn.tasks.userdata import parse_inputs

    meta = {"alphabet": None, "n_features": 1, "normalize": None}
    for text in ("1, 2,3", "1 2 3", "1,2,3,", "[1, 2, 3]"):
        assert parse_inputs(meta, [text])[0][:, 0].tolist() == [1.0, 2.0, 3.0], text


def test_a_stray_character_that_makes_dna_text_is_noted(tmp_path, capsys):
    """One gap among DNA letters turned the guessed alphabet into case-sensitive text without a word."""
    from biornn.tasks.userdata import near_alphabet

    assert near_alphabet(["ACGT" * 30, "AC-T"]) == ("dna", {"-"})
    assert near_alphabet(["ACGT", "hello world"]) is None
    assert near_alphabet(["ACGT" * 30]) is None  # nothing odd: the guess is DNA itself
    rng = random.Random(0)
    rows = [f"{'ab'[i % 2]},{''.join(rng.choice('ACGT') for _ in range(20))}" for i in range(40)]
    rows[5] = "a,ACGT-ACGTACGTACGTAC"
    f = tmp_path / "gap.csv"
    f.write_text("label,sequence\n" + "\n".join(rows) + "\n")
    assert main(["train", "classify", "--train", str(f), "--out", str(tmp_path / "run"), "epochs=1",
                 "hidden_size=4", "threads=1"]) == 0
    err = capsys.readouterr().err
    assert f"note: {f}: the alphabet was guessed as text" in err and "'-', rare among DNA letters" in err
    # a refused test file: the error stays one line (the note, printed first, made it two)
    t = tmp_path / "t.csv"
    t.write_text("label,sequence\nc,ACGT\n")
    assert main(["train", "classify", "--train", str(f), "--test", str(t), "--out", str(tmp_path / "run2"),
                 "epochs=1", "hidden_size=4", "threads=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "label 'c'" in err, err
