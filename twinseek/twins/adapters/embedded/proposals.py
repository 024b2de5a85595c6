"""Class-agnostic object proposals from motion relative to the camera, OpenCV/numpy only.

Per sampled frame: DIS optical flow to the neighbouring sampled frames (at a working size of
``WORK_SIDE`` px), a homography fitted to the flow with RANSAC models the camera (pan, zoom, rotation,
distant background), and whatever moves differently from that model is an object candidate. The residual
from the next and the previous frame is combined with a per-pixel minimum, which removes the "ghosts"
that one-sided flow leaves where the background is uncovered. The motion map is blended with spectral
residual saliency, thresholded, cleaned with morphology and split into connected components.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from twinseek.media.masks import mask_iou

log = logging.getLogger(__name__)

WORK_SIDE = 320  # flow and proposals run at this max side; masks are upsampled afterwards
GRID_STEP = 8  # flow samples for the homography fit: one per GRID_STEP px
RANSAC_PX = 1.5  # inlier distance of the camera model fit, in working-size pixels
QUAD_IRLS_STEPS = 4  # reweighting rounds of the quadratic background fit
QUAD_TUKEY_PX = 1.5  # floor of the Tukey cut-off (working px) in that fit
MIN_RESIDUAL_PX = 1.2  # residual motion below this (working px) is never "moving"
RESIDUAL_MAD_K = 3.0  # ... and must also exceed median + K * MAD of the frame's residual
SALIENCY_WEIGHT = 0.25  # how much static saliency adds to the normalised motion score
MIN_AREA_FRACTION = 0.004  # proposals smaller than this fraction of the frame are noise
MAX_AREA_FRACTION = 0.6  # a "moving" region larger than this is a failed camera model, not an object
MAX_PROPOSALS = 6
GRABCUT_ITERS = 1  # refinement iterations per motion proposal (a few ms each at 320 px)
# GrabCut's cost grows with the pixels of the region it cuts: a larger region (a big object) is cut at the scale that
# keeps this many pixels and its foreground scaled back. At 24000 (of 57600 in a 320x180 working frame) segmentation
# costs ~20% less and the DAVIS best-track J is not lower (0.583 -> 0.594 over the 10 clips, 16 frames each).
REFINE_GRABCUT_PIXELS = 24000
GRABCUT_MIN_KEEP = 0.3  # per frame, largest/most confident first


@dataclass
class Proposal:
    """One candidate object in one frame (masks at working size)."""

    mask: np.ndarray
    score: float
    label: str | None = None
    source: str = "motion"
    label_score: float | None = None  # confidence of ``label`` when it came from another model than the mask
    label_source: str = ""
    # another model's different label for the same pixels (a COCO "horse" on a person mask of horse and rider):
    # it may name the track, but never steers the association, which follows ``label``
    hint: str | None = None
    hint_score: float = 0.0
    hint_source: str = ""


def work_scale(shape: tuple[int, ...]) -> float:
    return min(1.0, WORK_SIDE / max(shape[:2]))


def to_work(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return frame
    size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class FlowField:
    """DIS optical flow between sampled frames plus the camera homography fitted to it."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Dense flow from grey image ``a`` to ``b`` (H, W, 2), float32."""
        return self._dis.calc(a, b, None)

    @staticmethod
    def camera_residual(flow: np.ndarray) -> np.ndarray:
        """Per-pixel motion that no background model explains.

        Two models of the camera-induced flow: a RANSAC homography (one dominant plane: pans, zooms,
        distant scenes) and a robust quadratic flow field (smooth parallax, e.g. a road plane below a
        building). A pixel is background when either model explains it, hence the minimum.
        """
        h, w = flow.shape[:2]
        grid = _grid(h, w)
        samples = flow[grid.ys, grid.xs]
        hom, _ = cv2.findHomography(grid.src, grid.src + samples, cv2.RANSAC, RANSAC_PX, maxIters=500)
        if hom is None:
            hom = np.eye(3)
        cam = cv2.perspectiveTransform(grid.pts, hom).reshape(h, w, 2) - grid.xy
        res_h = _magnitude(flow - cam)
        quad = _quadratic_flow(grid.src, samples, grid.basis)
        return np.minimum(res_h, _magnitude(flow - quad))


