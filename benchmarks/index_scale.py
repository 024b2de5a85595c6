"""Component search at large N: memory, build time, p50/p95 latency and recall, on synthetic unit vectors.

Which index: twinseek's facade (:class:`twinseek.tools.index.VectorIndex`) picks ``IndexHNSWFlat`` above
``hnsw_threshold`` vectors. HNSW-Flat keeps every float32 vector plus the graph: about ``N * (4 * dim + 8 * M + 8)``
bytes, 18 GB at 10M x 384 (M=32), and its build took 1340 s at 1M on this 2-core machine
(``benchmarks/results/search_latency.json``), so a 10M facade index neither fits next to others' work in 24 GiB
nor builds in a benchmark's time. Kinds measured here:

- ``facade``: ``VectorIndex`` as twinseek builds it (HNSW-Flat at these sizes); skipped, with the reason written to
  the results, when its predicted memory exceeds ``--max-gb``;
- ``ivfpq``: faiss ``IVF{nlist},PQ{m}`` (inner product), the compressed index for collections beyond one
  machine's RAM for raw vectors: ``m`` bytes per vector plus an 8-byte id (56 bytes at m=48: 0.56 GB at 10M),
  trained on a sample and filled chunk by chunk, so the raw vectors never all sit in memory.

Vectors are random unit vectors, generated chunk by chunk from seeded generators (so the exact neighbours are
recomputed chunk by chunk for recall). Random 384-d vectors have no cluster structure: the worst case for
approximate search, so recall here is a lower bound of what real embeddings get. A search is ``--subqueries``
queries x ``k`` (what one compositional retrieval asks), timed ``--repeats`` times on one faiss thread.

    .venv/bin/python benchmarks/index_scale.py [--sizes 1000000,10000000] [--kinds ivfpq,facade] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psutil

from twinseek.tools.index import IndexParams, VectorIndex, normalise

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 250_000


def chunks(n: int, dim: int, seed: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """The N vectors as (first id, unit vectors) chunks; the same N and seed give the same vectors."""
    for lo in range(0, n, CHUNK):
        rng = np.random.default_rng([seed, lo])
        yield lo, normalise(rng.standard_normal((min(CHUNK, n - lo), dim), dtype=np.float32))


def queries(n: int, dim: int, count: int) -> np.ndarray:
    """Half random directions, half perturbed copies of stored vectors (a near-duplicate must be found)."""
    rng = np.random.default_rng(12345)
    random = rng.standard_normal((count - count // 2, dim), dtype=np.float32)
    picked = rng.choice(n, count // 2, replace=False)
    planted = []
    for lo, vecs in chunks(n, dim):
        for i in picked[(picked >= lo) & (picked < lo + len(vecs))]:
            planted.append(vecs[i - lo] + 0.3 * rng.standard_normal(dim, dtype=np.float32) / np.sqrt(dim))
    return normalise(np.vstack([random, *planted]))


def exact_top(n: int, dim: int, q: np.ndarray, k: int) -> np.ndarray:
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.zeros((len(q), k), np.int64)
    for lo, vecs in chunks(n, dim):
        scores = q @ vecs.T
        all_s = np.hstack([best_s, scores])
        all_i = np.hstack([best_i, np.arange(lo, lo + len(vecs))[None, :].repeat(len(q), 0)])
        top = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
    return np.take_along_axis(best_i, np.argsort(-best_s, axis=1), 1)  # best first


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def facade_predicted_gb(n: int, dim: int, m: int = IndexParams(dim=1).hnsw_m) -> float:
    return n * (4 * dim + 2 * m * 4 + 8) / 1e9  # vectors + level-0 links (2M int32) + the id map


def build_facade(n: int, dim: int) -> Any:
    index = VectorIndex(dim=dim)  # flat until hnsw_threshold, then HNSW: what twinseek does
    for lo, vecs in chunks(n, dim):
        index.add(np.arange(lo, lo + len(vecs)), vecs)
    return index, lambda q, k: index._index.search(q, k)[1]


def build_ivfpq(n: int, dim: int, m: int, nprobe: int) -> Any:
    nlist = 2 ** int(np.clip(np.log2(2 * np.sqrt(n)), 8, 16))  # ~2 sqrt(N) lists, a power of two
    index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}", faiss.METRIC_INNER_PRODUCT)
    index.do_polysemous_training = False  # on by default for PQ codes, and it takes minutes
    index.cp.niter = 10  # the coarse k-means: 10 rounds are enough for list assignment
    wanted, sample = min(n, 32 * nlist), []  # 32 training points per list
    for _, vecs in chunks(n, dim):
        sample.append(vecs)
        if sum(len(v) for v in sample) >= wanted:
            break
    index.train(np.vstack(sample)[:wanted])
    del sample
    for lo, vecs in chunks(n, dim):
        index.add_with_ids(vecs, np.arange(lo, lo + len(vecs), dtype=np.int64))
    index.nprobe = nprobe
    return index, lambda q, k: index.search(q, k)[1], {"nlist": nlist, "pq_m": m, "nprobe": nprobe}


def measure(args: argparse.Namespace, kind: str, n: int) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": kind, "n": n}
    if kind == "facade" and facade_predicted_gb(n, args.dim) > args.max_gb:
        row["skipped"] = (f"HNSW-Flat (the facade's choice above {IndexParams(dim=1).hnsw_threshold} vectors) needs "
                          f"~{facade_predicted_gb(n, args.dim):.1f} GB > --max-gb {args.max_gb}")
        print(row["skipped"], flush=True)
        return row
    faiss.omp_set_num_threads(args.build_threads)
    before, start = rss_mb(), time.perf_counter()
    if kind == "facade":
        index, search = build_facade(n, args.dim)
        row["index"] = (f"VectorIndex kind {index.kind!r}: IDMap2("
                        + (f"HNSWFlat M={index.params.hnsw_m})" if index.kind == "hnsw" else "FlatIP)"))
    else:
        index, search, params = build_ivfpq(n, args.dim, args.pq_m, args.nprobe)
        row["index"] = f"IVF{params['nlist']},PQ{params['pq_m']} nprobe={params['nprobe']}"
    row["build_s"] = round(time.perf_counter() - start, 1)
    row["rss_growth_mb"] = round(rss_mb() - before, 1)
    faiss.omp_set_num_threads(1)
    q = queries(n, args.dim, args.subqueries * 4)
    one = q[: args.subqueries]
    search(one, args.k)  # warm
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        search(one, args.k)
        times.append(1000 * (time.perf_counter() - t))
    row["p50_ms"], row["p95_ms"] = round(float(np.percentile(times, 50)), 2), round(float(np.percentile(times, 95)), 2)
    truth, got = exact_top(n, args.dim, q, 10), search(q, args.k)
    half = len(q) - len(q) // 2
    row["recall10_in_k_random"] = round(float(np.mean([len(set(t) & set(g)) / 10 for t, g in
                                                          zip(truth[:half], got[:half])])), 3)
    row["recall1_planted"] = round(float(np.mean([t[0] in g[:10] for t, g in zip(truth[half:], got[half:])])), 3)
    print(json.dumps(row), flush=True)
    del index
    return row


def _facade_reference() -> dict[str, Any] | None:
    path = ROOT / "benchmarks" / "results" / "search_latency.json"
    if not path.exists():
        return None
    rows = [r for r in json.loads(path.read_text()).get("rows", []) if r.get("n") == 1_000_000 and "hnsw" in r]
    return {"source": str(path.relative_to(ROOT)), **rows[0]["hnsw"]} if rows else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--kinds", default="ivfpq,facade")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--subqueries", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--pq-m", type=int, default=48)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--build-threads", type=int, default=1, help="faiss threads while building (OpenMP on a "
                        "busy machine spins: 1 is faster there)")
    parser.add_argument("--max-gb", type=float, default=8.0, help="skip an index predicted to need more memory")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "index_scale.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = [measure(args, kind, int(n)) for n in args.sizes.split(",") for kind in args.kinds.split(",")]
    result = {
        "benchmark": "component search at large N (synthetic random unit vectors)",
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "faiss": faiss.__version__,
                    "total_memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "rows": rows,
        # what the facade would pick at each size, and its last measurement (benchmarks/search.py) for reference
        "facade_predicted_gb": {n: round(facade_predicted_gb(int(n), args.dim), 2)
                                for n in [*args.sizes.split(","), "10000000"]},
        "facade_measured_1m": _facade_reference(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
