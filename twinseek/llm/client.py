"""The LLM runtime: one OpenAI-compatible client for every LLM twinseek talks to.

Two tiers:

* ``paper``: the user's endpoint (``settings.llm.base_url`` / ``OPENAI_BASE_URL``), e.g. OpenAI, vLLM, Ollama.
* ``embedded`` (default, offline): a llama.cpp server (``xllamacpp``) that twinseek starts in a child process
  bound to 127.0.0.1, serving a Qwen2.5-Coder GGUF assembled once from registry packages into the cache dir.

:class:`LLMClient` offers schema-constrained JSON (validated into a pydantic model, re-asked a bounded number of
times, then a caller-supplied fallback), plain text, and ``P(yes)`` from token logprobs for reranking. It is
safe to share between threads; the embedded server decodes ``n_parallel`` requests at once.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from twinseek.config import LLMSettings, LLMTier, Settings, load_settings
from twinseek.llm import cancel
from twinseek.llm.base import LLMCancelled, LLMError, LLMOutputError, Messages
from twinseek.llm.deadline import Deadline
from twinseek.llm.server import EmbeddedServer, shared_server

T = TypeVar("T", bound=BaseModel)


logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# The client.


def response_format(schema: type[BaseModel]) -> dict[str, Any]:
    """``response_format`` for chat completions: a strict JSON schema derived from a pydantic model."""
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": _strict(schema.model_json_schema()), "strict": True},
    }


def _strict(node: Any) -> Any:
    """Every object closed and with all its properties required (OpenAI strict mode; harmless for llama.cpp)."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
            node["required"] = list(node["properties"])
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def _as_messages(messages: Messages) -> list[dict[str, str]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


# Status codes worth asking again (the SDK's own list): request timeout, lock timeout, rate limit, server errors.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


MAX_BACKOFF_S = 8.0


@dataclass(frozen=True)
class Reply:
    """The first choice of a chat completion, checked: what every public method reads."""

    text: str
    finish_reason: str | None
    top_logprobs: list[tuple[str, float]] | None  # the first token's alternatives; None: the endpoint sent none


class _WireTop(BaseModel):
    token: str
    logprob: float


class _WireToken(_WireTop):
    top_logprobs: list[_WireTop] | None = None


class _WireLogprobs(BaseModel):
    content: list[_WireToken] | None = None


class _WireMessage(BaseModel):
    content: str | None = None


class _WireChoice(BaseModel):
    message: _WireMessage
    finish_reason: str | None = None
    logprobs: _WireLogprobs | None = None


class _WireCompletion(BaseModel):
    """What we need of a ``chat.completion`` body; the SDK builds its objects without validating them."""

    choices: list[_WireChoice] = Field(min_length=1)



class LLMClient:
    """A thread-safe client for one endpoint. Build with :func:`open_llm`.

    Every failure (the server down, refusing, timing out, or answering with something that is not a chat
    completion) raises :class:`LLMError`, so callers take their recorded fallback. ``timeout_s`` of a public
    method bounds that whole call, re-asks and retries included (default ``settings.timeout_s``): pass a search's
    remaining time to keep a deadline. Timeouts are never retried; connection errors, 408/409/429 and 5xx from a
    user's endpoint are retried up to ``settings.http_retries`` times within that bound.
    """

    def __init__(
        self, settings: LLMSettings, *, tier: LLMTier, base_url: str | None = None,
        server_factory: Callable[[], EmbeddedServer] | None = None,
    ) -> None:
        self.settings = settings
        self.tier: LLMTier = tier
        self.model = settings.embedded_model if tier == "embedded" else settings.model
        self._base_url = base_url
        self._server_factory = server_factory
        self._server: EmbeddedServer | None = None
        self._sdk: Any = None
        self._lock = threading.Lock()

    # -- transport ------------------------------------------------------------------------------------------------

    def _client(self) -> Any:
        """The SDK client; for the embedded tier this starts the shared server on first use."""
        with self._lock:
            if self._sdk is None:
                import openai

                if self._server_factory is not None:
                    self._server = self._server_factory()
                    self._base_url = self._server.base_url
                self._sdk = openai.OpenAI(
                    base_url=self._base_url,
                    api_key=self.settings.api_key or "none",  # local servers need a dummy key
                    timeout=self.settings.timeout_s,
                    # Retries are ours (_complete): the SDK's would retry timeouts and multiply the wait.
                    max_retries=0,
                    # a local server decodes on our CPU: a cancelled request's connection is closed (and the
                    # server stops); a remote one keeps the SDK's own client (proxies from the environment)
                    http_client=_abortable_http_client() if _is_loopback(self._base_url) else None,
                )
            return self._sdk

    def start(self) -> LLMClient:
        """Connect now (starts the embedded server) instead of on the first request."""
        self._client()
        return self

    def _deadline(self, timeout_s: float | None) -> Deadline:
        seconds = self.settings.timeout_s if timeout_s is None else timeout_s
        if seconds <= 0:
            raise LLMError(f"no time left for the LLM at {self._base_url} (timeout_s={seconds:g})")
        return Deadline.within(seconds)

    def _complete(self, messages: list[dict[str, str]], *, max_tokens: int, deadline: Deadline,
                  **extra: Any) -> Reply:
        """One completion within ``deadline``, retried on transient failures; always :class:`LLMError` on failure."""
        import openai

        params: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens, **extra}
        if self.settings.temperature is not None:
            params["temperature"] = self.settings.temperature
        if self.settings.seed is not None:
            params["seed"] = self.settings.seed
        retries = 0 if self.tier == "embedded" else self.settings.http_retries  # a dead local server stays dead
        client = self._client()  # here, not on the worker thread: starting the embedded server has its own timeout
        scope = cancel.current()
        for attempt in range(retries + 1):
            left = deadline.remaining()
            if scope is not None and scope.cancelled:
                raise LLMCancelled("the search was cancelled")
            if left <= 0:
                raise self._timed_out(deadline)
            try:
                resp = _within(left, functools.partial(client.chat.completions.create, timeout=left, **params), scope)
            except (openai.APITimeoutError, TimeoutError) as e:
                raise self._timed_out(deadline) from e
            except openai.APIConnectionError as e:
                error: LLMError = LLMError(self._unreachable(e))
                wait = _backoff(attempt, None)
            except openai.APIStatusError as e:
                error = LLMError(f"the LLM at {self._base_url} refused the request ({e.status_code}): {e.message}")
                if e.status_code not in RETRY_STATUSES:
                    raise error from e
                wait = _backoff(attempt, e.response.headers.get("retry-after"))
            except LLMError:
                raise
            except Exception as e:  # anything else the SDK raises (e.g. a body that is not JSON) is a bad reply
                raise LLMError(f"the LLM at {self._base_url} sent a malformed reply ({type(e).__name__}: {e})") from e
            else:
                return self._checked(resp)
            if scope is not None and scope.cancelled:  # the error was the cancelled request's closed connection
                raise LLMCancelled("the search was cancelled") from error
            if attempt == retries or wait >= deadline.remaining():
                raise error
            logger.info("%s; retrying in %.1fs (%d/%d)", error, wait, attempt + 1, retries)
            if scope is not None:
                scope.wait(wait)
            else:
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _checked(self, resp: Any) -> Reply:
        """The reply's first choice, or :class:`LLMError` when the body is not a chat completion (HTML from a
        proxy, no choices, no message, wrong types)."""
        if not isinstance(resp, BaseModel):
            raise LLMError(f"the LLM at {self._base_url} sent a malformed reply (not a chat completion: "
                           f"{type(resp).__name__} {str(resp)[:120]!r})")
        try:
            body = _WireCompletion.model_validate(resp.model_dump(warnings=False))
        except ValidationError as e:
            raise LLMError(f"the LLM at {self._base_url} sent a malformed reply ({_short_error(e, None)})") from e
        choice = body.choices[0]
        top = None
        if choice.logprobs is not None and choice.logprobs.content:
            first = choice.logprobs.content[0]
            top = [(t.token, t.logprob) for t in first.top_logprobs or []] or [(first.token, first.logprob)]
        return Reply(choice.message.content or "", choice.finish_reason, top)

    def _timed_out(self, deadline: Deadline) -> LLMError:
        return LLMError(f"the LLM at {self._base_url} did not answer within {deadline.budget_s or 0:.0f}s")

    def _unreachable(self, e: Exception) -> str:
        msg = f"cannot reach the LLM at {self._base_url}: {e}"
        if self._server is not None and not self._server.alive():
            msg += f"\nthe embedded server has exited; its output ends with:\n{self._server.output_tail()}"
        return msg

    # -- public API -----------------------------------------------------------------------------------------------

    def complete(self, messages: Messages, *, max_tokens: int = 256, timeout_s: float | None = None,
                 **extra: Any) -> Reply:
        """One checked completion (``extra``: further request fields, e.g. ``logprobs``)."""
        return self._complete(_as_messages(messages), max_tokens=max_tokens, deadline=self._deadline(timeout_s),
                              **extra)

    def chat_text(self, messages: Messages, *, max_tokens: int = 256, timeout_s: float | None = None) -> str:
        """Plain completion: the assistant's reply text."""
        return self.complete(messages, max_tokens=max_tokens, timeout_s=timeout_s).text

    def chat_json(
        self, messages: Messages, schema: type[T], *, max_tokens: int = 512, timeout_s: float | None = None,
        fallback: Callable[[], T] | None = None, retries: int | None = None,
    ) -> T:
        """A reply constrained to ``schema`` (``response_format`` json_schema) and validated into it.

        An invalid reply (bad JSON, schema violation, cut at ``max_tokens``) is shown back to the model with the
        error, up to ``retries`` (default ``settings.max_retries``) times while ``timeout_s`` lasts; then
        ``fallback()`` is returned (logged), or :class:`LLMOutputError` raised without one. Transport failures and
        replies that are not chat completions raise :class:`LLMError` right away.
        """
        deadline = self._deadline(timeout_s)
        base = _as_messages(messages)
        msgs = base
        rf = response_format(schema)
        attempts = (self.settings.max_retries if retries is None else retries) + 1
        error = ""
        for attempt in range(1, attempts + 1):
            reply = self._complete(msgs, max_tokens=max_tokens, deadline=deadline, response_format=rf)
            try:
                return schema.model_validate_json(reply.text)
            except ValidationError as e:
                error = _short_error(e, reply.finish_reason)
            logger.info("invalid %s reply (attempt %d/%d): %s", schema.__name__, attempt, attempts, error)
            if attempt < attempts and deadline.remaining() <= 0:
                logger.info("no time left to ask again for %s", schema.__name__)
                attempts = attempt
                break
            msgs = [*base, {"role": "assistant", "content": reply.text[:2000]},
                    {"role": "user", "content": f"That reply is invalid: {error}. Reply again with JSON that "
                     "matches the schema exactly."}]
        if fallback is not None:
            logger.warning("the LLM gave no valid %s after %d attempts (%s); using the fallback",
                           schema.__name__, attempts, error)
            return fallback()
        raise LLMOutputError(f"no valid {schema.__name__} from the LLM after {attempts} attempts: {error}")

    def yes_probability(self, messages: Messages, *, timeout_s: float | None = None, top_logprobs: int = 20) -> float:
        """P(yes) for a yes/no question: ``p_yes / (p_yes + p_no)`` over the first token's top logprobs.

        Case and surrounding space are ignored ("Yes", " yes"). When only one answer is among the top tokens,
        the other gets the smallest listed probability (an upper bound on it); when neither is, 0.5. An endpoint
        that sends no logprobs is read from the answer's text.
        """
        return self.choice_probabilities(messages, ("yes", "no"), timeout_s=timeout_s,
                                         top_logprobs=top_logprobs)["yes"]

    def choice_probabilities(self, messages: Messages, options: Sequence[str], *, timeout_s: float | None = None,
                             top_logprobs: int = 20) -> dict[str, float]:
        """The answer's distribution over one-token ``options`` (e.g. ``"A", "B"`` or ``"0".."3"``), read from the
        first token's top log-probabilities (see :func:`choice_shares`). An endpoint that sends no logprobs is
        read from the answer's text (all the mass on the option it starts with)."""
        reply = self.complete(messages, max_tokens=1, timeout_s=timeout_s, logprobs=True, top_logprobs=top_logprobs)
        if reply.top_logprobs:
            return choice_shares(reply.top_logprobs, options)
        word = reply.text.strip().lower()
        logger.info("no logprobs in the reply; the answer read from the text %r", word)
        hit = next((o for o in options if word.startswith(o.lower())), None)
        return {o: (1.0 if o == hit else 0.0) if hit else 1.0 / len(options) for o in options}

    def close(self) -> None:
        """Close the HTTP connections (the shared embedded server keeps running until exit)."""
        with self._lock:
            if self._sdk is not None:
                self._sdk.close()
                self._sdk = None


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds before retry ``attempt + 1``: the server's ``Retry-After`` when it gives seconds, else 0.5 * 2^n."""
    try:
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), MAX_BACKOFF_S)
    except ValueError:
        pass  # an HTTP date: use our own backoff
    return min(0.5 * 2**attempt, MAX_BACKOFF_S)


