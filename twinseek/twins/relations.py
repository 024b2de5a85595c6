"""Relations computed from twin geometry.

All thresholds are in normalised frame units (1.0 = frame width or height) and are module constants, so that
they are documented in one place and can be tuned:

Spatial, per frame, for every ordered pair of tracks present in that frame (runs of consecutive sampled
frames where a predicate holds are merged into one relation with a frame span):

- ``left of`` / ``right of``: centroids differ by more than ``SIDE_GAP`` horizontally and the horizontal
  offset dominates the vertical one.
- ``above`` / ``below``: the same vertically.
- ``near``: the gap between the two boxes is below ``NEAR_GAP`` (and they do not overlap).
- ``overlapping``: the boxes intersect by more than ``OVERLAP_MIN`` of the smaller box.
- ``in front of`` / ``behind``: only when both depths are known and differ by more than ``DEPTH_GAP``.

Temporal, over a track (image-plane motion: a panning camera moves everything):

- ``moving left/right/up/down``: net centroid displacement over the track exceeds ``MOVE_MIN``.
- ``stationary``: net displacement below ``STILL_MAX`` and path length below ``2 * MOVE_MIN``; a track
  that moves about without going anywhere is ``in place`` (no relation is written for it).
- ``entering`` / ``leaving``: the track starts (ends) after the first (before the last) sampled frame and
  its first (last) box touches the frame border within ``BORDER``.

Temporal, over a pair of tracks seen together in at least ``MIN_SHARED`` frames:

- ``approaching`` / ``moving away from``: the centroid distance shrinks (grows) by more than ``APPROACH_MIN``
  between the first and last shared frames.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from twinseek.twins.model import Instance, Relation

SIDE_GAP = 0.10
NEAR_GAP = 0.05
OVERLAP_MIN = 0.10
DEPTH_GAP = 0.10
MOVE_MIN = 0.10
STILL_MAX = 0.03
BORDER = 0.02
MIN_SHARED = 2
APPROACH_MIN = 0.08


def spatial_predicates(a: Instance, b: Instance) -> list[str]:
    """Predicates that hold for ``a <predicate> b`` in one frame."""
    preds: list[str] = []
    dx, dy = a.centroid[0] - b.centroid[0], a.centroid[1] - b.centroid[1]
    if abs(dx) > SIDE_GAP and abs(dx) >= abs(dy):
        preds.append("left of" if dx < 0 else "right of")
    if abs(dy) > SIDE_GAP and abs(dy) > abs(dx):
        preds.append("above" if dy < 0 else "below")
    overlap = _box_overlap_fraction(a.bbox, b.bbox)
    if overlap > OVERLAP_MIN:
        preds.append("overlapping")
    elif _box_gap(a.bbox, b.bbox) < NEAR_GAP:
        preds.append("near")
    if a.depth is not None and b.depth is not None and abs(a.depth - b.depth) > DEPTH_GAP:
        preds.append("in front of" if a.depth < b.depth else "behind")
    return preds


def spatial_relations(instances: Sequence[Instance], sampled_frames: Sequence[int]) -> list[Relation]:
    by_frame: dict[int, list[Instance]] = defaultdict(list)
    for inst in instances:
        by_frame[inst.frame_index].append(inst)
    position = {f: i for i, f in enumerate(sampled_frames)}
    # (subject, predicate, object) -> sampled positions where it holds
    holds: dict[tuple[int, str, int], list[int]] = defaultdict(list)
    for frame, insts in by_frame.items():
        for a in insts:
            for b in insts:
                if a.track_id != b.track_id:
                    for pred in spatial_predicates(a, b):
                        holds[(a.track_id, pred, b.track_id)].append(position[frame])
    if not instances:
        return []
    video_id = instances[0].video_id
    relations = []
    for (subj, pred, obj), positions in sorted(holds.items()):
        for start, end in _runs(sorted(positions)):
            relations.append(Relation(video_id=video_id, subject_track=subj, predicate=pred, object_track=obj,
                                      kind="spatial", frame_start=sampled_frames[start], frame_end=sampled_frames[end]))
    return relations


def track_motion(insts: Sequence[Instance], fps: float) -> tuple[float, str]:
    """Mean speed (frame widths per second) and dominant direction of one track's centroid."""
    insts = sorted(insts, key=lambda i: i.frame_index)
    if len(insts) < 2:
        return 0.0, "stationary"
    path = sum(_dist(a.centroid, b.centroid) for a, b in zip(insts, insts[1:]))
    seconds = max((insts[-1].frame_index - insts[0].frame_index) / fps, 1e-6)
    dx = insts[-1].centroid[0] - insts[0].centroid[0]
    dy = insts[-1].centroid[1] - insts[0].centroid[1]
    net = math.hypot(dx, dy)
    if net < MOVE_MIN:
        return path / seconds, "stationary" if net < STILL_MAX and path < 2 * MOVE_MIN else "in place"
    if abs(dx) >= abs(dy):
        return path / seconds, "right" if dx > 0 else "left"
    return path / seconds, "down" if dy > 0 else "up"


def temporal_relations(instances: Sequence[Instance], sampled_frames: Sequence[int]) -> list[Relation]:
    if not instances:
        return []
    video_id = instances[0].video_id
    by_track: dict[int, list[Instance]] = defaultdict(list)
    for inst in instances:
        by_track[inst.track_id].append(inst)
    for insts in by_track.values():
        insts.sort(key=lambda i: i.frame_index)
    relations = []

    def add(subj: int, pred: str, obj: int | None, start: int, end: int) -> None:
        relations.append(Relation(video_id=video_id, subject_track=subj, predicate=pred, object_track=obj,
                                  kind="temporal", frame_start=start, frame_end=end))

    first, last = sampled_frames[0], sampled_frames[-1]
    for tid, insts in sorted(by_track.items()):
        start, end = insts[0].frame_index, insts[-1].frame_index
        _, direction = track_motion(insts, fps=1.0)
        if direction == "stationary":
            add(tid, "stationary", None, start, end)
        elif direction != "in place":
            add(tid, f"moving {direction}", None, start, end)
        if start > first and _touches_border(insts[0].bbox):
            add(tid, "entering", None, start, start)
        if end < last and _touches_border(insts[-1].bbox):
            add(tid, "leaving", None, end, end)
    for a in sorted(by_track):
        for b in sorted(by_track):
            if a == b:
                continue
            shared = sorted(set(i.frame_index for i in by_track[a]) & set(i.frame_index for i in by_track[b]))
            if len(shared) < MIN_SHARED:
                continue
            at = {i.frame_index: i.centroid for i in by_track[a]}
            bt = {i.frame_index: i.centroid for i in by_track[b]}
            change = _dist(at[shared[-1]], bt[shared[-1]]) - _dist(at[shared[0]], bt[shared[0]])
            if change < -APPROACH_MIN:
                add(a, "approaching", b, shared[0], shared[-1])
            elif change > APPROACH_MIN:
                add(a, "moving away from", b, shared[0], shared[-1])
    return relations


def compute_relations(instances: Sequence[Instance], sampled_frames: Sequence[int]) -> list[Relation]:
    return spatial_relations(instances, sampled_frames) + temporal_relations(instances, sampled_frames)


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for p in positions:
        if runs and p == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], p)
        else:
            runs.append((p, p))
    return runs


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _box_overlap_fraction(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


def _box_gap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    gx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    gy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return math.hypot(gx, gy)


def _touches_border(bbox: tuple[float, ...]) -> bool:
    return bbox[0] <= BORDER or bbox[1] <= BORDER or bbox[2] >= 1 - BORDER or bbox[3] >= 1 - BORDER
