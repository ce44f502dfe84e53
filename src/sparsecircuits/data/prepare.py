"""Corpus -> tokenizer + token shards, cached on disk by a fingerprint of everything that matters.

Pipeline: collect the corpus, split it by file, train the BPE on the train files only (so val
and test text never shapes the vocabulary), encode every split with `<|endoftext|>` after each
file, and write `tokenizer.json`, `train.bin`, `val.bin`, `test.bin`, `meta.json` and
`files.json` (which file went to which split).

The cache directory is `<cache_dir>/<fingerprint>`, where the fingerprint covers the format
version, vocab size, split fractions, max_files, the `tokenizers` version and every file's
(relative path, size, content hash): a changed corpus rebuilds, an unchanged one is reused.
A build happens in a temporary sibling directory that is renamed into place only when complete,
so a crash or a kill never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
from tokenizers import Tokenizer
from tqdm import tqdm

from sparsecircuits.config import DataConfig
from sparsecircuits.data.corpus import SPLITS, Corpus, SourceFile, collect_corpus, split_of
from sparsecircuits.data.shards import DTYPE, write_shard
from sparsecircuits.data.task_tokens import TokenRules, task_token_rules, train_task_tokenizer
from sparsecircuits.data.tokenizer import eot_id, save_tokenizer, train_tokenizer
from sparsecircuits.errors import DataError
from sparsecircuits.fileformat import remove_stale_temp_dirs, temp_dir, write_json

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
FILES_FILE = "files.json"
# Files per encode_batch call: large enough for the Rust side to use every core.
ENCODE_CHUNK_FILES = 256
BUILD_TEMP_NAME = "build"
"""Builds happen in `<cache>/.build.tmp-<host>-<pid>-<random>` (`fileformat.temp_dir`)."""


@dataclass
class PreparedData:
    """A complete prepared-data directory."""

    root: Path
    """The cache directory holding everything below."""
    tokenizer_path: Path
    """`tokenizer.json`."""
    shards: dict[str, Path]
    """Split name ('train', 'val', 'test') -> uint16 token shard."""
    stats: dict[str, Any]
    """The contents of meta.json: files, bytes and tokens per split, skipped files, ..."""


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "sparsecircuits" / "data"


def shard_name(split: str) -> str:
    return f"{split}.bin"


def fingerprint(
    corpus: Corpus, cfg: DataConfig, vocab_size: int, rules: TokenRules | None = None
) -> str:
    """A hex digest of everything the prepared data depends on (`rules`: the task-token rules
    the BPE is edited to satisfy, when `data.task_tokens` is on)."""
    h = hashlib.sha256()
    header = {
        "format_version": FORMAT_VERSION,
        "tokenizers_version": tokenizers.__version__,
        "vocab_size": vocab_size,
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "max_files": cfg.max_files,
    }
    if rules is not None:  # absent otherwise, so caches built without the option stay valid
        header["task_token_rules"] = rules.digest()
    h.update(json.dumps(header, sort_keys=True).encode())
    for f in corpus.files:
        data = f.text.encode("utf-8")
        h.update(f"\n{f.path}\0{len(data)}\0".encode())
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def assign_splits(
    files: Sequence[SourceFile], val_fraction: float, test_fraction: float
) -> tuple[dict[str, list[SourceFile]], list[str]]:
    """Files per split by path hash, plus notes on any fallback that was needed.

    Train and val always get at least one file (training needs both), test too unless
    test_fraction is 0: on a tiny corpus a file is moved from the largest split and the move
    is recorded, rather than failing later on an empty shard.
    """
    if val_fraction + test_fraction >= 1.0:
        raise DataError("val_fraction + test_fraction must leave files for training")
    groups: dict[str, list[SourceFile]] = {s: [] for s in SPLITS}
    for f in files:
        groups[split_of(f.path, val_fraction, test_fraction)].append(f)
    required = ["train", "val"] + (["test"] if test_fraction > 0 else [])
    if len(files) < len(required):
        raise DataError(
            f"the corpus has {len(files)} .py file(s); at least {len(required)} are needed "
            f"(one each for {', '.join(required)})"
        )
    notes: list[str] = []
    for split in required:
        if groups[split]:
            continue
        donor = max(SPLITS, key=lambda s: len(groups[s]))
        moved = groups[donor].pop()  # the last path: a deterministic choice
        groups[split].append(moved)
        notes.append(f"moved {moved.path} from {donor} to {split}: {split} would be empty")
        logger.warning("data: %s", notes[-1])
    return groups, notes


def _encoded_files(
    tok: Tokenizer, files: Sequence[SourceFile], eot: int, bar: tqdm
) -> Iterator[np.ndarray]:
    """Each file's token ids followed by EOT, as uint16 arrays, encoded in parallel chunks."""
    for i in range(0, len(files), ENCODE_CHUNK_FILES):
        chunk = files[i : i + ENCODE_CHUNK_FILES]
        encodings = tok.encode_batch_fast([f.text for f in chunk], add_special_tokens=False)
        for enc in encodings:
            ids = np.empty(len(enc.ids) + 1, dtype=DTYPE)
            ids[:-1] = enc.ids
            ids[-1] = eot
            yield ids
        bar.update(len(chunk))


