"""Serve a run's model over HTTP: ``biornn serve RUN`` (FastAPI + uvicorn).

:func:`create_app` loads the run once and returns a FastAPI app:

``POST /predict``
    ``{"sequences": ["Dostoevsky", [5, 9, 2]], "top": 3, "unknown": "reject"}``:
    several inputs per request, each a string or an array of the run's
    vocabulary indices (2..V-1 for its symbols, 1 for "unknown"; what an
    exported file takes, see ``GET /model``).  Answers
    ``{"predictions": [{"input": ..., "top": [{"label", "probability"}, ...]}, ...]}``,
    one per input in order, the numbers of ``biornn predict``.
``POST /explain``
    ``{"sequences": ["Dostoevsky"], "top": 3, "target": null, "steps": 64}``:
    fewer inputs per request (``max_explain``: each costs ``steps + 1``
    gradient passes and one pass per prefix), and a bound on their work
    (``max_explain_work``: an input of T symbols costs T x (steps + 1 + T)
    symbol steps of the model; see :func:`explain_work`).  Per input, the top classes,
    the saliency of each input step (gradient x input, integrated gradients,
    the completeness gap) and the probability of the top classes after each
    step, from :func:`biornn.diagnostics.explain_symbols`.
``GET /``
    the web page (``biornn/web/index.html``): type inputs, see the classes,
    the saliency over the sequence and the probability after each step.
``GET /model``
    task, cell, classes, the input spec (alphabet, index range, limits).
``GET /healthz``
    ``{"status": "ok"}`` once the model is loaded.
``GET /docs``, ``GET /openapi.json``
    FastAPI's OpenAPI page and schema.

Bad input never reaches the model: the body is capped in size before it is
parsed (413), pydantic checks the types and the number of sequences, and
each sequence is checked for emptiness, length and alphabet (422, with one
``detail`` line naming the input, and pydantic's ``errors`` where it spoke).
With ``"unknown": "reject"`` (the default) a character outside the run's
alphabet is an error; ``"unknown": "map"`` does what ``biornn predict`` does
(map it to the "unknown" symbol, refusing only an input with no known
character).

Runs of :class:`biornn.models.VectorClassifier` (``splice``, ``promoters``,
``classify`` on the user's files) are served too.  A residue run (DNA,
protein, a FASTA ``classify`` run) takes strings over its alphabet, IUPAC
ambiguity codes included (``GET /model``: ``kinds`` ``["string"]``); a
numeric run (``classify`` on a UCR/CSV/NPZ table, e.g. an ECG) takes
``"sequences": [[0.1, -0.3, ...], ...]``, one array of numbers per series,
or for F > 1 features an array of per-step arrays of F numbers (``kinds``
``["values"]``); a string of numbers separated by commas or white space is
read as ``biornn predict`` reads it.  Values are normalised with the
training part's statistics saved in the run.  ``/explain`` answers their
saliency the same way (gradient x input and integrated gradients from the
all-zero input -- for normalised values the training mean -- summed over
the F features of each step); the probability after each step is the model
run on each prefix, which is defined for ``pool`` ``last``, ``max`` and
``mean`` but not for ``split`` (``splice``: the read-out sits at the middle
of a 60-bp window), where ``probability_after_step`` is empty and
``probability_after_step_note`` says why.

The loaded model is :class:`Served` in ``app.state.served``; every route
reads it, and none loads the run again.
"""

# no `from __future__ import annotations`: FastAPI reads the request model's annotation at run time
import json
import math
import os
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import torch

from .export import load_classifier_run, require

#: defaults of the request limits (each an argument of create_app and an option of biornn serve)
MAX_SEQUENCES = 256
MAX_LENGTH = 1000
MAX_BODY_BYTES = 1_000_000
#: inputs per /explain request: each costs steps + 1 gradient passes and one pass per prefix
MAX_EXPLAIN = 8
#: integrated-gradients intervals per /explain request, at most
MAX_EXPLAIN_STEPS = 256
#: symbol steps of the model per /explain request, at most (see explain_work).  Without it one
#: request inside the other limits -- 8 inputs of 1000 characters, 256 steps -- held the model for
#: about 9 minutes (70 s per input, one thread, the default names model) and every other request
#: queued behind it.  100,000 is about 3 s of one core for that model: a 250-character input at
#: the default 64 steps costs 78,750 (2.5 s measured), 8 names of 12 characters at 256 steps 25,824 (1 s).
MAX_EXPLAIN_WORK = 100_000


