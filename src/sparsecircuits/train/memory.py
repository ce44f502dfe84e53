"""How much memory a training run needs, estimated before any work, and the check against
what the machine has.

The estimate is deliberately a slight underestimate (the peak resident memory of real CPU
training steps, measured over nine shapes varying n_ctx, batch, width, vocab, depth, sink and
bigram, was 7-35% higher), so a run is refused only when it clearly cannot fit.
Its terms, in float32 bytes:
- parameters x 4: weights, gradients and AdamW's two moments (the bigram table is a
  vocab x vocab parameter, so it counts here);
- logits [batch, n_ctx, vocab] x 4: the logits, plus bias, plus bigram row, cross entropy;
- per layer, saved for backward: the vector activations [batch, n_ctx, 12 d_model + 3 d_mlp]
  and, with an attention sink (which needs an explicit mask, so attention cannot run fused),
  the attention probabilities [batch, heads, n_ctx, n_ctx + 1];
- one layer's transient attention: scores, the [heads, n_ctx, n_ctx + 1] mask and the causal
  [n_ctx, n_ctx] mask.

`SPARSECIRCUITS_MEMORY_CHECK=0` skips the check (for a machine whose free memory is misreported).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sparsecircuits.config import ModelConfig
from sparsecircuits.errors import ConfigError

FLOAT_BYTES = 4
SKIP_ENV = "SPARSECIRCUITS_MEMORY_CHECK"
"""Set to 0 to train without the memory check."""


def parameter_count(cfg: ModelConfig) -> int:
    """Number of parameters of `GPT(cfg)`, computed without building it."""
    d, v, h = cfg.d_model, cfg.vocab_size, cfg.n_heads
    attn = d + 4 * (d * d + d) + (h if cfg.attention_sink else 0)  # norm, q/k/v/out, sink
    mlp = d + (d * cfg.d_mlp + cfg.d_mlp) + (cfg.d_mlp * d + d)  # norm, fc_in, fc_out
    total = v * d + cfg.n_layer * (attn + mlp) + d + d * v + v  # embed, blocks, norm, unembed, bias
    if cfg.positional == "learned":
        total += cfg.n_ctx * d
    if cfg.bigram_table:
        total += v * v
    return total


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training step needs, by what needs them."""

    parameters: int
    """Weights, gradients and AdamW state."""
    logits: int
    """Logits and the loss's copies of them."""
    activations: int
    """Activations saved for backward, all layers (attention probabilities included)."""
    attention_transient: int
    """One layer's attention scores and masks while they are computed."""

    @property
    def total(self) -> int:
        return self.parameters + self.logits + self.activations + self.attention_transient

    def largest(self) -> str:
        parts = {"parameters and optimizer state": self.parameters, "logits": self.logits,
                 "activations": self.activations, "attention scores": self.attention_transient}
        return max(parts, key=lambda k: parts[k])


def estimate_training_memory(cfg: ModelConfig, batch: int) -> MemoryEstimate:
    """Bytes one process needs to train `cfg` on `batch` sequences of n_ctx tokens."""
    t, d, h = cfg.n_ctx, cfg.d_model, cfg.n_heads
    scores = batch * h * t * (t + 1) if cfg.attention_sink else 0  # [batch, heads, T, T + 1]
    masks = (h * t * (t + 1) + t * t) if cfg.attention_sink else 0
    vectors = batch * t * (12 * d + 3 * cfg.d_mlp)  # [batch, T, ...] per layer
    return MemoryEstimate(
        parameters=4 * parameter_count(cfg) * FLOAT_BYTES,
        logits=4 * batch * t * cfg.vocab_size * FLOAT_BYTES,
        activations=cfg.n_layer * (vectors + scores) * FLOAT_BYTES,
        attention_transient=(scores + masks) * FLOAT_BYTES,
    )


def available_memory() -> int | None:
    """Bytes this process can still allocate on the CPU: MemAvailable, lowered by a cgroup
    (container) limit if there is one; None when the system does not say."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    cgroup = _cgroup_available(Path("/sys/fs/cgroup"))
    if cgroup is not None:
        found.append(cgroup)
    return min(found) if found else None


def _cgroup_available(root: Path) -> int | None:
    """A cgroup v2 limit minus what the group uses, not counting page cache it can drop."""
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((root / "memory.current").read_text())
        for line in (root / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "inactive_file":
                used -= int(value)
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_training_memory(cfg: ModelConfig, batch: int, processes: int,
                          available: int | None, where: str = "memory") -> None:
    """ConfigError when `processes` training processes of `batch` sequences each clearly do
    not fit in `available` bytes (None: unknown, nothing is checked)."""
    if available is None or os.environ.get(SKIP_ENV, "1") == "0":
        return
    need = estimate_training_memory(cfg, batch)
    total = need.total * processes
    if total > available:
        raise ConfigError(
            f"training needs about {_gib(total)} of {where} (mostly {need.largest()}: "
            f"model.n_ctx {cfg.n_ctx}, train.batch_size {batch * processes}), but "
            f"{_gib(available)} is available; lower model.n_ctx, train.batch_size or the model "
            f"size (or set {SKIP_ENV}=0 to try anyway)"
        )


def check_run_memory(cfg: ModelConfig, batch_size: int, world_size: int, device) -> None:
    """The check for a run about to train on `device` (a torch.device) with `world_size`
    processes sharing a global batch: GPU memory per device, or CPU memory shared by the
    processes on this machine."""
    local = batch_size // world_size
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        check_training_memory(cfg, local, 1, free, f"GPU memory on {device}")
    else:
        on_this_machine = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        check_training_memory(cfg, local, on_this_machine, available_memory())
