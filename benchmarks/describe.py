"""The describe benchmark: how much of what a video shows its one-line description tells a judge.

For each implicit query of the bench and each video that has a hand-written line in ``oracle-descriptions.json``
(the DAVIS/LOVEU dev videos), the embedded Qwen2.5-Coder-1.5B reads one line about the video and answers one
token to ``Query: ...\\nVideo: <line>\\nDoes this video match the query? Answer yes or no.`` (no system text, no
examples, temperature 0); the video's score is P(yes) from the first token's log-probabilities. Ranking the
videos by it gives R@1 and the positive's mean rank per query, and all (query, video) pairs an AUC of positives
against the rest. The same probe over the oracle lines is the upper bound of a description; over the product's
descriptions (:func:`twinseek.twins.views.description`) it measures how much of it the twin keeps.

Lines compared (``--lines``): ``oracle`` (hand-written), ``product`` (the store's descriptions with the
default rules), ``legacy`` (the line built from a twin before the description existed: the 4 largest tracks with
category, group and attributes, the top 3 scene labels, screen text). ``--prior`` also reports every line set
with P(yes) corrected for how agreeable the line is (contextual calibration, Zhao et al. 2021: the logit of
P(yes) for a content-free query is subtracted).

Numbers that hold on unseen videos: ``--folds`` splits the videos in two halves (by a hash of the id); a fold's
queries are those whose positive lies in it, ranked over that fold's videos only. ``--search`` chooses the
description rules on one fold (best R@1, then AUC) from a small grid and reports them on the other, both ways.

    .venv/bin/python benchmarks/describe.py --store STORE [--bench DIR] [--lines oracle,product,legacy]
        [--prior] [--search] [--model qwen2.5-coder-1.5b] [--threads 2] [--out FILE]

Calls are cached in ``--cache`` (JSON, keyed by model, prompt and text), so a second run or another line set that
shares lines asks nothing twice.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from twinseek.agent.judge import logit
from twinseek.config import load_settings
from twinseek.evals.bench import load_bench
from twinseek.llm.client import LLMClient, open_llm
from twinseek.twins.model import Twin, screen_lines
from twinseek.twins.store import TwinStore
from twinseek.twins.views import DEFAULT_RULES, DescriptionRules, describe
from twinseek.twins.words import category_phrase

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from judge import auc  # noqa: E402  (the judgement benchmark's Mann-Whitney AUC)

PROMPT = "Query: {query}\nVideo: {line}\nDoes this video match the query? Answer yes or no."
CONTENT_FREE = "N/A"
GRID: dict[str, Sequence[Any]] = {  # "prior": the judge's content-free correction (agent.judge_prior)
    "detector_min": (0.5, 0.7),
    "min_presence": (0.25, 0.3),
    "frame_support": (0.0, 0.25),
    "scene_agree": (0.5, 1.01),  # 1.01: no scene words
    "prior": (False, True),
}


def legacy_line(twin: Twin) -> str:
    """The twin in one line as it was read before the description: 4 largest tracks, 3 scene labels, text."""
    tracks = sorted(twin.tracks, key=lambda t: -t.mean_area * t.frame_count)[:4]
    parts = ["; ".join(category_phrase(t) + (f", {t.attributes}" if t.attributes else "") for t in tracks)]
    if twin.video.scene:
        parts.append("scene: " + ", ".join(label for label, _ in twin.video.scene[:3]))
    if twin.video.screen_text:
        parts.append("text: " + " / ".join(screen_lines(twin.video.screen_text, limit=3)))
    return "; ".join(p for p in parts if p)


class Judge:
    """P(yes) of the probe prompt, cached on disk by (model, prompt)."""

    def __init__(self, llm: LLMClient, cache: Path) -> None:
        self.llm = llm
        self.cache_path = cache
        self.cache: dict[str, float] = json.loads(cache.read_text()) if cache.is_file() else {}
        self.seconds: list[float] = []

    def p_yes(self, query: str, line: str) -> float:
        prompt = PROMPT.format(query=query, line=line)
        key = hashlib.sha1(f"{self.llm.model}\n{prompt}".encode()).hexdigest()
        if key not in self.cache:
            start = time.perf_counter()
            self.cache[key] = self.llm.yes_probability([{"role": "user", "content": prompt}])
            self.seconds.append(time.perf_counter() - start)
            if len(self.seconds) % 25 == 0:
                self.save()
        return self.cache[key]

    def save(self) -> None:
        tmp = self.cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cache))
        tmp.replace(self.cache_path)


def fold_of(video_id: str) -> int:
    return int(hashlib.sha1(video_id.encode()).hexdigest(), 16) % 2


def score(queries: list[dict[str, Any]], lines: dict[str, str], judge: Judge, videos: Sequence[str],
          prior: bool = False) -> dict[str, Any]:
    """R@1, mean rank and AUC of the queries whose positive is among ``videos``, ranked over ``videos``."""
    base = {v: logit(judge.p_yes(CONTENT_FREE, lines[v])) for v in videos} if prior else {}
    ranks, pos_scores, neg_scores, per_query = [], [], [], []
    for q in queries:
        positives = [v for v in q["positives"] if v in videos]
        if not positives:
            continue
        scores = {v: logit(judge.p_yes(q["text"], lines[v])) - base.get(v, 0.0) for v in videos}
        order = sorted(videos, key=lambda v: -scores[v])
        rank = min(order.index(v) for v in positives) + 1
        ranks.append(rank)
        pos_scores += [scores[v] for v in positives]
        neg_scores += [scores[v] for v in videos if v not in positives]
        per_query.append({"id": q["id"], "rank": rank, "top": order[0]})
    n = len(ranks)
    return {"queries": n, "r1": sum(r == 1 for r in ranks), "r1_share": round(sum(r == 1 for r in ranks) / max(n, 1), 3),
            "mean_rank": round(statistics.mean(ranks), 2) if ranks else None,
            "auc": round(auc(pos_scores, neg_scores) or math.nan, 3), "videos": len(videos), "per_query": per_query}


def product_lines(twins: dict[str, Twin], rules: DescriptionRules) -> dict[str, str]:
    return {v: describe(t, rules) for v, t in twins.items()}


def search_rules(queries: list[dict[str, Any]], twins: dict[str, Twin], judge: Judge, videos: Sequence[str],
                 progress: Callable[[str], None]) -> tuple[DescriptionRules, dict[str, Any]]:
    """The grid's best rules (and prior choice) on ``videos``: R@1, then AUC; the first found wins a tie."""
    best: tuple[tuple[float, float], DescriptionRules, dict[str, Any]] | None = None
    keys = list(GRID)
    for values in itertools.product(*(GRID[k] for k in keys)):
        chosen = dict(zip(keys, values))
        prior = bool(chosen.pop("prior", False))
        rules = replace(DEFAULT_RULES, **chosen)
        got = {**score(queries, product_lines(twins, rules), judge, videos, prior), "prior": prior}
        key = (got["r1"], got["auc"])
        if best is None or key > best[0]:
            best = (key, rules, got)
            progress(f"  best so far {dict(zip(keys, values))}: R@1 {got['r1']}/{got['queries']} AUC {got['auc']}")
    assert best is not None
    return best[1], best[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True, help="a store holding the bench's videos")
    ap.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    ap.add_argument("--lines", default="oracle,product,legacy")
    ap.add_argument("--prior", action="store_true", help="also report with the content-free prior subtracted")
    ap.add_argument("--folds", action="store_true", help="report each half of the videos (split by id hash)")
    ap.add_argument("--search", action="store_true", help="choose description rules on one fold, report the other")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "describe-cache.json")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "describe.json")
    args = ap.parse_args(argv)

    oracle: dict[str, str] = json.loads((args.bench / "oracle-descriptions.json").read_text())
    bench = load_bench(args.bench)
    queries = [{"id": q.id, "text": q.text, "positives": list(q.positives)} for q in bench.queries
               if q.kind == "implicit" and set(q.positives) & set(oracle)]
    videos = sorted(oracle)
    with TwinStore(args.store, create=False) as store:
        twins = {v: store.get_twin(v, refinements=False) for v in videos if v in store}
    missing = sorted(set(videos) - set(twins))
    if missing:
        print(f"not in the store: {missing}", file=sys.stderr)
        return 2
    settings = load_settings()
    llm = open_llm(settings, embedded_model=args.model, threads=args.threads, n_parallel=1)
    judge = Judge(llm, args.cache)
    line_sets = {"oracle": oracle, "product": product_lines(twins, DEFAULT_RULES),
                 "legacy": {v: legacy_line(t) for v, t in twins.items()}}
    folds = {f"fold{k}": [v for v in videos if fold_of(v) == k] for k in (0, 1)}
    report: dict[str, Any] = {"model": args.model, "prompt": PROMPT, "videos": videos, "folds": folds,
                              "queries": len(queries), "rows": [], "lines": {}}

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        for name in args.lines.split(","):
            lines = line_sets[name]
            report["lines"][name] = lines
            for prior in (False, True) if args.prior else (False,):
                label = name + (" (prior-corrected)" if prior else "")
                row = {"lines": label, **score(queries, lines, judge, videos, prior)}
                if args.folds:
                    row["folds"] = {f: {k: v for k, v in score(queries, lines, judge, vs, prior).items()
                                        if k != "per_query"} for f, vs in folds.items()}
                report["rows"].append(row)
                say(f"{label:32s} R@1 {row['r1']}/{row['queries']}  mean rank {row['mean_rank']}  AUC {row['auc']}")
        if args.search:
            report["search"] = {}
            for chosen_on, vs in folds.items():
                other = next(f for f in folds if f != chosen_on)
                say(f"choosing rules on {chosen_on} ...")
                rules, got = search_rules(queries, twins, judge, vs, say)
                held = score(queries, product_lines(twins, rules), judge, folds[other], got["prior"])
                default_held = score(queries, line_sets["product"], judge, folds[other])
                report["search"][chosen_on] = {
                    "rules": asdict(rules), "prior": got["prior"], "on_fold": {k: v for k, v in got.items() if k != "per_query"},
                    "held_out": {k: v for k, v in held.items() if k != "per_query"},
                    "default_held_out": {k: v for k, v in default_held.items() if k != "per_query"}}
                say(f"  chosen on {chosen_on}, on {other}: R@1 {held['r1']}/{held['queries']} AUC {held['auc']} "
                    f"(default rules: {default_held['r1']}/{default_held['queries']} AUC {default_held['auc']})")
    finally:
        judge.save()
    ranks: dict[str, list[int]] = {}
    product_row = next((r for r in report["rows"] if r["lines"] == "product"), None)
    if product_row:
        positive = {q["id"]: q["positives"] for q in queries}
        for pq in product_row["per_query"]:
            for v in positive[pq["id"]]:
                ranks.setdefault(v, []).append(pq["rank"])
    report["per_video"] = [{"video": v, "product": line_sets["product"][v], "oracle": oracle[v],
                            "legacy": line_sets["legacy"][v],
                            "mean_rank": round(statistics.mean(ranks[v]), 2) if v in ranks else None}
                           for v in videos]
    report["seconds_per_call"] = {"p50": round(statistics.median(judge.seconds), 3) if judge.seconds else None,
                                  "calls": len(judge.seconds)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    say(f"seconds per call p50 {report['seconds_per_call']['p50']} over {len(judge.seconds)} new calls; "
        f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
