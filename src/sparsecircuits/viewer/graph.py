"""A circuit as the graph the front end draws: nodes placed in layer bands, edges, readout.

Bands run from the embedding (bottom) to the unembedding (top); inside layer L the rows are,
bottom to top, the order activations flow through the block:

    attn.act_in (residual read) -> attn.q/k/v -> attn.resid_delta (residual write)
    -> mlp.act_in (residual read) -> mlp.post_act (neurons) -> mlp.resid_delta (write)

The horizontal order inside a row is left to the front end (it reduces crossings); this module
only says where each node belongs and what it is. Token edges join the two end bands to the
circuit: embedding rows of task tokens into the circuit's residual reads, and the circuit's
residual writes into the candidates' unembedding rows. The pruner writes them per channel
(`resid.<c>`); here each is drawn to every circuit node on channel c.

Which task tokens the embedding band shows (`task_tokens`): a task's contexts hold hundreds of
distinct tokens, and the ones with the strongest embedding rows are mostly common code tokens
that both classes share. What separates the classes is what the circuit must read, so a token
is ranked by how much its direct input to the circuit's read channels differs between the
classes: |mean count per example in class 0 - in class 1| x sum |embedding weight| over the
read channels. Candidates that occur in the contexts come first. Without examples (or when no
token's count differs), tokens are ranked by count x read weight instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sparsecircuits.checkpoint import CHECKPOINT_DIR
from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.locations import node_kind, parse_index
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.viewer.circuit_adapter import ViewedCircuit
from sparsecircuits.viewer.node_stats import check_node

ROWS = ("attn.act_in", "attn.qkv", "attn.resid_delta", "mlp.act_in", "mlp.post_act",
        "mlp.resid_delta")  # fmt: skip
ROW_TITLES = {
    "attn.act_in": "attn read",
    "attn.qkv": "q / k / v",
    "attn.resid_delta": "attn write",
    "mlp.act_in": "mlp read",
    "mlp.post_act": "mlp neurons",
    "mlp.resid_delta": "mlp write",
}
MAX_CANDIDATES = 4  # more candidates than this (e.g. copied names) are not drawn
MAX_EMBED_TOKENS = 8  # tokens drawn in the embedding band (see `task_tokens`)


def node_info(model: GPT, name: str) -> dict[str, Any]:
    """Where a node sits: layer, row, kind, and for q/k/v its head and channel."""
    location, index = check_node(model, name)
    layer_s, part, sub = location.split(".")
    row = f"{part}.qkv" if sub in ("q", "k", "v") else f"{part}.{sub}"
    info: dict[str, Any] = {
        "name": name, "location": location, "index": index, "layer": int(layer_s),
        "row": row, "kind": node_kind(location),
    }
    if sub in ("q", "k", "v"):
        d_head = model.cfg.d_head
        info.update(head=index // d_head, channel=index % d_head)
    return info


def _channel_nodes(nodes: list[dict[str, Any]], kind: str) -> dict[int, list[str]]:
    """Residual channel -> the circuit's read (or write) nodes on it."""
    out: dict[int, list[str]] = {}
    for n in nodes:
        if n["kind"] == kind:
            out.setdefault(n["index"], []).append(n["name"])
    return out


def _channel(pseudo: str) -> int | None:
    """'resid.12' -> 12 (the pruner's name for a residual channel in token edges)."""
    prefix, _, idx = pseudo.rpartition(".")
    return parse_index(idx) if prefix == "resid" else None


def _token_id(pseudo: str, prefix: str) -> int | None:
    head, _, idx = pseudo.rpartition(".")
    return parse_index(idx) if head == prefix else None


