"""Use a run directory by its path alone: evaluate it on its test split, predict with it.

Everything runs under ``torch.no_grad()`` and ``model.eval()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import checkpoint, tasks
from .config import TrainConfig, from_json
from .data.batching import Vocabulary


def load_run(run: str | Path) -> tuple[TrainConfig, Any, torch.nn.Module, dict[str, Any]]:
    """(config, task module, model with the run's best weights, metadata) of a run directory."""
    run = checkpoint.check_run_dir(run)
    cfg = from_json((run / "config.json").read_text(encoding="utf-8"), source=str(run / "config.json"))
    tensors, meta = checkpoint.load_weights(run / "model.safetensors")
    for key in ("vocab", "labels", "log_prior"):
        if key not in meta:
            raise ValueError(f"{run / 'model.safetensors'}: metadata has no {key!r}")
    task = tasks.get(cfg.task)
    vocab = Vocabulary.from_json(meta["vocab"])
    model = task.build_model(cfg, len(vocab), len(meta["labels"]))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{run / 'model.safetensors'}: weights do not fit the config ({str(e).splitlines()[0][:160]})") from None
    model.eval()
    meta["vocab_obj"] = vocab
    return cfg, task, model, meta


def evaluate_run(run: str | Path, data_dir: str | None = None) -> dict[str, Any]:
    """The run's test metrics, recomputed from the data directory with the saved weights."""
    cfg, task, model, meta = load_run(run)
    data = task.load(cfg, data_dir)
    if data.labels != meta["labels"]:
        raise ValueError(f"{run}: the data set's labels differ from the ones the model was trained on")
    # the run's vocabulary, not a rebuilt one: encode the test split with it
    vocab = meta["vocab_obj"]
    split = data.splits["test"]
    split.encoded = [vocab.encode(t) for t in split.texts]
    adjust = cfg.logit_adjustment * torch.tensor(meta["log_prior"]) if cfg.logit_adjustment else None
    with torch.no_grad():
        m, _ = task.evaluate_split(model, split, data.labels, adjust)
    return {"task": cfg.task, "cell": cfg.cell, "test": {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")},
            "n": m["n"]}


def predict(run: str | Path, inputs: list[str], top: int = 3) -> list[dict[str, Any]]:
    """For each input, its ``top`` classes with probabilities (one dict per input)."""
    cfg, task, model, meta = load_run(run)
    labels = meta["labels"]
    if not inputs:
        raise ValueError("no input given")
    x, lengths = task.encode_inputs(inputs, meta["vocab_obj"])
    with torch.no_grad():
        logits = model(x, lengths)
        if cfg.logit_adjustment:
            logits = logits - cfg.logit_adjustment * torch.tensor(meta["log_prior"])
        probs = torch.softmax(logits, dim=1)
    k = min(top, len(labels))
    values, index = probs.topk(k, dim=1)
    return [
        {"input": text, "top": [{"label": labels[int(i)], "probability": round(float(p), 4)}
                                for p, i in zip(vs, ix)]}
        for text, vs, ix in zip(inputs, values, index)
    ]
