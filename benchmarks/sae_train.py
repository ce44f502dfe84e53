"""SAE training throughput: our TopK trainer vs SAELens's, on the same cached activations.

    python benchmarks/sae_train.py [--checkpoint models/demo-dense] [--at 1.resid_post]
        [--tokens 65536] [--steps 30] [--saelens-python /work/saelens-venv/bin/python]

1. Activations at `--at` are recorded once over `--tokens` pretraining tokens and cached in a
   safetensors file (both trainers read that file, so neither pays for the model's forward).
2. Our trainer (`sae.trainer.SAETrainer`: TopK, AuxK, unit-norm decoder, Adam) runs `--steps`
   steps of `--batch-size` tokens; tokens/s is over the steps after the first (warm-up).
3. If a python with sae-lens is given (`--saelens-python` or $SAELENS_PYTHON; sae-lens is not
   a dependency of this project: install it in a separate venv), the same is timed there with
   SAELens's own training SAE and its training step (`TopKTrainingSAE.training_forward_pass`,
   Adam), same d_sae, k, batch and steps, in a subprocess.
4. Format and metric check: one of our SAEs (`--sae`) is exported to SAELens's format and
   loaded there with `SAE.load_from_disk`; L0, MSE, cosine similarity and explained variance
   (around the mean) of our SAE (`sae.metrics.ReconstructionSums`) and of the SAELens-loaded
   copy (same formulas, its own encode/decode) on the cached activations must agree to 1e-4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.circuits.ablation import pretraining_shard
from sparsecircuits.data.shards import batch_starts
from sparsecircuits.sae.activations import record_windows
from sparsecircuits.sae.config import SAETrainConfig
from sparsecircuits.sae.metrics import ReconstructionSums
from sparsecircuits.sae.sae_file import load_sae
from sparsecircuits.sae.saelens import export_saelens
from sparsecircuits.sae.trainer import SAETrainer

SAELENS_SCRIPT = r'''
import json, sys, time
import torch
from safetensors.torch import load_file
from sae_lens import SAE, TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainStepInput

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
acts = load_file(args["acts"])["acts"]
out = {"version": __import__("sae_lens").__version__}

# -- training throughput: SAELens's TopK training SAE, its training step, Adam
cfg = TopKTrainingSAEConfig(d_in=acts.shape[1], d_sae=args["d_sae"], k=args["k"],
                            device="cpu", dtype="float32")
sae = TopKTrainingSAE(cfg)
opt = torch.optim.Adam(sae.parameters(), lr=args["lr"], betas=(0.9, 0.999))
since_fired = torch.zeros(args["d_sae"])
B = args["batch_size"]
times = []
for step in range(args["steps"]):
    x = acts[(step * B) % (len(acts) - B + 1):][:B]
    t0 = time.perf_counter()
    # what sae_lens.training.sae_trainer.SAETrainer._train_step does, minus logging
    sae.train()
    output = sae.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients=sae.get_coefficients(), dead_neuron_mask=since_fired > 1000,
        n_training_steps=step, is_logging_step=False))
    with torch.no_grad():
        did_fire = output.feature_acts.bool().float().sum(-2).bool()
        since_fired += 1
        since_fired[did_fire] = 0
    output.loss.backward()
    torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t0)
out["step_times"] = times

# -- format check and metrics of our exported SAE, loaded by SAELens
if args.get("exported"):
    loaded = SAE.load_from_disk(args["exported"], device="cpu")
    out["loaded_class"] = type(loaded).__name__
    with torch.no_grad():
        x = acts.double()
        z = loaded.encode(acts)
        x_hat = loaded.decode(z).double()
    err = (x - x_hat).pow(2).sum()
    total = x.pow(2).sum() - x.sum(0).pow(2).sum() / len(x)
    out["metrics"] = {
        "l0": float((z != 0).sum(-1).double().mean()),
        "mse": float(err / x.numel()),
        "cosine_similarity": float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1,
                                                                         eps=1e-12).mean()),
        "explained_variance": float(1 - err / total),
    }
print(json.dumps(out))
'''


def cache_activations(loaded, location: str, tokens: int, seed: int = 0) -> torch.Tensor:
    """Activations [n, d_in] at `location` over `tokens` pretraining tokens (random windows)."""
    n_ctx = loaded.model.cfg.n_ctx
    shard = pretraining_shard(loaded, "train")
    n_windows = max(1, tokens // n_ctx)
    starts = batch_starts(len(shard), n_ctx, n_windows, seed, 0)
    acts = record_windows(loaded.model, shard.windows(starts, n_ctx), location)
    return acts[torch.randperm(len(acts), generator=torch.Generator().manual_seed(seed))].float()


def time_ours(acts: torch.Tensor, cfg: SAETrainConfig, steps: int) -> list[float]:
    trainer = SAETrainer(cfg, acts.shape[1], "cpu")
    trainer.initialize(acts[:16384])
    B, times = cfg.batch_size, []
    for step in range(steps):
        x = acts[(step * B) % (len(acts) - B + 1) :][:B]
        t0 = time.perf_counter()
        trainer.sae.train()
        trainer.step(x, step)
        times.append(time.perf_counter() - t0)
    return times


def tokens_per_s(times: list[float], batch: int) -> float:
    timed = times[1:] or times  # the first step pays for allocation and warm-up
    return batch * len(timed) / sum(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/demo-dense")
    parser.add_argument("--at", default="1.resid_post")
    parser.add_argument("--sae", default="models/demo-dense/sae-1.resid_post-k32",
                        help="Our SAE for the format and metric check (at --at).")
    parser.add_argument("--tokens", type=int, default=65536)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--saelens-python", default=os.environ.get("SAELENS_PYTHON"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_checkpoint(args.checkpoint)
    t0 = time.perf_counter()
    acts = cache_activations(loaded, args.at, args.tokens)
    print(f"cached {len(acts):,} activations [{acts.shape[1]}] at {args.at} of "
          f"{args.checkpoint} in {time.perf_counter() - t0:.1f}s; {args.threads} thread(s)")
    cfg = SAETrainConfig(location=args.at, k=args.k, expansion=args.expansion,
                         batch_size=args.batch_size, warmup_steps=1)
    d_sae = args.expansion * acts.shape[1]
    ours = time_ours(acts, cfg, args.steps)
    print(f"ours     : {tokens_per_s(ours, args.batch_size):>10,.0f} tokens/s  "
          f"(d_sae {d_sae}, k {args.k}, batch {args.batch_size}, {args.steps} steps)")

    if not args.saelens_python:
        print("SAELens  : skipped (no --saelens-python / $SAELENS_PYTHON)")
        return
    handle = load_sae(args.sae)
    recon = ReconstructionSums(handle.sae.d_in, handle.sae.d_sae)
    with torch.no_grad():
        z = handle.sae.encode(acts)
        recon.add(acts, handle.sae.decode(z), z)
    our_metrics = recon.metrics()
    with tempfile.TemporaryDirectory() as tmp:
        save_file({"acts": acts.contiguous()}, f"{tmp}/acts.safetensors")
        exported = export_saelens(handle, Path(tmp) / "exported")
        job = {"acts": f"{tmp}/acts.safetensors", "d_sae": d_sae, "k": args.k,
               "lr": cfg.learning_rate(d_sae), "batch_size": args.batch_size,
               "steps": args.steps, "threads": args.threads, "exported": str(exported)}
        proc = subprocess.run([args.saelens_python, "-c", SAELENS_SCRIPT, json.dumps(job)],
                              capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"SAELens  : failed ({tail})")
        sys.exit(1)
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    speed = tokens_per_s(theirs["step_times"], args.batch_size)
    print(f"SAELens  : {speed:>10,.0f} tokens/s  (sae-lens {theirs['version']}, "
          "TopKTrainingSAE.training_forward_pass + Adam)")
    print(f"ratio    : ours / SAELens = {tokens_per_s(ours, args.batch_size) / speed:.2f}x")
    print(f"format   : our export of {args.sae} loads in SAELens as {theirs['loaded_class']}")
    worst = 0.0
    for key, value in theirs["metrics"].items():
        diff = abs(value - our_metrics[key])
        worst = max(worst, diff)
        print(f"  {key:<20} ours {our_metrics[key]:.6f}  SAELens-loaded {value:.6f}  "
              f"|diff| {diff:.1e}")
    print(f"metrics agree to 1e-4: {'yes' if worst <= 1e-4 else 'NO'} (max |diff| {worst:.1e})")


if __name__ == "__main__":
    main()
