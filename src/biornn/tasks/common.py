"""What every task module shares with the training loop."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from ..errors import first_line


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


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random generator of one epoch, seeded by the seed and the epoch alone, so
    that a resumed run draws exactly what an uninterrupted one drew."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def shuffled_batches(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[list[int]]:
    """The indices of each mini-batch of one epoch over ``n`` examples, shuffled by
    :func:`epoch_generator`; the last batch may be smaller."""
    order = torch.randperm(n, generator=epoch_generator(seed, epoch))
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size].tolist()


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps in an epoch of ``n`` examples."""
    return math.ceil(n / batch_size)


def stratified_group_split(labels, groups, fractions: dict[str, float], seed: int) -> dict[str, "np.ndarray"]:
    """Indices of each part, stratified by label and grouped (identical ``groups`` stay in one part).

    Parameters
    ----------
    labels : sequence, shape (N,)
    groups : sequence of hashable, shape (N,)
        E.g. the sequence itself, so that an exact duplicate never lies in two parts.
    fractions : dict of str to float
        Part name -> fraction of every class (summing to 1), in the order parts are filled.
    seed : int
        The split's seed: the same seed gives the same parts on every machine.

    Returns
    -------
    dict of str to ndarray of int64
        Each part's indices, sorted.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    # a group's label is the label of its first member: each class's groups are shuffled and dealt out
    first: dict = {}
    members: dict = {}
    for i, (label, group) in enumerate(zip(labels, groups)):
        first.setdefault(group, label)
        members.setdefault(group, []).append(i)
    by_class: dict = {}
    for group, label in first.items():
        by_class.setdefault(label, []).append(group)
    parts: dict[str, list[int]] = {name: [] for name in fractions}
    names = list(fractions)
    for label in sorted(by_class, key=str):
        gs = by_class[label]
        order = rng.permutation(len(gs))
        total = sum(len(members[g]) for g in gs)
        cuts, acc = [], 0.0
        for name in names[:-1]:
            acc += fractions[name]
            cuts.append(round(acc * total))
        filled, k = 0, 0
        for j in order:
            while k < len(cuts) and filled >= cuts[k]:
                k += 1
            parts[names[k]].extend(members[gs[j]])
            filled += len(members[gs[j]])
    return {name: np.array(sorted(idx), dtype=np.int64) for name, idx in parts.items()}


def load_model_state(model: torch.nn.Module, tensors: dict, path) -> None:
    """Load a run's ``tensors`` into ``model`` strictly; ``ValueError`` naming ``path`` if they do not
    fit the config: which tensor is missing, extra, or of another shape (the first such)."""
    want = model.state_dict()
    missing = [k for k in want if k not in tensors]
    extra = [k for k in tensors if k not in want]
    shape = [k for k in want if k in tensors and tuple(tensors[k].shape) != tuple(want[k].shape)]
    if missing or extra or shape:
        if missing:  # a part the config adds or drops says more than the shapes that follow from it
            what = f"the config's model has {missing[0]}, the file has not"
        elif extra:
            what = f"the file has {extra[0]}, the config's model has not"
        else:
            k = shape[0]
            what = f"{k} is {tuple(tensors[k].shape)} in the file, {tuple(want[k].shape)} for the config"
        more = len(missing) + len(extra) + len(shape) - 1
        raise ValueError(f"{path}: weights do not fit the config ({what}"
                         f"{f'; {more} more tensor(s) differ' if more else ''}); config.json was edited, or "
                         f"is another run's") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the config ({first_line(e, 160)})") from None


def with_val_in_train(data):
    """A copy of a task's data whose training part also holds the validation part (``refit``).

    ``data`` is a dataclass whose field ``splits`` (or ``parts``) maps ``"train"``, ``"val"``,
    ``"test"`` to parts; a part is a dataclass of per-record lists and arrays (or ``None``), which
    are concatenated field by field, training records first.
    """
    import dataclasses

    import numpy as np

    key = "splits" if any(f.name == "splits" for f in dataclasses.fields(data)) else "parts"
    parts = getattr(data, key)
    train, val = parts["train"], parts["val"]

    def joined(a, b):
        if a is None or b is None:
            return a if b is None else b
        return a + b if isinstance(a, list) else np.concatenate([a, b])

    merged = type(train)(**{f.name: joined(getattr(train, f.name), getattr(val, f.name))
                            for f in dataclasses.fields(train)})
    return dataclasses.replace(data, **{key: {**parts, "train": merged}})
