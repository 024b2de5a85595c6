"""The agent graph: the one search pipeline of twinseek (``Agent.search``, ``twinseek search|ask|chat``, the eval).

    START -> decompose -> retrieve -> rerank -> reason -> (refine -> reason)* -> finalize -> END

``qd`` off starts at retrieve (the whole query is one sub-query); ``lr`` off goes from rerank to finalize;
``jit`` off never enters refine. The graph owns decomposition (the one cached decomposer), reranking and every
fallback: each LLM step has a logged, recorded fallback, so a search answers even when the LLM is down, and an
overall deadline (``deadline_s``) bounds every LLM call and skips the LLM work left once it has passed.

:func:`build_graph` binds the graph to a store's :class:`Resources` (models, indexes, the store); the run
options come with each call as :class:`AgentContext`. :func:`make_graph` is the factory ``langgraph.json``
names, for LangGraph Studio / ``langgraph dev``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from twinseek.agent import prompts
from twinseek.agent.context import AgentContext
from twinseek.agent.judge import (
    Judge,
    evidence_reasoning,
    evidence_tracks,
    from_retrieval,
    grounded_tracks,
    retrieval_relevance,
)
from twinseek.agent.refine import Plan, applied_refinements, catalogue, run_call, search_twin
from twinseek.agent.resources import Resources
from twinseek.agent.state import (
    ActionRecord,
    AgentState,
    Candidate,
    DroppedCandidate,
    FrameMask,
    Hit,
    HitObject,
    InputState,
    Judgement,
    fallback,
)
from twinseek.errors import TwinseekError
from twinseek.llm.base import LLMError
from twinseek.llm.deadline import BoundedLLM, Deadline
from twinseek.retrieval.decompose import Decomposition, SubQuery
from twinseek.retrieval.rerank import rerank as rerank_scores
from twinseek.retrieval.rerank import rewrite_ecr
from twinseek.retrieval.stages import retrieve as retrieve_stage
from twinseek.twins.model import Twin
from twinseek.twins.views import compact_view, description

logger = logging.getLogger(__name__)

GRAPH_NAME = "twinseek"
PLAN_MAX_TOKENS = 200
JUDGED_BY = {"fallback": "retrieval score (LLM failed)", "deadline": "retrieval score (deadline)",
             "retrieval": "retrieval score (lr off)", "unjudged": "retrieval similarity (not among the judged top)"}


# -- helpers ----------------------------------------------------------------------------------------------------
def _ctx(runtime: Runtime[AgentContext]) -> AgentContext:
    return runtime.context if runtime.context is not None else AgentContext()


@contextlib.contextmanager
def _timed(out: dict[str, Any], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        out.setdefault("timings", {})[name] = round(time.perf_counter() - start, 4)
        out.setdefault("path", []).append(name)


def _started(state: AgentState, out: dict[str, Any]) -> float:
    """When the search began: the caller's ``started_at``, else now (the first node records it)."""
    if "started_at" in state:
        return state["started_at"]
    out["started_at"] = started = time.time()
    return started


def _deadline(state: AgentState, ctx: AgentContext) -> Deadline:
    return Deadline.after(state.get("started_at"), ctx.deadline_s)


def whole_query(query: str) -> Decomposition:
    """Query decomposition off: the whole query is the one sub-query."""
    return Decomposition(subqueries=[SubQuery(text=query[:160], type="object", weight=1.0, negated=False)],
                         rewritten=query, source="fallback")


def _to_judge(candidates: list[Candidate], ctx: AgentContext) -> list[str]:
    """The candidates the LLM judges: the best-ranked ``judge_top`` (all when None)."""
    ids = [c.video_id for c in candidates]
    return ids if ctx.judge_top is None else ids[: ctx.judge_top]


