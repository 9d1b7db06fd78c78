"""``biornn env``: versions and threads, for bug reports."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys


def environment() -> dict[str, object]:
    """Versions of biornn, Python, torch, NumPy, and the thread settings."""
    import numpy
    import torch

    from .. import __version__
    from .. import native
    from ..device import process_group_backend
    from ..device import resolve as resolve_device

    return {
        "biornn": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "device_auto": str(resolve_device("auto")),  # what device=auto trains on here
        "distributed_backend": process_group_backend(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_loops": "loaded" if native.available() else (native.status()["error"] or "off"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "BIORNN_DATA": os.environ.get("BIORNN_DATA"),
    }


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions and threads (for bug reports)",
                       description="Print the versions of biornn, Python, torch and NumPy, "
                       "and torch's thread settings.")
    p.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    p.set_defaults(handler=run)


def print_fields(info: dict[str, object], as_json: bool) -> None:
    """``info`` as one JSON object, or as aligned ``key  value`` lines."""
    if as_json:
        print(json.dumps(info))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k.ljust(width)}  {v}")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    print_fields(environment(), args.json)
    return 0
