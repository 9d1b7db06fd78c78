"""ECG anomaly detection: the scoring maths on data with a known answer, a tiny end-to-end run on a
synthetic record written here in the discord format, detect (offline and streaming), resume, bad input."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from biornn import anomaly
from biornn.baselines import LinearAR
from biornn.cli.main import main
from biornn.config import resolve
from biornn.data.ecg import read_labels
from biornn.data.registry import DATASETS
from biornn.train import train

RECORD = "synth_ecg"
FS = 250.0
# tiny model, few epochs: the test is about the plumbing, not the accuracy
TINY = ["hidden_size=8", "num_layers=1", "epochs=3", "batch_size=2", "truncate=50", "horizon=3",
        "baseline_order=8", "threads=1", "smooth=25"]


def synthetic_ecg(n: int, seed: int = 0, anomaly: tuple[int, int] | None = None) -> np.ndarray:
    """Two leads of a periodic 'heartbeat' (a sharp spike and a slow wave, period 100) with noise;
    inside ``anomaly`` the beat is replaced by a flat line with a different wave."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    phase = (t % 100) / 100.0
    beat = np.exp(-((phase - 0.3) / 0.02) ** 2) + 0.3 * np.sin(2 * np.pi * phase)
    x = np.stack([beat, 0.5 * beat + 0.2 * np.cos(2 * np.pi * phase)], axis=1)
    if anomaly is not None:
        lo, hi = anomaly
        x[lo:hi] = np.stack([0.8 * np.sin(2 * np.pi * t[lo:hi] / 37.0), 0.1 * np.ones(hi - lo)], axis=1)
    return x + 0.02 * rng.standard_normal(x.shape)


def write_discords(root: Path, n: int = 1400, train=(0, 900), test=(900, 1400), window=(1100, 1200),
                   records: dict[str, str] | None = None) -> Path:
    """A data directory with the ecg-discords layout: one synthetic record, labels.json,
    and empty stand-ins for the other files (locate checks presence only)."""
    d = root / "ecg" / "discords"
    d.mkdir(parents=True, exist_ok=True)
    for f in DATASETS["ecg-discords"].files:
        (root / f.path).write_text("")
    x = synthetic_ecg(n, anomaly=(window[0] + 1, window[1]))
    lines = [f"{i / FS:.3f}\t{a:.5f}\t{b:.5f}" for i, (a, b) in enumerate(x)]
    (d / f"{RECORD}.txt").write_text("\n".join(lines) + "\n")
    labels = {"about": "synthetic", "files": {f"{RECORD}.txt": {"anomaly": [list(window)], "train": list(train),
                                                                "test": list(test)}}}
    if records:
        for name, text in records.items():
            (d / name).write_text(text)
    (d / "labels.json").write_text(json.dumps(labels))
    return root


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_discords(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "ecg"
    code = main(["train", "ecg-anomaly", "--record", RECORD, "--data-dir", str(data_dir), "--out", str(run),
                 "--no-progress", *TINY])
    assert code == 0
    return run


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("biornn: error:"), err
    for n in needles:
        assert n in err[0], err[0]


# -- the scoring maths --------------------------------------------------------------------

def test_mahalanobis_of_a_known_gaussian():
    rng = np.random.default_rng(0)
    cov = np.array([[4.0, 1.2], [1.2, 1.0]])
    V = rng.multivariate_normal([1.0, -2.0], cov, size=200_000)
    mean, prec = anomaly.fit_gaussian(V)
    np.testing.assert_allclose(mean, [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(np.linalg.inv(prec), cov, rtol=0.02)
    # the squared distance of a Gaussian sample is chi-square with d = 2: mean 2
    d2 = anomaly.mahalanobis(V, mean, prec) ** 2
    assert d2.mean() == pytest.approx(2.0, rel=0.02)
    # a step of 1.5 along the small-variance lead is more surprising than the same step along the large one
    far = anomaly.mahalanobis(np.array([[1.0, -0.5], [2.5, -2.0]]), np.array([1.0, -2.0]), np.linalg.inv(cov))
    np.testing.assert_allclose(far ** 2, [1.5 ** 2 * 4.0 / 2.56, 1.5 ** 2 * 1.0 / 2.56])  # det(cov) = 2.56


def test_planted_anomaly_scores_highest_and_the_threshold_needs_no_test_labels():
    """Errors of a linear AR on a periodic signal with a planted odd stretch: the stretch gets
    the highest scores, the label-free threshold (from normal rows only) flags it, nothing else."""
    x = synthetic_ecg(3000, seed=1, anomaly=(2400, 2500))
    k = 3
    ar = LinearAR(order=8, horizon=k).fit(x[:1500])
    E = anomaly.error_vectors(ar.predict(x), x)
    scorer = anomaly.fit_scorer(E[1500:2000], smooth=25, quantile=1.0, margin=1.0)
    s = anomaly.score(E, scorer)[anomaly.JOINT]
    y = np.zeros(3000, dtype=bool)
    y[2400:2500] = True
    assert 2400 <= int(np.nanargmax(s)) < 2500
    m = anomaly.score_metrics(s[2000:], y[2000:], scorer["channels"][anomaly.JOINT]["threshold"])
    assert m["roc_auc"] > 0.99 and m["hit"] and m["false_alarms"] == 0 and m["f1"] > 0.8
    assert m["best_f1"] >= m["f1"]
    from sklearn.metrics import average_precision_score, roc_auc_score

    finite = np.isfinite(s[2000:])
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y[2000:][finite], s[2000:][finite]), abs=1e-9)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y[2000:][finite], s[2000:][finite]), abs=1e-9)
    # the best threshold is the one that gives the best F1
    best = anomaly.point_metrics(y[2000:][finite], s[2000:][finite] > m["best_threshold_on_test"])
    assert best["f1"] == pytest.approx(m["best_f1"], abs=1e-9)
    # scored out of sample (cross-fitted halves), normal rows score higher than in sample: a higher threshold
    insample = anomaly.fit_scorer(E[1500:2000], smooth=25, quantile=1.0, margin=1.0, crossfit=False)
    assert (scorer["channels"]["both"]["threshold"] > insample["channels"]["both"]["threshold"])
    assert scorer["channels"]["both"]["mean"] == insample["channels"]["both"]["mean"]  # the same Gaussian kept


