"""Parallel ingestion in a process pool: the same store as a serial ingest, per-file failures, retries, resume."""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from twinseek.cli import app
from twinseek.config import load_settings
from twinseek.errors import ConfigError, CorruptVideoError, VideoNotFoundError
from twinseek.media.masks import decode_mask, encode_mask, load_mask, save_mask
from twinseek.twins.parallel import ProcessPoolBuildExecutor
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore

from support.flaky_builder import FlakyBuilder, fault_videos
from support.parallel import assert_same, ingest
from support.synthetic import Scene, write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def pool():  # type: ignore[no-untyped-def]
    """Two worker processes with the embedded default (and faults keyed by file name, see flaky_builder)."""
    with ProcessPoolBuildExecutor(load_settings(), 2, builder=FlakyBuilder) as executor:
        yield executor


def test_pool_builds_the_same_store_as_serial(sample_store: Path, pool: ProcessPoolBuildExecutor,
                                              tmp_path: Path) -> None:
    from twinseek.data import sample_clips

    results = ingest(tmp_path / "store", sample_clips(), pool)
    assert [r.status for r in results] == ["ingested"] * 3
    assert len({r.worker for r in results}) == 2  # both workers built twins
    assert all(r.timings["segment"] > 0 and r.timings["write"] > 0 for r in results)
    assert_same(sample_store, tmp_path / "store")
    assert len(pool.workers()) == 2 and all(w.peak_rss_mb > 50 for w in pool.workers())


