"""Score fusion of ranked lists from several retrievers (e.g. compositional and dense)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal

Ranked = Sequence[tuple[str, float]]
FusionMethod = Literal["rrf", "weighted"]


def minmax(values: Sequence[float]) -> list[float]:
    """Scale to [0, 1]; all-equal values (one candidate, ties) all become 1."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    return [1.0] * len(values) if hi - lo < 1e-12 else [(v - lo) / (hi - lo) for v in values]


def reciprocal_rank_fusion(
    rankings: Mapping[str, Ranked], k: int = 60, weights: Mapping[str, float] | None = None
) -> list[tuple[str, float]]:
    """RRF (Cormack et al. 2009): ``sum_r w_r / (k + rank_r(d))`` with ranks from 1; ties broken by id."""
    scores: dict[str, float] = defaultdict(float)
    for name, ranked in rankings.items():
        w = 1.0 if weights is None else weights.get(name, 0.0)
        for rank, (doc, _) in enumerate(ranked, start=1):
            scores[doc] += w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def weighted_fusion(rankings: Mapping[str, Ranked], weights: Mapping[str, float] | None = None) -> list[tuple[str, float]]:
    """Weighted sum of min-max normalised scores; a document missing from a list scores 0 there."""
    scores: dict[str, float] = defaultdict(float)
    for name, ranked in rankings.items():
        if not ranked:
            continue
        w = 1.0 if weights is None else weights.get(name, 0.0)
        for (doc, _), scaled in zip(ranked, minmax([s for _, s in ranked])):
            scores[doc] += w * scaled
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def fuse(
    rankings: Mapping[str, Ranked], method: FusionMethod = "rrf", weights: Mapping[str, float] | None = None,
    k: int = 60,
) -> list[tuple[str, float]]:
    if method == "rrf":
        return reciprocal_rank_fusion(rankings, k=k, weights=weights)
    return weighted_fusion(rankings, weights=weights)
