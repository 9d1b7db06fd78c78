"""The BPTT training loop: one plain function, :func:`train`, for every task.

For each epoch: the task yields its training batches (``task.train_batches``:
shuffled by a generator seeded by ``seed`` and the epoch, so a resumed run
sees exactly what an uninterrupted one does -- mini-batches of
variable-length names, or windows of parallel ECG streams whose state the
task carries for truncated BPTT); for each, the loop computes the loss
(cross-entropy or squared error for classes, squared error for a
regression; summed or averaged), backpropagates through time (autograd
through :class:`biornn.Recurrent`'s loop or fused kernels), logs the global
gradient norm of every step, clips (by norm or by value), steps the
optimiser and the learning-rate schedule; then the task validates
(``task.validate``), the loop keeps the best weights by the monitored
metric, writes ``log.csv`` and a resumable ``checkpoint.pt``, and stops early
if the metric has not improved for ``patience`` epochs.  At the end the task
measures the best weights on its test data beside its baseline
(``task.finish``), and the run directory gets its ``metrics.json`` and plots.

A task whose config names several runs (``ecg-anomaly record=all``) is
trained run by run into sub-directories, with a summary table (:func:`train_each`).

Started by torchrun as several processes (``WORLD_SIZE`` > 1), the loop joins
the process group (:mod:`biornn.distributed`), wraps the model in
DistributedDataParallel and lets each rank train on its share of every
global batch; the loss is scaled so that the averaged gradient is the one
process's gradient of the whole batch.  Rank 0 alone validates, logs and
writes the run directory.  ``track`` sends the config, the log.csv rows, the
gradient norms and the plots to TensorBoard and/or MLflow as well
(:mod:`biornn.tracking`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib
import io
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from . import __version__, checkpoint, distributed, tasks
from . import device as devices
from .config import TrainConfig, check_task_features, read_config
from .errors import Terminated, first_line

def log_fields(task) -> tuple[str, ...]:
    """The columns of log.csv: the loop's, with the task's validation metrics after ``val_loss``."""
    return ("epoch", "train_loss", "val_loss", *task.LOG_FIELDS, "grad_norm_mean", "grad_norm_max", "lr", "seconds",
            "skipped_steps")



STEP_FIELDS = ("step", "epoch", "loss", "grad_norm", "lr")


STATE_KEYS = ("biornn_version", "model", "optimizer", "scheduler", "epoch", "best", "best_epoch", "bad_epochs",
              "seconds", "history", "steps", "best_state", "rng", "data")


class TrainingError(RuntimeError):
    """A run that failed (non-finite loss): one line, exit 1."""


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """(scheduler, when): when is "step", "epoch", "plateau" or None."""
    if cfg.lr_schedule == "onecycle":
        total = cfg.epochs * steps_per_epoch
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total), "step"
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch), "step"
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma), "epoch"
    if cfg.lr_schedule == "plateau":
        mode = "min" if cfg.monitor == "loss" else "max"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=cfg.lr_gamma, patience=2), "plateau"
    return None, None


def loss_fn(cfg: TrainConfig, logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy, or the squared error ½‖y - onehot(d)‖² of the lectures, summed or averaged;
    with ``cfg.label_smoothing`` = epsilon > 0 the target is (1 - epsilon) onehot(d) + epsilon / K.

    With floating-point targets ``y`` (a regression, same shape as the
    outputs) it is the mean (or summed) squared error of every element.
    """
    if y.is_floating_point():
        return F.mse_loss(logits, y, reduction=cfg.reduction)
    if cfg.loss == "ce":
        return F.cross_entropy(logits, y, weight=weight, reduction=cfg.reduction,
                               label_smoothing=cfg.label_smoothing)
    K = logits.shape[1]
    target = F.one_hot(y, K).to(logits.dtype)
    if cfg.label_smoothing:
        target = target * (1.0 - cfg.label_smoothing) + cfg.label_smoothing / K
    per_example = 0.5 * (logits - target).square().sum(dim=1)  # (B,)
    if weight is not None:
        w = weight[y]
        return (per_example * w).sum() / (w.sum() if cfg.reduction == "mean" else 1.0)
    return per_example.mean() if cfg.reduction == "mean" else per_example.sum()


