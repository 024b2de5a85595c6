"""The agent graph (paper stage 2 on top of the coarse retrieval):

    START -> decompose -> retrieve -> rerank -> reason -> (refine -> reason)* -> finalize -> END

``qd`` off starts at retrieve (the whole query is one sub-query); ``lr`` off goes from rerank to finalize;
``jit`` off never enters refine. Every LLM step has a logged, recorded fallback, so a search answers even when
the LLM is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict, Field

from twinseek.agent import prompts
from twinseek.agent.context import AgentContext
from twinseek.agent.resources import Resources, default_resources
from twinseek.agent.state import ActionRecord, AgentState, Candidate, Fallback, InputState, Judgement
from twinseek.agent.tools import Plan, applied_refinements, catalogue, compact_twin, run_call, search_twin
from twinseek.errors import TwinseekError
from twinseek.tools.decompose import Decomposition, SubQuery
from twinseek.tools.fusion import minmax
from twinseek.twins.model import Twin

logger = logging.getLogger(__name__)

REASON_MAX_TOKENS = 160
PLAN_MAX_TOKENS = 200


class Verdict(BaseModel):
    """The LLM's judgement of one candidate (reasoning first: the verdict follows the argument)."""

    model_config = ConfigDict(extra="forbid", title="Verdict")

    # Bounded strings: llama.cpp turns maxLength into its grammar, so the small model stops early (latency).
    reasoning: str = Field(max_length=240)
    missing: list[Annotated[str, Field(max_length=60)]] = Field(max_length=3)
    objects: list[int] = Field(max_length=8)
    relevance: float = Field(ge=0, le=1)


def _resources(runtime: Runtime[AgentContext]) -> Resources:
    ctx = runtime.context
    return ctx.resources if ctx is not None and ctx.resources is not None else default_resources()


def _ctx(runtime: Runtime[AgentContext]) -> AgentContext:
    return runtime.context if runtime.context is not None else AgentContext()


