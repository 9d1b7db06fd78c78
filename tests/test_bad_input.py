"""The bad-input corpus (issue 10, item 1): one table of malformed files, contradictory records, absurd
values and broken run directories, run through every reader and every ``biornn`` subcommand.

Every case must end the same way: exit code 2, exactly one line on stderr (``biornn: error: ...``) that
names the file (and the record or line where one applies) and the problem, no traceback, nothing on
stdout, and nothing written -- the listing of the case's working directory and of the shared run
directories is the same before and after.  A handful of cases also run the installed console script in a
subprocess, to prove no traceback reaches a terminal.

The inputs are built here, in ``tmp_path``: tiny WFDB records (``wfdb.wrsamp``), text tables, FASTA, NPZ,
and three tiny trained runs shared by the module (names, ecg-anomaly, a UCR classifier).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from biornn.cli.main import main
from biornn.data.registry import DATASETS
from conftest import train_tiny_names_run

BIORNN = Path(sys.executable).with_name("biornn")
ROOT = os.geteuid() == 0  # permissions do not apply to root: the unreadable-file cases are skipped


# -- the shared runs (module scope: trained once) ---------------------------------------


def _discords(root: Path, n: int = 1200) -> Path:
    """A data directory in the ecg-discords layout: one synthetic two-lead record with a time column,
    its labels.json, and empty stand-ins for the other files (locate checks presence only)."""
    d = root / "ecg" / "discords"
    d.mkdir(parents=True, exist_ok=True)
    for f in DATASETS["ecg-discords"].files:
        (root / f.path).write_text("")
    t = np.arange(n)
    phase = (t % 100) / 100.0
    beat = np.exp(-((phase - 0.3) / 0.02) ** 2) + 0.3 * np.sin(2 * np.pi * phase)
    x = np.stack([beat, 0.5 * beat + 0.2 * np.cos(2 * np.pi * phase)], 1)
    x += 0.02 * np.random.default_rng(0).standard_normal(x.shape)
    (d / "synth.txt").write_text("".join(f"{i / 250:.3f}\t{a:.5f}\t{b:.5f}\n" for i, (a, b) in enumerate(x)))
    labels = {"files": {"synth.txt": {"anomaly": [[950, 1000]], "train": [0, 800], "test": [800, n]}}}
    (d / "labels.json").write_text(json.dumps(labels))
    return root


def _ucr_lines(n: int, T: int, seed: int, labels=(1, 2)) -> str:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        label = labels[k % len(labels)]
        x = rng.normal(0, 0.3, T)
        x[(T // 4 if k % 2 == 0 else 3 * T // 4) + np.arange(-2, 2)] += 2.0
        rows.append(" ".join([str(label), *(f"{v:.4f}" for v in x)]))
    return "\n".join(rows) + "\n"


@dataclass
class Runs:
    names: Path
    ecg: Path
    ucr: Path
    root: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    root = tmp_path_factory.mktemp("bad-input-runs")
    names = train_tiny_names_run(root / "names")
    ecg = root / "ecg-run"
    assert main(["train", "ecg-anomaly", "--record", "synth", "--data-dir", str(_discords(root / "ecg-data")),
                 "--out", str(ecg), "--no-progress", "hidden_size=4", "epochs=1", "batch_size=2", "truncate=50",
                 "horizon=3", "baseline_order=4", "threads=1", "smooth=5"]) == 0
    ucr_file = root / "U_TRAIN.txt"
    ucr_file.write_text(_ucr_lines(30, 16, 0))
    ucr = root / "ucr-run"
    assert main(["train", "classify", "--train", str(ucr_file), "--out", str(ucr), "--no-progress",
                 "hidden_size=4", "epochs=1", "batch_size=16", "threads=1"]) == 0
    return Runs(names, ecg, ucr, root)


# -- the case table -----------------------------------------------------------------------


@dataclass
class Ctx:
    """What a case builds its input from: its own empty working directory and the shared runs."""

    tmp: Path
    runs: Runs
    stdin: str | None = None

    def write(self, name: str, content: str | bytes) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
        return p

    def copy_run(self, run: Path, name: str = "copied-run") -> Path:
        return Path(shutil.copytree(run, self.tmp / name))


@dataclass
class Case:
    build: Callable[[Ctx], tuple[list[str], list[str]]]  # -> (argv, substrings the error line must hold)
    marks: list = field(default_factory=list)
    stdout_ok: bool = False  # a stream already answered its good lines before the bad one




CASES: dict[str, Case] = {}


def case(name: str, *marks, stdout_ok: bool = False):
    def register(fn):
        assert name not in CASES, name
        CASES[name] = Case(fn, list(marks), stdout_ok)
        return fn
    return register


TRAIN_TINY = ["hidden_size=4", "epochs=1", "batch_size=8", "threads=1"]
GOOD_TSV = "label\tsequence\n" + "".join(f"{'ab'[k % 2]}\tACGTAC{'ACGT'[k % 4]}{'ACGT'[k // 4 % 4]}\n"
                                          for k in range(12))


def _train(ctx: Ctx, task: str, *args: str) -> list[str]:
    return ["train", task, *args, "--out", str(ctx.tmp / "run"), *TRAIN_TINY]


# ---- train classify / tag / forecast on the user's files (readers.py, userdata.py) ----

@case("fasta-binary-junk")
def _(ctx):
    f = ctx.write("junk.fa", b">r1 label=a\nACGT\n>r2 label=b\n\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "not UTF-8"]


@case("fasta-control-characters")
def _(ctx):
    f = ctx.write("ctl.fa", ">r1 label=a\nACGT\n>r2 label=b\nAC\x00\x07GT\n")
    return _train(ctx, "classify", "--train", str(f), "alphabet=dna"), [str(f), "record 'r2'", "not in the DNA"]


@case("fasta-protein-letter-in-dna")
def _(ctx):
    f = ctx.write("p.fa", ">r1 label=a\nACGTACGT\n>r2 label=b\nACGTQQGT\n")
    return _train(ctx, "classify", "--train", str(f), "alphabet=dna"), [str(f), "record 'r2'", "'Q'"]


@case("fasta-no-header")
def _(ctx):
    f = ctx.write("plain.fa", "ACGTACGT\nACGTAAAA\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 1", "before the first '>' header"]


@case("fasta-header-only")
def _(ctx):
    f = ctx.write("head.fa", ">r1 label=a\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "record 'r1'", "no sequence"]


@case("fasta-duplicate-id")
def _(ctx):
    f = ctx.write("dup.fa", ">r1 label=a\nACGT\n>r1 label=b\nACGA\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "'r1'", "given twice"]


@case("fasta-empty-file")
def _(ctx):
    f = ctx.write("empty.fa", "")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "empty file"]


@case("fasta-whitespace-only")
def _(ctx):
    f = ctx.write("blank.fa", "\n \n\t\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "empty file"]


@case("tsv-non-utf8")
def _(ctx):
    f = ctx.write("latin1.tsv", "label\tsequence\na\tACGT\nb\tAC\u00e9T\n".encode("latin-1"))
    return _train(ctx, "classify", "--train", str(f)), [str(f), "not UTF-8"]


@case("tsv-header-only")
def _(ctx):
    f = ctx.write("h.tsv", "label\tsequence\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "a header and no rows"]


@case("tsv-ragged-row")
def _(ctx):
    f = ctx.write("rag.tsv", GOOD_TSV + "a\tACGT\textra\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 14", "3 fields"]


@case("tsv-missing-label-column")
def _(ctx):
    f = ctx.write("nolab.tsv", GOOD_TSV.replace("label\t", "class\t", 1))
    return _train(ctx, "classify", "--train", str(f)), [str(f), "no label column 'label'"]


@case("tsv-nul-in-header")
def _(ctx):
    # a control character in a column name is shown escaped, not written raw to the terminal
    f = ctx.write("nul.tsv", GOOD_TSV.replace("label\t", "lab\x00el\t", 1))
    return _train(ctx, "classify", "--train", str(f)), [str(f), "no label column 'label'", "'lab\\x00el'"]


@case("tsv-sequence-column-is-the-label-column")
def _(ctx):
    f = ctx.write("same.tsv", GOOD_TSV)
    return (_train(ctx, "classify", "--train", str(f), "sequence_column=label"),
            ["sequence_column and label_column both name the column 'label'"])


@case("tsv-test-is-the-train-file")
def _(ctx):
    f = ctx.write("both.tsv", GOOD_TSV)
    return (_train(ctx, "classify", "--train", str(f), "--test", str(ctx.tmp / "." / "both.tsv")),
            [str(f), "--test names the training file"])


@case("tsv-test-is-a-copy-of-the-train-file")
def _(ctx):
    f = ctx.write("train.tsv", GOOD_TSV)
    copy = ctx.write("copy.tsv", GOOD_TSV)
    return (_train(ctx, "classify", "--train", str(f), "--test", str(copy)),
            [str(copy), "--test is a byte-for-byte copy of the training file"])


@case("config-train-file-on-a-builtin-task")
def _(ctx):
    # splice reads its own data set: the user's file would be silently ignored
    f = ctx.write("mine.tsv", GOOD_TSV)
    return (["train", "splice", "--train", str(f), "--out", str(ctx.tmp / "run")],
            ["train_file applies to the tasks on the user's files", "task 'splice' reads its own data set"])


@case("tsv-empty-sequence")
def _(ctx):
    f = ctx.write("es.tsv", GOOD_TSV + "a\t\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 14", "empty sequence"]


@case("tsv-field-over-csv-limit")
def _(ctx):
    f = ctx.write("long.tsv", GOOD_TSV + "a\t" + "ACGT" * 50_000 + "\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 14", "field larger than field limit"]


@case("tsv-unseen-test-label")
def _(ctx):
    tr, te = ctx.write("tr.tsv", GOOD_TSV), ctx.write("te.tsv", "label\tsequence\nb\tACGT\nzzz\tACGA\n")
    return _train(ctx, "classify", "--train", str(tr), "--test", str(te)), [str(te), "line 3", "'zzz'",
                                                                             "not in the training file"]


@case("tsv-unseen-val-label")
def _(ctx):
    tr, va = ctx.write("tr.tsv", GOOD_TSV), ctx.write("va.tsv", "label\tsequence\nq\tACGT\n")
    return _train(ctx, "classify", "--train", str(tr), "--val", str(va)), [str(va), "line 2", "'q'"]


@case("ucr-inf")
def _(ctx):
    f = ctx.write("A_TRAIN.txt", "1 0.1 0.2 0.3\n2 0.3 inf 0.1\n1 0.1 0.2 0.3\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 2, value 2", "NaN or infinite"]


@case("ucr-nan-label")
def _(ctx):
    f = ctx.write("B_TRAIN.txt", "1 0.1 0.2 0.3\nnan 0.3 0.2 0.1\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 2", "the label is 'nan'"]


@case("ucr-not-a-number")
def _(ctx):
    f = ctx.write("C_TRAIN.txt", "1 0.1 0.2 0.3\n2 0.3 0,2x 0.1\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 2", "is not a number"]


@case("ucr-ragged-rows")
def _(ctx):
    f = ctx.write("D_TRAIN.txt", "1 0.1 0.2 0.3\n2 0.3 0.2 0.1\n1 0.5\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 3", "1 values, but line 1 has 3"]


@case("ucr-label-only")
def _(ctx):
    f = ctx.write("E_TRAIN.txt", "1 0.1 0.2 0.3\n2\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 2", "a label and no values"]


@case("ucr-test-wrong-length")
def _(ctx):
    tr, te = ctx.write("F_TRAIN.txt", _ucr_lines(12, 8, 0)), ctx.write("F_TEST.txt", _ucr_lines(4, 5, 1))
    return _train(ctx, "classify", "--train", str(tr), "--test", str(te)), [str(te), "line 1", "5 values"]


@case("ucr-unseen-test-label")
def _(ctx):
    tr = ctx.write("G_TRAIN.txt", _ucr_lines(12, 8, 0))
    te = ctx.write("G_TEST.txt", _ucr_lines(4, 8, 1, labels=(1, 7)))
    return _train(ctx, "classify", "--train", str(tr), "--test", str(te)), [str(te), "'7'", "not in the training"]


@case("csv-train-is-a-fifo")
def _(ctx):
    fifo = ctx.tmp / "pipe.csv"
    os.mkfifo(fifo)  # no writer: reading it waited for ever
    return _train(ctx, "classify", "--train", str(fifo)), [str(fifo), "not a regular file"]


@case("csv-train-is-a-device")
def _(ctx):
    return _train(ctx, "classify", "--train", "/dev/zero", "--format", "csv"), ["/dev/zero", "not a regular file"]


@case("csv-train-symlink-loop")
def _(ctx):
    (ctx.tmp / "a.csv").symlink_to(ctx.tmp / "b.csv")
    (ctx.tmp / "b.csv").symlink_to(ctx.tmp / "a.csv")
    return _train(ctx, "classify", "--train", str(ctx.tmp / "a.csv")), ["a.csv", "symbolic links"]


@case("csv-train-through-a-file")
def _(ctx):
    f = ctx.write("f.csv", "label,sequence\n")
    return _train(ctx, "classify", "--train", str(f / "x.csv")), [str(f / "x.csv"), "Not a directory"]


@case("config-toml-is-a-fifo")
def _(ctx):
    fifo = ctx.tmp / "c.toml"
    os.mkfifo(fifo)
    return ["train", "classify", "--config", str(fifo)], [str(fifo), "not a regular file"]


@case("csv-label-column-is-the-sequence-column")
def _(ctx):
    f = ctx.write("seqs.csv", GOOD_TSV.replace("\t", ","))
    return (_train(ctx, "classify", "--train", str(f), "label_column=sequence"),
            [str(f), "label_column 'sequence' is also the sequence column"])


@case("npz-a-text-file")
def _(ctx):
    f = ctx.write("data.npz", "label,sequence\na,ACGT\n")  # np.load took it for a pickle and said so
    return _train(ctx, "classify", "--train", str(f)), [str(f), "not a NumPy .npz archive (not a zip file"]


@case("csv-nan-forecast")
def _(ctx):
    f = ctx.write("s.csv", "a,b\n" + "1,2\n" * 30 + "3,nan\n")
    return _train(ctx, "forecast", "--train", str(f)), [str(f), "line 32, value 2", "nan"]


@case("csv-ragged-forecast")
def _(ctx):
    f = ctx.write("r.csv", "a,b\n" + "1,2\n" * 5 + "3\n" + "1,2\n" * 20)
    return _train(ctx, "forecast", "--train", str(f)), [str(f), "line 7"]


@case("csv-text-in-numbers-forecast")
def _(ctx):
    f = ctx.write("t.csv", "a,b\n" + "1,2\n" * 5 + "3,abc\n" + "1,2\n" * 20)
    return _train(ctx, "forecast", "--train", str(f)), [str(f), "line 7", "'abc'"]


@case("csv-test-wrong-feature-count")
def _(ctx):
    tr = ctx.write("tr.csv", "a,b\n" + "".join(f"{np.sin(i / 5):.3f},{i % 7}\n" for i in range(60)))
    te = ctx.write("te.csv", "a\n" + "".join(f"{np.sin(i / 5):.3f}\n" for i in range(30)))
    return _train(ctx, "forecast", "--train", str(tr), "--test", str(te)), [str(te), "feature"]


@case("csv-test-columns-reordered-forecast")
def _(ctx):
    # the same two columns in the other order would be read position by position: refused
    rows = [(f"{np.sin(i / 5):.3f}", f"{i % 7}") for i in range(60)]
    tr = ctx.write("tr.csv", "a,b\n" + "".join(f"{x},{y}\n" for x, y in rows))
    te = ctx.write("te.csv", "b,a\n" + "".join(f"{y},{x}\n" for x, y in rows))
    return (_train(ctx, "forecast", "--train", str(tr), "--test", str(te)),
            [str(te), "feature columns in another order than the training file's (a, b)"])


@case("csv-test-columns-reordered-classify")
def _(ctx):
    # a row per series, its columns the steps: a test file with them reversed was read backwards
    rows = [[f"{(s if k % 2 else 5 - s) + 0.1 * (k % 3):.2f}" for s in range(6)] + ["up" if k % 2 else "down"]
            for k in range(40)]
    head = "t0,t1,t2,t3,t4,t5,label\n"
    tr = ctx.write("tr.csv", head + "".join(",".join(r) + "\n" for r in rows))
    te = ctx.write("te.csv", "t5,t4,t3,t2,t1,t0,label\n" + "".join(",".join(r[5::-1] + r[6:]) + "\n" for r in rows))
    return (_train(ctx, "classify", "--train", str(tr), "--test", str(te)),
            [str(te), "step columns in another order than the training file's (t0, t1"])


@case("csv-val-columns-renamed-forecast")
def _(ctx):
    rows = "".join(f"{np.sin(i / 5):.3f},{i % 7}\n" for i in range(60))
    tr, va = ctx.write("tr.csv", "a,b\n" + rows), ctx.write("va.csv", "a,c\n" + rows)
    return (_train(ctx, "forecast", "--train", str(tr), "--val", str(va)),
            [str(va), "feature columns with other names than the training file's (a, b)"])


@case("npz-corrupt-archive")
def _(ctx):
    f = ctx.write("x.npz", b"PK\x03\x04 this is not really a zip archive" * 3)
    return _train(ctx, "classify", "--train", str(f)), [str(f), "not a NumPy .npz archive"]


@case("npz-empty-file")
def _(ctx):
    f = ctx.write("e.npz", b"")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "empty file"]


@case("npz-missing-array")
def _(ctx):
    f = ctx.tmp / "m.npz"
    np.savez(f, data=np.zeros((4, 3, 2)))
    return _train(ctx, "classify", "--train", str(f)), [str(f), "no array 'X'"]


@case("npz-nan-value")
def _(ctx):
    f = ctx.tmp / "n.npz"
    X = np.zeros((6, 5, 2))
    X[3, 2, 1] = np.nan
    np.savez(f, X=X, y=np.array(["a", "b"] * 3))
    return _train(ctx, "classify", "--train", str(f)), [str(f), "record 3, step 2", "NaN or infinite"]


@case("npz-bad-lengths")
def _(ctx):
    f = ctx.tmp / "l.npz"
    np.savez(f, X=np.zeros((4, 5, 2)), y=np.array(["a", "b"] * 2), lengths=np.array([5, 5, 9, 5]))
    return _train(ctx, "classify", "--train", str(f)), [str(f), "record 2", "length 9 is outside 1..5"]


@case("npz-test-wrong-feature-count")
def _(ctx):
    tr, te = ctx.tmp / "tr.npz", ctx.tmp / "te.npz"
    rng = np.random.default_rng(0)
    np.savez(tr, X=rng.normal(size=(20, 6, 3)), y=np.array(["a", "b"] * 10))
    np.savez(te, X=rng.normal(size=(4, 6, 2)), y=np.array(["a", "b"] * 2))
    return _train(ctx, "classify", "--train", str(tr), "--test", str(te)), [str(te), "2 features", "3"]


@case("tag-label-length-mismatch")
def _(ctx):
    f = ctx.write("t.fa.tsv", "sequence\tlabel\nACGTAC\tabab\n")
    return _train(ctx, "tag", "--train", str(f), "--format", "tsv"), [str(f), "line 2", "4 labels for 6"]


@case("train-file-missing")
def _(ctx):
    return _train(ctx, "classify", "--train", str(ctx.tmp / "nope.tsv")), [str(ctx.tmp / "nope.tsv"), "no such file"]


@case("train-file-is-a-directory")
def _(ctx):
    d = ctx.tmp / "adir.tsv"
    d.mkdir()
    return _train(ctx, "classify", "--train", str(d)), [str(d), "directory"]


@case("train-file-unreadable", pytest.mark.skipif(ROOT, reason="permissions do not apply to root"))
def _(ctx):
    f = ctx.write("locked.tsv", GOOD_TSV)
    f.chmod(0)
    return _train(ctx, "classify", "--train", str(f)), [str(f), "ermission denied"]


@case("train-unknown-format")
def _(ctx):
    f = ctx.write("x.tsv", GOOD_TSV)
    return _train(ctx, "classify", "--train", str(f), "--format", "xlsx"), ["xlsx", "format must be one of"]


@case("train-unknown-extension")
def _(ctx):
    f = ctx.write("x.dat", GOOD_TSV)
    return _train(ctx, "classify", "--train", str(f)), [str(f), "'.dat'", "give --format"]


@case("fasta-100mb-line")
def _(ctx):
    # one sequence line of 100 MB: refused by max_length, not loaded into a model
    f = ctx.tmp / "huge.fa"
    with open(f, "wb") as out:
        out.write(b">r1 label=a\n")
        chunk = b"ACGT" * (1 << 18)  # 1 MiB
        for _ in range(100):
            out.write(chunk)
        out.write(b"\n>r2 label=b\nACGT\n")
    return _train(ctx, "classify", "--train", str(f), "max_length=1000"), [str(f), "record 'r1'", "longer than"]


@case("ucr-100mb-line")
def _(ctx):
    # one UCR row of 100 MB with no line break: a single absurd series, refused with the line named
    f = ctx.tmp / "H_TRAIN.txt"
    with open(f, "wb") as out:
        out.write(b"1 ")
        chunk = b"0.5 " * (1 << 18)
        for _ in range(100):
            out.write(chunk)
        out.write(b"x\n2 0.1 0.2\n")
    return _train(ctx, "classify", "--train", str(f)), [str(f), "line 1"]


# ---- config values (config.py, the task's check_config) ----

@case("config-negative-hidden-size")
def _(ctx):
    return (["train", "names", "--out", str(ctx.tmp / "run"), "hidden_size=-4"],
            ["hidden_size", "hidden_size must be positive"])


@case("config-zero-batch-size")
def _(ctx):
    return (["train", "names", "--out", str(ctx.tmp / "run"), "batch_size=0"],
            ["batch_size", "batch_size must be positive"])


@case("config-negative-lr")
def _(ctx):
    return ["train", "names", "--out", str(ctx.tmp / "run"), "lr=-0.1"], ["lr", "lr must be in"]


@case("config-nan-lr")
def _(ctx):
    return ["train", "names", "--out", str(ctx.tmp / "run"), "lr=nan"], ["lr", "lr must be a finite number"]


@case("config-dropout-above-one")
def _(ctx):
    return ["train", "names", "--out", str(ctx.tmp / "run"), "dropout=1.5"], ["dropout", "dropout must be in"]


@case("config-absurd-hidden-size")
def _(ctx):
    return (["train", "names", "--out", str(ctx.tmp / "run"), "hidden_size=100000000000"],
            ["hidden_size", "hidden_size must be at most"])


@case("config-negative-epochs-flag")
def _(ctx):
    return ["train", "names", "--out", str(ctx.tmp / "run"), "--epochs", "-3"], ["epochs", "epochs must be positive"]


@case("config-wrong-type")
def _(ctx):
    return ["train", "names", "--out", str(ctx.tmp / "run"), "epochs=three"], ["epochs", "'three'"]


@case("config-unknown-key")
def _(ctx):
    return ["train", "names", "--out", str(ctx.tmp / "run"), "hiden_size=8"], ["hiden_size", "unknown key"]


@case("config-unknown-cell")
def _(ctx):
    return ["train", "names", "--out", str(ctx.tmp / "run"), "--cell", "lstn"], ["lstn"]


@case("config-unknown-task")
def _(ctx):
    return ["train", "nmaes", "--out", str(ctx.tmp / "run")], ["unknown task 'nmaes'"]


@case("config-toml-malformed")
def _(ctx):
    f = ctx.write("c.toml", 'task = "names"\nepochs = = 3\n')
    return ["train", str(f), "--out", str(ctx.tmp / "run")], [str(f), "not valid TOML"]


@case("config-toml-bad-value")
def _(ctx):
    # a value out of range is reported against the file that set it
    f = ctx.write("lr.toml", 'lr = -1.0\n')
    return (["train", "names", "--config", str(f), "--out", str(ctx.tmp / "run")],
            [f"{f}: lr must be in (0, 10]"])


@case("config-toml-missing")
def _(ctx):
    return (["train", "names", "--config", str(ctx.tmp / "no.toml"), "--out", str(ctx.tmp / "run")],
            ["no.toml", "no such config file"])


@case("config-toml-non-utf8")
def _(ctx):
    f = ctx.write("bin.toml", b"task = \"names\"\n\xff\xfe\x00epochs = 3\n")
    return ["train", str(f), "--out", str(ctx.tmp / "run")], [str(f), "not UTF-8"]


@case("config-negative-seed")
def _(ctx):
    return ["train", "names", "--out", str(ctx.tmp / "run"), "--seed", "-1"], ["seed", ">= 0"]


# ---- the reference data sets' readers (names, WFDB through mitdb-qrs, ecg discords) ----

def _names_dir(ctx: Ctx, bad: dict[str, bytes]) -> Path:
    """A copy of the names run's data directory with some files replaced."""
    src = ctx.runs.names.parent / "data"
    root = Path(shutil.copytree(src, ctx.tmp / "data"))
    for name, content in bad.items():
        (root / "names" / name).write_bytes(content)
    return root


