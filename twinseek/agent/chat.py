"""A chat session over the agent: each turn is a new query or refines the last one.

The conversation is a small LangGraph graph whose state (the turns) is persisted by LangGraph's SQLite
checkpointer in ``<store>/chat.sqlite``, one thread per session name, so ``twinseek chat --session NAME``
resumes where it stopped. The terminal loop (prompt_toolkit + rich) lives in the CLI; :class:`ChatSession`
is the testable part.
"""

from __future__ import annotations

import operator
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from twinseek.agent.api import Agent, SearchResult

# A turn that starts with one of these narrows the previous query instead of starting a new one.
REFINERS = ("only", "just", "but", "without", "not", "no ", "and", "also", "with", "excluding", "except",
            "in ", "at ", "on ", "where", "that", "which")
WHY = re.compile(r"^\s*(?:why|explain)\b.*?(\d+)", re.IGNORECASE)
# A session name becomes a folder name (overlays/<session>) and a checkpointer thread id: a plain name only.
SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}


class Turn(BaseModel):
    said: str
    query: str
    hits: list[dict[str, Any]] = Field(default_factory=list, description="rank, video_id, relevance, reasoning")
    result_json: str = Field("", description="The full SearchResult, for :show and :why after a resume.")


class ChatState(TypedDict):
    turns: Annotated[list[dict[str, Any]], operator.add]


@dataclass
class ChatContext:
    """Run options of one turn (the agent itself is bound when the chat graph is built)."""

    k: int = 5


def build_chat_graph(checkpointer: SqliteSaver, agent: Agent):  # type: ignore[no-untyped-def]
    """The conversation graph over ``agent``: one node that runs the agent on the newest (pending) turn."""

    def search(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        turn = Turn.model_validate(state["turns"][-1])
        result = agent.search(turn.query, k=runtime.context.k)
        done = turn.model_copy(update={
            "hits": [{"rank": h.rank, "video_id": h.video_id, "relevance": h.relevance, "reasoning": h.reasoning}
                     for h in result.hits],
            "result_json": result.model_dump_json(),
        })
        return {"turns": [done.model_dump()]}

    builder = StateGraph(ChatState, context_schema=ChatContext)
    builder.add_node("search", search)
    builder.add_edge(START, "search")
    builder.add_edge("search", END)
    return builder.compile(checkpointer=checkpointer, name="twinseek-chat")


class ChatReply(BaseModel):
    kind: str  # "results", "why", "show", "history", "help", "error"
    text: str = ""
    result: SearchResult | None = None
    files: list[str] = Field(default_factory=list)


def check_session_name(name: str) -> str:
    """``name`` if it is a plain session name, else ``ValueError`` (it must not reach outside the store)."""
    if not SESSION_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{name!r} is not a plain session name: letters, digits, '_', '.' and '-', starting with a "
                         "letter or digit, at most 64, no '..'")
    return name


class ChatSession:
    """One resumable conversation. ``handle(line)`` answers a user line."""

    def __init__(self, agent: Agent, store_dir: str | Path, session: str = "default", k: int = 5,
                 overlay_dir: str | Path | None = None) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        self.agent, self.k, self.session = agent, k, check_session_name(session)
        self.overlay_dir = Path(overlay_dir or Path(store_dir) / "overlays" / session)
        self._conn = sqlite3.connect(str(Path(store_dir) / "chat.sqlite"), check_same_thread=False)
        self.graph = build_chat_graph(SqliteSaver(self._conn), agent)
        self.config = {"configurable": {"thread_id": session}}

    def close(self) -> None:
        self._conn.close()

    @property
    def turns(self) -> list[Turn]:
        values = self.graph.get_state(self.config).values
        # the graph appends a pending turn, then its completed copy: keep the completed ones
        return [Turn.model_validate(t) for t in values.get("turns", []) if t.get("result_json")]

    def last_result(self) -> SearchResult | None:
        turns = self.turns
        return SearchResult.model_validate_json(turns[-1].result_json) if turns else None

    def handle(self, line: str) -> ChatReply:
        line = line.strip()
        if not line:
            return ChatReply(kind="help", text=HELP)
        if line.startswith(":"):
            return self._command(line)
        if (n := _why_target(line)) is not None:
            return self._why(n)
        query = self.resolve_query(line)
        self.graph.invoke({"turns": [Turn(said=line, query=query).model_dump()]}, self.config,
                          context=ChatContext(k=self.k))
        return ChatReply(kind="results", text=query, result=self.last_result())

    def resolve_query(self, line: str) -> str:
        """The query this line asks: a refinement of the previous query, or a new one."""
        turns = self.turns
        if turns and line.lower().startswith(REFINERS):
            return f"{turns[-1].query}, {line}"
        return line

    def _command(self, line: str) -> ChatReply:
        name, _, arg = line[1:].partition(" ")
        if name == "why" and arg.strip().isdigit():
            return self._why(int(arg))
        if name == "show" and arg.strip().isdigit():
            return self._show(int(arg))
        if name == "history":
            return ChatReply(kind="history", text="\n".join(
                f"{i}. {t.said}  ->  {t.query}  [{', '.join(h['video_id'] for h in t.hits) or 'no hits'}]"
                for i, t in enumerate(self.turns, start=1)) or "(no turns yet)")
        return ChatReply(kind="help", text=HELP)

    def _hit(self, n: int):  # type: ignore[no-untyped-def]
        result = self.last_result()
        if result is None or not result.hits:
            return None, ChatReply(kind="error", text="no results yet: ask something first")
        if n == -1:
            n = len(result.hits)
        if not 1 <= n <= len(result.hits):
            return None, ChatReply(kind="error", text=f"there are {len(result.hits)} results: pick 1-{len(result.hits)}")
        return result.hits[n - 1], None

    def _why(self, n: int) -> ChatReply:
        hit, error = self._hit(n)
        if error:
            return error
        evidence = "; ".join(f"{m.subquery} ~ {m.text} ({m.similarity:.2f})" for m in hit.evidence if m.text)
        objects = ", ".join(f"#{o.track_id} {o.category}" for o in hit.objects)
        text = (f"{hit.video_id}: relevance {hit.relevance:.2f} ({hit.judged_by or 'retrieval'})\n"
                f"reasoning: {hit.reasoning or '-'}\nobjects: {objects or '-'}\nevidence: {evidence or '-'}")
        if hit.missing:
            text += f"\nmissing: {', '.join(hit.missing)}"
        return ChatReply(kind="why", text=text)

    def _show(self, n: int) -> ChatReply:
        hit, error = self._hit(n)
        if error:
            return error
        result = self.last_result()
        assert result is not None
        single = result.model_copy(update={"hits": [hit]})
        files = [str(p) for p in single.save_overlays(self.overlay_dir / f"turn{len(self.turns)}")]
        return ChatReply(kind="show", text=f"{len(files)} overlay files for {hit.video_id}", files=files)


def _why_target(line: str) -> int | None:
    if (m := WHY.match(line)) is not None:
        return int(m.group(1))
    lowered = line.lower()
    if lowered.startswith(("why", "explain")):
        for word, n in ORDINALS.items():
            if word in lowered:
                return n
    return None


HELP = ("Type a query to search, or refine the last one (\"only the ones at night\"). "
        "Commands: :show N (write overlays of hit N), :why N (or \"why the second one?\"), :history.")
