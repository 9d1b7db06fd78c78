"""The service under load: ``biornn serve RUN`` on 127.0.0.1, many requests from concurrent clients.

The harness behind ``benchmarks/serve_load.py`` (the full 10,000-request
measurement) and ``tests/test_serve_load.py`` (a short run, ``-m load``).
It lives in the package, not in the benchmark, so that both import it the
ordinary way.

:func:`load_test` starts the real server as a subprocess (the console
script, on a free port of 127.0.0.1), reads the run's input spec from
``GET /model``, builds a seeded mix of good requests (``/predict`` with
names, ``/explain``, ``/healthz``, ``/model``) and malformed ones (invalid
JSON, wrong types, empty inputs, huge inputs, unknown fields, wrong methods,
unknown paths, wrong content types), sends a warm-up and then the measured
requests from ``concurrency`` client threads (one keep-alive
``httpx.Client`` each), checks every answer, and returns a report:
requests per second, status counts, 5xx, transport errors (a dropped
connection, a timeout), latency percentiles per kind of request, and the
server's resident memory (``VmRSS`` of ``/proc/PID/status``) at start,
after the warm-up, at its peak and at the end.

An answer is *as expected* when a good request gets 200 with the answer's
shape (one prediction per input, ``top`` classes each) and a malformed one
gets its 4xx (400, 404, 405, 413 or 422) with a JSON object whose
``detail`` is one line of text.

>>> percentile([1.0, 2.0, 3.0, 4.0], 50)
2.5
>>> probe = bad_probes({"max_body_bytes": 100, "max_length": 5, "max_sequences": 2, "max_explain": 1})[0]
>>> probe.kind, probe.expect
('bad-json', (422,))
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

#: the good kinds of request and their share of the mix; the rest (BAD_SHARE) is malformed
GOOD_WEIGHTS = {"predict": 0.45, "explain": 0.05, "healthz": 0.12, "model": 0.08}
BAD_SHARE = 0.30
#: integrated-gradients intervals of the good /explain requests: an explanation of a name in milliseconds
EXPLAIN_STEPS = 16


@dataclass(frozen=True)
class Probe:
    """One request of the mix and the answer it must get.

    ``kind`` groups the latency figures (``predict``, ``explain``, ``healthz``,
    ``model``, or ``bad-...`` for the malformed ones); ``expect`` is the
    tuple of acceptable statuses; ``chunked`` sends the body without a
    ``Content-Length`` (``Transfer-Encoding: chunked``).
    """

    kind: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = "application/json"
    expect: tuple[int, ...] = (200,)
    chunked: bool = False
    n_inputs: int = 0  # good /predict and /explain: inputs sent, answers expected
    top: int = 0

    @property
    def good(self) -> bool:
        return self.expect == (200,)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the kernel's choice; closed again at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB, from ``VmRSS`` in ``/proc/PID/status`` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # the kernel writes kB
    raise ValueError(f"/proc/{pid}/status: no VmRSS line")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile, linear between the closest ranks (NumPy's default), of a non-empty list."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def bad_probes(spec: dict[str, Any]) -> list[Probe]:
    """The malformed requests, each with the 4xx it must get, for a server with the limits in ``spec``.

    Parameters
    ----------
    spec : dict
        ``GET /model``'s ``input``: ``max_body_bytes``, ``max_length``,
        ``max_sequences``, ``max_explain``, and where the server has them
        ``max_explain_steps`` and ``max_explain_work``.
    """
    body_limit, length, n_max = spec["max_body_bytes"], spec["max_length"], spec["max_sequences"]
    over = b'{"sequences": ["' + b"a" * (body_limit + 1000) + b'"]}'  # over the byte limit
    nested_depth = max(1, min(body_limit // 2 - 8, 100_000))  # deeper than the parser's recursion limit
    # an /explain inside every other limit whose work (T x (steps + 1 + T) per input) is over the budget;
    # none where the server's budget covers even the longest inputs (it would hold the model for minutes)
    explain_over_budget = []
    steps, longest = spec.get("max_explain_steps", 256), [[2] * length] * spec["max_explain"]
    if "max_explain_work" in spec and length * (steps + 1 + length) * len(longest) > spec["max_explain_work"]:
        explain_over_budget.append(Probe("bad-huge", "POST", "/explain", _dumps({"sequences": longest, "steps": steps}),
                                         expect=(413, 422)))
    return [
        # invalid JSON
        Probe("bad-json", "POST", "/predict", b"{", expect=(422,)),
        Probe("bad-json", "POST", "/predict", b'{"sequences": ["Li",', expect=(422,)),
        Probe("bad-json", "POST", "/explain", b"{'sequences': ['Li']}", expect=(422,)),
        Probe("bad-json", "POST", "/predict", b'\xff\xfe{"sequences"', expect=(400, 422)),  # not UTF-8
        Probe("bad-json", "POST", "/predict", b"[" * nested_depth, expect=(400, 422)),  # nesting too deep
        # wrong types
        Probe("bad-type", "POST", "/predict", b'{"sequences": "Smith"}', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'{"sequences": [1, 2]}', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'{"sequences": [[1.5]]}', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'{"sequences": [true]}', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'{"sequences": ["Li"], "top": "3"}', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'{"sequences": ["Li"], "top": NaN}', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'{"sequences": [[2, Infinity]]}', expect=(422,)),
        Probe("bad-type", "POST", "/explain", b'{"sequences": ["Li"], "steps": 1e400}', expect=(422,)),
        Probe("bad-type", "POST", "/explain", b'{"sequences": ["Li"], "target": 3}', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'["Li"]', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'{"sequences": ["Li\\ud800"], "unknown": "map"}', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'{"sequences": [[0, 2]]}', expect=(422,)),
        Probe("bad-type", "POST", "/predict", b'{"sequences": ["Li"], "unknown": "guess"}', expect=(422,)),
        Probe("bad-type", "POST", "/explain", b'{"sequences": ["Li"], "target": "Klingon"}', expect=(422,)),
        # empty inputs
        Probe("bad-empty", "POST", "/predict", b"", expect=(422,)),
        Probe("bad-empty", "POST", "/predict", b"{}", expect=(422,)),
        Probe("bad-empty", "POST", "/predict", b'{"sequences": []}', expect=(422,)),
        Probe("bad-empty", "POST", "/predict", b'{"sequences": [""]}', expect=(422,)),
        Probe("bad-empty", "POST", "/predict", b'{"sequences": ["Li", "   "]}', expect=(422,)),
        Probe("bad-empty", "POST", "/explain", b'{"sequences": [[]]}', expect=(422,)),
        # huge inputs
        Probe("bad-huge", "POST", "/predict", over, expect=(413,)),
        Probe("bad-huge", "POST", "/predict", over, expect=(413,), chunked=True),
        Probe("bad-huge", "POST", "/predict", _dumps({"sequences": ["a" * (length + 1)]}), expect=(422,)),
        Probe("bad-huge", "POST", "/predict", _dumps({"sequences": [[2] * (length + 1)]}), expect=(422,)),
        Probe("bad-huge", "POST", "/predict", _dumps({"sequences": ["Li"] * (n_max + 1)}), expect=(413, 422)),
        Probe("bad-huge", "POST", "/explain", _dumps({"sequences": ["Li"] * (spec["max_explain"] + 1)}),
              expect=(413, 422)),
        Probe("bad-huge", "POST", "/predict", b'{"sequences": ["Li"], "top": 100000000000000000000000}',
              expect=(422,)),
        *explain_over_budget,
        # unknown fields
        Probe("bad-field", "POST", "/predict", b'{"sequences": ["Li"], "colour": "red"}', expect=(422,)),
        Probe("bad-field", "POST", "/explain", b'{"sequences": ["Li"], "sequence": "Li"}', expect=(422,)),
        # wrong methods
        Probe("bad-method", "GET", "/predict", None, None, expect=(405,)),
        Probe("bad-method", "PUT", "/predict", b'{"sequences": ["Li"]}', expect=(405,)),
        Probe("bad-method", "DELETE", "/model", None, None, expect=(405,)),
        Probe("bad-method", "POST", "/healthz", b"{}", expect=(405,)),
        Probe("bad-method", "PATCH", "/explain", b"{}", expect=(405,)),
        # unknown paths
        Probe("bad-path", "GET", "/nothing", None, None, expect=(404,)),
        Probe("bad-path", "POST", "/predict/extra", b'{"sequences": ["Li"]}', expect=(404,)),
        Probe("bad-path", "GET", "/model.json", None, None, expect=(404,)),
        # wrong content types
        Probe("bad-content-type", "POST", "/predict", b'{"sequences": ["Li"]}', "text/plain", expect=(422,)),
        Probe("bad-content-type", "POST", "/predict", b"sequences=Li", "application/x-www-form-urlencoded",
              expect=(422,)),
        Probe("bad-content-type", "POST", "/explain", b'{"sequences": ["Li"]}', "application/octet-stream",
              expect=(422,)),
    ]


def _random_name(rng: random.Random, upper: str, lower: str, lo: int = 2, hi: int = 12) -> str:
    """A made-up name of the run's own letters (capital first where it has capitals), unseen in training."""
    n = rng.randint(lo, hi)
    return rng.choice(upper or lower) + "".join(rng.choice(lower) for _ in range(n - 1))


