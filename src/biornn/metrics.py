"""Classification metrics, computed from a confusion matrix.

All functions take integer labels: ``y_true`` and ``y_pred`` of shape (N,)
with values in ``0 .. n_classes - 1``.  Classes absent from ``y_true`` are
left out of the macro averages (their recall is undefined), as scikit-learn's
``balanced_accuracy_score`` does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """The confusion matrix.

    Parameters
    ----------
    y_true, y_pred : sequence of int, shape (N,)
        Class indices in 0 .. n_classes - 1.
    n_classes : int
        K.

    Returns
    -------
    ndarray of int64, shape (K, K)
        Counts: row = true class, column = predicted class.

    Raises
    ------
    ValueError
        Shapes that differ or are not 1-D; a label outside 0 .. K - 1 (naming ``y_true`` or ``y_pred``).

    >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
    """
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got {t.shape} and {p.shape}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} has labels outside 0..{n_classes - 1}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class.

    Parameters
    ----------
    cm : ndarray, shape (K, K)
        A :func:`confusion_matrix`.

    Returns
    -------
    dict of str -> ndarray of float, each shape (K,)
        ``precision``, ``recall``, ``f1``, ``support``; 0 where undefined (no
        prediction of, or no example of, the class).
    """
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, object]:
    """Accuracy, balanced accuracy, macro-F1 and per-class precision/recall/F1.

    Parameters
    ----------
    y_true, y_pred : sequence of int, shape (N,)
    labels : sequence of str, shape (K,)
        The class names, in index order.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy`` (mean recall over the classes
        present), ``macro_f1`` (mean F1 over the classes present), ``n`` and
        ``per_class``: {label: {"precision", "recall", "f1", "support"}}.
    """
    cm = confusion_matrix(y_true, y_pred, len(labels))
    pc = per_class(cm)
    present = pc["support"] > 0
    n = int(cm.sum())
    return {
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "balanced_accuracy": float(pc["recall"][present].mean()) if present.any() else 0.0,
        "macro_f1": float(pc["f1"][present].mean()) if present.any() else 0.0,
        "n": n,
        "per_class": {
            label: {k: (int(pc[k][i]) if k == "support" else float(pc[k][i])) for k in pc}
            for i, label in enumerate(labels)
        },
    }
