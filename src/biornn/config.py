"""Flat, typed training configs: defaults, a TOML file, ``key=value`` overrides.

One dataclass (nanoGPT's ``GPTConfig`` style) holds every option of a run.  A
config is resolved in this order -- later wins -- and the result is written
as ``config.json`` into the run directory:

1. the dataclass defaults (the built-in task's defaults are the class defaults);
2. a TOML file (``--config FILE.toml``), flat ``key = value`` pairs;
3. the command line's named options (``--cell``, ``--epochs``, ``--seed``);
4. ``key=value`` overrides, each checked against the field's type.

Every value is validated (:meth:`TrainConfig.validate`); a bad one raises
``ValueError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .cells import CELL_NAMES
from .init import SCHEMES

CHOICES: dict[str, tuple[str, ...]] = {
    "cell": CELL_NAMES,
    "loss": ("ce", "mse"),
    "reduction": ("mean", "sum"),
    "class_weighting": ("none", "balanced", "sqrt"),
    "init": tuple(SCHEMES),
    "optimizer": ("sgd", "adam", "adamw"),
    "lr_schedule": ("none", "onecycle", "cosine", "step", "plateau"),
    "monitor": ("loss", "accuracy", "balanced_accuracy", "macro_f1"),
    "format": ("", "fasta", "ucr", "csv", "tsv", "npz"),
    "alphabet": ("", "dna", "rna", "protein", "text"),
    "nonfinite": ("stop", "skip", "lower-lr"),
    "pool": ("", "last", "max", "mean", "split"),
}


#: upper bounds: beyond them a value is a typo, not an experiment
LIMITS: dict[str, float] = {
    "hidden_size": 16384, "num_layers": 64, "embedding_dim": 16384, "ensemble": 64, "batch_size": 1_000_000,
    "epochs": 1_000_000, "lr_step": 1_000_000, "truncate": 10_000_000, "patience": 1_000_000,
    "seed": 2**32 - 1, "split_seed": 2**32 - 1, "threads": 1024, "clip_norm": 1e6, "clip_value": 1e6,
    "weight_decay": 10.0, "momentum": 1.0, "logit_adjustment": 10.0, "max_seconds": 1e9,
    "nonfinite_limit": 1_000_000, "horizon": 1000, "smooth": 100_000, "baseline_order": 10_000, "threshold_margin": 1000.0,
    "max_length": 10_000_000, "folds": 1000,
    "conv_channels": 16384, "conv_kernel": 1001, "beam": 100, "n_sequences": 10_000_000, "temperature": 100.0,
}

@dataclass
class TrainConfig:
    """Every option of a training run.  Defaults are the ``names`` task's.

    Model
        ``cell`` (a cell name), ``hidden_size``, ``num_layers``,
        ``bidirectional``, ``dropout`` (between layers and before the
        read-out), ``embedding_dim`` (0: one-hot inputs), ``ensemble`` (M
        models trained side by side, each from its own initialisation, whose
        class probabilities are averaged), ``init`` (a scheme
        of :mod:`biornn.init`), ``forget_bias`` (``lstm`` only; ``None`` leaves it),
        ``pool`` (how a many-to-one classifier summarises its outputs:
        ``last``, ``max``, ``mean``, ``split``; ``""`` = the task's own choice,
        :func:`biornn.models.pool_outputs`), ``conv_channels`` and
        ``conv_kernel`` (``names``, ``protein-ss``, ``tag``: C > 0 puts a
        window layer before the recurrence, ``relu(conv1d(x))`` with C filters
        ``conv_kernel`` steps wide, odd, centred, zeros past the ends, whose
        outputs the recurrence reads beside each step's input -- for names
        over the embedded characters; 0 = none,
        :func:`biornn.models.window_features`).
    Loss
        ``loss`` (``ce`` cross-entropy or ``mse`` squared error against the
        one-hot target), ``reduction`` (``mean`` or ``sum`` over the steps and
        examples of a batch: the loss summed over time steps, as BPTT is
        usually written, or averaged), ``class_weighting`` (``none``,
        ``balanced``: weights N / (K n_k), or ``sqrt`` of those),
        ``logit_adjustment`` (tau: at prediction, subtract tau * log prior
        from the logits, Menon et al. 2021; 0 = off), ``label_smoothing``
        (epsilon: the cross-entropy's target puts 1 - epsilon on the true
        class and epsilon spread evenly over all K classes, Szegedy et al.
        2016; for ``mse`` the one-hot target is smoothed alike; 0 = off; the
        class default 0 is what runs from before the option trained with,
        ``names`` and ``protein-ss`` set 0.1), ``ngram_blend`` (``names``: a
        in [0, 1), the weight of a character n-gram logistic regression fitted
        on the training names before the recurrent members train, blended
        with them as a weighted geometric mean of probabilities,
        :class:`biornn.models.Ensemble`; 0 = the recurrent model alone, the
        class default for runs from before the option; ``names`` sets 0.5).
    Optimisation
        ``optimizer`` (``sgd`` with ``momentum``, ``adam``, ``adamw``), ``lr``,
        ``weight_decay``, ``lr_schedule`` (``none``, ``onecycle``, ``cosine``,
        ``step`` every ``lr_step`` epochs by ``lr_gamma``, ``plateau`` on the
        monitored metric), ``batch_size``, ``epochs``, ``clip_norm`` (clip the
        global gradient norm; 0 = off), ``clip_value`` (clip each gradient
        element; 0 = off), ``truncate`` (truncated BPTT length; 0 = full).
    Refit
        ``refit``: after the epochs, a fresh model (the same seed) is trained on
        the training and validation parts together for the best epoch's number
        of epochs, the schedule laid out over them, and is the run's model; the
        baseline is refitted alike with its chosen C (``splice``, ``protein-ss``,
        ``classify``, ``tag``; not with ``lr_schedule=plateau``, which needs the
        validation metric).
    Non-finite losses and gradients
        A step whose loss or gradient norm is NaN or infinite is never applied.
        ``nonfinite`` says what follows: ``stop`` (the run stops with exit 1 and
        one line; the checkpoint of the last finished epoch stays, so nothing
        finished is lost), ``skip`` (the batch is dropped and training goes
        on), ``lower-lr`` (dropped, and the learning rate -- with the
        schedule's peak and floor -- is multiplied by ``lr_gamma``);
        ``nonfinite_limit``: after this many such steps in a run it stops
        anyway.
    Stopping
        ``monitor`` (validation metric that picks the best epoch),
        ``patience`` (stop after this many epochs without improvement; 0 =
        never), ``max_seconds`` (stop after the epoch that passes this
        training time; 0 = no limit -- a time limit makes runs depend on the
        machine's speed).
    Reproducibility
        ``seed`` (weights, shuffling, dropout: the same seed gives the same
        weights), ``split_seed`` (the train/validation/test split),
        ``threads`` (torch threads; 0 = torch's default).
    Where it trains
        ``device``: ``cpu`` (the default), ``cuda`` (under torchrun: each
        process's ``LOCAL_RANK`` GPU), ``cuda:N``, or ``auto`` (CUDA when
        available, else the CPU); see :mod:`biornn.device`.  Test measurement
        and the saved weights are always computed on the CPU.
    Prediction-error anomaly detection (``ecg-anomaly``; see :mod:`biornn.anomaly`)
        ``record`` (a discord file's name without ``.txt``, or ``all``; for
        ``mitdb-qrs`` a record of the data directory's ``ecg/mitdb``, default
        ``100``, or the path of a WFDB record),
        ``horizon`` (k, samples predicted after each step), ``truncate`` (the
        truncated-BPTT window: each step trains on ``truncate`` samples of
        ``batch_size`` parallel streams, the state carried between windows),
        ``holdout`` (the fraction at the end of the training rows held out for
        the best epoch, the Gaussian and the threshold), ``smooth`` (moving
        average of the score over this many samples; 0 = one heart beat, the
        period of the training rows' autocorrelation; 1 = none),
        ``threshold_quantile`` and ``threshold_margin`` (the default threshold
        is margin x that quantile of the held-out smoothed scores),
        ``threshold_crossfit`` (those scores out of sample: each half of the
        held-out rows scored by a Gaussian fitted on the other half), and
        ``baseline_order`` (past samples per lead of the linear AR baseline).
    The user's own files (``classify``, ``tag``, ``forecast``)
        ``train_file``, ``val_file`` (optional: else a part of the training
        file), ``test_file``; ``format`` (``fasta``, ``ucr``, ``csv``, ``tsv``,
        ``npz``; empty: from the file's extension, and a ``.tsv``/``.csv``
        whose first line is all numbers is read as ``ucr``); ``label_column`` and
        ``sequence_column`` (CSV/TSV: the label, and a column of symbol
        sequences -- empty: a column named ``sequence`` if the header has
        one, else the numeric columns are the features);
        ``alphabet`` (``dna``, ``rna``, ``protein``, ``text``; empty: numeric
        values); ``max_length`` (a longer sequence is an input error; 0 = no
        limit); ``normalize`` (per-feature mean and standard deviation, fitted
        on the training data alone and kept with the model).
    Other tasks
        ``folds`` (cross-validation folds, ``promoters``; ``fold`` = 0 trains
        every fold into its own sub-directory, k trains fold k alone), ``beam`` (beam
        width of decoding, ``translate``; 1 = greedy), ``n_sequences``
        (generated examples, ``translate``; 0 = the task's default),
        ``temperature`` (sampling, ``generate-names``).
    """

    task: str = "names"
    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    embedding_dim: int = 64
    ensemble: int = 3
    init: str = "default"
    forget_bias: float | None = None
    loss: str = "ce"
    reduction: str = "mean"
    class_weighting: str = "none"
    logit_adjustment: float = 0.5
    label_smoothing: float = 0.0
    ngram_blend: float = 0.0
    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str = "onecycle"
    lr_step: int = 10
    lr_gamma: float = 0.5
    batch_size: int = 64
    epochs: int = 12
    clip_norm: float = 1.0
    clip_value: float = 0.0
    truncate: int = 0
    nonfinite: str = "stop"
    nonfinite_limit: int = 10
    monitor: str = "balanced_accuracy"
    patience: int = 0
    max_seconds: float = 0.0
    refit: bool = False
    seed: int = 0
    split_seed: int = 0
    threads: int = 0
    device: str = "cpu"
    pool: str = ""
    conv_channels: int = 0
    conv_kernel: int = 7
    record: str = ""
    horizon: int = 10
    holdout: float = 0.25
    smooth: int = 0
    threshold_quantile: float = 1.0
    threshold_margin: float = 1.0
    threshold_crossfit: bool = True
    baseline_order: int = 32
    train_file: str = ""
    val_file: str = ""
    test_file: str = ""
    format: str = ""
    label_column: str = "label"
    sequence_column: str = ""
    alphabet: str = ""
    max_length: int = 0
    normalize: bool = True
    folds: int = 10
    fold: int = 0
    beam: int = 1
    n_sequences: int = 0
    temperature: float = 1.0

    # -- validation --------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Check every value; ``ValueError`` naming the key.  Returns ``self``."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _hints()[f.name])
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"config: {f.name} must be a finite number, got {value}")
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                shown = ", ".join(a if a else "'' (from the file)" if key == "format" else "''" for a in allowed)
                raise ValueError(f"config: {key} must be one of {shown}; got {getattr(self, key)!r}")
        positive = ("hidden_size", "num_layers", "batch_size", "epochs", "lr_step", "ensemble", "horizon",
                    "baseline_order", "threshold_margin")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ValueError(f"config: {key} must be positive, got {getattr(self, key)}")
        non_negative = ("embedding_dim", "weight_decay", "clip_norm", "clip_value", "truncate", "patience",
                        "max_seconds", "threads", "logit_adjustment", "momentum", "smooth", "max_length",
                        "nonfinite_limit",
                        "n_sequences", "conv_channels")
        for key in non_negative:
            if getattr(self, key) < 0:
                raise ValueError(f"config: {key} must be >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"config: dropout must be in [0, 1), got {self.dropout}")
        if self.refit and self.lr_schedule == "plateau":
            raise ValueError("config: refit replays the schedule epoch by epoch; lr_schedule=plateau follows the "
                             "validation metric, which a refit has not got")
        if self.sequence_column and self.sequence_column == self.label_column:
            raise ValueError(f"config: sequence_column and label_column both name the column {self.label_column!r}; "
                             f"the sequences and their labels are two columns")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"config: label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.ngram_blend < 1.0:
            raise ValueError(f"config: ngram_blend must be in [0, 1), got {self.ngram_blend}")
        if not 0.0 < self.lr <= 10.0:
            raise ValueError(f"config: lr must be in (0, 10], got {self.lr}")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise ValueError(f"config: lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"config: holdout must be in (0, 1), got {self.holdout}")
        if not 0.0 < self.threshold_quantile <= 1.0:
            raise ValueError(f"config: threshold_quantile must be in (0, 1], got {self.threshold_quantile}")
        if self.folds < 2:
            raise ValueError(f"config: folds must be at least 2, got {self.folds}")
        if not 0 <= self.fold <= self.folds:
            raise ValueError(f"config: fold must be between 0 (every fold) and folds = {self.folds}, got {self.fold}")
        if self.conv_channels * self.conv_kernel > 1 << 20:  # each within its limit, together gigabytes
            raise ValueError(f"config: conv_channels x conv_kernel = {self.conv_channels * self.conv_kernel:,} "
                             f"weights per input feature; at most {1 << 20:,}")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"config: conv_kernel must be an odd number of steps (the window is centred), "
                             f"got {self.conv_kernel}")
        if self.beam < 1:
            raise ValueError(f"config: beam must be at least 1, got {self.beam}")
        if not self.temperature > 0.0:
            raise ValueError(f"config: temperature must be positive, got {self.temperature}")
        from .device import check as check_device

        check_device(self.device)
        if self.seed < 0 or self.split_seed < 0:
            raise ValueError("config: seed and split_seed must be >= 0")
        if self.forget_bias is not None and self.cell not in ("lstm", "lstm-peephole"):
            raise ValueError(f"config: forget_bias applies to lstm and lstm-peephole, not {self.cell!r}")
        for key, limit in LIMITS.items():
            if getattr(self, key) > limit:
                raise ValueError(f"config: {key} must be at most {_number(limit)}, got {_number(getattr(self, key))}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False)


def _number(value: float) -> str:
    """A limit or a value as written: integers in full (4294967295, not 4.29497e+09), other floats ``:g``."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e18):
        return str(int(value))
    return f"{value:g}"


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _check_type(key: str, value: Any, hint: Any) -> None:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for t in options:
        if t is type(None) and value is None:
            return
        if t is bool and isinstance(value, bool):
            return
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if t is str and isinstance(value, str):
            return
    names = " or ".join("none" if t is type(None) else t.__name__ for t in options)
    raise ValueError(f"config: {key} must be {names}, got {value!r}")


def _unknown(key: str) -> ValueError:
    keys = [f.name for f in fields(TrainConfig)]
    near = difflib.get_close_matches(key, keys, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return ValueError(f"config: unknown key {key!r}{hint}")


def parse_value(key: str, text: str) -> Any:
    """Parse the text of a ``key=value`` override as the field's type."""
    hints = _hints()
    if key not in hints:
        raise _unknown(key)
    hint = hints[key]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    t = text.strip()
    if type(None) in options and t.lower() in ("none", "null", ""):
        return None
    for typ in options:
        if typ is bool:
            low = t.lower()
            if low in ("true", "yes", "1", "on"):
                return True
            if low in ("false", "no", "0", "off"):
                return False
        elif typ is int:
            try:
                return int(t)
            except ValueError:
                pass
        elif typ is float:
            try:
                value = float(t)
            except ValueError:
                continue
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"config: {key} must be a finite number, got {text!r}")
            return value
        elif typ is str:
            return t
    names = " or ".join("none" if o is type(None) else o.__name__ for o in options)
    raise ValueError(f"config: {key} must be {names}, got {text!r}")


def apply(cfg: TrainConfig, values: dict[str, Any], source: str = "config") -> TrainConfig:
    """A copy of ``cfg`` with ``values`` set; unknown keys and wrong types refused."""
    hints = _hints()
    out = dataclasses.replace(cfg)
    for key, value in values.items():
        if key not in hints:
            raise ValueError(f"{source}: {_unknown(key).args[0].removeprefix('config: ')}")
        if isinstance(value, int) and not isinstance(value, bool) and hints[key] in (float, float | None):
            value = float(value)
        try:
            _check_type(key, value, hints[key])
        except ValueError as e:
            raise ValueError(f"{source}: {e.args[0].removeprefix('config: ')}") from None
        setattr(out, key, value)
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML config file; ``ValueError`` naming the file on any problem."""
    from .data.readers import check_regular

    p = Path(path)
    check_regular(p)
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{p}: no such config file") from None
    except IsADirectoryError:
        raise ValueError(f"{p}: is a directory, not a config file") from None
    except PermissionError:
        raise ValueError(f"{p}: not readable") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML ({e})") from None
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise ValueError(f"{p}: configs are flat key = value pairs; found a table [{nested[0]}]")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["hidden_size=256", "cell=gru"]`` -> typed values; ``ValueError`` naming the item."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        out[key.strip()] = parse_value(key.strip(), text)
    return out


#: config keys that only some tasks read, and those tasks: set for any other task they would do nothing
#: (``record``, ``refit``, ``conv_channels``, ``ngram_blend`` and the user-file keys are checked where
#: their tasks are known)
TASK_KEYS: dict[str, tuple[str, ...]] = {
    "record": ("ecg-anomaly", "mitdb-qrs"),
    "horizon": ("ecg-anomaly", "forecast"),
    "baseline_order": ("ecg-anomaly", "forecast"),
    "holdout": ("ecg-anomaly", "mitdb-qrs"),
    "smooth": ("ecg-anomaly",),
    "threshold_quantile": ("ecg-anomaly",),
    "threshold_margin": ("ecg-anomaly",),
    "threshold_crossfit": ("ecg-anomaly",),
    "normalize": ("classify", "tag", "forecast"),
    "folds": ("promoters",),
    "fold": ("promoters",),
    "beam": ("translate",),
    "n_sequences": ("translate",),
    "temperature": ("generate-names",),
}


def check_task_keys(cfg: TrainConfig) -> None:
    """Refuse (``ValueError``, ``config: KEY ...``) a key of :data:`TASK_KEYS` set to other than its
    default for a task that does not read it, where it would be accepted and silently do nothing."""
    for key, tasks in TASK_KEYS.items():
        if cfg.task not in tasks and getattr(cfg, key) != getattr(TrainConfig, key):
            raise ValueError(f"config: {key} applies to {' and '.join(tasks) if len(tasks) < 3 else ', '.join(tasks)}, "
                             f"not to task {cfg.task!r}")


def check_task_features(cfg: TrainConfig) -> None:
    """Refuse (``ValueError``, ``config: KEY ...``) ``refit``, ``conv_channels`` and ``ngram_blend`` for a
    task that has no such part (the task module's ``REFIT``, ``CONV``, ``NGRAM``)."""
    from . import tasks

    task = tasks.get(cfg.task)
    for key, flag, what in (("refit", "REFIT", "refit applies to the tasks with a validation part to add to the "
                                                  "training part"),
                            ("conv_channels", "CONV", "conv_channels (a window layer before the recurrence) "
                                                      "applies to"),
                            ("ngram_blend", "NGRAM", "ngram_blend (a character n-gram model blended with the "
                                                     "recurrent one) applies to")):
        if getattr(cfg, key) and not getattr(task, flag, False):
            having = ", ".join(name for name in tasks.TASKS if getattr(tasks.get(name), flag, False))
            where = f" ({having})" if key == "refit" else f" {having}"
            raise ValueError(f"config: {what}{where}, not to task {cfg.task!r}")


def resolve(
    task: str,
    config_file: str | Path | None = None,
    options: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> TrainConfig:
    """Defaults < TOML file < named options < ``key=value`` overrides, then validated."""
    from .tasks import defaults

    layers = [("task defaults", defaults(task))]
    if config_file is not None:
        layers.append((str(config_file), load_toml(config_file)))
    if options:
        layers.append(("option", {k: v for k, v in options.items() if v is not None}))
    if overrides:
        try:
            layers.append(("override", parse_overrides(overrides)))
        except ValueError as e:  # a value that is not a number: named against the override, as a bad number is
            raise ValueError(re.sub(r"^config: ", "override: ", e.args[0])) from None
    for source, values in layers[1:]:
        if "task" in values and values["task"] != task:
            raise ValueError(f"{source}: task = {values['task']!r}, but the task trained is {task!r}; name the "
                             f"task once (as TASK, or in the TOML file)")
    cfg = TrainConfig(task=task)
    for source, values in layers:
        cfg = apply(cfg, values, source=source)
    try:
        cfg = cfg.validate()
        check_task_keys(cfg)
        check_task_features(cfg)
        return cfg
    except ValueError as e:  # a bad value is reported against the layer that set it (the TOML file's name)
        message = e.args[0]
        key = re.match(r"config: (\w+) ", message)
        setters = [source for source, values in layers if key and key.group(1) in values]
        if setters:
            raise ValueError(f"{setters[-1]}: {message.removeprefix('config: ')}") from None
        raise


def from_json(text: str, source: str = "config.json") -> TrainConfig:
    """The config a run directory recorded; unknown keys (a newer version) are refused."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a JSON object")
    cfg = apply(TrainConfig(), data, source=source)
    try:
        return cfg.validate()
    except ValueError as e:  # a value out of range: name the file it came from, as a wrong type does
        raise ValueError(f"{source}: {str(e).removeprefix('config: ')}") from None


def read_config(path: Path) -> TrainConfig:
    """The config a run directory recorded; ``ValueError`` naming the file on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    return from_json(text, source=str(path))
