"""SAELens 6's on-disk SAE format: export ours to it and import it back (docs/sae.md).

A SAELens SAE directory holds `cfg.json` and `sae_weights.safetensors`. The tensors are the
same as ours, shape for shape: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae],
b_dec [d_in] (and threshold [d_sae] for a JumpReLU). The cfg fields we write, and why:

- `architecture`: "topk"; a BatchTopK SAE is written as "jumprelu" with every latent's
  `threshold` set to our global threshold (what SAELens itself saves a BatchTopK SAE as)
- `d_in`, `d_sae`; `k` (topk only)
- `dtype` "float32", `device` "cpu": how SAELens should load the tensors
- `apply_b_dec_to_input` true: our encoder subtracts b_dec from x first
- `normalize_activations` "none", `reshape_activations` "none": we do neither
- `rescale_acts_by_decoder_norm` false (topk only): our decoder rows are unit norm and TopK
  ranks the raw pre-activations
- `metadata.model_name`: the checkpoint path the SAE was trained on; `metadata.hook_name`:
  our location name (e.g. `1.resid_post`; not a TransformerLens hook name);
  `metadata.hook_layer`: its layer (null for `final_resid`); `metadata.context_size`: the
  model's n_ctx; `metadata.prepend_bos` false (our models have no BOS token);
  `metadata.model_class_name` "sparsecircuits.GPT"
- `metadata.sparsecircuits`: our whole SAE document (format marker, model content hash,
  training config), so that importing an exported SAE gives back exactly what was exported.

Import accepts what export writes (its document is used as it is; `sae import-saelens
--checkpoint` then checks it against that model) and any SAELens "topk" SAE whose other
options are the ones above; such a foreign SAE needs the checkpoint it belongs to (and a
location, unless its hook_name is one of ours).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors

from sparsecircuits.checkpoint import Loaded
from sparsecircuits.errors import SAEError
from sparsecircuits.fileformat import atomic_write_bytes, check_writable_dir, write_json
from sparsecircuits.sae import sae_file
from sparsecircuits.sae.model import TopKSAE

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
PLAIN_OPTIONS = {"apply_b_dec_to_input": True, "normalize_activations": "none",
                 "reshape_activations": "none", "rescale_acts_by_decoder_norm": False}  # fmt: skip
"""SAELens options whose other values our TopK SAE cannot express."""


def _layer(location: str) -> int | None:
    head = location.split(".", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None


def saelens_config(handle: sae_file.SAEHandle) -> dict[str, Any]:
    """The cfg.json of `handle` in SAELens 6's schema (module docstring: every field)."""
    doc, sae = handle.meta, handle.sae
    cfg: dict[str, Any] = {
        "architecture": "jumprelu" if sae.batch_topk else "topk",
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
    }
    if not sae.batch_topk:
        cfg.update(k=sae.k, rescale_acts_by_decoder_norm=False)
    cfg["metadata"] = {
        "model_name": doc["model"].get("path"),
        "hook_name": doc["location"],
        "hook_layer": _layer(doc["location"]),
        "hook_head_index": None,
        "context_size": doc["model"].get("n_ctx"),
        "prepend_bos": False,
        "model_class_name": "sparsecircuits.GPT",
        "sparsecircuits": doc,
    }
    return cfg


def export_saelens(handle: sae_file.SAEHandle, out: Path) -> Path:
    """Write `out/cfg.json` and `out/sae_weights.safetensors`; return `out`."""
    check_writable_dir(out, "--out", SAEError)
    tensors = handle.sae.tensors()
    if handle.sae.batch_topk:
        tensors["threshold"] = tensors["threshold"].expand(handle.sae.d_sae).contiguous()
    atomic_write_bytes(out / WEIGHTS_FILE, save_safetensors(tensors))
    write_json(out / CFG_FILE, saelens_config(handle), indent=2)
    return out


def _read_cfg(directory: Path) -> dict[str, Any]:
    file = directory / CFG_FILE
    try:
        cfg = json.loads(file.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise SAEError(f"{directory} is not a SAELens SAE directory (no {CFG_FILE})") from None
    except (OSError, ValueError, RecursionError) as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        raise SAEError(f"{file} is corrupt: {lines[0]:.200}") from None
    if not isinstance(cfg, dict):
        raise SAEError(f"{file} is corrupt: not a JSON object")
    return cfg


def _check_plain(cfg: dict[str, Any], file: Path) -> str:
    """The architecture, after refusing every option we cannot express."""
    arch = cfg.get("architecture")
    if arch not in ("topk", "jumprelu"):
        raise SAEError(f"{file}: architecture {arch!r:.40} cannot be imported (topk, or the "
                       "jumprelu a BatchTopK SAE is saved as)")  # fmt: skip
    for key, plain in PLAIN_OPTIONS.items():
        if key in cfg and cfg[key] != plain:
            raise SAEError(f"{file}: {key}={cfg[key]!r:.40} is not supported (only {plain!r})")
    return arch


def import_saelens(directory: Path, loaded: Loaded | None = None,
                   location: str | None = None) -> tuple[TopKSAE, dict[str, Any]]:  # fmt: skip
    """The SAE in a SAELens directory and our document for it (module docstring)."""
    directory = Path(directory)
    cfg = _read_cfg(directory)
    cfg_file = directory / CFG_FILE
    arch = _check_plain(cfg, cfg_file)
    weights_file = directory / WEIGHTS_FILE
    try:
        tensors = load_safetensors_bytes(weights_file.read_bytes())
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        raise SAEError(f"{weights_file} is not readable: {lines[0]:.200}") from None
    if arch == "jumprelu":
        threshold = tensors.get("threshold")
        if threshold is None or threshold.ndim != 1 or len(threshold) == 0:
            raise SAEError(f"{weights_file}: a jumprelu SAE needs a threshold [d_sae]")
        if not bool((threshold == threshold[0]).all()):
            raise SAEError(f"{weights_file}: per-latent thresholds are not supported (only the "
                           "single threshold of a BatchTopK SAE)")  # fmt: skip
        tensors["threshold"] = threshold[0].clone()

    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    ours = metadata.get("sparsecircuits")
    if isinstance(ours, dict) and location is None:  # exported by us: back as it was
        doc = dict(ours)
    else:
        if loaded is None:
            raise SAEError(f"{directory} was not exported by sparsecircuits: give the checkpoint "
                           "it belongs to (--checkpoint) and its location (--at)")  # fmt: skip
        if arch == "jumprelu" and not isinstance(ours, dict):
            raise SAEError(f"{cfg_file}: only the jumprelu SAEs sparsecircuits exports (BatchTopK) "
                           "can be imported; other JumpReLU SAEs have per-latent thresholds")  # fmt: skip
        where = location or metadata.get("hook_name")
        if not isinstance(where, str):
            raise SAEError(f"{cfg_file} names no hook; give the location with --at")
        k = cfg.get("k") if arch == "topk" else ours.get("k")
        shape = {"architecture": "batchtopk" if arch == "jumprelu" else "topk",
                 "d_in": cfg.get("d_in"), "d_sae": cfg.get("d_sae"), "k": k}  # fmt: skip
        extra = {"imported_from": str(directory), "saelens_config": cfg}
        doc = sae_file.describe(shape, where, loaded, extra)
    sae = sae_file.build_sae(doc, tensors, weights_file)
    extra_tensors = sorted(set(tensors) - set(sae.tensors()))
    if extra_tensors:
        raise SAEError(f"{weights_file}: unexpected tensors {extra_tensors[:3]}")
    return sae, doc
