"""The data-set registry: what each reference data set is, where it comes from, where it lies here.

Every file of every data set is listed with its SHA-256, so that a copy is
checked byte for byte wherever it came from: a mirror directory, an HTTP
mirror, or the file's canonical public URL. The data themselves are never part
of this repository; they are looked up, in this order, in

1. ``--data-dir DIR`` (the ``data_dir`` argument), when given;
2. ``$BIORNN_DATA``, when set;
3. the user cache, ``$XDG_CACHE_HOME/biornn`` (default ``~/.cache/biornn``),
   which is where :func:`fetch` writes when no ``data_dir`` is given.

A data directory has the layout of the reference mirror: ``names/*.txt``,
``ecg/mitdb/100.*``, ``ecg/discords/*``, ``dna/*.csv``, ``protein/*``.

``DataFile.url`` is set only where the file is an unmodified public file at a
known address; files that were converted or made for this project have
``url=None`` and can be fetched only from a mirror (``fetch(..., mirror=...)``).
Whatever the source, :func:`fetch` keeps a file only when its SHA-256 matches.

>>> sorted(DATASETS)
['ecg-discords', 'mitdb-100', 'names', 'promoters', 'protein-ss', 'splice']
>>> locate("nope")
Traceback (most recent call last):
...
biornn.data.registry.DataError: unknown data set 'nope'; known: ecg-discords, mitdb-100, names, promoters, protein-ss, splice
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATASETS",
    "DataError",
    "DataFile",
    "Dataset",
    "NetworkError",
    "cache_dir",
    "fetch",
    "file_sha256",
    "locate",
    "search_path",
    "verify",
]

ENV_VAR = "BIORNN_DATA"


class DataError(ValueError):
    """A data set is unknown, missing, corrupted or cannot be fetched (a one-line message)."""


class NetworkError(DataError):
    """A download failed (connection, HTTP status, timeout): the run failed, the input was fine."""


@dataclass(frozen=True)
class DataFile:
    """One file of a data set.

    Attributes
    ----------
    path : str
        Relative to the data directory, with ``/`` separators (``"names/Arabic.txt"``).
    sha256 : str
        SHA-256 of the exact bytes, lower-case hex.
    url : str or None
        Canonical public URL of this exact file; None where no byte-identical
        public copy is known (the file is a conversion, or made for this project).
    """

    path: str
    sha256: str
    url: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A named data set: its files and where they come from."""

    name: str
    title: str
    licence: str
    source: str  # citation and homepage
    files: tuple[DataFile, ...]
    note: str = ""


# ---------------------------------------------------------------------------
# The reference data sets. SHA-256s from the reference mirror's SHA256SUMS.

_PRACTICAL_PYTORCH = "https://raw.githubusercontent.com/spro/practical-pytorch/master/"
_NAMES = {
    "Arabic": "6f424a8dbe51cbbbabab7a57d38b617210125e4e3991f3c657cb79b8f104bafc",
    "Chinese": "09ba8f1f7e38dbc99372d461b26ad4433b811fc6bfa6a3ecca6fe11a9a777465",
    "Czech": "e17ab0ec47616a72c39cb85c783f70c3663ab64488721e5d8378f146d2226be7",
    "Dutch": "924f32b635170eae561f84538632138fc07d4c8bbd70ba3fb980de1ecc4d2af3",
    "English": "9cca037066d3d5989e24bc01801416162de506b5e28e15b7c092a47905d29bf2",
    "French": "81e65b36c60ed5b89a17422f6edcadbb89546f38ad69e960e64e7ba682012a95",
    "German": "7449cd590b97a733e18d613a4155decd77ec35dc5f8aadd7a82204dce4f051db",
    "Greek": "3555b5186de7f401e6d991b088e9e644ca3099116477818c25ab5793801389e6",
    "Irish": "cf8c7013256252a88d2503127b87282a11f21b2ff6db1bded68834c19a1ec058",
    "Italian": "f88414c27d0606a11a678b4859277828c2565d6cc4d9ee932deef6e94f3b35e4",
    "Japanese": "e0e717e114fec3e7eade4d9dabe0067c475f43147e36a22b47902ee76ad9e67f",
    "Korean": "cd54221ccb362a6cba4c78828838cf3268a0e59744767a37cf6ec4b74036b136",
    "Polish": "45bab898af2f60ed3a728bbf6980e28821011a7caa53227553b5785903a40826",
    "Portuguese": "50a8735f41f4f73757c8ce5b16cb0275cd86b2b214bcbc8c9805f508cb131c53",
    "Russian": "0cfe53ac18041e8f63666aa77313e0a3ff378facb132abee052d8ebdc8c3d62c",
    "Scottish": "78d0252711d87d948ea86fe34826c51d2d794a8e52d15b5d6f7b6244d45d62dd",
    "Spanish": "1bcb462ed3316756a85781d68232bddae04498fdddd5d9219c53fd1fbdeba7a7",
    "Vietnamese": "f3f9e4164ab47601178a6e45b216464a64122f49d05541f24bf18a757253281d",
}

