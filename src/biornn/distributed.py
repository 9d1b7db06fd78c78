"""Multi-process training on torch.distributed: what :mod:`biornn.train` needs and nothing more.

``torchrun --nproc-per-node 2 -m biornn train names ...`` starts one process
per rank with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in
the environment; :func:`setup` joins the process group from them (gloo, with
NCCL for CUDA tensors on a machine with GPUs: ``device=cuda``).  Every rank builds the same model from the
same seed, trains on its share of each global batch (:func:`shard`), and
DistributedDataParallel averages the gradients; only rank 0 touches the run
directory.  A single process (no ``WORLD_SIZE``, or 1) never calls into
torch.distributed, so what it computes is unchanged.

The helpers keep the ranks in step when something fails: a ``ValueError``
raised by one rank (bad data on one machine, a run directory that exists) is
raised on every rank with the same message, instead of leaving the others
waiting for a collective that never comes.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, TypeVar

import torch
from torch import distributed as dist

T = TypeVar("T")


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r}: not an integer") from None


def active() -> bool:
    """Whether this process is one rank of an initialised process group of more than one."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 in a single process)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes training together (1 in a single process)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the process that logs and writes the run directory.  Also true outside a group,
    and after it ended (it reads ``RANK`` then), so a command line can decide what to print."""
    if active():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def setup() -> bool:
    """Join the process group when launched as several processes; return whether this call did.

    The backend is gloo, and on a machine with CUDA ``cpu:gloo,cuda:nccl``
    (:func:`biornn.device.process_group_backend`): with ``device=cuda`` the
    gradients DistributedDataParallel averages are CUDA tensors and go over
    NCCL, while the objects and CPU tensors of the helpers below stay on gloo.  ``env://`` reads
    ``MASTER_ADDR``/``MASTER_PORT``/``RANK``/``WORLD_SIZE``, which torchrun sets.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set; start the processes with torchrun")
    from .device import process_group_backend

    backend = process_group_backend()
    if "nccl" in backend:  # each process's NCCL communicator on its own GPU
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        if local < torch.cuda.device_count():
            torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, init_method="env://")
    global _joined
    _joined = True
    return True


#: whether this process has joined a process group (:func:`setup`), for :func:`exit_after_group`
_joined = False


def exit_after_group(code: int) -> None:
    """End a process that joined a process group with ``code`` now, flushing stdout and stderr but
    skipping the interpreter's finalisation: gloo's worker threads can outlive
    ``destroy_process_group`` and abort the exiting process ("terminate called without an active
    exception", seen under CPU load), which would turn a finished run into a failed launch.
    Returns (does nothing) in a process that never joined one."""
    if not _joined:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def teardown(wait: bool = True) -> None:
    """Leave the process group; with ``wait`` after a barrier, so that no rank exits while another
    still needs it (not after a failure: the other ranks may never reach the barrier)."""
    if dist.is_available() and dist.is_initialized():
        try:
            if wait:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def shard(items: list[T]) -> tuple[list[T], int]:
    """This rank's share of one global batch, DistributedSampler's way (every ``world``-th item from ``rank``).

    Returns ``(share, n)``: ``n`` is the share's true size.  A rank whose share
    is empty (a last batch smaller than the number of processes) still gets one
    item, with ``n == 0``, so that it joins the step's gradient all-reduce; the
    training loop gives that item no weight.  In a single process: ``(items, len(items))``.
    """
    if not active():
        return items, len(items)
    share = items[rank()::world_size()]
    return (share, len(share)) if share else (items[:1], 0)


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; tensors included)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: list[float]) -> list[float]:
    """The element-wise sum over the ranks (float64)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank.

    An exception on rank 0 is raised there; the other ranks raise a
    ``ValueError`` (``RuntimeError`` for other failures) with its message.
    """
    if not active():
        return fn()
    result, error = None, None
    if rank() == 0:
        try:
            result = fn()
        except BaseException as e:
            broadcast(("ValueError" if isinstance(e, ValueError) else "RuntimeError", str(e), None))
            raise
        broadcast((None, None, result))
        return result
    kind, error, result = broadcast(None)
    if kind is not None:
        raise (ValueError if kind == "ValueError" else RuntimeError)(error)
    return result


def on_all(fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; a ``ValueError`` on any rank is raised on all of them (the first rank's message)."""
    if not active():
        return fn()
    result, error = None, None
    try:
        result = fn()
    except ValueError as e:
        error = str(e)
    errors = gather(error)
    for r, message in enumerate(errors):
        if message is not None:
            raise ValueError(message if r == rank() else f"rank {r}: {message}")
    return result
