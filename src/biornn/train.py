"""The BPTT training loop: one plain function, :func:`train`.

For each epoch: shuffle the training split (a generator seeded by ``seed``
and the epoch, so a resumed run shuffles exactly as an uninterrupted one),
run mini-batches of variable-length sequences through the model, compute the
loss (cross-entropy or squared error, summed or averaged), backpropagate
through time (autograd through :class:`biornn.Recurrent`'s loop or fused
kernels), log the global gradient norm of every step, clip (by norm or by
value), step the optimiser and the learning-rate schedule; then evaluate on
the validation split, keep the best weights by the monitored metric, write
``log.csv`` and a resumable ``checkpoint.pt``, and stop early if the metric has
not improved for ``patience`` epochs.  At the end the best weights are
measured on the test split beside the task's baseline, and the run directory
gets its ``metrics.json`` and plots.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from . import __version__, checkpoint, tasks
from .config import TrainConfig, read_config
from .data.batching import pad_batch

LOG_FIELDS = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1",
              "grad_norm_mean", "grad_norm_max", "lr", "seconds")
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
    """Cross-entropy, or the squared error ½‖y - onehot(d)‖² of the lectures, summed or averaged."""
    if cfg.loss == "ce":
        return F.cross_entropy(logits, y, weight=weight, reduction=cfg.reduction)
    target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    per_example = 0.5 * (logits - target).square().sum(dim=1)  # (B,)
    if weight is not None:
        w = weight[y]
        return (per_example * w).sum() / (w.sum() if cfg.reduction == "mean" else 1.0)
    return per_example.mean() if cfg.reduction == "mean" else per_example.sum()


def _better(cfg: TrainConfig, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if cfg.monitor == "loss" else value > best


def _mean_loss(cfg: TrainConfig, logits: torch.Tensor, y: np.ndarray, weight: torch.Tensor | None) -> float:
    """The loss per example over a whole split, from its logits (N, K)."""
    if not len(y):
        return 0.0
    total = loss_fn(dataclasses.replace(cfg, reduction="sum"), logits, torch.from_numpy(y), weight)
    return float(total) / len(y)


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

    Returns
    -------
    dict
        The contents of ``metrics.json`` (``{}`` if stopped by ``stop_after_epochs``).
    """
    out = Path(out_dir)
    if resume:
        checkpoint_path = out / "checkpoint.pt"
        if not (out / "config.json").is_file():
            raise ValueError(f"{out}: no config.json, not a run directory to resume")
        cfg = read_config(out / "config.json")
        if (out / "metrics.json").exists():
            raise ValueError(f"{out}: this run has finished (metrics.json exists); nothing to resume")
        state = checkpoint.load_state(checkpoint_path)
        missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
        if missing:
            raise ValueError(f"{checkpoint_path}: not a biornn training checkpoint (no {', '.join(missing)})")
        if state.get("finished"):
            raise ValueError(f"{out}: this run has finished ({state['finished']}); nothing to resume")
        if state.get("biornn_version") != __version__:
            raise ValueError(f"{checkpoint_path}: written by biornn {state.get('biornn_version')}, "
                             f"this is {__version__}; resume with that version")
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"{out}: already exists and is not empty; choose another --out or --resume it")
        state = None
    cfg.validate()
    task = tasks.get(cfg.task)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = task.load(cfg, data_dir)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{out}: cannot create the run directory ({e.strerror})") from None
    try:
        if not resume:
            checkpoint.write_text(out / "config.json", cfg.to_json() + "\n")

        train_split, val_split = data.splits["train"], data.splits["val"]
        K = len(data.labels)
        torch.manual_seed(cfg.seed)
        model = task.build_model(cfg, len(data.vocab), K)
        opt = _optimizer(cfg, model.parameters())
        n_train = len(train_split.encoded)
        steps_per_epoch = math.ceil(n_train / cfg.batch_size)
        sched, when = _scheduler(cfg, opt, steps_per_epoch)
        weight = task.class_weights(cfg, train_split.y, K)
        adjust = cfg.logit_adjustment * task.log_prior(train_split.y, K) if cfg.logit_adjustment else None

        epoch0, best, best_epoch, bad_epochs, seconds = 0, None, 0, 0, 0.0
        history: list[dict] = []
        steps: list[dict] = []
        best_state = None
        if state is not None:
            if state["data"] != data.meta():
                raise ValueError(f"{out / 'checkpoint.pt'}: the run was trained on other data (vocabulary or "
                                 f"labels differ); resume with the data directory it used")
            try:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                if sched is not None:
                    sched.load_state_dict(state["scheduler"])
            except (RuntimeError, ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{out / 'checkpoint.pt'}: does not fit the run's config "
                                 f"({str(e).splitlines()[0][:120]})") from None
            epoch0, best, best_epoch = state["epoch"], state["best"], state["best_epoch"]
            bad_epochs, seconds = state["bad_epochs"], state["seconds"]
            history, steps, best_state = state["history"], state["steps"], state["best_state"]
            torch.set_rng_state(state["rng"])
            log(f"resuming {out} after epoch {epoch0}")
        show = sys.stderr.isatty() if progress is None else progress
        meta = {**data.meta(), "task": cfg.task, "config": cfg.to_dict(), "biornn_version": __version__,
                "log_prior": task.log_prior(train_split.y, K).tolist(), "data_fingerprint": data.fingerprint}

        epochs_run, stop_reason = 0, f"completed {cfg.epochs} epochs"
        for epoch in range(epoch0 + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(n_train, generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))
            total_loss, norms = 0.0, []
            bar = _progress(steps_per_epoch, f"epoch {epoch}/{cfg.epochs}", show)
            for start in range(0, n_train, cfg.batch_size):
                idx = order[start : start + cfg.batch_size].tolist()
                x, lengths = pad_batch([train_split.encoded[i] for i in idx])
                y = torch.from_numpy(train_split.y[idx])
                if hasattr(model, "member_logits"):  # an ensemble: each member learns from its own loss
                    loss = torch.stack([loss_fn(cfg, o, y, weight) for o in model.member_logits(x, lengths)]).mean()
                else:
                    loss = loss_fn(cfg, model(x, lengths), y, weight)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise TrainingError(f"epoch {epoch}: the loss became {loss_value}; lower lr or clip gradients")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                # the global gradient norm before clipping, logged every step
                norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm or math.inf))
                if cfg.clip_value:
                    torch.nn.utils.clip_grad_value_(model.parameters(), cfg.clip_value)
                if not math.isfinite(norm):
                    raise TrainingError(f"epoch {epoch}: the gradient norm became {norm}; lower lr or clip gradients")
                opt.step()
                if when == "step":
                    sched.step()
                total_loss += loss_value * (len(idx) if cfg.reduction == "mean" else 1.0)
                norms.append(norm)
                steps.append({"step": len(steps) + 1, "epoch": epoch, "loss": round(loss_value, 6),
                              "grad_norm": round(norm, 6), "lr": opt.param_groups[0]["lr"]})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
            if bar is not None:
                bar.close()
            val_logits = task.split_logits(model, val_split)
            vm, _ = task.evaluate_split(model, val_split, data.labels, adjust, logits=val_logits)
            val_loss = _mean_loss(cfg, val_logits, val_split.y, weight)
            value = val_loss if cfg.monitor == "loss" else vm[cfg.monitor]
            if when == "epoch":
                sched.step()
            elif when == "plateau":
                sched.step(value)
            seconds += time.perf_counter() - t0
            row = {
                "epoch": epoch, "train_loss": round(total_loss / n_train, 6), "val_loss": round(val_loss, 6),
                "val_accuracy": round(vm["accuracy"], 6), "val_balanced_accuracy": round(vm["balanced_accuracy"], 6),
                "val_macro_f1": round(vm["macro_f1"], 6), "grad_norm_mean": round(float(np.mean(norms)), 6),
                "grad_norm_max": round(float(np.max(norms)), 6), "lr": opt.param_groups[0]["lr"],
                "seconds": round(seconds, 2),
            }
            history.append(row)
            improved = _better(cfg, value, best)
            if improved:
                best, best_epoch, bad_epochs = value, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                checkpoint.save_weights(out / "model.safetensors", model, meta)
            else:
                bad_epochs += 1
            log(f"epoch {epoch}/{cfg.epochs}  train loss {row['train_loss']:.4f}  val loss {val_loss:.4f}  "
                f"val acc {vm['accuracy']:.3f}  val bal acc {vm['balanced_accuracy']:.3f}  "
                f"{'*' if improved else ' '}  {seconds:.0f}s")
            _write_csv(out / "log.csv", LOG_FIELDS, history)
            _write_csv(out / "steps.csv", STEP_FIELDS, steps)
            checkpoint.save_state(out / "checkpoint.pt", {
                "biornn_version": __version__, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else {}, "epoch": epoch, "best": best,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs, "seconds": seconds, "history": history,
                "steps": steps, "best_state": best_state, "rng": torch.get_rng_state(), "data": data.meta(),
                "finished": None,
            })
            epochs_run += 1
            if cfg.patience and bad_epochs >= cfg.patience:
                stop_reason = f"early stop after epoch {epoch}"
                log(f"early stop: {cfg.monitor} has not improved for {cfg.patience} epochs")
                break
            if cfg.max_seconds and seconds >= cfg.max_seconds:
                stop_reason = f"time limit after epoch {epoch}"
                log(f"time limit: {seconds:.0f}s >= max_seconds {cfg.max_seconds:g}")
                break
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs and epoch < cfg.epochs:
                return {}

        checkpoint.save_state(out / "checkpoint.pt", {
            **checkpoint.load_state(out / "checkpoint.pt"), "finished": stop_reason})
        model.load_state_dict(best_state)
        test_metrics, test_pred = task.evaluate_split(model, data.splits["test"], data.labels, adjust)
        log("training the baseline on the same split ...")
        baselines = task.baseline(cfg, data)
        base_name = "ngram-logreg-balanced"
        metrics = {
            "task": cfg.task,
            "cell": cfg.cell,
            "test": {k: test_metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")},
            "baseline": {"name": base_name, **baselines[base_name]},
            "baselines": baselines,
            "per_class": test_metrics["per_class"],
            "val": {k: v for k, v in history[best_epoch - 1].items() if k.startswith("val_")},
            "train_seconds": round(seconds, 2),
            "epochs": len(history),
            "best_epoch": best_epoch,
            "n": {part: len(s.encoded) for part, s in data.splits.items()},
            "biornn_version": __version__,
        }
        from .metrics import confusion_matrix
        from .plots import plot_confusion, plot_curves

        plot_curves(history, out / "curves.png", cfg.monitor)
        plot_confusion(confusion_matrix(data.splits["test"].y, test_pred, K), data.labels, out / "confusion.png")
        checkpoint.write_json(out / "metrics.json", metrics)
        return metrics
    except BaseException:
        # a run that failed before its first checkpoint leaves nothing behind
        if created and not (out / "checkpoint.pt").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
