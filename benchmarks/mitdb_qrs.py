"""The mitdb-qrs task at full size: the recurrent beat detector beside wfdb's xqrs, on the same minutes.

Trains ``biornn train mitdb-qrs`` (the task's defaults: an ensemble of three 2-layer
bidirectional LSTMs, hidden 32, on random 4 s crops of minutes 0-16 of MIT-BIH record 100,
best epoch by the loss on minutes 16-20) once per seed, and prints one table of
EC57 beat-detection scores on the test minutes (20:00 to the end, 759 reference
beats; 150 ms match window): sensitivity Se, positive predictivity +P, F1, TP,
FN, FP and the mean |offset| of the matched detections, for each seed, the
seeds pooled, and ``wfdb.processing.xqrs_detect`` on the first lead of the same
minutes, scored identically.  ``--no-augment`` trains without the task's crop
augmentation (random sign flips and scaling of each lead), for the ablation.

    BIORNN_DATA=/work/shared/data .venv/bin/python benchmarks/mitdb_qrs.py
    .venv/bin/python benchmarks/mitdb_qrs.py --data-dir DIR --seeds 0 1 2 --json
    .venv/bin/python benchmarks/mitdb_qrs.py ensemble=1 --seeds 0 1 2      # one model
    .venv/bin/python benchmarks/mitdb_qrs.py --seeds 0 1 2 --no-augment   # the ablation
    .venv/bin/python benchmarks/mitdb_qrs.py --quick        # a smoke run: 2 epochs, one seed
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
from pathlib import Path

COLUMNS = ("sensitivity", "positive_predictivity", "f1", "tp", "fn", "fp", "mean_abs_offset_ms")


def run_seed(seed: int, data_dir: str | None, overrides: list[str]) -> dict:
    """One full training run (the task's defaults and ``overrides``); its metrics.json."""
    from biornn.config import resolve
    from biornn.train import train

    cfg = resolve("mitdb-qrs", options={"seed": seed}, overrides=overrides)
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(sys.stderr):
        return train(cfg, Path(out) / "run", data_dir=data_dir)


def table(rows: list[dict]) -> str:
    head = ["detector", "Se", "+P", "F1", "TP", "FN", "FP", "|offset| ms", "best epoch", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["detector"], *(f"{r[k]:.4f}" if isinstance(r[k], float) and k not in ("mean_abs_offset_ms",)
                                  else (f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k])) for k in COLUMNS),
                 str(r.get("best_epoch", "")), f"{r['train_seconds']:.0f}" if "train_seconds" in r else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="data directory (else $BIORNN_DATA, else the cache)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    p.add_argument("--quick", action="store_true", help="2 epochs, the first seed only: a smoke run")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.add_argument("--no-augment", action="store_true",
                   help="the ablation: train on the crops as they are (no sign flips, no scaling)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. cell=gru")
    # key=value words go first, so that `--seeds 0 1 2 ensemble=1` does not read them as seeds
    words = sys.argv[1:] if argv is None else list(argv)
    is_override = [bool(re.match(r"[A-Za-z_]\w*=", w)) for w in words]
    args = p.parse_args([w for w, o in zip(words, is_override) if o] + [w for w, o in zip(words, is_override) if not o])
    overrides = ["threads=1", *args.overrides, *(["epochs=2"] if args.quick else [])]
    seeds = args.seeds[:1] if args.quick else args.seeds
    if args.no_augment:
        from biornn.tasks import mitdb_qrs

        mitdb_qrs.FLIP_P, mitdb_qrs.SCALE = 0.0, (1.0, 1.0)
    rows, base = [], None
    for seed in seeds:
        m = run_seed(seed, args.data_dir, overrides)
        print(f"seed {seed}: Se {m['test']['sensitivity']:.4f}  +P {m['test']['positive_predictivity']:.4f}  "
              f"missed {m['errors']['model']['missed_s']} s, false {m['errors']['model']['false_s']} s",
              file=sys.stderr)
        rows.append({"detector": f"biornn {m['cell']} seed {seed}", **{k: m["test"][k] for k in COLUMNS},
                     "best_epoch": m["best_epoch"], "train_seconds": m["train_seconds"]})
        base = m["baseline"]
    if len(rows) > 1:
        tp, fn, fp = (sum(r[k] for r in rows) for k in ("tp", "fn", "fp"))
        rows.append({"detector": f"biornn, {len(rows)} seeds pooled", "sensitivity": tp / (tp + fn),
                     "positive_predictivity": tp / (tp + fp), "f1": 2 * tp / (2 * tp + fn + fp), "tp": tp, "fn": fn,
                     "fp": fp, "mean_abs_offset_ms": sum(r["mean_abs_offset_ms"] for r in rows) / len(rows)})
    rows.append({"detector": f"wfdb xqrs ({base['lead']})", **{k: base[k] for k in COLUMNS}})
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
