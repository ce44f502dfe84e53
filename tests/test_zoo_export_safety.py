"""Exports appear whole or not at all: a killed export's leftovers go, bad `--out` fails first."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from sparsecircuits.errors import CheckpointError
from sparsecircuits.zoo import export_model

HALF_EXPORT = """
import sys, time
from pathlib import Path
from sparsecircuits.fileformat import temp_dir
tmp = temp_dir(Path(sys.argv[1]), sys.argv[2])
(tmp / "checkpoint").mkdir()
print(tmp, flush=True)
time.sleep(600)
"""


def test_the_next_export_removes_a_killed_exports_temp_dir(tiny_run, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HALF_EXPORT, str(models), "m"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip(), "the export died before creating its temp dir"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list(models.iterdir())) == 1

    export_model(tiny_run, models / "m", command="x", tasks=False)
    assert sorted(p.name for p in models.iterdir()) == ["m"]
    assert sorted(p.name for p in (models / "m").iterdir()) == ["CARD.md", "checkpoint",
                                                                "metrics.jsonl"]  # fmt: skip
    for f in (models / "m").rglob("*"):
        assert f.stat().st_mode & 0o777 == (0o755 if f.is_dir() else 0o644), f


def test_out_under_a_file_is_refused_before_loading(tiny_run, tmp_path):
    file = tmp_path / "models"
    file.write_text("not a directory")
    with pytest.raises(CheckpointError, match="not a directory"):
        export_model(tiny_run, file / "m", command="x", tasks=False)
    assert file.read_text() == "not a directory"
