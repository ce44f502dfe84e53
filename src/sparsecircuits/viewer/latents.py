"""SAE latents as units of the viewer and the report: the latent page and its interventions.

A latent is shown like a node (docs/sae.md, "Latents in the viewer"):

- snippets: the top-activating positions of the scanned pretraining windows (the same windows
  and snippet machinery as a node panel, `node_stats.corpus_stats`), each token coloured by
  the latent. A TopK latent is never negative, so the "bottom" snippets are the positions of
  the most negative encoder pre-activation (what argues hardest against the latent), coloured
  by that pre-activation;
- the latent's activation histogram and the density histogram of all latents (log10 of the
  fraction of tokens each fires on) with this latent marked;
- the decoder direction's direct logit effect: W_U (g * d) / rms, with g the final RMSNorm's
  weight and rms the median RMS of the final residual stream over the scanned tokens. That is
  the norm linearised at a typical token: its division by the residual's RMS is frozen at a
  typical value (and the projection of its Jacobian ignored), and later layers are skipped;
- the latent at the choice position of a task's examples, per class;
- interventions (`sae.steering.latent_hook`: only the latent moves, the SAE's error is kept):
  clamp to x times the latent's max over the scanned windows, clamp to a value, scale, zero;
  scored on a task's examples or used while generating.

Every function returns JSON-ready dicts; the app and the static report share them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparsecircuits.errors import SAEError, TaskError
from sparsecircuits.model.gpt import FINAL_RESID
from sparsecircuits.sae.activations import check_location
from sparsecircuits.sae.sae_file import SAEHandle, doc_summary, load_sae
from sparsecircuits.sae.steering import check_latent, latent_hook, resolve_op
from sparsecircuits.viewer.interventions import score
from sparsecircuits.viewer.node_stats import corpus_stats, task_activations
from sparsecircuits.viewer.panels import task_examples
from sparsecircuits.viewer.steer import check_settings
from sparsecircuits.viewer.workspace import ModelHandle

DENSITY_BINS = 30
LOGIT_TOKENS = 10
REPORT_LATENTS = 12
"""Latents a report precomputes pages for: those that separate the task's classes most."""


class _OneUnit:
    """The part of `CorpusActivations` that `corpus_stats` reads, for one latent's values."""

    def __init__(self, tokens: Tensor, values: Tensor, cfg):
        self.tokens, self.values, self.cfg = tokens, values, cfg

    def node(self, location: str, index: int) -> Tensor:
        return self.values


@dataclass
class LatentScan:
    """The SAE's input on the model's scanned pretraining windows, and per-latent summaries."""

    x: Tensor
    """The activations the SAE encodes [N, T, d_in] at its location."""
    max: Tensor
    """Each latent's largest value over the windows [d_sae]."""
    density: Tensor
    """Fraction of tokens each latent is nonzero on [d_sae]."""
    final_rms: float
    """Median RMS of the final residual stream: the norm's scale the logit effect freezes."""


@torch.no_grad()
def scan(handle: ModelHandle, sae: SAEHandle) -> LatentScan:
    """One forward per batch of the handle's windows, recording the SAE's input and the final
    residual stream together."""
    model, tokens = handle.model, handle.corpus.tokens
    device = next(model.parameters()).device
    xs, rms = [], []
    got: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(x: Tensor) -> Tensor:
            got[name] = x.detach().float().cpu()
            return x

        return hook

    for start in range(0, len(tokens), handle.stats_cfg.batch_size):
        model(tokens[start : start + handle.stats_cfg.batch_size].to(device),
              {sae.location: keep("x"), FINAL_RESID: keep("final")})  # fmt: skip
        xs.append(got["x"])
        rms.append(got["final"].pow(2).mean(-1).add(model.final_norm.eps).sqrt().flatten())
    x = torch.cat(xs)  # [N, T, d_in]
    z = _encode(sae, x)  # [N, T, d_sae]
    flat = z.flatten(0, 1)
    return LatentScan(x=x, max=flat.max(0).values, density=(flat > 0).double().mean(0).float(),
                      final_rms=float(torch.cat(rms).median()))  # fmt: skip


