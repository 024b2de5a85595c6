"""What the agent's nodes call besides the retrieval stages: the registry of specialist actions that just-in-time
refinement may run on a candidate's twin (the compact twin view given to the LLM is :func:`twinseek.twins.views.
compact_view`).

Every action has a pydantic argument model (closed, bounded). A planned call runs only when its action is
registered, available with the configured specialists, and its arguments validate against the twin; anything
else is rejected and recorded.

Actions never rewrite the twin. What one finds is a :class:`~twinseek.twins.refinements.Refinement` stored in the
overlay table (with the query's hash and the round as provenance), and only where it adds to the ingest twin: a
category less confident than ingest's, text already known, depth or relations already there are reported and
dropped. The overlay is also a cache: a call already answered (same video, track, frames, inputs, model and
version) reads its rows instead of running the model again.

A search sees the refinements its own calls produced or read (:func:`search_twin`), not every refinement in the
store: what one search (or one eval system) asked for never changes what another sees, and the same query asked
twice plans the same calls, reads the same cached rows and ranks the same way.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twinseek.agent import prompts
from twinseek.agent.judge import evidence_tracks
from twinseek.agent.resources import Resources
from twinseek.agent.run import Run
from twinseek.agent.state import ActionRecord, AgentState, fallback
from twinseek.llm.base import LLMError
from twinseek.llm.deadline import BoundedLLM, Deadline
from twinseek.media.decode import iter_frames
from twinseek.media.masks import resize_mask, spread
from twinseek.retrieval.stages import Candidate
from twinseek.twins.adapters.base import box_from_mask, crop
from twinseek.twins.model import Instance, Relation, Track, Twin, utc_now
from twinseek.twins.refinements import MAX_ATTRIBUTE_CHARS, Refinement, RefinementField, call_digest
from twinseek.twins.relations import APPROACH_MIN, MIN_SHARED, spatial_predicates
from twinseek.twins.views import compact_view

logger = logging.getLogger(__name__)

MAX_PLAN_CALLS = 3


# -- action arguments ---------------------------------------------------------------------------------------------
class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrackArgs(_Args):
    track_id: int = Field(ge=0)


class RecategoriseArgs(_Args):
    track_id: int = Field(ge=0)
    vocabulary: list[str] = Field(min_length=1, max_length=10)

    def model_post_init(self, _: Any) -> None:
        self.vocabulary = [w.strip()[:40] for w in self.vocabulary if w.strip()]


class DepthArgs(_Args):
    frames: list[int] = Field(default_factory=list, max_length=4, description="frame numbers; empty: spread")


class PairArgs(_Args):
    track_a: int = Field(ge=0)
    track_b: int = Field(ge=0)


class PlannedCall(BaseModel):
    """One call as the LLM writes it; its ``args`` are validated against the action's own model afterwards."""

    model_config = ConfigDict(extra="forbid", title="Call")

    action: str = Field(max_length=40)
    args: dict[str, int | str | list[str] | list[int]]


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Plan")

    calls: list[PlannedCall] = Field(max_length=MAX_PLAN_CALLS)


@dataclass
class Outcome:
    detail: str
    model: str | None = None
    refinements: list[Refinement] = field(default_factory=list)  # new ones (id None) or read from the cache
    cached: bool = False


@dataclass(frozen=True)
class Action:
    name: str
    usage: str  # one line for the prompt: signature and what it adds
    args_model: type[_Args]
    run: Callable[[Resources, Twin, Any], Outcome]
    unavailable: Callable[[Resources], str | None] = lambda _: None  # why it cannot run here, or None
    version: str = "1"  # bump when the action's procedure or prompt changes: cached rows of the old one are not read


class Rejected(Exception):
    """A planned call that must not run (unknown action, bad arguments, unknown track)."""


