"""Embedded segmenter/tracker: motion proposals + seed masks, followed by a Hungarian multi-object tracker.

Tracking rules (positions are indices into the sampled frames):

- association: Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on ``1 - IoU`` between each
  track's predicted mask and each proposal; a pair needs IoU >= ``MIN_MATCH_IOU``. The prediction is the
  last mask warped by optical flow when the caller gives flow, else the last mask shifted by a constant
  velocity Kalman filter on box centre and size.
- birth: every unmatched proposal starts a track.
- death: a track missed more than ``MAX_MISSES`` consecutive frames ends; frames it coasted through keep the
  predicted mask only when the track is matched again later (gap filling).
- pruning: tracks matched in fewer than ``MIN_HITS`` frames (or ``MIN_HIT_FRACTION`` of the clip) are
  dropped, and at most ``MAX_TRACKS`` tracks (highest accumulated score) are returned.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from twinseek.media.masks import mask_iou
from twinseek.twins.adapters.base import Detection, SpecialistBase, TrackedObject
from twinseek.twins.adapters.embedded.proposals import (
    Proposal,
    attach_boxes,
    box_mask,
    merge_seeds,
    motion_maps,
    moving_mask,
    pixel_grid,
    refine_grabcut,
    saliency_map,
    to_work,
    work_scale,
)
from twinseek.twins.adapters.embedded.proposals import components as mask_components

log = logging.getLogger(__name__)

MIN_MATCH_IOU = 0.15
MAX_MISSES = 2
MIN_HITS = 2
MIN_HIT_FRACTION = 0.25
MAX_TRACKS = 8
PROXIMITY_GATE = 0.25  # fallback match: centres closer than this fraction of the frame diagonal ...
PROXIMITY_WEIGHT = 0.5  # ... scores at most this similarity (below any real overlap), scaled by size ratio
SAME_LABEL_GATE = 0.6  # a seed with the same label as the track (person -> person) may jump this far
KEYFRAME_COVERED = 0.5  # a detector box overlapping a proposal this much (over the smaller) only labels it
CARRIED_COVERED = 0.1  # ... and a box carried by flow between keyframes, this much

Warp = Callable[[np.ndarray, int, int], np.ndarray]
"""``warp(mask, from_pos, to_pos)``: the mask moved from one sampled frame to another."""


class BoxKalman:
    """Constant-velocity Kalman filter on (cx, cy, w, h); one step = one sampled frame."""

    def __init__(self, box: np.ndarray, q: float = 1e-2, r: float = 1e-1) -> None:
        self.x = np.concatenate([box, np.zeros(4)]).astype(np.float64)
        self.p = np.diag([10.0] * 4 + [100.0] * 4)
        self.f = np.eye(8)
        self.f[:4, 4:] = np.eye(4)
        self.h = np.eye(4, 8)
        scale = max(float(box[2]), float(box[3]), 1.0)
        self.q = np.eye(8) * q * scale
        self.r = np.eye(4) * r * scale

    def predict(self) -> np.ndarray:
        self.x = self.f @ self.x
        self.p = self.f @ self.p @ self.f.T + self.q
        return self.x[:4].copy()

    def update(self, box: np.ndarray) -> None:
        s = self.h @ self.p @ self.h.T + self.r
        k = self.p @ self.h.T @ np.linalg.inv(s)
        self.x = self.x + k @ (box - self.h @ self.x)
        self.p = (np.eye(8) - k @ self.h) @ self.p


def cxcywh(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dtype=np.float64)


def shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    return cv2.warpAffine(mask.astype(np.uint8), m, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_NEAREST) > 0


@dataclass
class _Track:
    track_id: int
    kalman: BoxKalman
    last_mask: np.ndarray
    last_pos: int
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    proposals: dict[int, Proposal] = field(default_factory=dict)
    coasted: dict[int, np.ndarray] = field(default_factory=dict)
    misses: int = 0
    score: float = 0.0
    alive: bool = True

    @property
    def hits(self) -> int:
        return len(self.proposals)


class MultiObjectTracker:
    """Hungarian tracker over per-frame proposals (see module docstring for the rules)."""

    def __init__(
        self,
        min_match_iou: float = MIN_MATCH_IOU,
        max_misses: int = MAX_MISSES,
        min_hits: int = MIN_HITS,
        min_hit_fraction: float = MIN_HIT_FRACTION,
        max_tracks: int = MAX_TRACKS,
    ) -> None:
        self.min_match_iou = min_match_iou
        self.max_misses = max_misses
        self.min_hits = min_hits
        self.min_hit_fraction = min_hit_fraction
        self.max_tracks = max_tracks

    def run(self, per_frame: Sequence[Sequence[Proposal]], warp: Warp | None = None) -> list[_Track]:
        tracks: list[_Track] = []
        next_id = 1
        for pos, props in enumerate(per_frame):
            live = [t for t in tracks if t.alive]
            preds = [self._predict(t, pos, warp) for t in live]
            boxes = [t.kalman.x[:4].copy() for t in live]
            labels = [t.proposals[t.last_pos].label if t.last_pos in t.proposals else None for t in live]
            matches, unmatched = self._associate(preds, boxes, labels, props)
            for ti, pi in matches:
                self._hit(live[ti], pos, props[pi])
            matched_tracks = {ti for ti, _ in matches}
            for ti, t in enumerate(live):
                if ti not in matched_tracks:
                    self._miss(t, pos, preds[ti])
            for pi in unmatched:
                tracks.append(self._birth(next_id, pos, props[pi]))
                next_id += 1
        return self._prune(tracks, len(per_frame))

    def _predict(self, t: _Track, pos: int, warp: Warp | None) -> np.ndarray:
        box = t.kalman.predict()
        if warp is not None:
            return warp(t.last_mask, t.last_pos, pos)
        cur = cxcywh(t.last_mask)
        return shift_mask(t.last_mask, box[0] - cur[0], box[1] - cur[1])

    def _associate(
        self,
        preds: list[np.ndarray],
        boxes: list[np.ndarray],
        labels: list[str | None],
        props: Sequence[Proposal],
    ) -> tuple[list[tuple[int, int]], list[int]]:
        if not preds or not props:
            return [], list(range(len(props)))
        pboxes = [cxcywh(p.mask) for p in props]
        diag = float(np.hypot(*props[0].mask.shape))
        sim = np.array(
            [
                [_similarity(pm, kb, p.mask, pb, diag, lab is not None and lab == p.label) for p, pb in zip(props, pboxes)]
                for pm, kb, lab in zip(preds, boxes, labels)
            ]
        )
        rows, cols = linear_sum_assignment(1.0 - sim)
        matches = [(r, c) for r, c in zip(rows, cols) if sim[r, c] >= self.min_match_iou]
        used = {c for _, c in matches}
        return matches, [i for i in range(len(props)) if i not in used]

    def _hit(self, t: _Track, pos: int, prop: Proposal) -> None:
        t.masks.update(t.coasted)  # the object came back: the coasted predictions fill the gap
        t.coasted.clear()
        t.masks[pos] = prop.mask
        t.proposals[pos] = prop
        t.kalman.update(cxcywh(prop.mask))
        t.last_mask, t.last_pos, t.misses = prop.mask, pos, 0
        t.score += prop.score

    def _miss(self, t: _Track, pos: int, pred: np.ndarray) -> None:
        t.misses += 1
        if t.misses > self.max_misses or not pred.any():
            t.alive = False
            return
        t.coasted[pos] = pred

    def _birth(self, track_id: int, pos: int, prop: Proposal) -> _Track:
        t = _Track(track_id, BoxKalman(cxcywh(prop.mask)), prop.mask, pos)
        t.masks[pos] = prop.mask
        t.proposals[pos] = prop
        t.score = prop.score
        return t

    def _prune(self, tracks: list[_Track], n_frames: int) -> list[_Track]:
        need = max(self.min_hits, int(np.ceil(self.min_hit_fraction * n_frames))) if n_frames > 1 else 1
        kept = [t for t in tracks if t.hits >= min(need, n_frames)]
        kept.sort(key=lambda t: -t.score)
        kept = kept[: self.max_tracks]
        for new_id, t in enumerate(sorted(kept, key=lambda t: min(t.masks)), start=1):
            t.track_id = new_id
        return sorted(kept, key=lambda t: t.track_id)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (cx, cy, w, h) boxes."""
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw, ih = max(0.0, min(ax2, bx2) - max(ax1, bx1)), max(0.0, min(ay2, by2) - max(ay1, by1))
    union = a[2] * a[3] + b[2] * b[3] - iw * ih
    return 0.0 if union <= 0 else float(iw * ih / union)


