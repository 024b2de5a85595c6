"""Adapters that turn twinseek's search into :class:`~twinseek.evals.metrics.VideoScorer`s."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twinseek.agent.api import Agent, SearchResult
    from twinseek.agent.context import RerankerName, Tool

logger = logging.getLogger(__name__)


class RetrievalScorer:
    """Scores every gallery video for a text with one retrieval tool: the agent's graph with reasoning and
    refinement off, over the whole gallery (so decomposition, retrieval and reranking are exactly those of a
    search), read as each hit's retrieval score.

    The gallery is ``ids`` (bench id -> store video id), or every video of the store. Videos the tool does not
    return score 1 below the lowest returned one (so they rank last). Decompositions come from the agent's
    decomposer, whose cache lives in the store: every system and run over the store sees the same sub-queries,
    asked of the LLM once. ``use_llm=False`` decomposes by rules only. ``reranker`` (default none) rescores the
    top ``rerank_top`` (default: the settings') by their ECR texts. No deadline: an eval must not depend on load.
    """

    def __init__(self, agent: Agent, tool: Tool = "fused", *, use_llm: bool = True, reranker: RerankerName = "none",
                 rerank_top: int | None = None, ids: Mapping[str, str] | None = None) -> None:
        self.agent = agent
        self.tool = tool
        self.use_llm = use_llm
        self.reranker = reranker
        self.rerank_top = rerank_top
        self.ids = dict(ids) if ids is not None else None
        self.timings: list[dict[str, float]] = []

    def search(self, query_text: str, k: int) -> SearchResult:
        return self.agent.search(query_text, k=max(1, k), tool=self.tool, lr=False, jit=False, tau=0.0,
                                 decomposer="llm" if self.use_llm else "rules", reranker=self.reranker,
                                 rerank_top=self.rerank_top, deadline_s=None)  # every candidate: a ranking

    def score_videos(self, query_text: str) -> dict[str, float]:
        ids = self.ids if self.ids is not None else {v: v for v in self.agent.resources.store.video_ids()}
        result = self.search(query_text, len(ids))
        self.record(result)
        scores = {h.video_id: h.retrieval_score for h in result.hits}
        floor = min(scores.values(), default=0.0) - 1.0
        return {bench_id: scores.get(store_id, floor) for bench_id, store_id in ids.items()}

    def record(self, result: Any) -> None:
        """Keeps what one search reported (subclasses record more)."""
        self.timings.append(result.timings)