def _encode(sae: SAEHandle, x: Tensor) -> Tensor:
    with torch.no_grad():
        return sae.sae.cpu().encode(x)


class LatentSource:
    """The SAEs a viewer was started with (`serve --sae`), by id, with their scans per model."""

    def __init__(self, paths: Iterable[str | Path] = ()):
        self.saes: dict[str, SAEHandle] = {}
        for path in paths:
            handle = load_sae(path)  # SAEError (one line) for a missing or corrupt file
            name = handle.path.parent.name
            ref, i = name, 2
            while ref in self.saes:
                ref, i = f"{name}-{i}", i + 1
            self.saes[ref] = handle
        self._scans: weakref.WeakKeyDictionary[ModelHandle, dict[str, LatentScan]] = (
            weakref.WeakKeyDictionary())

    def get(self, ref: str) -> SAEHandle:
        from sparsecircuits.viewer.workspace import NotFoundError

        if ref not in self.saes:
            known = ", ".join(self.saes) or "none: start the viewer with --sae"
            raise NotFoundError(f"unknown SAE {ref!r:.80} (loaded: {known})")
        return self.saes[ref]

    def scan(self, handle: ModelHandle, ref: str) -> LatentScan:
        per_model = self._scans.setdefault(handle, {})
        if ref not in per_model:
            per_model[ref] = scan(handle, self.get(ref))
        return per_model[ref]

    def listing(self) -> list[dict[str, Any]]:
        return [{"id": ref, "summary": doc_summary(h.meta), "location": h.location,
                 "d_sae": h.sae.d_sae, "k": h.sae.k,
                 "model_path": h.meta["model"].get("path"),
                 "model_hash": h.meta["model"]["content_hash"][:12]}
                for ref, h in self.saes.items()]  # fmt: skip


def check_pair(sae: SAEHandle, handle: ModelHandle) -> None:
    """SAEError unless the SAE was trained on this model's weights at a location it has (the
    message names the model as the viewer does, never by an absolute path)."""
    want, have = sae.meta["model"]["content_hash"], handle.loaded.content_hash
    if want != have:
        raise SAEError(f"SAE {sae.path.parent.name} was trained on another model (sha256 "
                       f"{want[:12]}), not {handle.ref} (sha256 {have[:12]})")  # fmt: skip
    width = check_location(handle.model, sae.location)
    if width != sae.sae.d_in:
        raise SAEError(f"SAE {sae.path.parent.name} encodes {sae.sae.d_in}-wide activations but "
                       f"{sae.location} of {handle.ref} is {width} wide")  # fmt: skip


