"""A big circuit.json for a checkpoint, written by the real writer (`Circuit.save`), for the
browser's layout tests: the pruner finds small circuits in the tiny model, and what has to be
tested is whether a circuit of ~150+ nodes with hundreds of edges stays readable.

Every node exists in the model and every edge is a real nonzero weight between kept nodes of
one block (read -> q/k/v, v -> attn write, read -> neuron, neuron -> mlp write); residual
links join each write to the reads of the same channel in later layers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sparsecircuits.checkpoint import load_checkpoint
from tests.viewer.handmade import save_circuit


def _busiest(counts: torch.Tensor, k: int) -> list[int]:
    """The k indices with the most nonzero weights (ties by index), as ints."""
    order = sorted(range(len(counts)), key=lambda i: (-int(counts[i]), i))
    return sorted(order[:k])


def big_circuit(checkpoint: Path, task: str, out_dir: Path, per_row: int = 12) -> Path:
    """Write `out_dir/circuit.json` with up to `per_row` nodes per location (q, k and v each
    keep `per_row // 2` channels per head) and every edge between them; return its path."""
    loaded = load_checkpoint(checkpoint)
    model, cfg = loaded.model, loaded.model.cfg
    nodes: list[str] = []
    edges: list[list] = []
    links: list[list[str]] = []
    reads_by_channel: dict[int, list[tuple[int, str]]] = {}
    writes: list[tuple[int, int, str]] = []

    def connect(weight: torch.Tensor, sources: list[int], targets: list[int], src: str, dst: str):
        """weight [out, in]: an edge for each nonzero weight[target, source]."""
        for t in targets:
            for s in sources:
                w = float(weight[t, s])
                if w != 0.0:
                    edges.append([f"{src}.{s}", f"{dst}.{t}", w])

    for layer, block in enumerate(model.blocks):
        attn, mlp = block.attn, block.mlp
        attn_in = f"{layer}.attn.act_in"
        read = _busiest(sum((p.weight != 0).sum(0) for p in (attn.q_proj, attn.k_proj,
                                                             attn.v_proj)), per_row)
        channels = {}
        for kind, proj in (("q", attn.q_proj), ("k", attn.k_proj), ("v", attn.v_proj)):
            nz = (proj.weight != 0).sum(1)  # [n_heads * d_head]
            chosen = []
            for head in range(cfg.n_heads):
                lo = head * cfg.d_head
                chosen += [lo + i for i in _busiest(nz[lo : lo + cfg.d_head], per_row // 2)]
            channels[kind] = chosen
            connect(proj.weight.detach(), read, chosen, attn_in, f"{layer}.attn.{kind}")
        attn_out = _busiest((attn.out_proj.weight != 0).sum(1), per_row)
        connect(attn.out_proj.weight.detach(), channels["v"], attn_out, f"{layer}.attn.v",
                f"{layer}.attn.resid_delta")
        mlp_in = f"{layer}.mlp.act_in"
        mread = _busiest((mlp.fc_in.weight != 0).sum(0), per_row)
        neurons = _busiest((mlp.fc_in.weight != 0).sum(1) + (mlp.fc_out.weight != 0).sum(0),
                           2 * per_row)
        connect(mlp.fc_in.weight.detach(), mread, neurons, mlp_in, f"{layer}.mlp.post_act")
        mlp_out = _busiest((mlp.fc_out.weight != 0).sum(1), per_row)
        connect(mlp.fc_out.weight.detach(), neurons, mlp_out, f"{layer}.mlp.post_act",
                f"{layer}.mlp.resid_delta")
        used = {name for e in edges for name in e[:2]}
        for location, indices in ((attn_in, read), (f"{layer}.attn.q", channels["q"]),
                                  (f"{layer}.attn.k", channels["k"]),
                                  (f"{layer}.attn.v", channels["v"]),
                                  (f"{layer}.attn.resid_delta", attn_out), (mlp_in, mread),
                                  (f"{layer}.mlp.post_act", neurons),
                                  (f"{layer}.mlp.resid_delta", mlp_out)):
            for i in indices:
                name = f"{location}.{i}"
                if name in used and name not in nodes:
                    nodes.append(name)
                    if location.endswith("act_in"):
                        reads_by_channel.setdefault(i, []).append((layer, name))
                    if location.endswith("resid_delta"):
                        writes.append((layer, i, name))
    for layer, channel, write in writes:
        links += [[write, r] for later, r in reads_by_channel.get(channel, []) if later > layer]
    return save_circuit(loaded, task, "big, for layout tests", nodes, edges, links,
                        {"test_sufficiency_uncalibrated": 0.7, "full_model_val": 0.4}, out_dir)
