"""``biornn check``: every cell against its references, as a table."""

from __future__ import annotations

import argparse
import json

#: what the tests also require: fp32 agreement with torch, float64 agreement with the NumPy BPTT
TWIN_TOL, BPTT_TOL, FAST_TOL = 1e-5, 1e-8, 1e-5


def seed(text: str) -> int:
    """argparse type: a seed torch accepts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in 0 .. 2**32-1, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="check every cell against torch.nn, the NumPy BPTT, the fast path and gradcheck",
        description="Run every cell (or the ones named) on a random batch with variable lengths and "
        "print the largest difference from its torch.nn twin (float32, outputs and gradients), "
        "from the hand-written NumPy BPTT (float64, relative), and between the fast path (fused kernel or "
        "hand-written BPTT) and "
        f"the step loop, and whether torch.autograd.gradcheck passes on the step loop. Exit 1 if any "
        f"difference exceeds its tolerance ({TWIN_TOL:g}, {BPTT_TOL:g}, {FAST_TOL:g}) or a gradcheck fails.",
    )
    p.add_argument("cells", nargs="*", metavar="CELL", help="cell names (default: all)")
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 .. 2**32-1 (default 0)")
    p.add_argument("--json", action="store_true", help="one JSON object per cell instead of a table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..cells import CELL_NAMES
    from ..verify import as_dicts, check_cells, format_table

    names = tuple(args.cells) or CELL_NAMES
    for n in names:
        if n not in CELL_NAMES:
            raise ValueError(f"unknown cell {n!r}; choose from {', '.join(CELL_NAMES)}")
    rows = check_cells(names, seed=args.seed)
    ok = all(
        (r.twin_max_abs is None or r.twin_max_abs <= TWIN_TOL)
        and r.bptt_max_rel <= BPTT_TOL
        and (r.fast_max_abs is None or r.fast_max_abs <= FAST_TOL)
        and r.gradcheck
        for r in rows
    )
    if args.json:
        for d in as_dicts(rows):
            print(json.dumps(d))
    else:
        print(format_table(rows))
        print(f"\n{'all within tolerance' if ok else 'SOME CHECKS FAILED'} "
              f"(twin <= {TWIN_TOL:g}, BPTT <= {BPTT_TOL:g}, fast <= {FAST_TOL:g}, gradcheck passes)")
    return 0 if ok else 1
