"""A new search's latency right after clients dropped their streamed searches, next to the same search on an idle
server (issue 28: dropped searches must not keep the LLM busy).

The app is served by uvicorn on a loopback port in this process, with the embedded LLM (llama.cpp, Qwen2.5-Coder
0.5B). One query is timed through ``GET /api/search/stream`` (read to its ``result``) with reasoning and LLM
decomposition on: first on the idle server, ``--repeats`` times; then, ``--repeats`` rounds of: ``--drop`` clients
start streams of new queries (their decompositions are not cached), read for ``--drop-after`` seconds and hang
up, and the timed query runs again at once. The timed query's cached decomposition is deleted before each run, so every
run, idle or after the drops, asks the LLM for it: the same work each time.

    PYTHONPATH=. .venv/bin/python benchmarks/web_dropped_streams.py [--store DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import threading
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
QUERY = "a black swan swimming"
SWITCHES = {"lr": "true", "qd": "true", "jit": "false", "k": "3"}
DROPPED = ["a red car circling", "a rider jumping a fence", "a bird with a long neck", "a vehicle on a road",
           "a horse in a field", "dark water with a bird", "a white car turning", "someone riding at speed",
           "a swan near the bank", "traffic around a circle", "a jump over a bar", "a bird gliding slowly"]


def timed_search(http: httpx.Client, store: Path) -> float:
    """The timed query, its cached decomposition removed first: every run asks the LLM for it (the embedded
    default judges no candidate, so the decomposition is the LLM's work in a search)."""
    with sqlite3.connect(store / "twins.db") as db:
        db.execute("delete from decompositions where query = ?", [QUERY])
    start = time.perf_counter()
    with http.stream("GET", "/api/search/stream", params={"q": QUERY, **SWITCHES}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line == "event: result":
                break
            if line == "event: failure":
                raise RuntimeError("the timed search failed")
    return time.perf_counter() - start


def drop(base: str, query: str, after_s: float, seen: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=120) as http, \
            http.stream("GET", "/api/search/stream", params={"q": query, **SWITCHES}) as response:
        end = time.monotonic() + after_s
        for line in response.iter_lines():
            if line.startswith("event:"):
                seen.append(line[7:])
            if time.monotonic() >= end:
                break
    # leaving the block closes the connection mid-stream: the client hung up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="A store of the bundled clips (copied).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--drop", type=int, default=4, help="Clients that drop their stream per round.")
    parser.add_argument("--drop-after", type=float, default=2.0, help="Seconds each of them reads first.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "web-dropped-streams.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="twinseek-drop-") as tmp:
        store = Path(tmp) / "store"
        if args.store:
            shutil.copytree(args.store, store)
        else:
            with TwinStore(store) as s:
                Ingestor(s, load_settings(store=store)).ingest_many(sample_clips())
        with Agent.open(store) as agent:
            warm = agent.resources.warm()
            if warm is not None:
                warm.join()
            app = create_app(WebSettings(store=store, warm_llm=False), agent=agent)
            with background_server(app) as base, httpx.Client(base_url=base, timeout=300) as http:
                timed_search(http, store)  # warm-up (encoders, the LLM's prompt cache)
                idle = [timed_search(http, store) for _ in range(args.repeats)]
                print(f"idle: {', '.join(f'{s:.2f}s' for s in idle)}", flush=True)
                after: list[float] = []
                queries = iter(DROPPED * 4)
                seen_all: list[list[str]] = []
                for round_ in range(args.repeats):
                    seen: list[str] = []
                    threads = [threading.Thread(target=drop, args=(base, next(queries), args.drop_after, seen))
                               for _ in range(args.drop)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    after.append(timed_search(http, store))
                    seen_all.append(sorted(set(seen)))
                    print(f"round {round_ + 1}: {args.drop} streams dropped after {args.drop_after:g}s (events seen: "
                          f"{', '.join(sorted(set(seen)))}); the new search took {after[-1]:.2f}s", flush=True)
        stop_embedded_servers()
    ratio = statistics.median(after) / statistics.median(idle)
    result: dict[str, Any] = {
        "query": QUERY, "switches": SWITCHES, "llm": "embedded (llama.cpp, qwen2.5-coder-0.5b)",
        "dropped_per_round": args.drop, "drop_after_s": args.drop_after, "rounds": args.repeats,
        "idle_s": [round(s, 3) for s in idle], "after_drops_s": [round(s, 3) for s in after],
        "idle_median_s": round(statistics.median(idle), 3), "after_drops_median_s": round(statistics.median(after), 3),
        "ratio": round(ratio, 3), "target": "<= 1.3", "events_seen_by_dropped_clients": seen_all,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1m": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
