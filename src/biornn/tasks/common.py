"""What every task module shares with the training loop."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Batch:
    """One training step, as a task's ``train_batches`` yields it; :mod:`biornn.train` computes the loss.

    Attributes
    ----------
    outputs : Tensor
        The model's outputs: (B, K) logits, (M, B, K) for an ensemble's members
        (``members``: each learns from its own loss), or (B, W, k, L) predictions.
    target : Tensor
        Integer classes (B,), or floating-point targets shaped like ``outputs`` (a regression).
    weight : Tensor or None
        Per-class loss weights (K,).
    n : int
        Examples (or predicted steps) in the batch, for the epoch's mean loss.
    members : bool
    """

    outputs: Tensor
    target: Tensor
    weight: Tensor | None
    n: int
    members: bool = False
