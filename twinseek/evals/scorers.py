"""Adapters that turn twinseek's retrieval stages into :class:`~twinseek.evals.metrics.VideoScorer`s."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twinseek.tools.decompose import Decomposition
    from twinseek.tools.retrieval import RetrievalResult, Retriever, Tool

logger = logging.getLogger(__name__)


class RetrieverScorer:
    """Scores every gallery video for a text with one retrieval tool (optionally reranked).

    The gallery is ``ids`` (bench id -> store video id), or every video of the store. Videos the tool does not
    return score 1 below the lowest returned one (so they rank last). Decompositions are cached per text (the
    ``cache`` may be shared), so the tools compared in one run see the same sub-queries. ``use_llm=False``
    decomposes by rules only.
    """

    def __init__(self, retriever: Retriever, tool: Tool = "fused", rerank_top: int = 0, use_llm: bool = True,
                 cache: dict[str, Decomposition] | None = None, ids: Mapping[str, str] | None = None) -> None:
        self.retriever = retriever
        self.tool = tool
        self.rerank_top = rerank_top
        self.use_llm = use_llm
        self.cache = cache if cache is not None else {}
        self.ids = dict(ids) if ids is not None else None
        self.timings: list[dict[str, float]] = []

    def decomposition(self, text: str) -> Decomposition:
        cached = self.cache.get(text)
        if cached is not None and (cached.source == "llm" or not self.use_llm):
            return cached
        dec = self.retriever.decompose(text, use_llm=self.use_llm)
        if dec.source == "llm" or not self.use_llm:  # an LLM failure is not kept: the next ask may succeed
            self.cache[text] = dec
        return dec

    def score_videos(self, query_text: str) -> dict[str, float]:
        ids = self.ids if self.ids is not None else {v: v for v in self.retriever.store.video_ids()}
        decomposition = self.decomposition(query_text)
        result = self.retriever.search(query_text, k=max(1, len(ids)), tool=self.tool, rerank_top=self.rerank_top,
                                       decomposition=decomposition)
        self.record(result, decomposition)
        scores = {h.video_id: h.score for h in result.hits}
        floor = min(scores.values(), default=0.0) - 1.0
        return {bench_id: scores.get(store_id, floor) for bench_id, store_id in ids.items()}

    def record(self, result: RetrievalResult, decomposition: Any) -> None:
        """Keeps what one search reported (subclasses record more)."""
        self.timings.append(result.timings)
