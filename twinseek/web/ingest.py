"""Ingest for the web app: uploads checked and saved into the store, and one background worker with a job queue.

One worker thread ingests file after file (the store takes one writer at a time anyway), so searches never wait
for an ingest; after each new video the indexes are synced, and the video is searchable from then on.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from twinseek.media.decode import SUPPORTED_SUFFIXES
from twinseek.twins.ingest_queue import IngestQueue
from twinseek.twins.pipeline import Ingestor, IngestResult
from twinseek.twins.store import TwinStore
from twinseek.twins.watch import WATCH_SOURCE, is_watching

if TYPE_CHECKING:
    from twinseek.config import Settings
    from twinseek.twins.pipeline import Ingestor, IngestResult

logger = logging.getLogger(__name__)

UPLOAD_DIR = "uploads"  # inside the store: an uploaded video must outlive the request that brought it
SNIFF_BYTES = 16
COPY_CHUNK = 1 << 20

FileStatus = Literal["waiting", "queued", "running", "ingested", "skipped", "failed"]  # waiting: a watched file
JobStatus = Literal["queued", "running", "done", "stopped"]  # stopped: a watched folder no watcher runs on now
WATCH_SHOWN = 100  # the finished files a watched folder's job lists (the latest); the rest are counted


class UploadRejected(Exception):
    """An upload the app refuses: ``status_code`` 413 (too large), 415 (not a video) or 400."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class FileProgress(BaseModel):
    name: str = Field(description="The file as the user named it (upload name or path below the folder).")
    path: str = Field(description="Where the server reads it.")
    status: FileStatus = "queued"
    video_id: str | None = None
    error: str | None = None
    frames: int = 0
    tracks: int = 0
    seconds: float = 0.0
    started: float | None = Field(None, description="Unix time the ingest of this file began.")

    @property
    def percent(self) -> int:
        return 0 if self.status in ("waiting", "queued") else 50 if self.status == "running" else 100


class IngestJob(BaseModel):
    id: str
    source: Literal["upload", "folder", "watch"] = Field(description="watch: a folder `twinseek watch` follows "
                                                          "(run by that process; the app only shows it).")
    label: str
    created: str
    status: JobStatus = "queued"
    files: list[FileProgress] = Field(default_factory=list)
    error: str | None = Field(None, description="A problem after ingest (e.g. the index sync failed).")
    earlier: int = Field(0, description="A watched folder's finished files not listed (the latest are).")

    @property
    def finished(self) -> int:
        return self.earlier + sum(f.status in ("ingested", "skipped", "failed") for f in self.files)

    @property
    def total(self) -> int:
        return self.earlier + len(self.files)

    @property
    def percent(self) -> int:
        return round(100 * self.finished / self.total) if self.total else 100


# -- uploads ----------------------------------------------------------------------------------------------------
def looks_like_video(head: bytes) -> bool:
    """The container signatures of the formats ingest reads (ISO-BMFF/QuickTime, Matroska/WebM, AVI, GIF)."""
    return (head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")
            or head.startswith(b"\x1a\x45\xdf\xa3")
            or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
            or head.startswith((b"GIF87a", b"GIF89a")))


