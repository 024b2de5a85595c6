"""Searches for the web app: off the event loop, streamed node by node, and kept apart from index syncs.

Searches run on a small thread pool. A readers-writer lock lets any number of searches run together; an index
sync (after a background ingest) waits until no search is running and then runs alone, for about a second.
Searches are never held back by a sync that is only waiting: a long LLM search delays when a new video becomes
searchable, never the searches that start meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from twinseek.llm import cancel
from twinseek.llm.cancel import CancelScope

if TYPE_CHECKING:
    from twinseek.agent.api import Agent, ProgressEvent, SearchResult

logger = logging.getLogger(__name__)

KEEPALIVE_S = 10.0  # an SSE comment this often, so that idle proxies keep a long search's stream open


class SearchParams(BaseModel):
    """Query parameters of a search (``/api/search``, ``/api/search/stream`` and the search page).

    Unset switches take the agent's defaults (see ``AgentContext``)."""

    q: str = Field(min_length=1, max_length=500, description="What to look for, in plain words.")
    k: int = Field(10, ge=1, le=100, description="Videos to return.")
    tau: float | None = Field(None, ge=0, le=1, description="Relevance threshold (reasoning on).")
    lr: bool | None = Field(None, description="LLM reasoning over each candidate's twin.")
    jit: bool | None = Field(None, description="Just-in-time refinement of twins that miss facts.")
    qd: bool | None = Field(None, description="LLM query decomposition.")
    ca: bool | None = Field(None, description="Compositional alignment (off: dense retrieval only).")
    tool: Literal["compositional", "dense", "fused"] | None = Field(None, description="Retrieval tool.")

    def overrides(self) -> dict[str, Any]:
        """The ``AgentContext`` fields that were set."""
        return self.model_dump(exclude={"q", "k"}, exclude_none=True)


def sync_indexes(agent: Agent) -> None:
    """Bring the agent's indexes up to date with the store (after an ingest). The one place that knows how."""
    agent.resources.sync()


class ReadWriteLock:
    """Many readers or one writer. Readers go first: a writer waits for a moment with no reader (the ingest worker
    can wait; a person searching should not)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


_DONE = object()


class SearchService:
    """The app's one agent, searched from worker threads."""

    def __init__(self, agent: Agent, threads: int = 4) -> None:
        self.agent = agent
        self.lock = ReadWriteLock()
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="twinseek-search")

    def search(self, params: SearchParams, scope: CancelScope | None = None) -> SearchResult:
        """Blocking: one search (call from a worker thread); ``scope`` cancels it."""
        with self.lock.read(), cancel.using(scope):
            return self.agent.search(params.q, k=params.k, **params.overrides())

    async def asearch(self, params: SearchParams) -> SearchResult:
        """One search on the pool; the event loop stays free. Cancelling the awaiting task (the request went
        away) cancels the search, its LLM requests included."""
        scope = CancelScope()
        future = asyncio.get_running_loop().run_in_executor(self.executor, self.search, params, scope)
        try:
            return await future
        except asyncio.CancelledError:
            scope.cancel()
            raise

    def sync(self) -> None:
        """Sync the indexes as soon as no search is running (searches starting during the sync wait for it)."""
        with self.lock.write():
            sync_indexes(self.agent)

    async def stream(self, params: SearchParams) -> AsyncIterator[ProgressEvent | BaseException | None]:
        """The agent's progress events, bridged from its worker thread; ``None`` now and then while nothing
        happens (a keep-alive), an exception if the search failed. Closing the iterator (the client went away)
        cancels the search at once: the LLM request in flight is closed, later ones are not made, and the loop
        stops at the agent's next event."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        scope = CancelScope()

        def put(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                with self.lock.read(), cancel.using(scope):
                    events = self.agent.stream(params.q, k=params.k, **params.overrides())
                    try:
                        for event in events:
                            if scope.cancelled:
                                logger.info("search %r abandoned by its client", params.q[:80])
                                break
                            put(event)
                    finally:
                        events.close()  # type: ignore[attr-defined]
            except BaseException as exc:  # handed to the client as an error event
                put(exc)
            finally:
                put(_DONE)

        future = loop.run_in_executor(self.executor, work)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield None
                    continue
                if item is _DONE:
                    break
                yield item
        finally:
            scope.cancel()
            if future.done():
                future.result()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
