"""``biornn bench``: every cell's speed beside torch.nn's, measured side by side in one run.

For each shape (batch B, length T, input I, hidden H) and each implementation
-- biornn's cells on whatever route :class:`biornn.Recurrent` picks
(``fused``, ``native``, ``bptt`` or ``loop``), and ``torch.nn.RNN``/``LSTM``/``GRU``
-- it measures

- a training step: forward, a sum loss, backward (median of ``repeats``
  timings, each the mean of enough back-to-back calls to last at least
  ``MIN_TIMING_S``: a millisecond-long step timed once is mostly jitter);
- inference: forward under ``torch.no_grad()`` (the same way);
- warm-up: the first training step of a fresh module (what a user waits for
  before the first step: kernel selection, buffer allocation);
- peak memory of a training step: the peak resident set size above the
  level before the step (Linux: ``/proc/self/clear_refs`` resets the
  high-water mark; glibc is told to return freed blocks to the system, so
  the high-water mark follows the live tensors).  This changes how every
  later allocation of 128 KiB or more gets its memory (fresh pages, about
  1 us per 4 KiB page here, on every call), which is not how training runs:
  so memory is measured in a pass of its own after all the timings;
- streaming: one step at a time, batch 1, the state carried between calls
  (microseconds per step).

Implementations are interleaved -- repeat r times every implementation once
-- so that a machine that slows down or speeds up during the run affects all
of them alike; the ratios (to ``nn.LSTM`` at the same shape, and to the cell's
torch twin) are what to read, not the absolute times.

Achieved GFLOP/s counts the matrix products only: a step of a layer with R
gate rows reading I inputs and H recurrent units costs 2 B R (I + H) FLOPs
forward (the fully recurrent net adds its feedback and read-out products), a
training step 3 times that (backward = twice forward), and the 1997 LSTM is
credited with its 3 gate groups whatever kernel runs it.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from . import __version__
from .cells import CELL_NAMES
from .recurrent import Recurrent

#: the issue's shapes: (B, T, I, H)
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "ecg": (64, 140, 1, 128),
    "names": (64, 12, 57, 128),
    "long": (16, 1000, 1, 64),
    "long-wide": (64, 1000, 1, 256),
}
QUICK_SHAPES = {"tiny": (4, 16, 3, 8)}

TWINS: dict[str, str] = {"elman": "nn.RNN", "elman-relu": "nn.RNN-relu", "irnn": "nn.RNN-relu",
                         "lstm": "nn.LSTM", "gru": "nn.GRU"}
TORCH_IMPLS = ("nn.LSTM", "nn.GRU", "nn.RNN", "nn.RNN-relu")
FLOPS_FORMULA = ("matrix products only: 2*B*T*R*(I+H) per forward (R gate rows: 1 Elman, 3 GRU and "
                 "1997 LSTM, 4 LSTM; fully recurrent 2*B*T*(H*(I+H+O) + O*H)); training step = 3x forward")


@dataclass
class Result:
    """One implementation at one shape."""

    shape: str
    B: int
    T: int
    I: int
    H: int
    impl: str
    path: str
    train_ms: float
    infer_ms: float
    train_gflops: float
    infer_gflops: float
    vs_lstm: float
    vs_twin: float | None
    twin: str | None
    warmup_s: float
    peak_mib: float | None
    #: with ``autocast``: the training step under ``torch.autocast("cpu", dtype=torch.bfloat16)``, and
    #: its ratio to nn.LSTM's float32 step in the same run
    autocast_train_ms: float | None = None
    autocast_vs_lstm: float | None = None


def parse_shape(text: str) -> tuple[str, tuple[int, int, int, int]]:
    """A shape name (``ecg``, ``names``, ``long``, ``long-wide``) or ``BxTxIxH``."""
    if text in SHAPES:
        return text, SHAPES[text]
    if text in QUICK_SHAPES:
        return text, QUICK_SHAPES[text]
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)x(\d+)", text)
    if not m or any(int(v) <= 0 for v in m.groups()):
        raise ValueError(f"unknown shape {text!r}; use one of {', '.join(SHAPES)} or BxTxIxH "
                         f"with positive integers (e.g. 64x140x1x128)")
    B, T, I, H = (int(v) for v in m.groups())
    return text, (B, T, I, H)


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"MemAvailable:\s+(\d+) kB", f.read())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def estimate_bytes(B: int, T: int, I: int, H: int) -> int:
    """A generous estimate of a training step's memory (float32): what the
    widest implementation keeps per step (inputs, 4 gate rows, states and their
    gradients, about 16 H-sized buffers, and 128 values a step whatever H: at
    H = 1 a step's small buffers and workspaces outweigh its states) plus the weights."""
    return 4 * (B * T * (2 * I + 16 * H + 128) + 8 * H * (I + H))


def check_fits(shapes: dict[str, tuple[int, int, int, int]]) -> None:
    """``ValueError`` before starting when a shape would not fit in the memory available."""
    avail = _available_bytes()
    for name, (B, T, I, H) in shapes.items():
        need = estimate_bytes(B, T, I, H)
        if avail is not None and need > 0.8 * avail:
            raise ValueError(f"shape {name} ({B}x{T}x{I}x{H}) needs about {need / 2**30:.1f} GiB for a training "
                             f"step; {avail / 2**30:.1f} GiB is available")


def flops(cell: str, B: int, T: int, I: int, H: int) -> float:
    """Forward FLOPs of the matrix products of one layer over a batch (see the module docstring)."""
    if cell == "fully-recurrent":
        O = H
        return 2.0 * B * T * (H * (I + H + O) + O * H)
    rows = {"lstm": 4, "lstm-peephole": 4, "nn.LSTM": 4, "gru": 3, "nn.GRU": 3, "lstm1997": 3}.get(cell, 1)
    return 2.0 * B * T * rows * H * (I + H)


def _build(impl: str, I: int, H: int) -> nn.Module:
    if impl == "nn.LSTM":
        return nn.LSTM(I, H, batch_first=True)
    if impl == "nn.GRU":
        return nn.GRU(I, H, batch_first=True)
    if impl in ("nn.RNN", "nn.RNN-relu"):
        return nn.RNN(I, H, nonlinearity="relu" if impl.endswith("relu") else "tanh", batch_first=True)
    return Recurrent(impl, I, H)


def _path(impl: str, module: nn.Module, steps: int | None = None) -> str:
    return "torch" if impl in TORCH_IMPLS else module.path(steps=steps)


class _PeakRSS:
    """Peak resident memory of a piece of work, above the level before it (Linux only)."""

    def __init__(self) -> None:
        self.ok = sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")
        if self.ok:
            # freed blocks of 128 KiB and up go back to the system at once, so the high-water mark
            # follows the live tensors.  It also makes every such buffer fault its pages in anew on
            # every call (about 1 us per 4 KiB page here), which is not how training runs: so
            # run() measures memory only after all the timings, in a pass of its own.
            try:
                self._libc = ctypes.CDLL("libc.so.6")
                self._libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
            except (OSError, AttributeError):
                self.ok = False

    @staticmethod
    def _kib(key: str) -> int:
        with open("/proc/self/status") as f:
            return int(re.search(key + r":\s+(\d+) kB", f.read()).group(1))

    def measure(self, work: Callable[[], Any]) -> float | None:
        if not self.ok:
            work()
            return None
        gc.collect()
        self._libc.malloc_trim(0)  # what the timings left free in the heap goes back to the system
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the high-water mark to the current RSS
        except OSError:
            self.ok = False
            work()
            return None
        base = self._kib("VmRSS")
        work()
        return max(0, self._kib("VmHWM") - base) / 1024


def _train_step(module: nn.Module, x: torch.Tensor) -> None:
    out = module(x)[0]
    out.sum().backward()
    module.zero_grad(set_to_none=True)
    x.grad = None


def _train_step_autocast(module: nn.Module, x: torch.Tensor) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)[0]
    out.float().sum().backward()
    module.zero_grad(set_to_none=True)
    x.grad = None


