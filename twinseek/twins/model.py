"""The digital-twin data model.

Coordinates are normalised to the frame: ``x`` and ``y`` in [0, 1] from the top-left corner, ``area`` as a
fraction of the frame. ``depth`` is relative (0 = nearest, 1 = farthest in that frame) or ``None`` when no
depth model ran. Frame references use ``frame_index``, the index of the decoded frame in the source video.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from twinseek.media import spread

Tier = Literal["embedded", "paper", "heuristic"]
RelationKind = Literal["spatial", "temporal"]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Provenance(BaseModel):
    """Which model produced a piece of the twin."""

    role: str
    tier: Tier
    model: str


class ScreenText(BaseModel):
    """A line of text read on screen (captions, signs, titles) in one sampled frame."""

    frame_index: int
    text: str
    score: float = Field(description="Recognition confidence.")
    bbox: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2, normalised.")


def screen_lines(items: list[ScreenText], limit: int | None = None) -> list[str]:
    """Distinct lines of on-screen text in order of first appearance."""
    seen: dict[str, None] = {}
    for item in sorted(items, key=lambda t: (t.frame_index, t.bbox[1], t.bbox[0])):
        seen.setdefault(item.text, None)
    return list(seen)[:limit]


class Video(BaseModel):
    video_id: str
    path: str
    content_hash: str
    width: int
    height: int
    fps: float
    frame_count: int = Field(description="Frames in the source video (decoded count).")
    duration_s: float
    sampled_frames: list[int] = Field(description="Source frame indices that were sampled, in order.")
    profile: str
    specialists: list[Provenance] = Field(default_factory=list)
    scene: list[tuple[str, float]] = Field(
        default_factory=list, description="Whole-frame labels (most likely first), e.g. lakeside, seashore.")
    screen_text: list[ScreenText] = Field(
        default_factory=list, description="On-screen text read on a few keyframes (empty where none was found).")
    ecr_text: str | None = Field(None, description="Video-level description (ECR) written by later stages.")
    ecr_source: str | None = None
    ingested_at: str = Field(default_factory=utc_now)


class Track(BaseModel):
    video_id: str
    track_id: int
    category: str
    category_score: float
    category_source: str
    category_group: str | None = Field(None, description="Coarser word for the category (bird for black swan).")
    category_candidates: list[tuple[str, float]] = Field(default_factory=list, description="Runner-up labels.")
    attributes: str = ""
    first_frame: int
    last_frame: int
    frame_count: int
    mean_area: float
    speed: float = Field(0.0, description="Mean centroid speed in frame-widths per second.")
    direction: str = Field("stationary", description="Dominant motion: left/right/up/down/stationary/in place.")


class Instance(BaseModel):
    video_id: str
    track_id: int
    frame_index: int
    category: str
    category_score: float
    attributes: str = ""
    mask_path: str = Field(description="PNG path relative to the store folder.")
    bbox: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2, normalised.")
    centroid: tuple[float, float]
    depth: float | None = None
    area: float


class Relation(BaseModel):
    video_id: str
    subject_track: int
    predicate: str
    object_track: int | None = Field(None, description="None for unary predicates (e.g. moving left).")
    kind: RelationKind
    frame_start: int
    frame_end: int


class Twin(BaseModel):
    """A whole digital twin: the video, its tracks, per-frame instances and relations."""

    video: Video
    tracks: list[Track] = Field(default_factory=list)
    instances: list[Instance] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)

    def to_full_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_full_json(cls, text: str) -> Twin:
        return cls.model_validate_json(text)

    def to_compact(self, max_frames: int | None = 8, track_ids: set[int] | None = None) -> dict[str, Any]:
        """A small dict meant for an LLM prompt: short keys, rounded numbers, a few frames per track.

        Keys: ``o`` objects (``id``, ``cat``, ``attr``, ``mv`` motion, ``f`` frames as
        ``[frame, x, y, size, depth]``), ``r`` relations as ``[subject, predicate, object, from, to]``,
        ``text`` on-screen text lines, ``know`` each category's WordNet lemmas and gloss.
        """
        from twinseek.twins.knowledge import word_knowledge

        by_track: dict[int, list[Instance]] = {}
        for inst in self.instances:
            if track_ids is None or inst.track_id in track_ids:
                by_track.setdefault(inst.track_id, []).append(inst)
        objects = []
        for track in self.tracks:
            if track_ids is not None and track.track_id not in track_ids:
                continue
            insts = sorted(by_track.get(track.track_id, []), key=lambda i: i.frame_index)
            if max_frames:
                insts = [insts[k] for k in spread(len(insts), max_frames)]
            objects.append(
                {
                    "id": track.track_id,
                    "cat": track.category if not track.category_group else f"{track.category} ({track.category_group})",
                    "attr": track.attributes,
                    "mv": f"{track.direction} {track.speed:.2f}" if track.direction != "stationary" else "still",
                    "f": [
                        [i.frame_index, round(i.centroid[0], 2), round(i.centroid[1], 2), round(i.area, 3),
                         None if i.depth is None else round(i.depth, 2)]
                        for i in insts
                    ],
                }
            )
        relations = [
            [r.subject_track, r.predicate, r.object_track, r.frame_start, r.frame_end]
            for r in self.relations
            if track_ids is None or (r.subject_track in track_ids and (r.object_track in track_ids or r.object_track is None))
        ]
        compact: dict[str, Any] = {"video": self.video.video_id, "secs": round(self.video.duration_s, 1)}
        if self.video.scene:
            compact["scene"] = [label for label, _ in self.video.scene]
        if self.video.screen_text:
            compact["text"] = screen_lines(self.video.screen_text, limit=8)
        compact.update(o=objects, r=relations)
        knowledge = word_knowledge()
        words = [(t.category, t.category_group) for t in self.tracks if track_ids is None or t.track_id in track_ids]
        words += [(group, None) for _, group in words if group]  # the coarse group's gloss: what the kind is
        glosses = {word: knowledge.gloss(word, group) for word, group in words}
        if any(glosses.values()):
            compact["know"] = {cat: gloss for cat, gloss in glosses.items() if gloss}
        return compact

    def to_compact_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_compact(**kwargs), separators=(",", ":"))
