"""``biornn generate RUN``: sample surnames from a generate-names run, one JSON object per line."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="sample sequences from a generate-names run: one JSON object per line",
                       description="Sample surnames from a generate-names run directory, conditioned on a "
                       "language, one character at a time at a temperature (0: greedy). Prints one JSON object "
                       "per sample: condition, name, length, nll_per_char (nats, under the model) and novel "
                       "(neither empty nor a training name).")
    p.add_argument("run", metavar="RUN", help="a run directory written by 'biornn train generate-names'")
    p.add_argument("--condition", metavar="LANG", help="the language to sample (default: every language)")
    p.add_argument("-n", type=int, default=10, metavar="N", help="samples per language (default 10)")
    p.add_argument("--temperature", type=float, metavar="T",
                   help="sampling temperature: 0 (greedy) or 0.001 to 100 (default: the run's temperature)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the draws (default 0)")
    p.add_argument("--max-length", type=int, metavar="L",
                   help="cut a sample at L characters, 1..1000 (default: the run's max_length, or 30)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..tasks.generate_names import generate

    rows = generate(args.run, args.condition, n=args.n, temperature=args.temperature, seed=args.seed,
                    max_length=args.max_length)
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    return 0
