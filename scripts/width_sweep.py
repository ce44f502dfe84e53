"""Choose the `wide` model's shape by measurement: width x weight fraction x depth at fixed L0.

Every point keeps roughly the same number of nonzero weights in its sparse matrices (the
paper's comparison is at fixed L0), is trained for the same number of steps on the `wide`
corpus, and is scored by val loss, the quote task and the number of tasks it solves (val
accuracy >= 0.85). Training tokens/s is printed beside each point: on a CPU the wall time of a
longer run decides what can be trained at all.

    python scripts/width_sweep.py --out runs/width-sweep --steps 100

Finished runs in --out are reused, so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.config import load_config
from sparsecircuits.experiments.runs import train_or_reuse
from sparsecircuits.fileformat import write_json
from sparsecircuits.tasks.evaluate import evaluate_tasks
from sparsecircuits.tasks.registry import all_tasks

# (d_model, weight fraction, layers): the matrices' nonzeros scale as layers x d_model^2 x fraction,
# so every row keeps about the demo's L0 (d_model 128 at 1/8, 4 layers): 12 x d_model^2 x fraction
# = 24,576 nonzeros per layer of 4 (twice that per layer of 2); only the embeddings differ.
POINTS = [
    (128, 1 / 8, 4),
    (256, 1 / 32, 4),
    (512, 1 / 128, 4),
    (256, 1 / 16, 2),
]
SOLVED = 0.85


def sweep_point(d_model: int, fraction: float, layers: int, steps: int, out: Path) -> dict:
    cfg = load_config(
        "wide",
        {"model.d_model": d_model, "model.n_layer": layers,
         "sparsity.weight_fraction": fraction, "train.steps": steps,
         "train.eval_every": steps, "train.checkpoint_every": steps},
    )  # fmt: skip
    run = train_or_reuse(cfg, out / f"d{d_model}_L{layers}_f1-{round(1 / fraction)}")
    metrics = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    # The trainer logs tokens/s averaged since its last evaluation; a sweep run evaluates only at
    # its end, so the last value is the whole run's (the dense anneal phase included).
    rate = [m["tokens_per_s"] for m in metrics if "tokens_per_s" in m][-1]
    loaded = load_checkpoint(run.run_dir)
    results = evaluate_tasks(
        loaded.model, all_tasks(), loaded.tokenizer, split="val", n_ctx=loaded.config.model.n_ctx
    )
    acc = {r.task: r.metrics.accuracy for r in results if r.metrics is not None}
    quote = next(r.metrics for r in results if r.task == "single_double_quote")
    return {
        "d_model": d_model, "layers": layers, "weight_fraction": fraction,
        "nonzeros": run.nonzeros, "tokens": run.tokens,
        "tokens_per_s": rate, "val_loss": run.val_loss,
        "quote_two_way": quote.two_way_loss, "quote_accuracy": quote.accuracy,
        "tasks_solved": sum(a >= SOLVED for a in acc.values()), "tasks_scored": len(acc),
        "mean_accuracy": statistics.fmean(acc.values()),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = [
        "| d_model | layers | weight fraction | nonzero weights | train tokens/s | val loss "
        "| quote two-way loss | quote accuracy | tasks solved | mean accuracy |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['d_model']} | {r['layers']} | 1/{round(1 / r['weight_fraction'])} "
            f"| {r['nonzeros']:,} | {r['tokens_per_s']:,.0f} | {r['val_loss']:.4f} "
            f"| {r['quote_two_way']:.4f} | {r['quote_accuracy']:.3f} "
            f"| {r['tasks_solved']}/{r['tasks_scored']} | {r['mean_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/width-sweep"))
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    rows = [sweep_point(d, f, n, args.steps, args.out) for d, f, n in POINTS]
    write_json(args.out / "sweep.json", rows, indent=2)
    print(f"{args.steps} steps x 32 x 128 tokens each, `wide` corpus")
    print(table(rows))


if __name__ == "__main__":
    main()