# -- frames and masks ---------------------------------------------------------------------------------------------
def load_frames(resources: Resources, twin: Twin, frame_indices: set[int]) -> dict[int, np.ndarray]:
    """Decode only the wanted frames, at the resolution the masks were made at."""
    return dict(iter_frames(twin.video.path, resources.settings.sampling.max_side, frame_indices))


def fitted_mask(resources: Resources, inst: Instance, shape: tuple[int, ...]) -> np.ndarray:
    """The instance's mask at the frame's size (a store made with another ``max_side`` still lines up)."""
    return resize_mask(resources.store.load_mask(inst), shape)


def _track(twin: Twin, track_id: int) -> Track:
    for t in twin.tracks:
        if t.track_id == track_id:
            return t
    raise Rejected(f"no object {track_id} in {twin.video.video_id}")


def _instances(twin: Twin, track_id: int) -> list[Instance]:
    return sorted((i for i in twin.instances if i.track_id == track_id), key=lambda i: i.frame_index)


def _typical(insts: Sequence[Instance]) -> Instance:
    """The view whose area is the track's median (the largest one often bled into the background)."""
    median = float(np.median([i.area for i in insts]))
    return min(insts, key=lambda i: abs(i.area - median))


# -- the cache ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    """One action call as the refinement cache knows it: the same call later reads these rows."""

    video_id: str
    action: str
    args: dict[str, Any]
    model: str

    @property
    def version(self) -> str:
        return ACTIONS[self.action].version

    def cached(self, resources: Resources) -> list[Refinement]:
        digest = call_digest(self.video_id, self.action, self.args, self.model, self.version)
        return resources.store.refinements(self.video_id, call=digest)

    def refinement(self, field_: RefinementField, value: Any, *, track_id: int | None, frames: Sequence[int],
                   confidence: float | None = None) -> Refinement:
        return Refinement(video_id=self.video_id, track_id=track_id, frames=sorted(set(frames)), action=self.action,
                          args=self.args, model=self.model, prompt_version=self.version, field=field_, value=value,
                          confidence=confidence)


def _model_name(specialist: Any) -> str:
    return f"{specialist.tier}:{specialist.model}"


def _from_cache(call: _Call, resources: Resources) -> Outcome | None:
    """The outcome of a call answered before, from its stored rows (None when there are none)."""
    rows = call.cached(resources)
    if not rows:
        return None
    return Outcome(("cached: " + "; ".join(describe_refinement(r) for r in rows))[:160], call.model, rows, cached=True)


def describe_refinement(r: Refinement) -> str:
    """One short line: what a refinement says."""
    if r.field == "category":
        return f"object {r.track_id}: {r.value.get('label')} ({r.confidence or 0:.2f})"
    if r.field == "attributes":
        return f"object {r.track_id}: {r.value}"
    if r.field == "depth":
        return f"object {r.track_id}: depth on {len(r.value)} frames"
    return ", ".join(f"{v['subject_track']} {v['predicate']} {v['object_track']}@{v['frame_start']}" for v in r.value)


# -- the actions --------------------------------------------------------------------------------------------------
def describe_object(resources: Resources, twin: Twin, args: TrackArgs) -> Outcome:
    track = _track(twin, args.track_id)
    insts = _instances(twin, args.track_id)
    if not insts:
        raise Rejected(f"object {args.track_id} has no frames")
    inst = _typical(insts)
    describer = resources.specialists.describer
    # the category is the describer's hint, so it is one of the call's inputs
    call = _Call(twin.video.video_id, "describe_object", {"track_id": track.track_id, "category": track.category},
                 _model_name(describer))
    if (hit := _from_cache(call, resources)) is not None:
        return hit
    frame = load_frames(resources, twin, {inst.frame_index})[inst.frame_index]
    text = describer.describe(frame, fitted_mask(resources, inst, frame.shape), track.category).strip()
    if not text or text.lower() in track.attributes.lower():
        return Outcome(f"no new attribute for object {track.track_id}", call.model)
    found = call.refinement("attributes", text[:MAX_ATTRIBUTE_CHARS], track_id=track.track_id,
                            frames=[inst.frame_index])
    return Outcome(f"object {track.track_id}: {text}"[:160], call.model, [found])