def test_score_metrics_on_a_hand_made_case():
    """ROC-AUC, PR-AUC (average precision) and the best threshold, counted by hand on five steps."""
    y = np.array([0, 0, 1, 0, 1], dtype=bool)
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    m = anomaly.score_metrics(s, y, threshold=0.5)
    # pairs (positive, negative) ranked right: 0.35 > 0.1; 0.9 > 0.1, 0.4, 0.8 -> 4 of 6
    assert m["roc_auc"] == pytest.approx(4 / 6)
    # ranked 0.9 (+), 0.8 (-), 0.4 (-), 0.35 (+), 0.1 (-): AP = (1/2) * 1 + (1/2) * 2/4
    assert m["pr_auc"] == pytest.approx(0.75)
    # flagged above 0.5: 0.8 (-) and 0.9 (+): precision 1/2, recall 1/2
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    # the best F1 on the labels: threshold 0.9 (P 1, R 1/2) or 0.35 (P 1/2, R 1): 2/3; 0.8: 1/2
    assert m["best_f1"] == pytest.approx(2 / 3)
    # the detector's rule is score > threshold: the reported threshold gives the reported F1 by it
    assert anomaly.point_metrics(y, s > m["best_threshold_on_test"])["f1"] == pytest.approx(m["best_f1"])
    assert m["best_threshold_on_test"] < 0.9
    # a step without a score (NaN) counts as the lowest score, and is never flagged
    m = anomaly.score_metrics(np.append(s, np.nan), np.append(y, False), threshold=0.05)
    assert m["roc_auc"] == pytest.approx(6 / 8)  # the NaN negative ties with 0.1: below both positives
    assert m["precision"] == pytest.approx(2 / 5)  # flagged: the five scored steps, not the NaN


def test_error_vectors_line_up_predictions_with_their_targets():
    T, k, L = 12, 3, 2
    x = np.arange(T * L, dtype=float).reshape(T, L)
    pred = np.zeros((T, k, L))
    for t in range(T):
        for j in range(1, k + 1):
            if t + j < T:
                pred[t, j - 1] = x[t + j] - j  # off by exactly j
    E = anomaly.error_vectors(pred, x)
    assert np.isnan(E[:k]).all()
    for j in range(1, k + 1):
        np.testing.assert_array_equal(E[k:, j - 1], np.full((T - k, L), float(j)))


def test_events_and_event_metrics():
    y = np.zeros(30, dtype=bool)
    y[10:15] = True
    flags = np.zeros(30, dtype=bool)
    flags[[2, 3, 12, 13, 14, 15, 16, 25]] = True
    assert anomaly.events(flags) == [(2, 4), (12, 17), (25, 26)]
    ev = anomaly.event_metrics(flags, y)
    assert ev["hit"] and ev["windows_hit"] == 1 and ev["false_alarms"] == 2 and ev["alarm_events"] == 3
    assert not anomaly.event_metrics(np.zeros(30, dtype=bool), y)["hit"]
    pm = anomaly.point_metrics(y, flags)
    assert pm["precision"] == pytest.approx(3 / 8) and pm["recall"] == pytest.approx(3 / 5)