@dataclass
class Served:
    """A run loaded for serving: everything a request needs, read once at start-up."""

    run: Path
    cfg: Any
    task: Any
    model: torch.nn.Module
    meta: dict[str, Any]
    labels: list[str]
    vocab: Any  # biornn.data.batching.Vocabulary
    adjust: torch.Tensor | None  # (K,) subtracted from the logits, or None
    max_sequences: int = MAX_SEQUENCES
    max_length: int = MAX_LENGTH
    max_body_bytes: int = MAX_BODY_BYTES
    max_explain: int = MAX_EXPLAIN
    max_explain_work: int = MAX_EXPLAIN_WORK
    # one forward pass at a time: torch already uses every core for one batch
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: "symbols" (a SequenceClassifier: vocabulary indices), "residues" (a VectorClassifier over an
    #: alphabet: strings) or "values" (a VectorClassifier over numeric series)
    kind: str = "symbols"
    #: the one input length the model reads (splice 60, promoters 57), or None for any
    length: int | None = None
    #: the classifier's pooling (``last``, ``max``, ``mean``; ``split`` for a VectorClassifier)
    pool: str = "last"

    @property
    def n_features(self) -> int:
        """F, the width of one input step of a vector run (0 for a symbol run)."""
        if self.kind == "values":
            return int(self.meta["n_features"])
        return self.vocab.size if self.kind == "residues" else 0


def load_served(run: str | os.PathLike, max_sequences: int = MAX_SEQUENCES, max_length: int = MAX_LENGTH,
                max_body_bytes: int = MAX_BODY_BYTES, max_explain: int = MAX_EXPLAIN,
                max_explain_work: int = MAX_EXPLAIN_WORK) -> Served:
    """Load a classification run for serving; ``ValueError`` naming the run or the limit that is wrong."""
    for name, value in (("max_sequences", max_sequences), ("max_length", max_length),
                        ("max_body_bytes", max_body_bytes), ("max_explain", max_explain),
                        ("max_explain_work", max_explain_work)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} (--{name.replace('_', '-')}) must be a positive integer, got {value!r}")
    max_explain = min(max_explain, max_sequences)  # /explain takes no more inputs than any request may hold
    from .models import Ensemble, VectorClassifier

    cfg, task, model, meta = load_classifier_run(run)
    adjust = cfg.logit_adjustment * torch.tensor(meta["log_prior"]) if cfg.logit_adjustment else None
    first = model.members[0] if isinstance(model, Ensemble) else model
    kind, pool = "symbols", first.pool
    if isinstance(first, VectorClassifier):
        kind = "residues" if meta.get("vocab_obj") is not None else "values"
    length = getattr(task, "LENGTH", None) if kind == "residues" else None
    return Served(Path(run), cfg, task, model, meta, list(meta["labels"]), meta.get("vocab_obj"), adjust,
                  max_sequences, max_length, max_body_bytes, max_explain, max_explain_work,
                  kind=kind, length=length, pool=pool)


#: why a model with ``pool="split"`` has no probability after each step
NO_PREFIX = ("pool 'split': the read-out takes both directions at the middle of the whole input, so the model "
             "on a prefix is not defined; see the saliency instead")


def model_info(served: Served) -> dict[str, Any]:
    """What ``GET /model`` answers: the run's task, cell, classes and input spec."""
    from . import __version__

    cfg = served.cfg
    if served.kind == "symbols":
        V = len(served.vocab)
        spec: dict[str, Any] = {
            "kinds": ["string", "symbols"],
            "alphabet": "".join(served.vocab.symbols),
            "normalisation": "NFC",
            "symbols": {"padding": 0, "unknown": 1, "first": 2, "vocab_size": V},
        }
    elif served.kind == "residues":
        alphabet = served.vocab
        spec = {"kinds": ["string"], "residues": alphabet.name,
                # every character read: the canonical symbols, then the ambiguity codes (spread weights)
                "alphabet": alphabet.symbols + "".join(alphabet.ambiguity),
                "symbols": alphabet.symbols, "ambiguity": dict(alphabet.ambiguity),
                "case_sensitive": alphabet.case_sensitive, "n_features": alphabet.size, "length": served.length}
    else:
        spec = {"kinds": ["values"], "alphabet": None, "n_features": served.n_features,
                "normalised": served.meta.get("normalize") is not None, "length": None}
    return {
        "run": served.run.name, "task": cfg.task, "cell": cfg.cell, "classes": served.labels,
        "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers, "bidirectional": cfg.bidirectional,
        "ensemble": cfg.ensemble, "logit_adjustment": cfg.logit_adjustment, "ngram_blend": cfg.ngram_blend,
        "biornn_version": __version__,
        "model": "SequenceClassifier" if served.kind == "symbols" else "VectorClassifier", "pool": served.pool,
        "input": {
            **spec,
            "max_sequences": served.max_sequences, "max_length": served.max_length,
            "max_body_bytes": served.max_body_bytes,
            "max_explain": served.max_explain, "max_explain_steps": MAX_EXPLAIN_STEPS,
            "max_explain_work": served.max_explain_work,
        },
    }


def encode_vectors(served: Served, sequences: list[Any]) -> list[Any]:
    """Check and encode each input of a vector run: (T_i, F) float32 arrays; ``ValueError`` naming the first bad one.

    A residue run reads strings over its alphabet (white space ignored, as
    ``biornn predict``), each of ``served.length`` residues if the task fixes
    one.  A numeric run reads an array of T numbers (F = 1) or of T arrays of
    F numbers, or a string as ``biornn predict`` reads it; every value
    finite, normalised with the run's training statistics
    (:func:`biornn.tasks.userdata.normalize`).
    """
    import numpy as np

    from .tasks import userdata

    F, out = served.n_features, []
    run_limit = int(getattr(served.cfg, "max_length", 0) or 0)
    limit = min(served.max_length, run_limit) if run_limit else served.max_length
    for i, seq in enumerate(sequences):
        where = f"sequences[{i}]"
        if served.kind == "residues":
            if not isinstance(seq, str):
                raise ValueError(f"{where}: this run reads {served.vocab.name} sequences as strings, not arrays "
                                 f"(see GET /model)")
            text = "".join(seq.split())
            if not text:
                raise ValueError(f"{where}: an empty sequence")
            if len(text) > limit:
                raise ValueError(f"{where}: {len(text)} residues, more than the limit of {limit}")
            if served.length is not None and len(text) != served.length:
                raise ValueError(f"{where}: {len(text)} residues; the model reads exactly {served.length}")
            out.append(served.vocab.encode(text, where))
            continue
        if isinstance(seq, str):
            try:
                (x,) = userdata.parse_inputs(served.meta, [seq], 0)
            except ValueError as e:  # its messages name "input 1"; name the request's own place instead
                raise ValueError(where + str(e).removeprefix("input 1")) from None
        else:
            if not seq:
                raise ValueError(f"{where}: an empty series")
            try:
                arr = np.asarray(seq, dtype=np.float64)
            except OverflowError:  # an integer of hundreds of digits: valid JSON, no float
                raise ValueError(f"{where}: a number too large for a float (over 1.8e308)") from None
            except ValueError:  # ragged: steps of different widths
                raise ValueError(f"{where}: steps of different widths; each step needs {F} values") from None
            if arr.ndim == 1 and F == 1:
                arr = arr[:, None]  # (T,) -> (T, 1)
            if arr.ndim != 2 or arr.shape[1] != F:
                want = "an array of numbers" if F == 1 else f"an array of steps, each an array of {F} numbers"
                raise ValueError(f"{where}: a series of shape {arr.shape}; the model reads (T, {F}): {want}")
            if not np.isfinite(arr).all():
                t = int(np.argwhere(~np.isfinite(arr))[0][0])
                raise ValueError(f"{where}: step {t + 1} is NaN or infinite; only finite numbers are accepted")
            x = userdata.normalize(arr, served.meta.get("normalize"), where)
        if len(x) > limit:
            raise ValueError(f"{where}: {len(x)} steps, more than the limit of {limit}")
        out.append(x)
    return out


def encode_request(served: Served, sequences: list[Any], unknown: str = "reject") -> list[Any]:
    """Check and encode each input; ``ValueError`` naming the first bad one (``sequences[i]: ...``).

    Strings are stripped and NFC-normalised as ``biornn predict`` does;
    arrays are taken as vocabulary indices, each in 1..V-1.  A vector run's
    inputs go to :func:`encode_vectors` (``unknown`` does not apply: an
    alphabet's ambiguity codes are its way of saying "unknown").
    """
    if served.kind != "symbols":
        return encode_vectors(served, sequences)
    V, out = len(served.vocab), []
    for i, seq in enumerate(sequences):
        where = f"sequences[{i}]"
        if isinstance(seq, str):
            # JSON may escape a lone UTF-16 surrogate ("\\ud800"): not a character, and an answer
            # echoing it could not be encoded as UTF-8
            lone = next((ch for ch in seq if "\ud800" <= ch <= "\udfff"), None)
            if lone is not None:
                raise ValueError(f"{where}: not valid Unicode (a lone surrogate U+{ord(lone):04X})")
            text = unicodedata.normalize("NFC", seq.strip())
            if not text:
                raise ValueError(f"{where}: an empty sequence")
            if len(text) > served.max_length:
                raise ValueError(f"{where}: {len(text)} characters, more than the limit of {served.max_length}")
            outside = sorted({ch for ch in text if ch not in served.vocab})
            if outside and unknown == "reject":
                shown = "".join(outside[:20]) + ("..." if len(outside) > 20 else "")
                raise ValueError(f"{where}: characters outside the model's alphabet: {shown!r} "
                                 f"(see GET /model; send \"unknown\": \"map\" to map them to the unknown symbol)")
            if len(outside) == len(set(text)):
                raise ValueError(f"{where}: no character the model was trained on")
            out.append(served.vocab.encode(text))
        else:
            if not seq:
                raise ValueError(f"{where}: an empty sequence")
            if len(seq) > served.max_length:
                raise ValueError(f"{where}: {len(seq)} symbols, more than the limit of {served.max_length}")
            bad = next((s for s in seq if not 1 <= s < V), None)
            if bad is not None:
                raise ValueError(f"{where}: symbol {bad} outside 1..{V - 1} (the run's vocabulary indices)")
            if unknown == "reject" and 1 in seq:
                raise ValueError(f"{where}: the unknown symbol 1 (send \"unknown\": \"map\" to allow it)")
            if all(s == 1 for s in seq):
                raise ValueError(f"{where}: no symbol the model was trained on")
            out.append(list(seq))
    return out


def predict_encoded(served: Served, encoded: list[list[int]], top: int = 3) -> list[list[dict[str, Any]]]:
    """The ``top`` classes with probabilities for each encoded input, as ``biornn predict`` computes them."""
    from .data.batching import pad_batch
    from .tasks.splice import pad_vectors

    k = min(top, len(served.labels))
    # (B, T) symbols or (B, T, F) vectors, and lengths (B,)
    x, lengths = pad_batch(encoded) if served.kind == "symbols" else pad_vectors(encoded)
    with served.lock, torch.no_grad():
        logits = served.model(x, lengths)  # (B, K)
        if served.adjust is not None:
            logits = logits - served.adjust
        values, index = torch.softmax(logits, dim=1).topk(k, dim=1)
    return [[{"label": served.labels[int(j)], "probability": round(float(p), 6)} for p, j in zip(vs, ix)]
            for vs, ix in zip(values, index)]


def input_steps(served: Served, seq: str | list[int]) -> list[str]:
    """The symbol read at each step of an input that :func:`encode_request` accepted, as text.

    A string's own characters (stripped, NFC), so that a character mapped to
    the unknown symbol is still shown as typed; an array's symbols decoded
    (the unknown symbol as U+FFFD).
    """
    if served.kind == "residues":
        return list("".join(seq.split()))
    if served.kind == "values":
        from .tasks import userdata

        if isinstance(seq, str):  # what the model read, back in the user's units
            seq = userdata.parse_inputs({**served.meta, "normalize": None}, [seq], 0)[0].tolist()
        return [f"{v:.6g}" if not isinstance(v, list) else ", ".join(f"{u:.6g}" for u in v) for v in
                (row[0] if isinstance(row, list) and len(row) == 1 else row for row in seq)]
    if isinstance(seq, str):
        return list(unicodedata.normalize("NFC", seq.strip()))
    return [served.vocab.decode([s]) for s in seq]


def _r6(value: float) -> float:
    """Six digits for the per-step arrays: what the page and a reader need, in fewer bytes than a float's repr."""
    return round(float(value), 6)


def explain_vectors(model: torch.nn.Module, x: Any, labels: list[str], *, adjust: torch.Tensor | None = None,
                    target: int | None = None, steps: int = 64, top: int = 3, prefixes: bool = True
                    ) -> dict[str, Any]:
    """Explain one classification of a vector input, as :func:`biornn.diagnostics.explain_symbols` a symbol one.

    Parameters
    ----------
    model : VectorClassifier or Ensemble of them
        In eval mode.
    x : ndarray of float32, shape (T, F)
        The encoded input (residue weights, or normalised values).
    labels : list of str
        The K class names.
    adjust : Tensor (K,), optional
        Subtracted from the logits (a constant: it changes no gradient).
    target : int, optional
        The class to explain (default: the predicted one).
    steps : int
        Integrated-gradients intervals.
    top : int
        Classes traced after each step.
    prefixes : bool
        Run the model on every prefix (False for ``pool="split"``, where a prefix has no read-out).

    Returns
    -------
    dict
        ``target``; ``grad_x_input`` and ``integrated_gradients`` (T floats: per step, summed over
        the F features); ``score``, ``score_baseline``, ``ig_sum``, ``completeness_gap``;
        ``probability_after_step``: label -> T floats (empty without ``prefixes``).
    """
    from .diagnostics import integrated_gradients

    xt = torch.as_tensor(x, dtype=torch.float32)  # (T, F)
    T = xt.shape[0]
    shift = adjust.to(xt.dtype) if adjust is not None else torch.zeros(len(labels), dtype=xt.dtype)
    with torch.no_grad():
        probs = torch.softmax(model(xt.unsqueeze(0), None)[0] - shift, dim=0)  # (K,)
    k = int(probs.argmax()) if target is None else target

    def score(batch: torch.Tensor) -> torch.Tensor:  # the (adjusted) logit of class k, (N,)
        return model(batch, None)[:, k] - shift[k]

    # attribution relative to the all-zero input: no residue, or every value at its training mean
    gxi, ig, s_x, s_b = integrated_gradients(score, xt, steps=steps)  # (T, F) each
    ig_sum = float(ig.sum())
    after: dict[str, list[float]] = {}
    if prefixes:
        with torch.no_grad():
            # row t holds steps 0..t, zeros after (never read: its length is t + 1)
            keep = (torch.arange(T).unsqueeze(0) < torch.arange(1, T + 1).unsqueeze(1)).unsqueeze(2)  # (T, T, 1)
            rows = torch.where(keep, xt.unsqueeze(0).expand(T, -1, -1), torch.zeros(()))  # (T, T, F)
            p_after = torch.softmax(model(rows, torch.arange(1, T + 1)) - shift, dim=1)  # (T, K)
        shown = probs.topk(min(top, len(labels))).indices.tolist()
        if k not in shown:
            shown.append(k)
        after = {labels[j]: p_after[:, j].tolist() for j in shown}
    return {"target": labels[k], "grad_x_input": gxi.sum(1).tolist(), "integrated_gradients": ig.sum(1).tolist(),
            "score": s_x, "score_baseline": s_b, "ig_sum": ig_sum, "completeness_gap": abs(ig_sum - (s_x - s_b)),
            "probability_after_step": after}


def explain_work(encoded: list[Any], steps: int) -> int:
    """Symbol steps of the model an explanation of ``encoded`` costs: the sum of T x (steps + 1 + T).

    Per input of T symbols, integrated gradients run the model (forward and
    backward) on ``steps + 1`` points of the path from the all-zero input,
    T steps each, and the probability after each step runs it on the T
    prefixes as one (T, T) batch: T x (steps + 1) + T x T.

    >>> explain_work([[2] * 10, [3] * 5], steps=64)
    1100
    """
    return sum(len(codes) * (steps + 1 + len(codes)) for codes in encoded)


def explain_encoded(served: Served, encoded: list[list[int]], *, top: int = 3, target: str | None = None,
                    steps: int = 64) -> list[dict[str, Any]]:
    """Explain the prediction for each encoded input with :func:`biornn.diagnostics.explain_symbols`.

    Parameters
    ----------
    served : Served
    encoded : list of list of int
        Inputs checked by :func:`encode_request`.
    top : int
        Classes answered, and traced after each step (the target is traced too).
    target : str, optional
        The class whose score is explained (default: each input's predicted class);
        ``ValueError`` if it is not one of the run's classes.
    steps : int
        Integrated-gradients intervals.

    Returns
    -------
    list of dict
        One per input: ``top`` (label, probability), ``target``, ``saliency``
        (``grad_x_input`` and ``integrated_gradients``, one number per step;
        ``score``, ``score_baseline``, ``ig_sum``, ``completeness_gap``), and
        ``probability_after_step`` (label and T probabilities, the model run
        on each prefix; the final top classes in order, then the target).
    """
    from .diagnostics import explain_symbols

    work = explain_work(encoded, steps)
    if work > served.max_explain_work:  # before any pass: one request must not hold the model for minutes
        raise ValueError(f"the explanation would cost {work} symbol steps of the model (T x (steps + 1 + T) per "
                         f"input), more than the limit of {served.max_explain_work}: send fewer or shorter "
                         f"inputs, or fewer steps")
    k = None
    if target is not None:
        if target not in served.labels:
            shown = ", ".join(served.labels[:30]) + (", ..." if len(served.labels) > 30 else "")
            raise ValueError(f"target: {target!r} is not a class of this run ({shown})")
        k = served.labels.index(target)
    tops = predict_encoded(served, encoded, top)
    kk = min(top, len(served.labels))
    out = []
    for codes, ranked in zip(encoded, tops):
        with served.lock:
            if served.kind == "symbols":
                row = explain_symbols(served.model, codes, served.labels, adjust=served.adjust, target=k,
                                      steps=steps, top=kk)
            else:
                row = explain_vectors(served.model, codes, served.labels, adjust=served.adjust, target=k,
                                      steps=steps, top=kk, prefixes=served.pool != "split")
        out.append({
            "top": ranked,
            "target": row["target"],
            "saliency": {
                "grad_x_input": [_r6(v) for v in row["grad_x_input"]],
                "integrated_gradients": [_r6(v) for v in row["integrated_gradients"]],
                # the scalars unrounded: the gap is often below 1e-6
                **{key: float(row[key]) for key in ("score", "score_baseline", "ig_sum", "completeness_gap")},
                "ngram_term": float(row.get("ngram_term", 0.0)),
            },
            "probability_after_step": [{"label": label, "probabilities": [_r6(p) for p in ps]}
                                       for label, ps in row["probability_after_step"].items()],
            "probability_after_step_note": None if row["probability_after_step"] else NO_PREFIX,
        })
    return out


def page_html() -> str:
    """The web page served at ``/``: one self-contained file shipped in the package (``biornn/web``)."""
    from importlib.resources import files

    return files("biornn").joinpath("web", "index.html").read_text(encoding="utf-8")


#: the page loads nothing from anywhere else: inline script and style, requests to this server only
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413, before anything parses it.

    A declared ``Content-Length`` over the limit is refused at once; a body
    without one (chunked) is read up to the limit and replayed to the app.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                too_big = False  # the server itself refuses a malformed length
            if too_big:
                return await self._refuse(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> dict:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)


#: how deep an error response echoes a request's nested arrays and objects
ECHO_DEPTH = 32


def _json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` with what strict JSON cannot carry made printable, for echoing a request back in an error.

    Python's JSON parser accepts ``NaN``, ``Infinity`` and ``1e400`` (inf),
    and ``"\\ud800"`` (a lone surrogate); pydantic's errors quote such an
    input, and the response (``allow_nan=False``, UTF-8) could not be
    written: a 500 instead of the 422.  A non-finite float becomes its
    name as a string, a string with a lone surrogate its escaped form.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'nan', 'inf', '-inf'
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if depth >= ECHO_DEPTH:  # a deeply nested input is not echoed whole (and not recursed into)
        return "..." if isinstance(value, (dict, list, tuple)) else value
    if isinstance(value, dict):
        return {_json_safe(k, depth + 1): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    return value


def _place(loc: Sequence[Any]) -> tuple[Any, ...]:
    """An error's place without ``body`` and the type tags pydantic puts after an index for each member
    of a union (``sequences.0.str``, ``sequences.0.list[int].1.float``): ``("sequences", 0, 1)``."""
    loc = [p for p in loc if p != "body"]
    return tuple(p for k, p in enumerate(loc) if not (isinstance(p, str) and k and isinstance(loc[k - 1], int)))


def _place_text(place: tuple[Any, ...]) -> str:
    """``("sequences", 0, 1)`` -> ``sequences[0][1]``, as the other messages name an input."""
    return (str(place[0]) + "".join(f"[{p}]" for p in place[1:])) if place else "body"


def _shown(value: Any) -> str:
    """What a JSON value is, in a few words (``null``, ``a string``, ``NaN or infinity``, ...)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN or infinity"
    kinds = {type(None): "null", bool: "true or false", str: "a string", list: "an array", dict: "an object",
             int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _error_line(errors: list[dict[str, Any]], expected: str | None = None) -> str:
    """pydantic's errors as one line: ``sequences[1]: give a string, got a number; ...``.

    A malformed body says where (``body: malformed JSON at character 44 (...)``).  An input that fits
    no member of a union (a string, or an array of numbers) gets one message, from the member that
    came nearest (the deepest place: ``sequences[0][1]: Input should be a valid number, got null``),
    not one per member; where every member failed at the input itself, ``expected`` says what an
    input is."""
    body: str | None = None
    found: dict[tuple[Any, ...], tuple[tuple[Any, ...], str, Any]] = {}  # item -> (place, msg, input)
    for err in errors:
        kind, loc = err.get("type"), err.get("loc", ())
        if kind == "json_invalid":
            at = next((p for p in loc if isinstance(p, int)), None)
            body = body or (f"body: malformed JSON{f' at character {at}' if at is not None else ''} "
                            f"({err.get('ctx', {}).get('error', 'cannot parse')})")
            continue
        if kind == "missing" and list(loc) == ["body"]:
            body = body or 'body: empty; send a JSON object such as {"sequences": [...]}'
            continue
        place = _place(loc)
        item = place[:2] if place[:1] == ("sequences",) else place
        if item not in found or len(place) > len(found[item][0]):
            found[item] = (place, err.get("msg", "invalid"), err.get("input"))
    lines = [body] if body else []
    for item, (place, msg, got) in found.items():
        if expected and place == item and item[:1] == ("sequences",) and len(item) == 2:
            lines.append(f"{_place_text(item)}: give {expected}, got {_shown(got)}")
        elif place != item:
            lines.append(f"{_place_text(place)}: {msg}, got {_shown(got)}")
        else:
            lines.append(f"{_place_text(place)}: {msg}")
    more = f" (and {len(lines) - 5} more)" if len(lines) > 5 else ""
    return "; ".join(lines[:5]) + more


def _is_json(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type, parameters ignored."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _body_not_an_object(content_type: str | None, errors: list[dict[str, Any]]) -> str:
    """Why a request body was not a JSON object: the wrong Content-Type, or JSON of another kind."""
    if not _is_json(content_type):
        shown = (content_type or "none").split(";")[0].strip() or "none"
        return (f"body: send a JSON object with the header Content-Type: application/json "
                f"(the request's Content-Type: {shown})")
    got = next((e.get("input") for e in errors if list(e.get("loc", ())) == ["body"]), None)
    kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false",
            type(None): "null"}.get(type(got), "not an object")
    return f"body: a JSON object such as {{\"sequences\": [...]}} is expected, got {kind}"


def _duplicate_key(body: bytes) -> str | None:
    """The first key that a JSON object in ``body`` names twice, or None (also for a body that is not JSON:
    the request's own validation reports that)."""
    twice: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not twice:
                twice.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    return twice[0] if twice else None


def create_app(run: str | os.PathLike | Served, *, max_sequences: int = MAX_SEQUENCES, max_length: int = MAX_LENGTH,
               max_body_bytes: int = MAX_BODY_BYTES, max_explain: int = MAX_EXPLAIN,
               max_explain_work: int = MAX_EXPLAIN_WORK) -> Any:
    """A FastAPI app serving ``run``, loaded once, here (``ValueError`` for a bad run or limit).

    Parameters
    ----------
    run : path or Served
        A classification run directory, or a run already loaded by :func:`load_served`.
    max_sequences, max_length, max_body_bytes, max_explain, max_explain_work : int
        Request limits: inputs per request, characters (or symbols) per
        input, bytes per request body, inputs per ``/explain`` request,
        symbol steps of the model per ``/explain`` request (:func:`explain_work`).

    Returns
    -------
    fastapi.FastAPI
        With ``app.state.served`` the loaded :class:`Served`.
    """
    require("fastapi", "serve")  # a missing extra: one line naming it
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

    from . import __version__

    served = (run if isinstance(run, Served)
              else load_served(run, max_sequences, max_length, max_body_bytes, max_explain, max_explain_work))
    K = len(served.labels)
    Number = StrictFloat | StrictInt
    if served.kind == "symbols":
        Item: Any = StrictStr | list[StrictInt]
        item_text, example, explain_example = "a string or an array of vocabulary indices", ["Dostoevsky", "Nguyen"], \
            ["Dostoevsky"]
    elif served.kind == "residues":
        Item = StrictStr
        item_text = f"a {served.vocab.name} sequence" + (f" of {served.length} residues" if served.length else "")
        example = explain_example = ["ACGT" * ((served.length or 16) // 4) + "ACG"[: (served.length or 16) % 4]]
    else:
        Item = StrictStr | list[Number] | list[list[Number]]
        item_text = ("an array of numbers (one series)" if served.n_features == 1 else
                     f"an array of steps, each an array of {served.n_features} numbers")
        example = explain_example = [[0.0, 0.5, 1.0, 0.5, 0.0] if served.n_features == 1
                                     else [[0.0] * served.n_features] * 3]
    page = page_html()  # read once: a missing file fails here, at start-up, not on the first visit

    class PredictRequest(BaseModel):
        """Inputs to classify: strings, or arrays of the run's vocabulary indices."""

        model_config = ConfigDict(extra="forbid")
        sequences: list[Item] = Field(  # type: ignore[valid-type]
            min_length=1, max_length=served.max_sequences,
            description=f"1..{served.max_sequences} inputs, each {item_text} "
            f"(at most {served.max_length} long)",
            examples=[example])
        top: StrictInt = Field(3, ge=1, le=1000, description=f"classes per input (at most {K} are answered)")
        unknown: Literal["reject", "map"] = Field(
            "reject", description="a character outside the alphabet: an error (reject) or the unknown symbol (map)")

    class ExplainRequest(BaseModel):
        """Inputs to explain: as for /predict, fewer per request, with the explanation's settings."""

        model_config = ConfigDict(extra="forbid")
        sequences: list[Item] = Field(  # type: ignore[valid-type]
            min_length=1, max_length=served.max_explain,
            description=f"1..{served.max_explain} inputs, each {item_text} "
            f"(at most {served.max_length} long)",
            examples=[explain_example])
        top: StrictInt = Field(3, ge=1, le=1000, description=f"classes answered and traced after each step "
                               f"(at most {K})")
        unknown: Literal["reject", "map"] = Field(
            "reject", description="a character outside the alphabet: an error (reject) or the unknown symbol (map)")
        target: StrictStr | None = Field(None, description="the class to explain (default: the predicted one)")
        steps: StrictInt = Field(64, ge=1, le=MAX_EXPLAIN_STEPS, description="integrated-gradients intervals")

    class Ranked(BaseModel):
        label: str
        probability: float

    Echo = str | list[int] | list[float] | list[list[float]]

    class Prediction(BaseModel):
        input: Echo  # type: ignore[valid-type]
        top: list[Ranked]

    class PredictResponse(BaseModel):
        predictions: list[Prediction]

    class Saliency(BaseModel):
        grad_x_input: list[float] = Field(description="gradient x input, one number per input step")
        integrated_gradients: list[float] = Field(description="integrated gradients from the all-zero input, "
                                                  "one number per input step")
        score: float = Field(description="F(x): the target class's (adjusted) logit")
        score_baseline: float = Field(description="F(0): the same at the all-zero input")
        ig_sum: float
        completeness_gap: float = Field(description="|ig_sum - (score - score_baseline)|")
        ngram_term: float = Field(0.0, description="the n-gram part's share of score (names blend: "
                                  "ngram_blend * log q); the same at every point of the path, so the "
                                  "attributions are the recurrent model's; 0 without an n-gram part")

    class Trace(BaseModel):
        label: str
        probabilities: list[float] = Field(description="the class probability having read steps 0..t")

    class Explanation(BaseModel):
        input: Echo  # type: ignore[valid-type]
        steps: list[str] = Field(description="the symbol read at each step (a numeric run: its value(s))")
        top: list[Ranked]
        target: str
        saliency: Saliency
        probability_after_step: list[Trace]
        probability_after_step_note: str | None = Field(
            None, description="why probability_after_step is empty (a model whose read-out has no prefix form)")

    class ExplainResponse(BaseModel):
        explanations: list[Explanation]

    app = FastAPI(title="biornn", version=__version__,
                  description=f"Predictions of the biornn run {served.run.name!r} "
                  f"({served.cfg.task}, {served.cfg.cell}).")
    app.state.served = served
    app.add_middleware(BodyLimit, limit=served.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the inputs echoed cut to ECHO_DEPTH first: a body nested hundreds deep overflowed the encoder's recursion
        errors = _json_safe(jsonable_encoder([{**e, "input": _json_safe(e["input"])} if "input" in e else e
                                              for e in exc.errors()]))
        detail = _error_line(exc.errors(), item_text)  # the inputs as sent: NaN is not the string 'nan'
        if any(e.get("type") == "model_attributes_type" and list(e.get("loc", ())) == ["body"] for e in errors):
            # the body was not read as a JSON object: say why, not only that
            detail = _body_not_an_object(request.headers.get("content-type"), errors)
        return JSONResponse(status_code=422, content={"detail": detail, "errors": errors})

    from starlette.exceptions import HTTPException as StarletteHTTPException
    from fastapi.exception_handlers import http_exception_handler

    @app.exception_handler(StarletteHTTPException)
    async def unparsable(request: Request, exc: StarletteHTTPException) -> Any:
        # FastAPI's "There was an error parsing the body" (400) keeps why in its cause: say it
        cause = exc.__cause__
        if exc.status_code == 400 and cause is not None:
            if isinstance(cause, UnicodeDecodeError):
                why = (f"body: not UTF-8 text (byte {cause.start} is {cause.object[cause.start:cause.start + 1]!r}); "
                       f"send JSON as UTF-8")
            elif isinstance(cause, RecursionError):
                why = "body: JSON nested too deeply to read"
            else:
                why = f"body: cannot be read as JSON ({type(cause).__name__}: {cause})"
            return JSONResponse(status_code=400, content={"detail": why})
        return await http_exception_handler(request, exc)

    async def no_duplicate_keys(request: Request) -> None:
        """422 for a JSON body that names a key twice (json.loads would keep the last one silently)."""
        if _is_json(request.headers.get("content-type")):
            twice = _duplicate_key(await request.body())
            if twice is not None:
                raise HTTPException(status_code=422, detail=f"body: the key {twice!r} appears more than once")

    @app.get("/healthz", summary="liveness: ok once the model is loaded")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model", summary="the run's task, cell, classes and input spec")
    def model() -> dict[str, Any]:
        return model_info(served)

    # HEAD for probes, as GET without the body (outside the schema: one operation per path there)
    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/model", model, methods=["HEAD"], include_in_schema=False)

    @app.post("/predict", response_model=PredictResponse,
              summary="the top classes with probabilities for each input",
              responses={413: {"description": "body too large"}, 422: {"description": "bad input"}})
    def predict(body: PredictRequest, _: None = Depends(no_duplicate_keys)) -> dict[str, Any]:
        try:
            encoded = encode_request(served, body.sequences, body.unknown)
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        tops = predict_encoded(served, encoded, body.top)
        return {"predictions": [{"input": s, "top": t} for s, t in zip(body.sequences, tops)]}

    @app.post("/explain", response_model=ExplainResponse,
              summary="the top classes, the saliency of each input step, and the probability after each step",
              responses={413: {"description": "body too large"}, 422: {"description": "bad input"}})
    def explain(body: ExplainRequest, _: None = Depends(no_duplicate_keys)) -> dict[str, Any]:
        try:
            encoded = encode_request(served, body.sequences, body.unknown)
            rows = explain_encoded(served, encoded, top=body.top, target=body.target, steps=body.steps)
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        return {"explanations": [{"input": s, "steps": input_steps(served, s), **row}
                                 for s, row in zip(body.sequences, rows)]}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"content-security-policy": PAGE_CSP, "cache-control": "no-cache"})

    return app


def serve(run: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, *, max_sequences: int = MAX_SEQUENCES,
          max_length: int = MAX_LENGTH, max_body_bytes: int = MAX_BODY_BYTES, max_explain: int = MAX_EXPLAIN,
          max_explain_work: int = MAX_EXPLAIN_WORK, log_level: str = "info") -> None:
    """Load ``run`` and serve it with uvicorn until interrupted (SIGINT/SIGTERM: a clean shutdown)."""
    uvicorn = require("uvicorn", "serve")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port!r}")
    app = create_app(run, max_sequences=max_sequences, max_length=max_length, max_body_bytes=max_body_bytes,
                     max_explain=max_explain, max_explain_work=max_explain_work)
    check_listen(host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def check_listen(host: str, port: int) -> None:
    """``ValueError`` (one line) where the server could not listen on ``host:port``: a host that does
    not resolve, an address of another machine, a port in use -- which uvicorn would report in
    several log lines and exit 3.  The socket is closed again at once (SO_REUSEADDR, as uvicorn's)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"--host {host}: cannot resolve it ({getattr(e, 'strerror', None) or e})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise ValueError(f"{host}:{port}: cannot listen there ({e.strerror or e})") from None
