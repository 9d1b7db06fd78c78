"""biornn export: ONNX run by onnxruntime and TorchScript reloaded, each at two batch sizes and two
lengths against the PyTorch model (1e-4); a fixed-length graph is refused; bad input exits 2."""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from biornn import checkpoint
from biornn.cli.main import main
from biornn.config import apply, read_config
from biornn.data.registry import DATASETS
from biornn.evaluate import load_run, predict
from biornn.export import (build_export_model, encode_for_export, encode_vectors_for_export, example_inputs,
                           export_run, read_onnx_metadata)
from biornn.tasks import names as names_task

LANGS = [Path(f.path).stem for f in DATASETS["names"].files if f.path.endswith(".txt")]
TINY = ["hidden_size=8", "embedding_dim=4", "batch_size=32", "epochs=1", "ensemble=1"]
SHAPES = [(2, 5), (2, 13), (6, 5), (6, 13)]  # (B, T): two batch sizes x two lengths


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained names run (the default model: a bidirectional LSTM blended with an n-gram part, with
    logit adjustment); ``variant(..., ngram_blend=0.0)`` gives the recurrent model alone."""
    root = tmp_path_factory.mktemp("export")
    names = root / "data" / "names"
    names.mkdir(parents=True)
    rng = random.Random(1)
    letters = "abcdefghijklmnoprstuvyz"
    for k, lang in enumerate(LANGS):
        end = letters[k % len(letters)] + letters[(5 * k + 2) % len(letters)]
        rows = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 6))).title() + end for _ in range(8)}
        (names / f"{lang}.txt").write_text("\n".join(sorted(rows)) + "\n", encoding="utf-8")
    (names / "LICENSE").write_text("made up for tests\n")
    out = root / "run"
    assert main(["train", "names", "--data-dir", str(root / "data"), "--out", str(out), *TINY]) == 0
    return out


def variant(base: Path, out: Path, **changes) -> Path:
    """A run directory like ``base`` with another model (fresh weights): other cells in no training time."""
    out.mkdir(parents=True)
    cfg = apply(read_config(base / "config.json"), changes).validate()
    _, meta = checkpoint.load_weights(base / "model.safetensors")
    torch.manual_seed(len(out.name))
    ngram = load_run(base)[2].ngram if cfg.ngram_blend else None  # the base run's fitted n-gram part
    model = names_task.build_model(cfg, len(meta["vocab"]["symbols"]) + 2, len(meta["labels"]), ngram)
    checkpoint.write_text(out / "config.json", cfg.to_json())
    checkpoint.save_weights(out / "model.safetensors", model, {**meta, "config": cfg.to_dict()})
    shutil.copy(base / "metrics.json", out / "metrics.json")
    return out


def reference(run: Path, x: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """biornn's own (adjusted) logits, as biornn predict ranks by."""
    cfg, _, model, meta = load_run(run)
    with torch.no_grad():
        logits = model(x, lengths)
    if cfg.logit_adjustment:
        logits = logits - cfg.logit_adjustment * torch.tensor(meta["log_prior"])
    return logits.numpy()


