"""The ``twinseek`` command line."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twinseek.config import Settings, load_settings
from twinseek.errors import TwinseekError

if TYPE_CHECKING:
    from twinseek.twins.store import TwinStore

T = TypeVar("T")

app = typer.Typer(help="Reasoning text-to-video retrieval over digital twins.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
twins_app = typer.Typer(help="Inspect digital twins.", no_args_is_help=True)
store_app = typer.Typer(help="Manage a twin store.", no_args_is_help=True)
app.add_typer(twins_app, name="twins")
app.add_typer(store_app, name="store")

from twinseek.embedders.cli import train_app  # noqa: E402  (import-light: heavy modules load per command)

app.add_typer(train_app, name="train")

console = Console()
err_console = Console(stderr=True)

DEMO_QUERY = "a waterbird whose plumage contradicts what Europeans long believed about the colour of its species"
StoreOpt = Annotated[Path | None, typer.Option("--store", "-s", help="Store folder [env TWINSEEK_STORE].")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help="embedded (default) or paper.")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)])


def _settings(store: Path | None = None, profile: str | None = None, **sampling: object) -> Settings:
    sampling = {k: v for k, v in sampling.items() if v is not None}
    try:
        return load_settings(store=store, profile=profile, sampling=sampling or None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _fail(exc: TwinseekError) -> NoReturn:
    err_console.print(f"[red]error:[/red] {exc}")
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

    with _errors_exit(), TwinStore(_settings(store).store, create=False) as twin_store:
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
            results = _ingest_with_progress(Ingestor(twin_store, settings), files, force, executor, retries)
        _print_ingest_summary(results, settings)
        if executor is not None:
            _print_workers(executor.workers())
    if any(r.status == "failed" for r in results) and not any(r.status != "failed" for r in results):
        raise typer.Exit(1)


def _ingest_with_progress(ingestor, files: list[Path], force: bool, executor=None,  # type: ignore[no-untyped-def]
                          retries: int = 1):
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        videos = progress.add_task("videos", total=len(files))
        frames = progress.add_task("frames", total=None)

        def done(result) -> None:  # type: ignore[no-untyped-def]
            progress.advance(videos)
            progress.advance(frames, result.frames)

        return ingestor.ingest_many(files, force=force, on_done=done, executor=executor, retries=retries)


def _print_ingest_summary(results, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"ingest into {settings.store} (profile {settings.profile})")
    by_worker = any(r.worker for r in results)
    for col in ("file", "status", "video id", "frames", "tracks", "seconds") + (("worker",) if by_worker else ()):
        table.add_column(col)
    for r in results:
        style = {"ingested": "green", "skipped": "dim", "failed": "red"}[r.status]
        table.add_row(Path(r.path).name, f"[{style}]{r.status}[/{style}]", r.video_id or "", str(r.frames or ""),
                      str(r.tracks or ""), f"{r.seconds:.1f}" if r.seconds else "",
                      *((r.worker or "",) if by_worker else ()))
    console.print(table)
    for r in results:
        if r.status == "failed":
            console.print(f"[red]failed[/red] {r.error}")
    counts = {s: sum(r.status == s for r in results) for s in ("ingested", "skipped", "failed")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))


def _print_workers(workers) -> None:  # type: ignore[no-untyped-def]
    """One line on the workers of a parallel ingest: how many, on how many hosts / Ray nodes, peak memory."""
    if not workers:
        return
    nodes = {w.node_id or w.host for w in workers}
    rss = sorted(w.peak_rss_mb for w in workers)
    where = ("Ray node" if workers[0].node_id else "host") + ("s" if len(nodes) > 1 else "")
    console.print(f"{len(workers)} workers on {len(nodes)} {where}, "
                  f"peak RSS per worker {rss[0]:.0f}-{rss[-1]:.0f} MiB")


@twins_app.command("show")
def twins_show(
    video_id: str,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Full twin as JSON.")] = False,
    compact: Annotated[bool, typer.Option("--compact", help="The compact JSON an LLM reads.")] = False,
) -> None:
    """Show one video's twin: its tracks and relations."""
    twin = _with_store(store, lambda s: s.get_twin(video_id))
    if as_json:
        typer.echo(twin.to_full_json())
        return
    if compact:
        typer.echo(twin.to_compact_json())
        return
    print_twin(twin)