def test_failures_are_reported_per_file_and_the_rest_commit(pool: ProcessPoolBuildExecutor, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    folder = fault_videos(tmp_path / "videos", "good.mp4", "model-always-fails.mp4", "nfs-fails-once.mp4",
                          "broken.mp4", "empty.gif")
    with caplog.at_level(logging.WARNING, logger="twinseek"):
        results = {Path(r.path).name: r for r in ingest(tmp_path / "store", [folder], pool)}
    status = {name: r.status for name, r in results.items()}
    assert status == {"good.mp4": "ingested", "nfs-fails-once.mp4": "ingested", "broken.mp4": "failed",
                      "empty.gif": "failed", "model-always-fails.mp4": "failed"}
    assert "broken.mp4" in results["broken.mp4"].error and "corrupt" in results["broken.mp4"].error
    assert "RuntimeError" in results["model-always-fails.mp4"].error
    retried = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(retried) == 2 and not any("broken" in m for m in retried)  # bad input is not retried
    with TwinStore(tmp_path / "store", create=False) as store:
        assert store.video_ids() == ["good", "nfs-fails-once"]
        live = {f"masks/{v}/{Path(d).name}" for v in store.video_ids() for d in (store.root / "masks" / v).iterdir()}
        assert len(live) == 2  # no mask folder left behind by the failures


def test_resume_sends_only_new_videos_to_the_workers(pool: ProcessPoolBuildExecutor, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    a = write_video(tmp_path / "a.mp4", Scene(frames=8))
    b = write_video(tmp_path / "b.mp4", Scene(frames=8, seed=5))
    assert [r.status for r in ingest(tmp_path / "store", [a], pool)] == ["ingested"]
    sent: list[str] = []
    submit = pool.submit
    monkeypatch.setattr(pool, "submit", lambda job: (sent.append(job.path.name), submit(job)))
    results = ingest(tmp_path / "store", [a, b], pool)
    assert [(r.status, r.video_id) for r in results] == [("skipped", "a"), ("ingested", "b")]
    assert sent == ["b.mp4"]
    sent.clear()
    assert [r.status for r in ingest(tmp_path / "store", [a, b], pool)] == ["skipped", "skipped"] and not sent


def test_ids_and_duplicates_within_one_batch_follow_the_serial_rules(pool: ProcessPoolBuildExecutor,
                                                                     tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    (videos / "other").mkdir(parents=True)
    write_video(videos / "clip.mp4", Scene(frames=8))
    shutil.copy(videos / "clip.mp4", videos / "copy.mp4")  # same content: skipped as the first one's twin
    write_video(videos / "other" / "clip.mp4", Scene(frames=8, seed=4))  # same stem, other content
    serial = ingest(tmp_path / "serial", [videos], None)
    parallel = ingest(tmp_path / "parallel", [videos], pool)
    summary = [(Path(r.path).relative_to(videos).as_posix(), r.status, r.video_id) for r in parallel]
    assert summary == [(Path(r.path).relative_to(videos).as_posix(), r.status, r.video_id) for r in serial]
    assert summary[0] == ("clip.mp4", "ingested", "clip") and summary[1] == ("copy.mp4", "skipped", "clip")
    assert summary[2][2].startswith("clip-")
    assert_same(tmp_path / "serial", tmp_path / "parallel")


def test_a_worker_that_dies_is_replaced_and_its_video_retried(pool: ProcessPoolBuildExecutor, tmp_path: Path) -> None:
    before = {w.pid for w in pool.workers()}
    crash = write_video(tmp_path / "worker-crash-once.mp4", Scene(frames=8))
    other = write_video(tmp_path / "other.mp4", Scene(frames=8, seed=6))
    results = ingest(tmp_path / "store", [crash, other], pool)
    assert [r.status for r in results] == ["ingested", "ingested"], [r.error for r in results]
    assert {int(r.worker.split("@")[0]) for r in results if r.worker}.isdisjoint(before)  # a fresh pool built them


def test_executor_and_ingestor_must_share_settings(pool: ProcessPoolBuildExecutor, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "a.mp4", Scene(frames=8))
    with TwinStore(tmp_path / "store") as store, pytest.raises(ConfigError, match="settings"):
        Ingestor(store, load_settings(sampling={"frames": 4})).ingest_many([clip], executor=pool)


def test_cli_workers_then_resume_and_store_diff(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", Scene(frames=8))
    write_video(videos / "b.gif", Scene(frames=8, seed=2))
    args = ["ingest", str(videos), "--workers", "2"]
    first = runner.invoke(app, [*args, "--store", str(tmp_path / "par")])
    assert first.exit_code == 0, first.output
    assert "2 ingested, 0 skipped, 0 failed" in first.output and "2 workers on 1 host, peak RSS" in first.output
    again = runner.invoke(app, [*args, "--store", str(tmp_path / "par")])
    assert again.exit_code == 0 and "0 ingested, 2 skipped, 0 failed" in again.output
    ingest(tmp_path / "serial", [videos], None)
    same = runner.invoke(app, ["store", "diff", str(tmp_path / "serial"), str(tmp_path / "par")])
    assert same.exit_code == 0 and "identical" in same.output, same.output
    with TwinStore(tmp_path / "par") as store:
        store.db.execute("update tracks set category = 'zebra' where video_id = 'a' and track_id = 1")
        store.db.conn.commit()
        inst = store.get_twin("b").instances[0]
        save_mask(store.mask_file(inst), ~store.load_mask(inst))
    differ = runner.invoke(app, ["store", "diff", str(tmp_path / "serial"), str(tmp_path / "par")])
    assert differ.exit_code == 1
    assert "'a' tracks (row 0, track 1): category" in differ.output and "'b' mask of track" in differ.output


def test_masks_travel_as_png_bytes(tmp_path: Path) -> None:
    mask = np.zeros((37, 53), bool)
    mask[5:20, 10:40] = True
    data = encode_mask(mask)
    assert data.startswith(b"\x89PNG") and np.array_equal(decode_mask(data), mask)
    save_mask(tmp_path / "a.png", mask)
    save_mask(tmp_path / "b.png", data)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert np.array_equal(load_mask(tmp_path / "b.png"), mask)


def test_errors_keep_their_message_across_processes() -> None:
    error = pickle.loads(pickle.dumps(CorruptVideoError(Path("/v/x.mp4"), "moov atom not found")))
    assert isinstance(error, CorruptVideoError) and str(error) == "/v/x.mp4: corrupt or undecodable video (moov atom not found)"
    assert str(pickle.loads(pickle.dumps(VideoNotFoundError("cat")))) == "no video with id 'cat' in the store"
