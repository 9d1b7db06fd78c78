"""``biornn serve`` under load: 10,000 requests from 8 concurrent clients on 127.0.0.1.

Starts ``biornn serve RUN`` as a subprocess on a free port of 127.0.0.1,
sends a warm-up and then ``--requests`` requests from ``--concurrency``
client threads (one keep-alive connection each), a seeded mix of good
requests (``/predict`` with 1..8 made-up names, ``/explain`` with one,
``/healthz``, ``/model``) and 30% malformed ones (invalid JSON, wrong types,
empty inputs, huge inputs, unknown fields, wrong methods, unknown paths,
wrong content types), checks every answer, stops the server with SIGINT, and
prints requests per second, the status counts, 5xx, transport errors
(dropped connections, timeouts), answers not as expected, latency
p50/p95/p99 per kind of request, and the server's resident memory at start,
after the warm-up, at its peak and at the end.  The harness is
:mod:`biornn.serve_load` (the load test ``tests/test_serve_load.py`` runs the
same one, shorter).

Without RUN it first trains the default names model for one epoch on the
real data (``BIORNN_DATA``, ``threads=1``) in a temporary directory: the
latency depends on the model's size, not on its accuracy.

    BIORNN_DATA=../shared/data .venv/bin/python benchmarks/serve_load.py
    .venv/bin/python benchmarks/serve_load.py RUN --requests 10000 --concurrency 8 --json
    .venv/bin/python benchmarks/serve_load.py RUN --serve-arg=--max-body-bytes=65536
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from biornn.serve_load import format_report, load_test


def train_names(out: Path) -> Path:
    """The default names model, one epoch on the real data, one thread: a run to serve."""
    from biornn.cli.main import main

    code = main(["train", "names", "--out", str(out), "--no-progress", "epochs=1", "threads=1"])
    if code != 0:
        raise SystemExit(f"training the names run failed (exit {code}); pass a RUN directory instead")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", metavar="RUN", help="a classification run (default: train a names run)")
    p.add_argument("--requests", type=int, default=10_000, help="measured requests (default 10000)")
    p.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up requests (default: a tenth, 50..1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="the server's OMP_NUM_THREADS (default 1: the machine is shared; 0: torch's choice)")
    p.add_argument("--serve-arg", action="append", default=[],
                   help="one more option for biornn serve, e.g. --serve-arg=--max-length=200 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        run = Path(args.run) if args.run else train_names(Path(tmp) / "names-run")
        report = load_test(run, requests=args.requests, concurrency=args.concurrency, warmup=args.warmup,
                           seed=args.seed, server_args=args.serve_arg, torch_threads=args.torch_threads or None)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    clean = (report["server_errors"] == 0 and not report["transport_errors"] and report["not_as_expected"] == 0
             and report["alive_after"] and report["exit_status"] == 0 and report["log_tracebacks"] == 0)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
