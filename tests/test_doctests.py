"""The docstrings' examples are tests too: every doctest of the installed ``biornn`` package.

Collected here rather than by ``--doctest-modules`` over ``src/biornn``, which only works against
the checkout's own files: run from an unpacked sdist against the installed package, pytest found
each module twice (the test file and the installed one) and refused every one."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import biornn

MODULES = sorted(m.name for m in pkgutil.walk_packages(biornn.__path__, "biornn.") if not m.name.endswith("__main__"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _tests(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder().find(module, name) if t.examples]


def test_the_package_has_examples():
    assert sum(len(_tests(name)) for name in MODULES) >= 40


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in _tests(name):
        runner.run(test, out=lambda s: print(s, end=""))
    assert runner.failures == 0, f"{name}: {runner.failures} failing example(s), shown above"
