"""The TopK sparse autoencoder of Gao et al. 2024, *Scaling and evaluating sparse autoencoders*.

The math (docs/sae.md), with x one activation vector [d_in]:

    pre   = (x - b_dec) @ W_enc + b_enc                  # [d_sae]
    z     = ReLU(TopK_k(pre))                            # k largest pre kept, the rest 0
    x_hat = z @ W_dec + b_dec                            # [d_in]

Shapes follow SAELens so that its files map tensor for tensor: `W_enc` [d_in, d_sae],
`W_dec` [d_sae, d_in] (row i = latent i's decoder direction, kept at unit norm), `b_enc`
[d_sae], `b_dec` [d_in]. With `threshold` set (a BatchTopK SAE after training), the activation
is instead a JumpReLU with one global threshold: z = pre * (pre > threshold), which is what
BatchTopK's training-time selection converges to (Bussmann et al. 2024).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

TENSOR_NAMES = ("W_enc", "W_dec", "b_enc", "b_dec")
"""The four parameters every SAE file holds (plus `threshold` for a BatchTopK SAE)."""


def topk_relu(pre: Tensor, k: int) -> Tensor:
    """ReLU(TopK_k(pre)) per row: pre [..., d_sae] -> same shape, <= k nonzeros per row."""
    values, indices = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, indices, values.relu())


def batch_topk_relu(pre: Tensor, k: int) -> Tensor:
    """BatchTopK: keep the k * n_rows largest positive values of the whole batch [n, d_sae]."""
    flat = pre.relu().flatten()
    values, indices = flat.topk(min(k * pre.shape[0], flat.numel()), sorted=False)
    return torch.zeros_like(flat).scatter(-1, indices, values).view_as(pre)


class TopKSAE(nn.Module):
    """z = ReLU(TopK_k((x - b_dec) @ W_enc + b_enc)),  x_hat = z @ W_dec + b_dec."""

    def __init__(self, d_in: int, d_sae: int, k: int, batch_topk: bool = False):
        super().__init__()
        self.d_in, self.d_sae, self.k, self.batch_topk = d_in, d_sae, k, batch_topk
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))  # shape: [d_in, d_sae]
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))  # shape: [d_sae, d_in], unit rows
        self.b_enc = nn.Parameter(torch.zeros(d_sae))  # shape: [d_sae]
        self.b_dec = nn.Parameter(torch.zeros(d_in))  # shape: [d_in]
        # BatchTopK's inference threshold (None for a TopK SAE): a buffer, not trained by Adam.
        self.register_buffer("threshold", torch.zeros(()) if batch_topk else None)

    @torch.no_grad()
    def initialize(self, generator: torch.Generator | None = None) -> None:
        """Random unit decoder rows; encoder = decoder transposed (Gao et al. §2.4)."""
        w = torch.randn(self.d_sae, self.d_in, generator=generator)
        self.W_dec.copy_(w / w.norm(dim=-1, keepdim=True))
        self.W_enc.copy_(self.W_dec.T)
        self.b_enc.zero_()
        self.b_dec.zero_()

    def pre_acts(self, x: Tensor) -> Tensor:
        """Encoder pre-activations: x [..., d_in] -> [..., d_sae]."""
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def activation(self, pre: Tensor, training: bool = False) -> Tensor:
        """Latents from pre-activations: TopK, BatchTopK (training) or its threshold (inference)."""
        if not self.batch_topk:
            return topk_relu(pre, self.k)
        if training:
            return batch_topk_relu(pre.reshape(-1, self.d_sae), self.k).view_as(pre)
        return pre * (pre > self.threshold)

    def encode(self, x: Tensor) -> Tensor:
        """Latent activations z [..., d_sae] of x [..., d_in]."""
        return self.activation(self.pre_acts(x))

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction x_hat [..., d_in] of latents z [..., d_sae]."""
        return z @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm (after each optimiser step)."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the part of W_dec's gradient along each (unit) row: it would only change the
        row's norm, which `normalize_decoder` undoes anyway, and Adam would waste its step
        size on it (Gao et al. §2.4)."""
        grad = self.W_dec.grad
        if grad is not None:
            parallel = (grad * self.W_dec).sum(-1, keepdim=True)  # [d_sae, 1]
            grad.sub_(parallel * self.W_dec)

    def tensors(self) -> dict[str, Tensor]:
        """The SAE's tensors by their file names (CPU, contiguous)."""
        out = {name: getattr(self, name) for name in TENSOR_NAMES}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return {name: t.detach().cpu().contiguous() for name, t in out.items()}


@torch.no_grad()
def geometric_median(points: Tensor, iterations: int = 100, tol: float = 1e-7) -> Tensor:
    """The point minimising the summed Euclidean distance to `points` [n, d] (Weiszfeld).

    Computed in float64; stops when an iteration moves the estimate by less than `tol`
    relative to its norm. A robust alternative to the mean for initialising b_dec.
    """
    pts = points.double()
    median = pts.mean(0)  # [d]
    for _ in range(iterations):
        weights = 1.0 / (pts - median).norm(dim=-1).clamp_min(1e-12)  # [n]
        update = (weights[:, None] * pts).sum(0) / weights.sum()
        moved = (update - median).norm()
        median = update
        if moved <= tol * median.norm().clamp_min(1e-12):
            break
    return median.to(points.dtype)
