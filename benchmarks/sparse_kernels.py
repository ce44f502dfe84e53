"""Sparse kernels vs dense-masked torch: training and forward tokens/s, side by side.

    python benchmarks/sparse_kernels.py [--steps 4] [--shapes a,b,c] [--threads 2]
    python benchmarks/sparse_kernels.py --crossover    # the density crossover of kernels=auto

Shapes (4 layers, the demo's 32 x 128 = 4096 tokens per step):
  a: d_model 128 at weight fraction 1/8 (the demo)
  b: d_model 512 at 1/64 (about the demo's number of nonzero weights)
  c: d_model 1024 at 1/256
Variants of each shape, built from the same seed and projected to the target fraction (the
second half of training), timed interleaved (A B C A B C ...) so machine noise hits them
alike; figures are medians:
  dense    model.kernels=dense: torch, dense-masked (today's path)
  sparse   model.kernels=sparse, exact dense weight gradient (sparsity.regrow_every 0)
  support  model.kernels=sparse, weight gradient on the support (a step between regrowths)
Each training step is split into forward, backward, optimiser and projection. Then, per
matrix shape of the model, the sparse forward kernel's GFLOP/s over its nonzero work against
the dense matmul's GFLOP/s on the same shape. The last line is the d512 training speedup of
the exact sparse path (support path in brackets).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from sparsecircuits.config import load_config
from sparsecircuits.kernels import SparseLinear, build_index
from sparsecircuits.kernels.linear import spmm
from sparsecircuits.model.gpt import GPT
from sparsecircuits.train.sparsity import project_, set_weight_gradient, sparse_parameters
from sparsecircuits.train.trainer import build_optimizer, clip_grad_rms_

SHAPES = {"a": (128, 1 / 8), "b": (512, 1 / 64), "c": (1024, 1 / 256)}
PHASES = ("forward", "backward", "optimizer", "projection")


class Variant:
    def __init__(self, name: str, cfg, kernels: str, weight_grad_dense: bool):
        torch.manual_seed(0)
        self.name, self.cfg = name, cfg.replace(**{"model.kernels": kernels})
        self.model = GPT(self.cfg.model)
        self.opt = build_optimizer(self.model, self.cfg)
        self.sparse = sparse_parameters(self.model)
        s = self.cfg.sparsity
        self.fast = kernels != "dense"
        project_(self.sparse, s.weight_fraction, s.min_per_node, fast=self.fast)
        set_weight_gradient(self.model, dense=weight_grad_dense)
        self.times: dict[str, list[float]] = {p: [] for p in (*PHASES, "step", "fwd_only")}

    def train_step(self, batch: torch.Tensor) -> None:
        s = self.cfg.sparsity
        t0 = time.perf_counter()
        logits = self.model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        clip_grad_rms_(list(self.model.parameters()), self.cfg.optim.grad_clip_rms)
        self.opt.step()
        t3 = time.perf_counter()
        project_(self.sparse, s.weight_fraction, s.min_per_node, fast=self.fast)
        t4 = time.perf_counter()
        for phase, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            self.times[phase].append(dt)
        self.times["step"].append(t4 - t0)

    @torch.no_grad()
    def forward_only(self, batch: torch.Tensor) -> None:
        t0 = time.perf_counter()
        self.model(batch[:, :-1])
        self.times["fwd_only"].append(time.perf_counter() - t0)

    def median(self, what: str, warmup: int) -> float:
        return statistics.median(self.times[what][warmup:])


def median_time(fn, *args, repeats: int = 5) -> float:
    fn(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fastest_interleaved(*calls, rounds: int = 7) -> list[float]:
    """The fastest time of each (fn, *args), run in turn: on a busy machine the minimum of
    interleaved runs is the figure least distorted by other processes."""
    times = [[] for _ in calls]
    for _ in range(rounds):
        for slot, (fn, *args) in zip(times, calls, strict=True):
            slot.append(median_time(fn, *args, repeats=1))
    return [min(t) for t in times]


def sparse_forward(x: torch.Tensor, index, out_f: int) -> None:
    spmm(x, index.rowptr, index.csr_idx, index.csr_val, out_f)


def dense_forward(x: torch.Tensor, w: torch.Tensor) -> None:
    x @ w.t()


def sparse_forward_and_input_grad(x, g, index) -> None:
    out_f, in_f = index.shape
    spmm(x, index.rowptr, index.csr_idx, index.csr_val, out_f)
    spmm(g, index.colptr, index.csc_idx, index.csc_val, in_f)


def dense_forward_and_input_grad(x, g, w) -> None:
    x @ w.t()
    g @ w


def kernel_rates(model: GPT, tokens: int) -> list[tuple[str, float, float, float]]:
    """Per distinct matrix shape: (shape, density, sparse GFLOP/s on nonzeros, dense GFLOP/s)."""
    seen, rows = set(), []
    for name, module in model.named_modules():
        if not isinstance(module, SparseLinear):
            continue
        shape = (module.in_features, module.out_features)
        if shape in seen:
            continue
        seen.add(shape)
        w = module.weight.detach()
        index = build_index(w)
        x = torch.randn(tokens, shape[0])
        t_sparse, t_dense = fastest_interleaved((sparse_forward, x, index, shape[1]),
                                                (dense_forward, x, w))
        rows.append((f"{shape[0]}->{shape[1]} ({name.split('.')[-1]})", index.nnz / w.numel(),
                     2 * tokens * index.nnz / t_sparse / 1e9,
                     2 * tokens * w.numel() / t_dense / 1e9))
    return rows


def crossover(tokens: int = 4096) -> None:
    """Forward + input gradient, sparse vs dense, per matrix size and density (for `auto`)."""
    densities = (1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32)
    print(f"\ncrossover: (dense time / sparse time) of forward + input gradient, {tokens} tokens")
    print(f"{'in->out':<12}" + "".join(f"{f'1/{round(1 / d)}':>8}" for d in densities))
    for in_f, out_f in ((64, 256), (128, 128), (128, 512), (256, 1024), (512, 512),
                        (512, 2048), (2048, 512), (1024, 4096), (128, 2048)):
        x = torch.randn(tokens, in_f)
        g = torch.randn(tokens, out_f)
        ratios = []
        for density in densities:
            w = torch.randn(out_f, in_f) * (torch.rand(out_f, in_f) < density)
            index = build_index(w)
            t_dense, t_sparse = fastest_interleaved((dense_forward_and_input_grad, x, g, w),
                                                    (sparse_forward_and_input_grad, x, g, index))
            ratios.append(t_dense / t_sparse)
        print(f"{f'{in_f}->{out_f}':<12}" + "".join(f"{r:>7.2f}x" for r in ratios))


def run_shape(label: str, d_model: int, fraction: float, args) -> dict[str, float]:
    cfg = load_config("demo", {"model.d_model": d_model, "model.n_layer": 4,
                               "sparsity.weight_fraction": fraction})
    m = cfg.model
    tokens = cfg.train.batch_size * m.n_ctx
    print(f"\n({label}) d_model {d_model}, {m.n_layer} layers, weight fraction 1/{round(1 / fraction)}, "
          f"{tokens} tokens/step, {torch.get_num_threads()} threads")
    variants = [Variant("dense", cfg, "dense", True), Variant("sparse", cfg, "sparse", True),
                Variant("support", cfg, "sparse", False)]
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.warmup + args.steps):
        batch = torch.randint(0, m.vocab_size, (cfg.train.batch_size, m.n_ctx + 1), generator=gen)
        for v in variants:
            v.train_step(batch)
        for v in variants:
            v.forward_only(batch)
    w = args.warmup
    dense = variants[0]
    print(f"{'variant':<9} {'train tok/s':>11} {'speedup':>8} {'fwd tok/s':>10} {'speedup':>8}  "
          + "  ".join(f"{p:>10}" for p in PHASES) + "  (ms)")
    for v in variants:
        step, fwd = v.median("step", w), v.median("fwd_only", w)
        print(f"{v.name:<9} {tokens / step:>11.0f} {dense.median('step', w) / step:>7.2f}x "
              f"{tokens / fwd:>10.0f} {dense.median('fwd_only', w) / fwd:>7.2f}x  "
              + "  ".join(f"{1e3 * v.median(p, w):>10.1f}" for p in PHASES))
    print("sparse forward kernel vs dense matmul, same shape and tokens:")
    for shape, density, sparse_rate, dense_rate in kernel_rates(variants[1].model, tokens):
        print(f"  {shape:<24} density {density:.4f}: {sparse_rate:6.1f} GFLOP/s on nonzeros, "
              f"dense {dense_rate:6.1f} GFLOP/s")
    return {v.name: dense.median("step", w) / v.median("step", w) for v in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--shapes", default="a,b,c", help="comma-separated subset of a,b,c")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crossover", action="store_true",
                        help="only measure the density crossover used by model.kernels=auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.crossover:
        crossover()
        return
    speedups = {}
    for label in args.shapes.split(","):
        d_model, fraction = SHAPES[label]
        speedups[label] = run_shape(label, d_model, fraction, args)
    if "b" in speedups:
        b = speedups["b"]
        print(f"train speedup d512 f1/64: {b['sparse']:.2f}x (support gradient: {b['support']:.2f}x)")


if __name__ == "__main__":
    main()
