"""The weight-sparse GPT of *Weight-sparse transformers have interpretable circuits* (§2).

Design choices, each from the paper:
- Decoder-only, pre-norm blocks with RMSNorm (zero keeps its meaning), untied embeddings.
- No positional embeddings by default (causal attention carries order); learned absolute
  positions are an option.
- Small heads (d_head 16), MLP width 4 x d_model, GELU.
- Attention sinks: a learnable per-head logit for an extra "attend to nothing" slot.
- A dense bigram table: row `logits += bigram[current token]`, plus a final logits bias, so
  the sparse weights need not store bigram statistics.
- AbsTopK at every node location: keep the k largest |x| per token, zero the rest.
- Every node location is addressable by name (`L.attn.q`, `L.mlp.post_act`, ...) and passes
  through `hooks[name]` when given, one mechanism for recording, ablation and steering. The
  residual stream is hookable the same way (`L.resid_pre`, `L.resid_mid`, `L.resid_post`,
  `final_resid`; all names in `hook_points`), e.g. for sparse autoencoders.

Weight sparsity is not in this file: the trainer projects the weights after each step
(`sparsecircuits.train.sparsity`), so a dense model is the same code. How the sparse matrices
and AbsTopK are computed is (`model.kernels`, `sparsecircuits.kernels`): every q/k/v/out, MLP
and unembedding matrix is a `SparseLinear`, which runs on its nonzeros when selected and is an
ordinary `nn.Linear` otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsecircuits.config import ModelConfig, abstopk_site_set
from sparsecircuits.kernels import SparseLinear, abstopk
from sparsecircuits.model.hooks import Hooks, apply_hook
from sparsecircuits.model.locations import ATTN_LOCATIONS, MLP_LOCATIONS
from sparsecircuits.model.roles import parameter_role

FINAL_RESID = "final_resid"
"""Hook point of the residual stream after the last block (before the final norm)."""


class RMSNorm(nn.Module):
    """y = x / rms(x) * weight."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))  # shape: [d]

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Site:
    """One node location: AbsTopK, then the caller's hook (if any) for this name."""

    def __init__(self, name: str, width: int, fraction: float, kernels: str = "dense",
                 rounding: str = "round", active: bool = True):
        self.name = name
        self.width = width
        # 'floor' is how OpenAI's circuit-sparsity models compute k (docs/openai.md); a site
        # outside `model.abstopk_sites` keeps every feature.
        kept = math.floor(fraction * width) if rounding == "floor" else round(fraction * width)
        self.k = max(1, kept) if active else width
        self.fast = kernels != "dense"  # the C++ AbsTopK keeps the same set as torch's

    def __call__(self, x: Tensor, hooks: Hooks | None) -> Tensor:
        x = abstopk(x, self.k, fast=self.fast)
        if hooks is not None and self.name in hooks:
            x = hooks[self.name](x)
        return x


def _site(cfg: ModelConfig, layer: int, part: str, loc: str, width: int) -> Site:
    """The Site `<layer>.<part>.<loc>` as the config sets AbsTopK there."""
    active = f"{part}.{loc}" in abstopk_site_set(cfg.abstopk_sites)
    return Site(f"{layer}.{part}.{loc}", width, cfg.abstopk_fraction, cfg.kernels,
                cfg.abstopk_rounding, active)