def _better(cfg: TrainConfig, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if cfg.monitor == "loss" else value > best


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    checkpoint.write_text(path, buf.getvalue())


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


def train(
    cfg: TrainConfig | None,
    out_dir: str | Path,
    data_dir: str | None = None,
    resume: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    stop_after_epochs: int | None = None,
    track: tuple[str, ...] | list[str] = (),
    track_uri: str | None = None,
) -> dict[str, Any]:
    """Train ``cfg.task`` and write the run directory ``out_dir``.

    Parameters
    ----------
    cfg : TrainConfig or None
        The resolved config (written to ``out_dir/config.json``); ``None`` with
        ``resume``, which reads the run's own.
    out_dir : path
        The run directory; must not hold a run unless ``resume``.
    data_dir : str, optional
        Data directory (else ``BIORNN_DATA``, else the user cache).
    resume : bool
        Continue the run in ``out_dir`` from its ``checkpoint.pt``; the
        config is the one the run recorded.  Ends with the same weights as an
        uninterrupted run.
    progress : bool, optional
        A progress bar; default: only when stderr is a terminal.
    log : callable
        Receives one plain line per epoch.
    stop_after_epochs : int, optional
        Stop (as if interrupted) after this many epochs of this call: for tests
        of ``resume``.
    track : sequence of str
        Experiment trackers besides log.csv: ``"tensorboard"``, ``"mlflow"``
        (:mod:`biornn.tracking`; each needs its optional extra).
    track_uri : str, optional
        MLflow's tracking URI (default: a SQLite store ``mlflow.db`` in the run directory).

    Returns
    -------
    dict
        The contents of ``metrics.json`` (``{}`` if stopped by ``stop_after_epochs``).
        Under torchrun every rank returns rank 0's.
    """
    from .tracking import check_trackers

    check_trackers(track, track_uri)  # a missing extra fails before any work
    joined = distributed.setup()
    try:
        # one process writes a run directory: a second one started on it (or resuming it) is refused
        with checkpoint.run_lock(Path(out_dir)) if distributed.is_main() else contextlib.nullcontext():
            result = _train(cfg, Path(out_dir), data_dir, resume, progress, log, stop_after_epochs, tuple(track),
                            track_uri)
    except BaseException:
        if joined:
            distributed.teardown(wait=False)
        raise
    if joined:
        distributed.teardown()
    return result


def _check_run_dir(cfg: TrainConfig | None, out: Path, resume: bool) -> TrainConfig:
    """The config to train: the run's own on ``resume``; ``ValueError`` if ``out`` does not suit."""
    if resume:
        if not out.exists():
            raise ValueError(f"{out}: no such run directory")
        if not (out / "config.json").is_file():
            raise ValueError(f"{out}: no config.json, not a run directory to resume")
        cfg = read_config(out / "config.json")
        if (out / "metrics.json").exists():
            raise ValueError(f"{out}: this run has finished (metrics.json exists); nothing to resume")
    else:
        try:
            taken = out.exists() and (not out.is_dir() or any(out.iterdir()))
        except OSError as e:  # a name too long, a path through a file, ...
            raise ValueError(f"{out}: not a usable run directory ({e.strerror or e})") from None
        if taken and not out.is_dir():
            raise ValueError(f"{out}: is a file; --out names the run directory to create")
        if taken:
            raise ValueError(f"{out}: already exists and is not empty; choose another --out or --resume it")
    return cfg


def _train(cfg: TrainConfig | None, out: Path, data_dir: str | None, resume: bool, progress: bool | None,
           log: Callable[[str], None], stop_after_epochs: int | None, track: tuple[str, ...],
           track_uri: str | None) -> dict[str, Any]:
    """:func:`train` once the process group (if any) is joined."""
    if not distributed.is_main():  # rank 0 speaks for the run
        log, progress = (lambda line: None), False
    cfg = distributed.on_main(lambda: _check_run_dir(cfg, out, resume))
    cfg.validate()
    task = tasks.get(cfg.task)
    task.check_config(cfg)
    # CUDA asked for and not there, or a task that trains on the CPU only: one line before anything is
    # read or written
    if devices.resolve(cfg.device).type != "cpu" and not getattr(task, "DEVICE", True):
        raise ValueError(f"task {cfg.task}: device={cfg.device} is not supported ({task.NOT_ON_DEVICE}); "
                         f"train it with device=cpu")
    check_task_features(cfg)
    if not cfg.conv_channels and cfg.conv_kernel != TrainConfig.conv_kernel:
        raise ValueError(f"config: conv_kernel={cfg.conv_kernel} sizes the window layer, which conv_channels=0 "
                         f"leaves out; set conv_channels too, or drop conv_kernel")
    if distributed.active() and not getattr(task, "DISTRIBUTED", False):
        raise ValueError(f"task {cfg.task}: multi-process training (torchrun) is not supported; "
                         f"{getattr(task, 'NOT_DISTRIBUTED', 'train it in one process')}")
    runs = task.subruns(cfg, data_dir)
    if runs is not None:
        if track:
            raise ValueError(f"--track: not supported for a run of several runs (task {cfg.task}: {len(runs)} "
                             f"runs into one directory); track the runs one at a time")
        if not resume:  # bad data fails before any run starts, with its one line and nothing written
            task.load(runs[0][1], data_dir)
        return train_each(cfg, runs, out, data_dir, resume, progress, log, stop_after_epochs)
    return _train_one(cfg, task, out, data_dir, resume, progress, log, stop_after_epochs, track, track_uri)


def _set_threads(n: int) -> None:
    """``threads``: torch's intra-op threads and, for the baselines (scikit-learn, NumPy), the BLAS and
    OpenMP pools the process has loaded -- for the rest of the process, as torch.set_num_threads."""
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # (scikit-learn brings it) the baselines keep the libraries' defaults
        return
    # a pool is limited only once its library is loaded: SciPy's BLAS and scikit-learn's OpenMP now,
    # not when the baseline first needs them (each on its own: a module missing leaves the others)
    for module in ("scipy.linalg", "sklearn.utils._openmp_helpers"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    threadpool_limits(limits=n)


def _logged_epochs(path: Path) -> int:
    """The epoch rows of a run's log.csv (0 where there is none); a file that cannot be read counts as
    many, so that a run is never started again over logs it cannot tell apart."""
    if not path.exists():
        return 0
    try:
        return max(0, len([ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]) - 1)
    except (OSError, UnicodeDecodeError):
        return 2


def _load_resume_state(out: Path) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None for a run stopped before its first checkpoint (the run
    directory holds its config.json, perhaps the trackers' stores, a partial write and what the first
    epoch writes before its checkpoint): it starts again at epoch 1."""
    checkpoint_path = out / "checkpoint.pt"
    if not checkpoint_path.exists():
        # what a run holds before its first checkpoint: its config, the trackers' stores, partial writes,
        # and the first epoch's weights and logs, written just before the checkpoint (a kill between
        # them left a run that could neither resume nor be trained again); epoch 1 rewrites all three
        early = {"config.json", "mlflow.db", "mlartifacts", "tensorboard", "tracking.json",
                 "model.safetensors", "log.csv", "steps.csv"}
        names = {f.name for f in out.iterdir() if not checkpoint._TEMP.match(f.name)}
        if "config.json" in names and names <= early and _logged_epochs(out / "log.csv") <= 1:
            return None
    state = checkpoint.load_state(checkpoint_path)
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{checkpoint_path}: not a biornn training checkpoint (no {', '.join(missing)})")
    if state.get("finished"):
        raise ValueError(f"{out}: this run has finished ({state['finished']}); nothing to resume")
    if state.get("biornn_version") != __version__:
        raise ValueError(f"{checkpoint_path}: written by biornn {state.get('biornn_version')}, "
                         f"this is {__version__}; resume with that version")
    return state


def _meta_difference(then: Any, now: dict[str, Any]) -> str:
    """What differs between the data a checkpoint recorded and the data read now, for one error line:
    the keys, with both values where they are short (a sampling rate), else just the key (a vocabulary)."""
    if not isinstance(then, dict):
        return "the checkpoint's record of its data is unreadable"
    parts = []
    for key in sorted(set(then) | set(now)):
        a, b = then.get(key), now.get(key)
        if a == b:
            continue
        short = all(isinstance(v, (int, float, str, type(None))) and len(repr(v)) <= 24 for v in (a, b))
        parts.append(f"{key}: {a!r} then, {b!r} now" if short else key)
    return "differs in " + "; ".join(parts[:4]) + (" ..." if len(parts) > 4 else "")


def _make_run_dir(cfg: TrainConfig, out: Path, resume: bool) -> bool:
    """Create ``out`` (and its config.json unless resuming); return whether it was created."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{out}: cannot create the run directory ({e.strerror})") from None
    if not resume:
        try:
            checkpoint.write_text(out / "config.json", cfg.to_json() + "\n")
        except BaseException:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
    return created


class _Step(torch.nn.Module):
    """What DistributedDataParallel wraps: the model's forward, or its members' logits (an ensemble),
    both through one ``forward`` so that DDP sees every call that backpropagates."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, members: bool = False) -> torch.Tensor:
        return self.model.member_logits(x, lengths) if members else self.model(x, lengths)


class _Replicated:
    """The model as a task's ``train_batches`` sees it under torchrun: called, or (an ensemble)
    ``member_logits``, each a forward of the DDP wrapper; parameters are the model's own."""

    def __init__(self, model: torch.nn.Module) -> None:
        from torch.nn.parallel import DistributedDataParallel

        # broadcast_buffers=False: biornn's models keep no running statistics; their only buffers
        # (the names n-gram part) are fixed, and DDP's construction already copies rank 0's to every
        # rank -- re-sending them before every forward would cost a copy of ~2 MB per step
        self.ddp = DistributedDataParallel(_Step(model), broadcast_buffers=False)
        if hasattr(model, "member_logits"):
            self.member_logits = lambda x, lengths=None: self.ddp(x, lengths, members=True)

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.ddp(x, lengths)


def _on_nonfinite(cfg: TrainConfig, opt: torch.optim.Optimizer, sched, what: str, total: int, out: Path,
                  epoch: int, log: Callable[[str], None]) -> None:
    """A step whose loss or gradient is not finite was dropped: stop (``TrainingError``), or go on
    as ``cfg.nonfinite`` says -- lowering the learning rate by ``lr_gamma`` for ``lower-lr``."""
    kept = (f"; {out / 'checkpoint.pt'} keeps epoch {epoch - 1}" if epoch > 1 else "")
    if cfg.nonfinite == "stop":
        raise TrainingError(f"{what}; the step was not applied{kept}. Lower lr, clip gradients "
                            f"(clip_norm=1) or set nonfinite=skip|lower-lr")
    if total > cfg.nonfinite_limit:
        raise TrainingError(f"{what}: {total} steps were not finite, more than nonfinite_limit="
                            f"{cfg.nonfinite_limit}{kept}")
    if cfg.nonfinite == "lower-lr":
        _scale_lr(opt, sched, cfg.lr_gamma)
        what += f"; learning rate x {cfg.lr_gamma:g} -> {opt.param_groups[0]['lr']:.3g}"
    log(f"{what}; the batch is skipped ({total} so far)")


def _scale_lr(opt: torch.optim.Optimizer, sched, factor: float) -> None:
    """Multiply the learning rate by ``factor`` for the rest of the run: the current rate and what
    the schedule computes it from (one-cycle's peak and floor, the base rates), so that the
    schedule goes on from the lower level; kept in the optimiser's and scheduler's state (--resume)."""
    for group in opt.param_groups:
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            if key in group:
                group[key] *= factor
    if sched is not None and hasattr(sched, "base_lrs"):
        sched.base_lrs = [lr * factor for lr in sched.base_lrs]
    if sched is not None and hasattr(sched, "min_lrs"):  # ReduceLROnPlateau's floor
        sched.min_lrs = [lr * factor for lr in sched.min_lrs]


def _rank_seed(seed: int, rank: int, epoch: int) -> int:
    """Dropout's seed on ranks > 0 (rank 0 keeps the single-process stream): distinct per rank."""
    return (seed * 1_000_003 + rank * 7919 + epoch) % 2**63


def _distributed_loss(cfg: TrainConfig, batch) -> tuple[torch.Tensor, float, int]:
    """This rank's loss to backpropagate, the global batch's loss, and the global batch's size.

    Each rank sums its share's loss; the ranks add up the sums and the mean's
    denominator (examples, class weights of the targets, or elements of a
    regression), so the logged loss is the whole batch's.  The loss to
    backpropagate is scaled by ``world / denominator`` (``world`` for a sum):
    DDP averages the ranks' gradients, which gives the gradient a single
    process computes on the whole batch.
    """
    summed = dataclasses.replace(cfg, reduction="sum")
    if batch.members:
        local = torch.stack([loss_fn(summed, o, batch.target, batch.weight) for o in batch.outputs]).mean()
        first = batch.outputs[0]
    else:
        local = loss_fn(summed, batch.outputs, batch.target, batch.weight)
        first = batch.outputs
    if batch.target.is_floating_point():
        denominator = float(first.numel())
    elif batch.weight is not None:
        denominator = float(batch.weight[batch.target].sum())
    else:
        denominator = float(batch.target.numel())
    if batch.n == 0:  # a rank with no share of a small last batch: it joins the all-reduce with no weight
        local, denominator = local * 0.0, 0.0
    total, denominator, n = distributed.all_sum([float(local.detach()), denominator, float(batch.n)])
    world = distributed.world_size()
    if cfg.reduction == "mean":
        return local * (world / denominator), total / denominator, int(n)
    return local * world, total, int(n)


def _train_epoch(cfg: TrainConfig, task, model: torch.nn.Module, step_model, data, opt: torch.optim.Optimizer, sched,
                 when: str | None, epoch: int, steps: list[dict], skipped_before: int, out: Path,
                 log: Callable[[str], None], tracker, bar) -> tuple[float, int, list[float], int]:
    """One epoch of updates over ``task.train_batches``; appends every step to ``steps``.

    Returns the summed loss, the examples seen, the gradient norms and the steps skipped (a
    non-finite loss or gradient; ``skipped_before``: how many earlier epochs skipped).
    """
    several = distributed.active()
    total_loss, n_seen, norms, skipped = 0.0, 0, [], 0
    for batch in task.train_batches(cfg, step_model, data, epoch):
        if several:  # this rank's share of the global batch
            loss, loss_value, n_batch = _distributed_loss(cfg, batch)
        else:
            if batch.members:  # an ensemble: each member learns from its own loss
                loss = torch.stack([loss_fn(cfg, o, batch.target, batch.weight)
                                    for o in batch.outputs]).mean()
            else:
                loss = loss_fn(cfg, batch.outputs, batch.target, batch.weight)
            loss_value, n_batch = loss.item(), batch.n
        finite = math.isfinite(loss_value)
        opt.zero_grad(set_to_none=True)
        norm = math.nan
        if finite:
            loss.backward()
            # the global gradient norm before clipping, logged every step
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm or math.inf))
            finite = math.isfinite(norm)
        if not finite:  # the step is not applied (under torchrun every rank sees the same figures)
            opt.zero_grad(set_to_none=True)
            skipped += 1
            what = (f"the loss became {loss_value}" if not math.isfinite(loss_value)
                    else f"the gradient norm became {norm}")
            steps.append({"step": len(steps) + 1, "epoch": epoch, "loss": loss_value, "grad_norm": norm,
                          "lr": opt.param_groups[0]["lr"]})
            _on_nonfinite(cfg, opt, sched, f"epoch {epoch}, step {len(steps)}: {what}",
                          skipped + skipped_before, out, epoch, log)
            continue
        if cfg.clip_value:
            torch.nn.utils.clip_grad_value_(model.parameters(), cfg.clip_value)
        opt.step()
        if when == "step":
            sched.step()
        total_loss += loss_value * (n_batch if cfg.reduction == "mean" else 1.0)
        n_seen += n_batch
        norms.append(norm)
        steps.append({"step": len(steps) + 1, "epoch": epoch, "loss": round(loss_value, 6),
                      "grad_norm": round(norm, 6), "lr": opt.param_groups[0]["lr"]})
        if tracker is not None:
            tracker.log_step(steps[-1])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
    if bar is not None:
        bar.close()
    return total_loss, n_seen, norms, skipped


