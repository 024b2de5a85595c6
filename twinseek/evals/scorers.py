"""Adapters that turn twinseek's search into :class:`~twinseek.evals.metrics.VideoScorer`s: the retrieval scorer,
and the eval runner's scorers of each system kind (baselines, the retrieval tools, the agent with its moments)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from twinseek.evals.bench import Bench, ImplicitQuery
from twinseek.evals.metrics import DEFAULT_TAU, Grounder, Span, VideoScorer
from twinseek.evals.schemas import TOP_N, HitInfo, ObjectMasks, QueryInfo
from twinseek.media.masks import load_mask, resize_mask

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


# -- the scorers of the eval runner ----------------------------------------------------------------------------
class EvalScorer(VideoScorer, Protocol):
    """What the runner needs from a system: gallery scores (bench ids) and the info of the last query."""

    def take_info(self) -> QueryInfo: ...


class BaselineScorer:
    """A ``index``/``score_videos`` baseline (random, naive) over the bench gallery."""

    def __init__(self, inner: VideoScorer) -> None:
        self.inner = inner
        self._info = QueryInfo()

    def score_videos(self, query_text: str) -> dict[str, float]:
        start = time.perf_counter()
        scores = self.inner.score_videos(query_text)
        self._info.add_timings({"score": time.perf_counter() - start})
        return scores

    def take_info(self) -> QueryInfo:
        info, self._info = self._info, QueryInfo()
        return info


class ToolScorer(RetrievalScorer):
    """One retrieval tool (dense or compositional) alone, over the whole store, mapped to bench ids, recording
    timings, models and fallbacks (e.g. of the decomposition) per query. ``localise=False`` gives no moments (the
    ``whole`` baseline: every hit's moment is the whole video)."""

    def __init__(self, agent: Any, tool: Literal["dense", "compositional"], ids: Mapping[str, str],
                 use_llm: bool = True, localise: bool = True) -> None:
        super().__init__(agent, tool, use_llm=use_llm, ids=ids)
        self.localise = localise
        self._info = QueryInfo()
        self._moments: dict[str, dict[str, Span]] = {}  # text -> store id -> best moment

    def record(self, result: Any) -> None:
        self._info.add_timings(result.timings)
        self._info.models.update(result.models)
        self._info.fallbacks.extend(_fallback_lines(result))

    def search(self, query_text: str, k: int) -> Any:
        result = super().search(query_text, k)
        self._moments[query_text] = _best_moments(result)
        return result

    def moment(self, text: str, video_id: str) -> Span | None:
        """The best moment of ``video_id`` (a bench id) in the last search of ``text``; ``None``: the whole video."""
        if not self.localise or self.ids is None:
            return None
        return self._moments.get(text, {}).get(self.ids.get(video_id, video_id))

    def take_info(self) -> QueryInfo:
        info, self._info = self._info, QueryInfo()
        return info


class AgentLike(Protocol):
    """The part of :class:`twinseek.Agent` the runner uses."""

    def search(self, query: str, k: int = 10, **context_overrides: Any) -> Any: ...


OrderFn = Callable[[str, Any], list[str]]  # (query text, search result) -> store ids in retrieval order


class AgentScorer:
    """``Agent.search`` as a scorer for the metrics (see the module docstring for the rules).

    ``ids`` maps bench video ids to store ids. ``order`` gives the retrieval order used below the hits; by
    default the agent's own retriever over the whole gallery with the tool and decomposition of the search
    (without one, unjudged videos follow in id order). Search results are cached per text.
    """

    def __init__(self, agent: AgentLike, ids: Mapping[str, str], k: int = 10, tau: float = DEFAULT_TAU,
                 switches: Mapping[str, bool] | None = None, order: OrderFn | None = None,
                 restrict: bool = True) -> None:
        self.agent, self.ids, self.k, self.tau = agent, dict(ids), k, tau
        self.to_bench = {s: b for b, s in self.ids.items()}
        self.switches = dict(switches or {})
        self.order = order or self._retrieval_order
        self.restrict = restrict
        self.cache: dict[str, Any] = {}
        self._judged: dict[tuple[str, str], Any] = {}
        self._orders: dict[str, list[str]] = {}
        self._order_moments: dict[str, dict[str, Span]] = {}  # text -> store id -> best moment, retrieval order
        self._info = QueryInfo()

    # -- searching
    def search(self, text: str) -> Any:
        if text not in self.cache:
            result = self.agent.search(text, k=self.k, tau=self.tau, **self.switches)
            self.cache[text] = result
            self._record(result)
        return self.cache[text]

    def _search_within(self, text: str, store_id: str) -> Any:
        key = (text, store_id)
        if key not in self._judged:
            result = self.agent.search(text, k=1, tau=self.tau, videos=(store_id,), **self.switches)
            self._judged[key] = result
            self._record(result)
        return self._judged[key]

    def _record(self, result: Any) -> None:
        self._info.add_timings(getattr(result, "timings", {}) or {})
        self._info.models.update(getattr(result, "models", {}) or {})
        self._info.fallbacks.extend(_fallback_lines(result))

    def _retrieval_order(self, text: str, result: Any) -> list[str]:
        """The whole gallery in the order of the search's retrieval: the same graph with reasoning, refinement
        and reranking off, the same tool and decomposition (cached), k = the gallery."""
        if getattr(self.agent, "resources", None) is None:  # not a twinseek Agent: no retrieval to ask
            return []
        options = getattr(result, "options", {}) or {}
        found = self.agent.search(text, k=max(1, len(self.ids)), lr=False, jit=False, tau=0.0,
                                  qd=self.switches.get("qd", True), tool=options.get("tool", "fused"),
                                  reranker="none")
        self._order_moments[text] = _best_moments(found)
        return [h.video_id for h in found.hits]

    def _order_of(self, text: str, result: Any) -> list[str]:
        if text not in self._orders:
            self._orders[text] = list(self.order(text, result))
        return self._orders[text]

    # -- scores
    def relevances(self, result: Any) -> dict[str, float]:
        """Store id -> the agent's relevance for every candidate it judged (hits and dropped)."""
        judged = {d.video_id: float(d.relevance) for d in getattr(result, "dropped", [])}
        judged.update({h.video_id: float(h.relevance) for h in result.hits})
        return judged

    def score_videos(self, query_text: str) -> dict[str, float]:
        """Hits keep their relevance; everything else follows in retrieval order below tau and the last hit."""
        result = self.search(query_text)
        hits = {h.video_id: float(h.relevance) for h in result.hits if h.video_id in self.to_bench}
        floor = min([self.tau, *hits.values()])
        rest = self._rest(query_text, result, hits)
        scores = {self.to_bench[s]: r for s, r in hits.items()}
        for i, store_id in enumerate(rest):
            # strictly decreasing and < floor; negative when floor <= 0 (lr off can return relevance 0)
            scores[self.to_bench[store_id]] = floor - (i + 1) / (len(rest) + 1)
        self._note(result)
        return {b: scores.get(b, -math.inf) for b in self.ids}

    def _rest(self, text: str, result: Any, hits: Mapping[str, float]) -> list[str]:
        order = [s for s in self._order_of(text, result) if s in self.to_bench and s not in hits]
        leftover = sorted(s for s in self.to_bench if s not in hits and s not in set(order))
        return order + leftover

    def _note(self, result: Any) -> None:
        judged = self.relevances(result)
        self._info.returned = [self.to_bench.get(h.video_id, h.video_id) for h in result.hits]
        self._info.max_relevance = max(judged.values(), default=None)
        self._info.hits = [_hit_info(h, self.to_bench) for h in result.hits[:TOP_N]]

    def video_score(self, text: str, video_id: str) -> float:
        """The agent's relevance for ``video_id``.

        With ``restrict`` (the default) the agent searches within that one video, so it judges it whatever its
        rank; a video that is not in the store scores -1. Without, one search over the gallery serves every
        video: a candidate keeps its relevance, any other scores by retrieval position (below -0.5).
        """
        store_id = self.ids.get(video_id, video_id)
        if store_id not in self.to_bench:  # never ingested: nothing to judge
            return -1.0
        if self.restrict:
            return self.relevances(self._search_within(text, store_id)).get(store_id, -1.0)
        result = self.search(text)
        judged = self.relevances(result)
        if store_id in judged:
            return judged[store_id]
        order = self._order_of(text, result)
        if store_id not in order:
            return -1.0
        return -1.0 + 0.5 * (1 - order.index(store_id) / max(1, len(self.ids)))

    def moment(self, text: str, video_id: str) -> Span | None:
        """The best moment of ``video_id`` (a bench id): its hit's first moment, else the one the retrieval order
        gave it; ``None`` (the whole video) when neither localises it."""
        store_id = self.ids.get(video_id, video_id)
        return _best_moments(self.search(text)).get(store_id) or self._order_moments.get(text, {}).get(store_id)

    def take_info(self) -> QueryInfo:
        info, self._info = self._info, QueryInfo()
        return info

    # -- grounding
    def grounder(self, bench: Bench) -> Grounder:
        """Masks of the chosen objects of ``video_id``'s hit, at the ground truth's resolution."""

        def ground(query: ImplicitQuery, video_id: str) -> dict[int, np.ndarray]:
            result = self.search(query.text)
            store_id = self.ids.get(video_id, video_id)
            hit = next((h for h in result.hits if h.video_id == store_id), None)
            if hit is None:
                return {}
            gt = bench.query_masks(query)
            shape = load_mask(next(iter(gt.values()))).shape if gt else None
            return _union_masks(hit, shape)

        return ground


def _fallback_lines(result: Any) -> list[str]:
    return [f"{f.node}{f' ({f.video_id})' if f.video_id else ''}: {f.reason}" for f in getattr(result, "fallbacks", [])]


def _span(moment: Any) -> Span:
    return float(moment.start_s), float(moment.end_s)


def _best_moments(result: Any) -> dict[str, Span]:
    """Store id -> the first (best) moment of each hit of a search result that has one."""
    return {h.video_id: _span(h.moments[0]) for h in getattr(result, "hits", []) if getattr(h, "moments", None)}


def _hit_info(hit: Any, to_bench: Mapping[str, str]) -> HitInfo:
    objects = [ObjectMasks(track_id=o.track_id, category=getattr(o, "category", ""),
                           masks={int(m.frame): str(m.path) for m in o.masks}) for o in getattr(hit, "objects", [])]
    return HitInfo(video=to_bench.get(hit.video_id, hit.video_id), relevance=float(hit.relevance),
                   judged_by=getattr(hit, "judged_by", ""), objects=objects,
                   moments=[_span(m) for m in getattr(hit, "moments", [])[:3]])


def _union_masks(hit: Any, shape: tuple[int, ...] | None) -> dict[int, np.ndarray]:
    union: dict[int, np.ndarray] = {}
    for obj in hit.objects:
        for m in obj.masks:
            mask = load_mask(m.path)
            if shape is not None:
                mask = resize_mask(mask, shape)
            frame = int(m.frame)
            union[frame] = union[frame] | mask if frame in union else mask
    return union


# ---------------------------------------------------------------- the run
