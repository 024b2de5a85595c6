"""Coarse actions of a person track, by rules over its pose keypoints and its boxes (no trained classifier).

Input: BlazePose keypoints per sampled frame (:mod:`twinseek.twins.adapters.embedded.pose`, frame pixels) and the
boxes of the person and of the other tracks. Lengths are in *torso lengths* (mid-shoulder to mid-hip, the median
over the track), so the rules hold at any distance from the camera; speeds in torso lengths per second.

Labels, each with a confidence in [0, 1] (a product of ramps over the features below):

- ``standing``: legs and hips straight, torso upright, little leg swing and little motion;
- ``walking``: torso upright, the feet alternate (the signed horizontal gap between the ankles swings), knees mostly
  straight, not fast;
- ``running``: knees bent sharply on many frames, with a large leg swing or fast motion;
- ``sitting``: hip and knee angles near a right angle with an upright torso, hardly moving;
- ``jumping``: hips *and* ankles rise together and come down again (a crouch that stands up raises only the hips);
- ``riding``: the person's box lies on a ridden thing's track (bicycle, horse, motorcycle, skateboard...) on most
  shared frames, head above its top and feet above its bottom; it needs no pose, and it silences walking and
  running (a cyclist's legs look like a runner's).

Only the best of standing, walking, running and sitting is kept (one posture at a time). Left out, because rules
over 33 body keypoints cannot tell them on the sampled frames: ``dancing`` (no rule separates it from other limb
motion, and no dev clip shows it), ``swimming`` (BlazePose rarely finds a half-submerged body) and ``talking``
(BlazePose gives the mouth's corners only, not its opening; speech is another stage's).

The centroid speed is measured in the frame: a camera that pans with a runner hides the runner's speed, so the
gait rules lean on the legs, not on the speed alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from twinseek.twins.adapters.base import PoseEstimator
from twinseek.twins.model import Instance, Track

Box = tuple[float, float, float, float]  # normalised x1, y1, x2, y2

VERSION = "actions-1"
NOSE, L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 0, 11, 12, 23, 24
L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 25, 26, 27, 28
VISIBLE = 0.5  # keypoint visibility a rule needs
MIN_POSES = 3  # frames with a body that the pose rules need
RIDDEN = ("bicycle", "bike", "tricycle", "unicycle", "horse", "sorrel", "pony", "motorcycle", "moped",
          "motor scooter", "scooter", "skateboard", "snowmobile", "camel", "elephant")
RIDE_SHARE = 0.5  # shared frames on which the person's box lies on the ridden thing's
RIDE_OVERLAP = 0.3  # share of the person's box inside the ridden thing's box (grown by half its height upwards)
RIDE_FEET = 0.05  # the person's box ends at least this share of the ridden thing's height above its bottom
POSTURES = ("standing", "walking", "running", "sitting")


def ramp(x: float, lo: float, hi: float) -> float:
    """0 below ``lo``, 1 above ``hi``, linear between."""
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """The angle at ``b`` in degrees (180 = straight)."""
    u, v = a - b, c - b
    cos = float(np.dot(u, v) / max(1e-6, np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@dataclass(frozen=True)
class PoseFeatures:
    """What the rules read from one track's poses."""

    frames: int  # frames with a body
    upright: float  # share of them with the torso within 30 degrees of vertical
    straight: float  # share with the most bent knee over 150 degrees and the hips over 150
    bent: float  # share with the most bent knee under 120 degrees
    seated: float  # share with hip and knee angles in 50..130 degrees and the torso upright
    swing: float  # std of the signed horizontal gap between the ankles, in torso lengths
    speed: float  # median hip speed, torso lengths per second
    rise: float  # how far hips and ankles together rose and came down again, torso lengths


