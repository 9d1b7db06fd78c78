"""``biornn evaluate RUN``: a run's test metrics as one JSON object."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="print a run's test metrics as one JSON object",
                       description="Load a run directory's weights and measure them on the task's test split "
                       "(the same split the run used), printing one JSON object.")
    p.add_argument("run", metavar="RUN", help="a run directory written by 'biornn train'")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default: $BIORNN_DATA, then ~/.cache/biornn)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate_run

    print(json.dumps(evaluate_run(args.run, args.data_dir)))
    return 0
