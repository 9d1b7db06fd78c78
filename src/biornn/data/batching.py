"""From text to padded index tensors: a character vocabulary, padding, index batches.

Index 0 is padding and index 1 stands for any character the vocabulary has
not seen; the symbols follow from 2, in code-point order when built from texts,
so that a vocabulary built from the same texts is the same on every machine.

>>> v = Vocabulary.build(["abc", "cab", "é"])
>>> len(v), v.encode("abé"), v.encode("abz")
(6, [2, 3, 5], [2, 3, 1])
>>> x, lengths = pad_batch([v.encode("ab"), v.encode("cab")])
>>> x.tolist(), lengths.tolist()
([[2, 3, 0], [4, 2, 3]], [2, 3])
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import torch

__all__ = ["PAD", "UNK", "Vocabulary", "batches", "pad_batch"]

PAD = 0
UNK = 1


class Vocabulary:
    """Characters to indices: 0 is padding, 1 unknown, ``symbols[i]`` is ``i + 2``.

    Text is NFC-normalised before it is encoded, so that "é" typed as "e" plus
    a combining accent gets the same index as the precomposed "é".

    Parameters
    ----------
    symbols : iterable of str
        Distinct single characters, in index order.
    """

    PAD = PAD
    UNK = UNK

    def __init__(self, symbols: Iterable[str]):
        self.symbols: tuple[str, ...] = tuple(symbols)
        for s in self.symbols:
            if not isinstance(s, str) or len(s) != 1:
                raise ValueError(f"a vocabulary symbol must be one character, got {s!r}")
        if len(set(self.symbols)) != len(self.symbols):
            dup = next(s for s, c in Counter(self.symbols).items() if c > 1)
            raise ValueError(f"vocabulary symbol {dup!r} given twice")
        self._index = {s: i + 2 for i, s in enumerate(self.symbols)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> Vocabulary:
        """The characters that occur at least ``min_count`` times in ``texts`` (NFC), in code-point order."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(unicodedata.normalize("NFC", t))
        return cls(sorted(s for s, c in counts.items() if c >= min_count))

    def encode(self, text: str) -> list[int]:
        """Indices of the characters of ``text`` (NFC-normalised); unseen characters are :data:`UNK`."""
        return [self._index.get(ch, UNK) for ch in unicodedata.normalize("NFC", text)]

    def decode(self, indices: Iterable[int]) -> str:
        """The inverse of :meth:`encode`: padding is dropped, unknown shown as U+FFFD."""
        out = []
        for i in indices:
            i = int(i)
            if i == PAD:
                continue
            out.append(self.symbols[i - 2] if 2 <= i < len(self) else "\ufffd")
        return "".join(out)

    def __len__(self) -> int:
        return len(self.symbols) + 2

    def __contains__(self, ch: object) -> bool:
        return ch in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.symbols == other.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)

    def __repr__(self) -> str:
        return f"Vocabulary({''.join(self.symbols)!r})"

    def to_json(self) -> dict:
        """A JSON-ready dict; :meth:`from_json` reads it back."""
        return {"pad": PAD, "unk": UNK, "symbols": list(self.symbols)}

    @classmethod
    def from_json(cls, d: dict) -> Vocabulary:
        """Read what :meth:`to_json` wrote."""
        if not isinstance(d, dict) or not isinstance(d.get("symbols"), list):
            raise ValueError("a vocabulary must be a JSON object with a 'symbols' list")
        if d.get("pad", PAD) != PAD or d.get("unk", UNK) != UNK:
            raise ValueError(f"a vocabulary with pad={d.get('pad')}, unk={d.get('unk')} is not supported "
                             f"(biornn uses pad={PAD}, unk={UNK})")
        return cls(d["symbols"])


def pad_batch(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack index sequences of different lengths, padded at the end with :data:`PAD`.

    Parameters
    ----------
    seqs : sequence of B non-empty sequences of int (or 1-D tensors)

    Returns
    -------
    x : LongTensor (B, T)
        T is the longest length.
    lengths : LongTensor (B,)

    Raises
    ------
    ValueError
        No sequence, or an empty one (a recurrence has no state to read after zero steps).
    """
    if len(seqs) == 0:
        raise ValueError("pad_batch needs at least one sequence")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (B,)
    if (lengths == 0).any():
        i = int((lengths == 0).nonzero()[0])
        raise ValueError(f"sequence {i} of the batch is empty")
    x = torch.full((len(seqs), int(lengths.max())), PAD, dtype=torch.long)  # (B, T)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return x, lengths


def batches(n: int, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
            drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``: LongTensors of ``batch_size`` indices (the last may be smaller).

    With ``shuffle``, one permutation drawn from ``generator`` (torch's global
    generator when None) per call; without, in order.

    >>> [b.tolist() for b in batches(5, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]
