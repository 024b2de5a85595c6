"""Vector indexes: a small faiss facade and the store-backed catalogues built on it.

:class:`VectorIndex` holds L2-normalised float32 vectors under int64 ids and searches by inner product
(= cosine). It picks one of three kinds by size (:meth:`IndexParams.kind_for`):

- ``flat``: an exact ``IndexIDMap2(IndexFlatIP)`` up to ``hnsw_threshold`` vectors;
- ``hnsw``: ``IndexIDMap2(IndexHNSWFlat)`` above it (``benchmarks/search.py`` measured the default). HNSW cannot
  remove vectors, so deletes there are tombstones filtered at search time and compacted by
  :meth:`VectorIndex.rebuild` once they pass ``COMPACT_FRACTION`` of the index;
- ``ivfpq``: ``IndexIVFPQ`` (HNSW coarse quantizer, inner product) above ``ivfpq_threshold``. HNSW-Flat keeps
  every float32 vector (~18 GB at 10M x 384) and takes hours to build on a few cores; IVF-PQ keeps ``pq_m`` bytes
  per vector plus its id (``benchmarks/index_scale.py``). The ids live in the inverted lists and a hashtable
  direct map finds a vector by id, so deletes are real and :meth:`VectorIndex.reconstruct` works. The raw vectors
  are *not* kept (that is the point at 10M), so there is no exact re-ranking inside the index:
  :meth:`~VectorIndex.reconstruct` returns the PQ-decoded vectors, and scores are PQ estimates (the shortlist is
  rescored by the caller, e.g. ``CompositionalRetriever``, with the same decoded vectors). An ``ivfpq`` index
  stays ``ivfpq`` when compacted or when it shrinks: re-adding its decoded vectors to an exact index would only
  freeze the PQ error in; a catalogue rebuild (re-embedding) starts from flat again.

The kind only ever moves up as an index grows (flat -> HNSW -> IVF-PQ), each step a :meth:`~VectorIndex.rebuild`
from the stored vectors (exact for flat and HNSW); :meth:`VectorIndex.from_chunks` builds a large index of known
size directly in its final kind, chunk by chunk.

On disk an index is a folder with ``config.json`` and ``index.faiss``, each written to a temporary name and
``os.replace``d. The two replaces are not one atomic step, so ``config.json`` records the digest of the live
ids: :meth:`VectorIndex.load` raises :class:`IndexCorruptError` when the files disagree.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import faiss
import numpy as np
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from twinseek.errors import TwinseekError
from twinseek.files import write_atomic

logger = logging.getLogger(__name__)


_faiss: Any = faiss  # faiss's type stubs lack much of its SWIG API (DirectMap, SearchParametersIVF, ...)


# Measured by benchmarks/search.py (results/search_latency.json; 5 queries, k=256, dim 384, 1 search thread on
# a busy 2-core machine): exact p50 2 ms at 10k, 11 ms at 30k, 55 ms at 100k, 500 ms at 1M; HNSW (M=32) 9 ms at
# 100k and 18 ms at 1M, but its recall on random vectors falls to 0.45 (top-10 within k) at 100k and the graph
# takes minutes to build. Stage 1 is followed by seconds of LLM reranking, so exact search is worth its tens of
# milliseconds up to ~100k components (~5k videos); beyond that its latency grows linearly and HNSW takes over.
DEFAULT_HNSW_THRESHOLD = 100_000


# benchmarks/index_scale.py (results/index_scale.json, dim 384, 2 busy cores): HNSW-Flat needs ~1.8 GB and a
# 22-minute build at 1M, ~3.6 GB at 2M, ~18 GB at 10M; the facade's IVF-PQ (PQ48, nprobe 32) holds ~0.15 GB at 1M
# and ~0.7 GB at 5M, builds in 2 and 14 minutes, p50 3-6 ms. HNSW stays below a few million vectors (better
# recall, no training), IVF-PQ above.
DEFAULT_IVFPQ_THRESHOLD = 2_000_000


COMPACT_FRACTION = 0.1


CONFIG_FILE = "config.json"


INDEX_FILE = "index.faiss"


FORMAT_VERSION = 1


IndexKind = Literal["flat", "hnsw", "ivfpq"]


KIND_ORDER: dict[str, int] = {"flat": 0, "hnsw": 1, "ivfpq": 2}  # an index only moves up this order


IVF_QUANTIZER_M = 32  # HNSW degree of the IVF coarse quantizer (a graph over the list centroids)


# Its beam when adding: at 8192 lists, 16 (faiss's default) put 4% of vectors outside their nearest list and 1.2%
# of near-duplicate queries then missed their target's list (nprobe 32); 32 costs ~13% more per assignment and
# cuts those to 0.6% and 0.14% (measured on the benchmark's clustered vectors, 20k samples).
IVF_QUANTIZER_EF_ADD = 32


TWO_LEVEL_FROM = 2048  # lists from which the coarse k-means runs in two levels (sqrt(nlist) x sqrt(nlist))


IVFPQ_MIN_VECTORS = 1000  # PQ codebooks need >= 256 training vectors each: never IVF-PQ below this size


BUILD_CHUNK = 50_000  # vectors per add / reconstruct while (re)building: bounds the raw vectors held at once


class IndexCorruptError(TwinseekError):
    """The files of an index are missing, unreadable or disagree with each other or with the store."""


class Hit(NamedTuple):
    """One search result: the item id and its inner-product (cosine) score."""

    id: int
    score: float


class IndexParams(BaseModel):
    """Build parameters of a :class:`VectorIndex` (persisted in ``config.json``)."""

    dim: int = Field(gt=0)
    hnsw_threshold: int = Field(DEFAULT_HNSW_THRESHOLD, ge=0, description="Vectors above which HNSW is used.")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree.")
    ef_construction: int = Field(80, ge=8)
    ef_search: int = Field(128, ge=1, description="HNSW search beam; raised to k when k is larger.")
    ivfpq_threshold: int = Field(DEFAULT_IVFPQ_THRESHOLD, ge=0,
                                 description="Vectors above which IVF-PQ (compressed, approximate) is used.")
    pq_m: int = Field(48, ge=1, description="IVF-PQ bytes per vector (sub-quantizers); the largest divisor of dim "
                      "not above it is used.")
    nprobe: int = Field(32, ge=1, description="IVF-PQ inverted lists visited per query.")
    ivf_nlist: int | None = Field(None, ge=1, description="IVF-PQ inverted lists; None: a power of two near "
                                  "4 sqrt(N), at most N / train_per_list.")
    train_per_list: int = Field(40, ge=1, description="IVF-PQ training vectors per list (faiss asks for >= 39).")

    def kind_for(self, n: int) -> IndexKind:
        """The kind an index of ``n`` vectors should have."""
        if n > self.ivfpq_threshold and n >= IVFPQ_MIN_VECTORS:
            return "ivfpq"
        return "hnsw" if n > self.hnsw_threshold else "flat"

    def nlist_for(self, n: int) -> int:
        """Inverted lists for ``n`` vectors: faiss's guideline is 4-16 sqrt(N); the low end keeps the coarse
        k-means and every add's list assignment affordable on a few cores."""
        if self.ivf_nlist:
            return self.ivf_nlist
        wanted = 2 ** round(np.log2(max(4 * np.sqrt(max(n, 1)), 1)))
        affordable = 2 ** int(np.log2(max(n // self.train_per_list, 1)))  # enough training points per list
        return int(max(1, min(wanted, affordable, 1 << 18)))

    def pq_m_for(self) -> int:
        """``pq_m`` lowered to a divisor of ``dim`` (faiss's PQ splits the vector into equal parts)."""
        return max(m for m in range(1, min(self.pq_m, self.dim) + 1) if self.dim % m == 0)


class IndexManifest(BaseModel):
    """What ``config.json`` holds: parameters, state and the caller's metadata."""

    format: int = FORMAT_VERSION
    params: IndexParams
    kind: IndexKind
    layout: str = Field("", description="The faiss structure, e.g. 'IVF16384_HNSW32,PQ48 nprobe=32'.")
    count: int
    ids_digest: str
    deleted: list[int] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    saved_at: float = Field(default_factory=time.time)


def ids_digest(ids: np.ndarray) -> str:
    """Order-independent digest of a set of ids (sha1 of the sorted int64 array)."""
    return hashlib.sha1(np.sort(np.asarray(ids, dtype=np.int64)).tobytes()).hexdigest()


def normalise(vectors: np.ndarray) -> np.ndarray:
    """float32, C-contiguous, rows scaled to unit length (zero rows stay zero)."""
    arr = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return np.ascontiguousarray(arr / np.maximum(norms, 1e-12))


def coarse_centroids(sample: np.ndarray, nlist: int, niter: int = 10, seed: int = 0) -> np.ndarray:
    """``nlist`` unit centroids of ``sample`` by spherical k-means (for inner-product IVF lists).

    From ``TWO_LEVEL_FROM`` lists on, two levels (as faiss's ``contrib.clustering.two_level_clustering``, which
    can hand a small top cluster zero centroids and is L2 only): ``sqrt(nlist)`` top clusters, then each split
    in proportion to its size. One level costs ``n * nlist`` distances per iteration, two ``2 n sqrt(nlist)``
    (45x fewer at 8192 lists: those, and the PQ, trained in 31 s at 5M vectors on one busy core)."""
    n, dim = sample.shape
    nlist = min(nlist, n)
    if nlist < TWO_LEVEL_FROM:
        return _kmeans(sample, nlist, niter, seed)
    top_k = int(np.sqrt(nlist))
    top = faiss.Kmeans(dim, top_k, niter=niter, seed=seed, spherical=True, max_points_per_centroid=2000)
    top.train(sample)
    assign = np.asarray(top.index.search(sample, 1)[1]).ravel()
    sizes = np.bincount(assign, minlength=top_k)
    share = np.minimum(sizes, np.maximum(sizes > 0, sizes * nlist // n))  # >= 1 per non-empty cluster, <= its size
    order = np.argsort(-sizes)
    step = 0
    while share.sum() != nlist:  # hand out (or take back) the rounding remainder, largest clusters first
        j = order[step % top_k]
        if share.sum() < nlist and share[j] < sizes[j]:
            share[j] += 1
        elif share.sum() > nlist and share[j] > 1:
            share[j] -= 1
        step += 1
    parts = [_kmeans(sample[assign == c], int(share[c]), niter, seed + 1 + c) for c in range(top_k) if share[c]]
    return np.ascontiguousarray(np.vstack(parts))


def _kmeans(x: np.ndarray, k: int, niter: int, seed: int) -> np.ndarray:
    if k >= len(x):
        return normalise(x[:k])
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, min_points_per_centroid=1,
                      max_points_per_centroid=256)
    km.train(np.ascontiguousarray(x))
    return normalise(np.asarray(km.centroids))


class VectorIndex:
    """Inner-product index over unit vectors with int64 ids: exact when small, HNSW when large, IVF-PQ when huge."""

    def __init__(self, dim: int | None = None, params: IndexParams | None = None, **kwargs: Any) -> None:
        if params is None:
            if dim is None:
                raise ValueError("give dim or params")
            params = IndexParams(dim=dim, **kwargs)
        self.params = params
        self.kind: IndexKind = "flat"
        self.meta: dict[str, Any] = {}
        self._deleted: set[int] = set()
        self._index: Any = self._new_index("flat")  # faiss's stubs are partial: keep the wrapper untyped

    @classmethod
    def from_chunks(cls, chunks: Iterable[tuple[Sequence[int] | np.ndarray, np.ndarray]], total: int,
                    params: IndexParams) -> VectorIndex:
        """Build an index of about ``total`` vectors directly in the kind that size calls for, adding
        ``(ids, vectors)`` chunks as they come: no flat -> HNSW -> IVF-PQ conversions, and never more raw vectors
        in memory than one chunk (plus, for IVF-PQ, the training sample: the first chunks, so feed them in an
        order that does not cluster them, e.g. shuffled or interleaved)."""
        index = cls(params=params)
        kind = params.kind_for(total)
        if kind != "ivfpq":
            index._index, index.kind = index._new_index(kind), kind
            for ids, vectors in chunks:
                index._add_checked(ids, vectors)
            return index
        ivf = index._new_index("ivfpq", total)
        wanted, buffered, held = ivf.nlist * params.train_per_list, [], 0
        it = iter(chunks)
        for ids, vectors in it:
            buffered.append((ids, normalise(vectors)))
            held += len(buffered[-1][1])
            if held >= wanted:
                break
        train = np.concatenate([v for _, v in buffered])[:wanted] if buffered else np.zeros((0, params.dim), np.float32)
        index._train_ivfpq(ivf, train)
        index._index, index.kind = ivf, "ivfpq"
        del train
        while buffered:
            index._add_checked(*buffered.pop(0))
        for ids, vectors in it:
            index._add_checked(ids, vectors)
        return index

    # -- state -------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.params.dim

    @property
    def count(self) -> int:
        """Live vectors (tombstoned ones excluded)."""
        return int(self._index.ntotal) - len(self._deleted)

    def __len__(self) -> int:
        return self.count

    def _all_ids(self) -> np.ndarray:
        if self.kind != "ivfpq":
            return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        lists = self._index.invlists  # IVF keeps the ids in its inverted lists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(self._index.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64)

    def ids(self) -> np.ndarray:
        """The live ids, in insertion order (list by list for ``ivfpq``)."""
        all_ids = self._all_ids()
        if not self._deleted:
            return all_ids.copy()
        return all_ids[~np.isin(all_ids, np.fromiter(self._deleted, np.int64))]

    def __contains__(self, item: object) -> bool:
        return isinstance(item, int | np.integer) and int(item) not in self._deleted and bool(
            np.isin(item, self._all_ids()))

    @property
    def layout(self) -> str:
        """The faiss structure in index-factory words, e.g. ``IVF16384_HNSW32,PQ48 nprobe=32``."""
        if self.kind == "flat":
            return "IDMap2,Flat"
        if self.kind == "hnsw":
            return f"IDMap2,HNSW{self.params.hnsw_m},Flat"
        return f"IVF{self._index.nlist}_HNSW{IVF_QUANTIZER_M},PQ{self._index.pq.M} nprobe={self._nprobe()}"

    # -- writes ------------------------------------------------------------------------------------------
    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (normalised here) under new, unique ids; moves up a kind when the count passes a threshold."""
        id_arr, vecs = self._checked(ids, vectors)
        if not len(id_arr):
            return
        kind = self.params.kind_for(int(self._index.ntotal) + len(id_arr))
        if KIND_ORDER[kind] > KIND_ORDER[self.kind]:
            logger.info("%d vectors: switching from %s to %s", int(self._index.ntotal) + len(id_arr), self.kind, kind)
            self.rebuild(kind, extra=(id_arr, vecs))
        else:
            self._index.add_with_ids(vecs, id_arr)

    def _checked(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        vecs = normalise(vectors) if len(id_arr) else np.zeros((0, self.dim), np.float32)
        if vecs.shape != (len(id_arr), self.dim):
            raise ValueError(f"expected vectors of shape ({len(id_arr)}, {self.dim}), got {vecs.shape}")
        if len(id_arr) and (len(np.unique(id_arr)) != len(id_arr) or np.isin(id_arr, self._all_ids()).any()):
            raise ValueError("ids must be unique and not already in the index")
        return id_arr, vecs

    def _add_checked(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        id_arr, vecs = self._checked(ids, vectors)
        if len(id_arr):
            self._index.add_with_ids(vecs, id_arr)

    def delete(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove ids (unknown ones are ignored); returns how many were removed."""
        id_arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        present = id_arr[np.isin(id_arr, self._all_ids())]
        present = np.unique(np.array([i for i in present if int(i) not in self._deleted], np.int64))
        if not len(present):
            return 0
        if self.kind == "flat":
            self._index.remove_ids(present)
        elif self.kind == "ivfpq":  # the hashtable direct map removes by id (it only takes an IDSelectorArray)
            self._index.remove_ids(faiss.IDSelectorArray(present))
        else:
            self._deleted.update(int(i) for i in present)
            if len(self._deleted) > COMPACT_FRACTION * self._index.ntotal:
                self.rebuild()
        return len(present)

    def rebuild(self, kind: IndexKind | None = None,
                extra: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Rebuild from the stored vectors (plus ``extra`` new, normalised ones): drops tombstones and picks the
        kind by the live count. An ``ivfpq`` index stays ``ivfpq`` (its vectors only exist PQ-decoded) and
        reuses its trained quantizers; moving to ``ivfpq`` trains them on a random sample first."""
        ids = self.ids()
        extra_ids, extra_vecs = extra if extra is not None else (np.zeros(0, np.int64),
                                                                  np.zeros((0, self.dim), np.float32))
        total = len(ids) + len(extra_ids)
        if kind is None:
            kind = "ivfpq" if self.kind == "ivfpq" else self.params.kind_for(total)
        started = time.perf_counter()
        if kind == "ivfpq" and self.kind == "ivfpq":
            index = faiss.clone_index(self._index)  # keeps the trained coarse centroids and PQ codebooks
            index.reset()
        else:
            index = self._new_index(kind, total)
            if kind == "ivfpq":
                self._train_ivfpq(index, self._training_sample(ids, extra_vecs, index.nlist))
        for lo in _progress(range(0, len(ids), BUILD_CHUNK), f"building {kind} index", len(ids) > 200_000):
            chunk = ids[lo:lo + BUILD_CHUNK]
            index.add_with_ids(self.reconstruct(chunk), chunk)
        if len(extra_ids):
            index.add_with_ids(extra_vecs, extra_ids)
        self._index, self.kind, self._deleted = index, kind, set()
        logger.debug("rebuilt %s index of %d vectors in %.2f s", kind, total, time.perf_counter() - started)

    def _training_sample(self, ids: np.ndarray, extra: np.ndarray, nlist: int) -> np.ndarray:
        """Up to ``nlist * train_per_list`` vectors drawn at random from the stored ones and ``extra``."""
        wanted = nlist * self.params.train_per_list
        total = len(ids) + len(extra)
        pick = np.sort(np.random.default_rng(0).choice(total, min(wanted, total), replace=False))
        stored, new = pick[pick < len(ids)], pick[pick >= len(ids)] - len(ids)
        return np.vstack([self.reconstruct(ids[stored]), extra[new]])

    def _new_index(self, kind: IndexKind, n: int = 0) -> Any:
        inner: Any
        if kind == "ivfpq":
            # HNSW over the centroids: assigning each vector to one of 16k lists by brute force would cost more
            # than the whole rest of a 10M build
            quantizer: Any = faiss.IndexHNSWFlat(self.dim, IVF_QUANTIZER_M, faiss.METRIC_INNER_PRODUCT)
            quantizer.hnsw.efSearch = IVF_QUANTIZER_EF_ADD  # searches pass their own (SearchParametersIVF)
            ivf: Any = faiss.IndexIVFPQ(quantizer, self.dim, self.params.nlist_for(n), self.params.pq_m_for(), 8,
                                   faiss.METRIC_INNER_PRODUCT)
            ivf.own_fields = True
            quantizer.this.disown()  # the IVF owns (and frees) its quantizer
            ivf.do_polysemous_training = False  # only for Hamming-filtered search, which we do not use; slow
            ivf.pq.cp.min_points_per_centroid = 1  # small test indexes: no "please provide more points" noise
            ivf.set_direct_map_type(_faiss.DirectMap.Hashtable)  # reconstruct and remove by id
            ivf.nprobe = self.params.nprobe
            return ivf
        if kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        else:
            inner = faiss.IndexHNSWFlat(self.dim, self.params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.params.ef_construction
            inner.hnsw.efSearch = self.params.ef_search
        return faiss.IndexIDMap2(inner)

    def _train_ivfpq(self, ivf: Any, sample: np.ndarray) -> None:
        """Coarse centroids by (two-level) spherical k-means, then the PQ codebooks on the residuals."""
        started = time.perf_counter()
        ivf.quantizer.add(coarse_centroids(sample, ivf.nlist))
        ivf.train(sample)  # the quantizer already holds nlist centroids: this trains the PQ only
        logger.info("trained IVF%d,PQ%d on %d vectors in %.1f s", ivf.nlist, ivf.pq.M, len(sample),
                    time.perf_counter() - started)

    def _nprobe(self) -> int:
        return min(self.params.nprobe, int(self._index.nlist)) if self.kind == "ivfpq" else 0

    # -- reads -------------------------------------------------------------------------------------------
    def reconstruct(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored (normalised) vectors of ``ids`` (PQ-decoded approximations for ``ivfpq``); raises for
        unknown ids."""
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(id_arr):
            return np.zeros((0, self.dim), np.float32)
        return self._index.reconstruct_batch(id_arr)

    def search_arrays(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss-style ``(scores, ids)`` arrays of shape (n_queries, k); missing slots have id -1."""
        q = normalise(queries)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dim {q.shape[1]}, index has {self.dim}")
        if self.count == 0 or k <= 0:
            return np.full((len(q), max(k, 0)), -np.inf, np.float32), np.full((len(q), max(k, 0)), -1, np.int64)
        params: Any = None
        if self.kind == "hnsw":
            selector = None
            if self._deleted:
                batch = faiss.IDSelectorBatch(np.fromiter(self._deleted, np.int64))
                selector = faiss.IDSelectorNot(batch)
            params = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
                efSearch=max(self.params.ef_search, k), sel=selector)
        elif self.kind == "ivfpq":
            nprobe = self._nprobe()
            params = _faiss.SearchParametersIVF(
                nprobe=nprobe, quantizer_params=_faiss.SearchParametersHNSW(efSearch=max(2 * nprobe, 64)))
        scores, ids = self._index.search(q, k, params=params)
        return scores, ids

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-``k`` hits per query row, best first (fewer when the index holds fewer than ``k``)."""
        scores, ids = self.search_arrays(queries, k)
        return [
            [Hit(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
            for row_ids, row_scores in zip(ids, scores)
        ]

    # -- persistence -------------------------------------------------------------------------------------
    def manifest(self) -> IndexManifest:
        return IndexManifest(params=self.params, kind=self.kind, layout=self.layout, count=self.count,
                             ids_digest=ids_digest(self.ids()), deleted=sorted(self._deleted), meta=self.meta)

    def save(self, directory: str | Path) -> None:
        """Write ``index.faiss`` then ``config.json`` (each via a temporary file and ``os.replace``)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest()
        write_atomic(folder / INDEX_FILE, lambda p: faiss.write_index(self._index, str(p)))
        write_atomic(folder / CONFIG_FILE, lambda p: p.write_text(manifest.model_dump_json(indent=2)))

    @classmethod
    def load(cls, directory: str | Path) -> VectorIndex:
        """Read an index folder; raises :class:`IndexCorruptError` when it is missing or inconsistent."""
        folder = Path(directory)
        try:
            manifest = IndexManifest.model_validate_json((folder / CONFIG_FILE).read_text())
            raw: Any = faiss.read_index(str(folder / INDEX_FILE))
        except (OSError, RuntimeError, ValueError) as exc:
            raise IndexCorruptError(f"cannot read index in {folder}: {exc}") from exc
        if manifest.format != FORMAT_VERSION:
            raise IndexCorruptError(f"{folder}: index format {manifest.format}, expected {FORMAT_VERSION}")
        expected = faiss.IndexIVFPQ if manifest.kind == "ivfpq" else faiss.IndexIDMap2
        if not isinstance(raw, expected):
            raise IndexCorruptError(f"{folder}: {manifest.kind} index, but index.faiss holds {type(raw).__name__}")
        index = cls(params=manifest.params)
        index._index = raw
        index.kind, index.meta, index._deleted = manifest.kind, manifest.meta, set(manifest.deleted)
        if raw.d != manifest.params.dim or index.count != manifest.count or ids_digest(index.ids()) != manifest.ids_digest:
            raise IndexCorruptError(f"{folder}: index.faiss and config.json disagree (interrupted save?)")
        return index


def _progress(iterable: Iterable[Any], desc: str, enabled: bool = True, total: int | None = None) -> Iterable[Any]:
    """A tqdm bar on a terminal when the log level shows INFO; the bare iterable otherwise."""
    show = enabled and sys.stderr.isatty() and logging.getLogger("twinseek").getEffectiveLevel() <= logging.INFO
    return tqdm(iterable, desc=desc, total=total, leave=False) if show else iterable