def _token_edges(
    circuit: ViewedCircuit, model: GPT, nodes: list[dict[str, Any]], batch: TaskBatch | None
) -> tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    """(token, channel, weight) into reads and (channel, token, weight) out of writes.

    Taken from the circuit file when it lists them; otherwise computed the way the pruner does
    (embedding rows of the tokens in the task's examples, unembedding rows of its candidates).
    """
    vocab = model.cfg.vocab_size
    if circuit.embed_edges or circuit.unembed_edges:
        embed = [
            (t, c, e.weight) for e in circuit.embed_edges
            if (t := _token_id(e.source, "embed")) is not None and t < vocab
            and (c := _channel(e.target)) is not None
        ]
        unembed = [
            (c, t, e.weight) for e in circuit.unembed_edges
            if (c := _channel(e.source)) is not None
            and (t := _token_id(e.target, "unembed")) is not None and t < vocab
        ]
        return embed, unembed
    reads = sorted(_channel_nodes(nodes, "resid_read"))
    writes = sorted(_channel_nodes(nodes, "resid_write"))
    tokens = sorted({t for ids in _contexts(batch) for t in ids}) if batch is not None else []
    with torch.no_grad():
        emb = model.embed.weight.detach().float()  # [vocab, d_model]
        unemb = model.unembed.weight.detach().float()  # [vocab, d_model]
        embed = [(t, c, float(emb[t, c])) for t in tokens for c in reads if emb[t, c] != 0]
        unembed = [
            (c, t, float(unemb[t, c]))
            for t in _candidates(circuit, batch) for c in writes if unemb[t, c] != 0
        ]
    return embed, unembed


def _candidates(circuit: ViewedCircuit, batch: TaskBatch | None) -> list[int]:
    """The task's candidate token ids, when they are a small fixed set (e.g. `')` and `")`)."""
    if circuit.candidates:
        ids = sorted(set(circuit.candidates))
    elif batch is not None:
        ids = sorted(set(batch.correct_id.tolist()) | set(batch.wrong_id.tolist()))
    else:
        ids = []
    return ids if len(ids) <= MAX_CANDIDATES else []


def task_tokens(
    embed: list[tuple[int, int, float]],
    candidates: list[int],
    batch: TaskBatch | None,
    limit: int = MAX_EMBED_TOKENS,
) -> tuple[list[int], str]:
    """The task tokens the embedding band shows, in order, and a note saying how they were
    chosen (see the module docstring). `embed` holds (token, read channel, weight)."""
    read_weight: dict[int, float] = {}
    for t, _, w in embed:
        read_weight[t] = read_weight.get(t, 0.0) + abs(w)
    first = [t for t in candidates if read_weight.get(t)]
    rest = [t for t in read_weight if t not in first and read_weight[t] > 0]
    score: dict[int, float] = {}
    contrast = False
    if batch is not None and rest:
        counts = _class_counts(batch)
        score = {t: abs(counts[0].get(t, 0.0) - counts[1].get(t, 0.0)) * read_weight[t]
                 for t in rest}  # fmt: skip
        contrast = any(v > 0 for v in score.values())
        if not contrast:
            total = {t: counts[0].get(t, 0.0) + counts[1].get(t, 0.0) for t in rest}
            score = {t: total[t] * read_weight[t] for t in rest}
    if not score:
        score = dict.fromkeys(rest, 0.0)
    ranked = sorted(rest, key=lambda t: (-score[t], -read_weight[t], t))
    if contrast:
        ranked = [t for t in ranked if score[t] > 0]
    shown = (first + ranked)[:limit]
    n_first = min(len(first), limit)
    n_rest = len(shown) - n_first
    parts = []
    if n_first:
        parts.append("the candidates" if n_first > 1 else "the candidate")
    if n_rest:
        why = ("that tell the classes apart most" if contrast
               else "that feed the circuit's reads most" if batch is not None
               else "with the strongest rows into the circuit's reads")
        parts.append(f"{n_rest} context token{'s' if n_rest > 1 else ''} {why}")
    note = " and ".join(parts)
    if len(read_weight) > len(shown):
        note += f" (of {len(read_weight)} task tokens)"
    return shown, note


def _contexts(batch: TaskBatch) -> list[list[int]]:
    """Each example's token ids without the right padding (padding is not a task token)."""
    return [batch.tokens[r, : int(batch.lengths[r])].tolist() for r in range(len(batch))]


