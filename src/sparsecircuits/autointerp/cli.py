"""`sparsecircuits explain CKPT`: explanations and scores of units, cached (docs/autointerp.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from sparsecircuits.autointerp import AutointerpError


def _split(text: str | None) -> list[str]:
    return [] if text is None else [x.strip() for x in text.split(",") if x.strip()]


def explain_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint or run directory.")],
    at: Annotated[str | None, typer.Option(help="Locations, comma-separated globs over hook "
                                                "points (default: every node location).")] = None,  # fmt: skip
    nodes: Annotated[str | None, typer.Option(help="Unit names, comma-separated: "
                                                   "1.mlp.post_act.17, sae.<sha12>.5.")] = None,  # fmt: skip
    sae: Annotated[Path | None, typer.Option(help="SAE directory trained on this model: "
                                                  "explain its latents.")] = None,  # fmt: skip
    sample: Annotated[int | None, typer.Option(help="At most this many units per location "
                                                    "(seeded).")] = None,  # fmt: skip
    windows: Annotated[int, typer.Option(help="Val windows (half explain, half held out).")] = 256,
    contexts: Annotated[int, typer.Option(help="Held-out contexts per class for "
                                               "detection.")] = 50,  # fmt: skip
    cache: Annotated[Path | None, typer.Option(help="Cache directory (default "
                                                    "~/.cache/sparsecircuits/explanations).")] = None,  # fmt: skip
    out: Annotated[Path | None, typer.Option(help="Also write the results as JSON.")] = None,
    show: Annotated[int, typer.Option(help="Units printed (best scores first).")] = 20,
    llm_url: Annotated[str | None, typer.Option(help="OpenAI-compatible API base URL: use "
                                                     "the LLM explainer.")] = None,  # fmt: skip
    llm_model: Annotated[str | None, typer.Option(help="Chat model name.")] = None,
    llm_key_env: Annotated[str, typer.Option(help="Environment variable holding the API "
                                                  "key.")] = "OPENAI_API_KEY",  # fmt: skip
    llm_timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 60.0,
    llm_retries: Annotated[int, typer.Option(help="Retries per request.")] = 4,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0 = torch default).")] = 0,
) -> None:
    """Explain units (nodes, neurons, residual channels, SAE latents) and score each by
    detection on held-out contexts; results are cached per model content hash and unit."""
    from sparsecircuits.autointerp.corpus import ExplainConfig
    from sparsecircuits.autointerp.report import summary_lines, unit_lines
    from sparsecircuits.autointerp.run import explain_request
    from sparsecircuits.fileformat import write_json

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if threads < 0:
        raise AutointerpError(f"--threads must be >= 0, got {threads}")
    if (llm_url is None) != (llm_model is None):
        raise AutointerpError("--llm-url and --llm-model go together")
    if sample is not None and sample < 1:
        raise AutointerpError(f"--sample must be >= 1, got {sample}")
    cfg = ExplainConfig(windows=windows, contexts=contexts).validate()
    llm = None
    if llm_url is not None:
        from sparsecircuits.autointerp.llm import LLMSettings

        llm = LLMSettings(url=llm_url, model=llm_model or "", key_env=llm_key_env,
                          timeout=llm_timeout, retries=llm_retries)  # fmt: skip
    results, cache_path = explain_request(
        checkpoint, at=_split(at) or None, nodes=_split(nodes), sae=sae, sample=sample,
        cfg=cfg, llm=llm, cache_dir=cache, threads=threads,
    )  # fmt: skip
    for line in unit_lines(results, show):
        print(line)
    for line in summary_lines(results):
        print(line)
    if out is not None:
        write_json(out, {"results": list(results.values())})
        print(f"wrote {out}")
    print(f"cache: {cache_path}")


def register(root: typer.Typer) -> None:
    root.command("explain")(explain_command)