def recategorise(resources: Resources, twin: Twin, args: RecategoriseArgs) -> Outcome:
    track = _track(twin, args.track_id)
    insts = sorted(_instances(twin, args.track_id), key=lambda i: (-i.area, i.frame_index))[:4]  # the largest views
    if not insts:
        raise Rejected(f"object {args.track_id} has no frames")
    detector = resources.specialists.detector
    call = _Call(twin.video.video_id, "recategorise",
                 {"track_id": track.track_id, "vocabulary": sorted({w.lower() for w in args.vocabulary})},
                 _model_name(detector))
    if (hit := _from_cache(call, resources)) is not None:
        return hit
    frames = load_frames(resources, twin, {i.frame_index for i in insts})
    crops = []
    for inst in insts:
        frame = frames[inst.frame_index]
        box = box_from_mask(fitted_mask(resources, inst, frame.shape))
        if box is not None:
            crops.append(crop(frame, box))
    open_vocabulary = detector.open_vocabulary  # OWLv2 and YOLO-World take labels; the embedded classifier not
    found = detector.categorise(crops, args.vocabulary if open_vocabulary else None) if crops else []
    if not open_vocabulary:  # a closed-set classifier: keep its labels that the vocabulary names
        words = {w.lower() for w in args.vocabulary}
        found = [c for c in found if c.label.lower() in words or (c.group or "").lower() in words] or []
    if not found:
        return Outcome(f"none of {args.vocabulary} fits object {track.track_id}", call.model)
    best = found[0]
    if best.score <= track.category_score:  # a label less sure than the twin's never replaces it
        return Outcome(f"object {track.track_id}: kept {track.category} ({track.category_score:.2f}); "
                       f"{best.label} scored {best.score:.2f}"[:160], call.model)
    value = {"label": best.label, "group": best.group, "source": best.source,
             "candidates": [[c.label, round(c.score, 3)] for c in found[1:4]]}
    refinement = call.refinement("category", value, track_id=track.track_id, frames=[i.frame_index for i in insts],
                                 confidence=round(best.score, 4))
    return Outcome(f"object {track.track_id}: {track.category} -> {best.label} ({best.score:.2f})"[:160],
                   call.model, [refinement])


def estimate_depth(resources: Resources, twin: Twin, args: DepthArgs) -> Outcome:
    sampled = sorted({i.frame_index for i in twin.instances})
    wanted = sorted({f for f in args.frames if f in sampled})
    if args.frames and not wanted:
        raise Rejected(f"frames {args.frames} are not among the twin's frames")
    if not wanted:  # spread four over the video
        wanted = [sampled[k] for k in spread(len(sampled), 4)]
    estimator = resources.specialists.depth
    assert estimator is not None  # guarded by the action's availability check
    call = _Call(twin.video.video_id, "estimate_depth", {"frames": wanted}, _model_name(estimator))
    if (hit := _from_cache(call, resources)) is not None:
        return hit
    frames = load_frames(resources, twin, set(wanted))
    depths: dict[int, dict[str, float]] = {}
    for f, frame in frames.items():
        dmap = estimator.estimate(frame)
        h, w = dmap.shape[:2]
        for inst in (i for i in twin.instances if i.frame_index == f):
            x, y = inst.centroid
            depths.setdefault(inst.track_id, {})[str(f)] = float(dmap[min(int(y * h), h - 1), min(int(x * w), w - 1)])
    measured = [i.model_copy(update={"depth": depths[i.track_id][str(i.frame_index)]})
                for i in twin.instances if str(i.frame_index) in depths.get(i.track_id, {})]
    relations = _new_relations(twin, _depth_relations(twin.video.video_id, measured))
    found = [call.refinement("depth", value, track_id=track_id, frames=wanted)
             for track_id, value in sorted(depths.items())]
    if relations:
        found.append(call.refinement("relations", [r.model_dump(exclude={"video_id"}) for r in relations],
                                     track_id=None, frames=wanted))
    return Outcome(f"depth on {len(frames)} frames, {len(relations)} new depth relations", call.model, found)


