"""Data: the registry of reference data sets, readers, and batching.

``registry`` knows each data set's files, SHA-256s and public sources and
finds them on disk (``--data-dir``, ``$BIORNN_DATA``, the user cache);
``names`` reads the surnames by language; ``batching`` turns text into padded
index tensors; ``alphabets`` encodes DNA, RNA and protein (IUPAC codes as
mixtures) and ``readers`` reads FASTA, UCR/UEA, CSV/TSV and NPZ files.
"""

from .batching import PAD, UNK, Vocabulary, batches, pad_batch
from .names import SPLITS, languages, read_names, split_names
from .registry import (
    DATASETS,
    DataError,
    DataFile,
    Dataset,
    NetworkError,
    cache_dir,
    fetch,
    file_sha256,
    locate,
    search_path,
    verify,
)

__all__ = [
    "DATASETS",
    "PAD",
    "SPLITS",
    "UNK",
    "DataError",
    "DataFile",
    "Dataset",
    "NetworkError",
    "Vocabulary",
    "batches",
    "cache_dir",
    "fetch",
    "file_sha256",
    "languages",
    "locate",
    "pad_batch",
    "read_names",
    "search_path",
    "split_names",
    "verify",
]