_MITDB = "https://physionet.org/files/mitdb/1.0.0/"
_DISCORDS = {
    "chfdb_chf01_275.txt": "70f8ff3a4d313c366a1129489e2da4894cf19baa643ddef51468f5fe8e0ef22f",
    "chfdb_chf13_45590.txt": "bf52cbdeecfdbcb5a874647d60181bcee6d0511b248e72bd82db715620c65dc1",
    "chfdbchf15.txt": "648012391079448de366ee5907c7a33fc2534bc3570684ebd9a0df994ba508ac",
    "labels.json": "23bf97a2834231f87d39e06f849dc3d74ca10c1dc90174c8cc685a89f81aa020",
    "ltstdb_20221_43.txt": "5cac8afc3dd8dc4e1aeb85455ef1eacb2b284860008cec4b6ef5da8971cba166",
    "ltstdb_20321_240.txt": "123b8f1787fa75eb47235073724cbe55179b6f3ac80b6deccd446eba4d3ca787",
    "mitdb__100_180.txt": "aa137b4867777ee36a999762dd1129ec2231354c85753b75f5ecba863164e0d4",
    "qtdbsel102.txt": "0dd33344f46be43e51473ff2f0cd07e7bfea9eae52575c118cb21a266e12756a",
    "stdb_308_0.txt": "35e53874a0755dedf43d38de7b8f4f1cbd12c6a006c30bb51cfe6432d0c55321",
    "xmitdb_x108_0.txt": "ea50908be031f2f7f0f9c8c02e27af35c7d06ff1151046e52056c36c0e208fd2",
}
_UCI_PROTEIN = ("https://archive.ics.uci.edu/ml/machine-learning-databases/molecular-biology/"
                "protein-secondary-structure/")


