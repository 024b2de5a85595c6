"""Watching a folder: videos are ingested as they arrive (``twinseek watch``).

A :class:`FolderWatcher` scans the folder when it starts (what is already there, including what arrived while no
watcher ran), then follows file-system events (``watchfiles``: inotify, or polling), and rescans now and then for
events the kernel dropped. Only video files count (:func:`~twinseek.media.decode.is_supported`); hidden files and
folders (a dot anywhere in the path below the folder, e.g. rsync's ``.clip.mp4.Xy12``), temporary names
(``clip.mp4.part``: not a video suffix) and the store itself, when it lies inside the folder, are left alone.

A file is *ready* once its size and modification time have stayed the same for ``settle_s`` seconds, by polling
``stat`` (not by the timing of events): a file still being copied waits, and one that disappears before it settles
is dropped. Ready files are ingested one at a time in arrival order (or in batches on an executor's workers), each
once: the store skips a video it has (by content hash), and the watch queue remembers the size and modification
time each file was finished at, so a restarted watcher passes over those without reading them.

The queue is durable: it is a job of source ``watch`` in the store's ingest queue
(:class:`~twinseek.twins.ingest_queue.IngestQueue`), one per watched folder, with one row per file (``waiting``
while it may still grow, then ``queued``, ``running``, and ``ingested``, ``skipped`` or ``failed`` with the reason).
The web app's ingest page shows it. A watcher holds the lock :func:`watch_lock` while it runs: one watcher per
folder and store, and the web app tells a running watcher from a stopped one by it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import watchfiles

from twinseek.config import WatchSettings
from twinseek.errors import StoreBusyError, TwinseekError
from twinseek.media.decode import is_supported
from twinseek.twins.ingest_queue import IngestQueue
from twinseek.twins.locks import exclusive, lease_held
from twinseek.twins.pipeline import BatchBuilder, Ingestor, IngestResult

logger = logging.getLogger(__name__)

WATCH_SOURCE = "watch"
EARLY_RESCAN_S = 1.0  # the scan after the first, once the events thread surely follows the folder
FINISHED = ("ingested", "skipped", "failed")
WatchStatus = Literal["waiting", "queued", "running", "ingested", "skipped", "failed"]
# what happened to a file, as the watcher reports it (``on_change``): its new status, or "dropped" (it went away
# before it was ingested)
Change = Literal["waiting", "queued", "running", "ingested", "skipped", "failed", "dropped"]


def watch_job_id(folder: str | Path) -> str:
    """The queue job of a watched folder: one per folder (by its real path), whatever watcher runs it."""
    return "watch-" + hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:12]


def watch_lock(store_root: str | Path, job_id: str) -> Path:
    """The lock file a watcher of ``job_id`` holds in the store while it runs."""
    return Path(store_root) / f".{job_id}.lock"


def is_watching(store_root: str | Path, job_id: str) -> bool:
    """Whether a live watcher holds ``job_id``'s lock (the kernel drops it when the watcher dies)."""
    return bool(lease_held(watch_lock(store_root, job_id)))


@dataclass
class WatchedFile:
    """A file of the watch queue: a row of ``ingest_files`` (``position`` within the folder's job)."""

    position: int
    name: str  # below the watched folder
    path: str  # absolute
    status: WatchStatus = "waiting"
    size: int | None = None
    mtime_ns: int | None = None
    video_id: str | None = None
    error: str | None = None
    frames: int = 0
    tracks: int = 0
    seconds: float = 0.0
    started: float | None = None

    @property
    def stat(self) -> tuple[int | None, int | None]:
        return self.size, self.mtime_ns


@dataclass
class _Settling:
    stat: tuple[int, int]  # size, mtime_ns
    since: float  # monotonic time the stat was first seen as it is


@dataclass
class WatchSummary:
    """What one run of a watcher did (files dropped are not in ``files``)."""

    files: list[WatchedFile] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    builds: int = 0  # ingests that ran (a skipped video costs none)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)


