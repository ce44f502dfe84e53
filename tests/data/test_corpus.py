"""Corpus collection and the by-file split."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from sparsecircuits.data.corpus import (
    Corpus,
    SourceFile,
    collect_corpus,
    split_of,
    stdlib_dir,
)
from sparsecircuits.errors import DataError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_directory_is_searched_recursively_with_relative_sorted_paths(tmp_path):
    write(tmp_path / "src" / "b.py", "b = 2\n")
    write(tmp_path / "src" / "pkg" / "a.py", "a = 1\n")
    write(tmp_path / "src" / "notes.txt", "not python\n")
    write(tmp_path / "src" / "__pycache__" / "c.py", "c = 3\n")
    write(tmp_path / "src" / ".venv" / "d.py", "d = 4\n")
    corpus = collect_corpus([str(tmp_path / "src")])
    assert isinstance(corpus, Corpus)
    assert corpus.files == (SourceFile("b.py", "b = 2\n"), SourceFile("pkg/a.py", "a = 1\n"))
    assert corpus.skipped == 0


def test_non_utf8_directory_and_broken_link_are_skipped_and_counted(tmp_path):
    root = tmp_path / "src"
    write(root / "good.py", "x = 1\n")
    (root / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (root / "dir.py").mkdir()
    (root / "broken.py").symlink_to(root / "does_not_exist.py")
    corpus = collect_corpus([str(root)])
    assert [f.path for f in corpus.files] == ["good.py"]
    assert corpus.skipped == 3


def test_byte_order_mark_is_removed(tmp_path):
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbfx = 1\n")
    assert collect_corpus([str(tmp_path)]).files[0].text == "x = 1\n"


def test_glob_source_names_files_relative_to_the_fixed_part(tmp_path):
    write(tmp_path / "repo" / "lib" / "m.py", "m = 1\n")
    write(tmp_path / "repo" / "lib" / "sub" / "n.py", "n = 1\n")
    write(tmp_path / "repo" / "other" / "o.py", "o = 1\n")
    corpus = collect_corpus([str(tmp_path / "repo" / "lib" / "**" / "*.py")])
    assert [f.path for f in corpus.files] == ["m.py", "sub/n.py"]


def test_glob_matching_nothing_is_an_error(tmp_path):
    write(tmp_path / "a.txt", "text\n")
    with pytest.raises(DataError, match="matches no .py files"):
        collect_corpus([str(tmp_path / "*.py")])


def test_missing_source_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as info:
        collect_corpus([str(missing)])
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)


def test_corpus_without_readable_files_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no readable .py file"):
        collect_corpus([str(tmp_path / "empty")])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.py").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match=r"1 skipped"):
        collect_corpus([str(tmp_path / "bad")])


def test_same_file_twice_and_identical_contents_count_once(tmp_path):
    write(tmp_path / "src" / "a.py", "same = 1\n")
    write(tmp_path / "src" / "b.py", "same = 1\n")
    write(tmp_path / "src" / "c.py", "other = 2\n")
    src = str(tmp_path / "src")
    corpus = collect_corpus([src, src, os.path.join(src, "*.py")])
    assert [f.path for f in corpus.files] == ["a.py", "c.py"]
    assert corpus.duplicates == 1


def test_colliding_names_from_two_roots_are_kept_apart(tmp_path):
    write(tmp_path / "one" / "util.py", "one = 1\n")
    write(tmp_path / "two" / "util.py", "two = 2\n")
    corpus = collect_corpus([str(tmp_path / "one"), str(tmp_path / "two")])
    assert [f.path for f in corpus.files] == ["two/util.py", "util.py"]


def test_max_files_takes_a_deterministic_hash_ordered_subset(tmp_path):
    for i in range(60):
        write(tmp_path / "src" / f"m{i:02d}.py", f"value = {i}\n")
    src = [str(tmp_path / "src")]
    small = collect_corpus(src, max_files=10)
    assert len(small.files) == 10
    assert small == collect_corpus(src, max_files=10)
    larger = {f.path for f in collect_corpus(src, max_files=30).files}
    assert {f.path for f in small.files} <= larger
    # Hash order, not path order: the subset is spread over the tree, not its first names.
    assert [f.path for f in small.files] != [f"m{i:02d}.py" for i in range(10)]
    assert [f.path for f in small.files] == sorted(f.path for f in small.files)


def test_split_is_deterministic_and_independent_of_the_absolute_root(tmp_path, py_tree):
    copy = tmp_path / "elsewhere" / "deeper" / "proj"
    shutil.copytree(py_tree, copy)
    first = collect_corpus([str(py_tree)])
    second = collect_corpus([str(copy)])
    assert first.files == second.files
    splits = [split_of(f.path, 0.3, 0.3) for f in first.files]
    assert splits == [split_of(f.path, 0.3, 0.3) for f in second.files]
    assert set(splits) == {"train", "val", "test"}


def test_split_fractions_and_stability_of_test(tmp_path):
    paths = [f"pkg{i % 7}/module_{i}.py" for i in range(4000)]
    counts = Counter(split_of(p, 0.1, 0.2) for p in paths)
    assert abs(counts["val"] / 4000 - 0.1) < 0.03
    assert abs(counts["test"] / 4000 - 0.2) < 0.03
    # Growing val takes files from train only: the test split stays exactly the same.
    test_before = [p for p in paths if split_of(p, 0.1, 0.2) == "test"]
    assert test_before == [p for p in paths if split_of(p, 0.4, 0.2) == "test"]
    assert all(split_of(p, 0.0, 0.0) == "train" for p in paths[:100])


@pytest.mark.stdlib
def test_default_corpus_is_the_stdlib_without_site_packages():
    """Reads the machine's real standard library (it is what the default means) and asserts
    only what holds for any Python 3.11.x: which files it has differs between builds."""
    root = stdlib_dir()
    assert (root / "os.py").is_file()
    corpus = collect_corpus(max_files=25)
    assert len(corpus.files) == 25
    for f in corpus.files:
        assert not f.path.startswith("/") and "site-packages" not in f.path
        assert (root / f.path).is_file()
    assert "standard library" in corpus.description


def test_negative_max_files_is_an_error():
    with pytest.raises(DataError, match="max_files"):
        collect_corpus(max_files=-1)
