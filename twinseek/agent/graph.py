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
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict, Field

from twinseek.agent import prompts
from twinseek.agent.calibration import RETRIEVAL_JUDGE, candidate_features
from twinseek.agent.context import AgentContext
from twinseek.agent.judge import (
    LISTWISE_MAX_TOKENS,
    ListwiseOrder,
    blend,
    compact_evidence,
    evidence_reasoning,
    grounded_tracks,
    listwise_messages,
    listwise_scores,
    yesno_messages,
)
from twinseek.agent.resources import Resources
from twinseek.agent.state import (
    ActionRecord,
    AgentState,
    Candidate,
    DroppedCandidate,
    Fallback,
    FrameMask,
    Hit,
    HitObject,
    InputState,
    Judgement,
)
from twinseek.agent.tools import Plan, applied_refinements, catalogue, compact_twin, run_call, search_twin
from twinseek.errors import TwinseekError
from twinseek.tools.deadline import BoundedLLM, Deadline
from twinseek.tools.decompose import Decomposition, SubQuery
from twinseek.tools.fusion import minmax
from twinseek.tools.llm import LLMError
from twinseek.tools.rerank import rerank as rerank_scores
from twinseek.tools.rerank import rewrite_ecr
from twinseek.tools.retrieval import retrieve as retrieve_stage
from twinseek.twins.model import Twin

logger = logging.getLogger(__name__)

GRAPH_NAME = "twinseek"
REASON_MAX_TOKENS = 160
PLAN_MAX_TOKENS = 200
JUDGED_BY = {"fallback": "retrieval score (LLM failed)", "deadline": "retrieval score (deadline)",
             "retrieval": "retrieval score (lr off)", "unjudged": "retrieval similarity (not among the judged top)"}


class Verdict(BaseModel):
    """The LLM's judgement of one candidate (reasoning first: the verdict follows the argument)."""

    model_config = ConfigDict(extra="forbid", title="Verdict")

    # Bounded strings: llama.cpp turns maxLength into its grammar, so the small model stops early (latency).
    reasoning: str = Field(max_length=240)
    missing: list[Annotated[str, Field(max_length=60)]] = Field(max_length=3)
    objects: list[int] = Field(max_length=8)
    relevance: float = Field(ge=0, le=1)


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


def _fallback(node: str, video_id: str | None, reason: str) -> Fallback:
    logger.warning("%s%s: %s", node, f" ({video_id})" if video_id else "", reason)
    return Fallback(node=node, video_id=video_id, reason=reason[:300])


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


def _evidence_tracks(candidate: Candidate) -> list[int]:
    """Tracks behind the matched components (a negated sub-query's match is counter-evidence, not a hit)."""
    return [t for e in candidate.evidence if not e.negated and e.similarity > 0 for t in e.track_ids]


def _retrieval_relevance(candidates: list[Candidate], ctx: AgentContext) -> dict[str, float]:
    """Relevance from retrieval alone (reasoning off, or the LLM failed): the retrieval score min-max scaled over
    the candidates (all equal: all 1); in a search within given videos, their absolute similarity (a candidate
    alone would always scale to 1)."""
    if ctx.videos is not None:
        return {c.video_id: c.similarity for c in candidates}
    return dict(zip((c.video_id for c in candidates), minmax([c.score for c in candidates])))


def _position(state: AgentState, cand: Candidate) -> int:
    """The candidate's 0-based position in the retrieval (or reranked) order."""
    ids = [c.video_id for c in state.get("candidates", [])]
    return ids.index(cand.video_id) if cand.video_id in ids else len(ids)


def _to_judge(candidates: list[Candidate], ctx: AgentContext) -> list[str]:
    """The candidates the LLM judges: the best-ranked ``judge_top`` (all when None)."""
    ids = [c.video_id for c in candidates]
    return ids if ctx.judge_top is None else ids[: ctx.judge_top]


