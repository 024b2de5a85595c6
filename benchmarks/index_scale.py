"""Component search at large N through twinseek's index facade: build time, memory, p50/p95 latency, recall.

What is measured is :class:`twinseek.retrieval.vectors.VectorIndex`, built the way twinseek builds a large index of known
size (:meth:`VectorIndex.from_chunks`: the kind for that size, vectors added chunk by chunk). With the default
:class:`IndexParams` the facade is exact up to 100k vectors, HNSW-Flat up to ``ivfpq_threshold`` (2M) and IVF-PQ
above, so at 10M it picks ``IVF16384_HNSW32,PQ48`` (nprobe 32). Kinds:

- ``ivfpq`` (default): the facade with ``ivfpq_threshold=0``, so IVF-PQ at every size; all other parameters are the
  defaults, so at sizes above the threshold this *is* what twinseek picks (each row says what the defaults pick),
  and at 1M it is the baseline of the same kind, measured in the same run;
- ``facade``: the facade with its default parameters. Where that is HNSW-Flat and its predicted memory exceeds
  ``--max-gb`` (or N exceeds ``--max-hnsw``: HNSW-Flat took 1340 s to build at 1M on 2 cores,
  ``results/search_latency.json``) the row is skipped with the reason.

Data: synthetic *clustered* unit vectors (``--centres`` random directions; each vector is its centre plus Gaussian
noise of norm ``--spread``, cosine ~0.7 to its centre, ~0.5 to its cluster-mates, as sentence embeddings of
similar component texts), generated chunk by chunk from seeded generators: 10M x 384 float32 would be 15 GB, the
benchmark holds one 250k chunk (plus the IVF-PQ training sample) at a time. Queries: ``--repeats`` searches of
``--subqueries`` new in-distribution vectors x ``k`` (one compositional retrieval), one faiss thread; recall on 50
more in-distribution queries (exact top-10 within the index's top ``k``, exact neighbours computed in the same
chunked pass) and on 50 planted near-duplicates (a stored vector plus noise, cosine ~0.95: found at rank 1).
Each size runs in its own process, so ``peak_rss_mb`` is that build's peak (vectors being generated included);
``index_mb`` is the size of the saved ``index.faiss``; ``rss_growth_mb`` what the process holds after the build.

    .venv/bin/python benchmarks/index_scale.py --sizes 1000000,10000000 [--kinds ivfpq,facade] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psutil

from twinseek.retrieval.vectors import IndexParams, VectorIndex, normalise

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 250_000
RESULTS = ROOT / "benchmarks" / "results" / "index_scale.json"


class Data:
    """The N clustered unit vectors, reproducible chunk by chunk (same N, dim and seed: same vectors)."""

    def __init__(self, n: int, dim: int, centres: int, spread: float, seed: int = 0) -> None:
        self.n, self.dim, self.spread, self.seed = n, dim, spread, seed
        self.centres = normalise(np.random.default_rng([seed, 1]).standard_normal((centres, dim), dtype=np.float32))

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        noise = rng.standard_normal((count, self.dim), dtype=np.float32)
        noise *= self.spread / np.sqrt(self.dim)
        noise += self.centres[rng.integers(len(self.centres), size=count)]
        return normalise(noise)

    def chunk(self, lo: int) -> np.ndarray:
        return self.sample(np.random.default_rng([self.seed, 2, lo]), min(CHUNK, self.n - lo))

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for lo in range(0, self.n, CHUNK):
            yield lo, self.chunk(lo)


class Truth:
    """Exact top-``k`` ids of some queries, updated chunk by chunk while the index is filled."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.q, self.k = queries, k
        self.scores = np.full((len(queries), k), -np.inf, np.float32)
        self.ids = np.full((len(queries), k), -1, np.int64)

    def update(self, lo: int, vecs: np.ndarray) -> None:
        scores = np.hstack([self.scores, self.q @ vecs.T])
        ids = np.hstack([self.ids, np.broadcast_to(np.arange(lo, lo + len(vecs)), (len(self.q), len(vecs)))])
        top = np.argpartition(-scores, self.k - 1, axis=1)[:, :self.k]
        self.scores, self.ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)

    def best_first(self) -> np.ndarray:
        return np.take_along_axis(self.ids, np.argsort(-self.scores, axis=1), 1)


