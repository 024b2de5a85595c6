"""The JSON API (``/api``): search (plain and streamed), twins, media drawn from the store, ingest jobs, eval
runs. Blocking work (SQLite, decoding, drawing) runs in plain ``def`` routes, which FastAPI puts on its thread
pool; searches run on the search service's own pool."""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from twinseek.agent.api import SearchResult
from twinseek.errors import TwinseekError
from twinseek.twins.model import Twin, Video
from twinseek.twins.pipeline import collect_videos
from twinseek.twins.store import MASK_DIR, TwinStore
from twinseek.web.deps import Store, TwinDep, Web, WebState
from twinseek.web.ingest import IngestJob, UploadRejected, new_job_id, save_uploads
from twinseek.web.media import (
    OutsideRootError,
    file_inside,
    is_inside,
    mask_layer,
    real_path,
    span_frames,
    track_selection,
)
from twinseek.web.reports import RunInfo, list_runs, load_run, run_folder
from twinseek.web.search import SearchParams

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api")

TRACKS = Query(pattern=r"^\d{1,6}(,\d{1,6}){0,63}$", description="Comma-separated track ids (default: all).")
MAX_SECONDS = 1e7  # a bound on times in a query (115 days of video)
START = Query(ge=0, le=MAX_SECONDS, description="Seconds from the video's start: only the frames from here on.")
END = Query(ge=0, le=MAX_SECONDS, description="Seconds from the video's start: only the frames before this.")
REFINEMENT_COLUMNS = ("track_id", "field", "value", "confidence", "action", "model", "frames", "provenance")
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".gif": "image/gif"}


class VideoSummary(BaseModel):
    video: Video
    tracks: int
    categories: list[str] = Field(description="Track categories, most frequent first.")


class TwinView(BaseModel):
    twin: Twin
    refinements: list[dict[str, Any]] = Field(
        default_factory=list, description="What searches learnt about this twin (the refinements overlay laid over "
        "its ingest rows in ``twin``), with provenance.")


class Health(BaseModel):
    status: str
    videos: int
    llm: str
    ingesting: bool


class FolderRequest(BaseModel):
    path: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00]*$",
                      description="A folder (or file) on the server, below an allowed ingest root.")


def parse_tracks(tracks: str | None) -> list[int] | None:
    return [int(t) for t in tracks.split(",")] if tracks else None


def summary(twin: Twin) -> VideoSummary:
    counts: dict[str, int] = {}
    for t in twin.tracks:
        counts[t.category] = counts.get(t.category, 0) + 1
    return VideoSummary(video=twin.video, tracks=len(twin.tracks),
                        categories=sorted(counts, key=lambda c: -counts[c]))


def store_refinements(store: TwinStore, video_id: str) -> list[dict[str, Any]]:
    """The refinements the store records for a video (:meth:`TwinStore.refinements`), with their provenance."""
    rows = [r.model_dump(mode="json") for r in store.refinements(video_id)]
    # the columns a reader wants first (those the overlay is expected to have), then whatever else there is
    first = [k for k in REFINEMENT_COLUMNS if any(k in r for r in rows)]
    rest = [k for r in rows for k in r if k not in first and k not in ("id", "video_id")]
    keys = first + list(dict.fromkeys(rest))
    return [{k: r.get(k) for k in keys} for r in rows]


# -- search -----------------------------------------------------------------------------------------------------
@router.get("/search", response_model=SearchResult, summary="Search the store (what Agent.search returns)")
async def search(params: Annotated[SearchParams, Query()], web: Web) -> Response:
    try:
        result = await web.searches.asearch(params)
    except TwinseekError as exc:
        raise HTTPException(400, str(exc)) from exc
    if web.settings.token:
        return JSONResponse(web.public(result.model_dump(mode="json")))
    # serialised once by the model itself (FastAPI would validate it again against response_model first)
    return Response(result.model_dump_json(), media_type="application/json")


@router.get("/search/stream", summary="The same search as server-sent events",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`node` and `progress` events, then one `result` (its `result` is "
                                            "the SearchResult, `html` the rendered hits) or `failure`."}})
