"""One scorer for every unit and explainer: detection on held-out contexts (docs/autointerp.md).

The held-out windows are cut into spans of `span` tokens. A span is *activating* when the
unit's (oriented) activation somewhere in it reaches the threshold

    tau = median + 0.4 * (q99.9 - median)        (median, q99.9 over the explain split)

which reads "clearly above its usual value" for a sparse node (median 0) and a dense neuron
alike. The scorer samples up to `contexts` activating and as many non-activating spans (seeded
by the unit's name), asks the explainer's judge which spans the explanation says should
activate, and reports the balanced accuracy (TPR + TNR) / 2: 0.5 is chance, 1.0 perfect.
For the offline explainer it adds the correlation between the predicate and the activation on
every held-out token.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

THRESHOLD_FRACTION = 0.4
"""tau's place between the median and the 99.9th percentile of the explain activations."""


@dataclass(frozen=True)
class Orientation:
    """Which sign of a unit is its "firing" side, and the threshold of activating."""

    sign: float  # +1 or -1: explain -sign * act when the negative tail is the larger one
    threshold: float  # tau, on the oriented activation
    spread: float  # q99.9 - median of the oriented activation (0: a dead unit)


def orient(acts: Tensor) -> list[Orientation]:
    """Orientation of every column of explain activations [M, U]."""
    levels = torch.tensor([0.001, 0.5, 0.999], dtype=torch.float64)
    step = max(1, (1 << 23) // max(1, acts.shape[0]))  # torch.quantile refuses > 2^24 values
    q = torch.cat([torch.quantile(acts[:, i : i + step].double(), levels, dim=0)
                   for i in range(0, acts.shape[1], step)], dim=1)  # [3, U]  # fmt: skip
    lo, med, hi = q[0].tolist(), q[1].tolist(), q[2].tolist()
    out = []
    for lo_u, med_u, hi_u in zip(lo, med, hi, strict=True):
        sign = 1.0 if hi_u - med_u >= med_u - lo_u else -1.0
        top, mid = (hi_u, med_u) if sign > 0 else (-lo_u, -med_u)
        spread = top - mid
        out.append(Orientation(sign, mid + THRESHOLD_FRACTION * spread, spread))
    return out


def span_max(acts: Tensor, span: int) -> Tensor:
    """Max over consecutive spans: [n, L] -> [n, L // span] (a ragged tail is dropped)."""
    n, length = acts.shape
    k = length // span
    return acts[:, : k * span].reshape(n, k, span).amax(-1)


def sample_contexts(active: np.ndarray, n: int, unit: str, seed: int) -> tuple[np.ndarray, ...]:
    """Up to n activating and n non-activating span indices (flat), seeded by the unit."""
    rng = np.random.default_rng([seed, zlib.crc32(unit.encode())])
    pos, neg = np.flatnonzero(active), np.flatnonzero(~active)
    pos = rng.permutation(pos)[:n]
    neg = rng.permutation(neg)[:n]
    return np.sort(pos), np.sort(neg)


def balanced_accuracy(said_pos: np.ndarray, said_neg: np.ndarray) -> float:
    """(TPR + TNR) / 2 from the judge's answers on activating and non-activating contexts."""
    tpr = float(np.mean(said_pos)) if len(said_pos) else 0.0
    tnr = 1.0 - float(np.mean(said_neg)) if len(said_neg) else 0.0
    return (tpr + tnr) / 2


def correlation(x: Tensor, y: Tensor) -> float | None:
    """Pearson correlation of two 1-d tensors (None when either is constant)."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = float(x.norm() * y.norm())
    return float((x * y).sum()) / denom if denom > 0 else None


@dataclass(frozen=True)
class HeldOut:
    """The held-out contexts of one unit: which spans activate, and the sampled ones."""

    active: np.ndarray  # [n_rows * spans_per_row] bool
    pos: np.ndarray  # sampled activating span indices
    neg: np.ndarray  # sampled non-activating span indices
    spans_per_row: int


def held_out_contexts(acts_h: Tensor, threshold: float, span: int, n: int, unit: str,
                      seed: int) -> HeldOut:  # fmt: skip
    """Spans of the oriented held-out activations acts_h [n_rows, L], sampled for detection."""
    peaks = span_max(acts_h, span)  # [n_rows, k]
    active = (peaks >= threshold).flatten().numpy()
    pos, neg = sample_contexts(active, n, unit, seed)
    return HeldOut(active, pos, neg, peaks.shape[1])


def span_location(held: HeldOut, s: int, span: int) -> tuple[int, int]:
    """Span index -> (held-out row, first position within the row's kept positions)."""
    row, j = divmod(int(s), held.spans_per_row)
    return row, j * span
