"""Embedded LLM benchmark: prompt and generation tokens/s, and query-decomposition latency and outputs.

For each embedded model: load time, prompt-processing and generation speed (from llama.cpp's ``timings``), the
first (cold, prompt prefix not cached) decomposition and the p50 over our own queries (prefix cached), and the
decompositions themselves for a qualitative look. The CPU may be shared: the load average is recorded too.

    .venv/bin/python benchmarks/llm.py [--models qwen2.5-coder-0.5b qwen2.5-coder-1.5b] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from twinseek.config import load_settings
from twinseek.llm.client import LLMClient
from twinseek.llm.embedded import EMBEDDED_MODELS, assemble_model
from twinseek.llm.server import EmbeddedServer
from twinseek.retrieval.decompose import Decomposer

ROOT = Path(__file__).resolve().parent.parent

# Our own queries (not from the eval bench): implicit references, negation, relations, time.
QUERIES = [
    "the animal that gives us wool grazing next to a stone wall",
    "a vehicle with a siren speeding through an intersection at night",
    "a child who is not wearing shoes jumping into a swimming pool",
    "the instrument with 88 keys being played in a living room",
    "a bird that cannot fly waddling across the ice",
    "someone repairing a flat tyre of a bicycle, then riding away",
    "a person holding an umbrella although no rain is falling",
    "the tallest land animal eating leaves from a tree",
    "two people playing the sport invented by James Naismith in a gym",
    "a red boat moored behind a wooden pier at sunset",
]

# ~300 tokens of text that is never cached (a nonce goes first).
_LONG = (
    "Describe the following scene in one sentence. A narrow street in an old town, cobblestones wet after rain, "
    "a baker carrying trays of bread into a shop with a green awning, two children chasing a small brown dog "
    "past a fountain, pigeons lifting off from the square, a delivery van reversing slowly while its driver "
    "checks the mirror, laundry hanging between balconies, a cyclist ringing a bell, an old man reading a "
    "newspaper on a bench, shop signs in several languages, a cat asleep on a windowsill among flower pots, "
    "church bells ringing in the distance, clouds breaking up to let sunlight onto the roofs. "
) * 2


def _timings(resp: Any) -> dict[str, float]:
    return dict((resp.model_extra or {}).get("timings", {}))


def speed(client: LLMClient) -> dict[str, float]:
    """Prompt tokens/s on an uncached prompt and generation tokens/s on a 64-token answer."""
    sdk = client._client()
    prompt_tps, gen_tps = [], []
    for i in range(3):
        resp = sdk.chat.completions.create(
            model=client.model, messages=[{"role": "user", "content": f"[{time.time_ns()}-{i}] {_LONG}"}],
            max_tokens=64, temperature=0, extra_body={"cache_prompt": False, "ignore_eos": True},
        )
        t = _timings(resp)
        prompt_tps.append(t["prompt_per_second"])
        gen_tps.append(t["predicted_per_second"])
        prompt_n = t["prompt_n"]
    return {
        "prompt_tokens": prompt_n,
        "prompt_tok_s_median": round(statistics.median(prompt_tps), 1),
        "generation_tok_s_median": round(statistics.median(gen_tps), 1),
        "prompt_tok_s_all": [round(x, 1) for x in prompt_tps],
        "generation_tok_s_all": [round(x, 1) for x in gen_tps],
    }


def decomposition(client: LLMClient, queries: list[str]) -> dict[str, Any]:
    """Latency of the first (cold) decomposition and p50 over ``queries`` (prefix cached), with the outputs."""
    decomposer = Decomposer()  # no cache: every query goes to the LLM
    t0 = time.perf_counter()
    decomposer.decompose("a horse that is not brown jumping over a fence", client)
    cold = time.perf_counter() - t0
    latencies, outputs = [], []
    for q in queries:
        t0 = time.perf_counter()
        d = decomposer.decompose(q, client).decomposition
        latencies.append(time.perf_counter() - t0)
        outputs.append({"query": q, "seconds": round(latencies[-1], 2), **d.model_dump()})
    return {
        "cold_first_s": round(cold, 2),
        "p50_s": round(statistics.median(latencies), 2),
        "mean_s": round(statistics.mean(latencies), 2),
        "max_s": round(max(latencies), 2),
        "fallbacks": sum(o["source"] == "fallback" for o in outputs),
        "outputs": outputs,
    }


def run_model(name: str, threads: int, n_parallel: int, queries: list[str]) -> dict[str, Any]:
    settings = load_settings(
        llm={"embedded_model": name, "threads": threads, "n_parallel": n_parallel, "timeout_s": 300}
    )
    path = assemble_model(EMBEDDED_MODELS[name], settings.cache_dir)
    t0 = time.perf_counter()
    with EmbeddedServer(path, threads=threads, context=settings.llm.context, n_parallel=n_parallel) as server:
        load_s = time.perf_counter() - t0
        client = LLMClient(settings.llm, tier="embedded", base_url=server.base_url)
        result = {"model": name, "threads": threads, "n_parallel": n_parallel, "file": path.name, "bytes": path.stat().st_size, "load_s": round(load_s, 2)}
        result["load_avg_before"] = os.getloadavg()[0]
        result["speed"] = speed(client)
        result["decompose"] = decomposition(client, queries)
        result["load_avg_after"] = os.getloadavg()[0]
        client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(EMBEDDED_MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1, help="server slots (1: clean single-request timing)")
    parser.add_argument("--queries", type=int, default=len(QUERIES), help="how many of the queries to time")
    parser.add_argument("--merge", action="store_true", help="keep other models' results already in --out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "llm.json")
    args = parser.parse_args()
    for name in args.models:
        print(f"== {name}", flush=True)
        r = run_model(name, args.threads, args.parallel, QUERIES[: args.queries])
        print(json.dumps({k: v for k, v in r.items() if k != "decompose"}, indent=1))
        print({k: v for k, v in r["decompose"].items() if k != "outputs"}, flush=True)
        _save(args.out, r, merge=args.merge or name != args.models[0])


def _save(out: Path, result: dict[str, Any], *, merge: bool) -> None:
    """Write after each model (a slow second model must not lose the first one's numbers)."""
    results = json.loads(out.read_text())["results"] if merge and out.exists() else []
    key = (result["model"], result["threads"])
    results = [r for r in results if (r["model"], r.get("threads")) != key] + [result]
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "note": "CPU shared with other jobs: timings are noisy; see load_avg_*.",
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