def print_twin(twin) -> None:  # type: ignore[no-untyped-def]
    from rich.markup import escape

    from twinseek.tools.encoders import glossed_words
    from twinseek.twins.knowledge import word_knowledge
    from twinseek.twins.model import screen_lines

    v = twin.video
    console.print(f"[bold]{v.video_id}[/bold]  {v.width}x{v.height}  {v.duration_s:.1f}s  "
                  f"{len(v.sampled_frames)} sampled frames  profile {v.profile}")
    console.print("  models: " + ", ".join(f"{p.role}={p.model} ({p.tier})" for p in v.specialists))
    table = Table(show_edge=False)
    for col in ("track", "category", "score", "attributes", "frames", "motion", "area"):
        table.add_column(col)
    for t in twin.tracks:
        cat = t.category + (f" ({t.category_group})" if t.category_group else "")
        table.add_row(str(t.track_id), cat, f"{t.category_score:.2f}", t.attributes,
                      f"{t.first_frame}-{t.last_frame} ({t.frame_count})", t.direction, f"{t.mean_area:.3f}")
    console.print(table)
    if v.screen_text:
        lines = screen_lines(v.screen_text)
        console.print("  on-screen text: " + " / ".join(f'"{escape(line)}"' for line in lines[:12])
                      + (f" … ({len(lines) - 12} more)" if len(lines) > 12 else ""))
    knowledge = word_knowledge()
    glosses = dict.fromkeys(g for t in twin.tracks for word, group in glossed_words(t)
                            if (g := knowledge.gloss(word, group)))
    for gloss in glosses:
        console.print(f"  [dim]know:[/dim] {escape(gloss)}")
    if twin.relations:
        shown = twin.relations[:12]
        console.print("  relations: " + "; ".join(
            f"{r.subject_track} {r.predicate}" + (f" {r.object_track}" if r.object_track else "")
            + f" [{r.frame_start}-{r.frame_end}]" for r in shown)
            + (f" … ({len(twin.relations) - len(shown)} more)" if len(twin.relations) > len(shown) else ""))


@twins_app.command("list")
def twins_list(store: StoreOpt = None) -> None:
    """List the videos in a store."""
    videos = _with_store(store, lambda s: s.videos())
    table = Table()
    for col in ("video id", "duration", "frames", "profile", "path"):
        table.add_column(col)
    for v in videos:
        table.add_row(v.video_id, f"{v.duration_s:.1f}s", str(len(v.sampled_frames)), v.profile, v.path)
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
        console.print(f"{key:>15}: {value}")


@store_app.command("delete")
def store_delete(video_id: str, store: StoreOpt = None) -> None:
    """Delete a video's twin and its mask files."""
    _with_store(store, lambda s: s.delete(video_id))
    console.print(f"deleted {video_id}")


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
    query: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    store: StoreOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", help="How many videos.")] = 10,
    tool: Annotated[str, typer.Option(help="compositional, dense or fused.")] = "fused",
    rerank: Annotated[str | None, typer.Option(help="none, llm, listwise, cross-encoder or qwen3.")] = None,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Rule-based query decomposition.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The full result as JSON.")] = False,
) -> None:
    """Rank the videos of a store for a query (coarse retrieval stage: no twin reasoning)."""
    from twinseek.tools.retrieval import Retriever
    from twinseek.twins.store import TwinStore

    if tool not in ("compositional", "dense", "fused"):
        raise typer.BadParameter("--tool must be compositional, dense or fused")
    settings = _settings(store)
    if rerank is not None:
        settings.retrieval.reranker = rerank  # type: ignore[assignment]
    with _errors_exit(), TwinStore(settings.store, create=False) as twin_store:
        retriever = Retriever(twin_store, settings)
        retriever.sync()
        decomposition = retriever.decompose(query, use_llm=not no_llm)
        result = retriever.search(query, k=k, tool=tool, decomposition=decomposition)  # type: ignore[arg-type]
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    print_retrieval(result)


