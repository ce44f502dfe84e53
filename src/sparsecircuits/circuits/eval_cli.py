"""`sparsecircuits circuit eval CIRCUIT --task NAME_OR_JSONL`: a saved circuit on another task."""

from __future__ import annotations

from typing import Annotated

import typer

from sparsecircuits.circuits.cli_options import (
    CircuitArg,
    DeviceOpt,
    JsonOpt,
    MeansCacheOpt,
    ModelOpt,
    SplitOpt,
)
from sparsecircuits.circuits.describe_cli import describe_command
from sparsecircuits.config import check_device_name
from sparsecircuits.errors import CircuitError
from sparsecircuits.fileformat import write_json

app = typer.Typer(
    help="Work with saved circuits (circuit.json).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("describe")(describe_command)


@app.command("eval")
def eval_command(
    circuit: CircuitArg,
    task: Annotated[str, typer.Option(help="Task name, or a path ending in .jsonl.")],
    split: SplitOpt = "test",
    model: ModelOpt = None,
    json_out: JsonOpt = None,
    cache_dir: MeansCacheOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """The full model, the circuit alone (calibrated as stored) and the model without the
    circuit on a task's split: both losses and accuracy (docs/usage.md)."""
    from sparsecircuits.circuits.evaluate_circuit import evaluate_circuit, report

    check_device_name(device, "--device", CircuitError)
    result = evaluate_circuit(circuit, task, split, model, device, cache_dir)
    typer.echo(report(result))
    if json_out is not None:
        write_json(json_out, result, indent=2)
        typer.echo(f"\nwrote {json_out}")