@case("names-file-non-utf8")
def _(ctx):
    root = _names_dir(ctx, {"Czech.txt": b"Novak\nDvo\xf8\xe1k\n"})
    return (["train", "names", "--data-dir", str(root), "--out", str(ctx.tmp / "run"), *TRAIN_TINY],
            ["names/Czech.txt line 2", "not UTF-8"])


@case("names-file-binary-junk")
def _(ctx):
    root = _names_dir(ctx, {"Greek.txt": b"\x00\x01\x02\x03\n\x7fELF\x00\n"})
    return (["train", "names", "--data-dir", str(root), "--out", str(ctx.tmp / "run"), *TRAIN_TINY],
            ["names/Greek.txt line 1", "control character U+0000"])


@case("names-file-empty")
def _(ctx):
    root = _names_dir(ctx, {"Dutch.txt": b""})
    return (["train", "names", "--data-dir", str(root), "--out", str(ctx.tmp / "run"), *TRAIN_TINY],
            ["names/Dutch.txt", "holds no names"])


@case("names-data-dir-is-a-file")
def _(ctx):
    f = ctx.write("notadir", "x")
    return (["train", "names", "--data-dir", str(f), "--out", str(ctx.tmp / "run"), *TRAIN_TINY],
            [str(f), "(--data-dir): not a directory"])


