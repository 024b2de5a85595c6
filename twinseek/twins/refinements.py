"""Refinements: what just-in-time refinement learns about a twin, kept as an overlay on the ingest rows.

Ingest writes a twin once (``videos``, ``tracks``, ``instances``, ``relations``); nothing a search does ever
rewrites those rows. What a specialist action finds later (a better category, an attribute, depth, a relation) is
a :class:`Refinement` row with its provenance, and a twin is *read* as its ingest rows with refinements laid over
them (:func:`overlay`). The rules, so that a refinement can add to a twin but never override what ingest knew
with more confidence:

* **category** (per track): the refinement with the highest confidence wins, and only over an ingest
  ``category_score`` strictly lower than its confidence (an instance keeps its own label when its own score is
  at least as high). A lower-scored label, whatever the plan that asked for it, changes nothing.
* **attributes** (per track): text is appended to the ingest text (and to each instance's), never replacing it;
  text already there is not repeated; at most :data:`MAX_ATTRIBUTE_CHARS` characters in all.
* **depth** (per track, per frame): fills an instance's depth only where ingest has none.
* **relations**: added when the twin does not hold the same relation yet; never removed.

A refinement that could never show under these rules (:func:`prune` returns ``None``) is not stored at all.

Refinements are also a cache: a row is keyed by what produced it (video, track, frames, action, the action's
inputs, model, prompt version, field), so asking the same action again reads the row instead of running the
model. See :class:`twinseek.twins.store.TwinStore` for the table and the agent's graph for how a search uses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from twinseek.twins.model import Relation, Twin

RefinementField = Literal["category", "attributes", "depth", "relations"]
MAX_ATTRIBUTE_CHARS = 200


class Refinement(BaseModel):
    """One fact a specialist action added to one track (or, ``track_id=None``, to the video)."""

    id: int | None = Field(None, description="Row id in the store; None before it is stored.")
    video_id: str
    track_id: int | None = Field(None, description="The track it is about; None for video-level facts.")
    frames: list[int] = Field(default_factory=list, description="Frames the action looked at.")
    action: str
    args: dict[str, Any] = Field(default_factory=dict, description="The action's inputs besides track and frames.")
    model: str = Field(description="tier:model of the specialist (or 'geometry').")
    prompt_version: str = Field("1", description="Version of the action's prompt or procedure.")
    field: RefinementField
    value: Any = Field(description="category: {label, group, source, candidates}; attributes: text; depth: "
                       "{frame: depth}; relations: [relation fields].")
    confidence: float | None = Field(None, description="The model's score (categories); None where it has none.")
    provenance: dict[str, Any] = Field(default_factory=dict, description="Who asked: query hash, round, time.")

    @property
    def call(self) -> str:
        """Digest of the action call that produced it: every row of one call shares it (the cache's key)."""
        return call_digest(self.video_id, self.action, self.args, self.model, self.prompt_version)

    @property
    def key(self) -> str:
        """Digest of what makes the row unique: a repeated action finds its row instead of adding another."""
        return _digest([self.call, self.track_id, sorted(self.frames), self.field])


def call_digest(video_id: str, action: str, args: dict[str, Any], model: str, prompt_version: str) -> str:
    return _digest([video_id, action, args, model, prompt_version])


def _digest(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


# -- reading: ingest rows + refinements ---------------------------------------------------------------------------
def overlay(twin: Twin, refinements: Sequence[Refinement]) -> Twin:
    """A copy of the ingest ``twin`` with ``refinements`` laid over it by the rules of this module."""
    if not refinements:
        return twin
    out = twin.model_copy(deep=True)
    ordered = sorted(refinements, key=lambda r: (r.id is None, r.id or 0))
    tracks = {t.track_id: t for t in out.tracks}
    by_track: dict[int, list[Any]] = {}
    for inst in out.instances:
        by_track.setdefault(inst.track_id, []).append(inst)

    best: dict[int, Refinement] = {}
    for r in ordered:
        if r.field == "category" and r.track_id in tracks and r.confidence is not None:
            if r.track_id not in best or r.confidence > (best[r.track_id].confidence or 0.0):
                best[r.track_id] = r
    for track_id, r in best.items():
        _set_category(tracks[track_id], by_track.get(track_id, []), r)

    for r in ordered:
        if r.track_id is not None and r.track_id not in tracks:
            continue  # the rows of another ingest of this video (the store clears them; be safe anyway)
        if r.field == "attributes" and r.track_id is not None:
            for item in [tracks[r.track_id], *by_track.get(r.track_id, [])]:
                item.attributes = _append(item.attributes, str(r.value))
        elif r.field == "depth" and r.track_id is not None:
            depth = {int(f): float(d) for f, d in dict(r.value).items()}
            for inst in by_track.get(r.track_id, []):
                if inst.depth is None and inst.frame_index in depth:
                    inst.depth = depth[inst.frame_index]
        elif r.field == "relations":
            known = {_relation_key(x) for x in out.relations}
            for rel in _relations(out.video.video_id, r.value):
                if _relation_key(rel) not in known and _tracks_exist(rel, tracks):
                    known.add(_relation_key(rel))
                    out.relations.append(rel)
    return out


def _set_category(track: Any, instances: Sequence[Any], r: Refinement) -> None:
    confidence = float(r.confidence or 0.0)
    if confidence <= track.category_score:
        return
    value = dict(r.value)
    track.category = str(value["label"])
    track.category_score = confidence
    track.category_source = str(value.get("source") or r.model)
    track.category_group = value.get("group")
    track.category_candidates = [(str(label), float(score)) for label, score in value.get("candidates", [])]
    for inst in instances:
        if inst.category_score < confidence:
            inst.category, inst.category_score = track.category, confidence


def _append(text: str, addition: str) -> str:
    addition = addition.strip()
    if not addition or addition.lower() in text.lower():
        return text
    return (f"{text}; {addition}" if text else addition)[:MAX_ATTRIBUTE_CHARS]


def _relations(video_id: str, value: Any) -> list[Relation]:
    return [Relation(**{**dict(v), "video_id": video_id}) for v in value or []]


def _relation_key(r: Relation) -> tuple[Any, ...]:
    return r.subject_track, r.predicate, r.object_track, r.frame_start, r.frame_end


def _tracks_exist(r: Relation, tracks: dict[int, Any]) -> bool:
    return r.subject_track in tracks and (r.object_track is None or r.object_track in tracks)


# -- writing: keep only what adds to the ingest twin ----------------------------------------------------------------
def prune(refinement: Refinement, ingest: Twin) -> Refinement | None:
    """``refinement`` reduced to what it adds to the ``ingest`` twin, or ``None`` when it could never show: a
    category not more confident than ingest's, text ingest already has, depth where ingest has depth, relations
    ingest holds, or an unknown track."""
    r = refinement
    tracks = {t.track_id: t for t in ingest.tracks}
    if r.track_id is not None and r.track_id not in tracks:
        return None
    if r.field == "category":
        track = tracks.get(r.track_id) if r.track_id is not None else None
        ok = track is not None and r.confidence is not None and r.confidence > track.category_score
        return r if ok and isinstance(r.value, dict) and r.value.get("label") else None
    if r.field == "attributes":
        track = tracks.get(r.track_id) if r.track_id is not None else None
        text = str(r.value or "").strip()
        return r if track is not None and text and text.lower() not in track.attributes.lower() else None
    if r.field == "depth":
        missing = {i.frame_index for i in ingest.instances if i.track_id == r.track_id and i.depth is None}
        depth = {str(f): float(d) for f, d in dict(r.value or {}).items() if int(f) in missing}
        return r.model_copy(update={"value": depth}) if depth else None
    known = {_relation_key(x) for x in ingest.relations}
    value = []
    for rel in _relations(ingest.video.video_id, r.value):
        if _relation_key(rel) not in known and _tracks_exist(rel, tracks):
            known.add(_relation_key(rel))
            value.append(rel.model_dump(exclude={"video_id"}))
    return r.model_copy(update={"value": value}) if value else None
