"""Fit the relevance calibrator of an LLM and judge mode on a bench's labelled ranked queries.

    twinseek calibrate BENCH --store S [--holdout 10] [--method platt|isotonic] [--judge yesno]

Every ranked query (implicit, explicit, negation, absent) *except the first ``holdout`` of each kind* is searched
with calibration off and no threshold; each candidate the agent judged gives one pair (its uncalibrated score,
whether the bench lists it as a positive). The first ``holdout`` of each kind are exactly the queries that
``twinseek eval BENCH --limit holdout`` reports, so a report with that limit never scores a query the calibrator
saw. The calibrator is written to the store (``calibration-<judge>.json``), where the store's searches find it,
or to ``--out``; it records the query ids it was fitted on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from twinseek.agent.calibration import CalibrationMethod, Calibrator, fit_calibrator, store_calibration_path
from twinseek.evals.bench import Bench
from twinseek.evals.runner import limit_queries, load_any_bench

logger = logging.getLogger(__name__)

RANKED_KINDS = ("implicit", "explicit", "negation", "absent")


def fit_queries(bench: Bench, holdout: int) -> list[Any]:
    """The ranked queries after the first ``holdout`` of each kind (those are kept for reporting)."""
    held = {q.id for q in limit_queries(bench, holdout).queries} if holdout > 0 else set()
    return [q for q in bench.queries if q.kind in RANKED_KINDS and q.id not in held]


def store_ids(agent: Any, bench: Bench) -> dict[str, str]:
    """Bench video id -> store video id, matched by file path (videos not in the store are left out)."""
    by_path = {str(Path(v.path).resolve()): v.video_id for v in agent.resources.store.videos()}
    return {vid: by_path[key] for vid, path in bench.videos.items() if (key := str(Path(path).resolve())) in by_path}


def pairs_for(agent: Any, queries: Sequence[Any], ids: dict[str, str], k: int = 10,
              **search_options: Any) -> list[tuple[float, bool, str]]:
    """(uncalibrated score, relevant, query id) for each candidate the agent judged, query by query."""
    pairs = []
    for q in queries:
        positives = {ids[v] for v in q.positives if v in ids}
        result = agent.search(q.text, k=k, tau=0.0, calibrate=False, deadline_s=None, **search_options)
        judged = [(h.video_id, h.relevance) for h in result.hits] + [(d.video_id, d.relevance) for d in result.dropped]
        pairs += [(float(score), vid in positives, q.id) for vid, score in judged]
        logger.info("%s: %d candidates, %d positive", q.id, len(judged), sum(v in positives for v, _ in judged))
    return pairs


def calibrate(bench_dir: str | Path, store: str | Path, *, holdout: int = 10, method: CalibrationMethod = "platt",
              judge: str | None = None, out: Path | None = None, k: int = 10, limit: int | None = None,
              kinds: Iterable[str] = RANKED_KINDS, progress: bool = False,
              **agent_settings: Any) -> tuple[Calibrator, Path]:
    """Fit and write the calibrator (see the module docstring); ``limit`` caps the fit queries per kind."""
    from twinseek.agent import Agent

    bench = load_any_bench(bench_dir, [k_ for k_ in kinds if k_ in RANKED_KINDS])
    queries = fit_queries(bench, holdout)
    if limit is not None:
        queries = fit_queries(limit_queries(bench.model_copy(update={"queries": queries}), limit), 0)
    if not queries:
        raise ValueError(f"no ranked query left to fit on after holding out {holdout} per kind")
    with Agent.open(store, **agent_settings) as agent:
        mode = judge or agent.resources.judge
        ids = store_ids(agent, bench)
        if not ids:
            raise ValueError(f"none of the bench's videos is in the store {store}: ingest them first (twinseek eval)")
        pairs = _with_progress(agent, queries, ids, k, mode, progress)
        llm = agent.resources.llm_key
        cal = fit_calibrator([s for s, _, _ in pairs], [r for _, r, _ in pairs], llm=llm, judge=mode, method=method,
                             fitted_on={"bench": str(Path(bench_dir).resolve()), "holdout_per_kind": holdout,
                                        "queries": sorted({q for _, _, q in pairs}), "k": k})
        path = cal.save(out or store_calibration_path(agent.resources.store.root, mode))
    return cal, path


def _with_progress(agent: Any, queries: Sequence[Any], ids: dict[str, str], k: int, judge: str,
                   progress: bool) -> list[tuple[float, bool, str]]:
    if not progress:
        return pairs_for(agent, queries, ids, k, judge=judge)
    from rich.progress import Progress

    pairs: list[tuple[float, bool, str]] = []
    with Progress(transient=True) as bar:
        task = bar.add_task("calibrate", total=len(queries))
        for q in queries:
            pairs += pairs_for(agent, [q], ids, k, judge=judge)
            bar.advance(task)
    return pairs
