"""Mask files and mask geometry. Masks are stored as 1-bit PNGs (lossless, small, viewable anywhere)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def encode_mask(mask: np.ndarray) -> bytes:
    """A mask as the bytes of a 1-bit PNG (what :func:`save_mask` writes): how masks travel from a worker."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool)).convert("1").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L")) > 127


def save_mask(path: Path, mask: np.ndarray | bytes) -> None:
    """Write a mask (an array, or PNG bytes from :func:`encode_mask`) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mask if isinstance(mask, bytes) else encode_mask(mask))


def load_mask(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L")) > 127


def mask_geometry(mask: np.ndarray) -> tuple[tuple[float, float, float, float], tuple[float, float], float] | None:
    """Normalised ``(bbox, centroid, area)`` of a mask, or ``None`` when it is empty."""
    h, w = mask.shape[:2]
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    bbox = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    centroid = (float(xs.mean() + 0.5) / w, float(ys.mean() + 0.5) / h)
    return tuple(float(v) for v in bbox), centroid, float(len(xs) / (h * w))  # type: ignore[return-value]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
