"""``biornn train TASK``: train by BPTT and write a run directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def check_user_file_keys(cfg) -> None:
    """Refuse (``ValueError``) the keys of the user's files on a built-in task, which reads its own data
    set and would silently ignore them, and a validation or test file that is the training file."""
    from ..config import TrainConfig
    from ..tasks.userdata import TARGETS

    if cfg.task not in TARGETS:
        set_here = [k for k in USER_FILE_KEYS if getattr(cfg, k) != getattr(TrainConfig, k)
                    and not (k == "max_length" and cfg.task == "generate-names")]  # its sampling limit
        if set_here:
            raise ValueError(f"config: {set_here[0]} applies to the tasks on the user's files "
                             f"({', '.join(TARGETS)}); task {cfg.task!r} reads its own data set")
        return
    from ..checkpoint import same_file

    import filecmp

    for key, option in (("val_file", "--val"), ("test_file", "--test")):
        other = getattr(cfg, key)
        if same_file(other, cfg.train_file):
            raise ValueError(f"{other}: {option} names the training file; held-out figures need another file "
                             f"(without {option}, part of the training file is held out)")
        if (other and cfg.train_file and Path(other).is_file() and Path(cfg.train_file).is_file()
                and filecmp.cmp(other, cfg.train_file, shallow=False)):
            raise ValueError(f"{other}: {option} is a byte-for-byte copy of the training file {cfg.train_file}; "
                             f"held-out figures need other records (without {option}, part of the training file "
                             f"is held out)")


#: the config keys that describe the user's files (classify, tag, forecast)
USER_FILE_KEYS = ("train_file", "val_file", "test_file", "format", "label_column", "sequence_column", "alphabet",
                  "max_length")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..config import TrainConfig
    from ..tasks import TASKS

    p = sub.add_parser(
        "train",
        help="train a model on a task and write a run directory",
        description="Train a recurrent model by backpropagation through time and write a run directory "
        "(config.json, model.safetensors, metrics.json, log.csv, steps.csv, checkpoint.pt, curves.png, and the "
        "task's own plots: confusion.png for names, splice, protein-ss, classify and tag, with "
        "confusion_baseline.png beside it for all but names; forecast.png for forecast, detection.png for "
        "ecg-anomaly, detections.png for mitdb-qrs, accuracy_by_length.png for translate, "
        "bits_per_language.png for generate-names). Each task has its "
        "own defaults (ecg-anomaly: a 2-layer LSTM predicting the next 10 samples, truncated BPTT over "
        "100-sample windows). "
        f"Built-in tasks: {', '.join(TASKS)}; TASK may also be a TOML config file that sets task = NAME "
        "(or give that file as --config and no TASK). "
        "classify (one label per record), tag (one label per step) and forecast (the next steps of a series) "
        "train on your own files: --train FILE [--val FILE] [--test FILE] (FASTA, UCR, CSV/TSV or NPZ, from "
        "the extension or --format); without --val (--test) 20% of the training file is held out for it. "
        "Config keys (key=value): " + ", ".join(f.name for f in dataclasses.fields(TrainConfig)) + ".",
    )
    p.add_argument("task", metavar="TASK", nargs="?", help="a built-in task name or a TOML config file")
    p.add_argument("key_values", nargs="*", metavar="key=value", help="config overrides, type-checked")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default: $BIORNN_DATA, then ~/.cache/biornn)")
    p.add_argument("--out", metavar="RUN", help="run directory to create (default runs/TASK-CELL-sSEED)")
    p.add_argument("--cell", help="cell name (see 'biornn cells'; default: the task's)")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the task's)")
    p.add_argument("--seed", type=int, help="random seed: same seed, same weights (default 0)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads, as the config key threads=N (default: the task's, 0 = torch's choice)")
    p.add_argument("--record", metavar="NAME", help="ecg-anomaly: a discord record (file name without .txt), "
                   "or all: train and evaluate every record into RUN/NAME and write RUN/summary.md")
    p.add_argument("--train", metavar="FILE", help="classify, tag, forecast: the training file (train_file)")
    p.add_argument("--val", metavar="FILE", help="the validation file (val_file; default: 20%% of the training "
                   "file, stratified by label, seeded by split_seed)")
    p.add_argument("--test", metavar="FILE", help="the test file (test_file; default: another 20%% of the "
                   "training file)")
    p.add_argument("--format", metavar="FMT", help="the files' format: fasta, ucr, csv, tsv or npz (default: "
                   "from each file's extension: .fa/.fasta/.fna/.faa fasta, .csv csv, .tsv/.tab tsv -- or ucr "
                   "when the first line is all numbers --, .txt/.ucr ucr, .npz npz)")
    p.add_argument("--config", metavar="FILE.toml", help="a flat TOML config file")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: only on a terminal)")
    p.add_argument("--track", action="append", choices=("tensorboard", "mlflow"), default=[],
                   help="also log the config, per-epoch metrics, gradient norms and plots to TensorBoard "
                   "(RUN/tensorboard) or MLflow (SQLite store RUN/mlflow.db); repeat for both; "
                   "needs pip install 'biornn[track]'")
    p.add_argument("--track-uri", metavar="URI", help="MLflow tracking URI (default sqlite:///RUN/mlflow.db)")
    p.set_defaults(handler=run, key_values=[])


def run(args: argparse.Namespace) -> int:
    from ..config import load_toml, resolve
    from ..distributed import is_main
    from ..train import TrainingError, train

    if args.out is not None and not args.out.strip():  # not "the default": a mistake (an unset variable)
        raise ValueError("--out: an empty path; give a run directory, or leave --out out for runs/...")
    if args.resume:
        others = (args.task, args.key_values, args.config, args.out, args.cell, args.record, args.train, args.val,
                  args.test, args.format)
        if any(others) or args.epochs is not None or args.seed is not None or args.threads is not None:
            raise ValueError("--resume continues a run with its recorded config; give no other options")
        out, cfg, resume = Path(args.resume), None, True
    else:
        if args.task and "=" in args.task and not args.task.endswith(".toml"):
            # `train --config FILE.toml lr=1e-3`: the first override took TASK's place
            args.key_values, args.task = [args.task, *args.key_values], None
        if not args.task and not args.config:
            raise ValueError("give a TASK to train (or --config FILE.toml that sets task = NAME, or --resume RUN); "
                             "see 'biornn train --help'")
        task, config_file = args.task, args.config
        if not task or task.endswith(".toml"):  # the task named in the TOML file
            if task and config_file:
                raise ValueError("give the TOML file either as TASK or as --config, not both")
            config_file = config_file or task
            data = load_toml(config_file)
            if "task" not in data:
                raise ValueError(f"{config_file}: sets no task; set task = NAME in it, or give the TASK "
                                 f"(biornn train TASK --config {config_file})")
            if not isinstance(data["task"], str):
                raise ValueError(f"{config_file}: task must be a task name (a string), got {data['task']!r}")
            task = data["task"]
        elif config_file:
            named = load_toml(config_file).get("task", task)
            if named != task:
                raise ValueError(f"{config_file}: sets task = {named!r} but the command names {task!r}")
        cfg = resolve(task, config_file, {"cell": args.cell, "epochs": args.epochs, "seed": args.seed,
                                          "threads": args.threads,
                                          "record": args.record, "train_file": args.train, "val_file": args.val,
                                          "test_file": args.test, "format": args.format}, args.key_values)
        # the files as absolute paths, so that --resume and evaluate find them from any directory
        cfg = dataclasses.replace(cfg, **{key: str(Path(getattr(cfg, key)).expanduser().absolute())
                                          for key in ("train_file", "val_file", "test_file") if getattr(cfg, key)})
        from ..tasks.mitdb_qrs import is_record_path

        if cfg.task == "mitdb-qrs" and cfg.record and is_record_path(cfg.record):  # record=PATH, likewise
            cfg = dataclasses.replace(cfg, record=str(Path(cfg.record).expanduser().absolute()))
        from ..tasks import get

        get(cfg.task)
        check_user_file_keys(cfg)
        if cfg.class_weighting != "none" and cfg.logit_adjustment:
            print(f"biornn: note: class_weighting={cfg.class_weighting} and logit_adjustment="
                  f"{cfg.logit_adjustment:g} both correct for the class imbalance, so rare classes are favoured "
                  f"twice; for the class-weighted loss alone add logit_adjustment=0", file=sys.stderr)
        # the record's own name (record= may be a path): the default run directory stays under runs/
        name = f"{cfg.task}-{Path(cfg.record).name}" if cfg.record else cfg.task
        out = Path(args.out) if args.out else Path("runs") / f"{name}-{cfg.cell}-s{cfg.seed}"
        resume = False
    try:
        metrics = train(cfg, out, data_dir=args.data_dir, resume=resume, progress=args.progress,
                        track=args.track, track_uri=args.track_uri)
    except TrainingError as e:
        if is_main():
            print(f"biornn: training failed: {e}", file=sys.stderr)
        return 1
    if not is_main():  # under torchrun rank 0 reports the run
        return 0
    print(json.dumps({"run": str(out), "test": metrics["test"], "baseline": metrics["baseline"],
                      "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs"]}))
    return 0
