"""Coarse retrieval as stage functions over a store's bound indexes: candidates per tool (compositional
alignment over twin components, dense search over video texts) and their fusion.

Nothing here decomposes, caches, falls back or reranks: the agent graph (:mod:`twinseek.agent.graph`) owns
those and calls :func:`retrieve` from its retrieve node. :class:`RetrievalIndexes` only holds the indexes and
keeps them in sync with the store.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel, Field

from twinseek.config import RetrievalSettings
from twinseek.retrieval.components import ComponentIndex
from twinseek.retrieval.compositional import ComponentMatch, CompositionalHit, CompositionalSearch
from twinseek.retrieval.decompose import Decomposition
from twinseek.retrieval.dense import DenseHit, DenseIndex, VideoEmbedder
from twinseek.retrieval.ecr import EcrGenerator, ensure_ecr
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.retrieval.fusion import fuse
from twinseek.retrieval.moments import MomentLocaliser
from twinseek.timing import timed
from twinseek.twins.store import TwinStore

logger = logging.getLogger(__name__)

Tool = Literal["compositional", "dense", "fused"]
TOOLS: tuple[Tool, ...] = ("compositional", "dense", "fused")
SIMILARITY_STAGES = ("compositional", "dense")


class Candidate(BaseModel):
    """One retrieved video: its score under the tool, each stage's score and the component evidence."""

    video_id: str
    path: str
    score: float = Field(description="The tool's score (fused: the fusion score; after reranking: the reranked).")
    scores: dict[str, float] = Field(default_factory=dict, description="Score per stage that saw this video.")
    evidence: list[ComponentMatch] = Field(default_factory=list)
    similarity: float = Field(0.0, ge=0, le=1, description="Absolute similarity to the query: the mean raw score "
                              "of the tools, clipped to [0, 1] (compares across queries, unlike fused ranks).")


class Retrieval(BaseModel):
    """What :func:`retrieve` found: candidates best first, seconds per stage, the model behind each stage."""

    candidates: list[Candidate]
    timings: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)


class RetrievalIndexes:
    """The component index (with its compositional search and the moment localiser) and the dense index of one
    store.

    ``encoders`` / ``dense_embedder`` replace the configured component encoders and dense embedder (tests,
    experiments). :meth:`sync` brings ECR texts and both indexes up to date with the store.
    """

    def __init__(self, store: TwinStore, settings: RetrievalSettings, *, encoders: ComponentEncoders | None = None,
                 dense_embedder: VideoEmbedder | None = None) -> None:
        self.store = store
        self.settings = settings
        self.components = ComponentIndex(store, encoders, settings)
        self.compositional = CompositionalSearch(self.components, settings=settings)
        self.dense = DenseIndex(store, dense_embedder, settings)
        self.moments = MomentLocaliser(self.components, self.components.encoders, settings, dense=self.dense)

    def sync(self, ecr: EcrGenerator) -> None:
        """ECR texts for new videos (the dense index embeds them), then both indexes (incremental)."""
        written = ensure_ecr(self.store, ecr)
        if written:
            logger.info("wrote %d ECR texts", written)
        self.components.sync()
        self.dense.sync()

    def models(self, tool: Tool) -> dict[str, str]:
        """``tier:model`` of the stages ``tool`` runs."""
        models = {}
        if tool != "dense":
            models["compositional"] = f"embedded:{self.components.encoders.fingerprint}"
        if tool != "compositional":
            models["dense"] = f"{self.dense.embedder.tier}:{self.dense.embedder.model}"
        return models


# -- stage functions ------------------------------------------------------------------------------------------
def compositional_candidates(indexes: RetrievalIndexes, decomposition: Decomposition, k: int) -> list[CompositionalHit]:
    """Top-``k`` videos by compositional alignment of their components with the sub-queries."""
    return indexes.compositional.search(decomposition.subqueries, k=k)


def dense_query(settings: RetrievalSettings, query: str, decomposition: Decomposition) -> str:
    """The text dense search embeds: the query, plus its explicit rewrite when configured."""
    return f"{query} {decomposition.rewritten}" if settings.dense_uses_rewrite else query


def dense_candidates(indexes: RetrievalIndexes, query: str, decomposition: Decomposition, k: int) -> list[DenseHit]:
    """Top-``k`` videos by dense similarity to the query (plus its explicit rewrite, when configured)."""
    return indexes.dense.search_text(dense_query(indexes.settings, query, decomposition), k=k)


def pool_size(k: int, settings: RetrievalSettings, gallery: int | None = None, *, fused: bool = False) -> int:
    """How many videos each tool ranks: at least ``k``, stage 1's ``top_k`` and what the reranker may rescore,
    and ``fusion_pool`` when the rankings are fused (weighted fusion scales scores over the pool, so a pool of 10
    would pin the tenth video at 0 whatever its score); the whole ``gallery`` for a search within given videos
    (they may rank anywhere)."""
    pool = max(k, settings.top_k, settings.rerank_top_k, settings.fusion_pool if fused else 0)
    return max(pool, gallery) if gallery is not None else pool


def similarity(scores: dict[str, float]) -> float:
    """A candidate's absolute similarity: the mean of the tools' raw scores, clipped to [0, 1]."""
    raw = [scores[s] for s in SIMILARITY_STAGES if s in scores]
    return round(min(1.0, max(0.0, sum(raw) / len(raw))), 6) if raw else 0.0


def retrieve(indexes: RetrievalIndexes, query: str, decomposition: Decomposition, *, tool: Tool = "fused",
             k: int = 10, within: Collection[str] | None = None) -> Retrieval:
    """The top ``k`` candidates of ``tool``: compositional, dense, or both fused (``settings.fusion``).

    ``within`` restricts the candidates to those video ids ("how well do these videos match?"). The whole gallery
    is still ranked, exactly (fusion sees every video); unknown ids are ignored.
    """
    if tool not in TOOLS:
        raise ValueError(f"unknown retrieval tool {tool!r}")
    r = indexes.settings
    pool = pool_size(k, r, len(indexes.store) if within is not None else None, fused=tool == "fused")
    timings: dict[str, float] = {}
    rankings: dict[str, list[tuple[str, float]]] = {}
    evidence: dict[str, list[ComponentMatch]] = {}
    if tool in ("compositional", "fused"):
        with timed(timings, "compositional"):
            found = compositional_candidates(indexes, decomposition, pool)
        rankings["compositional"] = [(h.video_id, h.score) for h in found]
        evidence = {h.video_id: h.evidence for h in found}
    if tool in ("dense", "fused"):
        with timed(timings, "dense"):
            rankings["dense"] = [(h.video_id, h.score) for h in dense_candidates(indexes, query, decomposition, pool)]
    ranked = rankings[tool] if tool != "fused" else fuse(rankings, r.fusion, r.fusion_weights)
    stage_scores = {name: dict(lst) for name, lst in rankings.items()}
    if tool == "fused":
        stage_scores["fused"] = dict(ranked)
    if within is not None:
        wanted = set(within)
        ranked = [(vid, score) for vid, score in ranked if vid in wanted]
    candidates = []
    for vid, score in ranked[:k]:
        scores = {stage: s[vid] for stage, s in stage_scores.items() if vid in s}
        candidates.append(Candidate(video_id=vid, path=indexes.store.get_video(vid).path, score=score,
                                    scores=scores, evidence=evidence.get(vid, []), similarity=similarity(scores)))
    return Retrieval(candidates=candidates, timings=timings, models=indexes.models(tool))

