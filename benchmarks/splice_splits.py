"""The splice task over several held-out splits: how much of a test figure is the split.

``biornn train splice`` measures on one fixed split (``split_seed=0``: stratified, duplicates
grouped, 20 % test, 10 % validation, 70 % training).  Its test part has 638 sequences, so one
sequence is 0.16 points and a binomial standard error at 96 % is about 0.8 points.  This script
trains the task's default model (or the config the overrides give) on ``split_seed`` 0, 1, ...
in turn, each run beside its one-hot logistic-regression baseline on the same split (both from
the run's own ``metrics.json``), and prints one row per split and the mean and spread, so that
a figure on the reference split can be read against the spread over splits.

    BIORNN_DATA=../shared/data .venv/bin/python benchmarks/splice_splits.py            # splits 0-9
    .venv/bin/python benchmarks/splice_splits.py --splits 5 --seed 1 --json cell=gru
    .venv/bin/python benchmarks/splice_splits.py --quick                             # 2 splits, 1 epoch
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

#: the issue's target for the recurrent model's test accuracy
TARGET = 0.965


def run_split(split_seed: int, seed: int, threads: int, overrides: list[str], data_dir: str | None,
              quick: bool) -> dict:
    """One ``biornn train splice`` on ``split_seed``: model and baseline test accuracy, seconds."""
    from biornn.config import resolve
    from biornn.train import train

    cfg = resolve("splice", overrides=[f"split_seed={split_seed}", f"seed={seed}", f"threads={threads}",
                                       *overrides, *(["epochs=1", "ensemble=1"] if quick else [])])
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(sys.stderr):
        t0 = time.perf_counter()
        metrics = train(cfg, Path(out) / "run", data_dir=data_dir, progress=False)
        wall = time.perf_counter() - t0
    return {"split_seed": split_seed, "test_accuracy": float(metrics["test"]["accuracy"]),
            "baseline_accuracy": float(metrics["baseline"]["accuracy"]), "best_epoch": metrics["best_epoch"],
            "seconds": round(wall, 1)}


def summarise(rows: list[dict]) -> dict:
    """Mean and standard deviation over the splits, and how many meet the target / beat the baseline."""
    model = [r["test_accuracy"] for r in rows]
    base = [r["baseline_accuracy"] for r in rows]
    gain = [m - b for m, b in zip(model, base)]

    def sd(v: list[float]) -> float:
        return statistics.stdev(v) if len(v) > 1 else 0.0

    return {"splits": len(rows), "model_mean": statistics.fmean(model), "model_sd": sd(model),
            "baseline_mean": statistics.fmean(base), "baseline_sd": sd(base),
            "gain_mean": statistics.fmean(gain), "gain_min": min(gain),
            "at_target": sum(m >= TARGET for m in model), "beats_baseline": sum(g > 0 for g in gain)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="data directory (default: $BIORNN_DATA, then the cache)")
    ap.add_argument("--splits", type=int, default=10, help="split seeds 0 .. N-1 (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="the model seed of every run (default 0)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 splits, 1 epoch, one model")
    ap.add_argument("--json", action="store_true", help="print the rows and the summary as one JSON object")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, as for 'biornn train splice'")
    args = ap.parse_args(argv)
    if args.splits < 1:
        ap.error("--splits must be at least 1")
    from biornn.cli.checks import run_script

    return run_script(lambda: _run(args), "splice_splits.py")


def _run(args: argparse.Namespace) -> int:
    from biornn.cli import checks

    checks.seed("--seed", args.seed)
    checks.threads(args.threads)
    checks.benchmark_config("splice", args.overrides, {"split_seed": "--splits", "seed": "--seed",
                                                       "threads": "--threads"})
    n = 2 if args.quick else args.splits
    rows = []
    for split_seed in range(n):
        rows.append(run_split(split_seed, args.seed, args.threads, args.overrides, args.data_dir, args.quick))
        if not args.json:
            r = rows[-1]
            print(f"split_seed {split_seed}: model {r['test_accuracy']:.4f}  baseline {r['baseline_accuracy']:.4f}  "
                  f"gain {r['test_accuracy'] - r['baseline_accuracy']:+.4f}  best epoch {r['best_epoch']}  "
                  f"{r['seconds']:.0f}s", flush=True)
    s = summarise(rows)
    if args.json:
        print(json.dumps({"overrides": args.overrides, "seed": args.seed, "rows": rows, "summary": s}, indent=2))
    else:
        print(f"mean over {s['splits']} splits: model {s['model_mean']:.4f} (sd {s['model_sd']:.4f})  "
              f"baseline {s['baseline_mean']:.4f} (sd {s['baseline_sd']:.4f})  gain {s['gain_mean']:+.4f} "
              f"(min {s['gain_min']:+.4f})")
        print(f"splits at the target (>= {TARGET}): {s['at_target']} of {s['splits']}; "
              f"model above the baseline: {s['beats_baseline']} of {s['splits']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
