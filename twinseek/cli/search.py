"""``twinseek search``, ``ask``, ``chat`` and ``demo``: the agent over a store, once, in a conversation, or on
the bundled sample clips."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from twinseek.cli.options import ProfileOpt, StoreOpt, _errors_exit, _settings
from twinseek.cli.render import (
    console,
    ingest_with_progress,
    print_ingest_summary,
    print_progress,
    print_reply,
    print_retrieval,
    print_search_result,
    print_twin,
    safe,
    safe_name,
)
from twinseek.config import Settings
from twinseek.data import sample_clips
from twinseek.errors import TwinseekError

if TYPE_CHECKING:
    from twinseek.agent.api import Agent
    from twinseek.agent.chat import ChatSession

# Ours, not from any bench (tests/test_generalisation.py): an indirect description of the sample clips' black swan.
DEMO_QUERY = "a dark-feathered waterbird gliding across a pond"


def _query(value: str) -> str:
    if not value.strip():
        raise typer.BadParameter("the query is empty: say what to look for")
    return value.strip()


def _session_name(value: str) -> str:
    from twinseek.agent.chat import check_session_name  # lazy: the agent package loads torch and langgraph

    try:
        return check_session_name(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


QueryArg = Annotated[str, typer.Argument(help="What to look for, in plain words.", callback=_query)]
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
    from twinseek.agent.context import AgentContext  # lazy: the agent package loads torch and langgraph

    options = {name: value for name, value in options.items() if value is not None}
    try:
        AgentContext(k=k, **options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return options


def _agent(settings: Settings, *, warm: bool = False) -> Agent:
    """The agent over the command's store (checked already by :func:`_settings`)."""
    from twinseek.agent.api import Agent  # lazy: torch, langgraph and faiss, once the options are checked

    return Agent.open(settings.store, profile=settings.profile, warm=warm)


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
    with _errors_exit(), _agent(settings) as agent:
        result = agent.search(query, k=k, **options)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    print_retrieval(result)


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
    result = None
    with _errors_exit(), _agent(settings) as agent:
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


def chat(
    store: StoreOpt = None,
    session: Annotated[str, typer.Option(help="Conversation name (letters, digits, '_', '.', '-'); the same name "
                                               "resumes it.", callback=_session_name)] = "default",
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Videos per answer.")] = 5,
    profile: ProfileOpt = None,
) -> None:
    """A chat session over the agent: ask, refine ("only the ones at night"), :why N, :show N, :history.
    Ctrl-C cancels the running search and returns to the prompt; Ctrl-D leaves."""
    settings = _settings(store, profile, existing=True)
    from twinseek.agent.chat import HELP, ChatSession  # lazy: langgraph

    with _errors_exit(), _agent(settings, warm=True) as agent:
        session_ = ChatSession(agent, settings.store, session=session, k=k)
        console.print(f"[dim]session {session!r} in {safe_name(settings.store)}: {len(session_.turns)} earlier "
                      f"turns. {safe(HELP)} Ctrl-C cancels a search, Ctrl-D leaves.[/dim]")
        try:
            for line in _input_lines(sys.stdin.isatty(), settings.store):
                _chat_turn(session_, line)
        finally:
            session_.close()


def _chat_turn(session: ChatSession, line: str) -> None:
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
        yield from (line.rstrip("\n") for line in sys.stdin)
        return
    from prompt_toolkit import PromptSession  # lazy: only a chat on a terminal prompts
    from prompt_toolkit.history import FileHistory

    prompt: PromptSession[str] = PromptSession(history=FileHistory(str(history_file(store))))
    while True:
        try:
            yield prompt.prompt("twinseek> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return


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
    # lazy: the agent loads torch and langgraph, the pipeline and store numpy and PIL, the LLM client urllib (20 ms)
    from twinseek.agent.resources import warm_embedded
    from twinseek.llm.client import open_llm
    from twinseek.twins.pipeline import Ingestor
    from twinseek.twins.store import TwinStore

    if settings.profile == "embedded" and not settings.llm.base_url:
        # the LLM loads and caches its prompt prefixes while the clips are ingested (ingest uses one core)
        console.print("[dim]starting the embedded LLMs in the background (Qwen2.5-Coder-0.5B decomposes, 1.5B judges, "
                      "on llama.cpp; the first run assembles their GGUFs, 490 MB and 1.1 GB, from the installed "
                      "packages into the cache, once)...[/dim]")
        with contextlib.suppress(TwinseekError, OSError):
            llm = open_llm(settings)
            judge_model = settings.llm.judge_server_model("embedded")
            judge_llm = open_llm(settings, embedded_model=judge_model) if judge_model else llm
            warm_embedded(llm, judge_llm, settings.agent.defaults("embedded"))
    with TwinStore(settings.store) as twin_store:
        results = ingest_with_progress(Ingestor(twin_store, settings), sample_clips(), force=False)
        print_ingest_summary(results, settings)
        for r in results:
            if r.video_id:
                print_twin(twin_store.get_twin(r.video_id))
    console.print(f"\n[bold]query:[/bold] {safe(query)}")
    with _errors_exit(), _agent(settings) as agent:
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
