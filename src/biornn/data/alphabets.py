"""Sequence alphabets: DNA, RNA, protein (with the IUPAC ambiguity codes) and plain characters.

A biological sequence is encoded as one weight vector per residue over the
alphabet's canonical symbols.  A canonical symbol is a one-hot vector; an
IUPAC ambiguity code spreads its weight evenly over the symbols it stands for
(``N`` in DNA is 1/4 on each of A, C, G, T; ``R`` is 1/2 on A and G), so an
uncertain base is neither dropped nor made into a symbol of its own.  Upper
and lower case are the same residue (lower case is soft-masking in FASTA).
A character outside the alphabet is an error that names the record, the
position and the character.

>>> DNA.encode("ACGN").tolist()
[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.25, 0.25, 0.25, 0.25]]
>>> DNA.encode("ACXT", where="seq1")
Traceback (most recent call last):
...
ValueError: seq1: character 'X' at position 3 is not in the DNA alphabet (ACGT and IUPAC codes RYSWKMBDHVN)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

__all__ = ["Alphabet", "DNA", "RNA", "PROTEIN", "ALPHABETS", "text_alphabet", "get"]


@dataclass(frozen=True)
class Alphabet:
    """A sequence alphabet: canonical symbols, and ambiguity codes each standing for several of them.

    Parameters
    ----------
    name : str
        ``"DNA"``, ``"RNA"``, ``"protein"`` or ``"text"``.
    symbols : str
        The canonical symbols, in the order of the encoding's columns (K of them).
    ambiguity : dict of str to str
        Code -> the canonical symbols it stands for, e.g. ``{"N": "ACGT"}``.
    case_sensitive : bool
        False (biological sequences): lower case is read as upper case.
    """

    name: str
    symbols: str
    ambiguity: dict[str, str] = field(default_factory=dict)
    case_sensitive: bool = False

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols) or not self.symbols:
            raise ValueError(f"alphabet {self.name}: symbols must be distinct and not empty")
        for code, meaning in self.ambiguity.items():
            if code in self.symbols or not meaning or any(s not in self.symbols for s in meaning):
                raise ValueError(f"alphabet {self.name}: ambiguity code {code!r} = {meaning!r} is not valid")
        table = np.zeros((len(self.symbols) + len(self.ambiguity), len(self.symbols)), dtype=np.float32)
        index: dict[str, int] = {}
        for k, s in enumerate(self.symbols):
            table[k, k] = 1.0
            index[s] = k
        for j, (code, meaning) in enumerate(self.ambiguity.items(), start=len(self.symbols)):
            for s in meaning:
                table[j, self.symbols.index(s)] = 1.0 / len(meaning)
            index[code] = j
        if not self.case_sensitive:
            # lower case reads as upper case through the table, character by character: str.upper()
            # would turn one character into two ('ß' -> 'SS') or a foreign letter into a residue ('ı' -> 'I')
            for c, k in list(index.items()):
                for other in (c.lower(), c.upper()):
                    if other != c and len(other) == 1 and other.swapcase() == c:
                        index.setdefault(other, k)
        object.__setattr__(self, "_table", table)  # (symbols + codes, K)
        object.__setattr__(self, "_index", index)

    @property
    def size(self) -> int:
        """K, the width of an encoded residue."""
        return len(self.symbols)

    def describe(self) -> str:
        """The allowed characters, in words, for error messages."""
        codes = "".join(self.ambiguity)
        return f"{self.symbols} and IUPAC codes {codes}" if codes else repr(self.symbols)

    def indices(self, sequence: str, where: str = "sequence") -> np.ndarray:
        """Row of each character in the weight table, (T,) int64; ``ValueError`` on a character outside."""
        index = self._index  # type: ignore[attr-defined]
        try:
            return np.fromiter((index[c] for c in sequence), dtype=np.int64, count=len(sequence))
        except KeyError:
            pos = next(i for i, c in enumerate(sequence) if c not in index)
            raise ValueError(f"{where}: character {sequence[pos]!r} at position {pos + 1} is not in the "
                             f"{self.name} alphabet ({self.describe()})") from None

    def encode(self, sequence: str, where: str = "sequence") -> np.ndarray:
        """Residue weights of ``sequence``.

        Parameters
        ----------
        sequence : str
        where : str
            Names the sequence (file and record) in the error message.

        Returns
        -------
        ndarray of float32, shape (T, K)
            One-hot rows for canonical symbols, evenly spread rows for ambiguity codes.
        """
        return self._table[self.indices(sequence, where)]  # type: ignore[attr-defined]

    def decode(self, weights: np.ndarray) -> str:
        """The most likely canonical symbol of every row of (T, K) weights."""
        return "".join(self.symbols[i] for i in np.asarray(weights).argmax(axis=1))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "symbols": self.symbols, "ambiguity": dict(self.ambiguity),
                "case_sensitive": self.case_sensitive}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alphabet:
        return cls(str(data["name"]), str(data["symbols"]), {str(k): str(v) for k, v in data["ambiguity"].items()},
                   bool(data["case_sensitive"]))


_IUPAC_DNA = {"R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT", "M": "AC",
              "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT"}

#: DNA: A, C, G, T and the IUPAC nucleotide ambiguity codes (N = 1/4 on each base)
DNA = Alphabet("DNA", "ACGT", _IUPAC_DNA)
#: RNA: A, C, G, U and the same codes, U in place of T
RNA = Alphabet("RNA", "ACGU", {k: v.replace("T", "U") for k, v in _IUPAC_DNA.items()})

_AMINO = "ACDEFGHIKLMNPQRSTVWY"
#: protein: the 20 standard amino acids; B = D/N, Z = E/Q, J = I/L, X = any of the 20;
#: U (selenocysteine) is read as C and O (pyrrolysine) as K, the residues they replace
PROTEIN = Alphabet("protein", _AMINO, {"B": "DN", "Z": "EQ", "J": "IL", "X": _AMINO, "U": "C", "O": "K"})

ALPHABETS: dict[str, Alphabet] = {"dna": DNA, "rna": RNA, "protein": PROTEIN}


def text_alphabet(texts: Iterable[str]) -> Alphabet:
    """A character alphabet: every character of ``texts``, in code-point order, case kept, no ambiguity codes.

    >>> text_alphabet(["abba", "cab"]).symbols
    'abc'
    """
    chars = sorted(set("".join(texts)))
    if not chars:
        raise ValueError("text alphabet: no characters in the texts")
    return Alphabet("text", "".join(chars), {}, case_sensitive=True)


def get(name: str) -> Alphabet:
    """The alphabet called ``name`` (``dna``, ``rna``, ``protein``; any case)."""
    try:
        return ALPHABETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown alphabet {name!r}; known: {', '.join(ALPHABETS)}, or text") from None