def build_mix(info: dict[str, Any], n: int, seed: int = 0) -> list[Probe]:
    """``n`` requests drawn with ``seed``: good ones in the shares of GOOD_WEIGHTS, BAD_SHARE malformed.

    Good ``/predict`` requests carry 1..8 names (a fifth of them as arrays
    of vocabulary indices); good ``/explain`` requests one short name.
    """
    rng = random.Random(seed)
    spec = info["input"]
    alphabet = spec["alphabet"]
    # every character drawn from the alphabet itself: a good request is never refused for its letters
    lower = "".join(ch for ch in alphabet if ch.isalpha() and ch.islower()) or alphabet.strip() or alphabet
    upper = "".join(ch for ch in alphabet if ch.isalpha() and ch.isupper())
    index = {ch: i + spec["symbols"]["first"] for i, ch in enumerate(alphabet)}  # the run's vocabulary indices
    K = len(info["classes"])
    bad = bad_probes(spec)
    kinds = list(GOOD_WEIGHTS) + ["bad"]
    weights = list(GOOD_WEIGHTS.values()) + [BAD_SHARE]
    mix = []
    for kind in rng.choices(kinds, weights, k=n):
        if kind == "bad":
            mix.append(rng.choice(bad))
        elif kind in ("healthz", "model"):
            mix.append(Probe(kind, "GET", f"/{kind}", None, None))
        else:
            count = rng.randint(1, min(8, spec["max_sequences"])) if kind == "predict" else 1
            hi = min(12, spec["max_length"]) if kind == "predict" else min(8, spec["max_length"])
            names = [_random_name(rng, upper, lower, min(2, hi), hi) for _ in range(count)]
            sequences = [[index[ch] for ch in s] if rng.random() < 0.2 else s
                         for s in names]
            top = rng.randint(1, 5)
            body = {"sequences": sequences, "top": top}
            if kind == "explain":
                body["steps"] = EXPLAIN_STEPS
            mix.append(Probe(kind, "POST", f"/{kind}", _dumps(body), n_inputs=count, top=min(top, K)))
    return mix


