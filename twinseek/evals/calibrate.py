"""Fit the relevance calibrators of an LLM and judge mode on a bench's labelled ranked queries, and report how
they do on queries they did not see.

    twinseek calibrate BENCH --store S [--folds 2] [--holdout 0] [--method platt|isotonic] [--judge yesno]

Every ranked query (implicit, explicit, negation, absent; except the first ``holdout`` of each kind) is searched
once with calibration off and no threshold. Each candidate gives one labelled row: its features (the LLM's
judgement when it was judged, its retrieval similarity and rank; :func:`~twinseek.agent.calibration.
candidate_features`) and whether the bench lists it as a positive. Two calibrators are fitted on them:

* ``calibration-<judge>.json``: P(relevant) of a candidate the LLM judged, from its judgement, similarity and rank;
* ``calibration-retrieval.json``: P(relevant) of a candidate the LLM did not judge (below ``agent.judge_top``),
  from its similarity and rank.

**Held-out report.** The queries are split into ``folds`` *by video*: a query goes to the fold of its positive
video (a hash of the video id; a query with no positive, by a hash of its own id), so no video is seen by both the
fit and the report. Each fold is scored by calibrators fitted on the other folds only, so every reported number
comes from queries and videos the calibrators did not see: per kind R@1 after ordering the candidates by calibrated
relevance (against the retrieval order), the share of positives at or above tau and, for absent queries, the share
rejected (every candidate below tau). The calibrators written are then fitted on all the queries, or with
``fit_fold`` on that fold's alone (``fitted_on`` records the query ids, the videos and the fold). The first
``holdout`` of each kind (what ``twinseek eval BENCH --limit holdout`` reports) can also be kept out of
everything.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from twinseek.agent import Agent
from twinseek.agent.calibration import RETRIEVAL_JUDGE as RETRIEVAL
from twinseek.agent.calibration import (
    CalibrationError,
    CalibrationMethod,
    Calibrator,
    FeatureName,
    candidate_features,
    fit_calibrator,
    retrieval_sibling,
    store_calibration_path,
)
from twinseek.evals.bench import Bench
from twinseek.evals.runner import limit_queries, load_any_bench

logger = logging.getLogger(__name__)

RANKED_KINDS = ("implicit", "explicit", "negation", "absent")
JUDGED_FEATURES: tuple[FeatureName, ...] = ("judged", "similarity", "rank")
RETRIEVAL_FEATURES: tuple[FeatureName, ...] = ("similarity", "rank")


class Row(BaseModel):
    """One candidate of one query, labelled."""

    query: str
    kind: str
    video_id: str
    rank: int = Field(description="0-based retrieval position")
    features: dict[str, float]
    judged: bool
    relevant: bool
    positives: list[str] = Field(default_factory=list, description="The query's positive videos (store ids).")


def video_fold(key: str, folds: int) -> int:
    """The fold of a video (or of a query with no positive), from a hash of its id: stable across runs."""
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % folds


def query_folds(rows: Sequence[Row], folds: int) -> dict[str, int]:
    """Each query's fold: its (first) positive video's, so a video's queries never straddle folds."""
    out: dict[str, int] = {}
    for r in rows:
        if r.query not in out:
            out[r.query] = video_fold(sorted(r.positives)[0] if r.positives else r.query, folds)
    return out


class CalibrationReport(BaseModel):
    """What :func:`calibrate` fitted and how the held-out folds scored."""

    judge: str
    llm: str
    tau: float
    folds: int
    queries: int
    held_out: dict[str, dict[str, float]] = Field(description="kind -> metric -> value, cross-fitted")
    held_out_unjudged: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="The same when no candidate is judged (judge_top 0): retrieval calibrator")
    paths: list[str] = Field(default_factory=list)


def fit_queries(bench: Bench, holdout: int) -> list[Any]:
    """The ranked queries after the first ``holdout`` of each kind (those are kept for reporting)."""
    held = {q.id for q in limit_queries(bench, holdout).queries} if holdout > 0 else set()
    return [q for q in bench.queries if q.kind in RANKED_KINDS and q.id not in held]


def store_ids(agent: Any, bench: Bench) -> dict[str, str]:
    """Bench video id -> store video id, matched by file path (videos not in the store are left out)."""
    by_path = {str(Path(v.path).resolve()): v.video_id for v in agent.resources.store.videos()}
    return {vid: by_path[key] for vid, path in bench.videos.items() if (key := str(Path(path).resolve())) in by_path}


def rows_for(agent: Any, queries: Sequence[Any], ids: dict[str, str], k: int = 10,
             **search_options: Any) -> list[Row]:
    """The labelled candidates of each query, from one uncalibrated search with no threshold."""
    rows = []
    for q in queries:
        positives = {ids[v] for v in q.positives if v in ids}
        result = agent.search(q.text, k=k, tau=0.0, calibrate=False, deadline_s=None, **search_options)
        for h in result.hits:
            values = candidate_features(similarity=h.similarity, rank=h.retrieval_rank - 1, judged=h.judgement,
                                        score=h.relevance)
            rows.append(Row(query=q.id, kind=q.kind, video_id=h.video_id, rank=h.retrieval_rank - 1,
                            features=values, judged=h.judgement is not None, relevant=h.video_id in positives,
                            positives=sorted(positives)))
        logger.info("%s: %d candidates, %d positive", q.id, len(result.hits), sum(h.video_id in positives
                                                                                  for h in result.hits))
    return rows


