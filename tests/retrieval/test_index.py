"""VectorIndex (exact/HNSW/IVF-PQ, persistence) and the store-backed component catalogue (sync, recovery)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from twinseek.retrieval.components import ComponentIndex
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.retrieval.vectors import Hit, IndexCorruptError, IndexParams, VectorIndex, coarse_centroids
from twinseek.twins.model import Relation
from twinseek.twins.refinements import Refinement
from twinseek.twins.store import TwinStore

from support.retrieval import KEYWORDS, KeywordEncoder, add_video, keyword_index


@pytest.fixture(autouse=True)
def _no_glosses(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count components: leave out the WordNet gloss rows (tested in test_perception.py)."""
    from twinseek.twins import views
    from twinseek.twins.knowledge import WordKnowledge

    empty = WordKnowledge()
    empty._loaded = True
    monkeypatch.setattr(views, "word_knowledge", lambda: empty)


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- VectorIndex -----------------------------------------------------------------------------------------------
def test_add_search_delete_exact() -> None:
    index = VectorIndex(3)
    index.add([10, 11, 12], np.array([[1, 0, 0], [0, 2, 0], [1, 1, 0]], np.float32))  # normalised on add
    hits = index.search(np.array([[1, 0, 0], [0, 0, 1]], np.float32), k=2)
    assert hits[0] == [Hit(10, pytest.approx(1.0)), Hit(12, pytest.approx(np.sqrt(0.5)))]
    assert len(index.search(np.array([[0, 1, 0]]), k=10)[0]) == 3  # k beyond count: only real hits
    assert index.delete([10, 99]) == 1 and index.count == 2 and 10 not in index and 11 in index
    assert [h.id for h in index.search(np.array([[1, 0, 0]]), 1)[0]] == [12]
    with pytest.raises(ValueError, match="unique"):
        index.add([11], np.ones((1, 3)))
    with pytest.raises(ValueError, match="shape"):
        index.add([20], np.ones((1, 4)))
    assert VectorIndex(3).search(np.ones((1, 3)), 5) == [[]]


def test_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    index = VectorIndex(16)
    index.add(np.arange(50) * 3, unit(rng, 50, 16))
    index.meta = {"fingerprint": "x"}
    index.save(tmp_path / "ix")
    again = VectorIndex.load(tmp_path / "ix")
    q = unit(rng, 4, 16)
    assert again.search(q, 5) == index.search(q, 5) and again.meta == {"fingerprint": "x"}
    assert sorted(os.listdir(tmp_path / "ix")) == ["config.json", "index.faiss"]
    assert json.loads((tmp_path / "ix" / "config.json").read_text())["kind"] == "flat"


def test_switches_to_hnsw_above_threshold_and_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = unit(rng, 300, 16)
    index = VectorIndex(16, hnsw_threshold=200, ef_search=64)
    index.add(np.arange(150), data[:150])
    assert index.kind == "flat"
    index.add(np.arange(150, 300), data[150:])
    assert index.kind == "hnsw" and index.count == 300
    assert index.search(data[:5], 1) == [[Hit(i, pytest.approx(1.0, abs=1e-5))] for i in range(5)]
    index.delete([0, 1])  # tombstones: filtered at search time, kept on disk
    assert index.kind == "hnsw" and index.count == 298
    assert all(h.id not in (0, 1) for h in index.search(data[:2], 10)[0])
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path)
    assert loaded.kind == "hnsw" and loaded.count == 298 and 0 not in loaded
    loaded.delete(np.arange(2, 120))  # past COMPACT_FRACTION: compacted, and small enough for exact search
    assert loaded.kind == "flat" and loaded.count == 180
    assert loaded.search(data[150:151], 1)[0][0].id == 150


def test_save_is_atomic_and_disagreement_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    index = VectorIndex(8)
    index.add([1, 2], unit(rng, 2, 8))
    index.save(tmp_path)
    index.add([3], unit(rng, 1, 8))

    def broken(_: object, path: str) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken)
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["config.json", "index.faiss"]  # no temp file left behind
    assert VectorIndex.load(tmp_path).count == 2  # the previous save is intact
    # index.faiss replaced but config.json not (a crash between the two replaces)
    faiss.write_index(index._index, str(tmp_path / "index.faiss"))
    with pytest.raises(IndexCorruptError, match="disagree"):
        VectorIndex.load(tmp_path)
    with pytest.raises(IndexCorruptError, match="cannot read"):
        VectorIndex.load(tmp_path / "missing")