def planted(data: Data, rng: np.random.Generator, count: int) -> np.ndarray:
    """Near-duplicate queries of ``count`` stored vectors (only their chunks are regenerated)."""
    picked = np.sort(rng.choice(data.n, count, replace=False))
    rows = []
    for lo in np.unique(picked // CHUNK * CHUNK):
        vecs = data.chunk(int(lo))
        rows.append(vecs[picked[(picked >= lo) & (picked < lo + CHUNK)] - lo])  # a copy: the chunk is freed
    stored = np.vstack(rows)
    return normalise(stored + 0.3 * rng.standard_normal(stored.shape, dtype=np.float32) / np.sqrt(data.dim))


class TimedIndex(VectorIndex):
    """The facade, timing its IVF-PQ training separately from the adds."""

    train_s = 0.0

    def _train_ivfpq(self, ivf: Any, sample: np.ndarray) -> None:
        started = time.perf_counter()
        super()._train_ivfpq(ivf, sample)
        type(self).train_s += time.perf_counter() - started


def facade_predicted_gb(n: int, dim: int, m: int = IndexParams(dim=1).hnsw_m) -> float:
    return n * (4 * dim + 2 * m * 4 + 8) / 1e9  # vectors + level-0 links (2M int32) + the id map


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def measure(args: argparse.Namespace, kind: str, n: int) -> dict[str, Any]:
    """One row, in this process (main() runs each in a child process so that peak RSS is per row)."""
    defaults = IndexParams(dim=args.dim, nprobe=args.nprobe, pq_m=args.pq_m)
    params = defaults.model_copy(update={"ivfpq_threshold": 0}) if kind == "ivfpq" else defaults
    row: dict[str, Any] = {"kind": kind, "n": n, "facade_default_picks": defaults.kind_for(n),
                           "picked": params.kind_for(n)}
    if row["picked"] == "hnsw" and (facade_predicted_gb(n, args.dim) > args.max_gb or n > args.max_hnsw):
        row["skipped"] = (f"HNSW-Flat (the facade's default at this size) needs ~{facade_predicted_gb(n, args.dim):.1f}"
                          f" GB and a build of ~{1340 * n / 1e6 / 60:.0f}+ min on 2 cores (search_latency.json)")
        return row
    faiss.omp_set_num_threads(args.build_threads)
    data = Data(n, args.dim, args.centres, args.spread)
    rng = np.random.default_rng(12345)
    latency_q = data.sample(rng, args.repeats * args.subqueries)
    recall_q = np.vstack([data.sample(rng, 50), planted(data, rng, 50)])
    truth = Truth(recall_q, 10)
    generating = [0.0]

    def feed() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for lo in range(0, n, CHUNK):
            t = time.perf_counter()
            vecs = data.chunk(lo)
            truth.update(lo, vecs)  # the exact neighbours, in the same pass (not part of the build)
            generating[0] += time.perf_counter() - t
            yield np.arange(lo, lo + len(vecs), dtype=np.int64), vecs

    before, started = rss_mb(), time.perf_counter()
    index = TimedIndex.from_chunks(feed(), total=n, params=params)
    row["build_s"] = round(time.perf_counter() - started - generating[0], 1)
    row["train_s"] = round(TimedIndex.train_s, 1)
    row["add_s"] = round(row["build_s"] - row["train_s"], 1)
    row["generate_s"] = round(generating[0], 1)
    row["index"] = index.layout
    row["rss_growth_mb"] = round(rss_mb() - before, 1)
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        t = time.perf_counter()
        index.save(tmp)
        row["save_s"] = round(time.perf_counter() - t, 1)
        row["index_mb"] = round(os.path.getsize(Path(tmp) / "index.faiss") / 2**20, 1)
        t = time.perf_counter()
        loaded = VectorIndex.load(tmp)
        row["load_s"] = round(time.perf_counter() - t, 1)
        assert loaded.count == n
        del loaded
    faiss.omp_set_num_threads(1)
    index.search_arrays(latency_q[: args.subqueries], args.k)  # warm
    times = []
    for r in range(args.repeats):
        t = time.perf_counter()
        index.search_arrays(latency_q[r * args.subqueries:(r + 1) * args.subqueries], args.k)
        times.append(1000 * (time.perf_counter() - t))
    row["p50_ms"], row["p95_ms"] = round(float(np.percentile(times, 50)), 2), round(float(np.percentile(times, 95)), 2)
    got, exact = index.search_arrays(recall_q, args.k)[1], truth.best_first()
    row["recall10_in_k"] = round(float(np.mean([len(set(t) & set(g)) / 10 for t, g in
                                                   zip(exact[:50], got[:50])])), 3)
    row["recall1_planted"] = round(float(np.mean(got[50:, 0] == exact[50:, 0])), 3)
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def run_child(args: argparse.Namespace, kind: str, n: int) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--row", f"{kind}:{n}"] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("row", "sizes", "kinds", "out")]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        return {"kind": kind, "n": n, "error": done.stderr[-2000:], "seconds": round(time.perf_counter() - started)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def earlier_results(path: Path) -> list[dict[str, Any]]:
    """Earlier runs of this file (random vectors, raw faiss IVF-PQ, ...), kept under ``earlier``."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    previous = old.pop("earlier", [])
    return [*previous, old]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--kinds", default="ivfpq")
    parser.add_argument("--dim", type=int, default=384, help="twinseek's component embeddings (all-MiniLM-L6-v2)")
    parser.add_argument("--k", type=int, default=256, help="candidate_k: components per sub-query")
    parser.add_argument("--subqueries", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--pq-m", type=int, default=IndexParams(dim=1).pq_m)
    parser.add_argument("--nprobe", type=int, default=IndexParams(dim=1).nprobe)
    parser.add_argument("--centres", type=int, default=2000, help="clusters of the synthetic vectors")
    parser.add_argument("--spread", type=float, default=1.0, help="noise norm around a centre (1: cosine ~0.7)")
    parser.add_argument("--build-threads", type=int, default=1, help="faiss threads while building (OpenMP threads "
                        "spin on a busy machine: 2 threads trained 7x slower than 1 at load 5)")
    parser.add_argument("--max-gb", type=float, default=8.0, help="skip an HNSW-Flat index predicted to need more")
    parser.add_argument("--max-hnsw", type=int, default=500_000, help="skip HNSW-Flat above this N (build time)")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()), help="where index.faiss is "
                        "saved to measure it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        kind, n = args.row.split(":")
        print(json.dumps(measure(args, kind, int(n))), flush=True)
        return
    # up front: the index is saved there only after a build that can take most of an hour
    args.scratch.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    for n in args.sizes.split(","):
        for kind in args.kinds.split(","):
            rows.append(run_child(args, kind, int(n)))
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "benchmark": "component search at large N through VectorIndex (synthetic clustered unit vectors)",
        "command": " ".join(["benchmarks/index_scale.py", *sys.argv[1:]]),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "row"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "faiss": faiss.__version__,
                    "total_memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "rows": rows,
        "facade_hnsw_predicted_gb": {n: round(facade_predicted_gb(int(n), args.dim), 2) for n in args.sizes.split(",")},
        "earlier": earlier_results(args.out),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