def print_retrieval(result) -> None:  # type: ignore[no-untyped-def]
    d = result.decomposition
    console.print(f"[bold]{result.query}[/bold]  ->  {d.rewritten}  [dim]({d.source})[/dim]")
    console.print("  sub-queries: " + "; ".join(
        f"{'NOT ' if q.negated else ''}{q.text} [{q.type}, {q.weight:.1f}]" for q in d.subqueries))
    table = Table(show_edge=False)
    for col in ("#", "video", "score", "stages", "best evidence"):
        table.add_column(col)
    for hit in result.hits:
        stages = " ".join(f"{name[:4]}={v:.2f}" for name, v in hit.scores.items())
        best = max(hit.evidence, key=lambda m: m.similarity, default=None)
        evidence = f"{best.text} ({best.similarity:.2f})" if best is not None and best.text else ""
        table.add_row(str(hit.rank), hit.video_id, f"{hit.score:.3f}", stages, evidence)
    console.print(table)
    console.print("  [dim]" + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
                  + " | " + ", ".join(f"{k}={v}" for k, v in result.models.items()) + "[/dim]")


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
) -> None:
    """Evaluate the agent, its ablations and baselines on a bench; writes results.json and a report."""
    from twinseek.evals.runner import ALL_SYSTEMS, SystemSpec, parse_systems, run

    try:
        names = list(ALL_SYSTEMS) if all_systems else [*(systems.split(",") if systems else []), *(baseline or [])]
        specs = parse_systems([*names, *([SystemSpec.agent(ablate.split(","), ablate)] if ablate else [])] or ["full"])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    kind_list = [x.strip() for x in kinds.split(",") if x.strip()] if kinds else None
    with _errors_exit():
        try:
            result = run(bench_dir, store=store, out=out, systems=specs, kinds=kind_list, limit=limit, seed=seed,
                         profile=profile or "embedded", k=k, tau=tau,  # type: ignore[arg-type]
                         llm_decomposition=not no_llm, skip_unavailable=all_systems, progress=True)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    _print_eval_summary(result)


def _print_eval_summary(result) -> None:  # type: ignore[no-untyped-def]
    from twinseek.evals.report import HEADLINE

    metrics = result.metrics()
    keys = [key for key in HEADLINE.values() if any(key in m for m in metrics.values())]
    table = Table(title=f"eval on {Path(result.config.bench).name} ({result.config.queries} queries)")
    table.add_column("system")
    short = {"r@1": "R@1", "rejection@tau": "reject", "accuracy": "acc"}
    for key in keys:
        kind, metric = key.split("_", 1)
        table.add_column(f"{kind[:8]} {short.get(metric, metric)}", justify="right")
    for s in result.systems.values():
        if s.skipped:
            table.add_row(s.label, f"[yellow]skipped[/yellow] {s.skipped[:60]}")
            continue
        table.add_row(s.label, *(f"{s.metrics[key]:.3f}" if key in s.metrics else "–" for key in keys))
    console.print(table)
    console.print(f"results: {result.results_path}")
    if result.report_files:
        console.print(f"report:  {result.report_files[0]}")


@app.command()
def chat(
    store: StoreOpt = None,
    session: Annotated[str, typer.Option(help="Conversation name; the same name resumes it.")] = "default",
    k: Annotated[int, typer.Option("--k", "-k", help="Videos per answer.")] = 5,
    profile: ProfileOpt = None,
) -> None:
    """A chat session over the agent: ask, refine ("only the ones at night"), :why N, :show N, :history."""
    import sys

    from twinseek.agent.api import Agent
    from twinseek.agent.chat import HELP, ChatSession

    settings = _settings(store, profile)
    with _errors_exit(), Agent.open(settings.store, profile=settings.profile) as agent:
        session_ = ChatSession(agent, settings.store, session=session, k=k)
        console.print(f"[dim]session {session!r} in {settings.store}: {len(session_.turns)} earlier turns. {HELP} "
                      "Ctrl-D to leave.[/dim]")
        try:
            for line in _input_lines(sys.stdin.isatty(), settings.store):
                _print_reply(session_.handle(line))
        finally:
            session_.close()


