"""Serving a numeric ``classify`` run: MIT-BIH record 100's beats, /predict and /explain latency,
parity with ``biornn predict``, and the ONNX export against PyTorch (one torch thread).

1. one row per N or A beat of lead MLII (UCR format: label 1 = N, 2 = A, then 250 samples in mV,
   100 before and 150 after the annotated R peak); beats of the first 20 minutes -> TRAIN.csv, of
   the last 10 -> TEST.csv;
2. ``biornn train classify --train TRAIN.csv --test TEST.csv`` (class-balanced loss, best epoch by
   validation balanced accuracy);
3. the served run, in one process through FastAPI's test client (no network): median latency of
   ``/predict`` for 1 and 256 beats and of ``/explain`` for 1 beat at 64 steps, the served
   probabilities against ``predict_rows``, and the ONNX export on every test beat.

    BIORNN_DATA=../shared/data .venv/bin/python benchmarks/serve_vectors.py --out /tmp/beats [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def write_beats(record: str, out: Path) -> dict[str, int]:
    """The UCR files of record ``record``'s N and A beats; the number of beats (and A beats) of each."""
    import wfdb

    rec = wfdb.rdrecord(record, channels=[0])
    ann = wfdb.rdann(record, "atr")
    x, fs = rec.p_signal[:, 0], rec.fs
    split = 20 * 60 * fs
    rows: dict[str, list[str]] = {"TRAIN": [], "TEST": []}
    for s, sym in zip(ann.sample, ann.symbol):
        if sym not in ("N", "A") or s - 100 < 0 or s + 150 > len(x):
            continue
        part = "TRAIN" if s + 150 <= split else "TEST"
        rows[part].append(",".join([{"N": "1", "A": "2"}[sym], *(f"{v:.3f}" for v in x[s - 100 : s + 150])]))
    counts = {}
    for part, r in rows.items():
        (out / f"MITDB100_{part}.csv").write_text("\n".join(r) + "\n")
        counts[part] = len(r)
        counts[f"{part}_A"] = sum(1 for line in r if line.startswith("2,"))
    return counts


def measure(run: Path, test_csv: Path) -> dict:
    from fastapi.testclient import TestClient
    import onnxruntime as ort

    from biornn.evaluate import load_run
    from biornn.export import encode_vectors_for_export, export_run, read_onnx_metadata
    from biornn.serve import create_app
    from biornn.tasks import userdata
    from biornn.tasks.classify import logits_of

    rows = [line.split(",") for line in test_csv.read_text().splitlines() if line]
    series = [[float(v) for v in r[1:]] for r in rows]
    client = TestClient(create_app(run))

    def timed(path: str, body: dict, n: int) -> tuple[dict, float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = client.post(path, json=body)
            times.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise SystemExit(f"{path}: {r.status_code} {r.text[:200]}")
        return r.json(), statistics.median(times)

    _, t1 = timed("/predict", {"sequences": series[:1]}, 20)
    many, t256 = timed("/predict", {"sequences": series[:256]}, 5)
    exp, te = timed("/explain", {"sequences": series[:1], "steps": 64}, 5)
    _, task, model, meta = load_run(run)
    want = task.predict_rows(model, meta, [json.dumps(s) for s in series[:256]], top=2)
    diff = max(abs(a["top"][0]["probability"] - b["top"][0]["probability"])
               for a, b in zip(many["predictions"], want))
    same = all(a["top"][0]["label"] == b["label"] for a, b in zip(many["predictions"], want))
    onnx_path = run / "model.onnx"
    report = export_run(run, "onnx", onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x, lengths = encode_vectors_for_export(series, read_onnx_metadata(onnx_path)["encoding"])
    t0 = time.perf_counter()
    probs = session.run(["probabilities"], {"vectors": x, "lengths": lengths})[0]
    t_onnx = time.perf_counter() - t0
    with torch.no_grad():
        ref = torch.softmax(logits_of(model, userdata.parse_inputs(meta, [json.dumps(s) for s in series], 0)), 1)
    saliency = exp["explanations"][0]["saliency"]
    return {
        "test_beats": len(series), "T": len(series[0]),
        "predict_1_series_ms": round(1000 * t1, 1), "predict_256_series_ms": round(1000 * t256, 1),
        "explain_1_series_64_steps_ms": round(1000 * te, 1),
        "serve_vs_biornn_predict_max_abs_diff": diff, "same_labels": same,
        "completeness_gap": saliency["completeness_gap"],
        "score_minus_baseline": saliency["score"] - saliency["score_baseline"],
        "onnx_check_max_abs_diff": report["max_abs_diff"],
        "onnx_all_test_beats_max_abs_diff_prob": float(np.abs(probs - ref.numpy()).max()),
        "onnx_all_test_beats_s": round(t_onnx, 3),
    }


def main() -> None:
    from biornn.cli.main import main as biornn
    from biornn.data.registry import locate

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--out", required=True, help="a folder for the beat files and the run")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = str(locate("mitdb-100", args.data_dir) / "ecg" / "mitdb" / "100")
    counts = write_beats(record, out)
    run = out / "run"
    code = biornn(["train", "classify", "--train", str(out / "MITDB100_TRAIN.csv"), "--test",
                   str(out / "MITDB100_TEST.csv"), "--out", str(run), f"epochs={args.epochs}", "threads=1",
                   "class_weighting=balanced", "monitor=balanced_accuracy", "--no-progress"])
    if code:
        raise SystemExit(code)
    metrics = json.loads((run / "metrics.json").read_text())
    print(json.dumps({"beats": counts, "test": metrics["test"], "baseline": metrics["baseline"],
                      **measure(run, out / "MITDB100_TEST.csv")}, indent=1))


if __name__ == "__main__":
    main()
