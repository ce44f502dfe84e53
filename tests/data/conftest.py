"""Shared fixtures for the data stage: small trees of real Python files in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import TEST_CORPUS

# Real standard-library modules, taken from the committed test corpus (not from the running
# interpreter, whose copies differ between builds) and copied so that tests control the tree.
STDLIB_SAMPLE = (
    "abc.py",
    "bisect.py",
    "colorsys.py",
    "copy.py",
    "csv.py",
    "fnmatch.py",
    "glob.py",
    "heapq.py",
    "keyword.py",
    "operator.py",
    "queue.py",
    "shlex.py",
    "string.py",
    "textwrap.py",
    "json/__init__.py",
    "json/decoder.py",
    "json/encoder.py",
    "json/scanner.py",
    "json/tool.py",
    "html/__init__.py",
)


def copy_stdlib_sample(dest: Path, names: tuple[str, ...] = STDLIB_SAMPLE) -> Path:
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TEST_CORPUS / name, target)
    return dest


@pytest.fixture
def py_tree(tmp_path: Path) -> Path:
    """A directory of 20 real .py files (some in sub-packages)."""
    return copy_stdlib_sample(tmp_path / "proj")


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    """The texts of the sample files, for tokenizer training."""
    return [(TEST_CORPUS / name).read_text(encoding="utf-8") for name in STDLIB_SAMPLE]
