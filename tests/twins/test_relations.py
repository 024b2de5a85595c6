from __future__ import annotations

from twinseek.twins.model import Instance
from twinseek.twins.relations import compute_relations, spatial_predicates, track_motion


def inst(track: int, frame: int, x: float, y: float, size: float = 0.05, depth: float | None = None) -> Instance:
    return Instance(video_id="v", track_id=track, frame_index=frame, category="thing", category_score=1.0,
                    mask_path="", bbox=(x - size, y - size, x + size, y + size), centroid=(x, y), depth=depth,
                    area=4 * size * size)


def preds(relations, subject, obj=None):  # type: ignore[no-untyped-def]
    return {r.predicate for r in relations if r.subject_track == subject and r.object_track == obj}


def test_left_right_above_below() -> None:
    assert spatial_predicates(inst(1, 0, 0.2, 0.5), inst(2, 0, 0.7, 0.5)) == ["left of"]
    assert spatial_predicates(inst(2, 0, 0.7, 0.5), inst(1, 0, 0.2, 0.5)) == ["right of"]
    assert spatial_predicates(inst(1, 0, 0.5, 0.1), inst(2, 0, 0.5, 0.8)) == ["above"]
    assert spatial_predicates(inst(1, 0, 0.5, 0.8), inst(2, 0, 0.5, 0.1)) == ["below"]


def test_near_overlapping_and_depth_only_when_known() -> None:
    assert "overlapping" in spatial_predicates(inst(1, 0, 0.50, 0.5), inst(2, 0, 0.52, 0.5))
    assert "near" in spatial_predicates(inst(1, 0, 0.40, 0.5), inst(2, 0, 0.52, 0.5))
    assert "near" not in spatial_predicates(inst(1, 0, 0.1, 0.5), inst(2, 0, 0.9, 0.5))
    assert not {"in front of", "behind"} & set(spatial_predicates(inst(1, 0, 0.5, 0.5), inst(2, 0, 0.52, 0.5)))
    close = spatial_predicates(inst(1, 0, 0.5, 0.5, depth=0.1), inst(2, 0, 0.52, 0.5, depth=0.8))
    assert "in front of" in close
    assert "behind" in spatial_predicates(inst(2, 0, 0.52, 0.5, depth=0.8), inst(1, 0, 0.5, 0.5, depth=0.1))


def test_runs_are_merged_into_spans() -> None:
    frames = [0, 5, 10, 15]
    instances = [inst(1, f, 0.2, 0.5) for f in frames] + [inst(2, f, 0.8 if f != 10 else 0.25, 0.5) for f in frames]
    left = [r for r in compute_relations(instances, frames) if r.predicate == "left of" and r.subject_track == 1]
    assert [(r.frame_start, r.frame_end) for r in left] == [(0, 5), (15, 15)]


def test_motion_directions_and_stationary() -> None:
    frames = [0, 10, 20, 30]
    right = [inst(1, f, 0.1 + 0.02 * f, 0.5) for f in frames]
    up = [inst(2, f, 0.5, 0.9 - 0.02 * f) for f in frames]
    still = [inst(3, f, 0.5, 0.5) for f in frames]
    speed, direction = track_motion(right, fps=10.0)
    assert direction == "right" and abs(speed - 0.2) < 1e-6  # 0.6 frame widths in 3 s
    rel = compute_relations(right + up + still, frames)
    assert "moving right" in preds(rel, 1) and "moving up" in preds(rel, 2) and "stationary" in preds(rel, 3)


def test_approaching_and_moving_away() -> None:
    frames = [0, 10, 20]
    a = [inst(1, f, 0.1 + 0.015 * f, 0.5) for f in frames]
    b = [inst(2, f, 0.9, 0.5) for f in frames]
    rel = compute_relations(a + b, frames)
    assert "approaching" in preds(rel, 1, 2) and "approaching" in preds(rel, 2, 1)
    away = compute_relations([inst(1, f, 0.4 - 0.015 * f, 0.5) for f in frames] + b, frames)
    assert "moving away from" in preds(away, 1, 2)


def test_entering_and_leaving_need_the_border() -> None:
    frames = [0, 10, 20, 30]
    enters = [inst(1, f, x, 0.5) for f, x in [(10, 0.03), (20, 0.3), (30, 0.6)]]
    leaves = [inst(2, f, x, 0.5) for f, x in [(0, 0.5), (10, 0.8), (20, 0.97)]]
    inside = [inst(3, f, 0.5, 0.3) for f in (10, 20)]
    rel = compute_relations(enters + leaves + inside, frames)
    assert "entering" in preds(rel, 1) and "leaving" in preds(rel, 2)
    assert not {"entering", "leaving"} & preds(rel, 3)
