"""The answer of a search: its hits, each with the objects, masks and reasoning behind it and the moments where
its match lies, and the candidates dropped below ``tau`` (the finalize node)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from twinseek.agent.judge import (
    Judge,
    evidence_reasoning,
    from_retrieval,
    grounded_tracks,
    retrieval_relevance,
)
from twinseek.agent.refine import search_twin
from twinseek.agent.resources import Resources
from twinseek.agent.run import Run
from twinseek.agent.state import (
    ActionRecord,
    AgentState,
    DroppedCandidate,
    FrameMask,
    Hit,
    HitObject,
    Judgement,
)
from twinseek.retrieval.decompose import Decomposition
from twinseek.retrieval.moments import EncodedSubqueries
from twinseek.retrieval.stages import Candidate, dense_query
from twinseek.twins.model import Twin
from twinseek.twins.views import description

logger = logging.getLogger(__name__)

JUDGED_BY = {"fallback": "retrieval score (LLM failed)", "deadline": "retrieval score (deadline)",
             "retrieval": "retrieval score (lr off)", "unjudged": "retrieval similarity (not among the judged top)"}


def answer(res: Resources, run: Run, state: AgentState) -> tuple[list[Hit], list[DroppedCandidate]]:
    """The candidates at or above ``tau`` as hits (ordered by relevance with reasoning on, else in retrieval
    order), at most ``k``, and the others as dropped."""
    candidates = state.get("candidates", [])
    order = {c.video_id: i for i, c in enumerate(candidates)}
    judge = Judge(res, run, state)
    judged, probable = judgements_or_scores(state, run, judge)
    kept = [c for c in candidates if not probable or judged[c.video_id].relevance >= run.tau]
    if run.lr:  # reasoning orders the candidates; without it they keep the retrieval order
        kept.sort(key=lambda c: (-judged[c.video_id].relevance, order[c.video_id]))
    names = {**JUDGED_BY, "llm": judge.model_name if run.lr else ""}
    root = res.store.root.resolve()  # mask paths are relative to the store: absolute for callers
    actions, dec = state.get("actions", []), state.get("decomposition")
    started = time.perf_counter()
    # the sub-queries are encoded once for every hit; a hit's moments come from its own components only
    moment_query = (res.indexes.moments.prepare(
        dec.subqueries, dense_query(res.indexes.settings, state["query"], dec)) if dec is not None and kept else None)
    hits = [_hit(res, c, judged[c.video_id], rank, names[judged[c.video_id].source], root, actions, dec,
                 order[c.video_id] + 1, moment_query)
            for rank, c in enumerate(kept[: run.k], start=1)]
    logger.debug("%d hits with their moments in %.3f s", len(hits), time.perf_counter() - started)
    kept_ids = {c.video_id for c in kept}
    dropped = [DroppedCandidate(video_id=c.video_id, relevance=judged[c.video_id].relevance)
               for c in candidates if c.video_id not in kept_ids]
    return hits, dropped


def judgements_or_scores(state: AgentState, run: Run, judge: Judge) -> tuple[dict[str, Judgement], bool]:
    """Each candidate's judgement, and whether its relevance is a probability that tau thresholds.

    The LLM's judgements; a candidate below the judged top (``judge_top``), its calibrated retrieval
    relevance. With reasoning off, P(relevant) from the retrieval calibrator when there is one (so a search
    without reasoning rejects what matches nothing too), capped by the candidates ranked above it, else the
    retrieval score scaled over the candidates (not a probability: every candidate is returned)."""
    candidates = state.get("candidates", [])
    if not run.lr:
        calibrated = {c.video_id: p for c in candidates
                      if run.videos is None and (p := judge.retrieval_probability(c)) is not None}
        if calibrated:
            # the retrieval order is the ranking: a candidate is never more probable than one ranked above it,
            # so tau keeps a prefix of the order
            ceiling, ordered = 1.0, {}
            for c in candidates:
                ceiling = min(ceiling, calibrated[c.video_id])
                ordered[c.video_id] = from_retrieval(ceiling, "retrieval")
            return ordered, True
        scaled = retrieval_relevance(candidates, run)
        return {c.video_id: from_retrieval(scaled[c.video_id], "retrieval") for c in candidates}, False
    judged = dict(state.get("judgements", {}))
    return {c.video_id: judged.get(c.video_id) or judge.unjudged(c) for c in candidates}, True


def _objects(twin: Twin, track_ids: list[int], root: Path) -> list[HitObject]:
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


def _hit(res: Resources, cand: Candidate, j: Judgement, rank: int, judged_by: str, root: Path,
         actions: list[ActionRecord], dec: Decomposition | None, retrieval_rank: int,
         moment_query: EncodedSubqueries | None = None) -> Hit:
    twin = search_twin(res, cand.video_id, actions)  # with this search's refinements
    # refinements add facts, never time: the moments are those of the ingest components the index holds
    moments = res.indexes.moments.locate(moment_query, twin)
    objects = j.objects or grounded_tracks(cand, twin, dec)  # the tracks behind the object sub-queries' evidence
    # a candidate the LLM did not judge is still explained, from its evidence (no LLM call)
    reasoning = j.reasoning or (evidence_reasoning(cand, twin, None, objects) if j.source == "unjudged" else "")
    return Hit(rank=rank, video_id=cand.video_id, path=cand.path, relevance=j.relevance,
               retrieval_score=cand.score, retrieval_rank=retrieval_rank, similarity=cand.similarity,
               judgement=j.judged, description=j.read or description(twin), scores=cand.scores,
               reasoning=reasoning, missing=j.missing, judged_by=judged_by, refined=j.round > 0,
               objects=_objects(twin, objects, root), evidence=cand.evidence, moments=moments)