def clustered(rng: np.random.Generator, n: int, dim: int, centres: int = 64) -> np.ndarray:
    """Unit vectors around ``centres`` directions (cosine ~0.7 to their centre), as embeddings cluster."""
    centre = unit(rng, centres, dim)[rng.integers(centres, size=n)]
    x = centre + rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near_duplicates(rng: np.random.Generator, data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Queries at cosine ~0.95 to the given stored rows."""
    q = data[rows] + 0.3 * rng.standard_normal((len(rows), data.shape[1])).astype(np.float32) / np.sqrt(data.shape[1])
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_index_params_pick_kind_lists_and_pq_m() -> None:
    params = IndexParams(dim=384)
    assert [params.kind_for(n) for n in (10, 100_001, 2_000_000, 2_000_001, 10**7)] == [
        "flat", "hnsw", "hnsw", "ivfpq", "ivfpq"]
    assert params.nlist_for(10**7) == 16384 and params.nlist_for(10**6) == 4096  # ~4 sqrt(N), a power of two
    assert params.nlist_for(5000) == 64  # capped so that every list has train_per_list training points
    assert params.pq_m_for() == 48 and IndexParams(dim=100, pq_m=48).pq_m_for() == 25
    assert IndexParams(dim=8, ivf_nlist=7).nlist_for(10**6) == 7
    assert IndexParams(dim=8, ivfpq_threshold=0).kind_for(999) == "flat"  # too few vectors to train PQ codebooks


def test_two_level_coarse_centroids_are_unit_and_complete() -> None:
    rng = np.random.default_rng(5)
    data = clustered(rng, 20_000, 16, centres=8)
    centroids = coarse_centroids(data, 2048, niter=4)  # two levels: 45 top clusters, split by size
    assert centroids.shape == (2048, 16)
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-4)


def test_ivfpq_above_threshold_finds_near_duplicates_and_deletes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = clustered(rng, 5000, 32)
    ids = np.arange(5000, dtype=np.int64) * 7 + 100  # sparse ids, as after deletes in a store
    params = IndexParams(dim=32, hnsw_threshold=1000, ivfpq_threshold=2000, pq_m=16, nprobe=16)
    index = VectorIndex.from_chunks(((ids[lo:lo + 1000], data[lo:lo + 1000]) for lo in range(0, 5000, 1000)),
                                    total=5000, params=params)
    assert index.kind == "ivfpq" and index.count == 5000 and index._index.nlist == 64 and index._index.pq.M == 16
    assert np.array_equal(np.sort(index.ids()), ids) and int(ids[9]) in index and 101 not in index
    rows = rng.choice(5000, 50, replace=False)
    hits = index.search(near_duplicates(rng, data, rows), 10)
    assert sum(h[0].id == ids[r] for h, r in zip(hits, rows)) >= 48  # planted near-duplicates at rank 1
    # the decoded vectors are what the caller rescores with: close to the stored ones, and to the search scores
    decoded = index.reconstruct(ids[rows[:5]])
    assert np.all(np.sum(decoded * data[rows[:5]], axis=1) > 0.9)
    assert index.delete([int(ids[r]) for r in rows[:10]] + [101]) == 10 and index.count == 4990
    after = index.search(near_duplicates(rng, data, rows[:10]), 50)
    assert all(h.id not in set(ids[rows[:10]].tolist()) for row in after for h in row)
    with pytest.raises(ValueError, match="unique"):
        index.add([int(ids[20])], data[:1])
    index.meta = {"fingerprint": "f"}
    index.save(tmp_path / "ix")
    config = json.loads((tmp_path / "ix" / "config.json").read_text())
    assert config["kind"] == "ivfpq" and config["layout"] == "IVF64_HNSW32,PQ16 nprobe=16" and not config["deleted"]
    loaded = VectorIndex.load(tmp_path / "ix")
    q = near_duplicates(rng, data, rows[10:20])
    assert loaded.kind == "ivfpq" and loaded.count == 4990 and loaded.meta == {"fingerprint": "f"}
    assert loaded.search(q, 5) == index.search(q, 5)
    loaded.add([1], data[:1])  # stays IVF-PQ, with the trained quantizers
    assert loaded.kind == "ivfpq" and loaded.search(data[:1], 1)[0][0].id in (1, int(ids[0]))
    removed = loaded.delete(ids[:4000])  # far below the thresholds: still IVF-PQ (only decoded vectors are left)
    loaded.rebuild()
    assert loaded.kind == "ivfpq" and loaded.count == 4991 - removed <= 1000 and loaded._index.nlist == 64
    assert loaded.search(near_duplicates(rng, data, np.array([4500])), 1)[0][0].id == ids[4500]


def test_growth_past_ivfpq_threshold_converts_a_flat_index() -> None:
    rng = np.random.default_rng(4)
    data = clustered(rng, 5000, 32)
    index = VectorIndex(32, hnsw_threshold=10_000, ivfpq_threshold=3000, pq_m=8, nprobe=8)
    index.add(np.arange(2500), data[:2500])
    index.delete([0, 1])
    assert index.kind == "flat" and index.count == 2498
    index.add(np.arange(2500, 5000), data[2500:])  # 4998 > 3000: trained on a sample, then everything re-added
    assert index.kind == "ivfpq" and index.count == 4998 and 0 not in index and 4999 in index
    rows = rng.choice(np.arange(2, 5000), 40, replace=False)
    hits = index.search(near_duplicates(rng, data, rows), 5)
    assert sum(h[0].id == r for h, r in zip(hits, rows)) >= 38


# -- ComponentIndex ----------------------------------------------------------------------------------------------
def test_sync_indexes_new_changed_and_deleted_videos(tmp_path: Path) -> None:
    with TwinStore(tmp_path) as store:
        add_video(store, "a", ["dog", "ball"], [(1, "left of", 2)])
        add_video(store, "b", ["cat"])
        index = keyword_index(store)
        report = index.sync()
        assert (report.added, report.updated, report.removed, report.items) == (2, 0, 0, 4)
        rows = list(store.db.query("select video_id, kind, text, track_id, object_track from components order by id"))
        assert rows[2] == {"video_id": "a", "kind": "relation", "text": "dog left of ball", "track_id": 1,
                           "object_track": 2}
        assert (tmp_path / "index" / "components" / "index.faiss").exists()
        assert index.sync().model_dump(include={"added", "updated", "removed"}) == {"added": 0, "updated": 0,
                                                                                   "removed": 0}
        add_video(store, "a", ["horse"])  # re-ingest with other content
        store.delete("b")
        report = index.sync()
        assert (report.added, report.updated, report.removed, report.items) == (0, 1, 1, 1)
        hit = index.search(KeywordEncoder(KEYWORDS).encode(["horse"]), 3)[0]
        assert len(hit) == 1 and index.videos_of(np.array([hit[0].id])).tolist() == ["a"]
        # what a search learns is an overlay: it is not indexed, so nothing to re-embed
        new = Relation(video_id="a", subject_track=1, predicate="moving right", object_track=None, kind="temporal",
                       frame_start=0, frame_end=5)
        assert store.add_refinements([Refinement(video_id="a", track_id=1, action="motion_relation", model="geometry",
                                                 field="relations", value=[new.model_dump(exclude={"video_id"})])])
        assert index.sync().updated == 0 and index.vectors().count == 1
    with TwinStore(tmp_path) as store:  # reopened: loads and verifies the files, nothing to do
        index = keyword_index(store)
        assert index.problem() is None and index.sync().rebuilt is False


def test_interrupted_sync_is_detected_and_repaired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TwinStore(tmp_path) as store:
        add_video(store, "a", ["dog"])
        keyword_index(store).sync()
        add_video(store, "b", ["cat", "ball"])
        original = VectorIndex.save

        def save_then_die(self: VectorIndex, directory: str | Path) -> None:
            original(self, directory)
            raise KeyboardInterrupt  # after the faiss files, before the DB commit

        monkeypatch.setattr(VectorIndex, "save", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            keyword_index(store).sync()
        monkeypatch.setattr(VectorIndex, "save", original)
        assert store.db.execute("select count(*) from components").fetchone()[0] == 1  # rolled back
        index = keyword_index(store)
        assert "disagree" in (index.problem() or "")
        with pytest.raises(IndexCorruptError):
            index.vectors()
        report = index.sync()
        assert report.rebuilt and report.items == 3 and index.problem() is None
        assert sorted(index.indexed_videos()) == ["a", "b"]


def test_encoder_change_and_missing_files_trigger_rebuild(tmp_path: Path) -> None:
    with TwinStore(tmp_path) as store:
        add_video(store, "a", ["dog", "person"])
        keyword_index(store).sync()
        other = ComponentIndex(store, ComponentEncoders(KeywordEncoder(KEYWORDS + ["car"], "v2")))
        assert "encoder changed" in (other.problem() or "")
        assert other.sync().rebuilt and other.vectors().dim == len(KEYWORDS) + 1
        (tmp_path / "index" / "components" / "config.json").unlink()
        again = ComponentIndex(store, other.encoders)
        assert again.sync().rebuilt and again.vectors().count == 2
        assert again.rebuild().items == 2