def fit_pair(rows: Sequence[Row], *, llm: str, judge: str, method: CalibrationMethod,
             fitted_on: dict[str, object] | None = None,
             retrieval_llm: str | None = None) -> tuple[Calibrator | None, Calibrator]:
    """The judged candidates' calibrator (None when no candidate was judged) and the retrieval one (recorded for
    ``retrieval_llm``, the decomposer's model, when the judge is another model)."""
    judged = [r for r in rows if r.judged]
    features = JUDGED_FEATURES if method == "platt" else ("score",)
    meta = fitted_on or {}
    cal = fit_calibrator([r.features for r in judged], [r.relevant for r in judged], llm=llm, judge=judge,
                         method=method, features=features, fitted_on=meta) if judged else None
    retrieval = fit_calibrator([r.features for r in rows], [r.relevant for r in rows], llm=retrieval_llm or llm,
                               judge=RETRIEVAL,
                               method="platt", features=RETRIEVAL_FEATURES, fitted_on=meta)
    return cal, retrieval


def relevance(row: Row, cal: Calibrator | None, retrieval: Calibrator) -> float:
    """A candidate's calibrated relevance, as a search computes it."""
    return cal.probability(row.features) if row.judged and cal is not None else retrieval.probability(row.features)


def held_out_metrics(rows: Sequence[Row], folds: int, tau: float, *, judged: bool = True,
                     **fit: Any) -> dict[str, dict[str, float]]:
    """Cross-fitted metrics per kind (see the module docstring). ``judged=False`` scores every candidate with the
    retrieval calibrator, as a search that judges none (``judge_top=0``) does."""
    by_query: dict[str, list[Row]] = {}
    for r in rows:
        by_query.setdefault(r.query, []).append(r)
    kinds: dict[str, list[str]] = {}
    for q, group in by_query.items():
        kinds.setdefault(group[0].kind, []).append(q)
    fold_of = query_folds(rows, folds)
    scored: dict[str, list[tuple[Row, float]]] = {}
    for f in range(folds):
        train = [r for r in rows if fold_of[r.query] != f]
        try:
            cal, retrieval = fit_pair(train, **fit)
        except CalibrationError as exc:
            raise CalibrationError(f"fold {f + 1}/{folds}: {exc}; use fewer folds or more queries") from exc
        for q in (q for q in by_query if fold_of[q] == f):
            scored[q] = [(r, relevance(r, cal if judged else None, retrieval)) for r in by_query[q]]
    out: dict[str, dict[str, float]] = {}
    for kind, qs in kinds.items():
        if kind == "absent":
            out[kind] = {"queries": len(qs), "rejected": _mean(max(p for _, p in scored[q]) < tau for q in qs),
                         "best_relevance_mean": _mean(max(p for _, p in scored[q]) for q in qs)}
            continue
        first = [max(scored[q], key=lambda rp: (rp[1], -rp[0].rank))[0] for q in qs]
        out[kind] = {"queries": len(qs), "r@1": _mean(r.relevant for r in first),
                     "r@1_retrieval": _mean(any(r.relevant and r.rank == 0 for r in by_query[q]) for q in qs),
                     "positives_above_tau": _mean(any(r.relevant and p >= tau for r, p in scored[q]) for q in qs),
                     "positive_relevance_mean": _mean(p for q in qs for r, p in scored[q] if r.relevant)}
    return out


def _mean(values: Iterable[float | bool]) -> float:
    items = [float(v) for v in values]
    return round(statistics.fmean(items), 4) if items else float("nan")


def calibrate(bench_dir: str | Path, store: str | Path, *, holdout: int = 0, method: CalibrationMethod = "platt",
              judge: str | None = None, out: Path | None = None, k: int = 10, limit: int | None = None,
              kinds: Iterable[str] = RANKED_KINDS, folds: int = 2, tau: float = 0.5, progress: bool = False,
              rows_from: Path | None = None, judge_top: int = 1, fit_fold: int | None = None,
              **agent_settings: Any) -> tuple[Calibrator, Path, CalibrationReport]:
    """Fit and write the calibrators (see the module docstring); ``limit`` caps the fit queries per kind; ``out``
    is the judged candidates' calibrator file (the retrieval one and the labelled rows, ``*-rows.jsonl``, go next
    to it). ``rows_from`` refits from rows saved by an earlier run instead of searching again. ``judge_top``: how
    many of each query's best-ranked candidates the LLM judges for the fit (at least 1, whatever the settings'
    default, or there would be no judgement to calibrate). ``fit_fold``: the calibrators written are fitted on that
    fold's queries only (the other folds' numbers in the report are then held out from them). Returns the judged
    candidates' calibrator, its path and the held-out report."""
    if judge_top < 1:
        raise ValueError(f"judge_top must be >= 1 to calibrate judgements, got {judge_top}")
    if folds < 2:
        raise ValueError(f"folds must be >= 2 (each fold is scored by calibrators fitted on the others), got {folds}")
    if fit_fold is not None and not 0 <= fit_fold < folds:
        raise ValueError(f"fit_fold must be in [0, {folds}), got {fit_fold}")
    if rows_from is not None:
        saved = [line for line in Path(rows_from).read_text().splitlines() if line.strip()]
        head = SavedRun.model_validate_json(saved[0])
        rows = [Row.model_validate_json(line) for line in saved[1:]]
        run = head.model_copy(update={"judge": judge or head.judge})
    else:
        rows, run, root = _search_rows(bench_dir, store, holdout, judge, k, limit, kinds, progress, judge_top,
                                       agent_settings)
        store = root
    return _fit_and_write(rows, run, Path(store), bench_dir, holdout, k, method, out, folds, tau, fit_fold)