def _build(
    corpus: Corpus,
    cfg: DataConfig,
    vocab_size: int,
    fp: str,
    out: Path,
    progress: bool,
    tokenizer: Tokenizer | None = None,
    rules: TokenRules | None = None,
) -> dict[str, Any]:
    """Write every output file into `out` and return the stats (also written as meta.json)."""
    start = time.perf_counter()
    groups, notes = assign_splits(corpus.files, cfg.val_fraction, cfg.test_fraction)
    train_texts = [f.text for f in groups["train"]]
    n_bytes = {s: sum(len(f.text.encode("utf-8")) for f in groups[s]) for s in SPLITS}
    if tokenizer is None:
        logger.info(
            "data: training a %d-token BPE on %d train files (%.1f MB)",
            vocab_size,
            len(train_texts),
            n_bytes["train"] / 1e6,
        )
        if rules is None:
            tok = train_tokenizer(train_texts, vocab_size)
        else:
            tok = train_task_tokenizer(train_texts, vocab_size, rules)
    else:  # a copy: encoding below toggles a flag on the object
        tok = Tokenizer.from_str(tokenizer.to_str())
    save_tokenizer(tok, out / TOKENIZER_FILE)
    eot = eot_id(tok)

    n_tokens: dict[str, int] = {}
    # A literal "<|endoftext|>" inside a source file is text, not a file boundary.
    tok.encode_special_tokens = True
    try:
        with tqdm(
            total=len(corpus.files), desc="encoding", unit="file", disable=not progress
        ) as bar:
            for split in SPLITS:
                stream = _encoded_files(tok, groups[split], eot, bar)
                n_tokens[split] = write_shard(stream, out / shard_name(split))
    finally:
        tok.encode_special_tokens = False

    stats: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "fingerprint": fp,
        "corpus": corpus.description,
        "vocab_size": vocab_size,
        "eot_id": eot,
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "max_files": cfg.max_files,
        "skipped_files": corpus.skipped,
        "too_large_files": corpus.too_large,
        "duplicate_files": corpus.duplicates,
        "files": {s: len(groups[s]) for s in SPLITS},
        "bytes": n_bytes,
        "tokens": n_tokens,
        "bpe_train_bytes": n_bytes["train"] if tokenizer is None else 0,
        "tokenizer": "trained" if tokenizer is None else "given",
        "task_tokens": rules is not None and tokenizer is None,
        "split_fallbacks": notes,
        "tokenizers_version": tokenizers.__version__,
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    files_doc = {
        "format_version": FORMAT_VERSION,
        "splits": {s: [f.path for f in groups[s]] for s in SPLITS},
    }
    write_json(out / FILES_FILE, files_doc)
    # meta.json last: its presence marks the directory as complete.
    write_json(out / META_FILE, stats, indent=2)
    return stats


