"""Search latency through the web app's ``GET /api/search`` next to ``Agent.search`` on the same agent, store
and queries, in the same run.

The app is served by uvicorn on a loopback port in this process and searched over HTTP (httpx), so the API
number includes routing, the worker-thread hop, JSON serialisation and the socket. Each query is searched both
ways, alternately (direct, API, direct, API, ...), after one untimed warm-up per query and mode: the agent caches
LLM decompositions per query text, so both sides see the same cache state. Modes:

- ``retrieval``: reasoning off (lr, jit off; decomposition by rules): no LLM at all;
- ``reasoning``: the embedded LLM judges each candidate (jit off; ``--k`` candidates); skip with ``--no-llm``.

    .venv/bin/python benchmarks/web.py [--store DIR] [--repeats 3] [--no-llm] [--out FILE]

Without ``--store``, the three bundled clips are ingested into a temporary store first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from twinseek.agent.api import Agent
from twinseek.config import load_settings
from twinseek.data import sample_clips
from twinseek.llm.server import stop_embedded_servers
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore
from twinseek.web import WebSettings, background_server, create_app

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["a black swan swimming", "a car driving around a roundabout", "a horse jumping over a fence",
           "a dark bird gliding on a pond", "a rider on a brown horse"]
MODES: dict[str, dict[str, Any]] = {
    "retrieval": {"lr": False, "jit": False, "qd": False},
    "reasoning": {"lr": True, "jit": False, "qd": True},
}


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"p50_ms": round(1000 * statistics.median(ordered), 1),
            "p90_ms": round(1000 * ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))], 1),
            "mean_ms": round(1000 * statistics.fmean(ordered), 1)}


def measure(agent: Agent, http: httpx.Client, mode: str, k: int, repeats: int) -> dict[str, Any]:
    switches = MODES[mode]
    params = {"k": k, **{key: str(v).lower() for key, v in switches.items()}}
    direct: list[float] = []
    api: list[float] = []
    same_ranking = True
    for query in QUERIES:
        agent.search(query, k=k, **switches)  # warm-up: decomposition cache, encoders, LLM slots
        http.get("/api/search", params={"q": query, **params}).raise_for_status()
        for _ in range(repeats):
            start = time.perf_counter()
            result = agent.search(query, k=k, **switches)
            direct.append(time.perf_counter() - start)
            start = time.perf_counter()
            response = http.get("/api/search", params={"q": query, **params})
            api.append(time.perf_counter() - start)
            response.raise_for_status()
            same_ranking &= [h["video_id"] for h in response.json()["hits"]] == [h.video_id for h in result.hits]
        print(f"  {mode} {query!r}: direct {1000 * statistics.median(direct[-repeats:]):.0f} ms, "
              f"api {1000 * statistics.median(api[-repeats:]):.0f} ms", flush=True)
    overhead = [a - d for a, d in zip(api, direct)]
    return {"switches": switches, "k": k, "searches_each": len(direct), "agent_search": summary(direct),
            "api_search": summary(api), "api_overhead_ms_p50": round(1000 * statistics.median(overhead), 1),
            "api_over_agent_p50": round(statistics.median(api) / statistics.median(direct), 3),
            "same_ranking": same_ranking}


def build_store(root: Path) -> Path:
    with TwinStore(root) as store:
        results = Ingestor(store, load_settings(store=root)).ingest_many(sample_clips())
    if any(r.status == "failed" for r in results):
        raise SystemExit(f"ingest failed: {[r.error for r in results if r.error]}")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=None, help="a store (default: the bundled clips, ingested)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--no-llm", action="store_true", help="only the retrieval mode (no embedded LLM)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "web.json")
    args = parser.parse_args()

    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="twinseek-web-bench-") as tmp:
        store = args.store or build_store(Path(tmp) / "store")
        modes = ["retrieval"] if args.no_llm else ["retrieval", "reasoning"]
        results: dict[str, Any] = {}
        try:
            with Agent.open(store) as agent, background_server(create_app(WebSettings(store=store, warm_llm=False), agent=agent)) \
                    as url, httpx.Client(base_url=url, timeout=600) as http:
                for mode in modes:
                    results[mode] = measure(agent, http, mode, args.k, args.repeats)
                    if mode == "reasoning":
                        results[mode]["llm"] = agent.resources.llm.tier + ":" + agent.resources.llm.model
        finally:
            stop_embedded_servers()
    out = {"what": "GET /api/search over HTTP vs Agent.search, same agent/store/queries, alternating",
           "queries": QUERIES, "repeats": args.repeats, "modes": results,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "loadavg_before": [round(x, 2) for x in load],
                       "loadavg_after": [round(x, 2) for x in os.getloadavg()]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
