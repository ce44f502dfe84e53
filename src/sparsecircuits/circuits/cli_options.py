"""Options shared by the `sparsecircuits circuit` subcommands (`eval`, `describe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CircuitArg = Annotated[Path, typer.Argument(help="circuit.json, or the directory holding it.")]
SplitOpt = Annotated[str, typer.Option(help="train, val, test, or all (the three together).")]
ModelOpt = Annotated[
    Path | None,
    typer.Option(help="The checkpoint (default: the one circuit.json names; its weights must be "
                      "the ones the circuit was found in)."),
]  # fmt: skip
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON.")]
MeansCacheOpt = Annotated[
    Path | None, typer.Option(help="Cache of ablation means, for circuits without saved means.")
]
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda.")]
