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
        yield from _rows(f"video {vid!r}", [_video_row(a, vid)], [_video_row(b, vid)])
        tracks = "select * from tracks where video_id = ? order by track_id"
        rows_a, rows_b = _query(a, tracks, vid), _query(b, tracks, vid)
        diff.tracks += len(rows_a)
        yield from _rows(f"{vid!r} tracks", rows_a, rows_b)
        relations = "select * from relations where video_id = ? order by id"
        rows_a, rows_b = _query(a, relations, vid, drop={"id"}), _query(b, relations, vid, drop={"id"})
        diff.relations += len(rows_a)
        yield from _rows(f"{vid!r} relations", rows_a, rows_b)
        instances = "select * from instances where video_id = ? order by track_id, frame_index"
        rows_a, rows_b = _query(a, instances, vid), _query(b, instances, vid)
        diff.instances += len(rows_a)
        paths = [(ra.pop("mask_path"), rb.pop("mask_path")) for ra, rb in zip(rows_a, rows_b)]
        yield from _rows(f"{vid!r} instances", rows_a, rows_b)
        if masks:
            for (pa, pb), row in zip(paths, rows_a):
                diff.masks += 1
                where = f"{vid!r} mask of track {row['track_id']} frame {row['frame_index']}"
                yield from _mask(where, a, pa, b, pb)


def _video_row(store: TwinStore, video_id: str) -> dict[str, Any]:
    row = _query(store, "select * from videos where video_id = ?", video_id)[0]
    return {k: v for k, v in row.items() if k not in IGNORED_VIDEO_COLUMNS}


def _query(store: TwinStore, sql: str, video_id: str, drop: frozenset[str] | set[str] = frozenset()) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in drop} for row in store.db.query(sql, [video_id])]


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
