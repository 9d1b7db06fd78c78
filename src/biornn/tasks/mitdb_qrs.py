"""The ``mitdb-qrs`` task: find every heart beat of an ECG, sample by sample (many-to-many, synced).

MIT-BIH Arrhythmia Database record 100 (Moody & Mark, IEEE Eng Med Biol
20(3):45-50, 2001): 30 min 5.6 s of two leads (MLII, V5) at 360 Hz, with
cardiologists' reference beat annotations (2273 beats: 2239 N, 33 A, 1 V).

- **Targets.** Every sample is labelled 1 when it lies within
  ``HALF_WIDTH_S`` = 50 ms of an annotated beat (the QRS complex around the
  fiducial point), else 0.  Only beat annotations count (EC57's beat codes,
  :data:`biornn.data.physionet.BEAT_CODES`; the rhythm annotation ``+`` is not
  a beat).
- **Split, by time.** Training on the first 20 minutes, of which the last
  ``holdout`` (default 20 %: minutes 16-20) picks the best epoch; test on
  the rest (20:00 to the end, 10 min 5.6 s, 759 reference beats).
- **Input.** Both leads in physical units, each standardised by the mean and
  standard deviation of the training samples (kept with the model).
- **Model.** Three bidirectional recurrent taggers
  (:class:`biornn.models.SequenceTagger`): (B, T, n_leads) -> per-sample
  logits (B, T, 2), trained side by side on the same crops, each from its own
  initialisation and loss; their per-sample beat probabilities are averaged
  (``ensemble``; a single model: ``ensemble=1``).  It trains on random 4 s crops of the training minutes
  (``CROP_S``), a fresh draw every epoch: a bidirectional model cannot carry
  its state from one truncated-BPTT window to the next (its backward direction
  would need the future), a QRS complex is recognised from about a second of
  context, and random crops put every beat at every position of a window.
  Each lead of each crop is flipped in sign with probability 1/2 and scaled by
  a log-uniform factor in [0.7, 1.4] (``FLIP_P``, ``SCALE``): a QRS complex
  is recognised by its shape, not its polarity -- the training minutes hold
  no ventricular beat, and the test minutes' one PVC points downwards.  At
  test time the record is read in overlapping 4 s windows whose central part
  alone is kept (``CONTEXT_S`` = 1 s of context on each side), so that the
  model sees what it was trained on.
- **Detections.** Samples whose beat probability is at least 0.5 form runs;
  each run is a beat at its centre; of two beats closer than 200 ms the
  weaker goes (:func:`biornn.beats.detect_beats`).
- **Scoring.** ANSI/AAMI EC57: sensitivity Se = TP / (TP + FN) and positive
  predictivity +P = TP / (TP + FP), a detection matching a reference beat
  within 150 ms (:func:`biornn.beats.score_beats`).  EC57's 5-minute learning
  period is not left out: the scored part starts at 20:00, after the training
  minutes.
- **Baseline.** The ``wfdb`` package's own QRS detector
  (``wfdb.processing.xqrs_detect``) on the first lead of the same test minutes,
  scored identically.

``biornn predict RUN RECORD ...`` takes WFDB record paths (``.../100`` or
``.../100.hea``) and prints each record's beats; where the record has a
``.atr`` annotation file beside it the row is scored against it too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from ..beats import REFRACTORY_S, beat_labels, detect_beats, score_beats
from ..config import TrainConfig
from ..data.physionet import Record, read_beats, read_record, record_path, wfdb_module
from ..data.registry import DataError, locate, search_path
from ..metrics import classification_metrics
from ..models import Ensemble, SequenceTagger
from .common import Batch, epoch_generator, load_model_state
from .names import class_weights

#: this task's config defaults over :class:`biornn.config.TrainConfig`'s
DEFAULTS = {
    "record": "100", "cell": "lstm", "hidden_size": 32, "num_layers": 2, "bidirectional": True,
    "dropout": 0.1, "embedding_dim": 0, "ensemble": 3, "logit_adjustment": 0.0, "optimizer": "adamw",
    "lr": 1e-2, "weight_decay": 1e-4, "lr_schedule": "onecycle", "batch_size": 32, "epochs": 30,
    "clip_norm": 1.0, "monitor": "loss", "holdout": 0.2, "threads": 1,
}

#: a detector, not a classifier of whole inputs: ``biornn predict`` goes through :func:`predict_rows`
KIND = "detection"
DISTRIBUTED = False
NOT_DISTRIBUTED = "one ECG record trains in one process"
LOG_FIELDS = ("val_f1", "val_sensitivity", "val_positive_predictivity", "val_macro_f1")
LOG_SHOW = (("f1", "val beat F1"), ("sensitivity", "Se"), ("positive_predictivity", "+P"))

DATASET = "mitdb-100"
#: where the MIT-BIH records lie in a data directory
SUBDIR = "ecg/mitdb"
#: the first TRAIN_S seconds train (and validate); the rest of the record is the test part
TRAIN_S = 20 * 60.0
#: a sample within this many seconds of a beat annotation is a beat sample
HALF_WIDTH_S = 0.050
#: the length of a training crop, and of a window read at test time
CROP_S = 4.0
#: context on each side of the part of a test window that is kept
CONTEXT_S = 1.0
#: beat probability from which a sample belongs to a beat
THRESHOLD = 0.5
#: training augmentation: the probability that a lead of a crop is flipped in sign, and the range of the
#: log-uniform factor that scales it (1.0, (1.0, 1.0): no augmentation)
FLIP_P = 0.5
SCALE = (0.7, 1.4)
LABELS = ["other", "beat"]
SCORE_KEYS = ("sensitivity", "positive_predictivity", "f1", "tp", "fn", "fp", "n_reference", "n_detected",
              "window_ms", "mean_abs_offset_ms")
#: seconds of the test part shown in the plot
PLOT_S = 10.0


# -- the data --------------------------------------------------------------------------


@dataclass
class TaskData:
    """One record, split by time into train / val / test.

    Attributes
    ----------
    record : str
        The record's name as configured (``"100"``) and ``path``, where it was read.
    signal : ndarray of float64, shape (T, C)
        Physical units (for the baseline and the plot).
    x : ndarray of float32, shape (T, C)
        Standardised by the training samples' per-lead ``mean`` and ``std``.
    y : ndarray of int64, shape (T,)
        1 within ``HALF_WIDTH_S`` of a beat.
    beats : ndarray of int64, shape (N,)
        Every reference beat's sample.
    bounds : dict of str to (int, int)
        Each part's samples [start, end).
    """

    record: str
    path: str
    fs: float
    leads: list[str]
    signal: np.ndarray
    x: np.ndarray
    y: np.ndarray
    beats: np.ndarray
    mean: list[float]
    std: list[float]
    bounds: dict[str, tuple[int, int]]
    fingerprint: str = ""

    def meta(self) -> dict[str, Any]:
        return {"record": self.record, "fs": self.fs, "leads": list(self.leads), "mean": list(self.mean),
                "std": list(self.std), "labels": list(LABELS), "half_width_s": HALF_WIDTH_S, "crop_s": CROP_S,
                "context_s": CONTEXT_S, "threshold": THRESHOLD, "refractory_s": REFRACTORY_S}

    def part_beats(self, part: str) -> np.ndarray:
        start, end = self.bounds[part]
        return self.beats[(self.beats >= start) & (self.beats < end)]


def is_record_path(record: str) -> bool:
    """Whether ``record=`` names a WFDB record by its path (else a record name in the data directory).

    >>> is_record_path("100"), is_record_path("recs/100"), is_record_path("100.hea")
    (False, True, True)
    """
    return "/" in record or "\\" in record or record.endswith(".hea")


def find_record(record: str, data_dir: str | None) -> Path:
    """The path (without extension) of ``record``: a path to a WFDB record, or a record name in the
    data directory's ``ecg/mitdb`` (``"100"``: the registered data set, found like every data set)."""
    if is_record_path(record):
        path = record_path(record)
        hea = path.parent / f"{path.name}.hea"
        if not hea.is_file():
            # a run keeps its record's path in config.json: a record that has moved is looked for in
            # --data-dir (the fingerprint then tells whether it is the same record)
            if data_dir and (Path(data_dir).expanduser() / hea.name).is_file():
                return Path(data_dir).expanduser() / path.name
            raise DataError(f"{hea}: no such WFDB header (record={record}; a run keeps this path in its "
                            f"config.json: if the record has moved, give --data-dir DIR holding {hea.name})")
        return path
    if record == "100":
        return locate(DATASET, data_dir) / SUBDIR / record
    looked = []
    for root, why in search_path(data_dir):
        if (root / SUBDIR / f"{record}.hea").is_file():
            return root / SUBDIR / record
        looked.append(f"{root / SUBDIR} ({why})")
    raise DataError(f"record {record!r}: no {record}.hea in {', '.join(looked)}; give record=PATH/TO/RECORD "
                    f"or put the record there")


