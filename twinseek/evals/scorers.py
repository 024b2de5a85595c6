"""Adapters that turn twinseek's retrieval stages into :class:`~twinseek.evals.metrics.VideoScorer`s."""

from __future__ import annotations

import logging

from twinseek.tools.decompose import Decomposition
from twinseek.tools.retrieval import Retriever, Tool

logger = logging.getLogger(__name__)


class RetrieverScorer:
    """Scores every video of the store for a text with one retrieval tool (optionally reranked).

    Videos the tool does not return score below every returned one. Decompositions are cached per text, so
    the tools compared in one run see the same sub-queries. ``use_llm=False`` decomposes by rules only.
    """

    def __init__(self, retriever: Retriever, tool: Tool = "fused", rerank_top: int = 0, use_llm: bool = True,
                 cache: dict[str, Decomposition] | None = None) -> None:
        self.retriever = retriever
        self.tool = tool
        self.rerank_top = rerank_top
        self.use_llm = use_llm
        self.cache = cache if cache is not None else {}
        self.timings: list[dict[str, float]] = []

    def decomposition(self, text: str) -> Decomposition:
        if text not in self.cache:
            self.cache[text] = self.retriever.decompose(text, use_llm=self.use_llm)
        return self.cache[text]

    def score_videos(self, query_text: str) -> dict[str, float]:
        gallery = self.retriever.store.video_ids()
        result = self.retriever.search(query_text, k=len(gallery), tool=self.tool, rerank_top=self.rerank_top,
                                       decomposition=self.decomposition(query_text))
        self.timings.append(result.timings)
        scores = {h.video_id: h.score for h in result.hits}
        floor = min(scores.values(), default=0.0) - 1.0
        return {vid: scores.get(vid, floor) for vid in gallery}