def check_answer(probe: Probe, status: int, content: bytes) -> str | None:
    """``None`` if the answer is the one ``probe`` must get, else one line saying what is wrong."""
    if status not in probe.expect:
        return f"status {status}, expected {'/'.join(map(str, probe.expect))}"
    try:
        answer = json.loads(content)
    except ValueError:
        return "the body is not JSON"
    if not probe.good:
        detail = answer.get("detail") if isinstance(answer, dict) else None
        if not isinstance(detail, str) or not detail or "\n" in detail:
            return "no one-line 'detail' in the error body"
        return None
    if probe.kind == "healthz":
        return None if answer == {"status": "ok"} else "healthz is not {'status': 'ok'}"
    if probe.kind == "model":
        return None if isinstance(answer, dict) and answer.get("classes") else "no classes in /model"
    rows = answer.get("predictions" if probe.kind == "predict" else "explanations")
    if not isinstance(rows, list) or len(rows) != probe.n_inputs:
        return f"{probe.n_inputs} inputs sent, {len(rows) if isinstance(rows, list) else 'no'} answers"
    if any(len(row["top"]) != probe.top for row in rows):
        return f"not {probe.top} classes per input"
    return None


class Server:
    """``biornn serve RUN`` as a subprocess on 127.0.0.1, its log in a file; a context manager.

    Parameters
    ----------
    run : path
        A classification run directory.
    args : list of str
        More options of ``biornn serve`` (the request limits).
    torch_threads : int, optional
        ``OMP_NUM_THREADS`` of the server (default: torch's own choice).
    ready_timeout : float
        Seconds to wait for ``GET /healthz`` to answer 200.
    """

    def __init__(self, run: str | os.PathLike, args: list[str] | None = None, torch_threads: int | None = None,
                 ready_timeout: float = 120.0) -> None:
        self.run, self.args, self.ready_timeout = Path(run), list(args or []), ready_timeout
        self.env = dict(os.environ)
        if torch_threads is not None:
            self.env["OMP_NUM_THREADS"] = str(torch_threads)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def command(self) -> list[str]:
        exe = Path(sys.executable).with_name("biornn")  # the console script next to this interpreter
        head = [str(exe)] if exe.exists() else [sys.executable, "-m", "biornn"]
        return [*head, "serve", str(self.run), "--host", "127.0.0.1", "--port", str(self.port), *self.args]

    def __enter__(self) -> "Server":
        import httpx

        # a file, not a pipe: thousands of access-log lines would fill a pipe nobody reads and stall the server
        self._log = tempfile.NamedTemporaryFile("w+", prefix="biornn-serve-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            problem = None
            if self.proc.poll() is not None:
                problem = f"biornn serve exited with {self.proc.returncode}: {self.log()[-2000:]}"
            else:
                try:
                    if httpx.get(f"{self.base}/healthz", timeout=5).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    problem = f"biornn serve did not answer /healthz within {self.ready_timeout:.0f} s"
            if problem:
                self.__exit__(None, None, None)  # stop it, remove the log: nothing left behind
                raise RuntimeError(problem)
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGINT (Ctrl-C: uvicorn's clean shutdown), SIGKILL after 30 s; the exit status."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = None if self.proc is None else self.proc.returncode
        return self.returncode

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self._log.close()
        self.log_path.unlink(missing_ok=True)


def _send(client: Any, probe: Probe) -> Any:
    headers = {"content-type": probe.content_type} if probe.content_type else {}
    content: bytes | Iterator[bytes] | None = probe.body
    if probe.chunked and probe.body is not None:
        body = probe.body
        content = iter([body[i:i + 65536] for i in range(0, len(body), 65536)])  # no Content-Length
    return client.request(probe.method, probe.path, content=content, headers=headers)


def drive(base: str, mix: list[Probe], concurrency: int, timeout: float = 120.0) -> dict[str, Any]:
    """Send ``mix`` to ``base`` from ``concurrency`` threads, each with its own keep-alive client.

    Returns
    -------
    dict
        ``seconds`` (wall clock), ``latency`` (kind -> list of seconds),
        ``status`` (Counter of statuses), ``transport`` (Counter of
        exception names: no answer at all), ``wrong`` (list of
        ``(kind, method, path, what)`` for answers not as expected).
    """
    import httpx

    latency: dict[str, list[float]] = {}
    status, transport, wrong = Counter(), Counter(), []
    lock, cursor = threading.Lock(), iter(range(len(mix)))

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=timeout) as client:
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                probe = mix[i]
                start = time.perf_counter()
                try:
                    res = _send(client, probe)
                    content = res.content
                except httpx.HTTPError as e:  # no answer: refused, reset, closed early, timed out
                    with lock:
                        transport[type(e).__name__] += 1
                        wrong.append((probe.kind, probe.method, probe.path, f"{type(e).__name__}: {e}"))
                    continue
                took = time.perf_counter() - start
                problem = check_answer(probe, res.status_code, content)
                with lock:
                    latency.setdefault(probe.kind, []).append(took)
                    status[res.status_code] += 1
                    if problem:
                        wrong.append((probe.kind, probe.method, probe.path, f"{problem}: {content[:200]!r}"))

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.perf_counter() - start, "latency": latency, "status": status,
            "transport": transport, "wrong": wrong}