def _depth_relations(video_id: str, insts: Sequence[Instance]) -> list[Relation]:
    out = []
    for a in insts:
        for b in insts:
            if a.frame_index == b.frame_index and a.track_id != b.track_id:
                for pred in spatial_predicates(a, b):
                    if pred in ("in front of", "behind"):
                        out.append(Relation(video_id=video_id, subject_track=a.track_id, predicate=pred,
                                            object_track=b.track_id, kind="spatial", frame_start=a.frame_index,
                                            frame_end=a.frame_index))
    return out


def motion_relation(resources: Resources, twin: Twin, args: PairArgs) -> Outcome:
    if args.track_a == args.track_b:
        raise Rejected("motion_relation needs two different objects")
    _track(twin, args.track_a), _track(twin, args.track_b)
    at = {i.frame_index: i for i in _instances(twin, args.track_a)}
    bt = {i.frame_index: i for i in _instances(twin, args.track_b)}
    shared = sorted(set(at) & set(bt))
    if len(shared) < MIN_SHARED:
        return Outcome(f"objects {args.track_a} and {args.track_b} share {len(shared)} frames", "geometry")
    first, last = shared[0], shared[-1]
    change = _dist(at[last], bt[last]) - _dist(at[first], bt[first])
    trend = "approaching" if change < -APPROACH_MIN else "moving away from" if change > APPROACH_MIN else \
        "keeping its distance from"
    vid = twin.video.video_id
    found = [Relation(video_id=vid, subject_track=args.track_a, predicate=trend, object_track=args.track_b,
                      kind="temporal", frame_start=first, frame_end=last)]
    for f in (first, last):  # where a is relative to b at the start and at the end
        for pred in spatial_predicates(at[f], bt[f]):
            found.append(Relation(video_id=vid, subject_track=args.track_a, predicate=pred,
                                  object_track=args.track_b, kind="spatial", frame_start=f, frame_end=f))
    words = ", ".join(f"{r.predicate}@{r.frame_start}" for r in found)
    relations = _new_relations(twin, found)
    call = _Call(vid, "motion_relation", {"track_a": args.track_a, "track_b": args.track_b}, "geometry")
    refinements = [call.refinement("relations", [r.model_dump(exclude={"video_id"}) for r in relations],
                                   track_id=args.track_a, frames=[first, last])] if relations else []
    return Outcome(f"{args.track_a} vs {args.track_b}: {words}"[:160], "geometry", refinements)


def _dist(a: Instance, b: Instance) -> float:
    return float(np.hypot(a.centroid[0] - b.centroid[0], a.centroid[1] - b.centroid[1]))


def _new_relations(twin: Twin, relations: Sequence[Relation]) -> list[Relation]:
    """Relations the twin does not hold yet (a repeated plan must not duplicate rows)."""
    key = lambda r: (r.subject_track, r.predicate, r.object_track, r.frame_start, r.frame_end)  # noqa: E731
    seen = {key(r) for r in twin.relations}
    out = []
    for r in relations:
        if key(r) not in seen:
            seen.add(key(r))
            out.append(r)
    return out


