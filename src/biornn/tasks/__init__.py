"""Built-in tasks: one module per task, each data + model + loss + metrics.

A task module provides what :func:`biornn.train.train` calls -- plain
functions, no base class:

- ``DEFAULTS`` (optional): the task's config defaults over
  :class:`biornn.config.TrainConfig`'s (which are the ``names`` task's);
- ``KIND`` (``"classification"``, ``"regression"``, ``"generation"``: generate-names,
  ``"detection"``: mitdb-qrs), ``LOG_FIELDS`` (its
  validation columns of ``log.csv`` after ``val_loss``) and ``LOG_SHOW``
  (``(key, label)`` pairs for the per-epoch line);
- ``check_config(cfg)``: what only this task requires of the config;
- ``subruns(cfg, data_dir)``: ``None`` for one run, or ``[(name, cfg), ...]``
  to train several runs into sub-directories (``ecg-anomaly record=all``);
- ``load(cfg, data_dir) -> data``: the data from the data directory, with
  ``data.meta()`` (JSON-able, kept in the weights and the checkpoint) and
  ``data.fingerprint``;
- ``build(cfg, data) -> nn.Module`` and ``steps_per_epoch(cfg, data)``;
- ``train_batches(cfg, model, data, epoch)``: yields one ``Batch`` (model
  outputs, targets, class weights, examples, ensemble members or not) per
  optimiser step, seeded by the seed and the epoch; the loop computes the
  loss, backpropagates, clips and steps between two batches;
- ``validate(cfg, model, data, loss_fn) -> {"loss": ..., metric: ...}``;
- ``run_meta(cfg, data)``: more metadata for ``model.safetensors``;
- ``finish(cfg, model, data, out, log) -> (metrics, weights_meta)``: the test
  metrics of the best weights beside the task's non-recurrent baseline, the
  task's plots, and what else the weights file must keep.

Every task provides ``from_weights(cfg, tensors, meta, path) -> model`` for
``evaluate``, ``predict``, ``export`` and ``serve``.  ``biornn evaluate`` calls
``evaluate_saved(cfg, model, meta, data) -> {"test": ..., ...}`` where a task has
it (else the classification path: ``evaluate_split`` of the test part with the
run's vocabulary, names and splice); ``biornn predict`` calls
``predict_rows(model, meta, inputs) -> [dict, ...]`` where a task has it
(protein-ss: per-residue states) and otherwise prints the top classes
(``encode_inputs``).  ``ecg-anomaly`` also provides ``detect`` for ``biornn detect``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: task name -> its module in this package, imported when the task is used (a
#: task's heavy imports -- wfdb, Biopython -- cost nothing to the others)
TASKS: dict[str, str] = {
    "names": "names",
    "ecg-anomaly": "ecg_anomaly",
    "splice": "splice",
    "protein-ss": "protein_ss",
    "promoters": "promoters",
    "mitdb-qrs": "mitdb_qrs",
    "translate": "translate",
    "generate-names": "generate_names",
    "classify": "classify",
    "tag": "tag",
    "forecast": "forecast",
}


def get(name: str) -> ModuleType:
    """The task module called ``name``; ``ValueError`` listing the tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)}")
    return importlib.import_module(f".{TASKS[name]}", __name__)


def defaults(name: str) -> dict:
    """The task's own config defaults (its module's ``DEFAULTS``), applied over the class defaults."""
    return dict(getattr(get(name), "DEFAULTS", {})) if name in TASKS else {}
