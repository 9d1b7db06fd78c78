"""``biornn data``: list, fetch and verify the reference data sets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_WHERE = ("Data sets are looked for in --data-dir DIR, then $BIORNN_DATA, then the user cache "
          "($XDG_CACHE_HOME/biornn, default ~/.cache/biornn)")


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR", help="a data directory (mirror layout) to look in first")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..data.registry import DATASETS

    known = ", ".join(sorted(DATASETS))
    p = sub.add_parser("data", help="list, fetch and verify the reference data sets",
                       description=f"List, fetch and verify the reference data sets ({known}). {_WHERE}.")
    p.set_defaults(handler=_no_subcommand, _parser=p)
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    q = dsub.add_parser("list", help="one line per data set: files, size, where found, licence, title",
                        description=f"One line per data set: name, number of files, size on disk, where it was "
                        f"found (or 'not found'), licence and title. {_WHERE}.")
    _data_dir_arg(q)
    q.add_argument("--json", action="store_true", help="one JSON object per data set (with source and note)")
    q.set_defaults(handler=run_list)

    q = dsub.add_parser("fetch", help="download a data set, checking every file's SHA-256",
                        description="Download the files of data set NAME that are missing or corrupted, from "
                        "--mirror or else from each file's public URL, into --data-dir or else the user cache. "
                        "Every file is checked against its SHA-256 and written atomically; a file that does not "
                        "match is not kept. Exit 0 on success, 1 when a download fails, 2 on bad input "
                        "(unknown name, a file with no public copy and no --mirror, a mirror lacking a file, "
                        "a checksum mismatch).")
    q.add_argument("name", metavar="NAME", help=f"data set: {known}")
    q.add_argument("--mirror", metavar="URL|DIR",
                   help="copy from this data directory (a base URL or a local directory with the mirror's "
                   "layout) instead of the public URLs")
    q.add_argument("--data-dir", metavar="DIR", help="write here instead of the user cache")
    q.add_argument("--timeout", metavar="S", type=float, default=60.0,
                   help="seconds to wait on the network (default 60)")
    q.set_defaults(handler=run_fetch)

    q = dsub.add_parser("verify", help="check the files of one or all data sets against their SHA-256",
                        description="Check every file of data set NAME (default: all) against its SHA-256, "
                        f"where it is found. {_WHERE}. Exit 0 when all are ok, 1 when any is missing or "
                        "corrupted, 2 for an unknown name.")
    q.add_argument("name", metavar="NAME", nargs="?", help=f"data set: {known} (default: all)")
    _data_dir_arg(q)
    q.add_argument("--json", action="store_true", help="one JSON object per file")
    q.set_defaults(handler=run_verify)


def _no_subcommand(args: argparse.Namespace) -> int:
    args._parser.print_help()
    raise ValueError("no data subcommand given (see 'biornn data --help')")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


def _check_data_dir(data_dir: str | None) -> None:
    """A named directory that is not one is a usage error (exit 2), not a table of missing files."""
    if data_dir is not None:
        d = Path(data_dir)
        if not str(data_dir).strip() or not d.is_dir():
            raise ValueError(f"--data-dir {data_dir}: " + ("no such directory" if not d.exists() else
                                                           "not a directory"))


def run_list(args: argparse.Namespace) -> int:
    from ..data.registry import DATASETS, DataError, locate, search_path

    _check_data_dir(args.data_dir)
    reasons: dict[str, str] = {}
    for d, why in search_path(args.data_dir):
        reasons.setdefault(str(d), why)
    rows = []
    for name in sorted(DATASETS):
        ds = DATASETS[name]
        try:
            root = locate(name, args.data_dir)
        except DataError:
            root = None
        size = None if root is None else sum((root / f.path).stat().st_size for f in ds.files)
        # an incomplete copy in --data-dir, which the lookup passes over: say so, not just where else it is
        partial = None
        if args.data_dir:
            mine = Path(args.data_dir).expanduser()
            n = sum((mine / f.path).is_file() for f in ds.files)
            if 0 < n < len(ds.files):
                partial = f"{n} of {len(ds.files)} files in {mine} (--data-dir)"
        rows.append({"name": name, "title": ds.title, "licence": ds.licence, "files": len(ds.files),
                     "partial": partial,
                     "bytes": size, "where": None if root is None else str(root),
                     "found_via": None if root is None else reasons[str(root)],
                     "source": ds.source, "note": ds.note,
                     "mirror_only": [f.path for f in ds.files if f.url is None]})
    if args.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
        return 0
    where = [(f"{r['where']} ({r['found_via']})" if r["where"] else "not found")
             + (f"; only {r['partial']}" if r["partial"] else "") for r in rows]
    def files(r: dict) -> str:
        n, m = r["files"], len(r["mirror_only"])
        # a file with no byte-identical public copy is fetched from a mirror only
        return f"{n} file{'s' * (n != 1)}" + (f" ({'all' if m == n else m} mirror-only)" if m else "")

    cols = [[r["name"] for r in rows], [files(r) for r in rows],
            ["-" if r["bytes"] is None else _size(r["bytes"]) for r in rows], where,
            [r["licence"] for r in rows], [r["title"] for r in rows]]
    widths = [max(map(len, c)) for c in cols[:-1]]
    for i in range(len(rows)):
        cells = [c[i].ljust(w) if j != 1 and j != 2 else c[i].rjust(w)
                 for j, (c, w) in enumerate(zip(cols, widths))]
        print("  ".join(cells + [cols[-1][i]]))
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from ..data.registry import _URL_SCHEMES, DATASETS, NetworkError, fetch

    if not 0 < args.timeout <= 86400:
        raise ValueError(f"--timeout must be in (0, 86400] seconds, got {args.timeout:g}")
    if args.mirror and "://" in args.mirror and not args.mirror.startswith("file://"):
        from urllib.parse import urlsplit

        try:  # a URL that cannot name a server is a usage error (2), not a failed download (1)
            parts = urlsplit(args.mirror)
            host = parts.hostname
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError as e:
            raise ValueError(f"--mirror {args.mirror}: not a usable URL ({e})") from None
        if parts.scheme not in _URL_SCHEMES or not host:
            raise ValueError(f"--mirror {args.mirror}: give a {'/'.join(_URL_SCHEMES)} URL with a host, or a "
                             f"local directory")
    try:
        root = fetch(args.name, data_dir=args.data_dir, mirror=args.mirror, timeout=args.timeout,
                     log=lambda line: print(line, flush=True))
    except NetworkError as e:  # the input was fine, the run failed: exit 1
        print(f"biornn: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.name}: {len(DATASETS[args.name].files)} files verified in {root}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ..data.registry import fetch_command, verify

    _check_data_dir(args.data_dir)
    rows = verify(args.name, args.data_dir)
    for r in rows:
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['status']:<17}  {r['dataset']:<12}  {r['path']}")
    bad = [r for r in rows if r["status"] != "ok"]
    where = sorted({r["where"] for r in rows})
    if bad:
        sys.stdout.flush()
        sets = sorted({r["dataset"] for r in bad})
        dirs = sorted({r["where"] for r in bad})
        what = ", ".join(f"{r['path']} ({r['status']})" for r in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        fix = (f"run '{fetch_command(sets[0], [r['path'] for r in bad])}'" if len(sets) == 1
               else f"run 'biornn data fetch NAME' (with --mirror URL|DIR for the mirror-only files) for each "
                    f"of {', '.join(sets)}")
        print(f"biornn: error: {len(bad)} of {len(rows)} files not ok in {', '.join(dirs)}: {what}{more}; {fix}",
              file=sys.stderr)
        return 1
    if not args.json:
        print(f"all {len(rows)} files ok in {', '.join(where)}")
    return 0
