"""Temporary build directories of killed writers are removed, live ones kept; `--out` checks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsecircuits.errors import CheckpointError
from sparsecircuits.fileformat import (
    STALE_TEMP_AGE_S,
    check_writable_dir,
    remove_stale_temp_dirs,
    temp_dir,
)

MAKE_TEMP_DIR = """
import sys, time
from pathlib import Path
from sparsecircuits.fileformat import temp_dir
tmp = temp_dir(Path(sys.argv[1]), sys.argv[2])
(tmp / "model.safetensors").write_bytes(b"half a fi")
print(tmp, flush=True)
time.sleep(600)
"""


def _writer_with_temp_dir(parent: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """A real process that has started building `name` in `parent` and is still running."""
    proc = subprocess.Popen([sys.executable, "-c", MAKE_TEMP_DIR, str(parent), name],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    line = proc.stdout.readline().strip()
    assert line, "the writer died before creating its temp dir"
    return proc, Path(line)


def test_temp_dirs_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    killed, killed_dir = _writer_with_temp_dir(tmp_path, "checkpoint")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    live, live_dir = _writer_with_temp_dir(tmp_path, "checkpoint")
    try:
        unnamed = tmp_path / ".checkpoint.tmp-abc123"  # an older version's name: no host, no pid
        unnamed.mkdir()
        elsewhere = tmp_path / ".checkpoint.tmp-other-host-42-xyz"  # cannot be asked
        elsewhere.mkdir()
        ancient = tmp_path / ".checkpoint.tmp-other-host-43-uvw"
        ancient.mkdir()
        long_ago = time.time() - 2 * STALE_TEMP_AGE_S
        os.utime(ancient, (long_ago, long_ago))
        other_name = tmp_path / ".model.tmp-abc123"  # another artifact's temp dir
        other_name.mkdir()
        (tmp_path / "outside").mkdir()
        link = tmp_path / ".checkpoint.tmp-link"
        link.symlink_to(tmp_path / "outside")

        removed = remove_stale_temp_dirs(tmp_path, "checkpoint")

        assert sorted(removed) == sorted([killed_dir, unnamed, ancient])
        assert live_dir.is_dir() and elsewhere.is_dir() and other_name.is_dir()
        assert link.is_symlink() and (tmp_path / "outside").is_dir()  # links are not followed
    finally:
        live.kill()
        live.wait()


def test_temp_dirs_are_unique_shared_and_name_their_writer(tmp_path):
    a, b = temp_dir(tmp_path, "m"), temp_dir(tmp_path, "m")
    assert a != b and a.parent == b.parent == tmp_path
    assert a.name.startswith(f".m.tmp-{socket.gethostname()}-{os.getpid()}-")
    assert a.stat().st_mode & 0o777 == 0o755
    assert remove_stale_temp_dirs(tmp_path, "m") == []  # our own: alive


def test_writable_dir_check_creates_nothing_and_names_the_problem(tmp_path):
    check_writable_dir(tmp_path, "run directory", CheckpointError)
    check_writable_dir(tmp_path / "a" / "b", "run directory", CheckpointError)
    assert not (tmp_path / "a").exists()
    assert list(tmp_path.iterdir()) == []  # the write probe was removed
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(CheckpointError, match=r"run directory .*file is not a directory$"):
        check_writable_dir(file, "run directory", CheckpointError)
    with pytest.raises(CheckpointError, match=r"cannot be created: .*file is not a directory"):
        check_writable_dir(file / "run", "run directory", CheckpointError)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="not a directory"):
        check_writable_dir(dangling, "run directory", CheckpointError)
