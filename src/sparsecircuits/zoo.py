"""The model zoo: trained runs exported small enough to commit, with a card each.

    sparsecircuits export runs/demo --out models/demo --command "bash scripts/main.sh"

An exported model is a run directory that `prune`, `serve`, `eval` and `tasks eval` read like
any other: `checkpoint/` (config.json, model.safetensors, tokenizer.json; no optimiser state,
so it cannot be resumed), the run's metrics.jsonl, and CARD.md. Weights are stored in float16
(or bfloat16, for tensors with entries below float16's range, e.g. the bigram table) where that
keeps every zero a zero and every nonzero a nonzero (the L0 the model was trained to), else in
float32; the loader casts back to float32. A tensor is then stored as indices + values
(`sparsecircuits.sparse_storage`) where that is smaller (`storage="auto"`): a d_model 512
model at weight fraction 1/64 fits the limit only so. The card's losses and task table are
measured on the exported copy itself, not copied from the run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from sparsecircuits import checkpoint as ckpt
from sparsecircuits.data.prepare import prepare_data
from sparsecircuits.data.shards import TokenShard
from sparsecircuits.errors import CheckpointError
from sparsecircuits.fileformat import (
    atomic_write_bytes,
    atomic_write_text,
    check_writable_dir,
    remove_stale_temp_dirs,
    temp_dir,
    write_json,
)
from sparsecircuits.sparse_storage import STORAGE_CHOICES, Storage, encode, sparse_names
from sparsecircuits.tasks.evaluate import evaluate_tasks, results_table
from sparsecircuits.tasks.registry import all_tasks
from sparsecircuits.train.trainer import METRICS_FILE, evaluate_loss

SIZE_LIMIT = 20 * 2**20
"""Largest model.safetensors the zoo accepts (bytes)."""


def compact_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each float tensor in the first of float16, bfloat16 that keeps it finite with the same
    zero pattern (float16 is more precise, bfloat16 has float32's range), else float32."""
    out = {}
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        if t.is_floating_point():
            for dtype in (torch.float16, torch.bfloat16):
                small = t.to(dtype)
                if bool(torch.isfinite(small).all()) and torch.equal(small != 0, t != 0):
                    t = small
                    break
        out[name] = t
    return out


