"""`sparsecircuits report` without -o writes beside the circuit's directory, never into the
working directory (issue 11: a README example left circuit.html in the repository root)."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from sparsecircuits.cli import _mount, app


def test_report_default_lands_beside_the_circuit_directory(
    handmade, tiny_checkpoint, tmp_path, monkeypatch
):
    if "report" not in {c.name for c in app.registered_commands}:
        _mount()
    circuit = tmp_path / "circuits" / "tiny" / "quote" / "circuit.json"
    circuit.parent.mkdir(parents=True)
    shutil.copy(handmade, circuit)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    args = ["report", str(circuit), "--model", str(tiny_checkpoint), "--windows", "2", "--n", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "circuits" / "tiny" / "quote.html").is_file()
    assert list(workdir.iterdir()) == []
