"""Every text made from a twin (twinseek.twins.views), for twins without speech: the synthetic twin below and the
twins of the old store in tests/data. ``tests/data/texts-without-speech.json`` holds them as the code before speech
wrote them (``python tests/support/twin_texts.py OUT`` with that code on the path); a video without speech must
still get exactly these texts (the dev bench has no audio: its rankings must not move)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from twinseek.retrieval.dense import dense_text
from twinseek.twins.model import Instance, Provenance, Relation, ScreenText, Track, Twin, Video
from twinseek.twins.store import DB_NAME, TwinStore
from twinseek.twins.views import ComponentTexts, compact_json, describe, description, scene_gist, template_ecr

OLD_STORE = Path(__file__).parents[1] / "data" / "store-9700c45.sql"


def synthetic_twin() -> Twin:
    """A twin with every kind of component: objects (a classifier's and a detector's), relations, scene votes and
    on-screen text."""
    frames = list(range(0, 32, 2))
    video = Video(video_id="v", path="/v.mp4", content_hash="h", width=64, height=48, fps=8.0, frame_count=32,
                  duration_s=4.0, sampled_frames=frames, profile="embedded",
                  specialists=[Provenance(role="detector", tier="embedded", model="m")],
                  scene=[("lakeside", 0.6), ("seashore", 0.2)], frame_votes={"lakeside": 0.8, "seashore": 0.2},
                  screen_text=[ScreenText(frame_index=4, text="OPEN DAILY", score=0.97, bbox=(0.1, 0.1, 0.5, 0.2))])
    tracks = [
        Track(video_id="v", track_id=1, category="black swan", category_score=0.9, category_source="mobilenet_v2-imagenet",
              category_group="bird", votes={"black swan": 1.0}, attributes="black with a red beak", first_frame=0,
              last_frame=30, frame_count=16, mean_area=0.2, speed=0.1, direction="right"),
        Track(video_id="v", track_id=2, category="person", category_score=0.8, category_source="mediapipe",
              first_frame=0, last_frame=30, frame_count=16, mean_area=0.1),
    ]
    instances = [Instance(video_id="v", track_id=t.track_id, frame_index=f, category=t.category,
                          category_score=t.category_score, mask_path="", bbox=(0.1 * t.track_id, 0.2, 0.1 * t.track_id + 0.3, 0.6),
                          centroid=(0.1 * t.track_id + 0.15, 0.4), area=t.mean_area, depth=None)
                 for t in tracks for f in frames]
    relations = [Relation(video_id="v", subject_track=1, predicate="left of", object_track=2, kind="spatial",
                          frame_start=0, frame_end=30),
                 Relation(video_id="v", subject_track=1, predicate="moving right", object_track=None, kind="temporal",
                          frame_start=0, frame_end=30)]
    return Twin(video=video, tracks=tracks, instances=instances, relations=relations)


SPAN_KEYS = ("start_s", "end_s")  # when a component happens (#22), not what it says: not among the texts


def texts(twin: Twin) -> dict[str, Any]:
    components = [{k: v for k, v in row.items() if k not in SPAN_KEYS} for row in ComponentTexts.rows(twin)]
    return {"describe": describe(twin), "description": description(twin), "ecr": template_ecr(twin),
            "gist": scene_gist(twin), "dense": dense_text(twin), "components": components,
            "compact": compact_json(twin)}


def old_store_twins() -> list[Twin]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "old"
        root.mkdir()
        with contextlib.closing(sqlite3.connect(root / DB_NAME)) as conn:
            conn.executescript(OLD_STORE.read_text())
        with TwinStore(root, create=False) as store:
            return [store.get_twin(v, refinements=False) for v in store.video_ids()]


def all_texts(edit: Any = None) -> dict[str, Any]:
    """The texts of every twin above, each twin first passed through ``edit`` (e.g. giving it a speech status)."""
    twins = [synthetic_twin(), *old_store_twins()]
    if edit is not None:
        twins = [edit(t) for t in twins]
    return {t.video.video_id: texts(t) for t in twins}


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(all_texts(), indent=1, sort_keys=True) + "\n")
