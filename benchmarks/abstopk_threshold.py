"""Ways to find AbsTopK's per-token threshold on CPU, timed side by side.

    python benchmarks/abstopk_threshold.py

Each method returns x with all but the k largest |x| of every row zeroed; all three agree
(checked). Shapes are the demo model's node locations for one batch of 32 x 128 tokens.
"""

from __future__ import annotations

import statistics
import time

import torch

from sparsecircuits.model.gpt import abstopk


def kthvalue_threshold(x: torch.Tensor, k: int) -> torch.Tensor:
    m = x.abs()
    t = m.kthvalue(x.shape[-1] - k + 1, dim=-1, keepdim=True).values
    return x * (m >= t)


def bisection_threshold(x: torch.Tensor, k: int, iters: int = 32) -> torch.Tensor:
    """The paper's threshold search: bisect on the value until exactly k entries pass."""
    m = x.abs()
    lo = torch.zeros_like(m[..., :1])
    hi = m.amax(-1, keepdim=True)
    for _ in range(iters):
        mid = (lo + hi) / 2
        enough = (m >= mid).sum(-1, keepdim=True) >= k
        lo = torch.where(enough, mid, lo)
        hi = torch.where(enough, hi, mid)
    return x * (m >= lo)


def median_ms(fn, x, k, repeats=20) -> float:
    fn(x, k)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x, k)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    methods = {"topk (used)": abstopk, "kthvalue": kthvalue_threshold,
               "bisection": bisection_threshold}
    print(f"{torch.get_num_threads()} threads; median ms per call")
    print(f"{'shape':>14} {'k':>5} " + " ".join(f"{n:>12}" for n in methods))
    for d in (128, 512):
        x = torch.randn(32 * 128, d)
        k = d // 4
        ref = abstopk(x, k)
        for fn in methods.values():
            assert torch.equal(fn(x, k), ref)
        row = [median_ms(fn, x, k) for fn in methods.values()]
        print(f"{str(tuple(x.shape)):>14} {k:>5} " + " ".join(f"{t:>12.2f}" for t in row))


if __name__ == "__main__":
    main()
