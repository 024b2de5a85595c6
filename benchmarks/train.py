"""Does training the embedders help? Before/after numbers on a bench (default ../shared/data/dev-bench).

    .venv/bin/python benchmarks/train.py [--bench DIR] [--store DIR] [--work DIR] [--epochs 1] [--out FILE]

1. Text encoder (TARA recipe, text only): triplets built from the curated caption grammar and the store's own
   ECR texts (never the bench's queries; a leak filter drops any overlap), MiniLM fine-tuned; dense search
   (video = its ECR/gist text) scored before and after: counterfactual accuracy, negation R@1/R@5, explicit R@1.
2. Twin encoders: template sub-queries from the store's twins, compositional InfoNCE; compositional search with
   rule-based decomposition scored before and after: implicit R@1, explicit R@1.

The store (default: the cached dev-bench store that benchmarks/retrieval.py also uses, ingested here when missing)
is copied, never modified.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from twinseek.agent import Agent
from twinseek.config import load_settings
from twinseek.embedders.data import LeakFilter, build_triplets, grammar_sentences, store_sentences, twin_pairs
from twinseek.embedders.trainer import (
    TextTrainConfig,
    TwinTrainConfig,
    ecr_pairs_from_store,
    retrieval_overrides,
    train_text,
    train_twin,
)
from twinseek.evals.bench import load_bench
from twinseek.evals.metrics import evaluate as evaluate_bench
from twinseek.evals.scorers import RetrievalScorer
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore

ROOT = Path(__file__).resolve().parent.parent
TEXT_KEYS = ("counterfactual_accuracy", "negation_r@1", "negation_r@5", "explicit_r@1")
TWIN_KEYS = ("implicit_r@1", "implicit_r@5", "explicit_r@1")


def evaluate(store_root: Path, bench_root: Path, kinds: list[str], tool: str, retrieval: dict[str, str]) -> dict:
    """Metrics of one retrieval tool on a fresh copy of the store (indexes rebuilt for the encoders)."""
    bench = load_bench(bench_root, kinds=kinds)
    work = Path(tempfile.mkdtemp(prefix="twinseek-eval-"))
    shutil.copytree(store_root, work / "store")
    try:
        with Agent.open(work / "store", retrieval={"ecr": "template", "reranker": "none", **retrieval}) as agent:
            return evaluate_bench(RetrievalScorer(agent, tool, use_llm=False), bench)[1]  # type: ignore[arg-type]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--store", type=Path, default=Path.home() / ".cache" / "twinseek" / "bench-stores" / "dev")
    parser.add_argument("--work", type=Path, default=None, help="Where runs and models go (default: a temp dir).")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sentences", type=int, default=400, help="Grammar captions for the text triplets.")
    parser.add_argument("--twin-epochs", type=int, default=2)
    # 3e-5 for 40/30 steps cost 0.08 explicit R@1 (forgetting); 1e-5 for 15/10 steps did not
    parser.add_argument("--text-steps", type=int, default=15, help="Cap on text training steps (CPU budget).")
    parser.add_argument("--twin-steps", type=int, default=10, help="Cap on twin training steps (CPU budget).")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = args.work or Path(tempfile.mkdtemp(prefix="twinseek-train-"))
    store = work / "store"
    with TwinStore(args.store) as source:  # ingest what is missing (a no-op on a complete store)
        Ingestor(source, load_settings(store=args.store)).ingest_many(
            sorted(load_bench(args.bench, kinds=["explicit"]).videos.values()))
    if not store.exists():
        shutil.copytree(args.store, store)  # the source store is never touched
    leak = LeakFilter.from_bench(args.bench)
    timings: dict[str, float] = {}

    # -- text encoder -------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    sentences = grammar_sentences(args.sentences, args.seed) + store_sentences(store)
    triplets = build_triplets(sentences, "grammar+store", args.seed, leak_filter=leak)
    text_kinds = ["counterfactual", "negation", "explicit"]
    before_text = evaluate(store, args.bench, text_kinds, "dense", {})
    cfg = TextTrainConfig(run_dir=work / "runs" / "text", epochs=args.epochs, batch_size=32, lr=args.lr,
                          seed=args.seed, max_steps=args.text_steps, progress=False)
    text = train_text(triplets, cfg, work / "models" / "text")
    after_text = evaluate(store, args.bench, text_kinds, "dense", retrieval_overrides(text.output))
    timings["text_s"] = round(time.perf_counter() - t0, 1)

    # -- twin encoders ------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    pairs = twin_pairs(store, args.seed, leak_filter=leak)
    twin_kinds = ["implicit", "explicit"]
    before_twin = evaluate(store, args.bench, twin_kinds, "compositional", {})
    tcfg = TwinTrainConfig(run_dir=work / "runs" / "twin", epochs=args.twin_epochs, batch_size=32, lr=args.lr,
                           seed=args.seed, curriculum=True, max_steps=args.twin_steps,
                           progress=False)
    caps = [t for t in triplets if t.kind != "composed"][:400]
    twin = train_twin(pairs, tcfg, work / "models" / "twin", ecr_pairs=ecr_pairs_from_store(store), captions=caps)
    after_twin = evaluate(store, args.bench, twin_kinds, "compositional", retrieval_overrides(twin.output))
    timings["twin_s"] = round(time.perf_counter() - t0, 1)

    rows = [(f"text/dense {k}", before_text.get(k), after_text.get(k)) for k in TEXT_KEYS]
    rows += [(f"twin/compositional {k}", before_twin.get(k), after_twin.get(k)) for k in TWIN_KEYS]
    summary = {
        "bench": str(args.bench), "store": str(args.store), "decomposition": "rules", "timings": timings,
        "text": {"triplets": len(triplets), "steps": text.steps, "first_loss": text.first_loss, "last_loss": text.loss,
                 "before": before_text, "after": after_text},
        "twin": {"pairs": len(pairs), "steps": twin.steps, "first_loss": twin.first_loss, "last_loss": twin.loss,
                 "before": before_twin, "after": after_twin},
        "table": [{"metric": m, "before": b, "after": a} for m, b, a in rows],
        "config": {"text": json.loads(cfg.model_dump_json()), "twin": json.loads(tcfg.model_dump_json())},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=str))
    print(f"{'metric':36s}{'before':>10s}{'after':>10s}{'delta':>10s}")
    for metric, b, a in rows:
        if b is not None and a is not None:
            print(f"{metric:36s}{b:10.3f}{a:10.3f}{a - b:+10.3f}")
    print(f"text: {len(triplets)} triplets, {text.steps} steps, loss {text.first_loss:.3f} -> {text.loss:.3f}")
    print(f"twin: {len(pairs)} pairs, {twin.steps} steps, loss {twin.first_loss:.3f} -> {twin.loss:.3f}")
    print(f"timings {timings}; wrote {args.out}")




if __name__ == "__main__":
    main()
