"""Their state dict (`final_model.pt`) <-> ours, tensor by tensor (docs/openai.md).

    theirs (transformer.h.L. ...)              ours (blocks.L. ...)
    transformer.wte.weight [V, D]              embed.weight
    transformer.wpe.weight [block_size, D]     pos_embed.weight (dropped when all zero)
    ln_1.weight / ln_2.weight [D]              attn.norm.weight / mlp.norm.weight
    attn.c_attn.weight [3 H dh, D] (q; k; v)   attn.{q,k,v}_proj.weight, rows split in 3
    attn.c_attn.bias [3 H dh]                  attn.{q,k,v}_proj.bias (zeros when bias=false)
    attn.c_proj.weight / .bias                 attn.out_proj.weight / .bias
    attn.attn_imp.sink_logit [H]               attn.sink
    mlp.c_fc.weight / .bias                    mlp.fc_in.weight / .bias
    mlp.c_proj.weight / .bias                  mlp.fc_out.weight / .bias
    transformer.ln_f.weight [D]                final_norm.weight
    lm_head.weight [V, D]                      unembed.weight (tied: the same as wte)
    final_logits_bias [V] (missing = zeros)    logits_bias
    bigram_table [V, V]                        bigram

`attn.bias` ([1, 1, T, T], the causal mask buffer of their non-flash attention) is accepted
and ignored. Tensors are read one at a time from a memory-mapped file, so importing needs
about one copy of the model in memory (the output), not two.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from sparsecircuits.config import ModelConfig
from sparsecircuits.openai_format.errors import OpenAIFormatError

BLOCK = "transformer.h.{}."


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """`final_model.pt` through torch.load(weights_only=True) (memory-mapped where the file
    allows): a pickle that needs more than tensors is refused, never run."""
    if not path.is_file():
        raise OpenAIFormatError(f"{path} does not exist")
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):  # an old (non-zip) file cannot be memory-mapped
                raise
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        needs = re.search(r"Unsupported (?:global|class):? (?:GLOBAL )?([\w.]+)", str(exc))
        if needs:
            raise OpenAIFormatError(f"{path} is not a weights-only checkpoint: it needs "
                                    f"{needs.group(1)}, and it was not unpickled") from None
        last = [line for line in str(exc).splitlines() if line.strip()][-1:] or [""]
        raise OpenAIFormatError(f"{path} cannot be read as a torch checkpoint: "
                                f"{last[0].strip()[:160]}") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise OpenAIFormatError(f"{path} cannot be read as a torch checkpoint: {first[:160]}"
                                ) from None
    if not isinstance(sd, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()
    ):
        raise OpenAIFormatError(f"{path} must hold a dict of tensors (a state dict)")
    return sd


def _take(sd: dict[str, Tensor], name: str, shape: tuple[int, ...], used: set[str]) -> Tensor:
    if name not in sd:
        raise OpenAIFormatError(f"final_model.pt lacks tensor {name} (expected shape {shape})")
    t = sd[name]
    if tuple(t.shape) != shape:
        raise OpenAIFormatError(f"final_model.pt: tensor {name} has shape {tuple(t.shape)}, "
                                f"expected {shape}")
    if not t.is_floating_point():
        raise OpenAIFormatError(f"final_model.pt: tensor {name} has dtype {t.dtype}, "
                                "not floating point")
    used.add(name)
    return t.to(torch.float32)


def ours_from_theirs(
    sd: dict[str, Tensor], cfg: ModelConfig, bias: bool
) -> Iterator[tuple[str, Tensor]]:
    """(our name, float32 tensor) for every parameter of our GPT, read from their state dict.

    Yields in our parameter order; raises OpenAIFormatError (one line) for a missing tensor,
    a wrong shape, or a tensor left over (their loader would silently drop it).
    """
    D, V, F, L = cfg.d_model, cfg.vocab_size, cfg.d_mlp, cfg.n_layer
    used: set[str] = set()
    zeros = torch.zeros
    yield "embed.weight", _take(sd, "transformer.wte.weight", (V, D), used)
    wpe = _take(sd, "transformer.wpe.weight", (cfg.n_ctx, D), used)
    if cfg.positional == "learned":
        yield "pos_embed.weight", wpe
    for i in range(L):
        p, q = BLOCK.format(i), f"blocks.{i}."
        yield q + "attn.norm.weight", _take(sd, p + "ln_1.weight", (D,), used)
        qkv = _take(sd, p + "attn.c_attn.weight", (3 * D, D), used)
        qkv_b = _take(sd, p + "attn.c_attn.bias", (3 * D,), used) if bias else zeros(3 * D)
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            yield q + f"attn.{name}.weight", qkv[j * D:(j + 1) * D].clone()
            yield q + f"attn.{name}.bias", qkv_b[j * D:(j + 1) * D].clone()
        yield q + "attn.out_proj.weight", _take(sd, p + "attn.c_proj.weight", (D, D), used)
        yield q + "attn.out_proj.bias", (
            _take(sd, p + "attn.c_proj.bias", (D,), used) if bias else zeros(D))
        if cfg.attention_sink:
            yield q + "attn.sink", _take(sd, p + "attn.attn_imp.sink_logit", (cfg.n_heads,), used)
        if p + "attn.bias" in sd:  # the non-flash causal mask buffer: not a weight
            used.add(p + "attn.bias")
        yield q + "mlp.norm.weight", _take(sd, p + "ln_2.weight", (D,), used)
        yield q + "mlp.fc_in.weight", _take(sd, p + "mlp.c_fc.weight", (F, D), used)
        yield q + "mlp.fc_in.bias", _take(sd, p + "mlp.c_fc.bias", (F,), used) if bias else zeros(F)
        yield q + "mlp.fc_out.weight", _take(sd, p + "mlp.c_proj.weight", (D, F), used)
        yield q + "mlp.fc_out.bias", (
            _take(sd, p + "mlp.c_proj.bias", (D,), used) if bias else zeros(D))
    yield "final_norm.weight", _take(sd, "transformer.ln_f.weight", (D,), used)
    yield "unembed.weight", _take(sd, "lm_head.weight", (V, D), used)
    if cfg.bigram_table:
        yield "bigram", _take(sd, "bigram_table", (V, V), used)
    if "final_logits_bias" in sd:
        yield "logits_bias", _take(sd, "final_logits_bias", (V,), used)
    else:  # their loader fills in zeros too
        yield "logits_bias", zeros(V)
    extra = sorted(set(sd) - used)
    if extra:
        raise OpenAIFormatError(f"final_model.pt holds tensor {extra[0]} that the config has no "
                                f"place for ({len(extra)} such)")


def theirs_from_ours(state: dict[str, Tensor], cfg: ModelConfig, bias: bool,
                     tied: bool) -> dict[str, Tensor]:
    """Their state dict for our GPT state (float32, the names of the module docstring)."""
    D = cfg.d_model
    out: dict[str, Tensor] = {"transformer.wte.weight": state["embed.weight"]}
    out["transformer.wpe.weight"] = (
        state["pos_embed.weight"] if cfg.positional == "learned" else torch.zeros(cfg.n_ctx, D))
    for i in range(cfg.n_layer):
        p, q = BLOCK.format(i), f"blocks.{i}."
        out[p + "ln_1.weight"] = state[q + "attn.norm.weight"]
        proj = ("q_proj", "k_proj", "v_proj")
        out[p + "attn.c_attn.weight"] = torch.cat([state[q + f"attn.{n}.weight"] for n in proj])
        if bias:
            out[p + "attn.c_attn.bias"] = torch.cat([state[q + f"attn.{n}.bias"] for n in proj])
        out[p + "attn.c_proj.weight"] = state[q + "attn.out_proj.weight"]
        if bias:
            out[p + "attn.c_proj.bias"] = state[q + "attn.out_proj.bias"]
        if cfg.attention_sink:
            out[p + "attn.attn_imp.sink_logit"] = state[q + "attn.sink"]
        out[p + "ln_2.weight"] = state[q + "mlp.norm.weight"]
        out[p + "mlp.c_fc.weight"] = state[q + "mlp.fc_in.weight"]
        out[p + "mlp.c_proj.weight"] = state[q + "mlp.fc_out.weight"]
        if bias:
            out[p + "mlp.c_fc.bias"] = state[q + "mlp.fc_in.bias"]
            out[p + "mlp.c_proj.bias"] = state[q + "mlp.fc_out.bias"]
    out["transformer.ln_f.weight"] = state["final_norm.weight"]
    # Tied: one tensor under both names, as their model's state_dict() has it.
    out["lm_head.weight"] = out["transformer.wte.weight"] if tied else state["unembed.weight"]
    out["final_logits_bias"] = state["logits_bias"]
    if cfg.bigram_table:
        out["bigram_table"] = state["bigram"]
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def has_biases(state: dict[str, Tensor]) -> bool:
    """Whether any Linear bias of our state is nonzero (their `bias` flag must then be on)."""
    return any(bool(t.any()) for k, t in state.items()
               if k.endswith(".bias") and k.startswith("blocks."))
