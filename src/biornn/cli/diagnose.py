"""``biornn diagnose gradients|states``: gradient flow over time, state and gate trajectories."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..diagnostics import COMPARE_CELLS
    from ..init import SCHEMES
    from .checks import CellList

    p = sub.add_parser("diagnose", help="gradient flow over time; state and gate trajectories",
                       description="Measure what happens inside a recurrent net: how the error signal "
                       "dL/dh_t reaches each time step ('gradients'), and the hidden state, cell state and "
                       "gates over time ('states'). Writes JSON and PNG into --out.")
    what = p.add_subparsers(dest="what", metavar="WHAT", parser_class=type(p))
    what.required = True

    g = what.add_parser("gradients", help="norm of dL/dh_t and dh_T/dh_t per time step, weight-gradient norms, "
                        "saturated units",
                        description="For a trained RUN (on a batch of its test split, its own loss) or for fresh "
                        "networks (--cell ...: on an adding-problem batch of --length steps): the norm of dL/dh_t "
                        "for every step t and of dh_T/dh_t, per layer and direction, each step averaged over the "
                        "sequences real at t (with variable lengths the late steps hold only the longer "
                        "sequences); the gradient norm of every weight matrix; the fraction of saturated gate and "
                        "hidden units. Writes gradients.json and gradients.png (log scale, one line per cell) and "
                        "prints one JSON line per cell, layer and direction, measured along that direction's own "
                        "time (\"time\": a reverse direction's last step is t = 0, its first t = T-1): the norm at "
                        "the last and first step (each sequence at its own ends), the orders of magnitude lost "
                        "between them, and the smallest norm over all steps (dl_dh_min, at min_step) with the "
                        "orders lost down to it (orders_to_min), which the two endpoints alone can hide.")
    g.add_argument("run", metavar="RUN", nargs="?", help="a run directory (omit to measure fresh --cell networks)")
    g.add_argument("--data-dir", metavar="DIR", help="data directory of the RUN's task")
    g.add_argument("--cell", "--cells", action=CellList, metavar="CELL",
                   help=f"fresh networks of these cells, by spaces or commas (default: {' '.join(COMPARE_CELLS)})")
    g.add_argument("--length", type=int, default=200,
                   help="T, steps of the adding-problem batch, >= 2 (default 200)")
    g.add_argument("--hidden", type=int, default=64, help="hidden units of the fresh networks (default 64)")
    g.add_argument("--layers", type=int, default=1, help="layers of the fresh networks (default 1)")
    g.add_argument("--init", choices=tuple(SCHEMES), help="init scheme (default: each cell's own)")
    g.add_argument("--scale", type=float, default=1.0,
                   help="multiply every recurrent matrix W_hh after init, > 0 (default 1). A spectral radius above 1 "
                        "is necessary for gradients to explode, not sufficient: saturating units (tanh, sigmoid) "
                        "can still make them vanish (elman --init identity --scale 1.5 vanishes; irnn, whose ReLU "
                        "does not saturate, explodes at --scale 1.1)")
    g.add_argument("--forget-bias", type=float,
                   help="forget-gate bias of 'lstm'/'lstm-peephole' (default: the init scheme's)")
    g.add_argument("--batch", type=int, default=32, help="sequences averaged over (default 32)")
    g.add_argument("--jacobian-batch", type=int, default=None,
                   help="sequences for dh_T/dh_t, the first of the batch (one backward pass per hidden unit; "
                        "0 skips it; default 8, or --batch if smaller)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the batch and the weights (default 0)")
    g.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    g.add_argument("--out", metavar="DIR", default="diagnostics", help="output directory (default diagnostics)")
    g.set_defaults(handler=run_gradients)

    s = what.add_parser("states", help="hidden/cell state and gate heatmaps; cell state over a long stream",
                        description="Heatmaps of every step's hidden state, cell state and gate activations: "
                        "for a RUN and INPUTs (names), or for a fresh --cell network and a numeric --input file "
                        "(CSV, one row per time step). Without RUN or --input: the cell-state magnitude of fresh "
                        "networks (default lstm1997 and lstm) over one continuous stream of --stream steps "
                        "(the 1997 cell's grows; the forget gate's stays bounded). Writes states.json + "
                        "states-N.png, or cell_state.json + cell_state.png.")
    s.add_argument("run", metavar="RUN", nargs="?", help="a run directory")
    s.add_argument("inputs", nargs="*", metavar="INPUT", help="inputs for the RUN, e.g. surnames")
    s.add_argument("--cell", "--cells", action=CellList, metavar="CELL",
                   help="fresh network(s), by spaces or commas (default for --stream: lstm1997 lstm)")
    s.add_argument("--input", metavar="FILE", help="numeric input for a fresh --cell network: CSV, T rows x I columns")
    s.add_argument("--input-size", type=int, help="I, features per step of the fresh network (default: the file's)")
    s.add_argument("--stream", type=int, default=5000, help="length of the continuous stream (default 5000)")
    s.add_argument("--hidden", type=int, default=32, help="hidden units of fresh networks (default 32)")
    s.add_argument("--layer", type=int, default=0,
                   help="which layer * D + direction of a RUN to draw (default 0; a fresh --cell network has "
                        "only 0)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the fresh weights and stream (default 0)")
    s.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    s.add_argument("--out", metavar="DIR", default="diagnostics", help="output directory (default diagnostics)")
    s.set_defaults(handler=run_states)


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _out_dir(path: str, names: tuple[str, ...] = ()) -> Path:
    """The output directory, checked but not created: it is made only once there is something to
    write, so that a refused input leaves no empty folder behind."""
    from ..checkpoint import check_out_dir

    return check_out_dir(path, names)


def _note(d: dict[str, Any]) -> str | None:
    """What a row's missing (null) numbers mean, or None where every number is finite."""
    last, first = d["last"], d["first"]
    if math.isnan(last) and math.isnan(first):
        return ("no finite norm: the forward pass or the loss overflowed (NaN); the network explodes at this "
                "length and scale -- try a shorter --length or a smaller --scale")
    if math.isinf(first) or math.isinf(last) or math.isinf(d["max"]):
        return ("the norm overflowed float64 (inf): the gradient explodes beyond what a float can hold; the "
                "orders of magnitude are infinite (null in JSON)")
    if last == 0.0:
        return ("the norm at the last step is 0: no error signal leaves the loss there, so the orders of "
                "magnitude are undefined (null in JSON)")
    if first == 0.0 and last > 0.0:
        return ("the norm at the first step underflowed to 0 (below about 1e-308 in float64, the fresh networks' "
                "precision; 1e-45 in a run's float32): every order of magnitude lost; the orders are +inf (null "
                "in JSON)")
    if d["min"] == 0.0 and last > 0.0:
        return ("the norm underflowed to 0 at min_step (below about 1e-308 in float64, 1e-45 in float32): "
                "orders_to_min is +inf (null in JSON)")
    return None


