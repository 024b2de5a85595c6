"""Compositional search (paper Eq. 2): score videos by how well their components cover the sub-queries.

For sub-query ``l`` and video ``V``, ``s_l(V) = max_{e in E_V} cos(q_l, e)`` over the video's object and
relation components. The video score combines them over the positive sub-queries ``P`` and penalises the
negated ones ``N``::

    mean:    base = sum_P w_l s_l / sum_P w_l
    min:     base = min_P s_l                                  (weights ignored: a strict conjunction)
    softmin: base = -tau * log( sum_P (w_l / sum_P w) * exp(-s_l / tau) )
             (between min and the weighted mean: -> min as tau -> 0, -> mean as tau -> inf)
    score = base - lambda * sum_N w_l * max(0, s_l - beta)

with ``base = 0`` when every sub-query is negated, ``lambda = negation_weight`` and ``beta = negation_margin``.

Candidates come from the faiss index: each positive sub-query fetches its ``candidate_k`` nearest components,
and every video hit by any of them is then rescored *exactly* against all of its components (vectors read
back from the index), so a candidate missing from one sub-query's hit list still gets its true maximum. A
video no positive sub-query reached is not scored (its similarity to each sub-query is below that sub-query's
``candidate_k``-th hit).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, Field

from twinseek.config import AggregationName, RetrievalSettings
from twinseek.retrieval.catalogue import CatalogIndex
from twinseek.retrieval.components import ComponentIndex
from twinseek.retrieval.encoders import ComponentEncoders

try:  # the decomposer's model, when present; any object with text/weight/negated is accepted
    from twinseek.retrieval.decompose import SubQuery
except ImportError:  # pragma: no cover - decompose.py is written in parallel

    class SubQuery(BaseModel):  # type: ignore[no-redef]
        text: str
        weight: float = Field(1.0, gt=0, le=1)
        negated: bool = False


logger = logging.getLogger(__name__)

__all__ = ["SubQuery", "SubQueryLike", "ComponentMatch", "CompositionalHit", "aggregate", "CompositionalSearch"]


class SubQueryLike(Protocol):
    text: str
    weight: float
    negated: bool


class ComponentMatch(BaseModel):
    """The best-matching component of one video for one sub-query."""

    subquery: str
    negated: bool
    weight: float
    similarity: float = Field(description="Cosine of the sub-query and the component (0 with no component).")
    component_id: int | None = None
    kind: str | None = Field(None, description="object | relation | scene | text | gloss | speech")
    text: str | None = None
    track_ids: list[int] = Field(default_factory=list, description="Subject (and object) track ids.")
    frame_start: int | None = None
    frame_end: int | None = None
    start_s: float | None = Field(None, description="Seconds from the video's start at which the component "
                                  "begins (its first frame; a speech segment's start).")
    end_s: float | None = Field(None, description="... and ends.")


class CompositionalHit(BaseModel):
    video_id: str
    score: float
    evidence: list[ComponentMatch]


def aggregate(sims: np.ndarray, weights: Sequence[float], negated: Sequence[bool], method: AggregationName = "mean",
              temperature: float = 0.05, negation_weight: float = 1.0, negation_margin: float = 0.0) -> np.ndarray:
    """Video scores from per-sub-query similarities ``sims`` of shape (n_videos, n_subqueries)."""
    sims = np.atleast_2d(np.asarray(sims, np.float64))
    w = np.asarray(weights, np.float64)
    neg = np.asarray(negated, bool)
    pos = ~neg
    base = np.zeros(len(sims))
    if pos.any():
        s, wp = sims[:, pos], w[pos] / w[pos].sum()
        if method == "mean":
            base = s @ wp
        elif method == "min":
            base = s.min(axis=1)
        elif method == "softmin":
            low = s.min(axis=1, keepdims=True)  # shift for a stable log-sum-exp
            base = low[:, 0] - temperature * np.log(np.exp(-(s - low) / temperature) @ wp)
        else:
            raise ValueError(f"unknown aggregation {method!r}")
    penalty = np.zeros(len(sims))
    if neg.any():
        penalty = negation_weight * (np.maximum(sims[:, neg] - negation_margin, 0.0) @ w[neg])
    return base - penalty


class CompositionalSearch:
    """Stage 1 of the paper: top-K videos by compositional alignment, with the evidence behind each score."""

    def __init__(self, index: CatalogIndex, encoders: ComponentEncoders | None = None,
                 settings: RetrievalSettings | None = None) -> None:
        self.index = index
        self.settings = settings or RetrievalSettings()
        self.encoders = encoders or (index.encoders if isinstance(index, ComponentIndex)
                                     else ComponentEncoders.from_settings(self.settings))

    def search(self, subqueries: Sequence[SubQueryLike], k: int | None = None,
               aggregation: AggregationName | None = None) -> list[CompositionalHit]:
        if not subqueries:
            return []
        k = k or self.settings.top_k
        queries = self.encoders.encode_queries([q.text for q in subqueries])
        negated = [bool(q.negated) for q in subqueries]
        candidates = self._candidates(queries, negated)
        if not candidates:
            return []
        sims, best, owner = self._exact_scores(candidates, queries)
        s = self.settings
        unit_scores = aggregate(sims, [q.weight for q in subqueries], negated, aggregation or s.aggregation,
                                s.softmin_temperature, s.negation_weight, s.negation_margin)
        # a video of several scenes scores as its best scene (units in order: the first of equals wins)
        pick = np.full(len(candidates), -1)
        for unit in range(len(owner)):
            i = owner[unit]
            if pick[i] < 0 or unit_scores[unit] > unit_scores[pick[i]]:
                pick[i] = unit
        scores, sims, best = unit_scores[pick], sims[pick], [best[u] for u in pick]
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i]))[:k]
        rows = self.index.items(int(c) for i in order for c in best[i] if c >= 0)
        return [CompositionalHit(video_id=candidates[i], score=float(scores[i]),
                                 evidence=[_match(q, float(sims[i, j]), rows.get(int(best[i][j])))
                                           for j, q in enumerate(subqueries)])
                for i in order]

    def _candidates(self, queries: np.ndarray, negated: list[bool]) -> list[str]:
        """Videos reached by any positive sub-query; every indexed video when all are negated."""
        vectors = self.index.checked(queries)
        positive = queries[[not n for n in negated]]
        if not len(positive):
            return sorted(self.index.catalogue().by_video)
        _, ids = vectors.search_arrays(positive, min(self.settings.candidate_k, max(vectors.count, 1)))
        videos = self.index.videos_of(ids[ids >= 0])
        return sorted({v for v in videos if v is not None})

    def _exact_scores(self, candidates: list[str], queries: np.ndarray,
                      ) -> tuple[np.ndarray, list[list[int]], list[int]]:
        """Max cosine per (unit, sub-query) over the unit's components, the argmax ids, and each unit's candidate
        (its index in ``candidates``). A unit is a candidate, or each scene of a candidate of several scenes
        (:mod:`twinseek.twins.scenes`): the parts of a query should meet in one scene, where over a long video's
        many components each part would find a match somewhere. A component meets the scenes its span meets."""
        by_video = self.index.catalogue().by_video
        groups = [by_video.get(v, np.zeros(0, np.int64)) for v in candidates]
        ids = np.concatenate(groups) if groups else np.zeros(0, np.int64)
        sims_all = self.index.vectors().reconstruct(ids) @ queries.T  # (n_components, n_subqueries)
        ranges = self.index.scene_ranges(ids) if isinstance(self.index, ComponentIndex) else \
            np.full((len(ids), 2), -1, np.int64)
        rows: list[np.ndarray] = []
        best: list[list[int]] = []
        owner: list[int] = []
        start = 0
        for i, group in enumerate(groups):
            block, scene = sims_all[start:start + len(group)], ranges[start:start + len(group)]
            start += len(group)
            if not len(group):  # no components: similarity 0, no evidence
                rows.append(np.zeros(len(queries)))
                best.append([-1] * len(queries))
                owner.append(i)
                continue
            values, args = scene_maxima(block, scene)
            for value, arg in zip(values, args):
                if np.isfinite(value).all():  # a scene no component meets is no unit
                    rows.append(value)
                    best.append([int(group[a]) for a in arg])
                    owner.append(i)
        sims = np.stack(rows) if rows else np.zeros((0, len(queries)))
        return sims, best, owner


def scene_maxima(sims: np.ndarray, scenes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per scene of one video, the best of ``sims`` (n_components, n_subqueries) over the components meeting it and
    their rows (ties: the first row), as (n_scenes, n_subqueries) arrays; -inf / -1 where none meets a scene.

    ``scenes``: (n_components, 2), the first and last scene each component meets, -1 for a component of a video of
    one scene or of the whole video (it meets every scene). Fewer than two scenes: one row, over all components.
    One pass over the (component, scene) pairs (an hour's 2,000 components over 300 scenes: milliseconds)."""
    n, n_q = sims.shape
    n_scenes = int(scenes[:, 1].max()) + 1 if n else 0
    if n_scenes < 2:
        arg = sims.argmax(axis=0) if n else np.full(n_q, -1)
        return (sims[arg, np.arange(n_q)][None, :] if n else np.full((1, n_q), -np.inf)), arg[None, :]
    values = np.full((n_scenes, n_q), -np.inf)
    args = np.full((n_scenes, n_q), -1)
    ranged = np.flatnonzero(scenes[:, 0] >= 0)
    if len(ranged):
        counts = scenes[ranged, 1] - scenes[ranged, 0] + 1
        rows = np.repeat(ranged, counts)
        scene = np.repeat(scenes[ranged, 0], counts) + np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts,
                                                                                        counts)
        for q in range(n_q):
            value = sims[rows, q]
            order = np.lexsort((rows, -value, scene))  # per scene: the most similar, the first of equals
            head = order[np.r_[True, scene[order][1:] != scene[order][:-1]]]
            values[scene[head], q], args[scene[head], q] = value[head], rows[head]
    whole = np.flatnonzero(scenes[:, 0] < 0)
    if len(whole):
        arg = whole[sims[whole].argmax(axis=0)]
        value = sims[arg, np.arange(n_q)]
        wins = (value[None, :] > values) | ((value[None, :] == values) & (arg[None, :] < args))
        values = np.where(wins, value[None, :], values)
        args = np.where(wins, arg[None, :], args)
    return values, args


def _match(query: SubQueryLike, similarity: float, row: dict[str, Any] | None) -> ComponentMatch:
    match = ComponentMatch(subquery=query.text, negated=bool(query.negated), weight=float(query.weight),
                           similarity=similarity)
    if row is not None:
        match.component_id, match.kind, match.text = row["id"], row["kind"], row["text"]
        match.track_ids = [t for t in (row["track_id"], row["object_track"]) if t is not None]
        match.frame_start, match.frame_end = row["frame_start"], row["frame_end"]
        match.start_s, match.end_s = row.get("start_s"), row.get("end_s")
    return match
