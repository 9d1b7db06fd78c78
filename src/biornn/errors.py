"""Turning an exception from a library (torch, safetensors, onnx, wfdb) into part of one error line."""

from __future__ import annotations


def first_line(e: BaseException, limit: int = 120) -> str:
    """The first non-empty line of ``str(e)``, at most ``limit`` characters; the exception's type
    name where the message is empty (``torch.load`` of an empty file raises a bare ``EOFError``)."""
    for line in str(e).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(e).__name__
