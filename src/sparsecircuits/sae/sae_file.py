"""SAE files: the one reader and writer of `sae.safetensors` and its trainer snapshot.

An SAE directory (docs/sae.md):
    sae.safetensors      W_enc, W_dec, b_enc, b_dec (+ threshold for BatchTopK); its
                         safetensors metadata holds, under the key `sparsecircuits.sae`, a JSON
                         document with the format marker and version, the architecture, d_in,
                         d_sae, k, the hook location, and the model it was trained on (path
                         and content hash), the training config and its last metrics
    trainer.safetensors  a resumable snapshot: the same tensors plus Adam's moments and the
                         tokens since each latent last fired; metadata the same JSON + step

Each file is one atomic write (`fileformat.atomic_write`), and each is complete in itself, so
no pair of files has to agree: a kill between the two writes leaves a good SAE and a good
(possibly newer) snapshot that `--resume` continues from. The JSON lives inside the weights
file, not beside it, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import Tensor

from sparsecircuits.checkpoint import Loaded, check_tensor
from sparsecircuits.errors import CheckpointError, SAEError
from sparsecircuits.fileformat import atomic_write_bytes, dumps_strict, read_versioned_json
from sparsecircuits.sae.model import TopKSAE

FORMAT = "sparsecircuits.sae"
FORMAT_VERSION = 1
TRAINER_FORMAT = "sparsecircuits.sae-trainer"
META_KEY = "sparsecircuits.sae"
SAE_FILE = "sae.safetensors"
TRAINER_FILE = "trainer.safetensors"
ARCHITECTURES = ("topk", "batchtopk")


@dataclass
class SAEHandle:
    """An SAE ready to use, with the document that says what it was trained on."""

    sae: TopKSAE
    """The autoencoder (eval mode, CPU until moved)."""
    meta: dict[str, Any]
    """The JSON document of the file (format, location, model, train config, metrics)."""
    path: Path
    """The `sae.safetensors` it was read from."""

    @property
    def location(self) -> str:
        return self.meta["location"]


def sae_path(path: str | Path) -> Path:
    """`path/sae.safetensors` for an SAE directory, else `path` itself."""
    p = Path(path)
    return p / SAE_FILE if p.is_dir() else p


def shape_of(sae: TopKSAE) -> dict[str, Any]:
    """The document fields that say how to build `sae`."""
    arch = "batchtopk" if sae.batch_topk else "topk"
    return {"architecture": arch, "d_in": sae.d_in, "d_sae": sae.d_sae, "k": sae.k}


def describe(shape: dict[str, Any], location: str, loaded: Loaded, extra: dict[str, Any]) -> dict:
    """The JSON document of an SAE (`shape_of`) at `location` of the checkpoint `loaded`."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **shape,
        "location": location,
        "model": {"path": str(loaded.path), "content_hash": loaded.content_hash,
                  "step": loaded.meta.get("step"), "n_ctx": loaded.config.model.n_ctx},
        **extra,
    }  # fmt: skip


def _encode(tensors: dict[str, Tensor], doc: dict[str, Any]) -> bytes:
    return save_safetensors(tensors, metadata={META_KEY: dumps_strict(doc, indent=None)})


def save_sae(directory: str | Path, sae: TopKSAE, doc: dict[str, Any]) -> Path:
    """Write `directory/sae.safetensors` atomically; `doc` from `describe` (checked here)."""
    file = Path(directory) / SAE_FILE
    check_doc(doc, file)
    return atomic_write_bytes(file, _encode(sae.tensors(), doc))


def save_trainer(directory: Path, tensors: dict[str, Tensor], doc: dict[str, Any]) -> Path:
    """Write the resumable snapshot: `tensors` (SAE's as `sae.*` + optimizer's) and `doc`."""
    doc = {**doc, "format": TRAINER_FORMAT}
    return atomic_write_bytes(directory / TRAINER_FILE, _encode(tensors, doc))