def test_moving_average_and_threshold():
    s = np.array([np.nan, 1.0, 2.0, 3.0, 10.0])
    np.testing.assert_allclose(anomaly.moving_average(s, 3), [1.0, 1.5, 2.0, 5.0, 6.5])
    np.testing.assert_allclose(anomaly.moving_average(s, 4), [1.5, 2.0, 4.0, 5.0, 6.5])  # t-1 .. t+2
    assert anomaly.label_free_threshold(np.arange(101.0), 0.9, 2.0) == pytest.approx(180.0)
    with pytest.raises(ValueError, match="too few error vectors"):
        anomaly.fit_gaussian(np.ones((3, 4)))


# -- training, the run directory, evaluate/detect ---------------------------------------

def test_train_writes_a_complete_run(trained, data_dir, capsys):
    for name in ("config.json", "model.safetensors", "metrics.json", "log.csv", "steps.csv", "curves.png",
                 "detection.png", "checkpoint.pt"):
        assert (trained / name).is_file(), name
    assert not [p for p in trained.iterdir() if p.name.startswith(".")]
    assert (trained / "detection.png").read_bytes()[:4] == b"\x89PNG"
    m = json.loads((trained / "metrics.json").read_text())
    assert m["task"] == "ecg-anomaly" and m["record"] == RECORD and m["epochs"] == 3 and m["smooth"] == 25
    for part in ("test", "baseline"):
        t = m[part]
        for key in ("roc_auc", "pr_auc", "precision", "recall", "f1", "best_f1", "best_threshold_on_test",
                    "threshold", "hit", "false_alarms"):
            assert key in t, (part, key)
        assert all(isinstance(v, (int, float)) for k, v in t.items() if k != "name"), t  # numbers only
        assert 0 <= t["roc_auc"] <= 1
        assert set(m["per_lead"][part]) == {"both", "lead1", "lead2"}
        assert m["per_lead"][part]["both"]["roc_auc"] == pytest.approx(t["roc_auc"], abs=1e-6)
    assert m["baseline"]["name"] == "linear-ar"
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["bidirectional"] is False and cfg["task"] == "ecg-anomaly" and cfg["horizon"] == 3
    log = (trained / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,train_loss,val_loss,val_rmse,") and len(log) == 4

    assert main(["evaluate", str(trained), "--data-dir", str(data_dir)]) == 0
    ev = json.loads(capsys.readouterr().out)
    for key in ("roc_auc", "pr_auc", "f1", "best_f1", "false_alarms"):
        assert ev["test"][key] == pytest.approx(m["test"][key], abs=1e-5), key

    assert main(["predict", str(trained), "x"]) == 2
    _one_line_error(capsys, "detect")


def test_detect_file_and_stream_give_the_offline_scores(trained, data_dir, tmp_path, capsys, monkeypatch):
    signal = data_dir / "ecg" / "discords" / f"{RECORD}.txt"
    out = tmp_path / "scores.csv"
    assert main(["detect", str(trained), str(signal), "--out", str(out)]) == 0
    capsys.readouterr()
    rows = out.read_text().splitlines()
    assert rows[0] == "sample,score,flag" and len(rows) == 1401
    offline = np.array([float(r.split(",")[1]) for r in rows[1:]])
    flags = np.array([int(r.split(",")[2]) for r in rows[1:]])
    assert np.isfinite(offline).all()  # the first k raw scores are NaN; the centred average covers them

    # the same samples on standard input, two leads only (no time column)
    text = "".join(line.split(None, 1)[1] + "\n" for line in signal.read_text().splitlines())
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert main(["detect", str(trained), "--stream"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "sample,score,flag" and len(lines) == 1401
    streamed = np.array([float(r.split(",")[1]) for r in lines[1:]])
    assert [int(r.split(",")[0]) for r in lines[1:]] == list(range(1400))
    np.testing.assert_allclose(streamed, offline, rtol=1e-4, atol=1e-5, equal_nan=True)
    agree = np.array([int(r.split(",")[2]) for r in lines[1:]]) == flags
    assert agree.mean() > 0.995  # a flag may differ only where the score sits on the threshold


def test_stream_reads_what_the_file_reader_reads(trained, data_dir, tmp_path, capsys, monkeypatch):
    # a BOM and a header line: both readers take them (the stream refused them before session 7)
    signal = data_dir / "ecg" / "discords" / f"{RECORD}.txt"
    text = "\ufefftime,lead1,lead2\n" + "".join(signal.read_text().splitlines(keepends=True)[:200])
    f = tmp_path / "with-header.txt"
    f.write_text(text, encoding="utf-8")
    assert main(["detect", str(trained), str(f)]) == 0
    offline = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert main(["detect", str(trained), "--stream"]) == 0
    streamed = capsys.readouterr().out
    assert len(streamed.splitlines()) == len(offline.splitlines()) == 201
    a = np.array([float(r.split(",")[1]) for r in offline.splitlines()[1:]])
    b = np.array([float(r.split(",")[1]) for r in streamed.splitlines()[1:]])
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, equal_nan=True)
    # a line with another number of columns than the lines before: refused by both
    lines = signal.read_text().splitlines()[:40]
    mixed = "\n".join([*lines[:20], *(ln.split(None, 1)[1] for ln in lines[20:])]) + "\n"
    f.write_text(mixed)
    assert main(["detect", str(trained), str(f)]) == 2
    assert "line 21" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO(mixed))
    assert main(["detect", str(trained), "--stream"]) == 2
    assert "<stdin>: line 21: 2 columns, the lines before have 3" in capsys.readouterr().err


def test_streaming_detector_equals_offline_scores_without_rounding(trained):
    """The library objects directly: StreamingDetector vs the offline path, full precision."""
    from biornn.evaluate import load_run

    cfg, task, model, meta = load_run(trained)
    x = synthetic_ecg(700, seed=5, anomaly=(400, 460))
    offline, _ = task.detect(model, meta, x)
    det = anomaly.StreamingDetector(model, meta["scorer"], meta["norm_mean"], meta["norm_std"])
    rows = []
    for sample in x:
        rows += det.push(sample)
        # memory stays constant: at most k predictions and `smooth` raw scores are kept
        assert len(det.preds) <= cfg.horizon and len(det.raw) <= meta["scorer"]["smooth"]
    rows += det.finish()
    assert [r[0] for r in rows] == list(range(700))
    np.testing.assert_allclose([r[1] for r in rows], offline, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_resume_ends_with_the_same_weights(data_dir, tmp_path):
    cfg = resolve("ecg-anomaly", overrides=TINY + [f"record={RECORD}", "epochs=4"])
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg, full, data_dir=str(data_dir), progress=False, log=lambda s: None)
    assert train(cfg, part, data_dir=str(data_dir), progress=False, log=lambda s: None, stop_after_epochs=2) == {}
    assert not (part / "metrics.json").exists()
    assert main(["train", "--resume", str(part), "--data-dir", str(data_dir)]) == 0
    wa, wb = (load_file(str(r / "model.safetensors")) for r in (full, part))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (full, part))
    assert ma["test"] == mb["test"]