def _no_depth(resources: Resources) -> str | None:
    return None if resources.depth_available else (
        "no depth estimator is configured (set TWINSEEK_SPECIALISTS__DEPTH=depth-anything)")


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("describe_object", "describe_object(track_id): colour, texture and look of one object",
           TrackArgs, describe_object),
    Action("recategorise", "recategorise(track_id, vocabulary: up to 10 labels): which label fits one object",
           RecategoriseArgs, recategorise),
    Action("estimate_depth", "estimate_depth(frames: up to 4 frame numbers): depth of every object, in front of "
           "/ behind", DepthArgs, estimate_depth, _no_depth),
    Action("motion_relation", "motion_relation(track_a, track_b): approaching or moving away, and relative "
           "position", PairArgs, motion_relation),
)}


def catalogue(resources: Resources) -> list[str]:
    """Prompt lines for the actions that can run with these resources."""
    return [a.usage for a in ACTIONS.values() if a.unavailable(resources) is None]


def run_call(resources: Resources, twin: Twin, call: PlannedCall, round_: int, *, query: str = "",
             applied: Collection[int] = ()) -> tuple[ActionRecord, bool]:
    """Validate and run one planned call and store what it found as refinements (provenance: the query's hash and
    the round). Returns its record (with the ids of the refinements it produced or read from the cache) and
    whether the search's view of the twin changed, i.e. a refinement not in ``applied`` came back."""
    record = ActionRecord(video_id=twin.video.video_id, round=round_, action=call.action[:40], args=dict(call.args),
                          status="rejected")
    action = ACTIONS.get(call.action)
    if action is None:
        return record.model_copy(update={"detail": f"unknown action {call.action!r}; registered: "
                                                   f"{', '.join(ACTIONS)}"}), False
    if (why := action.unavailable(resources)) is not None:
        return record.model_copy(update={"status": "unavailable", "detail": why}), False
    try:
        args = action.args_model.model_validate(call.args)
        outcome = action.run(resources, twin, args)
        stored = _store(resources, outcome, query, round_)
    except ValidationError as exc:
        first = exc.errors()[0]
        return record.model_copy(update={"detail": f"invalid args: {'.'.join(map(str, first['loc']))}: "
                                                   f"{first['msg']}"}), False
    except Rejected as exc:
        return record.model_copy(update={"detail": str(exc)}), False
    except Exception as exc:  # a specialist crashed: the search goes on with the twin as it was
        logger.exception("action %s failed on %s", call.action, twin.video.video_id)
        return record.model_copy(update={"status": "failed", "detail": f"{type(exc).__name__}: {exc}"[:200]}), False
    ids = [r.id for r in stored if r.id is not None]
    ran = record.model_copy(update={"status": "ran", "detail": outcome.detail, "model": outcome.model,
                                    "refinements": ids})
    return ran, bool(set(ids) - set(applied))


def _store(resources: Resources, outcome: Outcome, query: str, round_: int) -> list[Refinement]:
    """The outcome's refinements as stored rows: cached ones as they are, new ones written with provenance."""
    if outcome.cached:
        return outcome.refinements
    provenance = {"query_sha256": hashlib.sha256(query.encode()).hexdigest()[:16], "round": round_,
                  "created_at": utc_now(), "by": "agent.refine"}
    new = [r.model_copy(update={"provenance": provenance}) for r in outcome.refinements]
    return resources.store.add_refinements(new) if new else []


def search_twin(resources: Resources, video_id: str, actions: Sequence[ActionRecord]) -> Twin:
    """The twin as this search sees it: the ingest rows with the refinements its own calls produced or read."""
    return resources.store.get_twin(video_id, refinements=applied_refinements(actions, video_id))


def applied_refinements(actions: Sequence[ActionRecord], video_id: str) -> list[int]:
    return [i for a in actions if a.video_id == video_id and a.status == "ran" for i in a.refinements]


# -- one refinement round (the refine node) ---------------------------------------------------------------------
PLAN_MAX_TOKENS = 200
Writer = Callable[[dict[str, Any]], None]


