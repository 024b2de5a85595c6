"""Mask geometry of the twins (mask files, IoU and resizing live in :mod:`twinseek.media.masks`)."""

from __future__ import annotations

import numpy as np


def mask_geometry(mask: np.ndarray) -> tuple[tuple[float, float, float, float], tuple[float, float], float] | None:
    """Normalised ``(bbox, centroid, area)`` of a mask, or ``None`` when it is empty."""
    h, w = mask.shape[:2]
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    bbox = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    centroid = (float(xs.mean() + 0.5) / w, float(ys.mean() + 0.5) / h)
    return tuple(float(v) for v in bbox), centroid, float(len(xs) / (h * w))  # type: ignore[return-value]
