"""Argument checks the subcommands share: one ``ValueError`` line naming the option."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..config import LIMITS


def threads(value: int | None, zero_ok: bool = False, option: str = "--threads") -> None:
    """Refuse a thread count below 1 (below 0 with ``zero_ok``: torch's choice) or above the config's
    limit (``threads`` in :data:`biornn.config.LIMITS`): OpenMP would try to start that many threads
    and the process would die with no message."""
    if value is None:
        return
    low = 0 if zero_ok else 1
    if value < low:
        raise ValueError(f"{option} must be >= {low}{' (0: torch' + chr(39) + 's choice)' if zero_ok else ''}, "
                         f"got {value}")
    if value > LIMITS["threads"]:
        raise ValueError(f"{option} must be at most {int(LIMITS['threads'])}, got {value}")


class CellList(argparse.Action):
    """A list of cell names after one option, written either way: ``--cells gru lstm`` or
    ``--cells gru,lstm`` (``bench`` took only the one, ``experiment`` and ``diagnose`` only the other);
    an unknown name is argparse's one-line error."""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.setdefault("nargs", "+")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from ..cells import CELL_NAMES

        names = [n.strip() for v in values for n in v.split(",") if n.strip()]
        if not names:
            parser.error(f"argument {option_string}: names no cell; give at least one (or leave it out)")
        for n in names:
            if n not in CELL_NAMES:
                parser.error(f"argument {option_string}: invalid choice: {n!r} (unknown cell; choose from "
                             f"{', '.join(CELL_NAMES)})")
        setattr(namespace, self.dest, names)


def finite(option: str, value: float | None) -> None:
    """Refuse NaN and infinities (argparse's ``float`` reads 'nan' and 'inf' as numbers)."""
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{option} must be a finite number, got {value}")


def seed(option: str, value: int | None) -> None:
    """Refuse a seed torch cannot take (below 0 or above 2**63 - 1) with the option's name."""
    if value is not None and not 0 <= value < 2**63:
        raise ValueError(f"{option} must be in 0..{2**63 - 1}, got {value}")


def benchmark_config(task: str, overrides: list[str], owned: dict[str, str]) -> Any:
    """The config a benchmark script trains ``task`` with, checked before any run: ``ValueError`` (one
    line) on an override that is not ``key=value``, an unknown key, a bad value, another ``task``, or a
    key the script sets itself (``owned``: key -> the option that sets it, e.g. ``{"seed": "--seed"}``)."""
    from ..config import resolve

    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected KEY=VALUE")
        if key == "task":
            raise ValueError(f"override {item!r}: this script trains {task}")
        if key in owned:
            raise ValueError(f"override {item!r}: the script sets {key} itself; use {owned[key]}")
    return resolve(task, overrides=overrides).validate()


def run_script(main_body, prog: str) -> int:
    """Run a benchmark script's body; a ``ValueError`` (bad data, a config the run refuses) becomes one line
    ``PROG: error: ...`` on stderr and exit 2, as the CLI does."""
    import sys

    try:
        return main_body()
    except ValueError as e:
        print(f"{prog}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