def safe_name(filename: str | None) -> str:
    """A file name that is safe to create: the last path part, only ``[A-Za-z0-9._-]``, no leading dot."""
    base = re.split(r"[\\/]", filename or "")[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[:120]
    return name or "upload"


def check_upload(filename: str | None, head: bytes) -> None:
    """Refuse a file that is not a video by its name and its first bytes (415)."""
    shown = safe_name(filename)
    suffix = Path(shown).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UploadRejected(415, f"{shown}: not a supported video type (expected one of "
                                  f"{', '.join(sorted(SUPPORTED_SUFFIXES))})")
    if not looks_like_video(head):
        raise UploadRejected(415, f"{shown}: the content is not a video container of a supported type")


def save_uploads(files: Sequence[tuple[str | None, IO[bytes]]], folder: Path, max_bytes: int) -> list[Path]:
    """Check every upload, then copy them into ``folder``; nothing is kept when one is refused."""
    for name, handle in files:
        handle.seek(0)
        check_upload(name, handle.read(SNIFF_BYTES))
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    try:
        total = 0
        for name, handle in files:
            handle.seek(0)
            dest = _unique(folder / safe_name(name))
            with open(dest, "wb") as out:
                saved.append(dest)
                while block := handle.read(COPY_CHUNK):
                    total += len(block)
                    if total > max_bytes:
                        raise UploadRejected(413, f"upload larger than the limit of {max_bytes / 2**20:.4g} MB")
                    out.write(block)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return saved


def _unique(path: Path) -> Path:
    n, candidate = 1, path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


# -- the worker -------------------------------------------------------------------------------------------------
class IngestWorker:
    """A queue of ingest jobs run one file at a time by a single background thread.

    The queue is kept in the store (:class:`~twinseek.twins.ingest_queue.IngestQueue`): every job and each file's
    progress is written there as it happens, and a new worker resumes the jobs a stopped or killed server left
    unfinished (a file that was being ingested runs again; had its twin been committed, the store skips it as
    already there, so each file is ingested once). ``on_ingested`` runs after every newly ingested video (the
    app syncs the search indexes there). ``ingestor_factory`` builds the :class:`Ingestor` inside the worker
    thread (its store connection belongs to that thread); the default opens the store at ``store_root`` with
    ``settings``.

    The jobs of watched folders (``twinseek watch``, another process: :mod:`twinseek.twins.watch`) are read from
    the store each time the jobs are listed, never run here; when a watcher has ingested new videos, the indexes
    are synced (``on_ingested``) as after the worker's own.
    """

    def __init__(self, store_root: Path, settings: Settings, on_ingested: Callable[[], None] = lambda: None,
                 history: int = 50, ingestor_factory: Callable[[], Ingestor] | None = None) -> None:
        self.store_root = Path(store_root)
        self.settings = settings
        self.on_ingested = on_ingested
        self.history = history
        self._factory = ingestor_factory
        self._queue: queue.Queue[IngestJob | None] = queue.Queue()
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._owned: dict[str, Path] = {}  # job id -> its upload folder (removed files are ours to delete)
        self._lock = threading.Lock()
        self._saved = IngestQueue(self.store_root)
        self._watch_ingested = self._count_watch_ingested()
        self._syncing: threading.Thread | None = None
        self._resume()
        self._thread = threading.Thread(target=self._run, name="twinseek-ingest", daemon=True)
        self._thread.start()

    @property
    def upload_root(self) -> Path:
        return self.store_root / UPLOAD_DIR

    # -- the API side ---------------------------------------------------------------------------------------------
    def submit(self, files: Sequence[tuple[str, Path]], source: Literal["upload", "folder"], label: str,
               job_id: str | None = None, upload_folder: Path | None = None) -> IngestJob:
        """Queue ``(display name, path)`` files as one job. ``upload_folder``: the job's own copies, deleted
        when a file is skipped or fails."""
        job = IngestJob(id=job_id or new_job_id(), source=source, label=label,
                        created=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                        files=[FileProgress(name=name, path=str(path)) for name, path in files])
        self._saved.add({**job.model_dump(exclude={"files"}),
                         "upload_folder": str(upload_folder) if upload_folder else None},
                        [f.model_dump() for f in job.files])
        with self._lock:
            self._jobs[job.id] = job
            if upload_folder is not None:
                self._owned[job.id] = upload_folder
            self._forget_old()
            snapshot = job.model_copy(deep=True)
        self._queue.put(job)
        return snapshot

    def jobs(self) -> list[IngestJob]:
        """Snapshots: the watched folders' jobs, then the app's own, newest first."""
        watched = self.watch_jobs()
        with self._lock:
            return watched + [j.model_copy(deep=True) for j in reversed(self._jobs.values())]

    def job(self, job_id: str) -> IngestJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.model_copy(deep=True)
        return next((j for j in self.watch_jobs() if j.id == job_id), None)

    def watch_jobs(self) -> list[IngestJob]:
        """The jobs of watched folders as their watchers left them in the store (``running`` while a watcher
        holds the folder, ``stopped`` otherwise), newest first: the files not finished and the latest
        ``WATCH_SHOWN`` finished ones. Syncs the indexes (in the background) when a watcher ingested new videos."""
        jobs, ingested = [], 0
        for row, files in reversed(self._saved.jobs(source=WATCH_SOURCE)):
            ingested += sum(f["status"] == "ingested" for f in files)
            done = [n for n, f in enumerate(files) if f["status"] in ("ingested", "skipped", "failed")]
            hidden = set(done[: max(0, len(done) - WATCH_SHOWN)])
            jobs.append(IngestJob(
                id=row["id"], source=WATCH_SOURCE, label=row["label"], created=row["created"], error=row["error"],
                status="running" if is_watching(self.store_root, row["id"]) else "stopped", earlier=len(hidden),
                files=[FileProgress(**{k: f[k] for k in IngestQueue.FILE_FIELDS if f[k] is not None})
                       for n, f in enumerate(files) if n not in hidden]))
        if ingested != self._watch_ingested and self._sync_in_background():
            self._watch_ingested = ingested
        return jobs

    def _count_watch_ingested(self) -> int:
        return sum(f["status"] == "ingested" for _, files in self._saved.jobs(source=WATCH_SOURCE) for f in files)

    def _sync_in_background(self) -> bool:
        """Start a sync unless one runs (then False: the next listing tries again, and that sync reads the store
        as it is by then)."""
        with self._lock:
            if self._syncing is not None and self._syncing.is_alive():
                return False

            def sync() -> None:
                try:
                    self.on_ingested()
                except Exception:
                    logger.exception("index sync after a watcher's ingest failed")

            self._syncing = threading.Thread(target=sync, name="twinseek-watch-sync", daemon=True)
            self._syncing.start()
            return True

    def busy(self) -> bool:
        with self._lock:
            return any(j.status != "done" for j in self._jobs.values())

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the file being ingested (the store's writes are atomic either way; the jobs still queued
        stay in the store for the next start)."""
        self._queue.put(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._saved.close()

    def _forget_old(self) -> None:
        done = [k for k, j in self._jobs.items() if j.status == "done"]
        old = done[: max(0, len(done) - self.history)]
        for key in old:
            del self._jobs[key]
        self._saved.remove(old)

    def _resume(self) -> None:
        """Load the jobs kept in the store: the finished ones as history, the others queued again (a file that
        was running when the server stopped starts over)."""
        for row, files in self._saved.jobs():
            if row["source"] == WATCH_SOURCE:  # a watcher's (twinseek watch), never run here
                continue
            job = IngestJob(id=row["id"], source=row["source"], label=row["label"], created=row["created"],
                            status=row["status"], error=row["error"],
                            files=[FileProgress(**{k: f[k] for k in IngestQueue.FILE_FIELDS if f[k] is not None})
                                   for f in files])
            if row["upload_folder"]:
                self._owned[job.id] = Path(row["upload_folder"])
            self._jobs[job.id] = job
            if job.status == "done":
                continue
            job.status = "queued"
            for n, f in enumerate(job.files):
                if f.status == "running":
                    f.status, f.started = "queued", None
                    self._saved.update_file(job.id, n, status="queued", started=None)
            self._saved.update_job(job.id, status="queued")
            logger.info("resuming ingest job %s (%d of %d files left)", job.id,
                        sum(f.status == "queued" for f in job.files), len(job.files))
            self._queue.put(job)
        with self._lock:
            self._forget_old()

    # -- the worker thread ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        ingestor: Ingestor | None = None
        try:
            while (job := self._queue.get()) is not None:
                if ingestor is None:
                    try:
                        ingestor = self._factory() if self._factory else self._open()
                    except Exception as exc:  # e.g. the store is locked or broken: every file says why
                        logger.exception("cannot start ingesting")
                        self._fail_all(job, f"cannot open the store for ingest: {exc}")
                        continue
                self._process(job, ingestor)
        finally:
            if ingestor is not None:
                ingestor.store.close()

    def _open(self) -> Ingestor:

        return Ingestor(TwinStore(self.store_root), self.settings)

    def _process(self, job: IngestJob, ingestor: Ingestor) -> None:
        with self._lock:
            job.status = "running"
        self._saved.update_job(job.id, status="running")
        for n, f in enumerate(job.files):
            if f.status != "queued":  # a resumed job: this file was finished before the restart
                continue
            with self._lock:
                f.status, f.started = "running", time.time()
            self._saved.update_file(job.id, n, status="running", started=f.started)
            result = self._ingest_one(ingestor, Path(f.path))
            # the file as the user named it, not where the server keeps it
            error = result.error.replace(f.path, f.name) if result.error else None
            with self._lock:
                f.status, f.video_id, f.error = result.status, result.video_id, error
                f.frames, f.tracks, f.seconds = result.frames, result.tracks, round(result.seconds, 2)
            self._saved.update_file(job.id, n, status=f.status, video_id=f.video_id, error=f.error, frames=f.frames,
                                    tracks=f.tracks, seconds=f.seconds)
            if result.status != "ingested":
                self._discard(job.id, Path(f.path))
                continue
            try:
                self.on_ingested()
            except Exception as exc:
                logger.exception("index sync after ingesting %s failed", f.path)
                with self._lock:
                    job.error = f"{f.name} was ingested but the search indexes could not be synced: {exc}"
                self._saved.update_job(job.id, error=job.error)
        with self._lock:
            job.status = "done"
        self._saved.update_job(job.id, status="done")

    def _ingest_one(self, ingestor: Ingestor, path: Path) -> IngestResult:

        start = time.perf_counter()
        try:
            results = ingestor.ingest_many([path])  # bad input comes back as a "failed" result
        except Exception as exc:  # anything else (a model crashed): this file fails, the queue goes on
            logger.exception("ingest of %s failed", path)
            return IngestResult(str(path), "failed", error=f"{type(exc).__name__}: {exc}",
                                seconds=time.perf_counter() - start)
        if not results:
            return IngestResult(str(path), "failed", error="not a supported video file")
        return results[0]

    def _discard(self, job_id: str, path: Path) -> None:
        """Delete a skipped or failed upload (a folder job's files are the user's and stay)."""
        folder = self._owned.get(job_id)
        if folder is None or not path.is_relative_to(folder):
            return
        path.unlink(missing_ok=True)
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()

    def _fail_all(self, job: IngestJob, error: str) -> None:
        with self._lock:
            failed = [(n, f) for n, f in enumerate(job.files) if f.status in ("queued", "running")]
            for _, f in failed:
                f.status, f.error = "failed", error
            job.status = "done"
        for n, f in failed:
            self._saved.update_file(job.id, n, status="failed", error=error)
            self._discard(job.id, Path(f.path))
        self._saved.update_job(job.id, status="done")