CANCEL_POLL_S = 0.05


def _within(seconds: float, call: Callable[[], Any], scope: cancel.CancelScope | None = None) -> Any:
    """``call()`` on a worker thread, given up after ``seconds`` (:class:`TimeoutError`), or as soon as ``scope``
    is cancelled (:class:`LLMCancelled`; the request's connection is closed when it is one of
    :func:`_abortable_http_client`'s).

    httpx's timeout applies to each network operation, so a server that trickles its reply byte by byte never
    trips it; this bounds the wall time. An abandoned request ends by itself at its own (per-operation) timeout.
    """
    done = threading.Event()
    box: dict[str, Any] = {}
    request = _Request()

    def run() -> None:
        _requests.current = request
        try:
            box["value"] = call()
        except BaseException as e:  # handed to the caller below
            box["error"] = e
        finally:
            _requests.current = None
            done.set()

    threading.Thread(target=run, name="twinseek-llm-request", daemon=True).start()
    # a little grace so that the request's own timeout, with its clearer error, usually fires first
    end = time.monotonic() + seconds + 0.25
    with scope.on_cancel(request.abort) if scope is not None else contextlib.nullcontext():
        while not done.wait(max(0.0, min(CANCEL_POLL_S if scope is not None else seconds + 0.25,
                                         end - time.monotonic()))):
            if scope is not None and scope.cancelled:
                raise LLMCancelled("the search was cancelled")
            if time.monotonic() >= end:
                raise TimeoutError(f"no reply within {seconds:.1f}s")
    if scope is not None and scope.cancelled and "error" in box:
        raise LLMCancelled("the search was cancelled") from box["error"]
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- closing a request's connection from another thread -------------------------------------------------------
class _Request:
    """One request on its worker thread: the connection it is using, to shut down when it is cancelled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stream: _TrackedStream | None = None
        self.aborted = False

    def bind(self, stream: _TrackedStream) -> None:
        with self._lock:
            self.stream = stream
            aborted = self.aborted
        if aborted:
            stream.abort()

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            stream = self.stream
        if stream is not None:
            stream.abort()


_requests = threading.local()  # .current: the _Request of the request running on this thread


def _is_loopback(url: str | None) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url or "").hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def _abortable_http_client() -> Any:
    """The SDK's own httpx client, over a connection pool whose connections the request that uses one can shut
    down from another thread (a blocked read returns at once; the server sees the connection close)."""
    import openai

    try:  # the openai SDK builds on httpx2 (recent versions) or httpx
        import httpcore2 as httpcore  # type: ignore[import-not-found]
        import httpx2 as httpx  # type: ignore[import-not-found]
    except ImportError:
        import httpcore  # type: ignore[no-redef]
        import httpx  # type: ignore[no-redef]
    client = openai.DefaultHttpxClient()
    if not isinstance(client, httpx.Client) or not hasattr(httpx.HTTPTransport(), "_pool"):
        logger.info("cancelled LLM requests will be abandoned, not closed (unknown HTTP client %s)", type(client))
        return client  # the SDK on a library this does not know: cancelling abandons the request instead

    class TrackingBackend(httpcore.SyncBackend):  # type: ignore[misc,name-defined]
        def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
            return _TrackedStream(super().connect_tcp(*args, **kwargs))

    client.close()
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(network_backend=TrackingBackend(), max_connections=100,
                                              max_keepalive_connections=20, keepalive_expiry=5.0)
    return openai.DefaultHttpxClient(transport=transport)


class _TrackedStream:
    """A connection that tells the request reading or writing it that it is in use (``_requests.current``)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _bind(self) -> None:
        request = getattr(_requests, "current", None)
        if request is not None and request.stream is not self:
            request.bind(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._bind()
        return self._stream.read(max_bytes, timeout)  # type: ignore[no-any-return]

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._bind()
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> _TrackedStream:
        return _TrackedStream(self._stream.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)

    def abort(self) -> None:
        """Shut the socket down both ways: a read blocked on it returns, and the peer sees the close."""
        sock = self._stream.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def choice_shares(top: Sequence[tuple[str, float]], options: Sequence[str]) -> dict[str, float]:
    """Each option's share of the first token's probability mass among ``options`` (case and surrounding space
    ignored), from (token, logprob) pairs. An option missing from the top tokens gets the smallest listed
    probability (an upper bound on it); with none of them listed, every option gets the same share."""
    probs = [(tok.strip().lower(), math.exp(lp)) for tok, lp in top if lp is not None and lp > -math.inf]
    wanted = [o.lower() for o in options]
    mass = {o: sum(p for tok, p in probs if tok == o) for o in wanted}
    if not any(mass.values()):
        logger.info("none of %s among the top tokens %s; equal shares", wanted, [t for t, _ in top[:5]])
        return {o: 1.0 / len(options) for o in options}
    floor = min(p for _, p in probs)
    mass = {o: m or floor for o, m in mass.items()}
    total = sum(mass.values())
    return {o: mass[o.lower()] / total for o in options}


def yes_share(top: Sequence[tuple[str, float]]) -> float:
    """``p_yes / (p_yes + p_no)`` from (token, logprob) pairs; see :meth:`LLMClient.yes_probability`."""
    return choice_shares(top, ("yes", "no"))["yes"]


def _short_error(e: ValidationError, finish_reason: str | None) -> str:
    if finish_reason == "length":
        return "the reply was cut at max_tokens"
    first = e.errors()[0]
    where = ".".join(str(x) for x in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def open_llm(settings: Settings | None = None, **llm_overrides: Any) -> LLMClient:
    """The client for the configured endpoint: the user's ``base_url``, else the shared embedded server.

    ``llm_overrides`` replace fields of ``settings.llm`` (explicit arguments win over the environment). The
    embedded server starts lazily on the first request (or :meth:`LLMClient.start`), once per process.
    """

    settings = settings or load_settings()
    if llm_overrides:
        settings = copy.copy(settings)
        settings.llm = settings.llm.model_copy(update=llm_overrides)
    llm = settings.llm
    if llm.base_url:
        return LLMClient(llm, tier="paper", base_url=llm.base_url)
    return LLMClient(llm, tier="embedded", server_factory=lambda: shared_server(settings))
