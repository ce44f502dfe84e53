"""Prepare a preset's corpus (or reuse its cache) and print the numbers the README quotes.

    python scripts/corpus_stats.py wide

Prints, per source, the files, bytes and duplicates; for the whole corpus the files, bytes and
tokens per split and the build time (from meta.json); whether every built-in task builds its
splits with the corpus's tokenizer; and the size of the prepared data and of the wheel cache.
Building `wide` for the first time downloads its wheels and takes minutes.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from tokenizers import Tokenizer

from sparsecircuits.config import load_config
from sparsecircuits.data.corpus import collect_corpus
from sparsecircuits.data.prepare import default_cache_dir, prepare_data
from sparsecircuits.data.pypi import CACHE_SUBDIR
from sparsecircuits.errors import TaskError
from sparsecircuits.tasks import SplitSizes, all_tasks


def dir_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="preset name or YAML file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config(args.config)
    cache = Path(cfg.data.cache_dir).expanduser() if cfg.data.cache_dir else default_cache_dir()
    for source in cfg.data.sources or ("stdlib",):
        alone = collect_corpus([source], cache_dir=cache)
        print(
            f"source {source}: {len(alone.files)} files, {alone.n_bytes / 1e6:.1f} MB, "
            f"{alone.duplicates} duplicates dropped, {alone.skipped} not UTF-8"
        )
    start = time.perf_counter()
    prepared = prepare_data(cfg.data, cfg.model.vocab_size)
    stats = prepared.stats
    print(f"prepare_data: {time.perf_counter() - start:.0f} s (build: {stats['build_seconds']} s)")
    print(f"all sources: {stats['duplicate_files']} duplicates dropped across sources")
    for split in ("train", "val", "test"):
        print(
            f"{split}: {stats['files'][split]} files, {stats['bytes'][split] / 1e6:.1f} MB, "
            f"{stats['tokens'][split]:,} tokens"
        )
    print(f"total tokens: {sum(stats['tokens'].values()):,}")
    tok = Tokenizer.from_file(str(prepared.tokenizer_path))
    failed = []
    for task in all_tasks():
        try:
            task.splits(SplitSizes(), tokenizer=tok)
        except TaskError as exc:
            failed.append(f"{task.name}: {exc}")
    print(f"tasks expressible: {len(all_tasks()) - len(failed)} of {len(all_tasks())}")
    for line in failed:
        print("  " + line)
    print(f"prepared data: {dir_mib(prepared.root):.0f} MiB in {prepared.root}")
    wheels = cache / CACHE_SUBDIR
    if wheels.is_dir():
        print(f"wheel cache: {dir_mib(wheels):.0f} MiB in {wheels}")


if __name__ == "__main__":
    main()
