"""Every cell checked against its references, as a table: what ``biornn check`` prints.

For each cell name this measures, on a small random batch with variable lengths:

- ``twin``: the largest difference, output and gradients, between biornn's
  step loop (float32) and the ``torch.nn`` module with the same maths
  (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``; the 1997 LSTM against ``nn.LSTM`` with
  its forget gate held at 1), weights copied;
- ``bptt``: the largest relative difference between the gradients of the
  hand-written NumPy BPTT (:mod:`biornn.reference`) and torch autograd, float64;
- ``fast``: the largest difference between the fast path (fused kernel or
  hand-written BPTT, :mod:`biornn.fast`) and the step loop;
- ``gradcheck``: whether ``torch.autograd.gradcheck`` (autograd against central
  finite differences, float64) passes on the step loop, bidirectional, with
  variable lengths.

The tests assert the same bounds; this is for people to see them.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import reference
from .cells import CELL_NAMES
from .fast import FORGET_OPEN
from .recurrent import Recurrent


@dataclass
class CellCheck:
    """One row of the table; ``None`` where a cell has no such reference."""

    cell: str
    twin: str | None
    twin_max_abs: float | None
    bptt_max_rel: float
    fast_max_abs: float | None
    gradcheck: bool


def _twin(name: str, rnn: Recurrent) -> tuple[str, nn.Module] | tuple[None, None]:
    I, H, L = rnn.input_size, rnn.hidden_size, rnn.num_layers
    if name in ("elman", "elman-relu", "irnn"):
        nl = "tanh" if name == "elman" else "relu"
        twin = nn.RNN(I, H, L, nonlinearity=nl, batch_first=True)
        twin.load_state_dict(rnn.state_dict())
        return f"nn.RNN({nl})", twin
    if name in ("lstm", "gru"):
        twin = (nn.LSTM if name == "lstm" else nn.GRU)(I, H, L, batch_first=True)
        twin.load_state_dict(rnn.state_dict())
        return f"nn.{name.upper()}", twin
    if name == "lstm1997":
        twin = nn.LSTM(I, H, L, batch_first=True)
        with torch.no_grad():
            for pname, p in twin.named_parameters():
                ours = rnn.state_dict()[pname]  # rows i, g, o
                p.zero_()
                p[:H], p[2 * H :] = ours[:H], ours[H:]
                if pname.startswith("bias_ih"):
                    p[H : 2 * H] = FORGET_OPEN  # forget gate held at exactly 1
        return "nn.LSTM, f = 1", twin
    return None, None


def _max_abs(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _run(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Output and the gradients of a fixed random loss, for any of the modules."""
    module.zero_grad()
    if isinstance(module, Recurrent):
        out, _ = module(x, lengths=lengths)
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(module(packed)[0], batch_first=True, total_length=x.shape[1])
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)
    (out * w).sum().backward()
    return [out.detach()] + [p.grad.detach().clone() for p in module.parameters()]


def check_cell(name: str, seed: int = 0) -> CellCheck:
    """Measure one cell against its references (see the module docstring)."""
    torch.manual_seed(seed)
    B, T, I, H = 4, 12, 3, 5
    x = torch.randn(B, T, I)
    lengths = torch.tensor([12, 7, 3, 10])
    rnn = Recurrent(name, I, H, fast=False, init="default")

    twin_name, twin = _twin(name, rnn)
    twin_err = None
    if twin is not None:
        ours = _run(rnn, x, lengths)
        theirs = _run(twin, x, lengths)
        if name == "lstm1997":  # drop the twin's forget-gate rows
            theirs = [theirs[0]] + [torch.cat([g[:H], g[2 * H :]]) for g in theirs[1:]]
        twin_err = _max_abs(ours, theirs)

    fast_err = None
    fused = copy.deepcopy(rnn)
    fused.fast = True
    if fused.uses_fast_path(lengths):
        fast_err = _max_abs(_run(rnn, x, lengths), _run(fused, x, lengths))

    # hand-written BPTT against autograd, float64, cross-entropy read-out
    rnn64 = copy.deepcopy(rnn).double()
    K = 3
    readout = nn.Linear(H, K).double()
    x64 = x.double()
    target = torch.randint(0, K, (B, T))
    out, _ = rnn64(x64, lengths=lengths)
    logits = readout(out)
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    loss = nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum")
    loss.backward()
    params = {n[: -len("_l0")]: p.detach().numpy() for n, p in rnn64.named_parameters()}
    params["weight_hy"], params["bias_y"] = readout.weight.detach().numpy(), readout.bias.detach().numpy()
    _, grads = reference.loss_and_grads(
        name, params, x64.numpy(), target.numpy(), loss="ce", lengths=lengths.numpy()
    )
    rel = 0.0
    auto = {n[: -len("_l0")]: p.grad for n, p in rnn64.named_parameters()}
    auto["weight_hy"], auto["bias_y"] = readout.weight.grad, readout.bias.grad
    for pname, g in auto.items():
        g = g.numpy()
        rel = max(rel, float(np.abs(grads[pname] - g).max() / max(np.abs(g).max(), 1e-12)))
    return CellCheck(name, twin_name, twin_err, rel, fast_err, _gradcheck(name))


def _gradcheck(name: str) -> bool:
    """Autograd through the step loop against central finite differences, float64."""
    # default init for every cell: irnn's tiny input weights would put ReLU
    # pre-activations within the finite-difference step of the kink at 0
    rnn = Recurrent(name, 2, 2, bidirectional=True, fast=False, init="default").double()
    names = [n for n, _ in rnn.named_parameters()]
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2])

    def f(x: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, final = torch.func.functional_call(rnn, dict(zip(names, params)), (x,), {"lengths": lengths})
        return (out, *final)

    params = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    return bool(torch.autograd.gradcheck(f, (x, *params), raise_exception=False))


def check_cells(names: tuple[str, ...] = CELL_NAMES, seed: int = 0) -> list[CellCheck]:
    """:func:`check_cell` for every cell name."""
    return [check_cell(n, seed) for n in names]


def format_table(rows: list[CellCheck]) -> str:
    """A plain-text table of the checks."""

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.1e}"

    head = ("cell", "torch twin", "twin max|d|", "BPTT max rel", "fast max|d|", "gradcheck")
    body = [
        (r.cell, r.twin or "-", f(r.twin_max_abs), f(r.bptt_max_rel), f(r.fast_max_abs),
         "pass" if r.gradcheck else "FAIL")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def as_dicts(rows: list[CellCheck]) -> list[dict]:
    return [asdict(r) for r in rows]
