"""Why the step loop iterates ``x.unbind(1)`` and not ``x[:, t]``.

The backward of T separate indexings ``x[:, t]`` writes T full-size (B, T, I)
zero tensors and adds into them (O(T^2) memory traffic); ``unbind``'s
backward is a single stack.  This times forward+backward of the step loop
both ways, interleaved in one run, and prints medians and their ratio.

    .venv/bin/python benchmarks/loop_unbind.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from biornn import Recurrent


def _indexing_scan(cell, x, state, mask=None, truncate=None, traces=False):
    class Indexed:  # what x.unbind(1) yields, made by indexing instead
        def unbind(self, dim: int) -> list[torch.Tensor]:
            return [x[:, t] for t in range(x.shape[1])]

    return _unbind_scan(cell, Indexed(), state, mask, truncate, traces)


_unbind_scan = Recurrent.scan


def main(repeats: int = 5) -> None:
    torch.manual_seed(0)
    print(f"{'B':>4} {'T':>5} {'I':>3} {'H':>4}  {'x[:, t] ms':>10}  {'unbind ms':>9}  ratio")
    for B, T, I, H in [(16, 1000, 1, 64), (64, 140, 1, 128), (64, 1000, 57, 128)]:
        rnn = Recurrent("lstm-peephole", I, H)  # no fused kernel: always the step loop
        x = torch.randn(B, T, I, requires_grad=True)
        times: dict[str, list[float]] = {"index": [], "unbind": []}
        try:
            for _ in range(repeats):
                for name, scan in (("index", _indexing_scan), ("unbind", _unbind_scan)):
                    Recurrent.scan = staticmethod(scan)
                    t0 = time.perf_counter()
                    out, _ = rnn(x)
                    out.sum().backward()
                    times[name].append(time.perf_counter() - t0)
        finally:
            Recurrent.scan = staticmethod(_unbind_scan)
        a, b = (statistics.median(v) * 1e3 for v in times.values())
        print(f"{B:>4} {T:>5} {I:>3} {H:>4}  {a:>10.0f}  {b:>9.0f}  {a / b:.2f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per loop (default 5)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    main(args.repeats)