def pose_features(poses: Mapping[int, np.ndarray], fps: float) -> PoseFeatures | None:
    """Features of a track's keypoints (``frame index -> (33, 3)`` in pixels), or ``None`` under ``MIN_POSES``."""
    rows = []
    for frame in sorted(poses):
        k = poses[frame]
        if min(k[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP], 2]) < VISIBLE:
            continue
        xy = k[:, :2].astype(np.float64)
        shoulder, hip = xy[[L_SHOULDER, R_SHOULDER]].mean(0), xy[[L_HIP, R_HIP]].mean(0)
        torso = float(np.linalg.norm(shoulder - hip))
        if torso < 1.0:
            continue
        tilt = float(np.degrees(np.arctan2(abs(shoulder[0] - hip[0]), max(1e-6, hip[1] - shoulder[1]))))
        if hip[1] <= shoulder[1]:
            tilt = 180.0 - tilt  # upside down
        knees = [_angle(xy[h], xy[kn], xy[a]) for h, kn, a in ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE))
                 if min(k[kn, 2], k[a, 2]) >= VISIBLE]
        hips = [_angle(xy[s], xy[h], xy[kn]) for s, h, kn in ((L_SHOULDER, L_HIP, L_KNEE), (R_SHOULDER, R_HIP, R_KNEE))
                if k[kn, 2] >= VISIBLE]
        ankles_seen = min(k[L_ANKLE, 2], k[R_ANKLE, 2]) >= VISIBLE
        rows.append((frame, torso, tilt, min(knees) if knees else np.nan, min(hips) if hips else np.nan,
                     xy[L_ANKLE, 0] - xy[R_ANKLE, 0] if ankles_seen else np.nan, hip[0], hip[1],
                     xy[[L_ANKLE, R_ANKLE], 1].mean() if ankles_seen else np.nan))
    if len(rows) < MIN_POSES:
        return None
    a = np.array(rows, dtype=np.float64)
    frame, torso, tilt, knee, hipang, gap, hx, hy, ay = a.T
    scale = float(np.median(torso))
    upright = tilt < 30
    with np.errstate(invalid="ignore"):
        straight = (knee > 150) & (hipang > 150)
        bent = knee < 120
        seated = (knee > 50) & (knee < 130) & (hipang > 50) & (hipang < 130) & (tilt < 35)
    gaps = gap[~np.isnan(gap)] / scale
    dt = np.diff(frame) / max(fps, 1e-6)
    speed = float(np.median(np.hypot(np.diff(hx), np.diff(hy)) / scale / np.maximum(dt, 1e-6)))
    return PoseFeatures(
        frames=len(a), upright=float(upright.mean()), straight=float(straight.mean()), bent=float(bent.mean()),
        seated=float(seated.mean()), swing=float(gaps.std()) if len(gaps) >= MIN_POSES else 0.0, speed=speed,
        rise=min(_rise(hy / scale), _rise(ay[~np.isnan(ay)] / scale)),
    )


def _rise(y: np.ndarray) -> float:
    """The deepest dip of ``y`` (image y grows downwards: a dip is a rise) below what comes before and after it."""
    if len(y) < 3:
        return 0.0
    return max(0.0, float(max(min(y[:i].max() - y[i], y[i + 1:].max() - y[i]) for i in range(1, len(y) - 1))))


def posture_scores(f: PoseFeatures) -> dict[str, float]:
    """Confidence of each posture and of jumping from a track's pose features."""
    still = (1 - ramp(f.speed, 0.5, 1.5)) * (1 - ramp(f.swing, 0.15, 0.4))
    return {
        "standing": f.straight * f.upright * still,
        "walking": f.upright * ramp(f.swing, 0.1, 0.3) * (1 - ramp(f.bent, 0.25, 0.6)) * (1 - ramp(f.speed, 4, 7)),
        "running": ramp(f.bent, 0.2, 0.5) * max(ramp(f.swing, 0.2, 0.5), ramp(f.speed, 2, 5)) * (1 - f.seated),
        "sitting": f.seated * (1 - ramp(f.speed, 1, 3)),
        "jumping": ramp(f.rise, 0.4, 1.2),
    }


def _inside(a: Box, b: Box) -> float:
    """Share of box ``a`` inside box ``b`` grown upwards by half its height (a rider sits above the saddle)."""
    bx1, by1, bx2, by2 = b
    by1 -= (by2 - by1) / 2
    w = max(0.0, min(a[2], bx2) - max(a[0], bx1))
    h = max(0.0, min(a[3], by2) - max(a[1], by1))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return w * h / area if area > 0 else 0.0


