"""The agent graph: the one search pipeline of twinseek (``Agent.search``, ``twinseek search|ask|chat``, the eval).

    START -> decompose -> retrieve -> rerank -> reason -> (refine -> reason)* -> finalize -> END

``qd`` off starts at retrieve (the whole query is one sub-query); ``lr`` off goes from rerank to finalize;
``jit`` off never enters refine. The graph owns decomposition (the one cached decomposer), reranking and every
fallback: each LLM step has a logged, recorded fallback, so a search answers even when the LLM is down, and an
overall deadline (``deadline_s``) bounds every LLM call and skips the LLM work left once it has passed. The first
node resolves the run context into a :class:`~twinseek.agent.run.Run` (state key ``run``); the others read that.

:func:`build_graph` binds the graph to a store's :class:`Resources` (models, indexes, the store); the run
options come with each call as :class:`AgentContext`. :func:`make_graph` is the factory ``langgraph.json``
names, for LangGraph Studio / ``langgraph dev``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from twinseek.agent.context import AgentContext
from twinseek.agent.hits import answer
from twinseek.agent.judge import Judge
from twinseek.agent.refine import refine_round, search_twin, to_refine
from twinseek.agent.resources import Resources
from twinseek.agent.run import Run, resolve
from twinseek.agent.state import AgentState, Candidate, InputState, Judgement, fallback
from twinseek.errors import TwinseekError
from twinseek.llm.deadline import BoundedLLM, Deadline
from twinseek.retrieval.decompose import Decomposition, SubQuery
from twinseek.retrieval.rerank import rerank as rerank_scores
from twinseek.retrieval.rerank import rewrite_ecr
from twinseek.retrieval.stages import retrieve as retrieve_stage
from twinseek.timing import timed

GRAPH_NAME = "twinseek"
NODE_NAMES = ("decompose", "retrieve", "rerank", "reason", "refine", "finalize")


# -- helpers ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _node(out: dict[str, Any], name: str) -> Iterator[None]:
    """Time the node and record that it ran."""
    with timed(out.setdefault("timings", {}), name):
        yield
    out.setdefault("path", []).append(name)


def _context(runtime: Runtime[AgentContext]) -> AgentContext:
    ctx = runtime.context
    if ctx is None:
        return AgentContext()
    return AgentContext(**ctx) if isinstance(ctx, dict) else ctx  # a dict from LangGraph's HTTP API


def _deadline(state: AgentState, out: dict[str, Any]) -> Deadline:
    started = out.get("started_at", state.get("started_at"))
    return Deadline.after(started, state["run"].deadline_s if "run" in state else out["run"].deadline_s)


def whole_query(query: str) -> Decomposition:
    """Query decomposition off: the whole query is the one sub-query."""
    return Decomposition(subqueries=[SubQuery(text=query[:160], type="object", weight=1.0, negated=False)],
                         rewritten=query, source="fallback")


def _to_judge(candidates: list[Candidate], run: Run) -> list[str]:
    """The candidates the LLM judges: the best-ranked ``judge_top`` (all when None)."""
    ids = [c.video_id for c in candidates]
    return ids if run.judge_top is None else ids[: run.judge_top]


# -- the nodes, bound to one store's resources -----------------------------------------------------------------
class Nodes:
    """The graph's nodes over ``res``. Each takes the state and the runtime and returns the state update; none
    keeps anything between calls. The first node to run resolves the run options (:meth:`_begin`)."""

    def __init__(self, res: Resources) -> None:
        self.res = res

    def _begin(self, state: AgentState, runtime: Runtime[AgentContext], out: dict[str, Any]) -> Run:
        """The search's :class:`Run`: resolved once, by the first node, with when the search began."""
        if "run" in state:
            return state["run"]
        if "started_at" not in state:
            out["started_at"] = time.time()
        out["run"] = run = resolve(_context(runtime), self.res)
        return run

    def decompose(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _node(out, "decompose"):
            run = self._begin(state, runtime, out)
            deadline = _deadline(state, out)
            llm = BoundedLLM(self.res.llm, deadline) if run.decomposer == "llm" else None
            got = self.res.decomposer.decompose(state["query"], llm, system=run.prompt("decompose"))
            dec = got.decomposition
            out.update(decomposition=dec, models={"decompose": got.model})
            if got.fallback is not None:
                why = "deadline" if deadline.passed else got.fallback
                out["fallbacks"] = [fallback("decompose", None, f"{why}; rule-based split used")]
            source = dec.source + (", cached" if got.cached else "")
            out["trace"] = [f"decompose: {len(dec.subqueries)} sub-queries ({source})"]
        runtime.stream_writer({"node": "decompose", "subqueries": [s.text for s in dec.subqueries]})
        return out

    def retrieve(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _node(out, "retrieve"):
            run = self._begin(state, runtime, out)
            # the indexes hold the ingest rows only: a refinement never changes what retrieve returns (no re-sync)
            dec = state.get("decomposition")
            if dec is None:
                dec = out["decomposition"] = whole_query(state["query"])
                out["models"] = {"decompose": "off"}
            found = retrieve_stage(self.res.indexes, state["query"], dec, tool=run.tool, k=run.k, within=run.videos)
            candidates = found.candidates
            out.update(candidates=candidates, to_reason=_to_judge(candidates, run), refine_round=0)
            out["models"] = {**out.get("models", {}), **found.models}
            out["trace"] = [f"retrieve[{run.tool}]: {len(candidates)} candidates"]
        out["timings"].update({f"retrieve.{stage}": secs for stage, secs in found.timings.items()})
        runtime.stream_writer({"node": "retrieve", "candidates": [c.video_id for c in candidates]})
        return out

    def rerank(self, state: AgentState) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _node(out, "rerank"):
            run, candidates = state["run"], state.get("candidates", [])
            if run.reranker == "none" or run.rerank_top <= 0 or len(candidates) < 2:
                out["trace"] = [f"rerank: skipped (reranker {run.reranker}, {len(candidates)} candidates)"]
                return out
            deadline = _deadline(state, out)
            if deadline.passed:
                out["fallbacks"] = [fallback("rerank", None, "deadline; retrieval order kept")]
                return out
            query, ranked = state["query"], [(c.video_id, c.score) for c in candidates]
            try:
                llm = BoundedLLM(self.res.llm, deadline)
                reranker = self.res.reranker(run.reranker, llm)
                assert reranker is not None  # the name is not "none"
                docs = {vid: self.res.store.get_video(vid).ecr_text or "" for vid, _ in ranked[: run.rerank_top]}
                if run.rewrite:
                    docs = {vid: rewrite_ecr(llm, query, text) for vid, text in docs.items()}
                new = rerank_scores(ranked, docs, reranker, query, top_k=run.rerank_top, weight=run.rerank_weight)
            except (TwinseekError, OSError) as exc:
                why = "deadline" if deadline.passed else f"reranker failed ({exc})"
                out["fallbacks"] = [fallback("rerank", None, f"{why}; retrieval order kept")]
                return out
            by_id = {c.video_id: c for c in candidates}
            reranked = [by_id[vid].model_copy(update={"score": score, "scores": {**by_id[vid].scores, "rerank": score}})
                        for vid, score in new]
            out.update(candidates=reranked, to_reason=_to_judge(reranked, run))
            out["models"] = {"rerank": f"{reranker.tier}:{reranker.model}"}
            out["trace"] = [f"rerank: {reranker.model} over the top {min(len(ranked), run.rerank_top)}"]
        return out

    def reason(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _node(out, "reason"):
            judge = Judge(self.res, state["run"], state)
            by_id = {c.video_id: c for c in state.get("candidates", [])}
            todo = [by_id[v] for v in state.get("to_reason", []) if v in by_id]
            actions = state.get("actions", [])  # the twins as this search's refinements left them
            twins = {c.video_id: search_twin(self.res, c.video_id, actions) for c in todo}  # read here: one DB thread
            round_ = state.get("refine_round", 0)

            def report(video_id: str, judgement: Judgement) -> None:
                runtime.stream_writer({"node": "reason", "video_id": video_id, "relevance": judgement.relevance,
                                       "source": judgement.source})

            results = judge.judge_all(todo, twins, round_, report)
            out["judgements"] = {vid: j for vid, j, _ in results}
            out["fallbacks"] = [f for _, _, f in results if f is not None]
            late = [vid for vid, j, _ in results if j.source == "deadline"]
            if late:
                out["fallbacks"].append(fallback("reason", None, f"deadline; {len(late)} candidate(s) judged by "
                                                 f"retrieval: {', '.join(late)}"))
            out.update(to_reason=[], models={"reason": judge.model_name, "judge": judge.mode})
            out["trace"] = [f"reason[{round_}] {vid}: {j.relevance:.2f} ({j.source}, {judge.mode})"
                            + (f", missing {j.missing}" if j.missing else "") for vid, j, _ in results]
        return out

    def refine(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _node(out, "refine"):
            out.update(refine_round(self.res, state["run"], state, _deadline(state, out), runtime.stream_writer))
        return out

    def finalize(self, state: AgentState) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with _node(out, "finalize"):
            out["hits"], out["dropped"] = answer(self.res, state["run"], state)
            out["trace"] = [f"finalize: {len(out['hits'])} hits, {len(out['dropped'])} below tau={state['run'].tau}"]
        return out


# -- routing --------------------------------------------------------------------------------------------------
def route_start(state: InputState, runtime: Runtime[AgentContext]) -> Literal["decompose", "retrieve"]:
    return "decompose" if _context(runtime).qd else "retrieve"


def route_after_rerank(state: AgentState) -> Literal["reason", "finalize"]:
    # nothing to judge (no candidate, or judge_top 0): the candidates keep their calibrated retrieval relevance
    return "reason" if state["run"].lr and state.get("to_reason") else "finalize"


def route_after_reason(state: AgentState) -> Literal["refine", "finalize"]:
    run = state["run"]
    if not run.jit or state.get("refine_round", 0) >= run.max_refine_rounds:
        return "finalize"
    return "refine" if to_refine(state, run) else "finalize"


def route_after_refine(state: AgentState) -> Literal["reason", "finalize"]:
    return "reason" if state.get("to_reason") else "finalize"


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
