import random
from pathlib import Path

import pytest
import torch

from biornn.cli.main import main
from biornn.serve_load import free_port  # noqa: F401  (the tests' free port, one definition)
from biornn.data.registry import DATASETS

NAMES_LANGS = [Path(f.path).stem for f in DATASETS["names"].files if f.path.endswith(".txt")]
TINY_NAMES = ["hidden_size=8", "embedding_dim=4", "batch_size=32", "epochs=1", "ensemble=1"]


def train_tiny_names_run(root: Path) -> Path:
    """A tiny trained names run under ``root`` (made-up names in every language, one epoch: seconds)."""
    names = root / "data" / "names"
    names.mkdir(parents=True)
    rng = random.Random(0)
    letters = "abcdefghijklmnoprstuvyz"
    for k, lang in enumerate(NAMES_LANGS):
        end = letters[k % len(letters)] + letters[(3 * k + 1) % len(letters)] + "é" * (k % 2)
        rows = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 5))).title() + end for _ in range(8)}
        (names / f"{lang}.txt").write_text("\n".join(sorted(rows)) + "\n", encoding="utf-8")
    (names / "LICENSE").write_text("made up for tests\n")
    out = root / "run"
    assert main(["train", "names", "--data-dir", str(root / "data"), "--out", str(out), *TINY_NAMES]) == 0
    return out


#: the compiled time loops (biornn.native): built once per machine before the tests run, so that
#: every fast-path test runs them; (False, why) where they cannot be built (tests/test_native.py says)
NATIVE_BUILD: list = []


@pytest.fixture(scope="session", autouse=True)
def _native_loops():
    from biornn import native

    try:
        native.build()
        NATIVE_BUILD.append((True, ""))
    except (native.NativeError, ValueError) as e:  # ValueError: an unusable cache directory
        NATIVE_BUILD.append((False, str(e)))
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
