"""Training throughput: the `demo` model sparse vs dense, side by side in one run.

    python benchmarks/train_throughput.py [--preset demo] [--steps 12] [--repeats 3]

Three variants of the same shape are timed on the same random token batches, interleaved
(A B C A B C ...) so machine noise hits them alike; figures are medians over steps:
  sparse   : AbsTopK at every node location + weight projection after every step
  no-topk  : weight projection only (AbsTopK off)
  dense    : fraction 1.0 and AbsTopK off (the same model without sparsity machinery)
Printed: tokens/s of each, the sparse/dense step-time ratio, and the share of the sparse
step spent in the weight projection (timed directly) and in AbsTopK (sparse - no-topk).
The paper's target: sparsity machinery adds at most 30% to the dense step time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from sparsecircuits.config import RunConfig, load_config
from sparsecircuits.model.gpt import GPT
from sparsecircuits.train.sparsity import project_, sparse_parameters
from sparsecircuits.train.trainer import build_optimizer, clip_grad_rms_


class Variant:
    def __init__(self, name: str, cfg: RunConfig, project: bool):
        torch.manual_seed(0)
        self.name, self.cfg, self.project = name, cfg, project
        self.model = GPT(cfg.model)
        self.opt = build_optimizer(self.model, cfg)
        self.sparse = sparse_parameters(self.model)
        self.step_times: list[float] = []
        self.proj_times: list[float] = []
        if project:  # start from the target sparsity, as in the second half of training
            project_(self.sparse, cfg.sparsity.weight_fraction, cfg.sparsity.min_per_node)

    def step(self, batch: torch.Tensor) -> None:
        t0 = time.perf_counter()
        logits = self.model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_rms_(list(self.model.parameters()), self.cfg.optim.grad_clip_rms)
        self.opt.step()
        t1 = time.perf_counter()
        if self.project:
            s = self.cfg.sparsity
            project_(self.sparse, s.weight_fraction, s.min_per_node)
        t2 = time.perf_counter()
        self.step_times.append(t2 - t0)
        self.proj_times.append(t2 - t1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    cfg = load_config(args.preset)
    m = cfg.model
    variants = [
        Variant("sparse", cfg, project=True),
        Variant("no-topk", cfg.replace(**{"model.abstopk_fraction": 1.0}), project=True),
        Variant("dense", cfg.replace(**{"model.abstopk_fraction": 1.0,
                                        "sparsity.weight_fraction": 1.0}), project=False),
    ]
    gen = torch.Generator().manual_seed(0)
    tokens = cfg.train.batch_size * m.n_ctx
    print(f"preset {args.preset}: {m.n_layer} layers, d_model {m.d_model}, n_ctx {m.n_ctx}, "
          f"batch {cfg.train.batch_size} ({tokens} tokens/step), weight fraction "
          f"{cfg.sparsity.weight_fraction}, AbsTopK {m.abstopk_fraction}, "
          f"{torch.get_num_threads()} threads")
    for _ in range(args.warmup + args.steps):
        batch = torch.randint(0, m.vocab_size, (cfg.train.batch_size, m.n_ctx + 1), generator=gen)
        for v in variants:
            v.step(batch)
    med = {v.name: statistics.median(v.step_times[args.warmup:]) for v in variants}
    proj = statistics.median(variants[0].proj_times[args.warmup:])
    print(f"\n{'variant':<10} {'step s (median)':>16} {'tokens/s':>10}")
    for v in variants:
        print(f"{v.name:<10} {med[v.name]:>16.3f} {tokens / med[v.name]:>10.0f}")
    sparse, dense = med["sparse"], med["dense"]
    topk = max(0.0, med["sparse"] - med["no-topk"])
    print(f"\nsparse / dense step time: {sparse / dense:.2f}x "
          f"(sparsity machinery adds {100 * (sparse / dense - 1):.0f}%; target <= 30%)")
    print(f"share of sparse step: weight projection {100 * proj / sparse:.1f}%, "
          f"AbsTopK {100 * topk / sparse:.1f}%")


if __name__ == "__main__":
    main()