def _similarity(
    pred: np.ndarray, kbox: np.ndarray, mask: np.ndarray, box: np.ndarray, diag: float, same_label: bool = False
) -> float:
    """Best of: predicted-mask IoU, Kalman-box IoU, and a capped proximity score for fast movers.

    Flow and the Kalman filter both lose objects that jump far between sampled frames; the proximity term
    keeps a similar-sized object nearby in the same track without ever beating a real overlap.
    """
    kbox = np.concatenate([kbox[:2], np.maximum(kbox[2:4], 1.0)])  # the filter may overshoot to w, h <= 0
    sim = max(mask_iou(pred, mask, empty=0.0), box_iou(kbox, box))
    dist = float(np.hypot(kbox[0] - box[0], kbox[1] - box[1])) / diag
    gate = SAME_LABEL_GATE if same_label else PROXIMITY_GATE
    if dist < gate:
        ratio = min(kbox[2] * kbox[3], box[2] * box[3]) / max(kbox[2] * kbox[3], box[2] * box[3], 1e-6)
        sim = max(sim, PROXIMITY_WEIGHT * (1 - dist / gate) * float(np.sqrt(ratio)))
    return sim


def _flow_warp(backward: Sequence[np.ndarray | None]) -> Warp:
    """Warp a mask forward frame by frame with the backward flow of each next frame (remap = no holes)."""

    def warp(mask: np.ndarray, src: int, dst: int) -> np.ndarray:
        m = mask.astype(np.float32)
        for pos in range(src + 1, dst + 1):
            flow = backward[pos]
            if flow is None:
                continue
            xy = pixel_grid(*flow.shape[:2])
            m = cv2.remap(m, xy[..., 0] + flow[..., 0], xy[..., 1] + flow[..., 1], cv2.INTER_LINEAR, borderValue=0)
        return m > 0.5

    return warp


