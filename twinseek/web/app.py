"""The app factory, its middleware and error pages, and :func:`serve` behind ``twinseek serve``."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinseek import __version__
from twinseek.agent.api import Agent
from twinseek.errors import TwinseekError, VideoNotFoundError
from twinseek.llm.server import stop_embedded_servers
from twinseek.twins.store import TwinStore
from twinseek.web import api, pages
from twinseek.web.deps import (
    TOKEN_COOKIE,
    NotAuthenticated,
    TokenAccepted,
    WebState,
    is_api,
    require_token,
    same_origin,
)
from twinseek.web.ingest import IngestWorker, UploadRejected
from twinseek.web.media import OutsideRootError, OverlayCache, css_colour
from twinseek.web.search import SearchService
from twinseek.web.settings import WebSettings, check_bind

if TYPE_CHECKING:
    from twinseek.agent.api import Agent
    from twinseek.twins.pipeline import Ingestor

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self'; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'self'")
DESCRIPTION = """Reasoning video retrieval over the digital twins of one store.

`GET /api/search` returns what `Agent.search` returns; `GET /api/search/stream` sends the same search as
server-sent events (`node`, `progress`, then `result` or `error`). Media routes draw mask overlays from the
store; ingest jobs run in a background worker. With `--token`, send `Authorization: Bearer TOKEN`."""


def templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.globals["colour"] = css_colour
    return Jinja2Templates(env=env, context_processors=[lambda request: {
        "base": request.scope.get("root_path", ""), "version": __version__}])


def create_app(settings: WebSettings, *, agent: Agent | None = None,
               ingestor_factory: Callable[[], Ingestor] | None = None) -> FastAPI:
    """The web app over ``settings.store``.

    ``agent``: search with this agent instead of ``Agent.open(settings.store, profile=settings.profile)`` (it
    is not closed with the app: tests inject one with a scripted LLM). ``ingestor_factory``: what the ingest
    worker ingests with (default: the store and the agent's settings). The agent, the ingest worker and the
    LLM start with the app (its lifespan) and stop with it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        web = await run_in_threadpool(open_state, settings, agent, ingestor_factory)
        app.state.web = web
        try:
            yield
        finally:
            await run_in_threadpool(close_state, web)

    app = FastAPI(title="twinseek", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.add_middleware(UploadLimit, path="/api/ingest", max_bytes=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.hosts())
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    guards = [Depends(same_origin), Depends(require_token)]  # one cross-site policy, then the token
    app.include_router(api.router, dependencies=guards)
    app.include_router(pages.router, dependencies=guards)
    app.include_router(docs, dependencies=guards)
    _error_handlers(app)
    return app


def open_state(settings: WebSettings, agent: Agent | None,
               ingestor_factory: Callable[[], Ingestor] | None) -> WebState:

    owns = agent is None
    agent = agent or Agent.open(settings.store, profile=settings.profile, warm=settings.warm_llm)
    searches = SearchService(agent, settings.search_threads)
    resources = agent.resources
    worker = IngestWorker(resources.store.root.resolve(), resources.settings, on_ingested=searches.sync,
                          history=settings.job_history, ingestor_factory=ingestor_factory)
    web = WebState(settings=settings, agent=agent, searches=searches, ingest=worker, overlays=OverlayCache(),
                   templates=templates(), owns_agent=owns)
    if settings.warm_llm:
        web.llm_thread = threading.Thread(target=_warm_llm, args=(web,), name="twinseek-llm-start", daemon=True)
        web.llm_thread.start()
    return web


def _warm_llm(web: WebState) -> None:
    """Report when the LLM is up (``Agent.open(warm=...)`` started and warms it; this waits for it to answer)."""
    web.llm_status = "starting"
    try:
        llm = web.agent.resources.llm.start()
        web.llm_status = f"ready ({llm.tier}:{llm.model})"
    except Exception as exc:  # searches still run; reasoning falls back and says why
        logger.warning("the LLM did not start: %s", exc)
        web.llm_status = f"failed: {exc}"[:300]


def close_state(web: WebState) -> None:
    web.ingest.close()
    web.searches.close()
    web.overlays.close()
    if web.owns_agent:
        web.agent.close()


# -- middleware -------------------------------------------------------------------------------------------------
class UploadLimit:
    """Refuse request bodies over ``max_bytes`` on ``path`` with 413, from the Content-Length before reading,
    or as soon as a body without one passes the limit (nothing beyond it is read)."""

    def __init__(self, app: ASGIApp, path: str, max_bytes: int) -> None:
        self.app, self.path, self.max_bytes = app, path, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self.path):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen, over = 0, False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not over:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"upload larger than the limit of {self.max_bytes / 2**20:.4g} MB (twinseek serve --max-upload-mb)"
        await JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


class SecurityHeaders:
    """nosniff and no Referer everywhere; a strict Content-Security-Policy on the app's HTML pages (no inline
    scripts: a reasoning text or file name that slipped through escaping still could not run)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs_page = scope["path"].endswith("/docs")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                if html and not docs_page and b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


# -- the API docs, behind the same token as everything else -----------------------------------------------------
docs = APIRouter(include_in_schema=False)


@docs.get("/openapi.json")
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@docs.get("/docs")
def swagger(request: Request) -> HTMLResponse:
    base = request.scope.get("root_path", "")
    return get_swagger_ui_html(openapi_url=f"{base}/openapi.json", title="twinseek API")


# -- errors -----------------------------------------------------------------------------------------------------
def _error_handlers(app: FastAPI) -> None:
    def page_or_json(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        if is_api(request) or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": message}, status_code=status, headers=headers)
        web = getattr(request.app.state, "web", None)
        if web is None:
            return HTMLResponse(f"<h1>{status}</h1>", status_code=status)
        return web.templates.TemplateResponse(request, "error.html", {"status": status, "message": message},
                                              status_code=status, headers=headers)

    @app.exception_handler(NotAuthenticated)
    async def not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if is_api(request) or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": "a valid bearer token is required"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        web = request.app.state.web
        keep = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        return web.templates.TemplateResponse(request, "login.html", {"path": request.url.path, "keep": keep},
                                              status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(TokenAccepted)
    async def token_accepted(request: Request, exc: TokenAccepted) -> Response:
        response = RedirectResponse(exc.url, status_code=303)
        response.set_cookie(TOKEN_COOKIE, exc.token, httponly=True, samesite="strict",
                            path=request.scope.get("root_path", "") or "/")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return page_or_json(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(VideoNotFoundError)
    async def no_video(request: Request, exc: VideoNotFoundError) -> Response:
        return page_or_json(request, 404, str(exc))

    @app.exception_handler(OutsideRootError)
    async def outside(request: Request, exc: OutsideRootError) -> Response:
        return page_or_json(request, 404, "not found")

    @app.exception_handler(UploadRejected)
    async def rejected(request: Request, exc: UploadRejected) -> Response:
        return page_or_json(request, exc.status_code, exc.message)

    @app.exception_handler(TwinseekError)
    async def twinseek_error(request: Request, exc: TwinseekError) -> Response:
        return page_or_json(request, 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(e.get("loc", ("",))[0] == "path" for e in errors):  # e.g. a video id no video can have
            return page_or_json(request, 404, "not found")
        if is_api(request):
            return JSONResponse({"detail": json.loads(json.dumps(errors, default=str))}, status_code=422)
        return page_or_json(request, 422, "; ".join(str(e.get("msg")) for e in errors))


# -- serving ----------------------------------------------------------------------------------------------------
TOKEN_IN_QUERY = re.compile(r"(?i)([?&]token=)[^&#\s]*")


def redact_token(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced by ``***``."""
    return TOKEN_IN_QUERY.sub(r"\1***", text)


class RedactTokens(logging.Filter):
    """The access log without the tokens of ``?token=`` links (uvicorn logs the full path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_token(a) if isinstance(a, str) else a for a in record.args)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`RedactTokens` on its access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    config["handlers"]["access"]["filters"] = ["redact_tokens"]
    return config


def http_protocol() -> type:
    """uvicorn's h11 protocol, but a request whose request line or headers outgrow its buffer is answered 414 URI
    Too Long (or 431) instead of 400, and the rest of what the client sends is read and dropped before the
    connection closes: the client reads the answer instead of a connection reset."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        drain_s = 2.0
        _draining = False

        def data_received(self, data: bytes) -> None:
            if not self._draining:
                super().data_received(data)

        def send_400_response(self, msg: str) -> None:
            pending, _ = self.conn.trailing_data
            if len(pending) < OVERSIZED_REQUEST:
                super().send_400_response(msg)
                return
            status, text = (414, "URI too long") if b"\r\n" not in pending else (431, "request headers too large")
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
            for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=text.encode()),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self._draining = True
            with contextlib.suppress(Exception):  # half-close: the answer is complete; reading goes on
                self.transport.write_eof()
            asyncio.get_running_loop().call_later(self.drain_s, self.transport.close)

    return Protocol


OVERSIZED_REQUEST = 16 * 1024  # h11's receive buffer limit (uvicorn's h11_max_incomplete_event_size default)


def serve(settings: WebSettings, log_level: str = "info", on_ready: Callable[[str], Any] | None = None) -> None:
    """Check the bind policy, open (or create) the store and serve until interrupted. ``on_ready`` gets the
    address (never the token: it would end up in terminals' scrollback and logs)."""
    import uvicorn

    check_bind(settings)
    TwinStore(settings.store).close()  # a new store is created empty: the ingest page fills it
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}/"
    if on_ready is not None:
        on_ready(url)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, proxy_headers=False,
                    server_header=False, http=http_protocol(), log_config=log_config())
    finally:
        stop_embedded_servers()


@contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", startup_timeout_s: float = 120.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of ``host`` from a thread of this process (tests, benchmarks,
    notebooks); yields the base URL and stops the server on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", http=http_protocol(),
                                           log_config=log_config()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="twinseek-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the web app did not start (see the log above)")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
