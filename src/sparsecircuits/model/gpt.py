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
  through `hooks[name]` when given, one mechanism for recording, ablation and steering.

Weight sparsity is not in this file: the trainer projects the weights after each step
(`sparsecircuits.train.sparsity`), so a dense model is the same code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsecircuits.config import ModelConfig
from sparsecircuits.model.hooks import Hooks

ATTN_LOCATIONS = ("act_in", "q", "k", "v", "resid_delta")
MLP_LOCATIONS = ("act_in", "post_act", "resid_delta")


def abstopk(x: Tensor, k: int) -> Tensor:
    """Keep the k largest-magnitude features of each row of x ([..., d]); zero the others.

    Implemented as a per-row threshold (the k-th largest |x|) and a multiply, which is cheaper
    than a full sort or a scatter and gives the gradient mask for free. On CPU an unsorted
    `topk` finds the threshold fastest (measured against `kthvalue` and a bisection search,
    see benchmarks/). Rows with ties at the threshold may keep more than k features; ties
    among nonzero floats do not occur in practice, and extra exact zeros change nothing.
    """
    if k >= x.shape[-1]:
        return x
    magnitude = x.detach().abs()
    threshold = magnitude.topk(k, dim=-1, sorted=False).values.amin(-1, keepdim=True)  # [..., 1]
    return x * (magnitude >= threshold)


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

    def __init__(self, name: str, width: int, fraction: float):
        self.name = name
        self.width = width
        self.k = max(1, round(fraction * width))

    def __call__(self, x: Tensor, hooks: Hooks | None) -> Tensor:
        x = abstopk(x, self.k)
        if hooks is not None and self.name in hooks:
            x = hooks[self.name](x)
        return x


class Attention(nn.Module):
    """Causal multi-head attention with small heads and an optional sink slot per head."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        d, f = cfg.d_model, cfg.abstopk_fraction
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.norm = RMSNorm(d, cfg.norm_eps)
        self.q_proj = nn.Linear(d, d)  # weight: [n_heads * d_head, d_model]
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)  # weight: [d_model, n_heads * d_head]
        self.sink = nn.Parameter(torch.zeros(self.n_heads)) if cfg.attention_sink else None
        self.sites = {loc: Site(f"{layer}.attn.{loc}", d, f) for loc in ATTN_LOCATIONS}

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
        d, f = cfg.d_model, cfg.abstopk_fraction
        self.norm = RMSNorm(d, cfg.norm_eps)
        self.fc_in = nn.Linear(d, cfg.d_mlp)  # weight: [d_mlp, d_model]
        self.fc_out = nn.Linear(cfg.d_mlp, d)  # weight: [d_model, d_mlp]
        self.sites = {
            "act_in": Site(f"{layer}.mlp.act_in", d, f),
            "post_act": Site(f"{layer}.mlp.post_act", cfg.d_mlp, f),
            "resid_delta": Site(f"{layer}.mlp.resid_delta", d, f),
        }

    def forward(self, x: Tensor, hooks: Hooks | None) -> Tensor:
        s = self.sites
        a = s["act_in"](self.norm(x), hooks)  # [B, T, d_model]
        h = s["post_act"](F.gelu(self.fc_in(a)), hooks)  # [B, T, d_mlp]
        return s["resid_delta"](self.fc_out(h), hooks)  # [B, T, d_model]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg, layer)

    def forward(self, x: Tensor, hooks: Hooks | None) -> Tensor:
        x = x + self.attn(x, hooks)
        return x + self.mlp(x, hooks)


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
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # [vocab, d_model]
        self.bigram = (
            nn.Parameter(torch.zeros(cfg.vocab_size, cfg.vocab_size)) if cfg.bigram_table else None
        )
        self.logits_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.locations = [
            site.name
            for block in self.blocks
            for part in (block.attn, block.mlp)
            for site in part.sites.values()
        ]
        self.location_width = {
            site.name: site.width
            for block in self.blocks
            for part in (block.attn, block.mlp)
            for site in part.sites.values()
        }
        self._init_weights()

    def _init_weights(self) -> None:
        std = 0.02
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or name in ("bigram", "logits_bias") or "sink" in name:
                continue  # ones / zeros as constructed
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif name.endswith("out_proj.weight") or name.endswith("fc_out.weight"):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layer))
            else:
                nn.init.normal_(p, std=std)

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
        self, tokens: Tensor, hooks: Hooks | None = None, read_positions: Tensor | None = None
    ) -> Tensor:
        """tokens: [batch, seq] int64 -> logits [batch, seq, vocab].

        With `read_positions` ([batch] int64), only the logits at one position per row are
        computed: [batch, vocab]. Task examples are read this way; the unembedding and bigram
        lookup cost as much as a block at vocab 2048, so skipping unread positions matters.
        """
        x = self.embed_tokens(tokens)  # [B, T, d_model]
        for block in self.blocks:
            x = block(x, hooks)
        if read_positions is not None:
            rows = torch.arange(tokens.shape[0], device=tokens.device)
            read = read_positions.to(tokens.device)
            x, tokens = x[rows, read], tokens[rows, read]  # [B, d_model], [B]
        logits = self.unembed(self.final_norm(x)) + self.logits_bias  # [..., vocab]
        if self.bigram is not None:
            logits = logits + self.bigram[tokens]
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
