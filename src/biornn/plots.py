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


CLASSIFICATION_CURVES = (("val_accuracy", "accuracy"), ("val_balanced_accuracy", "balanced accuracy"),
                         ("val_macro_f1", "macro-F1"))


def plot_curves(history: Sequence[dict], path: str | Path, monitor: str = "balanced_accuracy",
                metrics: Sequence[tuple[str, str]] = CLASSIFICATION_CURVES, unit_range: bool = True) -> None:
    """Loss (train, validation) and validation ``metrics`` ((key, label) pairs) per epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax1.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    if all(r["train_loss"] > 0 and r["val_loss"] > 0 for r in history) and not unit_range:
        ax1.set_yscale("log")
    ax1.legend()
    for key, label in metrics:
        ax2.plot(epochs, [r[key] for r in history], label=label)
    ax2.set(xlabel="epoch", ylabel="validation", title="validation metrics")
    if unit_range:
        ax2.set_ylim(0, 1)
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


def plot_detection(x: np.ndarray, y: np.ndarray, test: tuple[int, int], pred: np.ndarray, score: np.ndarray,
                   threshold: float, path: str | Path, title: str = "") -> None:
    """A record's test rows: every lead with its prediction and the labelled window shaded, then the
    anomaly score with the threshold.

    Parameters
    ----------
    x, pred : ndarray, shape (N, L)
        The leads and the one-step-ahead predictions (NaN where none).
    y : ndarray of bool, shape (N,)
        Labelled anomalous rows.
    test : (start, stop)
        The rows to show.
    score : ndarray, shape (N,)
    threshold : float
    """
    plt = _pyplot()
    a, b = test
    rows = np.arange(a, b)
    L = x.shape[1]
    fig, axes = plt.subplots(L + 1, 1, figsize=(12, 2.2 * (L + 1)), sharex=True)
    windows = []
    inside = np.concatenate([[False], y[a:b], [False]]).astype(np.int8)
    d = np.diff(inside)
    windows = list(zip(np.flatnonzero(d == 1) + a, np.flatnonzero(d == -1) + a))
    for i in range(L):
        ax = axes[i]
        ax.plot(rows, x[a:b, i], lw=0.7, color="black", label=f"lead {i + 1}")
        ax.plot(rows, pred[a:b, i], lw=0.7, color="tab:blue", alpha=0.8, label="prediction")
        ax.set_ylabel(f"lead {i + 1}")
        for lo, hi in windows:
            ax.axvspan(lo, hi, color="tab:red", alpha=0.15, lw=0)
        ax.legend(loc="upper right", fontsize=7)
    ax = axes[L]
    ax.plot(rows, score[a:b], lw=0.8, color="tab:purple", label="score")
    ax.axhline(threshold, color="tab:orange", ls="--", lw=1, label=f"threshold {threshold:.3g} (no test labels)")
    flagged = np.isfinite(score[a:b]) & (score[a:b] > threshold)
    ax.fill_between(rows, 0, 1, where=flagged, transform=ax.get_xaxis_transform(), color="tab:orange",
                    alpha=0.2, lw=0)
    for lo, hi in windows:
        ax.axvspan(lo, hi, color="tab:red", alpha=0.15, lw=0)
    ax.set(xlabel="row", ylabel="score")
    ax.legend(loc="upper right", fontsize=7)
    if title:
        axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