def open_prepared(root: str | Path) -> PreparedData:
    """Open a prepared-data directory; DataError if it is missing, incomplete or foreign."""
    root = Path(root)
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise DataError(f"prepared data {root} is incomplete: no {META_FILE}")
    try:
        stats = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"prepared data {root} has an unreadable {META_FILE}: {exc}") from None
    if not isinstance(stats, dict) or stats.get("format_version") != FORMAT_VERSION:
        version = stats.get("format_version") if isinstance(stats, dict) else None
        raise DataError(
            f"prepared data {root} has format version {version!r}, expected {FORMAT_VERSION}"
        )
    tokenizer_path = root / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise DataError(f"prepared data {root} is incomplete: no {TOKENIZER_FILE}")
    shards = {s: root / shard_name(s) for s in SPLITS}
    tokens = stats.get("tokens", {})
    for split, path in shards.items():
        expected = tokens.get(split) if isinstance(tokens, dict) else None
        if not path.is_file() or not isinstance(expected, int):
            raise DataError(f"prepared data {root} is incomplete: no {path.name}")
        if path.stat().st_size != expected * DTYPE.itemsize:
            raise DataError(f"prepared data {root} is corrupt: {path.name} has the wrong size")
    return PreparedData(root, tokenizer_path, shards, stats)


def _reusable(root: Path) -> PreparedData | None:
    """The complete prepared data in `root`, or None."""
    if not root.exists():
        return None
    try:
        return open_prepared(root)
    except DataError:
        return None


def prepare_data(
    cfg: DataConfig, vocab_size: int, progress: bool = False, tokenizer: Tokenizer | None = None
) -> PreparedData:
    """Build (or reuse) the tokenizer and token shards for `cfg`; see the module docstring.

    With `tokenizer` (a checkpoint's own), the shards are encoded with it instead of a newly
    trained BPE: a model then reads its corpus in its own token ids even where the corpus has
    changed since training (another Python's standard library, say). The data the model was
    trained on is reused when its tokenizer is that one.
    """
    corpus = collect_corpus(cfg.sources, cfg.max_files, cfg.cache_dir)
    rules = task_token_rules() if cfg.task_tokens else None
    logger.info(
        "data: %d files from %s (%d skipped, %d too large, %d duplicates)",
        len(corpus.files),
        corpus.description,
        corpus.skipped,
        corpus.too_large,
        corpus.duplicates,
    )
    fp = fingerprint(corpus, cfg, vocab_size, rules)
    cache_root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    if tokenizer is not None:
        own = _reusable(cache_root / fp)
        wanted = tokenizer.to_str()
        if own is not None and Tokenizer.from_file(str(own.tokenizer_path)).to_str() == wanted:
            logger.info("data: reusing %s", own.root)
            return own
        fp = hashlib.sha256(f"{fp}\0{wanted}".encode()).hexdigest()
    root = cache_root / fp

    if root.exists():
        try:
            prepared = open_prepared(root)
        except DataError as exc:
            logger.warning("data: rebuilding %s (%s)", root, exc)
            shutil.rmtree(root)
        else:
            logger.info("data: reusing %s", root)
            return prepared

    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data cache directory {cache_root}: {exc}") from None
    # Builds of every fingerprint share one temp-dir name, so a killed build of any corpus is
    # cleaned up by the next build of any other.
    remove_stale_temp_dirs(cache_root, BUILD_TEMP_NAME)
    tmp = temp_dir(cache_root, BUILD_TEMP_NAME)
    try:
        stats = _build(corpus, cfg, vocab_size, fp, tmp, progress, tokenizer, rules)
        try:
            os.rename(tmp, root)
        except OSError:
            # Another process finished the same build first; its result is identical.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prepared = open_prepared(root)
    for split in SPLITS:
        logger.info(
            "data: %s: %d files, %d tokens", split, stats["files"][split], stats["tokens"][split]
        )
    logger.info("data: wrote %s in %.1f s", root, stats["build_seconds"])
    return prepared
