"""FastAPI dependencies of the web app: its state, the store, a twin by id, authentication and same-origin
checks."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Path, Request
from fastapi.templating import Jinja2Templates

from twinseek.errors import VideoNotFoundError
from twinseek.twins.model import Twin
from twinseek.twins.store import TwinStore

if TYPE_CHECKING:
    from twinseek.agent.api import Agent
    from twinseek.web.ingest import IngestWorker
    from twinseek.web.media import OverlayCache
    from twinseek.web.search import SearchService
    from twinseek.web.settings import WebSettings

TOKEN_COOKIE = "twinseek_token"
VIDEO_ID = Path(pattern=r"^[A-Za-z0-9._-]{1,200}$", description="A video id of the store.")


@dataclass
class WebState:
    """What the app holds while it runs (``app.state.web``)."""

    settings: WebSettings
    agent: Agent
    searches: SearchService
    ingest: IngestWorker
    overlays: OverlayCache
    templates: Jinja2Templates
    owns_agent: bool = True
    llm_status: str = "starts with the first search that needs it"
    llm_thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def store(self) -> TwinStore:
        return self.agent.resources.store


def get_web(request: Request) -> WebState:
    return request.app.state.web  # type: ignore[no-any-return]


Web = Annotated[WebState, Depends(get_web)]


def get_store(web: Web) -> TwinStore:
    return web.store


Store = Annotated[TwinStore, Depends(get_store)]


def get_twin(store: Store, video_id: Annotated[str, VIDEO_ID]) -> Twin:
    try:
        return store.get_twin(video_id)
    except VideoNotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc


TwinDep = Annotated[Twin, Depends(get_twin)]


# -- authentication ---------------------------------------------------------------------------------------------
class NotAuthenticated(Exception):
    """No valid token: 401 (JSON for the API, a small token form for pages)."""


class TokenAccepted(Exception):
    """A page opened with ``?token=``: answered with a redirect that sets the cookie and drops the token from
    the address (so it does not stay in the history or travel in Referer headers)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token


def presented_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(TOKEN_COOKIE) or request.query_params.get("token")


def require_token(request: Request) -> None:
    """Every route but the static files: the bearer token (header, cookie or ``?token=``) when one is set."""
    expected = request.app.state.settings.token
    if not expected:
        return
    given = presented_token(request)
    if given is None or not secrets.compare_digest(given.encode(), expected.encode()):
        raise NotAuthenticated()
    from_query = request.query_params.get("token")
    if from_query and request.method == "GET" and not is_api(request):
        url = request.url.remove_query_params("token")
        raise TokenAccepted(url.path + (f"?{url.query}" if url.query else ""), expected)


def same_origin(request: Request) -> None:
    """State-changing requests must come from the app's own pages (or from a client that sends no Origin,
    such as curl): a page on another site cannot make the browser upload into the store."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, "cross-origin request refused")
    if origin == "null":
        raise HTTPException(403, "cross-origin request refused")


def is_api(request: Request) -> bool:
    path = request.url.path[len(request.scope.get("root_path", "")):]
    return path.startswith(("/api/", "/openapi.json")) or path == "/api"
