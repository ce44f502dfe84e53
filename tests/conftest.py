"""Shared fixtures: a tiny real training run on the committed test corpus (`tests/corpus`).

No test trains on the running interpreter's standard library. Its files differ between Python
builds, patch releases and distributions, and with them the BPE merges, the trained weights and
every result computed from them; a suite that passed on one machine failed on another. So:

- `TEST_CORPUS` (178 stdlib files of CPython 3.11.7, committed) is the data of every tiny run
  and every tokenizer the tests train; `TEST_DATA` is the config overrides that select it.
- A guard makes the `stdlib` corpus source fail inside the test process. A test about the
  `stdlib` source itself is marked `@pytest.mark.stdlib` and asserts only what holds for the
  standard library of any Python 3.11.x.
- CLI tests that train pass `-c <tiny_config_file>` rather than `-c tiny` (the preset reads the
  machine's standard library; the guard cannot reach into a subprocess).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparsecircuits.config import RunConfig, load_config
from sparsecircuits.data import corpus as corpus_module

TEST_CORPUS = Path(__file__).resolve().parent / "corpus"
"""Real Python files the tests train on (see tests/corpus/README.md)."""

TEST_DATA = {"data.sources": [str(TEST_CORPUS)], "data.max_files": 0}
"""Config overrides that train on the whole test corpus instead of a preset's data."""

TINY_THREADS = 1
"""The tiny run's torch threads: pinned, so its weights are the same whatever OMP_NUM_THREADS,
the machine's core count or the test that happens to build it first (training is bit-identical
at a fixed thread count, not across counts)."""

# The corpus is data: stdlib test modules such as corpus/test/test_bool.py are not our tests.
collect_ignore = ["corpus"]

_REAL_STDLIB_DIR = corpus_module.stdlib_dir


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stdlib: the test reads the machine's standard library (the `stdlib` corpus source) "
        "and asserts only what holds on any Python 3.11.x",
    )


def _stdlib_refused():
    # pytest.fail raises a BaseException: no `except Exception` in the code under test hides it.
    pytest.fail(
        "this test read the machine's standard library as a corpus; train on "
        "tests.conftest.TEST_CORPUS (TEST_DATA overrides) or mark the test @pytest.mark.stdlib",
        pytrace=False,
    )


@pytest.fixture(scope="session", autouse=True)
def _no_stdlib_corpus():
    """Session-wide (so session fixtures such as tiny_run are covered too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpus_module, "stdlib_dir", _stdlib_refused)
        yield


@pytest.fixture(autouse=True)
def _stdlib_for_marked_tests(request, monkeypatch):
    if request.node.get_closest_marker("stdlib") is not None:
        monkeypatch.setattr(corpus_module, "stdlib_dir", _REAL_STDLIB_DIR)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """`train()` sets torch's process-wide thread count from train.threads and leaves it: after
    each test, put back the count the test started with."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One tokenizer/shard cache for the whole session (built on first use)."""
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture(scope="session")
def tiny_config(data_cache) -> RunConfig:
    """The `tiny` preset's model and loop, on the test corpus (its 512-token BPE has `")`)."""
    return load_config("tiny", {"data.cache_dir": str(data_cache), "train.threads": TINY_THREADS,
                                **TEST_DATA})


@pytest.fixture(scope="session")
def tiny_config_file(tiny_config, tmp_path_factory) -> Path:
    """tiny_config as a file, for CLI tests: `sparsecircuits train -c <this file> ...`."""
    path = tmp_path_factory.mktemp("tiny-config") / "tiny.json"
    path.write_text(json.dumps(tiny_config.to_dict()))
    return path


@pytest.fixture(scope="session")
def tiny_run(tiny_config, tmp_path_factory) -> Path:
    """A finished tiny training run (checkpoint at <run>/checkpoint)."""
    from sparsecircuits.train.trainer import train

    out = tmp_path_factory.mktemp("tiny-run")
    before = torch.get_num_threads()
    try:
        train(tiny_config, out, progress=False)
    finally:
        torch.set_num_threads(before)
    return out
