"""Our JSON file formats carry a `format` marker and a `format_version`; one reader checks both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsecircuits.errors import SparseCircuitsError


def read_versioned_json(
    file: Path, fmt: str, version: int, kind: str, error: type[SparseCircuitsError],
    where: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The JSON object in `file`, checked to be a `kind` of `fmt` at `version`.

    Raises `error` with one line naming the problem: unreadable or corrupt JSON, a missing
    marker (a foreign file), or another format version. `where` names the artifact in messages
    (a checkpoint directory, say); it defaults to the file itself.
    """
    where = file if where is None else where
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{file} is corrupt: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{where} is not a sparsecircuits {kind} ({file.name} has no '{fmt}' marker)")
    if doc.get("format_version") != version:
        raise error(
            f"{where} has {kind} format version {doc.get('format_version')}, "
            f"this sparsecircuits reads version {version}"
        )
    return doc
