"""Judgement variants compared on a bench: how much each way of asking the LLM about the top candidates adds to
retrieval, and what it costs.

For each query (default: the implicit and absent queries of the dev bench) the store's retrieval (fused, the
agent's decomposition from the store's cache) gives the top ``--top`` candidates and their compact evidence (the
text every judge reads, :func:`twinseek.agent.judge.compact_evidence`). Then, with the same LLM:

* ``yesno``: one call per candidate, P(yes) from the first token's log-probabilities;
* ``choice``: one call for all of them, the first token's distribution over ``1``..``n`` and ``0`` (none);
  ``choice_reversed`` lists them last-first (a model that follows the position rather than the evidence shows it);
* ``pairwise``: the top candidate against each other one, both orders (position bias cancels), P(better);
* ``listwise``: one JSON call that orders them (score by position);
* ``likelihood``: no question asked: the query's log-likelihood given the candidate's evidence minus that given
  no evidence (UPR, Sachan et al. 2022, "Improving Passage Retrieval with Zero-Shot Question Generation"),
  teacher-forced by the same GGUF weights dequantised into transformers (needs ``pip install gguf``): llama.cpp's
  server returns no log-probabilities of prompt tokens (``echo`` is unsupported), so it cannot score a given text.

Reported per variant: R@1 when the top candidates are re-ordered by the variant's score alone (against retrieval's
R@1 on the same queries), the positive's mean score against the others', AUC of positive vs the other top
candidates, the absent queries' best score, LLM calls and seconds per query (p50/p95). One JSON file.

    .venv/bin/python benchmarks/judge.py --store STORE [--bench DIR] [--top 3] [--kinds implicit,absent]
        [--model qwen2.5-coder-0.5b] [--variants yesno,choice,choice_reversed,pairwise,listwise,likelihood]
        [--limit N]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twinseek.agent.api import Agent
from twinseek.agent.judge import (
    LISTWISE_MAX_TOKENS,
    ListwiseOrder,
    choice_messages,
    compact_evidence,
    listwise_messages,
    listwise_scores,
    pairwise_messages,
    yesno_messages,
)
from twinseek.evals.bench import load_bench
from twinseek.evals.calibrate import store_ids
from twinseek.llm.base import LLMError
from twinseek.llm.client import LLMClient, open_llm
from twinseek.llm.embedded import embedded_model_path
from twinseek.retrieval.stages import retrieve

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("yesno", "choice", "choice_reversed", "pairwise", "listwise")  # ``likelihood`` on request (slow)
Scorer = Callable[[LLMClient, str, list[str]], tuple[list[float], int]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def auc(pos: list[float], neg: list[float]) -> float | None:
    """P(a positive scores above a negative), ties half (the Mann-Whitney statistic)."""
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


# -- the variants: scores for the top candidates' evidences, and the number of calls ---------------------------
def score_yesno(llm: LLMClient, query: str, evidences: list[str]) -> tuple[list[float], int]:
    return [llm.yes_probability(yesno_messages(query, None, e)) for e in evidences], len(evidences)


def score_choice(llm: LLMClient, query: str, evidences: list[str]) -> tuple[list[float], int]:
    options = [str(i) for i in range(len(evidences) + 1)]
    shares = llm.choice_probabilities(choice_messages(query, evidences), options)
    return [shares[str(i)] for i in range(1, len(evidences) + 1)], 1


def score_choice_reversed(llm: LLMClient, query: str, evidences: list[str]) -> tuple[list[float], int]:
    """``choice`` with the candidates listed last-first: a model that reads the evidence keeps its scores, one that
    follows the position does not (the control for position bias)."""
    scores, calls = score_choice(llm, query, evidences[::-1])
    return scores[::-1], calls


def score_pairwise(llm: LLMClient, query: str, evidences: list[str]) -> tuple[list[float], int]:
    """Candidate i's score: P(i beats the top one) averaged over both orders; the top one scores 0.5 against
    itself (so it stays first unless another candidate is preferred to it)."""
    scores, calls = [0.5], 0
    for other in evidences[1:]:
        a = llm.choice_probabilities(pairwise_messages(query, other, evidences[0]), ("A", "B"))["A"]
        b = llm.choice_probabilities(pairwise_messages(query, evidences[0], other), ("A", "B"))["B"]
        scores.append((a + b) / 2)
        calls += 2
    return scores, calls


def score_listwise(llm: LLMClient, query: str, evidences: list[str]) -> tuple[list[float], int]:
    order = llm.chat_json(listwise_messages(query, evidences), ListwiseOrder, max_tokens=LISTWISE_MAX_TOKENS,
                          retries=0).order
    return listwise_scores(order, len(evidences)), 1


def likelihood_scorer(gguf: Path) -> Scorer:
    """The ``likelihood`` variant over the GGUF file ``gguf`` (loaded once, float32, one thread)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()

    def loglik(prefix: str, target: str) -> float:
        p, t = tok(prefix, add_special_tokens=False).input_ids, tok(target, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(torch.tensor([p + t])).logits[0, len(p) - 1:-1]
        return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(t)[:, None]).sum())

    def score(_llm: LLMClient, query: str, evidences: list[str]) -> tuple[list[float], int]:
        prior = loglik("Write a search query for a video.\nQuery:", " " + query)
        return [loglik(f"Video description:\n{e}\n\nWrite a search query that finds this video.\nQuery:",
                       " " + query) - prior for e in evidences], len(evidences) + 1

    return score


