"""The SQLite digital-twin store.

Layout of a store folder::

    twins.db                         SQLite (tables videos, tracks, instances, relations)
    masks/<video_id>/<ingest>/t<track>_f<frame>.png

Writes of one video are atomic: its mask files go to a fresh ``<ingest>`` folder, then every row is written
in one transaction, and only then is the previous folder removed. A crash at any point leaves either the old
twin or the new one; mask folders no row points to are swept the next time a writer opens the store.
One writer at a time (an advisory file lock); any number of readers (WAL mode).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils
from sqlite_utils.migrations import Migrations

from twinseek.errors import StoreError, VideoNotFoundError
from twinseek.twins.masks import load_mask, save_mask
from twinseek.twins.model import Instance, Provenance, Relation, ScreenText, Track, Twin, Video

logger = logging.getLogger(__name__)

DB_NAME = "twins.db"
MASK_DIR = "masks"
AUGMENTABLE_TRACK_FIELDS = frozenset({
    "category", "category_score", "category_source", "category_group", "category_candidates", "attributes"})
AUGMENTABLE_INSTANCE_FIELDS = frozenset({"category", "category_score", "attributes", "depth"})

migrations = Migrations("twinseek")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.table("videos").create(
        {
            "video_id": str, "path": str, "content_hash": str, "width": int, "height": int, "fps": float,
            "frame_count": int, "duration_s": float, "sampled_frames": str, "profile": str, "specialists": str, "scene": str,
            "ecr_text": str, "ecr_source": str, "mask_dir": str, "ingested_at": str,
        },
        pk="video_id",
    )
    db.table("tracks").create(
        {
            "video_id": str, "track_id": int, "category": str, "category_score": float, "category_source": str,
            "category_group": str, "category_candidates": str, "attributes": str, "first_frame": int, "last_frame": int, "frame_count": int, "mean_area": float,
            "speed": float, "direction": str,
        },
        pk=("video_id", "track_id"),
        foreign_keys=[("video_id", "videos", "video_id")],
    )
    db.table("instances").create(
        {
            "video_id": str, "track_id": int, "frame_index": int, "category": str, "category_score": float,
            "attributes": str, "mask_path": str, "bbox_x1": float, "bbox_y1": float, "bbox_x2": float,
            "bbox_y2": float, "centroid_x": float, "centroid_y": float, "depth": float, "area": float,
        },
        pk=("video_id", "track_id", "frame_index"),
        foreign_keys=[("video_id", "videos", "video_id")],
    )
    db.table("relations").create(
        {
            "id": int, "video_id": str, "subject_track": int, "predicate": str, "object_track": int,
            "kind": str, "frame_start": int, "frame_end": int,
        },
        pk="id",
        foreign_keys=[("video_id", "videos", "video_id")],
    )
    db.table("videos").create_index(["content_hash"], if_not_exists=True)
    db.table("instances").create_index(["video_id", "frame_index"], if_not_exists=True)
    db.table("tracks").create_index(["category"], if_not_exists=True)
    db.table("relations").create_index(["video_id", "predicate"], if_not_exists=True)


@migrations()
def m004_perception(db: sqlite_utils.Database) -> None:
    """On-screen text per video (JSON list of ScreenText; null in stores ingested before it existed)."""
    if "screen_text" not in db.table("videos").columns_dict:
        db.table("videos").add_column("screen_text", str)


class TwinStore:
    """A folder holding the twin database and mask files. Use as a context manager or call ``close``."""

    def __init__(self, root: str | Path, create: bool = True) -> None:
        self.root = Path(root)
        db_path = self.root / DB_NAME
        if not db_path.exists() and not create:
            raise StoreError(f"no twin store at {self.root} (expected {db_path})")
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(db_path)
        self.db.enable_wal()
        self.db.execute("PRAGMA foreign_keys = ON")
        with self.writer():
            migrations.apply(self.db)
            self._sweep_orphan_masks()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> TwinStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the store's writer lock (blocks while another process writes)."""
        with open(self.root / ".writer.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- queries -----------------------------------------------------------------------------------------
    def video_ids(self) -> list[str]:
        return [row["video_id"] for row in self.db.query("select video_id from videos order by video_id")]

    def __len__(self) -> int:
        return self.db.table("videos").count

    def __contains__(self, video_id: object) -> bool:
        return bool(list(self.db.query("select 1 from videos where video_id = ?", [video_id])))

    def find_by_hash(self, content_hash: str) -> str | None:
        rows = list(self.db.query("select video_id from videos where content_hash = ?", [content_hash]))
        return rows[0]["video_id"] if rows else None

    def find_by_path(self, path: str) -> Video | None:
        rows = list(self.db.query("select * from videos where path = ?", [path]))
        return _video_from_row(rows[0]) if rows else None

    def get_video(self, video_id: str) -> Video:
        rows = list(self.db.query("select * from videos where video_id = ?", [video_id]))
        if not rows:
            raise VideoNotFoundError(video_id)
        return _video_from_row(rows[0])

    def videos(self) -> list[Video]:
        return [_video_from_row(r) for r in self.db.query("select * from videos order by video_id")]

    def get_twin(self, video_id: str) -> Twin:
        video = self.get_video(video_id)
        q = self.db.query
        tracks = [
            _track_from_row(r) for r in q("select * from tracks where video_id = ? order by track_id", [video_id])
        ]
        instances = [
            _instance_from_row(r)
            for r in q("select * from instances where video_id = ? order by track_id, frame_index", [video_id])
        ]
        relations = [
            Relation(**{k: v for k, v in r.items() if k != "id"})
            for r in q("select * from relations where video_id = ? order by id", [video_id])
        ]
        return Twin(video=video, tracks=tracks, instances=instances, relations=relations)

    def mask_file(self, instance: Instance) -> Path:
        return self.root / instance.mask_path

    def load_mask(self, instance: Instance) -> np.ndarray:
        return load_mask(self.mask_file(instance))

    def stats(self) -> dict[str, Any]:
        count = lambda table: self.db.table(table).count  # noqa: E731
        categories = list(self.db.query(
            "select category, count(*) as tracks from tracks group by category order by tracks desc limit 10"))
        mask_bytes = sum(p.stat().st_size for p in (self.root / MASK_DIR).rglob("*.png")) if (self.root / MASK_DIR).exists() else 0
        return {
            "store": str(self.root), "videos": count("videos"), "tracks": count("tracks"),
            "instances": count("instances"), "relations": count("relations"),
            "db_mb": round((self.root / DB_NAME).stat().st_size / 2**20, 2), "mask_mb": round(mask_bytes / 2**20, 2),
            "top_categories": {r["category"]: r["tracks"] for r in categories},
        }

    # -- writes ------------------------------------------------------------------------------------------
    def new_mask_dir(self, video_id: str) -> str:
        """A fresh, unique mask folder (relative to the store) for one ingest of ``video_id``."""
        rel = f"{MASK_DIR}/{video_id}/{uuid.uuid4().hex[:12]}"
        (self.root / rel).mkdir(parents=True)
        return rel

    def write_mask(self, mask_dir: str, track_id: int, frame_index: int, mask: np.ndarray | bytes) -> str:
        """Write one mask (an array, or PNG bytes a worker encoded) into ``mask_dir``; returns its store path."""
        rel = f"{mask_dir}/t{track_id}_f{frame_index}.png"
        save_mask(self.root / rel, mask)
        return rel

    def put_twin(self, twin: Twin, mask_dir: str) -> None:
        """Replace (or add) a video's twin in one transaction; masks must already be in ``mask_dir``."""
        video_id = twin.video.video_id
        with self.writer():
            old_dir = self._mask_dir_of(video_id)
            with self.db.atomic():
                self._delete_rows(video_id)
                self._insert_video(twin.video, mask_dir)
                self._insert_tracks(twin.tracks)
                self._insert_instances(twin.instances)
                self._insert_relations(twin.relations)
            if old_dir and old_dir != mask_dir:
                shutil.rmtree(self.root / old_dir, ignore_errors=True)

    def add_relations(self, relations: list[Relation]) -> None:
        with self.writer(), self.db.atomic():
            self._insert_relations(relations)

    def augment(
        self, video_id: str, *, tracks: Mapping[int, Mapping[str, Any]] | None = None,
        instances: Mapping[tuple[int, int], Mapping[str, Any]] | None = None, relations: Sequence[Relation] = (),
    ) -> None:
        """Update fields of existing tracks (by track id) and instances (by ``(track_id, frame_index)``) and add
        relations, in one transaction: what just-in-time refinement learns about a twin. Only the fields in
        ``AUGMENTABLE_TRACK_FIELDS`` / ``AUGMENTABLE_INSTANCE_FIELDS`` may change."""
        tracks, instances = tracks or {}, instances or {}
        bad = {f for u in tracks.values() for f in u} - AUGMENTABLE_TRACK_FIELDS
        bad |= {f for u in instances.values() for f in u} - AUGMENTABLE_INSTANCE_FIELDS
        if bad:
            raise ValueError(f"fields that refinement may not change: {sorted(bad)}")
        with self.writer(), self.db.atomic():
            if video_id not in self:
                raise VideoNotFoundError(video_id)
            for track_id, update in tracks.items():
                row = dict(update)
                if "category_candidates" in row:
                    row["category_candidates"] = json.dumps(row["category_candidates"])
                self.db.table("tracks").update((video_id, track_id), row)
            for (track_id, frame_index), update in instances.items():
                self.db.table("instances").update((video_id, track_id, frame_index), dict(update))
            self._insert_relations(list(relations))

    def set_ecr(self, video_id: str, text: str, source: str) -> None:
        with self.writer(), self.db.atomic():
            if video_id not in self:
                raise VideoNotFoundError(video_id)
            self.db.table("videos").update(video_id, {"ecr_text": text, "ecr_source": source})

    def delete(self, video_id: str) -> None:
        """Remove a video's rows and its mask files."""
        with self.writer():
            if video_id not in self:
                raise VideoNotFoundError(video_id)
            with self.db.atomic():
                self._delete_rows(video_id)
            shutil.rmtree(self.root / MASK_DIR / video_id, ignore_errors=True)

    def discard_mask_dir(self, mask_dir: str) -> None:
        shutil.rmtree(self.root / mask_dir, ignore_errors=True)

    # -- internals ---------------------------------------------------------------------------------------
    def _mask_dir_of(self, video_id: str) -> str | None:
        rows = list(self.db.query("select mask_dir from videos where video_id = ?", [video_id]))
        return rows[0]["mask_dir"] if rows else None

    def _delete_rows(self, video_id: str) -> None:
        for table in ("relations", "instances", "tracks", "videos"):
            self.db.execute(f"delete from [{table}] where video_id = ?", [video_id])

    def _insert_video(self, video: Video, mask_dir: str) -> None:
        row = video.model_dump()
        row["sampled_frames"] = json.dumps(video.sampled_frames)
        row["specialists"] = json.dumps([p.model_dump() for p in video.specialists])
        row["scene"] = json.dumps(video.scene)
        row["screen_text"] = json.dumps([t.model_dump() for t in video.screen_text])
        row["mask_dir"] = mask_dir
        self.db.table("videos").insert(row)

    def _insert_tracks(self, tracks: list[Track]) -> None:
        self.db.table("tracks").insert_all((_track_to_row(t) for t in tracks), batch_size=500)

    def _insert_instances(self, instances: list[Instance]) -> None:
        self.db.table("instances").insert_all((_instance_to_row(i) for i in instances), batch_size=500)

    def _insert_relations(self, relations: list[Relation]) -> None:
        self.db.table("relations").insert_all((r.model_dump() for r in relations), batch_size=500)

    def _sweep_orphan_masks(self) -> None:
        """Remove mask folders that no video row points to (left by an interrupted ingest)."""
        base = self.root / MASK_DIR
        if not base.exists():
            return
        live = {r["mask_dir"] for r in self.db.query("select mask_dir from videos")}
        for video_dir in base.iterdir():
            for ingest_dir in video_dir.iterdir() if video_dir.is_dir() else []:
                rel = f"{MASK_DIR}/{video_dir.name}/{ingest_dir.name}"
                if rel not in live:
                    logger.info("removing orphan mask folder %s", rel)
                    shutil.rmtree(ingest_dir, ignore_errors=True)
            if video_dir.is_dir() and not any(video_dir.iterdir()):
                video_dir.rmdir()


def _video_from_row(row: dict[str, Any]) -> Video:
    row = dict(row)
    row.pop("mask_dir", None)
    row["sampled_frames"] = json.loads(row["sampled_frames"] or "[]")
    row["specialists"] = [Provenance(**p) for p in json.loads(row["specialists"] or "[]")]
    row["scene"] = [tuple(s) for s in json.loads(row.get("scene") or "[]")]
    row["screen_text"] = [ScreenText(**t) for t in json.loads(row.get("screen_text") or "[]")]
    return Video(**row)


def _track_to_row(track: Track) -> dict[str, Any]:
    row = track.model_dump()
    row["category_candidates"] = json.dumps(track.category_candidates)
    return row


def _track_from_row(row: dict[str, Any]) -> Track:
    row = dict(row)
    row["category_candidates"] = [tuple(c) for c in json.loads(row["category_candidates"] or "[]")]
    return Track(**row)


def _instance_to_row(inst: Instance) -> dict[str, Any]:
    row = inst.model_dump(exclude={"bbox", "centroid"})
    row.update(zip(("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"), inst.bbox))
    row.update(centroid_x=inst.centroid[0], centroid_y=inst.centroid[1])
    return row


def _instance_from_row(row: dict[str, Any]) -> Instance:
    row = dict(row)
    row["bbox"] = tuple(row.pop(k) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"))
    row["centroid"] = (row.pop("centroid_x"), row.pop("centroid_y"))
    return Instance(**row)