class Attention(nn.Module):
    """Causal multi-head attention with small heads and an optional sink slot per head."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.norm = RMSNorm(d, cfg.norm_eps)
        kern = cfg.kernels
        self.q_proj = SparseLinear(d, d, kernels=kern)  # weight: [n_heads * d_head, d_model]
        self.k_proj = SparseLinear(d, d, kernels=kern)
        self.v_proj = SparseLinear(d, d, kernels=kern)
        self.out_proj = SparseLinear(d, d, kernels=kern)  # weight: [d_model, n_heads * d_head]
        self.sink = nn.Parameter(torch.zeros(self.n_heads)) if cfg.attention_sink else None
        self.sites = {loc: _site(cfg, layer, "attn", loc, d) for loc in ATTN_LOCATIONS}

    def forward(self, x: Tensor, hooks: Hooks | None) -> Tensor:
        B, T, _ = x.shape
        s = self.sites
        a = s["act_in"](self.norm(x), hooks)  # [B, T, d_model]
        q = s["q"](self.q_proj(a), hooks)  # [B, T, n_heads * d_head]
        k = s["k"](self.k_proj(a), hooks)
        v = s["v"](self.v_proj(a), hooks)
        q, k, v = (t.view(B, T, self.n_heads, self.d_head).transpose(1, 2) for t in (q, k, v))
        if self.sink is None:
            heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, d_head]
        else:
            # The sink is one extra key whose logit is the learned per-head constant and whose
            # value is zero: attending to it lets a head write nothing. A zero key gives score
            # 0, and the additive mask supplies the sink logit (and the causal -inf).
            H, dh = self.n_heads, self.d_head
            causal = torch.full((T, T), float("-inf"), device=x.device).triu(1)  # [T, T]
            mask = torch.cat([causal.expand(H, T, T), self.sink.view(H, 1, 1).expand(H, T, 1)], -1)
            zero = q.new_zeros(B, H, 1, dh)
            k, v = torch.cat([k, zero], dim=2), torch.cat([v, zero], dim=2)  # [B, H, T + 1, dh]
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, T, d_head]
        heads = heads.transpose(1, 2).reshape(B, T, -1)  # [B, T, n_heads * d_head]
        return s["resid_delta"](self.out_proj(heads), hooks)


class MLP(nn.Module):
    """Two-layer GELU MLP; `post_act` (neurons) is the node location between the layers."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        d = cfg.d_model
        self.norm = RMSNorm(d, cfg.norm_eps)
        kern = cfg.kernels
        self.fc_in = SparseLinear(d, cfg.d_mlp, kernels=kern)  # weight: [d_mlp, d_model]
        self.fc_out = SparseLinear(cfg.d_mlp, d, kernels=kern)  # weight: [d_model, d_mlp]
        width = {"act_in": d, "post_act": cfg.d_mlp, "resid_delta": d}
        self.sites = {loc: _site(cfg, layer, "mlp", loc, width[loc]) for loc in MLP_LOCATIONS}
        self.activation = F.relu if cfg.mlp_activation == "relu" else F.gelu

    def forward(self, x: Tensor, hooks: Hooks | None) -> Tensor:
        s = self.sites
        a = s["act_in"](self.norm(x), hooks)  # [B, T, d_model]
        h = s["post_act"](self.activation(self.fc_in(a)), hooks)  # [B, T, d_mlp]
        return s["resid_delta"](self.fc_out(h), hooks)  # [B, T, d_model]


class Block(nn.Module):
    """x -> x + attn(x) -> + mlp(.); the residual stream is hookable at `L.resid_pre`,
    `L.resid_mid` (after attention) and `L.resid_post`: not nodes, and no AbsTopK there."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg, layer)
        self.resid = tuple(f"{layer}.resid_{p}" for p in ("pre", "mid", "post"))

    def hook_points(self) -> list[str]:
        """This block's hook names in forward order."""
        pre, mid, post = self.resid
        attn = [site.name for site in self.attn.sites.values()]
        mlp = [site.name for site in self.mlp.sites.values()]
        return [pre, *attn, mid, *mlp, post]

    def forward(self, x: Tensor, hooks: Hooks | None) -> Tensor:
        pre, mid, post = self.resid
        x = apply_hook(hooks, pre, x)  # [B, T, d_model]
        x = apply_hook(hooks, mid, x + self.attn(x, hooks))
        return apply_hook(hooks, post, x + self.mlp(x, hooks))