SCORERS: dict[str, Scorer] = {
    "yesno": score_yesno, "choice": score_choice, "choice_reversed": score_choice_reversed,
    "pairwise": score_pairwise, "listwise": score_listwise}


def judge_query(agent: Agent, llm: LLMClient, query: Any, positives: set[str], top: int,
                variants: list[str]) -> dict[str, Any]:
    res = agent.resources
    dec = res.decomposer.decompose(query.text, res.llm).decomposition  # the store's (cached) decomposition
    cands = retrieve(res.indexes, query.text, dec, tool="fused", k=top).candidates
    evidences = []
    for c in cands:
        twin = res.store.get_twin(c.video_id)
        evidences.append(compact_evidence(c, twin, twin.video.ecr_text))
    row: dict[str, Any] = {"id": query.id, "kind": query.kind, "candidates": [c.video_id for c in cands],
                           "positive": [c.video_id in positives for c in cands],
                           "similarity": [round(c.similarity, 4) for c in cands], "variants": {}}
    for name in variants:
        t0 = time.perf_counter()
        try:
            scores, calls = SCORERS[name](llm, query.text, evidences)
            error = None
        except LLMError as exc:
            scores, calls, error = [], 0, str(exc)[:200]
        row["variants"][name] = {"scores": [round(s, 4) for s in scores], "calls": calls, "error": error,
                                 "seconds": round(time.perf_counter() - t0, 2)}
    return row


def summarise(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    ranked = [r for r in rows if r["kind"] != "absent"]
    absent = [r for r in rows if r["kind"] == "absent"]
    out: dict[str, Any] = {"queries": len(ranked), "absent_queries": len(absent),
                           "retrieval_r@1": statistics.fmean(r["positive"][0] for r in ranked) if ranked else None,
                           "positive_in_top": statistics.fmean(any(r["positive"]) for r in ranked) if ranked else None}
    for name in variants:
        pos, neg, r1, secs, calls = [], [], [], [], []
        for r in ranked:
            v = r["variants"][name]
            if not v["scores"]:
                continue
            best = max(range(len(v["scores"])), key=lambda i: (v["scores"][i], -i))  # ties: retrieval order
            r1.append(r["positive"][best])
            pos += [s for s, p in zip(v["scores"], r["positive"]) if p]
            neg += [s for s, p in zip(v["scores"], r["positive"]) if not p]
        for r in rows:
            secs.append(r["variants"][name]["seconds"])
            calls.append(r["variants"][name]["calls"])
        absent_max = [max(r["variants"][name]["scores"]) for r in absent if r["variants"][name]["scores"]]
        out[name] = {
            "r@1_reordered": round(statistics.fmean(r1), 3) if r1 else None,
            "positive_mean": round(statistics.fmean(pos), 3) if pos else None,
            "others_mean": round(statistics.fmean(neg), 3) if neg else None,
            "auc_positive_vs_others": round(a, 3) if (a := auc(pos, neg)) is not None else None,
            "absent_best_mean": round(statistics.fmean(absent_max), 3) if absent_max else None,
            "calls_per_query": round(statistics.fmean(calls), 2) if calls else None,
            "seconds_p50": round(statistics.median(secs), 2) if secs else None,
            "seconds_p95": round(percentile(secs, 0.95), 2) if secs else None,
            "errors": sum(1 for r in rows if r["variants"][name]["error"]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--store", type=Path, required=True, help="an ingested store of the bench (not modified)")
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--kinds", default="implicit,absent")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="the embedded LLM that judges (the "
                        "decompositions stay the store's, written by the default model)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--limit", type=int, default=None, help="queries per kind")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "judge.json")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    bench = load_bench(args.bench, kinds=args.kinds.split(","))
    per_kind: dict[str, int] = {}
    queries = []
    for q in bench.queries:  # the first --limit queries of each kind
        per_kind[q.kind] = per_kind.get(q.kind, 0) + 1
        if args.limit is None or per_kind[q.kind] <= args.limit:
            queries.append(q)
    load_before = os.getloadavg()[0]
    rows = []
    with Agent.open(args.store) as agent:
        llm = open_llm(agent.resources.settings, embedded_model=args.model)
        if "likelihood" in variants:
            settings = agent.resources.settings.model_copy(deep=True)
            settings.llm.embedded_model = args.model
            SCORERS["likelihood"] = likelihood_scorer(embedded_model_path(settings))
        ids = store_ids(agent, bench)
        for q in queries:
            rows.append(judge_query(agent, llm, q, {ids[v] for v in q.videos if v in ids}, args.top, variants))
            print(q.id, q.kind, {n: v["seconds"] for n, v in rows[-1]["variants"].items()}, flush=True)
    summary = {"model": args.model, "top": args.top, "kinds": args.kinds, "load_avg_before": round(load_before, 2),
               "load_avg_after": round(os.getloadavg()[0], 2), "summary": summarise(rows, variants), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary["summary"], indent=1))


if __name__ == "__main__":
    main()