def _wfdb_record(ctx: Ctx, name: str = "rec", n: int = 600, n_sig: int = 2, fmt: str = "16",
                 sub: str = "wfdb") -> Path:
    """A small WFDB record written by wfdb.wrsamp: returns the record path without extension."""
    import wfdb

    d = ctx.tmp / sub
    d.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / 250.0
    sig = np.stack([np.sin(2 * np.pi * (k + 1) * t) for k in range(n_sig)], 1)
    wfdb.wrsamp(name, fs=250, units=["mV"] * n_sig, sig_name=[f"s{k}" for k in range(n_sig)], p_signal=sig,
                fmt=[fmt] * n_sig, write_dir=str(d))
    return d / name


def _mitdb(ctx: Ctx, n: int = 2000) -> tuple[Path, Path]:
    """A data directory in the mitdb-100 layout holding a small record (wrsamp) and its beats (wrann)."""
    import wfdb

    rec = _wfdb_record(ctx, "100", n=n, fmt="212", sub="data/ecg/mitdb")
    wfdb.wrann("100", "atr", np.arange(100, n, 250), symbol=["N"] * len(range(100, n, 250)),
               write_dir=str(rec.parent))
    return ctx.tmp / "data", rec


@case("wfdb-truncated-signal-train")
def _(ctx):
    root, rec = _mitdb(ctx)
    dat = rec.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:500])
    return (["train", "mitdb-qrs", "--data-dir", str(root), "--out", str(ctx.tmp / "run"), *TRAIN_TINY],
            ["100", "does not match its signal file"])


