"""Surnames by language: the data of the PyTorch tutorial "classifying names with a character-level RNN".

A data directory's ``names/`` folder holds one UTF-8 file per language
(``names/Arabic.txt``, ...), one surname per line. :func:`read_names` reads
them as ``(name, language)`` pairs.

Unlike the tutorial, the names are **not transliterated to ASCII**: accents
and letters such as é, ß, ł, ż are much of what tells Polish from Czech or
German from Dutch, so they are kept. Text is only normalised to Unicode NFC
(so that "é" is one code point however the file spelled it) and stripped.

The files repeat names (Arabic.txt has 2000 lines but 108 distinct names):
exact duplicate pairs are removed, so that a name cannot sit in both the
training and the test split. Some names occur in several languages ("Abel" is
English, French and German); :func:`split_names` keeps all the pairs of one
name string in one split.

>>> pairs = [("Abel", "French"), ("Abel", "German"), ("Zając", "Polish")]
>>> languages(pairs)
['French', 'German', 'Polish']
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from .registry import DataError

__all__ = ["SPLITS", "languages", "read_names", "split_names"]

SPLITS = ("train", "val", "test")


def read_names(root: str | Path) -> list[tuple[str, str]]:
    """Read every ``names/*.txt`` under data directory ``root`` as ``(name, language)`` pairs.

    The language is the file's stem. Lines are decoded as UTF-8 (a leading
    byte-order mark is dropped), NFC-normalised and stripped; blank lines are
    skipped and exact duplicate pairs removed.

    Returns
    -------
    list of (str, str)
        Sorted by language, then name (code-point order): the same files give
        the same list on every machine.

    Raises
    ------
    DataError
        ``root/names`` is not a directory or holds no ``.txt`` file, a file is
        not UTF-8 or unreadable, a name holds a control character (the message
        names the file and line), or a file has no name.
    """
    folder = Path(root) / "names"
    if not folder.is_dir():
        raise DataError(f"no names/ folder in {root}")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DataError(f"names/ in {root} holds no .txt files")
    pairs: set[tuple[str, str]] = set()
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as e:  # a directory called X.txt, an unreadable file: bad input, not a crash
            raise DataError(f"names/{path.name}: cannot read ({e.strerror})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise DataError(f"names/{path.name} line {line}: not UTF-8") from None
        text = text.removeprefix("\ufeff")
        language = path.stem
        before = len(pairs)
        for n, line in enumerate(text.split("\n"), start=1):  # not splitlines(): it also splits on \x1c, \u2028
            name = unicodedata.normalize("NFC", line).strip()
            # a control character (NUL, ESC, DEL, ...) is no letter of a name: binary junk in the file
            bad = next((c for c in name if unicodedata.category(c) == "Cc"), None)
            if bad is not None:
                raise DataError(f"names/{path.name} line {n}: control character U+{ord(bad):04X} in a name "
                                f"(binary data?)")
            if name:
                pairs.add((name, language))
        if len(pairs) == before:  # the language is the file's own: its names are always new pairs
            # a language with no names would be a class with no example to learn or to test
            raise DataError(f"names/{path.name} holds no names (an empty file: a language with no example)")
    if not pairs:
        raise DataError(f"names/ in {root} holds no names")
    return sorted(pairs, key=lambda p: (p[1], p[0]))


def languages(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """The distinct languages of ``(name, language)`` pairs, sorted."""
    return sorted({lang for _, lang in pairs})


def _largest_remainder(n: int, weights: Sequence[float]) -> list[int]:
    """Split the integer ``n`` in proportion to ``weights`` (summing to > 0), exactly, ties to the first."""
    total = float(sum(weights))
    raw = [n * w / total for w in weights]
    out = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - out[i]), i))
    for i in order[: n - sum(out)]:
        out[i] += 1
    return out


def _uniform(seed: int, name: str) -> float:
    """A number in [0, 1) fixed by the seed and the name alone (not by the other names)."""
    h = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def split_names(pairs: Iterable[tuple[str, str]], seed: int,
                fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> dict[str, list[tuple[str, str]]]:
    """Split ``(name, language)`` pairs into train, validation and test sets.

    The split is

    * **grouped**: all the pairs of one name string go to the same split, so
      the test set never holds a name seen (in another language) in training;
    * **stratified** by language: each language's pairs are cut by
      ``fractions`` (largest-remainder rounding), and every language with at
      least 3 pairs has at least one in each split whose fraction is > 0,
      as far as the grouping allows;
    * **deterministic**: the same pairs and seed give the same splits.

    A name found in several languages goes to the split chosen by a hash of
    the seed and the name (with probability ``fractions``); the other names of
    each language are shuffled with the seed and fill what each split still
    needs.

    Parameters
    ----------
    pairs : iterable of (str, str)
        As from :func:`read_names` (duplicates are ignored).
    seed : int
    fractions : three non-negative numbers summing to 1
        For train, val and test.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, each list sorted by
        language, then name.

    >>> pairs = [(f"N{i}", "A") for i in range(10)] + [("N0", "B"), ("M", "B"), ("K", "B")]
    >>> s = split_names(pairs, seed=0)
    >>> sum(map(len, s.values())), s == split_names(pairs, seed=0)
    (13, True)
    >>> [k for k in s if ("N0", "A") in s[k]] == [k for k in s if ("N0", "B") in s[k]]  # grouped
    True
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(not f >= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    langs_of: dict[str, set[str]] = defaultdict(set)
    for name, lang in pairs:
        langs_of[name].add(lang)

    split_of: dict[str, int] = {}
    cumulative = [sum(fractions[: i + 1]) for i in range(3)]
    for name in sorted(langs_of):
        if len(langs_of[name]) > 1:
            u = _uniform(seed, name)
            split_of[name] = next((i for i, c in enumerate(cumulative) if u < c and fractions[i] > 0),
                                  max(i for i in range(3) if fractions[i] > 0))

    by_lang: dict[str, list[str]] = defaultdict(list)  # language -> its names
    for name, langs in langs_of.items():
        for lang in langs:
            by_lang[lang].append(name)
    for lang in sorted(by_lang):
        names = by_lang[lang]
        n = len(names)
        target = _largest_remainder(n, fractions)
        if n >= 3:  # at least one in every split that has a share
            for i in range(3):
                if fractions[i] > 0 and target[i] == 0:
                    target[max(range(3), key=lambda j: target[j])] -= 1
                    target[i] = 1
        have = [0, 0, 0]
        for name in names:
            if name in split_of:
                have[split_of[name]] += 1
        free = sorted(name for name in names if name not in split_of)
        random.Random(f"{seed}:{lang}").shuffle(free)  # str seeds hash the same on every run
        need = [max(t - h, 0) for t, h in zip(target, have)]
        counts = _largest_remainder(len(free), need if sum(need) else [f for f in fractions])
        if n >= 3:  # the shared names may have left a split empty: move one free name there
            for i in range(3):
                if fractions[i] > 0 and have[i] + counts[i] == 0:
                    donor = max((j for j in range(3) if counts[j] > 0 and have[j] + counts[j] > 1),
                                key=lambda j: counts[j], default=None)
                    if donor is not None:
                        counts[donor] -= 1
                        counts[i] += 1
        start = 0
        for i, c in enumerate(counts):
            for name in free[start:start + c]:
                split_of[name] = i
            start += c

    out: dict[str, list[tuple[str, str]]] = {k: [] for k in SPLITS}
    for name, langs in langs_of.items():
        for lang in langs:
            out[SPLITS[split_of[name]]].append((name, lang))
    for k in SPLITS:
        out[k].sort(key=lambda p: (p[1], p[0]))
    return out