def _train_one(cfg: TrainConfig, task, out: Path, data_dir: str | None, resume: bool, progress: bool | None,
               log: Callable[[str], None], stop_after_epochs: int | None, track: tuple[str, ...] = (),
               track_uri: str | None = None) -> dict[str, Any]:
    """One run: the loop of :func:`train` (``cfg`` validated, ``out`` checked)."""
    from .tracking import open_trackers

    main = distributed.is_main()
    several = distributed.active()
    state = distributed.on_main(lambda: _load_resume_state(out)) if resume else None
    if cfg.threads:
        _set_threads(cfg.threads)
    data = distributed.on_all(lambda: task.load(cfg, data_dir))
    if several and len(set(distributed.gather(data.fingerprint))) > 1:
        raise ValueError(f"task {cfg.task}: the processes read different data; give every machine the same "
                         f"data directory contents")
    created = distributed.on_main(lambda: _make_run_dir(cfg, out, resume)) and main
    tracker = None
    try:
        torch.manual_seed(cfg.seed)
        model = task.build(cfg, data)
        device = devices.resolve(cfg.device)
        placed = devices.place(model, device)  # nothing on the CPU; the model's callers see CPU tensors
        step_model = _Replicated(model) if several else model
        if several and distributed.rank() > 0:
            torch.manual_seed(_rank_seed(cfg.seed, distributed.rank(), 0))
        opt = _optimizer(cfg, model.parameters())
        sched, when = _scheduler(cfg, opt, task.steps_per_epoch(cfg, data))
        fields = log_fields(task)

        epoch0, best, best_epoch, bad_epochs, seconds = 0, None, 0, 0, 0.0
        history: list[dict] = []
        steps: list[dict] = []
        best_state = None
        if state is not None:
            if state["data"] != data.meta():
                raise ValueError(f"{out / 'checkpoint.pt'}: the run was trained on other data "
                                 f"({_meta_difference(state['data'], data.meta())}); resume with the data it used")
            # the same labels and features, other records (an edited sequence, swapped labels): the
            # fingerprint that evaluate checks (checkpoints before it was saved here have none)
            if state.get("data_fingerprint") not in (None, data.fingerprint):
                from .evaluate import other_data
                raise ValueError(f"{out / 'checkpoint.pt'}: {other_data(cfg)} (fingerprint differs); "
                                 f"resume with the data it used")
            try:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                if sched is not None:
                    sched.load_state_dict(state["scheduler"])
            except (RuntimeError, ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{out / 'checkpoint.pt'}: does not fit the run's config "
                                 f"({first_line(e)})") from None
            epoch0, best, best_epoch = state["epoch"], state["best"], state["best_epoch"]
            bad_epochs, seconds = state["bad_epochs"], state["seconds"]
            history, steps, best_state = state["history"], state["steps"], state["best_state"]
            rngs = state.get("rng_ranks")
            if device.type == "cuda" and state.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(state["rng_cuda"], device)
            if not several or distributed.rank() == 0:
                torch.set_rng_state(state["rng"])
            elif rngs is not None and len(rngs) == distributed.world_size():
                torch.set_rng_state(rngs[distributed.rank()])
            else:  # resumed on another number of processes: fresh dropout streams on ranks > 0
                torch.manual_seed(_rank_seed(cfg.seed, distributed.rank(), epoch0))
            if main:  # what a write killed with the run left behind (its target is intact)
                for f in checkpoint.remove_stale_temps(out):
                    log(f"removed {f.name}, a partial write of the interrupted run")
            log(f"resuming {out} after epoch {epoch0}")
        elif resume:  # stopped before its first checkpoint: from the start, with the recorded config
            if main:
                checkpoint.remove_stale_temps(out)
            log(f"resuming {out}: it stopped before its first checkpoint; training from epoch 1")
        show = sys.stderr.isatty() if progress is None else progress
        meta = {**data.meta(), "task": cfg.task, "config": cfg.to_dict(), "biornn_version": __version__,
                **task.run_meta(cfg, data), "data_fingerprint": data.fingerprint}
        if main:
            tracker = open_trackers(track, out, cfg, track_uri, resume)
            if tracker is not None and state is not None:
                tracker.epoch = epoch0  # a run resumed into its finish logs its test metrics at its last epoch

        epochs_run, stop_reason = 0, f"completed {cfg.epochs} epochs"
        first = epoch0 + 1
        if state is not None and state.get("stopped"):  # killed after its last epoch: only the finish is left
            stop_reason, first = state["stopped"], cfg.epochs + 1
            log(f"{out}: training had ended ({stop_reason}); finishing the run")
        for epoch in range(first, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            bar = _progress(task.steps_per_epoch(cfg, data), f"epoch {epoch}/{cfg.epochs}", show)
            total_loss, n_seen, norms, skipped = _train_epoch(
                cfg, task, model, step_model, data, opt, sched, when, epoch, steps,
                sum(r.get("skipped_steps", 0) for r in history), out, log, tracker, bar)
            # under torchrun rank 0 validates and every rank takes its figures (and its clock, for max_seconds)
            vm = distributed.on_main(lambda: task.validate(cfg, model, data, loss_fn))
            val_loss = vm["loss"]
            value = vm[cfg.monitor]
            if when == "epoch":
                sched.step()
            elif when == "plateau":
                sched.step(value)
            seconds = distributed.broadcast(seconds + time.perf_counter() - t0)
            row = {"epoch": epoch, "train_loss": round(total_loss / max(n_seen, 1), 6), "val_loss": round(val_loss, 6)}
            row.update({f: round(vm[f.removeprefix("val_")], 6) for f in task.LOG_FIELDS})
            row.update({"grad_norm_mean": round(float(np.mean(norms)), 6) if norms else math.nan,
                        "grad_norm_max": round(float(np.max(norms)), 6) if norms else math.nan, "lr": opt.param_groups[0]["lr"],
                        "seconds": round(seconds, 2), "skipped_steps": skipped})
            history.append(row)
            improved = _better(cfg, value, best)
            if improved:
                best, best_epoch, bad_epochs = value, epoch, 0
                if main:
                    best_state = devices.cpu_copy(model.state_dict())
                    checkpoint.save_weights(out / "model.safetensors", model, meta)
            else:
                bad_epochs += 1
            # decided before the checkpoint, which records it: a run killed after this epoch resumes
            # into its finish (the baseline, the test metrics), not into another epoch
            stop, why = None, None
            if cfg.patience and bad_epochs >= cfg.patience:
                stop = f"early stop after epoch {epoch}"
                why = f"early stop: {cfg.monitor} has not improved for {cfg.patience} epochs"
            elif cfg.max_seconds and seconds >= cfg.max_seconds:
                stop = f"time limit after epoch {epoch}"
                why = f"time limit: {seconds:.0f}s >= max_seconds {cfg.max_seconds:g}"
            elif epoch == cfg.epochs:
                stop = f"completed {cfg.epochs} epochs"
            shown = "  ".join(f"{label} {vm[key]:.3f}" for key, label in task.LOG_SHOW)
            log(f"epoch {epoch}/{cfg.epochs}  train loss {row['train_loss']:.4f}  val loss {val_loss:.4f}  "
                f"{shown}  {'*' if improved else ' '}  {seconds:.0f}s")
            # every rank's dropout stream, so that a resumed multi-process run goes on as it would have
            rngs = distributed.gather(torch.get_rng_state()) if several else None
            if main:
                _write_csv(out / "log.csv", fields, history)
                _write_csv(out / "steps.csv", STEP_FIELDS, steps)
                checkpoint.save_state(out / "checkpoint.pt", {
                    "biornn_version": __version__, "model": devices.cpu_copy(model.state_dict()),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else {}, "epoch": epoch, "best": best,
                    "best_epoch": best_epoch, "bad_epochs": bad_epochs, "seconds": seconds, "history": history,
                    "steps": steps, "best_state": best_state, "rng": torch.get_rng_state(), "data": data.meta(),
                    "data_fingerprint": data.fingerprint, "stopped": stop, "finished": None, **({"rng_ranks": rngs} if several else {}),
                    **({"rng_cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                })
                if tracker is not None:
                    tracker.log_epoch(row)
            epochs_run += 1
            if stop is not None:
                stop_reason = stop
                if why:
                    log(why)
                break
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs and epoch < cfg.epochs:
                if tracker is not None:
                    tracker.close(finished=False)
                return {}

        devices.release(model, placed)  # the test measurement and the saved weights: on the CPU
        refitted = None
        if cfg.refit:  # not under torchrun: no task that refits trains on several processes
            model, best_state, refitted = _refit(cfg, task, data, best_epoch, device, out, log, show, meta)
        metrics = distributed.on_main(lambda: _finish(cfg, task, model, data, out, log, meta, history, best_state,
                                                      best_epoch, seconds, stop_reason, tracker, refitted))
        if tracker is not None:
            tracker.close()
        return metrics
    except BaseException as e:
        if tracker is not None:
            stopped = isinstance(e, (KeyboardInterrupt, Terminated))  # to be resumed: KILLED, not FAILED
            tracker.close(failed=not stopped, interrupted=stopped)
        # a run that failed before its first checkpoint leaves nothing behind
        if created and not (out / "checkpoint.pt").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _refit(cfg: TrainConfig, task, data, best_epoch: int, device: torch.device, out: Path,
           log: Callable[[str], None], show: bool, meta: dict) -> tuple[torch.nn.Module, dict, dict[str, Any]]:
    """``refit``: a fresh model from the run's seed, trained on the training and validation parts
    together for ``best_epoch`` epochs, with the config's schedule laid out over those epochs (a
    one-cycle or cosine schedule ends annealed, as the run's own would have after ``epochs``).  Its
    weights replace the best epoch's in ``model.safetensors``.

    Deterministic: a run interrupted during the refit redoes it on ``--resume`` and ends with the
    same weights.  Returns the model (on the CPU), its state and what ``metrics.json`` records.
    """
    from .tasks.common import with_val_in_train

    merged = with_val_in_train(data)
    cfg = dataclasses.replace(cfg, epochs=best_epoch)  # what the optimiser and schedule are built for
    torch.manual_seed(cfg.seed)
    model = task.build(cfg, merged)
    placed = devices.place(model, device)
    opt = _optimizer(cfg, model.parameters())
    sched, when = _scheduler(cfg, opt, task.steps_per_epoch(cfg, merged))
    steps: list[dict] = []
    seconds, skipped = 0.0, 0
    log(f"refit: a fresh model on the training and validation parts together, {best_epoch} epoch(s) "
        f"(the best epoch)")
    for epoch in range(1, best_epoch + 1):
        t0 = time.perf_counter()
        model.train()
        bar = _progress(task.steps_per_epoch(cfg, merged), f"refit {epoch}/{best_epoch}", show)
        total, n_seen, _, n_skipped = _train_epoch(cfg, task, model, model, merged, opt, sched, when, epoch, steps,
                                                   skipped, out, log, None, bar)
        skipped += n_skipped
        if when == "epoch":
            sched.step()
        seconds += time.perf_counter() - t0
        log(f"refit epoch {epoch}/{best_epoch}  train loss {total / max(n_seen, 1):.4f}  {seconds:.0f}s")
    devices.release(model, placed)
    checkpoint.save_weights(out / "model.safetensors", model, meta)
    return model, devices.cpu_copy(model.state_dict()), {"epochs": best_epoch, "parts": ["train", "val"],
                                                           "seconds": round(seconds, 2), "skipped_steps": skipped}


def _finish(cfg: TrainConfig, task, model: torch.nn.Module, data, out: Path, log: Callable[[str], None],
            meta: dict, history: list[dict], best_state: dict, best_epoch: int, seconds: float,
            stop_reason: str, tracker, refitted: dict[str, Any] | None = None) -> dict[str, Any]:
    """After the last epoch (rank 0): mark the checkpoint finished, measure the best weights (or the
    refitted model's, ``refitted``: what :func:`_refit` reports) with ``task.finish``, write
    metrics.json and the plots.  The checkpoint is marked finished last: a run killed before that
    resumes into this finish again."""
    model.load_state_dict(best_state)
    model.eval()
    task_metrics, weights_meta = task.finish(cfg, model, data, out, log)
    if weights_meta:  # what the task fitted after training (an anomaly scorer) goes with the weights
        checkpoint.save_weights(out / "model.safetensors", model, {**meta, **weights_meta})
    metrics = {
        "task": cfg.task,
        "cell": cfg.cell,
        **task_metrics,
        "val": {k: v for k, v in history[best_epoch - 1].items() if k.startswith("val_")},
        "train_seconds": round(seconds, 2),
        "epochs": len(history),
        "best_epoch": best_epoch,
        **({"refit": refitted} if refitted is not None else {}),
        "biornn_version": __version__,
    }
    from .plots import CLASSIFICATION_CURVES, plot_curves

    if task.KIND == "classification":
        plot_curves(history, out / "curves.png", cfg.monitor, CLASSIFICATION_CURVES)
    else:
        plot_curves(history, out / "curves.png", cfg.monitor,
                    [(f, f.removeprefix("val_")) for f in task.LOG_FIELDS], unit_range=False)
    checkpoint.write_json(out / "metrics.json", metrics)
    checkpoint.save_state(out / "checkpoint.pt", {
        **checkpoint.load_state(out / "checkpoint.pt"), "finished": stop_reason})
    if tracker is not None:
        tracker.log_finish(metrics, [p for p in sorted(out.glob("*.png"))])
    return metrics


def _finished_metrics(task: Any, name: str, sub_dir: Path) -> dict[str, Any]:
    """A finished sub-run's metrics.json, as the summary reads it; ``ValueError`` naming the file
    where it is damaged (not JSON, or without what the summary table takes from it)."""
    path = sub_dir / "metrics.json"
    again = f"remove {sub_dir} to train that run again"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        row = task.summary_row(name, metrics)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not readable JSON ({first_line(e, 120)}); {again}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: not a finished run's metrics ({type(e).__name__}: {first_line(e, 80)}); "
                         f"{again}") from None
    # what the summary averages must be numbers (null: a figure that was not a number, as NaN is written)
    for key, value in list(row.items())[1:]:
        if isinstance(value, bool) or not (value is None or isinstance(value, (int, float))):
            raise ValueError(f"{path}: not a finished run's metrics ({key} is {value!r}, not a number); {again}")
    for group in getattr(task, "SUMMARY_GROUPS", ("baseline",)):
        if not isinstance(metrics.get(group), dict) or not isinstance(metrics[group].get("name"), str):
            raise ValueError(f"{path}: not a finished run's metrics (no {group}.name); {again}")
    for key in ("train_seconds", "epochs"):
        if isinstance(row.get(key), bool) or not isinstance(row.get(key), (int, float)):
            raise ValueError(f"{path}: not a finished run's metrics ({key} is {row.get(key)!r}); {again}")
    return metrics


def train_each(cfg: TrainConfig, runs: list[tuple[str, TrainConfig]], out: Path, data_dir: str | None,
               resume: bool, progress: bool | None, log: Callable[[str], None],
               stop_after_epochs: int | None) -> dict[str, Any]:
    """Train several runs (``ecg-anomaly record=all``) into ``out/NAME``, then write a summary.

    ``out`` gets the config (``record = "all"``, ``fold = 0``), one complete run
    directory per name, ``summary.json`` and ``summary.md`` (one row per run:
    ``task.summary_row``, the model's and the baseline's test metrics) and a
    ``metrics.json`` whose ``test`` and ``baseline`` (and the task's other
    ``SUMMARY_GROUPS``) are the means over the runs.  On ``resume``,
    finished runs are kept, an interrupted one resumes from its checkpoint
    and the others are trained.
    """
    task = tasks.get(cfg.task)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{out}: cannot create the run directory ({e.strerror})") from None
    if not resume:
        checkpoint.write_text(out / "config.json", cfg.to_json() + "\n")
    results: dict[str, dict] = {}
    try:
        for name, sub in runs:
            sub_dir = out / name
            if (sub_dir / "metrics.json").is_file():
                results[name] = _finished_metrics(task, name, sub_dir)
                log(f"{name}: finished before, kept")
                continue
            again = (sub_dir / "checkpoint.pt").is_file()
            if not again and sub_dir.exists():  # a run that died before its first checkpoint
                shutil.rmtree(sub_dir)
            log(f"== {name}")
            with checkpoint.run_lock(sub_dir):  # a resume of this sub-run alone, started beside, is refused
                m = _train_one(sub, task, sub_dir, data_dir, again, progress, log, stop_after_epochs)
            if not m:
                return {}
            results[name] = m
    except BaseException:
        if created and not any(p.name != "config.json" for p in out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        raise
    # a figure read back from a finished run's metrics.json as null (it was NaN) is NaN again
    rows = [{k: math.nan if v is None else v for k, v in task.summary_row(name, m).items()}
            for name, m in results.items()]
    by = next(iter(rows[0]))  # the first column names the run: "record" (ecg-anomaly), "fold" (promoters)
    numeric = [k for k in rows[0] if k != by and isinstance(rows[0][k], (int, float))]
    mean = {k: round(float(np.mean([r[k] for r in rows])), 6) for k in numeric}
    summary = {"task": cfg.task, "cell": cfg.cell, "runs": rows, "mean": mean}
    checkpoint.write_json(out / "summary.json", summary)
    checkpoint.write_text(out / "summary.md", _markdown_table(rows, mean))
    # the baseline's columns (and any other comparison the task names) are baseline_KEY, GROUP_KEY
    groups = getattr(task, "SUMMARY_GROUPS", ("baseline",))
    first = results[rows[0][by]]

    def grouped(k: str) -> bool:
        return any(k.startswith(f"{g}_") for g in groups)

    metrics = {
        "task": cfg.task, "cell": cfg.cell,
        "test": {k: mean[k] for k in numeric
                 if not grouped(k) and k not in ("train_seconds", "epochs", "smooth", "n_test")},
        **{g: {"name": first[g]["name"],
               **{k.removeprefix(f"{g}_"): mean[k] for k in numeric if k.startswith(f"{g}_")}} for g in groups},
        "runs": [name for name, _ in runs],
        "train_seconds": round(float(sum(r["train_seconds"] for r in rows)), 2),
        "epochs": int(max(r["epochs"] for r in rows)),
        "biornn_version": __version__,
    }
    checkpoint.write_json(out / "metrics.json", metrics)
    return metrics


def _markdown_table(rows: list[dict], mean: dict) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]

    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    for r in rows:
        lines.append("| " + " | ".join(cell(r[k]) for k in keys) + " |")
    lines.append("| mean | " + " | ".join(cell(mean[k]) if k in mean else "" for k in keys[1:]) + " |")
    return "\n".join(lines) + "\n"