def test_truncated_bptt_windows_do_not_grow_with_the_record(tmp_path):
    """A long synthetic record trains window by window: every step sees at most (batch_size, truncate)
    samples whatever the record's length, and the state carried into a window holds no graph of the
    windows before it (the backward of each step reaches back at most ``truncate`` steps)."""
    from biornn.tasks import ecg_anomaly
    from biornn.train import loss_fn

    n = 60_000
    root = write_discords(tmp_path / "long", n=n, train=(0, 50_000), test=(50_000, n), window=(55_000, 55_100))
    cfg = resolve("ecg-anomaly", overrides=TINY + [f"record={RECORD}", "truncate=64", "batch_size=4"])
    data = ecg_anomaly.load(cfg, str(root))
    torch.manual_seed(0)
    model = ecg_anomaly.build(cfg, data)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    shapes, steps = set(), 0
    for batch in ecg_anomaly.train_batches(cfg, model, data, epoch=1):
        shapes.add(tuple(batch.outputs.shape))
        loss = loss_fn(cfg, batch.outputs, batch.target, None)
        opt.zero_grad()
        loss.backward()  # would fail ("backward through the graph a second time") if windows were chained
        opt.step()
        steps += 1
    assert all(s[0] == 4 and s[1] <= 64 and s[2:] == (3, 2) for s in shapes)
    assert steps == pytest.approx(37_500 / 4 / 64, abs=2)


