"""`sparsecircuits circuit describe CIRCUIT`: the report of `circuits.describe` as text/JSON."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from sparsecircuits.circuits.cli_options import (
    CircuitArg,
    DeviceOpt,
    JsonOpt,
    MeansCacheOpt,
    ModelOpt,
    SplitOpt,
)
from sparsecircuits.config import check_device_name
from sparsecircuits.errors import CircuitError
from sparsecircuits.fileformat import write_json

RESID = (".act_in.", ".resid_delta.")
KIND_GROUPS = (
    ("residual channels, best at the opening quote", RESID, "type_strength_open"),
    ("residual channels, best at the read position", RESID, "type_strength_read"),
    ("MLP neurons", (".mlp.post_act.",), "both"),
    ("q/k/v channels", (".attn.q.", ".attn.k.", ".attn.v."), "both"),
)
"""Tables of nodes the report ranks by quote-type separation: (label, the name parts its nodes
hold, the strength ranked by: at the quote, at the read position, or the larger of both)."""


def describe_command(
    circuit: CircuitArg,
    task: Annotated[
        str | None,
        typer.Option(help="A quote task's name or .jsonl (default: the circuit's own task)."),
    ] = None,
    split: SplitOpt = "all",
    model: ModelOpt = None,
    top: Annotated[int, typer.Option(help="Nodes listed per table.", min=1)] = 8,
    explain: Annotated[
        bool,
        typer.Option(
            help="Add the offline autointerp explanation of every listed node "
            "(reads the model's val data; cached)."
        ),
    ] = False,  # fmt: skip
    json_out: JsonOpt = None,
    cache_dir: MeansCacheOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """What a quote-closing circuit's nodes do, against the paper's mechanism: quote-type
    channels, a layer-0 detector/classifier MLP, one head that finds the opening quote and
    copies its type (docs/usage.md)."""
    from sparsecircuits.circuits.describe import describe

    check_device_name(device, "--device", CircuitError)
    result = describe(circuit, task, split, model, device, cache_dir)
    if explain:
        names = sorted({n for group in listed(result, top).values() for n in group})
        result["explanations"] = explanations(result["model"], names)
    typer.echo(report(result, top))
    if json_out is not None:
        write_json(json_out, result, indent=2)
        typer.echo(f"\nwrote {json_out}")


def explanations(checkpoint: str, names: list[str]) -> dict[str, str]:
    """The offline explainer's phrase (or status) for each node, from its cache when present."""
    from sparsecircuits.autointerp.run import explain_request

    if not names:
        return {}
    results, _ = explain_request(checkpoint, nodes=names)
    return {n: r.get("explanation") or r.get("status", "?") for n, r in results.items()}


def _order(nodes: dict[str, dict[str, float]], names: list[str], key: str) -> list[str]:
    def score(n: str) -> float:
        x = nodes[n][key]
        return -1.0 if x != x else x

    return sorted(names, key=lambda n: (-score(n), n))


def listed(result: dict[str, Any], top: int) -> dict[str, list[str]]:
    """The nodes each table of the report shows (ranked in the circuit run)."""
    nodes = result["circuit_run"]["nodes"]
    out = {}
    for label, parts, key in KIND_GROUPS:
        names = [n for n in nodes if any(p in n for p in parts)]
        keys = ("type_strength_open", "type_strength_read") if key == "both" else (key,)
        best = {n: max(_nan0(nodes[n][k]) for k in keys) for n in names}
        out[label] = sorted(names, key=lambda n: (-best[n], n))[:top]
    layer0 = [n for n in nodes if n.startswith("0.mlp.post_act.")]
    out[DETECTORS] = _order(nodes, layer0, "detector_auc")[:top]
    out[CLASSIFIERS] = _order(nodes, layer0, "classifier_score")[:top]
    return out


DETECTORS = "layer-0 MLP neurons by detector AUC"
CLASSIFIERS = "layer-0 MLP neurons by classifier score (min of type strength, quote AUC)"


def _nan0(x: float) -> float:
    return 0.0 if x != x else x


