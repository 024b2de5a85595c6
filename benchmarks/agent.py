"""Agent latency and quality on a bench (default ../shared/data/dev-bench, implicit queries).

Per query: end-to-end latency and the per-node breakdown (p50/p95), and implicit R@1/R@5/MnR of the full agent
(the settings' defaults: on the embedded LLMs the 0.5B's decomposition and the 1.5B's judgement of the top 10
candidates' descriptions) against the
same run's retrieval-only agent (LLM reasoning and JiT off), scored by the eval's own evaluator
(``twinseek.evals.metrics.evaluate_query`` over ``AgentScorer``, as ``twinseek eval`` does).

The agent works on a copy of the store. ``--cold`` empties the copy's decomposition and judgement caches first, so
the full agent's latency includes asking the LLMs for each decomposition and judgement, as a user's new query does (the retrieval-only
run comes second and reuses them: its latency excludes decomposition). The embedded server is started and its
prompt prefixes warmed before the first query (as ``twinseek chat`` and the web app do).

    .venv/bin/python benchmarks/agent.py [--bench DIR] [--store DIR] [--k 10] [--limit N] [--cold] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from twinseek.agent.api import Agent
from twinseek.agent.judge import JudgementCache
from twinseek.config import load_settings
from twinseek.evals.bench import Bench, load_bench
from twinseek.evals.metrics import aggregate, evaluate_query
from twinseek.evals.scorers import AgentScorer
from twinseek.retrieval.decompose import DecompositionCache
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(agent: Agent, bench: Bench, ids: dict[str, str], k: int, **ctx: object) -> dict:  # type: ignore[type-arg]
    """Every query through the eval's own evaluator (``AgentScorer``: the hits, then the retrieval order)."""
    scorer = AgentScorer(agent, ids, k=k, switches=ctx)  # type: ignore[arg-type]
    records = []
    for q in bench.queries:
        records.append(evaluate_query(scorer, q, bench))
        r = records[-1]
        print(f"  {q.id} rank={r.rank} {r.seconds:.1f}s {[x.video for x in r.ranking[:3]]}", flush=True)
    metrics = aggregate(records, ks=(1, 5))
    totals = [r.seconds for r in records]
    nodes: dict[str, list[float]] = {}
    for r in records:
        for node, secs in r.timings.items():
            nodes.setdefault(node, []).append(secs)
    return {
        "r@1": metrics["implicit_r@1"], "r@5": metrics["implicit_r@5"], "mnr": metrics["implicit_mnr"],
        "latency_p50_s": round(statistics.median(totals), 2), "latency_p95_s": round(percentile(totals, 0.95), 2),
        "node_p50_s": {n: round(statistics.median(v), 3) for n, v in nodes.items()},
        "node_p95_s": {n: round(percentile(v, 0.95), 3) for n, v in nodes.items()},
        "ranks": [r.rank for r in records],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--store", type=Path, default=Path.home() / ".cache" / "twinseek" / "bench-stores" / "dev")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cold", action="store_true", help="no cached decomposition: the LLM decomposes each query")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "agent.json")
    args = parser.parse_args()

    bench = load_bench(args.bench, kinds=["implicit"])
    bench = bench.model_copy(update={"queries": bench.queries[: args.limit]})
    settings = load_settings(store=args.store)
    with TwinStore(args.store) as store:  # bench id -> store id (an ingested video is skipped, its id kept)
        ingestor = Ingestor(store, settings)
        done = {v: ingestor.ingest_many([path])[0] for v, path in sorted(bench.videos.items())}
    ids = {v: r.video_id for v, r in done.items() if r.video_id is not None and r.status != "failed"}
    # refinement writes what it learns into the store: work on a copy so the cached store stays as ingested
    work = Path(tempfile.mkdtemp(prefix="twinseek-agent-bench-")) / "store"
    shutil.copytree(args.store, work)
    if args.cold:  # a new query: neither its decomposition nor its judge's answers are cached
        with TwinStore(work) as store:
            DecompositionCache(store).clear()
            JudgementCache(store).clear()
    load_before = os.getloadavg()[0]
    with Agent.open(work) as agent:
        agent.search("warm-up: a person walking", k=args.k, lr=False)  # loads the encoders (no LLM cache entry)
        warm = agent.resources.warm()
        if warm is not None:
            warm.join()
        print("full agent (the settings' defaults)")
        full = run(agent, bench, ids, args.k)
        print("retrieval only (LR and JiT off)")
        retrieval = run(agent, bench, ids, args.k, lr=False, jit=False)
        defaults = agent.context(args.k)
    summary = {"queries": len(bench.queries), "k": args.k, "llm": settings.llm.embedded_model,
               "llm_threads": settings.llm.threads, "cold_decompositions": args.cold,
               "judge": defaults.judge, "judge_top": defaults.judge_top,
               "load_avg_before": round(load_before, 2), "load_avg_after": round(os.getloadavg()[0], 2),
               "full_agent": full, "retrieval_only": retrieval}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    for name, r in (("retrieval only", retrieval), ("full agent", full)):
        print(f"{name:16s} R@1 {r['r@1']:.3f}  R@5 {r['r@5']:.3f}  p50 {r['latency_p50_s']:.2f}s  "
              f"p95 {r['latency_p95_s']:.2f}s  nodes p50 {r['node_p50_s']}")


if __name__ == "__main__":
    main()