def _dataset(name: str, title: str, licence: str, source: str, files, note: str = "") -> Dataset:
    return Dataset(name, title, licence, source, tuple(DataFile(*f) for f in files), note)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        _dataset(
            "names", "Surnames in 18 languages (PyTorch char-RNN tutorial)", "MIT",
            "Sean Robertson, PyTorch tutorial 'Classifying names with a character-level RNN' "
            "(https://download.pytorch.org/tutorial/data.zip, folder data/names/); "
            "https://github.com/spro/practical-pytorch (data/names/, LICENSE)",
            [(f"names/{lang}.txt", h, f"{_PRACTICAL_PYTORCH}data/names/{lang}.txt") for lang, h in _NAMES.items()]
            + [("names/LICENSE", "43466675f54af3b7add4df3819d9e36a922c7e1cdf17791cb132e3f8328a0df8",
                f"{_PRACTICAL_PYTORCH}LICENSE")],
            note="20,050 lines, 18,012 distinct (name, language) pairs. names/LICENSE is the "
            "practical-pytorch repository's LICENSE (checked against a stored copy); the "
            "per-language files are the tutorial's data/names files (one checked against a third-party "
            "copy of data.zip); the raw GitHub URLs are not checked byte for byte.",
        ),
        _dataset(
            "mitdb-100", "MIT-BIH Arrhythmia Database, record 100 (2 leads, 360 Hz, beat annotations)",
            "ODC-By-1.0",
            "PhysioNet, https://physionet.org/content/mitdb/1.0.0/; Moody & Mark, IEEE Eng Med Biol "
            "20(3):45-50, 2001; Goldberger et al., Circulation 101(23):e215-e220, 2000",
            [("ecg/mitdb/100.atr", "8d8a5349fb16638ebbf649f1779d12e96d91b736b2aafe59db43719ae583d471",
              _MITDB + "100.atr"),
             ("ecg/mitdb/100.dat", "b2ea3c250e56e48f4b7b90697832b8ecd1afa1e0bb31f2dcfea4ed6e1075a639",
              _MITDB + "100.dat"),
             ("ecg/mitdb/100.hea", "95fbdda0454fffae1a2dab1a5ac53e924ae97691c028cdd3ee82f2446b73c066", None)],
            note="100.hea is not PhysioNet's header byte for byte: it has an extra comment line, a blank line "
            "and CRLF line ends (it looks like the wfdb-python package's sample-data/100.hea), though it "
            "describes the same record; fetch it from a mirror. 100.dat and 100.atr are PhysioNet's "
            "original files (not checked byte for byte offline).",
        ),
        _dataset(
            "ecg-discords", "UCR ECG discord excerpts with anomaly windows (9 two-lead ECGs)",
            "ODC-By-1.0 (signals, from PhysioNet); labels.json made for this project",
            "Keogh, Lin & Fu, 'HOT SAX', ICDM 2005 (https://www.cs.ucr.edu/~eamonn/discords/); windows as in "
            "Malhotra et al., ESANN 2015; signals from PhysioNet (chfdb, ltstdb, mitdb, qtdb, stdb, xmitdb)",
            [(f"ecg/discords/{f}", h, None) for f, h in _DISCORDS.items()],
            note="No per-file public URL: most excerpts are distributed inside the UCR archive's ECG_data.zip "
            "(chfdbchf15.txt and qtdbsel102.txt also singly), not checked byte for byte; labels.json "
            "(anomaly windows, train/test rows) was written for this project. Fetch from a mirror.",
        ),
        _dataset(
            "splice", "Primate splice-junction DNA sequences (UCI): 3190 x 60 bp, classes EI/IE/N", "CC-BY-4.0",
            "UCI Machine Learning Repository, 'Molecular Biology (Splice-junction Gene Sequences)', "
            "https://archive.ics.uci.edu; Noordewier, Towell & Shavlik, NIPS 1991 (from GenBank 64.1)",
            [("dna/splice.csv", "f0d9602dc94a00189727ee345befaa35b946bcce5700d4d0b9929943d26c18f8", None)],
            note="A CSV conversion (header label,instance_name,sequence) of UCI's splice.data; no public "
            "byte-identical copy. Fetch from a mirror.",
        ),
        _dataset(
            "promoters", "E. coli promoter DNA sequences (UCI): 106 x 57 bp, +/-", "CC-BY-4.0",
            "UCI Machine Learning Repository, 'Molecular Biology (Promoter Gene Sequences)', "
            "https://archive.ics.uci.edu; Harley, Reynolds & Noordewier; Towell, Shavlik & Noordewier, AAAI 1990",
            [("dna/promoters.csv", "7481c8b145d160d7d1ee5824538bdd731a552504163080ecccab072e17fde432", None)],
            note="A CSV conversion (header class,sequence) of UCI's promoters.data; no public byte-identical "
            "copy. Fetch from a mirror.",
        ),
        _dataset(
            "protein-ss", "Globular-protein secondary structure (Qian & Sejnowski 1988): h/e/_ per residue",
            "non-commercial research use only",
            "CMU neural-network benchmark collection, in the UCI Machine Learning Repository as 'Molecular "
            "Biology (Protein Secondary Structure)'; Qian & Sejnowski, J Mol Biol 202:865-884, 1988",
            [(f"protein/protein-secondary-structure.{ext}", h, f"{_UCI_PROTEIN}protein-secondary-structure.{ext}")
             for ext, h in [("names", "900c42a2d30531d848a13a7141b60d26dda8e485a292fe9a92fd4564cd2bbba9"),
                            ("test", "2d24a7c9b4ff4e0216b6633ccd1446a0b8aa14d1515beede7ccfbf4887b3dfe6"),
                            ("train", "0c7f0b6645d9a9271cd913a1b911e8ab95d1cd1b4017e5871b23a2dcb2f43bfb")]],
            note="The benchmark's original files; the UCI URLs are the archive's long-standing paths, "
            "not checked byte for byte offline.",
        ),
    ]
}


# ---------------------------------------------------------------------------
# Where the data lie


