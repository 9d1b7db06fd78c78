"""Turning an exception from a library (torch, safetensors, onnx, wfdb) into part of one error line."""

from __future__ import annotations


class Terminated(BaseException):
    """SIGTERM, raised where the program is (``biornn.cli.main`` installs the handler), so that a kill
    unwinds like Ctrl-C: half-written files are removed, a tracked run is marked KILLED."""


def first_line(e: BaseException, limit: int = 120) -> str:
    """The first non-empty line of ``str(e)``, at most ``limit`` characters (cut at a word, with
    "..."); the exception's type name where the message is empty (``torch.load`` of an empty file
    raises a bare ``EOFError``)."""
    for line in str(e).splitlines():
        line = line.strip()
        if line:
            if len(line) <= limit:
                return line
            cut = line[: limit - 3].rsplit(" ", 1)[0].rstrip(" ,;:(")
            return (cut or line[: limit - 3]) + "..."
    return type(e).__name__
