"""`beeg_config.json` (their GPTConfig) <-> our ModelConfig, field by field (docs/openai.md).

Every field of their GPTConfig is either mapped, checked to hold the one value we can
represent, or ignored because it only affects training or speed (dropout, flash, ...). A field
we do not know is an error: we cannot tell what it would do to the forward pass.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sparsecircuits.config import ABSTOPK_SITE_NAMES, ModelConfig, abstopk_site_set, shown
from sparsecircuits.openai_format.errors import OpenAIFormatError

LOCTYPE_TO_SITE = {
    "attn_in": "attn.act_in", "attn_q": "attn.q", "attn_k": "attn.k", "attn_v": "attn.v",
    "attn_out": "attn.resid_delta", "mlp_in": "mlp.act_in", "mlp_neuron": "mlp.post_act",
    "mlp_out": "mlp.resid_delta",
}  # fmt: skip
"""Their AbsTopK location types (`afrac_loctypes`) -> our node sublocations."""
SITE_TO_LOCTYPE = {site: loc for loc, site in LOCTYPE_TO_SITE.items()}

RMSNORM_EPS = float(torch.finfo(torch.float32).eps)
"""Their `nn.RMSNorm(d)` has eps=None: torch then uses the float32 machine epsilon."""

IGNORED = {
    "dropout": "training only",
    "debug_nans": "assertions only",
    "grad_checkpointing": "memory during training only",
    "flash": "kernel choice (we run the flash path's forward, sinks included)",
    "enable_sparse_kernels": "kernel choice",
    "learnable_bigram_table": "whether training updated the table",
    "bigram_table_rank": "discarded by their loader",
    "dropout_cat_pos_emb": "training only",
    "sinusoidal_cat_pos_emb": "only with d_pos_emb",
    "ln_bias": "only with LayerNorm (rms_norm false, refused)",
}
"""Fields that do not change the forward pass of a loaded model, and why."""
MAPPED = {
    "block_size", "vocab_size", "n_layer", "n_head", "d_head", "d_model", "d_mlp", "n_mlp",
    "bias", "rms_norm", "residual_activation_type", "activation_type", "afrac",
    "afrac_loctypes", "tied_unembed", "tokenizer_name", "enable_bigram_table", "d_pos_emb",
    "sink", "use_tied_aux_matrix",
}
KNOWN_FIELDS = MAPPED | set(IGNORED)


def _int(doc: dict[str, Any], key: str, default: Any = None) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OpenAIFormatError(f"beeg_config.json: {key} must be a positive integer, "
                                f"got {shown(value)}")
    return value


def _flag(doc: dict[str, Any], key: str, default: bool) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise OpenAIFormatError(f"beeg_config.json: {key} must be true or false, got {shown(value)}")
    return value


def _refuse(key: str, value: Any, why: str) -> OpenAIFormatError:
    return OpenAIFormatError(f"beeg_config.json: {key}={shown(value)} is not supported: {why}")


def model_config_from_beeg(doc: Any) -> tuple[ModelConfig, bool]:
    """Our ModelConfig for their config, and whether `bias` (Linear biases) is on.

    The positional embedding and the tied unembedding are settled from the weights (the
    caller): their model always adds `wpe`, which we drop only when it is all zeros.
    """
    if not isinstance(doc, dict):
        raise OpenAIFormatError("beeg_config.json must hold a JSON object")
    unknown = sorted(set(doc) - KNOWN_FIELDS)
    if unknown:
        raise OpenAIFormatError(f"beeg_config.json: unknown field {unknown[0]!r} (known: "
                                f"{', '.join(sorted(KNOWN_FIELDS))})")
    d_model = _int(doc, "d_model", 768)
    n_head = _int(doc, "n_head", 12)
    d_head = _int(doc, "d_head", d_model // n_head) if doc.get("d_head") is not None else (
        d_model // n_head)
    if n_head * d_head != d_model:
        raise _refuse("d_head", d_head, f"n_head x d_head must equal d_model ({d_model})")
    d_mlp_key = "d_mlp" if doc.get("d_mlp") is not None else "n_mlp"
    d_mlp = _int(doc, d_mlp_key) if doc.get(d_mlp_key) is not None else 4 * d_model
    if d_mlp % d_model:
        raise _refuse(d_mlp_key, d_mlp, f"the MLP width must be a multiple of d_model ({d_model})")
    if not _flag(doc, "rms_norm", False):
        raise _refuse("rms_norm", False, "LayerNorm models are not supported, only RMSNorm")
    if doc.get("residual_activation_type", "identity") != "identity":
        raise _refuse("residual_activation_type", doc["residual_activation_type"],
                      "only 'identity'")
    activation = doc.get("activation_type", "gelu")
    if activation not in ("gelu", "relu"):
        raise _refuse("activation_type", activation, "only 'gelu' or 'relu'")
    if doc.get("d_pos_emb") is not None:
        raise _refuse("d_pos_emb", doc["d_pos_emb"], "concatenated positional embeddings")
    if doc.get("use_tied_aux_matrix", False) is not False:
        raise _refuse("use_tied_aux_matrix", doc["use_tied_aux_matrix"], "only false")
    if doc.get("tokenizer_name", "tinypython_2k") != "tinypython_2k":
        raise _refuse("tokenizer_name", doc["tokenizer_name"], "only 'tinypython_2k'")
    fraction, sites = _abstopk(doc)
    cfg = ModelConfig(
        vocab_size=_int(doc, "vocab_size", 50304), n_layer=_int(doc, "n_layer", 12),
        d_model=d_model, d_head=d_head, mlp_ratio=d_mlp // d_model,
        n_ctx=_int(doc, "block_size", 1024), positional="learned",
        attention_sink=_flag(doc, "sink", False),
        bigram_table=_flag(doc, "enable_bigram_table", False),
        abstopk_fraction=fraction, norm_eps=RMSNORM_EPS, abstopk_sites=sites,
        abstopk_rounding="floor", mlp_activation=activation,
    )  # fmt: skip
    _flag(doc, "tied_unembed", True)
    return cfg, _flag(doc, "bias", True)


def _abstopk(doc: dict[str, Any]) -> tuple[float, str]:
    afrac = doc.get("afrac")
    if afrac is None:
        return 1.0, "all"
    if isinstance(afrac, bool) or not isinstance(afrac, (int, float)) or not 0 < afrac <= 1:
        raise OpenAIFormatError(f"beeg_config.json: afrac must be in (0, 1] or null, got "
                                f"{shown(afrac)}")
    loctypes = doc.get("afrac_loctypes", "attn_in,attn_out,mlp_in,mlp_out")
    if not isinstance(loctypes, str):
        raise OpenAIFormatError(f"beeg_config.json: afrac_loctypes must be a string, got "
                                f"{shown(loctypes)}")
    sites = []
    for loc in filter(None, loctypes.split(",")):
        if loc not in LOCTYPE_TO_SITE:
            raise _refuse("afrac_loctypes", loc, "AbsTopK there has no node location of ours "
                          f"(supported: {', '.join(LOCTYPE_TO_SITE)})")
        sites.append(LOCTYPE_TO_SITE[loc])
    chosen = [s for s in ABSTOPK_SITE_NAMES if s in sites]  # our order, no repeats
    if not chosen:  # AbsTopK nowhere: the same as keeping every feature
        return 1.0, "all"
    return float(afrac), "all" if len(chosen) == len(ABSTOPK_SITE_NAMES) else ",".join(chosen)


def check_k_positive(cfg: ModelConfig) -> None:
    """Their k = int(afrac x width) can be 0 (the location is zeroed); ours is at least 1."""
    if cfg.abstopk_fraction >= 1.0:
        return
    widths, active = {"mlp.post_act": cfg.d_mlp}, abstopk_site_set(cfg.abstopk_sites)
    for site in (s for s in ABSTOPK_SITE_NAMES if s in active):
        width = widths.get(site, cfg.d_model)
        if math.floor(cfg.abstopk_fraction * width) < 1:
            raise _refuse("afrac", cfg.abstopk_fraction, f"it keeps 0 of the {width} features "
                          f"at {site}")


def beeg_from_model_config(cfg: ModelConfig, bias: bool, tied: bool) -> dict[str, Any]:
    """Their config for our ModelConfig; OpenAIFormatError for what their code cannot run."""
    if cfg.abstopk_fraction < 1.0 and cfg.abstopk_rounding != "floor":
        widths, active = {"mlp.post_act": cfg.d_mlp}, abstopk_site_set(cfg.abstopk_sites)
        for site in (s for s in ABSTOPK_SITE_NAMES if s in active):
            w = widths.get(site, cfg.d_model)
            ours = max(1, round(cfg.abstopk_fraction * w))
            if ours != math.floor(cfg.abstopk_fraction * w):
                raise OpenAIFormatError(
                    f"model.abstopk_fraction={cfg.abstopk_fraction:g} keeps {ours} of {w} "
                    f"features at {site}, but their code keeps int(afrac x {w}) = "
                    f"{math.floor(cfg.abstopk_fraction * w)}")
    sites = abstopk_site_set(cfg.abstopk_sites)
    loctypes = ",".join(SITE_TO_LOCTYPE[s] for s in ABSTOPK_SITE_NAMES if s in sites)
    return {
        "block_size": cfg.n_ctx, "vocab_size": cfg.vocab_size, "n_layer": cfg.n_layer,
        "n_head": cfg.n_heads, "d_head": cfg.d_head, "d_model": cfg.d_model, "dropout": 0.0,
        "bias": bias, "ln_bias": False, "rms_norm": True,
        "residual_activation_type": "identity", "activation_type": cfg.mlp_activation,
        "afrac": None if cfg.abstopk_fraction >= 1.0 else cfg.abstopk_fraction,
        "afrac_loctypes": loctypes, "debug_nans": False, "tied_unembed": tied,
        "tokenizer_name": "tinypython_2k", "grad_checkpointing": False, "d_mlp": cfg.d_mlp,
        "enable_bigram_table": cfg.bigram_table, "learnable_bigram_table": cfg.bigram_table,
        "d_pos_emb": None, "dropout_cat_pos_emb": False, "sinusoidal_cat_pos_emb": False,
        "enable_sparse_kernels": False, "flash": True, "sink": cfg.attention_sink,
        "bigram_table_rank": None,
    }  # fmt: skip