def load(cfg: TrainConfig, data_dir: str | None = None) -> TaskData:
    """The record, its beats, the per-sample targets and the time split (``holdout`` of the training minutes
    validates).  ``ValueError`` naming the file for a bad record, or a record too short to split."""
    path = find_record(cfg.record, data_dir)
    rec: Record = read_record(path)
    T, C = rec.signal.shape
    beats = read_beats(path, "atr", n_samples=T).sample
    train_end = int(round(TRAIN_S * rec.fs))
    crop = int(round(CROP_S * rec.fs))
    if T < train_end + crop:
        raise ValueError(f"{path}: {T / rec.fs / 60:.1f} minutes of signal; the task trains on the first "
                         f"{TRAIN_S / 60:g} minutes and tests on what follows, so it needs more than "
                         f"{(TRAIN_S + CROP_S) / 60:.2f} minutes")
    val_start = int(round(train_end * (1.0 - cfg.holdout)))
    if val_start < crop or train_end - val_start < crop:
        raise ValueError(f"config: holdout {cfg.holdout} leaves less than {CROP_S:g} s to train or to validate on")
    bounds = {"train": (0, val_start), "val": (val_start, train_end), "test": (train_end, T)}
    for part, (a, b) in bounds.items():
        if not ((beats >= a) & (beats < b)).any():
            raise ValueError(f"{path}.atr: no beat annotation in the {part} part "
                             f"({a / rec.fs:.0f} s to {b / rec.fs:.0f} s)")
    # standardise by the training samples alone: the test minutes stay unseen
    mean = rec.signal[:val_start].mean(axis=0)
    std = rec.signal[:val_start].std(axis=0)
    if np.any(std <= 0):
        lead = rec.leads[int(np.argmax(std <= 0))]
        raise ValueError(f"{path}: lead {lead!r} is constant over the training minutes")
    x = ((rec.signal - mean) / std).astype(np.float32)
    y = beat_labels(beats, T, int(round(HALF_WIDTH_S * rec.fs)))
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(rec.signal).tobytes())
    digest.update(beats.tobytes())
    digest.update(repr((rec.fs, rec.leads, sorted(bounds.items()))).encode())
    return TaskData(record=cfg.record, path=str(path), fs=rec.fs, leads=rec.leads, signal=rec.signal, x=x, y=y,
                    beats=beats, mean=[float(v) for v in mean], std=[float(v) for v in std], bounds=bounds,
                    fingerprint=digest.hexdigest())


