"""Component-search latency: twinseek's VectorIndex (exact and HNSW) against numpy brute force.

Synthetic components are random unit vectors (dim 384, MiniLM's size). One "search" is what compositional
search sends: ``--subqueries`` query vectors (5 by default) with a generous ``k`` (256). For every size we report
p50/p95 latency over ``--repeats`` searches, build time, recall@k of HNSW against the exact answer, and memory
(process RSS growth and the index's own bytes). Two query kinds are used for recall: ``random`` (uniform
directions: the hardest case for any ANN index, since the true top-k are nearly tied) and ``planted`` (a stored
vector plus noise, closer to real queries that do have a clearly relevant component). ``recall`` is over all k,
``recall10`` is the share of the true top 10 found within the returned k (what compositional search needs),
``recall1_planted`` whether the planted vector itself comes back.

Run: ``python benchmarks/search.py`` (about 15 min on 2 cores; ``--sizes 10000 100000`` for a quick run).
Timings on a shared machine are noisy: compare within one run only.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psutil
from threadpoolctl import threadpool_limits

from twinseek.retrieval.vectors import IndexParams, VectorIndex

logger = logging.getLogger("benchmarks.search")
RESULTS = Path(__file__).parent / "results" / "search_latency.json"


def unit_rows(rng: np.random.Generator, n: int, dim: int, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - lo), dim), dtype=np.float32)
        out[lo:lo + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def brute_force(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ data.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def timed(fn: Any, batches: list[np.ndarray]) -> tuple[list[float], list[Any]]:
    fn(batches[0])  # warm-up
    times, outs = [], []
    for q in batches:
        t0 = time.perf_counter()
        outs.append(fn(q))
        times.append((time.perf_counter() - t0) * 1000)
    return times, outs


def pct(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p95_ms": round(float(np.percentile(times, 95)), 3)}


def recall(found: list[np.ndarray], truth: list[np.ndarray], top: int | None = None) -> float:
    """Share of the true top-``top`` (all k when None) that the index returned within its k."""
    pairs = [(f_row, t_row[:top]) for f, t in zip(found, truth) for f_row, t_row in zip(f, t)]
    return round(sum(len(np.intersect1d(f_row, t_row)) for f_row, t_row in pairs) / sum(len(t) for _, t in pairs), 4)


def build(kind: str, ids: np.ndarray, data: np.ndarray, params: IndexParams, build_threads: int,
          search_threads: int) -> tuple[VectorIndex, float, float]:
    before = rss_mb()
    t0 = time.perf_counter()
    index = VectorIndex(params=params.model_copy(update={"hnsw_threshold": 10**12}))
    index.add(ids, data)
    if kind == "hnsw":
        faiss.omp_set_num_threads(build_threads)  # graph construction parallelises well; search does not here
        index.rebuild("hnsw")
        faiss.omp_set_num_threads(search_threads)
    return index, time.perf_counter() - t0, rss_mb() - before


def run_size(n: int, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    logger.info("n=%d: generating", n)
    data = unit_rows(rng, n, args.dim)
    ids = np.arange(n, dtype=np.int64) + 1_000_000
    batches = [unit_rows(rng, args.subqueries, args.dim) for _ in range(args.repeats)]
    planted = []
    for _ in range(args.repeats):
        base = data[rng.integers(0, n, args.subqueries)]
        planted.append(base + 0.05 * unit_rows(rng, args.subqueries, args.dim))
    params = IndexParams(dim=args.dim, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                         ef_search=args.ef_search)
    row: dict[str, Any] = {"n": n, "dim": args.dim, "subqueries": args.subqueries, "k": args.k,
                           "data_mb": round(data.nbytes / 2**20, 1)}

    times, truth = timed(lambda q: brute_force(data, q, args.k) + 1_000_000, batches)
    _, truth_planted = timed(lambda q: brute_force(data, q / np.linalg.norm(q, axis=1, keepdims=True), args.k)
                             + 1_000_000, planted)
    row["numpy"] = pct(times)
    for kind in args.kinds:
        if kind == "hnsw" and n > args.max_hnsw:
            continue
        logger.info("n=%d: building %s", n, kind)
        index, build_s, grew = build(kind, ids, data, params, args.build_threads, args.threads)
        times, found = timed(lambda q, index=index: index.search_arrays(q, args.k)[1], batches)
        _, found_planted = timed(lambda q, index=index: index.search_arrays(q, args.k)[1], planted)
        row[kind] = {**pct(times), "build_s": round(build_s, 2), "rss_growth_mb": round(grew, 1),
                     "recall_random": recall(found, truth), "recall10_random": recall(found, truth, 10),
                     "recall1_planted": recall(found_planted, truth_planted, 1)}
        logger.info("n=%d %s: %s", n, kind, row[kind])
        del index
        gc.collect()
    return row  # data is freed when this frame ends


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'n':>9} | {'numpy p50/p95':>15} | {'flat p50/p95':>15} | {'hnsw p50/p95':>15} | {'hnsw recall k/10/p1':>19} | {'hnsw build':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        def cell(key: str, r: dict[str, Any] = r) -> str:
            return f"{r[key]['p50_ms']:.2f}/{r[key]['p95_ms']:.2f}" if key in r else "-"

        h = r.get("hnsw", {})
        rec = f"{h['recall_random']:.3f}/{h['recall10_random']:.3f}/{h['recall1_planted']:.3f}" if h else "-"
        lines.append(f"{r['n']:>9} | {cell('numpy'):>15} | {cell('flat'):>15} | {cell('hnsw'):>15} | {rec:>19} | "
                     f"{(str(h['build_s']) + ' s') if h else '-':>10}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw"], choices=["flat", "hnsw"])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--subqueries", type=int, default=5)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--max-hnsw", type=int, default=10**7, help="Skip HNSW above this size.")
    parser.add_argument("--threads", type=int, default=1,
                        help="faiss/BLAS threads (1: OpenMP spin-waits badly on a busy 2-core machine).")
    parser.add_argument("--build-threads", type=int, default=2, help="faiss threads while building HNSW.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    with threadpool_limits(args.threads):
        rows = [run_size(n, args, rng) for n in args.sizes]
    result = {
        "benchmark": "component search latency (one search = subqueries x k)",
        "machine": {"cpus": psutil.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
                    "python": platform.python_version(), "faiss": faiss.__version__, "numpy": np.__version__,
                    "note": "shared 2-core machine: timings are noisy"},
        "params": {k: v for k, v in vars(args).items() if k not in ("out", "sizes")},
        "rows": rows,
        "peak_rss_mb": round(rss_mb(), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(table(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
