"""SAEBench's core metrics as running sums over batches, with their textbook formulas.

Everything is accumulated in float64, so the result does not depend on the batch size.
Over N tokens x_i [d_in], reconstructions x_hat_i and latents z_i [d_sae] (docs/sae.md):

- L0 = (1/N) sum_i #{j : z_ij != 0}
- explained variance = 1 - sum_i ||x_i - x_hat_i||^2 / sum_i ||x_i - mean(x)||^2, the variance
  around the mean. (SAEBench 0.6 and SAELens <= 6.18 compute it around zero, dividing by
  sum_i ||x_i||^2, which overstates it whenever the activations have a mean.) The
  denominator is computed as sum ||x||^2 - ||sum x||^2 / N.
- MSE = (1 / (N d_in)) sum_i ||x_i - x_hat_i||^2 (mean over tokens and dimensions)
- cosine similarity = (1/N) sum_i <x_i, x_hat_i> / (||x_i|| ||x_hat_i||)
- CE loss recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean): CE of the next token with
  the reconstruction spliced in, between zero-ablating the location (0) and the clean model (1)
- KL score = (KL_zero - KL_sae) / KL_zero, KL(P_clean || P_new) summed over the vocabulary and
  averaged over tokens
- dead latents: never nonzero over the N tokens; dense latents: nonzero on > 10% of them
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DENSE_THRESHOLD = 0.1
"""A latent active on more than this fraction of tokens is dense (SAEBench)."""


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else float("nan")


class ReconstructionSums:
    """Running sums for L0, explained variance, MSE, cosine similarity and latent density."""

    def __init__(self, d_in: int, d_sae: int):
        self.n = 0
        self.d_in = d_in
        self.sum_x = torch.zeros(d_in, dtype=torch.float64)  # [d_in]
        self.sum_sq_x = 0.0
        self.sum_sq_err = 0.0
        self.sum_cos = 0.0
        self.sum_l0 = 0.0
        self.fired = torch.zeros(d_sae, dtype=torch.long)  # tokens each latent was nonzero on

    @torch.no_grad()
    def add(self, x: Tensor, x_hat: Tensor, z: Tensor) -> None:
        """x, x_hat [..., d_in], z [..., d_sae] of the same tokens."""
        x = x.reshape(-1, self.d_in).double()
        x_hat = x_hat.reshape(-1, self.d_in).double()
        z = z.reshape(len(x), -1)
        self.n += len(x)
        self.sum_x += x.sum(0).cpu()
        self.sum_sq_x += float(x.pow(2).sum())
        self.sum_sq_err += float((x - x_hat).pow(2).sum())
        self.sum_cos += float(F.cosine_similarity(x, x_hat, dim=-1, eps=1e-12).sum())
        active = z != 0
        self.sum_l0 += float(active.sum())
        self.fired += active.sum(0).cpu()

    def total_variance(self) -> float:
        """sum_i ||x_i - mean(x)||^2."""
        return self.sum_sq_x - float(self.sum_x.pow(2).sum()) / max(self.n, 1)

    def metrics(self, dense_threshold: float = DENSE_THRESHOLD) -> dict[str, float | int]:
        density = self.fired.double() / max(self.n, 1)
        return {
            "tokens": self.n,
            "l0": _ratio(self.sum_l0, self.n),
            "explained_variance": 1.0 - _ratio(self.sum_sq_err, self.total_variance()),
            "mse": _ratio(self.sum_sq_err, self.n * self.d_in),
            "cosine_similarity": _ratio(self.sum_cos, self.n),
            "dead_latents": int((self.fired == 0).sum()),
            "dense_latents": int((density > dense_threshold).sum()),
            "d_sae": len(self.fired),
        }

    def density(self) -> Tensor:
        """Fraction of tokens each latent is active on [d_sae] (float64)."""
        return self.fired.double() / max(self.n, 1)


def token_ce(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross entropy per token: logits [..., vocab], targets [...] -> [...] (float64)."""
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), targets.reshape(-1),
                           reduction="none")  # fmt: skip
    return flat.view(targets.shape)


def token_kl(clean_logits: Tensor, new_logits: Tensor) -> Tensor:
    """KL(P_clean || P_new) per token, summed over the vocabulary: [..., vocab] -> [...]."""
    p_log = clean_logits.double().log_softmax(-1)
    q_log = new_logits.double().log_softmax(-1)
    return (p_log.exp() * (p_log - q_log)).sum(-1)


class SplicingSums:
    """Running sums of the model's CE and KL with the location clean, reconstructed, zeroed."""

    def __init__(self):
        self.n = 0
        self.ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
        self.kl = {"sae": 0.0, "zero": 0.0}

    @torch.no_grad()
    def add(self, targets: Tensor, clean: Tensor, sae: Tensor, zero: Tensor) -> None:
        """targets [...] and the three runs' logits [..., vocab] at the same positions."""
        self.n += targets.numel()
        for name, logits in (("clean", clean), ("sae", sae), ("zero", zero)):
            self.ce[name] += float(token_ce(logits, targets).sum())
        self.kl["sae"] += float(token_kl(clean, sae).sum())
        self.kl["zero"] += float(token_kl(clean, zero).sum())

    def metrics(self) -> dict[str, float]:
        ce = {k: _ratio(v, self.n) for k, v in self.ce.items()}
        kl = {k: _ratio(v, self.n) for k, v in self.kl.items()}
        return {
            "ce_loss_clean": ce["clean"],
            "ce_loss_with_sae": ce["sae"],
            "ce_loss_with_ablation": ce["zero"],
            "ce_loss_recovered": ce_loss_recovered(ce["clean"], ce["sae"], ce["zero"]),
            "kl_div_with_sae": kl["sae"],
            "kl_div_with_ablation": kl["zero"],
            "kl_score": kl_score(kl["sae"], kl["zero"]),
        }


def ce_loss_recovered(ce_clean: float, ce_sae: float, ce_zero: float) -> float:
    """(CE_zero - CE_sae) / (CE_zero - CE_clean): 1 = the SAE costs nothing, 0 = as bad as zero."""
    return _ratio(ce_zero - ce_sae, ce_zero - ce_clean)


def kl_score(kl_sae: float, kl_zero: float) -> float:
    """(KL_zero - KL_sae) / KL_zero."""
    return _ratio(kl_zero - kl_sae, kl_zero)
