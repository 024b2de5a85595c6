"""What every LLM consumer shares: the errors, the message type, and the chat model interface."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from twinseek.config import LLMSettings
from twinseek.errors import TwinseekError

T = TypeVar("T", bound=BaseModel)

Messages = str | Sequence[Mapping[str, str]]



class LLMError(TwinseekError):
    """The LLM server is down, unreachable, refused the request, timed out, or sent a malformed reply."""


class LLMOutputError(LLMError):
    """The LLM kept replying with output that does not validate (and the caller gave no fallback)."""


class LLMCancelled(LLMError):
    """The search this call belonged to was cancelled (see :mod:`twinseek.llm.cancel`)."""


class ChatModel(Protocol):
    """What the search's LLM consumers call: :class:`~twinseek.llm.client.LLMClient`, or
    :class:`~twinseek.llm.deadline.BoundedLLM`."""

    settings: LLMSettings
    tier: Any
    model: str

    def chat_text(self, messages: Messages, *, max_tokens: int = ..., timeout_s: float | None = ...) -> str: ...

    def chat_json(self, messages: Messages, schema: type[T], *, max_tokens: int = ..., timeout_s: float | None = ...,
                  fallback: Callable[[], T] | None = ..., retries: int | None = ...) -> T: ...

    def yes_probability(self, messages: Messages, *, timeout_s: float | None = ..., top_logprobs: int = ...) -> float: ...