class GPT(nn.Module):
    """logits = unembed(norm(blocks(embed(tokens)))) + bigram[tokens] + logits_bias."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)  # weight: [vocab, d_model]
        self.pos_embed = (
            nn.Embedding(cfg.n_ctx, cfg.d_model) if cfg.positional == "learned" else None
        )
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layer))
        self.final_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.unembed = SparseLinear(cfg.d_model, cfg.vocab_size, bias=False,
                                    kernels=cfg.kernels)  # weight: [vocab, d_model]
        self.bigram = (
            nn.Parameter(torch.zeros(cfg.vocab_size, cfg.vocab_size)) if cfg.bigram_table else None
        )
        self.logits_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.location_width = {
            site.name: site.width
            for block in self.blocks
            for part in (block.attn, block.mlp)
            for site in part.sites.values()
        }
        self.locations = list(self.location_width)  # node locations in forward order
        # Every name `hooks` may use, in forward order: node locations and residual points.
        self.hook_points = [name for block in self.blocks for name in block.hook_points()]
        self.hook_points.append(FINAL_RESID)
        self.hook_point_width = {
            name: self.location_width.get(name, cfg.d_model) for name in self.hook_points
        }
        self._init_weights()

    def _init_weights(self) -> None:
        """Each parameter as its role says (`model.roles`), in parameter order."""
        std = 0.02
        for name, p in self.named_parameters():
            init = parameter_role(name).init
            if init == "zeros":
                nn.init.zeros_(p)
            elif init == "normal":
                nn.init.normal_(p, std=std)
            elif init == "normal_residual":  # writes to the residual stream: GPT-2's scaling
                nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layer))
            # "as_built": the ones / zeros the constructor made

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """The residual stream before the first block: tokens [B, T] -> [B, T, d_model]."""
        T = tokens.shape[1]
        if T > self.cfg.n_ctx:
            raise ValueError(f"sequence of {T} tokens is longer than n_ctx={self.cfg.n_ctx}")
        x = self.embed(tokens)
        if self.pos_embed is not None:
            x = x + self.pos_embed(torch.arange(T, device=tokens.device))
        return x

    def forward(
        self, tokens: Tensor, hooks: Hooks | None = None, read_positions: Tensor | None = None,
        from_layer: int = 0, resid: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """tokens: [batch, seq] int64 -> logits [batch, seq, vocab].

        With `read_positions` ([batch] int64), only the logits at one position per row are
        computed: [batch, vocab]. Task examples are read this way; the unembedding and bigram
        lookup cost as much as a block at vocab 2048, so skipping unread positions matters.

        With `resid` ([batch, seq, d_model], the residual stream entering block `from_layer`,
        e.g. recorded at its `resid_pre` hook point), the blocks before it are not run: many
        edits of one layer (the report's node ablations) share the work below it.
        """
        if (resid is None) != (from_layer == 0):
            raise ValueError("from_layer > 0 needs the residual stream entering it, and only it")
        x = self.embed_tokens(tokens) if resid is None else resid  # [B, T, d_model]
        for block in self.blocks[from_layer:]:
            x = block(x, hooks)
        x = apply_hook(hooks, FINAL_RESID, x)  # [B, T, d_model]
        if read_positions is not None:
            rows = torch.arange(tokens.shape[0], device=tokens.device)
            read = read_positions.to(tokens.device)
            x, tokens = x[rows, read], tokens[rows, read]  # [B, d_model], [B]
        logits = self.unembed(self.final_norm(x)) + self.logits_bias  # [..., vocab]
        if self.bigram is not None:
            # F.embedding, not `self.bigram[tokens]`: the indexing's backward (index_put_ with
            # accumulate) adds repeated tokens' rows with parallel float atomics on CPU, in a
            # different order each run, so training was not bit-reproducible with 2+ threads.
            # Embedding's backward gives each row to one thread, summed in token order.
            logits = logits + F.embedding(tokens, self.bigram)
        return logits

    def residual_stream(self, tokens: Tensor) -> list[Tensor]:
        """The residual stream before each block and after the last: n_layer + 1 x [B, T, d]."""
        streams = [self.embed_tokens(tokens)]
        for block in self.blocks:
            streams.append(block(streams[-1], None))
        return streams

    @torch.no_grad()
    def generate(
        self,
        tokens: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        hooks: Hooks | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample continuations of tokens [batch, seq]; temperature 0 means greedy."""
        for _ in range(max_new_tokens):
            context = tokens[:, -self.cfg.n_ctx :]
            logits = self(context, hooks)[:, -1, :]  # [B, vocab]
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)
            tokens = torch.cat([tokens, nxt], dim=1)
        return tokens
