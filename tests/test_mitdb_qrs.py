"""The ``mitdb-qrs`` task: its data preparation and baseline on the real record 100, and a tiny end-to-end
run on a synthetic ECG-like record the test writes (train, run directory, evaluate, predict, resume, bad
input)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("wfdb")
import wfdb  # noqa: E402

from biornn.cli.main import main  # noqa: E402
from biornn.config import resolve  # noqa: E402
from biornn.tasks import mitdb_qrs  # noqa: E402
from biornn.train import train  # noqa: E402

REAL = Path(os.environ.get("BIORNN_DATA", "/work/shared/data"))
FS = 50
MINUTES = 21  # 20 to train (and validate), 1 to test
TINY = ["hidden_size=8", "num_layers=1", "batch_size=32", "epochs=3", "threads=1", "lr=0.02", "ensemble=1"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _ecg(rng: np.random.Generator, n: int, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """A two-lead ECG-like signal (n, 2): a narrow spike (the QRS) at each beat, a broad T wave after it,
    baseline wander and noise; and the beats' samples."""
    beats = []
    t = int(0.5 * fs)
    while t < n - fs:
        beats.append(t)
        t += int(rng.uniform(0.6, 1.0) * fs)
    beats = np.array(beats)
    s = np.arange(n)
    x = np.zeros((n, 2))
    for b in beats:
        lo, hi = max(b - int(fs), 0), min(b + int(fs), n)
        u = (s[lo:hi] - b) / fs
        qrs = np.exp(-0.5 * (u / 0.02) ** 2)
        twave = 0.3 * np.exp(-0.5 * ((u - 0.25) / 0.05) ** 2)
        x[lo:hi, 0] += qrs + twave
        x[lo:hi, 1] += -0.6 * qrs + 0.2 * twave
    x += 0.1 * np.sin(2 * np.pi * 0.2 * s / fs)[:, None] + rng.normal(0, 0.02, (n, 2))
    return x, beats


def _write_record(directory: Path, name: str = "100", fs: float = FS, minutes: float = MINUTES, seed: int = 0,
                  leads: tuple[str, ...] = ("MLII", "V5")) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, beats = _ecg(rng, int(minutes * 60 * fs), fs)
    x = x[:, : len(leads)]
    directory.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(leads), sig_name=list(leads), p_signal=x, fmt=["16"] * len(leads),
                write_dir=str(directory))
    # a rhythm annotation at the start, as the MIT-BIH files have: not a beat
    wfdb.wrann(name, "atr", np.concatenate([[0], beats]), symbol=["+"] + ["N"] * len(beats),
               aux_note=["(N"] + [""] * len(beats), write_dir=str(directory))
    return beats


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _write_record(root / "ecg" / "mitdb")
    return root


# -- the real record --------------------------------------------------------------------