class SavedRun(BaseModel):
    """The first line of a rows file: which LLM and judge mode the rows' judgements came from."""

    llm: str
    judge: str
    retrieval_llm: str | None = Field(None, description="The decomposer's model, when another model judged.")


def _search_rows(bench_dir: str | Path, store: str | Path, holdout: int, judge: str | None, k: int,
                 limit: int | None, kinds: Iterable[str], progress: bool, judge_top: int,
                 agent_settings: dict[str, Any]) -> tuple[list[Row], SavedRun, Path]:

    bench = load_any_bench(bench_dir, [k_ for k_ in kinds if k_ in RANKED_KINDS])
    queries = fit_queries(bench, holdout)
    if limit is not None:
        queries = fit_queries(limit_queries(bench.model_copy(update={"queries": queries}), limit), 0)
    if not queries:
        raise ValueError(f"no ranked query left to fit on after holding out {holdout} per kind")
    with Agent.open(store, **agent_settings) as agent:
        mode = judge or agent.resources.defaults.judge
        ids = store_ids(agent, bench)
        if not ids:
            raise ValueError(f"none of the bench's videos is in the store {store}: ingest them first (twinseek eval)")
        rows = _with_progress(agent, queries, ids, k, mode, progress, judge_top)
        res = agent.resources
        return rows, SavedRun(llm=res.judge_llm_key(mode), judge=mode, retrieval_llm=res.llm_key), res.store.root


def _fit_and_write(rows: list[Row], run: SavedRun, root: Path, bench_dir: str | Path, holdout: int, k: int,
                   method: CalibrationMethod, out: Path | None, folds: int, tau: float,
                   fit_fold: int | None = None) -> tuple[Calibrator, Path, CalibrationReport]:
    mode = run.judge
    fit: dict[str, Any] = {"llm": run.llm, "judge": mode, "method": method, "retrieval_llm": run.retrieval_llm}
    report = CalibrationReport(judge=mode, llm=run.llm, tau=tau, folds=folds, queries=len({r.query for r in rows}),
                               held_out=held_out_metrics(rows, folds, tau, **fit),
                               held_out_unjudged=held_out_metrics(rows, folds, tau, judged=False, **fit))
    fitted = rows
    if fit_fold is not None:
        fold_of = query_folds(rows, folds)
        fitted = [r for r in rows if fold_of[r.query] == fit_fold]
    meta = {"bench": str(Path(bench_dir).resolve()), "holdout_per_kind": holdout, "k": k,
            "queries": sorted({r.query for r in fitted}), "fold": fit_fold, "folds": folds,
            "videos": sorted({v for r in fitted for v in r.positives}),  # whose queries were fitted
            "candidate_videos": sorted({r.video_id for r in fitted}),
            "held_out_report": report.held_out, "held_out_report_unjudged": report.held_out_unjudged}
    cal, retrieval = fit_pair(fitted, fitted_on=meta, **fit)
    if cal is None:
        raise CalibrationError(f"no candidate was judged by the LLM (judge {mode}): nothing to calibrate")
    path = cal.save(out or store_calibration_path(root, mode))
    retrieval_path = retrieval.save(retrieval_sibling(path, mode))
    rows_path = path.with_name(path.stem + "-rows.jsonl")
    rows_path.write_text("\n".join([run.model_dump_json()]
                                   + [r.model_dump_json() for r in rows]) + "\n")
    report.paths = [str(path), str(retrieval_path), str(rows_path)]
    return cal, path, report


def _with_progress(agent: Any, queries: Sequence[Any], ids: dict[str, str], k: int, judge: str,
                   progress: bool, judge_top: int) -> list[Row]:
    if not progress:
        return rows_for(agent, queries, ids, k, judge=judge, judge_top=judge_top)
    from rich.progress import Progress

    rows: list[Row] = []
    with Progress(transient=True) as bar:
        task = bar.add_task("calibrate", total=len(queries))
        for q in queries:
            rows += rows_for(agent, [q], ids, k, judge=judge, judge_top=judge_top)
            bar.advance(task)
    return rows
