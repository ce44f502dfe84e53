"""Training a TopK SAE on activations streamed from a checkpoint (docs/sae.md).

Per step, on a shuffled batch x [batch, d_in] from `ActivationBuffer`:

    loss = FVU + aux_coef * AuxK
    FVU  = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2            (normalised MSE)
    AuxK = sum ||e - e_hat||^2 / sum ||x - mean(x)||^2,  e = x - x_hat (no gradient),
           e_hat = ReLU(TopK_aux(pre restricted to dead latents)) @ W_dec

(Gao et al. 2024 §2.4 and appendix B.1, normalised as in EleutherAI's sparsify.) A latent is
dead when it has not fired for `dead_tokens` training tokens. Adam (betas 0.9/0.999, eps
6.25e-10 as Gao et al.), linear warmup, global gradient-norm clipping; before each step the
decoder gradient's component along each row is removed, after it every row is rescaled to
unit norm.

Batches depend only on (seed, step) and the snapshot holds the SAE, Adam's moments and the
dead-latent counters, so `--resume` continues exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from sparsecircuits.checkpoint import Loaded
from sparsecircuits.circuits.ablation import pretraining_shard
from sparsecircuits.errors import CheckpointError, SAEError
from sparsecircuits.fileformat import check_writable_dir
from sparsecircuits.sae import sae_file
from sparsecircuits.sae.activations import ActivationBuffer, check_location
from sparsecircuits.sae.config import SAETrainConfig
from sparsecircuits.sae.model import TopKSAE, geometric_median, topk_relu
from sparsecircuits.train.trainer import optimizer_tensors, restore_optimizer

B_DEC_SAMPLE = 16384
"""Activations of the first buffer used to initialise b_dec (mean / geometric median)."""
RESUMABLE_CHANGES = ("tokens", "checkpoint_every")
"""Options a resumed run may change; any other change would make it a different run."""


@dataclass
class StepStats:
    """What one training step measured (shown on the progress bar, saved with the SAE)."""

    loss: float
    """FVU + aux_coef * AuxK."""
    fvu: float
    """Fraction of variance unexplained on this batch."""
    aux: float
    """The AuxK loss (0 when no latent is dead)."""
    l0: float
    """Mean active latents per token."""
    dead_fraction: float
    """Fraction of latents that have not fired for `dead_tokens` tokens."""

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def auxk_loss(sae: TopKSAE, pre: Tensor, err: Tensor, dead: Tensor, aux_k: int,
              total_var: Tensor) -> Tensor:  # fmt: skip
    """AuxK: how well the top `aux_k` dead latents reconstruct the error e = x - x_hat.

    pre [batch, d_sae], err [batch, d_in] (detached), dead [d_sae] bool. Scaled down by
    n_dead / aux_k when fewer latents are dead than aux_k (as sparsify does).
    """
    n_dead = int(dead.sum())
    if n_dead == 0:
        return pre.new_zeros(())
    k = min(aux_k, n_dead)
    z = topk_relu(pre.masked_fill(~dead, float("-inf")), k)  # [batch, d_sae]
    e_hat = z @ sae.W_dec  # [batch, d_in]; no b_dec: the error has none
    return min(n_dead / aux_k, 1.0) * (err - e_hat).pow(2).sum() / total_var


class SAETrainer:
    """One SAE, its optimiser and its dead-latent counters."""

    def __init__(self, cfg: SAETrainConfig, d_in: int, device: torch.device | str):
        self.cfg = cfg
        d_sae = cfg.expansion * d_in
        self.sae = TopKSAE(d_in, d_sae, cfg.k, batch_topk=cfg.batch_topk).to(device)
        self.lr = cfg.learning_rate(d_sae)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=self.lr, betas=(0.9, 0.999),
                                    eps=6.25e-10)  # fmt: skip
        self.aux_k = cfg.aux_k or max(1, d_in // 2)
        # Tokens since each latent last fired: [d_sae] int64.
        self.fired_ago = torch.zeros(d_sae, dtype=torch.long, device=device)

    @torch.no_grad()
    def initialize(self, sample: Tensor) -> None:
        """Random unit decoder, encoder = its transpose, b_dec from `sample` [n, d_in]."""
        self.sae.initialize(torch.Generator().manual_seed(self.cfg.seed))
        if self.cfg.b_dec_init == "mean":
            self.sae.b_dec.copy_(sample.double().mean(0).float())
        elif self.cfg.b_dec_init == "geometric_median":
            self.sae.b_dec.copy_(geometric_median(sample.float()))

    def step(self, x: Tensor, step: int) -> StepStats:
        """One optimiser step on x [batch, d_in]."""
        cfg, sae = self.cfg, self.sae
        lr = self.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else self.lr
        for group in self.opt.param_groups:
            group["lr"] = lr
        pre = sae.pre_acts(x)  # [batch, d_sae]
        z = sae.activation(pre, training=True)
        err = x - sae.decode(z)  # [batch, d_in]
        total_var = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        fvu = err.pow(2).sum() / total_var
        dead = self.fired_ago >= cfg.dead_tokens  # [d_sae]
        aux = auxk_loss(sae, pre, err.detach(), dead, self.aux_k, total_var)
        loss = fvu + cfg.aux_coef * aux
        if not math.isfinite(float(loss.detach())):
            raise SAEError(f"the SAE loss stopped being a finite number at step {step}; "
                           "try a lower --lr")  # fmt: skip
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
        self.opt.step()
        sae.normalize_decoder()
        with torch.no_grad():
            active = z > 0  # [batch, d_sae]
            self.fired_ago += len(x)
            self.fired_ago[active.any(0)] = 0
            if sae.batch_topk and bool(active.any()):
                # BatchTopK's inference threshold: EMA of the smallest kept activation.
                smallest = z[active].min()
                sae.threshold.mul_(1 - cfg.threshold_lr).add_(cfg.threshold_lr * smallest)
        return StepStats(
            loss=float(loss.detach()),
            fvu=float(fvu.detach()),
            aux=float(aux.detach()),
            l0=float(active.sum(-1).float().mean()),
            dead_fraction=float(dead.float().mean()),
        )

    def snapshot(self) -> dict[str, Tensor]:
        """Everything `--resume` needs, as tensors."""
        out = {f"sae.{name}": t for name, t in self.sae.tensors().items()}
        out.update(optimizer_tensors(self.sae, self.opt))
        out["fired_ago"] = self.fired_ago.cpu().reshape(-1)
        return out

    def restore(self, doc: dict[str, Any], tensors: dict[str, Tensor], where: Path) -> None:
        """Put a snapshot back (every tensor checked first)."""
        saved = sae_file.build_sae(doc, tensors, where, prefix="sae.")
        fired = tensors.get("fired_ago")
        if fired is None or fired.dtype != torch.long or fired.shape != (self.sae.d_sae,):
            raise SAEError(f"{where}: fired_ago is missing or not int64 [{self.sae.d_sae}]")
        if bool((fired < 0).any()):
            raise SAEError(f"{where}: fired_ago has negative entries")
        optimizer = {k: t for k, t in tensors.items() if not k.startswith("sae.")
                     and k != "fired_ago"}  # fmt: skip
        try:
            restore_optimizer(self.sae, self.opt, optimizer, where)
        except CheckpointError as exc:
            raise SAEError(str(exc)) from None
        with torch.no_grad():
            for name, t in saved.tensors().items():
                getattr(self.sae, name).copy_(t)
        self.fired_ago.copy_(fired)


def _resumed_config(saved: dict[str, Any], cfg: SAETrainConfig, where: Path) -> SAETrainConfig:
    """The snapshot's config with the changes a resume may make; SAEError for any other."""
    before = SAETrainConfig.from_dict(saved.get("train"))
    for key, value in cfg.to_dict().items():
        if key not in RESUMABLE_CHANGES and value != getattr(before, key):
            raise SAEError(f"{where} was trained with {key}={getattr(before, key)!r}; a resumed "
                           f"run cannot change it to {value!r}")  # fmt: skip
    return before.replace(**{k: getattr(cfg, k) for k in RESUMABLE_CHANGES})


