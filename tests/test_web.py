"""The web page of ``biornn serve`` end to end: a tiny names run, the real server on 127.0.0.1 as a
subprocess, and headless Chromium (Debian's ``chromium``, driven by playwright) typing a name, pressing
the button and reading what the page drew; then a character outside the alphabet, whose API message
the page must show.  A tiny numeric ``classify`` run (a UCR-format table written here) is served the
same way: an ECG CSV is uploaded through the page's file input, parsed in the browser, and the page
must draw the API's prediction and the saliency over the samples.

Marked ``browser``; ``make test`` runs it (its ``browser`` step installs Debian's chromium when it is
missing). Without playwright or a Chromium binary this test fails, saying what to install: it never
skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from conftest import train_tiny_names_run

from biornn.cli.main import main

pytestmark = pytest.mark.browser

NAME = "Nguyen"
OUTSIDE = "Ab€"  # "€" is in no made-up name below


def chromium_executable() -> str:
    """The Chromium binary to drive: ``$BIORNN_CHROMIUM``, else Debian's ``chromium`` on the PATH.

    Playwright's own browser download (``playwright install``) is not used: it comes from a host that
    CI cannot reach. Fails the test, naming the fix, when there is none.
    """
    exe = os.environ.get("BIORNN_CHROMIUM") or shutil.which("chromium")
    if not exe or not os.access(exe, os.X_OK):
        pytest.fail("the browser test needs Chromium: run `make browser` (it installs Debian's chromium with "
                    "apt-get install -y --no-install-recommends chromium), or set BIORNN_CHROMIUM to a "
                    f"Chromium binary (BIORNN_CHROMIUM={os.environ.get('BIORNN_CHROMIUM')!r}, "
                    f"chromium on PATH: {shutil.which('chromium')!r})", pytrace=False)
    return exe


@pytest.fixture(scope="module")
def sync_playwright():
    """playwright's sync API; fails (not skips) naming the extra when it is not installed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs playwright: pip install 'biornn[web]' (make test installs the dev "
                    "extra, which includes it)", pytrace=False)
    return sync_playwright


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained names run (made-up names, one epoch: seconds), as tests/test_serve.py makes it."""
    root = tmp_path_factory.mktemp("web")
    return train_tiny_names_run(root)


@pytest.fixture(scope="module")
def server(run_dir) -> Iterator[str]:
    """``biornn serve RUN`` on 127.0.0.1 and a free port; its base URL. Stopped with Ctrl-C (SIGINT) after."""
    with serving(run_dir) as base:
        yield base


@contextlib.contextmanager
def serving(run_dir: Path) -> Iterator[str]:
    """``biornn serve RUN`` as a subprocess (:class:`biornn.serve_load.Server`): its base URL while it
    runs; a clean Ctrl-C exit with no traceback in its log is checked after."""
    from biornn.serve_load import Server

    with Server(run_dir, ready_timeout=90) as srv:
        yield srv.base
        code, log = srv.stop(), srv.log()
    assert code == 0 and "Traceback" not in log, log


def test_the_page_explains_a_name_and_shows_api_errors(server, sync_playwright):
    import httpx

    exe = chromium_executable()
    want = httpx.post(f"{server}/explain", json={"sequences": [NAME], "top": 3, "unknown": "reject"},
                      timeout=60).json()["explanations"][0]
    refused = httpx.post(f"{server}/explain", json={"sequences": [OUTSIDE], "top": 3, "unknown": "reject"},
                         timeout=60)
    assert refused.status_code == 422
    detail = refused.json()["detail"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)  # a page that never draws fails in 20 s, not 30
            problems: list[str] = []  # script errors and CSP refusals would show here
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.goto(f"{server}/")

            # the page read GET /model: the task and what to type
            page.locator("#form").wait_for(state="visible")
            assert "task names" in page.locator("#model-summary").inner_text()
            assert page.locator("#inputs-label").inner_text() == "Surnames, one per line"
            assert page.locator("#unsupported").is_hidden()
            assert page.locator("#upload").is_hidden()  # the ECG upload is for numeric runs only

            page.fill("#inputs", NAME)
            page.click("#explain")
            result = page.locator(".result")
            result.wait_for(state="visible")
            assert result.count() == 1 and result.locator("h2").inner_text() == NAME

            # the predicted classes, in the API's order, with its probabilities as bars and text
            rows = result.locator(".class-row")
            assert rows.count() == len(want["top"]) == 3
            for i, ranked in enumerate(want["top"]):
                row = rows.nth(i)
                assert row.locator(".class-label").inner_text() == ranked["label"]
                assert float(row.get_attribute("data-probability")) == ranked["probability"]
                text = row.locator(".class-probability").inner_text()
                assert text.endswith("%") and abs(float(text.rstrip(" %")) - 100 * ranked["probability"]) <= 0.051
                width = row.locator(".bar").evaluate("b => b.style.width")
                assert abs(float(width.rstrip("%")) - 100 * ranked["probability"]) <= 0.01
            assert result.locator(".class-row.target .class-label").inner_text() == want["target"]

            # one coloured span per letter, carrying the API's integrated gradients
            spans = result.locator(".sequence .symbol")
            assert spans.count() == len(NAME)
            assert spans.all_inner_texts() == list(NAME)
            for t, ig in enumerate(want["saliency"]["integrated_gradients"]):
                span = spans.nth(t)
                assert float(span.get_attribute("data-ig")) == ig
                assert span.evaluate("s => s.style.background").startswith("rgb")
            strongest = max(range(len(NAME)), key=lambda t: abs(want["saliency"]["integrated_gradients"][t]))
            assert spans.nth(strongest).evaluate("s => s.style.backgroundColor") != "rgb(255, 255, 255)"
            assert "completeness" in result.locator(".completeness").inner_text()
            # the names default's n-gram part: its share of F is said beside the check
            assert ("n-gram part adds" in result.locator(".completeness").inner_text()) == bool(
                want["saliency"]["ngram_term"])

            # the chart: one line per traced class, one point per step
            lines = result.locator("svg.probability-chart polyline")
            assert lines.count() == len(want["probability_after_step"])
            for i, trace in enumerate(want["probability_after_step"]):
                assert lines.nth(i).get_attribute("data-label") == trace["label"]
                assert len(lines.nth(i).get_attribute("points").split()) == len(NAME)
            assert result.locator(".chart-legend").inner_text().split("\n")[0].strip() == \
                want["probability_after_step"][0]["label"]

            # a character outside the alphabet: the API's one-line message, shown in the page
            page.fill("#inputs", OUTSIDE)
            page.click("#explain")
            error = page.locator("#error")
            error.wait_for(state="visible")
            assert detail in error.inner_text() and "422" in error.inner_text()
            assert page.locator(".result").count() == 0

            # nothing typed: the page says so without asking the server
            page.fill("#inputs", "  \n ")
            page.click("#explain")
            assert page.locator("#error").inner_text() == "Type at least one input."

            # a failed request: the browser logs the 422 itself; nothing else may go wrong
            others = [m for m in problems if "422" not in m]
            assert not others, others
        finally:
            browser.close()


# ---- a numeric run: an ECG CSV uploaded through the page ----

T = 24


def _ucr_lines(n: int, seed: int) -> list[str]:
    """UCR-format lines (label first, comma-separated): a bump early (class 1) or late (class 2)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = []
    for k in range(n):
        label = 1 + k % 2
        x = rng.normal(0, 0.3, T)
        centre = T // 4 if label == 1 else 3 * T // 4
        x[centre - 2:centre + 2] += 2.0
        lines.append(",".join([str(label), *(f"{v:.4f}" for v in x)]))
    return lines