@contextmanager
def _timed(out: dict[str, Any], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        out.setdefault("timings", {})[name] = round(time.perf_counter() - start, 4)
        out.setdefault("path", []).append(name)


def _llm_name(res: Resources) -> str:
    return f"{res.llm.tier}:{res.llm.model}"


def _fallback(node: str, video_id: str | None, reason: str) -> Fallback:
    logger.warning("%s%s: %s", node, f" ({video_id})" if video_id else "", reason)
    return {"node": node, "video_id": video_id, "reason": reason[:300]}


# -- decompose ------------------------------------------------------------------------------------------------
def decompose(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with _timed(out, "decompose"):
        res = _resources(runtime)
        dec = res.decompose(state["query"])
        out["decomposition"] = dec.model_dump()
        out["models"] = {"decompose": _llm_name(res) if dec.source == "llm" else "rules"}
        if dec.source == "fallback":
            out["fallbacks"] = [_fallback("decompose", None, "the LLM failed; rule-based split used")]
        out["trace"] = [f"decompose: {len(dec.subqueries)} sub-queries ({dec.source})"]
    get_stream_writer()({"node": "decompose", "subqueries": [s.text for s in dec.subqueries]})
    return out


def whole_query(query: str) -> Decomposition:
    """Query decomposition off: the whole query is the one sub-query."""
    return Decomposition(subqueries=[SubQuery(text=query[:160], type="object", weight=1.0, negated=False)],
                         rewritten=query, source="fallback")


# -- retrieve -------------------------------------------------------------------------------------------------
def retrieve(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ctx = _ctx(runtime)
    with _timed(out, "retrieve"):
        res = _resources(runtime)
        # the indexes hold the ingest rows only: a refinement never changes what retrieve returns (no re-sync)
        query = state["query"]
        if "decomposition" in state:
            dec = Decomposition.model_validate(state["decomposition"])
        else:
            dec = whole_query(query)
            out["decomposition"] = dec.model_dump()
            out["models"] = {"decompose": "off"}
        # rerank_top=0: reranking is the next node's job
        result = res.retriever.search(query, k=ctx.k, tool=ctx.retrieval_tool, rerank_top=0, decomposition=dec,
                                      within=ctx.videos)
        candidates: list[Candidate] = [
            {"video_id": h.video_id, "path": h.path, "score": h.score, "scores": h.scores,
             "evidence": [e.model_dump() for e in h.evidence], "similarity": _similarity(h.scores)}
            for h in result.hits]
        out.update(candidates=candidates, to_reason=[c["video_id"] for c in candidates], refine_round=0)
        out["models"] = {**out.get("models", {}),
                         **{k: v for k, v in result.models.items() if k in ("compositional", "dense")}}
        out["trace"] = [f"retrieve[{ctx.retrieval_tool}]: {len(candidates)} candidates"]
    get_stream_writer()({"node": "retrieve", "candidates": [c["video_id"] for c in candidates]})
    return out


# -- rerank ---------------------------------------------------------------------------------------------------
def rerank(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    from twinseek.tools.rerank import rerank as rerank_scores
    from twinseek.tools.rerank import rewrite_ecr

    out: dict[str, Any] = {}
    with _timed(out, "rerank"):
        res = _resources(runtime)
        r = res.settings.retrieval
        candidates = state.get("candidates", [])
        reranker = res.retriever.reranker() if r.reranker != "none" and r.rerank_top_k > 0 else None
        if reranker is None or len(candidates) < 2:
            out["trace"] = [f"rerank: skipped (reranker {r.reranker}, {len(candidates)} candidates)"]
            return out
        ranked = [(c["video_id"], c["score"]) for c in candidates]
        docs = {vid: res.store.get_video(vid).ecr_text or "" for vid, _ in ranked[: r.rerank_top_k]}
        try:
            if r.rewrite:
                docs = {vid: rewrite_ecr(res.llm, state["query"], text) for vid, text in docs.items()}
            new = rerank_scores(ranked, docs, reranker, state["query"], top_k=r.rerank_top_k, weight=r.rerank_weight)
        except (TwinseekError, OSError) as exc:
            out["fallbacks"] = [_fallback("rerank", None, f"reranker failed ({exc}); retrieval order kept")]
            return out
        by_id = {c["video_id"]: c for c in candidates}
        reranked: list[Candidate] = [
            {**by_id[vid], "score": score, "scores": {**by_id[vid]["scores"], "rerank": score}} for vid, score in new]
        out.update(candidates=reranked, to_reason=[c["video_id"] for c in reranked])
        out["models"] = {"rerank": f"{reranker.tier}:{reranker.model}"}
        out["trace"] = [f"rerank: {reranker.model} over the top {min(len(ranked), r.rerank_top_k)}"]
    return out


# -- reason ---------------------------------------------------------------------------------------------------
def _evidence_tracks(candidate: Candidate) -> list[int]:
    """Tracks behind the matched components (a negated sub-query's match is counter-evidence, not a hit)."""
    return [t for e in candidate["evidence"] if not e.get("negated") and e.get("similarity", 0) > 0
            for t in e.get("track_ids", [])]


SIMILARITY_STAGES = ("compositional", "dense")


def _similarity(scores: dict[str, float]) -> float:
    """A candidate's absolute similarity to the query: the mean of the tools' raw scores (cosine-like), clipped
    to [0, 1]. Unlike the fused (rank-based) score, it compares across queries, so ``tau`` means something."""
    raw = [scores[s] for s in SIMILARITY_STAGES if s in scores]
    return round(min(1.0, max(0.0, sum(raw) / len(raw))), 6) if raw else 0.0


def _retrieval_relevance(candidates: list[Candidate], ctx: AgentContext) -> dict[str, float]:
    """Relevance from retrieval alone (reasoning off, or the LLM failed): the retrieval score min-max scaled over
    the candidates (all equal: all 1); in a search within given videos, their absolute similarity (a candidate
    alone would always scale to 1)."""
    if ctx.videos is not None:
        return {c["video_id"]: c["similarity"] for c in candidates}
    return dict(zip((c["video_id"] for c in candidates), minmax([c["score"] for c in candidates])))


def _judge(res: Resources, ctx: AgentContext, state: AgentState, cand: Candidate, twin: Twin,
           round_: int) -> tuple[Judgement, Fallback | None]:
    from twinseek.tools.llm import LLMError

    dec = state["decomposition"]
    subqueries = [(s["text"], s["negated"]) for s in dec["subqueries"]]
    evidence = _evidence_tracks(cand)
    view = compact_twin(twin, evidence, ctx.max_tracks, ctx.max_frames)
    messages = prompts.reason_messages(state["query"], subqueries, view)
    try:
        verdict = res.llm.chat_json(messages, Verdict, max_tokens=REASON_MAX_TOKENS)
    except LLMError as exc:
        rel = _retrieval_relevance(state["candidates"], ctx)[cand["video_id"]]
        judgement: Judgement = {"relevance": round(rel, 4), "reasoning": "", "objects": sorted(set(evidence)),
                                "missing": [], "source": "fallback", "round": round_}
        return judgement, _fallback("reason", cand["video_id"], f"LLM failed ({exc}); relevance from retrieval")
    known = {t.track_id for t in twin.tracks}
    objects = [o for o in dict.fromkeys(verdict.objects) if o in known]
    missing = [m.strip()[:120] for m in verdict.missing if m.strip()]
    relevance = verdict.relevance
    weight = ctx.llm_weight if ctx.llm_weight is not None else res.llm_weight
    if weight < 1.0:  # a small LLM's judgement is noisy: keep part of the (absolute) retrieval evidence
        relevance = weight * relevance + (1 - weight) * cand["similarity"]
    return {"relevance": round(relevance, 4), "reasoning": verdict.reasoning.strip(), "objects": objects,
            "missing": missing, "source": "llm", "round": round_}, None


def reason(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ctx, writer = _ctx(runtime), get_stream_writer()
    with _timed(out, "reason"):
        res = _resources(runtime)
        by_id = {c["video_id"]: c for c in state.get("candidates", [])}
        todo = [by_id[v] for v in state.get("to_reason", []) if v in by_id]
        todo_order = {c["video_id"]: i for i, c in enumerate(todo)}
        actions = state.get("actions", [])  # the twins as this search's refinements left them
        twins = {c["video_id"]: search_twin(res, c["video_id"], actions) for c in todo}  # read here: one DB thread
        round_ = state.get("refine_round", 0)

        results: list[tuple[str, Judgement, Fallback | None]] = []
        # the embedded server decodes n_parallel requests at once; a shared prompt prefix is cached
        with ThreadPoolExecutor(max_workers=min(res.parallel, max(1, len(todo)))) as pool:
            futures = {pool.submit(_judge, res, ctx, state, c, twins[c["video_id"]], round_): c["video_id"]
                       for c in todo}
            for future in as_completed(futures):  # report here: the stream writer belongs to this thread
                judgement, fallback = future.result()
                results.append((futures[future], judgement, fallback))
                writer({"node": "reason", "video_id": futures[future], "relevance": judgement["relevance"],
                        "source": judgement["source"]})
        results.sort(key=lambda r: todo_order[r[0]])
        out["judgements"] = {vid: j for vid, j, _ in results}
        out["fallbacks"] = [f for _, _, f in results if f is not None]
        out["to_reason"] = []
        out["models"] = {"reason": _llm_name(res)}
        out["trace"] = [f"reason[{round_}] {vid}: {j['relevance']:.2f} ({j['source']})"
                        + (f", missing {j['missing']}" if j["missing"] else "") for vid, j, _ in results]
    return out


# -- refine ---------------------------------------------------------------------------------------------------
def _to_refine(state: AgentState, ctx: AgentContext) -> list[str]:
    """Candidates judged this round by the LLM that name missing facts, best-ranked first."""
    round_ = state.get("refine_round", 0)
    judged = state.get("judgements", {})
    order = [c["video_id"] for c in state.get("candidates", [])]
    wanting = [v for v in order if v in judged and judged[v]["round"] == round_ and judged[v]["source"] == "llm"
               and judged[v]["missing"]]
    return wanting[: ctx.refine_top]


def _plan(res: Resources, state: AgentState, ctx: AgentContext, cand: Candidate, twin: Twin) -> Plan:
    missing = state["judgements"][cand["video_id"]]["missing"]
    view = compact_twin(twin, _evidence_tracks(cand), ctx.max_tracks, ctx.max_frames)
    # a plan is optional: an invalid one is not worth re-generating (each retry costs seconds on a small LLM)
    return res.llm.chat_json(prompts.plan_messages(catalogue(res), state["query"], missing, view), Plan,
                             max_tokens=PLAN_MAX_TOKENS, retries=0)


def refine(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    from twinseek.tools.llm import LLMError

    out: dict[str, Any] = {}
    ctx, writer = _ctx(runtime), get_stream_writer()
    with _timed(out, "refine"):
        res = _resources(runtime)
        round_ = state.get("refine_round", 0) + 1
        by_id = {c["video_id"]: c for c in state.get("candidates", [])}
        records, fallbacks, changed = [], [], []
        todo = _to_refine(state, ctx)
        earlier = state.get("actions", [])
        applied = {vid: set(applied_refinements(earlier, vid)) for vid in todo}
        twins = {vid: res.store.get_twin(vid, refinements=applied[vid]) for vid in todo}  # read here: one DB thread
        # plans are independent LLM calls: ask for them at once (the server's slots), then act one at a time
        with ThreadPoolExecutor(max_workers=min(res.parallel, max(1, len(todo)))) as pool:
            planned = {vid: pool.submit(_plan, res, state, ctx, by_id[vid], twins[vid]) for vid in todo}
        for vid in todo:
            twin = twins[vid]
            try:
                plan = planned[vid].result()
            except LLMError as exc:
                fallbacks.append(_fallback("refine", vid, f"no plan: the LLM failed ({exc}); judgement kept"))
                continue
            augmented = False
            for call in plan.calls:
                record, did = run_call(res, twin, call, round_, query=state["query"], applied=applied[vid])
                if record["status"] != "ran":
                    logger.warning("refine %s: %s %s (%s)", vid, record["status"], call.action, record["detail"])
                records.append(record)
                writer({"node": "refine", "video_id": vid, "action": record["action"], "status": record["status"]})
                if did:
                    augmented = True
                    applied[vid].update(record["refinements"])
                    twin = res.store.get_twin(vid, refinements=applied[vid])  # the next call sees what this one added
            if augmented:
                changed.append(vid)
        out.update(refine_round=round_, to_reason=changed, actions=records, fallbacks=fallbacks)
        models = {f"refine.{r['action']}": r["model"] for r in records if r["status"] == "ran" and r["model"]}
        out["models"] = {"refine": _llm_name(res), **models}
        out["trace"] = [f"refine[{round_}] {r['video_id']}: {r['action']} {r['status']}: {r['detail']}"[:200]
                        for r in records] or [f"refine[{round_}]: nothing ran"]
    return out


# -- finalize -------------------------------------------------------------------------------------------------
def _objects(res: Resources, twin: Twin, track_ids: list[int]) -> list[dict[str, Any]]:
    tracks = {t.track_id: t for t in twin.tracks}
    objects = []
    for tid in track_ids:
        if tid not in tracks:
            continue
        masks = [{"frame": i.frame_index, "path": str(res.store.mask_file(i).resolve())}
                 for i in sorted(twin.instances, key=lambda i: i.frame_index) if i.track_id == tid and i.mask_path]
        t = tracks[tid]
        objects.append({"track_id": tid, "category": t.category, "attributes": t.attributes, "masks": masks})
    return objects


def _hit(res: Resources, cand: Candidate, j: Judgement, rank: int, judged_by: str,
         actions: list[ActionRecord]) -> dict[str, Any]:
    twin = search_twin(res, cand["video_id"], actions)
    objects = j["objects"] or sorted(set(_evidence_tracks(cand)))  # no chosen object: point at the evidence
    return {"rank": rank, "video_id": cand["video_id"], "path": cand["path"], "relevance": j["relevance"],
            "retrieval_score": cand["score"], "scores": cand["scores"], "reasoning": j["reasoning"],
            "missing": j["missing"], "judged_by": judged_by, "refined": j["round"] > 0,
            "objects": _objects(res, twin, objects), "evidence": cand["evidence"]}


def finalize(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ctx = _ctx(runtime)
    with _timed(out, "finalize"):
        res = _resources(runtime)
        candidates = state.get("candidates", [])
        order = {c["video_id"]: i for i, c in enumerate(candidates)}
        judged = _judgements_or_scores(state, ctx)
        kept = [c for c in candidates if not ctx.lr or judged[c["video_id"]]["relevance"] >= ctx.tau]
        kept.sort(key=lambda c: (-judged[c["video_id"]]["relevance"], order[c["video_id"]]))
        llm = _llm_name(res) if ctx.lr else ""
        names = {"llm": llm, "fallback": "retrieval score (LLM failed)", "retrieval": "retrieval score (lr off)"}
        out["hits"] = [_hit(res, c, judged[c["video_id"]], rank, names[judged[c["video_id"]]["source"]],
                            state.get("actions", [])) for rank, c in enumerate(kept[: ctx.k], start=1)]
        out["dropped"] = [{"video_id": c["video_id"], "relevance": judged[c["video_id"]]["relevance"]}
                          for c in candidates if c not in kept]
        out["trace"] = [f"finalize: {len(out['hits'])} hits, {len(out['dropped'])} below tau={ctx.tau}"]
    return out


def _judgements_or_scores(state: AgentState, ctx: AgentContext) -> dict[str, Judgement]:
    """The LLM's judgements; with reasoning off (or a candidate never judged), the scaled retrieval score."""
    candidates = state.get("candidates", [])
    scaled = _retrieval_relevance(candidates, ctx)
    judged = dict(state.get("judgements", {})) if ctx.lr else {}
    for c in candidates:
        if c["video_id"] not in judged:
            judged[c["video_id"]] = {"relevance": round(scaled[c["video_id"]], 4), "reasoning": "",
                                     "objects": sorted(set(_evidence_tracks(c))), "missing": [],
                                     "source": "retrieval", "round": 0}
    return judged


# -- routing --------------------------------------------------------------------------------------------------
def route_start(state: InputState, runtime: Runtime[AgentContext]) -> Literal["decompose", "retrieve"]:
    return "decompose" if _ctx(runtime).qd else "retrieve"


def route_after_rerank(state: AgentState, runtime: Runtime[AgentContext]) -> Literal["reason", "finalize"]:
    return "reason" if _ctx(runtime).lr and state.get("candidates") else "finalize"


def route_after_reason(state: AgentState, runtime: Runtime[AgentContext]) -> Literal["refine", "finalize"]:
    ctx = _ctx(runtime)
    if not ctx.jit or state.get("refine_round", 0) >= ctx.max_refine_rounds:
        return "finalize"
    return "refine" if _to_refine(state, ctx) else "finalize"


def route_after_refine(state: AgentState) -> Literal["reason", "finalize"]:
    return "reason" if state.get("to_reason") else "finalize"


NODES: dict[str, Callable[..., dict[str, Any]]] = {
    "decompose": decompose, "retrieve": retrieve, "rerank": rerank, "reason": reason, "refine": refine,
    "finalize": finalize,
}

builder = StateGraph(AgentState, context_schema=AgentContext, input_schema=InputState)
for _name, _node in NODES.items():
    builder.add_node(_name, _node)
builder.add_conditional_edges(START, route_start)
builder.add_edge("decompose", "retrieve")
builder.add_edge("retrieve", "rerank")
builder.add_conditional_edges("rerank", route_after_rerank)
builder.add_conditional_edges("reason", route_after_reason)
builder.add_conditional_edges("refine", route_after_refine)
builder.add_edge("finalize", END)

graph = builder.compile(name="twinseek")