def _summary_rows(label: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """One printed row per layer and direction, each measured along its own time direction: a reverse
    direction reads t = T-1 down to 0, so its last step is t = 0 and its first t = T-1."""
    from ..checkpoint import strict_json
    from ..diagnostics import decay_summary

    def rounded(x: float) -> float | None:
        return round(x, 2) if math.isfinite(x) else None

    rows = []
    for k, name in enumerate(result["layers"]):
        d = (result["summary"][k] if result.get("summary")
             else decay_summary(result["dl_dh"][k], reverse=name.endswith("reverse")))
        row = {"cell": label, "layer": name, "time": d["direction"],
               "dl_dh_last_step": d["last"], "dl_dh_first_step": d["first"],
               "orders_of_magnitude": rounded(d["orders"]),
               "dl_dh_min": d["min"], "min_step": d["min_step"], "orders_to_min": rounded(d["orders_to_min"])}
        if result.get("dh_final_dh"):
            first = d.get("dh_final_dh_first")
            if first is None:  # a result without a summary: the curve's end in the direction's own time
                first = decay_summary(result["dh_final_dh"][k], reverse=d["direction"] == "reverse")["first"]
            row["dhT_dh_first_step"] = first
        note = _note(d)
        if note:
            row["note"] = note
        rows.append(strict_json(row))
    return rows


def _not_with(args: argparse.Namespace, defaults: dict[str, object], what: str) -> None:
    """Refuse options left at other values than their defaults where they do nothing (``what``)."""
    for name, default in defaults.items():
        if getattr(args, name) != default:
            raise ValueError(f"--{name.replace('_', '-')} {what}")


def _check_fits(need: int, what: str) -> None:
    """Refuse before any work when ``need`` bytes would not fit in the memory available."""
    from ..bench import _available_bytes

    avail = _available_bytes()
    if avail is not None and need > 0.8 * avail:
        raise ValueError(f"{what} needs about {need / 2**30:.1f} GiB; {avail / 2**30:.1f} GiB is available")


def run_gradients(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import output_set, strict_json, write_json
    from ..diagnostics import COMPARE_CELLS, fresh_gradient_flow, plot_gradient_flow, run_gradient_flow

    for name in ("hidden", "batch", "layers"):
        _positive(f"--{name}", getattr(args, name))
    if args.length < 2:  # "positive" as the other sizes say, and the adding problem's own floor
        raise ValueError(f"--length must be positive and at least 2 (the adding problem marks two steps), "
                         f"got {args.length}")
    if args.jacobian_batch is None:
        args.jacobian_batch = min(8, args.batch)
    if args.jacobian_batch < 0:
        raise ValueError("--jacobian-batch must be >= 0")
    if args.jacobian_batch > args.batch:  # it takes the first sequences of the batch: more than there are
        raise ValueError(f"--jacobian-batch {args.jacobian_batch} is more than --batch {args.batch}: the "
                         f"Jacobians are taken over the first sequences of the batch")
    from .checks import finite, seed, threads

    threads(args.threads, zero_ok=True)
    finite("--forget-bias", args.forget_bias)
    if not (math.isfinite(args.scale) and args.scale > 0):
        raise ValueError(f"--scale must be positive and finite, got {args.scale:g}")
    seed("--seed", args.seed)
    if args.run:  # the run's own network and test data: the fresh networks' options would do nothing
        _not_with(args, {"length": 200, "hidden": 64, "layers": 1, "init": None, "scale": 1.0, "forget_bias": None},
                  "applies to fresh --cell networks, not to a RUN (its own network and test sequences)")
    else:
        from ..bench import estimate_bytes

        # the training-step estimate, every layer, and the Jacobians d h_T / d h_t kept per step
        need = (estimate_bytes(args.batch, args.length, 2, args.hidden) * args.layers
                + 4 * args.length * args.hidden * args.hidden * max(args.jacobian_batch, 1))
        _check_fits(need, f"--length {args.length} --hidden {args.hidden} --batch {args.batch}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = _out_dir(args.out, ("gradients.json", "gradients.png"))
    rows = []
    if args.run:
        if args.cell:
            raise ValueError("give a RUN or --cell, not both")
        res = run_gradient_flow(args.run, args.data_dir, batch=args.batch, seed=args.seed,
                                jacobian_batch=args.jacobian_batch)
        curves = {}
        for m, r in enumerate(res["members"]):
            prefix = f"member {m} " if len(res["members"]) > 1 else ""
            for k, layer in enumerate(r["layers"]):
                curves[f"{prefix}{layer}"] = {"dl_dh": r["dl_dh"][k],
                                              "dh_final_dh": r["dh_final_dh"][k] if r["dh_final_dh"] else None}
            rows += _summary_rows(f"{prefix}{res['cell']}".strip(), r)
        title = f"{res['task']} run {Path(args.run).name} ({res['cell']}), {res['batch']} test sequences"
    else:
        res = {"task": "adding", "length": args.length, "cells": {}}
        curves = {}
        for cell in args.cell or COMPARE_CELLS:
            r = fresh_gradient_flow(cell, args.length, args.hidden, args.batch, init=args.init, scale=args.scale,
                                    forget_bias=args.forget_bias, num_layers=args.layers, seed=args.seed,
                                    jacobian_batch=args.jacobian_batch)
            res["cells"][cell] = r
            for k, layer in enumerate(r["layers"]):
                label = cell if args.layers == 1 else f"{cell} {layer}"
                curves[label] = {"dl_dh": r["dl_dh"][k],
                                 "dh_final_dh": r["dh_final_dh"][k] if r["dh_final_dh"] else None}
            rows += _summary_rows(cell, r)
        init = args.init or "each cell's default init"
        title = (f"fresh networks at initialisation ({init}"
                 f"{f', W_hh x {args.scale:g}' if args.scale != 1 else ''}), adding problem T = {args.length}")
    notes = sorted({row["note"] for row in rows if "note" in row})
    if notes:
        res["notes"] = notes
    with output_set(out) as files:  # both files or neither
        write_json(files.path("gradients.json"), strict_json(res))
        plot_gradient_flow(curves, files.path("gradients.png"), title)
    for row in rows:
        print(json.dumps(row))
    return 0


def read_numeric_input(path: str | Path, input_size: int | None) -> "Any":
    """A CSV (or whitespace-separated) file of T rows x I numbers -> Tensor (T, I)."""
    import torch

    from ..data.readers import read_text_file

    path = Path(path)
    text = read_text_file(path)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            values = [float(v) for v in re.split(r"[,\s;]+", line.strip()) if v]
        except ValueError:
            raise ValueError(f"{path}:{n}: not a row of numbers") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}:{n}: a value is not finite")
        if rows and len(values) != len(rows[0]):
            raise ValueError(f"{path}:{n}: {len(values)} features, earlier rows have {len(rows[0])}")
        rows.append(values)
    if not rows:
        raise ValueError(f"{path}: no rows of numbers")
    if input_size is not None and len(rows[0]) != input_size:
        raise ValueError(f"{path}: {len(rows[0])} features per step, but the network reads {input_size} "
                         "(--input-size)")
    return torch.tensor(rows, dtype=torch.float32)


def run_states(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import output_set, strict_json, write_json
    from ..diagnostics import (build_fresh, cell_state_stream, layer_labels, members, plot_cell_stream,
                               plot_traces, state_traces)

    out = _out_dir(args.out, ("states.json", "cell_state.json", "cell_state.png"))
    _positive("--hidden", args.hidden)
    from .checks import seed, threads

    seed("--seed", args.seed)
    threads(args.threads, zero_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.run:
        if args.input or args.cell:
            raise ValueError("give a RUN with INPUTs, or --cell with --input, not both")
        _not_with(args, {"stream": 5000, "hidden": 32, "input_size": None},
                  "applies to fresh --cell networks, not to a RUN")
        if not args.inputs:
            raise ValueError("give at least one INPUT for the RUN")
        import torch.nn.functional as F

        from ..diagnostics import encode_checked, load_symbol_run, member_logits

        cfg, task, model, meta = load_symbol_run(args.run, "diagnose states")
        vocab = meta["vocab_obj"]
        member = members(model)[0]
        labels = layer_labels(member.rnn)
        if not 0 <= args.layer < len(labels):
            raise ValueError(f"--layer must be in 0..{len(labels) - 1} for this run")
        rows = []
        # every input is checked before anything is written: a bad third input leaves no first plot
        encoded = [encode_checked(vocab, text, args.run) for text in args.inputs]
        _check_fits(sum(len(codes) for _, codes in encoded) * member.rnn.hidden_size * 4 * 16,
                    f"{len(encoded)} inputs of {sum(len(c) for _, c in encoded)} symbols in all")
        lines = []
        with output_set(out, stale=(r"states-\d+\.png",)) as files:  # every plot and states.json, or none
            for n, (name, codes) in enumerate(encoded):
                onehot = F.one_hot(torch.tensor([codes]), member.vocab_size).to(member.readout.weight.dtype)
                with torch.no_grad():
                    traces = member_logits(member, onehot, None, return_traces=True)[2][args.layer]
                tr = {k: v[0].numpy() for k, v in traces.items()}
                steps = [vocab.decode([c]) for c in codes]
                plot_traces(tr, files.path(f"states-{n}.png"), steps,
                            f"{name!r}: {cfg.cell}, {labels[args.layer]}"
                            + (" (member 0)" if len(members(model)) > 1 else ""))
                rows.append({"input": name, "steps": steps, "layer": labels[args.layer],
                             "traces": {k: v.tolist() for k, v in tr.items()}})
                lines.append(json.dumps({"input": name, "png": str(out / f"states-{n}.png"),
                                         "traces": sorted(tr)}, ensure_ascii=False))
            write_json(files.path("states.json"), strict_json({"run": str(args.run), "inputs": rows}))
        for line in lines:
            print(line)
        return 0
    if args.inputs:
        raise ValueError("INPUTs need a RUN")
    if args.input:
        _not_with(args, {"stream": 5000}, "is the length of the generated stream; an --input file has its own")
        if args.layer != 0:  # build_fresh makes one layer, one direction
            raise ValueError(f"--layer must be 0 for a fresh --cell network (one layer, one direction), "
                             f"got {args.layer}")
        cells = args.cell or ["lstm"]
        x = read_numeric_input(args.input, args.input_size)  # (T, I)
        T, I = x.shape
        # the traces (about 8 (T, H) tensors and their lists) and each cell's weights
        _check_fits(T * args.hidden * 4 * 16 + 4 * 16 * args.hidden * (I + args.hidden + 1),
                    f"--input of {T} steps with --hidden {args.hidden}")
        rows, lines = [], []
        with output_set(out, stale=(r"states-\d+\.png",)) as files:  # every plot and states.json, or none
            for n, cell in enumerate(cells):
                rnn = build_fresh(cell, I, args.hidden)
                labels = layer_labels(rnn)
                tr = {k: v[0].numpy() for k, v in state_traces(rnn, x.unsqueeze(0))[0].items()}
                plot_traces(tr, files.path(f"states-{n}.png"), None,
                            f"{Path(args.input).name}: fresh {cell}, {labels[0]}")
                rows.append({"cell": cell, "traces": {k: v.tolist() for k, v in tr.items()}})
                lines.append(json.dumps({"cell": cell, "png": str(out / f"states-{n}.png"), "traces": sorted(tr)}))
            write_json(files.path("states.json"), strict_json({"input": str(args.input), "inputs": rows}))
        for line in lines:
            print(line)
        return 0
    _positive("--stream", args.stream)
    _not_with(args, {"layer": 0, "input_size": None}, "applies to a RUN or an --input file, not to the stream")
    cells = args.cell or ["lstm1997", "lstm"]
    # a batch of 8: the stream, about 8 (B, T, H) traces and their copies, each cell's weights
    _check_fits(8 * args.stream * (2 + 16 * args.hidden) * 4 + 4 * 16 * args.hidden * (args.hidden + 3),
                f"--stream {args.stream} with --hidden {args.hidden}")
    stream = cell_state_stream(cells, args.stream, args.hidden, seed=args.seed)
    with output_set(out) as files:  # both files or neither
        write_json(files.path("cell_state.json"), strict_json(stream))
        plot_cell_stream(stream, files.path("cell_state.png"))
    for name, c in stream["cells"].items():
        print(json.dumps({"cell": name, "final_mean_abs_c": round(c["final_mean_abs_c"], 4),
                          "max_abs_c": round(c["max_abs_c"], 4), "slope_per_step": c["slope"],
                          "saturation": {k: round(v, 3) for k, v in c["saturation"].items()}}))
    return 0
