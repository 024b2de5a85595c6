"""The twin store's migrations (sqlite-utils): those of its own tables (videos, tracks, instances, relations,
refinements), applied by :class:`~twinseek.twins.store.TwinStore` when it opens.

A component that keeps tables in the store's database owns their migrations next to its SQL and has the store apply
them when it opens on a store (:meth:`~twinseek.twins.store.TwinStore.ensure`): the catalogues
(``twinseek.index``, :mod:`twinseek.retrieval.catalogue`), the decomposition cache (``m002_decompositions``,
:mod:`twinseek.retrieval.decompose`), the web app's ingest queue (``m006_ingest_queue``,
:mod:`twinseek.twins.ingest_queue`) and the judge's cache (``m007_judgements``, :mod:`twinseek.agent.judge`).

A store records each migration it ran in ``_sqlite_migrations`` by set name and function name: never rename one, or
every existing store runs it again. The three components whose migrations were in this set before they owned them
keep its name, ``STORE_SET``, for their own sets (:meth:`~twinseek.twins.store.TwinStore.ensure` refuses a name
the store's set has).
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

STORE_SET = "twinseek"
store_migrations = Migrations(STORE_SET)


@store_migrations()
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


@store_migrations()
def m003_refinements(db: sqlite_utils.Database) -> None:
    """The overlay of what searches learned (see :mod:`twinseek.twins.refinements`)."""
    db.table("refinements").create(
        {
            "id": int, "key": str, "call": str, "video_id": str, "track_id": int, "frames": str, "action": str,
            "args": str, "model": str, "prompt_version": str, "field": str, "value": str, "confidence": float,
            "provenance": str, "created_at": str,
        },
        pk="id", not_null={"key", "call", "video_id", "action", "model", "prompt_version", "field"},
        foreign_keys=[("video_id", "videos", "video_id")],
    )
    db.table("refinements").create_index(["key"], unique=True, if_not_exists=True)
    db.table("refinements").create_index(["video_id", "call"], if_not_exists=True)


@store_migrations()
def m004_perception(db: sqlite_utils.Database) -> None:
    """On-screen text per video (JSON list of ScreenText; null in stores ingested before it existed)."""
    if "screen_text" not in db.table("videos").columns_dict:
        db.table("videos").add_column("screen_text", str)


@store_migrations()
def m005_words(db: sqlite_utils.Database) -> None:
    """What the twin's words are made from and the description itself (twinseek.twins.views.describe): per-track
    and per-video label votes (JSON; null in stores ingested before them) and the one-line description."""
    for table, columns in (("tracks", ("votes",)), ("videos", ("frame_votes", "description", "description_source"))):
        existing = db.table(table).columns_dict
        for column in columns:
            if column not in existing:
                db.table(table).add_column(column, str)


@store_migrations()
def m008_speech(db: sqlite_utils.Database) -> None:
    """What was said (twinseek.twins.speech): the speech step's status per video (``speech_status``) and the timed
    segments (``speech``). A video without a ``speech_status`` row was ingested before speech existed."""
    db.table("speech_status").create(
        {"video_id": str, "status": str, "model": str, "language": str, "audio_s": float, "transcribed_s": float},
        pk="video_id", not_null={"status"}, foreign_keys=[("video_id", "videos", "video_id")], if_not_exists=True,
    )
    db.table("speech").create(
        {"video_id": str, "segment": int, "start_s": float, "end_s": float, "text": str, "language": str,
         "confidence": float},
        pk=("video_id", "segment"), not_null={"text"}, foreign_keys=[("video_id", "videos", "video_id")],
        if_not_exists=True,
    )


@store_migrations()
def m009_actions(db: sqlite_utils.Database) -> None:
    """Coarse actions per person track (JSON list of [label, confidence]; null in stores ingested before them)."""
    if "actions" not in db.table("tracks").columns_dict:
        db.table("tracks").add_column("actions", str)


@store_migrations()
def m010_shots(db: sqlite_utils.Database) -> None:
    """Shots per video (twinseek.twins.model.Shot): a video without rows here was ingested before shots existed."""
    db.table("shots").create(
        {"video_id": str, "shot": int, "start_frame": int, "end_frame": int, "start_s": float, "end_s": float,
         "key_frames": str},
        pk=("video_id", "shot"), foreign_keys=[("video_id", "videos", "video_id")], if_not_exists=True,
    )


@store_migrations()
def m012_shot_labels(db: sqlite_utils.Database) -> None:
    """Whole-frame labels per shot (JSON list of [label, score]; null in stores ingested before them: such a
    video's shots form one scene)."""
    if "labels" not in db.table("shots").columns_dict:
        db.table("shots").add_column("labels", str)
