"""The coarse retrieval stage behind one facade: decomposition, compositional and dense search, fusion and
ECR reranking over a twin store. The agent calls these pieces as tool nodes; ``twinseek search`` calls
:meth:`Retriever.search`."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Literal

from pydantic import BaseModel, Field

from twinseek.config import Settings
from twinseek.errors import TwinseekError
from twinseek.tools.compositional import ComponentMatch, CompositionalSearch
from twinseek.tools.decompose import Decomposition, decompose, fallback_decompose
from twinseek.tools.dense import DenseIndex
from twinseek.tools.ecr import EcrGenerator, LLMEcr, TemplateEcr, VlmEcr, ensure_ecr
from twinseek.tools.fusion import fuse
from twinseek.tools.index import ComponentIndex
from twinseek.tools.rerank import (
    CrossEncoderReranker,
    ListwiseReranker,
    LLMYesNoReranker,
    Qwen3Reranker,
    Reranker,
    rerank,
    rewrite_ecr,
)
from twinseek.twins.store import TwinStore

logger = logging.getLogger(__name__)

Tool = Literal["compositional", "dense", "fused"]


class RetrievalHit(BaseModel):
    video_id: str
    path: str
    score: float
    rank: int
    scores: dict[str, float] = Field(default_factory=dict, description="Score per stage that saw this video.")
    evidence: list[ComponentMatch] = Field(default_factory=list)
    ecr: str | None = None


class RetrievalResult(BaseModel):
    query: str
    decomposition: Decomposition
    hits: list[RetrievalHit]
    timings: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict, description="Which model (and tier) did each part.")


class Retriever:
    """Retrieval over one store. Indexes and ECR texts are brought up to date by :meth:`sync`."""

    def __init__(self, store: TwinStore, settings: Settings, llm=None) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.settings = settings
        self._llm = llm
        self.components = ComponentIndex(store, settings=settings.retrieval)
        self.dense = DenseIndex(store, settings=settings.retrieval)
        self.compositional = CompositionalSearch(self.components, settings=settings.retrieval)
        self._reranker: Reranker | None = None

    # -- resources ----------------------------------------------------------------------------------------
    @property
    def llm(self):  # type: ignore[no-untyped-def]
        """The LLM client (the embedded server starts on first use)."""
        if self._llm is None:
            from twinseek.tools.llm import open_llm

            self._llm = open_llm(self.settings)
        return self._llm

    def ecr_generator(self) -> EcrGenerator:
        choice = self.settings.retrieval.ecr
        if choice == "llm":
            return LLMEcr(self.llm)
        if choice == "vlm":
            return VlmEcr(self.settings.retrieval.ecr_vlm, device=self.settings.retrieval.device)
        return TemplateEcr()

    def reranker(self) -> Reranker | None:
        choice, r = self.settings.retrieval.reranker, self.settings.retrieval
        if self._reranker is None and choice != "none":
            if choice == "llm":
                self._reranker = LLMYesNoReranker(self.llm, parallel=self.settings.llm.n_parallel)
            elif choice == "listwise":
                self._reranker = ListwiseReranker(self.llm)
            elif choice == "cross-encoder":
                self._reranker = CrossEncoderReranker(r.reranker_model, device=r.device)
            elif choice == "qwen3":
                self._reranker = Qwen3Reranker(r.reranker_model, device=r.device)
        return self._reranker

    def sync(self) -> None:
        """ECR texts for new videos, then the component and dense indexes (incremental)."""
        written = ensure_ecr(self.store, self.ecr_generator())
        if written:
            logger.info("wrote %d ECR texts", written)
        self.components.sync()
        self.dense.sync()

    # -- stages -------------------------------------------------------------------------------------------
    def decompose(self, query: str, use_llm: bool = True) -> Decomposition:
        if not use_llm:
            return fallback_decompose(query)
        try:
            return decompose(query, self.llm)
        except TwinseekError as exc:  # a down server must not stop a search
            logger.warning("decomposition by the LLM failed (%s); using the rule-based fallback", exc)
            return fallback_decompose(query)

    def search(
        self, query: str, k: int = 10, tool: Tool = "fused", rerank_top: int | None = None,
        decomposition: Decomposition | None = None, rewrite: bool | None = None,
        within: Collection[str] | None = None,
    ) -> RetrievalResult:
        """Rank videos for ``query``. ``rerank_top`` (default from settings) candidates are reranked when a
        reranker is configured; ``rewrite`` turns on query-aware ECR rewriting before reranking.

        ``within`` restricts the hits to those video ids ("how well do these videos match?"). The whole gallery
        is still ranked, exactly (fusion sees every video); unknown ids are ignored.
        """
        timings: dict[str, float] = {}
        r = self.settings.retrieval
        with _timed(timings, "decompose"):
            decomposition = decomposition or self.decompose(query)
        pool = max(k, r.top_k, rerank_top or r.rerank_top_k)
        if within is not None:
            pool = max(pool, len(self.store))
        rankings: dict[str, list[tuple[str, float]]] = {}
        evidence: dict[str, list[ComponentMatch]] = {}
        if tool in ("compositional", "fused"):
            with _timed(timings, "compositional"):
                found = self.compositional.search(decomposition.subqueries, k=pool)
            rankings["compositional"] = [(h.video_id, h.score) for h in found]
            evidence = {h.video_id: h.evidence for h in found}
        if tool in ("dense", "fused"):
            with _timed(timings, "dense"):
                text = f"{query} {decomposition.rewritten}" if r.dense_uses_rewrite else query
                rankings["dense"] = [(h.video_id, h.score) for h in self.dense.search_text(text, k=pool)]
        ranked = rankings[tool] if tool != "fused" else fuse(rankings, r.fusion, r.fusion_weights)
        stage_scores = {name: dict(lst) for name, lst in rankings.items()}
        if tool == "fused":
            stage_scores["fused"] = dict(ranked)
        reranker = self.reranker()
        top = rerank_top if rerank_top is not None else r.rerank_top_k
        if reranker is not None and top > 0 and ranked:
            with _timed(timings, "rerank"):
                ranked = self._rerank(query, ranked, reranker, top, r.rewrite if rewrite is None else rewrite)
            stage_scores["rerank"] = dict(ranked[:top])
        if within is not None:
            wanted = set(within)
            ranked = [(vid, score) for vid, score in ranked if vid in wanted]
        hits = self._hits(ranked[:k], stage_scores, evidence)
        return RetrievalResult(query=query, decomposition=decomposition, hits=hits, timings=timings,
                               models=self._models(tool, decomposition))

    def _rerank(self, query: str, ranked: list[tuple[str, float]], reranker: Reranker, top: int,
                rewrite: bool) -> list[tuple[str, float]]:
        docs = {vid: self.store.get_video(vid).ecr_text or "" for vid, _ in ranked[:top]}
        if rewrite:
            docs = {vid: rewrite_ecr(self.llm, query, text) for vid, text in docs.items()}
        return rerank(ranked, docs, reranker, query, top_k=top, weight=self.settings.retrieval.rerank_weight)

    def _hits(self, ranked: list[tuple[str, float]], stage_scores: dict[str, dict[str, float]],
              evidence: dict[str, list[ComponentMatch]]) -> list[RetrievalHit]:
        hits = []
        for rank, (vid, score) in enumerate(ranked, start=1):
            video = self.store.get_video(vid)
            hits.append(RetrievalHit(
                video_id=vid, path=video.path, score=score, rank=rank,
                scores={stage: s[vid] for stage, s in stage_scores.items() if vid in s},
                evidence=evidence.get(vid, []), ecr=video.ecr_text))
        return hits

    def _models(self, tool: Tool, decomposition: Decomposition) -> dict[str, str]:
        # the LLM client is built without a request (no server start); a cached decomposition still names it
        models = {"decompose": f"{self.llm.tier}:{self.llm.model}" if decomposition.source == "llm" else "rules"}
        if tool != "dense":
            models["compositional"] = f"embedded:{self.components.encoders.fingerprint}"
        if tool != "compositional":
            models["dense"] = f"{self.dense.embedder.tier}:{self.dense.embedder.model}"
        if self._reranker is not None:
            models["rerank"] = f"{self._reranker.tier}:{self._reranker.model}"
        return models


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 4)
