"""A small but real circuit.json for a checkpoint, built from its nonzero weights.

Used where a test needs a circuit file and running the pruner would cost more than the test:
every node exists in the model and every edge is a real nonzero weight between two kept nodes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sparsecircuits.checkpoint import content_hash, load_checkpoint
from sparsecircuits.circuits.circuit_file import Circuit
from sparsecircuits.model.locations import node_kind, parse_node_name


def _top(row: torch.Tensor, k: int) -> list[int]:
    """Indices of the k largest |entries| that are nonzero."""
    order = row.abs().argsort(descending=True)[:k]
    return [int(i) for i in order if row[i] != 0]


def handmade_circuit(checkpoint: Path, task: str, out_dir: Path) -> Path:
    """Write `out_dir/circuit.json`: a circuit through layer-0 MLP and the last layer's
    attention + MLP."""
    loaded = load_checkpoint(checkpoint)
    model = loaded.model
    nodes: list[str] = []
    edges: list[list] = []

    def add(*names: str) -> None:
        for n in names:
            if n not in nodes:
                nodes.append(n)

    def mlp(layer: int) -> list[str]:
        fc_in = model.blocks[layer].mlp.fc_in.weight.detach()  # [d_mlp, d_model]
        fc_out = model.blocks[layer].mlp.fc_out.weight.detach()  # [d_model, d_mlp]
        neuron = int(((fc_in != 0).sum(1) + (fc_out != 0).sum(0)).argmax())
        post = f"{layer}.mlp.post_act.{neuron}"
        add(post)
        for i in _top(fc_in[neuron], 2):
            add(f"{layer}.mlp.act_in.{i}")
            edges.append([f"{layer}.mlp.act_in.{i}", post, float(fc_in[neuron, i])])
        writes = []
        for r in _top(fc_out[:, neuron], 2):
            add(f"{layer}.mlp.resid_delta.{r}")
            edges.append([post, f"{layer}.mlp.resid_delta.{r}", float(fc_out[r, neuron])])
            writes.append(f"{layer}.mlp.resid_delta.{r}")
        return writes

    def attention(layer: int) -> None:
        attn = model.blocks[layer].attn
        for kind, proj in (("q", attn.q_proj), ("k", attn.k_proj), ("v", attn.v_proj)):
            w = proj.weight.detach()  # [n_heads * d_head, d_model]
            channel = int((w != 0).sum(1).argmax())
            add(f"{layer}.attn.{kind}.{channel}")
            for i in _top(w[channel], 2 if kind == "v" else 1):
                add(f"{layer}.attn.act_in.{i}")
                edges.append([f"{layer}.attn.act_in.{i}", f"{layer}.attn.{kind}.{channel}",
                              float(w[channel, i])])
            if kind == "v":
                out = attn.out_proj.weight.detach()  # [d_model, n_heads * d_head]
                for r in _top(out[:, channel], 2):
                    add(f"{layer}.attn.resid_delta.{r}")
                    edges.append([f"{layer}.attn.{kind}.{channel}",
                                  f"{layer}.attn.resid_delta.{r}", float(out[r, channel])])

    last = model.cfg.n_layer - 1
    writes = mlp(0)
    attention(last)
    mlp(last)
    # Residual links: each layer-0 write feeds the same channel's read in the last layer.
    links = []
    for w in writes:
        channel = w.rsplit(".", 1)[1]
        read = f"{last}.attn.act_in.{channel}"
        add(read)
        links.append([w, read])
    # no sidecar: the viewer takes the pruner's means for this model
    return save_circuit(loaded, task, "hand-built", nodes, edges, links,
                        {"val": 0.5, "test": 0.6}, out_dir)


def node_entry(name: str) -> dict:
    """A node as the pruner lists it (no mask score of its own: 1.0; no stored mean)."""
    location, index = parse_node_name(name)
    return {"name": name, "location": location, "index": index,
            "layer": int(location.split(".")[0]), "kind": node_kind(location),
            "mask_score": 1.0, "ablation_value": None}


def save_circuit(loaded, task: str, description: str, nodes: list[str], edges: list,
                 links: list, losses: dict, out_dir: Path) -> Path:
    """Write a test circuit of `loaded` through the one real writer (no sidecar)."""
    return Circuit(
        model={"path": str(loaded.path), "content_hash": content_hash(loaded.path),
               "step": loaded.meta.get("step"), "config": {}},
        task={"name": task, "description": description, "split_sizes": {}, "seed": 0,
              "candidates": [], "n_truncated": 0},
        ablation="mean",
        target_loss=0.15,
        nodes=[node_entry(n) for n in nodes],
        edges=edges,
        embed_edges=[],
        unembed_edges=[],
        residual_links=links,
        counts={"nodes": len(nodes), "edges": len(edges)},
        losses=losses,
        calibration={"scale": 1.0, "shift": 0.0, "shift_applies_to": "both candidate logits"},
        validation={},
        baseline=None,
        search=None,
        hyperparameters={},
        training={},
        wall_time_s={},
    ).save(out_dir)
