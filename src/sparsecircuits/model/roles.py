"""Parameter roles: the one declaration of what each parameter of the GPT is.

The initialiser (`GPT._init_weights`), the weight-sparsity projection
(`train.sparsity.sparse_parameters`) and the optimiser (`train.trainer.build_optimizer`) all
read a parameter's role from `PARAMETER_ROLES`, so renaming a module (say `fc_out`) cannot
silently change its init or its sparsity axes: a parameter without an entry is an error.
Why each matrix is sparse and what the node axes are for: docs/method.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Init = Literal["normal", "normal_residual", "zeros", "as_built"]


@dataclass(frozen=True)
class ParamRole:
    """How one parameter is initialised, constrained and regularised."""

    sparse: bool
    """Under the L0 constraint: the projection keeps only its largest entries."""
    node_axes: tuple[int, ...]
    """Axes indexing neurons/channels, each of which keeps >= j nonzeros (the min-j rule)."""
    init: Init
    """normal(0, 0.02); normal scaled by 1/sqrt(2 n_layer) for matrices writing to the
    residual stream; zeros; or as the constructor built it (norm gains 1, sinks 0, ...)."""
    weight_decay: bool
    """Whether AdamW decays it (matrices yes; gains, biases, sinks no)."""


MATRIX = ParamRole(sparse=True, node_axes=(0, 1), init="normal", weight_decay=True)
"""A Linear weight [out, in] reading the residual stream: rows and columns are both nodes."""
RESIDUAL_WRITE = ParamRole(sparse=True, node_axes=(0, 1), init="normal_residual",
                           weight_decay=True)  # fmt: skip
"""A Linear weight [d_model, in] writing to the residual stream."""
TOKEN_TABLE = ParamRole(sparse=True, node_axes=(1,), init="normal", weight_decay=True)
"""[tokens or positions, d_model]: only the columns (residual channels) are nodes."""
BIAS = ParamRole(sparse=True, node_axes=(), init="zeros", weight_decay=False)
GAIN = ParamRole(sparse=False, node_axes=(), init="as_built", weight_decay=False)
"""RMSNorm gains: dense (they can be folded into the next matrix)."""
SINK = ParamRole(sparse=False, node_axes=(), init="as_built", weight_decay=False)
"""Attention-sink logits: one scalar per head, dense."""
BIGRAM = ParamRole(sparse=False, node_axes=(), init="as_built", weight_decay=True)
"""The bigram table [vocab, vocab]: dense by design, decayed like every matrix."""

LAYER = "blocks.L."
"""How a per-layer parameter is written in the table: `blocks.3.mlp.fc_in.weight` is
looked up as `blocks.L.mlp.fc_in.weight`."""

PARAMETER_ROLES: dict[str, ParamRole] = {
    "embed.weight": TOKEN_TABLE,
    "pos_embed.weight": TOKEN_TABLE,
    "blocks.L.attn.norm.weight": GAIN,
    "blocks.L.attn.q_proj.weight": MATRIX,
    "blocks.L.attn.q_proj.bias": BIAS,
    "blocks.L.attn.k_proj.weight": MATRIX,
    "blocks.L.attn.k_proj.bias": BIAS,
    "blocks.L.attn.v_proj.weight": MATRIX,
    "blocks.L.attn.v_proj.bias": BIAS,
    "blocks.L.attn.out_proj.weight": RESIDUAL_WRITE,
    "blocks.L.attn.out_proj.bias": BIAS,
    "blocks.L.attn.sink": SINK,
    "blocks.L.mlp.norm.weight": GAIN,
    "blocks.L.mlp.fc_in.weight": MATRIX,
    "blocks.L.mlp.fc_in.bias": BIAS,
    "blocks.L.mlp.fc_out.weight": RESIDUAL_WRITE,
    "blocks.L.mlp.fc_out.bias": BIAS,
    "final_norm.weight": GAIN,
    "unembed.weight": TOKEN_TABLE,
    "bigram": BIGRAM,
    "logits_bias": BIAS,
}
"""Every parameter the GPT can have (optional ones included), by table name."""

_LAYER_PREFIX = re.compile(r"^blocks\.(0|[1-9][0-9]*)\.", re.ASCII)


def table_name(name: str) -> str:
    """'blocks.3.mlp.fc_in.weight' -> 'blocks.L.mlp.fc_in.weight'; other names unchanged."""
    return _LAYER_PREFIX.sub(LAYER, name, count=1) if name.startswith("blocks.") else name


def parameter_role(name: str) -> ParamRole:
    """The role of the GPT parameter `name` (as `named_parameters` spells it).

    KeyError for a parameter the table does not declare: a new or renamed parameter must be
    given a role here rather than fall into one by its name.
    """
    try:
        return PARAMETER_ROLES[table_name(name)]
    except KeyError:
        raise KeyError(
            f"parameter {name!r} has no role in sparsecircuits.model.roles.PARAMETER_ROLES"
        ) from None
