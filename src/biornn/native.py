"""biornn's compiled time loops: build them on this machine, find them, load them.

:mod:`biornn.fast`'s hand-written BPTT runs its time loops as Python loops of
torch operations.  ``csrc/native.cpp`` is the same maths with the loops in C++
(one recurrent product and one fused, vectorised elementwise pass per step),
registered as ``torch.ops.biornn_native.*``.  It serves the cells torch has no
kernel for -- the peephole LSTM, the 1997 LSTM, the fully recurrent net -- and
the GRU; :func:`biornn.fast.method` takes it whenever it is loaded and the
tensors are on the CPU (the ``path`` ``"native"``), and falls back to the
Python loops (``"bptt"``) otherwise.  Both are tested against the step loop.

It is compiled once per machine, torch installation and source (about 10 s), by
``biornn native build`` (``make install`` runs it), into the user cache
(``$XDG_CACHE_HOME/biornn/native/<key>/``); nothing is ever compiled on the
fly during training.  ``BIORNN_NATIVE=0`` turns it off for a process.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import torch

from .errors import first_line

NAME = "biornn_native"
SOURCE = Path(__file__).with_name("csrc") / "native.cpp"
ABI_VERSION = 2  # csrc/native.cpp's abi_version()
ENV_VAR = "BIORNN_NATIVE"

_lock = threading.Lock()
_state: dict[str, object] = {"loaded": False, "tried": False, "error": None}


class NativeError(RuntimeError):
    """The compiled loops could not be built or loaded (the message says why)."""


def capability() -> str:
    """The vector instruction set the build targets: ``AVX512``, ``AVX2`` or ``DEFAULT``.

    The one torch's own kernels use on this CPU (``torch.backends.cpu``), so the
    compiled loops use the same vectorised exp as torch's sigmoid and tanh.
    """
    cap = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "DEFAULT"
    return cap if cap in ("AVX512", "AVX2") else "DEFAULT"


def _flags(cap: str) -> list[str]:
    flags = ["-O3", "-std=c++17" if sys.platform == "win32" else "-std=c++20"]
    if cap == "AVX512":
        flags += ["-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512", "-mavx512f", "-mavx512bw",
                  "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c"]
    elif cap == "AVX2":
        flags += ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c"]
    else:
        flags += ["-DCPU_CAPABILITY=DEFAULT"]
    return flags


def key() -> str:
    """What a build depends on: torch, Python, the instruction set and the source."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    # two torch builds of one version (say pip's and conda's) live in different places
    where = hashlib.sha256(os.path.dirname(os.path.realpath(torch.__file__)).encode()).hexdigest()[:6]
    v = sys.version_info
    return (f"torch{torch.__version__.replace('+', '-')}-{where}-py{v.major}{v.minor}-{capability().lower()}"
            f"-{digest}")


def build_dir() -> Path:
    """Where this machine's build lives: ``<user cache>/native/<key>``."""
    from .data.registry import cache_dir

    return cache_dir() / "native" / key()


def library_path() -> Path:
    return build_dir() / f"{NAME}.so"


