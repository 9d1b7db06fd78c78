"""Plots of a run, written as PNG with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .checkpoint import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict], path: str | Path, monitor: str = "balanced_accuracy") -> None:
    """Loss (train, validation) and validation metrics per epoch; the best epoch marked."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax1.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    for key, label in (("val_accuracy", "accuracy"), ("val_balanced_accuracy", "balanced accuracy"),
                       ("val_macro_f1", "macro-F1")):
        ax2.plot(epochs, [r[key] for r in history], label=label)
    ax2.set(xlabel="epoch", ylabel="validation", title="validation metrics", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "test confusion") -> None:
    """Row-normalised confusion matrix (each true class sums to 1), labelled like the tutorial's."""
    plt = _pyplot()
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.matshow(norm, vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(im)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
