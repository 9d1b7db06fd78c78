"""Where training runs: the ``device`` option, and a model that computes there but talks CPU.

``biornn train ... device=cuda`` (or ``cuda:N``, or ``auto``: CUDA when this
torch build sees a GPU, else the CPU) moves the model's parameters to the
device for the training epochs.  The tasks keep building their batches on the
CPU, as they always do; :func:`place` registers two hooks on the model (and on
each member of an ensemble) so that it computes on the device while its
callers see a CPU model:

- before ``forward``: every tensor argument moves to the device, except
  ``lengths``, which stays on the CPU (``torch.nn.utils.rnn.pack_padded_sequence``
  wants CPU lengths; :class:`biornn.Recurrent` moves what it needs);
- after ``forward``: every tensor of the output moves to the CPU.

Autograd follows the moves, so the loss (computed on the CPU from the
outputs, a few numbers per example) backpropagates through the device's
computation; the optimiser steps the parameters where they are.  The tasks'
validation runs the same way; :func:`release` brings the model back to the
CPU before the test measurement, the baselines and the saved weights, which
therefore never depend on the device.

Under torchrun with ``device=cuda`` every process takes the GPU of its
``LOCAL_RANK`` and DistributedDataParallel averages the gradients over NCCL
(the process group is ``cpu:gloo,cuda:nccl`` whenever CUDA is available:
objects and CPU tensors go over gloo, CUDA tensors over NCCL).

On the CPU (the default) :func:`place` registers nothing: the model is the
plain module it was.
"""

from __future__ import annotations

import inspect
import os
import re
from typing import Any

import torch
from torch import nn

DEVICE_CHOICES = ("cpu", "cuda", "cuda:N", "auto")


def check(name: str) -> None:
    """``ValueError`` unless ``name`` is ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (spelling only)."""
    if name in ("cpu", "cuda", "auto") or re.fullmatch(r"cuda:\d{1,3}", name):
        return
    raise ValueError(f"config: device must be cpu, cuda, cuda:N or auto; got {name!r}")


def resolve(name: str, local_rank: int | None = None) -> torch.device:
    """The torch device that ``device=name`` means on this machine, for this process.

    Parameters
    ----------
    name : {"cpu", "cuda", "cuda:N", "auto"}
    local_rank : int, optional
        This process's index on its machine (torchrun's ``LOCAL_RANK``); with
        ``cuda`` or ``auto`` each process takes that GPU.  Default: from the environment.

    Raises
    ------
    ValueError
        CUDA asked for but not available, or a GPU index this machine does not have.
    """
    check(name)
    if name == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if name == "auto" and not available:
        return torch.device("cpu")
    if not available:
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", built without CUDA")
        raise ValueError(f"config: device={name}: no CUDA device is visible to this process ({build}); "
                         f"use device=cpu or device=auto")
    count = torch.cuda.device_count()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    index = int(name.split(":")[1]) if ":" in name else local_rank
    if index >= count:
        raise ValueError(f"config: device={name}: GPU {index} asked for, this machine has {count}"
                         + (f" (LOCAL_RANK={local_rank}: start at most {count} processes per machine)"
                            if ":" not in name else ""))
    return torch.device("cuda", index)


def _moved(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (nested tuples, lists, dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=False) if value.device != device else value
    if isinstance(value, tuple):
        items = tuple(_moved(v, device) for v in value)
        return type(value)(*items) if hasattr(value, "_fields") else items  # a namedtuple keeps its type
    if isinstance(value, list):
        return [_moved(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    return value


def _lengths_index(module: nn.Module) -> int | None:
    """The position of ``lengths`` among ``module.forward``'s positional arguments (``None``: it has none)."""
    try:
        names = [p.name for p in inspect.signature(module.forward).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return None
    return names.index("lengths") if "lengths" in names else None


def _hook(module: nn.Module, device: torch.device) -> list:
    """Register the two hooks of the module docstring on ``module``; return their handles."""
    at = _lengths_index(module)
    cpu = torch.device("cpu")

    def before(_module, args, kwargs):
        args = tuple(_moved(a, cpu if i == at else device) for i, a in enumerate(args))
        kwargs = {k: _moved(v, cpu if k == "lengths" else device) for k, v in kwargs.items()}
        return args, kwargs

    def after(_module, _args, output):
        return _moved(output, cpu)

    return [module.register_forward_pre_hook(before, with_kwargs=True), module.register_forward_hook(after)]


def hooked_modules(model: nn.Module) -> list[nn.Module]:
    """The modules that get the hooks: the model, each member of an ensemble (whose
    ``member_logits`` calls the members directly), and an ensemble's n-gram part (whose
    output the ensemble adds to the members' CPU outputs)."""
    members = getattr(model, "members", None)
    ngram = getattr(model, "ngram", None)
    return [model, *(members if isinstance(members, nn.ModuleList) else []),
            *([ngram] if isinstance(ngram, nn.Module) else [])]


def place(model: nn.Module, device: torch.device) -> list:
    """Move ``model`` to ``device``, computing there and taking and giving CPU tensors; return the
    hook handles for :func:`release`.  On the CPU: nothing is registered (the model is unchanged)."""
    if device.type == "cpu":
        return []
    model.to(device)
    return [h for m in hooked_modules(model) for h in _hook(m, device)]


def release(model: nn.Module, handles: list) -> None:
    """Undo :func:`place`: remove the hooks and bring the parameters back to the CPU."""
    for h in handles:
        h.remove()
    handles.clear()
    model.to("cpu")


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict's tensors, detached and copied to the CPU (what a checkpoint keeps)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def process_group_backend() -> str:
    """torch.distributed's backend for ``init_process_group``: gloo, and NCCL for CUDA tensors when
    this machine has a GPU (``cpu:gloo,cuda:nccl``: object collectives and CPU tensors stay on gloo)."""
    if torch.cuda.is_available() and torch.distributed.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"
