"""`sparsecircuits circuit eval CIRCUIT --task NAME_OR_JSONL`: a saved circuit on another task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    circuit: Annotated[Path, typer.Argument(help="circuit.json, or the directory holding it.")],
    task: Annotated[str, typer.Option(help="Task name, or a path ending in .jsonl.")],
    split: Annotated[
        str, typer.Option(help="train, val, test, or all (the three together).")
    ] = "test",
    model: Annotated[
        Path | None,
        typer.Option(
            help="The checkpoint (default: the one circuit.json names; its weights "
            "must be the ones the circuit was found in)."
        ),
    ] = None,  # fmt: skip
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON.")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Cache of ablation means, for circuits without saved means."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
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