def to_refine(state: AgentState, run: Run) -> list[str]:
    """Candidates judged this round by the LLM that name missing facts, best-ranked first."""
    round_ = state.get("refine_round", 0)
    judged = state.get("judgements", {})
    order = [c.video_id for c in state.get("candidates", [])]
    wanting = [v for v in order if v in judged and judged[v].round == round_ and judged[v].source == "llm"
               and judged[v].missing]
    return wanting[: run.refine_top]


def plan(res: Resources, run: Run, state: AgentState, llm: BoundedLLM, cand: Candidate, twin: Twin) -> Plan:
    """The LLM's plan of specialist calls for what ``cand``'s judgement said is missing."""
    missing = state["judgements"][cand.video_id].missing
    view = compact_view(twin, evidence_tracks(cand), run.max_tracks, run.max_frames)
    messages = prompts.plan_messages(catalogue(res), state["query"], missing, view, system=run.prompt("plan"))
    # a plan is optional: an invalid one is not worth re-generating (each retry costs seconds on a small LLM)
    return llm.chat_json(messages, Plan, max_tokens=PLAN_MAX_TOKENS, retries=0)


def refine_round(res: Resources, run: Run, state: AgentState, deadline: Deadline, writer: Writer) -> dict[str, Any]:
    """Plan (one LLM call per candidate, at once) and run the specialist calls for the candidates that miss facts;
    the state update names the candidates whose twins gained something (the next reason step judges them again)."""
    round_ = state.get("refine_round", 0) + 1
    todo = to_refine(state, run)
    if deadline.passed:
        return {"refine_round": round_, "to_reason": [], "trace": [f"refine[{round_}]: skipped (deadline)"],
                "fallbacks": [fallback("refine", None, f"deadline; {len(todo)} candidate(s) not refined")]}
    by_id = {c.video_id: c for c in state.get("candidates", [])}
    records: list[ActionRecord] = []
    fallbacks, changed = [], []
    earlier = state.get("actions", [])
    applied = {vid: set(applied_refinements(earlier, vid)) for vid in todo}
    twins = {vid: res.store.get_twin(vid, refinements=applied[vid]) for vid in todo}  # read here: one DB thread
    llm = BoundedLLM(res.llm, deadline)
    # plans are independent LLM calls: ask for them at once (the server's slots), then act one at a time
    with ThreadPoolExecutor(max_workers=min(res.parallel, max(1, len(todo)))) as pool:
        planned = {vid: pool.submit(plan, res, run, state, llm, by_id[vid], twins[vid]) for vid in todo}
    for vid in todo:
        twin = twins[vid]
        try:
            calls = planned[vid].result().calls
        except LLMError as exc:
            why = "deadline" if deadline.passed else f"the LLM failed ({exc})"
            fallbacks.append(fallback("refine", vid, f"no plan: {why}; judgement kept"))
            continue
        augmented = False
        for i, call in enumerate(calls):
            if deadline.passed:  # specialists are slow too: stop acting once time is up
                fallbacks.append(fallback("refine", vid, f"deadline; {len(calls) - i} planned call(s) not run"))
                break
            record, did = run_call(res, twin, call, round_, query=state["query"], applied=applied[vid])
            if record.status != "ran":
                logger.warning("refine %s: %s %s (%s)", vid, record.status, call.action, record.detail)
            records.append(record)
            writer({"node": "refine", "video_id": vid, "action": record.action, "status": record.status})
            if did:
                augmented = True
                applied[vid].update(record.refinements)
                twin = res.store.get_twin(vid, refinements=applied[vid])  # the next call sees what this one added
        if augmented:
            changed.append(vid)
    models = {f"refine.{r.action}": r.model for r in records if r.status == "ran" and r.model}
    trace = [f"refine[{round_}] {r.video_id}: {r.action} {r.status}: {r.detail}"[:200] for r in records]
    return {"refine_round": round_, "to_reason": changed, "actions": records, "fallbacks": fallbacks,
            "models": {"refine": res.llm_name, **models}, "trace": trace or [f"refine[{round_}]: nothing ran"]}