class FolderWatcher:
    """Ingests the videos of ``folder`` into ``ingestor``'s store as they arrive; see the module's docstring.

    ``executor``: build on its workers (a :class:`~twinseek.twins.parallel.BuildExecutor`), ``batch`` ready files
    at a time; without one, each file is built here. ``on_change(file, change)`` sees every step of every file
    (the CLI prints them). Stop it with :meth:`run`'s ``stop`` event: it stops after the file being ingested (a
    file it did not finish is ``queued`` again for the next watcher).
    """

    def __init__(self, folder: str | Path, ingestor: Ingestor, settings: WatchSettings | None = None, *,
                 executor: BatchBuilder | None = None, batch: int = 1, retries: int = 1,
                 on_change: Callable[[WatchedFile, Change], None] | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.ingestor = ingestor
        self.settings = settings or ingestor.settings.watch
        self.executor = executor
        self.batch = max(1, batch)
        self.retries = retries
        self.on_change = on_change or (lambda f, c: None)
        self.store_root = Path(ingestor.store.root).resolve()
        self.job_id = watch_job_id(self.folder)
        self._files: dict[str, WatchedFile] = {}  # by absolute path
        self._settling: dict[str, _Settling] = {}
        self._ready: list[str] = []  # paths, in the order they settled
        self._events: queue.Queue[set[tuple[watchfiles.Change, str]] | BaseException] = queue.Queue()
        self._queue: IngestQueue | None = None
        self.summary = WatchSummary()

    # -- the run ------------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, once: bool = False) -> WatchSummary:
        """Watch until ``stop`` is set (or, with ``once``, until what the folder holds now is ingested).

        Raises :class:`StoreBusyError` when another watcher runs on this folder and store, ``NotADirectoryError``
        when the folder is not one, :class:`TwinseekError` when following the folder fails (it was removed)."""
        if not self.folder.is_dir():
            raise NotADirectoryError(f"not a folder: {self.folder}")
        stop = stop or threading.Event()
        self.summary = summary = WatchSummary()
        halt = threading.Event()  # ends the events thread
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(exclusive(watch_lock(self.store_root, self.job_id), timeout_s=2.0))
            except StoreBusyError:
                raise StoreBusyError(f"another twinseek watch is watching {self.folder} into {self.store_root}"
                                     ) from None
            self._queue = stack.enter_context(contextlib.closing(IngestQueue(self.store_root)))
            stack.callback(setattr, self, "_queue", None)
            self._load()
            stack.callback(self._finish)
            if not once:
                events = threading.Thread(target=self._follow, args=(halt,), name="twinseek-watch", daemon=True)
                events.start()  # before the scan: nothing that arrives in between is missed
                stack.callback(events.join, 10)
                stack.callback(halt.set)
            self._scan()
            self._queue.update_job(self.job_id, status="running")
            # once more soon: the events thread may have set its watch only after the first scan
            next_scan = None if once else time.monotonic() + EARLY_RESCAN_S
            while not stop.is_set():
                self._take_events()
                self._settle()
                if self._ready:
                    self._ingest(stop)
                    continue
                if once and not self._settling:
                    break
                if next_scan is not None and time.monotonic() >= next_scan:
                    self._scan()
                    rescan = self.settings.rescan_s
                    next_scan = time.monotonic() + rescan if rescan else None
                stop.wait(self.settings.poll_s)
        return summary

    # -- the queue ---------------------------------------------------------------------------------------------
    def _load(self) -> None:
        """The folder's job as the last watcher left it (created on the first run)."""
        assert self._queue is not None
        self._files, self._settling, self._ready = {}, {}, []
        self._queue.ensure_job({"id": self.job_id, "source": WATCH_SOURCE, "label": str(self.folder),
                                "created": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                                "status": "queued"})
        saved = self._queue.job(self.job_id)
        for row in saved[1] if saved else []:
            f = WatchedFile(row["position"], row["name"], row["path"], row["status"], row["size"], row["mtime_ns"],
                            row["video_id"], row["error"], row["frames"] or 0, row["tracks"] or 0,
                            row["seconds"] or 0.0, row["started"])
            self._files[f.path] = f
        unfinished = sum(f.status not in FINISHED for f in self._files.values())
        if unfinished:
            logger.info("watch %s: %d files left unfinished by the last watcher", self.folder, unfinished)

    def _save(self, f: WatchedFile, change: Change | None = None, **fields: Any) -> None:
        assert self._queue is not None
        for key, value in fields.items():
            setattr(f, key, value)
        self._queue.update_file(self.job_id, f.position, **fields)
        self.on_change(f, change or f.status)

    def _track(self, path: Path) -> None:
        """``path`` was seen (scan or event): follow it until it settles, unless it was finished as it is."""
        key = str(path)
        try:
            st = path.stat()
        except OSError:  # gone already: a deletion event follows, or already came
            return
        stat = (st.st_size, st.st_mtime_ns)
        f = self._files.get(key)
        if f is not None and f.status in FINISHED and f.stat == stat:
            return  # finished at this size and time: nothing changed (an event for a touch, or a restart's scan)
        if key in self._settling or key in self._ready:
            return  # already followed; its stat is polled
        if f is None:
            name = str(path.relative_to(self.folder))
            assert self._queue is not None
            position = self._queue.add_file(self.job_id, name=name, path=key, status="waiting")
            f = self._files[key] = WatchedFile(position, name, key)
            self.on_change(f, "waiting")
        else:  # new, or changed since it was finished, or left unfinished by the last watcher
            self._save(f, status="waiting", error=None, started=None)
        self._settling[key] = _Settling(stat, time.monotonic())

    def _drop(self, key: str, why: str) -> None:
        self._settling.pop(key, None)
        if key in self._ready:
            self._ready.remove(key)
        f = self._files.pop(key, None)
        if f is None:
            return
        assert self._queue is not None
        logger.info("watch: %s %s before it was ingested; dropped", f.name, why)
        self._queue.remove_file(self.job_id, f.position)
        self.summary.dropped.append(f.name)
        self.on_change(f, "dropped")

    def _finish(self) -> None:
        """On the way out: a file being ingested when the watcher stopped is ``queued`` again (the next watcher
        settles it anew, and the store skips it if its twin was committed after all); the job is no longer run."""
        assert self._queue is not None
        for f in self._files.values():
            if f.status == "running":
                self._save(f, status="queued", started=None)
        self._queue.update_job(self.job_id, status="done")

    # -- finding files ------------------------------------------------------------------------------------------
    def wanted(self, path: Path) -> bool:
        """A video file below the folder, not hidden, not in the store."""
        try:
            relative = path.relative_to(self.folder)
        except ValueError:
            return False
        if any(part.startswith(".") for part in relative.parts) or path.name.endswith("~"):
            return False
        if path == self.store_root or self.store_root in path.parents:
            return False
        return is_supported(path)

    def _walk(self, root: Path) -> Iterable[Path]:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and here / d != self.store_root)
            for name in sorted(filenames):
                path = here / name
                if self.wanted(path) and path.is_file():
                    yield path

    def _scan(self) -> None:
        """Every video the folder holds now; a file the queue still waited for that is gone is dropped."""
        present = set()
        for path in self._walk(self.folder):
            present.add(str(path))
            self._track(path)
        for key, f in list(self._files.items()):
            if f.status not in FINISHED and key not in present:
                self._drop(key, "disappeared")

    def _follow(self, halt: threading.Event) -> None:
        """The events thread: ``watchfiles`` changes of the folder into ``self._events``."""

        def keep(change: watchfiles.Change, raw: str) -> bool:
            path = Path(raw)
            if change == watchfiles.Change.added and path.is_dir():
                return self.wanted(path / "x.mp4")  # a folder moved in: scanned whole (its files send no events)
            return self.wanted(path)

        try:
            for changes in watchfiles.watch(self.folder, watch_filter=keep, stop_event=halt, debounce=400, step=50,
                                            rust_timeout=1000, raise_interrupt=False,
                                            force_polling=self.settings.force_polling):
                self._events.put(changes)
        except BaseException as exc:  # the folder was removed, inotify's watch limit: the run stops and says why
            if not halt.is_set():
                self._events.put(exc)

    def _take_events(self) -> None:
        while True:
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, BaseException):
                raise TwinseekError(f"watching {self.folder} failed: {type(item).__name__}: {item}") from item
            for change, raw in sorted(item, key=lambda c: c[1]):
                path = Path(raw)
                if change == watchfiles.Change.deleted:
                    f = self._files.get(raw)
                    if f is not None and f.status not in FINISHED and not path.exists():
                        self._drop(raw, "was deleted")
                elif path.is_dir():
                    for found in self._walk(path):
                        self._track(found)
                elif path.is_file():
                    self._track(path)

    def _settle(self) -> None:
        """Poll the stat of the files not yet settled: one unchanged for ``settle_s`` is ready (``queued``)."""
        now = time.monotonic()
        for key, s in list(self._settling.items()):
            try:
                st = os.stat(key)
            except OSError:
                self._drop(key, "disappeared")
                continue
            stat = (st.st_size, st.st_mtime_ns)
            if stat != s.stat:
                s.stat, s.since = stat, now  # still growing
            elif now - s.since >= self.settings.settle_s:
                del self._settling[key]
                self._ready.append(key)
                self._save(self._files[key], status="queued", size=stat[0], mtime_ns=stat[1])

    # -- ingesting ------------------------------------------------------------------------------------------------
    def _ingest(self, stop: threading.Event) -> None:
        take = self._ready[: self.batch if self.executor is not None else 1]
        del self._ready[: len(take)]
        batch: list[WatchedFile] = []
        for key in take:
            f = self._files[key]
            try:  # changed since it settled (copied over again): it waits again
                st = os.stat(key)
            except OSError:
                self._drop(key, "disappeared")
                continue
            if (st.st_size, st.st_mtime_ns) != f.stat:
                self._save(f, status="waiting")
                self._settling[key] = _Settling((st.st_size, st.st_mtime_ns), time.monotonic())
                continue
            batch.append(f)
        if not batch or stop.is_set():
            self._ready[:0] = [f.path for f in batch]  # left queued for the next round or the next watcher
            return
        for f in batch:
            self._save(f, status="running", started=time.time())
        by_path = {f.path: f for f in batch}

        def done(result: IngestResult) -> None:
            f = by_path[str(Path(result.path))]
            if result.status == "ingested":
                self.summary.builds += 1
            error = result.error.replace(f.path, f.name) if result.error else None
            self._save(f, status=result.status, video_id=result.video_id, error=error, frames=result.frames,
                       tracks=result.tracks, seconds=round(result.seconds, 2))
            self.summary.files.append(f)

        paths = [Path(f.path) for f in batch]
        if self.executor is not None:
            self.ingestor.ingest_many(paths, on_done=done, executor=self.executor, retries=self.retries)
        else:
            self.ingestor.ingest_many(paths, on_done=done)
        for f in batch:  # a file the ingest returned no result for (it is not a video after all)
            if f.status == "running":
                self._save(f, status="failed", error="not a supported video file")
                self.summary.files.append(f)