@case("wfdb-header-contradicts-signal-train")
def _(ctx):
    root, rec = _mitdb(ctx)
    hea = rec.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    head = lines[0].split()
    head[3] = "900000"  # the header claims far more samples than the signal file holds
    hea.write_text("\n".join([" ".join(head), *lines[1:]]) + "\n")
    return (["train", "mitdb-qrs", "--data-dir", str(root), "--out", str(ctx.tmp / "run"), *TRAIN_TINY],
            ["100", "900000 samples", "does not match its signal file"])


@case("wfdb-header-junk-train")
def _(ctx):
    root, rec = _mitdb(ctx)
    rec.with_suffix(".hea").write_bytes(b"\x00\xff garbage \x01\n\x02\x03\n")
    return (["train", "mitdb-qrs", "--data-dir", str(root), "--out", str(ctx.tmp / "run"), *TRAIN_TINY],
            [str(rec.with_suffix(".hea")), "not a readable WFDB header"])


@case("wfdb-annotation-junk-train")
def _(ctx):
    root, rec = _mitdb(ctx)
    rec.with_suffix(".atr").write_bytes(b"\xde\xad\xbe\xef" * 5)
    return (["train", "mitdb-qrs", "--data-dir", str(root), "--out", str(ctx.tmp / "run"), *TRAIN_TINY],
            [str(rec.with_suffix(".atr")), "no beat annotation"])


@case("wfdb-empty-signal-train")
def _(ctx):
    root, rec = _mitdb(ctx)
    rec.with_suffix(".dat").write_bytes(b"")
    return (["train", "mitdb-qrs", "--data-dir", str(root), "--out", str(ctx.tmp / "run"), *TRAIN_TINY],
            [str(rec.with_suffix(".dat")), "empty"])


@case("discord-labels-not-json")
def _(ctx):
    root = Path(shutil.copytree(ctx.runs.root / "ecg-data", ctx.tmp / "data"))
    labels = root / "ecg" / "discords" / "labels.json"
    labels.write_text('{"files": {"synth.txt": ')
    return (["train", "ecg-anomaly", "--record", "synth", "--data-dir", str(root), "--out", str(ctx.tmp / "run"),
             *TRAIN_TINY], [str(labels), "not valid JSON"])


@case("discord-record-ragged")
def _(ctx):
    root = Path(shutil.copytree(ctx.runs.root / "ecg-data", ctx.tmp / "data"))
    rec = root / "ecg" / "discords" / "synth.txt"
    lines = rec.read_text().splitlines()
    lines[9] = "0.036\t0.5"
    rec.write_text("\n".join(lines) + "\n")
    return (["train", "ecg-anomaly", "--record", "synth", "--data-dir", str(root), "--out", str(ctx.tmp / "run"),
             *TRAIN_TINY], [str(rec), "line 10", "2 columns"])


# ---- detect (ecg.read_signal: text and WFDB) ----

def _detect(ctx: Ctx, signal: Path, *extra: str) -> list[str]:
    return ["detect", str(ctx.runs.ecg), str(signal), *extra]


@case("detect-wfdb-truncated")
def _(ctx):
    rec = _wfdb_record(ctx)
    dat = rec.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:1001])
    return _detect(ctx, rec.with_suffix(".hea")), [str(dat), "holds 250 samples", "says 600"]


@case("detect-wfdb-header-claims-other-format")
def _(ctx):
    rec = _wfdb_record(ctx)
    hea = rec.with_suffix(".hea")
    hea.write_text(hea.read_text().replace(" 16 ", " 80 "))
    return _detect(ctx, hea), [str(hea), "format 80"]


@case("detect-wfdb-header-one-signal-of-two")
def _(ctx):
    rec = _wfdb_record(ctx)
    hea = rec.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    head = lines[0].split()
    head[1] = "3"  # three signals announced, two signal lines follow
    hea.write_text("\n".join([" ".join(head), *lines[1:]]) + "\n")
    return _detect(ctx, hea), [str(hea), "not a WFDB header"]


@case("detect-wfdb-header-junk")
def _(ctx):
    hea = ctx.write("junk.hea", b"\x7fELF\x02\x01\x01\x00\x00\x00\n")
    return _detect(ctx, hea), [str(hea), "not a WFDB header"]


@case("detect-wfdb-signal-missing")
def _(ctx):
    rec = _wfdb_record(ctx)
    rec.with_suffix(".dat").unlink()
    return _detect(ctx, rec.with_suffix(".hea")), [str(rec.with_suffix(".dat")), "no such WFDB signal file"]


