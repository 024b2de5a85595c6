"""Masks, frames and overlays: the one place that reads and writes mask PNGs, compares and resizes masks, picks
evenly spread key frames and draws masks over frames. The store, the agent, the evals and the benchmarks all
use these helpers, so a mask means the same thing everywhere.

Conventions:

* A mask is a 2-D ``bool`` array (``True`` = object), shaped ``(height, width)`` like the frame it belongs to.
* :func:`load_mask` treats any non-zero pixel as foreground, so 1-bit PNGs (the store's), 0/255 greyscale,
  palette-indexed (DAVIS ground truth) and colour masks all read the same way.
* Masks are resized with nearest-neighbour sampling (PIL's), frames with bilinear sampling.
* :func:`mask_iou` of two empty masks is 1.0 by default (DAVIS: nothing to find and nothing found); pass
  ``empty=0.0`` where an empty pair must not count as a match (tracking, suppression of duplicates).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from twinseek.errors import TwinseekError
from twinseek.media.decode import iter_frames

logger = logging.getLogger(__name__)

MaskLike = np.ndarray | str | Path  # an array (non-zero = object) or a mask PNG

# One colour per object, the same in every overlay (search results, eval reports, the web page).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230),
)
OVERLAY_ALPHA = 0.45


# -- mask files -----------------------------------------------------------------------------------------------
def encode_mask(mask: np.ndarray) -> bytes:
    """A mask as the bytes of a 1-bit PNG (what :func:`save_mask` writes): how masks travel from a worker."""
    buffer = io.BytesIO()
    # zlib's default level: ``optimize`` (level 9 and a second pass) cost 4x the time for ~15% fewer bytes of a
    # ~1 KB file
    Image.fromarray(np.asarray(mask, dtype=bool)).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    """A mask from PNG bytes (:func:`encode_mask`), read like :func:`load_mask`."""
    return load_mask(io.BytesIO(data))


def save_mask(path: str | Path, mask: np.ndarray | bytes) -> None:
    """Write a mask (an array, or PNG bytes from :func:`encode_mask`) as a 1-bit PNG (lossless, small, viewable
    anywhere); parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mask if isinstance(mask, bytes) else encode_mask(mask))


def load_mask(path: str | Path | io.BytesIO) -> np.ndarray:
    """A mask PNG as a bool array: any non-zero pixel (1-bit, 0/255, palette index or colour) is foreground.

    An alpha channel is ignored (a colour mask's transparent background is black)."""
    with Image.open(path) as img:
        arr = np.asarray(img)
    if arr.ndim == 3:
        return np.asarray(arr[..., :3].any(axis=2))
    return arr != 0


def as_mask(mask: MaskLike) -> np.ndarray:
    """A bool mask from an array (non-zero = foreground; colour arrays: any channel) or a PNG path."""
    if isinstance(mask, str | Path):
        return load_mask(mask)
    arr = np.asarray(mask)
    return np.asarray(arr.any(axis=2) if arr.ndim == 3 else arr.astype(bool))


# -- geometry -------------------------------------------------------------------------------------------------
def mask_iou(a: np.ndarray, b: np.ndarray, *, empty: float = 1.0) -> float:
    """Intersection over union of two masks of the same shape; ``empty`` when both are empty."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(np.logical_or(a, b))
    return empty if union == 0 else float(np.count_nonzero(np.logical_and(a, b)) / union)


def resize_mask(mask: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``mask`` at ``(height, width) = shape[:2]`` by nearest-neighbour sampling (a bool array)."""
    mask = as_mask(mask)
    height, width = int(shape[0]), int(shape[1])
    if mask.shape == (height, width):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(img) > 127


