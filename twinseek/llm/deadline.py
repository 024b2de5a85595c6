"""An overall deadline for one search, and an LLM client bounded by it.

Every LLM call made through :class:`BoundedLLM` gets ``timeout_s = min(configured, remaining)``; once the
deadline has passed a call fails at once with :class:`DeadlineExceeded` (an :class:`LLMError`, so every caller's
existing fallback applies) instead of waiting for a reply nobody will use. Likewise once the search is cancelled
(:mod:`twinseek.llm.cancel`): a :class:`BoundedLLM` keeps the cancel scope of the code that made it, so calls
from the worker threads a node starts can be cancelled too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from twinseek.llm import cancel
from twinseek.llm.base import ChatModel, LLMCancelled, LLMError, Messages

T = TypeVar("T", bound=BaseModel)


class DeadlineExceeded(LLMError):
    """The search's deadline passed before (or while) the LLM was asked."""




@dataclass(frozen=True)
class Deadline:
    """A point in wall-clock time (``time.time()`` seconds); ``at=None`` never passes.

    One class for both budgets: a search's (:meth:`after` its start) and one LLM call's (:meth:`within`).
    """

    at: float | None = None
    budget_s: float | None = None  # the length it was given, for messages

    @classmethod
    def within(cls, seconds: float) -> Deadline:
        """``seconds`` from now."""
        return cls(time.time() + seconds, seconds)

    @classmethod
    def after(cls, started_at: float | None, seconds: float | None) -> Deadline:
        if started_at is None or seconds is None:
            return cls(None)
        return cls(started_at + seconds, seconds)

    def remaining(self) -> float:
        return math.inf if self.at is None else self.at - time.time()

    @property
    def passed(self) -> bool:
        return self.remaining() <= 0


class BoundedLLM:
    """``llm`` whose calls end by ``deadline`` (see the module docstring). Thread-safe like the client it wraps."""

    def __init__(self, llm: ChatModel, deadline: Deadline) -> None:
        self.llm = llm
        self.deadline = deadline
        self.settings = llm.settings
        self.tier = llm.tier
        self.model = llm.model
        self.scope = cancel.current()  # the search's, carried into whatever thread makes the calls

    def timeout(self, timeout_s: float | None = None) -> float:
        """The timeout of a call made now; raises :class:`DeadlineExceeded` when no time is left, and
        :class:`LLMCancelled` when the search was cancelled."""
        if self.scope is not None and self.scope.cancelled:
            raise LLMCancelled("the search was cancelled")
        left = self.deadline.remaining()
        if left <= 0:
            raise DeadlineExceeded("the search's deadline has passed")
        return min(timeout_s or self.settings.timeout_s, left)

    def chat_text(self, messages: Messages, *, max_tokens: int = 256, timeout_s: float | None = None) -> str:
        with cancel.using(self.scope):
            return self.llm.chat_text(messages, max_tokens=max_tokens, timeout_s=self.timeout(timeout_s))

    def chat_json(self, messages: Messages, schema: type[T], *, max_tokens: int = 512, timeout_s: float | None = None,
                  fallback: Callable[[], T] | None = None, retries: int | None = None) -> T:
        with cancel.using(self.scope):
            return self.llm.chat_json(messages, schema, max_tokens=max_tokens, timeout_s=self.timeout(timeout_s),
                                      fallback=fallback, retries=retries)

    def yes_probability(self, messages: Messages, *, timeout_s: float | None = None, top_logprobs: int = 20) -> float:
        with cancel.using(self.scope):
            return self.llm.yes_probability(messages, timeout_s=self.timeout(timeout_s), top_logprobs=top_logprobs)
