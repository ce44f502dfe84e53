"""`sparsecircuits tasks list | show | eval`: browse the task suite and score a checkpoint on it.

Wherever a task name is accepted, a path ending in `.jsonl` names a user task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sparsecircuits.config import check_device_name
from sparsecircuits.errors import TaskError
from sparsecircuits.fileformat import write_json
from sparsecircuits.tasks.base import SplitSizes, TaskExample, check_split
from sparsecircuits.tasks.registry import all_tasks, get_task, get_tasks

if TYPE_CHECKING:
    from tokenizers import Tokenizer

app = typer.Typer(
    help="Binary next-token tasks on Python code (docs/method.md §4): list, show, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SplitOpt = Annotated[str, typer.Option(help="train, val or test.")]
SeedOpt = Annotated[int, typer.Option(help="Base seed of the generators (splits depend on it).")]


@app.command("list")
def list_command() -> None:
    """Every built-in task with its source (builtin / adversarial) and what it asks."""
    tasks = all_tasks()
    width = max(len(t.name) for t in tasks)
    for t in tasks:
        print(f"{t.name:<{width}}  {t.source:<11}  {t.description}")


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Task name, or a path ending in .jsonl.")],
    n: Annotated[int, typer.Option(help="Number of examples to show.")] = 3,
    split: SplitOpt = "val",
    checkpoint: Annotated[
        Path | None, typer.Option(help="Check against this checkpoint's tokenizer.")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="Check against this tokenizer.json.")
    ] = None,
    lines: Annotated[int, typer.Option(help="Context lines to print per example.")] = 6,
    seed: SeedOpt = 0,
) -> None:
    """A few rendered examples with their two candidates (checked when a tokenizer is given)."""
    check_split(split)
    if n < 1:
        raise TaskError(f"--n must be >= 1, got {n}")
    if lines < 1:
        raise TaskError(f"--lines must be >= 1, got {lines}")
    if checkpoint is not None and tokenizer is not None:
        raise TaskError("give --checkpoint or --tokenizer, not both")
    tok = _load_tokenizer(checkpoint, tokenizer)
    task = get_task(name)
    sizes = SplitSizes(**{s: max(n, 2) if s == split else 0 for s in ("train", "val", "test")})
    if task.finite:
        sizes = SplitSizes()
    splits = task.splits(sizes, seed=seed, tokenizer=tok)
    examples = splits.get(split)[:n]
    print(f"{task.name} ({task.source}): {task.description}")
    print(f"classes: 0 = {task.class_names[0]}, 1 = {task.class_names[1]}")
    if tok is not None:
        print(
            f"tokenizer check: {splits.meta['checked']} checked, {splits.meta['dropped']} dropped"
        )
    if not examples:
        print(f"(no {split} examples)")
    for i, ex in enumerate(examples):
        print()
        print(render_example(ex, i, split, task.class_names, lines, tok))


def render_example(
    ex: TaskExample,
    index: int,
    split: str,
    class_names: tuple[str, str],
    lines: int,
    tokenizer: Tokenizer | None = None,
) -> str:
    """The last `lines` lines of the context (`▌` marks where it ends), the candidates and a
    user task's metadata."""
    context_lines = ex.context.split("\n")
    shown = context_lines[-lines:]
    out = [f"--- {split} #{index}  label {ex.label} ({class_names[ex.label]})"]
    if len(context_lines) > lines:
        out.append(f"    | ... ({len(context_lines) - lines} lines above)")
    out += [f"    | {line}" for line in shown[:-1]] + [f"    | {shown[-1]}▌"]
    cand = f"    correct {ex.correct!r}   wrong {ex.wrong!r}"
    if tokenizer is not None:
        from sparsecircuits.tasks.encoding import CONTEXT_MARGIN_CHARS, context_tail

        # A huge context is tokenized by its tail only (see encoding.py).
        text = context_tail(ex.context, CONTEXT_MARGIN_CHARS)
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        tail = " ".join(repr(tokenizer.decode([i])) for i in ids[-4:])
        cid, wid = (
            tokenizer.encode(c, add_special_tokens=False).ids[0] for c in (ex.correct, ex.wrong)
        )
        cand = f"    correct {ex.correct!r} (id {cid})   wrong {ex.wrong!r} (id {wid})"
        where = "" if text is ex.context else f" in its last {len(text)} characters"
        out.append(f"    {len(ids)} tokens{where}, ending {tail}")
    out.append(cand)
    if ex.metadata:
        out.append("    " + "   ".join(f"{k} {_brief(v)}" for k, v in ex.metadata.items()))
    return "\n".join(out)


def _brief(value: object, limit: int = 60) -> str:
    """A metadata value as compact JSON, cut to `limit` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_tokenizer(checkpoint: Path | None, tokenizer: Path | None) -> Tokenizer | None:
    if checkpoint is not None:
        from sparsecircuits.checkpoint import load_checkpoint

        return load_checkpoint(checkpoint).tokenizer
    if tokenizer is not None:
        from sparsecircuits.data.tokenizer import load_tokenizer

        return load_tokenizer(tokenizer)
    return None


@app.command("eval")
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint or run directory.")],
    tasks: Annotated[
        str | None,
        typer.Option(help="Comma-separated task names or .jsonl paths (default: all built-in)."),
    ] = None,
    split: SplitOpt = "val",
    n: Annotated[
        int | None, typer.Option(help="First N examples of the split (default: the whole split).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    seed: SeedOpt = 0,
) -> None:
    """Per task: task loss, two-way loss and accuracy of a checkpoint on one split."""
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.tasks.evaluate import evaluate_tasks, results_table

    check_split(split)
    check_device_name(device, "--device", TaskError)
    if batch_size < 1:
        raise TaskError(f"--batch-size must be >= 1, got {batch_size}")
    if n is not None and n < 1:
        raise TaskError(f"--n must be >= 1, got {n}")
    chosen = get_tasks(tasks)  # unknown names fail here, before the model is loaded
    loaded = load_checkpoint(checkpoint, device=device)
    results = evaluate_tasks(
        loaded.model,
        chosen,
        loaded.tokenizer,
        split=split,
        n=n,
        n_ctx=loaded.config.model.n_ctx,
        seed=seed,
        batch_size=batch_size,
        device=device,
    )
    print(f"checkpoint {loaded.path}, split {split}")
    print(results_table(results))
    if json_out is not None:
        doc = {
            "checkpoint": str(loaded.path),
            "split": split,
            "seed": seed,
            "results": [r.to_dict() for r in results],
        }
        write_json(json_out, doc, indent=2)


def _register_mining() -> None:
    from sparsecircuits.tasks.mine_cli import mine_quotes_command

    app.command("mine-quotes")(mine_quotes_command)


_register_mining()
