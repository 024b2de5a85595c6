"""The ``twinseek`` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from twinseek.cli.render import (
    CONTROL,
    console,
    err_console,
    ingest_with_progress,
    print_eval_summary,
    print_ingest_summary,
    print_progress,
    print_reply,
    print_retrieval,
    print_search_result,
    print_twin,
    print_workers,
    safe,
    safe_name,
)
from twinseek.config import EMBEDDED_JUDGE, Settings, load_settings
from twinseek.errors import ConfigError, TwinseekError

if TYPE_CHECKING:
    from twinseek.twins.store import StoreCheck, TwinStore

T = TypeVar("T")

# Help texts are plain text (rich_markup_mode=None): their bracketed notes ("[env TWINSEEK_STORE]", "[default:
# ...]") would otherwise be read as rich markup and vanish.
app = typer.Typer(help="Reasoning text-to-video retrieval over digital twins.", no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
twins_app = typer.Typer(help="Inspect digital twins.", no_args_is_help=True, rich_markup_mode=None)
store_app = typer.Typer(help="Manage a twin store.", no_args_is_help=True, rich_markup_mode=None)
refinements_app = typer.Typer(help="What searches learned about the twins (an overlay on the ingest rows).",
                              no_args_is_help=True, rich_markup_mode=None)
app.add_typer(twins_app, name="twins")
app.add_typer(store_app, name="store")
store_app.add_typer(refinements_app, name="refinements")

from twinseek.embedders.cli import train_app  # noqa: E402  (import-light: heavy modules load per command)

app.add_typer(train_app, name="train")

# Ours, not from any bench (tests/test_generalisation.py): an indirect description of the sample clips' black swan.
DEMO_QUERY = "a dark-feathered waterbird gliding across a pond"
StoreOpt = Annotated[Path | None, typer.Option("--store", "-s", help="Store folder [env TWINSEEK_STORE].")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help="embedded (default) or paper.")]


def _query(value: str) -> str:
    if not value.strip():
        raise typer.BadParameter("the query is empty: say what to look for")
    return value.strip()


def _session_name(value: str) -> str:
    from twinseek.agent.chat import check_session_name

    try:
        return check_session_name(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


QueryArg = Annotated[str, typer.Argument(help="What to look for, in plain words.", callback=_query)]


class ControlCharFilter(logging.Filter):
    """Log messages carry file names and LLM text: their control characters become ``?`` on the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = CONTROL.sub("?", message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, and the third-party "
                                                "libraries' own output (TF Lite, mediapipe, progress bars).")] = False
          ) -> None:
    if not verbose:
        from twinseek.quiet import quiet_third_party

        quiet_third_party()
    handler = RichHandler(console=err_console, show_path=False)  # markup off: messages are plain text
    handler.addFilter(ControlCharFilter())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler])


def _settings(store: Path | None = None, profile: str | None = None, *, existing: bool = False,
              **sampling: object) -> Settings:
    """The settings of a command, with its store folder (``--store`` or ``TWINSEEK_STORE``) checked before
    anything heavy loads: the one place where the CLI's options are validated. ``existing``: the command reads a
    store, which must be there (otherwise it is created on first write)."""
    sampling = {k: v for k, v in sampling.items() if v is not None}
    try:
        settings = load_settings(store=store, profile=profile, sampling=sampling or None)
    except ConfigError as exc:  # e.g. a misspelt TWINSEEK_* variable
        _fail(exc)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _check_store(settings.store, existing)
    return settings