def _dataset_named(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def cache_dir() -> Path:
    """The user cache: ``$XDG_CACHE_HOME/biornn``, default ``~/.cache/biornn``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "biornn"


def search_path(data_dir: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """The directories searched for data, in order, each with why it is searched.

    ``[(dir, "--data-dir"), (dir, "BIORNN_DATA"), (dir, "cache")]``, leaving out
    the first two when ``data_dir`` is None or ``$BIORNN_DATA`` is unset or empty.
    """
    dirs: list[tuple[Path, str]] = []
    if data_dir is not None and str(data_dir) != "":
        dirs.append((Path(data_dir).expanduser(), "--data-dir"))
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append((Path(env).expanduser(), ENV_VAR))
    dirs.append((cache_dir(), "cache"))
    return dirs


def _present(root: Path, ds: Dataset) -> int:
    return sum((root / f.path).is_file() for f in ds.files)


def locate(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The first directory of :func:`search_path` that holds every file of data set ``name``.

    Only the files' presence is checked here (cheap, done on every run); use
    :func:`verify` for the checksums.

    Raises
    ------
    DataError
        The name is unknown, or no directory holds the whole set (the message
        lists every place looked in).
    """
    ds = _dataset_named(name)
    if data_dir is not None and str(data_dir) != "" and not Path(data_dir).expanduser().is_dir():
        # a typo in the option must not fall through, silently, to $BIORNN_DATA or the cache
        what = "not a directory" if Path(data_dir).expanduser().exists() else "no such directory"
        raise DataError(f"{data_dir} (--data-dir): {what}")
    looked = []
    for root, why in search_path(data_dir):
        n = _present(root, ds)
        if n == len(ds.files):
            return root
        partial = f", {n} of {len(ds.files)} files" if n else ""
        looked.append(f"{root} ({why}{partial})")
    raise DataError(f"data set {name!r} not found: looked in {', '.join(looked)}; run '{fetch_command(name)}' "
                    f"or pass --data-dir DIR pointing at a mirror")


def fetch_command(name: str, paths: list[str] | None = None) -> str:
    """The ``biornn data fetch`` line that can get ``name`` (its files ``paths``, default all): with
    ``--mirror URL|DIR`` where one of them has no public byte-identical copy, which only a mirror has.

    >>> fetch_command("names"), fetch_command("splice")
    ('biornn data fetch names', 'biornn data fetch splice --mirror URL|DIR')
    """
    ds = _dataset_named(name)
    files = [f for f in ds.files if paths is None or f.path in paths]
    return f"biornn data fetch {name}" + (" --mirror URL|DIR" if any(f.url is None for f in files) else "")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, lower-case hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(name: str | None = None, data_dir: str | os.PathLike | None = None) -> list[dict]:
    """Check every file of one data set (or of all, for ``name=None``) against its SHA-256.

    Each set is checked in ``data_dir`` where that holds any of its files, else in
    the directory :func:`locate` would use, or, where no directory holds the
    whole set, in the first directory of :func:`search_path`.

    Returns
    -------
    list of dict
        One per file: ``{"dataset", "path", "status", "where"}`` with status
        ``"ok"``, ``"missing"`` or ``"checksum mismatch"`` and ``where`` the
        directory checked.
    """
    names = sorted(DATASETS) if name is None else [_dataset_named(name).name]
    rows = []
    for n in names:
        try:
            root = locate(n, data_dir)
        except DataError:
            root = search_path(data_dir)[0][0]
        if data_dir is not None and str(data_dir) != "" and _present(Path(data_dir).expanduser(), DATASETS[n]):
            # a copy of the set in --data-dir, even an incomplete one, is the copy to check: locate would
            # pass over it to $BIORNN_DATA's or the cache's, and a missing file would go unreported
            root = Path(data_dir).expanduser()
        for f in DATASETS[n].files:
            p = root / f.path
            if not p.is_file():
                status = "missing"
            else:
                status = "ok" if file_sha256(p) == f.sha256 else "checksum mismatch"
            rows.append({"dataset": n, "path": f.path, "status": status, "where": str(root)})
    return rows


# ---------------------------------------------------------------------------
# Fetching

_URL_SCHEMES = ("http", "https", "ftp")


def _is_url(src: str) -> bool:
    return urllib.parse.urlsplit(src).scheme in _URL_SCHEMES


def _local_mirror(mirror: str) -> Path:
    if mirror.startswith("file://"):
        return Path(urllib.request.url2pathname(urllib.parse.urlsplit(mirror).path))
    return Path(mirror).expanduser()


def _source(f: DataFile, mirror: str | None) -> str | None:
    """Where to read ``f`` from: under the mirror (URL or local path), else its public URL (or None)."""
    if mirror is None:
        return f.url
    if _is_url(mirror):
        return mirror.rstrip("/") + "/" + urllib.parse.quote(f.path)
    return str(_local_mirror(mirror) / f.path)


def _copy_checked(ds: Dataset, f: DataFile, src: str, dest: Path, timeout: float) -> None:
    """Copy ``src`` (URL or local file) to ``dest`` through a temporary file beside it; keep it only
    when its SHA-256 matches. ``dest`` is never seen half-written: it appears by ``os.replace``; the
    folders made for it are removed again when it is not kept (a refused file leaves nothing behind)."""
    created = []  # the folders this call makes, innermost first
    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        created.append(parent)
        parent = parent.parent
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {dest.parent}: {e.strerror or e}") from None
    # a fresh name beside dest (same file system, so os.replace is atomic), created with
    # 0o666 & ~umask like any new file (mkstemp's 0o600 would stay on the data file)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        _remove_empty(created)
        raise DataError(f"cannot write in {dest.parent}: {e.strerror or e}") from None
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            if _is_url(src):
                try:
                    with urllib.request.urlopen(src, timeout=timeout) as resp:
                        received = 0
                        while chunk := resp.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                            received += len(chunk)
                        # read(n) returns short, not an error, when the server closes early
                        expected = resp.headers.get("Content-Length")
                        if expected is not None and expected.isdigit() and received < int(expected):
                            raise NetworkError(f"could not download {f.path} from {src}: connection closed "
                                               f"after {received} of {expected} bytes")
                except urllib.error.HTTPError as e:
                    raise NetworkError(f"could not download {f.path} from {src}: HTTP {e.code} {e.reason}") from None
                except urllib.error.URLError as e:
                    reason = getattr(e.reason, "strerror", None) or e.reason
                    raise NetworkError(f"could not download {f.path} from {src}: {reason}") from None
                except (TimeoutError, socket.timeout):
                    raise NetworkError(f"could not download {f.path} from {src}: timed out after {timeout:g} s") \
                        from None
                except (OSError, http.client.HTTPException) as e:  # connection reset, truncated body
                    reason = getattr(e, "strerror", None) or repr(e)
                    raise NetworkError(f"could not download {f.path} from {src}: {reason}") from None
            else:
                try:
                    with open(src, "rb") as inp:
                        while chunk := inp.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                except FileNotFoundError:
                    raise DataError(f"data set {ds.name!r}: the mirror has no {f.path} (looked for {src})") from None
                except IsADirectoryError:
                    raise DataError(f"data set {ds.name!r}: {src} is a directory, not a file") from None
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != f.sha256:
            raise DataError(f"data set {ds.name!r}: {f.path} from {src} has SHA-256 {got[:12]}..., "
                            f"expected {f.sha256[:12]}...; nothing was written")
        os.replace(tmp, dest)
    except BaseException:  # including KeyboardInterrupt: never leave a partial file
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        _remove_empty(created)
        raise


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first) while they are empty; stop at the first that is not."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


