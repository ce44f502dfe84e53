"""A .py file over the size bound is skipped unread and counted, from every kind of source, and
the count is reported with the other skip counts (issue 10)."""

from __future__ import annotations

import logging
from pathlib import Path

from sparsecircuits.config import DataConfig
from sparsecircuits.data.corpus import MAX_SOURCE_FILE_BYTES, collect_corpus
from sparsecircuits.data.prepare import prepare_data


def _huge(path: Path) -> Path:
    """A .py file one byte over the bound, sparse (no disk used); reading it is never needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(MAX_SOURCE_FILE_BYTES + 1)
    return path


def test_a_file_over_the_bound_is_skipped_and_counted(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "small.py").write_text("x = 1\n")
    _huge(tmp_path / "src" / "pkg" / "table.py")
    exactly = tmp_path / "src" / "exactly.py"
    exactly.write_text("#" * (MAX_SOURCE_FILE_BYTES - 1) + "\n")  # at the bound: kept
    corpus = collect_corpus([str(tmp_path / "src")])
    assert [f.path for f in corpus.files] == ["exactly.py", "small.py"]
    assert corpus.too_large == 1 and corpus.skipped == 0


def test_the_bound_applies_to_globs_and_single_files(tmp_path):
    (tmp_path / "a.py").write_text("a = 1\n")
    big = _huge(tmp_path / "b.py")
    assert collect_corpus([str(tmp_path / "*.py")]).too_large == 1
    both = collect_corpus([str(tmp_path / "a.py"), str(big)])
    assert [f.path for f in both.files] == ["a.py"] and both.too_large == 1


def test_prepared_data_reports_the_count(tmp_path, py_tree, caplog):
    _huge(py_tree / "generated_table.py")
    caplog.set_level(logging.INFO, logger="sparsecircuits.data")
    cfg = DataConfig(sources=(str(py_tree),), cache_dir=str(tmp_path / "cache"),
                     val_fraction=0.15, test_fraction=0.15)  # fmt: skip
    prepared = prepare_data(cfg, 400)
    assert prepared.stats["too_large_files"] == 1
    assert "(0 skipped, 1 too large, 0 duplicates)" in caplog.text