def _seed_proposals(dets: Sequence[Detection], scale: float, size: tuple[int, int]) -> list[Proposal]:
    out = []
    for d in dets:
        if d.mask is None or not d.mask.any():
            continue
        small = cv2.resize(d.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0 if scale < 1 else d.mask
        if small.any():
            out.append(Proposal(mask=small, score=float(d.score), label=d.label, source=d.source or "seed"))
            out[-1].full_mask = d.mask  # type: ignore[attr-defined]
    return out


def _box_proposal(frame: np.ndarray, det: Detection, scale: float) -> Proposal | None:
    """A box-only detection (e.g. COCO) as a proposal: GrabCut inside the box at working size."""
    box = tuple(float(v) * scale for v in det.box)
    mask = box_mask(frame, box)  # type: ignore[arg-type]
    if mask is None:
        return None
    return Proposal(mask=mask, score=float(det.score), label=det.label, source=det.source or "detector",
                    label_score=float(det.score), label_source=det.source or "detector")


def _carry(prop: Proposal, warp: Warp, pos: int) -> Proposal:
    """A box seed moved from the previous sampled frame to ``pos`` by optical flow."""
    return Proposal(mask=warp(prop.mask, pos - 1, pos), score=prop.score, label=prop.label, source=prop.source,
                    label_score=prop.label_score, label_source=prop.label_source)


def _upsample(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask.astype(bool)
    up = cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return up > 0.5


class EmbeddedSegmenter(SpecialistBase):
    """Class-agnostic segmenter + tracker on CPU: camera-compensated motion, saliency, seeds, Hungarian tracking.

    ``use_saliency`` blends spectral-residual saliency into the motion score; ``refine`` snaps motion masks
    to colour edges with GrabCut; ``max_tracks`` caps the output.
    """

    role = "segmenter"
    tier = "embedded"
    model = "dis-flow-homography+hungarian-kalman"

    def __init__(self, use_saliency: bool = True, refine: bool = True, max_tracks: int = MAX_TRACKS) -> None:
        self.use_saliency = use_saliency
        self.refine = refine
        self.tracker = MultiObjectTracker(max_tracks=max_tracks)

    def segment(self, frames: Sequence[np.ndarray], seeds: Mapping[int, Sequence[Detection]]) -> list[TrackedObject]:
        if not frames:
            return []
        # GrabCut's colour models start from OpenCV's global RNG: seed it so that a video's masks do not depend
        # on what was segmented before it in the process (J on horsejump-high moved by 0.12 without this)
        cv2.setRNGSeed(0)
        shape = frames[0].shape[:2]
        scale = work_scale(shape)
        small = [to_work(f, scale) for f in frames]
        size = (small[0].shape[1], small[0].shape[0])
        per_frame, backward = self._proposals(small, seeds, scale, size)
        tracks = self.tracker.run(per_frame, _flow_warp(backward))
        return [self._to_tracked(t, shape) for t in tracks]

    def _proposals(
        self, small: Sequence[np.ndarray], seeds: Mapping[int, Sequence[Detection]], scale: float, size: tuple[int, int]
    ) -> tuple[list[list[Proposal]], list[np.ndarray | None]]:
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in small]
        residuals, backward = motion_maps(grey)
        warp = _flow_warp(backward)
        per_frame = []
        carried: list[Proposal] = []  # box seeds of the last keyframe, moved along by flow
        for pos, (frame, res) in enumerate(zip(small, residuals)):
            sal = saliency_map(frame) if self.use_saliency else None
            mask, score = moving_mask(res, sal)
            props = mask_components(mask, score)
            if self.refine:
                for p in props:
                    p.mask = refine_grabcut(frame, p.mask)
            dets = seeds.get(pos, ())
            frame_props = merge_seeds(props, _seed_proposals([d for d in dets if d.mask is not None], scale, size))
            boxes = [d for d in dets if d.mask is None]
            if boxes:  # a detector keyframe: fresh boxes replace the carried ones
                made = [_box_proposal(frame, d, scale) for d in boxes]
                box_props = [p for p in made if p is not None]
            else:
                box_props = [_carry(p, warp, pos) for p in carried]
            # a carried box becomes a proposal of its own only over empty ground (a static object nothing else
            # found): where it touches a proposal, a second mask would compete with it for the same track
            carried = attach_boxes(frame_props, [p for p in box_props if p.mask.any()],
                                   covered_at=KEYFRAME_COVERED if boxes else CARRIED_COVERED)
            per_frame.append(frame_props)
        return per_frame, backward

    @staticmethod
    def _to_tracked(t: _Track, shape: tuple[int, int]) -> TrackedObject:
        masks = {}
        for pos, m in sorted(t.masks.items()):
            prop = t.proposals.get(pos)
            full = getattr(prop, "full_mask", None) if prop is not None else None
            masks[pos] = full.astype(bool) if full is not None else _upsample(m, shape)
        props = list(t.proposals.values())
        labels = Counter(p.label for p in props if p.label)
        label = labels.most_common(1)[0][0] if labels else None
        labelled = [p for p in props if label and p.label == label]
        label_score = float(np.mean([p.score if p.label_score is None else p.label_score for p in labelled])) if label else 0.0
        label_source = Counter(p.label_source or p.source for p in labelled).most_common(1)[0][0] if labelled else ""
        hints = Counter(p.hint for p in props if p.hint)
        if hints:  # another model's label for the same pixels names the track when it is the surer
            hint = hints.most_common(1)[0][0]
            hinted = [p for p in props if p.hint == hint]
            hint_score = float(np.mean([p.hint_score for p in hinted]))
            if hint_score > label_score:
                label, label_score = hint, hint_score
                label_source = Counter(p.hint_source for p in hinted).most_common(1)[0][0]
        sources = Counter(p.source for p in props)
        return TrackedObject(
            track_id=t.track_id, masks=masks, label=label, label_score=label_score, source=sources.most_common(1)[0][0],
            label_source=label_source,
        )
