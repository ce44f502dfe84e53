"""The model's node vocabulary: where nodes live, how a node is named, what kind it is.

A node location is `<layer>.<attn|mlp>.<sublocation>` (`0.attn.q`, `3.mlp.post_act`) and a
node is one channel of it: `<location>.<index>` (`3.mlp.post_act.460`). Names are addresses,
so there is one canonical spelling per node: ASCII digits without leading zeros. Every reader
of a node name (hooks, masks, circuit files, the viewer) parses it here. See docs/method.md
for what the locations are.
"""

from __future__ import annotations

import re
from typing import Any

from sparsecircuits.errors import SparseCircuitsError

ATTN_LOCATIONS = ("act_in", "q", "k", "v", "resid_delta")
"""Node locations in an attention block, in forward order."""
MLP_LOCATIONS = ("act_in", "post_act", "resid_delta")
"""Node locations in an MLP block, in forward order."""
SUBLOCATIONS = {"attn": ATTN_LOCATIONS, "mlp": MLP_LOCATIONS}

SUBLOCATION_KINDS = {
    "act_in": "resid_read", "q": "q", "k": "k", "v": "v", "resid_delta": "resid_write",
    "post_act": "neuron",
}  # fmt: skip
"""What a node at `<layer>.<attn|mlp>.<sublocation>` is: the one node-kind vocabulary (the
viewer's graph draws these kinds)."""
NODE_KINDS = tuple(dict.fromkeys(SUBLOCATION_KINDS.values()))

# ASCII digits without leading zeros: str.isdigit also accepts '²' and '٣' (which int() rejects
# or reads as 3), and '07' would be a second name for node 7.
_INDEX = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_NODE = re.compile(r"(0|[1-9][0-9]*)\.(attn|mlp)\.([a-z_]+)\.(0|[1-9][0-9]*)", re.ASCII)


def parse_index(text: str) -> int | None:
    """'460' -> 460; None for anything that is not a canonical non-negative decimal."""
    return int(text) if _INDEX.fullmatch(text) else None


def parse_node_name(name: Any) -> tuple[str, int] | None:
    """'0.mlp.post_act.460' -> ('0.mlp.post_act', 460); None for anything that is not the
    canonical name of a node at a location the model family has."""
    m = _NODE.fullmatch(name) if isinstance(name, str) else None
    if m is None or m.group(3) not in SUBLOCATIONS[m.group(2)]:
        return None
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", int(m.group(4))


class UnknownNodeError(SparseCircuitsError):
    """A well-formed node name that the model does not have."""


def parse_node(node: str) -> tuple[str, int]:
    """'0.mlp.post_act.460' -> ('0.mlp.post_act', 460).

    SparseCircuitsError for a malformed name; UnknownNodeError for `<location>.<index>` at a
    location no model of this family has (the same names `parse_node_name` refuses).
    """
    parsed = parse_node_name(node)
    if parsed is not None:
        return parsed
    location, _, index = node.rpartition(".")
    if location and parse_index(index) is not None:
        raise UnknownNodeError(f"unknown node {node!r}: the model has no location {location!r}")
    raise SparseCircuitsError(f"{node!r:.80} is not a node name like 0.mlp.post_act.460")


def node_kind(location: str) -> str:
    """'0.mlp.post_act' -> 'neuron'; act_in -> 'resid_read', resid_delta -> 'resid_write',
    q, k, v -> themselves."""
    return SUBLOCATION_KINDS[location.rsplit(".", 1)[1]]
