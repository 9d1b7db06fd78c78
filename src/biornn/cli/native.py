"""``biornn native``: build the compiled time loops for this machine, or say whether they are there."""

from __future__ import annotations

import argparse
import sys

from .env import print_fields


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "native", help="build or inspect the compiled time loops (peephole/1997 LSTM, GRU, fully recurrent)",
        description="biornn's hand-written BPTT has its time loops in C++ (csrc/native.cpp): one recurrent "
        "product and one fused, vectorised pass per step. `build` compiles them for this machine, torch "
        "version and instruction set into the user cache (about 10 s; needs a C++ compiler and ninja; "
        "run it once after installing biornn; `make install` does); `status` says whether this process loads "
        "them. Without them the same "
        "BPTT runs as Python loops (path 'bptt'), slower, with the same results. BIORNN_NATIVE=0 turns "
        "them off.")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    b = what.add_parser("build", help="compile the loops for this machine (cached; --force rebuilds)",
                        description="Compile csrc/native.cpp into the user cache and check that it loads.")
    b.add_argument("--force", action="store_true", help="rebuild even when a build for this machine exists")
    b.add_argument("--verbose", action="store_true", help="show the compiler's output")
    b.add_argument("--prune", action="store_true",
                   help="also remove the cached builds of other biornn sources for this torch and Python "
                   "(leave them if another checkout of biornn uses the same environment)")
    b.set_defaults(handler=run)
    s = what.add_parser("status", help="whether the loops are built and loaded, and where",
                        description="Print whether the compiled loops are built for this machine and loaded.")
    s.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    s.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .. import native

    if args.what == "build":
        fresh = args.force or not native.library_path().exists()
        try:
            path = native.build(verbose=args.verbose, force=args.force)
        except native.NativeError as e:
            print(f"biornn native build: {e}", file=sys.stderr)
            return 1
        print(f"{'built' if fresh else 'up to date'}: {path}")
        if args.prune:
            removed = native.remove_stale()
            print(f"removed {len(removed)} other build(s) for this torch and Python")
        return 0
    print_fields(native.status(), args.json)
    return 0
