"""``biornn serve RUN [--host 127.0.0.1] [--port 8000]``: a run's model over HTTP."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..serve import MAX_BODY_BYTES, MAX_EXPLAIN, MAX_EXPLAIN_WORK, MAX_LENGTH, MAX_SEQUENCES

    p = sub.add_parser("serve", help="serve a run's predictions over HTTP (FastAPI + uvicorn)",
                       description="Load a run directory's classifier once and serve it: a web page at / "
                       "(prediction, saliency, probability after each step), POST /predict "
                       "(JSON {\"sequences\": [...], \"top\": 3}), POST /explain, GET /model, GET /healthz, "
                       "OpenAPI at /docs. Classifier runs: names, splice, promoters, and classify on the user's files "
                       "(sequences as strings; numeric series, e.g. an ECG, as arrays of numbers, with an upload "
                       "on the page). "
                       "Binds 127.0.0.1 unless --host says otherwise. Needs pip install 'biornn[serve]'. "
                       "Stop it with Ctrl-C (or SIGTERM).")
    p.add_argument("run", metavar="RUN", help="a run directory written by 'biornn train'")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-sequences", type=int, default=MAX_SEQUENCES,
                   help=f"inputs per request (default {MAX_SEQUENCES})")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH,
                   help=f"characters, symbols or samples per input (default {MAX_LENGTH})")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                   help=f"bytes per request body (default {MAX_BODY_BYTES})")
    p.add_argument("--max-explain", type=int, default=MAX_EXPLAIN,
                   help=f"inputs per /explain request (default {MAX_EXPLAIN}: each costs many passes; at most "
                        f"--max-sequences)")
    p.add_argument("--max-explain-work", type=int, default=MAX_EXPLAIN_WORK,
                   help=f"symbol steps of the model per /explain request, T x (steps + 1 + T) summed over its "
                   f"inputs of T symbols (default {MAX_EXPLAIN_WORK}: a few seconds of one core; a request "
                   f"over it is refused with 422, so that none holds the model for minutes)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..serve import serve
    from ..errors import Terminated

    try:
        serve(args.run, args.host, args.port, max_sequences=args.max_sequences, max_length=args.max_length,
              max_body_bytes=args.max_body_bytes, max_explain=args.max_explain,
              max_explain_work=args.max_explain_work)
    except Terminated:  # uvicorn shut down cleanly, then passed the SIGTERM on: stopping is the way a server ends
        pass
    return 0
