"""The translate task at its defaults: the encoder-decoder beside the frame-window logistic regression.

Trains ``biornn train translate`` (its task defaults: 4000 generated ORFs of
5-40 codons, an LSTM encoder-decoder with location-aware attention, 6
epochs) through :func:`biornn.train.train`, then prints one table: exact
match and per-residue accuracy on held-out ORFs of the training lengths
(5-40 codons) and on longer ones (41-80 codons), for the model decoded as the
run was (``beam``, 1 = greedy), the model decoded with a beam of 4 as well,
and the logistic regression told the reading frame (the run's ``baseline``);
then the by-length rows and the training seconds.

    .venv/bin/python benchmarks/translate.py
    .venv/bin/python benchmarks/translate.py --out runs/translate --cell gru key=value ...
    .venv/bin/python benchmarks/translate.py --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

KEYS = ("exact_match", "residue_accuracy", "exact_match_longer", "residue_accuracy_longer")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="keep the run directory here (default: a temporary directory)")
    p.add_argument("--cell", default=None, help="the cell (default: the task's, lstm)")
    p.add_argument("--beam", type=int, default=4, help="the extra beam width to decode with (default 4)")
    p.add_argument("--attention", choices=("location", "none"), default="location",
                   help="the decoder's attention (default location; none: the encoder's final state alone)")
    p.add_argument("--random-start", action="store_true",
                   help="start the location attention from a random initialisation, not moving 3 bases a step")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. threads=1")
    args = p.parse_args(argv)

    import torch

    from biornn.config import resolve
    from biornn.evaluate import load_run
    from biornn.tasks import translate as tr
    from biornn.train import train

    # no config key for these two: the task module's constants, which the run records in its weights
    tr.ATTENTION = args.attention
    tr.LOCATION_SHIFT = None if args.random_start else tr.LOCATION_SHIFT
    overrides = list(args.overrides) + ([f"cell={args.cell}"] if args.cell else [])
    cfg = resolve("translate", overrides=overrides)
    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory())) / "run"
        with contextlib.redirect_stdout(sys.stderr):  # progress to stderr: --json prints nothing but JSON
            t0 = time.perf_counter()
            metrics = train(cfg, out)
            wall = time.perf_counter() - t0
        # the same weights decoded with a beam, on the same test ORFs
        run_cfg, _, model, _ = load_run(out)
        data = tr.load(run_cfg)
        t1 = time.perf_counter()
        with torch.no_grad():
            beam_test, beam_rows, _ = tr.measure(resolve("translate", overrides=[*overrides, f"beam={args.beam}"]),
                                                  model, data)
        beam_seconds = time.perf_counter() - t1
    name = f"{metrics['cell']} enc-dec, attention {args.attention}{', random start' if args.random_start else ''}"
    rows = [
        {"model": f"{name} ({metrics['decoding']})", **metrics["test"], "train_seconds": metrics["train_seconds"]},
        {"model": f"{name} (beam {args.beam})", **beam_test,
         "decode_seconds": round(beam_seconds, 1)},
        {"model": "frame-window logistic regression (baseline)", **{k: metrics["baseline"][k] for k in KEYS},
         "train_seconds": metrics["baseline"]["train_seconds"]},
    ]
    if args.json:
        print(json.dumps({"rows": rows, "by_length": metrics["by_length"], "wall_seconds": round(wall, 1),
                          "epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"], "n": metrics["n"]}))
        return 0
    print(f"translate: {metrics['n']['train']} training ORFs of {tr.TRAIN_CODONS[0]}-{tr.TRAIN_CODONS[1]} codons, "
          f"{metrics['epochs']} epochs (best {metrics['best_epoch']}), {wall:.0f} s wall")
    print(f"{'model':52s} {'exact':>7s} {'residue':>8s} {'exact>40':>9s} {'res>40':>8s}  seconds")
    for r in rows:
        secs = r.get("train_seconds", r.get("decode_seconds"))
        print(f"{r['model']:52s} {r['exact_match']:7.3f} {r['residue_accuracy']:8.3f} "
              f"{r['exact_match_longer']:9.3f} {r['residue_accuracy_longer']:8.3f}  {secs}")
    print("\nby length (codons)      model exact / residue      baseline exact / residue")
    for m, b in zip(metrics["by_length"]["model"], metrics["by_length"]["baseline"]):
        print(f"  {m['codons']:>6s} (n={m['n']:4d})   {m['exact_match']:6.3f} / {m['residue_accuracy']:6.3f}"
              f"          {b['exact_match']:6.3f} / {b['residue_accuracy']:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
