"""Run a bench end to end: ingest, score every query with each system, write ``results.json`` and a report.

    twinseek eval BENCH --all                           # full system, each ablation, every baseline
    twinseek eval BENCH --ablate QD,CA                  # one agent run with QD and CA off
    twinseek eval BENCH --systems full,full-jit --baseline random --kinds implicit --limit 5 --seed 1
    run("BENCH", systems=["full", "dense"], limit=5)    # the same from Python -> RunResult

Systems (names accepted by :func:`parse_systems`, the CLI's ``--systems`` and ``run(systems=...)``):

* ``full``: the reasoning agent (:class:`twinseek.Agent`) with every switch on;
* ``full-qd``, ``full-ca-lr``, ...: the agent with those switches (QD, CA, LR, JiT of the paper's Table 3) off;
* ``dense`` / ``compositional``: one retrieval tool alone (no reranking, no reasoning);
* ``naive``: the MobileNet-label baseline; ``random``: seeded random scores;
* ``whole`` (for the ``moment`` kind): dense's ranking with the whole video as the moment of every hit, the floor
  that shows what localising adds.

How the agent is scored (:class:`AgentScorer`):

* **Ranked kinds.** The agent returns hits (relevance >= tau, best first) and drops the rest. To keep a rank
  for every gallery video, the returned hits keep the agent's relevance and every other video (dropped, or never
  a candidate) follows them in *retrieval order* (the same tool the agent used, over the whole gallery), with
  synthetic scores strictly below both tau and the lowest hit. So R@K/MdR/MnR/mAP see the agent's ranking on
  top and the retrieval ranking below it.
* **Absent queries** are rejected when the agent returns no hit (every score is then below tau); the record's
  ``max_score`` is the highest relevance the agent gave any candidate (hit or dropped), not a synthetic score.
* **MCQ / counterfactual.** Each text is searched *within the given video* (``Agent.search(text,
  videos=[video])``), so the agent judges that video whatever its rank in the gallery, and its relevance is the
  score (hit or dropped). With LR off that relevance is the video's absolute retrieval similarity (mean raw
  tool score, clipped to [0, 1]). (``AgentScorer(restrict=False)`` instead reuses one gallery search per text: a candidate keeps its
  relevance, any other video scores ``-1 + 0.5 * (1 - position / gallery)`` by its retrieval position.)
* **Stores.** Every system runs on the one ingested store. Just-in-time refinement never rewrites a twin: what it
  finds is an overlay row (``refinements``), retrieval reads the ingest rows only, and a search sees only the
  refinements its own calls produced or read. So a system's results do not depend on which systems ran before it;
  refinements stored by one system are a cache that another system asking the same action reuses (the action
  does not run twice). Decompositions come from the agent's one decomposer, whose cache lives in the store: each
  text is asked of the LLM once, and every system sees the same sub-queries.
* **Moments** (kind ``moment``): the best moment of the rank-1 video is the first of its hit's ``moments`` (the
  agent's hit, else the hit of the retrieval order below the hits); a video with no hit or no moment is scored
  as the whole video (:mod:`twinseek.evals.metrics`). Random and naive give no moments.
* **No deadline.** Agent systems run without ``agent.deadline_s``: an eval's numbers must not depend on load.
* **Grounding.** For implicit queries with ground-truth masks, the predicted mask of a frame is the union of the
  masks of the objects the agent chose in the positive video's hit, resized (nearest) to the ground truth's
  resolution; no hit for that video means no masks (J = F = 0).

Every query goes through the one evaluator, :func:`twinseek.evals.metrics.evaluate_query`. Results are written
as the run goes (:mod:`twinseek.evals.results`): ``results.json`` after each system, a checkpoint line per
query in between, so ``twinseek eval BENCH --out RUN --resume`` (``run(..., out=RUN, resume=True)``) continues a
killed run: finished systems are kept, the one cut short goes on after its last finished query (a JiT system
reads the refinements its earlier queries stored as a cache), and a run whose settings differ is refused.

Determinism: the random baseline is seeded by (seed, query text); the LLM runs at temperature 0 with
``seed``; retrieval is exact. Timings are the only fields that differ between two runs with the same seed.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinseek import __version__
from twinseek.config import ProfileName, Settings, load_settings
from twinseek.errors import TwinseekError
from twinseek.evals.baselines import NaiveLabelBaseline, RandomBaseline
from twinseek.evals.bench import Bench, ImplicitQuery, load_bench, load_reasont2vbench
from twinseek.evals.metrics import DEFAULT_TAU, Grounder, aggregate, evaluate_query
from twinseek.evals.report import draw_overlays, write_report
from twinseek.evals.results import RunFolder
from twinseek.evals.schemas import (
    OverlayExample,
    QueryResult,
    RunConfig,
    RunResult,
    SystemResult,
    SystemSpec,
    parse_systems,
)
from twinseek.evals.scorers import (
    AgentScorer,
    BaselineScorer,
    EvalScorer,
    ToolScorer,
)
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore

if TYPE_CHECKING:
    from rich.progress import Progress as _Bar

logger = logging.getLogger(__name__)

STORE_KINDS = frozenset({"agent", "dense", "compositional", "whole"})  # systems that read the twin store
EXAMPLES = 2  # overlay examples per outcome (hit / miss) and agent system


def load_any_bench(root: str | Path, kinds: Iterable[str] | None = None) -> Bench:
    """A dev-bench folder (``queries.jsonl``) or a ReasonT2VBench copy (``queries.json``)."""
    root = Path(root)
    if (root / "queries.json").is_file() and not (root / "queries.jsonl").is_file():
        return load_reasont2vbench(root).select(kinds)
    return load_bench(root, kinds)


def limit_queries(bench: Bench, limit: int | None) -> Bench:
    """At most ``limit`` queries of each kind (file order), so a smoke run still fills every table."""
    if limit is None:
        return bench
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    counts: dict[str, int] = {}
    kept = []
    for q in bench.queries:
        counts[q.kind] = counts.get(q.kind, 0) + 1
        if counts[q.kind] <= limit:
            kept.append(q)
    return bench.model_copy(update={"queries": kept})


def default_store(bench: Bench, settings: Settings) -> Path:
    """``<cache dir>/bench-stores/<bench name>-<profile>`` (reused across runs: ingestion is the slow part)."""
    return settings.cache_dir / "bench-stores" / f"{bench.root.resolve().name}-{settings.profile}"


def run(
    bench_dir: str | Path,
    store: str | Path | None = None,
    out: str | Path | None = None,
    systems: Iterable[str | SystemSpec] | None = None,
    kinds: Iterable[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    *,
    profile: ProfileName = "embedded",
    k: int = 10,
    tau: float = DEFAULT_TAU,
    llm_decomposition: bool = True,
    skip_unavailable: bool = False,
    report: bool = True,
    progress: bool | None = None,
    resume: bool = False,
    settings_overrides: Mapping[str, Any] | None = None,
) -> RunResult:
    """Evaluate ``systems`` (default ``full``) on the bench at ``bench_dir``; results and report go to ``out``.

    Videos missing from the store are ingested first (``store`` defaults to :func:`default_store`; only systems
    that read twins need one). ``limit`` keeps at most that many queries per kind. ``llm_decomposition=False``
    decomposes queries by rules for the retrieval-only systems (the agent always asks its LLM, with a recorded
    rule-based fallback). ``skip_unavailable`` records a system that cannot start (e.g. the agent extra is not
    installed) as skipped instead of failing. ``progress`` (default: when INFO logging is on) shows rich bars.

    ``results.json`` is written as the run goes (see :mod:`twinseek.evals.results`): after each system, with a
    checkpoint per finished query in between. ``resume=True`` continues the run in ``out``: finished systems are
    kept, a system cut short goes on after its last finished query (``systems`` adds to the run's own list), and
    the report is written over everything.

    Raises:
        BenchError: the bench folder is missing pieces or has invalid lines.
        ValueError: an unknown system, switch or kind; ``out`` holds an unfinished run and ``resume`` is off;
            ``resume`` on a run whose settings (bench, kinds, limit, seed, tau, k, ...) differ.
    """
    # resuming without a system list continues the run's own systems
    specs = parse_systems(systems) if systems is not None else [] if resume else parse_systems(["full"])
    bench = limit_queries(load_any_bench(bench_dir, kinds), limit)
    overrides = dict(settings_overrides or {})
    # temperature 0 and a fixed seed: the same seed gives the same LLM answers (where the server honours it)
    llm = {"temperature": 0.0, "seed": seed, **overrides.pop("llm", {})}
    settings = load_settings(profile=profile, llm=llm, **overrides)
    if resume and out is None:
        raise ValueError("resume needs the folder of the run to continue (--out)")
    out_dir = Path(out) if out is not None else Path("runs") / f"eval-{bench.root.resolve().name}-{_stamp()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(out_dir)
    store_dir = _store_dir(store, folder.previous() if resume else None, bench, settings)
    config = _config(bench, specs, kinds, limit, seed, tau, k, settings, store_dir, llm_decomposition)
    result = folder.resume(config) if resume else folder.start(config)
    specs = parse_systems(result.config.systems)
    needs_store = any(s.kind in STORE_KINDS for s in specs if s.name not in result.systems)
    if result.config.store is None and needs_store:
        result.config.store = str(store_dir)
    show = logger.isEnabledFor(logging.INFO) if progress is None else progress
    with _progress(show) as bar:
        ids = _prepare_store(bench, store_dir, settings, bar) if needs_store else {v: v for v in bench.videos}
        ctx = _RunContext(bench, ids, settings.model_copy(update={"store": store_dir}), seed, k, tau,
                          llm_decomposition, out_dir, bar, folder)
        for spec in specs:
            if spec.name not in result.systems:
                folder.finish_system(result, _run_system(ctx, spec, skip_unavailable, resume))
    result.systems = {name: result.systems[name] for name in result.config.systems}
    result.complete = True
    folder.save(result)
    if report:

        result.report_files = write_report(result, out_dir)
        folder.save(result)  # now listing the report files
    return result


def _store_dir(store: str | Path | None, previous: RunResult | None, bench: Bench, settings: Settings) -> Path:
    """The given store, else the one of the run being resumed, else the default one of the bench."""
    if store is not None:
        return Path(store)
    if previous is not None and previous.config.store:
        return Path(previous.config.store)
    return default_store(bench, settings)


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def _config(bench: Bench, specs: Sequence[SystemSpec], kinds: Iterable[str] | None, limit: int | None, seed: int,
            tau: float, k: int, settings: Settings, store: Path, llm_decomposition: bool) -> RunConfig:
    import sys

    needs_store = any(s.kind in STORE_KINDS for s in specs)
    return RunConfig(
        bench=str(bench.root), gallery=len(bench.videos), queries=len(bench.queries),
        kinds=sorted(set(kinds)) if kinds is not None else None, limit=limit, seed=seed, tau=tau, k=k,
        profile=settings.profile, store=str(store) if needs_store else None, llm_decomposition=llm_decomposition,
        systems=[s.name for s in specs],
        llm={"base_url": settings.llm.base_url, "model": settings.llm.model if settings.llm.base_url else
             settings.llm.embedded_model, "temperature": settings.llm.temperature, "seed": settings.llm.seed},
        versions={"twinseek": __version__, "python": sys.version.split()[0], "platform": platform.platform()},
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


# ---------------------------------------------------------------- progress
@contextmanager
def _progress(show: bool) -> Iterator[_Bar]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not show) as bar:
        yield bar


# ---------------------------------------------------------------- store
def _prepare_store(bench: Bench, store_dir: Path, settings: Settings, bar: _Bar) -> dict[str, str]:
    """Ingest the gallery's missing videos; bench id -> store id of every video that made it in."""

    store_dir.mkdir(parents=True, exist_ok=True)
    paths = [bench.videos[v] for v in sorted(bench.videos)]
    task = bar.add_task("ingest", total=len(paths))
    by_path: dict[str, str | None] = {}
    with TwinStore(store_dir) as twin_store:
        ingestor = Ingestor(twin_store, settings.model_copy(update={"store": store_dir}))
        for path in paths:  # one at a time: a failed video is recorded, the rest go on
            res = ingestor.ingest_many([path])[0] if path.is_file() else None
            by_path[str(path)] = res.video_id if res is not None and res.status != "failed" else None
            bar.advance(task)
    ids = {v: sid for v in sorted(bench.videos) if (sid := by_path.get(str(bench.videos[v])))}
    missing = sorted(set(bench.videos) - set(ids))
    if missing:
        logger.warning("%d video(s) could not be ingested and rank last for the store systems: %s",
                       len(missing), ", ".join(missing[:5]))
    return ids


# ---------------------------------------------------------------- running one system
class _RunContext:
    def __init__(self, bench: Bench, ids: dict[str, str], settings: Settings, seed: int, k: int, tau: float,
                 llm_decomposition: bool, out: Path, bar: _Bar, folder: RunFolder) -> None:
        self.bench, self.ids, self.settings, self.seed, self.k, self.tau = bench, ids, settings, seed, k, tau
        self.llm_decomposition, self.out, self.bar, self.folder = llm_decomposition, out, bar, folder


def _run_system(ctx: _RunContext, spec: SystemSpec, skip_unavailable: bool, resume: bool) -> SystemResult:
    """Run one system; with ``resume``, the queries it checkpointed before the run stopped are kept."""
    result = SystemResult(name=spec.name, label=spec.label, kind=spec.kind, ablate=list(spec.ablate))
    done = ctx.folder.checkpointed(spec.name) if resume else {}
    if not resume:
        ctx.folder.clear_checkpoint(spec.name)
    start = time.perf_counter()
    with ExitStack() as stack:
        try:
            scorer = _build_scorer(ctx, spec, stack)
        except (ImportError, TwinseekError) as exc:
            if not skip_unavailable:
                raise
            result.skipped = _unavailable(exc)
            logger.warning("%s skipped: %s", spec.name, result.skipped)
            return result
        grounder = scorer.grounder(ctx.bench) if isinstance(scorer, AgentScorer) else None
        result.records = _score_queries(ctx, spec, scorer, grounder, done)
        result.metrics = aggregate(result.records, tau=ctx.tau)
        if isinstance(scorer, AgentScorer):
            result.examples = _overlay_examples(ctx, spec, scorer, result.records)
    # a resumed system: this session's time plus the time its checkpointed queries took
    result.seconds = round(time.perf_counter() - start + sum(r.seconds for r in done.values()), 2)
    logger.info("%s: %s", spec.name, {k: round(v, 3) for k, v in result.metrics.items()})
    return result


def _unavailable(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return f"not importable ({exc}); install the agent extra: pip install 'twinseek[agent]'"
    return f"{type(exc).__name__}: {exc}"


def _score_queries(ctx: _RunContext, spec: SystemSpec, scorer: EvalScorer, grounder: Grounder | None,
                   done: Mapping[str, QueryResult]) -> list[QueryResult]:
    """Every bench query through the evaluator, each checkpointed as it finishes; ``done`` ones are reused."""
    task = ctx.bar.add_task(spec.name, total=len(ctx.bench.queries), completed=len(done))
    records = []
    for query in ctx.bench.queries:
        record = done.get(query.id)
        if record is None:
            record = evaluate_query(scorer, query, ctx.bench, grounder)
            ctx.folder.append_query(spec.name, record)
            ctx.bar.advance(task)
        records.append(record)
    return records


def _build_scorer(ctx: _RunContext, spec: SystemSpec, stack: ExitStack) -> EvalScorer:
    if spec.kind == "random":

        random_baseline = RandomBaseline(seed=ctx.seed)
        random_baseline.index(ctx.bench.videos)
        return BaselineScorer(random_baseline)
    if spec.kind == "naive":

        naive = NaiveLabelBaseline()
        naive.index(ctx.bench.videos)
        return BaselineScorer(naive)
    if spec.kind in ("dense", "compositional"):
        return ToolScorer(_open_agent(ctx, ctx.settings.store, stack), spec.kind, ctx.ids,  # type: ignore[arg-type]
                          ctx.llm_decomposition)
    if spec.kind == "whole":
        return ToolScorer(_open_agent(ctx, ctx.settings.store, stack), "dense", ctx.ids, ctx.llm_decomposition,
                          localise=False)
    return _agent_scorer(ctx, spec, stack)


def _open_agent(ctx: _RunContext, store: Path, stack: ExitStack) -> Any:
    """The agent (the one search pipeline) over ``store`` with the run's settings and no search deadline."""
    from twinseek.agent import Agent  # ImportError without the agent extra

    overrides = ctx.settings.model_dump(include={"sampling", "specialists", "paper", "llm", "retrieval",
                                                 "torch_threads", "cache_dir"})
    overrides["agent"] = {**ctx.settings.agent.model_dump(), "deadline_s": None}
    return stack.enter_context(Agent.open(store, profile=ctx.settings.profile, **overrides))


def _agent_scorer(ctx: _RunContext, spec: SystemSpec, stack: ExitStack) -> AgentScorer:
    # the one ingested store: refinements are an overlay a search reads only where its own calls asked for them
    agent = _open_agent(ctx, ctx.settings.store, stack)
    return AgentScorer(agent, ctx.ids, k=ctx.k, tau=ctx.tau, switches=spec.switches())


# ---------------------------------------------------------------- overlay examples
def _overlay_examples(ctx: _RunContext, spec: SystemSpec, scorer: AgentScorer,
                      records: Sequence[QueryResult]) -> list[OverlayExample]:
    """A few implicit queries answered right (top hit relevant) and wrong, drawn with their top hit's masks."""
    implicit = [r for r in records if r.kind == "implicit" and r.hits]
    implicit.sort(key=lambda r: not _has_masks(ctx.bench, r.id))  # queries with ground truth first
    hits = [r for r in implicit if r.rank == 1][:EXAMPLES]
    misses = [r for r in implicit if r.rank != 1][:EXAMPLES]
    examples = []
    for outcome, group in (("hit", hits), ("miss", misses)):
        for record in group:
            folder = ctx.out / "overlays" / spec.name / f"{record.id}-{outcome}"
            files = _draw_example(ctx.bench, scorer.cache.get(record.text), record, folder)
            examples.append(OverlayExample(
                query_id=record.id, text=record.text, outcome=outcome, video=record.hits[0].video,  # type: ignore[arg-type]
                positives=record.positives, files=[str(p.relative_to(ctx.out)) for p in files]))
    return examples


def _has_masks(bench: Bench, query_id: str) -> bool:
    return any(isinstance(q, ImplicitQuery) and q.id == query_id and q.has_masks for q in bench.queries)


def _draw_example(bench: Bench, search_result: Any, record: QueryResult, folder: Path) -> list[Path]:
    """The agent's own ``save_overlays`` on the top hit when offered, else our PIL drawing of the mask PNGs."""

    try:
        if search_result is not None and hasattr(search_result, "save_overlays") and search_result.hits:
            top = search_result.model_copy(update={"hits": search_result.hits[:1]})
            return [p for p in top.save_overlays(folder) if p.suffix == ".png"]
        hit = record.hits[0]
        masks: dict[int, list[str]] = {}
        for obj in hit.objects:
            for frame, path in obj.masks.items():
                masks.setdefault(frame, []).append(path)
        return draw_overlays(bench.videos.get(hit.video), masks, folder)
    except (OSError, ValueError, TwinseekError) as exc:  # an example is a nicety: never fail the run for it
        logger.warning("overlay of %s failed: %s", record.id, exc)
        return []
