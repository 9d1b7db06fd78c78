"""The names task against its baselines, all on the same split.

Trains on the training split of ``split_names(read_names(root), seed=split_seed)``
and scores the test split, for

(a) biornn's default names model (``biornn.train.train(resolve("names"))``), and its
    recurrent and n-gram parts alone (``parts`` of its metrics.json),
(b) the PyTorch tutorial's character-level RNN, its recipe unchanged
    (:class:`biornn.baselines.TutorialRNN`, 100,000 single-name SGD steps),
(c) character 1..4-gram TF-IDF + logistic regression (:class:`biornn.baselines.NgramLogReg`),
(d) the same, class-balanced,

and prints one table: accuracy, balanced accuracy, macro-F1, training seconds.
The baselines need scikit-learn.

    BIORNN_DATA=../shared/data .venv/bin/python benchmarks/names.py
    .venv/bin/python benchmarks/names.py --data-dir DIR --split-seed 0 --steps 100000 --json
    .venv/bin/python benchmarks/names.py --quick        # a smoke run: few steps, 1 epoch
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from biornn.baselines import NgramLogReg, TrainingDiverged, TutorialRNN, evaluate_probs
from biornn.data.names import languages, read_names, split_names
from biornn.data.registry import DataError, locate

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def biornn_default(split_seed: int, data_dir: str | None, quick: bool) -> list[dict]:
    """Row (a): the default names model through ``biornn.train.train``, then its two parts alone (the
    recurrent members and the n-gram scorer, ``parts`` in metrics.json); a note if that is not there yet.

    The default's seconds are the members' training plus the n-gram part's fit."""
    try:
        from biornn.config import resolve
        from biornn.train import train
    except ImportError as e:
        return [{"model": "biornn default", "note": f"skipped: biornn.train is not available ({e})"}]
    cfg = resolve("names", overrides=[f"split_seed={split_seed}", *(["epochs=1"] if quick else [])])
    # progress goes to stderr, so that --json prints nothing but JSON
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(sys.stderr):
        t0 = time.perf_counter()
        metrics = train(cfg, Path(out) / "run", data_dir=data_dir)
        wall = time.perf_counter() - t0
    test, parts = metrics["test"], metrics.get("parts", {})
    members = f"{cfg.ensemble} x {'bidirectional ' if cfg.bidirectional else ''}{metrics.get('cell', cfg.cell)}"
    fit = float(parts.get("ngram_fit_seconds", 0.0))
    seconds = float(metrics.get("train_seconds", wall))
    if not parts:
        return [{"model": f"biornn {members} (default)", **{k: float(test[k]) for k in METRICS},
                 "train_seconds": seconds}]
    return [{"model": f"biornn default: {members} + n-grams", **{k: float(test[k]) for k in METRICS},
             "train_seconds": seconds + fit},
            {"model": "  its recurrent part alone", **{k: float(parts["recurrent"][k]) for k in METRICS},
             "train_seconds": seconds},
            {"model": "  its n-gram part alone", **{k: float(parts["ngram"][k]) for k in METRICS},
             "train_seconds": fit}]


def baseline_row(label: str, model, fit_kwargs: dict, train, test, langs: list[str]) -> dict:
    """Fit one baseline on ``train`` and score it on ``test``: one table row."""
    x, y = train
    t0 = time.perf_counter()
    model.fit(x, y, len(langs), **fit_kwargs)
    seconds = time.perf_counter() - t0
    m = evaluate_probs(model.predict_proba(test[0]), test[1], langs)
    return {"model": label, **{k: m[k] for k in METRICS}, "train_seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="data directory (default: $BIORNN_DATA, then the cache)")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=100_000, help="TutorialRNN's SGD steps (default 100000)")
    ap.add_argument("--seed", type=int, default=0, help="TutorialRNN's first seed")
    ap.add_argument("--tries", type=int, default=3, help="TutorialRNN seeds to try while it diverges (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2000 tutorial steps, 1 epoch of biornn")
    ap.add_argument("--skip-biornn", action="store_true", help="baselines only")
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = min(args.steps, 2000) if args.quick else args.steps

    try:
        root = locate("names", args.data_dir)
        pairs = read_names(root)
    except DataError as e:
        print(f"names.py: {e}", file=sys.stderr)
        return 2
    split = split_names(pairs, seed=args.split_seed)
    langs = languages(pairs)
    index = {lang: i for i, lang in enumerate(langs)}

    def xy(part: str) -> tuple[list[str], np.ndarray]:
        return [n for n, _ in split[part]], np.array([index[lang] for _, lang in split[part]])

    train, test = xy("train"), xy("test")
    rows = []
    if not args.skip_biornn:
        rows.extend(biornn_default(args.split_seed, args.data_dir, args.quick))
    # the recipe sometimes diverges (pytorch/tutorials#847): say so, then try the next seed
    for seed in range(args.seed, args.seed + args.tries):
        label = f"TutorialRNN ({steps} steps, seed {seed})"
        try:
            rows.append(baseline_row(label, TutorialRNN(), {"steps": steps, "seed": seed}, train, test, langs))
            break
        except TrainingDiverged as e:
            rows.append({"model": label, "note": f"diverged at step {e.step} (loss NaN)"})
    rows.append(baseline_row("n-gram LR", NgramLogReg(), {}, train, test, langs))
    rows.append(baseline_row("n-gram LR, balanced", NgramLogReg(class_weight="balanced"), {}, train, test, langs))

    info = {"data": str(root), "split_seed": args.split_seed, "n_train": len(train[1]), "n_test": len(test[1]),
            "n_classes": len(langs), "threads": args.threads}
    if args.json:
        print(json.dumps({**info, "rows": rows}, indent=2))
        return 0
    print(f"names: {info['n_train']} train / {info['n_test']} test names, {info['n_classes']} languages, "
          f"split seed {args.split_seed}, {args.threads} torch threads")
    print(f"{'model':<40} {'accuracy':>8} {'bal.acc':>8} {'macro-F1':>8} {'train s':>8}")
    for r in rows:
        if "note" in r:
            print(f"{r['model']:<40} {r['note']}")
        else:
            print(f"{r['model']:<40} {r['accuracy']:8.4f} {r['balanced_accuracy']:8.4f} {r['macro_f1']:8.4f} "
                  f"{r['train_seconds']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