def test_truncated_bptt_carries_the_state_from_window_to_window(tmp_path):
    """The windows of one epoch, read in eval mode and put back together, are one pass of the model over
    each stream: the state at the end of a window is where the next one starts (only its graph is cut)."""
    from biornn.tasks import ecg_anomaly

    root = write_discords(tmp_path / "carry", n=4000, train=(0, 3000), test=(3000, 4000), window=(3500, 3550))
    cfg = resolve("ecg-anomaly", overrides=TINY + [f"record={RECORD}", "truncate=16", "batch_size=3"])
    data = ecg_anomaly.load(cfg, str(root))
    torch.manual_seed(0)
    model = ecg_anomaly.build(cfg, data).eval()
    with torch.no_grad():
        windows = [b.outputs for b in ecg_anomaly.train_batches(cfg, model, data, epoch=2)]
        assert len(windows) > 3
        joined = torch.cat(windows, dim=1)  # (B, M, k, L)
        # the same streams, read whole: recover them from the targets' first lead step (target j=1 is x_{t+1})
        x, _ = ecg_anomaly._targets(data.z(data.fit), cfg.horizon)
        g = ecg_anomaly.epoch_generator(cfg.seed, 2)
        W0 = cfg.truncate
        offset = int(torch.randint(0, max(1, min(W0, len(x) - 3)), (1,), generator=g))
        M = (len(x) - offset) // 3
        whole, _ = model(x[offset: offset + 3 * M].view(3, M, -1), None)
    assert joined.shape == whole.shape
    assert torch.allclose(joined, whole, atol=1e-5)


def test_record_all_trains_every_record_and_writes_a_summary(tmp_path, capsys):
    root = write_discords(tmp_path / "two")
    d = root / "ecg" / "discords"
    labels = json.loads((d / "labels.json").read_text())
    (d / "other_ecg.txt").write_text((d / f"{RECORD}.txt").read_text())
    labels["files"]["other_ecg.txt"] = labels["files"][f"{RECORD}.txt"]
    (d / "labels.json").write_text(json.dumps(labels))
    out = tmp_path / "all"
    assert main(["train", "ecg-anomaly", "--record", "all", "--data-dir", str(root), "--out", str(out),
                 *TINY, "epochs=1"]) == 0
    capsys.readouterr()
    for name in ("other_ecg", RECORD):
        assert (out / name / "metrics.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert [r["record"] for r in summary["runs"]] == ["other_ecg", RECORD]
    assert "| record |" in (out / "summary.md").read_text()
    m = json.loads((out / "metrics.json").read_text())
    assert m["test"]["roc_auc"] == pytest.approx(np.mean([r["roc_auc"] for r in summary["runs"]]), abs=1e-6)
    assert main(["evaluate", str(out), "--data-dir", str(root)]) == 0
    assert set(json.loads(capsys.readouterr().out)["runs"]) == {"other_ecg", RECORD}

    # interrupted in its first record, then resumed: the same weights as the uninterrupted run
    cfg = resolve("ecg-anomaly", overrides=TINY + ["record=all", "epochs=2"])
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg, full, data_dir=str(root), progress=False, log=lambda s: None)
    assert train(cfg, part, data_dir=str(root), progress=False, log=lambda s: None, stop_after_epochs=1) == {}
    assert not (part / "summary.json").exists() and not (part / RECORD).exists()
    assert main(["train", "--resume", str(part), "--data-dir", str(root)]) == 0
    for name in ("other_ecg", RECORD):
        wa, wb = (load_file(str(r / name / "model.safetensors")) for r in (full, part))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert main(["train", "--resume", str(part), "--data-dir", str(root)]) == 2
    assert "finished" in capsys.readouterr().err


# -- bad input: one line, exit 2, nothing half-written ----------------------------------------

def _bad_data(tmp_path: Path, name: str, text: str | None = None, labels: str | None = None, **kw) -> Path:
    root = write_discords(tmp_path / name, **kw)
    d = root / "ecg" / "discords"
    if text is not None:
        (d / f"{RECORD}.txt").write_text(text)
    if labels is not None:
        (d / "labels.json").write_text(labels)
    return root


