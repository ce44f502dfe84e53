"""Pruning speed: one task pruned, discretised, calibrated and validated on a checkpoint.

    python benchmarks/prune_speed.py [--checkpoint runs/demo] [--task single_double_quote]
                                     [--loss two_way] [--target-loss 0.3] [--threads 2]
                                     [--steps N] [--no-controls] [--no-baseline]

Runs exactly what `sparsecircuits prune CKPT --task NAME --loss L --target-loss X` runs with
default pruning hyperparameters (nothing is written) and prints the wall time of every phase,
the mask-training steps/s and the total, with and without the optional parts (the two
controls and the attribution baseline). The ablation means are computed (and cached) before
the clock starts, as they are once per checkpoint; their one-time cost is printed separately.
Target: under 3 minutes on 2 CPU cores.

The loss and target default to two_way / 0.3 because the small demo model cannot reach the
default target (full-vocabulary task loss 0.15) on any task: pruning would stop at once.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.circuits.pipeline import CircuitContext, find_circuit

TARGET_S = 180.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/demo")
    ap.add_argument("--task", default="single_double_quote")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="override the default steps")
    ap.add_argument("--loss", default="two_way", help="task or two_way")
    ap.add_argument("--target-loss", type=float, default=0.3)
    ap.add_argument("--no-controls", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = PruneConfig().replace(loss=args.loss, target_loss=args.target_loss)
    if args.steps is not None:
        cfg = cfg.replace(steps=args.steps)
    loaded = load_checkpoint(args.checkpoint)
    print(f"checkpoint {loaded.path} (step {loaded.meta.get('step')}), task {args.task}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs visible; steps {cfg.steps}, batch {cfg.batch_size}, "
        f"{cfg.loss} loss target {cfg.target_loss:g}"
    )

    ctx = CircuitContext(loaded, cfg)
    t = time.perf_counter()
    ctx.ablation()
    print(
        f"ablation values ({cfg.ablation}, cached per checkpoint): {time.perf_counter() - t:.1f} s"
    )

    t = time.perf_counter()
    cpu = time.process_time()
    circuit, _ = find_circuit(
        ctx, args.task, controls=not args.no_controls, baseline=not args.no_baseline
    )
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu

    w = circuit.wall_time_s
    print(f"\n{'phase':<28} {'seconds':>8}")
    for name, seconds in w.items():
        if name != "total":
            print(f"{name:<28} {seconds:>8.1f}")
    optional = sum(
        w.get(k, 0.0) for k in ("control_random_weights", "control_nonsense_task", "baseline")
    )
    core = w["total"] - optional
    print(
        f"\nmask training: {circuit.training['steps']} steps, "
        f"{circuit.training['steps_per_s']:.2f} steps/s"
    )
    print(f"prune + discretise + calibrate + sufficiency/necessity: {core:.1f} s")
    print(
        f"  + controls and baseline: {w['total']:.1f} s wall, {cpu:.1f} s CPU "
        f"(target {TARGET_S:.0f} s: {'met' if wall <= TARGET_S else 'missed'})"
    )
    c = circuit.counts
    print(
        f"circuit: {c['nodes']} nodes, {c['edges']} edges, "
        f"val loss {circuit.losses['val_before_calibration']:.3f}"
    )


if __name__ == "__main__":
    main()