def check_onnx(path: Path, run: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert set(inputs) == {"symbols", "lengths"}
    assert all(isinstance(d, str) for d in inputs["symbols"])  # batch and time both symbolic
    V = len(read_onnx_metadata(path)["vocab"]["symbols"]) + 2
    for k, (B, T) in enumerate(SHAPES):
        x, lengths = example_inputs(V, B, T, seed=100 + k)
        logits, probs = session.run(["logits", "probabilities"], {"symbols": x.numpy(), "lengths": lengths.numpy()})
        assert logits.shape == (B, len(LANGS))
        np.testing.assert_allclose(logits, reference(run, x, lengths), atol=1e-4, rtol=0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_onnx_export_matches_pytorch_at_two_lengths_and_batches(run_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "names.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(out) and report["routes"] == ["native", "native"]  # bidirectional LSTM
    assert report["max_abs_diff"] <= 1e-4
    check_onnx(out, run_dir)
    # the file carries what a caller needs: encode names with its vocabulary, read its labels
    import onnxruntime as ort

    meta = read_onnx_metadata(out)
    assert meta["task"] == "names" and sorted(meta["labels"]) == sorted(LANGS)
    texts = ["Nguyen", "Abcdefghij", "Li"]
    x, lengths = encode_for_export(texts, meta["vocab"])
    probs = ort.InferenceSession(str(out)).run(["probabilities"], {"symbols": x, "lengths": lengths})[0]
    for row, want in zip(probs, predict(run_dir, texts, top=1)):
        assert meta["labels"][int(row.argmax())] == want["top"][0]["label"]
        assert abs(float(row.max()) - want["top"][0]["probability"]) <= 1e-4


@pytest.mark.parametrize("name", ["names.json", "names.prototxt", "names.pt"])
def test_onnx_export_refuses_a_name_of_another_encoding(run_dir, tmp_path, capsys, name):
    # the onnx package picks the encoding by the name's ending: x.json was written as JSON, then the
    # check could not load it (a traceback)
    out = tmp_path / name
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the onnx file would carry a {out.suffix} name" in err[0]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["model.safetensors", "checkpoint.pt", "config.json"])
def test_export_never_replaces_another_runs_files(run_dir, tmp_path, capsys, name):
    """--out into another run directory's own file would break that run: refused, the file untouched."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    (other / "checkpoint.pt").write_bytes(b"x")
    before = (other / name).read_bytes()
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(other / name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"would replace the {name} of the run" in err[0], err
    assert (other / name).read_bytes() == before


@pytest.mark.parametrize(
    "changes,routes",
    [
        ({"cell": "gru", "ensemble": 2, "ngram_blend": 0.0}, ["native", "native"]),  # the members alone
        # stacked one-direction nn.LSTMs hit an exporter bug (a reshape to the example's T):
        # export_model falls back to the cell's own step
        ({"cell": "lstm1997", "bidirectional": False, "num_layers": 2}, ["scan", "scan"]),
        # no torch twin (or, for Elman, torch.export would unroll nn.RNN): the cell's step in an ONNX Scan
        ({"cell": "fully-recurrent", "embedding_dim": 0}, ["scan", "scan"]),
        ({"cell": "irnn", "bidirectional": False, "num_layers": 2, "ngram_blend": 0.0}, ["scan", "scan"]),  # one model
        ({"pool": "max"}, ["native", "native"]),  # max over the real steps: padding masked in the graph
    ],
    ids=["gru-ensemble", "lstm1997-2-layers", "fully-recurrent-onehot", "irnn-2-layers", "max-pool"],
)
def test_onnx_export_other_cells(run_dir, tmp_path, changes, routes):
    pytest.importorskip("onnxruntime")
    run = variant(run_dir, tmp_path / "v", **changes)
    out = tmp_path / "m.onnx"
    report = export_run(run, "onnx", out)
    assert report["routes"] == routes
    check_onnx(out, run)


def test_onnx_export_with_a_window_layer(run_dir, tmp_path):
    """A names model with the window layer over its characters (conv_channels): the exported file equals the
    model at every check shape.  In a fresh process, as `biornn export` runs: after other models' exports
    in one process torch.export fixed T for this graph and the export fell back to the scan route."""
    pytest.importorskip("onnxruntime")
    import subprocess
    import sys

    run = variant(run_dir, tmp_path / "v", conv_channels=3, conv_kernel=3, ensemble=2)
    out = tmp_path / "m.onnx"
    res = subprocess.run([sys.executable, "-m", "biornn", "export", str(run), "--format", "onnx", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["routes"] == ["native", "native"]
    check_onnx(out, run)


@pytest.mark.parametrize(
    "changes,routes",
    [
        ({}, ["native", "native"]),
        # a scripted loop around the traced step; one model, no n-gram part
        ({"cell": "lstm-peephole", "num_layers": 2, "ngram_blend": 0.0}, ["scan"] * 4),
        ({"cell": "elman", "ensemble": 2, "embedding_dim": 0, "ngram_blend": 0.0}, ["native", "native"]),
        ({"pool": "mean", "ensemble": 2}, ["native", "native"]),
        ({"conv_channels": 4, "conv_kernel": 5, "embedding_dim": 0}, ["native", "native"]),
    ],
    ids=["trained-lstm", "peephole-2-layers", "elman-ensemble-onehot", "mean-pool-ensemble", "window-layer-onehot"],
)
def test_torchscript_export_reloads_and_matches(run_dir, tmp_path, changes, routes):
    run = variant(run_dir, tmp_path / "v", **changes) if changes else run_dir
    out = tmp_path / "m.pt"
    assert export_run(run, "torchscript", out)["routes"] == routes
    extra = {"biornn.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    assert sorted(json.loads(json.loads(extra["biornn.json"])["labels"])) == sorted(LANGS)
    from biornn.export import read_torchscript_metadata

    meta = read_torchscript_metadata(out)  # decoded once, as read_onnx_metadata gives them
    assert sorted(meta["labels"]) == sorted(LANGS) and isinstance(meta["vocab"], dict)
    with pytest.raises(ValueError, match="not a readable TorchScript file"):
        read_torchscript_metadata(run / "config.json")
    V = len(load_run(run)[3]["vocab_obj"])
    for k, (B, T) in enumerate(SHAPES):
        x, lengths = example_inputs(V, B, T, seed=200 + k)
        logits, probs = loaded(x, lengths)
        np.testing.assert_allclose(logits.numpy(), reference(run, x, lengths), atol=1e-4, rtol=0)


def test_a_fixed_length_graph_is_refused(run_dir, tmp_path, monkeypatch, capsys):
    """torch.export unrolls nn.RNN over the example's length, and so it would a Python loop: with
    both routes made to loop in Python, the export must be refused with one line, nothing written."""
    pytest.importorskip("onnxruntime")
    import biornn.export as export

    def python_loop(self, x):  # what a traced step loop looks like to an exporter
        state = tuple(x.new_zeros(x.shape[0], n) for n in self.sizes)
        outs = []
        for x_t in x.unbind(1):
            new, _ = self.cell.step(x_t, self.cell.state_type(*state))
            state = tuple(new)
            outs.append(self.cell.output(new))
        return torch.stack(outs, dim=1)

    monkeypatch.setattr(export, "route", lambda cell, fmt="onnx": "native")
    monkeypatch.setattr(export.ScanStep, "forward", python_loop)
    run = variant(run_dir, tmp_path / "v", cell="elman", bidirectional=False)
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    assert main(["export", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing a fixed-shape export" in err
    assert list(out.parent.iterdir()) == []  # no file, no temporary left behind


def test_bad_input_exits_2_with_one_line(run_dir, tmp_path, monkeypatch, capsys):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")
    cases = [
        (["export", str(tmp_path / "missing")], "no such run directory"),
        (["export", str(incomplete)], "missing model.safetensors, metrics.json"),
        (["export", str(run_dir), "--format", "tflite"], "unknown export format 'tflite'"),
        (["export", str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "no" / "m.pt")], "does not exist"),
        (["export", str(run_dir), "--format", "torchscript", "--out", str(tmp_path)], "is a directory"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if the extra were not installed
    assert main(["export", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'biornn[export]'" in err


def test_only_classifiers_export():
    with pytest.raises(ValueError, match="sequence classifiers"):
        build_export_model(torch.nn.Linear(2, 2), None, "onnx")


def test_a_run_of_another_kind_of_task_is_refused(run_dir, tmp_path, monkeypatch):
    import types

    import biornn.tasks

    monkeypatch.setattr(biornn.tasks, "get", lambda name: types.SimpleNamespace(KIND="anomaly"))
    with pytest.raises(ValueError, match="not a classification task"):
        export_run(run_dir, "torchscript", tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()



# ---- VectorClassifier runs: classify on numeric series (pool "max") and splice (DNA, pool "split") ----

def _ucr(path: Path, n: int, seed: int, T: int = 20) -> Path:
    """A UCR-format table: label first, then T values; a bump early (class 1) or late (class 2)."""
    rng = np.random.default_rng(seed)
    lines = []
    for k in range(n):
        label = 1 + k % 2
        x = rng.normal(0, 0.3, T) + 5.0  # off zero: the saved normalisation matters
        x[(T // 4 if label == 1 else 3 * T // 4) + np.arange(-2, 2)] += 2.0
        lines.append(",".join([str(label), *(f"{v:.5f}" for v in x)]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def series_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export-series")
    out = root / "run"
    assert main(["train", "classify", "--train", str(_ucr(root / "S_TRAIN.csv", 40, 0)), "--out", str(out),
                 "hidden_size=4", "batch_size=16", "epochs=2", "threads=1"]) == 0
    return out


def test_onnx_export_of_a_numeric_series_run(series_run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "series.onnx"
    assert main(["export", str(series_run), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == ["vectors", "lengths"] and report["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert set(shapes) == {"vectors", "lengths"} and all(isinstance(d, str) for d in shapes["vectors"][:2])
    meta = read_onnx_metadata(out)
    enc = meta["encoding"]
    assert enc["kind"] == "values" and enc["n_features"] == 1 and enc["pool"] == "max"
    assert enc["normalize"]["mean"][0] == pytest.approx(5.0 + 2.0 * 4 / 20, abs=0.3)
    # raw series of several lengths, encoded from the file's metadata alone: the answer of biornn predict
    rng = np.random.default_rng(3)
    series = [(rng.normal(0, 0.3, T) + 5.0).round(4).tolist() for T in (20, 13, 31)]
    x, lengths = encode_vectors_for_export(series, enc)
    assert x.shape == (3, 31, 1) and lengths.tolist() == [20, 13, 31]
    probs = session.run(["probabilities"], {"vectors": x, "lengths": lengths})[0]
    _, task, model, run_meta = load_run(series_run)
    want = task.predict_rows(model, run_meta, [json.dumps(s) for s in series], top=2)
    for row, ref in zip(probs, want):
        assert meta["labels"][int(row.argmax())] == ref["label"]
        assert abs(float(row.max()) - ref["top"][0]["probability"]) <= 1e-4
    for bad, needle in (([[1.0, float("nan")]], "NaN"), ([[[1.0, 2.0]]], "shape (1, 2)"), ([[]], "an empty series")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            encode_vectors_for_export(bad, enc)


def test_torchscript_export_of_a_splice_run(tmp_path):
    (tmp_path / "dna").mkdir()
    rng = random.Random(0)
    rows = ["label,instance_name,sequence"] + [
        f"{('EI', 'IE', 'N')[k % 3]},S{k},{''.join(rng.choice('ACGT') for _ in range(60))}" for k in range(45)]
    (tmp_path / "dna" / "splice.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    assert main(["train", "splice", "--data-dir", str(tmp_path), "--out", str(run), "hidden_size=4", "ensemble=2",
                 "epochs=1", "threads=1"]) == 0
    out = tmp_path / "splice.pt"
    report = export_run(run, "torchscript", out)
    assert report["inputs"] == ["vectors", "lengths"] and report["max_abs_diff"] <= 1e-4
    extra = {"biornn.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    enc = json.loads(json.loads(extra["biornn.json"])["encoding"])
    assert enc["kind"] == "residues" and enc["length"] == 60 and enc["pool"] == "split"
    seqs = ["".join(rng.choice("ACGT") for _ in range(60)) for _ in range(3)]
    seqs[1] = seqs[1][:10] + "N" + seqs[1][11:]
    x, lengths = encode_vectors_for_export(seqs, enc)
    _, probs = loaded(torch.from_numpy(x), torch.from_numpy(lengths))
    labels = json.loads(json.loads(extra["biornn.json"])["labels"])
    for row, ref in zip(probs, predict(run, seqs, top=1)):
        assert abs(float(row.max()) - ref["top"][0]["probability"]) <= 1e-4
        assert labels[int(row.argmax())] == ref["top"][0]["label"]
    with pytest.raises(ValueError, match="59 residues; the model reads exactly 60"):
        encode_vectors_for_export(["A" * 59], enc)


def test_export_model_names_a_wrong_adjust_or_vocabulary(tmp_path, capfd):
    """A logit adjustment of another length, or a vocab_size other than the model's, is refused naming
    it (both were reported as 'cannot export with a dynamic length'); a stacked LSTM's fallback to the
    scan route leaves no onnxruntime log lines on stderr."""
    from biornn.export import export_model
    from biornn.models import SequenceClassifier

    pytest.importorskip("onnxruntime")
    m = SequenceClassifier(12, 3, "lstm", 8, embedding_dim=4, num_layers=2).eval()
    with pytest.raises(ValueError, match=r"adjust must be a \(3,\) tensor"):
        export_model(m, torch.zeros(5), "onnx", tmp_path / "a.onnx", vocab_size=12)
    with pytest.raises(ValueError, match="vocab_size=20, but the model reads 12 symbols"):
        export_model(m, None, "onnx", tmp_path / "b.onnx", vocab_size=20)
    assert not list(tmp_path.iterdir())
    capfd.readouterr()
    assert export_model(m, torch.zeros(3), "onnx", tmp_path / "c.onnx", vocab_size=12)["routes"] == ["scan", "scan"]
    assert "onnxruntime" not in capfd.readouterr().err


def test_a_second_onnx_export_in_one_process_keeps_the_native_route(tmp_path):
    """The second export of a bidirectional nn.LSTM in one process came out fixed to the example's 7
    steps (torch's exporter leaves its Python-loop decomposition in aten.lstm's dispatch cache), was
    refused by the check and exported again on the slower scan route."""
    from biornn.export import export_model
    from biornn.models import SequenceClassifier

    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    m = SequenceClassifier(12, 3, "lstm", 8, embedding_dim=4, bidirectional=True).eval()
    for k in range(2):
        out = tmp_path / f"m{k}.onnx"
        assert export_model(m, None, "onnx", out, vocab_size=12)["routes"] == ["native", "native"], k
        dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "steps"], k


def test_a_full_disk_is_one_line_naming_the_file_not_the_model(run_dir, tmp_path, monkeypatch, capsys):
    """torch.jit.save to a full disk aborted the process (a C++ exception from a destructor, exit 134)
    and left its temporary file; ONNX's OSError was told as 'torch cannot export this model'."""
    import errno

    real = Path.write_bytes

    def write_bytes(self, data):
        if "m.pt" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    out = tmp_path / "m.pt"
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"biornn: error: {out}: cannot write it: No space left on device", err
    assert list(tmp_path.iterdir()) == []