async def search_stream(params: Annotated[SearchParams, Query()], request: Request, web: Web) -> StreamingResponse:
    return StreamingResponse(_events(web, params, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def _events(web: WebState, params: SearchParams, request: Request) -> AsyncIterator[str]:
    yield sse("start", {"query": params.q, "options": params.model_dump(exclude_none=True)})
    async for item in web.searches.stream(params):
        if item is None:
            yield ": keep-alive\n\n"
        elif isinstance(item, BaseException):
            if not isinstance(item, TwinseekError):
                logger.error("search %r failed", params.q, exc_info=item)
            message = str(item) if isinstance(item, TwinseekError) else f"search failed: {type(item).__name__}: {item}"
            yield sse("failure", {"message": message})
        elif item.kind == "result" and item.result is not None:
            html = web.templates.get_template("_hits.html").render(
                result=item.result, base=request.scope.get("root_path", ""))
            yield sse("result", {"result": web.public(item.result.model_dump(mode="json")), "html": html})
        else:
            yield sse(item.kind, {"node": item.node, "data": item.data})


# -- twins and media --------------------------------------------------------------------------------------------
@router.get("/videos", response_model=list[VideoSummary], summary="Videos in the store")
def videos(store: Store, web: Web, offset: Annotated[int, Query(ge=0)] = 0,
           limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Any:
    return web.public([summary(store.get_twin(v.video_id)).model_dump(mode="json")
                       for v in store.videos()[offset:offset + limit]])


@router.get("/videos/{video_id}", response_model=TwinView, summary="A video's twin")
def twin(twin: TwinDep, store: Store, web: Web) -> Any:
    return web.public(TwinView(twin=twin, refinements=store_refinements(store, twin.video.video_id))
                      .model_dump(mode="json"))


def served_file(twin: Twin, web: WebState) -> Path | str:
    """The real path of the video file the app may serve, or why it may not (what the video page tells the user).

    Only a video registered in the store, found by its id (the client never names a path), and only while its real
    file lies below an ingest root or in the store: a link swapped to point elsewhere is not followed."""
    try:
        path = real_path(twin.video.path, strict=True)
    except OutsideRootError:
        return "is no longer on the server"
    if not path.is_file():
        return "is no longer on the server"
    if not is_inside(path, web.served_roots()):
        return "is not served: it is not below an ingest root (serve --ingest-root) or in the store"
    return path


@router.get("/videos/{video_id}/file", summary="The video file (byte ranges supported)",
            response_class=FileResponse)
def video_file(twin: TwinDep, web: Web) -> FileResponse:
    path = served_file(twin, web)
    if isinstance(path, str):
        raise HTTPException(404, f"the file of {twin.video.video_id} {path}")
    media_type = VIDEO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, content_disposition_type="inline")


@router.get("/videos/{video_id}/overlay.gif", summary="Animated mask overlay of some tracks (within a time span: "
            "a moment)", response_class=FileResponse)
def overlay(twin: TwinDep, store: Store, web: Web, tracks: Annotated[str | None, TRACKS] = None,
            start: Annotated[float | None, START] = None, end: Annotated[float | None, END] = None) -> FileResponse:
    chosen = track_selection(twin, parse_tracks(tracks))
    frames = span_frames(twin, start, end)
    path = web.overlays.overlay(store, twin, chosen, frames) if chosen else None
    if path is None:
        raise HTTPException(404, "no masks for these tracks" + (" in this span" if frames is not None else ""))
    return FileResponse(path, media_type="image/gif", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/videos/{video_id}/frames/{frame}/masks.png", summary="Transparent mask layer of one frame",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def masks_of_frame(twin: TwinDep, store: Store, frame: int, tracks: Annotated[str | None, TRACKS] = None) -> Response:
    png = mask_layer(store, twin, frame, track_selection(twin, parse_tracks(tracks)))
    if png is None:
        raise HTTPException(404, f"no mask on frame {frame}")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/files/{path:path}", summary="A mask file of the store", response_class=FileResponse)
def store_file(path: str, store: Store) -> FileResponse:

    target = file_inside(store.root, path)
    if not target.is_relative_to((store.root / MASK_DIR).resolve()) or target.suffix.lower() != ".png":
        raise OutsideRootError(path)
    return FileResponse(target, media_type="image/png")


@router.get("/stats", summary="The store's statistics")
def stats(store: Store, web: Web) -> Any:
    return web.public(store.stats())


@router.get("/health", response_model=Health)
def health(web: Web) -> Health:
    return Health(status="ok", videos=len(web.store), llm=web.llm_status, ingesting=web.ingest.busy())


# -- ingest -----------------------------------------------------------------------------------------------------
@router.post("/ingest", response_model=IngestJob, status_code=202,
             summary="Upload video files and ingest them in the background",
             responses={413: {"description": "Larger than --max-upload-mb"}, 415: {"description": "Not a video"}})
async def upload(web: Web, files: Annotated[list[UploadFile], File(description="Video files.")]) -> Any:
    if not files:
        raise HTTPException(400, "no files in the upload")
    if len(files) > web.settings.max_upload_files:
        raise HTTPException(413, f"at most {web.settings.max_upload_files} files per upload")
    job_id = new_job_id()
    folder = web.ingest.upload_root / job_id
    saved = await run_in_threadpool(save_uploads, [(f.filename, f.file) for f in files], folder,
                                    web.settings.max_upload_bytes)
    names = [f.filename or p.name for f, p in zip(files, saved)]
    label = names[0] if len(names) == 1 else f"{len(names)} files"
    job = web.ingest.submit(list(zip(names, saved)), "upload", label, job_id=job_id, upload_folder=folder)
    return web.public(job.model_dump(mode="json"))


@router.post("/ingest/folder", response_model=IngestJob, status_code=202,
             summary="Ingest a folder (or file) on the server, below an allowed ingest root")
def ingest_folder(body: FolderRequest, web: Web) -> Any:

    roots = web.ingest_roots()
    where = "" if web.settings.token else f" ({', '.join(map(str, roots)) or 'none'})"
    try:
        target = Path(body.path).expanduser()
    except RuntimeError as exc:  # ~someone with no home here
        raise HTTPException(404, f"{body.path}: no such file or folder on the server") from exc
    if not target.is_absolute():
        target = roots[0] / target if roots else target
    target = real_path(target)
    if not is_inside(target, roots):
        raise HTTPException(403, f"{body.path} is outside the folders the server may ingest from{where}; see "
                                 "twinseek serve --ingest-root")
    if not target.exists():
        raise HTTPException(404, f"{body.path}: no such file or folder on the server")
    base = target if target.is_dir() else target.parent
    files = [(f, real_path(f)) for f in collect_videos([target])]
    if not files:
        raise HTTPException(400, f"{body.path}: no video files found")
    outside = [f for f, real in files if not is_inside(real, roots)]
    if outside:  # a symlink that leads out of the roots: the whole request is refused, naming the links
        names = ", ".join(str(f.relative_to(base)) if f.is_relative_to(base) else f.name for f in outside[:5])
        raise HTTPException(403, f"{len(outside)} of the files in {body.path} lead outside the folders the server "
                                 f"may ingest from{where} through symbolic links: {names}")
    # the real paths go into the store (a link swapped later changes nothing); named as the user sees them
    named = [(str(f.relative_to(base)) if f.is_relative_to(base) else f.name, real) for f, real in files]
    job = web.ingest.submit(named, "folder", body.path if web.settings.token else str(target))
    return web.public(job.model_dump(mode="json"))


@router.get("/ingest/jobs", response_model=list[IngestJob], summary="Ingest jobs, newest first")
def ingest_jobs(web: Web) -> Any:
    return web.public([j.model_dump(mode="json") for j in web.ingest.jobs()])


@router.get("/ingest/jobs/{job_id}", response_model=IngestJob)
def ingest_job(job_id: str, web: Web) -> Any:
    job = web.ingest.job(job_id)
    if job is None:
        raise HTTPException(404, f"no ingest job {job_id}")
    return web.public(job.model_dump(mode="json"))


# -- eval reports -----------------------------------------------------------------------------------------------
@router.get("/reports", response_model=list[RunInfo], summary="Eval runs in the runs folder")
def reports(web: Web) -> list[RunInfo]:
    return list_runs(web.settings.runs)


@router.get("/reports/{name}", summary="One eval run's results.json")
def report(name: str, web: Web) -> Any:
    try:
        folder = run_folder(web.settings.runs, name)
    except LookupError as exc:
        raise HTTPException(404, f"no eval run {name}") from exc
    try:
        return load_run(folder).model_dump(mode="json")
    except Exception as exc:
        raise HTTPException(404, f"{name} has no readable results.json: {exc}") from exc


__all__ = ["router", "UploadRejected"]
