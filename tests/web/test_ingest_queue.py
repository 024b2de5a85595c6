"""The web app's ingest queue lives in the store (migration m006): a worker started on a store resumes the jobs a
stopped or killed server left, each file once, and keeps the finished ones as history."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from twinseek.config import load_settings
from twinseek.twins.ingest_queue import IngestQueue, m006_ingest_queue
from twinseek.twins.pipeline import IngestResult
from twinseek.twins.store import TwinStore
from twinseek.web.ingest import IngestJob, IngestWorker


class FakeIngestor:
    """Records what it is asked to ingest; each file 'ingests' as the video named after it."""

    def __init__(self, seen: list[str], gate: threading.Event | None = None) -> None:
        self.seen, self.gate = seen, gate
        self.store = SimpleNamespace(close=lambda: None)

    def ingest_many(self, paths: list[Path]) -> list[IngestResult]:
        if self.gate is not None:
            self.gate.wait(30)
        self.seen.append(str(paths[0]))
        return [IngestResult(str(paths[0]), "ingested", video_id=Path(paths[0]).stem, frames=3, tracks=1, seconds=0.1)]


def wait_done(worker: IngestWorker, job_id: str, timeout: float = 30.0) -> IngestJob:
    deadline = time.monotonic() + timeout
    while (job := worker.job(job_id)) is None or job.status != "done":
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    TwinStore(tmp_path / "store").close()
    return tmp_path / "store"


def worker(store: Path, seen: list[str], gate: threading.Event | None = None) -> IngestWorker:
    return IngestWorker(store, load_settings(store=store), ingestor_factory=lambda: FakeIngestor(seen, gate))  # type: ignore[arg-type,return-value]


def test_the_migration_is_applied_and_stands_alone(store: Path) -> None:
    IngestQueue(store).close()  # the queue has the store apply its migration
    with TwinStore(store) as s:
        assert {"ingest_jobs", "ingest_files"} <= set(s.db.table_names())
        assert "m006_ingest_queue" in {r["name"] for r in s.db.query("select name from _sqlite_migrations")}
    import sqlite_utils

    bare = sqlite_utils.Database(memory=True)  # none of the other migrations: m006 needs none of their tables
    m006_ingest_queue(bare)
    assert set(bare.table_names()) == {"ingest_jobs", "ingest_files"}


def test_jobs_are_written_to_the_store_as_they_progress(store: Path) -> None:
    seen: list[str] = []
    w = worker(store, seen)
    job = w.submit([("a.mp4", Path("/v/a.mp4")), ("b.mp4", Path("/v/b.mp4"))], "folder", "/v")
    wait_done(w, job.id)
    w.close()
    [(row, files)] = IngestQueue(store).jobs()
    assert row["status"] == "done" and [f["status"] for f in files] == ["ingested", "ingested"]
    assert [f["video_id"] for f in files] == ["a", "b"] and seen == ["/v/a.mp4", "/v/b.mp4"]


def test_a_restarted_worker_resumes_what_a_killed_one_left(store: Path) -> None:
    """What a server killed during the second file leaves: file 0 ingested, file 1 running, files 2-4 queued.
    A new worker ingests files 1-4, once each, and not file 0."""
    queue = IngestQueue(store)
    files: list[dict[str, Any]] = [{"name": f"{n}.mp4", "path": f"/v/{n}.mp4", "status": "queued"} for n in range(5)]
    files[0].update(status="ingested", video_id="0")
    files[1].update(status="running", started=time.time())
    queue.add({"id": "killed", "source": "folder", "label": "/v", "created": "2026-01-01T00:00:00.000000+00:00",
               "status": "running"}, files)
    queue.add({"id": "old", "source": "upload", "label": "x.mp4", "created": "2025-01-01T00:00:00.000000+00:00",
               "status": "done"}, [{"name": "x.mp4", "path": "/u/x.mp4", "status": "failed", "error": "no"}])
    queue.close()
    seen: list[str] = []
    w = worker(store, seen)
    job = wait_done(w, "killed")
    assert seen == [f"/v/{n}.mp4" for n in range(1, 5)]
    assert [f.status for f in job.files] == ["ingested"] * 5 and [f.video_id for f in job.files] == list("01234")
    assert [j.id for j in w.jobs()] == ["killed", "old"] and w.job("old").files[0].error == "no"  # type: ignore[union-attr]
    w.close()
    # a second restart has nothing left to do
    again: list[str] = []
    w2 = worker(store, again)
    time.sleep(0.3)
    w2.close()
    assert again == [] and w2.job("killed").status == "done"  # type: ignore[union-attr]


def test_the_history_in_the_store_is_bounded(store: Path) -> None:
    seen: list[str] = []
    w = IngestWorker(store, load_settings(store=store), history=2,
                     ingestor_factory=lambda: FakeIngestor(seen))  # type: ignore[arg-type,return-value]
    for n in range(4):
        wait_done(w, w.submit([(f"{n}.mp4", Path(f"/v/{n}.mp4"))], "folder", str(n)).id)
    w.submit([("last.mp4", Path("/v/last.mp4"))], "folder", "last")  # forgetting happens on submit
    w.close()
    kept = IngestQueue(store).jobs()
    assert len(kept) <= 3 and "0" not in {row["label"] for row, _ in kept}


def test_a_watched_folder_is_shown_never_run_and_its_ingests_sync_the_indexes(store: Path) -> None:
    """``twinseek watch`` (another process) keeps its queue as a job of source watch: the app lists it, fresh from
    the store at each listing (running while a watcher holds the folder), never resumes it itself, and syncs the
    search indexes when the watcher has ingested more videos."""
    from twinseek.twins.locks import exclusive
    from twinseek.twins.watch import watch_lock
    from twinseek.web.app import templates

    queue = IngestQueue(store)
    queue.add({"id": "watch-1", "source": "watch", "label": "/videos/in", "created": "2026-01-01T00:00:00+00:00",
               "status": "running"},
              [{"name": "a.mp4", "path": "/videos/in/a.mp4", "status": "ingested", "video_id": "a"},
               {"name": "b.mp4", "path": "/videos/in/b.mp4", "status": "queued"},
               {"name": "c.mp4", "path": "/videos/in/c.mp4", "status": "waiting"}])
    seen: list[str] = []
    synced = threading.Event()
    w = IngestWorker(store, load_settings(store=store), on_ingested=synced.set,
                     ingestor_factory=lambda: FakeIngestor(seen))  # type: ignore[arg-type,return-value]
    [job] = w.jobs()
    assert job.source == "watch" and job.status == "stopped" and job.finished == 1 and job.total == 3
    assert [f.status for f in job.files] == ["ingested", "queued", "waiting"]
    with exclusive(watch_lock(store, "watch-1")):
        assert w.job("watch-1").status == "running"  # type: ignore[union-attr]
        queue.update_file("watch-1", 1, status="ingested", video_id="b")
        html = templates().env.get_template("_jobs.html").render(jobs=w.jobs(), now=time.time(), base="")
    assert synced.wait(10)  # b, ingested by the watcher, is searchable in the app
    assert "watching" in html and 'data-active="true"' in html and "still being copied" in html
    time.sleep(0.2)
    w.close()
    queue.close()
    assert seen == []  # the app ran none of the watched files
    [(row, files)] = IngestQueue(store).jobs()
    assert row["status"] == "running" and [f["status"] for f in files] == ["ingested", "ingested", "waiting"]
