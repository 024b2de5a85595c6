"""The twin store's rows: how a twin's models are written to the store's tables and read back (JSON columns,
the bounding box and centroid as columns), and the raw rows some of the store's reads return."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from twinseek.twins.model import (
    Instance,
    Provenance,
    ScreenText,
    Shot,
    Speech,
    SpeechSegment,
    Track,
    Video,
    utc_now,
)
from twinseek.twins.refinements import Refinement


class VideoRevision(NamedTuple):
    """What changes when a video's stored twin does (:meth:`~twinseek.twins.store.TwinStore.video_revisions`): a
    catalogue makes each video's signature from the fields it indexes, and re-indexes the video when it changes."""

    video_id: str
    content_hash: str | None
    mask_dir: str | None  # unique per ingest: the ingest rows never change after it
    ingested_at: str | None
    ecr_text: str | None
    ecr_source: str | None
    relations: int  # how many relation rows
    last_relation: int | None  # the highest relation row id
    tracks: int  # how many track rows
    track_labels: str | None  # "track_id:category:attributes" of each track, joined by "|"


@dataclass(frozen=True)
class StoredRows:
    """One video's rows exactly as stored (column -> value, JSON columns as their text), each table in the order
    :meth:`~twinseek.twins.store.TwinStore.get_twin` reads it: tracks by track id, instances by track and frame,
    relations by row id."""

    video: dict[str, Any]
    tracks: list[dict[str, Any]]
    instances: list[dict[str, Any]]
    relations: list[dict[str, Any]]
    speech_status: dict[str, Any] | None = None  # None: ingested before speech existed
    speech: list[dict[str, Any]] = field(default_factory=list)  # by segment number
    shots: list[dict[str, Any]] = field(default_factory=list)  # by shot number


def video_to_row(video: Video, mask_dir: str) -> dict[str, Any]:
    row = video.model_dump()
    row["sampled_frames"] = json.dumps(video.sampled_frames)
    row["specialists"] = json.dumps([p.model_dump() for p in video.specialists])
    row["scene"] = json.dumps(video.scene)
    row["screen_text"] = json.dumps([t.model_dump() for t in video.screen_text])
    row["frame_votes"] = json.dumps(video.frame_votes)
    row["mask_dir"] = mask_dir
    return row


def video_from_row(row: dict[str, Any]) -> Video:
    row = dict(row)
    row.pop("mask_dir", None)
    row["sampled_frames"] = json.loads(row["sampled_frames"] or "[]")
    row["specialists"] = [Provenance(**p) for p in json.loads(row["specialists"] or "[]")]
    row["scene"] = [tuple(s) for s in json.loads(row.get("scene") or "[]")]
    row["screen_text"] = [ScreenText(**t) for t in json.loads(row.get("screen_text") or "[]")]
    row["frame_votes"] = json.loads(row.get("frame_votes") or "{}")
    return Video(**row)


def speech_to_rows(video_id: str, speech: Speech) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``speech_status`` row and the ``speech`` rows of a video's speech."""
    status = {"video_id": video_id, **speech.model_dump(exclude={"segments"})}
    rows = [{"video_id": video_id, "segment": n, "start_s": seg.start, "end_s": seg.end, "text": seg.text,
             "language": seg.language, "confidence": seg.confidence} for n, seg in enumerate(speech.segments)]
    return status, rows


def speech_from_rows(status: dict[str, Any] | None, rows: list[dict[str, Any]]) -> Speech | None:
    if status is None:
        return None
    segments = [SpeechSegment(start=r["start_s"], end=r["end_s"], text=r["text"], language=r["language"],
                              confidence=r["confidence"] or 0.0) for r in rows]
    return Speech(**{k: v for k, v in status.items() if k != "video_id"}, segments=segments)


def shot_to_row(video_id: str, shot: Shot) -> dict[str, Any]:
    return {"video_id": video_id, "shot": shot.index, "start_frame": shot.start_frame, "end_frame": shot.end_frame,
            "start_s": shot.start_s, "end_s": shot.end_s, "key_frames": json.dumps(shot.key_frames),
            "labels": json.dumps(shot.labels)}


def shot_from_row(row: dict[str, Any]) -> Shot:
    return Shot(index=row["shot"], start_frame=row["start_frame"], end_frame=row["end_frame"],
                start_s=row["start_s"], end_s=row["end_s"], key_frames=json.loads(row["key_frames"] or "[]"),
                labels=[(str(label), float(score)) for label, score in json.loads(row.get("labels") or "[]")])


def track_to_row(track: Track) -> dict[str, Any]:
    row = track.model_dump()
    row["category_candidates"] = json.dumps(track.category_candidates)
    row["votes"] = json.dumps(track.votes)
    row["actions"] = json.dumps(track.actions)
    return row


def track_from_row(row: dict[str, Any]) -> Track:
    row = dict(row)
    row["category_candidates"] = [tuple(c) for c in json.loads(row["category_candidates"] or "[]")]
    row["votes"] = json.loads(row.get("votes") or "{}")
    row["actions"] = [tuple(a) for a in json.loads(row.get("actions") or "[]")]
    return Track(**row)


def instance_to_row(inst: Instance) -> dict[str, Any]:
    row = inst.model_dump(exclude={"bbox", "centroid"})
    row.update(zip(("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"), inst.bbox))
    row.update(centroid_x=inst.centroid[0], centroid_y=inst.centroid[1])
    return row


def instance_from_row(row: dict[str, Any]) -> Instance:
    row = dict(row)
    row["bbox"] = tuple(row.pop(k) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"))
    row["centroid"] = (row.pop("centroid_x"), row.pop("centroid_y"))
    return Instance(**row)


def refinement_to_row(ref: Refinement) -> dict[str, Any]:
    row = ref.model_dump(exclude={"id"})
    for name in ("frames", "args", "value", "provenance"):
        row[name] = json.dumps(row[name], sort_keys=True)
    row.update(key=ref.key, call=ref.call, created_at=ref.provenance.get("created_at") or utc_now())
    return row


def refinement_from_row(row: dict[str, Any]) -> Refinement:
    row = {k: v for k, v in row.items() if k not in ("key", "call", "created_at")}
    for name in ("frames", "args", "value", "provenance"):
        row[name] = json.loads(row[name]) if row[name] is not None else None
    return Refinement(**row)