@pytest.fixture(scope="module")
def ecg_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("web-ecg")
    (root / "E_TRAIN.csv").write_text("\n".join(_ucr_lines(40, 0)) + "\n")
    out = root / "run"
    assert main(["train", "classify", "--train", str(root / "E_TRAIN.csv"), "--out", str(out),
                 "hidden_size=4", "batch_size=16", "epochs=2", "threads=1"]) == 0
    return out


def test_the_page_classifies_an_uploaded_ecg_csv(ecg_run, tmp_path, sync_playwright):
    import httpx

    exe = chromium_executable()
    lines = _ucr_lines(2, 7)
    series = [[float(v) for v in line.split(",")[1:]] for line in lines]
    upload = tmp_path / "ecg.csv"
    upload.write_text("\n".join(lines) + "\n")
    one_per_line = tmp_path / "one.csv"  # a header, then one value per line: one series
    one_per_line.write_text("mV\n" + "\n".join(str(v) for v in series[0]) + "\n")
    with serving(ecg_run) as base, sync_playwright() as p:
        want = httpx.post(f"{base}/explain", json={"sequences": series, "top": 2}, timeout=60).json()["explanations"]
        browser = p.chromium.launch(executable_path=exe, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.goto(f"{base}/")
            page.locator("#form").wait_for(state="visible")
            assert "numeric series" in page.locator("#model-summary").inner_text()
            assert page.locator("#upload").is_visible() and page.locator("#map-unknown").is_hidden()
            page.select_option("#top", "2")

            # the UCR file: the label column is dropped, each line one series; the upload submits itself
            page.check("#label-first")
            page.set_input_files("#file", str(upload))
            results = page.locator(".result")
            results.first.wait_for(state="visible")
            assert results.count() == 2
            for n, exp in enumerate(want):
                card = results.nth(n)
                assert card.locator("h2").inner_text() == f"series {n + 1} · {T} samples"
                rows = card.locator(".class-row")
                assert rows.count() == len(exp["top"]) == 2
                for i, ranked in enumerate(exp["top"]):
                    assert rows.nth(i).locator(".class-label").inner_text() == ranked["label"]
                    assert float(rows.nth(i).get_attribute("data-probability")) == ranked["probability"]
                # the saliency strip: one cell per sample carrying the API's integrated gradients, coloured
                cells = card.locator("svg.series-plot rect.saliency")
                assert cells.count() == T
                igs = [float(cells.nth(t).get_attribute("data-ig")) for t in range(T)]
                assert igs == exp["saliency"]["integrated_gradients"]
                strongest = max(range(T), key=lambda t: abs(igs[t]))
                assert cells.nth(strongest).get_attribute("fill") != "rgb(255,255,255)"
                points = card.locator("svg.series-plot polyline.series-line").get_attribute("points").split()
                assert len(points) == T
                lines_drawn = card.locator("svg.probability-chart polyline")
                assert lines_drawn.count() == len(exp["probability_after_step"])

            # one value per line under a header row: one series, the same answer as the API's for it
            page.uncheck("#label-first")
            page.set_input_files("#file", str(one_per_line))
            # (the page's CSP forbids eval, so playwright's wait_for_function cannot run: wait on locators)
            page.locator(".result").nth(1).wait_for(state="detached")
            page.locator(".result").first.wait_for(state="visible")
            only = page.locator(".result")
            assert only.locator("h2").inner_text() == f"series 1 · {T} samples"
            assert only.locator(".class-row .class-label").first.inner_text() == want[0]["top"][0]["label"]

            # more series than one /explain takes (8): the page classifies them all with /predict
            many_lines = _ucr_lines(9, 11)
            many = tmp_path / "many.csv"
            many.write_text("\n".join(many_lines) + "\n")
            many_series = [[float(v) for v in line.split(",")[1:]] for line in many_lines]
            ranked = httpx.post(f"{base}/predict", json={"sequences": many_series, "top": 2},
                                timeout=60).json()["predictions"]
            page.check("#label-first")
            page.set_input_files("#file", str(many))
            cards = page.locator(".result.prediction-only")
            cards.nth(8).wait_for(state="visible")
            assert cards.count() == 9 and page.locator(".series-plot").count() == 0
            for n in (0, 8):
                labels = cards.nth(n).locator(".class-label").all_inner_texts()
                assert labels == [r["label"] for r in ranked[n]["top"]]
            assert "9 series classified" in page.locator("#status").inner_text()

            # a word inside the numbers: the page names the line, and asks the server nothing
            page.fill("#inputs", "0.1, 0.2\n0.3, oops, 0.4")
            page.click("#explain")
            page.locator("#error").wait_for(state="visible")
            assert page.locator("#error").inner_text() == 'Cannot read the series: line 2: "oops" is not a number'
            assert page.locator(".result").count() == 0

            # too long for the server: its one-line 422 is shown
            page.uncheck("#label-first")
            page.fill("#inputs", ", ".join(["0.5"] * 1001))
            page.click("#explain")
            page.locator("#error", has_text="422").wait_for(state="visible")
            assert "sequences[0]: 1001 steps, more than the limit of 1000" in page.locator("#error").inner_text()
            others = [m for m in problems if "422" not in m]
            assert not others, others
        finally:
            browser.close()


def _write_wfdb(folder: Path, name: str, n: int, fmt: str, seed: int, leads: int) -> Path:
    """A WFDB record of 1 or 2 leads, NAME.hea + NAME.dat in ``folder`` (``wfdb.wrsamp``, format ``fmt``): its .hea."""
    import numpy as np
    import wfdb

    rng = np.random.default_rng(seed)
    t = np.arange(n)
    signal = np.stack([np.sin(t / 5.0) + rng.normal(0, 0.1, n), np.cos(t / 7.0)], axis=1)[:, :leads]
    wfdb.wrsamp(name, fs=360, units=["mV"] * leads, sig_name=["MLII", "V5"][:leads], p_signal=signal,
                fmt=[fmt] * leads, write_dir=str(folder))
    return folder / f"{name}.hea"


def test_the_page_classifies_an_uploaded_wfdb_record(ecg_run, tmp_path, sync_playwright):
    """A .hea and its .dat picked together: decoded in the page (16 and 212), first lead, cut to max_length."""
    import httpx

    from biornn.data.ecg import read_wfdb

    exe = chromium_executable()
    long16 = _write_wfdb(tmp_path, "long16", 1200, "16", 3, leads=2)  # longer than the run's limit of 1000 steps
    short212 = _write_wfdb(tmp_path, "short212", 41, "212", 4, leads=1)  # 41 values: a lone sample in 2 bytes
    # the reference decoder's physical values, first lead: what the page must send
    want16 = [float(v) for v in read_wfdb(long16)[:1000, 0]]
    want212 = [float(v) for v in read_wfdb(short212)[:, 0]]
    assert len(want16) == 1000 and len(want212) == 41
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(tmp_path / "short212.dat", bad / "short212.dat")
    header = short212.read_text().splitlines()
    record = header[0].split()
    assert record[3] == "41"
    record[3] = "50"  # the header counts more samples than the .dat holds
    (bad / "short212.hea").write_text("\n".join([" ".join(record), *header[1:]]) + "\n")
    with serving(ecg_run) as base, sync_playwright() as p:
        want = httpx.post(f"{base}/explain", json={"sequences": [want212], "top": 2},
                          timeout=60).json()["explanations"][0]
        ranked16 = httpx.post(f"{base}/predict", json={"sequences": [want16], "top": 2},
                              timeout=60).json()["predictions"][0]["top"]
        browser = p.chromium.launch(executable_path=exe, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.goto(f"{base}/")
            page.locator("#form").wait_for(state="visible")
            page.select_option("#top", "2")
            page.check("#label-first")  # left ticked from a UCR upload: a WFDB record unticks it

            # format 212, one lead of 41 samples: the whole lead, explained (saliency over each sample)
            page.set_input_files("#file", [str(short212), str(tmp_path / "short212.dat")])
            card = page.locator(".result", has_text="series 1 · 41 samples")
            card.wait_for(state="visible")
            assert page.locator(".result").count() == 1 and not page.locator("#label-first").is_checked()
            rows = card.locator(".class-row")
            assert rows.count() == 2
            for i, r in enumerate(want["top"]):
                assert rows.nth(i).locator(".class-label").inner_text() == r["label"]
                assert float(rows.nth(i).get_attribute("data-probability")) == r["probability"]
            cells = card.locator("svg.series-plot rect.saliency")
            assert cells.count() == 41
            igs = [float(cells.nth(t).get_attribute("data-ig")) for t in range(41)]
            assert igs == want["saliency"]["integrated_gradients"]
            assert page.locator("#upload-note").inner_text() == \
                "WFDB record short212: lead 1 of 1, all 41 samples at 360 Hz, in physical units."

            # format 16, 1200 samples: cut to the first 1000 (the server's limit), too long to explain: classified
            page.set_input_files("#file", [str(long16), str(tmp_path / "long16.dat")])
            only = page.locator(".result.prediction-only")
            only.wait_for(state="visible")
            assert page.locator(".result").count() == 1
            assert only.locator("h2").inner_text() == "series 1 · 1000 samples"
            assert only.locator(".class-label").all_inner_texts() == [r["label"] for r in ranked16]
            probs = [float(only.locator(".class-row").nth(i).get_attribute("data-probability")) for i in range(2)]
            assert probs == [r["probability"] for r in ranked16]
            assert "first 1000 samples of 1200" in page.locator("#upload-note").inner_text()
            assert "1 series classified" in page.locator("#status").inner_text()

            # a header counting 50 samples over a .dat of 41: one line, no results, nothing sent
            sent: list[str] = []
            page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
            page.set_input_files("#file", [str(bad / "short212.hea"), str(bad / "short212.dat")])
            page.locator("#error").wait_for(state="visible")
            assert page.locator("#error").inner_text() == (
                "Cannot read the WFDB record: short212.dat: 62 bytes do not hold the 50 samples of 1 signal "
                "that short212.hea describes in format 212")
            assert page.locator(".result").count() == 0 and sent == []

            # a .hea without its .dat: named, nothing sent
            page.set_input_files("#file", [str(short212)])
            page.locator("#error", has_text="pick it together").wait_for(state="visible")
            assert page.locator("#error").inner_text() == (
                "Cannot read the WFDB record: short212.hea: names the signal file short212.dat; "
                "pick it together with the .hea")
            assert sent == []
            assert not problems, problems
        finally:
            browser.close()


def test_the_page_explains_a_splice_sequence(tmp_path, sync_playwright):
    """A DNA run (splice: a VectorClassifier over base weights, pool "split") through the text path."""
    import random

    exe = chromium_executable()
    (tmp_path / "dna").mkdir()
    rng = random.Random(0)
    rows = ["label,instance_name,sequence"] + [
        f"{('EI', 'IE', 'N')[k % 3]},S{k},{''.join(rng.choice('ACGT') for _ in range(60))}" for k in range(45)]
    (tmp_path / "dna" / "splice.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    assert main(["train", "splice", "--data-dir", str(tmp_path), "--out", str(run), "hidden_size=4", "ensemble=1",
                 "epochs=1", "threads=1"]) == 0
    seq = "".join(rng.choice("ACGT") for _ in range(59)) + "n"
    with serving(run) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{base}/")
            page.locator("#form").wait_for(state="visible")
            assert page.locator("#inputs-label").inner_text() == "DNA sequences, one per line"
            assert "exactly 60 bases" in page.locator("#expects").inner_text()
            assert page.locator("#upload").is_hidden() and page.locator("#map-unknown").is_hidden()
            page.fill("#inputs", seq)
            page.click("#explain")
            result = page.locator(".result")
            result.wait_for(state="visible")
            assert result.locator("h2").inner_text() == seq
            assert result.locator(".sequence .symbol").count() == 60
            assert result.locator(".class-row").count() == 3
            # pool "split" has no prefix form: the page says why instead of drawing a chart
            assert "pool 'split'" in result.locator(".note").inner_text()
            assert result.locator("svg.probability-chart").count() == 0
            page.fill("#inputs", "ACGT")
            page.click("#explain")
            page.locator("#error", has_text="422").wait_for(state="visible")
            assert "4 residues; the model reads exactly 60" in page.locator("#error").inner_text()
        finally:
            browser.close()