def disabled() -> bool:
    """``BIORNN_NATIVE=0`` (or ``off``, ``false``, ``no``) turns the compiled loops off; ``1``, ``on``,
    ``true``, ``yes`` or unset leave them on; any other value is refused (``ValueError``), so that a
    misspelt switch does not silently leave them on."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("0", "off", "false", "no"):
        return True
    if value in ("", "1", "on", "true", "yes"):
        return False
    raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: expected 0, off, false or no (compiled loops off) "
                     f"or 1, on, true or yes")


def available() -> bool:
    """Whether the compiled loops are loaded in this process (loading them if built).

    Never compiles: a missing build means False (``biornn native build`` makes it).
    """
    if disabled():
        return False
    if _state["loaded"]:
        return True
    if _state["tried"]:
        return False
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                path = library_path()
                if path.exists():
                    _load(path)
                else:
                    _state["error"] = f"not built for this machine ({path} missing): run `biornn native build`"
            except NativeError as e:
                _state["error"] = str(e)
            except OSError as e:  # an unreadable cache directory: the Python loops serve
                _state["error"] = f"cannot look for the build: {e}"
    return bool(_state["loaded"])


def _load(path: Path) -> None:
    try:
        torch.ops.load_library(str(path))
        version = torch.ops.biornn_native.abi_version()
    except (OSError, RuntimeError) as e:
        raise NativeError(f"{path}: cannot load: {first_line(e, 400)}") from None
    if version != ABI_VERSION:
        raise NativeError(f"{path}: built from another version (ABI {version}, expected {ABI_VERSION})")
    _state["loaded"], _state["error"] = True, None


def status() -> dict[str, object]:
    """What ``biornn native status`` and ``biornn env`` print."""
    loaded = available()
    why = f"turned off ({ENV_VAR}=0)" if disabled() else _state["error"]
    return {"loaded": loaded, "disabled": disabled(), "capability": capability(),
            "library": str(library_path()), "built": library_path().exists(),
            "error": None if loaded else why}


def build(verbose: bool = False, force: bool = False) -> Path:
    """Compile ``csrc/native.cpp`` for this machine into :func:`build_dir` and load it.

    The compiler runs in a child process (torch's ``cpp_extension``, ninja) in a
    temporary directory; the library is moved into place only once built, so a
    half-written build is never left where :func:`available` looks.  With OpenMP
    where the compiler has it, else serial.

    Raises
    ------
    NativeError
        No C++ compiler or ninja, or the compilation failed (the compiler's first error).
    ValueError
        The build directory (under the user cache) cannot be created or written.
    """
    import subprocess

    target = library_path()
    if target.exists() and not force:
        if not _state["loaded"] and not disabled():
            _load(target)
        return target
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise NativeError("no C++ compiler found (set CXX, or install g++ or clang++)")
    if shutil.which("ninja") is None and not (Path(sys.executable).parent / "ninja").exists():
        raise NativeError("ninja is needed to build (pip install ninja)")
    try:  # an unusable cache directory is the user's setting to change: one line, exit 2
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{NAME}.probe.")
        probe.close()
    except OSError as e:
        raise ValueError(f"{target.parent}: cannot write the build there ({e.strerror or e}); point XDG_CACHE_HOME "
                         f"at a writable directory") from None
    flags = _flags(capability())
    linux = sys.platform.startswith("linux")
    attempts = [(flags + ["-fopenmp"], ["-lgomp"]), (flags, [])] if linux else [(flags, [])]
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # the venv's ninja
    last = ""
    for cflags, ldflags in attempts:
        with tempfile.TemporaryDirectory(prefix="biornn-native-") as tmp:
            script = (
                "import sys, torch\n"
                "from torch.utils.cpp_extension import load\n"
                f"load(name={NAME!r}, sources=[{str(SOURCE)!r}], extra_cflags={cflags!r}, "
                f"extra_ldflags={ldflags!r}, build_directory={tmp!r}, is_python_module=False, verbose={verbose!r})\n"
            )
            proc = subprocess.run([sys.executable, "-c", script], env=env, text=True,
                                  stdout=None if verbose else subprocess.PIPE,
                                  stderr=None if verbose else subprocess.STDOUT)
            built = Path(tmp) / f"{NAME}.so"
            if proc.returncode != 0 or not built.exists():
                last = proc.stdout or ""
                continue
            fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{NAME}.", suffix=".so")
            os.close(fd)
            shutil.copyfile(built, part)
            os.replace(part, target)
        if not _state["loaded"] and not disabled():
            _state["tried"] = True
            _load(target)
        return target
    raise NativeError(f"compiling {SOURCE.name} failed: {compiler_error(last)}")


def compiler_error(output: str) -> str:
    """The line of a failed build's output that says what went wrong: the compiler's first
    ``error:`` line (``native.cpp:12:3: error: ...``, ``fatal error: ...``), else the line after
    ninja's ``FAILED:``, else the first line that mentions an error, else the last line.  (torch's
    ``cpp_extension`` prints its own traceback before ninja's output, whose lines mention errors
    too: ``raise CalledProcessError(...``.)"""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    if not lines:
        return "no output"
    for ln in lines:
        if re.search(r"(^|[\s:])(fatal )?error:", ln, re.IGNORECASE) and not ln.startswith(("File ", "raise ")):
            return ln
    for k, ln in enumerate(lines[:-1]):
        if ln.startswith("FAILED:"):
            return lines[k + 1]
    return next((ln for ln in lines if "error" in ln.lower() and not ln.startswith(("File ", "raise "))), lines[-1])


def remove_stale() -> list[Path]:
    """Remove the other builds for this torch, Python and instruction set (other sources).

    ``biornn native build --prune`` calls it; nothing else does, since another checkout
    of biornn with another source may use one of them.  Builds for other torch or
    Python versions are always left alone.
    """
    here = build_dir()
    prefix = here.name.rsplit("-", 1)[0] + "-"
    removed = []
    for d in here.parent.glob(prefix + "*"):
        if d != here and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed
