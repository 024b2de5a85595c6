"""Small twins and stores: a one-track twin with its masks, writing it to a store, and hashes of the ingest tables
(to check that something left them byte-identical)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np

from twinseek.twins.masks import mask_geometry
from twinseek.twins.model import Instance, Provenance, Relation, Track, Twin, Video
from twinseek.twins.store import TwinStore


def make_twin(video_id: str = "clip", frames: tuple[int, ...] = (0, 5, 10)) -> tuple[Twin, dict]:
    video = Video(video_id=video_id, path=f"/videos/{video_id}.mp4", content_hash=f"hash-{video_id}", width=64,
                  height=48, fps=10.0, frame_count=12, duration_s=1.2, sampled_frames=list(frames),
                  profile="embedded", specialists=[Provenance(role="segmenter", tier="embedded", model="m")])
    masks, instances = {}, []
    for k, f in enumerate(frames):
        mask = np.zeros((48, 64), bool)
        mask[10:20, 5 + 10 * k:15 + 10 * k] = True
        bbox, centroid, area = mask_geometry(mask)
        instances.append(Instance(video_id=video_id, track_id=1, frame_index=f, category="dog", category_score=0.9,
                                  attributes="brown", mask_path="", bbox=bbox, centroid=centroid, depth=None,
                                  area=area))
        masks[(1, f)] = mask
    track = Track(video_id=video_id, track_id=1, category="dog", category_score=0.9, category_source="test",
                  category_group="dog", category_candidates=[("wolf", 0.05)], attributes="brown",
                  first_frame=frames[0], last_frame=frames[-1], frame_count=len(frames), mean_area=0.03,
                  speed=0.3, direction="right")
    relation = Relation(video_id=video_id, subject_track=1, predicate="moving right", object_track=None,
                        kind="temporal", frame_start=frames[0], frame_end=frames[-1])
    return Twin(video=video, tracks=[track], instances=instances, relations=[relation]), masks


def put(store: TwinStore, twin: Twin, masks: dict) -> str:
    mask_dir = store.new_mask_dir(twin.video.video_id)
    for inst in twin.instances:
        inst.mask_path = store.write_mask(mask_dir, inst.track_id, inst.frame_index, masks[(1, inst.frame_index)])
    store.put_twin(twin, mask_dir)
    return mask_dir


INGEST_TABLES = {"videos": "video_id", "tracks": "video_id, track_id",
                 "instances": "video_id, track_id, frame_index", "relations": "id"}


def table_hashes(store_dir: Path, tables: dict[str, str] = INGEST_TABLES) -> dict[str, str]:
    """sha256 of each table's rows (``select * ... order by`` its key), read with plain sqlite3."""
    with sqlite3.connect(store_dir / "twins.db") as con:
        return {t: hashlib.sha256(repr(con.execute(f"select * from [{t}] order by {key}").fetchall()).encode())
                .hexdigest() for t, key in tables.items()}
