"""The ``biornn`` command: one small module per subcommand, each ``add_parser`` + ``run``.

``main() -> int``: 0 on success, 1 on a failed run, 2 on bad usage or bad
input, with one clear line on stderr (DESIGN principle 11).
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import threading
from typing import Sequence

from .. import __version__
from ..errors import Terminated
from . import (bench, cells, check, data, detect, diagnose, env, evaluate, experiment, explain, export, generate,
               native, predict, serve, train)

COMMANDS = (train, evaluate, predict, generate, detect, data, cells, check, bench, env, native, diagnose, experiment,
            explain, export, serve)


class UsageError(Exception):
    """Bad usage or bad input: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="biornn",
        description="Recurrent neural networks for biomedical sequences: "
        "the textbook recurrences, exact and verified.",
    )
    parser.add_argument("--version", action="version", version=f"biornn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


#: OSErrors that say a path the user gave is unusable (a usage error, exit 2), not that the machine failed
PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EACCES,
                         errno.EPERM, errno.EROFS})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``biornn`` command line; return the exit code (under torchrun the process ends here,
    :func:`biornn.distributed.exit_after_group`)."""
    code = _main(argv)
    from ..distributed import exit_after_group

    exit_after_group(code)
    return code


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _main(argv: Sequence[str] | None) -> int:
    previous = None
    # a plain `kill` (SIGTERM) unwinds like Ctrl-C: every atomic write removes its temporary file.
    # Under torchrun the launcher owns the workers' signals; the main thread only can set a handler.
    if "WORLD_SIZE" not in os.environ and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: Sequence[str] | None) -> int:
    try:  # the subcommands' parsers import torch (about a second): Ctrl-C there is an interruption too
        parser = build_parser()
    except (KeyboardInterrupt, Terminated) as e:
        # nothing is written yet, and a torch whose import was cut short must not be touched again
        # (importing any part of it fails, and its half-made state can crash the interpreter's exit)
        print(f"biornn: {'interrupted' if isinstance(e, KeyboardInterrupt) else 'terminated'}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130 if isinstance(e, KeyboardInterrupt) else 143)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # key=value overrides may come after options (train TASK --epochs 3 lr=1e-3)
            if hasattr(args, "key_values") and all("=" in e and not e.startswith("-") for e in extra):
                args.key_values = [*args.key_values, *extra]
            elif hasattr(args, "inputs") and not any(e.startswith("-") for e in extra):
                args.inputs = [*args.inputs, *extra]  # predict RUN --top 2 Smith
            elif hasattr(args, "key_values") and not any(e.startswith("-") for e in extra):
                # train names --out r threads=1 novalue: name the word that is wrong, not every override
                bad = next(e for e in extra if "=" not in e)
                raise UsageError(f"override {bad!r} is not of the form key=value")
            else:
                where = " ".join(w for w in ("biornn", args.command, getattr(args, "what", None),
                                             getattr(args, "data_command", None)) if w)
                raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see '{where} --help')")
        if args.command is None:
            parser.print_help()
            raise UsageError("no command given (see 'biornn --help')")
        code = int(args.handler(args))
        sys.stdout.flush()
        return code
    except (UsageError, ValueError) as e:  # bad usage, and the library's argument checks
        print(f"biornn: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("biornn: error: out of memory: the sizes asked for do not fit; use smaller ones", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if "can't allocate memory" not in str(e):
            raise
        # torch's allocator: "DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes. ..."
        tried = re.search(r"allocate (\d+) bytes", str(e))
        size = f" ({int(tried[1]) / 2**30:.1f} GiB in one piece)" if tried else ""
        print(f"biornn: error: out of memory{size}: the sizes asked for do not fit; use smaller ones",
              file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (biornn cells | head): not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as e:  # e.g. stdout on a full disk; a path the user gave that names nothing usable
        where = f"{e.filename}: " if e.filename else ""
        print(f"biornn: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2 if e.errno in PATH_ERRNOS else 1
    except KeyboardInterrupt:
        print("biornn: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("biornn: terminated", file=sys.stderr)
        return 143


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