def train_sae(
    loaded: Loaded,
    cfg: SAETrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train (or resume) an SAE on `cfg.location` of `loaded`; write it to `out_dir`."""
    out_dir = Path(out_dir)
    d_in = check_location(loaded.model, cfg.location)
    cfg.check_for(d_in)
    check_writable_dir(out_dir, "--out", SAEError)
    if not resume and (out_dir / sae_file.SAE_FILE).exists():
        raise SAEError(f"{out_dir} already holds an SAE; pass --resume or choose another --out")
    device = next(loaded.model.parameters()).device
    trainer = SAETrainer(cfg, d_in, device)
    start = 0
    if resume:
        doc, tensors = sae_file.load_trainer(out_dir)
        where = out_dir / sae_file.TRAINER_FILE
        if doc["model"]["content_hash"] != loaded.content_hash or doc["location"] != cfg.location:
            raise SAEError(
                f"{where} belongs to an SAE of another model or location "
                f"({doc['location']}); resume it with that checkpoint and --at"
            )
        cfg = _resumed_config(doc, cfg, where)
        trainer.cfg = cfg
        trainer.restore(doc, tensors, where)
        start = doc["step"]

    steps = max(1, cfg.tokens // cfg.batch_size)
    buffer = ActivationBuffer(loaded.model, pretraining_shard(loaded, "train"), cfg.location,
                              cfg.batch_size, cfg.buffer_windows, cfg.seed)  # fmt: skip
    if not resume:
        trainer.initialize(buffer.refill(0)[:B_DEC_SAMPLE])
    stats: StepStats | None = None

    def save(step: int) -> None:
        extra = {"train": cfg.to_dict(), "step": step, "trained_tokens": step * cfg.batch_size,
                 "training_metrics": stats.to_dict() if stats else None}  # fmt: skip
        doc = sae_file.describe(sae_file.shape_of(trainer.sae), cfg.location, loaded, extra)
        sae_file.save_trainer(out_dir, trainer.snapshot(), doc)
        sae_file.save_sae(out_dir, trainer.sae, doc)

    bar = tqdm(total=steps, initial=start, disable=not progress, dynamic_ncols=True, desc="sae")
    try:
        for step, x in buffer.batches(start, steps):
            trainer.sae.train()
            stats = trainer.step(x.float(), step)
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss:.4f}", fvu=f"{stats.fvu:.4f}",
                            l0=f"{stats.l0:.1f}", dead=f"{stats.dead_fraction:.3f}")  # fmt: skip
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps:
                save(step + 1)
    finally:
        bar.close()
    save(max(start, steps))
    return out_dir / sae_file.SAE_FILE