# -- the nodes, bound to one store's resources -----------------------------------------------------------------
class Nodes:
    """The graph's nodes over ``res``. Each takes the state and the runtime (its context: the run options) and
    returns the state update; none keeps anything between calls."""

    def __init__(self, res: Resources) -> None:
        self.res = res

    def _llm(self, deadline: Deadline) -> BoundedLLM:
        return BoundedLLM(self.res.llm, deadline)

    # -- decompose
    def decompose(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ctx = _ctx(runtime)
        with _timed(out, "decompose"):
            started = _started(state, out)
            deadline = Deadline.after(started, ctx.deadline_s)
            llm = self._llm(deadline) if ctx.decomposer == "llm" else None
            got = self.res.decomposer.decompose(state["query"], llm, system=ctx.prompt("decompose"))
            dec = got.decomposition
            out["decomposition"] = dec
            out["models"] = {"decompose": got.model}
            if got.fallback is not None:
                why = "deadline" if deadline.passed else got.fallback
                out["fallbacks"] = [fallback("decompose", None, f"{why}; rule-based split used")]
            source = dec.source + (", cached" if got.cached else "")
            out["trace"] = [f"decompose: {len(dec.subqueries)} sub-queries ({source})"]
        runtime.stream_writer({"node": "decompose", "subqueries": [s.text for s in dec.subqueries]})
        return out

    # -- retrieve
    def retrieve(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ctx = _ctx(runtime)
        with _timed(out, "retrieve"):
            _started(state, out)
            # the indexes hold the ingest rows only: a refinement never changes what retrieve returns (no re-sync)
            query = state["query"]
            dec = state.get("decomposition")
            if dec is None:
                dec = out["decomposition"] = whole_query(query)
                out["models"] = {"decompose": "off"}
            found = retrieve_stage(self.res.indexes, query, dec, tool=ctx.retrieval_tool, k=ctx.k, within=ctx.videos)
            candidates = found.candidates
            out.update(candidates=candidates, to_reason=_to_judge(candidates, ctx), refine_round=0)
            out["models"] = {**out.get("models", {}), **found.models}
            out["trace"] = [f"retrieve[{ctx.retrieval_tool}]: {len(candidates)} candidates"]
        out["timings"].update({f"retrieve.{stage}": secs for stage, secs in found.timings.items()})
        runtime.stream_writer({"node": "retrieve", "candidates": [c.video_id for c in candidates]})
        return out

    # -- rerank
    def rerank(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ctx = _ctx(runtime)
        with _timed(out, "rerank"):
            r = self.res.settings.retrieval
            name = ctx.reranker or r.reranker
            top = ctx.rerank_top if ctx.rerank_top is not None else r.rerank_top_k
            candidates = state.get("candidates", [])
            if name == "none" or top <= 0 or len(candidates) < 2:
                out["trace"] = [f"rerank: skipped (reranker {name}, {len(candidates)} candidates)"]
                return out
            deadline = _deadline(state, ctx)
            if deadline.passed:
                out["fallbacks"] = [fallback("rerank", None, "deadline; retrieval order kept")]
                return out
            query = state["query"]
            ranked = [(c.video_id, c.score) for c in candidates]
            try:
                llm = self._llm(deadline)
                reranker = self.res.reranker(name, llm)
                assert reranker is not None  # name is not "none"
                docs = {vid: self.res.store.get_video(vid).ecr_text or "" for vid, _ in ranked[:top]}
                if r.rewrite:
                    docs = {vid: rewrite_ecr(llm, query, text) for vid, text in docs.items()}
                new = rerank_scores(ranked, docs, reranker, query, top_k=top, weight=r.rerank_weight)
            except (TwinseekError, OSError) as exc:
                why = "deadline" if deadline.passed else f"reranker failed ({exc})"
                out["fallbacks"] = [fallback("rerank", None, f"{why}; retrieval order kept")]
                return out
            by_id = {c.video_id: c for c in candidates}
            reranked = [by_id[vid].model_copy(update={"score": score, "scores": {**by_id[vid].scores, "rerank": score}})
                        for vid, score in new]
            out.update(candidates=reranked, to_reason=_to_judge(reranked, ctx))
            out["models"] = {"rerank": f"{reranker.tier}:{reranker.model}"}
            out["trace"] = [f"rerank: {reranker.model} over the top {min(len(ranked), top)}"]
        return out

    # -- reason
    def reason(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ctx, writer = _ctx(runtime), runtime.stream_writer
        with _timed(out, "reason"):
            res = self.res
            judge = Judge(res, ctx, state)
            by_id = {c.video_id: c for c in state.get("candidates", [])}
            todo = [by_id[v] for v in state.get("to_reason", []) if v in by_id]
            actions = state.get("actions", [])  # the twins as this search's refinements left them
            twins = {c.video_id: search_twin(res, c.video_id, actions) for c in todo}  # read here: one DB thread
            round_ = state.get("refine_round", 0)

            def report(video_id: str, judgement: Judgement) -> None:
                writer({"node": "reason", "video_id": video_id, "relevance": judgement.relevance,
                        "source": judgement.source})

            results = judge.judge_all(todo, twins, round_, report)
            out["judgements"] = {vid: j for vid, j, _ in results}
            out["fallbacks"] = [f for _, _, f in results if f is not None]
            late = [vid for vid, j, _ in results if j.source == "deadline"]
            if late:
                out["fallbacks"].append(fallback("reason", None, f"deadline; {len(late)} candidate(s) judged by "
                                                 f"retrieval: {', '.join(late)}"))
            out["to_reason"] = []
            out["models"] = {"reason": judge.model_name, "judge": judge.mode}
            out["trace"] = [f"reason[{round_}] {vid}: {j.relevance:.2f} ({j.source}, {judge.mode})"
                            + (f", missing {j.missing}" if j.missing else "") for vid, j, _ in results]
        return out

    # -- refine
    def _plan(self, ctx: AgentContext, state: AgentState, llm: BoundedLLM, cand: Candidate, twin: Twin) -> Plan:
        missing = state["judgements"][cand.video_id].missing
        view = compact_view(twin, evidence_tracks(cand), ctx.max_tracks, ctx.max_frames)
        messages = prompts.plan_messages(catalogue(self.res), state["query"], missing, view, system=ctx.prompt("plan"))
        # a plan is optional: an invalid one is not worth re-generating (each retry costs seconds on a small LLM)
        return llm.chat_json(messages, Plan, max_tokens=PLAN_MAX_TOKENS, retries=0)

    def refine(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ctx, writer = _ctx(runtime), runtime.stream_writer
        with _timed(out, "refine"):
            res = self.res
            round_ = state.get("refine_round", 0) + 1
            deadline = _deadline(state, ctx)
            todo = _to_refine(state, ctx)
            if deadline.passed:
                out.update(refine_round=round_, to_reason=[], fallbacks=[
                    fallback("refine", None, f"deadline; {len(todo)} candidate(s) not refined")])
                out["trace"] = [f"refine[{round_}]: skipped (deadline)"]
                return out
            by_id = {c.video_id: c for c in state.get("candidates", [])}
            records, fallbacks, changed = [], [], []
            earlier = state.get("actions", [])
            applied = {vid: set(applied_refinements(earlier, vid)) for vid in todo}
            twins = {vid: res.store.get_twin(vid, refinements=applied[vid]) for vid in todo}  # read here: one DB thread
            llm = self._llm(deadline)
            # plans are independent LLM calls: ask for them at once (the server's slots), then act one at a time
            with ThreadPoolExecutor(max_workers=min(res.parallel, max(1, len(todo)))) as pool:
                planned = {vid: pool.submit(self._plan, ctx, state, llm, by_id[vid], twins[vid]) for vid in todo}
            for vid in todo:
                twin = twins[vid]
                try:
                    plan = planned[vid].result()
                except LLMError as exc:
                    why = "deadline" if deadline.passed else f"the LLM failed ({exc})"
                    fallbacks.append(fallback("refine", vid, f"no plan: {why}; judgement kept"))
                    continue
                augmented = False
                for i, call in enumerate(plan.calls):
                    if deadline.passed:  # specialists are slow too: stop acting once time is up
                        fallbacks.append(fallback("refine", vid, f"deadline; {len(plan.calls) - i} planned "
                                                   "call(s) not run"))
                        break
                    record, did = run_call(res, twin, call, round_, query=state["query"], applied=applied[vid])
                    if record.status != "ran":
                        logger.warning("refine %s: %s %s (%s)", vid, record.status, call.action, record.detail)
                    records.append(record)
                    writer({"node": "refine", "video_id": vid, "action": record.action, "status": record.status})
                    if did:
                        augmented = True
                        applied[vid].update(record.refinements)
                        # the next call sees what this one added
                        twin = res.store.get_twin(vid, refinements=applied[vid])
                if augmented:
                    changed.append(vid)
            out.update(refine_round=round_, to_reason=changed, actions=records, fallbacks=fallbacks)
            models = {f"refine.{r.action}": r.model for r in records if r.status == "ran" and r.model}
            out["models"] = {"refine": res.llm_name, **models}
            out["trace"] = [f"refine[{round_}] {r.video_id}: {r.action} {r.status}: {r.detail}"[:200]
                            for r in records] or [f"refine[{round_}]: nothing ran"]
        return out

    # -- finalize
    def _objects(self, twin: Twin, track_ids: list[int], root: Path) -> list[HitObject]:
        tracks = {t.track_id: t for t in twin.tracks}
        instances = sorted(twin.instances, key=lambda i: i.frame_index)
        objects = []
        for tid in track_ids:
            if tid not in tracks:
                continue
            masks = [FrameMask(frame=i.frame_index, path=str(root / i.mask_path))
                     for i in instances if i.track_id == tid and i.mask_path]
            t = tracks[tid]
            objects.append(HitObject(track_id=tid, category=t.category, attributes=t.attributes, masks=masks))
        return objects

    def _hit(self, cand: Candidate, j: Judgement, rank: int, judged_by: str, root: Path,
             actions: list[ActionRecord], dec: Decomposition | None, retrieval_rank: int) -> Hit:
        twin = search_twin(self.res, cand.video_id, actions)  # with this search's refinements
        objects = j.objects or grounded_tracks(cand, twin, dec)  # the tracks behind the object sub-queries' evidence
        # a candidate the LLM did not judge is still explained, from its evidence (no LLM call)
        reasoning = j.reasoning or (evidence_reasoning(cand, twin, None, objects) if j.source == "unjudged" else "")
        return Hit(rank=rank, video_id=cand.video_id, path=cand.path, relevance=j.relevance,
                   retrieval_score=cand.score, retrieval_rank=retrieval_rank, similarity=cand.similarity,
                   judgement=j.judged, description=j.read or description(twin), scores=cand.scores, reasoning=reasoning, missing=j.missing,
                   judged_by=judged_by, refined=j.round > 0, objects=self._objects(twin, objects, root),
                   evidence=cand.evidence)

    def finalize(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ctx = _ctx(runtime)
        with _timed(out, "finalize"):
            candidates = state.get("candidates", [])
            order = {c.video_id: i for i, c in enumerate(candidates)}
            judge = Judge(self.res, ctx, state)
            judged, probable = self._judgements_or_scores(state, ctx, judge)
            kept = [c for c in candidates if not probable or judged[c.video_id].relevance >= ctx.tau]
            if ctx.lr:  # reasoning orders the candidates; without it they keep the retrieval order
                kept.sort(key=lambda c: (-judged[c.video_id].relevance, order[c.video_id]))
            names = {**JUDGED_BY, "llm": judge.model_name if ctx.lr else ""}
            root = self.res.store.root.resolve()  # mask paths are relative to the store: absolute for callers
            actions, dec = state.get("actions", []), state.get("decomposition")
            out["hits"] = [self._hit(c, judged[c.video_id], rank, names[judged[c.video_id].source], root, actions,
                                     dec, order[c.video_id] + 1)
                           for rank, c in enumerate(kept[: ctx.k], start=1)]
            kept_ids = {c.video_id for c in kept}
            out["dropped"] = [DroppedCandidate(video_id=c.video_id, relevance=judged[c.video_id].relevance)
                              for c in candidates if c.video_id not in kept_ids]
            out["trace"] = [f"finalize: {len(out['hits'])} hits, {len(out['dropped'])} below tau={ctx.tau}"]
        return out

    def _judgements_or_scores(self, state: AgentState, ctx: AgentContext,
                              judge: Judge) -> tuple[dict[str, Judgement], bool]:
        """Each candidate's judgement, and whether its relevance is a probability that tau thresholds.

        The LLM's judgements; a candidate below the judged top (``judge_top``), its calibrated retrieval
        relevance. With reasoning off, P(relevant) from the retrieval calibrator when there is one (so a search
        without reasoning rejects what matches nothing too), capped by the candidates ranked above it, else the
        retrieval score scaled over the candidates (not a probability: every candidate is returned)."""
        candidates = state.get("candidates", [])
        if not ctx.lr:
            calibrated = {c.video_id: p for c in candidates
                          if ctx.videos is None and (p := judge.retrieval_probability(c)) is not None}
            if calibrated:
                # the retrieval order is the ranking: a candidate is never more probable than one ranked above it,
                # so tau keeps a prefix of the order
                ceiling, ordered = 1.0, {}
                for c in candidates:
                    ceiling = min(ceiling, calibrated[c.video_id])
                    ordered[c.video_id] = from_retrieval(ceiling, "retrieval")
                return ordered, True
            scaled = retrieval_relevance(candidates, ctx)
            return {c.video_id: from_retrieval(scaled[c.video_id], "retrieval") for c in candidates}, False
        judged = dict(state.get("judgements", {}))
        return {c.video_id: judged.get(c.video_id) or judge.unjudged(c) for c in candidates}, True


def _to_refine(state: AgentState, ctx: AgentContext) -> list[str]:
    """Candidates judged this round by the LLM that name missing facts, best-ranked first."""
    round_ = state.get("refine_round", 0)
    judged = state.get("judgements", {})
    order = [c.video_id for c in state.get("candidates", [])]
    wanting = [v for v in order if v in judged and judged[v].round == round_ and judged[v].source == "llm"
               and judged[v].missing]
    return wanting[: ctx.refine_top]


# -- routing --------------------------------------------------------------------------------------------------
def route_start(state: InputState, runtime: Runtime[AgentContext]) -> Literal["decompose", "retrieve"]:
    return "decompose" if _ctx(runtime).qd else "retrieve"


def route_after_rerank(state: AgentState, runtime: Runtime[AgentContext]) -> Literal["reason", "finalize"]:
    # nothing to judge (no candidate, or judge_top 0): the candidates keep their calibrated retrieval relevance
    return "reason" if _ctx(runtime).lr and state.get("to_reason") else "finalize"


def route_after_reason(state: AgentState, runtime: Runtime[AgentContext]) -> Literal["refine", "finalize"]:
    ctx = _ctx(runtime)
    if not ctx.jit or state.get("refine_round", 0) >= ctx.max_refine_rounds:
        return "finalize"
    return "refine" if _to_refine(state, ctx) else "finalize"


def route_after_refine(state: AgentState) -> Literal["reason", "finalize"]:
    return "reason" if state.get("to_reason") else "finalize"


NODE_NAMES = ("decompose", "retrieve", "rerank", "reason", "refine", "finalize")
AgentGraph = CompiledStateGraph[AgentState, AgentContext, InputState, AgentState]


def build_graph(resources: Resources) -> AgentGraph:
    """The agent graph bound to ``resources`` (one store): its nodes close over them; the run options come with
    each call (``context=AgentContext(...)``)."""
    nodes = Nodes(resources)
    builder = StateGraph(AgentState, context_schema=AgentContext, input_schema=InputState)
    for name in NODE_NAMES:
        builder.add_node(name, getattr(nodes, name))
    builder.add_conditional_edges(START, route_start)
    builder.add_edge("decompose", "retrieve")
    builder.add_edge("retrieve", "rerank")
    builder.add_conditional_edges("rerank", route_after_rerank)
    builder.add_conditional_edges("reason", route_after_reason)
    builder.add_conditional_edges("refine", route_after_refine)
    builder.add_edge("finalize", END)
    return builder.compile(name=GRAPH_NAME)


@contextlib.asynccontextmanager
async def make_graph(config: RunnableConfig | None = None) -> AsyncIterator[AgentGraph]:
    """The graph factory of ``langgraph.json`` (LangGraph Studio, ``langgraph dev``): the resources of the store
    in ``config["configurable"]["store"]``, else the settings' (``TWINSEEK_STORE``), opened for this use and
    closed after it. Nothing is kept between calls."""
    store = ((config or {}).get("configurable") or {}).get("store")
    resources = await asyncio.to_thread(Resources.open, store)
    try:
        yield build_graph(resources)
    finally:
        resources.close()
