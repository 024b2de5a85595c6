"""Store-backed catalogues: one vector per item for every video of a store.

:class:`CatalogIndex` keeps one vector per *item* (a twin component, or a whole video) for every video of a
:class:`~twinseek.twins.store.TwinStore`: the items live in the store's SQLite (a table per catalogue, plus
``indexed_videos`` recording each video's signature), the vectors under ``<store>/index/<name>/``. ``sync``
brings it up to date incrementally; the faiss files are saved before the SQLite transaction commits and the
ids are checked against the DB on load, so an interrupted sync is detected and repaired by a rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import sqlite_utils
from pydantic import BaseModel
from sqlite_utils.migrations import Migrations

from twinseek.config import RetrievalSettings
from twinseek.retrieval.vectors import (
    CONFIG_FILE,
    Hit,
    IndexCorruptError,
    IndexParams,
    VectorIndex,
    _progress,
    ids_digest,
)
from twinseek.twins.store import TwinStore

logger = logging.getLogger(__name__)


class EncoderMismatchError(IndexCorruptError):
    """Query vectors from another encoder than the one that built the index (never searched silently)."""


# -- store-backed catalogues ---------------------------------------------------------------------------------
index_migrations = Migrations("twinseek.index")


@index_migrations()
def m001_catalogues(db: sqlite_utils.Database) -> None:
    # AUTOINCREMENT: ids are never reused, so a faiss file from an interrupted sync can never match the DB
    db.execute(
        "create table if not exists components (id integer primary key autoincrement, video_id text not null, "
        "kind text not null, track_id integer, object_track integer, predicate text, text text not null, "
        "frame_start integer, frame_end integer)"
    )
    db.execute(
        "create table if not exists dense_items (id integer primary key autoincrement, video_id text not null, "
        "source text not null, text text not null)"
    )
    db.table("indexed_videos").create(
        {"index_name": str, "video_id": str, "signature": str, "items": int, "indexed_at": float},
        pk=("index_name", "video_id"), if_not_exists=True,
    )
    db.table("components").create_index(["video_id"], if_not_exists=True)
    db.table("components").create_index(["kind", "predicate"], if_not_exists=True)
    db.table("dense_items").create_index(["video_id"], if_not_exists=True)


def _add_columns(db: sqlite_utils.Database, table: str, names: Sequence[str], kind: str) -> None:
    """Nullable columns added to a catalogue table (those it already has are left alone)."""
    columns = {c.name for c in db.table(table).columns}
    for name in names:
        if name not in columns:
            db.execute(f"alter table [{table}] add column {name} {kind}")


@index_migrations()
def m002_component_spans(db: sqlite_utils.Database) -> None:
    # the seconds a component covers (its frames, or a speech segment's times): where a hit's moment lies. Rows
    # indexed before are re-made by the next sync (the component catalogue's version changed with this column)
    _add_columns(db, "components", ("start_s", "end_s"), "real")


@index_migrations()
def m003_dense_spans(db: sqlite_utils.Database) -> None:
    # a video of several scenes has a dense item per scene: the seconds it covers (null: the whole video). Rows
    # indexed before are re-made by the next sync (the dense texts' version changed with this column)
    _add_columns(db, "dense_items", ("start_s", "end_s"), "real")


@index_migrations()
def m004_component_scenes(db: sqlite_utils.Database) -> None:
    # the scenes a component meets in a video of several (null: one scene), which compositional search scores
    # apart. Rows indexed before are re-made by the next sync (the component catalogue's version changed with it)
    _add_columns(db, "components", ("scene_first", "scene_last"), "integer")


class ItemSource(Protocol):
    """What a :class:`CatalogIndex` indexes: rows per video, their vectors and a per-video signature."""

    name: str  # folder under <store>/index/ and key in indexed_videos
    table: str  # the items table (columns: id, video_id, then the row keys)

    @property
    def fingerprint(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def signatures(self, store: TwinStore) -> dict[str, str]: ...

    def rows(self, store: TwinStore, video_id: str) -> list[dict[str, Any]]: ...

    def embed(self, store: TwinStore, rows: list[dict[str, Any]]) -> np.ndarray: ...


class SyncReport(BaseModel):
    index: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    items: int = 0
    rebuilt: bool = False
    seconds: float = 0.0


@dataclass
class _Catalogue:
    """In-memory view of the items table used on the search path."""

    ids: np.ndarray  # sorted item ids
    video_of: np.ndarray  # video id (str) per item, aligned with ids
    by_video: dict[str, np.ndarray] = field(default_factory=dict)


def digest(parts: Iterable[Any]) -> str:
    return hashlib.sha1("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()[:16]


class CatalogIndex:
    """Items of every video in a store, embedded and kept in a :class:`VectorIndex` under
    ``<store>/index/<source.name>/``; the items table and ``indexed_videos`` live in the store's SQLite."""

    def __init__(self, store: TwinStore, source: ItemSource, params: IndexParams | None = None,
                 commit_every: int = 500) -> None:
        self.store = store
        self.source = source
        self.params = params
        self.commit_every = commit_every
        self.folder = store.root / "index" / source.name
        self._vectors: VectorIndex | None = None
        self._catalogue: _Catalogue | None = None
        store.ensure(index_migrations)  # its own migration set: the twin store's schema stays the twin store's

    @property
    def db(self) -> sqlite_utils.Database:
        return self.store.db

    # -- consistency -------------------------------------------------------------------------------------
    def _db_ids(self) -> np.ndarray:
        rows = self.db.execute(f"select id from [{self.source.table}]").fetchall()
        return np.array([r[0] for r in rows], np.int64)

    def problem(self) -> str | None:
        """Why the files and the DB disagree (None when they agree); loads the vectors when they do."""
        try:
            vectors = VectorIndex.load(self.folder)
        except IndexCorruptError as exc:
            has_rows = bool(self.db.execute(f"select 1 from [{self.source.table}] limit 1").fetchall())
            return str(exc) if has_rows or (self.folder / CONFIG_FILE).exists() else "no index yet"
        if vectors.meta.get("fingerprint") != self.source.fingerprint:
            return f"encoder changed ({vectors.meta.get('fingerprint')} -> {self.source.fingerprint})"
        if vectors.dim != self.source.dim:
            return f"dimension changed ({vectors.dim} -> {self.source.dim})"
        if ids_digest(vectors.ids()) != ids_digest(self._db_ids()):
            return "faiss ids disagree with the items table (interrupted sync?)"
        self._vectors = vectors
        return None

    def vectors(self) -> VectorIndex:
        """The loaded, verified vectors; raises :class:`IndexCorruptError` when a sync is needed first."""
        if self._vectors is None and (reason := self.problem()) is not None:
            error = EncoderMismatchError if reason.startswith(("encoder changed", "dimension changed")) \
                else IndexCorruptError
            raise error(f"{self.source.name} index needs a sync or rebuild: {reason}")
        assert self._vectors is not None
        return self._vectors

    # -- updates -----------------------------------------------------------------------------------------
    def sync(self) -> SyncReport:
        """Index new and changed videos and drop deleted ones; rebuilds when the files cannot be trusted."""
        started = time.perf_counter()
        with self.store.writer():
            report = SyncReport(index=self.source.name)
            if self._vectors is None and (reason := self.problem()) is not None:
                if reason != "no index yet":
                    logger.warning("%s index: %s; rebuilding", self.source.name, reason)
                self._reset()
                report.rebuilt = reason != "no index yet"
            self._apply_changes(report)
        report.items = self.vectors().count
        report.seconds = round(time.perf_counter() - started, 3)
        logger.info("synced %s index: %s", self.source.name, report.model_dump(exclude={"index"}))
        return report

    def rebuild(self) -> SyncReport:
        """Drop every item and vector and index the whole store again."""
        started = time.perf_counter()
        with self.store.writer():
            self._reset()
            report = SyncReport(index=self.source.name, rebuilt=True)
            self._apply_changes(report)
        report.items = self.vectors().count
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def _empty_vectors(self) -> VectorIndex:
        params = self.params or IndexParams(dim=self.source.dim)
        vectors = VectorIndex(params=params.model_copy(update={"dim": self.source.dim}))
        vectors.meta = {"fingerprint": self.source.fingerprint, "source": self.source.name}
        return vectors

    def _reset(self) -> None:
        vectors = self._empty_vectors()
        with self._transaction():
            self.db.execute(f"delete from [{self.source.table}]")
            self.db.execute("delete from indexed_videos where index_name = ?", [self.source.name])
            vectors.save(self.folder)  # before the commit: a crash in between is caught by problem()
        self._vectors = vectors

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """A DB transaction; on failure the in-memory vectors are dropped so the files are re-verified."""
        self._catalogue = None
        try:
            with self.db.atomic():
                yield
        except BaseException:
            self._vectors = None
            raise

    def _apply_changes(self, report: SyncReport) -> None:
        current = self.source.signatures(self.store)
        indexed = {r["video_id"]: r["signature"] for r in self.db.query(
            "select video_id, signature from indexed_videos where index_name = ?", [self.source.name])}
        gone = sorted(set(indexed) - set(current))
        todo = sorted(v for v, sig in current.items() if indexed.get(v) != sig)
        if gone:
            with self._transaction():
                self._drop_videos(gone)
                self.vectors().save(self.folder)
            report.removed = len(gone)
        chunks = [todo[i:i + self.commit_every] for i in range(0, len(todo), self.commit_every)]
        bar = _progress(chunks, f"indexing {self.source.name}", len(todo) > 20)
        for chunk in bar:
            self._index_chunk(chunk, current)
        report.updated = sum(v in indexed for v in todo)
        report.added = len(todo) - report.updated

    def _drop_videos(self, video_ids: Sequence[str]) -> None:
        marks = ",".join("?" * len(video_ids))
        table = self.source.table
        old = [r[0] for r in self.db.execute(f"select id from [{table}] where video_id in ({marks})", list(video_ids))]
        self.db.execute(f"delete from [{table}] where video_id in ({marks})", list(video_ids))
        self.db.execute(f"delete from indexed_videos where index_name = ? and video_id in ({marks})",
                        [self.source.name, *video_ids])
        self.vectors().delete(old)

    def _index_chunk(self, video_ids: list[str], signatures: dict[str, str]) -> None:
        per_video = {v: self.source.rows(self.store, v) for v in video_ids}
        rows = [dict(row, video_id=v) for v, items in per_video.items() for row in items]
        embedded = self.source.embed(self.store, rows)  # the slow part, outside the transaction
        with self._transaction():
            self._drop_videos(video_ids)
            seq = self.db.execute("select seq from sqlite_sequence where name = ?", [self.source.table]).fetchall()
            start = (seq[0][0] if seq else 0) + 1
            ids = np.arange(start, start + len(rows), dtype=np.int64)
            for item_id, row in zip(ids, rows):
                row["id"] = int(item_id)
            self.db.table(self.source.table).insert_all(rows, batch_size=500)
            now = time.time()
            self.db.table("indexed_videos").insert_all(
                ({"index_name": self.source.name, "video_id": v, "signature": signatures[v], "items": len(items),
                  "indexed_at": now} for v, items in per_video.items()), pk=("index_name", "video_id"),
                replace=True)
            self.vectors().add(ids, embedded)
            self.vectors().save(self.folder)

    # -- reads -------------------------------------------------------------------------------------------
    def catalogue(self) -> _Catalogue:
        if self._catalogue is None:
            rows = self.db.execute(f"select id, video_id from [{self.source.table}] order by id").fetchall()
            ids = np.array([r[0] for r in rows], np.int64)
            video_of = np.array([r[1] for r in rows], dtype=object)
            by_video: dict[str, list[int]] = {}
            for item_id, video_id in rows:
                by_video.setdefault(video_id, []).append(item_id)
            self._catalogue = _Catalogue(ids, video_of, {v: np.array(i, np.int64) for v, i in by_video.items()})
        return self._catalogue

    def videos_of(self, ids: np.ndarray) -> np.ndarray:
        """Video id per item id (``None`` for -1 / unknown ids), as an object array."""
        cat = self.catalogue()
        ids = np.asarray(ids, np.int64)
        out = np.full(ids.shape, None, dtype=object)
        if len(cat.ids):
            pos = np.clip(np.searchsorted(cat.ids, ids), 0, len(cat.ids) - 1)
            found = cat.ids[pos] == ids
            out[found] = cat.video_of[pos[found]]
        return out

    def items(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Item rows by id."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        return {r["id"]: r for r in self.db.query(f"select * from [{self.source.table}] where id in ({marks})", wanted)}

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        return self.checked(queries).search(queries, k)

    def checked(self, queries: np.ndarray) -> VectorIndex:
        """The vectors, once ``queries`` are known to come from the space they were built in: the index's
        encoder must be the one configured now (else a sync re-embeds first) and the query rows its width."""
        vectors = self.vectors()
        built_by = vectors.meta.get("fingerprint")
        if built_by != self.source.fingerprint:
            raise EncoderMismatchError(f"the {self.source.name} index was built by {built_by}, the queries are "
                                       f"encoded by {self.source.fingerprint}: sync the index first")
        if queries.ndim != 2 or queries.shape[1] != vectors.dim:
            raise EncoderMismatchError(f"query vectors of width {queries.shape[-1]} against the {self.source.name} "
                                       f"index's {vectors.dim} (built by {built_by}): the query was encoded by "
                                       "another encoder than the index's")
        return vectors

    def indexed_videos(self) -> list[str]:
        return [r["video_id"] for r in self.db.query(
            "select video_id from indexed_videos where index_name = ? order by video_id", [self.source.name])]


def params_from(settings: RetrievalSettings, dim: int) -> IndexParams:
    """Index parameters from settings (``dim`` is replaced by the source's when the index is built)."""
    return IndexParams(dim=dim, hnsw_threshold=settings.hnsw_threshold, hnsw_m=settings.hnsw_m,
                       ef_construction=settings.ef_construction, ef_search=settings.ef_search,
                       ivfpq_threshold=settings.ivfpq_threshold, pq_m=settings.pq_m, nprobe=settings.nprobe)