def _f(x: Any, fmt: str = ".2f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def report(result: dict[str, Any], top: int = 8) -> str:
    """The human-readable description (the circuit run first; the full model in brackets)."""
    s = result["structure"]
    circ, full = result["circuit_run"], result["full_model_run"]
    notes = result.get("explanations", {})
    lines = [
        f"circuit {result['circuit']}: {s['nodes']} nodes, {s['edges']} edges, pruned on "
        f"{result['circuit_task']} to {result['loss']} loss {result['target_loss']:g} "
        f"(circuit alone: test accuracy {_f(result['sufficiency_accuracy'], '.3f')})",
        f"task {result['task']}, split {result['split']}: {result['examples_with_quote']} of "
        f"{result['examples']} examples have an opening quote ({result['single_quote_examples']}"
        f" single); circuit = every other node mean-ablated ({result['ablation_source']})",
        "opening-quote tokens: "
        + ", ".join(
            f"{t!r} {n}" for t, n in list(result["opener_tokens"].items())[:8]
        ),  # fmt: skip
        "",
        "1. nodes per location: "
        + ", ".join(f"{k} {v}" for k, v in s["nodes_per_location"].items()),  # fmt: skip
        "   edges per location pair: "
        + ", ".join(f"{k} {v}" for k, v in s["edges_per_location_pair"].items()),  # fmt: skip
        "",
        "2. quote-type separation |2 AUC - 1| (AUC = P(node on a \" example > on a ' example));"
        " circuit run [full model]",
    ]
    tables = listed(result, top)
    for label, _, _ in KIND_GROUPS:
        lines.append(f"   {label}:")
        lines.append(f"     {'node':<24} {'at open':>13} {'at read':>13} {'AUC open':>9}")
        for n in tables[label]:
            c, f = circ["nodes"][n], full["nodes"][n]
            lines.append(
                f"     {n:<24} {_f(c['type_strength_open']):>5} [{_f(f['type_strength_open'])}]"
                f" {_f(c['type_strength_read']):>5} [{_f(f['type_strength_read'])}]"
                f" {_f(c['type_auc_open']):>9}" + _note(notes, n)
            )  # fmt: skip
        if not tables[label]:
            lines.append("     (none in the circuit)")
    for run, label in ((circ, "circuit"), (full, "full model")):
        t = run["type_at_read"]
        lines.append(
            f"   the type first reaches the read position at {t['first_location'] or '-'}"
            f" ({label}: {', '.join(t['nodes_there'][:4]) or '-'}; {t['strong_nodes']} nodes"
            f" >= strong there or later); strongest before it {t['max_before_node']}"
            f" {_f(t['max_before'])}"
        )
    lines += ["", "3. layer-0 MLP neurons: mean at the opening quote vs other tokens; AUC of the"
              " quote against other tokens per quote token; type strength at the quote; circuit"
              " run. detector AUC = min(best on a \" token, best on a ' token)"]  # fmt: skip
    for label in (DETECTORS, CLASSIFIERS):
        lines.append(f"   {label}:")
        for n in tables[label]:
            c = circ["nodes"][n]
            per_token = " ".join(
                f"{t!r} {_f(a)}" for t, a in c["open_vs_other_auc_by_token"].items()
            )
            lines.append(
                f"     {n:<20} mean {_f(c['mean_open'], '+.3f')} vs {_f(c['mean_other'], '+.3f')}"
                f"  AUC {per_token}  detector {_f(c['detector_auc'])}"
                f"  type {_f(c['type_strength_open'])}" + _note(notes, n)
            )
        if not tables[label]:
            lines.append("     (no layer-0 MLP neuron in the circuit)")
    lines += ["", "4. heads with q/k channels in the circuit: attention from the read position "
              "to the opening quote; circuit run [full model]"]  # fmt: skip
    full_heads = {h["head"]: h for h in full["heads"]}
    for h in circ["heads"][:top]:
        f = full_heads[h["head"]]
        lines.append(
            f"     head {h['head']:<6} q {h['q_nodes']} k {h['k_nodes']} v {len(h['v_nodes'])}"
            f"  weight {_f(h['weight_to_open'])} [{_f(f['weight_to_open'])}]"
            f"  quote is top {_f(h['open_is_top'])} [{_f(f['open_is_top'])}]"
            f"  x uniform {_f(h['lift_over_uniform'], '.1f')} [{_f(f['lift_over_uniform'], '.1f')}]"
            f"  mean rank {_f(h['open_rank_mean'], '.1f')}  sink {_f(h['sink_weight'])}"
            f"  v output type {_f(h['best_v_out_type_strength'])}"
        )
    if len(circ["heads"]) > top:
        lines.append(f"     ... {len(circ['heads']) - top} more heads in the JSON")
    if not circ["heads"]:
        lines.append("     (no q/k channel in the circuit)")
    lines += ["", "5. verdicts (circuit run [full model]):"]
    for key, label in (("type_channels", "(a) quote-type channels written at the opening quote"),
                       ("layer0_mlp", "(b) layer-0 MLP detector + classifier"),
                       ("head", "(c) one head finds the quote, v copies its type")):  # fmt: skip
        v, fv = circ["verdicts"][key], full["verdicts"][key]
        lines.append(f"   {label}: {v['verdict']} [{fv['verdict']}]")
        lines.append(f"     circuit: {_evidence(key, v)}")
        lines.append(f"     [full model: {_evidence(key, fv)}]")
    return "\n".join(lines)


def _note(notes: dict[str, str], name: str) -> str:
    return f"  {notes[name]}" if name in notes else ""


def _evidence(key: str, v: dict[str, Any]) -> str:
    if key == "type_channels":
        per = ", ".join(f"{k} {n}" for k, n in v["writes_strong_at_open_per_location"].items())
        return (f"{v['writes_strong_at_open']} of {v['writes']} written channels >= strong at "
                f"the quote ({per or '-'}); best written {v['best_open']} "
                f"{_f(v['best_open_strength'])}; best at the read position {v['best_read']} "
                f"{_f(v['best_read_strength'])}")  # fmt: skip
    if key == "layer0_mlp":
        return (f"{v['layer0_neurons']} layer-0 neurons; {v['n_detectors']} detectors "
                f"{v['detectors'][:4] or '-'}, {v['n_classifiers']} classifiers "
                f"{v['classifiers'][:4] or '-'}")  # fmt: skip
    return (f"{v['heads_with_qk']} heads with q/k; attending {v['heads_attending'][:6] or '-'}; "
            f"attending and copying {v['heads_attending_and_copying'][:6] or '-'}; best "
            f"{v['best_head']} weight {_f(v['best_weight_to_open'])} (quote on top "
            f"{_f(v['best_open_is_top'])}, x uniform {_f(v['best_lift_over_uniform'], '.1f')}), "
            f"v output type "
            f"{_f(v['best_v_out_type_strength'])}")  # fmt: skip
