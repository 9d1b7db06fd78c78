"""``biornn explain RUN INPUT ...``: which input steps decided a prediction, and how it formed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="saliency per input step and the decision forming, for a prediction",
                       description="Explain a run's prediction for each INPUT: saliency over the input steps "
                       "(gradient x input, and integrated gradients from the all-zero input, with their "
                       "completeness check sum(IG) = F(x) - F(0) for F the class logit), the class probability "
                       "after each step (the model run on every prefix), and the hidden-state trajectory. "
                       "Writes explain.json and explain-N.png into --out; prints one JSON line per input.")
    p.add_argument("run", metavar="RUN", help="a run directory written by 'biornn train'")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="inputs, e.g. surnames")
    p.add_argument("--file", metavar="F", help="read inputs from a UTF-8 file, one per line")
    p.add_argument("--target", metavar="LABEL", help="explain this class (default: the predicted one)")
    p.add_argument("--steps", type=int, default=64, help="integrated-gradients steps (default 64)")
    p.add_argument("--top", type=int, default=3, help="classes whose probability is traced (default 3)")
    p.add_argument("--out", metavar="DIR", default="explain", help="output directory (default explain)")
    p.add_argument("--max-work", type=int, default=CLI_MAX_WORK, metavar="W",
                   help="refuse inputs whose explanation costs more than W symbol steps of the model, "
                        "T x (steps + 1 + T) per input of T symbols (default %(default)s, about half a minute "
                        "of one core for a names model; 'biornn serve' allows 100000 per request)")
    p.set_defaults(handler=run)


#: the CLI's default work limit: ten times a served request's (biornn.serve.MAX_EXPLAIN_WORK)
CLI_MAX_WORK = 1_000_000


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import write_json
    from ..diagnostics import explain_run, plot_explanation

    inputs = list(args.inputs)
    if args.file:
        from ..data.readers import read_text_file

        path = Path(args.file)
        text = read_text_file(path, allow_pipe=True)  # a byte-order mark is not part of a name; a device is refused
        inputs += [line.strip() for line in text.splitlines() if line.strip()]
    if not inputs:
        raise ValueError("give at least one INPUT or --file F")
    if args.steps <= 0 or args.top <= 0:
        raise ValueError("--steps and --top must be positive")
    from ..serve import MAX_EXPLAIN_STEPS, explain_work

    if args.steps > MAX_EXPLAIN_STEPS:
        raise ValueError(f"--steps must be at most {MAX_EXPLAIN_STEPS}, got {args.steps}")
    if args.max_work <= 0:
        raise ValueError(f"--max-work must be positive, got {args.max_work}")
    work = explain_work(inputs, args.steps)  # one symbol per character: what the model will run
    if work > args.max_work:
        longest = max(inputs, key=len)
        raise ValueError(f"explaining these inputs costs {work:,} symbol steps of the model (the longest, "
                         f"{len(longest)} characters, {explain_work([longest], args.steps):,}), more than "
                         f"--max-work {args.max_work:,}; give fewer or shorter inputs, fewer --steps, or a "
                         f"larger --max-work")
    from ..checkpoint import check_out_dir, output_set

    out = check_out_dir(args.out, ("explain.json", *(f"explain-{n}.png" for n in range(len(inputs)))))
    rows = explain_run(args.run, inputs, target=args.target, steps=args.steps, top=args.top)
    # every plot and explain.json, or none; an earlier run's extra explain-N.png are removed
    with output_set(out, stale=(r"explain-\d+\.png",)) as files:
        for n, row in enumerate(rows):
            plot_explanation(row, files.path(f"explain-{n}.png"))
        write_json(files.path("explain.json"), {"run": str(args.run), "inputs": rows})
    for n, row in enumerate(rows):
        ig = row["integrated_gradients"]
        top_step = max(range(len(ig)), key=lambda t: abs(ig[t]))
        print(json.dumps({
            "input": row["input"], "prediction": row["prediction"], "probability": round(row["probability"], 4),
            "target": row["target"], "most_salient_step": top_step, "most_salient": row["steps"][top_step],
            "integrated_gradients": [round(v, 4) for v in ig],
            "completeness_gap": round(row["completeness_gap"], 6),
            **({"ngram_term": round(row["ngram_term"], 4)} if row.get("ngram_term") else {}),
            "png": str(out / f"explain-{n}.png"),
        }, ensure_ascii=False))
    return 0
