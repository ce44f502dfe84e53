"""prepare_data: corpus -> tokenizer + shards, and its on-disk cache."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from sparsecircuits.config import DataConfig
from sparsecircuits.data.corpus import SPLITS, collect_corpus, split_of
from sparsecircuits.data.prepare import PreparedData, open_prepared, prepare_data
from sparsecircuits.data.shards import TokenShard
from sparsecircuits.data.tokenizer import EOT, eot_id, load_tokenizer, single_token_id
from sparsecircuits.errors import DataError
from tests.conftest import TEST_CORPUS

VOCAB = 400


def config(tmp_path, sources, **kw) -> DataConfig:
    kw.setdefault("val_fraction", 0.15)
    kw.setdefault("test_fraction", 0.15)
    return DataConfig(
        sources=tuple(str(s) for s in sources), cache_dir=str(tmp_path / "cache"), **kw
    )


def test_outputs_decode_back_to_the_split_files(tmp_path, py_tree, caplog):
    caplog.set_level(logging.INFO, logger="sparsecircuits.data")
    prepared = prepare_data(config(tmp_path, [py_tree]), VOCAB)
    assert isinstance(prepared, PreparedData)
    assert prepared.root.parent == tmp_path / "cache"
    tok = load_tokenizer(prepared.tokenizer_path)
    assert tok.get_vocab_size() == VOCAB
    files = json.loads((prepared.root / "files.json").read_text())["splits"]
    texts = {f.path: f.text for f in collect_corpus([str(py_tree)]).files}
    assert sorted(sum(files.values(), [])) == sorted(texts)
    stats = prepared.stats
    for split in SPLITS:
        shard = TokenShard(prepared.shards[split])
        assert len(shard) == stats["tokens"][split] > 0
        assert stats["files"][split] == len(files[split])
        decoded = tok.decode(shard.tokens.tolist(), skip_special_tokens=False)
        # Every file is followed by exactly one EOT.
        assert decoded == "".join(texts[p] + EOT for p in files[split])
    assert stats["vocab_size"] == VOCAB and stats["eot_id"] == eot_id(tok)
    assert stats["skipped_files"] == 0 and stats["format_version"] == 1
    assert json.loads((prepared.root / "meta.json").read_text()) == stats
    assert "tokens" in caplog.text and "20 files" in caplog.text


def test_eot_inside_a_source_file_is_encoded_as_text(tmp_path, py_tree):
    (py_tree / "tricky.py").write_text(f"MARK = '{EOT}'\n")
    prepared = prepare_data(config(tmp_path, [py_tree]), VOCAB)
    eot = prepared.stats["eot_id"]
    n_eot = sum(int((TokenShard(p).tokens == eot).sum()) for p in prepared.shards.values())
    assert n_eot == sum(prepared.stats["files"].values())


def test_second_call_reuses_the_cache(tmp_path, py_tree):
    cfg = config(tmp_path, [py_tree])
    first = prepare_data(cfg, VOCAB)
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.root.iterdir()}
    second = prepare_data(cfg, VOCAB)
    assert second.root == first.root
    assert {p.name: p.stat().st_mtime_ns for p in second.root.iterdir()} == mtimes
    assert second.stats == first.stats


def test_a_given_tokenizer_encodes_a_changed_corpus_in_its_own_ids(tmp_path, py_tree):
    cfg = config(tmp_path, [py_tree])
    first = prepare_data(cfg, VOCAB)
    tok = load_tokenizer(first.tokenizer_path)
    assert prepare_data(cfg, VOCAB, tokenizer=tok).root == first.root  # its own data: reused
    with open(py_tree / "keyword.py", "a") as f:
        f.write("\nEXTRA = 1\n")
    given = prepare_data(cfg, VOCAB, tokenizer=tok)
    assert given.root != first.root and given.stats["tokenizer"] == "given"
    assert load_tokenizer(given.tokenizer_path).to_str() == tok.to_str()
    retrained = prepare_data(cfg, VOCAB)
    assert retrained.stats["tokenizer"] == "trained" and retrained.root != given.root
    text = tok.decode(TokenShard(given.shards["train"]).tokens.tolist())
    assert "EXTRA = 1" in text or "EXTRA = 1" in tok.decode(
        TokenShard(given.shards["val"]).tokens.tolist() + TokenShard(given.shards["test"]).tokens.tolist())


def test_a_changed_file_or_setting_rebuilds(tmp_path, py_tree):
    cfg = config(tmp_path, [py_tree])
    first = prepare_data(cfg, VOCAB)
    with open(py_tree / "keyword.py", "a") as f:
        f.write("\nEXTRA = 1\n")
    changed = prepare_data(cfg, VOCAB)
    assert changed.root != first.root
    assert changed.stats["tokens"] != first.stats["tokens"]
    other_vocab = prepare_data(cfg, VOCAB + 1)
    assert len({first.root, changed.root, other_vocab.root}) == 3
    assert first.root.is_dir()  # the old build stays valid for runs that used it


def test_failed_build_leaves_no_cache_behind(tmp_path, py_tree):
    cfg = config(tmp_path, [py_tree])
    with pytest.raises(DataError, match="too small"):
        prepare_data(cfg, 60000)
    assert list((tmp_path / "cache").iterdir()) == []


def test_incomplete_cache_directory_is_rebuilt(tmp_path, py_tree):
    cfg = config(tmp_path, [py_tree])
    first = prepare_data(cfg, VOCAB)
    (first.root / "val.bin").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="wrong size"):
        open_prepared(first.root)
    again = prepare_data(cfg, VOCAB)
    assert again.root == first.root
    assert len(TokenShard(again.shards["val"])) == first.stats["tokens"]["val"]


def test_tiny_corpus_still_gets_val_and_test_files(tmp_path):
    names = ("b", "c", "d")
    # By hash all three would be train: both val and test need a file moved in.
    assert [split_of(f"{n}.py", 0.01, 0.01) for n in names] == ["train"] * 3
    for name in names:
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / f"{name}.py").write_text(
            f"def {name}(x):\n    return [x for x in range({len(name)})]\n" * 40
        )
    prepared = prepare_data(
        config(tmp_path, [tmp_path / "src"], val_fraction=0.01, test_fraction=0.01), 270
    )
    assert prepared.stats["files"] == {"train": 1, "val": 1, "test": 1}
    assert len(prepared.stats["split_fallbacks"]) == 2


def test_test_split_is_empty_when_its_fraction_is_zero(tmp_path, py_tree):
    prepared = prepare_data(config(tmp_path, [py_tree], test_fraction=0.0), VOCAB)
    assert prepared.stats["files"]["test"] == 0
    assert len(TokenShard(prepared.shards["test"])) == 0
    assert prepared.stats["files"]["val"] >= 1


def test_too_few_files_is_an_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "only.py").write_text("x = 1\n")
    with pytest.raises(DataError, match="at least 3 are needed"):
        prepare_data(config(tmp_path, [tmp_path / "src"]), VOCAB)


def test_missing_source_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_data(config(tmp_path, [tmp_path / "missing"]), VOCAB)


@pytest.mark.parametrize("vocab", [512, 2048])
def test_quote_pairs_are_single_tokens_on_the_test_corpus(tmp_path, vocab):
    """`("`, `('`, `")`, `')` must be single tokens for the string-closing task, in the tiny
    model's 512-token BPE and the paper's 2048 (the test corpus is committed, so this is a fact
    about our tokenizer pipeline, not about the machine's standard library)."""
    cfg = DataConfig(sources=(str(TEST_CORPUS),), cache_dir=str(tmp_path / "cache"))
    prepared = prepare_data(cfg, vocab)
    tok = load_tokenizer(prepared.tokenizer_path)
    assert tok.get_vocab_size() == vocab
    ids = {text: single_token_id(tok, text) for text in ('("', "('", '")', "')")}
    assert None not in ids.values(), ids
    assert len(set(ids.values())) == 4
    assert sum(prepared.stats["files"].values()) == len(list(TEST_CORPUS.rglob("*.py")))


def test_leftovers_of_a_killed_build_are_removed(tmp_path, py_tree):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now belongs to no process, like a build killed with SIGKILL
    cache = tmp_path / "cache"
    leftover = cache / f".build.tmp-{socket.gethostname()}-{dead.pid}-abc123"
    leftover.mkdir(parents=True)
    (leftover / "train.bin").write_bytes(b"\x00\x00")
    alive = cache / f".build.tmp-{socket.gethostname()}-{os.getpid()}-def456"
    alive.mkdir()
    prepared = prepare_data(config(tmp_path, [py_tree]), VOCAB)
    assert not leftover.exists()
    assert alive.exists()  # a build still running (here: this process) is left alone
    assert sorted(p.name for p in cache.iterdir()) == sorted([alive.name, prepared.root.name])
