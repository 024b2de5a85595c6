"""Retrieval quality on a bench (default ../shared/data/dev-bench): compositional, dense, fused and reranked
retrieval against the naive MobileNet-label baseline, all in one run over the same store.

    .venv/bin/python benchmarks/retrieval.py [--bench DIR] [--store DIR] [--kinds implicit,explicit,...]
        [--rerank-top 5] [--reranker llm] [--ecr template|llm] [--out FILE]

The store is ingested once (cached under ~/.cache/twinseek/bench-stores/) and reused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from twinseek.agent import Agent
from twinseek.config import load_settings
from twinseek.evals.baselines import NaiveLabelBaseline
from twinseek.evals.bench import load_bench
from twinseek.evals.metrics import evaluate
from twinseek.evals.scorers import RetrievalScorer
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore

ROOT = Path(__file__).resolve().parent.parent
HEADLINE = ("implicit_r@1", "implicit_r@5", "implicit_mnr", "explicit_r@1", "explicit_r@5", "explicit_mnr",
            "negation_r@1", "counterfactual_accuracy", "mcq_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--store", type=Path, default=Path.home() / ".cache" / "twinseek" / "bench-stores" / "dev")
    parser.add_argument("--kinds", default="implicit,explicit,negation")
    parser.add_argument("--ecr", default="template", choices=["template", "llm"])
    parser.add_argument("--reranker", default="llm", choices=["llm", "listwise", "none"])
    parser.add_argument("--rerank-top", type=int, default=5)
    parser.add_argument("--no-llm", action="store_true", help="Rule-based decomposition only.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval.json")
    args = parser.parse_args()

    bench = load_bench(args.bench, kinds=args.kinds.split(","))
    settings = load_settings(store=args.store, retrieval={"ecr": args.ecr, "reranker": args.reranker})
    with TwinStore(args.store) as store:
        Ingestor(store, settings).ingest_many(sorted(bench.videos.values()))
    # decompositions are cached in the store: each query is asked of the LLM once, whatever the system
    with Agent.open(args.store, retrieval={"ecr": args.ecr, "reranker": args.reranker}) as agent:
        use_llm = not args.no_llm
        systems = {tool: RetrievalScorer(agent, tool, use_llm=use_llm) for tool in ("compositional", "dense", "fused")}
        if args.reranker != "none":
            systems[f"fused+{args.reranker}@{args.rerank_top}"] = RetrievalScorer(
                agent, "fused", use_llm=use_llm, reranker=args.reranker, rerank_top=args.rerank_top)
        baseline = NaiveLabelBaseline()
        baseline.index(bench.videos)
        results: dict[str, dict] = {}
        start = time.perf_counter()
        results["naive-baseline"] = {"metrics": evaluate(baseline, bench)[1]}
        for name, scorer in systems.items():
            t0 = time.perf_counter()
            _, metrics = evaluate(scorer, bench)
            per_query = [t["total"] for t in scorer.timings]
            results[name] = {"metrics": metrics, "seconds": round(time.perf_counter() - t0, 1),
                             "p50_query_s": round(statistics.median(per_query), 3) if per_query else None}
            print(name, {k: round(v, 3) for k, v in metrics.items() if k in HEADLINE}, flush=True)
    summary = {"bench": str(args.bench), "kinds": args.kinds, "ecr": args.ecr, "llm": settings.llm.embedded_model,
               "decomposition": "rules" if args.no_llm else "llm", "total_s": round(time.perf_counter() - start, 1),
               "systems": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"{'system':28s}" + "".join(f"{k:>14s}" for k in HEADLINE if any(k in r['metrics'] for r in results.values())))
    for name, r in results.items():
        print(f"{name:28s}" + "".join(f"{r['metrics'][k]:14.3f}" for k in HEADLINE if k in r["metrics"]))


if __name__ == "__main__":
    main()