def export_model(run: Path, out: Path, command: str, tasks: bool = True,
                 storage: Storage = "auto") -> Path:  # fmt: skip
    """Write `out` (a new directory) from the run or checkpoint `run`; returns CARD.md.

    `storage`: how the weights are stored (`sparse_storage.encode`): auto (each tensor in the
    smaller of dense and indices + values), dense, or sparse.

    `out` appears whole or not at all: it is built in a temporary sibling (unique to this
    process, deleted on any failure; one a killed export left is deleted by the next export
    to the same name) and renamed into place.
    """
    if storage not in STORAGE_CHOICES:
        raise CheckpointError(f"storage must be one of {', '.join(STORAGE_CHOICES)}, "
                              f"got {storage!r}")  # fmt: skip
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise CheckpointError(f"{out} already exists; the zoo never overwrites a model")
    check_writable_dir(out.parent, "--out's parent directory", CheckpointError)
    src = ckpt.resolve(run)
    run_dir = src.parent if src.name == ckpt.CHECKPOINT_DIR else src
    loaded = ckpt.load_checkpoint(src)
    meta = ckpt.read_meta(src)
    cfg = loaded.config
    state = encode(compact_state(loaded.model.state_dict()), storage)

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(out.parent, out.name)
    tmp = temp_dir(out.parent, out.name)
    try:
        extra = {k: v for k, v in meta.items() if k not in ("format", "format_version", "run_config")}
        extra["exported_from"] = str(run)
        ckpt.write_checkpoint(tmp / ckpt.CHECKPOINT_DIR, cfg, state, loaded.tokenizer.to_str(),
                              extra)  # fmt: skip
        size = (tmp / ckpt.CHECKPOINT_DIR / "model.safetensors").stat().st_size
        if size > SIZE_LIMIT:
            raise CheckpointError(f"{run}: exported weights take {size / 2**20:.1f} MiB, over "
                                  f"the zoo's {SIZE_LIMIT / 2**20:.0f} MiB")  # fmt: skip
        if (run_dir / METRICS_FILE).is_file():
            atomic_write_bytes(tmp / METRICS_FILE, (run_dir / METRICS_FILE).read_bytes())
        exported = ckpt.load_checkpoint(tmp)
        card = model_card(out.name, exported, meta, command, size, tasks)
        atomic_write_text(tmp / "CARD.md", card)
        if out.exists() or out.is_symlink():  # another export finished first
            raise CheckpointError(f"{out} already exists; the zoo never overwrites a model")
        try:
            os.rename(tmp, out)
        except OSError as exc:
            raise CheckpointError(f"cannot create {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "CARD.md"


def model_card(name: str, exported: ckpt.Loaded, meta: dict, command: str, size: int,
               tasks: bool) -> str:  # fmt: skip
    """The card: what the model is, how it was made, and what it measures now."""
    cfg, m = exported.config, exported.config.model
    data = prepare_data(cfg.data, m.vocab_size, tokenizer=exported.tokenizer)
    val = evaluate_loss(exported.model, TokenShard(data.shards["val"]), cfg, "cpu")
    total = sum(p.numel() for p in exported.model.parameters())
    nonzero = sum(int(p.count_nonzero()) for p in exported.model.parameters())
    sparse_nz = sum(meta.get("nonzeros", {}).values())
    steps = int(meta.get("step", 0))
    stats = meta.get("data", {})
    lines = [
        f"# {name}",
        "",
        f"Reproduce: `{command}`",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {m.n_layer} layers, d_model {m.d_model}, d_head {m.d_head}, "
        f"n_ctx {m.n_ctx}, vocab {m.vocab_size}, AbsTopK {m.abstopk_fraction:g} |",
        f"| weights | fraction {cfg.sparsity.weight_fraction:g}: {sparse_nz:,} nonzero in the "
        f"sparse matrices; {nonzero:,} of {total:,} parameters nonzero in all (bigram table "
        "included) |",
        f"| data | {stats.get('corpus', cfg.data.sources)}; "
        f"{stats.get('tokens', {}).get('train', 0):,} train tokens |",
        f"| training | {steps} steps x {cfg.train.batch_size} x {m.n_ctx} tokens = "
        f"{steps * cfg.train.batch_size * m.n_ctx:,} tokens"
        + (f" (stopped at val loss <= {meta['stopped_below']:.4f})" if "stopped_below" in meta
           else "") + " |",  # fmt: skip
        f"| val loss at save (float32) | {_loss(meta.get('val_loss'))} |",
        f"| val loss of this copy | {val:.4f} ({cfg.train.eval_batches} eval batches) |",
        f"| file | model.safetensors, {size / 2**20:.1f} MiB (" + ", ".join(
            f"{n} {d}" for d, n in sorted(_dtype_counts(exported.path).items())) + ")"
        + _sparse_note(exported.path) + " |",
        "",
    ]
    if tasks:
        results = evaluate_tasks(exported.model, all_tasks(), exported.tokenizer,
                                 n_ctx=m.n_ctx)  # fmt: skip
        lines += ["## Tasks (val split of each task)", "", "```",
                  results_table(results), "```", ""]  # fmt: skip
        write_json(exported.path.parent / "tasks.json",
                   {"split": "val", "results": [r.to_dict() for r in results]})  # fmt: skip
    return "\n".join(lines)


def _loss(value: object) -> str:
    """A loss from config.json for the card (null when none was measured before the save)."""
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _sparse_note(checkpoint: Path) -> str:
    """How many tensors the file stores as indices + values (`sparse_storage`), if any."""
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
        n = len(sparse_names(f.keys()))  # noqa: SIM118 (safe_open is not a mapping)
    return f"; {n} tensors stored as indices + values" if n else ""


def _dtype_counts(checkpoint: Path) -> dict[str, int]:
    """How many tensors of the stored file are in each dtype."""
    from safetensors import safe_open

    counts: dict[str, int] = {}
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            dtype = str(f.get_slice(key).get_dtype())
            counts[dtype] = counts.get(dtype, 0) + 1
    return counts
