"""`sparsecircuits tasks mine-quotes CKPT --out FILE.jsonl`: a real-code quote-closing task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sparsecircuits.errors import TaskError


def mine_quotes_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint or run directory.")],
    out: Annotated[Path, typer.Option(help="The task file to write (.jsonl).")],
    split: Annotated[
        str, typer.Option(help="Pretraining split to mine: test (default), val or train.")
    ] = "test",
    n: Annotated[int, typer.Option(help="Examples to keep (at most).")] = 512,
    suffix: Annotated[
        str,
        typer.Option(
            help="Text after the quote that is part of the candidates: '' gives the "
            "lone tokens \" and ', ')' gives \") and ') (single_double_quote's)."
        ),
    ] = "",  # fmt: skip
    balance: Annotated[
        bool, typer.Option(help="As many examples of each quote type (at most n/2 each).")
    ] = True,
    max_context_chars: Annotated[
        int, typer.Option(help="Characters of the file before the quote kept as context.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the draw among all qualifying strings.")] = 0,
) -> None:
    """Mine string literals closed by ' or \" from a checkpoint's pretraining split with
    Python's tokenize and write them as a JSONL task (docs/usage.md)."""
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.tasks.base import check_split
    from sparsecircuits.tasks.mined_quotes import mine_quotes, split_files, write_task

    check_split(split)
    if out.suffix != ".jsonl":
        raise TaskError(f"--out must end in .jsonl (a task file), got {out}")
    loaded = load_checkpoint(checkpoint)
    mined = mine_quotes(split_files(loaded, split), loaded.tokenizer, n, suffix, seed,
                        max_context_chars, balance)  # fmt: skip
    write_task(mined.examples, out)
    s = mined.summary()
    typer.echo(
        f"{s['files']} {split} files ({s['untokenizable_files']} rejected by tokenize), "
        f"{s['strings']} single-line non-f string literals, {s['with_suffix']} followed by "
        f"{suffix!r}; {s['checked']} checked against the tokenizer, {s['rejected']} rejected "
        "(the quote is not the next token in the real text)"
    )
    per_class = ", ".join(f"{k!r} {v}" for k, v in s["per_class"].items())
    typer.echo(f"wrote {len(mined.examples)} examples ({per_class}) to {out}")
