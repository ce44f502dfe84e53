"""`sparsecircuits serve | report | steer`: look at circuits, export them, steer with nodes."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from sparsecircuits.errors import SparseCircuitsError

WindowsOpt = Annotated[
    int, typer.Option(help="Pretraining val windows (of n_ctx tokens) scanned per node location.")
]
ExamplesOpt = Annotated[int, typer.Option("--n", help="Task val examples used for panels and ablations.")]
ExplainOpt = Annotated[bool, typer.Option("--explain", help="First explain the circuits' nodes (and the SAE latents shown) with the offline explainer, into the explain cache; re-runs reuse it. Without it, explanations already cached by `sparsecircuits explain` are shown.")]
ExplainCacheOpt = Annotated[Path | None, typer.Option(help="Explanation cache directory (default: ~/.cache/sparsecircuits/explanations, as `explain`).")]


def serve_command(
    artifacts: Annotated[Path, typer.Option(help="Directory searched for checkpoints (runs/<run>/checkpoint) and circuit files (circuits/<run>/<task>/circuit.json); requests cannot reach outside it.")] = Path("."),
    host: Annotated[str, typer.Option(help="Interface to bind; the viewer has no authentication.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    windows: WindowsOpt = 64,
    allow_host: Annotated[list[str] | None, typer.Option(help="Another name the browser may use in the address (the Host header), e.g. this machine's name when binding 0.0.0.0; loopback names and --host are always accepted (repeatable).")] = None,
    sae: Annotated[list[Path] | None, typer.Option(help="An SAE (directory or sae.safetensors) whose latents get pages and interventions; it may lie outside --artifacts (repeatable).")] = None,
    explain: ExplainOpt = False,
    explain_cache: ExplainCacheOpt = None,
) -> None:
    """Serve the circuit viewer (graph, node panels, live interventions) on a local port.

    Only requests addressed to 127.0.0.1, localhost, [::1], --host or an --allow-host name are
    answered (so a web page cannot reach the viewer by DNS rebinding); bodies over 1 MiB are
    refused; nothing outside --artifacts is read.
    """
    import uvicorn

    from sparsecircuits.viewer.app import create_app
    from sparsecircuits.viewer.node_stats import StatsConfig
    from sparsecircuits.viewer.workspace import Workspace

    if windows < 1:
        raise SparseCircuitsError(f"--windows must be >= 1, got {windows}")
    if not 0 < port < 65536:
        raise SparseCircuitsError(f"--port must be in 1..65535, got {port}")
    from sparsecircuits.viewer.explanations import ExplanationSource, explain_workspace
    from sparsecircuits.viewer.latents import LatentSource

    latents = LatentSource(sae or [])  # a missing or corrupt SAE: one-line error before serving
    workspace = Workspace(artifacts, StatsConfig(windows=windows))
    explanations = ExplanationSource(explain_cache, compute=explain)
    if explain:
        _log_progress()
        for line in explain_workspace(workspace, latents, explanations):
            print(line)
    if not _is_loopback(host):
        print(f"warning: binding {host}: anyone who can reach this address can use the viewer")
    hosts = [host, *(allow_host or [])]
    print(f"serving {workspace.root} at http://{host}:{port}/  (Ctrl-C to stop)")
    uvicorn.run(create_app(workspace, hosts, latents, explanations), host=host, port=port,
                log_level="warning")


def _log_progress() -> None:
    """--explain prints the explainer's progress (a location at a time), as `explain` does."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def report_command(
    circuit: Annotated[Path, typer.Argument(help="A circuit.json file.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write (in a directory: <circuit name>.html there); default: beside the circuit's directory, e.g. circuits/<run>/<task>.html. Only a previous report is ever overwritten.")] = None,
    model: Annotated[Path | None, typer.Option(help="Checkpoint (default: the one the circuit names).")] = None,
    windows: WindowsOpt = 64,
    n: ExamplesOpt = 32,
    sae: Annotated[Path | None, typer.Option(help="Also precompute latent pages of this SAE (of the circuit's model): the latents that separate the task's classes most, each zeroed and clamped to 2x its max.")] = None,
    explain: ExplainOpt = False,
    explain_cache: ExplainCacheOpt = None,
) -> None:
    """Write a single self-contained HTML file: graph, node panels, losses, ablations."""
    from sparsecircuits.viewer.node_stats import StatsConfig
    from sparsecircuits.viewer.report import write_report

    if windows < 1 or n < 1:
        raise SparseCircuitsError("--windows and --n must be >= 1")
    if out is None:  # circuits/<run>/<task>/circuit.json -> circuits/<run>/<task>.html
        out = circuit.parent.parent if circuit.name == "circuit.json" else circuit.parent
    explanations = None
    if explain or explain_cache is not None:
        from sparsecircuits.viewer.explanations import ExplanationSource

        if explain:
            _log_progress()
        explanations = ExplanationSource(explain_cache, compute=explain)
    path = write_report(circuit, out, model, StatsConfig(windows=windows, top_k=6), n, sae=sae,
                        explanations=explanations)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


