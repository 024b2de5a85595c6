from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from twinseek.errors import StoreError, VideoNotFoundError
from twinseek.twins.compare import diff_stores
from twinseek.twins.model import Shot, Twin
from twinseek.twins.store import TwinStore
from twinseek.twins.views import compact_json

from support.store import make_twin, put


def test_round_trip_preserves_every_field(tmp_path: Path) -> None:
    twin, masks = make_twin()
    with TwinStore(tmp_path) as store:
        put(store, twin, masks)
        again = store.get_twin("clip")
        assert again == twin
        assert Twin.from_full_json(again.to_full_json()) == twin
        for inst in again.instances:
            assert np.array_equal(store.load_mask(inst), masks[(1, inst.frame_index)])
            assert not Path(inst.mask_path).is_absolute()


def test_shots_round_trip_and_go_with_their_video(tmp_path: Path) -> None:
    twin, masks = make_twin()
    twin.shots = [Shot(index=0, start_frame=0, end_frame=6, start_s=0.0, end_s=0.7, key_frames=[0, 5]),
                  Shot(index=1, start_frame=7, end_frame=11, start_s=0.7, end_s=1.2, key_frames=[10])]
    with TwinStore(tmp_path) as store:
        put(store, twin, masks)
        again = store.get_twin("clip")
        assert again.shots == twin.shots
        store.delete("clip")
        assert store.db.execute("select count(*) from shots").fetchone()[0] == 0


