"""Who migrates the store's database: the store its own tables, each component (the catalogues, the decomposition
and judgement caches, the web app's ingest queue) its tables through :meth:`TwinStore.ensure`. A store written
before the components owned their migrations opens with nothing applied again and every row as it was; a fresh
store ends with the same schema and the same recorded migrations."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from sqlite_utils.migrations import Migrations

from twinseek.agent.judge import JudgementCache
from twinseek.retrieval.catalogue import m002_component_spans, m003_dense_spans, m004_component_scenes
from twinseek.retrieval.components import ComponentIndex, ComponentSource
from twinseek.retrieval.decompose import DecompositionCache
from twinseek.retrieval.dense import DenseIndex, DenseSource, EcrTextEmbedder
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.twins.ingest_queue import IngestQueue, m011_watch
from twinseek.twins.migrations import (
    m008_speech,
    m009_actions,
    m010_shots,
    m012_shot_labels,
    store_migrations,
)
from twinseek.twins.store import DB_NAME, TwinStore

from support.retrieval import KeywordEncoder

OLD_STORE = Path(__file__).parents[1] / "data" / "store-9700c45.sql"
KEYWORDS = ["dog", "cat", "ball", "horse", "person", "left", "right", "near", "brown"]
# the migrations written after the old store (the store's own, then the ingest queue's): it applies these, and only
# these
NEWER = (m008_speech, m009_actions, m010_shots, m012_shot_labels, m011_watch)
# and the components' (the catalogue's component spans, dense items' spans, the scenes a component meets)
NEWER_COMPONENTS = (m002_component_spans, m003_dense_spans, m004_component_scenes)


def restore(root: Path) -> list[str]:
    """The old store's database (no mask files: opening it sweeps nothing); returns its dump."""
    root.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as conn:
        conn.executescript(OLD_STORE.read_text())
    return dump(root)


def dump(root: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as conn:
        return list(conn.iterdump())


def schema(root: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as conn:
        return {name: sql for name, sql in conn.execute("select name, sql from sqlite_master")}


def recorded(root: Path) -> set[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(root / DB_NAME)) as conn:
        return set(conn.execute("select migration_set, name from _sqlite_migrations"))


def sources() -> tuple[ComponentSource, DenseSource]:
    return (ComponentSource(ComponentEncoders(KeywordEncoder(KEYWORDS))),
            DenseSource(EcrTextEmbedder(KeywordEncoder(KEYWORDS))))


def attach_every_component(store: TwinStore) -> None:
    ComponentIndex(store, ComponentEncoders(KeywordEncoder(KEYWORDS)))
    DenseIndex(store, EcrTextEmbedder(KeywordEncoder(KEYWORDS)))
    DecompositionCache(store)
    JudgementCache(store)
    IngestQueue(store.root).close()


def test_an_old_store_applies_only_the_newer_migrations_and_keeps_every_row(tmp_path: Path) -> None:
    before = restore(tmp_path / "old")
    with TwinStore(tmp_path / "old", create=False) as store:
        attach_every_component(store)
        for source in sources():  # today's signatures are the ones stored: a sync re-indexes nothing
            stored = {r["video_id"]: r["signature"] for r in store.db.query(
                "select video_id, signature from indexed_videos where index_name = ?", [source.name])}
            assert source.signatures(store) == stored and len(stored) == 3
        assert store.get_twin("clip").tracks[0].attributes == "brown; spotted"  # the refinement laid over
        assert store.get_twin("clip", refinements=False).tracks[0].attributes == "brown"
        assert len(DecompositionCache(store)) == 1 and JudgementCache(store).get("k" * 64) == 0.75
    [(job, files)] = IngestQueue(tmp_path / "old").jobs()
    assert job["status"] == "done" and files[0]["video_id"] == "a"
    restore(tmp_path / "by-hand")  # the newer migrations, run by hand: every old row kept, new columns null
    with contextlib.closing(sqlite_utils.Database(tmp_path / "by-hand" / DB_NAME)) as db:
        for migration in NEWER + NEWER_COMPONENTS:
            migration(db)
    newer = tuple(f"'{m.__name__}'" for m in NEWER + NEWER_COMPONENTS)
    assert [line for line in dump(tmp_path / "old") if not line.startswith('INSERT INTO "_sqlite_migrations"')
            or not any(name in line for name in newer)] == dump(tmp_path / "by-hand")
    assert before != dump(tmp_path / "by-hand")


def test_a_fresh_store_ends_with_the_old_stores_schema(tmp_path: Path) -> None:
    with TwinStore(tmp_path / "new") as store:
        attach_every_component(store)
    restore(tmp_path / "old")
    with TwinStore(tmp_path / "old", create=False) as store:  # the old store once opened: the newer migrations applied
        attach_every_component(store)
    assert schema(tmp_path / "new") == schema(tmp_path / "old")
    assert recorded(tmp_path / "new") == recorded(tmp_path / "old")


def test_a_component_cannot_claim_a_migration_of_the_store(tmp_path: Path) -> None:
    stolen = Migrations(store_migrations.name)

    @stolen(name="m001_initial")
    def m001_initial(db: sqlite_utils.Database) -> None:  # would be skipped silently: the store ran its own
        raise AssertionError("never runs")

    with TwinStore(tmp_path) as store, pytest.raises(ValueError, match="m001_initial"):
        store.ensure(stolen)


def test_ensure_applies_what_is_pending_once(tmp_path: Path) -> None:
    extra = Migrations("twinseek.test")
    runs: list[str] = []

    @extra()
    def m001_things(db: sqlite_utils.Database) -> None:
        runs.append("m001")
        db.table("things").create({"id": int}, pk="id")

    with TwinStore(tmp_path) as store:
        store.ensure(extra)
        store.ensure(extra)
        assert runs == ["m001"] and store.db.table("things").exists()
    with TwinStore(tmp_path) as store:
        store.ensure(extra)
    assert runs == ["m001"] and ("twinseek.test", "m001_things") in recorded(tmp_path)
