"""The generic tasks on real files, written out as a user would have them, each beside its baseline.

(a) ``classify`` on the UCI splice-junction file converted to TSV (label, sequence), with the
    built-in ``splice`` task's own split (``split_seed``) written as train/val/test files, beside
    the built-in ``splice`` task trained on the same split: the generic path (a bidirectional
    LSTM read at its ends, the task defaults) against the hand-tuned task (an ensemble of five
    read at the junction);
(b) ``tag`` on Qian & Sejnowski's secondary-structure files converted to TSV (sequence, a
    label string of h/e/_), the test file as the test part, 20 % of the training chains
    validating;
(c) ``forecast`` of the next sample of both leads of the ECG excerpt ``qtdbsel102`` (QT
    database, 250 Hz) written as CSV: train on its training rows, test on its test rows (the
    ``labels.json`` slices), beside a linear AR(8) and persistence.

Every run goes through ``biornn train`` exactly as a user would call it, with ``threads``; the
table gives each model's test metric and its baseline's from the same run's metrics.json.

    BIORNN_DATA=../shared/data .venv/bin/python benchmarks/user_data.py [--threads 1] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _train(args: list[str]) -> tuple[dict, float]:
    """``biornn train ARGS``: the run's metrics.json and the wall seconds; stdout kept quiet."""
    from biornn.cli.main import main

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", *args])
    if code != 0:
        raise SystemExit(f"biornn train {' '.join(args)} exited {code}")
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - t0


def splice_rows(root: Path, tmp: Path, common: list[str], quick: bool) -> list[dict]:
    from biornn.config import resolve
    from biornn.tasks import splice

    data = splice.load(resolve("splice"), str(root))
    files = {}
    for part, s in data.splits.items():
        f = tmp / f"splice_{part}.tsv"
        f.write_text("label\tsequence\n" + "".join(f"{data.labels[y]}\t{t}\n" for t, y in zip(s.texts, s.y)))
        files[part] = f
    epochs = ["--epochs", "2"] if quick else []
    generic, g_wall = _train(["classify", "--train", str(files["train"]), "--val", str(files["val"]), "--test",
                              str(files["test"]), "--out", str(tmp / "classify"), *epochs, *common])
    builtin, b_wall = _train(["splice", "--data-dir", str(root), "--out", str(tmp / "splice"), *epochs, *common])
    rows = []
    for name, m, wall in (("classify (generic, TSV)", generic, g_wall), ("splice (built-in)", builtin, b_wall)):
        rows.append({"data": "splice 638 test seqs", "run": name, "metric": "accuracy",
                     "model": m["test"]["accuracy"], "baseline": m["baseline"]["accuracy"],
                     "baseline_name": m["baseline"]["name"], "best_epoch": m["best_epoch"],
                     "wall_seconds": round(wall, 1)})
    return rows


def protein_rows(root: Path, tmp: Path, common: list[str], quick: bool) -> list[dict]:
    from biornn.tasks.protein_ss import FILES, read_ss

    files = {}
    for part, name in FILES.items():
        f = tmp / f"ss_{part}.tsv"
        f.write_text("sequence\tlabel\n" + "".join(f"{seq}\t{states}\n" for seq, states in read_ss(root / name)))
        files[part] = f
    # the built-in protein-ss task's model settings, so that its docs table compares
    settings = ["hidden_size=64", "num_layers=2", "dropout=0.5", "batch_size=8", "--epochs", "2" if quick else "15"]
    m, wall = _train(["tag", "--train", str(files["train"]), "--test", str(files["test"]), "--out", str(tmp / "tag"),
                      *settings, *common])
    return [{"data": "protein-ss test file (Q3)", "run": "tag (generic, TSV)", "metric": "accuracy",
             "model": m["test"]["accuracy"], "baseline": m["baseline"]["accuracy"],
             "baseline_name": m["baseline"]["name"], "best_epoch": m["best_epoch"], "wall_seconds": round(wall, 1)}]


def ecg_rows(root: Path, tmp: Path, common: list[str], quick: bool) -> list[dict]:
    name = "qtdbsel102.txt"
    spec = json.loads((root / "ecg" / "discords" / "labels.json").read_text())["files"][name]
    x = np.loadtxt(root / "ecg" / "discords" / name)[:, 1:]  # (T, 2): the two leads
    files = {}
    for part in ("train", "test"):
        a, b = spec[part]
        f = tmp / f"ecg_{part}.csv"
        f.write_text("lead1,lead2\n" + "".join(f"{u:.3f},{v:.3f}\n" for u, v in x[a:b]))
        files[part] = f
    epochs = ["--epochs", "2"] if quick else []
    m, wall = _train(["forecast", "--train", str(files["train"]), "--test", str(files["test"]),
                      "--out", str(tmp / "forecast"), *epochs, *common])
    return [{"data": f"ECG {name[:-4]} next sample (RMSE, mV)", "run": "forecast (generic, CSV)", "metric": "rmse",
             "model": m["test"]["rmse"], "baseline": m["baseline"]["rmse"], "baseline_name": "linear-ar(8)",
             "persistence": m["persistence"]["rmse"], "best_epoch": m["best_epoch"], "wall_seconds": round(wall, 1)}]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="data directory (default: $BIORNN_DATA, then the cache)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("splice", "protein", "ecg"), action="append", help="run only these parts")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs each")
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    args = ap.parse_args(argv)
    from biornn.data.registry import locate

    common = [f"threads={args.threads}", "--seed", str(args.seed)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for part, fn, dataset in (("splice", splice_rows, "splice"), ("protein", protein_rows, "protein-ss"),
                                  ("ecg", ecg_rows, "ecg-discords")):
            if args.only and part not in args.only:
                continue
            root = locate(dataset, args.data_dir)
            print(f"== {part}", file=sys.stderr, flush=True)
            rows += fn(root, Path(tmp), common, args.quick)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'data':<40} {'run':<26} {'metric':<8} {'model':>8} {'baseline':>9}  {'baseline name':<15} "
          f"{'best ep':>7} {'wall s':>7}")
    for r in rows:
        extra = f"  (persistence {r['persistence']:.4f})" if "persistence" in r else ""
        print(f"{r['data']:<40} {r['run']:<26} {r['metric']:<8} {r['model']:>8.4f} {r['baseline']:>9.4f}  "
              f"{r['baseline_name']:<15} {r['best_epoch']:>7} {r['wall_seconds']:>7}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