def fetch(name: str, data_dir: str | os.PathLike | None = None, mirror: str | None = None,
          timeout: float = 60, log: Callable[[str], None] | None = None) -> Path:
    """Download the files of data set ``name`` that are missing or corrupted, and check them.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    data_dir : path, optional
        Where to write; default the user cache (:func:`cache_dir`).
    mirror : str, optional
        A data directory to copy from: a base URL (``http(s)://host/data``)
        or a local directory (or ``file://`` URL) with the mirror's layout; each
        file is read from ``mirror + "/" + path``. Default: each file's public ``url``.
    timeout : float
        Seconds to wait on the network, per connection and per read.
    log : callable, optional
        Called with one line per file (``"ok names/Arabic.txt"``, ``"fetched ..."``).

    Returns
    -------
    Path
        The directory now holding the whole, verified data set.

    Raises
    ------
    DataError
        Unknown name; a file to fetch has no public URL and no mirror was
        given; a mirror lacks a file; a file's SHA-256 does not match (nothing
        is written then). :class:`NetworkError` (a DataError) when a download fails.
    """
    ds = _dataset_named(name)
    root = Path(data_dir).expanduser() if data_dir is not None else cache_dir()
    if mirror is not None and not _is_url(mirror):
        if not _local_mirror(mirror).is_dir():
            raise DataError(f"mirror {mirror} is not a directory (give a data directory or an http(s) base URL)")
    todo = [f for f in ds.files if not ((root / f.path).is_file() and file_sha256(root / f.path) == f.sha256)]
    nosource = [f.path for f in todo if _source(f, mirror) is None]
    if nosource:
        if len(nosource) == 1:
            what = f"{nosource[0]} has"
        elif len(nosource) <= 3:
            what = f"{', '.join(nosource)} have"
        else:
            what = f"{len(nosource)} files ({nosource[0]}, {nosource[1]}, ...) have"
        raise DataError(f"data set {name!r}: {what} no public byte-identical copy to download; copy from a mirror: "
                        f"'biornn data fetch {name} --mirror URL|DIR' (see 'biornn data list --json' for the source)")
    for f in ds.files:
        if f not in todo:
            if log:
                log(f"ok       {f.path}")
            continue
        src = _source(f, mirror)
        _copy_checked(ds, f, src, root / f.path, timeout)
        if log:
            log(f"fetched  {f.path}  from {src}")
    return root

