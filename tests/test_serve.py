"""biornn serve: every endpoint with FastAPI's test client, every bad input answered 4xx, and the
real server started as a subprocess on 127.0.0.1, asked, and shut down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NAMES_LANGS, free_port, train_tiny_names_run

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from biornn.cli.main import main  # noqa: E402
from biornn.evaluate import predict  # noqa: E402
from biornn.diagnostics import explain_run  # noqa: E402
from biornn.serve import PAGE_CSP, create_app, load_served  # noqa: E402

NAMES = ["Dostoevsky", "Nguyen", "Abé", "Li"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained names run (made-up names, one epoch: seconds)."""
    root = tmp_path_factory.mktemp("serve")
    return train_tiny_names_run(root)


@pytest.fixture(scope="module")
def client(run_dir) -> TestClient:
    return TestClient(create_app(run_dir, max_sequences=8, max_length=40, max_body_bytes=4000, max_explain=3))


def test_healthz_model_and_docs(client, run_dir):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/model").json()
    labels = json.loads((run_dir / "config.json").read_text())  # the config, to cross-check the cell
    assert info["task"] == "names" and info["cell"] == labels["cell"]
    assert info["ngram_blend"] == labels["ngram_blend"] == 0.5  # the names default: blended with n-grams
    assert sorted(info["classes"]) == sorted(NAMES_LANGS)
    spec = info["input"]
    assert spec["max_sequences"] == 8 and spec["max_length"] == 40 and "é" in spec["alphabet"]
    assert spec["max_explain"] == 3 and spec["max_explain_steps"] >= 64
    assert spec["symbols"]["vocab_size"] == len(spec["alphabet"]) + 2
    assert "swagger" in client.get("/docs").text.lower()
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/explain", "/model", "/healthz"} <= set(schema["paths"])


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
        (b'{"sequences": ["Li"],}', "body: malformed JSON at character 21"),
        (b"", "body: empty"),
        (b'["Smith"]', "body"),
        (b'{"sequences": [1]}', "sequences[0]: give a string or an array of vocabulary indices, got a number"),
        (b'{"sequences": [[2, null]]}', "sequences[0][1]: Input should be a valid integer, got null"),
        (b'{"sequences": "Smith"}', "sequences"),
        (b'{"sequences": [1, 2]}', "sequences[0]"),
        (b'{"sequences": [["a"]]}', "sequences[0]"),
        (b'{"sequences": [true]}', "sequences[0]"),
        (b'{"sequences": [[1.5]]}', "sequences[0]"),
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
        # nested hundreds deep (1.2 KB): echoing it back overflowed the recursion, a 500
        (('{"sequences": ["Li"], "x": ' + "[" * 600 + "]" * 600 + "}").encode(), "x: Extra inputs"),
        (('{"sequences": ' + "[" * 600 + '"a"' + "]" * 600 + "}").encode(), "sequences[0]"),
    ],
)
def test_bad_input_is_4xx_with_a_message(client, body, needle):
    res = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert isinstance(detail, str) and needle in detail and "\n" not in detail
    assert client.get("/healthz").status_code == 200  # the server lives on