def load_test(run: str | os.PathLike, requests: int = 10_000, concurrency: int = 8, warmup: int | None = None,
              seed: int = 0, server_args: list[str] | None = None, torch_threads: int | None = 1,
              sample_every: float = 0.25) -> dict[str, Any]:
    """Serve ``run``, send ``warmup`` then ``requests`` requests from ``concurrency`` clients, stop, report.

    Parameters
    ----------
    run : path
        A classification run directory (``biornn train names ...``).
    requests : int
        Measured requests (after the warm-up).
    concurrency : int
        Client threads, each with one keep-alive connection.
    warmup : int, optional
        Requests sent first, checked but not timed (default: a tenth of ``requests``, 50..1000).
    seed : int
        Seed of the request mix.
    server_args : list of str
        More ``biornn serve`` options (request limits).
    torch_threads : int, optional
        The server's ``OMP_NUM_THREADS`` (default 1: a shared machine; None: torch's choice).
    sample_every : float
        Seconds between samples of the server's resident memory.

    Returns
    -------
    dict
        ``requests``, ``concurrency``, ``seconds``, ``requests_per_second``,
        ``status`` (status -> count), ``server_errors`` (5xx), ``transport_errors``
        (name -> count), ``not_as_expected`` (count) and ``examples`` (the
        first 20), ``latency_ms`` (kind -> n, p50, p95, p99, max; ``all``
        and ``malformed`` too), ``rss_mb`` (start, after_warmup, peak, end,
        growth = end - after_warmup), ``log_tracebacks``, ``exit_status``.
    """
    import httpx

    for name, value in (("requests", requests), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    warmup = max(50, min(1000, requests // 10)) if warmup is None else warmup
    with Server(run, server_args, torch_threads) as server:
        pid = server.proc.pid
        info = httpx.get(f"{server.base}/model", timeout=30).json()
        rss = {"start": rss_mb(pid)}
        warm = drive(server.base, build_mix(info, warmup, seed + 1), concurrency) if warmup else None
        rss["after_warmup"] = rss_mb(pid)
        peak, done = [rss["after_warmup"]], threading.Event()

        def sampler() -> None:  # the peak between samples is missed: a lower bound of the true peak
            while not done.wait(sample_every):
                try:
                    peak.append(rss_mb(pid))
                except (OSError, ValueError):
                    return

        watcher = threading.Thread(target=sampler, daemon=True)
        watcher.start()
        got = drive(server.base, build_mix(info, requests, seed), concurrency)
        done.set()
        watcher.join()
        rss["end"] = rss_mb(pid)
        rss["peak"] = max(peak + [rss["end"]])
        rss["growth"] = rss["end"] - rss["after_warmup"]
        alive = httpx.get(f"{server.base}/healthz", timeout=30).status_code == 200
        exit_status = server.stop()
        log = server.log()
    runs = [r for r in (warm, got) if r is not None]
    status = sum((r["status"] for r in runs), Counter())
    transport = sum((r["transport"] for r in runs), Counter())
    wrong = [w for r in runs for w in r["wrong"]]
    lat = got["latency"]
    groups = {kind: lat[kind] for kind in sorted(lat) if not kind.startswith("bad-")}
    groups["malformed"] = [t for kind in lat if kind.startswith("bad-") for t in lat[kind]]
    groups.update({kind: lat[kind] for kind in sorted(lat) if kind.startswith("bad-")})
    groups["all"] = [t for ts in lat.values() for t in ts]
    latency_ms = {kind: {"n": len(ts), **{f"p{q}": round(1000 * percentile(ts, q), 2) for q in (50, 95, 99)},
                         "max": round(1000 * max(ts), 2)} for kind, ts in groups.items() if ts}
    return {
        "run": str(run), "requests": requests, "warmup": warmup, "concurrency": concurrency, "seed": seed,
        "seconds": round(got["seconds"], 3), "requests_per_second": round(requests / got["seconds"], 1),
        "status": {str(k): v for k, v in sorted(status.items())},
        "server_errors": sum(v for k, v in status.items() if k >= 500),
        "transport_errors": dict(transport),
        "not_as_expected": len(wrong), "examples": [list(w) for w in wrong[:20]],
        "latency_ms": latency_ms,
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "alive_after": alive, "exit_status": exit_status,
        "log_tracebacks": log.count("Traceback"),
        # the server's own words where it failed (the log itself is removed with the server)
        "log_tail": log[-4000:] if "Traceback" in log or exit_status != 0 else "",
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table (what ``benchmarks/serve_load.py`` prints)."""
    lines = [
        f"run {report['run']}: {report['requests']} requests (after {report['warmup']} warm-up) "
        f"from {report['concurrency']} clients in {report['seconds']:.1f} s = "
        f"{report['requests_per_second']:.0f} requests/s",
        "status " + ", ".join(f"{k}: {v}" for k, v in report["status"].items()),
        f"5xx {report['server_errors']}   transport errors {sum(report['transport_errors'].values())} "
        f"{report['transport_errors'] or ''}  not as expected {report['not_as_expected']}   "
        f"tracebacks in the server log {report['log_tracebacks']}   "
        f"alive after {report['alive_after']}   exit status {report['exit_status']}",
        "server RSS (MiB): " + "  ".join(f"{k} {v:.1f}" for k, v in report["rss_mb"].items()),
        "",
        f"{'kind':<18}{'n':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    for kind, row in report["latency_ms"].items():
        lines.append(f"{kind:<18}{row['n']:>7}{row['p50']:>10.2f}{row['p95']:>10.2f}{row['p99']:>10.2f}"
                     f"{row['max']:>10.2f}")
    if report.get("log_tail"):
        lines.append("the server's log ends:\n" + report["log_tail"])
    for example in report["examples"]:
        lines.append("  not as expected: " + " ".join(map(str, example)))
    return "\n".join(lines)
