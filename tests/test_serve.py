"""biornn serve: every endpoint with FastAPI's test client, every bad input answered 4xx, and the
real server started as a subprocess on 127.0.0.1, asked, and shut down."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from biornn.cli.main import main  # noqa: E402
from biornn.data.registry import DATASETS  # noqa: E402
from biornn.evaluate import predict  # noqa: E402
from biornn.serve import create_app, load_served  # noqa: E402

LANGS = [Path(f.path).stem for f in DATASETS["names"].files if f.path.endswith(".txt")]
TINY = ["hidden_size=8", "embedding_dim=4", "batch_size=32", "epochs=1", "ensemble=1"]
NAMES = ["Dostoevsky", "Nguyen", "Abé", "Li"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained names run (made-up names, one epoch: seconds)."""
    root = tmp_path_factory.mktemp("serve")
    names = root / "data" / "names"
    names.mkdir(parents=True)
    rng = random.Random(0)
    letters = "abcdefghijklmnoprstuvyz"
    for k, lang in enumerate(LANGS):
        end = letters[k % len(letters)] + letters[(3 * k + 1) % len(letters)] + "é" * (k % 2)
        rows = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 5))).title() + end for _ in range(8)}
        (names / f"{lang}.txt").write_text("\n".join(sorted(rows)) + "\n", encoding="utf-8")
    (names / "LICENSE").write_text("made up for tests\n")
    out = root / "run"
    assert main(["train", "names", "--data-dir", str(root / "data"), "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def client(run_dir) -> TestClient:
    return TestClient(create_app(run_dir, max_sequences=8, max_length=40, max_body_bytes=4000))


def test_healthz_model_and_docs(client, run_dir):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/model").json()
    labels = json.loads((run_dir / "config.json").read_text())  # the config, to cross-check the cell
    assert info["task"] == "names" and info["cell"] == labels["cell"]
    assert sorted(info["classes"]) == sorted(LANGS)
    spec = info["input"]
    assert spec["max_sequences"] == 8 and spec["max_length"] == 40 and "é" in spec["alphabet"]
    assert spec["symbols"]["vocab_size"] == len(spec["alphabet"]) + 2
    assert "swagger" in client.get("/docs").text.lower()
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/model", "/healthz"} <= set(schema["paths"])


def test_predict_answers_as_biornn_predict(client, run_dir):
    res = client.post("/predict", json={"sequences": NAMES, "top": 3})
    assert res.status_code == 200
    rows = res.json()["predictions"]
    want = predict(run_dir, NAMES, top=3)
    assert [r["input"] for r in rows] == NAMES
    for got, ref in zip(rows, want):
        assert [t["label"] for t in got["top"]] == [t["label"] for t in ref["top"]]
        for a, b in zip(got["top"], ref["top"]):
            assert abs(a["probability"] - b["probability"]) <= 1e-4
        probs = [t["probability"] for t in got["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1


def test_symbol_arrays_equal_strings(client, run_dir):
    vocab = load_served(run_dir).vocab
    codes = vocab.encode("Nguyen")
    res = client.post("/predict", json={"sequences": [codes, "Nguyen"], "top": 2}).json()["predictions"]
    assert res[0]["input"] == codes and res[0]["top"] == res[1]["top"] and len(res[0]["top"]) == 2


def test_unknown_characters_mapped_on_request(client, run_dir):
    res = client.post("/predict", json={"sequences": ["Ab€"], "unknown": "map"})
    assert res.status_code == 200
    want = predict(run_dir, ["Ab€"])[0]["top"]
    assert [t["label"] for t in res.json()["predictions"][0]["top"]] == [t["label"] for t in want]


@pytest.mark.parametrize(
    "body,needle",
    [
        (b"{", "malformed JSON"),
        (b"", "body"),
        (b'["Smith"]', "body"),
        (b'{"sequences": "Smith"}', "sequences"),
        (b'{"sequences": [1, 2]}', "sequences.0"),
        (b'{"sequences": [["a"]]}', "sequences.0"),
        (b'{"sequences": [true]}', "sequences.0"),
        (b'{"sequences": [[1.5]]}', "sequences.0"),
        (b'{"sequences": []}', "at least 1"),
        (b'{"sequences": [""]}', "sequences[0]: an empty sequence"),
        (b'{"sequences": ["Li", "   "]}', "sequences[1]: an empty sequence"),
        (b'{"sequences": [[]]}', "sequences[0]: an empty sequence"),
        ('{"sequences": ["Ab\u20ac"]}'.encode(), "outside the model's alphabet"),
        ('{"sequences": ["\u20ac\u20ac"], "unknown": "map"}'.encode(), "no character the model was trained on"),
        (b'{"sequences": [[0, 2]]}', "symbol 0 outside"),
        (b'{"sequences": [[2, 99999]]}', "symbol 99999 outside"),
        (b'{"sequences": [[1, 2]]}', "unknown symbol 1"),
        (json.dumps({"sequences": ["Li"] * 9}).encode(), "at most 8"),
        (json.dumps({"sequences": ["a" * 41]}).encode(), "more than the limit of 40"),
        (json.dumps({"sequences": [[2] * 41]}).encode(), "more than the limit of 40"),
        (b'{"sequences": ["Li"], "top": 0}', "top"),
        (b'{"sequences": ["Li"], "top": "3"}', "top"),
        (b'{"sequences": ["Li"], "unknown": "guess"}', "unknown"),
        (b'{"sequences": ["Li"], "colour": "red"}', "colour"),
    ],
)
def test_bad_input_is_4xx_with_a_message(client, body, needle):
    res = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert isinstance(detail, str) and needle in detail and "\n" not in detail
    assert client.get("/healthz").status_code == 200  # the server lives on


def test_oversized_body_is_413(client):
    big = json.dumps({"sequences": ["a" * 3000, "b" * 3000]}).encode()
    res = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert res.status_code == 413 and "larger than 4000 bytes" in res.json()["detail"]

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        yield b'{"sequences": ["'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"]}'

    res = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert res.status_code == 413
    assert client.post("/predict", json={"sequences": ["Li"]}).status_code == 200


def test_wrong_method_and_path(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/nothing").status_code == 404


def test_bad_run_or_limits_refused(tmp_path, run_dir):
    with pytest.raises(ValueError, match="no such run directory"):
        create_app(tmp_path / "missing")
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        create_app(run_dir, max_length=0)


def test_cli_bad_input_and_missing_extra(tmp_path, run_dir, monkeypatch, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run directory" in err
    assert main(["serve", str(run_dir), "--port", "70000"]) == 2
    assert "port must be in 0..65535" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    assert main(["serve", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'biornn[serve]'" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_server_starts_answers_and_stops(run_dir):
    import httpx

    exe = os.path.join(os.path.dirname(sys.executable), "biornn")
    port = _free_port()
    proc = subprocess.Popen([exe, "serve", str(run_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /healthz"
            time.sleep(0.2)
        res = httpx.post(f"{base}/predict", json={"sequences": ["Nguyen", "Li"]}, timeout=30)
        assert res.status_code == 200 and len(res.json()["predictions"]) == 2
        assert httpx.post(f"{base}/predict", content=b"{", timeout=30).status_code == 422
        proc.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down cleanly
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert f"127.0.0.1:{port}" in out and "Traceback" not in out