def _class_counts(batch: TaskBatch) -> tuple[dict[int, float], dict[int, float]]:
    """Per class: token id -> mean number of occurrences per example of that class."""
    out: tuple[dict[int, float], dict[int, float]] = ({}, {})
    labels = batch.label.tolist()
    sizes = [labels.count(0), labels.count(1)]
    for label, ids in zip(labels, _contexts(batch), strict=True):
        if label in (0, 1):
            for t in ids:
                out[label][t] = out[label].get(t, 0.0) + 1.0 / sizes[label]
    return out


def graph_payload(
    circuit: ViewedCircuit, model: GPT, strings: tuple[str, ...], batch: TaskBatch | None = None
) -> dict[str, Any]:
    """Nodes (with placement), edges, residual links and token edges of one circuit."""
    nodes, unknown = [], []
    for name in circuit.nodes:
        try:
            nodes.append(node_info(model, name))
        except SparseCircuitsError:
            unknown.append(name)
    known = {n["name"] for n in nodes}

    def keep(edges):
        return [
            {"source": e.source, "target": e.target, "weight": e.weight}
            for e in edges if e.source in known and e.target in known
        ]

    edges = keep(circuit.edges)
    links = keep(circuit.residual_links)
    reads = _channel_nodes(nodes, "resid_read")
    writes = _channel_nodes(nodes, "resid_write")
    embed, unembed = _token_edges(circuit, model, nodes, batch)

    candidates = _candidates(circuit, batch)
    shown, embed_note = task_tokens(embed, candidates, batch)
    token_edges = [
        {"source": f"embed.{t}", "target": read, "weight": w, "channel": c}
        for t, c, w in embed if t in shown for read in reads.get(c, [])
    ]
    outputs = sorted({t for _, t, _ in unembed} | set(candidates))
    token_edges += [
        {"source": write, "target": f"unembed.{t}", "weight": w, "channel": c}
        for c, t, w in unembed for write in writes.get(c, [])
    ]
    skipped = len(circuit.edges) + len(circuit.residual_links) - len(edges) - len(links)
    return {
        "n_layer": model.cfg.n_layer,
        "d_head": model.cfg.d_head,
        "rows": list(ROWS),
        "row_titles": ROW_TITLES,
        "nodes": nodes,
        "edges": edges,
        "residual_links": links,
        "embed_tokens": [{"id": f"embed.{t}", "token": strings[t]} for t in shown],
        "embed_tokens_hidden": len({t for t, _, _ in embed}) - len(shown),
        "embed_note": embed_note,
        "unembed_tokens": [{"id": f"unembed.{t}", "token": strings[t]} for t in outputs],
        "token_edges": token_edges,
        "unknown_nodes": unknown,
        "skipped_edges": skipped,
    }


def shown_path(path: str | Path, root: Path | None = None) -> str:
    """How a page names a file or a model: relative to `root` (the artifacts directory; for a
    report, the working directory it was made from) when inside it, else by its name alone, so
    a page never shows where on the machine it was made. A checkpoint is named by its run."""
    path = Path(path)
    if path.name == CHECKPOINT_DIR and path.parent.name:
        path = path.parent
    base = Path.cwd() if root is None else root
    try:
        inside = (base / path).resolve().relative_to(base.resolve())
    except (ValueError, OSError, RuntimeError):
        return path.name or str(path)
    return inside.as_posix()


def circuit_summary(
    circuit: ViewedCircuit, ref: str, root: Path | None = None
) -> dict[str, Any]:
    """The header above the graph: task, counts, losses and the other scalars of the file
    (the model's path as `shown_path` shows it)."""
    return {
        "id": ref,
        "name": circuit.name,
        "task": circuit.task,
        "ablation": circuit.ablation,
        "model_path": shown_path(circuit.model_path, root) if circuit.model_path else "",
        "model_hash": circuit.model_hash,
        "counts": circuit.counts,
        "losses": circuit.losses,
        "summary": circuit.summary,
    }
