"""Built-in tasks: one module per task, each data + model + loss + metrics.

A task module provides:

- ``load(cfg, data_dir) -> TaskData``: the data set from the data directory,
  split into ``train``/``val``/``test`` by ``cfg.split_seed``, encoded;
- ``build_model(cfg, data) -> nn.Module``;
- ``baseline(cfg, data) -> dict``: a simple non-recurrent baseline trained and
  evaluated on the same split;
- ``encode_inputs(texts, meta) -> (x, lengths)`` and ``labels`` for ``predict``.
"""

from __future__ import annotations

from types import ModuleType

from . import names

TASKS: dict[str, ModuleType] = {"names": names}


def get(name: str) -> ModuleType:
    """The task module called ``name``; ``ValueError`` listing the tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)}")
    return TASKS[name]
