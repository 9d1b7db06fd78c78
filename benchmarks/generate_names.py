"""The generate-names task at its defaults: the recurrent generator beside the n-gram baseline.

Trains ``biornn train generate-names`` (the task's defaults; ``key=value``
overrides may be given) on the names split of ``split_seed`` and prints one
table: held-out NLL per character (nats), bits per character, perplexity,
language accuracy by Bayes' rule, and the novelty of sampled names, for the
recurrent model and for the language-conditioned n-gram baseline that the
same run chose on the validation names -- both on exactly the same test
characters (every character of every test name and its END symbol).

    BIORNN_DATA=../shared/data .venv/bin/python benchmarks/generate_names.py threads=1
    .venv/bin/python benchmarks/generate_names.py --data-dir DIR --out RUN --json cell=gru
    .venv/bin/python benchmarks/generate_names.py --quick    # a smoke run: 1 epoch
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

COLUMNS = (("nll_per_char", "NLL/char"), ("bits_per_char", "bits/char"), ("perplexity", "perplexity"),
           ("language_accuracy", "lang acc"), ("language_balanced_accuracy", "lang bal acc"),
           ("novel_fraction", "novel"), ("test_name_fraction", "test names"), ("mean_sample_length", "len"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", help="data directory (default: $BIORNN_DATA)")
    ap.add_argument("--out", help="keep the run directory here (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="one epoch, a smoke run")
    ap.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_args(argv)

    from biornn.config import resolve
    from biornn.train import train

    cfg = resolve("generate-names", overrides=[*args.overrides, *(["epochs=1"] if args.quick else [])])
    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory())) / "run"
        with contextlib.redirect_stdout(sys.stderr):  # progress to stderr: --json prints nothing but JSON
            metrics = train(cfg, out, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(metrics))
        return 0
    base = metrics["baseline"]
    print(f"generate-names, cell {cfg.cell}, hidden {cfg.hidden_size} x {cfg.num_layers}, {metrics['epochs']} epochs "
          f"(best {metrics['best_epoch']}), {metrics['train_seconds']:.0f} s; test: {metrics['n']['test']} names, "
          f"{metrics['test']['n_chars']} characters incl. END")
    print(f"{'model':28s}" + "".join(f"{label:>13s}" for _, label in COLUMNS))
    for name, row in ((f"recurrent ({cfg.cell})", metrics["test"]),
                      (f"{base['name']} (alpha {base['alpha']:g})", base)):
        print(f"{name:28s}" + "".join(f"{row[key]:13.4f}" for key, _ in COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