def test_db_is_plain_sql_readable(tmp_path: Path) -> None:
    twin, masks = make_twin()
    with TwinStore(tmp_path) as store:
        put(store, twin, masks)
    con = sqlite3.connect(tmp_path / "twins.db")
    assert {"videos", "tracks", "instances", "relations"} <= {
        r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    row = con.execute("select category, centroid_x, bbox_x1, mask_path from instances order by frame_index").fetchone()
    assert row[0] == "dog" and 0 < row[1] < 1 and row[3].startswith("masks/clip/")
    assert json.loads(con.execute("select sampled_frames from videos").fetchone()[0]) == [0, 5, 10]
    indexes = {r[0] for r in con.execute("select name from sqlite_master where type='index'")}
    assert any("content_hash" in name for name in indexes)


def test_compact_json_is_small_and_rounded(tmp_path: Path) -> None:
    twin, _ = make_twin()
    compact = json.loads(compact_json(twin))
    obj = compact["o"][0]
    # one vocabulary (twins/words.py): no "dog (dog)", motion said as every other text says it
    assert obj["id"] == 1 and obj["cat"] == "dog" and obj["mv"].startswith("moving") and "right" in obj["mv"]
    assert compact["desc"].startswith("objects:")
    assert all(len(str(v)) <= 5 for frame in obj["f"] for v in frame[1:4])
    assert compact["r"] == [[1, "moving right", None, 0, 10]]
    assert len(compact_json(twin)) < len(twin.to_full_json()) / 4


def test_replace_swaps_rows_and_removes_old_masks(tmp_path: Path) -> None:
    twin, masks = make_twin()
    with TwinStore(tmp_path) as store:
        first = put(store, twin, masks)
        twin2, masks2 = make_twin(frames=(1, 2))
        second = put(store, twin2, masks2)
        assert not (tmp_path / first).exists() and (tmp_path / second).exists()
        assert [i.frame_index for i in store.get_twin("clip").instances] == [1, 2]


def test_failure_inside_transaction_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    twin, masks = make_twin()
    with TwinStore(tmp_path) as store:
        def boom(_: object) -> None:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(store, "_insert_relations", boom)
        with pytest.raises(RuntimeError):
            put(store, twin, masks)
        assert len(store) == 0
        assert store.db.table("instances").count == 0 and store.db.table("tracks").count == 0


def test_kill_mid_ingest_then_reopen_is_clean(tmp_path: Path) -> None:
    """A process killed between mask writing and commit leaves no rows; reopening sweeps its masks."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from support.store import make_twin, put
        from twinseek.twins.store import TwinStore
        store = TwinStore({str(tmp_path)!r})
        store._insert_instances = lambda rows: os._exit(9)  # dies inside the transaction
        twin, masks = make_twin()
        put(store, twin, masks)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert any((tmp_path / "masks").rglob("*.png"))  # masks were written before the kill
    with TwinStore(tmp_path) as store:
        assert len(store) == 0 and store.db.table("tracks").count == 0
        assert not any((tmp_path / "masks").rglob("*.png"))
        twin, masks = make_twin()
        put(store, twin, masks)  # the rerun completes
        assert store.video_ids() == ["clip"]


def test_delete_removes_rows_and_files(tmp_path: Path) -> None:
    twin, masks = make_twin()
    other, other_masks = make_twin("other")
    with TwinStore(tmp_path) as store:
        put(store, twin, masks)
        put(store, other, other_masks)
        store.delete("clip")
        assert store.video_ids() == ["other"]
        assert not (tmp_path / "masks" / "clip").exists() and (tmp_path / "masks" / "other").exists()
        assert store.db.execute("select count(*) from instances where video_id='clip'").fetchone()[0] == 0
        with pytest.raises(VideoNotFoundError):
            store.delete("clip")


def test_set_ecr_and_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no twin store"):
        TwinStore(tmp_path / "absent", create=False)
    twin, masks = make_twin()
    with TwinStore(tmp_path) as store:
        put(store, twin, masks)
        store.set_ecr("clip", "a brown dog runs right", "template")
        assert store.get_video("clip").ecr_text == "a brown dog runs right"
        stats = store.stats()
        assert stats["videos"] == 1 and stats["instances"] == 3 and stats["top_categories"] == {"dog": 1}


def test_diff_compares_rows_and_masks_not_bookkeeping(tmp_path: Path) -> None:
    twin, masks = make_twin()
    with TwinStore(tmp_path / "a") as a, TwinStore(tmp_path / "b") as b:
        put(a, twin, masks)
        put(b, twin, masks)  # another mask folder, relation ids and ingest time: bookkeeping
        same = diff_stores(a, b)
        assert same.identical and (same.videos, same.tracks, same.instances, same.relations, same.masks) == (1, 1, 3, 1, 3)
        changed = twin.model_copy(deep=True)
        changed.tracks[0].attributes = "black"
        put(b, changed, {**masks, (1, 0): ~masks[(1, 0)]})
        assert diff_stores(a, b).differences == ["'clip' tracks (row 0, track 1): attributes: 'brown' vs 'black'",
                                                 "'clip' mask of track 1 frame 0: 3072 pixels differ"]
        assert diff_stores(a, b, masks=False, limit=1).differences[-1] == "... (more differences not listed)"


def test_a_shared_store_serves_other_threads(tmp_path: Path) -> None:
    with TwinStore(tmp_path) as store:
        put(store, *make_twin())
    with ThreadPoolExecutor(1) as pool:
        with TwinStore(tmp_path, create=False, shared=True) as store:
            assert pool.submit(store.video_ids).result() == ["clip"]
            assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with TwinStore(tmp_path) as store, pytest.raises(sqlite3.ProgrammingError, match="thread"):
            pool.submit(store.video_ids).result()  # the default: the opening thread's connection


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    TwinStore(tmp_path).close()
    with TwinStore(tmp_path) as store:  # the store's own tables; components' come with them (test_store_migrations)
        applied = list(store.db.query("select name from _sqlite_migrations where migration_set='twinseek'"))
        assert [r["name"] for r in applied] == ["m001_initial", "m003_refinements", "m004_perception", "m005_words",
                                                 "m008_speech", "m009_actions", "m010_shots", "m012_shot_labels"]
        assert store.db.table("refinements").exists() and not store.db.table("decompositions").exists()
