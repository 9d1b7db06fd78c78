"""Serve a run's model over HTTP: ``biornn serve RUN`` (FastAPI + uvicorn).

:func:`create_app` loads the run once and returns a FastAPI app:

``POST /predict``
    ``{"sequences": ["Dostoevsky", [5, 9, 2]], "top": 3, "unknown": "reject"}``:
    several inputs per request, each a string or an array of the run's
    vocabulary indices (2..V-1 for its symbols, 1 for "unknown"; what an
    exported file takes, see ``GET /model``).  Answers
    ``{"predictions": [{"input": ..., "top": [{"label", "probability"}, ...]}, ...]}``,
    one per input in order, the numbers of ``biornn predict``.
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

The loaded model is :class:`Served` in ``app.state.served``: a later page at
``/`` or an ``/explain`` endpoint (:func:`biornn.diagnostics.explain_symbols`)
adds a route that reads it, without loading the run again.
"""

# no `from __future__ import annotations`: FastAPI reads the request model's annotation at run time
import json
import os
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .export import load_classifier_run, require

#: defaults of the request limits (each an argument of create_app and an option of biornn serve)
MAX_SEQUENCES = 256
MAX_LENGTH = 1000
MAX_BODY_BYTES = 1_000_000


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
    # one forward pass at a time: torch already uses every core for one batch
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def load_served(run: str | os.PathLike, max_sequences: int = MAX_SEQUENCES, max_length: int = MAX_LENGTH,
                max_body_bytes: int = MAX_BODY_BYTES) -> Served:
    """Load a classification run for serving; ``ValueError`` naming the run or the limit that is wrong."""
    for name, value in (("max_sequences", max_sequences), ("max_length", max_length),
                        ("max_body_bytes", max_body_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    cfg, task, model, meta = load_classifier_run(run)
    adjust = cfg.logit_adjustment * torch.tensor(meta["log_prior"]) if cfg.logit_adjustment else None
    return Served(Path(run), cfg, task, model, meta, list(meta["labels"]), meta["vocab_obj"], adjust,
                  max_sequences, max_length, max_body_bytes)


def model_info(served: Served) -> dict[str, Any]:
    """What ``GET /model`` answers: the run's task, cell, classes and input spec."""
    from . import __version__

    cfg, V = served.cfg, len(served.vocab)
    return {
        "run": served.run.name, "task": cfg.task, "cell": cfg.cell, "classes": served.labels,
        "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers, "bidirectional": cfg.bidirectional,
        "ensemble": cfg.ensemble, "logit_adjustment": cfg.logit_adjustment, "biornn_version": __version__,
        "input": {
            "kinds": ["string", "symbols"],
            "alphabet": "".join(served.vocab.symbols),
            "normalisation": "NFC",
            "symbols": {"padding": 0, "unknown": 1, "first": 2, "vocab_size": V},
            "max_sequences": served.max_sequences, "max_length": served.max_length,
            "max_body_bytes": served.max_body_bytes,
        },
    }


def encode_request(served: Served, sequences: list[str | list[int]], unknown: str = "reject") -> list[list[int]]:
    """Check and encode each input; ``ValueError`` naming the first bad one (``sequences[i]: ...``).

    Strings are stripped and NFC-normalised as ``biornn predict`` does;
    arrays are taken as vocabulary indices, each in 1..V-1.
    """
    V, out = len(served.vocab), []
    for i, seq in enumerate(sequences):
        where = f"sequences[{i}]"
        if isinstance(seq, str):
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

    k = min(top, len(served.labels))
    x, lengths = pad_batch(encoded)  # (B, T), (B,)
    with served.lock, torch.no_grad():
        logits = served.model(x, lengths)  # (B, K)
        if served.adjust is not None:
            logits = logits - served.adjust
        values, index = torch.softmax(logits, dim=1).topk(k, dim=1)
    return [[{"label": served.labels[int(j)], "probability": round(float(p), 6)} for p, j in zip(vs, ix)]
            for vs, ix in zip(values, index)]


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


def _error_line(errors: list[dict[str, Any]]) -> str:
    """pydantic's errors as one line: ``sequences.1: Input should be a valid string; ...``."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            msg = f"malformed JSON ({err.get('ctx', {}).get('error', 'cannot parse')})"
        parts.append(f"{loc}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def create_app(run: str | os.PathLike | Served, *, max_sequences: int = MAX_SEQUENCES, max_length: int = MAX_LENGTH,
               max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """A FastAPI app serving ``run``, loaded once, here (``ValueError`` for a bad run or limit).

    Parameters
    ----------
    run : path or Served
        A classification run directory, or a run already loaded by :func:`load_served`.
    max_sequences, max_length, max_body_bytes : int
        Request limits: inputs per request, characters (or symbols) per
        input, bytes per request body.

    Returns
    -------
    fastapi.FastAPI
        With ``app.state.served`` the loaded :class:`Served`.
    """
    require("fastapi", "serve")  # a missing extra: one line naming it
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

    from . import __version__

    served = run if isinstance(run, Served) else load_served(run, max_sequences, max_length, max_body_bytes)
    K = len(served.labels)

    class PredictRequest(BaseModel):
        """Inputs to classify: strings, or arrays of the run's vocabulary indices."""

        model_config = ConfigDict(extra="forbid")
        sequences: list[StrictStr | list[StrictInt]] = Field(
            min_length=1, max_length=served.max_sequences,
            description=f"1..{served.max_sequences} inputs, each a string or an array of vocabulary indices "
            f"(at most {served.max_length} long)",
            examples=[["Dostoevsky", "Nguyen"]])
        top: StrictInt = Field(3, ge=1, le=1000, description=f"classes per input (at most {K} are answered)")
        unknown: Literal["reject", "map"] = Field(
            "reject", description="a character outside the alphabet: an error (reject) or the unknown symbol (map)")

    class Ranked(BaseModel):
        label: str
        probability: float

    class Prediction(BaseModel):
        input: str | list[int]
        top: list[Ranked]

    class PredictResponse(BaseModel):
        predictions: list[Prediction]

    app = FastAPI(title="biornn", version=__version__,
                  description=f"Predictions of the biornn run {served.run.name!r} "
                  f"({served.cfg.task}, {served.cfg.cell}).")
    app.state.served = served
    app.add_middleware(BodyLimit, limit=served.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        return JSONResponse(status_code=422, content={"detail": _error_line(errors),
                                                      "errors": jsonable_encoder(errors)})

    @app.get("/healthz", summary="liveness: ok once the model is loaded")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model", summary="the run's task, cell, classes and input spec")
    def model() -> dict[str, Any]:
        return model_info(served)

    @app.post("/predict", response_model=PredictResponse,
              summary="the top classes with probabilities for each input",
              responses={413: {"description": "body too large"}, 422: {"description": "bad input"}})
    def predict(body: PredictRequest) -> dict[str, Any]:
        try:
            encoded = encode_request(served, body.sequences, body.unknown)
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        tops = predict_encoded(served, encoded, body.top)
        return {"predictions": [{"input": s, "top": t} for s, t in zip(body.sequences, tops)]}

    return app


def serve(run: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, *, max_sequences: int = MAX_SEQUENCES,
          max_length: int = MAX_LENGTH, max_body_bytes: int = MAX_BODY_BYTES, log_level: str = "info") -> None:
    """Load ``run`` and serve it with uvicorn until interrupted (SIGINT/SIGTERM: a clean shutdown)."""
    uvicorn = require("uvicorn", "serve")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port!r}")
    app = create_app(run, max_sequences=max_sequences, max_length=max_length, max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