# -- the model and its outputs ---------------------------------------------------------


def build_model(cfg: TrainConfig, n_leads: int) -> SequenceTagger | Ensemble:
    """The tagger the config describes; ``cfg.ensemble`` > 1 members (each its own initialisation,
    trained side by side on the same crops) make an :class:`Ensemble` whose per-sample beat
    probabilities are the members' mean."""
    def one() -> SequenceTagger:
        return SequenceTagger(n_leads, len(LABELS), cell=cfg.cell, hidden_size=cfg.hidden_size,
                              num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                              init=cfg.init, forget_bias=cfg.forget_bias)
    return Ensemble([one() for _ in range(cfg.ensemble)]) if cfg.ensemble > 1 else one()


def sample_logits(model: torch.nn.Module, x: np.ndarray, fs: float, crop_s: float = CROP_S,
                  context_s: float = CONTEXT_S, batch_size: int = 256) -> Tensor:
    """Per-sample logits of a whole signal, read in overlapping windows like the training crops.

    Each window is W = ``crop_s`` * fs samples; of it only the centre, at
    least ``context_s`` * fs samples from a window edge that is not the
    signal's edge, is kept, and the kept parts tile the signal.

    Parameters
    ----------
    model : torch.nn.Module
        (B, W, C) -> (B, W, K).
    x : ndarray, shape (T, C)
        The standardised signal.

    Returns
    -------
    Tensor, shape (T, K)
    """
    T = len(x)
    W = min(int(round(crop_s * fs)), T)
    M = int(round(context_s * fs))
    core = max(1, W - 2 * M)
    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    cores = list(range(0, T, core))
    # each window: start clamped into the signal, so that every window has W samples
    starts = [min(max(c - M, 0), T - W) for c in cores]
    out = None
    model.eval()
    with torch.no_grad():
        for i in range(0, len(cores), batch_size):
            batch = torch.stack([xs[s : s + W] for s in starts[i : i + batch_size]])  # (b, W, C)
            logits = model(batch)  # (b, W, K)
            if out is None:
                out = torch.empty(T, logits.shape[-1])
            for j, (c, s) in enumerate(zip(cores[i : i + batch_size], starts[i : i + batch_size])):
                e = min(c + core, T)
                out[c:e] = logits[j, c - s : e - s]
    return out