def _infer(module: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        module(x)


def _sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits (tiny shapes give tiny numbers, never a rounded 0)."""
    return float(f"{x:.{digits}g}")


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


#: seconds one timing should last at least (calls are repeated within it)
MIN_TIMING_S = 0.025


def _calls(seconds: float) -> int:
    """How many calls of a function that took ``seconds`` make one timing."""
    return max(1, min(200, int(MIN_TIMING_S / max(seconds, 1e-9))))


def _timed_mean(fn: Callable[[], Any], n: int) -> float:
    """Mean seconds per call over ``n`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def run(
    cells: list[str] | None = None,
    shapes: dict[str, tuple[int, int, int, int]] | None = None,
    repeats: int = 5,
    stream_steps: int = 200,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
    autocast: bool = False,
) -> dict[str, Any]:
    """Measure; return the report (what ``--json`` prints).

    Parameters
    ----------
    cells : list of str, optional
        biornn cell names (default all); ``nn.LSTM`` (the reference) and the
        twins of the chosen cells are always measured.
    shapes : dict of name -> (B, T, I, H), optional
        Default :data:`SHAPES`.
    repeats : int
        Timed repeats of each implementation (after one warm-up call).
    stream_steps : int
        Steps of the streaming measurement (0 to skip it).
    autocast : bool
        Also time every training step under CPU autocast (bfloat16), interleaved with the others.
    """
    cells = list(CELL_NAMES) if cells is None else cells
    for c in cells:
        if c not in CELL_NAMES:
            raise ValueError(f"unknown cell {c!r}; cells: {', '.join(CELL_NAMES)}")
    shapes = dict(SHAPES) if shapes is None else shapes
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    check_fits(shapes)
    impls = ["nn.LSTM", *[t for t in ("nn.GRU", "nn.RNN", "nn.RNN-relu") if t in {TWINS.get(c) for c in cells}],
             *cells]
    results: list[Result] = []
    for shape_name, (B, T, I, H) in shapes.items():
        log(f"shape {shape_name} (B={B}, T={T}, I={I}, H={H}) ...")
        torch.manual_seed(seed)
        x = torch.randn(B, T, I, requires_grad=True)
        modules, warm = {}, {}
        for impl in impls:
            torch.manual_seed(seed)
            modules[impl] = _build(impl, I, H)
            warm[impl] = _timed(lambda: _train_step(modules[impl], x))  # the first call, from cold
        train: dict[str, list[float]] = {i: [] for i in impls}
        infer: dict[str, list[float]] = {i: [] for i in impls}
        # each timing is the mean of enough calls to last about MIN_TIMING_S (tiny shapes take
        # a millisecond, where one call's timing is mostly the machine's jitter)
        n_train = {i: _calls(_timed(lambda: _train_step(modules[i], x))) for i in impls}
        n_infer = {i: _calls(_timed(lambda: _infer(modules[i], x))) for i in impls}
        mixed: dict[str, list[float]] = {i: [] for i in impls}
        n_mixed = {i: _calls(_timed(lambda: _train_step_autocast(modules[i], x))) for i in impls} if autocast else {}
        for _ in range(repeats):  # interleaved: drift hits every implementation alike
            for impl in impls:
                train[impl].append(_timed_mean(lambda: _train_step(modules[impl], x), n_train[impl]))
            for impl in n_mixed:
                mixed[impl].append(_timed_mean(lambda: _train_step_autocast(modules[impl], x), n_mixed[impl]))
            for impl in impls:
                infer[impl].append(_timed_mean(lambda: _infer(modules[impl], x), n_infer[impl]))
        med_train = {i: statistics.median(v) for i, v in train.items()}
        med_infer = {i: statistics.median(v) for i, v in infer.items()}
        for impl in impls:
            f = flops(impl, B, T, I, H)
            twin = TWINS.get(impl)
            results.append(Result(
                shape=shape_name, B=B, T=T, I=I, H=H, impl=impl, path=_path(impl, modules[impl], steps=T),
                train_ms=_sig(med_train[impl] * 1e3), infer_ms=_sig(med_infer[impl] * 1e3),
                train_gflops=_sig(3 * f / med_train[impl] / 1e9),
                infer_gflops=_sig(f / med_infer[impl] / 1e9),
                vs_lstm=round(med_train[impl] / med_train["nn.LSTM"], 3),
                vs_twin=round(med_train[impl] / med_train[twin], 3) if twin else None, twin=twin,
                warmup_s=_sig(warm[impl]), peak_mib=None,
                **({"autocast_train_ms": _sig(statistics.median(mixed[impl]) * 1e3),
                    "autocast_vs_lstm": round(statistics.median(mixed[impl]) / med_train["nn.LSTM"], 3)}
                   if autocast else {}),
            ))
        del modules, x
    streaming = _streaming(impls, stream_steps, repeats, seed) if stream_steps else []
    # memory last: _PeakRSS changes how the allocator returns memory for the rest of the process
    peak = _PeakRSS()
    by_key = {(r.shape, r.impl): r for r in results}
    for shape_name, (B, T, I, H) in shapes.items():
        torch.manual_seed(seed)
        x = torch.randn(B, T, I, requires_grad=True)
        for impl in impls:
            torch.manual_seed(seed)
            module = _build(impl, I, H)
            _train_step(module, x)  # buffers made once (oneDNN's primitives, the compiled loops' set-up)
            mib = peak.measure(lambda: _train_step(module, x))
            by_key[shape_name, impl].peak_mib = None if mib is None else round(mib, 1)
            del module
        del x
    return {
        "biornn_version": __version__,
        "torch_version": torch.__version__,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "native_loops": native_note(),
        "repeats": repeats,
        "flops_formula": FLOPS_FORMULA,
        "shapes": {k: dict(zip("BTIH", v)) for k, v in shapes.items()},
        "results": [asdict(r) for r in results],
        "streaming": streaming,
    }


def _streaming(impls: list[str], steps: int, repeats: int, seed: int, I: int = 1, H: int = 128) -> list[dict]:
    """Microseconds per step, one step at a time at batch 1 with the state carried (no grad)."""
    torch.manual_seed(seed)
    xs = torch.randn(steps, 1, 1, I)
    modules = {impl: _build(impl, I, H) for impl in impls}

    def stream(m: nn.Module) -> None:
        state = None
        with torch.no_grad():
            for x in xs:
                _, state = m(x, state)

    times: dict[str, list[float]] = {i: [] for i in impls}
    for m in modules.values():
        stream(m)
    for _ in range(repeats):
        for impl, m in modules.items():
            times[impl].append(_timed(lambda: stream(m)) / steps)
    med = {i: statistics.median(v) for i, v in times.items()}
    return [{"impl": i, "I": I, "H": H, "path": _path(i, modules[i], steps=1), "us_per_step": _sig(med[i] * 1e6),
             "vs_lstm": round(med[i] / med["nn.LSTM"], 3)} for i in impls]


def native_note() -> str:
    """Whether the compiled loops ran (path ``native``), or why not."""
    from . import native

    if native.available():
        return "loaded (path native)"
    return f"not loaded, the Python loops ran instead (path bptt): {native.status()['error']}"


def format_table(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    lines = [f"biornn {report['biornn_version']}, torch {report['torch_version']}, {report['device']} "
             f"({report['cpu']}), {report['threads']} threads, median of {report['repeats']}",
             f"GFLOP/s: {report['flops_formula']}"]
    if "native_loops" in report:
        lines.append(f"compiled loops: {report['native_loops']}")
    lines.append("")
    head = (f"{'shape':<10} {'impl':<15} {'path':<6} {'train ms':>9} {'GFLOP/s':>8} {'x nn.LSTM':>9} "
            f"{'x twin':>7} {'infer ms':>9} {'warm-up s':>9} {'peak MiB':>9}")
    lines += [head, "-" * len(head)]
    for r in report["results"]:
        twin = f"{r['vs_twin']:.2f}" if r["vs_twin"] is not None else "-"
        mem = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
        lines.append(f"{r['shape']:<10} {r['impl']:<15} {r['path']:<6} {r['train_ms']:>9.2f} "
                     f"{r['train_gflops']:>8.1f} {r['vs_lstm']:>9.2f} {twin:>7} {r['infer_ms']:>9.2f} "
                     f"{r['warmup_s']:>9.3f} {mem:>9}")
    if any(r.get("autocast_train_ms") is not None for r in report["results"]):
        lines += ["", "training step under torch.autocast('cpu', dtype=torch.bfloat16), same run",
                  f"{'shape':<10} {'impl':<15} {'train ms':>9} {'x nn.LSTM':>9}  (nn.LSTM in float32)"]
        for r in report["results"]:
            lines.append(f"{r['shape']:<10} {r['impl']:<15} {r['autocast_train_ms']:>9.2f} "
                         f"{r['autocast_vs_lstm']:>9.2f}")
    if report["streaming"]:
        s0 = report["streaming"][0]
        lines += ["", f"streaming: one step at a time, batch 1, I={s0['I']}, H={s0['H']}",
                  f"{'impl':<15} {'path':<6} {'us/step':>9} {'x nn.LSTM':>9}"]
        for s in report["streaming"]:
            lines.append(f"{s['impl']:<15} {s['path']:<6} {s['us_per_step']:>9.1f} {s['vs_lstm']:>9.2f}")
    return "\n".join(lines)
