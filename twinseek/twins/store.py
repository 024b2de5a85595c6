"""The SQLite digital-twin store.

Layout of a store folder::

    twins.db                         SQLite (tables videos, tracks, instances, relations, speech_status, speech, shots,
                                     refinements; the tables of components that keep theirs here, see
                                     twinseek.twins.migrations)
    masks/<video_id>/<ingest>/t<track>_f<frame>.png
    .leases/<ingest>.lock            one per ingest still writing its mask folder (flock held by its process)

Ingest writes ``videos``, ``tracks``, ``instances``, ``relations``, ``speech_status``, ``speech`` and ``shots``; after that
only the derived columns of ``videos`` (the ECR text) change. What a search learns goes to ``refinements``, an overlay with provenance
(:mod:`twinseek.twins.refinements`): :meth:`TwinStore.get_twin` reads the ingest rows with the refinements laid
over them, ``get_twin(video_id, refinements=False)`` the ingest rows alone. Re-ingesting or deleting a video
drops its refinements (its track ids may now name other objects).

Writes of one video are atomic: its mask files go to a fresh ``<ingest>`` folder, then every row is written
in one transaction, and only then is the previous folder removed. A crash at any point leaves either the old
twin or the new one; mask folders no row points to are swept the next time the store is opened.

The sweep must never take a folder an ingest is still writing (its rows are not committed yet): each ingest
folder has a lease, a lock file the ingesting process holds an ``flock`` on from before the folder exists until
its rows are committed or the folder is discarded. The kernel drops the lock when that process dies (even by
``kill -9``), so a folder whose lease can be locked by someone else is an orphan; one whose lease is held is
live and left alone. A folder with no lease file at all (written by an older twinseek) is swept only once it
is older than ``ORPHAN_GRACE_S``. :meth:`TwinStore.check` reports rows whose mask files are missing.

One writer at a time (an advisory file lock); any number of readers (WAL mode).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sqlite_utils
from pydantic import BaseModel, Field, computed_field
from sqlite_utils.migrations import Migrations

from twinseek.errors import StoreError, VideoNotFoundError
from twinseek.media.masks import load_mask, save_mask
from twinseek.twins.locks import age_s, exclusive, lease_held, mkdir_racing_sweeps, take_lease
from twinseek.twins.migrations import store_migrations
from twinseek.twins.model import Instance, Relation, Speech, Track, Twin, Video
from twinseek.twins.refinements import Refinement, overlay, prune
from twinseek.twins.rows import (
    StoredRows,
    VideoRevision,
    instance_from_row,
    instance_to_row,
    refinement_from_row,
    refinement_to_row,
    shot_from_row,
    shot_to_row,
    speech_from_rows,
    speech_to_rows,
    track_from_row,
    track_to_row,
    video_from_row,
    video_to_row,
)

logger = logging.getLogger(__name__)

DB_NAME = "twins.db"
MASK_DIR = "masks"
LEASE_DIR = ".leases"
# A mask folder with no lease file (written by a twinseek without leases) is only swept once this old: an
# ingest of such a version may still be writing it.
ORPHAN_GRACE_S = 3600.0

FindingKind = Literal["sqlite", "foreign_key", "missing_masks", "missing_mask_dir", "unreadable_masks",
                      "orphan_mask_dir", "ingest_in_progress"]
# Findings that mean stored data is lost or unusable (the others are housekeeping the next open does).
DAMAGE: frozenset[str] = frozenset({"sqlite", "foreign_key", "missing_masks", "missing_mask_dir", "unreadable_masks"})


class StoreFinding(BaseModel):
    """One problem :meth:`TwinStore.check` found."""

    kind: FindingKind
    video_id: str | None = None
    count: int = Field(1, description="How many rows or files it concerns.")
    detail: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def damage(self) -> bool:
        return self.kind in DAMAGE


class StoreCheck(BaseModel):
    """What :meth:`TwinStore.check` found: ``ok`` unless some stored data is lost or unusable."""

    store: str
    videos: int
    instances: int
    findings: list[StoreFinding] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not any(f.damage for f in self.findings)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def damaged_videos(self) -> list[str]:
        return sorted({f.video_id for f in self.findings if f.damage and f.video_id})


class TwinStore:
    """A folder holding the twin database and mask files. Use as a context manager or call ``close``.

    ``create``: make the store when the folder holds none (else :class:`StoreError`). ``shared``: the connection
    may be used from several threads at once (a search's graph runs nodes on executor threads), which SQLite allows
    when it is built serialised (``sqlite3.threadsafety == 3``, as distributions build it); writes still go one at
    a time through the writer lock. Without it, the connection belongs to the thread that opened the store.
    """

    def __init__(self, root: str | Path, create: bool = True, *, shared: bool = False) -> None:
        self.root = Path(root)
        db_path = self.root / DB_NAME
        if not db_path.exists() and not create:
            raise StoreError(f"no twin store at {self.root} (expected {db_path})")
        self.root.mkdir(parents=True, exist_ok=True)
        self._leases: dict[str, int] = {}  # mask folder -> fd of its lease file (flock held)
        self.db = _connect(db_path, shared)
        self.db.enable_wal()
        self.db.execute("PRAGMA foreign_keys = ON")
        with self.writer():
            store_migrations.apply(self.db)
            self._sweep_orphan_masks()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def close(self) -> None:
        for mask_dir in list(self._leases):  # ingests that never committed: their folders hold nothing live
            self.discard_mask_dir(mask_dir)
        self.db.close()

    def __enter__(self) -> TwinStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure(self, migrations: Migrations) -> None:
        """Apply what a component's own migrations (a catalogue's, a cache's: each keeps its set next to the SQL of
        its tables) have not yet done to this store, under the writer lock. Nothing pending, the usual case, reads
        the record of applied migrations and takes no lock (a store that cannot be written still opens)."""
        if migrations.name == store_migrations.name:  # a component's set recorded under the store's name
            clash = _names(migrations) & _names(store_migrations)
            if clash:
                raise ValueError(f"migrations {sorted(clash)} are the store's own, not {migrations!r}'s")
        if not migrations.pending(self.db):
            return
        with self.writer():
            migrations.apply(self.db)  # applies only what is still pending once the lock is held

    @contextlib.contextmanager
    def writer(self, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the store's writer lock: blocks while another process (or thread) writes; with ``timeout_s``,
        raises :class:`StoreBusyError` when the lock is not free within that many seconds."""
        with exclusive(self.root / ".writer.lock", timeout_s):
            yield

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
        return video_from_row(rows[0]) if rows else None

    def get_video(self, video_id: str) -> Video:
        rows = list(self.db.query("select * from videos where video_id = ?", [video_id]))
        if not rows:
            raise VideoNotFoundError(video_id)
        return video_from_row(rows[0])

    def videos(self) -> list[Video]:
        return [video_from_row(r) for r in self.db.query("select * from videos order by video_id")]

    def get_twin(self, video_id: str, refinements: bool | Collection[int] = True) -> Twin:
        """The twin of ``video_id``: its ingest rows with refinements laid over them (``True``: all of the video's,
        a collection of ids: only those, ``False``: none, the ingest rows exactly as stored)."""
        twin = self._ingest_twin(video_id)
        if refinements is False:
            return twin
        ids = None if refinements is True else refinements
        return overlay(twin, self.refinements(video_id, ids=ids))

    def _ingest_twin(self, video_id: str) -> Twin:
        rows = self.stored_rows(video_id)
        return Twin(video=video_from_row(rows.video), tracks=[track_from_row(r) for r in rows.tracks],
                    instances=[instance_from_row(r) for r in rows.instances],
                    relations=[Relation(**{k: v for k, v in r.items() if k != "id"}) for r in rows.relations],
                    speech=speech_from_rows(rows.speech_status, rows.speech),
                    shots=[shot_from_row(r) for r in rows.shots])

    def stored_rows(self, video_id: str) -> StoredRows:
        """The ingest rows of ``video_id`` exactly as stored, no refinements laid over them (the twin
        :meth:`get_twin` builds from them; what ``twinseek store diff`` compares)."""
        rows = list(self.db.query("select * from videos where video_id = ?", [video_id]))
        if not rows:
            raise VideoNotFoundError(video_id)
        q = self.db.query
        return StoredRows(
            video=rows[0],
            tracks=list(q("select * from tracks where video_id = ? order by track_id", [video_id])),
            instances=list(q("select * from instances where video_id = ? order by track_id, frame_index", [video_id])),
            relations=list(q("select * from relations where video_id = ? order by id", [video_id])),
            speech_status=next(iter(q("select * from speech_status where video_id = ?", [video_id])), None),
            speech=list(q("select * from speech where video_id = ? order by segment", [video_id])),
            shots=list(q("select * from shots where video_id = ? order by shot", [video_id])),
        )

    def video_revisions(self) -> list[VideoRevision]:
        """One :class:`~twinseek.twins.rows.VideoRevision` per video, in no particular order (what the catalogues'
        per-video signatures are made of)."""
        rows = self.db.execute(
            "select v.video_id, v.content_hash, v.mask_dir, v.ingested_at, v.ecr_text, v.ecr_source, "
            "(select count(*) from relations r where r.video_id = v.video_id), "
            "(select max(id) from relations r where r.video_id = v.video_id), "
            "(select count(*) from tracks t where t.video_id = v.video_id), "
            "(select group_concat(t.track_id || ':' || t.category || ':' || coalesce(t.attributes, ''), '|') "
            "from tracks t where t.video_id = v.video_id) from videos v"
        ).fetchall()
        return [VideoRevision(*row) for row in rows]

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
            "instances": count("instances"), "relations": count("relations"), "refinements": count("refinements"),
            "db_mb": round((self.root / DB_NAME).stat().st_size / 2**20, 2), "mask_mb": round(mask_bytes / 2**20, 2),
            "top_categories": {r["category"]: r["tracks"] for r in categories},
        }

    def missing_masks(self, video_id: str) -> list[str]:
        """Mask paths of ``video_id``'s instances whose files are missing (empty when the twin is whole)."""
        rows = self.db.query(
            "select mask_path from instances where video_id = ? order by track_id, frame_index", [video_id])
        return [r["mask_path"] for r in rows if not (self.root / r["mask_path"]).is_file()]

    def check(self, deep: bool = False) -> StoreCheck:
        """Check the store: SQLite's own integrity and foreign keys, every instance's mask file (``deep``: also
        decode it), video rows whose mask folder is gone, and uncommitted mask folders (orphans are removed by
        the next open; folders of a running ingest are reported as such)."""
        findings: list[StoreFinding] = []
        problems = [r[0] for r in self.db.execute("PRAGMA quick_check").fetchall() if r[0] != "ok"]
        if problems:
            findings.append(StoreFinding(kind="sqlite", count=len(problems), detail="; ".join(problems[:5])))
        dangling: dict[tuple[str, str], int] = {}
        for table, _rowid, parent, _fk in self.db.execute("PRAGMA foreign_key_check").fetchall():
            dangling[(table, parent)] = dangling.get((table, parent), 0) + 1
        for (table, parent), n in dangling.items():
            findings.append(StoreFinding(kind="foreign_key", count=n, detail=f"{table} rows without their {parent} row"))
        live: set[str] = set()
        for video in self.db.query("select video_id, mask_dir from videos order by video_id"):
            video_id, mask_dir = video["video_id"], video["mask_dir"]
            live.add(mask_dir)
            paths = [r["mask_path"] for r in self.db.query(
                "select mask_path from instances where video_id = ? order by track_id, frame_index", [video_id])]
            missing = [p for p in paths if not (self.root / p).is_file()]
            if paths and mask_dir and not (self.root / mask_dir).is_dir():
                findings.append(StoreFinding(kind="missing_mask_dir", video_id=video_id, count=len(paths),
                                             detail=f"{mask_dir} is gone"))
            elif missing:
                findings.append(StoreFinding(kind="missing_masks", video_id=video_id, count=len(missing),
                                             detail=f"{len(missing)} of {len(paths)} mask files missing, e.g. {missing[0]}"))
            if deep:
                unreadable = [p for p in paths if p not in set(missing) and not _readable_mask(self.root / p)]
                if unreadable:
                    findings.append(StoreFinding(kind="unreadable_masks", video_id=video_id, count=len(unreadable),
                                                 detail=f"e.g. {unreadable[0]}"))
        base = self.root / MASK_DIR
        for ingest_dir in sorted(base.glob("*/*")) if base.is_dir() else []:
            rel = f"{MASK_DIR}/{ingest_dir.parent.name}/{ingest_dir.name}"
            if rel in live or not ingest_dir.is_dir():
                continue
            state = self._folder_state(ingest_dir)
            kind: FindingKind = "orphan_mask_dir" if state == "orphan" else "ingest_in_progress"
            findings.append(StoreFinding(kind=kind, video_id=ingest_dir.parent.name,
                                         count=sum(1 for _ in ingest_dir.glob("*.png")), detail=rel))
        return StoreCheck(store=str(self.root), videos=len(self), instances=self.db.table("instances").count,
                          findings=findings)

    # -- writes ------------------------------------------------------------------------------------------
    def new_mask_dir(self, video_id: str) -> str:
        """A fresh, unique mask folder (relative to the store) for one ingest of ``video_id``, leased to this
        store object until :meth:`put_twin` commits it or :meth:`discard_mask_dir` drops it (``close`` drops
        any left): while leased no open of the store, in any process, sweeps it."""
        token = uuid.uuid4().hex[:12]
        rel = f"{MASK_DIR}/{video_id}/{token}"
        # the lease is locked before the folder exists, so a sweep never sees the folder without its lease
        self._leases[rel] = take_lease(self.root / LEASE_DIR / f"{token}.lock", rel)
        try:
            mkdir_racing_sweeps(self.root / rel)
        except BaseException:
            self._release_lease(rel)
            raise
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
                self._insert_speech(video_id, twin.speech)
                self.db.table("shots").insert_all((shot_to_row(video_id, s) for s in twin.shots), batch_size=500)
            self._release_lease(mask_dir)  # committed: the row keeps the folder now
            if old_dir and old_dir != mask_dir:
                shutil.rmtree(self.root / old_dir, ignore_errors=True)

    def set_ecr(self, video_id: str, text: str, source: str) -> None:
        with self.writer(), self.db.atomic():
            if video_id not in self:
                raise VideoNotFoundError(video_id)
            self.db.table("videos").update(video_id, {"ecr_text": text, "ecr_source": source})

    def set_description(self, video_id: str, text: str, source: str) -> None:
        """Replace a video's one-line description (derived from its ingest rows: rewritten when the rules that
        write it change, like the ECR text; nothing else of the twin changes)."""
        with self.writer(), self.db.atomic():
            if video_id not in self:
                raise VideoNotFoundError(video_id)
            self.db.table("videos").update(video_id, {"description": text, "description_source": source})

    def delete(self, video_id: str) -> None:
        """Remove a video's rows and its mask files (a folder an ingest of it is still writing stays)."""
        with self.writer():
            if video_id not in self:
                raise VideoNotFoundError(video_id)
            mask_dir = self._mask_dir_of(video_id)
            with self.db.atomic():
                self._delete_rows(video_id)
            if mask_dir:
                shutil.rmtree(self.root / mask_dir, ignore_errors=True)
            self._sweep_video_dir(self.root / MASK_DIR / video_id, set())

    def discard_mask_dir(self, mask_dir: str) -> None:
        """Remove an uncommitted mask folder and drop its lease."""
        shutil.rmtree(self.root / mask_dir, ignore_errors=True)
        self._release_lease(mask_dir)

    # -- refinements (the overlay of what searches learned) -------------------------------------------------
    def add_refinements(self, refinements: Sequence[Refinement]) -> list[Refinement]:
        """Store what each refinement adds to its ingest twin, in one transaction; returns the stored rows (with
        ids) in order. A refinement that adds nothing (:func:`~twinseek.twins.refinements.prune`) is left out; one
        whose key is already stored returns the stored row (the first writer wins: a cache, not a new row)."""
        stored: list[Refinement] = []
        with self.writer(), self.db.atomic():
            ingest: dict[str, Twin] = {}
            for ref in refinements:
                if ref.video_id not in ingest:
                    ingest[ref.video_id] = self._ingest_twin(ref.video_id)  # VideoNotFoundError when unknown
                kept = prune(ref, ingest[ref.video_id])
                if kept is None:
                    continue
                rows = list(self.db.query("select * from refinements where key = ?", [kept.key]))
                if not rows:
                    row = refinement_to_row(kept)
                    self.db.table("refinements").insert(row)
                    rows = list(self.db.query("select * from refinements where key = ?", [kept.key]))
                stored.append(refinement_from_row(rows[0]))
        return stored

    def refinements(self, video_id: str | None = None, *, ids: Collection[int] | None = None,
                    call: str | None = None) -> list[Refinement]:
        """Stored refinements, oldest first: of one video or all, only ``ids``, or only those of one action
        ``call`` (:attr:`Refinement.call`)."""
        where: list[str] = []
        params: list[Any] = []
        if video_id is not None:
            where.append("video_id = ?")
            params.append(video_id)
        if call is not None:
            where.append("call = ?")
            params.append(call)
        if ids is not None:
            wanted = sorted({int(i) for i in ids})
            if not wanted:
                return []
            where.append(f"id in ({','.join('?' * len(wanted))})")
            params += wanted
        sql = "select * from refinements" + (f" where {' and '.join(where)}" if where else "") + " order by id"
        return [refinement_from_row(r) for r in self.db.query(sql, params)]

    def clear_refinements(self, video_id: str | None = None) -> int:
        """Delete the refinements of one video (or all); the ingest rows are untouched. Returns how many."""
        with self.writer(), self.db.atomic():
            if video_id is None:
                return self.db.execute("delete from refinements").rowcount
            return self.db.execute("delete from refinements where video_id = ?", [video_id]).rowcount

    # -- internals ---------------------------------------------------------------------------------------
    def _mask_dir_of(self, video_id: str) -> str | None:
        rows = list(self.db.query("select mask_dir from videos where video_id = ?", [video_id]))
        return rows[0]["mask_dir"] if rows else None

    def _delete_rows(self, video_id: str) -> None:
        for table in ("refinements", "shots", "speech", "speech_status", "relations", "instances", "tracks", "videos"):
            self.db.execute(f"delete from [{table}] where video_id = ?", [video_id])

    def _insert_video(self, video: Video, mask_dir: str) -> None:
        self.db.table("videos").insert(video_to_row(video, mask_dir))

    def _insert_tracks(self, tracks: list[Track]) -> None:
        self.db.table("tracks").insert_all((track_to_row(t) for t in tracks), batch_size=500)

    def _insert_instances(self, instances: list[Instance]) -> None:
        self.db.table("instances").insert_all((instance_to_row(i) for i in instances), batch_size=500)

    def _insert_relations(self, relations: list[Relation]) -> None:
        self.db.table("relations").insert_all((r.model_dump() for r in relations), batch_size=500)

    def _insert_speech(self, video_id: str, speech: Speech | None) -> None:
        if speech is not None:
            status, rows = speech_to_rows(video_id, speech)
            self.db.table("speech_status").insert(status)
            self.db.table("speech").insert_all(rows, batch_size=500)

    def _release_lease(self, mask_dir: str) -> None:
        fd = self._leases.pop(mask_dir, None)
        if fd is not None:
            (self.root / LEASE_DIR / f"{Path(mask_dir).name}.lock").unlink(missing_ok=True)
            os.close(fd)  # closing drops the flock

    def _folder_state(self, ingest_dir: Path) -> Literal["leased", "orphan", "young"]:
        """Whether an uncommitted mask folder belongs to a live ingest (``leased``), is an orphan, or has no
        lease and is too young to judge (``young``)."""
        if f"{MASK_DIR}/{ingest_dir.parent.name}/{ingest_dir.name}" in self._leases:
            return "leased"
        lease = self.root / LEASE_DIR / f"{ingest_dir.name}.lock"
        held = lease_held(lease)
        if held is None:  # no lease file: an older twinseek wrote it; judge by age
            return "orphan" if age_s(ingest_dir) > ORPHAN_GRACE_S else "young"
        return "leased" if held else "orphan"

    def _sweep_orphan_masks(self) -> None:
        """Remove mask folders that no video row points to and no live ingest holds (left by an interrupted
        ingest), and stale lease files. Runs under the writer lock: no commit can happen meanwhile."""
        base = self.root / MASK_DIR
        live = {r["mask_dir"] for r in self.db.query("select mask_dir from videos")}
        if base.exists():
            for video_dir in base.iterdir():
                if video_dir.is_dir():
                    self._sweep_video_dir(video_dir, live)
        leases = self.root / LEASE_DIR
        if leases.is_dir():
            for lease in leases.glob("*.lock"):
                # a lease with no folder: its ingest died before mkdir or after discarding; the age guard
                # spares one whose ingest is between creating the lease and locking it
                if not any(base.glob(f"*/{lease.stem}")) and age_s(lease) > 60 and lease_held(lease) is False:
                    lease.unlink(missing_ok=True)

    def _sweep_video_dir(self, video_dir: Path, live: set[str]) -> None:
        if not video_dir.is_dir():
            return
        for ingest_dir in video_dir.iterdir():
            rel = f"{MASK_DIR}/{video_dir.name}/{ingest_dir.name}"
            if rel in live or not ingest_dir.is_dir():
                continue
            state = self._folder_state(ingest_dir)
            if state == "orphan":
                logger.info("removing orphan mask folder %s", rel)
                shutil.rmtree(ingest_dir, ignore_errors=True)
                (self.root / LEASE_DIR / f"{ingest_dir.name}.lock").unlink(missing_ok=True)
            else:
                logger.debug("keeping uncommitted mask folder %s (%s)", rel, state)
        with contextlib.suppress(OSError):  # not empty: still in use
            video_dir.rmdir()


def _connect(path: Path, shared: bool) -> sqlite_utils.Database:
    if shared and sqlite3.threadsafety == 3:
        return sqlite_utils.Database(sqlite3.connect(str(path), check_same_thread=False))
    if shared:  # pragma: no cover - distributions build SQLite serialised
        logger.warning("SQLite is not built thread-safe: run one search at a time, from one thread")
    return sqlite_utils.Database(path)


def _names(migrations: Migrations) -> set[str]:
    return {m.name for m in migrations._migrations}  # sqlite-utils lists a set's migrations nowhere public


def _readable_mask(path: Path) -> bool:
    try:
        load_mask(path)
    except (OSError, ValueError):
        return False
    return True
