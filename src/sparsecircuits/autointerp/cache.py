"""The explanation cache: one JSON file per (model content hash, explainer and its settings).

    <cache_dir>/<content_hash>/<explainer>-<settings hash>.json
        format, format_version        "sparsecircuits.explanations", 1
        model                         {content_hash, path}
        explainer                     {kind, settings...}: what produced the results (never
                                      an API key: only the name of the variable holding it)
        units                         {unit name: result}, a result as `run.explain_units`
                                      returns it (explanation, detection, correlation, status)

Results with status "failed" are kept (a report shows them) but a re-run tries them again.
Each save rewrites the file atomically (`fileformat.write_json`). `cached_explanations` is the
reader the viewer uses (docs/autointerp.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sparsecircuits.autointerp import AutointerpError
from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.fileformat import dumps_strict, read_versioned_json, write_json

FORMAT = "sparsecircuits.explanations"
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "sparsecircuits" / "explanations"


def settings_key(explainer: dict[str, Any]) -> str:
    """`<kind>-<12 hex digits>`: a file name for one explainer with its settings."""
    digest = hashlib.sha256(dumps_strict(explainer, indent=None).encode()).hexdigest()[:12]
    return f"{explainer['kind']}-{digest}"


class ExplanationCache:
    """The results of one explainer on one model, read at open and saved on demand."""

    def __init__(self, cache_dir: str | Path | None, content_hash: str, model_path: str,
                 explainer: dict[str, Any]):  # fmt: skip
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.path = root / content_hash / f"{settings_key(explainer)}.json"
        self.doc: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model": {"content_hash": content_hash, "path": model_path},
            "explainer": explainer, "units": {},
        }  # fmt: skip
        if self.path.exists():
            old = read_versioned_json(self.path, FORMAT, FORMAT_VERSION, "explanation cache",
                                      AutointerpError)  # fmt: skip
            if not isinstance(old.get("units"), dict):
                raise AutointerpError(f"{self.path} is corrupt: 'units' is not an object")
            self.doc["units"] = old["units"]

    def done(self, unit: str) -> dict[str, Any] | None:
        """The cached result of `unit` unless it is missing or failed."""
        found = self.doc["units"].get(unit)
        return found if isinstance(found, dict) and found.get("status") != "failed" else None

    def put(self, unit: str, result: dict[str, Any]) -> None:
        self.doc["units"][unit] = result

    def save(self) -> Path:
        try:
            return write_json(self.path, self.doc)
        except OSError as exc:
            raise AutointerpError(f"cannot write {self.path}: {exc.strerror}") from None


def cached_explanations(content_hash: str, unit: str,
                        cache_dir: str | Path | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Every cached result for one unit of the model with this content hash, one per explainer
    (newest file first), each with an `explainer` key; [] when there is none.

    For the viewer: `cached_explanations(loaded.content_hash, "1.mlp.post_act.17")`. Unreadable
    cache files are skipped, never an error: the panel then simply shows no explanation.
    """
    return cached_units(content_hash, cache_dir).get(unit, [])


def cache_files(content_hash: str, cache_dir: str | Path | None = None) -> list[Path]:
    """The cache files of the model with this content hash, newest first."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory = root / content_hash
    if not directory.is_dir():
        return []
    stamped = []
    for file in directory.glob("*.json"):
        try:
            stamped.append((file.stat().st_mtime_ns, file))
        except OSError:  # removed meanwhile
            continue
    return [file for _, file in sorted(stamped, key=lambda x: x[0], reverse=True)]


def cached_units(content_hash: str,
                 cache_dir: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """`cached_explanations` of every cached unit at once ({unit: results, newest first}): one
    read of each cache file, for a circuit's or an SAE's many units."""
    out: dict[str, list[dict[str, Any]]] = {}
    for file in cache_files(content_hash, cache_dir):
        try:
            doc = read_versioned_json(file, FORMAT, FORMAT_VERSION, "explanation cache",
                                      AutointerpError)  # fmt: skip
        except (SparseCircuitsError, OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        units = doc.get("units")
        if not isinstance(units, dict):
            continue
        for unit, result in units.items():
            if isinstance(result, dict):
                out.setdefault(unit, []).append({**result, "explainer": doc.get("explainer")})
    return out