def beat_probability(logits: Tensor) -> np.ndarray:
    """P(beat) of every sample, (T,) from (T, 2) logits."""
    return torch.softmax(logits, dim=-1)[:, 1].numpy().astype(np.float64)


def detect(prob: np.ndarray, fs: float, meta: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Beats (samples, peak probabilities) from per-sample probabilities, with the run's detector settings."""
    meta = meta or {}
    return detect_beats(prob, fs, threshold=meta.get("threshold", THRESHOLD),
                        refractory_s=meta.get("refractory_s", REFRACTORY_S))


def score_part(model: torch.nn.Module, data: TaskData, part: str) -> tuple[dict[str, Any], Tensor, np.ndarray]:
    """EC57 scores of one part, its logits (n, 2) and its detections (absolute samples)."""
    start, end = data.bounds[part]
    logits = sample_logits(model, data.x[start:end], data.fs)
    found, _ = detect(beat_probability(logits), data.fs)
    found = found + start
    return score_beats(data.part_beats(part), found, data.fs, start=start, end=end), logits, found


def xqrs(data: TaskData, part: str = "test") -> tuple[dict[str, Any], np.ndarray]:
    """The baseline: ``wfdb.processing.xqrs_detect`` on the first lead of a part, scored like the model."""
    processing = wfdb_module("wfdb.processing")

    start, end = data.bounds[part]
    t0 = time.perf_counter()
    found = np.asarray(processing.xqrs_detect(data.signal[start:end, 0], fs=data.fs, verbose=False),
                       dtype=np.int64) + start
    seconds = time.perf_counter() - t0
    s = score_beats(data.part_beats(part), found, data.fs, start=start, end=end)
    return {"name": "wfdb-xqrs", "lead": data.leads[0], **s, "seconds": round(seconds, 2)}, found


#: how many missed beats and false detections ``errors`` lists (the first ones of each); fn and fp count all
ERRORS_LISTED = 50


def _errors(reference: np.ndarray, found: np.ndarray, fs: float) -> dict[str, Any]:
    """Times (s) of the first :data:`ERRORS_LISTED` missed reference beats and false detections."""
    from ..beats import MATCH_WINDOW_S, match_beats

    pairs = match_beats(reference, found, int(round(MATCH_WINDOW_S * fs)))
    missed = np.setdiff1d(np.arange(len(reference)), pairs[:, 0])
    false = np.setdiff1d(np.arange(len(found)), pairs[:, 1])
    return {"missed_s": [round(float(reference[i]) / fs, 3) for i in missed[:ERRORS_LISTED]],
            "false_s": [round(float(found[i]) / fs, 3) for i in false[:ERRORS_LISTED]],
            "listed_at_most": ERRORS_LISTED}


# -- the training loop's hooks (biornn.train) ------------------------------------------


def check_config(cfg: TrainConfig) -> None:
    if not cfg.record:
        raise ValueError("task mitdb-qrs: give record=NAME (a record in the data directory's ecg/mitdb) or a path")
    if cfg.embedding_dim:
        raise ValueError("task mitdb-qrs: the input is a real-valued signal; embedding_dim must be 0")
    if cfg.logit_adjustment:
        raise ValueError("task mitdb-qrs: logit_adjustment is not supported; set it to 0")
    if cfg.truncate:
        raise ValueError(f"task mitdb-qrs: the model trains on random {CROP_S:g} s crops; truncate must be 0")


def subruns(cfg: TrainConfig, data_dir: str | None) -> None:
    return None


def build(cfg: TrainConfig, data: TaskData) -> SequenceTagger | Ensemble:
    return build_model(cfg, len(data.leads))


def _crops_per_epoch(data: TaskData) -> int:
    """Crops per epoch: as many as tile the training samples once (each sample seen about once)."""
    start, end = data.bounds["train"]
    return max(1, math.ceil((end - start) / int(round(CROP_S * data.fs))))


def steps_per_epoch(cfg: TrainConfig, data: TaskData) -> int:
    return math.ceil(_crops_per_epoch(data) / cfg.batch_size)


def train_batches(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, epoch: int) -> Iterator[Batch]:
    """Mini-batches of random crops of the training samples, drawn by the seed and the epoch; the loss
    is over every sample of every crop."""
    start, end = data.bounds["train"]
    W = min(int(round(CROP_S * data.fs)), end - start)
    n = _crops_per_epoch(data)
    g = epoch_generator(cfg.seed, epoch)
    offsets = torch.randint(0, end - start - W + 1, (n,), generator=g) + start
    C = data.x.shape[1]
    # augmentation: each lead of each crop flipped in sign with probability FLIP_P and scaled by a
    # log-uniform factor in SCALE -- a QRS complex is found by its shape, whatever its polarity and size
    # (an ectopic beat's QRS often points the other way than the training minutes' normal beats)
    sign = torch.where(torch.rand(n, 1, C, generator=g) < FLIP_P, -1.0, 1.0)
    lo, hi = math.log(SCALE[0]), math.log(SCALE[1])
    gain = sign * torch.exp(lo + (hi - lo) * torch.rand(n, 1, C, generator=g))  # (n, 1, C)
    weight = class_weights(cfg, data.y[start:end], len(LABELS))
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    for b in range(0, n, cfg.batch_size):
        idx = offsets[b : b + cfg.batch_size].tolist()
        xb = torch.stack([x[s : s + W] for s in idx]) * gain[b : b + cfg.batch_size]  # (B, W, C)
        yb = torch.stack([y[s : s + W] for s in idx]).reshape(-1)  # (B * W,)
        if hasattr(model, "member_logits"):  # an ensemble: (M, B * W, 2), each member its own loss
            yield Batch(model.member_logits(xb).flatten(1, 2), yb, weight, len(yb), members=True)
        else:
            yield Batch(model(xb).reshape(-1, len(LABELS)), yb, weight, len(yb))  # (B * W, 2)


def validate(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, loss_fn) -> dict[str, float]:
    """The validation minutes: per-sample loss and accuracy figures, and the beat scores (Se, +P, F1)."""
    s, logits, _ = score_part(model, data, "val")
    start, end = data.bounds["val"]
    target = torch.from_numpy(data.y[start:end])
    weight = class_weights(cfg, data.y[slice(*data.bounds["train"])], len(LABELS))
    loss = float(loss_fn(dataclasses.replace(cfg, reduction="sum"), logits, target, weight)) / len(target)
    m = classification_metrics(data.y[start:end], logits.argmax(dim=1).numpy(), LABELS)
    return {"loss": loss, "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
            "macro_f1": m["macro_f1"], "f1": s["f1"], "sensitivity": s["sensitivity"],
            "positive_predictivity": s["positive_predictivity"]}


def run_meta(cfg: TrainConfig, data: TaskData) -> dict[str, Any]:
    return {}


def finish(cfg: TrainConfig, model: torch.nn.Module, data: TaskData, out: Path, log) -> tuple[dict, dict]:
    """EC57 scores of the best weights on the test minutes beside xqrs's; a plot of a test excerpt."""
    test, logits, found = score_part(model, data, "test")
    log("running the wfdb xqrs QRS detector on the same minutes ...")
    base, base_found = xqrs(data, "test")
    ref = data.part_beats("test")
    metrics = {
        "test": {k: test[k] for k in SCORE_KEYS},
        "baseline": base,
        "errors": {"model": _errors(ref, found, data.fs), "baseline": _errors(ref, base_found, data.fs)},
        "record": data.record,
        "fs": data.fs,
        "leads": data.leads,
        "parts": {part: {"start_s": round(a / data.fs, 3), "end_s": round(b / data.fs, 3),
                         "beats": int(len(data.part_beats(part)))} for part, (a, b) in data.bounds.items()},
        "detector": {"threshold": THRESHOLD, "refractory_ms": REFRACTORY_S * 1000, "label_half_width_ms":
                     HALF_WIDTH_S * 1000, "crop_s": CROP_S, "context_s": CONTEXT_S},
    }
    start, _ = data.bounds["test"]
    plot_excerpt(data.signal[:, 0], data.fs, start, start + int(round(PLOT_S * data.fs)), ref, found,
                 beat_probability(logits), start, out / "detections.png", lead=data.leads[0], baseline=base_found)
    return metrics, {}


# -- a saved run -----------------------------------------------------------------------


def from_weights(cfg: TrainConfig, tensors: dict, meta: dict, path: Path) -> SequenceTagger | Ensemble:
    """The model of a run's ``model.safetensors`` (its leads, sampling rate and normalisation stay in ``meta``)."""
    for key in ("leads", "fs", "mean", "std", "data_fingerprint"):
        if meta.get(key) is None:
            raise ValueError(f"{path}: metadata has no {key!r}")
    leads = meta["leads"]
    if not isinstance(leads, list) or not leads or len(meta["mean"]) != len(leads) or len(meta["std"]) != len(leads):
        raise ValueError(f"{path}: metadata leads and normalisation do not agree")
    model = build_model(cfg, len(leads))
    load_model_state(model, tensors, path)
    return model


def evaluate_saved(cfg: TrainConfig, model: torch.nn.Module, meta: dict, data: TaskData) -> dict[str, Any]:
    """The saved model's EC57 scores on the test minutes, beside xqrs's, recomputed from the data."""
    data.x = ((data.signal - np.array(meta["mean"])) / np.array(meta["std"])).astype(np.float32)
    test, _, _ = score_part(model, data, "test")
    base, _ = xqrs(data, "test")
    return {"test": {k: test[k] for k in SCORE_KEYS}, "baseline": base}


def predict_rows(model: torch.nn.Module, meta: dict, inputs: list[str]) -> list[dict[str, Any]]:
    """For each WFDB record path: its beats (samples and seconds) and mean heart rate; scored against
    its ``.atr`` annotations where the record has them.  ``ValueError`` naming the record when it cannot be
    read, has another number of leads or another sampling rate than the model's."""
    rows = []
    for text in inputs:
        rec = read_record(text)
        if rec.signal.shape[1] != len(meta["leads"]):
            raise ValueError(f"{rec.name}: {rec.signal.shape[1]} signal(s) ({', '.join(rec.leads)}); the model reads "
                             f"{len(meta['leads'])} ({', '.join(meta['leads'])})")
        if abs(rec.fs - float(meta["fs"])) > 1e-6:
            raise ValueError(f"{rec.name}: sampled at {rec.fs:g} Hz; the model was trained at {meta['fs']:g} Hz "
                             f"(resample the record first, e.g. wfdb.processing.resample_multichan)")
        x = ((rec.signal - np.array(meta["mean"])) / np.array(meta["std"])).astype(np.float32)
        prob = beat_probability(sample_logits(model, x, rec.fs, meta.get("crop_s", CROP_S),
                                              meta.get("context_s", CONTEXT_S)))
        found, peak = detect(prob, rec.fs, meta)
        rr = np.diff(found) / rec.fs
        row = {"input": text, "record": rec.name, "fs": rec.fs, "leads": rec.leads, "n_samples": int(len(x)),
               "n_beats": int(len(found)),
               "heart_rate_bpm": round(float(60.0 / rr.mean()), 1) if len(rr) else None,
               "beats": found.tolist(), "times_s": [round(float(t) / rec.fs, 3) for t in found],
               "probability": [round(float(p), 3) for p in peak]}
        atr = record_path(text)
        if atr.with_name(atr.name + ".atr").is_file():
            row["score"] = score_beats(read_beats(atr, "atr", n_samples=len(x)).sample, found, rec.fs)
        rows.append(row)
    return rows


# -- the plot --------------------------------------------------------------------------


def plot_excerpt(signal: np.ndarray, fs: float, start: int, end: int, reference: np.ndarray, found: np.ndarray,
                 prob: np.ndarray, prob_start: int, path: str | Path, lead: str = "",
                 baseline: np.ndarray | None = None) -> None:
    """An excerpt of the test signal with the reference beats, the detections and the beat probability.

    Parameters
    ----------
    signal : ndarray, shape (T,)
        One lead, physical units.
    start, end : int
        The excerpt's samples [start, end).
    reference, found : ndarray of int
        Reference beats and the model's detections (absolute samples).
    prob : ndarray, shape (n,)
        Beat probability of samples ``prob_start`` ... ``prob_start + n - 1``.
    baseline : ndarray of int, optional
        The baseline detector's beats, drawn as well.
    """
    from ..checkpoint import atomic_path
    from ..plots import _pyplot

    plt = _pyplot()
    end = min(end, len(signal))
    t = np.arange(start, end) / fs
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax1.plot(t, signal[start:end], color="0.3", lw=0.8, label=lead or "signal")
    inside = lambda b: b[(b >= start) & (b < end)]  # noqa: E731
    r = inside(np.asarray(reference))
    ax1.plot(r / fs, signal[r], "o", mfc="none", mec="tab:green", ms=10, label="reference beat")
    f = inside(np.asarray(found))
    ax1.plot(f / fs, signal[f], "x", color="tab:red", ms=8, label="detected (model)")
    if baseline is not None:
        b = inside(np.asarray(baseline))
        ax1.plot(b / fs, signal[b] + 0.15 * np.ptp(signal[start:end]), "v", color="tab:blue", ms=5,
                 label="detected (xqrs)")
    ax1.set(ylabel="mV", title="test excerpt: reference beats and detections")
    ax1.legend(loc="upper right", fontsize=8)
    p = prob[start - prob_start : end - prob_start]
    ax2.plot(t[: len(p)], p, color="tab:red", lw=0.8)
    ax2.axhline(THRESHOLD, color="0.5", ls="--", lw=0.8)
    ax2.set(xlabel="time (s)", ylabel="P(beat)", ylim=(-0.05, 1.05))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
