"""The hand-written BPTT's time loops compiled ("native") against the same loops in Python ("bptt").

For each cell the compiled loops serve and each shape, times a training step
(forward, a sum loss, backward) of ``nn.LSTM``, of the cell on the Python
loops and of the cell on the compiled loops (and, for the 1997 LSTM, on
torch's fused kernel), interleaved in one process; each timing is the mean of
enough calls to last 25 ms; prints medians and the ratios to ``nn.LSTM``.
Needs ``biornn native build`` first.

    .venv/bin/python benchmarks/native_loops.py                       # ecg, names, long
    .venv/bin/python benchmarks/native_loops.py --shapes long-wide --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from biornn import Recurrent, fast, native
from biornn.bench import SHAPES, _calls, _timed, _timed_mean, _train_step

CELLS = ("lstm-peephole", "gru", "fully-recurrent", "lstm1997")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--shapes", default="ecg,names,long")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    if not native.available():
        print(f"native_loops: the compiled loops are not loaded: {native.status()['error']}", file=sys.stderr)
        return 2
    routes = {"bptt": "bptt", "native": "native"}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}; "
          "train-step ms (x nn.LSTM)")
    for shape in args.shapes.split(","):
        B, T, I, H = SHAPES[shape]
        x = torch.randn(B, T, I, requires_grad=True)
        for cell in args.cells.split(","):
            hows = ["nn.LSTM", "bptt", "native"] + (["fused"] if cell == "lstm1997" else [])
            torch.manual_seed(0)
            mods = {h: torch.nn.LSTM(I, H, batch_first=True) if h == "nn.LSTM" else Recurrent(cell, I, H)
                    for h in hows}
            real = fast.method

            def step(h: str) -> None:
                if h != "nn.LSTM":  # force the route for this call
                    fast.method = lambda *a, **k: routes.get(h, h)
                try:
                    _train_step(mods[h], x)
                finally:
                    fast.method = real

            calls = {h: _calls(_timed(lambda: step(h))) for h in hows}
            times: dict[str, list[float]] = {h: [] for h in hows}
            for _ in range(args.repeats):
                for h in hows:
                    times[h].append(_timed_mean(lambda: step(h), calls[h]))
            med = {h: statistics.median(v) * 1e3 for h, v in times.items()}
            cols = "  ".join(f"{h} {med[h]:8.2f} ({med[h] / med['nn.LSTM']:.2f})" for h in hows)
            print(f"{shape:<9} {cell:<15} {cols}   native/bptt {med['native'] / med['bptt']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