@pytest.mark.parametrize("case,needles", [
    ("unknown record", ["labels.json", "no record 'nope'", RECORD]),
    ("malformed labels", ["labels.json", "not valid JSON"]),
    ("labels without train", ["labels.json", "'train'"]),
    ("nan sample", [f"{RECORD}.txt", "line 5", "nan"]),
    ("wrong columns", [f"{RECORD}.txt", "line 3", "2 columns"]),
    ("non-numeric", [f"{RECORD}.txt", "line 2", "not a number"]),
    ("too few training rows", [f"{RECORD}.txt", "too few training rows"]),
])
def test_bad_training_input(case, needles, tmp_path, capsys):
    good = "\n".join(f"{i / FS:.3f}\t{a:.4f}\t{b:.4f}" for i, (a, b) in enumerate(synthetic_ecg(1400))) + "\n"
    lines = good.splitlines()
    record = RECORD
    kw: dict = {}
    if case == "unknown record":
        root, record = _bad_data(tmp_path, "a"), "nope"
    elif case == "malformed labels":
        root = _bad_data(tmp_path, "a", labels='{"files": {')
    elif case == "labels without train":
        entry = {"anomaly": [], "test": [0, 9]}
        root = _bad_data(tmp_path, "a", labels=json.dumps({"files": {f"{RECORD}.txt": entry}}))
    elif case == "nan sample":
        lines[4] = "0.016\tnan\t0.1"
        root = _bad_data(tmp_path, "a", text="\n".join(lines))
    elif case == "wrong columns":
        lines[2] = "0.008\t0.1"
        root = _bad_data(tmp_path, "a", text="\n".join(lines))
    elif case == "non-numeric":
        lines[1] = "0.004\tabc\t0.1"
        root = _bad_data(tmp_path, "a", text="\n".join(lines))
    else:
        root = _bad_data(tmp_path, "a", train=(0, 60), test=(900, 1400))
    out = tmp_path / "r"
    assert main(["train", "ecg-anomaly", "--record", record, "--data-dir", str(root), "--out", str(out), *TINY]) == 2
    _one_line_error(capsys, *needles)
    assert not out.exists()


def test_bad_configs_for_the_task(capsys, tmp_path):
    for item, needle in (("bidirectional=true", "bidirectional"), ("horizon=0", "horizon"),
                         ("holdout=1.5", "holdout"), ("monitor=accuracy", "monitor"), ("smooth=-1", "smooth")):
        assert main(["train", "ecg-anomaly", item, "--out", str(tmp_path / "r")]) == 2
        _one_line_error(capsys, needle)
        assert not (tmp_path / "r").exists()