def test_explain_answers_as_biornn_explain(client, run_dir):
    res = client.post("/explain", json={"sequences": ["Nguyen", "Abé"], "top": 2, "steps": 16})
    assert res.status_code == 200, res.text
    rows = res.json()["explanations"]
    want = explain_run(run_dir, ["Nguyen", "Abé"], steps=16, top=2)
    ranked = client.post("/predict", json={"sequences": ["Nguyen", "Abé"], "top": 2}).json()["predictions"]
    for got, ref, pred in zip(rows, want, ranked):
        assert got["input"] == ref["input"] and got["steps"] == list(ref["input"]) == ref["steps"]
        assert got["top"] == pred["top"] and got["target"] == ref["prediction"] == pred["top"][0]["label"]
        sal, T = got["saliency"], len(ref["steps"])
        for key in ("grad_x_input", "integrated_gradients"):
            assert len(sal[key]) == T
            assert max(abs(a - b) for a, b in zip(sal[key], ref[key])) <= 1e-5
        assert abs(sal["ig_sum"] - (sal["score"] - sal["score_baseline"])) == pytest.approx(
            sal["completeness_gap"], abs=1e-5)
        # the names default's n-gram share of the score: that of `biornn explain`, and a log-probability share
        assert sal["ngram_term"] == pytest.approx(ref["ngram_term"], abs=1e-5) and sal["ngram_term"] < 0
        traces = got["probability_after_step"]
        assert [t["label"] for t in traces] == list(ref["probability_after_step"])  # the final top, in order
        for t in traces:
            assert len(t["probabilities"]) == T and all(0 <= p <= 1 for p in t["probabilities"])
            ref_p = ref["probability_after_step"][t["label"]]
            assert max(abs(a - b) for a, b in zip(t["probabilities"], ref_p)) <= 1e-5
        # after the last step the model has read the whole input: the prediction's probability
        assert traces[0]["probabilities"][-1] == pytest.approx(got["top"][0]["probability"], abs=1e-4)


def test_explain_a_chosen_class_symbols_and_unknown(client, run_dir):
    target = sorted(NAMES_LANGS)[-1]
    res = client.post("/explain", json={"sequences": ["Li"], "top": 1, "target": target, "steps": 8}).json()
    row = res["explanations"][0]
    assert row["target"] == target and target in [t["label"] for t in row["probability_after_step"]]
    codes = load_served(run_dir).vocab.encode("Li")
    by_codes = client.post("/explain", json={"sequences": [codes], "top": 1, "target": target, "steps": 8}).json()
    assert by_codes["explanations"][0]["steps"] == ["L", "i"]
    assert by_codes["explanations"][0]["saliency"] == row["saliency"]
    mapped = client.post("/explain", json={"sequences": ["L€"], "unknown": "map", "steps": 8}).json()
    assert mapped["explanations"][0]["steps"] == ["L", "€"]  # shown as typed, read as the unknown symbol


@pytest.mark.parametrize(
    "body,needle",
    [
        (b"{", "malformed JSON"),
        (b'{"sequences": []}', "at least 1"),
        (json.dumps({"sequences": ["Li"] * 4}).encode(), "at most 3"),
        (b'{"sequences": [""]}', "sequences[0]: an empty sequence"),
        ('{"sequences": ["Ab\u20ac"]}'.encode(), "outside the model's alphabet"),
        (json.dumps({"sequences": ["a" * 41]}).encode(), "more than the limit of 40"),
        (b'{"sequences": [[0, 2]]}', "symbol 0 outside"),
        (b'{"sequences": ["Li"], "target": "Klingon"}', "target: 'Klingon' is not a class"),
        (b'{"sequences": ["Li"], "target": 3}', "target"),
        (b'{"sequences": ["Li"], "steps": 0}', "steps"),
        (b'{"sequences": ["Li"], "steps": 100000}', "steps"),
        (b'{"sequences": ["Li"], "top": 0}', "top"),
        (b'{"sequences": ["Li"], "colour": "red"}', "colour"),
    ],
)
def test_explain_bad_input_is_4xx_with_a_message(client, body, needle):
    res = client.post("/explain", content=body, headers={"content-type": "application/json"})
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert isinstance(detail, str) and needle in detail and "\n" not in detail
    assert client.get("/healthz").status_code == 200


def test_the_page_is_served_self_contained(client):
    res = client.get("/")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    assert res.headers["content-security-policy"] == PAGE_CSP and "default-src 'none'" in PAGE_CSP
    page = res.text
    assert "/explain" in page and "/model" in page and "<script" in page
    # nothing fetched from elsewhere: no remote script, style, font or image
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    assert "src=" not in page.split("<script>")[0]


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