def _read(file: Path, fmt: str, kind: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The checked JSON document and the tensors of one of our safetensors files."""
    if not file.is_file():
        raise SAEError(f"{file} does not exist" if not file.exists() else f"{file} is not a file")
    try:
        with safe_open(str(file), "pt") as f:  # one open: metadata and tensors agree
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        raise SAEError(f"{file} is not a readable safetensors file: {lines[0]:.200}") from None
    text = meta.get(META_KEY)
    if text is None:
        raise SAEError(f"{file} is not a sparsecircuits {kind} (no '{META_KEY}' metadata)")
    doc = read_versioned_json(file, fmt, FORMAT_VERSION, kind, SAEError, content=text.encode())
    return doc, tensors


def check_doc(doc: dict[str, Any], where: Path) -> None:
    """SAEError unless the document's sizes and names are usable."""
    arch = doc.get("architecture")
    if arch not in ARCHITECTURES:
        raise SAEError(f"{where}: unknown SAE architecture {arch!r:.40}")
    for key in ("d_in", "d_sae", "k"):
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SAEError(f"{where}: {key} must be an integer >= 1, got {value!r:.40}")
    if doc["k"] >= doc["d_sae"]:
        raise SAEError(f"{where}: k={doc['k']} must be smaller than d_sae={doc['d_sae']}")
    if not isinstance(doc.get("location"), str):
        raise SAEError(f"{where}: the SAE names no location")
    model = doc.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("content_hash"), str):
        raise SAEError(f"{where}: the SAE names no model content hash")


def build_sae(doc: dict[str, Any], tensors: dict[str, Tensor], where: Path,
              prefix: str = "") -> TopKSAE:  # fmt: skip
    """The SAE described by `doc` with weights `tensors[prefix + name]`, every one checked."""
    check_doc(doc, where)
    sae = TopKSAE(
        doc["d_in"], doc["d_sae"], doc["k"], batch_topk=doc["architecture"] == "batchtopk"
    )
    expected = dict(sae.tensors())
    for name, like in expected.items():
        tensor = tensors.get(prefix + name)
        if tensor is None:
            raise SAEError(f"{where}: tensor {prefix + name} is missing")
        try:
            check_tensor(tensor, prefix + name, like.shape, where)
        except CheckpointError as exc:
            raise SAEError(str(exc)) from None
    with torch.no_grad():
        for name in expected:
            getattr(sae, name).copy_(tensors[prefix + name])
    return sae.eval()


def load_sae(path: str | Path) -> SAEHandle:
    """Read an SAE directory or file; SAEError (one line) for anything unusable."""
    file = sae_path(path)
    doc, tensors = _read(file, FORMAT, "SAE")
    sae = build_sae(doc, tensors, file)
    extra = sorted(set(tensors) - set(sae.tensors()))
    if extra:
        raise SAEError(f"{file}: unexpected tensors {extra[:3]}")
    return SAEHandle(sae, doc, file)


def load_trainer(directory: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The snapshot `--resume` continues from: its document and tensors."""
    file = directory / TRAINER_FILE
    if not file.exists():
        raise SAEError(f"{directory} holds no {TRAINER_FILE}, so there is nothing to resume")
    doc, tensors = _read(file, TRAINER_FORMAT, "SAE trainer snapshot")
    step = doc.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise SAEError(f"{file} is corrupt: 'step' must be an integer >= 0, got {step!r:.40}")
    return doc, tensors


def check_fits(handle: SAEHandle, loaded: Loaded, allow_other_model: bool = False) -> None:
    """SAEError unless the SAE was trained on this model's weights and fits its location."""
    from sparsecircuits.sae.activations import check_location

    want, have = handle.meta["model"]["content_hash"], loaded.content_hash
    if want != have and not allow_other_model:
        raise SAEError(
            f"{handle.path} was trained on another model (sha256 {want[:12]}), not "
            f"{loaded.path} (sha256 {have[:12]})"
        )
    width = check_location(loaded.model, handle.location)
    if width != handle.sae.d_in:
        raise SAEError(f"{handle.path} encodes {handle.sae.d_in}-wide activations but "
                       f"{handle.location} of {loaded.path} is {width} wide")  # fmt: skip


def check_location_matches(handle: SAEHandle, location: str | None) -> None:
    """SAEError if the caller asked for another location than the SAE's."""
    if location is not None and location != handle.location:
        raise SAEError(f"{handle.path} was trained at {handle.location}, not {location}")


def doc_summary(doc: dict[str, Any]) -> str:
    """One line naming an SAE: architecture, sizes and location."""
    return (f"{doc['architecture']} SAE d_in {doc['d_in']} d_sae {doc['d_sae']} k {doc['k']} "
            f"at {doc['location']}")  # fmt: skip
