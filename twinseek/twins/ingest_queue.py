"""The ingest queue, kept in the store's database: its jobs and their files, so that a restarted server (or
``twinseek watch``) resumes what was still waiting. The web app's uploads and folder jobs are its own; a watched
folder is one job of source ``watch`` (see :mod:`twinseek.twins.watch`), which the web app shows but never runs."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from twinseek.twins.migrations import STORE_SET
from twinseek.twins.store import DB_NAME, TwinStore

# The queue's tables. Their migration was the store's own before the queue owned it: it keeps the store's set name
# and its own function name, which every existing store recorded (none runs it again).
ingest_queue_migrations = Migrations(STORE_SET)


@ingest_queue_migrations()
def m006_ingest_queue(db: sqlite_utils.Database) -> None:
    """The web app's ingest queue: its jobs and their files, so that a restarted server resumes what was still
    waiting (see :class:`IngestQueue`)."""
    db.table("ingest_jobs").create(
        {"id": str, "source": str, "label": str, "created": str, "status": str, "error": str,
         "upload_folder": str},
        pk="id", not_null={"source", "label", "created", "status"}, if_not_exists=True)
    db.table("ingest_files").create(
        {"job_id": str, "position": int, "name": str, "path": str, "status": str, "video_id": str, "error": str,
         "frames": int, "tracks": int, "seconds": float, "started": float},
        pk=("job_id", "position"), not_null={"name", "path", "status"},
        foreign_keys=[("job_id", "ingest_jobs", "id")], if_not_exists=True)
    db.table("ingest_files").create_index(["status"], if_not_exists=True)


@ingest_queue_migrations()
def m011_watch(db: sqlite_utils.Database) -> None:
    """A watched folder's files record the size and modification time they were ingested at, so that a restarted
    ``twinseek watch`` passes over the files it finished (unchanged since) without reading them."""
    files = db.table("ingest_files")
    for column in ("size", "mtime_ns"):
        if column not in files.columns_dict:
            files.add_column(column, int)


class IngestQueue:
    """The ingest queue of the web app, kept in the store's database (``ingest_jobs``, ``ingest_files``).

    Its own SQLite connection, shared by the threads of one process under a lock (the API thread adds jobs,
    the ingest worker records each file's progress); every change is committed at once, so a server killed at
    any moment restarts with every job as it last stood. Rows are plain dicts (the web app's models live in
    :mod:`twinseek.web.ingest`).
    """

    JOB_FIELDS = ("source", "label", "created", "status", "error", "upload_folder")
    FILE_FIELDS = ("name", "path", "status", "video_id", "error", "frames", "tracks", "seconds", "started")
    STAT_FIELDS = ("size", "mtime_ns")  # a watched file's, when it was last seen ready (m011_watch)

    def __init__(self, root: str | Path) -> None:
        with TwinStore(root) as store:  # the store exists, its migrations and the queue's ran
            store.ensure(ingest_queue_migrations)
        conn = sqlite3.connect(str(Path(root) / DB_NAME), check_same_thread=False, timeout=30.0)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA foreign_keys = ON")
        self._lock = threading.Lock()

    def add(self, job: dict[str, Any], files: Sequence[dict[str, Any]]) -> None:
        """A new job and its files (``position`` is each file's index)."""
        with self._lock, self.db.conn:
            self.db.table("ingest_jobs").insert({"id": job["id"], **{k: job.get(k) for k in self.JOB_FIELDS}})
            self.db.table("ingest_files").insert_all(
                {"job_id": job["id"], "position": n, **{k: f.get(k) for k in self.FILE_FIELDS}}
                for n, f in enumerate(files))

    def update_job(self, job_id: str, **fields: Any) -> None:
        with self._lock, self.db.conn:
            self.db.table("ingest_jobs").update(job_id, fields)

    def update_file(self, job_id: str, position: int, **fields: Any) -> None:
        with self._lock, self.db.conn:
            self.db.table("ingest_files").update((job_id, position), fields)

    def ensure_job(self, job: dict[str, Any]) -> None:
        """Add the job ``job["id"]`` unless it is there (a watched folder's job outlives each ``twinseek watch``)."""
        with self._lock, self.db.conn:
            self.db.table("ingest_jobs").insert({"id": job["id"], **{k: job.get(k) for k in self.JOB_FIELDS}},
                                                ignore=True)

    def add_file(self, job_id: str, **fields: Any) -> int:
        """One more file of ``job_id``, after its last; returns its position."""
        with self._lock, self.db.conn:
            last = self.db.execute("select max(position) from ingest_files where job_id = ?", [job_id]).fetchone()[0]
            position = 0 if last is None else last + 1
            self.db.table("ingest_files").insert({"job_id": job_id, "position": position, **fields})
        return position

    def remove_file(self, job_id: str, position: int) -> None:
        with self._lock, self.db.conn:
            self.db.execute("delete from ingest_files where job_id = ? and position = ?", [job_id, position])

    def job(self, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """One job with its files (by position), or None."""
        with self._lock:
            rows = list(self.db.query("select * from ingest_jobs where id = ?", [job_id]))
            if not rows:
                return None
            files = list(self.db.query("select * from ingest_files where job_id = ? order by position", [job_id]))
        return rows[0], files

    def remove(self, job_ids: Collection[str]) -> None:
        """Forget finished jobs (the history the app keeps is bounded)."""
        if not job_ids:
            return
        marks = ",".join("?" * len(job_ids))
        with self._lock, self.db.conn:
            self.db.execute(f"delete from ingest_files where job_id in ({marks})", list(job_ids))
            self.db.execute(f"delete from ingest_jobs where id in ({marks})", list(job_ids))

    def jobs(self, source: str | None = None) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Every job (of ``source``, if given) with its files, oldest first."""
        where, args = ("where source = ?", [source]) if source else ("", [])
        with self._lock:
            jobs = list(self.db.query(f"select * from ingest_jobs {where} order by created, rowid", args))
            files: dict[str, list[dict[str, Any]]] = {}
            for row in self.db.query(f"select f.* from ingest_files f join ingest_jobs j on j.id = f.job_id "
                                     f"{where.replace('source', 'j.source')} order by f.job_id, f.position", args):
                files.setdefault(row["job_id"], []).append(row)
        return [(job, files.get(job["id"], [])) for job in jobs]

    def close(self) -> None:
        with self._lock:
            self.db.close()