@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_body_that_is_not_a_json_object_says_why(client, path):
    # JSON sent as text/plain: the cause is the header, not the body's content
    res = client.post(path, content=b'{"sequences": ["Li"]}', headers={"content-type": "text/plain"})
    assert res.status_code == 422
    assert res.json()["detail"] == ("body: send a JSON object with the header Content-Type: application/json "
                                    "(the request's Content-Type: text/plain)")
    res = client.post(path, content=b'["Li"]', headers={"content-type": "application/json"})
    assert res.status_code == 422 and res.json()["detail"].endswith("is expected, got an array")
    # a key given twice: json.loads would keep the last one without a word
    res = client.post(path, content=b'{"sequences": ["Li"], "sequences": ["Nguyen"]}',
                      headers={"content-type": "application/json; charset=utf-8"})
    assert res.status_code == 422 and res.json()["detail"] == "body: the key 'sequences' appears more than once"
    res = client.post(path, content=b'{"sequences": ["Li"], "top": 1}', headers={"content-type": "application/json"})
    assert res.status_code == 200


def test_healthz_and_model_answer_head(client):
    import warnings

    for path in ("/healthz", "/model"):
        res = client.head(path)
        assert res.status_code == 200 and res.content == b""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns of a duplicate operation id when HEAD is in the schema
        schema = create_app(client.app.state.served).openapi()
    assert set(schema["paths"]["/healthz"]) == {"get"}


