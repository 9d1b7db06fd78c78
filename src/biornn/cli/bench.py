"""``biornn bench``: each cell's speed and memory beside torch.nn's, side by side in one run."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..bench import SHAPES
    from .checks import CellList

    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in SHAPES.items())
    p = sub.add_parser(
        "bench",
        help="time every cell's training step and inference beside torch.nn's",
        description="Time a training step (forward + backward) and inference of every cell, on the route "
        "biornn picks for it (fused torch kernel, hand-written BPTT, or step loop), beside torch.nn.LSTM, "
        "GRU and RNN, interleaved in one process; print medians, achieved GFLOP/s (matrix products only), "
        "the ratio to nn.LSTM and to the cell's torch twin, the first call's time, the peak memory of a "
        f"training step, and streaming inference (batch 1, one step per call). Shapes BxTxIxH: {shapes}. "
        "Read the ratios, not the absolute times: the machine may be shared.",
    )
    p.add_argument("--cells", action=CellList, metavar="CELL",
                   help="biornn cells to measure, by spaces or commas (default: all)")
    p.add_argument("--shapes", metavar="SHAPE[,SHAPE...]",
                   help="shape names or BxTxIxH (default: all four named shapes)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per implementation (default 5)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true",
                   help="a short run: a tiny shape (4x16x3x8), 2 repeats, 20 streaming steps")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--autocast", action="store_true",
                   help="also time every training step under torch.autocast('cpu', dtype=torch.bfloat16), "
                   "interleaved with the float32 ones, as a ratio to nn.LSTM in float32")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .. import bench

    if args.shapes is not None and not [v for v in args.shapes.split(",") if v.strip()]:  # '' or ','
        raise ValueError(f"--shapes {args.shapes!r}: names nothing; give at least one (or leave --shapes out)")
    cells = args.cells
    if args.shapes:
        shapes = dict(bench.parse_shape(s) for s in args.shapes.split(",") if s)
    else:
        shapes = dict(bench.QUICK_SHAPES) if args.quick else None
    repeats = 2 if args.quick and args.repeats == 5 else args.repeats
    if args.threads is not None:
        from .checks import threads

        threads(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if sys.stderr.isatty() else (lambda s: None)
    report = bench.run(cells, shapes, repeats=repeats, stream_steps=20 if args.quick else 200, log=log,
                       autocast=args.autocast)
    print(json.dumps(report) if args.json else bench.format_table(report))
    return 0