def pixel_grid(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32 pixel coordinates (x, y), shared (read-only) between calls of the same size."""
    return _grid(h, w).xy


def _magnitude(v: np.ndarray) -> np.ndarray:
    """Length of (H, W, 2) vectors: ``np.linalg.norm(v, axis=2)``'s values, several times faster."""
    x, y = v[..., 0], v[..., 1]
    return np.sqrt(x * x + y * y)


@dataclass(frozen=True)
class _Grid:
    """What the camera models need of a frame size, made once per size (every flow of a video shares it)."""

    ys: np.ndarray  # sample rows / columns, one per GRID_STEP px
    xs: np.ndarray
    src: np.ndarray  # (N, 2) float32 sample points
    xy: np.ndarray  # (h, w, 2) float32 pixel coordinates
    pts: np.ndarray  # the same as (h * w, 1, 2) for cv2.perspectiveTransform
    basis: np.ndarray  # (h, w, 6) quadratic basis of every pixel


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> _Grid:
    ys, xs = np.mgrid[GRID_STEP // 2 : h : GRID_STEP, GRID_STEP // 2 : w : GRID_STEP]
    src = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    xy = np.stack([gx, gy], axis=-1)
    grid = _Grid(ys.ravel(), xs.ravel(), src, xy, xy.reshape(-1, 1, 2), _quad_basis(gx, gy, max(h, w)))
    for a in (grid.ys, grid.xs, grid.src, grid.xy, grid.pts, grid.basis):
        a.flags.writeable = False  # shared between calls
    return grid


def _quad_basis(x: np.ndarray, y: np.ndarray, side: float) -> np.ndarray:
    x, y = x / side - 0.5, y / side - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def _quadratic_flow(src: np.ndarray, samples: np.ndarray, pixel_basis: np.ndarray) -> np.ndarray:
    """Quadratic flow field fitted with iteratively reweighted least squares (Tukey weights), evaluated on
    ``pixel_basis`` (``_quad_basis`` of every pixel).

    Starts from the median flow so a large moving object cannot pull the first fit far.
    """
    side = float(max(pixel_basis.shape[:2]))
    basis = _quad_basis(src[:, 0], src[:, 1], side).astype(np.float64)
    coef = np.zeros((6, 2))
    coef[0] = np.median(samples, axis=0)
    for _ in range(QUAD_IRLS_STEPS):
        r = np.linalg.norm(samples - basis @ coef, axis=1)
        c = max(QUAD_TUKEY_PX, 4.685 * 1.4826 * float(np.median(r)))
        wts = np.clip(1 - (r / c) ** 2, 0, None) ** 2
        if wts.sum() < 12:
            break
        sw = np.sqrt(wts)[:, None]
        coef = np.linalg.lstsq(basis * sw, samples * sw, rcond=None)[0]
    return (pixel_basis @ coef).astype(np.float32)


def motion_maps(grey: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Residual motion per frame and the flow of each frame back to the previous one (``None`` for the first).

    The backward flow lets a tracker pull a mask forward with ``cv2.remap`` (no splatting holes).
    """
    ff = FlowField()
    n = len(grey)
    backward: list[np.ndarray | None] = [None] * n
    fwd_res: list[np.ndarray | None] = [None] * n
    bwd_res: list[np.ndarray | None] = [None] * n
    for i in range(n - 1):
        fwd_res[i] = ff.camera_residual(ff.flow(grey[i], grey[i + 1]))
        flow_back = ff.flow(grey[i + 1], grey[i])
        backward[i + 1] = flow_back
        bwd_res[i + 1] = ff.camera_residual(flow_back)
    maps = []
    for f, b in zip(fwd_res, bwd_res):
        if f is None and b is None:
            maps.append(np.zeros(grey[0].shape, np.float32))
        elif f is None or b is None:
            only = f if f is not None else b
            assert only is not None
            maps.append(only.astype(np.float32))
        else:
            maps.append(np.minimum(f, b).astype(np.float32))
    return maps, backward


def saliency_map(frame: np.ndarray) -> np.ndarray:
    """Spectral-residual saliency in [0, 1] (cheap, texture-insensitive)."""
    sal = cv2.saliency.StaticSaliencySpectralResidual_create()
    ok, out = sal.computeSaliency(frame)
    if not ok:
        return np.zeros(frame.shape[:2], np.float32)
    out = out.astype(np.float32)
    return out / (out.max() + 1e-6)


def moving_mask(residual: np.ndarray, saliency: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Binary mask of independently moving pixels and the normalised score map it came from."""
    res = cv2.GaussianBlur(residual, (0, 0), 2.0)
    med = float(np.median(res))
    mad = float(np.median(np.abs(res - med))) + 1e-3
    thr = max(MIN_RESIDUAL_PX, med + RESIDUAL_MAD_K * 1.4826 * mad)
    score = np.clip(res / (2 * thr), 0, 1)
    if saliency is not None:
        score = np.clip(score + SALIENCY_WEIGHT * (saliency - 0.5), 0, 1)
    mask = score > 0.5
    k = max(3, round(min(mask.shape) / 40)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return fill_holes(mask > 0), score


def fill_holes(mask: np.ndarray) -> np.ndarray:
    inv = (~mask).astype(np.uint8)
    h, w = mask.shape
    flood = inv.copy()
    cv2.floodFill(flood, np.zeros((h + 2, w + 2), np.uint8), (0, 0), 0)
    return mask | (flood > 0) if mask[0, 0] == 0 else mask


def components(mask: np.ndarray, score: np.ndarray) -> list[Proposal]:
    """Connected components of a moving mask as proposals, scored by area x mean motion score."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    total = mask.size
    out = []
    for i in range(1, n):
        area = stats[i, cv2.CC_STAT_AREA]
        if not MIN_AREA_FRACTION * total <= area <= MAX_AREA_FRACTION * total:
            continue
        comp = labels == i
        out.append(Proposal(mask=comp, score=float(score[comp].mean()) * np.sqrt(area / total)))
    out.sort(key=lambda p: -p.score)
    return out[:MAX_PROPOSALS]


def refine_grabcut(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Snap a blobby motion mask to colour edges with GrabCut, run only on the mask's padded box.

    Flow smears across object boundaries, so the motion mask is only "probably foreground"; its eroded
    core is sure foreground and a ring outside it is probable background. Returns ``mask`` unchanged when
    GrabCut collapses (less than ``GRABCUT_MIN_KEEP`` of the original area survives).
    """
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    pad = max(8, int(0.25 * max(bw, bh)))
    x1, y1 = max(0, xs.min() - pad), max(0, ys.min() - pad)
    x2, y2 = min(w, xs.max() + 1 + pad), min(h, ys.max() + 1 + pad)
    sub = mask[y1:y2, x1:x2].astype(np.uint8)
    k = max(3, int(0.15 * min(bw, bh))) | 1
    core = cv2.erode(sub, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    gc = np.where(sub > 0, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    gc[core > 0] = cv2.GC_FGD
    ring = cv2.dilate(sub, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    gc[ring == 0] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    img = np.ascontiguousarray(frame[y1:y2, x1:x2])
    scale = min(1.0, float(np.sqrt(REFINE_GRABCUT_PIXELS / gc.size)))
    if scale < 1.0:
        size = (max(8, round(gc.shape[1] * scale)), max(8, round(gc.shape[0] * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        gc = cv2.resize(gc, size, interpolation=cv2.INTER_NEAREST)
    try:
        cv2.grabCut(img, gc, None, bgd, fgd, GRABCUT_ITERS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return mask
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    if scale < 1.0:
        fg = cv2.resize(fg.astype(np.uint8), (sub.shape[1], sub.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    if fg.sum() < GRABCUT_MIN_KEEP * sub.sum():
        return mask
    out = np.zeros_like(mask)
    out[y1:y2, x1:x2] = fill_holes(fg)
    return out


def merge_seeds(props: list[Proposal], seeds: list[Proposal], overlap: float = 0.5) -> list[Proposal]:
    """Seeds (e.g. person masks) win over motion blobs that are mostly the same object.

    A motion blob is dropped when its IoU with a seed exceeds ``overlap``; a blob that contains a seed plus
    much more (rider on a horse, cyclist on a bike) is kept as its own object.
    """
    kept = [p for p in props if all(mask_iou(p.mask, s.mask, empty=0.0) <= overlap for s in seeds)]
    return seeds + kept


BOX_MIN_FRACTION = 0.002  # boxes smaller than this fraction of the frame are not segmented
BOX_MAX_FRACTION = 0.85  # ... nor boxes that are nearly the whole frame (a screen, a close-up)
BOX_MIN_FILL = 0.15  # GrabCut keeping less than this of a box has failed: the inscribed ellipse stands in
ATTACH_IOU = 0.35  # a box's mask overlapping an existing proposal this much labels it instead of adding one


def box_mask(frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """Object mask inside a detector box (working-size pixels) by GrabCut initialised from the rectangle."""
    h, w = frame.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    bw, bh = x2 - x1, y2 - y1
    if bw < 4 or bh < 4 or not BOX_MIN_FRACTION * h * w <= bw * bh <= BOX_MAX_FRACTION * h * w:
        return None
    pad = max(4, int(0.15 * max(bw, bh)))
    cx1, cy1, cx2, cy2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)
    sub = np.ascontiguousarray(frame[cy1:cy2, cx1:cx2])
    gc = np.zeros(sub.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    rect = (x1 - cx1, y1 - cy1, bw, bh)
    fg = None
    if rect[0] > 0 or rect[1] > 0 or rect[2] < sub.shape[1] or rect[3] < sub.shape[0]:  # GrabCut needs a border
        try:
            cv2.grabCut(sub, gc, rect, bgd, fgd, GRABCUT_ITERS, cv2.GC_INIT_WITH_RECT)
            fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        except cv2.error:
            fg = None
    if fg is None or fg.sum() < BOX_MIN_FILL * bw * bh:
        fg = np.zeros(sub.shape[:2], np.uint8)
        cv2.ellipse(fg, ((rect[0] + bw / 2, rect[1] + bh / 2), (bw, bh), 0), 1, -1)
        fg = fg > 0
    out = np.zeros((h, w), bool)
    out[cy1:cy2, cx1:cx2] = _largest(fill_holes(fg))
    return out if out.any() else None


def _largest(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def attach_boxes(props: list[Proposal], boxes: list[Proposal], covered_at: float = 0.5) -> list[Proposal]:
    """Give detector labels to the proposals they match; boxes overlapping no proposal become proposals.

    A box's mask matching a proposal (IoU >= ``ATTACH_IOU``) lends it its label when the proposal has none or the
    same one; a proposal labelled otherwise gets the box's label as a ``hint`` (relabelling it would flip the
    label the tracker associates by, and split its track). A box that overlaps a proposal without matching it (a rider inside the
    mask of horse and rider; overlap over the smaller mask >= ``covered_at``) adds nothing: a second, competing
    mask of the same pixels would split tracks.
    Mutates ``props``. Returns, per box, the mask to carry to the next frame with the box's label.
    """
    carried = []
    for box in sorted(boxes, key=lambda b: -(b.label_score or b.score)):
        best, best_iou, covered = None, ATTACH_IOU, False
        for p in props:
            iou = mask_iou(p.mask, box.mask)
            covered = covered or overlap(p.mask, box.mask) >= covered_at
            if iou >= best_iou:
                best, best_iou = p, iou
        score = box.label_score or box.score
        source = box.label_source or box.source
        if best is None:
            if not covered:
                props.append(box)
            carried.append(box)
            continue
        if best.label is None or best.label == box.label:
            best.label, best.label_score, best.label_source = box.label, max(score, best.label_score or 0.0), source
        elif score > best.hint_score:
            best.hint, best.hint_score, best.hint_source = box.label, score, source
        carried.append(Proposal(mask=best.mask, score=box.score, label=box.label, source=box.source,
                                label_score=score, label_source=source))
    return carried


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller mask."""
    small = min(np.count_nonzero(a), np.count_nonzero(b))
    return 0.0 if small == 0 else np.count_nonzero(a & b) / small