def test_wrong_method_and_path(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/explain").status_code == 405
    assert client.post("/", json={}).status_code == 405
    assert client.get("/nothing").status_code == 404


def test_bad_run_or_limits_refused(tmp_path, run_dir):
    with pytest.raises(ValueError, match="no such run directory"):
        create_app(tmp_path / "missing")
    with pytest.raises(ValueError, match="max_length \\(--max-length\\) must be a positive integer"):
        create_app(run_dir, max_length=0)
    with pytest.raises(ValueError, match="max_explain \\(--max-explain\\) must be a positive integer"):
        create_app(run_dir, max_explain=0)
    # /explain never takes more inputs than any request may hold
    assert create_app(run_dir, max_sequences=2, max_explain=5).state.served.max_explain == 2


def test_unreadable_bodies_say_why(client):
    res = client.post("/predict", content='{"sequences": ["Ngu\xffyen"]}'.encode("latin-1"),
                      headers={"content-type": "application/json"})
    assert res.status_code == 400 and "not UTF-8" in res.json()["detail"], res.text
    roomy = TestClient(create_app(client.app.state.served.run, max_body_bytes=100_000))
    res = roomy.post("/predict", content=b"[" * 30000 + b"]" * 30000, headers={"content-type": "application/json"})
    assert res.status_code == 400 and res.json()["detail"] == "body: JSON nested too deeply to read", res.text
    assert client.get("/nothing").status_code == 404 and client.get("/nothing").json()["detail"] == "Not Found"


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


def test_real_server_starts_answers_and_stops(run_dir):
    import httpx

    exe = os.path.join(os.path.dirname(sys.executable), "biornn")
    port = free_port()
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


# ---- runs of VectorClassifier models: numeric series (classify on a UCR table, an NPZ) and DNA (splice) ----

TINY_VECTOR = ["hidden_size=4", "batch_size=16", "epochs=2", "threads=1"]
SERIES_T = 24


def write_ucr(path: Path, n: int, seed: int, T: int = SERIES_T) -> Path:
    """A UCR-format table (label first, then T values, comma-separated): a bump early (1) or late (2)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = []
    for k in range(n):
        label = 1 + k % 2
        x = rng.normal(0, 0.3, T)
        centre = T // 4 if label == 1 else 3 * T // 4
        x[centre - 2:centre + 2] += 2.0
        lines.append(",".join([str(label), *(f"{v:.5f}" for v in x)]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ecg_run(tmp_path_factory) -> Path:
    """A tiny classify run on a numeric UCR table (one feature per step)."""
    root = tmp_path_factory.mktemp("ecg")
    out = root / "run"
    assert main(["train", "classify", "--train", str(write_ucr(root / "E_TRAIN.csv", 40, 0)),
                 "--test", str(write_ucr(root / "E_TEST.csv", 20, 1)), "--out", str(out), *TINY_VECTOR]) == 0
    return out


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory) -> Path:
    """A tiny classify run on multivariate series (F = 2, variable lengths) from an NPZ archive."""
    import numpy as np

    root = tmp_path_factory.mktemp("npz")
    rng = np.random.default_rng(0)
    n, T = 40, 16
    X = rng.normal(0, 1, (n, T, 2))
    X[:, :, 0] += 50.0  # far from 0: the run's normalisation must be applied
    y = np.array(["up", "down"] * (n // 2))
    np.savez(root / "m.npz", X=X, y=y, lengths=rng.integers(8, T + 1, n))
    out = root / "run"
    assert main(["train", "classify", "--train", str(root / "m.npz"), "--out", str(out), *TINY_VECTOR]) == 0
    return out


@pytest.fixture(scope="module")
def splice_run(tmp_path_factory) -> Path:
    """A tiny splice run (an ensemble of two) on made-up 60-bp sequences."""
    import random

    root = tmp_path_factory.mktemp("splice")
    (root / "dna").mkdir()
    rng = random.Random(0)
    rows = ["label,instance_name,sequence"]
    for k in range(60):
        s = [rng.choice("ACGT") for _ in range(60)]
        s[30:32] = "GT" if k % 3 == 0 else s[30:32]
        rows.append(f"{('EI', 'IE', 'N')[k % 3]},S{k},{''.join(s)}")
    (root / "dna" / "splice.csv").write_text("\n".join(rows) + "\n")
    out = root / "run"
    assert main(["train", "splice", "--data-dir", str(root), "--out", str(out), *TINY_VECTOR, "ensemble=2"]) == 0
    return out


@pytest.fixture(scope="module")
def ecg_client(ecg_run) -> TestClient:
    return TestClient(create_app(ecg_run, max_sequences=4, max_length=30, max_body_bytes=1500, max_explain=2))


def _series(seed: int, T: int = SERIES_T) -> list[float]:
    import numpy as np

    return [round(float(v), 4) for v in np.random.default_rng(seed).normal(0, 1, T)]


def test_numeric_run_model_spec(ecg_client):
    info = ecg_client.get("/model").json()
    assert info["task"] == "classify" and info["model"] == "VectorClassifier" and info["pool"] == "max"
    spec = info["input"]
    assert spec["kinds"] == ["values"] and spec["n_features"] == 1 and spec["normalised"] is True
    assert spec["alphabet"] is None and spec["max_length"] == 30 and spec["max_sequences"] == 4
    assert sorted(info["classes"]) == ["1", "2"]


def test_numeric_predict_answers_as_biornn_predict(ecg_client, ecg_run):
    from biornn.evaluate import load_run

    series = [_series(1), _series(2)]
    res = ecg_client.post("/predict", json={"sequences": series, "top": 2})
    assert res.status_code == 200, res.text
    rows = res.json()["predictions"]
    _, task, model, meta = load_run(ecg_run)
    want = task.predict_rows(model, meta, [json.dumps(s) for s in series], top=2)
    assert [r["input"] for r in rows] == series
    for got, ref in zip(rows, want):
        assert [t["label"] for t in got["top"]] == [t["label"] for t in ref["top"]]
        for a, b in zip(got["top"], ref["top"]):
            assert abs(a["probability"] - b["probability"]) <= 1e-4
    # the same series as a string of numbers and as an array of one-value steps: the same answer
    text = ", ".join(map(str, series[0]))
    again = ecg_client.post("/predict", json={"sequences": [text, [[v] for v in series[0]]], "top": 2}).json()
    assert again["predictions"][0]["top"] == again["predictions"][1]["top"] == rows[0]["top"]


def test_numeric_explain(ecg_client):
    x = _series(3)
    res = ecg_client.post("/explain", json={"sequences": [x], "top": 2, "steps": 32})
    assert res.status_code == 200, res.text
    row = res.json()["explanations"][0]
    ranked = ecg_client.post("/predict", json={"sequences": [x], "top": 2}).json()["predictions"][0]["top"]
    assert row["top"] == ranked and row["target"] == ranked[0]["label"]
    assert row["steps"] == [f"{v:.6g}" for v in x]
    sal = row["saliency"]
    assert len(sal["grad_x_input"]) == len(sal["integrated_gradients"]) == SERIES_T
    assert any(v != 0 for v in sal["integrated_gradients"])
    assert abs(sal["ig_sum"] - (sal["score"] - sal["score_baseline"])) == pytest.approx(
        sal["completeness_gap"], abs=1e-5)
    assert sal["ngram_term"] == 0.0  # no n-gram part here
    # pool="max" has a prefix form: one probability per step, and after the last the prediction's
    traces = row["probability_after_step"]
    assert row["probability_after_step_note"] is None and [t["label"] for t in traces] == [r["label"] for r in ranked]
    for t in traces:
        assert len(t["probabilities"]) == SERIES_T and all(0 <= p <= 1 for p in t["probabilities"])
    assert traces[0]["probabilities"][-1] == pytest.approx(ranked[0]["probability"], abs=1e-4)
    other = [c for c in ("1", "2") if c != row["target"]][0]
    chosen = ecg_client.post("/explain", json={"sequences": [x], "target": other, "steps": 8}).json()
    assert chosen["explanations"][0]["target"] == other


@pytest.mark.parametrize(
    "body,needle",
    [
        ('{"sequences": [[1.0, NaN, 2.0]]}', "sequences[0]: step 2 is NaN or infinite"),
        ('{"sequences": [[1.0, 2.0], [Infinity]]}', "sequences[1]: step 1 is NaN or infinite"),
        ('{"sequences": [[1e400]]}', "NaN or infinite"),
        ('{"sequences": [[]]}', "sequences[0]: an empty series"),
        ('{"sequences": [""]}', "sequences[0]: an empty series"),
        ('{"sequences": ["  "]}', "sequences[0]: an empty series"),
        ('{"sequences": [[1.0, null]]}', "sequences[0][1]: Input should be a valid number, got null"),
        ('{"sequences": ["1, x, 3"]}', "sequences[0]: not a series of numbers"),
        ('{"sequences": ["[1, NaN]"]}', "sequences[0]: NaN or infinite"),
        ('{"sequences": [[[1.0, 2.0], [3.0, 4.0]]]}', "sequences[0]: a series of shape (2, 2); the model reads (T, 1)"),
        ('{"sequences": [[[1.0], [2.0, 3.0]]]}', "sequences[0]: steps of different widths"),
        (json.dumps({"sequences": [[0.5] * 31]}), "sequences[0]: 31 steps, more than the limit of 30"),
        (json.dumps({"sequences": [[0.5] * 3] * 5}), "at most 4"),
        ('{"sequences": [[true, false]]}', "sequences[0]"),
        ('{"sequences": [["1", "2"]]}', "sequences[0]"),
        ('{"sequences": [{"values": [1]}]}', "sequences[0]"),
        ('{"sequences": [[1e300]]}', "beyond float32"),
        # valid JSON that was a 500: an integer no float holds
        ('{"sequences": [[' + "9" * 400 + ', 0.2]]}', "sequences[0]: a number too large for a float"),
    ],
)
def test_numeric_bad_input_is_422_with_one_line(ecg_client, body, needle):
    for path in ("/predict", "/explain"):
        if path == "/explain" and "at most 4" in needle:
            continue  # /explain's own count limit (2) speaks first
        res = ecg_client.post(path, content=body.encode(), headers={"content-type": "application/json"})
        assert res.status_code == 422, res.text
        detail = res.json()["detail"]
        assert isinstance(detail, str) and needle in detail and "\n" not in detail, detail
    assert ecg_client.get("/healthz").status_code == 200


def test_numeric_body_limit_and_explain_count(ecg_client):
    big = json.dumps({"sequences": [[0.123456789] * 30] * 4})
    assert len(big) > 1500  # 4 series of 30 values: within every other limit
    res = ecg_client.post("/predict", content=big.encode(), headers={"content-type": "application/json"})
    assert res.status_code == 413
    res = ecg_client.post("/explain", json={"sequences": [_series(1)] * 3})
    assert res.status_code == 422 and "at most 2" in res.json()["detail"]



def test_numeric_explain_work_is_bounded(ecg_run):
    # 24 samples at 64 steps cost 24 x (64 + 1 + 24) = 2136 steps of the model: over a limit of 2000
    client = TestClient(create_app(ecg_run, max_explain_work=2000))
    res = client.post("/explain", json={"sequences": [_series(1)], "steps": 64})
    assert res.status_code == 422 and "cost 2136 symbol steps" in res.json()["detail"]
    assert client.post("/explain", json={"sequences": [_series(1)], "steps": 50}).status_code == 200


def test_multivariate_series(npz_run):
    from biornn.evaluate import load_run

    client = TestClient(create_app(npz_run))
    assert client.get("/model").json()["input"]["n_features"] == 2
    steps = [[50.0 + 0.1 * t, (-1) ** t * 0.5] for t in range(12)]
    res = client.post("/predict", json={"sequences": [steps], "top": 2})
    assert res.status_code == 200, res.text
    _, task, model, meta = load_run(npz_run)
    want = task.predict_rows(model, meta, [json.dumps(steps)], top=2)[0]["top"]
    got = res.json()["predictions"][0]["top"]
    assert [t["label"] for t in got] == [t["label"] for t in want]
    assert abs(got[0]["probability"] - want[0]["probability"]) <= 1e-4
    exp = client.post("/explain", json={"sequences": [steps], "steps": 8}).json()["explanations"][0]
    assert len(exp["saliency"]["integrated_gradients"]) == 12 and exp["steps"][0] == "50, 0.5"
    for body, needle in (({"sequences": [[1.0, 2.0, 3.0]]}, "shape (3,); the model reads (T, 2)"),
                         ({"sequences": [[[1.0, 2.0, 3.0]]]}, "shape (1, 3)")):
        res = client.post("/predict", json=body)
        assert res.status_code == 422 and needle in res.json()["detail"]


def test_splice_run_served(splice_run):
    client = TestClient(create_app(splice_run))
    info = client.get("/model").json()
    spec = info["input"]
    assert spec["kinds"] == ["string"] and spec["residues"] == "DNA" and spec["length"] == 60
    assert spec["alphabet"].startswith("ACGT") and "N" in spec["alphabet"] and info["pool"] == "split"
    seq = ("ACGT" * 15)[:28] + "AGGTAA" + ("TTGCA" * 6)[:26]
    assert len(seq) == 60
    res = client.post("/predict", json={"sequences": [seq, seq.lower(), seq[:20] + "N" + seq[21:]], "top": 3})
    assert res.status_code == 200, res.text
    rows = res.json()["predictions"]
    want = predict(splice_run, [seq], top=3)[0]["top"]
    assert [t["label"] for t in rows[0]["top"]] == [t["label"] for t in want]
    assert abs(rows[0]["top"][0]["probability"] - want[0]["probability"]) <= 1e-4
    assert rows[1]["top"] == rows[0]["top"]  # lower case is the same bases
    exp = client.post("/explain", json={"sequences": [seq], "steps": 8}).json()["explanations"][0]
    assert exp["steps"] == list(seq) and len(exp["saliency"]["integrated_gradients"]) == 60
    # pool="split" reads the middle of the whole window: no prefix form, and the answer says why
    assert exp["probability_after_step"] == [] and "split" in exp["probability_after_step_note"]
    for body, needle in (({"sequences": ["ACGT"]}, "4 residues; the model reads exactly 60"),
                         ({"sequences": [seq[:59] + "X"]}, "character 'X' at position 60 is not in the DNA"),
                         ({"sequences": [[1, 2, 3]]}, "sequences[0]"),
                         ({"sequences": [" "]}, "an empty sequence")):
        for path in ("/predict", "/explain"):
            res = client.post(path, json=body)
            assert res.status_code == 422 and needle in res.json()["detail"], res.text