def _check_store(path: Path, existing: bool) -> None:
    """A store folder that cannot be one (a file, below a file) is a usage error; a missing one is an error
    of commands that read a store."""
    from twinseek.errors import StoreError
    from twinseek.twins.store import DB_NAME

    if path.exists() and not path.is_dir():
        _usage_error(f"--store {path} is a file, not a store folder")
    ancestor = next((p for p in (path, *path.parents) if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        _usage_error(f"--store {path} cannot be created: {ancestor} is not a folder")
    if existing and not (path / DB_NAME).is_file():
        _fail(StoreError(f"no twin store at {path} (expected {path / DB_NAME})"))


def _usage_error(message: str) -> NoReturn:
    """A bad option or argument: one line on stderr, exit status 2 (as click's own usage errors)."""
    err_console.print(f"[red]error:[/red] {safe(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _fail(exc: TwinseekError) -> NoReturn:
    err_console.print(f"[red]error:[/red] {safe(exc)}", soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def _errors_exit() -> Iterator[None]:
    """Turn a twinseek error into a red message and exit code 1."""
    try:
        yield
    except TwinseekError as exc:
        _fail(exc)


def _with_store(store: Path | None, action: Callable[[TwinStore], T]) -> T:
    """Run ``action`` on an existing store; a missing store or video exits with a clear message."""
    from twinseek.twins.store import TwinStore

    with _errors_exit(), TwinStore(_settings(store, existing=True).store, create=False) as twin_store:
        return action(twin_store)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Video files or folders (searched recursively).")],
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    fps: Annotated[float | None, typer.Option(help="Sample frames at this rate.")] = None,
    frames: Annotated[int | None, typer.Option(help="Sample this many frames uniformly.")] = None,
    max_side: Annotated[int | None, typer.Option(help="Longest side of decoded frames.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-ingest videos already in the store.")] = False,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", min=1, help="Build twins in this many worker processes (each loads the models once; "
        "default: serial, in this process); with --ray, the number of Ray actors (default: one per CPU of the "
        "cluster).")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS|local", help="Build twins on Ray actors: 'local' starts Ray on this machine, "
        "'auto' or HOST:PORT joins a cluster (ray start). Needs twinseek[ray]; video paths must be readable on "
        "every node.")] = None,
    retries: Annotated[int, typer.Option(min=0, help="With --workers/--ray: further tries of a build that fails "
                                         "other than for bad input (a crashed worker).")] = 1,
) -> None:
    """Turn videos into digital twins. Videos already ingested (same content) are skipped.

    This process stays the only writer of the store: with --workers or --ray it checks and hashes each file,
    sends only new videos to the workers and commits each twin as it comes back."""
    from twinseek.twins.parallel import make_executor
    from twinseek.twins.pipeline import Ingestor, collect_videos
    from twinseek.twins.store import TwinStore

    settings = _settings(store, profile, fps=fps, frames=frames, max_side=max_side)
    missing = [p for p in paths if not p.exists() and not p.is_symlink()]
    if missing:  # checked before the store is opened: a mistyped path creates no empty store
        _usage_error(f"no such file or folder: {missing[0]}" + (f" (and {len(missing) - 1} more)"
                                                              if len(missing) > 1 else ""))
    files = collect_videos(paths)
    if not files:
        err_console.print("[yellow]no video files found[/yellow]")
        raise typer.Exit(1)
    with _errors_exit(), TwinStore(settings.store) as twin_store:
        if (workers or 1) > 1 or ray:
            err_console.print(f"starting {'Ray actors' if ray else f'{workers} worker processes'} ...")
        with contextlib.ExitStack() as stack:
            executor = make_executor(settings, workers, ray)
            if executor is not None:
                stack.enter_context(executor)
            results = ingest_with_progress(Ingestor(twin_store, settings), files, force, executor, retries)
        print_ingest_summary(results, settings)
        if executor is not None:
            print_workers(executor.workers())
    if any(r.status == "failed" for r in results) and not any(r.status != "failed" for r in results):
        raise typer.Exit(1)


@twins_app.command("show")
def twins_show(
    video_id: str,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Full twin as JSON.")] = False,
    compact: Annotated[bool, typer.Option("--compact", help="The compact JSON an LLM reads.")] = False,
    ingest: Annotated[bool, typer.Option("--ingest", help="The ingest rows only, without refinements.")] = False,
) -> None:
    """Show one video's twin: its tracks and relations, with what searches learned laid over them."""
    twin = _with_store(store, lambda s: s.get_twin(video_id, refinements=not ingest))
    if as_json:
        typer.echo(twin.to_full_json())
        return
    if compact:
        from twinseek.twins.views import compact_json

        typer.echo(compact_json(twin))
        return
    print_twin(twin)


@twins_app.command("describe")
def twins_describe(
    video_ids: Annotated[list[str] | None, typer.Argument(help="Videos to describe [default: every video].")] = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {video_id: description} as JSON.")] = False,
) -> None:
    """What each video shows in one line: its main objects by the names a person uses, the scene, on-screen text
    (what the judge reads)."""
    from twinseek.twins.views import description

    def describe_all(s: TwinStore) -> dict[str, str]:
        return {vid: description(s.get_twin(vid, refinements=False)) for vid in (video_ids or s.video_ids())}

    described = _with_store(store, describe_all)
    if as_json:
        typer.echo(json.dumps(described, ensure_ascii=False))
        return
    table = Table()
    table.add_column("video id")
    table.add_column("description")
    for vid, text in described.items():
        table.add_row(safe(vid), safe(text))
    console.print(table)


@twins_app.command("list")
def twins_list(store: StoreOpt = None) -> None:
    """List the videos in a store."""
    videos = _with_store(store, lambda s: s.videos())
    table = Table()
    for col in ("video id", "duration", "frames", "profile", "path"):
        table.add_column(col)
    for v in videos:
        table.add_row(safe(v.video_id), f"{v.duration_s:.1f}s", str(len(v.sampled_frames)), safe(v.profile),
                      safe_name(v.path))
    console.print(table)


@store_app.command("stats")
def store_stats(
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Counts of videos, tracks, instances and relations, and disk use."""
    stats = _with_store(store, lambda s: s.stats())
    if as_json:
        typer.echo(json.dumps(stats))
        return
    for key, value in stats.items():
        console.print(f"{key:>15}: {safe_name(value) if key == 'store' else safe(value)}")


@store_app.command("check")
def store_check(
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Also decode every mask file.")] = False,
) -> None:
    """Check a store: rows whose mask files are missing, SQLite integrity, leftover ingest folders. Exits 1
    when stored data is damaged; re-ingesting a damaged video repairs it."""
    def run(s: TwinStore) -> tuple[StoreCheck, dict[str, str]]:
        report = s.check(deep=deep)
        return report, {v: s.get_video(v).path for v in report.damaged_videos}

    report, paths = _with_store(store, run)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        console.print(f"{safe_name(report.store)}: {report.videos} videos, {report.instances} instances")
        for f in report.findings:
            style = "red" if f.damage else "yellow"
            where = f"{safe(f.video_id)}: " if f.video_id else ""
            console.print(f"  [{style}]{f.kind}[/{style}] {where}{safe_name(f.detail)}")
        if report.ok:
            console.print("[green]ok[/green]" + (" (leftovers are cleaned up on the next open)" if report.findings
                                                 else ""))
        elif paths:
            console.print(f"[red]damaged[/red]: {len(paths)} videos. Repair them by ingesting them again:")
            for path in sorted(set(paths.values())):
                console.print(f"  twinseek ingest {safe_name(path)} --store {safe_name(report.store)}")
        else:
            console.print("[red]damaged[/red]: the database itself (see above)")
    if not report.ok:
        raise typer.Exit(1)


@store_app.command("delete")
def store_delete(video_id: str, store: StoreOpt = None) -> None:
    """Delete a video's twin and its mask files."""
    _with_store(store, lambda s: s.delete(video_id))
    console.print(f"deleted {safe(video_id)}")


TauOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="Relevance threshold of the hits.")]
KOpt = Annotated[int, typer.Option("--k", "-k", min=1, help="How many videos.")]
ToolOpt = Annotated[str, typer.Option(help="Retrieval tool: compositional, dense or fused.")]
RerankOpt = Annotated[str | None, typer.Option(help="ECR reranker: none, llm, listwise, cross-encoder or qwen3 "
                                                    "[default: the settings' retrieval.reranker].")]
