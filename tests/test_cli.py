"""The command line: help on every command, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from biornn.cli.main import build_parser, main

SUBCOMMANDS = ["train", "evaluate", "predict", "generate", "detect", "data", "env", "cells", "check", "bench",
               "diagnose", "experiment", "explain", "export", "serve"]


def test_console_script_help_lists_subcommands():
    exe = os.path.join(os.path.dirname(sys.executable), "biornn")
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for name in SUBCOMMANDS:
        assert name in res.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert "usage: biornn " + name in capsys.readouterr().out


def test_env_json_has_versions(capsys):
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"].startswith("2.") and "numpy" in info and info["torch_threads"] >= 1
    import torch

    assert info["device_auto"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert info["distributed_backend"] in ("gloo", "cpu:gloo,cuda:nccl")


def test_cells_lists_every_name(capsys):
    from biornn import CELL_NAMES

    assert main(["cells"]) == 0
    out = capsys.readouterr().out
    for name in CELL_NAMES:
        assert name in out
    assert main(["cells", "lstm1997"]) == 0
    assert "c_t = z_t * i_t + c_{t-1}" in capsys.readouterr().out


def test_check_table_and_json(capsys):
    assert main(["check", "lstm1997", "fully-recurrent"]) == 0
    out = capsys.readouterr().out
    assert "nn.LSTM, f = 1" in out and "all within tolerance" in out
    assert main(["check", "--json", "gru"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["cell"] == "gru" and row["twin_max_abs"] <= 1e-5 and row["bptt_max_rel"] <= 1e-8


def test_check_fails_when_a_reference_disagrees(monkeypatch, capsys):
    from biornn.cells import GRUCell

    real_step = GRUCell.step

    def wrong_step(self, x, state):  # a GRU with a bug: the update gate ignored
        new, gates = real_step(self, x, state)
        return type(new)(gates["candidate"]), gates

    monkeypatch.setattr(GRUCell, "step", wrong_step)
    assert main(["check", "gru"]) == 1
    assert "SOME CHECKS FAILED" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["cells", "lstm97"], "lstm97"),
        (["check", "nope"], "nope"),
        (["frobnicate"], "frobnicate"),
        (["check", "--seed", "x"], "--seed"),
        (["check", "--seed", "99999999999999999999"], "--seed"),
        (["check", "--seed"], "--seed"),
    ],
)
def test_bad_usage_exits_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("biornn: error:") and needle in lines[0]


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert "usage" in captured.out
    assert captured.err.splitlines() == ["biornn: error: no command given (see 'biornn --help')"]


def test_closed_pipe_and_full_disk_are_one_line_not_a_traceback(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "biornn")
    res = subprocess.run(f"'{exe}' cells | head -c 10 >/dev/null", shell=True, capture_output=True,
                         text=True, timeout=120)
    assert "Traceback" not in res.stderr and "Exception" not in res.stderr
    if os.path.exists("/dev/full"):
        res = subprocess.run([exe, "env"], stdout=open("/dev/full", "w"), stderr=subprocess.PIPE,
                             text=True, timeout=120)
        assert res.returncode == 1
        assert res.stderr.splitlines() == ["biornn: error: No space left on device"]


def test_parser_builds():
    assert build_parser().prog == "biornn"


def test_check_reports_gradcheck(capsys):
    assert main(["check", "--json", "lstm-peephole"]) == 0
    assert json.loads(capsys.readouterr().out)["gradcheck"] is True


@pytest.mark.parametrize("name", ["elman", "irnn", "fully-recurrent", "lstm1997", "lstm-peephole", "gru"])
def test_cells_name_prints_plain_text(name, capsys):
    assert main(["cells", name]) == 0
    out = capsys.readouterr().out
    assert "\\" not in out and ".. math::" not in out and ":math:" not in out and "&=" not in out
    assert "Parameters" in out


def test_cells_irnn_says_how_it_is_initialised(capsys):
    assert main(["cells", "irnn"]) == 0
    assert "recurrent weights identity, input weights normal, biases zeros" in capsys.readouterr().out


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError(
    "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate "
    "40000000000 bytes. Error code 12 (Cannot allocate memory)")])
def test_out_of_memory_is_one_line_and_exit_2(error, monkeypatch, capsys):
    """Sizes no check caught that do not fit: one line naming the problem, no traceback."""
    import biornn.cli.diagnose as diagnose

    def boom(args):
        raise error

    monkeypatch.setattr(diagnose, "run_states", boom)
    assert main(["diagnose", "states", "--stream", "20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("biornn: error: out of memory"), err
    if isinstance(error, RuntimeError):
        assert "37.3 GiB" in err


def test_other_runtime_errors_are_not_called_out_of_memory(monkeypatch):
    import biornn.cli.diagnose as diagnose

    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(diagnose, "run_states", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["diagnose", "states", "--stream", "20"])


def test_sigterm_unwinds_like_ctrl_c_and_leaves_no_temporary_file(monkeypatch, tmp_path, capsys):
    """A plain kill (SIGTERM) in the middle of an atomic write: exit 143, one line, no half-written file."""
    import signal

    import biornn.cli.diagnose as diagnose
    from biornn.checkpoint import atomic_path

    def killed_while_writing(args):
        with atomic_path(tmp_path / "result.json") as tmp:
            tmp.write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
        return 0

    monkeypatch.setattr(diagnose, "run_states", killed_while_writing)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["diagnose", "states", "--stream", "20"]) == 143
    assert capsys.readouterr().err == "biornn: terminated\n"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the command's only


def test_a_word_among_overrides_is_named(capsys):
    assert main(["train", "names", "--out", "zz-never", "threads=1", "novalue"]) == 2
    err = capsys.readouterr().err
    assert err == "biornn: error: override 'novalue' is not of the form key=value\n"


def test_no_output_replaces_a_file_of_any_run_directory(tmp_path):
    """refuse_overwriting: another run's files, a record=all folder's summary, a run stopped before its
    first checkpoint; a folder that is no run, and a file that is no run file, are left to the user."""
    from biornn.checkpoint import refuse_overwriting

    mine = tmp_path / "mine"
    mine.mkdir()
    every = tmp_path / "all"  # ecg-anomaly record=all: config, metrics, summary, no weights of its own
    every.mkdir()
    for name in ("config.json", "metrics.json", "summary.json"):
        (every / name).write_text("{}")
    early = tmp_path / "early"
    early.mkdir()
    (early / "config.json").write_text('{"task": "names"}')
    for target in (every / "summary.json", every / "metrics.json", early / "config.json"):
        with pytest.raises(ValueError, match=f"would replace the {target.name} of the run {target.parent}"):
            refuse_overwriting(target, mine)
    # another run's plots too (export --out e1/curves.png replaced one with an ONNX file), a sub-run's included
    sub = every / "chfdbchf15"
    sub.mkdir()
    (sub / "config.json").write_text('{"task": "ecg-anomaly"}')
    (sub / "model.safetensors").write_bytes(b"")
    for target in (early / "curves.png", sub / "detection.png"):
        target.write_bytes(b"png")
        with pytest.raises(ValueError, match=f"would replace the {target.name} of the run {target.parent}"):
            refuse_overwriting(target, mine)
    refuse_overwriting(sub / "new.png", mine)  # a new file replaces nothing
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text('{"lr": 1}')  # someone's config, not a run's
    (plain / "curves.png").write_bytes(b"png")
    refuse_overwriting(plain / "curves.png", mine)
    refuse_overwriting(plain / "config.json", mine)
    refuse_overwriting(every / "model.onnx", mine)


@pytest.mark.parametrize("prefix, option", [
    (["bench"], "--cells"), (["experiment", "long-lag"], "--cells"),
    (["diagnose", "gradients"], "--cell"), (["diagnose", "gradients"], "--cells"), (["diagnose", "states"], "--cell"),
])
def test_cell_lists_are_taken_by_spaces_or_commas_in_every_command(prefix, option):
    """bench took only 'gru,lstm', experiment and diagnose only 'gru lstm' (and diagnose no --cells)."""
    parser = build_parser()
    for words in (["gru", "lstm-peephole"], ["gru,lstm-peephole"], ["gru,", "lstm-peephole"]):
        args, _ = parser.parse_known_args([*prefix, option, *words])
        assert (getattr(args, "cells", None) or getattr(args, "cell", None)) == ["gru", "lstm-peephole"], words


@pytest.mark.parametrize("argv, hint", [
    (["evaluate", "RUN", "--threads", "1"], "(see 'biornn evaluate --help')"),
    (["diagnose", "gradients", "--bogus", "1"], "(see 'biornn diagnose gradients --help')"),
    (["data", "list", "--bogus"], "(see 'biornn data list --help')"),
])
def test_an_unknown_option_points_at_its_commands_help(argv, hint, capsys):
    """It pointed at 'biornn --help', which does not list a subcommand's options."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(hint), err


def test_the_command_imports_no_torch_before_its_handlers_and_ctrl_c_while_it_loads_is_one_line():
    """Ctrl-C in the first second of any command (torch loading, before main's handlers) was a
    KeyboardInterrupt traceback; caught, it must not touch the half-imported torch again."""
    import subprocess
    import sys

    code = "import sys, biornn, biornn.cli.main; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "False", res.stderr[-2000:]
    code = ("import os, signal, sys, biornn.cli.main as m\n"
            "real = m.build_parser\n"
            "def build():\n"
            "    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the subcommands' modules load\n"
            "    return real()\n"
            "m.build_parser = build\n"
            "sys.exit(m.main(['cells']))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 130 and res.stderr == "biornn: interrupted\n" and res.stdout == "", res.stderr[-2000:]
