"""The user-facing API: ``Agent.open(store) -> agent.search(query) -> SearchResult``.

```python
from twinseek import Agent

with Agent.open("my-store") as agent:
    result = agent.search("a dark bird swimming towards someone", k=5)
    for hit in result.hits:
        print(hit.rank, hit.video_id, hit.relevance, hit.reasoning)
    result.save_overlays("overlays/")
```
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from langgraph.types import StreamMode
from pydantic import BaseModel, Field

from twinseek.agent.context import AgentContext
from twinseek.agent.graph import build_graph
from twinseek.agent.resources import Resources
from twinseek.agent.run import Run, resolve
from twinseek.agent.state import (
    ActionRecord,
    AgentState,
    DroppedCandidate,
    Fallback,
    FrameMask,
    Hit,
    HitObject,
    Moment,
)
from twinseek.config import ProfileName, load_settings
from twinseek.errors import TwinseekError
from twinseek.media.masks import overlay_frames, write_overlays
from twinseek.retrieval.decompose import Decomposition

__all__ = ["ActionInfo", "Agent", "DroppedCandidate", "FallbackInfo", "FrameMask", "Hit", "HitObject", "Moment",
           "ProgressEvent", "SearchResult"]

logger = logging.getLogger(__name__)

OVERLAY_FRAMES = 8  # key frames drawn per hit

# The records' names in the result (the graph state's models, under the names this API has always used).
FallbackInfo = Fallback
ActionInfo = ActionRecord


class SearchResult(BaseModel):
    """A ranked answer with its grounding, reasoning and the record of how it was produced."""

    query: str
    decomposition: Decomposition
    hits: list[Hit]
    dropped: list[DroppedCandidate] = Field(default_factory=list, description="Candidates below tau.")
    options: dict[str, Any] = Field(default_factory=dict, description="The search's resolved run options.")
    path: list[str] = Field(default_factory=list, description="Graph nodes in the order they ran.")
    trace: list[str] = Field(default_factory=list)
    actions: list[ActionRecord] = Field(default_factory=list)
    fallbacks: list[Fallback] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per node (and total).")
    models: dict[str, str] = Field(default_factory=dict, description="tier:model behind each part.")

    @classmethod
    def from_state(cls, state: Mapping[str, Any], seconds: float) -> SearchResult:
        """The result of a finished graph run (its state holds the typed parts already, and the resolved
        :class:`~twinseek.agent.run.Run` the options record)."""
        return cls(query=state["query"], decomposition=state["decomposition"], hits=state.get("hits", []),
                   dropped=state.get("dropped", []), options=state["run"].options(), path=state.get("path", []),
                   trace=state.get("trace", []), actions=state.get("actions", []),
                   fallbacks=state.get("fallbacks", []),
                   timings={**state.get("timings", {}), "total": round(seconds, 4)}, models=state.get("models", {}))

    def save_overlays(self, out_dir: str | Path, max_frames: int = OVERLAY_FRAMES) -> list[Path]:
        """Draw each hit's object masks on its key frames (those of its best moment, where it has one):
        ``<rank>_<video>/f<frame>.png`` and an animated ``<rank>_<video>.gif``. Returns the written paths."""
        out = Path(out_dir)
        written: list[Path] = []
        for hit in self.hits:
            written.extend(_hit_overlays(hit, out, max_frames))
        return written


class ProgressEvent(BaseModel):
    """One step of :meth:`Agent.stream`: a node finished, a node reported progress, or the final result."""

    kind: Literal["node", "progress", "result"]
    node: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    result: SearchResult | None = None


class Agent:
    """Search a twin store with the reasoning agent. A context manager; :meth:`close` releases the store.

    The agent's graph is built once, bound to the store's :class:`Resources`; each search passes its run options
    as the graph's context.
    """

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.graph = build_graph(resources)

    @classmethod
    def open(cls, store_dir: str | Path, profile: ProfileName = "embedded", *, warm: bool = False,
             **settings_overrides: Any) -> Agent:
        """Open the store, build the resources and sync the indexes and ECR texts. ``warm`` starts the embedded
        LLM and caches its fixed prompt prefixes in the background (for sessions: chat, the web app, the demo).

        ``settings_overrides`` are :class:`~twinseek.config.Settings` fields (nested ones as dicts, e.g.
        ``retrieval={"reranker": "llm"}``); they win over ``TWINSEEK_*`` variables.
        """
        settings = load_settings(profile=profile, store=Path(store_dir), **settings_overrides)
        agent = cls(Resources.open(store_dir, settings))
        if warm:
            agent.resources.warm()
        return agent

    # -- searching ----------------------------------------------------------------------------------------------
    def context(self, k: int = 10, **overrides: Any) -> AgentContext:
        """The run options of a search (see :class:`AgentContext` for the fields); unset ones take the settings'
        values when the search resolves them. ``deadline_s=None`` given explicitly means no deadline."""
        if "deadline_s" in overrides and overrides["deadline_s"] is None:
            overrides["deadline_s"] = math.inf
        return AgentContext(k=k, **overrides)

    def run_options(self, k: int = 10, **overrides: Any) -> Run:
        """What a search with these options would do, every value resolved (the web page shows its defaults)."""
        return resolve(self.context(k, **overrides), self.resources)

    def _input(self, query: str) -> AgentState:
        return {"query": _clean(query), "started_at": time.time()}

    def search(self, query: str, k: int = 10, **context_overrides: Any) -> SearchResult:
        """Rank the store's videos for ``query``; ``context_overrides`` are :class:`AgentContext` fields
        (``tau``, ``max_refine_rounds``, ``qd``, ``ca``, ``lr``, ``jit``, ``tool``, ``videos``, ``deadline_s``, ...)."""
        ctx = self.context(k, **context_overrides)
        start = time.perf_counter()
        state = self.graph.invoke(self._input(query), context=ctx)
        return SearchResult.from_state(state, time.perf_counter() - start)

    async def asearch(self, query: str, k: int = 10, **context_overrides: Any) -> SearchResult:
        """:meth:`search` for asyncio code (the nodes run on worker threads)."""
        ctx = self.context(k, **context_overrides)
        start = time.perf_counter()
        state = await self.graph.ainvoke(self._input(query), context=ctx)
        return SearchResult.from_state(state, time.perf_counter() - start)

    def stream(self, query: str, k: int = 10, **context_overrides: Any) -> Iterator[ProgressEvent]:
        """Node-by-node progress: a ``node`` event when a node finishes, ``progress`` events from inside nodes
        (per candidate), and a last ``result`` event carrying the :class:`SearchResult`."""
        ctx = self.context(k, **context_overrides)
        start = time.perf_counter()
        state: dict[str, Any] = {}
        modes: list[StreamMode] = ["updates", "custom", "values"]
        parts: Iterator[Any] = self.graph.stream(self._input(query), context=ctx, stream_mode=modes)
        for mode, chunk in parts:
            if mode == "values":
                state = chunk
            elif mode == "custom":
                yield ProgressEvent(kind="progress", node=chunk.get("node"), data=chunk)
            else:
                for node, update in chunk.items():
                    yield ProgressEvent(kind="node", node=node, data=_summary(update or {}))
        yield ProgressEvent(kind="result", result=SearchResult.from_state(state,
                                                                          time.perf_counter() - start))

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def close(self) -> None:
        self.resources.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clean(query: str) -> str:
    query = query.strip()
    if not query:
        raise TwinseekError("empty query")
    return query


def _summary(update: dict[str, Any]) -> dict[str, Any]:
    """What a node event carries: its trace lines and timing (the state itself stays in the graph)."""
    return {"trace": update.get("trace", []), "timings": update.get("timings", {})}


# -- overlays ---------------------------------------------------------------------------------------------------
def _hit_overlays(hit: Hit, out: Path, max_frames: int) -> list[Path]:
    """Each object keeps its colour (its position in ``hit.objects``) on every frame; the frames are those of the
    best moment when its objects have masks there (a long video's overlay shows where the match lies)."""
    by_frame: dict[int, dict[int, Path]] = {}
    for k, obj in enumerate(hit.objects):
        for m in obj.masks:
            by_frame.setdefault(m.frame, {})[k] = Path(m.path)
    moment = set(hit.moments[0].frames) if hit.moments else set()
    if moment & by_frame.keys():
        by_frame = {f: masks for f, masks in by_frame.items() if f in moment}
    overlays = overlay_frames(hit.path, by_frame, max_frames)
    name = f"{hit.rank:02d}_{hit.video_id}"
    return write_overlays(overlays, out / name, gif=out / f"{name}.gif") if overlays else []
