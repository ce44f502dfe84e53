"""The Python corpus: which .py files we train on, and which split each file belongs to.

Sources are directories (searched recursively for `*.py`), glob patterns, `stdlib` (the
standard library of the running interpreter, which every machine has) or `idioms:N[:SEED]` (N
generated modules of simple Python idioms, see `idioms.py`, named `idioms/00001.py`, ...) or
`pypi:LIST` (the .py files of a pinned list of PyPI wheels, see `pypi.py`); with
no source the corpus is the standard library, so the default needs no download. Every file is
named by its path relative to the root it was found under, never by its absolute path: the
train/val/test assignment (a hash of that name) is then the same on every machine, wherever
Python or the user's checkout happens to live.

A file larger than `MAX_SOURCE_FILE_BYTES` is skipped before it is read (a generated data
table or a stray dump is not code to learn from, and reading it whole could exhaust memory);
skipped files are counted in `Corpus.too_large`, whatever source they came from.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import logging
import os
import sysconfig
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sparsecircuits.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
STDLIB_SOURCE = "stdlib"
"""The source name for the standard library (a directory called stdlib is `./stdlib`)."""
IDIOMS_PREFIX = "idioms:"
"""Prefix of the generated-idioms source, `idioms:N` or `idioms:N:SEED` (seed 0 by default)."""
PYPI_PREFIX = "pypi:"
"""Prefix of the PyPI source, `pypi:NAME` (a bundled list) or `pypi:PATH` (see `pypi.py`)."""
MAX_IDIOM_FILES = 1_000_000
"""Largest N accepted in `idioms:N` (a typo with extra zeros should fail, not run for hours)."""
MAX_SOURCE_FILE_BYTES = 2 * 2**20
"""Larger .py files are skipped and counted (the standard library's largest is under 1 MB)."""
TOO_LARGE = "too large"
"""What a source's loader returns, instead of the text, for a file over MAX_SOURCE_FILE_BYTES
(known from its size, before reading it)."""

# Directories never searched: installed third-party packages (they live under the stdlib
# directory but are not the standard library) and caches. Hidden dirs (.git, .venv) neither.
_SKIPPED_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages"})
_GLOB_MAGIC = frozenset("*?[")


@dataclass(frozen=True)
class SourceFile:
    """One readable UTF-8 .py file."""

    path: str
    """Path relative to the source root it was found under, with '/' separators."""
    text: str
    """The file's contents (a UTF-8 byte-order mark, if any, removed)."""


@dataclass(frozen=True)
class Corpus:
    """The collected files, sorted by path, without duplicates."""

    files: tuple[SourceFile, ...]
    """The files, sorted by `path`."""
    skipped: int
    """Number of .py paths that could not be read as UTF-8 text (not a file, unreadable, ...)."""
    duplicates: int = 0
    """Number of files dropped because another file (kept: the smaller path) has the same text."""
    description: str = ""
    """Human-readable summary of where the files came from."""
    too_large: int = 0
    """Number of files skipped unread because they hold more than MAX_SOURCE_FILE_BYTES."""

    @property
    def n_bytes(self) -> int:
        return sum(len(f.text.encode("utf-8")) for f in self.files)


def stdlib_dir() -> Path:
    """The running interpreter's standard library directory (a venv's base interpreter's)."""
    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def path_hash(salt: str, path: str) -> float:
    """A number in [0, 1) that depends only on (salt, path): stable across machines and runs."""
    digest = hashlib.sha256(f"{salt}\0{path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(path: str, val_fraction: float, test_fraction: float) -> str:
    """'train', 'val' or 'test' for a file, from a sha256 of its relative path.

    The first `test_fraction` of the hash range is test, the next `val_fraction` is val, so
    growing val_fraction moves files from train to val but never touches the test split.
    """
    if not (0.0 <= val_fraction <= 1.0 and 0.0 <= test_fraction <= 1.0):
        raise DataError(
            f"split fractions must be in [0, 1], got val={val_fraction}, test={test_fraction}"
        )
    u = path_hash("split", path)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def _is_glob(source: str) -> bool:
    return any(c in _GLOB_MAGIC for c in source)


def _glob_root(pattern: str) -> Path:
    """The directory part of a glob before its first wildcard: names are made relative to it."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if any(c in _GLOB_MAGIC for c in part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _candidates(source: str) -> Iterator[tuple[Path, Path]]:
    """(root, absolute path) for every *.py path a source names; DataError if it names nothing."""
    expanded = os.path.expanduser(source)
    if _is_glob(expanded):
        root = Path(os.path.abspath(_glob_root(expanded)))
        matches = sorted(glob.glob(expanded, recursive=True))
        matches = [m for m in matches if m.endswith(".py")]
        if not matches:
            raise DataError(f"corpus glob '{source}' matches no .py files")
        for match in matches:
            yield root, Path(os.path.abspath(match))
        return
    path = Path(expanded)
    if path.is_dir():
        yield from _walk(path.resolve())
    elif path.is_file():
        if path.suffix != ".py":
            raise DataError(f"corpus source '{source}' is not a .py file or a directory")
        yield path.resolve().parent, path.resolve()
    else:
        raise DataError(f"corpus source '{source}' does not exist")


def _walk(root: Path) -> Iterator[tuple[Path, Path]]:
    """(root, path) for every entry named *.py under root, outside skipped and hidden dirs.

    Directories named *.py are yielded too (and later counted as skipped): the user asked for
    .py paths and should hear that one of them was not a file. Symlinked directories are not
    followed, so a link cycle cannot trap the walk.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIPPED_DIRS and not d.startswith(".")
        )
        here = Path(dirpath)
        for name in sorted(filenames + dirnames):
            if name.endswith(".py"):
                yield root, here / name


def _stdlib_candidates() -> Iterator[tuple[Path, Path]]:
    root = stdlib_dir()
    if not root.is_dir():
        raise DataError(f"the standard library directory {root} does not exist")
    yield from _walk(root)


def _read_text(path: Path) -> str | None:
    """The file as text, TOO_LARGE (unread) if it is over the size bound, or None if it is not
    a readable regular UTF-8 file."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_SOURCE_FILE_BYTES:
                return TOO_LARGE
            data = f.read(MAX_SOURCE_FILE_BYTES + 1)  # a file growing while read stays bounded
    except OSError:  # a directory named x.py, a broken link, no permission, ...
        return None
    if len(data) > MAX_SOURCE_FILE_BYTES:
        return TOO_LARGE
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def parse_idioms_source(source: str) -> tuple[int, int] | None:
    """(n_files, seed) for an `idioms:N[:SEED]` source, None for any other source."""
    if not source.startswith(IDIOMS_PREFIX):
        return None
    parts = source[len(IDIOMS_PREFIX) :].split(":")
    try:
        if len(parts) > 2:
            raise ValueError
        n_files, seed = int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise DataError(
            f"corpus source '{source}' must look like idioms:N or idioms:N:SEED (integers)"
        ) from None
    if not 1 <= n_files <= MAX_IDIOM_FILES or seed < 0:
        raise DataError(
            f"corpus source '{source}': idioms:N[:SEED] needs 1 <= N <= {MAX_IDIOM_FILES} "
            "and SEED >= 0"
        )
    return n_files, seed


def describe_sources(sources: Sequence[str]) -> str:
    if not sources:
        sources = (STDLIB_SOURCE,)
    return ", ".join(
        f"Python standard library ({stdlib_dir()})" if s == STDLIB_SOURCE else s for s in sources
    )


def collect_corpus(
    sources: Sequence[str] = (), max_files: int = 0, cache_dir: str | Path = ""
) -> Corpus:
    """Collect the .py files named by `sources` (default: the standard library).

    A source is a directory, a glob, a .py file, `stdlib`, `idioms:N[:SEED]` or `pypi:LIST`
    (see the module docstring; `pypi:` wheels are kept under `cache_dir`, the data cache).
    Files are named relative to their source root; generated ones `idioms/00001.py`
    (`idioms/seed<SEED>/00001.py` for a seed other than 0). The same absolute file reached
    twice (say by a directory and an overlapping glob) counts once, and so do files with
    identical contents (the one with the smaller path is kept), so no text sits in two splits.
    Names that collide across roots get the root's name (`generated` for idioms) as a prefix.
    With `max_files > 0` the files are taken in
    order of a path hash, which spreads the subset over the whole tree deterministically.
    """
    if max_files < 0:
        raise DataError(f"max_files must be >= 0, got {max_files}")
    if isinstance(sources, str):  # a lone string would otherwise be read as characters
        sources = (sources,)
    # (name, loader): files are read (or generated) only once the max_files subset is known.
    candidates: list[tuple[str, Callable[[], str | None]]] = []
    # Real paths; (seed, index) of generated files; ("pypi", name) of files in wheels.
    seen: set[Path | tuple[int, int] | tuple[str, str]] = set()
    used_names: set[str] = set()
    for source in sources or (STDLIB_SOURCE,):
        idioms = parse_idioms_source(source)
        if idioms is not None:
            # Imported here: idioms.py builds on SourceFile from this module.
            from sparsecircuits.data.idioms import generate_idiom_file, idiom_path

            n_files, seed = idioms
            for index in range(1, n_files + 1):
                if (seed, index) in seen:
                    continue
                seen.add((seed, index))
                name = _claim_name(idiom_path(index, seed), "generated", used_names)
                candidates.append((name, functools.partial(generate_idiom_file, index, seed)))
            continue
        if source.startswith(PYPI_PREFIX):
            # Imported here: only a pypi: source needs pip, zip files and the wheel cache.
            from sparsecircuits.data.pypi import pypi_files

            for name, load in pypi_files(source[len(PYPI_PREFIX) :], cache_dir):
                if ("pypi", name) not in seen:
                    seen.add(("pypi", name))
                    candidates.append((_claim_name(name, "pypi", used_names), load))
            continue
        stream = _stdlib_candidates() if source == STDLIB_SOURCE else _candidates(source)
        for root, found in stream:
            key = Path(os.path.realpath(found))
            if key in seen:
                continue
            seen.add(key)
            name = _unique_name(root, found, used_names)
            candidates.append((name, functools.partial(_read_text, found)))

    if max_files > 0:
        candidates.sort(key=lambda c: (path_hash("subset", c[0]), c[0]))
    else:
        candidates.sort(key=lambda c: c[0])

    files: list[SourceFile] = []
    seen_content: dict[bytes, int] = {}
    skipped = duplicates = too_large = 0
    for name, load in candidates:
        if max_files and len(files) >= max_files:
            break
        text = load()
        if text is None:
            skipped += 1
            logger.debug("skipped %s: not a readable UTF-8 file", name)
            continue
        # The bound holds for every source: a loader that cannot tell the size before reading
        # is checked here (characters never outnumber UTF-8 bytes).
        if text is TOO_LARGE or len(text) > MAX_SOURCE_FILE_BYTES:
            too_large += 1
            logger.debug("skipped %s: larger than %d bytes", name, MAX_SOURCE_FILE_BYTES)
            continue
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        if digest in seen_content:
            # Keep the smaller path, so the choice does not depend on the traversal order.
            i = seen_content[digest]
            if name < files[i].path:
                files[i] = SourceFile(name, text)
            duplicates += 1
            continue
        seen_content[digest] = len(files)
        files.append(SourceFile(name, text))

    description = describe_sources(sources)
    if not files:
        raise DataError(
            f"no readable .py file found in {description} ({skipped} skipped, "
            f"{too_large} over {MAX_SOURCE_FILE_BYTES // 2**20} MiB)"
        )
    files.sort(key=lambda f: f.path)
    if skipped:
        logger.info("corpus: skipped %d .py paths that are not readable UTF-8 files", skipped)
    if too_large:
        logger.info(
            "corpus: skipped %d .py files larger than %d MiB",
            too_large,
            MAX_SOURCE_FILE_BYTES // 2**20,
        )
    return Corpus(tuple(files), skipped, duplicates, description, too_large=too_large)


def _unique_name(root: Path, found: Path, used: set[str]) -> str:
    return _claim_name(Path(os.path.relpath(found, root)).as_posix(), root.name, used)


def _claim_name(name: str, prefix: str, used: set[str]) -> str:
    """`name`, or `prefix/name` (then `prefix/name#2`, ...) if taken; the result is added to
    `used`."""
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{prefix}/{name}" if n == 2 else f"{prefix}/{name}#{n - 1}"
    used.add(candidate)
    return candidate
