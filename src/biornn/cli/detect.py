"""``biornn detect RUN SIGNAL``: per-sample anomaly scores and flags, from a file or a live stream."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect", help="score a signal with an ecg-anomaly run: per-sample scores and flags",
        description="Score a signal with a run trained by 'biornn train ecg-anomaly'. SIGNAL is a text file "
        "(whitespace or CSV, one sample per line: one column per lead, or a first time column and then the "
        "leads) or a WFDB record (.hea with its .dat, formats 212 and 16, read by biornn itself). Writes CSV "
        "'sample,score,flag': the smoothed Mahalanobis score of the prediction errors (a sample's own score needs all k predictions of it, so the "
        "first k samples have none; the smoothing averages the scores in its window, and is nan only where "
        "the window holds none) "
        "and 1 where it exceeds the run's threshold (set on training data, without test labels). "
        "With --stream, samples are read from standard input one line per sample and each score line is "
        "written as soon as it is final (smoothing window / 2 samples later); the recurrent state is "
        "carried, memory stays constant, and the scores equal the offline ones.")
    p.add_argument("run", metavar="RUN", help="a run directory written by 'biornn train ecg-anomaly'")
    p.add_argument("signal", metavar="SIGNAL", nargs="?", help="a signal file (not with --stream)")
    p.add_argument("--stream", action="store_true", help="read samples from standard input, one line each")
    p.add_argument("--on-bad-line", choices=("stop", "skip"), default="stop",
                   help="--stream only: on a line that is not L (or L+1) finite numbers, stop with exit 2 "
                   "(default) or skip it with a warning on stderr (a SIGNAL file with such a line is refused: "
                   "samples left out would shift every later one in time)")
    p.add_argument("--out", metavar="FILE", help="write the CSV here (atomically) instead of standard output")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: one signal is one sequential recurrence, which more "
                   "threads do not speed up and, on a busy machine, slow down)")
    p.set_defaults(handler=run)


def _fmt(i: int, s: float, flag: bool) -> str:
    return f"{i},{'nan' if math.isnan(s) else f'{s:.6g}'},{int(flag)}"


def run(args: argparse.Namespace) -> int:
    import torch

    from ..evaluate import load_run

    from .checks import threads

    threads(args.threads)
    torch.set_num_threads(args.threads)
    cfg, task, model, meta = load_run(args.run)
    if task.KIND != "regression" or not hasattr(task, "detect"):
        raise ValueError(f"{args.run}: a {cfg.task} run does not score signals; detect needs an ecg-anomaly run")
    if args.stream:
        if args.signal not in (None, "-"):
            raise ValueError("--stream reads standard input; give no SIGNAL file")
        if args.out:
            raise ValueError("--stream writes to standard output; --out is for files")
        return _stream(model, meta, args.on_bad_line)
    if not args.signal:
        raise ValueError("give a SIGNAL file, or --stream to read standard input")
    if args.on_bad_line != "stop":
        raise ValueError("--on-bad-line skip applies to --stream; a SIGNAL file with a bad line is refused, "
                         "naming the line (mend or remove it)")
    from ..checkpoint import refuse_overwriting
    from ..data.ecg import read_signal

    if args.out:  # before any work: the scores must not replace the run's files or the signal
        refuse_overwriting(args.out, args.run, (args.signal, f"{args.signal}.dat", *_record_files(args.signal)))
    x = read_signal(args.signal, meta["leads"], meta.get("fs"))
    if len(x) <= cfg.horizon:
        raise ValueError(f"{args.signal}: {len(x)} samples, shorter than the prediction window; the detector "
                         f"needs more than {cfg.horizon}")
    t0 = time.perf_counter()
    scores, flags = task.detect(model, meta, x)
    seconds = time.perf_counter() - t0
    text = "sample,score,flag\n" + "".join(_fmt(i, float(s), bool(f)) + "\n" for i, (s, f) in
                                           enumerate(zip(scores, flags)))
    if args.out:
        from ..checkpoint import write_text

        write_text(args.out, text)
    else:
        sys.stdout.write(text)
    from ..anomaly import events

    print(f"biornn detect: {len(x)} samples, {int(flags.sum())} flagged in {len(events(flags))} events, "
          f"{seconds:.2f} s ({len(x) / max(seconds, 1e-9):,.0f} samples/s)", file=sys.stderr)
    return 0


def _record_files(signal: str) -> list[Path]:
    """Every file of the WFDB record that ``signal`` (``.hea``/``.dat``, or its name) belongs to: the
    header, its signal files and annotations -- ``RECORD.*`` beside it, the header's own data file
    included whatever its name."""
    p = Path(signal)
    base = p.with_suffix("") if p.suffix in (".hea", ".dat") else p
    try:
        files = [f for f in base.parent.iterdir() if f.name.startswith(base.name + ".")]
    except OSError:
        return []
    hea = base.with_name(base.name + ".hea")
    try:  # a signal file of another name, named by the header's signal lines
        lines = hea.read_text(errors="replace").splitlines()[1:] if hea.is_file() else []
        files += [base.parent / ln.split()[0] for ln in lines if ln.strip() and not ln.startswith("#")]
    except OSError:
        pass
    return files


def _stdin_lines(max_chars: int):
    """``(line number, text)`` for every line of standard input as soon as it is complete: lines end at
    \\n, \\r\\n or a lone \\r (serial devices), read from the file descriptor as data arrives.  A line
    longer than ``max_chars`` is yielded as ``(number, None)`` and not kept: memory stays bounded."""
    import codecs
    import os
    import re

    ends = re.compile(r"\r\n|\r|\n")
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    try:
        fd = sys.stdin.fileno()

        def read() -> str:  # what has arrived, at most 64 KiB: a live source is not waited for
            chunk = os.read(fd, 1 << 16)
            return decode(chunk, final=not chunk)
    except (AttributeError, OSError, ValueError):  # a stand-in without a descriptor (io.StringIO)
        def read() -> str:
            return sys.stdin.read(1 << 16)
    pending, lineno, overlong = "", 0, False
    while True:
        text = read()
        eof = not text
        pending += text
        start = 0
        for m in ends.finditer(pending):
            if m.group() == "\r" and m.end() == len(pending) and not eof:
                break  # perhaps the first half of \r\n: wait for the next chunk
            lineno += 1
            yield lineno, (None if overlong or m.start() - start > max_chars else pending[start : m.start()])
            overlong, start = False, m.end()
        pending = pending[start:]
        if len(pending) > max_chars:  # a line still running past the limit: drop what it has so far
            overlong, pending = True, ""
        if eof:
            if pending or overlong:
                lineno += 1
                yield lineno, None if overlong else pending
            return


def _stream(model, meta: dict, on_bad_line: str) -> int:
    from ..anomaly import StreamingDetector
    from ..data.ecg import MAX_LINE_CHARS, is_header, parse_line

    L = meta["leads"]
    det = StreamingDetector(model, meta["scorer"], meta["norm_mean"], meta["norm_std"])
    out = sys.stdout
    out.write("sample,score,flag\n")
    out.flush()
    t0, flagged, skipped = time.perf_counter(), 0, 0
    # the offline reader's rules, line by line: a BOM and one header line before the first sample are
    # allowed, and every sample line has the first one's number of columns
    first, width, last_time = True, None, None
    for lineno, line in _stdin_lines(MAX_LINE_CHARS):
        s = line.strip().lstrip("\ufeff") if line is not None else None
        if s is not None and (not s or s.startswith("#")):
            continue
        header, first = first, False
        try:
            if s is None:
                raise ValueError(f"more than {MAX_LINE_CHARS:,} characters on one line; a line holds one sample")
            values = parse_line(s)
            if len(values) not in (L, L + 1):
                raise ValueError(f"{len(values)} values, the run was trained on {L} leads "
                                 f"(a first time column is allowed)")
            if width is not None and len(values) != width:
                raise ValueError(f"{len(values)} columns, the lines before have {width}")
            if len(values) == L + 1 and last_time is not None and not values[0] > last_time:
                raise ValueError(f"the first column (time) does not increase ({values[0]:g} after {last_time:g}); "
                                 f"the run was trained on {L} leads")
            width = len(values)
            if width == L + 1:
                last_time = values[0]
        except ValueError as e:
            if header and s is not None and is_header(s):
                continue  # column names, as the offline reader allows

            if on_bad_line == "stop":  # the samples before it are scored as at the end of a stream
                for i, sc, f in det.finish():
                    out.write(_fmt(i, sc, f) + "\n")
                out.flush()
                raise ValueError(f"<stdin>: line {lineno}: {e}") from None
            skipped += 1
            print(f"biornn detect: <stdin>: line {lineno} skipped: {e}", file=sys.stderr, flush=True)
            continue
        rows = det.push(values[-L:])
        for i, sc, f in rows:
            flagged += f
            out.write(_fmt(i, sc, f) + "\n")
        if rows:
            out.flush()
    for i, sc, f in det.finish():
        flagged += f
        out.write(_fmt(i, sc, f) + "\n")
    out.flush()
    seconds = time.perf_counter() - t0
    print(f"biornn detect --stream: {det.t} samples, {flagged} flagged, {skipped} lines skipped, {seconds:.2f} s "
          f"({det.t / max(seconds, 1e-9):,.0f} samples/s)", file=sys.stderr)
    return 0
