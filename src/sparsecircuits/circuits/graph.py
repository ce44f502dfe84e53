"""A circuit as a graph: which weights connect its nodes, and how many edges it has.

Edge rule (docs/method.md §5: "an edge is a nonzero weight entry connecting two nodes"):

- **edges** (the headline, comparable with the paper's counts): nonzero entries W[o, i] of a
  weight matrix whose input node i and output node o are both in the circuit. Per layer L:

      q_proj, k_proj, v_proj [channel, d_model]:  L.attn.act_in.i  -> L.attn.{q,k,v}.o
      out_proj [d_model, channel]:                 L.attn.v.i       -> L.attn.resid_delta.o
      fc_in [d_mlp, d_model]:                      L.mlp.act_in.i   -> L.mlp.post_act.o
      fc_out [d_model, d_mlp]:                     L.mlp.post_act.i -> L.mlp.resid_delta.o

  q and k channels reach the output only through the attention pattern (a product, not a
  weight), so they have incoming edges only. Biases and RMSNorm gains join no two nodes.
  The paper's example, one MLP neuron reading one channel and writing one channel, is
  3 nodes (act_in.c, post_act.n, resid_delta.c') and 2 edges (fc_in[n, c], fc_out[c', n]).
- **residual links** (not edges, no weight): a write node `L.*.resid_delta.c` feeds every later
  read node `M.*.act_in.c` of the same channel through the identity residual path. They are
  listed for drawing only.
- **embed_edges**: nonzero embed[t, c] for tokens t that occur in the task's examples and
  channels c that some circuit read node reads (the embedding feeds every read directly
  through the residual path); learned positional embeddings likewise, per position.
- **unembed_edges**: nonzero unembed[v, c] for candidate tokens v of the task and channels c
  that some circuit write node writes.
- **edges_total** = edges + embed_edges + unembed_edges.

The embedding rows and logits are not nodes in the paper's definition, and its string-closing
circuit (12 nodes, 9 edges) leaves too few edges for token-to-channel weights to be included,
so `edges` alone is the headline; the other counts are reported next to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sparsecircuits.model.locations import parse_node

Edge = tuple[str, str, float]
"""(source node, target node, weight)."""


@dataclass(frozen=True)
class CircuitGraph:
    """The edges of a circuit, by kind."""

    edges: list[Edge]
    """Internal edges: nonzero weights between two circuit nodes."""
    embed_edges: list[Edge]
    """('embed.<token id>' or 'pos_embed.<position>', 'resid.<channel>', weight): every circuit
    read node on that channel receives it."""
    unembed_edges: list[Edge]
    """('resid.<channel>', 'unembed.<token id>', weight): fed by every write node on the channel."""
    residual_links: list[tuple[str, str]]
    """(write node, later read node) on the same residual channel; not weights, not edges."""

    def counts(self) -> dict[str, int]:
        return {
            "edges": len(self.edges),
            "embed_edges": len(self.embed_edges),
            "unembed_edges": len(self.unembed_edges),
            "edges_total": len(self.edges) + len(self.embed_edges) + len(self.unembed_edges),
            "residual_links": len(self.residual_links),
        }


def weight_connections(n_layer: int) -> list[tuple[str, str, str]]:
    """(parameter name, input location, output location) of every node-to-node matrix."""
    out = []
    for L in range(n_layer):
        a, m = f"{L}.attn", f"{L}.mlp"
        for proj in ("q", "k", "v"):
            out.append((f"blocks.{L}.attn.{proj}_proj.weight", f"{a}.act_in", f"{a}.{proj}"))
        out.append((f"blocks.{L}.attn.out_proj.weight", f"{a}.v", f"{a}.resid_delta"))
        out.append((f"blocks.{L}.mlp.fc_in.weight", f"{m}.act_in", f"{m}.post_act"))
        out.append((f"blocks.{L}.mlp.fc_out.weight", f"{m}.post_act", f"{m}.resid_delta"))
    return out


def _by_location(nodes: Iterable[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for node in nodes:
        loc, index = parse_node(node)
        out[loc].append(index)
    return {loc: sorted(set(idx)) for loc, idx in out.items()}


def _entries(
    weight: Tensor, rows: Sequence[int], cols: Sequence[int]
) -> list[tuple[int, int, float]]:
    """Nonzero entries (row, col, value) of weight[rows][:, cols], in original indices."""
    if not rows or not cols:
        return []
    r, c = torch.tensor(rows), torch.tensor(cols)
    sub = weight.detach().cpu()[r][:, c]
    nz = torch.nonzero(sub)
    return [(rows[i], cols[j], float(sub[i, j])) for i, j in nz.tolist()]


def _sublayer(location: str) -> int:
    """Position of a location's sublayer in the residual stream order: 2L (attn), 2L+1 (mlp)."""
    layer, part = location.split(".")[:2]
    return 2 * int(layer) + (1 if part == "mlp" else 0)


def circuit_graph(
    state: dict[str, Tensor],
    n_layer: int,
    nodes: Iterable[str],
    task_tokens: Iterable[int] = (),
    candidate_tokens: Iterable[int] = (),
    max_position: int = 0,
) -> CircuitGraph:
    """Edges of the circuit `nodes` in a model given by its state dict (see module docstring).

    `task_tokens`: token ids occurring in the task's examples (for embed_edges);
    `candidate_tokens`: the task's candidate ids (for unembed_edges); `max_position`: the
    longest example, for learned positional embeddings.
    """
    kept = _by_location(nodes)
    edges: list[Edge] = []
    for param, src, dst in weight_connections(n_layer):
        for o, i, w in _entries(state[param], kept.get(dst, []), kept.get(src, [])):
            edges.append((f"{src}.{i}", f"{dst}.{o}", w))

    reads = {loc: idx for loc, idx in kept.items() if loc.endswith((".attn.act_in", ".mlp.act_in"))}
    writes = {loc: idx for loc, idx in kept.items() if loc.endswith(".resid_delta")}
    read_nodes_of: dict[int, list[str]] = defaultdict(list)  # channel -> read nodes
    for loc, idx in reads.items():
        for c in idx:
            read_nodes_of[c].append(f"{loc}.{c}")
    write_nodes_of: dict[int, list[str]] = defaultdict(list)
    for loc, idx in writes.items():
        for c in idx:
            write_nodes_of[c].append(f"{loc}.{c}")

    embed_edges: list[Edge] = []
    channels = sorted(read_nodes_of)
    sources = [("embed", "embed.weight", sorted(set(task_tokens)))]
    if "pos_embed.weight" in state:
        sources.append(("pos_embed", "pos_embed.weight", list(range(max_position))))
    for prefix, param, rows in sources:
        for t, c, w in _entries(state[param], rows, channels):
            embed_edges.append((f"{prefix}.{t}", f"resid.{c}", w))

    unembed_edges: list[Edge] = []
    for v, c, w in _entries(
        state["unembed.weight"], sorted(set(candidate_tokens)), sorted(write_nodes_of)
    ):
        unembed_edges.append((f"resid.{c}", f"unembed.{v}", w))

    links = []
    for c, writers in write_nodes_of.items():
        for writer in writers:
            for reader in read_nodes_of.get(c, []):
                if _sublayer(parse_node(writer)[0]) < _sublayer(parse_node(reader)[0]):
                    links.append((writer, reader))
    links.sort(key=lambda wr: (_sublayer(wr[0]), wr[0], _sublayer(wr[1]), wr[1]))
    return CircuitGraph(edges, embed_edges, unembed_edges, links)
