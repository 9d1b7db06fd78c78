"""Run directories on disk: atomic writes, weights in safetensors, resumable training state.

A run directory holds ``config.json``, ``model.safetensors`` (the weights,
with the config, vocabulary and labels as JSON metadata), ``metrics.json``,
``log.csv``, ``steps.csv``, plots, and ``checkpoint.pt`` (what ``--resume``
needs: optimiser, scheduler and RNG state).  Every file is written to a
temporary file in the same directory and renamed into place, so a crash
leaves either the old file or the new one, never half of one.  Nothing here
runs code from a file: weights load with safetensors, training state with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import first_line

#: bumped when the run directory's layout changes incompatibly
FORMAT_VERSION = "1"
RUN_FILES = ("config.json", "model.safetensors", "metrics.json")
#: every file a run directory's own commands read back (an output must never replace one)
OWN_FILES = (*RUN_FILES, "checkpoint.pt", "log.csv", "steps.csv", "tracking.json", "summary.json", "summary.md",
             "mlflow.db")


def same_file(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    """Whether two paths name one existing file (links and relative spellings included)."""
    return bool(a and b and Path(a).exists() and Path(b).exists() and os.path.samefile(a, b))


def is_run_dir(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a run written by ``biornn train``: its config.json beside its weights,
    checkpoint, metrics or summary (a ``record=all`` folder), or a config.json that names a task (a
    run stopped before its first checkpoint)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return False
    if any((folder / f).is_file() for f in ("model.safetensors", "checkpoint.pt", "metrics.json", "summary.json")):
        return True
    try:
        return '"task"' in (folder / "config.json").read_text(encoding="utf-8", errors="replace")[:100_000]
    except OSError:
        return False


def refuse_overwriting(out: str | os.PathLike, run: str | os.PathLike, inputs: tuple = (),
                       option: str = "--out") -> None:
    """``ValueError`` (one line) when the output file ``out`` would replace one of the run directory's
    own files (:data:`OWN_FILES`, also in a sub-run of ``record=all``) or one of the ``inputs`` being read."""
    try:
        target = Path(out).expanduser().absolute().resolve()
        home = Path(run).expanduser().absolute().resolve()
    except RuntimeError as e:  # pathlib: "Symlink loop from ..." (a path the user gave)
        raise ValueError(f"{out}: {e}") from None
    in_run = target.parent == home or target.parent.parent == home
    # the run's own files, and its plots (curves.png, detection.png, confusion.png, ...)
    if in_run and (target.name in OWN_FILES or (target.suffix.lower() == ".png" and target.exists())):
        raise ValueError(f"{out}: {option} would replace the run's own {target.name}; write elsewhere")
    # and those of any other run directory (or a sub-run of one): exporting into another run must not
    # break it, nor replace its plots
    plot = target.suffix.lower() == ".png" and target.exists()
    if (target.name in OWN_FILES or plot) and is_run_dir(target.parent):
        raise ValueError(f"{out}: {option} would replace the {target.name} of the run {target.parent}; "
                         f"write elsewhere")
    for f in inputs:
        if same_file(target, f):
            raise ValueError(f"{out}: {option} names the input file {f}; write elsewhere")


def _temp_beside(path: Path) -> Path:
    """An empty temporary file beside ``path`` (``.NAME.XXXXXXXX.SUFFIX``); ``ValueError`` naming
    ``path`` where it cannot be made."""
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    except (FileNotFoundError, NotADirectoryError):  # the user named a file in a folder that is not there
        if path.parent.is_dir():  # a folder no file can be made in, such as one under /proc
            raise ValueError(f"{path}: cannot write it: files cannot be created in {path.parent}") from None
        raise ValueError(f"{path}: cannot write it: {path.parent} is not a directory") from None
    except PermissionError:
        raise ValueError(f"{path}: cannot write it: no permission to create files in {path.parent}") from None
    os.close(fd)
    return Path(tmp)


def _settle(tmp: Path) -> None:
    """A written temporary file made ready to take its name: the mode a plain open() would give
    (mkstemp makes it 0600), and its bytes on disk."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    An ``OSError`` while writing (a full disk, a quota) is raised again naming ``path`` -- the file
    the user knows -- rather than the temporary one or none; the temporary file is removed."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        yield tmp
        _settle(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None or str(e.filename) == str(tmp):
            raise OSError(e.errno, f"cannot write it: {e.strerror or e}", str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _lock_folder() -> Path | None:
    """This user's folder of run locks, ``$XDG_RUNTIME_DIR`` or the temporary folder's
    ``biornn-locks-UID``; None where it cannot be made or is not this user's alone."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / f"biornn-locks-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None  # someone else's, or open to others: a lock file planted there must not be followed
    return folder


@contextmanager
def run_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of the run directory ``out`` (its absolute, resolved path) while the block runs;
    ``ValueError`` (one line) where another process holds it.

    Two trainings started on one ``--out`` both found it empty and wrote it together (a config of
    one, the weights and metrics of the other, both exit 0); a resume started beside a running
    training did the same.  The lock is an ``flock`` on a file in this user's lock folder
    (:func:`_lock_folder`), not in the run directory, so that it exists before the directory does
    and leaves nothing in it; the system releases it when the process ends, however it ends, and
    the file is removed on release (a process that opened it just before checks, once it holds the
    lock, that the file is still there, and takes the new one if not).  Where there is no
    ``flock``, or no lock folder can be had, the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    folder = _lock_folder()
    if folder is None:
        yield
        return
    try:
        where = str(Path(out).expanduser().absolute().resolve())
    except (OSError, RuntimeError):
        where = str(Path(out).expanduser().absolute())
    path = folder / f"{hashlib.sha256(where.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}.lock"
    fd = None
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            fd = None
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ValueError(f"{out}: another biornn process{holder} is writing this run directory; wait for "
                             f"it to end or choose another --out") from None
        except OSError:  # no locks on this file system (ENOLCK): as without flock
            os.close(fd)
            fd = None
            break
        try:
            if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
                break  # the file we hold is the one on disk
        except FileNotFoundError:
            pass
        os.close(fd)  # released and removed by its holder between our open and our lock: again
        fd = None
    if fd is None:
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        try:
            os.unlink(path)  # still held: whoever opened it meanwhile finds it gone and tries again
        except OSError:
            pass
        os.close(fd)


def _holder(fd: int) -> str:
    """`` (pid N)`` as the lock file holds it, else nothing."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f" (pid {text})" if text.isdigit() else ""


def run_in_use(out: str | os.PathLike) -> bool:
    """Whether another process holds the lock of the run directory ``out`` now (:func:`run_lock`)."""
    try:
        with run_lock(out):
            return False
    except ValueError:
        return True


def check_out_dir(path: str | os.PathLike, names: tuple[str, ...] = (), option: str = "--out") -> Path:
    """The output folder ``path``, checked before any work but not created: it must not be a file,
    the nearest folder that exists must be one, and none of the files ``names`` it will hold may be a
    folder.  ``ValueError`` (one line) otherwise."""
    if not str(path).strip():
        raise ValueError(f"{option}: an empty path; give a folder")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{out}: cannot create it: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{out}: cannot write there: no permission to create files in {probe}")
    for name in names:
        if (out / name).is_dir():
            raise ValueError(f"{out / name}: is a directory where a result file goes; remove it or give another --out")
    return out


class OutputSet:
    """Files written into one folder all or none (:func:`output_set`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.staged: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        """A temporary path in the folder that becomes ``folder/name`` when the whole set is written."""
        if name in self.staged:
            return self.staged[name]
        final = self.folder / name
        if final.is_dir():
            raise ValueError(f"{final}: is a directory where a result file goes; remove it or give another --out")
        self.staged[name] = _temp_beside(final)
        return self.staged[name]

    def discard(self) -> None:
        for tmp in self.staged.values():
            tmp.unlink(missing_ok=True)

    def commit(self) -> None:
        for tmp in self.staged.values():  # every file on disk before any takes its name
            _settle(tmp)
        for name, tmp in self.staged.items():
            os.replace(tmp, self.folder / name)


@contextmanager
def output_set(folder: str | os.PathLike, stale: tuple[str, ...] = ()) -> Iterator[OutputSet]:
    r"""Write several result files into ``folder`` all or none: ``files.path(name)`` gives a temporary
    path for each; when the block ends without an error they all take their names, and files whose
    whole name matches one of the regular expressions ``stale`` but that this set did not write (an
    earlier run's ``states-2.png`` beside a new run of one input: ``r"states-\d+\.png"``) are removed.
    On an error the temporary files are removed, and the folders this call made, if left empty."""
    folder = Path(folder)
    made = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    files = OutputSet(folder)
    try:
        yield files
        files.commit()
    except BaseException:
        files.discard()
        for d in made:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
        raise
    for f in folder.iterdir():
        if (any(re.fullmatch(pattern, f.name) for pattern in stale) and f.name not in files.staged
                and f.is_file() and not f.is_symlink()):
            f.unlink(missing_ok=True)


#: the names :func:`atomic_path` gives its temporary files (``tempfile.mkstemp``: 8 random characters)
_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]+)$")


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that a killed :func:`atomic_path` write left in ``folder``
    (``.NAME.XXXXXXXX.SUFFIX``, its suffix the one of NAME, or ``.tmp``); return what was removed.
    Only for a folder no other process writes to at the time (a run being resumed)."""
    removed = []
    for f in Path(folder).iterdir():
        m = _TEMP.match(f.name)
        if m and f.is_file() and not f.is_symlink() and m["suffix"] in (Path(m["name"]).suffix, ".tmp"):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None, so that ``json.dumps`` writes strict
    JSON (``NaN`` and ``Infinity`` are not JSON: strict parsers such as JavaScript's refuse them)."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def save_weights(path: str | os.PathLike, module: torch.nn.Module, metadata: dict[str, Any]) -> None:
    """The module's state dict as safetensors, ``metadata`` (JSON-able values) in the header."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    header = {k: json.dumps(v) for k, v in metadata.items()}
    header["format_version"] = FORMAT_VERSION
    # serialised here and written by Python, so that a full disk is an OSError naming the file
    # (safetensors' own writer raises SafetensorError with no name)
    data = save(tensors, metadata=header)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and decoded metadata of a safetensors file; ``ValueError`` naming it if unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    version = raw.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: written by a different biornn run format ({version!r}, this version reads "
            f"{FORMAT_VERSION!r}); retrain or use the biornn version that wrote it"
        )
    try:
        meta = {k: json.loads(v) for k, v in raw.items()}
    except json.JSONDecodeError:
        raise ValueError(f"{path}: metadata is not valid JSON") from None
    return tensors, meta


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Training state (tensors, numbers, strings, lists, dicts) for ``--resume``, atomically."""
    # into memory first and written by Python: torch's file writer reports a full disk as a
    # RuntimeError ("unexpected pos ..."), which names no file
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load training state with ``weights_only=True``: a checkpoint cannot run code."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: missing, nothing to resume") from None
    except Exception as e:  # unpickling refused or a damaged file
        if path.is_file() and path.stat().st_size == 0:
            why = "an empty file"
        elif "Weights only load failed" in str(e):
            # torch's own text speaks of its weights_only default, which misleads: the file is damaged,
            # not a biornn checkpoint, or holds objects a training checkpoint never does
            detail = str(e).split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0].strip()
            why = "damaged, or not a biornn training checkpoint" + (f": {detail[:80]}" if detail else "")
        else:
            why = first_line(e)
        raise ValueError(f"{path}: not a loadable checkpoint ({why})") from None


def check_run_dir(run: str | os.PathLike) -> Path:
    """A run directory with its essential files; ``ValueError`` naming what is missing."""
    run = Path(run)
    if not run.exists():
        raise ValueError(f"{run}: no such run directory")
    if not run.is_dir():
        raise ValueError(f"{run}: not a directory")
    missing = [f for f in RUN_FILES if not (run / f).is_file()]
    if missing:
        subruns = sorted(p.name for p in run.iterdir() if p.is_dir() and (p / "model.safetensors").is_file())
        if subruns:  # promoters' folds, ecg-anomaly record=all: each sub-directory is a run
            shown = ", ".join(subruns[:3]) + (", ..." if len(subruns) > 3 else "")
            raise ValueError(f"{run}: holds {len(subruns)} runs, one per sub-directory ({shown}); "
                             f"give one of them, e.g. {run / subruns[0]}")
        hint = ""
        if (run / "checkpoint.pt").is_file() and (run / "config.json").is_file() and not (run / "metrics.json").exists():
            hint = ("; another biornn process is training it now" if run_in_use(run)
                    else f"; training was interrupted: finish it with biornn train --resume {run}")
        raise ValueError(f"{run}: not a complete run directory (missing {', '.join(missing)}){hint}")
    return run
