"""`train --out` that cannot be written fails at once: before data preparation, not after it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _train(config_file: Path, out: Path, cache: Path, wrap: list[str] | None = None):
    argv = [sys.executable, "-m", "sparsecircuits", "train", "-c", str(config_file), "--set",
            f"data.cache_dir={cache}", "--out", str(out), "--no-progress"]  # fmt: skip
    return subprocess.run([*(wrap or []), *argv], capture_output=True, text=True, timeout=300)


def _one_line_error(result, message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_out_that_is_a_file_fails_before_data_preparation(tiny_config_file, tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("not a run")
    cache = tmp_path / "fresh-cache"
    _one_line_error(_train(tiny_config_file, file, cache), "is not a directory")
    _one_line_error(_train(tiny_config_file, file / "run", cache), "is not a directory")
    assert not cache.exists(), "data preparation ran before the output was checked"
    assert file.read_text() == "not a run"


def _read_only_wrapper(directory: Path) -> list[str] | None:
    """A command prefix under which `directory` is read-only, or None where none works.

    Permission bits do not stop root, so as root the directory is bind-mounted read-only in a
    private mount namespace (`unshare -m`); elsewhere it is chmod 0555 by the caller.
    """
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") is None:
        return None
    script = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" || exit 97; '
              'exec "$@"')  # fmt: skip
    wrap = ["unshare", "-m", "sh", "-c", script, str(directory)]
    probe = subprocess.run([*wrap, "sh", "-c", f'! touch "{directory}/probe" 2>/dev/null'],
                           capture_output=True)  # fmt: skip
    return wrap if probe.returncode == 0 else None


def test_read_only_out_fails_before_data_preparation(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    wrap = _read_only_wrapper(out)
    if wrap is None:
        pytest.skip("cannot make a directory read-only for root here (no mount namespace)")
    cache = tmp_path / "fresh-cache"
    out.chmod(0o555)
    try:
        result = _train(tiny_config_file, out, cache, wrap)
    finally:
        out.chmod(0o755)
    _one_line_error(result, f"cannot write to run directory {out}")
    assert not cache.exists(), "data preparation ran before the output was checked"
    assert list(out.iterdir()) == []