@pytest.mark.skipif(not (REAL / "ecg" / "mitdb" / "100.hea").is_file(), reason="no data directory with record 100")
def test_preparation_and_baseline_on_the_real_record():
    data = mitdb_qrs.load(resolve("mitdb-qrs"), str(REAL))
    assert data.fs == 360.0 and data.leads == ["MLII", "V5"] and data.x.shape == (650000, 2)
    assert data.bounds == {"train": (0, 345600), "val": (345600, 432000), "test": (432000, 650000)}
    n = {part: len(data.part_beats(part)) for part in data.bounds}
    assert n["test"] == 759 and n["train"] + n["val"] == 1514 and sum(n.values()) == 2273
    # standardised on the training minutes alone
    np.testing.assert_allclose(data.x[:345600].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(data.x[:345600].std(axis=0), 1.0, atol=1e-3)
    # 37 beat samples (50 ms each side at 360 Hz) per beat; the last beat, at sample 649991, has 10 cut off
    assert data.y.sum() == 37 * 2273 - 10 and data.y[649991 - 18 :].all() and not data.y[649991 - 19]
    # the baseline: xqrs finds every beat of the test minutes and nothing else
    base, found = mitdb_qrs.xqrs(data)
    assert (base["tp"], base["fn"], base["fp"]) == (759, 0, 0)
    assert found.min() >= 432000


# -- the parts ----------------------------------------------------------------------------


class _PerSample(torch.nn.Module):
    """A model with no memory: logits (x, -x) of the first lead, so its output reveals the input's alignment."""

    def forward(self, x, lengths=None):
        return torch.stack([x[..., 0], -x[..., 0]], dim=-1)


def test_windowed_inference_tiles_the_signal_exactly():
    x = np.arange(1234, dtype=np.float32)[:, None] * np.ones((1, 2), dtype=np.float32)
    for crop_s, context_s in ((1.0, 0.2), (0.5, 0.0), (20.0, 1.0)):
        logits = mitdb_qrs.sample_logits(_PerSample(), x, fs=100, crop_s=crop_s, context_s=context_s, batch_size=3)
        assert logits.shape == (1234, 2)
        np.testing.assert_array_equal(logits[:, 0].numpy(), x[:, 0])


def test_synthetic_preparation(data_dir, monkeypatch):
    data = mitdb_qrs.load(resolve("mitdb-qrs"), str(data_dir))
    assert data.bounds == {"train": (0, 48000), "val": (48000, 60000), "test": (60000, 63000)}
    assert mitdb_qrs.steps_per_epoch(resolve("mitdb-qrs", overrides=["batch_size=32"]), data) == 8  # 240 crops
    assert mitdb_qrs.load(resolve("mitdb-qrs"), str(data_dir)).fingerprint == data.fingerprint
    cfg = resolve("mitdb-qrs", overrides=TINY)
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, lengths=None):
            seen.append(x.clone())
            return torch.zeros(*x.shape[:2], 2, requires_grad=True)

    def crops(epoch: int) -> tuple[np.ndarray, list]:
        seen.clear()
        batches = list(mitdb_qrs.train_batches(cfg, Spy(), data, epoch))
        return torch.cat(seen).numpy(), batches

    augmented, batches = crops(1)
    assert len(batches) == 8 and batches[0].outputs.shape == (32 * 200, 2) and batches[0].target.shape == (32 * 200,)
    # the same seed and epoch draw the same crops; another epoch draws others
    assert np.array_equal(augmented, crops(1)[0]) and not np.array_equal(augmented, crops(2)[0])
    # without augmentation each crop is 200 consecutive training samples, with their targets
    monkeypatch.setattr(mitdb_qrs, "FLIP_P", 0.0)
    monkeypatch.setattr(mitdb_qrs, "SCALE", (1.0, 1.0))
    plain, batches = crops(1)
    for k in (0, 100, 239):
        starts = np.flatnonzero((data.x[: 48000 - 199] == plain[k, 0]).all(axis=1))
        found = [s for s in starts if np.array_equal(data.x[s : s + 200], plain[k])]
        assert len(found) == 1
        target = batches[k // 32].target.reshape(-1, 200)[k % 32].numpy()
        np.testing.assert_array_equal(target, data.y[found[0] : found[0] + 200])
    # with it, each lead of each crop is the same samples times a gain of either sign, |gain| in [0.7, 1.4]
    gain = (augmented * plain).sum(axis=1) / (plain * plain).sum(axis=1)  # (240, 2), least squares
    np.testing.assert_allclose(augmented, plain * gain[:, None, :], rtol=1e-5, atol=1e-5)
    assert np.all((np.abs(gain) >= 0.7 - 1e-6) & (np.abs(gain) <= 1.4 + 1e-6))
    assert 0.3 < (gain < 0).mean() < 0.7


# -- end to end ----------------------------------------------------------------------------


def test_end_to_end(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mitdb-qrs", "--data-dir", str(data_dir), "--out", str(out), *TINY, "epochs=6"]) == 0
    for name in ("config.json", "model.safetensors", "metrics.json", "log.csv", "curves.png", "detections.png",
                 "checkpoint.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "mitdb-qrs" and metrics["epochs"] == 6
    assert set(metrics["test"]) == set(mitdb_qrs.SCORE_KEYS)
    t = metrics["test"]
    assert t["tp"] + t["fn"] == t["n_reference"] == metrics["parts"]["test"]["beats"] > 50
    assert t["tp"] + t["fp"] == t["n_detected"]
    assert metrics["baseline"]["name"] == "wfdb-xqrs" and metrics["baseline"]["n_reference"] == t["n_reference"]
    # spikes this clean are found by six epochs of a tiny model
    assert t["sensitivity"] > 0.9 and t["positive_predictivity"] > 0.9
    header = (out / "log.csv").read_text().splitlines()[0]
    assert "val_f1" in header and "val_sensitivity" in header
    capsys.readouterr()

    assert main(["evaluate", str(out), "--data-dir", str(data_dir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"] == metrics["test"]
    assert evaluated["baseline"]["tp"] == metrics["baseline"]["tp"]

    # predict on another record the model has never seen; it has annotations, so the row is scored
    other = tmp_path / "other"
    beats = _write_record(other, "rec7", minutes=1.0, seed=7)
    assert main(["predict", str(out), str(other / "rec7"), str(other / "rec7.hea")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and rows[0]["beats"] == rows[1]["beats"]
    row = rows[0]
    assert row["fs"] == FS and row["leads"] == ["MLII", "V5"] and row["n_samples"] == 3000
    assert row["n_beats"] == len(row["beats"]) == len(row["times_s"]) == len(row["probability"])
    assert abs(row["n_beats"] - len(beats)) <= 0.1 * len(beats)
    assert row["score"]["n_reference"] == len(beats) and row["score"]["sensitivity"] > 0.9

    # a record at another sampling rate, or with one lead, is refused with one line
    _write_record(other, "fast", fs=250, minutes=0.1)
    assert main(["predict", str(out), str(other / "fast")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fast: sampled at 250 Hz; the model was trained at 50 Hz" in err
    _write_record(other, "one", minutes=0.2, leads=("MLII",))
    assert main(["predict", str(out), str(other / "one")]) == 2
    assert "one: 1 signal(s) (MLII); the model reads 2 (MLII, V5)" in capsys.readouterr().err
    assert main(["predict", str(out), str(other / "missing")]) == 2
    assert "missing.hea: no such WFDB header" in capsys.readouterr().err


def test_an_ensemble_trains_evaluates_and_predicts(data_dir, tmp_path, capsys):
    """Members trained side by side on the same crops, each from its own loss; the run directory
    holds all of them, and evaluate and predict read the ensemble back (mean probabilities)."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    assert main(["train", "mitdb-qrs", "--data-dir", str(data_dir), "--out", str(out), *TINY, "ensemble=2"]) == 0
    weights = load_file(out / "model.safetensors")
    assert any(k.startswith("members.1.") for k in weights) and not any(k.startswith("members.2.") for k in weights)
    # the members differ (their own initialisations), so the ensemble is not one model twice
    one = {k[len("members.0."):]: v for k, v in weights.items() if k.startswith("members.0.")}
    two = {k[len("members.1."):]: v for k, v in weights.items() if k.startswith("members.1.")}
    assert one.keys() == two.keys() and any(not torch.equal(one[k], two[k]) for k in one)
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data-dir", str(data_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["test"] == metrics["test"]
    other = tmp_path / "other"
    beats = _write_record(other, "rec7", minutes=1.0, seed=7)
    assert main(["predict", str(out), str(other / "rec7")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["score"]["n_reference"] == len(beats)


def test_resume_gives_the_same_weights(data_dir, tmp_path):
    from safetensors.torch import load_file

    cfg = resolve("mitdb-qrs", overrides=[*TINY, "hidden_size=4"])
    train(cfg, tmp_path / "whole", str(data_dir), log=lambda line: None)
    assert train(cfg, tmp_path / "cut", str(data_dir), log=lambda line: None, stop_after_epochs=1) == {}
    assert main(["train", "--resume", str(tmp_path / "cut"), "--data-dir", str(data_dir)]) == 0
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_a_record_path_instead_of_the_data_directory(tmp_path, capsys):
    _write_record(tmp_path / "mine", "rec1", minutes=20.2, seed=3)
    out = tmp_path / "run"
    assert main(["train", "mitdb-qrs", "--out", str(out), *TINY, "epochs=1",
                 f"record={tmp_path / 'mine' / 'rec1'}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["record"] == str(tmp_path / "mine" / "rec1")
    assert metrics["parts"]["test"]["end_s"] == pytest.approx(20.2 * 60)


def test_a_relative_record_path_is_kept_absolute(tmp_path, monkeypatch, capsys):
    """record=recs/rec1 was kept as typed, so evaluate from another directory said the record had moved."""
    _write_record(tmp_path / "work" / "recs", "rec1", minutes=20.2, seed=3)
    monkeypatch.chdir(tmp_path / "work")
    out = tmp_path / "run"
    assert main(["train", "mitdb-qrs", "--out", str(out), *TINY, "epochs=1", "record=recs/rec1"]) == 0
    assert json.loads((out / "config.json").read_text())["record"] == str(tmp_path / "work" / "recs" / "rec1")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0, capsys.readouterr().err


# -- bad input: exit 2, one line, nothing written ---------------------------------------


def _bad(tmp_path: Path, data_dir: Path, spoil) -> Path:
    root = tmp_path / "bad"
    shutil.copytree(data_dir, root)
    spoil(root / "ecg" / "mitdb")
    return root


def _truncate(d: Path) -> None:
    dat = d / "100.dat"
    dat.write_bytes(dat.read_bytes()[:100_000])


def _short(d: Path) -> None:
    for f in d.iterdir():
        f.unlink()
    _write_record(d, minutes=10)


def _no_beats_in_test(d: Path) -> None:
    a = wfdb.rdann(str(d / "100"), "atr")
    keep = a.sample < 20 * 60 * FS
    wfdb.wrann("100", "atr", a.sample[keep], symbol=list(np.array(a.symbol)[keep]), write_dir=str(d))


def _nan(d: Path) -> None:
    rec = wfdb.rdrecord(str(d / "100"), physical=False)
    sig = rec.d_signal.copy()
    sig[5000, 1] = -32768  # WFDB's "no sample" value for format 16
    wfdb.wrsamp("100", fs=FS, units=rec.units, sig_name=rec.sig_name, d_signal=sig, fmt=rec.fmt,
                adc_gain=rec.adc_gain, baseline=rec.baseline, write_dir=str(d))


@pytest.mark.parametrize("spoil, match", [
    (_truncate, "100.dat: 100000 bytes, but 100.hea says 2 signal(s) of format 16 x 63000 samples"),
    (_short, "10.0 minutes of signal; the task trains on the first 20 minutes"),
    (_no_beats_in_test, "100.atr: no beat annotation in the test part"),
    (_nan, "signal 'V5' has 1 missing (NaN) or infinite sample(s), the first at sample 5000"),
    (lambda d: (d / "100.dat").unlink(), "not found"),
])
def test_bad_records_exit_2_and_write_nothing(data_dir, tmp_path, capsys, spoil, match):
    root = _bad(tmp_path, data_dir, spoil)
    out = tmp_path / "run"
    assert main(["train", "mitdb-qrs", "--data-dir", str(root), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_without_the_wfdb_package_one_line_names_the_extra(data_dir, tmp_path, capsys, monkeypatch):
    """The wfdb extra not installed: one line with the install command, exit 2 (it was a traceback)."""
    import sys

    from biornn.data import physionet

    for name in ("wfdb", "wfdb.processing"):
        monkeypatch.setitem(sys.modules, name, None)  # import wfdb raises ImportError
    out = tmp_path / "run"
    assert main(["train", "mitdb-qrs", "--data-dir", str(data_dir), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "biornn: error: reading WFDB records needs the wfdb package; install it with: " \
                  "pip install 'biornn[wfdb]'", err
    assert not out.exists()
    with pytest.raises(ValueError, match=r"pip install 'biornn\[wfdb\]'"):
        physionet.wfdb_module("wfdb.processing")


def test_config_checks(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    for item, match in (("embedding_dim=4", "embedding_dim must be 0"), ("truncate=100", "truncate must be 0"), ("record=nope", "record 'nope': no nope.hea")):
        assert main(["train", "mitdb-qrs", "--data-dir", str(data_dir), "--out", str(out), *TINY, item]) == 2
        assert match in capsys.readouterr().err
    assert not out.exists()


def test_a_moved_record_path_is_found_in_data_dir(tmp_path):
    """record=PATH is kept in the run's config.json: a record that has moved is looked for in --data-dir,
    and without it the error says so."""
    from biornn.data.registry import DataError
    from biornn.tasks.mitdb_qrs import find_record

    gone = tmp_path / "old" / "rec7"
    with pytest.raises(DataError, match=r"rec7\.hea: no such WFDB header .*give --data-dir DIR holding rec7\.hea"):
        find_record(str(gone), None)
    new = tmp_path / "new"
    new.mkdir()
    (new / "rec7.hea").write_text("rec7 1 360 10\n")
    assert find_record(str(gone), str(new)) == new / "rec7"
    assert find_record(str(new / "rec7.hea"), None) == new / "rec7"


def test_errors_list_the_first_missed_beats_and_false_detections_and_say_how_many_at_most():
    from biornn.tasks.mitdb_qrs import ERRORS_LISTED, _errors

    fs = 360.0
    ref = np.arange(1, 61) * 360  # a beat a second, 60 of them
    found = np.sort(np.concatenate([ref[:5] + 3, [200, 1900]]))  # five found, two false, 55 missed
    e = _errors(ref, found, fs)
    assert e["listed_at_most"] == ERRORS_LISTED == 50
    assert e["missed_s"] == [float(k) for k in range(6, 56)]  # the first 50 of the 55, in seconds
    assert e["false_s"] == [round(200 / fs, 3), round(1900 / fs, 3)]