def density_histogram(density: Tensor, latent: int) -> dict[str, Any]:
    """log10(density) of every latent that fired, in bins, with `latent`'s own value."""
    fired = density[density > 0].double().log10()
    own = float(density[latent])
    out: dict[str, Any] = {"latents": int(density.numel()), "dead": int((density == 0).sum()),
                           "this": math.log10(own) if own > 0 else None, "this_density": own}
    if fired.numel() == 0:
        return {**out, "edges": [], "counts": []}
    lo, hi = float(fired.min()), float(fired.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(fired, bins=DENSITY_BINS, min=lo, max=hi)
    edges = torch.linspace(lo, hi, DENSITY_BINS + 1)
    return {**out, "edges": [round(float(e), 4) for e in edges],
            "counts": [int(c) for c in counts]}  # fmt: skip


def logit_effect(handle: ModelHandle, sae: SAEHandle, latent: int, final_rms: float,
                 candidates: list[int] = ()) -> dict[str, Any]:  # fmt: skip
    """Top promoted / suppressed tokens of the decoder direction through the final norm."""
    model, strings = handle.model, handle.strings
    with torch.no_grad():
        direction = sae.sae.W_dec[latent].detach().float().cpu()  # [d_in]
        gain = model.final_norm.weight.detach().float().cpu()
        effect = model.unembed.weight.detach().float().cpu() @ (gain * direction) / final_rms
    order = effect.argsort(descending=True)

    def item(i: int) -> dict[str, Any]:
        return {"token": strings[i], "value": float(f"{float(effect[i]):.4g}")}

    return {
        "direct": True,
        "note": f"per unit of the latent: W_U (g * d) / rms, the final RMSNorm linearised at the "
                f"median RMS of the final residual stream ({final_rms:.3g}); later layers "
                "skipped",
        "up": [item(i) for i in order[:LOGIT_TOKENS].tolist()],
        "down": [item(i) for i in order.flip(0)[:LOGIT_TOKENS].tolist()],
        "candidates": [item(i) for i in candidates],
    }  # fmt: skip


@torch.no_grad()
def task_latents(handle: ModelHandle, sae: SAEHandle, task: str, n: int) -> tuple[Tensor, Any]:
    """Every latent on the task batch [N, T, d_sae], and the batch."""
    from sparsecircuits.sae.activations import record

    batch, _ = handle.task_batch(task, n)
    x = record(handle.model, batch.tokens, sae.location).float().cpu()
    return _encode(sae, x), batch


def latent_panel(handle: ModelHandle, sources: LatentSource, ref: str, latent: int,
                 task: str | None = None, n: int = 32,
                 task_z: Tensor | None = None) -> dict[str, Any]:  # fmt: skip
    """Everything the latent page shows. `task_z`: `task_latents` when already computed."""
    sae = sources.get(ref)
    check_latent(sae, latent)
    check_pair(sae, handle)
    found = sources.scan(handle, ref)
    with torch.no_grad():
        pre = sae.sae.cpu().pre_acts(found.x)[..., latent]  # [N, T]
    z = _encode(sae, found.x)[..., latent]
    cfg, tokens, location = handle.stats_cfg, handle.corpus.tokens, sae.location
    corpus = corpus_stats(_OneUnit(tokens, z, cfg), handle.strings, location, latent)
    against = corpus_stats(_OneUnit(tokens, pre.clamp(max=0), cfg), handle.strings, location,
                           latent)  # fmt: skip
    corpus["bottom"] = against["bottom"]
    corpus["bottom_scale"] = against["scale"]
    panel: dict[str, Any] = {
        "sae": ref, "latent": latent, "location": location, "model": handle.ref,
        "sae_summary": doc_summary(sae.meta), "d_sae": sae.sae.d_sae,
        "corpus": corpus, "max": float(f"{float(found.max[latent]):.4g}"),
        "density": density_histogram(found.density, latent),
        "task": None, "task_error": None,
    }  # fmt: skip
    candidates: list[int] = []
    if task:
        try:
            if task_z is None:
                task_z, batch = task_latents(handle, sae, task, n)
            else:
                batch, _ = handle.task_batch(task, n)
            _, class_names = handle.task_batch(task, n)
        except TaskError as exc:
            panel["task_error"] = str(exc)
        else:
            panel["task"] = {"name": task, **task_activations(
                handle.model, batch, class_names, handle.strings, location, latent,
                acts=task_z[..., latent])}  # fmt: skip
            candidates = sorted(set(batch.correct_id.tolist()) | set(batch.wrong_id.tolist()))[:4]
    panel["logit_effect"] = logit_effect(handle, sae, latent, found.final_rms, candidates)
    return panel


def _hook(sources: LatentSource, handle: ModelHandle, ref: str, latent: int, op: str,
          value: float | None) -> tuple[dict, dict[str, Any]]:  # fmt: skip
    """The hook map of one latent intervention and how results name it."""
    sae = sources.get(ref)
    check_latent(sae, latent)
    check_pair(sae, handle)
    peak = float(sources.scan(handle, ref).max[latent]) if op == "clamp_max" else None
    hook_op, hook_value = resolve_op(op, value, peak)
    hooks = {sae.location: latent_hook(sae.sae, latent, hook_op, hook_value)}
    shown = {"node": f"latent {latent} of {ref}",
             "op": "ablate_zero" if hook_op == "ablate" else hook_op,
             "value": None if hook_value is None else float(f"{hook_value:.4g}"),
             "request": {"op": op, "value": value}}  # fmt: skip
    return hooks, shown


def latent_intervention(handle: ModelHandle, sources: LatentSource, ref: str, latent: int,
                        op: str, value: float | None, task: str, n: int = 32,
                        baseline: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Task loss, accuracy and p(candidates) without and with the intervention (full model),
    in the document `panels.intervention_result` returns, so the front end shows it alike."""
    hooks, shown = _hook(sources, handle, ref, latent, op, value)
    batch, _ = handle.task_batch(task, n)
    result = {
        "interventions": [shown],
        "baseline": baseline or score(handle.model, batch, None),
        "intervened": score(handle.model, batch, hooks),
        "task": task, "n": len(batch), "mean_source": None, "mode": "model",
    }  # fmt: skip
    if baseline is None:
        result["examples"] = task_examples(handle, task, n)
    return result


def latent_steer(handle: ModelHandle, sources: LatentSource, ref: str, latent: int, op: str,
                 value: float | None, prompt: str, tokens: int = 32,
                 temperature: float = 0.0, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Two generations, without and with the intervention at every position."""
    from sparsecircuits.train.sampling import generate_text

    check_settings(prompt, tokens, temperature, None, seed)
    hooks, shown = _hook(sources, handle, ref, latent, op, value)
    plain = generate_text(handle.loaded, prompt, tokens, temperature, None, seed)
    steered = generate_text(handle.loaded, prompt, tokens, temperature, None, seed, hooks)
    return {"prompt": prompt, "plain": plain, "steered": steered, "interventions": [shown]}


def report_latents(handle: ModelHandle, sae_path: str | Path, task: str | None,
                   n: int = 32) -> dict[str, Any]:  # fmt: skip
    """What a report shows of an SAE: pages of the latents that separate the task's classes
    most (difference of class means at the choice position), each zeroed and clamped to 2x
    its max on the task."""
    sources = LatentSource([sae_path])
    ref = next(iter(sources.saes))
    sae = sources.saes[ref]
    check_pair(sae, handle)
    found = sources.scan(handle, ref)
    task_z = None
    if task:
        try:
            task_z, batch = task_latents(handle, sae, task, n)
        except TaskError:
            task, task_z = None, None
    if task_z is not None:
        last = task_z[torch.arange(len(batch)), batch.lengths - 1]  # [N, d_sae]
        means = [last[batch.label == c].mean(0) if (batch.label == c).any()
                 else torch.zeros(sae.sae.d_sae) for c in (0, 1)]  # fmt: skip
        order = (means[0] - means[1]).abs().argsort(descending=True)
    else:
        order = found.max.argsort(descending=True)
    chosen = [int(i) for i in order[:REPORT_LATENTS].tolist()]
    panels = {str(i): latent_panel(handle, sources, ref, i, task, n, task_z) for i in chosen}
    results: dict[str, dict[str, Any]] = {}
    if task:
        base = score(handle.model, handle.task_batch(task, n)[0], None)
        for i in chosen:
            results[str(i)] = {
                op: latent_intervention(handle, sources, ref, i, op, value, task, n, base)
                for op, value in (("ablate", None), ("clamp_max", 2.0))
            }
    return {"sae": ref, "summary": doc_summary(sae.meta), "order": chosen,
            "chosen_by": "class separation on " + task if task else "max activation",
            "panels": panels, "interventions": results}  # fmt: skip