def test_bad_detect_input(trained, tmp_path, capsys, monkeypatch):
    one_lead = tmp_path / "one.txt"
    one_lead.write_text("\n".join(f"{v:.3f}" for v in np.sin(np.arange(50) / 5)) + "\n")
    assert main(["detect", str(trained), str(one_lead)]) == 2
    _one_line_error(capsys, str(one_lead), "1 columns", "2 leads")
    short = tmp_path / "short.txt"
    short.write_text("0.1 0.2\n0.2 0.3\n")
    assert main(["detect", str(trained), str(short)]) == 2
    _one_line_error(capsys, str(short), "shorter than the prediction window")
    nan = tmp_path / "nan.csv"
    nan.write_text("lead1,lead2\n" + "0.1,0.2\n" * 10 + "nan,0.2\n")
    assert main(["detect", str(trained), str(nan)]) == 2
    _one_line_error(capsys, str(nan), "line 12", "nan")
    out = tmp_path / "never.csv"
    assert main(["detect", str(trained), str(nan), "--out", str(out)]) == 2
    capsys.readouterr()
    assert not out.exists()
    # a semicolon-separated export: its first line is not taken for a header, and the message says what to change
    semi = tmp_path / "semi.csv"
    semi.write_text("0.1;0.2\n" * 20)
    assert main(["detect", str(trained), str(semi)]) == 2
    _one_line_error(capsys, str(semi), "line 1", "separated by ';'", "commas or white space")
    semi.write_text("lead1;lead2\n" + "0,1;0,2\n" * 20)  # a spreadsheet's export with decimal commas
    assert main(["detect", str(trained), str(semi)]) == 2
    _one_line_error(capsys, str(semi), "line 1", "separated by ';'")

    # a non-numeric line on the stream: stop (exit 2, naming the line) or skip it
    monkeypatch.setattr(sys, "stdin", io.StringIO("0.1 0.2\n0.2 0.1\nhello 1\n0.3 0.3\n"))
    assert main(["detect", str(trained), "--stream"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 3" in err[0] and "'hello' is not a number" in err[0]
    monkeypatch.setattr(sys, "stdin", io.StringIO("0.1 0.2\n0.2 0.1\nhello 1\n0.3 0.3\n0.1 0.1 0.1 0.1\n"))
    assert main(["detect", str(trained), "--stream", "--on-bad-line", "skip"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1 + 3
    assert "line 3 skipped" in captured.err and "line 5 skipped" in captured.err
    # skipping is for the stream: a file is refused whole (its samples would shift), not silently read
    assert main(["detect", str(trained), str(semi), "--on-bad-line", "skip"]) == 2
    _one_line_error(capsys, "--on-bad-line skip", "--stream")

    # a run trained on two leads refuses a three-lead (+ time) file
    wide = tmp_path / "wide.txt"
    wide.write_text("0 1 2 3 4\n" * 20)
    assert main(["detect", str(trained), str(wide)]) == 2
    _one_line_error(capsys, "5 columns", "2 leads")


def test_sampling_rate_from_a_rounded_time_column(tmp_path):
    """Times given to 3 decimals at 360 Hz (steps of 0.002 and 0.003 s, as in the MIT-BIH excerpts)
    are 360 Hz, not 1 / median step = 333 Hz; a series with a gap keeps the median step."""
    from biornn.data.ecg import read_discord

    t = np.round(180 + np.arange(2000) / 360, 3)
    p = tmp_path / "x.txt"
    p.write_text("".join(f"{v:.3f}\t0.1\t-0.2\n" for v in t))
    assert read_discord(p)[1] == 360.0
    gap = np.concatenate([np.arange(100), np.arange(150, 300)]) / 250
    p.write_text("".join(f"{v:.3f}\t0.1\t-0.2\n" for v in gap))
    assert read_discord(p)[1] == pytest.approx(250.0)


def test_read_labels_checks_ranges(tmp_path):
    p = tmp_path / "labels.json"
    p.write_text(json.dumps({"files": {"a.txt": {"anomaly": [[5, 9]], "train": [0, 10], "test": [5, 20]}}}))
    with pytest.raises(ValueError, match="overlap"):
        read_labels(p)
    p.write_text(json.dumps({"files": {"a.txt": {"anomaly": [[5, 9]], "train": [10, 0], "test": [20, 30]}}}))
    with pytest.raises(ValueError, match="empty or reversed"):
        read_labels(p)


def _write_wfdb(root: Path, name: str, digital: np.ndarray, fmt: str, gain: float = 200.0, zero: int = 1024,
                fs: float = 360) -> Path:
    """A WFDB record of (T, 2) stored values in format 212 or 16 sampled at ``fs`` Hz, written here."""
    T, L = digital.shape
    if fmt == "16":
        data = digital.astype("<i2").tobytes()
    else:
        d = (digital.reshape(-1) & 0xFFF).astype(np.int64)
        d0, d1 = d[0::2], d[1::2]
        data = np.stack([d0 & 0xFF, ((d0 >> 8) & 0x0F) | ((d1 >> 4) & 0xF0), d1 & 0xFF], 1).astype(np.uint8).tobytes()
    (root / f"{name}.dat").write_bytes(data)
    lines = [f"{name} {L} {fs:g} {T}"] + [f"{name}.dat {fmt} {gain:g} 11 {zero} 0 0 0 lead{i + 1}" for i in range(L)]
    (root / f"{name}.hea").write_text("# written by a test\r\n" + "\r\n".join(lines) + "\r\n")
    return root / f"{name}.hea"


@pytest.mark.parametrize("fmt", ["212", "16"])
def test_wfdb_records_read_in_physical_units(fmt, tmp_path, trained, capsys):
    from biornn.data.ecg import read_wfdb

    rng = np.random.default_rng(0)
    digital = rng.integers(-2048, 2048, size=(400, 2))
    digital[0] = [995, 1011]  # MIT-BIH record 100's first samples: -0.145 and -0.065 mV
    hea = _write_wfdb(tmp_path, "rec", digital, fmt)
    x = read_wfdb(hea)
    np.testing.assert_allclose(x, (digital - 1024) / 200.0)
    np.testing.assert_allclose(x[0], [-0.145, -0.065])
    # MIT-BIH's 360 Hz is not the rate the run learnt (the excerpt's, about 250 Hz): refused
    fs = json.loads((trained / "metrics.json").read_text())["fs"]
    assert main(["detect", str(trained), str(hea)]) == 2
    assert f"sampled at 360 Hz, the run was trained at {fs:g} Hz" in capsys.readouterr().err
    hea = _write_wfdb(tmp_path, "rec", digital, fmt, fs=fs)
    assert main(["detect", str(trained), str(hea)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 401
    (tmp_path / "rec.dat").write_bytes((tmp_path / "rec.dat").read_bytes()[:30])
    with pytest.raises(ValueError, match="rec.dat: holds"):
        read_wfdb(hea)


def test_detect_review_cases(trained, data_dir, tmp_path, capsys, monkeypatch):
    """From a review of detect: the outputs never replace a record's files or the run's plots; a first
    line is a header only when no field is a number (both readers); a column that does not increase is
    no time column; a time column at another rate is refused; the stream splits lone CRs and keeps no
    line longer than the offline reader's limit."""
    from biornn.data.ecg import MAX_LINE_CHARS

    signal = data_dir / "ecg" / "discords" / f"{RECORD}.txt"
    lines = signal.read_text().splitlines()[:300]
    leads = [ln.split(None, 1)[1] for ln in lines]
    fs = json.loads((trained / "metrics.json").read_text())["fs"]
    # --out: the record's own files (the header's data file, the header), the run's plots
    digital = np.random.default_rng(0).integers(-1000, 1000, size=(300, 2))
    hea = _write_wfdb(tmp_path, "rec", digital, "16", fs=fs)
    for src, out in ((hea, tmp_path / "rec.dat"), (tmp_path / "rec.dat", hea), (hea, trained / "detection.png")):
        before = out.read_bytes()
        assert main(["detect", str(trained), str(src), "--out", str(out)]) == 2
        _one_line_error(capsys, str(out))
        assert out.read_bytes() == before
    # a bad first sample is named, not skipped as a header; column names with digits are a header
    cases = {"nan 0.1\n": 2, "1.0 2.o\n": 2, "lead 1,lead 2\n": 0, "time mlii v5\n": 0}
    for head, rc in cases.items():
        body = leads if "time" not in head else lines
        text = head + "\n".join(body) + "\n"
        f = tmp_path / "h.txt"
        f.write_text(text)
        assert main(["detect", str(trained), str(f)]) == rc, head
        off = capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        assert main(["detect", str(trained), "--stream"]) == rc, head
        on = capsys.readouterr()
        if rc == 2:
            assert "line 1" in off.err and "line 1" in on.err, head
        else:
            assert len(off.out.splitlines()) == len(on.out.splitlines()) == 301, head
    # three leads where the run has two: the first column is not a time column
    three = "\n".join(f"{ln.split()[1]} {ln.split(None, 1)[1]}" for ln in lines) + "\n"
    (tmp_path / "three.txt").write_text(three)
    assert main(["detect", str(trained), str(tmp_path / "three.txt")]) == 2
    _one_line_error(capsys, "no time column")
    monkeypatch.setattr(sys, "stdin", io.StringIO(three))
    assert main(["detect", str(trained), "--stream"]) == 2
    _one_line_error(capsys, "does not increase")
    # a time column at another rate
    fast = "\n".join(f"{i / (2 * fs):.5f} {ln}" for i, ln in enumerate(leads)) + "\n"
    (tmp_path / "fast.txt").write_text(fast)
    assert main(["detect", str(trained), str(tmp_path / "fast.txt")]) == 2
    _one_line_error(capsys, f"the run was trained at {fs:g} Hz")
    # lone CRs end lines on the stream as in the file reader; an overlong line is skipped, not kept
    monkeypatch.setattr(sys, "stdin", io.StringIO("\r".join(leads) + "\r"))
    assert main(["detect", str(trained), "--stream"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 301
    long = "\n".join(leads[:50]) + "\n" + "1 " * (MAX_LINE_CHARS // 2 + 10) + "\n" + "\n".join(leads[50:]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(long))
    assert main(["detect", str(trained), "--stream", "--on-bad-line", "skip"]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 301 and "line 51 skipped: more than" in out.err


def test_stream_reads_the_real_standard_input(trained, data_dir):
    """The stream reads the file descriptor as data arrives (not io.StringIO): CRLF, lone CR and LF
    endings all give one score line per sample."""
    import subprocess

    signal = data_dir / "ecg" / "discords" / f"{RECORD}.txt"
    leads = [ln.split(None, 1)[1] for ln in signal.read_text().splitlines()[:120]]
    ends = ["\r\n", "\r", "\n"]
    text = "".join(ln + ends[i % 3] for i, ln in enumerate(leads))
    r = subprocess.run([sys.executable, "-m", "biornn", "detect", str(trained), "--stream"], input=text.encode(),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert len(r.stdout.decode().splitlines()) == 121 and "120 samples" in r.stderr.decode()


def test_a_stream_stopped_by_a_bad_line_scores_the_samples_before_it(trained, data_dir, capsys, monkeypatch):
    """--on-bad-line stop wrote no score for the last half window of good samples before the bad line."""
    signal = data_dir / "ecg" / "discords" / f"{RECORD}.txt"
    leads = [ln.split(None, 1)[1] for ln in signal.read_text().splitlines()[:300]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(leads) + "\nhello 1\n0.1 0.2\n"))
    assert main(["detect", str(trained), "--stream"]) == 2
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 301 and "line 301" in out.err


@pytest.mark.parametrize("times", [("-1.7e308", "1.7e308"), ("0", "5e-324")])
def test_extreme_times_are_one_error_and_no_numpy_warning(times, tmp_path):
    """Times at the float limits printed numpy's overflow warnings (two more lines on stderr) before the
    one-line error."""
    import warnings

    from biornn.data.ecg import read_discord

    p = tmp_path / "x.txt"
    p.write_text(f"{times[0]} 1 2\n{times[1]} 1 2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="no usable sampling rate"):
            read_discord(p)
