"""Every Python example in the README runs as written."""

import re
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^( *)```python\n(.*?)^\1```", README.read_text(), flags=re.S | re.M)


def test_readme_has_examples():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("indent,code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(indent, code):
    exec(compile(textwrap.dedent(code), str(README), "exec"), {})