def steer_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint or run directory.")],
    prompt: Annotated[str, typer.Option(help="Text to continue.")],
    node: Annotated[list[str] | None, typer.Option(help="Node to intervene on, e.g. 0.mlp.post_act.460 (repeatable).")] = None,
    sae: Annotated[Path | None, typer.Option(help="Intervene on a latent of this SAE (directory or sae.safetensors) instead of on nodes; needs --latent.")] = None,
    latent: Annotated[int | None, typer.Option(help="The SAE latent to intervene on (with --sae).")] = None,
    scale: Annotated[float | None, typer.Option(help="Multiply the node(s) or latent by this factor.")] = None,
    clamp: Annotated[float | None, typer.Option(help="Set the node(s) or latent to this value.")] = None,
    clamp_max: Annotated[float | None, typer.Option(help="With --sae: set the latent to this many times its max activation over --windows val windows.")] = None,
    ablate: Annotated[str | None, typer.Option(help="'mean' or 'zero': ablate the node(s); with --sae only 'zero'.")] = None,
    tokens: Annotated[int, typer.Option(help="Number of tokens to generate.")] = 32,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy.")] = 0.0,
    top_k: Annotated[int | None, typer.Option(help="Sample only from the k most likely tokens.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed (the same for both generations).")] = 0,
    windows: WindowsOpt = 64,
) -> None:
    """Generate text without and with an intervention on nodes or on one SAE latent (greedy by
    default). With --sae the latent moves along its decoder direction, the SAE's error kept."""
    if sae is not None or latent is not None:
        _steer_latent(checkpoint, sae, latent, node, scale, clamp, clamp_max, ablate, prompt,
                      tokens, temperature, top_k, seed, windows)
        return
    if not node:
        raise SparseCircuitsError("give --node (repeatable), or --sae and --latent")
    if clamp_max is not None:
        raise SparseCircuitsError("--clamp-max needs --sae and --latent")
    from sparsecircuits.checkpoint import content_hash, load_checkpoint
    from sparsecircuits.circuits.ablation import pretraining_means
    from sparsecircuits.model.locations import parse_node
    from sparsecircuits.viewer.interventions import needs_means, parse_interventions
    from sparsecircuits.viewer.steer import check_settings, steer

    chosen = [opt for opt, v in (("--scale", scale), ("--clamp", clamp), ("--ablate", ablate)) if v is not None]
    if len(chosen) != 1:
        raise SparseCircuitsError("give exactly one of --scale, --clamp, --ablate")
    if ablate is not None and ablate not in ("mean", "zero"):
        raise SparseCircuitsError(f"--ablate must be 'mean' or 'zero', got {ablate!r}")
    if windows < 1:
        raise SparseCircuitsError(f"--windows must be >= 1, got {windows}")
    check_settings(prompt, tokens, temperature, top_k, seed)
    for name in node:
        parse_node(name)
    op, value = (
        ("scale", scale) if scale is not None
        else ("clamp", clamp) if clamp is not None
        else (f"ablate_{ablate}", None)
    )
    loaded = load_checkpoint(checkpoint)
    ivs = parse_interventions([{"node": n, "op": op, "value": value} for n in node], loaded.model)
    means = None
    if needs_means(ivs):  # the pruner's means: its cache, or computed its way over `windows`
        means, _ = pretraining_means(loaded, content_hash(loaded.path), windows)
    result = steer(loaded, prompt, ivs, tokens, temperature, top_k, seed, means)
    if op == "scale":
        what = f"scaled by {value:g}"
    elif op == "clamp":
        what = f"clamped to {value:g}"
    else:
        what = f"{ablate}-ablated"
    print("--- without intervention ---")
    print(result.plain)
    print(f"--- with {', '.join(node)} {what} ---")
    print(result.steered)


def _steer_latent(checkpoint: Path, sae: Path | None, latent: int | None, node: list[str] | None,
                  scale: float | None, clamp: float | None, clamp_max: float | None,
                  ablate: str | None, prompt: str, tokens: int, temperature: float,
                  top_k: int | None, seed: int, windows: int) -> None:
    """`steer --sae`: the same implementation as `sae steer` (sae/cli.py)."""
    from sparsecircuits.sae.cli import steer_latent_cli

    if sae is None or latent is None:
        raise SparseCircuitsError("--sae and --latent go together")
    if node:
        raise SparseCircuitsError("give either --node or --sae/--latent, not both")
    if ablate not in (None, "zero"):
        raise SparseCircuitsError(f"a latent can only be zero-ablated (--ablate zero), not {ablate!r}")
    ops = [("scale", scale), ("clamp", clamp), ("clamp_max", clamp_max)]
    chosen = [(op, v) for op, v in ops if v is not None] + ([("ablate", None)] if ablate else [])
    if len(chosen) != 1:
        raise SparseCircuitsError("give exactly one of --scale, --clamp, --clamp-max, --ablate")
    steer_latent_cli(sae, checkpoint, latent, *chosen[0], prompt, tokens, temperature, top_k,
                     seed, windows)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("report")(report_command)
    app.command("steer")(steer_command)