@case("detect-wfdb-signal-is-a-directory")
def _(ctx):
    rec = _wfdb_record(ctx)
    dat = rec.with_suffix(".dat")
    dat.unlink()
    dat.mkdir()
    return _detect(ctx, rec.with_suffix(".hea")), [str(dat), "directory"]


@case("detect-wfdb-wrong-lead-count")
def _(ctx):
    rec = _wfdb_record(ctx, n_sig=3)
    return _detect(ctx, rec.with_suffix(".hea")), [str(rec.with_suffix(".hea")), "3 leads", "trained on 2"]


@case("detect-wfdb-header-missing")
def _(ctx):
    return _detect(ctx, ctx.tmp / "ghost.hea"), [str(ctx.tmp / "ghost.hea"), "no such WFDB header"]


@case("detect-text-inf")
def _(ctx):
    f = ctx.write("inf.txt", "0.1 0.2\n" * 20 + "0.1 -inf\n")
    return _detect(ctx, f), [str(f), "line 21", "-inf"]


@case("detect-text-non-utf8")
def _(ctx):
    f = ctx.write("l1.txt", b"0.1 0.2\n" * 20 + b"0.1 0.2 \xb5V\n")
    return _detect(ctx, f), [str(f), "not UTF-8"]


@case("detect-text-ragged")
def _(ctx):
    f = ctx.write("rag.txt", "0.1 0.2\n" * 20 + "0.1 0.2 0.3 0.4\n")
    return _detect(ctx, f), [str(f), "line 21", "4 columns"]


@case("detect-text-header-only")
def _(ctx):
    f = ctx.write("h.csv", "lead1,lead2\n")
    return _detect(ctx, f), [str(f), "no samples"]


@case("detect-text-empty")
def _(ctx):
    f = ctx.write("e.txt", "")
    return _detect(ctx, f), [str(f), "no samples"]


@case("detect-signal-is-a-directory")
def _(ctx):
    d = ctx.tmp / "sig"
    d.mkdir()
    return _detect(ctx, d), [str(d), "directory"]


@case("detect-out-not-written-on-bad-signal")
def _(ctx):
    f = ctx.write("nan.csv", "a,b\n" + "0.1,0.2\n" * 10 + "nan,0.2\n")
    return _detect(ctx, f, "--out", str(ctx.tmp / "scores.csv")), [str(f), "line 12"]


@case("detect-zero-threads")
def _(ctx):
    f = ctx.write("ok.txt", "0.1 0.2\n" * 50)
    return _detect(ctx, f, "--threads", "0"), ["threads", "--threads must be >= 1"]


@case("detect-absurd-threads")
def _(ctx):
    # OpenMP would try to start them all: a segfault or libgomp's two lines (session 7's sweep)
    f = ctx.write("ok.txt", "0.1 0.2\n" * 50)
    return _detect(ctx, f, "--threads", "100000"), ["--threads must be at most 1024"]


@case("detect-out-is-the-runs-config")
def _(ctx):
    run = ctx.copy_run(ctx.runs.ecg)
    f = ctx.write("ok.txt", "0.1 0.2\n" * 50)
    return (["detect", str(run), str(f), "--out", str(run / "config.json")],
            [str(run / "config.json"), "would replace the run's own config.json"])


@case("detect-out-is-the-signal")
def _(ctx):
    f = ctx.write("ok.txt", "0.1 0.2\n" * 50)
    return _detect(ctx, f, "--out", str(f)), [str(f), "names the input file"]


@case("detect-wfdb-other-sampling-rate")
def _(ctx):
    import wfdb

    d = ctx.tmp / "wfdb360"
    d.mkdir()
    t = np.arange(900) / 360.0
    wfdb.wrsamp("r360", fs=360, units=["mV"] * 2, sig_name=["s0", "s1"], fmt=["16"] * 2, write_dir=str(d),
                p_signal=np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)], 1))
    hea = d / "r360.hea"
    return _detect(ctx, hea), [str(hea), "sampled at 360 Hz", "resample"]


@case("detect-signal-and-stream")
def _(ctx):
    f = ctx.write("ok.txt", "0.1 0.2\n" * 50)
    return _detect(ctx, f, "--stream"), ["--stream", "reads standard input"]


@case("detect-stream-binary-junk", stdout_ok=True)
def _(ctx):
    ctx.stdin = "0.1 0.2\n0.2 0.1\n\x00\x01\x02\n"
    return ["detect", str(ctx.runs.ecg), "--stream"], ["line 3", "<stdin>", "is not a number"]


@case("detect-with-a-names-run")
def _(ctx):
    f = ctx.write("ok.txt", "0.1 0.2\n" * 50)
    return ["detect", str(ctx.runs.names), str(f)], [str(ctx.runs.names), "ecg-anomaly", "does not score signals"]


@case("detect-text-100mb-line")
def _(ctx):
    f = ctx.tmp / "wide.txt"
    with open(f, "wb") as out:
        chunk = b"0.5 " * (1 << 18)
        for _ in range(100):
            out.write(chunk)
        out.write(b"\n")
    return _detect(ctx, f), [str(f), "line 1", "characters on one line"]


# ---- evaluate / predict / explain / export / serve / generate on run directories ----

@case("evaluate-run-missing")
def _(ctx):
    return ["evaluate", str(ctx.tmp / "no-run")], [str(ctx.tmp / "no-run"), "no such run directory"]


@case("evaluate-run-is-a-file")
def _(ctx):
    f = ctx.write("run.txt", "hello")
    return ["evaluate", str(f)], [str(f), "not a directory"]


@case("evaluate-run-without-weights")
def _(ctx):
    run = ctx.copy_run(ctx.runs.names)
    (run / "model.safetensors").unlink()
    return ["evaluate", str(run)], [str(run), "model.safetensors"]


@case("evaluate-config-not-json")
def _(ctx):
    run = ctx.copy_run(ctx.runs.ucr)
    (run / "config.json").write_text('{"task": "classify", ')
    return ["evaluate", str(run)], [str(run / "config.json"), "not valid JSON (Expecting property name enclosed in "
                                                             "double quotes at line 1 column 22)"]


@case("evaluate-weights-truncated")
def _(ctx):
    run = ctx.copy_run(ctx.runs.ucr)
    w = run / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    return ["evaluate", str(run)], [str(w), "not a readable safetensors file"]


@case("evaluate-recorded-test-file-gone")
def _(ctx):
    train_file = ctx.write("U_TRAIN.txt", _ucr_lines(30, 16, 0))
    run = ctx.copy_run(ctx.runs.ucr)
    cfg = json.loads((run / "config.json").read_text())
    cfg["train_file"] = str(train_file.with_name("moved.txt"))
    (run / "config.json").write_text(json.dumps(cfg))
    return ["evaluate", str(run)], ["moved.txt", "no such file"]


@case("predict-run-incomplete")
def _(ctx):
    run = ctx.copy_run(ctx.runs.names)
    (run / "config.json").unlink()
    return ["predict", str(run), "Smith"], [str(run), "config.json"]


@case("predict-weights-junk")
def _(ctx):
    run = ctx.copy_run(ctx.runs.names)
    (run / "model.safetensors").write_bytes(b"\x80\x04\x95 pickle? no.")
    return ["predict", str(run), "Smith"], [str(run / "model.safetensors"), "not a readable safetensors file"]


@case("predict-file-missing")
def _(ctx):
    return (["predict", str(ctx.runs.names), "--file", str(ctx.tmp / "in.txt")],
            [str(ctx.tmp / "in.txt"), "no such file"])


@case("predict-file-non-utf8")
def _(ctx):
    f = ctx.write("in.txt", b"Smith\nM\xfcller\n")
    return ["predict", str(ctx.runs.names), "--file", str(f)], [str(f), "UTF-8"]


@case("predict-file-is-a-directory")
def _(ctx):
    d = ctx.tmp / "inputs"
    d.mkdir()
    return ["predict", str(ctx.runs.names), "--file", str(d)], [str(d), "Is a directory"]


@case("predict-file-empty")
def _(ctx):
    f = ctx.write("in.txt", "\n\n")
    return ["predict", str(ctx.runs.names), "--file", str(f)], [str(f), "no inputs"]


@case("predict-top-zero")
def _(ctx):
    return ["predict", str(ctx.runs.names), "--top", "0", "Smith"], ["top"]


