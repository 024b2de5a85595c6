"""FastAPI dependencies of the web app: its state, the store, a twin by id, authentication and same-origin
checks."""

from __future__ import annotations

import contextlib
import pathlib
import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Path, Request
from fastapi.templating import Jinja2Templates

from twinseek.errors import VideoNotFoundError
from twinseek.twins.model import Twin
from twinseek.twins.store import TwinStore
from twinseek.web.media import OutsideRootError, real_path

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

    def public(self, data: Any) -> Any:
        """JSON-ready ``data`` as a client may see it: with a token set (a server reachable from elsewhere), the
        server's absolute paths are cut to their last part (see :func:`hide_paths`)."""
        return hide_paths(data) if self.settings.token else data

    def ingest_roots(self) -> list[pathlib.Path]:
        """The real folders folder ingest may name (``--ingest-root``)."""

        roots = []
        for root in self.settings.ingest_roots:
            with contextlib.suppress(OutsideRootError):
                roots.append(real_path(root))
        return roots

    def served_roots(self) -> list[pathlib.Path]:
        """Where the video files the app serves may lie: the ingest roots and the store (its uploads)."""

        return [*self.ingest_roots(), real_path(self.store.root)]


PATH_KEYS = frozenset({"path", "store", "root", "label"})  # label: a folder ingest job's folder


def hide_paths(data: Any) -> Any:
    """``data`` (JSON-ready: dicts, lists, scalars) with every absolute path under a ``path``, ``store``,
    ``root`` or ``label`` key cut to its last part."""
    if isinstance(data, dict):
        return {k: pathlib.PurePath(v).name if k in PATH_KEYS and isinstance(v, str) and v.startswith("/")
                else hide_paths(v) for k, v in data.items()}
    if isinstance(data, list):
        return [hide_paths(v) for v in data]
    return data


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


SAFE_FETCH_SITES = frozenset({"same-origin", "none"})  # "none": typed into the address bar, a bookmark


def same_origin(request: Request) -> None:
    """The app's one cross-site policy, on every route (before the token check): a request that another site's
    page made the browser send is refused with 403, reading or writing, so no page elsewhere can run searches,
    upload or ingest, or read the store through the user's browser. The one exception is following a link to a
    page (a top-level ``GET`` navigation), so a shared ``/?q=...`` link still opens. Clients that send neither
    ``Sec-Fetch-Site`` nor ``Origin`` (curl, scripts) are not browsers and pass."""
    headers = request.headers
    navigation = (request.method in ("GET", "HEAD") and headers.get("sec-fetch-mode") == "navigate"
                  and headers.get("sec-fetch-dest", "document") == "document" and not is_api(request))
    if navigation:
        return
    site = headers.get("sec-fetch-site")
    if site is not None and site not in SAFE_FETCH_SITES:
        raise HTTPException(403, "cross-site request refused")
    origin = headers.get("origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != headers.get("host", "")):
        raise HTTPException(403, "cross-origin request refused")


def is_api(request: Request) -> bool:
    path = request.url.path[len(request.scope.get("root_path", "")):]
    return path.startswith(("/api/", "/openapi.json")) or path == "/api"
