"""Variable lengths on the CPU: torch's fused kernel on a packed sequence against biornn's route.

A batch whose sequences have different lengths reaches torch's LSTM and RNN kernels as a packed
sequence, and on the CPU torch runs packed sequences without oneDNN: a generic loop of per-step
operations, each recorded by autograd.  biornn now sends such calls to its hand-written BPTT
(the compiled loops where they are built and serve the cell, else the Python loops -- the
latter only when gradients are recorded), which also runs only the rows still going at each
step.  For each cell with a fused kernel and each shape, this times a training step (forward,
a sum loss, backward) and an inference (forward under ``no_grad``) of one ``Recurrent`` on the
route of the release before (``before``: every layer and direction called alone, the fused
kernel on the packed sequence; the 1997 LSTM from 32 steps on the compiled loops already) and on
the route it chooses now (``now``), interleaved in one process; each timing is the mean of enough
calls to last 25 ms; prints medians and ``now/before``.  Lengths are drawn uniformly from T/3..T,
one sequence of full length.

    .venv/bin/python benchmarks/variable_lengths.py
    .venv/bin/python benchmarks/variable_lengths.py --cells lstm --shapes names-var --repeats 15 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from biornn import Recurrent, fast
from biornn.bench import _calls, _timed, _timed_mean

CELLS = ("lstm", "lstm1997", "elman")
#: name: (batch, longest length, inputs, hidden, layers, bidirectional)
SHAPES = {
    "names-var": (64, 19, 57, 128, 1, False),  # surnames: 2-19 characters, the names task's batch
    "protein-var": (8, 300, 20, 64, 2, True),  # protein chains, the protein-ss task's stack
    "records-var": (16, 400, 2, 64, 1, False),  # two-lead records of different lengths
}


def _fail(message: str) -> int:
    print(f"variable_lengths.py: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated (default {','.join(CELLS)})")
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated (default {','.join(SHAPES)})")
    ap.add_argument("--repeats", type=int, default=7, help="timings per route, their median is printed (default 7)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    cells = [c for c in args.cells.split(",") if c]
    shapes = [s for s in args.shapes.split(",") if s]
    for c in cells:
        if c not in CELLS:
            return _fail(f"--cells: {c!r} is not one of {', '.join(CELLS)} (the cells with a fused kernel)")
    for s in shapes:
        if s not in SHAPES:
            return _fail(f"--shapes: {s!r} is not one of {', '.join(SHAPES)}")
    if args.repeats < 1 or args.threads < 0:
        return _fail("--repeats must be >= 1 and --threads >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}; ms per call")
    real_method, real_stacks = fast.method, fast.stacks

    def before(cell, lengths=None, truncate=None, steps=None, device=None):
        # the release before routed as if no lengths were given (but for truncation with lengths)
        return real_method(cell, lengths if truncate else None, truncate, steps, device)

    for shape in shapes:
        B, T, I, H, L, bi = SHAPES[shape]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, T, I, generator=g, requires_grad=True)
        lengths = torch.randint(max(1, T // 3), T + 1, (B,), generator=g)
        lengths[0] = T
        for cell in cells:
            torch.manual_seed(0)
            rnn = Recurrent(cell, I, H, num_layers=L, bidirectional=bi)

            def call(route: str, train: bool) -> None:
                if route == "before":
                    fast.method, fast.stacks = before, (lambda *a, **k: False)
                try:
                    if train:
                        out, _ = rnn(x, lengths=lengths)
                        out.sum().backward()
                    else:
                        with torch.no_grad():
                            rnn(x, lengths=lengths)
                finally:
                    fast.method, fast.stacks = real_method, real_stacks
                rnn.zero_grad(set_to_none=True)
                x.grad = None

            cols = []
            for train in (True, False):
                with torch.set_grad_enabled(train):
                    fast.method = before
                    old = rnn.path(lengths=lengths, steps=T)
                    fast.method = real_method
                    new = rnn.path(lengths=lengths, steps=T)
                routes = ("before", "now")
                calls = {r: _calls(_timed(lambda: call(r, train))) for r in routes}
                times: dict[str, list[float]] = {r: [] for r in routes}
                for _ in range(args.repeats):
                    for r in routes:
                        times[r].append(_timed_mean(lambda: call(r, train), calls[r]))
                med = {r: statistics.median(v) * 1e3 for r, v in times.items()}
                cols.append(f"{'train' if train else 'infer'}: before ({old}) {med['before']:8.2f}  now ({new}) "
                            f"{med['now']:8.2f}  now/before {med['now'] / med['before']:.2f}")
            print(f"{shape:<12} {cell:<9} L={L} {'bi ' if bi else 'uni'}  " + "   ".join(cols), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
