"""One-to-one: the "vanilla" network with no recurrence, one fixed-size input to one output.

The first of the five shapes of RNN use (Karpathy's "vanilla mode of
processing without RNN, from fixed-sized input to fixed-sized output"): a
fixed-length sequence is flattened into one vector and mapped by a multilayer
perceptron,

    a_1 = phi(W_1 vec(x) + b_1),   ...,   y = W_out a_L + b_out,

so every position has its own weights and nothing is shared across time
steps -- the contrast that shows what the recurrence (one ``W_hh`` applied at
every step) buys.  It reads the same (B, T, F) residue weights as the
recurrent models, so a task can train both on the same inputs; the task's
baseline trainer is :class:`biornn.baselines.FeedForwardBaseline`.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["FeedForward"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class FeedForward(nn.Module):
    """A multilayer perceptron over a flattened fixed-length input: (B, T, F) -> logits (B, K).

    Parameters
    ----------
    length : int
        T, the fixed number of steps (57 bp for a promoter); another length is refused.
    n_features : int
        F, the width of a step (4 for DNA).
    n_classes : int
        K.
    hidden_size : int
        Units of each hidden layer.
    num_layers : int
        Hidden layers (0: a linear model, i.e. logistic regression on the flattened input).
    dropout : float
        Dropout on the input of every layer after the first, and before the read-out.
    activation : str
        ``"relu"`` or ``"tanh"``.

    Examples
    --------
    >>> import torch
    >>> net = FeedForward(length=5, n_features=4, n_classes=2, hidden_size=8)
    >>> net(torch.zeros(3, 5, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(self, length: int, n_features: int, n_classes: int, hidden_size: int = 64, num_layers: int = 1,
                 dropout: float = 0.0, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if min(length, n_features, n_classes) <= 0 or num_layers < 0 or hidden_size <= 0:
            raise ValueError("length, n_features, n_classes and hidden_size must be positive, num_layers >= 0")
        self.length, self.n_features, self.n_classes = length, n_features, n_classes
        layers: list[nn.Module] = []
        width = length * n_features
        for i in range(num_layers):
            if i and dropout:
                layers.append(nn.Dropout(dropout))
            layers += [nn.Linear(width, hidden_size), ACTIVATIONS[activation]()]
            width = hidden_size
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` (B, T, F) with T = ``length`` -> logits (B, K); ``lengths`` must all be T if given."""
        if x.dim() != 3 or x.shape[1:] != (self.length, self.n_features):
            raise ValueError(f"FeedForward reads (B, {self.length}, {self.n_features}) inputs, got {tuple(x.shape)}")
        if lengths is not None and bool((lengths != self.length).any()):
            raise ValueError(f"FeedForward reads fixed-length inputs of {self.length} steps")
        return self.net(x.flatten(1))  # (B, T * F) -> (B, K)