@case("predict-unknown-characters")
def _(ctx):
    return ["predict", str(ctx.runs.names), "\x00\x01"], ["'\\x00\\x01'", "no character the model was trained on"]


@case("predict-series-wrong-feature-count")
def _(ctx):
    return ["predict", str(ctx.runs.ucr), "[[0.1, 0.2], [0.3, 0.4]]"], ["input 1", "(T, 1)"]


@case("predict-series-inf")
def _(ctx):
    return ["predict", str(ctx.runs.ucr), ", ".join(["0.1"] * 15 + ["inf"])], ["input 1", "NaN or infinite"]


@case("explain-no-inputs")
def _(ctx):
    return ["explain", str(ctx.runs.names), "--out", str(ctx.tmp / "ex")], ["INPUT", "give at least one"]


@case("explain-zero-steps")
def _(ctx):
    return (["explain", str(ctx.runs.names), "Smith", "--steps", "0", "--out", str(ctx.tmp / "ex")],
            ["steps", "must be positive"])


@case("explain-unknown-target")
def _(ctx):
    return (["explain", str(ctx.runs.names), "Smith", "--target", "Klingon", "--out", str(ctx.tmp / "ex")],
            ["'Klingon'", "is not a class of"])


@case("resume-an-empty-checkpoint")
def _(ctx):
    run = ctx.copy_run(ctx.runs.names)
    (run / "metrics.json").unlink()  # an interrupted run
    (run / "checkpoint.pt").write_bytes(b"")
    return ["train", "--resume", str(run)], [str(run / "checkpoint.pt"), "not a loadable checkpoint (an empty file)"]


@case("detect-out-in-a-missing-folder")
def _(ctx):
    signal = ctx.write("sig.txt", "".join(f"{0.01 * i:.3f} {0.02 * i:.3f}\n" for i in range(200)))
    out = ctx.tmp / "no-such-folder" / "scores.csv"
    return (["detect", str(ctx.runs.ecg), str(signal), "--out", str(out)],
            [str(out), "cannot write it", "is not a directory"])


@case("serve-port-in-use")
def _(ctx):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ctx.keep = taken  # held open until the case has run
    port = taken.getsockname()[1]
    return ["serve", str(ctx.runs.names), "--port", str(port)], [f"127.0.0.1:{port}", "cannot listen there"]


@case("detect-out-is-a-directory")
def _(ctx):
    signal = ctx.write("sig.txt", "".join(f"{0.01 * i:.3f} {0.02 * i:.3f}\n" for i in range(200)))
    (ctx.tmp / "a-folder").mkdir()
    return (["detect", str(ctx.runs.ecg), str(signal), "--out", str(ctx.tmp / "a-folder")],
            [str(ctx.tmp / "a-folder"), "is a directory; give a file name"])


@case("predict-a-run-of-runs")
def _(ctx):
    parent = ctx.tmp / "folds"
    shutil.copytree(ctx.runs.names, parent / "fold-01")
    shutil.copytree(ctx.runs.names, parent / "fold-02")
    return ["predict", str(parent), "Smith"], [str(parent), "holds 2 runs", "fold-01, fold-02", "give one of them"]


@case("diagnose-negative-threads")
def _(ctx):
    return (["diagnose", "gradients", "--cell", "elman", "--length", "5", "--threads", "-1", "--out",
             str(ctx.tmp / "dg")], ["--threads must be >= 0"])


@case("train-toml-task-not-a-name")
def _(ctx):
    f = ctx.write("t.toml", 'task = ["classify"]\n')
    return ["train", str(f), "--out", str(ctx.tmp / "run")], [str(f), "task must be a task name", "['classify']"]


@case("csv-header-field-over-the-csv-limit")
def _(ctx):
    f = ctx.write("big.csv", "label," + "x" * 200_000 + "\n1,2\n")
    return ["train", "classify", "--train", str(f), "--out", str(ctx.tmp / "run")], [str(f), "line 1", "field larger"]


@case("ucr-forecast-series-too-short-for-the-baseline")
def _(ctx):
    f = ctx.write("short.txt", "".join(f"{i % 2} " + " ".join(f"{0.1 * j:.1f}" for j in range(8)) + "\n"
                                       for i in range(30)))
    return (["train", "forecast", "--train", str(f), "--out", str(ctx.tmp / "run"), "hidden_size=4", "epochs=1"],
            [str(f), "no train series is longer than baseline_order + horizon"])


@case("csv-column-named-twice")
def _(ctx):
    f = ctx.write("twice.csv", "sequence,label,sequence\n" + "".join(f"ACGT,{i % 2},GGCA\n" for i in range(30)))
    return ["train", "classify", "--train", str(f), "--out", str(ctx.tmp / "run")], [str(f), "given twice: 'sequence'"]


@case("csv-nan-label")
def _(ctx):
    f = ctx.write("nan.csv", "sequence,label\n" + "".join(f"ACGT,{'nan' if i == 3 else i % 2}\n" for i in range(30)))
    return ["train", "classify", "--train", str(f), "--out", str(ctx.tmp / "run")], [str(f), "line 5", "label 'nan'"]


@case("config-record-option-a-task-does-not-read")
def _(ctx):
    f = ctx.write("ok.csv", "sequence,label\n" + "".join(f"ACGT,{i % 2}\n" for i in range(30)))
    return (["train", "classify", "--train", str(f), "--out", str(ctx.tmp / "run"), "record=../../x"],
            ["record applies to ecg-anomaly and mitdb-qrs", "'classify'"])


@case("train-out-empty")
def _(ctx):
    return ["train", "names", "--out", ""], ["--out: an empty path"]


@case("train-out-name-too-long")
def _(ctx):
    return (["train", "names", "--out", str(ctx.tmp / ("x" * 300))], ["not a usable run directory", "too long"])


@case("npz-float-y-is-not-labels")
def _(ctx):
    f = ctx.tmp / "fy.npz"
    np.savez(f, X=np.ones((30, 5, 1), np.float32), y=np.linspace(0, 1, 30))
    return ["train", "classify", "--train", str(f), "--out", str(ctx.tmp / "run")], [str(f), "non-integer", "class labels"]


@case("npz-complex-x")
def _(ctx):
    f = ctx.tmp / "cx.npz"
    np.savez(f, X=np.ones((30, 5, 1)) + 1j, y=np.arange(30) % 2)
    return ["train", "classify", "--train", str(f), "--out", str(ctx.tmp / "run")], [str(f), "complex128"]


@case("data-verify-data-dir-missing")
def _(ctx):
    return ["data", "verify", "--data-dir", str(ctx.tmp / "nowhere")], [str(ctx.tmp / "nowhere"), "no such directory"]


@case("explain-a-run-that-reads-no-symbols")
def _(ctx):
    return (["explain", str(ctx.runs.ecg), "x", "--out", str(ctx.tmp / "ex")],
            [str(ctx.runs.ecg), "ecg-anomaly run", "explain reads runs of classifiers over symbols"])


@case("explain-a-classify-run-of-values")
def _(ctx):
    return (["explain", str(ctx.runs.ucr), "0.1", "--out", str(ctx.tmp / "ex")],
            [str(ctx.runs.ucr), "classify run (VectorClassifier)", "over symbols"])


@case("diagnose-gradients-of-a-run-that-reads-no-symbols")
def _(ctx):
    return (["diagnose", "gradients", str(ctx.runs.ecg), "--data-dir", str(ctx.runs.root / "ecg-data"),
             "--out", str(ctx.tmp / "dg")], [str(ctx.runs.ecg), "diagnose gradients reads runs of classifiers"])


@case("diagnose-states-of-a-run-that-reads-no-symbols")
def _(ctx):
    return (["diagnose", "states", str(ctx.runs.ucr), "0.1", "--out", str(ctx.tmp / "ds")],
            [str(ctx.runs.ucr), "diagnose states reads runs of classifiers"])


@case("explain-out-is-a-file")
def _(ctx):
    f = ctx.write("ex", "a file")
    return ["explain", str(ctx.runs.names), "Smith", "--out", str(f)], [str(f), "not a directory"]


@case("explain-run-missing")
def _(ctx):
    return ["explain", str(ctx.tmp / "nothing"), "Smith"], [str(ctx.tmp / "nothing"), "no such run directory"]


