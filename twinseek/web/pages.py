"""Server-rendered pages: search, videos and the twin inspector, ingest, eval reports."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from twinseek.retrieval.moments import span_label
from twinseek.twins.model import Twin
from twinseek.twins.scenes import scenes
from twinseek.web.api import END, START, served_file, store_refinements, summary
from twinseek.web.deps import Store, TwinDep, Web, WebState
from twinseek.web.media import OutsideRootError, css_colour, file_inside, span_frames
from twinseek.web.reports import list_runs, render_markdown, run_folder, run_info
from twinseek.web.search import SearchParams

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
PLAYABLE = frozenset({".mp4", ".m4v", ".mov", ".webm"})  # what browsers play in <video>; others get the overlay
REPORT_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'none'; "
              "frame-ancestors 'self'")
REPORT_TYPES = {".html": "text/html", ".md": "text/markdown", ".json": "application/json", ".gz": "application/gzip",
                ".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".svg": "image/svg+xml",
                ".csv": "text/csv", ".txt": "text/plain"}


# -- search -----------------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def search_page(request: Request, web: Web) -> Response:
    """The search page; ``/?q=...`` runs the search as soon as the page has loaded (so it can be shared)."""
    raw = {k: v for k, v in request.query_params.items() if k in SearchParams.model_fields and v != ""}
    params, error = None, None
    if "q" in raw:
        try:
            params = SearchParams.model_validate(raw)
        except ValidationError as exc:
            error = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    shown = params or SearchParams.model_construct(q=raw.get("q", ""), k=10)
    defaults = web.agent.run_options()
    switches = {name: getattr(shown, name, None) if getattr(shown, name, None) is not None
                else getattr(defaults, name) for name in ("tau", "lr", "jit", "qd", "ca", "tool")}
    return web.templates.TemplateResponse(request, "search.html", {
        "params": shown, "switches": switches, "run": params is not None, "error": error,
        "videos": len(web.store), "llm": web.llm_status})


# -- videos -----------------------------------------------------------------------------------------------------
@router.get("/videos", response_class=HTMLResponse)
def videos_page(request: Request, store: Store, web: Web, page: Annotated[int, Query(ge=1)] = 1) -> Response:
    ids = [v.video_id for v in store.videos()]
    shown = [summary(store.get_twin(v)) for v in ids[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]]
    return web.templates.TemplateResponse(request, "videos.html", {
        "videos": shown, "page": page, "pages": max(1, -(-len(ids) // PAGE_SIZE)), "total": len(ids)})


@router.get("/videos/{video_id}", response_class=HTMLResponse)
def video_page(request: Request, twin: TwinDep, store: Store, web: Web, start: Annotated[float | None, START] = None,
               end: Annotated[float | None, END] = None) -> Response:
    """The twin inspector and player; ``?start=&end=`` (seconds: a hit's moment, as the search page links it)
    starts the player there and lays the masks of that span's frames over it."""
    v = twin.video
    moment = _moment(twin, start, end)
    return web.templates.TemplateResponse(request, "video.html", {
        "twin": twin, "video": v, "colours": {t.track_id: css_colour(k) for k, t in enumerate(twin.tracks)},
        "track_rows": _track_rows(twin), "relation_rows": _relation_rows(twin), "frames": _span(twin),
        "refinements": store_refinements(store, v.video_id), "player": _player_data(twin, moment),
        "moment": moment, "span_lanes": _span_lanes(twin), **_playback(twin, web)})


def _playback(twin: Twin, web: WebState) -> dict[str, Any]:
    """Whether the page plays the video file, and why not when it cannot (the user sees the still overlay)."""
    path = served_file(twin, web)
    if isinstance(path, str):
        return {"playable": False, "not_played": f"The video file {path}."}
    if path.suffix.lower() not in PLAYABLE:
        return {"playable": False, "not_played": f"Browsers do not play {path.suffix} files: the key frames instead."}
    return {"playable": True, "not_played": None}


def _moment(twin: Twin, start: float | None, end: float | None) -> dict[str, Any] | None:
    """The span asked for (``start``, ``end`` in seconds, the label, its sampled frames, its bar on the timeline),
    None when none was; an end before the start is refused."""
    if start is None and end is None:
        return None
    v = twin.video
    start = start or 0.0
    end = end if end is not None else max(v.duration_s, start)
    if end < start:
        raise HTTPException(422, f"the moment ends ({end} s) before it starts ({start} s)")
    first, last = round(start * v.fps), max(round(start * v.fps), round(end * v.fps) - 1)
    return {"start": start, "end": end, "label": span_label(start, end), "bar": _bar(first, last, _span(twin)),
            "frames": sorted(span_frames(twin, start, end) or ())}


def _span(twin: Twin) -> int:
    """Frames on the timeline axis: the whole source video."""
    last = max([twin.video.frame_count, *(i.frame_index + 1 for i in twin.instances)], default=1)
    return max(1, last)


def _bar(start: int, end: int, span: int) -> dict[str, float]:
    left = 100 * start / span
    return {"left": round(left, 3), "width": round(max(0.6, 100 * (end - start + 1) / span), 3)}


def _track_rows(twin: Twin) -> list[dict[str, Any]]:
    span = _span(twin)
    frames: dict[int, list[int]] = defaultdict(list)
    for inst in twin.instances:
        frames[inst.track_id].append(inst.frame_index)
    return [{"track": t, "bar": _bar(t.first_frame, t.last_frame, span),
             "ticks": [round(100 * f / span, 3) for f in sorted(frames[t.track_id])]} for t in twin.tracks]


def _relation_rows(twin: Twin) -> list[dict[str, Any]]:
    """One row per (subject, predicate, object), with every interval it holds on."""
    span = _span(twin)
    names = {t.track_id: f"#{t.track_id} {t.category}" for t in twin.tracks}
    rows: dict[tuple[int, str, int | None], dict[str, Any]] = {}
    for r in twin.relations:
        key = (r.subject_track, r.predicate, r.object_track)
        row = rows.setdefault(key, {"subject": names.get(r.subject_track, f"#{r.subject_track}"),
                                    "predicate": r.predicate, "kind": r.kind, "bars": [],
                                    "object": names.get(r.object_track, f"#{r.object_track}")
                                    if r.object_track is not None else ""})
        row["bars"].append({**_bar(r.frame_start, r.frame_end, span), "start": r.frame_start, "end": r.frame_end})
    return list(rows.values())


def _span_lanes(twin: Twin) -> list[dict[str, Any]]:
    """The timeline's lanes of spans: the scenes of a video of several (with their labels), then the shots; each
    span's bar, first frame and title."""
    span = _span(twin)
    scene_spans = [{"bar": _bar(s.start_frame, s.end_frame, span), "start": s.start_frame,
                    "title": f"scene {s.index}: {span_label(s.start_s, s.end_s)}: "
                             + ", ".join(label for label, _ in s.labels[:3])} for s in scenes(twin)]
    shot_spans = [{"bar": _bar(s.start_frame, s.end_frame, span), "start": s.start_frame,
                   "title": f"shot {s.index}: {span_label(s.start_s, s.end_s)}"} for s in twin.shots]
    return [{"name": name, "spans": spans} for name, spans in (("scenes", scene_spans), ("shots", shot_spans))
            if spans]


def _player_data(twin: Twin, moment: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the player script needs to lay each frame's masks over the playing video (and, for a moment, where it
    starts and ends and which frames' masks it shows)."""
    v = twin.video
    data: dict[str, Any] = {"video_id": v.video_id, "fps": v.fps or 25.0,
                            "frames": sorted({i.frame_index for i in twin.instances if i.mask_path}),
                            "tracks": [t.track_id for t in twin.tracks]}
    if moment is not None:
        data["moment"] = {k: moment[k] for k in ("start", "end", "frames")}
    return data


# -- ingest -----------------------------------------------------------------------------------------------------
@router.get("/ingest", response_class=HTMLResponse)
def ingest_page(request: Request, store: Store, web: Web) -> Response:
    return web.templates.TemplateResponse(request, "ingest.html", {
        "stats": store.stats(), "jobs": web.ingest.jobs(), "now": time.time(), "settings": web.settings,
        "roots": [str(r) for r in web.settings.ingest_roots]})


@router.get("/ingest/jobs", response_class=HTMLResponse)
def ingest_jobs_fragment(request: Request, web: Web) -> Response:
    """The jobs list alone (the ingest page polls it while a job runs)."""
    return web.templates.TemplateResponse(request, "_jobs.html", {"jobs": web.ingest.jobs(), "now": time.time()})


@router.get("/ingest/stats", response_class=HTMLResponse)
def ingest_stats_fragment(request: Request, store: Store, web: Web) -> Response:
    return web.templates.TemplateResponse(request, "_stats.html", {"stats": store.stats()})


# -- eval reports -----------------------------------------------------------------------------------------------
@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, web: Web) -> Response:
    return web.templates.TemplateResponse(request, "reports.html", {
        "runs": list_runs(web.settings.runs), "root": str(web.settings.runs)})


@router.get("/reports/{name}")
def report_redirect(request: Request, name: str) -> Response:
    # relative links in a report (plots/, examples/) resolve below the run's own address
    return RedirectResponse(f"{request.scope.get('root_path', '')}/reports/{name}/", status_code=307)


@router.get("/reports/{name}/", response_class=HTMLResponse)
def report_page(request: Request, name: str, web: Web) -> Response:
    folder = _run(web, name)
    md = folder / "report.md"
    body = render_markdown(md.read_text(encoding="utf-8")) if md.is_file() else None
    return web.templates.TemplateResponse(request, "report.html", {
        "run": run_info(folder), "body": body, "has_html": (folder / "report.html").is_file()})


@router.get("/reports/{name}/{path:path}")
def report_file(name: str, path: str, web: Web) -> FileResponse:
    """A file of a run folder (plots, overlay examples, report.html): only files inside that folder."""
    try:
        target = file_inside(_run(web, name), path)
    except OutsideRootError as exc:
        raise HTTPException(404, "not found") from exc
    media_type = REPORT_TYPES.get(target.suffix.lower(), "application/octet-stream")
    return FileResponse(target, media_type=media_type, headers={"Content-Security-Policy": REPORT_CSP})


def _run(web: Any, name: str) -> Path:
    try:
        return run_folder(web.settings.runs, name)
    except LookupError as exc:
        raise HTTPException(404, f"no eval run {name}") from exc
