"""The digital-twin data model.

Coordinates are normalised to the frame: ``x`` and ``y`` in [0, 1] from the top-left corner, ``area`` as a
fraction of the frame. ``depth`` is relative (0 = nearest, 1 = farthest in that frame) or ``None`` when no
depth model ran. Frame references use ``frame_index``, the index of the decoded frame in the source video.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

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
    frame_votes: dict[str, float] = Field(
        default_factory=dict, description="Share of the whole frames labelled (the scene frames) on which each label "
        "came first: how much the frames agree on it.")
    description: str | None = Field(
        None, description="What the video shows in one line (twinseek.twins.views.describe): what a judge, the ECR "
        "text and a person read first.")
    description_source: str | None = Field(None, description="Which rules (and version) wrote the description.")
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
    votes: dict[str, float] = Field(
        default_factory=dict, description="Share of the object's classified views on which each candidate label "
        "came first (empty where the categoriser gives none).")
    attributes: str = ""
    first_frame: int
    last_frame: int
    frame_count: int
    mean_area: float
    speed: float = Field(0.0, description="Mean centroid speed in frame-widths per second.")
    direction: str = Field("stationary", description="Dominant motion: left/right/up/down/stationary/in place.")
    actions: list[tuple[str, float]] = Field(
        default_factory=list, description="Coarse actions of a person (walking, running, jumping, sitting, standing, "
        "riding) with their confidence, most confident first (twinseek.twins.actions; empty for other objects).")


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


class SpeechSegment(BaseModel):
    """A stretch of speech and its words, as the recogniser timed them (seconds from the video's start)."""

    start: float
    end: float
    text: str
    language: str | None = None
    confidence: float = Field(0.0, description="exp(mean token log-probability) x (1 - P(no speech)), in [0, 1].")


class Speech(BaseModel):
    """What was said in the video (``twinseek.twins.speech``): the step's status and the timed segments.

    ``status``: ``transcribed`` (segments, possibly none), ``no audio track``, ``silence`` (the audio holds no
    voice) or ``skipped: <why>`` (speech off, an unreadable audio stream, a failed model)."""

    status: str
    model: str | None = None
    language: str | None = None
    audio_s: float = Field(0.0, description="Length of the audio stream.")
    transcribed_s: float = Field(0.0, description="Seconds of it decoded and transcribed (sampling.max_audio_s).")
    segments: list[SpeechSegment] = Field(default_factory=list)


class Shot(BaseModel):
    """A shot: a run of frames between two cuts (``twinseek.media.shots``). Frames are source frame indices;
    ``end_frame`` is the shot's last frame (inclusive) and ``end_s`` the time just after it."""

    index: int = Field(ge=0, description="Position of the shot in the video, 0 = first.")
    start_frame: int = Field(ge=0)
    end_frame: int = Field(ge=0)
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    key_frames: list[int] = Field(default_factory=list, description="The sampled frames that fall in the shot.")
    labels: list[tuple[str, float]] = Field(
        default_factory=list, description="Whole-frame labels of the shot's sampled frames (the categoriser's mean "
        "score per label, best first): what groups shots into scenes (twinseek.twins.scenes). Empty for a shot "
        "without a sampled frame, and in stores ingested before shot labels.")


def frame_time(video: Video, frame_index: int) -> float:
    """Seconds from the video's start at which source frame ``frame_index`` is shown."""
    return frame_index / video.fps if video.fps > 0 else 0.0


def frame_span(video: Video, first: int, last: int) -> tuple[float, float]:
    """Seconds from the start of source frame ``first`` to the end of frame ``last`` (inclusive), within the
    video's length: the time a component seen on those frames covers."""
    start, end = frame_time(video, first), frame_time(video, last + 1)
    if video.duration_s > 0:
        start, end = min(start, video.duration_s), min(end, video.duration_s)
    return round(start, 3), round(max(start, end), 3)


def frames_within(video: Video, frames: Iterable[int], start_s: float, end_s: float) -> list[int]:
    """The frames of ``frames`` (source indices) shown from ``start_s`` up to ``end_s``, in order; a span that
    reaches the video's end keeps the frames up to it."""
    closes = video.duration_s > 0 and end_s >= video.duration_s - 1e-6
    return sorted(f for f in frames if start_s - 1e-6 <= frame_time(video, f) < end_s - 1e-6
                  or (closes and frame_time(video, f) >= start_s - 1e-6))


class Twin(BaseModel):
    """A whole digital twin: the video, its tracks, per-frame instances and relations, and its speech."""

    video: Video
    tracks: list[Track] = Field(default_factory=list)
    instances: list[Instance] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)
    speech: Speech | None = Field(None, description="None: not run (a store from before speech).")
    shots: list[Shot] = Field(default_factory=list, description="The video's shots in order; empty in a store "
                              "from before shots.")

    def to_full_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_full_json(cls, text: str) -> Twin:
        return cls.model_validate_json(text)