@case("export-out-replaces-the-runs-weights")
def _(ctx):
    run = ctx.copy_run(ctx.runs.names)
    return (["export", str(run), "--format", "torchscript", "--out", str(run / "model.safetensors")],
            [str(run / "model.safetensors"), "would replace the run's own model.safetensors"])


@case("export-torchscript-named-onnx")
def _(ctx):
    out = ctx.tmp / "m.onnx"
    return (["export", str(ctx.runs.names), "--format", "torchscript", "--out", str(out)],
            [str(out), "the torchscript file would carry a .onnx name"])


@case("explain-absurd-steps")
def _(ctx):
    return (["explain", str(ctx.runs.names), "Smith", "--steps", "100000000", "--out", str(ctx.tmp / "ex")],
            ["--steps must be at most 256"])


@case("explain-input-too-long-for-the-work-limit")
def _(ctx):
    # 100,000 characters: ten billion symbol steps, which ran with no end in sight
    return (["explain", str(ctx.runs.names), "a" * 100_000, "--out", str(ctx.tmp / "ex")],
            ["100000 characters", "more than --max-work"])


@case("diagnose-run-with-fresh-network-options")
def _(ctx):
    return (["diagnose", "gradients", str(ctx.runs.names), "--hidden", "7", "--out", str(ctx.tmp / "dg")],
            ["--hidden applies to fresh --cell networks, not to a RUN"])


@case("diagnose-states-run-with-stream")
def _(ctx):
    return (["diagnose", "states", str(ctx.runs.names), "Smith", "--stream", "10", "--out", str(ctx.tmp / "ds")],
            ["--stream applies to fresh --cell networks, not to a RUN"])


@case("diagnose-nan-forget-bias")
def _(ctx):
    return (["diagnose", "gradients", "--cell", "lstm", "--length", "5", "--forget-bias", "nan", "--out",
             str(ctx.tmp / "dg")], ["--forget-bias must be a finite number"])


@case("diagnose-network-too-big")
def _(ctx):
    return (["diagnose", "gradients", "--cell", "elman", "--length", "5", "--hidden", "1000000", "--batch", "1",
             "--out", str(ctx.tmp / "dg")], ["--hidden 1000000", "GiB is available"])


@case("diagnose-seed-overflow")
def _(ctx):
    return (["diagnose", "gradients", "--cell", "elman", "--length", "5", "--seed", "99999999999999999999",
             "--out", str(ctx.tmp / "dg")], ["--seed must be in 0.."])


@case("experiment-lr-of-an-unknown-cell")
def _(ctx):
    return (["experiment", "long-lag", "--quick", "--cells", "elman", "--lr", "nosuch=1e-3", "--out",
             str(ctx.tmp / "ll")], ["--lr 'nosuch=1e-3'", "unknown cell 'nosuch'"])


@case("experiment-nan-clip")
def _(ctx):
    return (["experiment", "long-lag", "--quick", "--cells", "elman", "--clip", "nan", "--out", str(ctx.tmp / "ll")],
            ["--clip must be a finite number"])


@case("experiment-nan-explode-scale")
def _(ctx):
    # it used to fail only after the whole grid had trained, leaving half of --out written
    return (["experiment", "long-lag", "--quick", "--cells", "elman", "--explode-scale", "nan", "--out",
             str(ctx.tmp / "ll")], ["--explode-scale must be a finite number"])


@case("experiment-clip-without-clipping")
def _(ctx):
    return (["experiment", "long-lag", "--quick", "--cells", "elman", "--clipping", "off", "--clip", "5", "--out",
             str(ctx.tmp / "ll")], ["--clipping off runs none"])


@case("bench-absurd-threads")
def _(ctx):
    return ["bench", "--quick", "--threads", "100000"], ["--threads must be at most 1024"]


@case("bench-long-thin-shape-too-big")
def _(ctx):
    return ["bench", "--quick", "--shapes", "1x99999999x1x1"], ["1x99999999x1x1", "GiB is available"]


@case("export-out-symlink-loop")
def _(ctx):
    (ctx.tmp / "a.pt").symlink_to(ctx.tmp / "b.pt")
    (ctx.tmp / "b.pt").symlink_to(ctx.tmp / "a.pt")
    return (["export", str(ctx.runs.names), "--format", "torchscript", "--out", str(ctx.tmp / "a.pt")],
            ["a.pt", "Symlink loop"])


@case("export-unknown-format")
def _(ctx):
    return (["export", str(ctx.runs.names), "--format", "pickle", "--out", str(ctx.tmp / "m.pt")],
            ["pickle", "unknown export format"])


@case("export-run-without-weights")
def _(ctx):
    run = ctx.copy_run(ctx.runs.names)
    (run / "model.safetensors").unlink()
    return ["export", str(run), "--format", "torchscript"], [str(run), "model.safetensors"]


@case("export-out-in-missing-directory")
def _(ctx):
    out = ctx.tmp / "no" / "such" / "m.pt"
    return (["export", str(ctx.runs.names), "--format", "torchscript", "--out", str(out)],
            [str(out.parent), "does not exist"])


@case("serve-run-missing")
def _(ctx):
    return ["serve", str(ctx.tmp / "gone")], [str(ctx.tmp / "gone"), "no such run directory"]


@case("serve-zero-max-sequences")
def _(ctx):
    return ["serve", str(ctx.runs.names), "--max-sequences", "0"], ["max_sequences", "must be a positive integer"]


@case("serve-negative-max-length")
def _(ctx):
    return ["serve", str(ctx.runs.names), "--max-length", "-5"], ["max_length", "must be a positive integer"]


@case("serve-port-not-a-number")
def _(ctx):
    return ["serve", str(ctx.runs.names), "--port", "http"], ["--port", "'http'"]


@case("serve-forecast-like-run")
def _(ctx):
    return ["serve", str(ctx.runs.ecg)], [str(ctx.runs.ecg), "not a classification task"]


@case("generate-with-a-names-run")
def _(ctx):
    return ["generate", str(ctx.runs.names)], [str(ctx.runs.names), "generate-names"]


@case("generate-run-missing")
def _(ctx):
    return ["generate", str(ctx.tmp / "gone"), "-n", "2"], [str(ctx.tmp / "gone"), "no such run directory"]


@case("resume-finished-run")
def _(ctx):
    run = ctx.copy_run(ctx.runs.names)
    return ["train", "--resume", str(run)], [str(run), "nothing to resume"]


@case("resume-run-without-checkpoint")
def _(ctx):
    run = ctx.copy_run(ctx.runs.names)
    for name in ("checkpoint.pt", "metrics.json"):
        (run / name).unlink()
    return ["train", "--resume", str(run)], [str(run), "checkpoint", "missing, nothing to resume"]


@case("resume-not-a-run")
def _(ctx):
    d = ctx.tmp / "empty-run"
    d.mkdir()
    return ["train", "--resume", str(d)], [str(d), "no config.json"]


@case("train-out-is-a-file")
def _(ctx):
    f = ctx.write("out", "a file")
    return ["train", "names", "--out", str(f), *TRAIN_TINY], [str(f), "is a file"]


# ---- diagnose / experiment / bench / cells / check / env / data ----

@case("diagnose-gradients-zero-length")
def _(ctx):
    return (["diagnose", "gradients", "--cell", "lstm", "--length", "0", "--out", str(ctx.tmp / "d")],
            ["length", "must be positive"])


@case("diagnose-gradients-unknown-cell")
def _(ctx):
    return ["diagnose", "gradients", "--cell", "lstmm", "--out", str(ctx.tmp / "d")], ["'lstmm'", "invalid choice"]


@case("diagnose-gradients-run-missing")
def _(ctx):
    return (["diagnose", "gradients", str(ctx.tmp / "nope"), "--out", str(ctx.tmp / "d")],
            [str(ctx.tmp / "nope"), "no such run directory"])


@case("diagnose-states-input-nan")
def _(ctx):
    f = ctx.write("x.csv", "0.1,0.2\n0.3,nan\n0.1,0.1\n")
    return (["diagnose", "states", "--cell", "lstm", "--input", str(f), "--out", str(ctx.tmp / "d")],
            [f"{f}:2", "not finite"])


