r"""Long-time-lag problems: synthetic sequences whose answer depends on inputs far back.

**The adding problem** (Hochreiter & Schmidhuber 1997, experiment 4; in the
form of Le, Jaitly & Hinton 2015, Sec. 4.1).  Each step carries two numbers:
a value :math:`v_t \sim U(0, 1)` and a marker :math:`m_t \in \{0, 1\}`.
Exactly two steps are marked, one uniformly in the first half of the
sequence and one in the second half; the target, read after the last step,
is the sum of the two marked values,

.. math::

    y = \sum_t m_t v_t .

Predicting the constant 1 (the mean of y) scores a mean squared error of
:math:`\mathrm{Var}(y) = 2 \cdot \tfrac{1}{12} \approx 0.167`, the trivial
baseline; a net that scores below 0.01 has solved the task.  The first
marker lies between T/2 and T steps before the read-out, so the net must
carry a value across at least T/2 steps.

**The temporal-order problem** (Hochreiter & Schmidhuber 1997, experiment 6a,
simplified): a stream of distractor symbols, two of which (at random places,
one in each half) are X or Y; the class is the order of the pair (XX, XY, YX,
YY), read after the last step.  Chance is 25 % accuracy.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: MSE of predicting the constant E[y] = 1 on the adding problem: Var(y) = 2/12
ADDING_BASELINE_MSE = 1.0 / 6.0
#: MSE below which the adding problem counts as solved (Le et al. 2015 use the baseline; 0.01 is strict)
ADDING_SOLVED_MSE = 0.01
#: temporal order: 4 distractor symbols, then X and Y
ORDER_SYMBOLS = 6


def _positive(name: str, value: object, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def adding_problem(batch: int, length: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A batch of the adding problem.

    Parameters
    ----------
    batch : int
        B, sequences.
    length : int
        T >= 2, steps per sequence (the lag: the first marker is T/2 to T steps back).
    generator : torch.Generator, optional
        For reproducible batches.

    Returns
    -------
    x : Tensor, shape (B, T, 2)
        ``x[..., 0]`` the values, ``x[..., 1]`` the markers (two ones per sequence).
    y : Tensor, shape (B,)
        The sum of the two marked values.

    Examples
    --------
    >>> x, y = adding_problem(3, 10, torch.Generator().manual_seed(0))
    >>> x.shape, y.shape, x[..., 1].sum(1).tolist()
    (torch.Size([3, 10, 2]), torch.Size([3]), [2.0, 2.0, 2.0])
    >>> bool(torch.allclose((x[..., 0] * x[..., 1]).sum(1), y))
    True
    """
    _positive("batch", batch)
    _positive("length", length, 2)
    half = length // 2
    values = torch.rand(batch, length, generator=generator)  # (B, T)
    first = torch.randint(0, half, (batch,), generator=generator)  # in [0, T/2)
    second = torch.randint(half, length, (batch,), generator=generator)  # in [T/2, T)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], dim=2), y


def temporal_order(batch: int, length: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A batch of the (simplified) temporal-order problem, one-hot inputs.

    Symbols 0-3 are distractors, 4 is X and 5 is Y.  Two positions, one in
    each half of the sequence, hold X or Y; the class is 2 * first + second
    with X = 0 and Y = 1 (XX=0, XY=1, YX=2, YY=3).

    Parameters
    ----------
    batch, length : int
        B and T >= 2.
    generator : torch.Generator, optional

    Returns
    -------
    x : Tensor, shape (B, T, 6), one-hot
    y : Tensor of int64, shape (B,), the class in 0..3
    """
    _positive("batch", batch)
    _positive("length", length, 2)
    half = length // 2
    symbols = torch.randint(0, 4, (batch, length), generator=generator)
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, length, (batch,), generator=generator)
    a = torch.randint(0, 2, (batch,), generator=generator)
    b = torch.randint(0, 2, (batch,), generator=generator)
    rows = torch.arange(batch)
    symbols[rows, first] = 4 + a
    symbols[rows, second] = 4 + b
    x = torch.nn.functional.one_hot(symbols, ORDER_SYMBOLS).float()
    return x, 2 * a + b


TASKS = {"adding": adding_problem, "temporal-order": temporal_order}
