"""Exact dense weight gradients vs support-only gradients with periodic regrowth, measured.

The paper takes a dense weight gradient every step so that any weight can enter the support.
`sparsity.regrow_every: R` takes it every R steps and, between regrowths, computes gradients
and AdamW updates on the support only (docs/sparse-kernels.md). This script trains each shape
three times from the same seed and data order and prints val loss against training time:

    exact      regrow_every 0, S steps
    regrow     regrow_every R, S steps (equal steps)
    regrow-eq  regrow_every R, as many steps as fit in the exact run's training time
               (equal wall time; its schedule is stretched over the longer run)

    python scripts/regrow_comparison.py --out runs/regrow --steps 100

Training time is summed from the trainer's own tokens/s windows (evaluation excluded), so it is
the time of the training steps alone. Finished runs in --out are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparsecircuits.config import load_config
from sparsecircuits.experiments.runs import TrainedModel, train_or_reuse
from sparsecircuits.fileformat import write_json

# name -> (d_model, weight fraction): the demo shape and the wide shape at ~the same L0.
SHAPES = {"d128_f1-8": (128, 1 / 8), "d512_f1-64": (512, 1 / 64)}
RESET_EVERY = 20  # the trainer restarts its tokens/s window every 20 steps


def train_seconds(run_dir: Path) -> float:
    """Seconds spent in training steps, from the trainer's windowed tokens/s records."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]["step"]
    tokens_per_step = records[0]["tokens"] // records[0]["step"]
    seconds = 0.0
    for r in records:
        step = r["step"]
        if step % RESET_EVERY == 0 or step == last:
            window = step - (step - 1) // RESET_EVERY * RESET_EVERY
            seconds += window * tokens_per_step / r["tokens_per_s"]
    return seconds


def run(shape: str, variant: str, regrow: int, steps: int, threads: int, out: Path) -> dict:
    d_model, fraction = SHAPES[shape]
    cfg = load_config("demo", {
        "model.d_model": d_model, "sparsity.weight_fraction": fraction,
        "sparsity.regrow_every": regrow, "train.steps": steps, "train.threads": threads,
        "train.eval_every": max(steps // 4, 1), "train.checkpoint_every": steps,
    })  # fmt: skip
    model: TrainedModel = train_or_reuse(cfg, out / shape / variant, progress=False)
    seconds = train_seconds(model.run_dir)
    return {"shape": shape, "variant": variant, "regrow_every": regrow, "steps": model.steps,
            "train_s": seconds, "s_per_step": seconds / model.steps,
            "val_loss": model.val_loss}  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = ["| shape | variant | regrow_every | steps | train s | s/step | val loss | vs exact |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    exact = {r["shape"]: r["val_loss"] for r in rows if r["variant"] == "exact"}
    for r in rows:
        gap = 100 * (r["val_loss"] / exact[r["shape"]] - 1)
        lines.append(f"| {r['shape']} | {r['variant']} | {r['regrow_every']} | {r['steps']} "
                     f"| {r['train_s']:.0f} | {r['s_per_step']:.2f} | {r['val_loss']:.4f} "
                     f"| {gap:+.2f}% |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=100, help="steps of the equal-steps runs")
    parser.add_argument("--regrow-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated of "
                        + ", ".join(SHAPES))  # fmt: skip
    args = parser.parse_args()
    rows = []
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            parser.error(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
        exact = run(shape, "exact", 0, args.steps, args.threads, args.out)
        regrow = run(shape, "regrow", args.regrow_every, args.steps, args.threads, args.out)
        # Equal wall time: the steps the regrow run's measured speed fits in the exact run's time.
        eq_steps = round(args.steps * exact["s_per_step"] / regrow["s_per_step"])
        rows += [exact, regrow]
        if eq_steps > args.steps:
            rows.append(run(shape, f"regrow-eq{eq_steps}", args.regrow_every, eq_steps,
                            args.threads, args.out))  # fmt: skip
        write_json(args.out / "results.json", {"rows": rows})
    print(table(rows))


if __name__ == "__main__":
    main()
