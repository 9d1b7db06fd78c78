"""``biornn export RUN --format onnx|torchscript [--out FILE]``: a run's model as one portable file."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run's model to ONNX or TorchScript (dynamic batch and length)",
                       description="Export a run directory's classifier to ONNX or TorchScript with a dynamic "
                       "batch size and sequence length: inputs 'symbols' (B, T) int64 and 'lengths' (B,) int64, "
                       "outputs 'logits' and 'probabilities' (B, K); the labels and vocabulary are stored in the "
                       "file. The file is run at several batch sizes and lengths against the run's model "
                       "(within 1e-4) before it is written; a model that cannot keep a dynamic length is refused. "
                       "Runs of splice, promoters and classify (VectorClassifier models) take 'vectors' (B, T, F) "
                       "float32 in place of 'symbols': residue weights or normalised values, as the file's "
                       "'encoding' metadata says. Prints one JSON object.")
    p.add_argument("run", metavar="RUN", help="a run directory written by 'biornn train'")
    p.add_argument("--format", dest="fmt", default="onnx", metavar="FORMAT",
                   help="onnx (default; needs pip install 'biornn[export]') or torchscript")
    p.add_argument("--out", metavar="FILE",
                   help="output file (default RUN/model.onnx or RUN/model.torchscript.pt)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_run

    print(json.dumps(export_run(args.run, args.fmt, args.out)))
    return 0