@case("diagnose-states-input-ragged")
def _(ctx):
    f = ctx.write("x.csv", "0.1,0.2\n0.3\n0.1,0.1\n")
    return (["diagnose", "states", "--cell", "lstm", "--input", str(f), "--out", str(ctx.tmp / "d")],
            [f"{f}:2", "1 features, earlier rows have 2"])


@case("diagnose-states-input-non-utf8")
def _(ctx):
    f = ctx.write("x.csv", b"0.1,0.2\n\xff\xfe,0.1\n")
    return (["diagnose", "states", "--cell", "lstm", "--input", str(f), "--out", str(ctx.tmp / "d")],
            [str(f), "UTF-8"])


@case("diagnose-states-input-empty")
def _(ctx):
    f = ctx.write("x.csv", "")
    return (["diagnose", "states", "--cell", "lstm", "--input", str(f), "--out", str(ctx.tmp / "d")],
            [str(f), "no rows of numbers"])


@case("diagnose-states-zero-stream")
def _(ctx):
    return ["diagnose", "states", "--stream", "0", "--out", str(ctx.tmp / "d")], ["stream", "must be positive"]


@case("experiment-zero-lag")
def _(ctx):
    return (["experiment", "long-lag", "--quick", "--lags", "0", "--out", str(ctx.tmp / "e")],
            ["lag", "must be a positive integer"])


@case("experiment-absurd-grid")
def _(ctx):
    return (["experiment", "long-lag", "--lags", "1000000000", "--hidden", "100000", "--out", str(ctx.tmp / "e")],
            ["memory", "does not fit"])


@case("experiment-bad-lr")
def _(ctx):
    return ["experiment", "long-lag", "--quick", "--lr", "lstm=fast", "--out", str(ctx.tmp / "e")], ["lstm=fast"]


@case("bench-bad-shape")
def _(ctx):
    return ["bench", "--shapes", "4x0x3", "--quick"], ["4x0x3", "unknown shape"]


@case("bench-unknown-cell")
def _(ctx):
    return ["bench", "--cells", "lstm,grux", "--quick"], ["grux", "unknown cell"]


@case("bench-zero-repeats")
def _(ctx):
    return ["bench", "--repeats", "0", "--quick"], ["repeats", "must be a positive integer"]


@case("cells-unknown-name")
def _(ctx):
    return ["cells", "lsmt"], ["'lsmt'", "unknown cell"]


@case("check-unknown-cell")
def _(ctx):
    return ["check", "gruu"], ["gruu", "unknown cell"]


@case("check-seed-out-of-range")
def _(ctx):
    return ["check", "lstm", "--seed", "-1"], ["seed", "2**32-1"]


@case("env-unknown-option")
def _(ctx):
    return ["env", "--verbose"], ["--verbose", "unrecognized arguments"]


@case("native-no-action")
def _(ctx):
    return ["native"], ["required", "WHAT"]


@case("native-unknown-action")
def _(ctx):
    return ["native", "compile"], ["'compile'", "invalid choice"]


@case("data-fetch-unknown-set")
def _(ctx):
    return ["data", "fetch", "imagenet", "--data-dir", str(ctx.tmp / "d")], ["'imagenet'", "unknown data set"]


@case("data-fetch-mirror-url-without-host")
def _(ctx):
    # was exit 1, as if a download had failed
    return (["data", "fetch", "splice", "--mirror", "http://", "--data-dir", str(ctx.tmp / "d")],
            ["--mirror http://", "URL with a host"])


@case("data-fetch-mirror-url-unparsable")
def _(ctx):
    # was 'biornn: error: Invalid IPv6 URL', naming neither the option nor the value
    return (["data", "fetch", "splice", "--mirror", "http://[::1", "--data-dir", str(ctx.tmp / "d")],
            ["--mirror http://[::1", "not a usable URL"])


@case("data-fetch-mirror-missing")
def _(ctx):
    return (["data", "fetch", "splice", "--mirror", str(ctx.tmp / "mirror"), "--data-dir", str(ctx.tmp / "d")],
            [str(ctx.tmp / "mirror"), "is not a directory"])


@case("data-fetch-mirror-corrupt-file")
def _(ctx):
    mirror = ctx.tmp / "mirror"
    ctx.write("mirror/dna/splice.csv", "not the splice data\n")
    return (["data", "fetch", "splice", "--mirror", str(mirror), "--data-dir", str(ctx.tmp / "d")],
            ["splice.csv", "SHA-256"])


@case("data-verify-unknown-set")
def _(ctx):
    return ["data", "verify", "imagenet"], ["'imagenet'", "unknown data set"]


# -- the test ------------------------------------------------------------------------------


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (directories: size 0)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            out[str(p.relative_to(root))] = (0 if p.is_dir() else st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The case's working directory (also the cwd: default output folders would land here)."""
    monkeypatch.delenv("BIORNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for p in tmp_path.rglob("*"):  # the 100 MB inputs: not kept in pytest's last three temporary trees
        if p.is_file() and not p.is_symlink() and p.stat().st_size > (1 << 24):
            p.unlink()


@pytest.fixture
def no_server(monkeypatch):
    """A serve case that got past its checks would start uvicorn: fail instead of hanging."""
    import uvicorn

    def refuse(*a, **k):
        raise AssertionError("the server would have started")

    monkeypatch.setattr(uvicorn, "run", refuse)


@pytest.mark.parametrize("name", [pytest.param(n, marks=c.marks, id=n) for n, c in CASES.items()])
def test_bad_input_is_refused_with_one_line_and_nothing_written(name, runs, work, no_server, capsys,
                                                                 monkeypatch):
    ctx = Ctx(work, runs)
    argv, needles = CASES[name].build(ctx)
    if ctx.stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(ctx.stdin))
    before = {str(p): _listing(p) for p in (work, runs.root)}
    capsys.readouterr()
    try:
        code = main(argv)
    finally:
        for p in work.rglob("*"):  # let pytest clean up after the unreadable-file case
            if not p.is_symlink():
                p.chmod(0o700 if p.is_dir() else 0o600)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2, (code, captured.err[-2000:])
    assert len(err) == 1 and err[0].startswith("biornn: error: "), err
    assert "Traceback" not in captured.err
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    if not CASES[name].stdout_ok:
        assert captured.out == "", captured.out[:500]
    after = {str(p): _listing(p) for p in (work, runs.root)}
    assert after == before, "something was written"


#: case-name prefixes of the cases that run ``biornn train`` (by the input they feed it)
TRAIN_PREFIXES = {"fasta", "tsv", "ucr", "csv", "npz", "tag", "config", "names", "wfdb", "discord", "resume"}


def test_the_corpus_is_large_and_reaches_every_command():
    from biornn.cli.main import COMMANDS

    assert len(CASES) >= 60
    commands = {m.__name__.rsplit(".", 1)[1] for m in COMMANDS}
    prefixes = {n.split("-")[0] for n in CASES}
    # every case is named after its command (or the kind of training input), and every command has cases
    assert prefixes <= commands | TRAIN_PREFIXES, prefixes - commands - TRAIN_PREFIXES
    covered = {"train" if p in TRAIN_PREFIXES else p for p in prefixes}
    assert covered == commands, commands ^ covered


# -- the console script in a subprocess: no traceback reaches a terminal ---------------------

SUBPROCESS_CASES = ["fasta-binary-junk", "detect-wfdb-truncated", "predict-weights-junk",
                    "config-negative-hidden-size"]


@pytest.mark.skipif(not BIORNN.exists(), reason="the console script is not installed beside this python")
def test_console_script_prints_one_line_and_no_traceback(runs, work):
    # the processes run side by side: each pays the interpreter's and torch's start-up once
    env = {k: v for k, v in os.environ.items() if k != "BIORNN_DATA"}
    started = []
    for name in SUBPROCESS_CASES:
        ctx = Ctx(work / name, runs)
        ctx.tmp.mkdir()
        argv, needles = CASES[name].build(ctx)
        before = _listing(ctx.tmp)
        proc = subprocess.Popen([str(BIORNN), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=ctx.tmp)
        started.append((name, ctx, needles, before, proc))
    for name, ctx, needles, before, proc in started:
        out, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, err[-2000:])
        assert len(lines) == 1 and "Traceback" not in err and out == "", (name, err[-2000:], out[:500])
        assert all(n in lines[0] for n in needles), (name, lines[0])
        assert _listing(ctx.tmp) == before, name