def _input_lines(interactive: bool, store: Path) -> Iterator[str]:
    """Lines from a prompt_toolkit prompt (with history) on a terminal, else from standard input."""
    if not interactive:
        import sys

        yield from (line.rstrip("\n") for line in sys.stdin)
        return
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    prompt: PromptSession[str] = PromptSession(history=FileHistory(str(Path(store) / ".chat_history")))
    while True:
        try:
            yield prompt.prompt("twinseek> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return


def _print_reply(reply) -> None:  # type: ignore[no-untyped-def]
    if reply.kind == "results" and reply.result is not None:
        table = Table(title=reply.text, show_edge=False)
        for col in ("#", "video", "relevance", "objects", "reasoning"):
            table.add_column(col)
        for hit in reply.result.hits:
            objects = ", ".join(f"#{o.track_id} {o.category}" for o in hit.objects)
            table.add_row(str(hit.rank), hit.video_id, f"{hit.relevance:.2f}", objects, hit.reasoning[:80])
        console.print(table if reply.result.hits else f"no video above tau for: {reply.text}")
    elif reply.kind == "show":
        console.print(reply.text)
        for f in reply.files:
            console.print(f"  {f}")
    else:
        style = "red" if reply.kind == "error" else ""
        console.print(f"[{style}]{reply.text}[/{style}]" if style else reply.text)


@app.command()
def demo(
    store: Annotated[Path, typer.Option("--store", "-s", help="Where the demo store goes.")] = Path("demo-store"),
    query: Annotated[str, typer.Option("--query", "-q", help="The sample query.")] = DEMO_QUERY,
    profile: ProfileOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Videos to return.")] = 3,
) -> None:
    """The main job on the bundled sample clips: ingest them, answer a sample query with the agent, and write
    mask overlays of the answer."""
    from twinseek.agent.api import Agent
    from twinseek.data import sample_clips
    from twinseek.twins.pipeline import Ingestor
    from twinseek.twins.store import TwinStore

    settings = _settings(store, profile)
    with TwinStore(settings.store) as twin_store:
        results = _ingest_with_progress(Ingestor(twin_store, settings), sample_clips(), force=False)
        _print_ingest_summary(results, settings)
        for r in results:
            if r.video_id:
                print_twin(twin_store.get_twin(r.video_id))
    console.print(f"\n[bold]query:[/bold] {query}")
    if settings.profile == "embedded" and not settings.llm.base_url:
        console.print("[dim]starting the embedded LLM (Qwen2.5-Coder-0.5B on llama.cpp; the first run assembles "
                      "its 490 MB GGUF from the installed packages into the cache, once)...[/dim]")
    with _errors_exit(), Agent.open(settings.store, profile=settings.profile) as agent:
        result = agent.search(query, k=k)
    print_search_result(result)
    overlays = result.save_overlays(settings.store / "overlays")
    console.print(f"overlays ({len(overlays)} files): {settings.store / 'overlays'}")
    console.print(_embedded_limits_note(settings))


def print_search_result(result) -> None:  # type: ignore[no-untyped-def]
    d = result.decomposition
    console.print("sub-queries: " + "; ".join(f"{'NOT ' if q.negated else ''}{q.text}" for q in d.subqueries))
    table = Table(show_edge=False)
    for col in ("#", "video", "relevance", "objects (masks)", "reasoning"):
        table.add_column(col)
    for hit in result.hits:
        objects = ", ".join(f"#{o.track_id} {o.category} ({len(o.masks)})" for o in hit.objects)
        table.add_row(str(hit.rank), hit.video_id, f"{hit.relevance:.2f}", objects, hit.reasoning)
    console.print(table if result.hits else "no video above the relevance threshold")
    for f in result.fallbacks:
        console.print(f"[yellow]fallback[/yellow] {f.node}: {f.reason}")
    console.print("[dim]" + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()) + "[/dim]")


def _embedded_limits_note(settings: Settings) -> str:
    if settings.profile != "embedded":
        return ""
    return ("[dim]embedded default: no depth model ships offline (depth is null); categories are ImageNet classes "
            "(plus 'person' from mediapipe); attributes are colour and size only. Use --profile paper for "
            "SAM-2, OWLv2, Depth Anything and Qwen2.5-VL.[/dim]")


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
        err_console.print(f"[red]error:[/red] the web app needs the web extra: pip install 'twinseek[web]' ({exc})")
        raise typer.Exit(1) from exc
    settings = _settings(store, profile)
    web = WebSettings(store=settings.store, host=host, port=port, token=token, insecure=insecure,
                      profile=settings.profile, runs=runs, max_upload_mb=max_upload_mb,
                      ingest_roots=ingest_root or [Path.cwd()])
    with _errors_exit():
        run_server(web, on_ready=lambda url: console.print(f"twinseek on {escape(url)} (store {escape(str(web.store))})"))


if __name__ == "__main__":  # pragma: no cover
    app()
