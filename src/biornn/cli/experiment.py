"""``biornn experiment long-lag``: the adding problem over cells, lags and clipping."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..experiments import DEFAULT, FORGET_BIAS, QUICK
    from .checks import CellList

    p = sub.add_parser("experiment", help="long-time-lag experiments (the adding problem)",
                       description="Reproducible experiments behind the lectures' claims.")
    what = p.add_subparsers(dest="what", metavar="EXPERIMENT", parser_class=type(p))
    what.required = True
    e = what.add_parser(
        "long-lag", help="the adding problem for each cell, lag and clipping: success table and plots",
        description="Train every --cells on the adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & "
        "Hinton 2015) at every lag T in --lags, with and without gradient clipping; a run is solved when its test "
        "MSE falls below 0.01 (the trivial baseline scores 0.167). Also: the gradient flow of each cell at "
        "initialisation, and an exploding-gradient run (an IRNN with W_hh = --explode-scale * I, SGD) with and "
        "without clipping. Writes long_lag.json, success.png, gradient_flow.png and exploding.png into --out and "
        f"prints the success table. Default grid: lags {' '.join(map(str, DEFAULT['lags']))}, {DEFAULT['steps']} "
        f"steps, hidden {DEFAULT['hidden']} (about 9 minutes on 2 cores with --jobs 2, 20 with --jobs 1); --quick: lags "
        f"{' '.join(map(str, QUICK['lags']))}, {QUICK['steps']} steps, hidden {QUICK['hidden']} (about 25 seconds with --threads 1, under a minute). "
        "A grid that would not fit in memory is refused before it starts.")
    e.add_argument("--cells", action=CellList, metavar="CELL",
                   help=f"cells, by spaces or commas (default: {' '.join(DEFAULT['cells'])})")
    e.add_argument("--lags", nargs="+", type=int, metavar="T",
                   help=f"sequence lengths T (default {' '.join(map(str, DEFAULT['lags']))}; "
                        f"--quick: {' '.join(map(str, QUICK['lags']))})")
    e.add_argument("--steps", type=int, help=f"most updates per run, stopping early when solved (default "
                                             f"{DEFAULT['steps']}; --quick: {QUICK['steps']})")
    e.add_argument("--hidden", type=int, help=f"hidden units (default {DEFAULT['hidden']}; --quick: {QUICK['hidden']})")
    e.add_argument("--batch", type=int, help=f"sequences per update (default {DEFAULT['batch']})")
    e.add_argument("--clip", type=float, default=1.0, help="gradient-norm threshold of the clipped runs (default 1)")
    e.add_argument("--clipping", choices=("both", "on", "off"), default="both",
                   help="run with clipping, without, or both (default)")
    e.add_argument("--lr", nargs="+", metavar="CELL=LR", default=[],
                   help="Adam learning rate per cell, e.g. irnn=1e-4 (defaults in biornn.experiments.LEARNING_RATES)")
    e.add_argument("--forget-bias", type=float, default=FORGET_BIAS,
                   help=f"forget-gate bias of 'lstm' (default {FORGET_BIAS:g})")
    e.add_argument("--explode-scale", type=float, default=1.1,
                   help="W_hh = scale * I of the exploding IRNN run (default 1.1; 0 skips it)")
    e.add_argument("--quick", action="store_true", help="the small grid (defaults above)")
    e.add_argument("--seed", type=int, default=0, help="random seed of the data and the weights (default 0)")
    e.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    e.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each in its own process with one thread (default 1; "
                        "--jobs 2 on a 2-core machine about halves the time; the results do not change)")
    e.add_argument("--json", action="store_true",
                   help="print one JSON object (the summary and the success table) instead of the Markdown "
                        "table and the summary line")
    e.add_argument("--out", metavar="DIR", default="experiments/long-lag",
                   help="output directory (default experiments/long-lag)")
    e.set_defaults(handler=run)


def _rates(items: list[str]) -> dict[str, float]:
    from ..cells import CELL_NAMES

    rates = {}
    for item in items:
        cell, sep, value = item.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not sep or not 0 < rate <= 10:
            raise ValueError(f"--lr {item!r}: expected CELL=LR with 0 < LR <= 10")
        if cell not in CELL_NAMES:  # a misspelt cell would silently keep its default rate
            raise ValueError(f"--lr {item!r}: unknown cell {cell!r}; cells: {', '.join(CELL_NAMES)}")
        rates[cell] = rate
    return rates


def run(args: argparse.Namespace) -> int:
    import torch

    from ..experiments import DEFAULT, QUICK, format_table, long_lag_grid

    base = QUICK if args.quick else DEFAULT
    from .checks import threads

    threads(args.threads)
    if args.jobs < 1:
        raise ValueError("--jobs must be >= 1")
    torch.set_num_threads(args.threads)
    for name in ("steps", "hidden", "batch"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name} must be positive, got {value}")
    from .checks import finite, seed

    for option, value in (("--clip", args.clip), ("--explode-scale", args.explode_scale),
                          ("--forget-bias", args.forget_bias)):
        finite(option, value)  # NaN passes every comparison below
    seed("--seed", args.seed)
    if args.clip <= 0:
        raise ValueError("--clip must be positive")
    if args.clipping == "off" and args.clip != 1.0:
        raise ValueError("--clip sets the threshold of the clipped runs; --clipping off runs none")
    if args.explode_scale < 0:
        raise ValueError("--explode-scale must be >= 0")
    _rates(args.lr)  # checked before the grid starts
    clipping = {"both": (False, True), "on": (True,), "off": (False,)}[args.clipping]
    lags = args.lags or base["lags"]
    result = long_lag_grid(
        args.out, cells=args.cells or base["cells"], lags=lags, steps=args.steps or base["steps"],
        hidden=args.hidden or base["hidden"], batch=args.batch or base["batch"], clip=args.clip,
        clipping=clipping, lr=_rates(args.lr), forget_bias=args.forget_bias, explode_scale=args.explode_scale,
        seed=args.seed, jobs=args.jobs, log=lambda line: print(line, file=sys.stderr, flush=True))
    summary = {"out": args.out, "seconds": result["seconds"],
               "solved": sorted({f"{r['cell']}@{r['lag']}" for r in result["runs"] if r["solved"]})}
    if args.json:  # one JSON object alone, for programs: the summary and the success table
        print(json.dumps({**summary, "table": result["table"]}))
    else:
        print(format_table(result["table"], sorted(set(lags))))
        print(json.dumps(summary))
    return 0
