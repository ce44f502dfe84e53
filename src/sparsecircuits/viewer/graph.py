"""A circuit as the graph the front end draws: nodes placed in layer bands, edges, readout.

Bands run from the embedding (bottom) to the unembedding (top); inside layer L the rows are,
bottom to top, the order activations flow through the block:

    attn.act_in (residual read) -> attn.q/k/v -> attn.resid_delta (residual write)
    -> mlp.act_in (residual read) -> mlp.post_act (neurons) -> mlp.resid_delta (write)

The horizontal order inside a row is left to the front end (it reduces crossings); this module
only says where each node belongs and what it is. Token edges join the two end bands to the
circuit: embedding rows of task tokens into the circuit's residual reads (the strongest few
tokens), and the circuit's residual writes into the candidates' unembedding rows. The pruner
writes them per channel (`resid.<c>`); here each is drawn to every circuit node on channel c.
"""

from __future__ import annotations

from typing import Any

import torch

from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.viewer.circuit_file import CircuitFile
from sparsecircuits.viewer.node_stats import check_node, node_kind

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
MAX_EMBED_TOKENS = 8  # tokens drawn in the embedding band (strongest rows first)


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
    return int(idx) if prefix == "resid" and idx.isdigit() else None


def _token_id(pseudo: str, prefix: str) -> int | None:
    head, _, idx = pseudo.rpartition(".")
    return int(idx) if head == prefix and idx.isdigit() else None


def _token_edges(
    circuit: CircuitFile, model: GPT, nodes: list[dict[str, Any]], batch: TaskBatch | None
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
    tokens = sorted(set(batch.tokens.flatten().tolist())) if batch is not None else []
    with torch.no_grad():
        emb = model.embed.weight.detach().float()  # [vocab, d_model]
        unemb = model.unembed.weight.detach().float()  # [vocab, d_model]
        embed = [(t, c, float(emb[t, c])) for t in tokens for c in reads if emb[t, c] != 0]
        unembed = [
            (c, t, float(unemb[t, c]))
            for t in _candidates(circuit, batch) for c in writes if unemb[t, c] != 0
        ]
    return embed, unembed


def _candidates(circuit: CircuitFile, batch: TaskBatch | None) -> list[int]:
    """The task's candidate token ids, when they are a small fixed set (e.g. `')` and `")`)."""
    if circuit.candidates:
        ids = sorted(set(circuit.candidates))
    elif batch is not None:
        ids = sorted(set(batch.correct_id.tolist()) | set(batch.wrong_id.tolist()))
    else:
        ids = []
    return ids if len(ids) <= MAX_CANDIDATES else []


def graph_payload(
    circuit: CircuitFile, model: GPT, strings: tuple[str, ...], batch: TaskBatch | None = None
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

    # The embedding band shows the tokens with the strongest rows into the circuit's reads.
    strength: dict[int, float] = {}
    for t, _, w in embed:
        strength[t] = max(strength.get(t, 0.0), abs(w))
    shown = sorted(strength, key=lambda t: -strength[t])[:MAX_EMBED_TOKENS]
    token_edges = [
        {"source": f"embed.{t}", "target": read, "weight": w, "channel": c}
        for t, c, w in embed if t in shown for read in reads.get(c, [])
    ]
    outputs = sorted({t for _, t, _ in unembed} | set(_candidates(circuit, batch)))
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
        "embed_tokens": [{"id": f"embed.{t}", "token": strings[t]} for t in sorted(shown)],
        "embed_tokens_hidden": max(0, len(strength) - len(shown)),
        "unembed_tokens": [{"id": f"unembed.{t}", "token": strings[t]} for t in outputs],
        "token_edges": token_edges,
        "unknown_nodes": unknown,
        "skipped_edges": skipped,
    }


def circuit_summary(circuit: CircuitFile, ref: str) -> dict[str, Any]:
    """The header above the graph: task, counts, losses and the other scalars of the file."""
    return {
        "id": ref,
        "name": circuit.name,
        "task": circuit.task,
        "ablation": circuit.ablation,
        "model_path": circuit.model_path,
        "model_hash": circuit.model_hash,
        "counts": circuit.counts,
        "losses": circuit.losses,
        "summary": circuit.summary,
    }