def resize_image(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """An RGB ``uint8`` frame at ``(height, width) = shape[:2]`` by bilinear sampling."""
    height, width = int(shape[0]), int(shape[1])
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def spread(n_items: int, k: int) -> list[int]:
    """``k`` evenly spread positions in ``range(n_items)``, first and last included, in order.

    All positions when ``k >= n_items``; ``[0]`` when ``k == 1``; none when there is no item.
    """
    if k < 1:
        raise ValueError(f"spread needs k >= 1, got {k}")
    if n_items <= 0:
        return []
    if k >= n_items:
        return list(range(n_items))
    if k == 1:
        return [0]
    return [round(i * (n_items - 1) / (k - 1)) for i in range(k)]


def keyframes(runs: Sequence[range], k: int) -> list[int]:
    """``k`` positions spread over all the frames, and the middle frame of each shot that none of them falls in
    (a keyframe model then sees every shot; one shot: exactly ``spread(n, k)``)."""
    n = sum(len(r) for r in runs)
    picked = set(spread(n, k))
    picked.update(r[len(r) // 2] for r in runs if not picked.intersection(r))
    return sorted(picked)


# -- overlays -------------------------------------------------------------------------------------------------
def outline(mask: np.ndarray) -> np.ndarray:
    """The mask's pixels that touch the background (4-neighbourhood)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def colour(index: int) -> tuple[int, int, int]:
    """The palette colour of object ``index`` (the palette repeats)."""
    return PALETTE[index % len(PALETTE)]


def draw_overlay(frame: np.ndarray, masks: Mapping[int, MaskLike] | Sequence[MaskLike],
                 alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Tint each mask over ``frame`` in its object's colour and draw its outline; returns a new RGB frame.

    ``masks`` maps a colour index (the object's position, so an object keeps its colour on every frame) to its
    mask, or is a sequence (colour by position). A mask of another size is resized to the frame's."""
    items: Iterable[tuple[int, MaskLike]] = masks.items() if isinstance(masks, Mapping) else enumerate(masks)
    out = frame.astype(np.float32)
    for index, mask_like in items:
        mask = resize_mask(as_mask(mask_like), frame.shape[:2])
        rgb = np.array(colour(index), np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * rgb
        out[outline(mask)] = rgb
    return out.clip(0, 255).astype(np.uint8)


def overlay_frames(video: str | Path | None, masks: Mapping[int, Mapping[int, MaskLike]], max_frames: int,
                   alpha: float = OVERLAY_ALPHA) -> list[tuple[int, np.ndarray]]:
    """Overlays on up to ``max_frames`` evenly spread key frames: ``[(frame index, RGB image)]`` in order.

    ``masks`` maps a frame index to ``{colour index: mask}``. Frames are decoded at the masks' size; a video
    that is missing or cannot be read (logged) gives black frames, so the masks still show."""
    frames = sorted(f for f, by_object in masks.items() if by_object)
    if not frames:
        return []
    frames = [frames[i] for i in spread(len(frames), max_frames)]
    loaded = {f: {k: as_mask(m) for k, m in masks[f].items()} for f in frames}
    height, width = next(iter(loaded[frames[0]].values())).shape
    pictures = _decode(video, set(frames), max(height, width))
    out = []
    for f in frames:
        base = pictures.get(f)
        base = np.zeros((height, width, 3), np.uint8) if base is None else resize_image(base, (height, width))
        out.append((f, draw_overlay(base, loaded[f], alpha)))
    return out


def write_overlays(overlays: Sequence[tuple[int, np.ndarray]], folder: str | Path,
                   gif: str | Path | None = None) -> list[Path]:
    """Save overlays as ``folder/f<frame>.png`` (and, given ``gif``, one animated GIF of them all)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, written = [], []
    for f, image in overlays:
        img = Image.fromarray(image)
        path = folder / f"f{f:06d}.png"
        img.save(path)
        images.append(img)
        written.append(path)
    if gif is not None and images:
        # a fast octree palette per frame: Pillow's default median cut took ~1.5 s a frame (12 s a hit) at 640 px
        frames_p = [im.quantize(256, method=Image.Quantize.FASTOCTREE) for im in images]
        frames_p[0].save(gif, save_all=True, append_images=frames_p[1:], duration=400, loop=0)
        written.append(Path(gif))
    return written


def _decode(video: str | Path | None, wanted: set[int], max_side: int) -> dict[int, np.ndarray]:

    if video is None:
        return {}
    try:
        return dict(iter_frames(video, max_side, wanted))
    except (TwinseekError, OSError) as exc:
        logger.warning("cannot decode %s for overlays (%s): masks drawn on black", video, exc)
        return {}
