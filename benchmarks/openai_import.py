"""Memory and time to import (and to prune) an OpenAI circuit-sparsity model of a given shape.

    python benchmarks/openai_import.py [--d-model 512] [--n-layer 8] [--density 0.001]
                                       [--block-size 256] [--threads 2] [--batch 64]
                                       [--workdir DIR]

Writes a synthetic model in their format (random weight-sparse matrices of the given shape
and density, a dense bigram table, a 2048-token BPE trained on tests/corpus), then, each in a
fresh process so that peak memory is its own:
1. `import-openai` (torch.load with weights_only and mmap, mapping, checks, safetensors write):
   wall time and peak RSS;
2. one pruning mask-training step's worth of work on the imported model: forward + backward
   of `--batch` task-length (32-token) sequences (prune's batch is 64) through every node location with a
   gradient-carrying mask, as `prune` does 200 times (PruneConfig.steps): time per step and
   peak RSS.
It prints the measurements and a linear extrapolation to csp_yolo2's size (about 0.4 B
parameters: we assume d_model 2048, 8 layers, d_mlp 8192, vocab 2048; their release states
the parameter count, not the shape), which is what docs/openai.md quotes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
YOLO2 = {"d_model": 2048, "n_layer": 8, "vocab": 2048}
"""Assumed csp_yolo2 shape (0.4 B parameters with d_mlp = 4 d_model)."""


def n_params(d_model: int, n_layer: int, vocab: int, block: int) -> int:
    per_layer = 12 * d_model * d_model + 2 * d_model
    return n_layer * per_layer + 2 * vocab * d_model + vocab * vocab + block * d_model


def build(workdir: Path, d_model: int, n_layer: int, density: float, block: int) -> Path:
    import torch

    from sparsecircuits.data.tokenizer import train_tokenizer
    from sparsecircuits.openai_format.bpe import export_bpe_files

    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests/corpus").rglob("*.py"))]
    files = export_bpe_files(train_tokenizer(texts, vocab_size=2048))
    d = workdir / "theirs"
    d.mkdir(parents=True, exist_ok=True)
    (d / "encoder.json").write_text(files.encoder_json)
    (d / "vocab.bpe").write_text(files.vocab_bpe)
    cfg = {"block_size": block, "vocab_size": 2048, "n_layer": n_layer, "n_head": d_model // 16,
           "d_head": 16, "d_model": d_model, "d_mlp": 4 * d_model, "bias": False,
           "rms_norm": True, "afrac": 0.25,
           "afrac_loctypes": "attn_in,attn_q,attn_k,attn_v,attn_out,mlp_in,mlp_neuron,mlp_out",
           "tied_unembed": False, "enable_bigram_table": True, "sink": True,
           "bigram_table_rank": None}
    (d / "beeg_config.json").write_text(json.dumps(cfg))
    g = torch.Generator().manual_seed(0)

    def sparse(rows: int, cols: int) -> torch.Tensor:
        w = torch.zeros(rows, cols)
        k = max(1, int(density * rows * cols))
        idx = torch.randint(0, rows * cols, (k,), generator=g)
        w.view(-1)[idx] = torch.randn(k, generator=g) * 0.1
        return w

    D, F = d_model, 4 * d_model
    sd = {"transformer.wte.weight": sparse(2048, D), "transformer.wpe.weight": sparse(block, D)}
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        sd[p + "ln_1.weight"] = torch.ones(D)
        sd[p + "attn.c_attn.weight"] = sparse(3 * D, D)
        sd[p + "attn.c_proj.weight"] = sparse(D, D)
        sd[p + "attn.attn_imp.sink_logit"] = torch.zeros(D // 16)
        sd[p + "ln_2.weight"] = torch.ones(D)
        sd[p + "mlp.c_fc.weight"] = sparse(F, D)
        sd[p + "mlp.c_proj.weight"] = sparse(D, F)
    sd["transformer.ln_f.weight"] = torch.ones(D)
    sd["lm_head.weight"] = sparse(2048, D)
    sd["bigram_table"] = 0.01 * torch.randn(2048, 2048, generator=g)
    torch.save(sd, d / "final_model.pt")
    return d


def child_import(theirs: str, out: str, threads: int) -> None:
    import torch

    from sparsecircuits.openai_format.convert import import_openai

    torch.set_num_threads(threads)
    t = time.perf_counter()
    result = import_openai(Path(theirs), Path(out))
    print(json.dumps({"seconds": time.perf_counter() - t, "params": result.parameters,
                      "nonzeros": result.nonzeros, "peak_rss_mib": _peak_mib()}))


def child_prune_step(ckpt: str, batch: str, threads: int, repeats: int = 2) -> None:
    import torch

    from sparsecircuits.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    model = load_checkpoint(ckpt).model
    for p in model.parameters():
        p.requires_grad_(False)
    masks = {name: torch.ones(w, requires_grad=True) for name, w in model.location_width.items()}
    hooks = {name: (lambda x, m=m: x * m) for name, m in masks.items()}
    n = int(batch)
    tokens = torch.randint(0, model.cfg.vocab_size, (n, 32),
                           generator=torch.Generator().manual_seed(0))
    read = torch.full((n,), 31)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        logits = model(tokens, hooks=hooks, read_positions=read)  # [64, vocab]
        logits.logsumexp(-1).mean().backward()
        times.append(time.perf_counter() - t)
    print(json.dumps({"step_seconds": min(times), "peak_rss_mib": _peak_mib()}))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--n-layer", type=int, default=8)
    ap.add_argument("--density", type=float, default=0.001)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64, help="sequences per timed mask step")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        {"import": child_import, "prune": child_prune_step}[kind](*rest[:-1], int(rest[-1]))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="openai-import-"))
    t = time.perf_counter()
    theirs = build(work, args.d_model, args.n_layer, args.density, args.block_size)
    size = (theirs / "final_model.pt").stat().st_size
    print(f"synthetic model: d_model {args.d_model}, {args.n_layer} layers, density "
          f"{args.density:g}, final_model.pt {size / 2**20:.0f} MiB "
          f"(built in {time.perf_counter() - t:.0f} s)")
    imp = _child("--child", "import", str(theirs), str(work / "ours"), str(args.threads))
    print(f"import: {imp['seconds']:.1f} s, peak RSS {imp['peak_rss_mib']:.0f} MiB, "
          f"{imp['params']:,} parameters, {imp['nonzeros']:,} nonzero")
    step = _child("--child", "prune", str(work / "ours"), str(args.batch), str(args.threads))
    per64 = step["step_seconds"] * 64 / args.batch  # PruneConfig.batch_size is 64
    print(f"prune mask step ({args.batch} x 32 tokens, fwd+bwd): {step['step_seconds']:.2f} s, "
          f"peak RSS {step['peak_rss_mib']:.0f} MiB")
    scale = n_params(YOLO2["d_model"], YOLO2["n_layer"], YOLO2["vocab"], 1024) / imp["params"]
    print(f"csp_yolo2 (assumed shape, {scale:.1f}x the parameters), linear extrapolation: "
          f"import ~{imp['seconds'] * scale:.0f} s and ~{imp['peak_rss_mib'] * scale / 1024:.1f} "
          f"GiB peak; 200 mask steps ~{200 * per64 * scale / 60:.0f} min (dense "
          f"compute; the sparse kernels scale with nonzeros instead)")


if __name__ == "__main__":
    main()
