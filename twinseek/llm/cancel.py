"""Cancelling a search from outside: a :class:`CancelScope` that the code running the search sets as the current
one (a context variable, so LangGraph's node threads see it), and that someone else cancels (the web app, when
the client of a stream went away).

Who checks it: the LLM client before each request and while it waits for a reply, when it also closes the
request's connection so that a local llama.cpp server stops decoding for nobody; :class:`~twinseek.llm.deadline.
BoundedLLM`, which carries the scope of the node that made it into the worker threads the node starts; and the
web app's stream loop between agent events. What is cancelled fails as an :class:`~twinseek.llm.base.LLMError`
(:class:`~twinseek.llm.base.LLMCancelled`), so the search ends through its ordinary fallbacks.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

_current: contextvars.ContextVar[CancelScope | None] = contextvars.ContextVar("twinseek_cancel_scope", default=None)


class CancelScope:
    """A flag set once, with hooks that run when it is set (thread-safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._hooks: dict[int, Callable[[], None]] = {}
        self._next = 0

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        """Set the flag and run the hooks registered now (each once; one failing does not stop the others)."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            hooks = list(self._hooks.values())
        for hook in hooks:
            try:
                hook()
            except Exception:  # a hook closes a connection that may be gone already
                logger.debug("a cancel hook failed", exc_info=True)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) when cancelled meanwhile."""
        return self._event.wait(seconds)

    @contextlib.contextmanager
    def on_cancel(self, hook: Callable[[], None]) -> Iterator[None]:
        """Run ``hook`` if the scope is cancelled while the block runs (at once if it is already)."""
        with self._lock:
            key, self._next = self._next, self._next + 1
            self._hooks[key] = hook
            already = self._event.is_set()
        try:
            if already:
                hook()
            yield
        finally:
            with self._lock:
                self._hooks.pop(key, None)


def current() -> CancelScope | None:
    """The scope of the code running now (None: nothing can cancel it)."""
    return _current.get()


@contextlib.contextmanager
def using(scope: CancelScope | None) -> Iterator[None]:
    """Make ``scope`` the current scope for the block (``None``: leave the current one as it is)."""
    if scope is None:
        yield
        return
    token = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(token)
