"""``twinseek watch``'s watcher: files copied in (slowly, all at once) are each ingested once, after they stop
growing; a restart loses nothing and redoes nothing; bad, vanishing, hidden and temporary files are handled.

Real decoding, hashing, commits and watchfiles events; the specialists are the light ones of
:mod:`support.watching` (the watcher is under test, not perception)."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twinseek.config import Settings, load_settings
from twinseek.errors import StoreBusyError
from twinseek.twins.ingest_queue import IngestQueue
from twinseek.twins.locks import exclusive
from twinseek.twins.parallel import ProcessPoolBuildExecutor
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore
from twinseek.twins.watch import FolderWatcher, WatchedFile, is_watching, watch_job_id, watch_lock

from support.synthetic import Scene, write_video
from support.watching import LightBuilder, copy_slowly, counting_ingestor, light_specialists

SETTLE_S = 1.0  # the copier's pauses (0.2 s) are well below it, even on a busy 2-core machine


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """20 small mp4s of distinct content (the moov atom at the end: a truncated copy does not decode)."""
    folder = tmp_path_factory.mktemp("clips")
    return [write_video(folder / f"clip{n:02d}.mp4", Scene(frames=6, seed=n, width=96, height=64))
            for n in range(20)]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settings_for(store: Path, settle_s: float = SETTLE_S) -> Settings:
    return load_settings(store=store, sampling={"frames": 4},
                         watch={"settle_s": settle_s, "poll_s": 0.05, "rescan_s": None})


class Watch:
    """A watcher running in a thread on ``folder`` into ``store``, recording every change it reports."""

    def __init__(self, folder: Path, store: Path, settle_s: float = SETTLE_S, once: bool = False,
                 stop_after: int | None = None) -> None:
        self.store = TwinStore(store, shared=True)  # the watcher's thread uses it
        self.ingestor, self.builder = counting_ingestor(self.store, settings_for(store, settle_s))
        self.changes: list[tuple[float, str, str, int | None]] = []  # (time, name, change, size)
        self.stop = threading.Event()
        self.stop_after = stop_after
        self.watcher = FolderWatcher(folder, self.ingestor, on_change=self.record)
        self.error: BaseException | None = None
        # a daemon, and stopped when a wait fails: a failing test must not leave pytest waiting at exit for it
        self.thread = threading.Thread(target=self._run, args=(once,), daemon=True)
        self.thread.start()

    def record(self, f: WatchedFile, change: str) -> None:
        self.changes.append((time.monotonic(), f.name, change, f.size))
        if self.stop_after is not None and len(self.builder.built) >= self.stop_after:
            self.stop.set()  # a Ctrl-C while the file is being ingested: the watcher stops after it

    def _run(self, once: bool) -> None:
        try:
            self.watcher.run(self.stop, once=once)
        except BaseException as exc:
            self.error = exc

    def started(self) -> Watch:
        """Wait until the watcher follows the folder (its job row says so)."""
        deadline = time.monotonic() + 20
        while not is_watching(self.store.root, self.watcher.job_id):
            assert time.monotonic() < deadline and self.thread.is_alive(), self.error
            time.sleep(0.02)
        time.sleep(0.3)  # the events thread's inotify watch is in place
        return self

    def wait(self, condition: object, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            while not condition():  # type: ignore[operator]
                assert time.monotonic() < deadline, (self.changes, self.error)
                assert self.error is None, self.error
                time.sleep(0.05)
        except AssertionError:
            self.stop.set()
            raise

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.store.close()
        if self.error is not None:
            raise self.error

    def of(self, name: str) -> list[str]:
        return [c for _, n, c, _ in self.changes if n == name]


@pytest.fixture
def folders(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    (tmp_path / "in").mkdir()
    yield tmp_path / "in", tmp_path / "store"


def queue_rows(store: Path, folder: Path) -> list[dict[str, Any]]:
    queue = IngestQueue(store)
    try:
        saved = queue.job(watch_job_id(folder))
        assert saved is not None
        return saved[1]
    finally:
        queue.close()


def assert_each_once(store: Path, folder: Path, clips: list[Path], built: list[str]) -> None:
    """Every clip is in the store once, as its whole file, and the queue says so; ``built``: the builds."""
    assert sorted(built) == sorted(c.name for c in clips)  # each built once: no duplicate, no partial
    with TwinStore(store) as s:
        assert len(s) == len(clips)
        hashes = {row["path"]: row["content_hash"] for row in s.db.query("select path, content_hash from videos")}
    assert hashes == {str((folder / c.name).resolve()): sha(c) for c in clips}  # whole files, never a part
    rows = queue_rows(store, folder)
    assert sorted(r["name"] for r in rows) == sorted(c.name for c in clips)
    assert {r["status"] for r in rows} == {"ingested"}


def test_twenty_files_copied_in_at_once_are_each_ingested_once(folders: tuple[Path, Path], clips: list[Path]) -> None:
    folder, store = folders
    watch = Watch(folder, store).started()
    copier = copy_slowly(clips, folder, chunks=4, pause_s=0.2)
    copier.join()
    copied = time.monotonic()
    watch.wait(lambda: len(watch.builder.built) >= 20 and all(watch.of(c.name)[-1] == "ingested" for c in clips))
    watch.close()
    assert_each_once(store, folder, clips, watch.builder.built)
    assert any(t < copied for t, _, c, _ in watch.changes if c == "waiting")  # seen while still partial
    for clip in clips:  # seen while partial, ready only once whole and still
        assert watch.of(clip.name) == ["waiting", "queued", "running", "ingested"]
        [(when, size)] = [(t, s) for t, n, c, s in watch.changes if n == clip.name and c == "queued"]
        assert size == clip.stat().st_size and when >= copied
    job = IngestQueue(store)
    [(row, _)] = job.jobs(source="watch")
    job.close()
    assert row["status"] == "done" and row["label"] == str(folder.resolve())
    assert not is_watching(store, watch_job_id(folder))


def test_a_restart_in_the_middle_loses_nothing_and_redoes_nothing(folders: tuple[Path, Path],
                                                                   clips: list[Path]) -> None:
    folder, store = folders
    first = Watch(folder, store, stop_after=7).started()
    copy_slowly(clips, folder, chunks=3, pause_s=0.2).join()
    first.wait(lambda: not first.thread.is_alive())  # stopped itself after its 7th build
    first.close()
    built_first = list(first.builder.built)
    assert 7 <= len(built_first) < 20
    rows = queue_rows(store, folder)
    assert sorted(r["status"] for r in rows) == sorted(["ingested"] * len(built_first)
                                                        + ["queued"] * (20 - len(built_first)))
    # and as if the first had been killed (kill -9) after committing its last video, before recording it
    last = next(r for r in rows if r["name"] == built_first[-1])
    q = IngestQueue(store)
    q.update_file(watch_job_id(folder), last["position"], status="running")
    q.close()

    second = Watch(folder, store, once=True)
    second.wait(lambda: not second.thread.is_alive())
    second.close()
    assert sorted(built_first + second.builder.built) == sorted(c.name for c in clips)  # nothing redone or lost
    assert second.of(built_first[-1])[-1] == "skipped"  # the store had it: hashed, not built
    assert all(second.of(name) == [] for name in built_first[:-1])  # finished as they are: not even read
    with TwinStore(store) as s:
        assert len(s) == 20
    rows = queue_rows(store, folder)
    assert sorted(r["status"] for r in rows) == ["ingested"] * 19 + ["skipped"]

    third = Watch(folder, store, once=True)  # a restart with nothing new: nothing happens
    third.wait(lambda: not third.thread.is_alive())
    third.close()
    assert third.changes == [] and third.builder.built == []


def test_a_growing_file_waits_until_it_stops(folders: tuple[Path, Path], clips: list[Path]) -> None:
    folder, store = folders
    watch = Watch(folder, store, settle_s=0.6).started()
    data = clips[0].read_bytes()
    with open(folder / "long.mp4", "wb") as out:  # grows for 2.4 s, in pauses shorter than the settle time
        for k in range(8):
            out.write(data[k * len(data) // 8:(k + 1) * len(data) // 8])
            out.flush()
            time.sleep(0.3)
    finished = time.monotonic()
    watch.wait(lambda: watch.of("long.mp4")[-1:] == ["ingested"])
    watch.close()
    [queued] = [t for t, n, c, _ in watch.changes if n == "long.mp4" and c == "queued"]
    assert queued >= finished + 0.3  # ready only after it stopped growing (and stayed so)
    assert watch.builder.built == ["long.mp4"]
    with TwinStore(store) as s:
        assert [r["content_hash"] for r in s.db.query("select content_hash from videos")] == [sha(clips[0])]


def test_a_bad_file_is_recorded_failed_and_watching_goes_on(folders: tuple[Path, Path], clips: list[Path]) -> None:
    folder, store = folders
    watch = Watch(folder, store, settle_s=0.3).started()
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 5000)
    watch.wait(lambda: watch.of("broken.mp4")[-1:] == ["failed"])
    shutil.copy(clips[1], folder / "after.mp4")
    watch.wait(lambda: watch.of("after.mp4")[-1:] == ["ingested"])
    watch.close()
    [broken] = [r for r in queue_rows(store, folder) if r["name"] == "broken.mp4"]
    assert broken["status"] == "failed" and "broken.mp4" in str(broken["error"])

    again = Watch(folder, store, settle_s=0.3, once=True)  # unchanged: not tried again
    again.wait(lambda: not again.thread.is_alive())
    again.close()
    assert again.changes == []
    shutil.copy(clips[2], folder / "broken.mp4")  # replaced by a good video: ingested
    fixed = Watch(folder, store, settle_s=0.3, once=True)
    fixed.wait(lambda: not fixed.thread.is_alive())
    fixed.close()
    assert fixed.of("broken.mp4") == ["waiting", "queued", "running", "ingested"]


def test_a_file_gone_before_it_settled_is_dropped(folders: tuple[Path, Path], clips: list[Path]) -> None:
    folder, store = folders
    watch = Watch(folder, store, settle_s=1.5).started()
    (folder / "gone.mp4").write_bytes(clips[0].read_bytes()[:3000])
    watch.wait(lambda: watch.of("gone.mp4") == ["waiting"])
    (folder / "gone.mp4").unlink()
    watch.wait(lambda: watch.of("gone.mp4") == ["waiting", "dropped"])
    watch.close()
    assert queue_rows(store, folder) == [] and watch.builder.built == []


def test_hidden_temporary_and_store_files_are_left_alone(folders: tuple[Path, Path], clips: list[Path]) -> None:
    folder, _ = folders
    store = folder / "store"  # the store inside the watched folder: its files are not videos to ingest
    for name in (".hidden.mp4", "clip.mp4.part", "clip.mp4~", ".sync/a.mp4", "store/uploads/x/u.mp4",
                 "notes.txt", "sub/deep/ok.mp4"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips[3], folder / name)
    watch = Watch(folder, store, settle_s=0.2, once=True)
    watch.wait(lambda: not watch.thread.is_alive())
    watch.close()
    assert watch.builder.built == ["ok.mp4"] and [n for _, n, c, _ in watch.changes if c == "ingested"] == [
        str(Path("sub/deep/ok.mp4"))]


def test_a_folder_moved_in_is_scanned(folders: tuple[Path, Path], clips: list[Path], tmp_path: Path) -> None:
    folder, store = folders
    staged = tmp_path / "staged"
    (staged / "inner").mkdir(parents=True)
    for clip in clips[:2]:
        shutil.copy(clip, staged / "inner" / clip.name)
    watch = Watch(folder, store, settle_s=0.2).started()
    staged.rename(folder / "batch")  # one event, for the folder: its files are found by scanning it
    watch.wait(lambda: sorted(watch.builder.built) == [c.name for c in clips[:2]])
    watch.close()


def test_one_watcher_per_folder_and_store(folders: tuple[Path, Path]) -> None:
    folder, store = folders
    TwinStore(store).close()
    with exclusive(watch_lock(store, watch_job_id(folder))):  # a watcher runs
        assert is_watching(store, watch_job_id(folder))
        with TwinStore(store) as s:
            ingestor, _ = counting_ingestor(s, settings_for(store))
            with pytest.raises(StoreBusyError, match="another twinseek watch"):
                FolderWatcher(folder, ingestor).run(once=True)



def test_watch_builds_on_worker_processes(folders: tuple[Path, Path], clips: list[Path]) -> None:
    # `twinseek watch --workers 2`: ready files go to two worker processes, in batches, each ingested once
    folder, store = folders
    settings = settings_for(store)
    for clip in clips[:6]:
        shutil.copy(clip, folder / clip.name)
    changes: list[tuple[str, str]] = []
    with ProcessPoolBuildExecutor(settings, 2, builder=LightBuilder) as pool, TwinStore(store, shared=True) as s:
        ingestor = Ingestor(s, settings, light_specialists())
        watcher = FolderWatcher(folder, ingestor, executor=pool, batch=2,
                                on_change=lambda f, c: changes.append((f.name, c)))
        summary = watcher.run(once=True)
        built_by = {w.pid for w in pool.workers()}
        assert len(s) == 6
    assert summary.count("ingested") == 6 and summary.builds == 6
    assert len(built_by) == 2 and os.getpid() not in built_by
    for clip in clips[:6]:
        assert [c for n, c in changes if n == clip.name].count("ingested") == 1
    rows = queue_rows(store, folder)
    assert sorted(r["name"] for r in rows) == sorted(c.name for c in clips[:6])
    assert {r["status"] for r in rows} == {"ingested"}
