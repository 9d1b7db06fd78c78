"""Use a run directory by its path alone: evaluate it on its test split, predict with it.

Everything runs under ``torch.no_grad()`` and ``model.eval()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import checkpoint, tasks
from .config import TrainConfig, read_config


def load_run(run: str | Path) -> tuple[TrainConfig, Any, torch.nn.Module, dict[str, Any]]:
    """(config, task module, model with the run's best weights, metadata) of a run directory."""
    run = checkpoint.check_run_dir(run)
    cfg = read_config(run / "config.json")
    weights = run / "model.safetensors"
    tensors, meta = checkpoint.load_weights(weights)
    task = tasks.get(cfg.task)
    if cfg.ngram_blend and not getattr(task, "NGRAM", False):
        raise ValueError(f"{run / 'config.json'}: ngram_blend={cfg.ngram_blend:g} applies to the names task, "
                         f"not to {cfg.task!r}; config.json was edited")
    model = task.from_weights(cfg, tensors, meta, weights)
    model.eval()
    return cfg, task, model, meta


def other_data(cfg) -> str:
    """What changed when a run's data fingerprint differs: its own files, or the data directory."""
    if getattr(cfg, "train_file", ""):
        return "its files (train_file, val_file, test_file in config.json) now hold other data than it was trained on"
    return "the data directory holds other data than the run was trained on"


def _means(each: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``test`` (and ``baseline`` where the runs report one): each numeric metric's mean over the runs,
    as the run's own metrics.json has it (promoters' cross-validated accuracy), where every run has it."""
    out: dict[str, dict[str, float]] = {}
    for part in ("test", "baseline"):
        parts = [m.get(part) for m in each.values()]
        if not parts or not all(isinstance(x, dict) for x in parts):
            continue
        keys = [k for k, v in parts[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and all(isinstance(x.get(k), (int, float)) for x in parts)]
        if keys:
            out[part] = {k: round(sum(float(x[k]) for x in parts) / len(parts), 6) for k in keys}
    return out


def evaluate_run(run: str | Path, data_dir: str | None = None) -> dict[str, Any]:
    """The run's test metrics, recomputed from the data directory with the saved weights.

    A directory of several runs (``ecg-anomaly record=all``, promoters' folds) is
    evaluated run by run: ``{"task", "cell", "test", "runs": {name: metrics}}``,
    ``test`` the means over the runs (the model's; the baselines are not saved to
    evaluate again).
    """
    config = Path(run) / "config.json"
    if config.is_file() and not (Path(run) / "model.safetensors").exists():
        cfg = read_config(config)
        subruns = tasks.get(cfg.task).subruns(cfg, data_dir)
        if subruns is not None:
            each = {name: evaluate_run(Path(run) / name, data_dir) for name, _ in subruns}
            return {"task": cfg.task, "cell": cfg.cell, **_means(each), "runs": each}
    cfg, task, model, meta = load_run(run)
    data = task.load(cfg, data_dir)
    if data.fingerprint != meta["data_fingerprint"]:
        raise ValueError(f"{run}: {other_data(cfg)} (fingerprint differs); evaluate with the data it used")
    if hasattr(task, "evaluate_saved"):  # a task that measures its saved model itself
        with torch.no_grad():
            return {"task": cfg.task, "cell": cfg.cell, **task.evaluate_saved(cfg, model, meta, data)}
    # the run's vocabulary, not a rebuilt one: encode the test split with it
    vocab = meta["vocab_obj"]
    split = data.splits["test"]
    split.encoded = [vocab.encode(t) for t in split.texts]
    adjust = cfg.logit_adjustment * torch.tensor(meta["log_prior"]) if cfg.logit_adjustment else None
    with torch.no_grad():
        m, _ = task.evaluate_split(model, split, data.labels, adjust)
    return {"task": cfg.task, "cell": cfg.cell, "test": {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")},
            "n": m["n"]}


def predict(run: str | Path, inputs: list[str], top: int = 3, batch_size: int = 256) -> list[dict[str, Any]]:
    """For each input, its ``top`` classes with probabilities (one dict per input)."""
    cfg, task, model, meta = load_run(run)
    if task.KIND != "classification":
        raise ValueError(f"{run}: a {cfg.task} run scores signals; use 'biornn detect {run} SIGNAL'")
    labels = meta["labels"]
    if not inputs:
        raise ValueError("no input given")
    k = min(top, len(labels))
    rows: list[dict[str, Any] | None] = [None] * len(inputs)
    # batches of similar lengths, so that one very long input pads nothing else
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        x, lengths = task.encode_inputs([inputs[i] for i in chunk], meta["vocab_obj"])
        with torch.no_grad():
            logits = model(x, lengths)
            if cfg.logit_adjustment:
                logits = logits - cfg.logit_adjustment * torch.tensor(meta["log_prior"])
            values, index = torch.softmax(logits, dim=1).topk(k, dim=1)
        for i, vs, ix in zip(chunk, values, index):
            rows[i] = {"input": inputs[i], "top": [{"label": labels[int(j)], "probability": round(float(p), 4)}
                                                   for p, j in zip(vs, ix)],
                       **_unknown(inputs[i], meta["vocab_obj"])}
    return rows


def _unknown(text: str, vocab: Any) -> dict[str, list[str]]:
    """``{"unknown": [...]}``: the characters of ``text`` a character vocabulary does not hold, which the
    model read as its unknown symbol (said in the output, not dropped silently); ``{}`` when there are
    none, and for alphabets, which refuse such characters instead."""
    import unicodedata

    from .data.batching import Vocabulary

    if not isinstance(vocab, Vocabulary):
        return {}
    unknown = sorted({c for c in unicodedata.normalize("NFC", text.strip()) if c not in vocab})
    return {"unknown": unknown} if unknown else {}
