"""How our files reach the disk and come back: one atomic write, one strict-JSON writer, and
one reader of versioned JSON (our JSON formats carry a `format` marker and a `format_version`).

Every file the package writes goes through `atomic_write` (or `write_json`, built on it): the
bytes land in a uniquely named temporary file beside the target, are flushed to disk, and are
renamed over the target in one step, so a reader never sees half a file and a kill never leaves
a damaged artifact. Two writers at once never share a temporary file.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparsecircuits.errors import SparseCircuitsError

FILE_MODE = 0o644
"""Permissions of every artifact we write: readable by others, like a checkpoint."""
DIR_MODE = 0o755
"""Permissions of every artifact directory we build (a checkpoint, an exported model)."""
STALE_TEMP_AGE_S = 24 * 3600
"""A temporary directory this old is a leftover whatever its name says (no write takes a day)."""


def atomic_write(path: str | Path, write: Callable[[Path], None], mode: int = FILE_MODE) -> Path:
    """Create or replace `path` atomically: `write(tmp)` fills a temporary file, then rename.

    The temporary file sits in the target's directory (a rename never crosses file systems)
    under a unique name, and is removed if `write` fails or the process is interrupted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as fh:  # data on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = FILE_MODE) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), mode)


def atomic_write_text(path: str | Path, text: str, mode: int = FILE_MODE) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), mode)


def strict_json_value(value: Any) -> Any:
    """`value` with every non-finite float replaced by None: NaN and inf have no JSON spelling."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json_value(v) for v in value]
    return value


def dumps_strict(doc: Any, indent: int | None = 1) -> str:
    """Strict JSON text of `doc` (non-finite floats written as null)."""
    return json.dumps(strict_json_value(doc), indent=indent, allow_nan=False)


def write_json(path: str | Path, doc: Any, indent: int | None = 1) -> Path:
    """Write `doc` atomically as strict JSON (NaN/inf become null), newline-terminated."""
    return atomic_write_text(path, dumps_strict(doc, indent) + "\n")


def temp_dir(parent: Path, name: str) -> Path:
    """A new directory `parent/.<name>.tmp-<host>-<pid>-<random>` (mode 0755) to build `name` in.

    The host and pid in its name let `remove_stale_temp_dirs` tell a killed writer's leftover
    from another live writer's work in progress; the random part keeps two writers apart.
    """
    parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{name}.tmp-{socket.gethostname()}-{os.getpid()}-"
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    tmp.chmod(DIR_MODE)  # mkdtemp makes it private; our artifacts are meant to be shared
    return tmp


def remove_stale_temp_dirs(parent: Path, name: str) -> list[Path]:
    """Delete the `temp_dir(parent, name)` directories whose writer is gone; return them.

    Gone: a process of this host that no longer exists, a name without host and pid (left by
    an older version), or anything older than `STALE_TEMP_AGE_S`. A live writer's directory,
    or one of another host that is younger than that, is left alone.
    """
    removed = []
    stem = f".{name}.tmp-"
    for entry in Path(parent).glob(glob.escape(stem) + "*"):
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            age = time.time() - entry.stat().st_mtime
        except OSError:
            continue  # removed meanwhile
        if age < STALE_TEMP_AGE_S and _writer_alive(entry.name[len(stem):]):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _writer_alive(tag: str) -> bool:
    """Whether the writer named by a temp dir's `<host>-<pid>-<random>` may still be running."""
    parts = tag.rsplit("-", 2)  # the host may contain dashes; mkdtemp's random part does not
    if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    if host != socket.gethostname() or pid == os.getpid():
        return True  # another machine's writer cannot be asked; our own is running
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # exists but is not ours to signal
    return True


def check_writable_dir(path: str | Path, what: str, error: type[SparseCircuitsError]) -> None:
    """Raise `error` (one line) unless `path` is, or can be made, a directory we can write in.

    Called before long work so that a bad `--out` fails at once, not after it. Creates nothing:
    a missing `path` is judged by its nearest existing ancestor, which must be a directory we
    can create files in (tested by creating one, since permission bits lie for root and
    read-only mounts).
    """
    path = Path(path)
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        if probe == path:
            raise error(f"{what} {path} is not a directory")
        raise error(f"{what} {path} cannot be created: {probe} is not a directory")
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".write-test-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise error(f"cannot write to {what} {path}: {exc.strerror or exc}") from None


def read_versioned_json(
    file: Path, fmt: str, version: int, kind: str, error: type[SparseCircuitsError],
    where: Path | None = None, content: bytes | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The JSON object in `file`, checked to be a `kind` of `fmt` at `version`.

    Raises `error` with one line naming the problem: unreadable or corrupt JSON, a missing
    marker (a foreign file), or another format version. `where` names the artifact in messages
    (a checkpoint directory, say); it defaults to the file itself. `content` is the file's
    bytes when the caller has already read them (one consistent snapshot of a directory).
    """
    where = file if where is None else where
    try:
        raw = file.read_bytes() if content is None else content
        doc = json.loads(raw.decode("utf-8"))
    # ValueError: JSONDecodeError, and an integer literal too long for int() (4300 digits).
    except (OSError, ValueError, RecursionError) as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        raise error(f"{file} is corrupt: {lines[0]}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{where} is not a sparsecircuits {kind} ({file.name} has no '{fmt}' marker)")
    if doc.get("format_version") != version:
        raise error(
            f"{where} has {kind} format version {doc.get('format_version')}, "
            f"this sparsecircuits reads version {version}"
        )
    return doc


def write_figure(path: Path, fig: Any) -> Path:
    """Lay out a matplotlib figure, write it atomically (PNG unless `path` names another
    format) and free it: every figure the package writes goes through here."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:  # the format from `path`: the temporary file's name does not end in it
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=path.suffix[1:] or "png"))
    finally:
        plt.close(fig)
    return path
