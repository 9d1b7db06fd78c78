"""torch's BLAS (addmm/mm) against oneDNN's matmul for the products a recurrent layer does.

biornn.fast and csrc/native.cpp send float32 products to oneDNN
(``mkldnn::_linear_pointwise``, what torch.compile calls on CPU) above a size
and to torch's BLAS below it.  This times both, interleaved, at the shapes of
``biornn bench``: the per-step recurrent product (B x H times H x G), its
backward (B x G times G x H), and the products over all steps (input
projection T*B x I times I x G, input gradient T*B x G times G x I, and the
recurrent weight's gradient dA^T h over all steps); prints
medians in microseconds and the ratio oneDNN / BLAS (below 1: oneDNN faster).

    .venv/bin/python benchmarks/products.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from biornn.bench import SHAPES

GATES = 4  # an LSTM's gate rows


def _time(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _compare(shape: str, name: str, macs: int, blas, onednn, atol: float) -> None:
    """Check that both give the same product, time them interleaved, print one line."""
    torch.testing.assert_close(onednn(), blas(), rtol=1e-4, atol=atol)
    n = max(1, min(500, int(0.02 / max(_time(blas, 1), 1e-7))))
    t: dict[str, list[float]] = {"blas": [], "onednn": []}
    for _ in range(7):
        t["blas"].append(_time(blas, n))
        t["onednn"].append(_time(onednn, n))
    med = {k: statistics.median(v) * 1e6 for k, v in t.items()}
    print(f"{shape:<9} {name:<24} {macs / 1e6:8.2f}M MACs  blas {med['blas']:9.1f}  "
          f"onednn {med['onednn']:9.1f}  ratio {med['onednn'] / med['blas']:.2f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            ap.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    lp = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if lp is None or not torch.backends.mkldnn.is_available():
        print("products: this torch has no oneDNN matmul operator", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median us, ratio oneDNN/BLAS")
    for shape, (B, T, I, H) in SHAPES.items():
        G = GATES * H
        cases = {
            "step forward  h W_hh^T": (torch.randn(B, H), torch.randn(G, H)),
            "step backward dA W_hh": (torch.randn(B, G), torch.randn(H, G)),
            "projection    x W_ih^T": (torch.randn(T * B, I), torch.randn(G, I)),
            "input grad    dA W_ih": (torch.randn(T * B, G), torch.randn(I, G)),
        }
        for name, (a, w) in cases.items():
            wt = w.t()
            _compare(shape, name, a.shape[0] * w.shape[0] * w.shape[1],
                     lambda: a @ wt, lambda: lp(a, w, None, "none", [], ""), atol=1e-3)
        # the recurrent weight's gradient over all steps, dA^T h_prev (G x H): the BLAS's d^T a
        # against oneDNN's (a^T d)^T as biornn.fast._grad_w computes it (a^T copied, d viewed)
        d, a = torch.randn(T * B, G), torch.randn(T * B, H)
        _compare(shape, "weight grad  dA^T h", T * B * G * H, lambda: d.t() @ a,
                 lambda: lp(a.t().contiguous(), d.t(), None, "none", [], "").t().contiguous(), atol=1e-2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
