"""`sparsecircuits import-openai | export-openai` (docs/openai.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def import_command(
    model_dir: Annotated[Path, typer.Argument(help="Their model directory: beeg_config.json, final_model.pt.")],
    out: Annotated[Path, typer.Option(help="Where to write our model (a run directory, e.g. models/csp_yolo1).")],
    tokenizer: Annotated[Path | None, typer.Option(help="Directory with encoder.json and vocab.bpe (default: MODEL_DIR).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="A non-model config key, e.g. data.sources=[DIR] (the corpus for means and eval); repeatable.")] = None,
) -> None:
    """Import one of OpenAI's circuit-sparsity models (beeg_config.json + final_model.pt)."""
    from sparsecircuits.config import parse_overrides
    from sparsecircuits.openai_format.convert import import_openai

    result = import_openai(model_dir, out, tokenizer, parse_overrides(set_))
    for note in result.notes:
        print(f"note: {note}")
    share = result.nonzeros / max(result.parameters, 1)
    print(f"imported {result.parameters:,} parameters ({share:.2%} nonzero)")
    print(f"checkpoint: {result.checkpoint}")


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="Our checkpoint or run directory.")],
    out: Annotated[Path, typer.Option(help="Directory for beeg_config.json, final_model.pt, encoder.json, vocab.bpe.")],
) -> None:
    """Export a checkpoint in OpenAI's circuit-sparsity format (for their code and viewer)."""
    from sparsecircuits.openai_format.convert import export_openai

    for note in export_openai(checkpoint, out):
        print(f"note: {note}")
    print(f"exported to {out}")


def register(app: typer.Typer) -> None:
    app.command("import-openai")(import_command)
    app.command("export-openai")(export_command)
