"""``biornn predict RUN INPUT ...``: one JSON object per input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict with a run: one JSON object per input",
                       description="Predict with a run directory's model, one JSON object per input. For names, "
                       "splice, promoters and classify: the top classes with their probabilities; for protein-ss "
                       "and tag: the label of every step and each label's probability per step; for the other "
                       "tasks what their section of the README says (translate: the protein; forecast: the next "
                       "steps; mitdb-qrs: the beats of a record; generate-names: the likeliest languages).")
    p.add_argument("run", metavar="RUN", help="a run directory written by 'biornn train'")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="inputs, e.g. surnames")
    p.add_argument("--file", metavar="F", help="read inputs from a UTF-8 file, one per line")
    p.add_argument("--top", type=int, default=3, help="how many classes to show (default 3)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import predict

    inputs = list(args.inputs)
    file_lines: dict[int, int] = {}
    if args.file:
        from ..data.readers import read_text_file

        path = Path(args.file)
        text = read_text_file(path, allow_pipe=True)  # a byte-order mark is not part of a name; a device is refused
        numbered = [(k, line.strip()) for k, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not numbered:
            raise ValueError(f"{path}: no inputs (an empty file, or blank lines only)")
        file_lines = {len(inputs) + i: k for i, (k, _) in enumerate(numbered)}  # input index -> line
        inputs += [line for _, line in numbered]
    if not inputs:
        raise ValueError("give at least one INPUT or --file F")
    if args.top <= 0:
        raise ValueError("--top must be positive")
    try:
        rows = _tagging_rows(args.run, inputs, args.top)
        if rows is None:
            rows = predict(args.run, inputs, top=args.top)
    except ValueError as e:
        if not args.file:
            raise
        # a bad input read from --file: say where it is (the file and its line), not only what it is
        raise ValueError(_where_in_file(str(e), inputs, file_lines, args.file)) from None
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _where_in_file(message: str, inputs: list[str], file_lines: dict[int, int], path: str) -> str:
    """``message`` with ``PATH:LINE: `` in front where it names an input read from the file (as
    ``input N`` or by its text), else unchanged."""
    import re

    index = None
    m = re.search(r"\binput (\d+)\b", message)
    if m and 0 < int(m.group(1)) <= len(inputs):
        index = int(m.group(1)) - 1
    else:
        index = next((i for i, text in enumerate(inputs) if len(text) >= 2 and repr(text)[:40] in message), None)
    if index is None or index not in file_lines:
        return message
    return f"{path}:{file_lines[index]}: {message}"


def _tagging_rows(run: str, inputs: list[str], top: int = 3) -> list[dict] | None:
    """The rows of a task that predicts by itself (one providing ``predict_rows``: per-step labels of
    protein-ss, ...); None for any other run (names, splice: top classes by :func:`biornn.evaluate.predict`)."""
    from .. import tasks
    from ..config import read_config
    from ..evaluate import load_run

    config = Path(run) / "config.json"
    if not config.is_file():
        return None  # predict() gives the error about the run directory
    task = tasks.get(read_config(config).task)
    if not hasattr(task, "predict_rows"):
        return None
    import inspect

    _, task, model, meta = load_run(run)
    # --top reaches the tasks whose rows rank classes
    kw = {"top": top} if "top" in inspect.signature(task.predict_rows).parameters else {}
    return task.predict_rows(model, meta, inputs, **kw)
