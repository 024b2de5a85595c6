"""Row-by-row comparison of two twin stores (``twinseek store diff A B``).

Two ingests of the same files should give the same twins whichever way they ran (serially, in a process pool,
on Ray actors). What may differ is only bookkeeping: when a video was ingested, the name of its mask folder and
the row ids of its relations (they follow the commit order). Everything else is compared: video rows, tracks,
instances, relations in their order within each video, and the pixels of every mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field, computed_field

from twinseek.media.masks import load_mask
from twinseek.twins.store import TwinStore

IGNORED_VIDEO_COLUMNS = frozenset({"ingested_at", "mask_dir"})


class StoreDiff(BaseModel):
    """What :func:`diff_stores` found. ``identical`` when ``differences`` is empty."""

    a: str
    b: str
    videos: int = 0
    tracks: int = 0
    instances: int = 0
    relations: int = 0
    masks: int = Field(0, description="Mask files compared pixel by pixel.")
    differences: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def identical(self) -> bool:
        return not self.differences


def diff_stores(a: TwinStore, b: TwinStore, masks: bool = True, limit: int = 50) -> StoreDiff:
    """Compare two stores row by row (and mask by mask unless ``masks`` is false); at most ``limit``
    differences are listed."""
    diff = StoreDiff(a=str(a.root), b=str(b.root))
    found = _differences(a, b, masks, diff)
    for line in found:
        diff.differences.append(line)
        if len(diff.differences) >= limit:
            diff.differences.append("... (more differences not listed)")
            break
    return diff


def _differences(a: TwinStore, b: TwinStore, masks: bool, diff: StoreDiff) -> Iterator[str]:
    ids_a, ids_b = set(a.video_ids()), set(b.video_ids())
    for vid in sorted(ids_a - ids_b):
        yield f"video {vid!r} only in {a.root}"
    for vid in sorted(ids_b - ids_a):
        yield f"video {vid!r} only in {b.root}"
    for vid in sorted(ids_a & ids_b):
        diff.videos += 1
        rows_a, rows_b = a.stored_rows(vid), b.stored_rows(vid)
        yield from _rows(f"video {vid!r}", [_without(rows_a.video, IGNORED_VIDEO_COLUMNS)],
                         [_without(rows_b.video, IGNORED_VIDEO_COLUMNS)])
        diff.tracks += len(rows_a.tracks)
        yield from _rows(f"{vid!r} tracks", rows_a.tracks, rows_b.tracks)
        relations_a = [_without(r, {"id"}) for r in rows_a.relations]
        relations_b = [_without(r, {"id"}) for r in rows_b.relations]
        diff.relations += len(relations_a)
        yield from _rows(f"{vid!r} relations", relations_a, relations_b)
        yield from _rows(f"{vid!r} speech status", [r for r in [rows_a.speech_status] if r],
                         [r for r in [rows_b.speech_status] if r])
        yield from _rows(f"{vid!r} speech", rows_a.speech, rows_b.speech)
        yield from _rows(f"{vid!r} shots", rows_a.shots, rows_b.shots)
        instances_a = [_without(r, {"mask_path"}) for r in rows_a.instances]
        instances_b = [_without(r, {"mask_path"}) for r in rows_b.instances]
        diff.instances += len(instances_a)
        paths = [(ra["mask_path"], rb["mask_path"]) for ra, rb in zip(rows_a.instances, rows_b.instances)]
        yield from _rows(f"{vid!r} instances", instances_a, instances_b)
        if masks:
            for (pa, pb), row in zip(paths, instances_a):
                diff.masks += 1
                where = f"{vid!r} mask of track {row['track_id']} frame {row['frame_index']}"
                yield from _mask(where, a, pa, b, pb)


def _without(row: dict[str, Any], drop: frozenset[str] | set[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in drop}


def _rows(what: str, rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]) -> Iterator[str]:
    if len(rows_a) != len(rows_b):
        yield f"{what}: {len(rows_a)} rows vs {len(rows_b)}"
        return
    for n, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        changed = sorted(k for k in ra.keys() | rb.keys() if ra.get(k) != rb.get(k))
        if changed:
            key = ra.get("track_id", n)
            shown = ", ".join(f"{k}: {ra.get(k)!r} vs {rb.get(k)!r}" for k in changed[:4])
            yield f"{what} (row {n}, track {key}): {shown}"


def _mask(where: str, a: TwinStore, path_a: str, b: TwinStore, path_b: str) -> Iterator[str]:
    try:
        ma, mb = load_mask(a.root / path_a), load_mask(b.root / path_b)
    except OSError as exc:
        yield f"{where}: unreadable ({exc})"
        return
    if ma.shape != mb.shape:
        yield f"{where}: shape {ma.shape} vs {mb.shape}"
    elif (ma != mb).any():
        yield f"{where}: {int((ma != mb).sum())} pixels differ"
