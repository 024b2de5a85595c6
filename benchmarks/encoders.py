"""The text encoders compared (#21): index build time, query latency and memory per encoder, and the R@1 per
query kind and fold of an eval run made with each (``twinseek eval DEV --systems full-lr,dense,compositional``
with ``TWINSEEK_RETRIEVAL__TEXT_ENCODER=<name>`` on its own copy of a store).

    .venv/bin/python benchmarks/encoders.py --store STORE --bench DEV \\
        --run minilm=RUN1/results.json --run mpnet=RUN2/results.json --run nomic=RUN3/results.json

Each encoder is measured in its own process (``--measure NAME``), so its peak RSS is its own: both indexes of a
fresh copy of STORE are rebuilt with it (``build_s``), then the bench's first ``--queries`` queries are each encoded and searched
in both indexes (``query_ms``: p50 and mean). nomic's llama.cpp server is a child process: its RSS is added.
The default is chosen on fold ``--choose-fold`` (the mean R@1 of full-lr over the implicit, explicit and negation
queries) and reported on the other fold.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from folds import per_fold  # benchmarks/ is on sys.path when run as a script

from twinseek.agent.resources import text_encoders
from twinseek.config import load_settings
from twinseek.llm.embeddings import nomic_embeddings
from twinseek.retrieval.components import ComponentIndex
from twinseek.retrieval.dense import DenseIndex
from twinseek.twins.store import TwinStore

KINDS = ("implicit_r@1", "explicit_r@1", "negation_r@1", "mcq_accuracy", "counterfactual_accuracy")
CHOICE_KINDS = ("implicit_r@1", "explicit_r@1", "negation_r@1")
ENCODERS = ("minilm", "mpnet", "nomic")


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(name: str, store_dir: Path, bench: Path, limit: int) -> dict[str, Any]:
    """Build both indexes of a copy of ``store_dir`` with encoder ``name``, then time the bench's queries."""
    settings = load_settings(retrieval={"text_encoder": name})
    rows = [json.loads(line) for line in (bench / "queries.jsonl").read_text().splitlines() if line.strip()]
    queries = [r["text"] for r in rows if r.get("text")][:limit]
    with tempfile.TemporaryDirectory(prefix=f"enc-{name}-") as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(store_dir, copy)
        t0 = time.perf_counter()
        encoders, embedder = text_encoders(settings)
        with TwinStore(copy) as store:
            components = ComponentIndex(store, encoders, settings.retrieval)
            dense = DenseIndex(store, embedder, settings.retrieval)
            load_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            built = [components.rebuild(), dense.rebuild()]
            build_s = time.perf_counter() - t1
            times = []
            for text in queries:
                t = time.perf_counter()
                components.search(encoders.encode_queries([text]), 10)
                dense.search_text(text, 10)
                times.append((time.perf_counter() - t) * 1000)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        server_rss = 0
        if name == "nomic":
            server = nomic_embeddings(settings).server
            server_rss = _rss_kb(server._proc.pid) if server._proc is not None else 0
            server.stop()
    return {"encoder": name, "dim": encoders.dim, "load_s": round(load_s, 2), "build_s": round(build_s, 2),
            "items": {r.index: r.items for r in built}, "queries": len(times),
            "query_ms_p50": round(statistics.median(times), 1), "query_ms_mean": round(statistics.fmean(times), 1),
            "rss_mb": round((rss + server_rss) / 1024), "server_rss_mb": round(server_rss / 1024)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--bench", type=Path, required=True)
    ap.add_argument("--run", action="append", default=[], help="NAME=results.json of an eval run with NAME")
    ap.add_argument("--encoders", default=",".join(ENCODERS))
    ap.add_argument("--queries", type=int, default=40, help="bench queries timed (the first N)")
    ap.add_argument("--choose-fold", type=int, default=0)
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # child mode: one encoder, JSON on stdout
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "encoders.json")
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.store, args.bench, args.queries)))
        return 0
    report: dict[str, Any] = {"encoders": {}, "choose_fold": args.choose_fold}
    runs = dict(r.split("=", 1) for r in args.run)
    for name in args.encoders.split(","):
        child = subprocess.run([sys.executable, __file__, "--measure", name, "--store", str(args.store),
                                "--bench", str(args.bench), "--queries", str(args.queries)], check=True, capture_output=True, text=True,
                               env=os.environ)
        entry = json.loads(child.stdout.strip().splitlines()[-1])
        if name in runs:
            results = json.loads(Path(runs[name]).read_text())
            folds = per_fold(results, results["config"].get("tau", 0.5))
            entry["r@1"] = {system: {str(f): {k: round(m[k], 3) for k in KINDS if k in m} for f, m in by_fold.items()}
                            for system, by_fold in folds.items()}
        report["encoders"][name] = entry
        print(json.dumps(entry), flush=True)
    scored = {n: statistics.fmean(e["r@1"]["full-lr"][str(args.choose_fold)][k] for k in CHOICE_KINDS)
              for n, e in report["encoders"].items() if "r@1" in e}
    if scored:
        report["chosen_on_fold"] = {"fold": args.choose_fold, "mean_r@1": {k: round(v, 3) for k, v in scored.items()},
                                    "best": max(scored, key=lambda n: scored[n])}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
