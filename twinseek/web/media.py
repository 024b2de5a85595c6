"""Media the web app draws from the store: animated mask overlays, per-frame mask layers, and the checks that
keep every file route inside the folder it serves.

Overlays are drawn by :meth:`SearchResult.save_overlays` (the library's one overlay renderer) and cached in a
folder of the app; mask layers are transparent PNGs laid over the playing ``<video>``.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from twinseek.agent.api import FrameMask, Hit, HitObject, SearchResult
from twinseek.media.masks import colour, load_mask, outline, resize_mask
from twinseek.twins.model import Instance, Twin, frame_time, frames_within
from twinseek.twins.store import MASK_DIR, TwinStore

FILL_ALPHA = 110  # of 255: the object stays visible under its colour
OVERLAY_MAX_FRAMES = 8


class OutsideRootError(LookupError):
    """A path that is not a file inside the folder a route serves (answered with 404)."""


def real_path(path: str | Path, *, strict: bool = False) -> Path:
    """``path`` with every ``..`` and symlink resolved: the one place the web app turns a path it was given into
    a real one. :class:`OutsideRootError` (a 404 on every route) when no file can have it: a NUL byte, a symlink
    loop, or (``strict``) nothing there."""
    try:
        return Path(path).resolve(strict=strict)
    except (OSError, RuntimeError, ValueError) as exc:  # missing, a loop, an embedded NUL byte
        raise OutsideRootError(str(path)) from exc


def is_inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether the real ``path`` lies in (or is) one of the real ``roots``."""
    return any(path.is_relative_to(root) for root in roots)


def file_inside(root: Path, relative: str | Path) -> Path:
    """``root / relative`` when it is an existing file inside ``root`` once every ``..`` and symlink is
    resolved; :class:`OutsideRootError` otherwise (absolute paths, escapes, links pointing out, folders, NUL
    bytes)."""
    relative = Path(relative)
    if relative.is_absolute() or relative.drive:
        raise OutsideRootError(str(relative))
    base = real_path(root)
    target = real_path(base / relative, strict=True)
    if not target.is_relative_to(base) or not target.is_file():
        raise OutsideRootError(str(relative))
    return target


def mask_file(store: TwinStore, instance: Instance) -> Path:
    """The instance's mask PNG, refused unless it lies in the store's mask folder."""
    path = file_inside(store.root, instance.mask_path)
    if not path.is_relative_to((store.root / MASK_DIR).resolve()):
        raise OutsideRootError(instance.mask_path)
    return path


def css_colour(position: int) -> str:
    """The CSS colour of the object at ``position`` in a list (the same as the overlays draw)."""
    r, g, b = colour(position)
    return f"rgb({r},{g},{b})"


def track_selection(twin: Twin, tracks: Sequence[int] | None) -> list[int]:
    """The requested tracks that exist, in the requested order (all tracks when none are named)."""
    known = [t.track_id for t in twin.tracks]
    if not tracks:
        return known
    return [t for t in dict.fromkeys(tracks) if t in known]


def span_frames(twin: Twin, start: float | None, end: float | None) -> set[int] | None:
    """The sampled frames of ``twin`` within [start, end) seconds (a moment's); None when no span is given."""
    if start is None and end is None:
        return None
    v = twin.video
    upper = end if end is not None else max(v.duration_s, frame_time(v, v.frame_count))
    return set(frames_within(v, v.sampled_frames, start or 0.0, upper))


def hit_of_twin(store: TwinStore, twin: Twin, tracks: Sequence[int], frames: Collection[int] | None = None) -> Hit:
    """A hit whose objects are ``tracks`` of ``twin`` with every mask (on ``frames`` only, when given: a
    moment's): what the search page shows."""
    by_track = {t.track_id: t for t in twin.tracks}
    objects = []
    for tid in tracks:
        instances = sorted((i for i in twin.instances if i.track_id == tid and i.mask_path
                            and (frames is None or i.frame_index in frames)), key=lambda i: i.frame_index)
        masks = [FrameMask(frame=i.frame_index, path=str(mask_file(store, i))) for i in instances]
        objects.append(HitObject(track_id=tid, category=by_track[tid].category,
                                 attributes=by_track[tid].attributes, masks=masks))
    return Hit(rank=1, video_id=twin.video.video_id, path=twin.video.path, relevance=0.0, retrieval_score=0.0,
               objects=objects)


class OverlayCache:
    """Animated overlays (GIF) of a video's tracks, drawn once per twin version and track list."""

    def __init__(self, folder: Path | None = None) -> None:
        self._tmp = None if folder else tempfile.TemporaryDirectory(prefix="twinseek-web-")
        self.folder = Path(folder or self._tmp.name)  # type: ignore[union-attr]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def overlay(self, store: TwinStore, twin: Twin, tracks: Sequence[int],
                frames: Collection[int] | None = None) -> Path | None:
        """The GIF's path, drawn now if needed; ``None`` when the tracks have no masks (on ``frames``, when
        given: a moment's sampled frames)."""
        v = twin.video
        within = "" if frames is None else f"|{sorted(frames)}"
        key = hashlib.sha1(f"{v.video_id}|{v.content_hash}|{v.ingested_at}|{list(tracks)}{within}".encode()).hexdigest()
        path = self.folder / f"{key}.gif"
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if path.exists():
                return path
            hit = hit_of_twin(store, twin, tracks, frames)
            if not any(o.masks for o in hit.objects):
                return None
            with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
                # save_overlays only reads the hits: a result holding just this one needs no query record
                result = SearchResult.model_construct(hits=[hit])  # type: ignore[call-arg]
                written = result.save_overlays(tmp, OVERLAY_MAX_FRAMES)
                gif = next(p for p in written if p.suffix == ".gif")
                os.replace(gif, path)
            return path

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def mask_layer(store: TwinStore, twin: Twin, frame: int, tracks: Sequence[int]) -> bytes | None:
    """A transparent PNG with the masks of ``tracks`` on ``frame`` (each in its track's colour, outlined);
    ``None`` when none of them has a mask there."""
    position = {tid: k for k, tid in enumerate(tracks)}
    found = [(position[i.track_id], i) for i in twin.instances
             if i.frame_index == frame and i.track_id in position and i.mask_path]
    if not found:
        return None
    layer: np.ndarray | None = None
    for k, inst in sorted(found, key=lambda p: p[0]):
        mask = load_mask(mask_file(store, inst))
        if layer is None:
            layer = np.zeros((*mask.shape, 4), np.uint8)
        mask = resize_mask(mask, layer.shape)
        layer[mask] = (*colour(k), FILL_ALPHA)
        layer[outline(mask)] = (*colour(k), 255)
    buf = io.BytesIO()
    Image.fromarray(layer, "RGBA").save(buf, format="PNG", optimize=True)  # type: ignore[arg-type]
    return buf.getvalue()