def _on_top(person: Box, other: Box) -> bool:
    """The person's centre above the thing's, the head above its top and the feet above its bottom (a person behind a
    thing, both cut by the frame's edge, is not on it)."""
    height = other[3] - other[1]
    return ((person[1] + person[3]) / 2 <= (other[1] + other[3]) / 2 and person[1] < other[1]
            and person[3] <= other[3] - RIDE_FEET * height)


def is_ridden(category: str, group: str | None = None) -> bool:
    words = f"{category} {group or ''}".lower()
    return any(r in words for r in RIDDEN)


def riding_score(person: Mapping[int, Box], ridden: Sequence[Mapping[int, Box]]) -> float:
    """Best over the ridden things' tracks: the share of shared frames with the person on it (box inside, centre
    above), times that share's mean overlap; 0 when they share under three frames."""
    best = 0.0
    for other in ridden:
        shared = sorted(set(person) & set(other))
        if len(shared) < MIN_POSES:
            continue
        on = [_inside(person[f], other[f]) for f in shared if _on_top(person[f], other[f])]
        share = sum(1 for v in on if v >= RIDE_OVERLAP) / len(shared)
        if share >= RIDE_SHARE:
            best = max(best, share * float(np.mean([v for v in on if v >= RIDE_OVERLAP])))
    return best


def track_actions(
    poses: Mapping[int, np.ndarray], fps: float, person: Mapping[int, Box] | None = None,
    ridden: Sequence[Mapping[int, Box]] = (), floor: float = 0.05,
) -> list[tuple[str, float]]:
    """A person track's actions, most confident first, each over ``floor`` (rounded to 3 decimals)."""
    scores: dict[str, float] = {}
    features = pose_features(poses, fps)
    if features is not None:
        raw = posture_scores(features)
        best = max(POSTURES, key=lambda p: raw[p])
        scores = {best: raw[best], "jumping": raw["jumping"]}
    riding = riding_score(person or {}, ridden)
    if riding > 0:
        scores = {k: v for k, v in scores.items() if k not in ("walking", "running")}
        scores["riding"] = riding
    out = [(label, round(score, 3)) for label, score in scores.items() if score >= floor]
    return sorted(out, key=lambda kv: (-kv[1], kv[0]))


def is_person(track: Track) -> bool:
    return "person" in (track.category, track.category_group)


def track_keypoints(
    boxes: Mapping[int, Box], frames: Sequence[np.ndarray], indices: Sequence[int], pose: PoseEstimator
) -> dict[int, np.ndarray]:
    """Keypoints of one person track per sampled frame (``frame index -> (K, 3)``, frame pixels), each from the crop
    of its box in that frame; frames where the model finds no body are left out."""
    position = {frame: pos for pos, frame in enumerate(indices)}
    out = {}
    for frame, (x1, y1, x2, y2) in sorted(boxes.items()):
        image = frames[position[frame]]
        h, w = image.shape[:2]
        points = pose.keypoints(image, (x1 * w, y1 * h, x2 * w, y2 * h))
        if points is not None:
            out[frame] = points
    return out


def add_actions(
    tracks: Sequence[Track], instances: Sequence[Instance], frames: Sequence[np.ndarray], indices: Sequence[int],
    fps: float, pose: PoseEstimator,
) -> None:
    """Set ``actions`` on each person track from its keypoints and the ridden things' tracks (others keep none)."""
    boxes: dict[int, dict[int, Box]] = defaultdict(dict)
    for inst in instances:
        boxes[inst.track_id][inst.frame_index] = inst.bbox
    ridden = [boxes[t.track_id] for t in tracks if is_ridden(t.category, t.category_group)]
    for track in tracks:
        if is_person(track):
            poses = track_keypoints(boxes[track.track_id], frames, indices, pose)
            track.actions = track_actions(poses, fps, boxes[track.track_id], ridden)
