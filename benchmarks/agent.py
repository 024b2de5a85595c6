"""Agent latency and quality on a bench (default ../shared/data/dev-bench, implicit queries).

Per query: end-to-end latency and the per-node breakdown (p50/p95), and implicit R@1/R@5 of the full agent
against the same run's retrieval-only agent (LLM reasoning and JiT off).

    .venv/bin/python benchmarks/agent.py [--bench DIR] [--store DIR] [--k 5] [--limit N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from twinseek.agent.api import Agent
from twinseek.config import load_settings
from twinseek.evals.bench import load_bench
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(agent: Agent, queries: list, k: int, **ctx: object) -> dict:  # type: ignore[type-arg]
    ranks, totals, nodes = [], [], {}
    for q in queries:
        start = time.perf_counter()
        result = agent.search(q.text, k=k, **ctx)
        totals.append(time.perf_counter() - start)
        for node, secs in result.timings.items():
            nodes.setdefault(node, []).append(secs)
        order = [h.video_id for h in result.hits]
        ranks.append(next((i + 1 for i, v in enumerate(order) if v in q.positives), None))
        print(f"  {q.id} rank={ranks[-1]} {totals[-1]:.1f}s {order[:3]}", flush=True)
    return {
        "r@1": sum(r == 1 for r in ranks) / len(ranks),
        "r@5": sum(r is not None and r <= 5 for r in ranks) / len(ranks),
        "latency_p50_s": round(statistics.median(totals), 2), "latency_p95_s": round(percentile(totals, 0.95), 2),
        "node_p50_s": {n: round(statistics.median(v), 3) for n, v in nodes.items()},
        "node_p95_s": {n: round(percentile(v, 0.95), 3) for n, v in nodes.items()},
        "ranks": ranks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--store", type=Path, default=Path.home() / ".cache" / "twinseek" / "bench-stores" / "dev")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "agent.json")
    args = parser.parse_args()

    bench = load_bench(args.bench, kinds=["implicit"])
    queries = bench.queries[: args.limit]
    settings = load_settings(store=args.store)
    with TwinStore(args.store) as store:
        Ingestor(store, settings).ingest_many(sorted(bench.videos.values()))
    # refinement writes what it learns into the store: work on a copy so the cached store stays as ingested
    work = Path(tempfile.mkdtemp(prefix="twinseek-agent-bench-")) / "store"
    shutil.copytree(args.store, work)
    with Agent.open(work) as agent:
        agent.search("warm-up: a person walking", k=args.k)  # starts the LLM server, loads the encoders
        print("retrieval only (LR and JiT off)")
        retrieval = run(agent, queries, args.k, lr=False, jit=False)
        print("full agent, the LLM decides (llm_weight 1.0, the paper)")
        full = run(agent, queries, args.k, llm_weight=1.0)
        print("full agent, relevance blended with retrieval (llm_weight 0.5, the embedded default)")
        blended = run(agent, queries, args.k, llm_weight=0.5)
    summary = {"queries": len(queries), "k": args.k, "llm": settings.llm.embedded_model,
               "llm_threads": settings.llm.threads, "full_agent": full, "full_agent_blend_0.5": blended,
               "retrieval_only": retrieval}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    for name, r in (("retrieval only", retrieval), ("full agent", full), ("full, blend 0.5", blended)):
        print(f"{name:16s} R@1 {r['r@1']:.3f}  R@5 {r['r@5']:.3f}  p50 {r['latency_p50_s']:.2f}s  "
              f"p95 {r['latency_p95_s']:.2f}s  nodes p50 {r['node_p50_s']}")


if __name__ == "__main__":
    main()