NoLLMOpt = Annotated[bool, typer.Option("--no-llm", help="Decompose the query by rules, not with the LLM.")]
NoQDOpt = Annotated[bool, typer.Option("--no-qd", help="No query decomposition: the query is one sub-query.")]
NoCAOpt = Annotated[bool, typer.Option("--no-ca", help="No compositional alignment: dense retrieval only.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="The full SearchResult as JSON.")]


def _search_context(k: int, **options: Any) -> dict[str, Any]:
    """The Agent.search options of a command, checked before the store is opened."""
    from twinseek.agent.context import AgentContext

    options = {name: value for name, value in options.items() if value is not None}
    try:
        AgentContext(k=k, **options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return options


@refinements_app.command("list")
def refinements_list(
    store: StoreOpt = None,
    video: Annotated[str | None, typer.Option("--video", help="Only this video's refinements.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per refinement, with provenance.")] = False,
) -> None:
    """List the refinements (oldest first): what each action found, its confidence, model and provenance."""
    from twinseek.agent.refine import describe_refinement

    rows = _with_store(store, lambda s: s.refinements(_known(s, video)))
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    table = Table(title=f"{len(rows)} refinements")
    for col in ("id", "video", "track", "action", "field", "says", "confidence", "model", "round", "created"):
        table.add_column(col)
    for r in rows:
        p = r.provenance
        table.add_row(str(r.id), safe(r.video_id), "" if r.track_id is None else str(r.track_id), safe(r.action),
                      r.field, safe(describe_refinement(r)),
                      "" if r.confidence is None else f"{r.confidence:.2f}", safe(r.model),
                      str(p.get("round", "")), safe(p.get("created_at", "")))
    console.print(table)


@refinements_app.command("clear")
def refinements_clear(
    store: StoreOpt = None,
    video: Annotated[str | None, typer.Option("--video", help="Only this video's refinements.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete refinements (the ingest rows stay as they are; searches will run their actions again)."""
    what = f"the refinements of {video}" if video else "every refinement"
    if not yes and not typer.confirm(f"Delete {what}?"):
        raise typer.Exit(1)
    removed = _with_store(store, lambda s: s.clear_refinements(_known(s, video)))
    console.print(f"deleted {removed} refinements" + (f" of {safe(video)}" if video else ""))


def _known(twin_store: TwinStore, video: str | None) -> str | None:
    """``video`` when the store holds it (a misspelt id is an error, not an empty list)."""
    from twinseek.errors import VideoNotFoundError

    if video is not None and video not in twin_store:
        raise VideoNotFoundError(video)
    return video


@store_app.command("diff")
def store_diff(
    a: Annotated[Path, typer.Argument(help="A store folder.")],
    b: Annotated[Path, typer.Argument(help="Another store folder.")],
    masks: Annotated[bool, typer.Option("--masks/--no-masks", help="Compare mask pixels too.")] = True,
    limit: Annotated[int, typer.Option(min=1, help="Differences listed at most.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare two stores row by row: videos, tracks, instances, relations and mask pixels (ingest times, mask
    folder names and relation row ids are bookkeeping and not compared). Exit code 1 when they differ."""
    from twinseek.twins.compare import diff_stores
    from twinseek.twins.store import TwinStore

    with _errors_exit(), TwinStore(a, create=False) as store_a, TwinStore(b, create=False) as store_b:
        diff = diff_stores(store_a, store_b, masks=masks, limit=limit)
    if as_json:
        typer.echo(diff.model_dump_json(indent=2))
    else:
        counts = (f"{diff.videos} videos, {diff.tracks} tracks, {diff.instances} instances, {diff.relations} "
                  f"relations, {diff.masks} masks compared")
        for line in diff.differences:
            console.print(escape(line), highlight=False)
        console.print(f"[green]identical[/green]: {counts}" if diff.identical
                      else f"[red]{len(diff.differences)} differences[/red] ({counts})")
    if not diff.identical:
        raise typer.Exit(1)


@app.command()
def search(
    query: QueryArg,
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    k: KOpt = 10,
    tool: ToolOpt = "fused",
    rerank: RerankOpt = None,
    no_llm: NoLLMOpt = False,
    no_qd: NoQDOpt = False,
    no_ca: NoCAOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Rank the videos of a store for a query: the agent with reasoning and refinement off (decomposition,
    retrieval and reranking; no twin reasoning)."""
    settings = _settings(store, profile, existing=True)  # first: a missing store says so before anything loads
    options = _search_context(k, tool=tool, reranker=rerank, decomposer="rules" if no_llm else "llm", qd=not no_qd,
                              ca=not no_ca, lr=False, jit=False, tau=0.0)  # a ranking: every candidate shown
    from twinseek.agent.api import Agent

    with _errors_exit(), Agent.open(settings.store, profile=settings.profile) as agent:
        result = agent.search(query, k=k, **options)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    print_retrieval(result)


@app.command()
def ask(
    query: QueryArg,
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    k: KOpt = 10,
    tau: TauOpt = 0.5,
    tool: ToolOpt = "fused",
    rerank: RerankOpt = None,
    no_llm: NoLLMOpt = False,
    no_qd: NoQDOpt = False,
    no_ca: NoCAOpt = False,
    no_lr: Annotated[bool, typer.Option("--no-lr", help="No LLM reasoning: rank by retrieval score.")] = False,
    no_jit: Annotated[bool, typer.Option("--no-jit", help="No just-in-time refinement of the twins.")] = False,
    video: Annotated[list[str] | None, typer.Option("--video", help="Search only these video ids (repeatable).")] = None,
    llm_weight: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Share of the LLM's judgement in the "
                                                     "relevance [default: the settings' agent.llm_weight].")] = None,
    deadline: Annotated[float | None, typer.Option(help="Seconds the search may take, > 0 [default: the settings' "
                                                   "agent.deadline_s].")] = None,
    no_deadline: Annotated[bool, typer.Option("--no-deadline", help="Let the search take as long as it needs.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ask the reasoning agent once: decompose, retrieve, rerank, reason over each candidate's twin and refine it
    just in time. Node-by-node progress goes to stderr; the answer (or --json) to stdout."""
    settings = _settings(store, profile, existing=True)  # first: a missing store says so before anything loads
    options = _search_context(k, tau=tau, tool=tool, reranker=rerank, decomposer="rules" if no_llm else "llm",
                              qd=not no_qd, ca=not no_ca, lr=not no_lr, jit=not no_jit,
                              videos=tuple(video) if video else None, llm_weight=llm_weight, deadline_s=deadline)
    if no_deadline:
        options["deadline_s"] = None
    from twinseek.agent.api import Agent

    result = None
    with _errors_exit(), Agent.open(settings.store, profile=settings.profile) as agent:
        for event in agent.stream(query, k=k, **options):
            if event.kind == "result":
                result = event.result
            else:
                print_progress(event)
    assert result is not None  # the stream always ends with the result
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    print_search_result(result)


@app.command("eval")
def eval_(
    bench_dir: Annotated[Path, typer.Argument(help="Bench folder (videos/, queries.jsonl, masks/).")],
    store: Annotated[Path | None, typer.Option("--store", "-s", help="Twin store of the gallery [default: "
                                               "~/.cache/twinseek/bench-stores/<bench>-<profile>].")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder [default: runs/eval-<bench>-<time>].")] = None,
    profile: ProfileOpt = None,
    systems: Annotated[str | None, typer.Option(help="Comma-separated: full, full-qd, full-ca-lr, random, naive, "
                                                     "dense, compositional.")] = None,
    ablate: Annotated[str | None, typer.Option(help="The agent with these switches off, e.g. QD,CA (one run).")] = None,
    baseline: Annotated[list[str] | None, typer.Option(help="random, naive, dense or compositional (repeatable).")] = None,
    all_systems: Annotated[bool, typer.Option("--all", help="Full system, each ablation and every baseline.")] = False,
    kinds: Annotated[str | None, typer.Option(help="Comma-separated query kinds (default: all).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N queries of each kind.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random baseline and the LLM.")] = 0,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Videos the agent returns.")] = 10,
    tau: Annotated[float, typer.Option(min=0.0, max=1.0, help="Relevance threshold.")] = 0.5,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Rule-based decomposition for dense/compositional.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out: finished systems and queries "
                                                          "are kept; the settings must be the same.")] = False,
) -> None:
    """Evaluate the agent, its ablations and baselines on a bench; writes results.json (as it goes) and a report."""
    from twinseek.evals.runner import run
    from twinseek.evals.schemas import ALL_SYSTEMS, SystemSpec, parse_systems

    if resume and out is None:
        raise typer.BadParameter("--resume needs --out, the folder of the run to continue")
    try:
        names = list(ALL_SYSTEMS) if all_systems else [*(systems.split(",") if systems else []), *(baseline or [])]
        wanted: list[str | SystemSpec] = [*names, *([SystemSpec.agent(ablate.split(","), ablate)] if ablate else [])]
        # --resume alone continues the run's own systems
        specs = parse_systems(wanted) if wanted else None if resume else parse_systems(["full"])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    kind_list = [x.strip() for x in kinds.split(",") if x.strip()] if kinds else None
    with _errors_exit():
        try:
            result = run(bench_dir, store=store, out=out, systems=specs, kinds=kind_list, limit=limit, seed=seed,
                         profile=profile or "embedded", k=k, tau=tau,  # type: ignore[arg-type]
                         llm_decomposition=not no_llm, skip_unavailable=all_systems, progress=True, resume=resume)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    print_eval_summary(result)


@app.command()
def calibrate(
    bench_dir: Annotated[Path, typer.Argument(help="Bench folder with labelled ranked queries (queries.jsonl).")],
    store: Annotated[Path, typer.Option("--store", "-s", help="Twin store holding the bench's videos.")],
    folds: Annotated[int, typer.Option(min=2, help="Held-out report: the queries split by video into folds, each "
                                                   "scored by calibrators fitted on the others.")] = 2,
    fit_fold: Annotated[int | None, typer.Option(min=0, help="Fit the calibrators written on this fold's queries "
                                                 "only (the others stay held out) [default: all].")] = None,
    holdout: Annotated[int, typer.Option(min=0, help="First N queries of each kind left out of everything (those "
                                                     "`twinseek eval --limit N` reports).")] = 0,
    method: Annotated[str, typer.Option(help="platt or isotonic.")] = "platt",
    judge: Annotated[str | None, typer.Option(help="verdict, describe, yesno or listwise [default: the settings' agent.judge]."
                                              )] = None,
    tau: Annotated[float, typer.Option(min=0.0, max=1.0, help="Threshold of the held-out report.")] = 0.5,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Calibrator file [default: STORE/"
                                             "calibration-<judge>.json, which the store's searches use; the "
                                             "retrieval calibrator goes next to it].")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N fit queries of each kind.")] = None,
    judge_top: Annotated[int, typer.Option(min=1, help="Best-ranked candidates the LLM judges per query for the "
                                           "fit.")] = 1,
    rows: Annotated[Path | None, typer.Option(help="Refit from the labelled rows an earlier run saved "
                                              "(calibration-<judge>-rows.jsonl) instead of searching again.")] = None,
    profile: ProfileOpt = None,
) -> None:
    """Fit the maps from a candidate's judgement, similarity and rank to P(relevant) for this LLM and judge mode
    (then tau=0.5 means P >= 0.5), and report them on held-out folds."""
    from twinseek.agent.context import JUDGES
    from twinseek.evals.calibrate import calibrate as fit

    if method not in ("platt", "isotonic"):
        raise typer.BadParameter(f"method must be platt or isotonic, got {method!r}")
    if judge is not None and judge not in JUDGES:
        raise typer.BadParameter(f"judge must be one of {', '.join(JUDGES)}, got {judge!r}")
    with _errors_exit():
        try:
            cal, _, report = fit(bench_dir, store, holdout=holdout, method=method, judge=judge,  # type: ignore[arg-type]
                                 out=out, limit=limit, folds=folds, tau=tau, progress=True, rows_from=rows,
                                 judge_top=judge_top, fit_fold=fit_fold,
                                 profile=profile or "embedded")
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    meta = cal.fitted_on
    if meta.get("features_dropped"):
        console.print(f"[yellow]dropped[/yellow] {safe(', '.join(meta['features_dropped']))}: fitted against its "  # type: ignore[arg-type]
                      "direction (no usable signal in these labels)")
    console.print(f"{cal.method} calibrator for {safe(cal.llm)}/{cal.judge} over {', '.join(cal.features)}: "
                  f"{meta['pairs']} judged candidates ({meta['relevant']} relevant) from "
                  f"{len(meta.get('queries', []))} queries")  # type: ignore[arg-type]
    for title, held in ((f"the top {judge_top} judged", report.held_out),
                        ("none judged (judge_top 0)", report.held_out_unjudged)):
        table = Table(title=f"held out, {title} ({report.folds}-fold cross-fitted, tau {report.tau:g})")
        for col in ("kind", "queries", "R@1", "R@1 retrieval", "positives >= tau", "absent rejected"):
            table.add_column(col)
        for kind, m in held.items():
            cells = [f"{m[key]:.3f}" if key in m else "-" for key in ("r@1", "r@1_retrieval", "positives_above_tau",
                                                                      "rejected")]
            table.add_row(safe(kind), str(int(m["queries"])), *cells)
        console.print(table)
    for path in report.paths:
        console.print(f"written: {safe_name(Path(path))}")


@app.command()
def chat(
    store: StoreOpt = None,
    session: Annotated[str, typer.Option(help="Conversation name (letters, digits, '_', '.', '-'); the same name "
                                               "resumes it.", callback=_session_name)] = "default",
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Videos per answer.")] = 5,
    profile: ProfileOpt = None,
) -> None:
    """A chat session over the agent: ask, refine ("only the ones at night"), :why N, :show N, :history.
    Ctrl-C cancels the running search and returns to the prompt; Ctrl-D leaves."""
    import sys

    settings = _settings(store, profile, existing=True)
    from twinseek.agent.api import Agent
    from twinseek.agent.chat import HELP, ChatSession

    with _errors_exit(), Agent.open(settings.store, profile=settings.profile, warm=True) as agent:
        session_ = ChatSession(agent, settings.store, session=session, k=k)
        console.print(f"[dim]session {session!r} in {safe_name(settings.store)}: {len(session_.turns)} earlier "
                      f"turns. {safe(HELP)} Ctrl-C cancels a search, Ctrl-D leaves.[/dim]")
        try:
            for line in _input_lines(sys.stdin.isatty(), settings.store):
                _chat_turn(session_, line)
        finally:
            session_.close()


def _chat_turn(session, line: str) -> None:  # type: ignore[no-untyped-def]
    """Answer one line; Ctrl-C during the search cancels this turn only (the session and its history stay)."""
    try:
        reply = session.handle(line)
    except KeyboardInterrupt:
        console.print("[yellow]cancelled[/yellow] (the session goes on; Ctrl-D leaves)")
        return
    print_reply(reply)


def history_file(store: Path) -> Path:
    """The chat's prompt history, ``<store>/.chat_history``, readable by its owner only (queries can be
    private): created 0600, and an existing one made so."""
    path = Path(store) / ".chat_history"
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def _input_lines(interactive: bool, store: Path) -> Iterator[str]:
    """Lines from a prompt_toolkit prompt (with history) on a terminal, else from standard input."""
    if not interactive:
        import sys

        yield from (line.rstrip("\n") for line in sys.stdin)
        return
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    prompt: PromptSession[str] = PromptSession(history=FileHistory(str(history_file(store))))
    while True:
        try:
            yield prompt.prompt("twinseek> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return


@app.command()
def demo(
    store: Annotated[Path, typer.Option("--store", "-s", help="Where the demo store goes.")] = Path("demo-store"),
    query: Annotated[str, typer.Option("--query", "-q", help="The sample query.", callback=_query)] = DEMO_QUERY,
    profile: ProfileOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Videos to return.")] = 3,
    tau: Annotated[float, typer.Option(min=0.0, max=1.0, help="Relevance threshold; the demo shows every "
                                       "candidate with its relevance (searches keep >= 0.5 by default).")] = 0.0,
) -> None:
    """The main job on the bundled sample clips: ingest them, answer a sample query with the agent, and write
    mask overlays of the answer."""
    settings = _settings(store, profile)  # first: an unusable --store says so before anything loads
    from twinseek.agent.api import Agent
    from twinseek.agent.resources import start_in_background, warm_llm
    from twinseek.data import sample_clips
    from twinseek.llm.client import open_llm
    from twinseek.twins.pipeline import Ingestor
    from twinseek.twins.store import TwinStore

    if settings.profile == "embedded" and not settings.llm.base_url:
        # the LLM loads and caches its prompt prefixes while the clips are ingested (ingest uses one core)
        console.print("[dim]starting the embedded LLMs in the background (Qwen2.5-Coder-0.5B decomposes, 1.5B judges, "
                      "on llama.cpp; the first run assembles their GGUFs, 490 MB and 1.1 GB, from the installed "
                      "packages into the cache, once)...[/dim]")
        with contextlib.suppress(TwinseekError, OSError):
            judge = settings.agent.judge or EMBEDDED_JUDGE
            judges = settings.agent.judge_top != 0
            warm_llm(open_llm(settings), judge if judges else None)
            if judges and judge == "describe" and settings.llm.judge_model:
                start_in_background(open_llm(settings, embedded_model=settings.llm.judge_model))
    with TwinStore(settings.store) as twin_store:
        results = ingest_with_progress(Ingestor(twin_store, settings), sample_clips(), force=False)
        print_ingest_summary(results, settings)
        for r in results:
            if r.video_id:
                print_twin(twin_store.get_twin(r.video_id))
    console.print(f"\n[bold]query:[/bold] {safe(query)}")
    with _errors_exit(), Agent.open(settings.store, profile=settings.profile) as agent:
        result = agent.search(query, k=k, tau=tau)
    print_search_result(result)
    overlays = result.save_overlays(settings.store / "overlays")
    console.print(f"overlays ({len(overlays)} files): {safe_name(settings.store / 'overlays')}")
    console.print(_embedded_limits_note(settings))


def _embedded_limits_note(settings: Settings) -> str:
    if settings.profile != "embedded":
        return ""
    return ("[dim]embedded default: no depth model ships offline (depth is null); categories come from "
            "COCO boxes and ImageNet classes (plus 'person' from mediapipe); attributes are colour and size "
            "only; no model describes actions or speech. Use --profile paper for SAM-2, OWLv2, Depth Anything "
            "and Qwen2.5-VL.[/dim]")


@app.command()
def serve(
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Bind address; beyond loopback it needs --token or --insecure.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option(envvar="TWINSEEK_WEB_TOKEN", help="Require this bearer token on "
                                              "every page and API route [env TWINSEEK_WEB_TOKEN].")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Serve beyond loopback without a token.")] = False,
    profile: ProfileOpt = None,
    runs: Annotated[Path, typer.Option(help="Folder of `twinseek eval` runs for the reports page.")] = Path("runs"),
    max_upload_mb: Annotated[float, typer.Option(min=1, help="Largest upload request, in MB.")] = 2048,
    ingest_root: Annotated[list[Path] | None, typer.Option(help="A server folder the ingest page may name "
                                                           "(repeatable) [default: the current folder].")] = None,
) -> None:
    """The web app: search with live progress and masks over the videos, the twin inspector, ingest, eval
    reports; the JSON API under /api (OpenAPI at /docs). Needs the web extra."""
    try:
        from twinseek.web import WebSettings
        from twinseek.web import serve as run_server
    except ImportError as exc:
        err_console.print(f"[red]error:[/red] the web app needs the web extra: pip install 'twinseek[web]' ({safe(exc)})")
        raise typer.Exit(1) from exc
    from pydantic import ValidationError

    settings = _settings(store, profile)
    try:
        web = WebSettings(store=settings.store, host=host, port=port, token=token, insecure=insecure,
                          profile=settings.profile, runs=runs, max_upload_mb=max_upload_mb,
                          ingest_roots=ingest_root or [Path.cwd()])
    except ValidationError as exc:
        first = exc.errors()[0]
        _usage_error(f"--{'-'.join(map(str, first['loc'])).replace('_', '-')}: {first['msg']}")
    with _errors_exit():
        run_server(web, on_ready=lambda url: console.print(
            f"twinseek on {safe(url)} (store {safe_name(web.store)})"
            + ("; it asks for the token: open the address with ?token=TOKEN once" if web.token else "")))
