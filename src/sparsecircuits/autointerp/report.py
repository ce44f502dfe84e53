"""Summaries of explain results: per-unit lines and the monosemanticity numbers."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

GOOD = 0.8
"""The detection score counted as "clearly interpretable" (fraction of units at or above)."""


def summarize(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """n units, how many scored / inactive / failed, median detection and correlation, and
    the fraction of scored units with detection >= GOOD."""
    results = list(results)
    scored = [r for r in results if r.get("status") == "ok" and r.get("detection") is not None]
    det = [r["detection"] for r in scored]
    corr = [r["correlation"] for r in scored if r.get("correlation") is not None]
    return {
        "units": len(results),
        "scored": len(scored),
        "inactive": sum(r.get("status") == "inactive" for r in results),
        "failed": sum(r.get("status") == "failed" for r in results),
        "median_detection": statistics.median(det) if det else None,
        "fraction_good": sum(d >= GOOD for d in det) / len(det) if det else None,
        "median_correlation": statistics.median(corr) if corr else None,
        "detection": det,
    }


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def unit_lines(results: dict[str, dict[str, Any]], show: int) -> list[str]:
    """The `show` best-scored units, then any failures, one line each."""
    ranked = sorted(results.values(), key=lambda r: -(r.get("detection") or 0.0))
    lines = [f"{r['unit']:28} det {_num(r.get('detection'))} corr {_num(r.get('correlation'))}  "
             f"{r.get('explanation') or r.get('status')}" for r in ranked[:show]]  # fmt: skip
    lines += [f"{r['unit']:28} FAILED: {r.get('error')}" for r in ranked
              if r.get("status") == "failed"][:show]  # fmt: skip
    return lines


def summary_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    s = summarize(results.values())
    return [f"{s['units']} units: {s['scored']} scored, {s['inactive']} inactive, "
            f"{s['failed']} failed; median detection {_num(s['median_detection'])}, "
            f"fraction >= {GOOD} {_num(s['fraction_good'])}, median correlation "
            f"{_num(s['median_correlation'])}"]  # fmt: skip