def _from_retrieval(candidate: Candidate, relevance: float,
                    source: Literal["fallback", "deadline", "retrieval", "unjudged"],
                    round_: int = 0) -> Judgement:
    return Judgement(relevance=round(relevance, 4), source=source, round=round_)  # finalize grounds it


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
                out["fallbacks"] = [_fallback("decompose", None, f"{why}; rule-based split used")]
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
                out["fallbacks"] = [_fallback("rerank", None, "deadline; retrieval order kept")]
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
                out["fallbacks"] = [_fallback("rerank", None, f"{why}; retrieval order kept")]
                return out
            by_id = {c.video_id: c for c in candidates}
            reranked = [by_id[vid].model_copy(update={"score": score, "scores": {**by_id[vid].scores, "rerank": score}})
                        for vid, score in new]
            out.update(candidates=reranked, to_reason=_to_judge(reranked, ctx))
            out["models"] = {"rerank": f"{reranker.tier}:{reranker.model}"}
            out["trace"] = [f"rerank: {reranker.model} over the top {min(len(ranked), top)}"]
        return out

    # -- reason
    def _verdict(self, ctx: AgentContext, state: AgentState, llm: BoundedLLM, cand: Candidate, twin: Twin,
                 round_: int) -> tuple[Judgement, Fallback | None]:
        """The paper's judgement: a chain-of-thought verdict over the compact twin (``judge = "verdict"``)."""
        dec = state["decomposition"]
        view = compact_twin(twin, _evidence_tracks(cand), ctx.max_tracks, ctx.max_frames)
        messages = prompts.reason_messages(state["query"], [(s.text, s.negated) for s in dec.subqueries], view,
                                           system=ctx.prompt("reason"))
        try:
            verdict = llm.chat_json(messages, Verdict, max_tokens=REASON_MAX_TOKENS)
        except LLMError as exc:
            return self._llm_failed(ctx, state, llm, cand, exc, round_)
        missing = [m.strip()[:120] for m in verdict.missing if m.strip()]
        return Judgement(relevance=round(self._relevance(ctx, state, verdict.relevance, cand), 4),
                         judged=verdict.relevance, reasoning=verdict.reasoning.strip(), objects=grounded_tracks(cand, twin, dec, verdict.objects),
                         missing=missing, source="llm", round=round_), None

    def _yesno(self, ctx: AgentContext, state: AgentState, llm: BoundedLLM, cand: Candidate, twin: Twin,
               round_: int) -> tuple[Judgement, Fallback | None]:
        """P(yes) on the candidate's compact evidence: one call of one generated token (``judge = "yesno"``)."""
        evidence = compact_evidence(cand, twin, twin.video.ecr_text)
        messages = yesno_messages(state["query"], state.get("decomposition"), evidence, system=ctx.prompt("yesno"))
        try:
            p_yes = llm.yes_probability(messages)
        except LLMError as exc:
            return self._llm_failed(ctx, state, llm, cand, exc, round_)
        objects = grounded_tracks(cand, twin, state.get("decomposition"))
        return Judgement(relevance=round(self._relevance(ctx, state, p_yes, cand), 4), judged=round(p_yes, 4),
                         source="llm", round=round_,
                         reasoning=evidence_reasoning(cand, twin, p_yes, objects), objects=objects), None

    def _listwise(self, ctx: AgentContext, state: AgentState, llm: BoundedLLM, todo: list[Candidate],
                  twins: dict[str, Twin], round_: int) -> list[tuple[str, Judgement, Fallback | None]]:
        """One call orders all the candidates by their compact evidence (``judge = "listwise"``)."""
        evidences = [compact_evidence(c, twins[c.video_id], twins[c.video_id].video.ecr_text) for c in todo]
        messages = listwise_messages(state["query"], evidences, system=ctx.prompt("listwise"))
        try:
            order = llm.chat_json(messages, ListwiseOrder, max_tokens=LISTWISE_MAX_TOKENS, retries=0).order
        except LLMError as exc:  # one call failed: one fallback for all the candidates
            failed = [(c.video_id, *self._llm_failed(ctx, state, llm, c, exc, round_)) for c in todo]
            return [(vid, j, f if i == 0 else None) for i, (vid, j, f) in enumerate(failed)]
        out: list[tuple[str, Judgement, Fallback | None]] = []
        for c, score in zip(todo, listwise_scores(order, len(todo))):
            twin = twins[c.video_id]
            objects = grounded_tracks(c, twin, state.get("decomposition"))
            out.append((c.video_id, Judgement(relevance=round(self._relevance(ctx, state, score, c), 4), source="llm",
                                              judged=score,
                                              round=round_, objects=objects,
                                              reasoning=evidence_reasoning(c, twin, None, objects)), None))
        return out

    def _relevance(self, ctx: AgentContext, state: AgentState, judged: float, cand: Candidate) -> float:
        """P(relevant) from the calibrator of this LLM and judge mode, which reads the judgement, the retrieval
        similarity and rank (see :mod:`twinseek.agent.calibration`); without one, the judgement blended with the
        absolute retrieval similarity (a small LLM's judgement is noisy)."""
        weight = ctx.llm_weight if ctx.llm_weight is not None else self.res.llm_weight
        score = blend(judged, cand.similarity, weight)
        calibrator = self.res.calibrator(ctx.judge or self.res.judge) if ctx.calibrate else None
        if calibrator is None:
            return score
        return calibrator.probability(candidate_features(similarity=cand.similarity, rank=_position(state, cand),
                                                         judged=judged, score=score))

    def _unjudged(self, ctx: AgentContext, state: AgentState, cand: Candidate) -> Judgement:
        """A candidate below the judged top: P(relevant) from its retrieval similarity and rank by the retrieval
        calibrator when there is one (so it compares with the judged candidates'), else its absolute similarity."""
        calibrator = self.res.calibrator(RETRIEVAL_JUDGE) if ctx.calibrate else None
        if calibrator is None:
            return _from_retrieval(cand, cand.similarity, "unjudged")
        values = candidate_features(similarity=cand.similarity, rank=_position(state, cand))
        return _from_retrieval(cand, calibrator.probability(values), "unjudged")

    def _llm_failed(self, ctx: AgentContext, state: AgentState, llm: BoundedLLM, cand: Candidate, exc: LLMError,
                    round_: int) -> tuple[Judgement, Fallback | None]:
        rel = _retrieval_relevance(state["candidates"], ctx)[cand.video_id]
        if llm.deadline.passed:  # one fallback for the node, recorded by the caller
            return _from_retrieval(cand, rel, "deadline", round_), None
        return _from_retrieval(cand, rel, "fallback", round_), _fallback(
            "reason", cand.video_id, f"LLM failed ({exc}); relevance from retrieval")

    def reason(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ctx, writer = _ctx(runtime), runtime.stream_writer
        with _timed(out, "reason"):
            res = self.res
            mode = ctx.judge or res.judge
            by_id = {c.video_id: c for c in state.get("candidates", [])}
            todo = [by_id[v] for v in state.get("to_reason", []) if v in by_id]
            order = {c.video_id: i for i, c in enumerate(todo)}
            actions = state.get("actions", [])  # the twins as this search's refinements left them
            twins = {c.video_id: search_twin(res, c.video_id, actions) for c in todo}  # read here: one DB thread
            round_ = state.get("refine_round", 0)
            llm = self._llm(_deadline(state, ctx))

            results: list[tuple[str, Judgement, Fallback | None]] = []
            if mode == "listwise":
                results = self._listwise(ctx, state, llm, todo, twins, round_)
                for vid, judgement, _ in results:
                    writer({"node": "reason", "video_id": vid, "relevance": judgement.relevance,
                            "source": judgement.source})
            else:
                judge = self._yesno if mode == "yesno" else self._verdict
                # the embedded server decodes n_parallel requests at once; the shared prompt prefix is cached
                with ThreadPoolExecutor(max_workers=min(res.parallel, max(1, len(todo)))) as pool:
                    futures = {pool.submit(judge, ctx, state, llm, c, twins[c.video_id], round_): c.video_id
                               for c in todo}
                    for future in as_completed(futures):  # report here: the stream writer belongs to this thread
                        judgement, fallback = future.result()
                        results.append((futures[future], judgement, fallback))
                        writer({"node": "reason", "video_id": futures[future], "relevance": judgement.relevance,
                                "source": judgement.source})
            results.sort(key=lambda r: order[r[0]])
            out["judgements"] = {vid: j for vid, j, _ in results}
            out["fallbacks"] = [f for _, _, f in results if f is not None]
            late = [vid for vid, j, _ in results if j.source == "deadline"]
            if late:
                out["fallbacks"].append(_fallback("reason", None, f"deadline; {len(late)} candidate(s) judged by "
                                                  f"retrieval: {', '.join(late)}"))
            out["to_reason"] = []
            out["models"] = {"reason": res.llm_name, "judge": mode}
            out["trace"] = [f"reason[{round_}] {vid}: {j.relevance:.2f} ({j.source}, {mode})"
                            + (f", missing {j.missing}" if j.missing else "") for vid, j, _ in results]
        return out

    # -- refine
    def _plan(self, ctx: AgentContext, state: AgentState, llm: BoundedLLM, cand: Candidate, twin: Twin) -> Plan:
        missing = state["judgements"][cand.video_id].missing
        view = compact_twin(twin, _evidence_tracks(cand), ctx.max_tracks, ctx.max_frames)
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
                    _fallback("refine", None, f"deadline; {len(todo)} candidate(s) not refined")])
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
                    fallbacks.append(_fallback("refine", vid, f"no plan: {why}; judgement kept"))
                    continue
                augmented = False
                for i, call in enumerate(plan.calls):
                    if deadline.passed:  # specialists are slow too: stop acting once time is up
                        fallbacks.append(_fallback("refine", vid, f"deadline; {len(plan.calls) - i} planned "
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
                   judgement=j.judged, scores=cand.scores, reasoning=reasoning, missing=j.missing,
                   judged_by=judged_by, refined=j.round > 0, objects=self._objects(twin, objects, root),
                   evidence=cand.evidence)

    def finalize(self, state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ctx = _ctx(runtime)
        with _timed(out, "finalize"):
            candidates = state.get("candidates", [])
            order = {c.video_id: i for i, c in enumerate(candidates)}
            judged = self._judgements_or_scores(state, ctx)
            kept = [c for c in candidates if not ctx.lr or judged[c.video_id].relevance >= ctx.tau]
            kept.sort(key=lambda c: (-judged[c.video_id].relevance, order[c.video_id]))
            names = {**JUDGED_BY, "llm": self.res.llm_name if ctx.lr else ""}
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

    def _judgements_or_scores(self, state: AgentState, ctx: AgentContext) -> dict[str, Judgement]:
        """The LLM's judgements; with reasoning off, the scaled retrieval score; a candidate below the judged top
        (``judge_top``), its calibrated retrieval similarity."""
        candidates = state.get("candidates", [])
        if not ctx.lr:
            scaled = _retrieval_relevance(candidates, ctx)
            return {c.video_id: _from_retrieval(c, scaled[c.video_id], "retrieval") for c in candidates}
        judged = dict(state.get("judgements", {}))
        return {c.video_id: judged.get(c.video_id) or self._unjudged(ctx, state, c) for c in candidates}


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
