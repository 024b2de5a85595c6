"""Embedded attribute describer: basic colour names and a size word from the mask, no model weights.

Pixels are binned in HSV (OpenCV ranges: H 0-179, S and V 0-255) into the 11 basic colour terms of
Berlin & Kay: low saturation gives black/grey/white by value; otherwise hue decides, with dark oranges
and yellows named brown and light, low-saturation reds/purples named pink.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from twinseek.twins.adapters.base import SpecialistBase

log = logging.getLogger(__name__)

COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
BLACK_V = 50  # value below this is black whatever the hue
ACHROMATIC_S = 45  # saturation below this is black/grey/white
WHITE_V = 190  # achromatic and brighter than this: white
SECOND_COLOUR_SHARE = 0.25  # a second colour is named when it covers at least this share of the mask
SMALL_AREA = 0.02  # mask area fraction below this: "small"
LARGE_AREA = 0.15  # ... at or above this: "large"; in between: "medium"
MAX_PIXELS = 20000  # subsample big masks (deterministically) to keep this cheap


def colour_indices(hsv: np.ndarray) -> np.ndarray:
    """Index into ``COLOURS`` for each HSV pixel of an ``(N, 3)`` uint8 array."""
    h, s, v = (hsv[:, i].astype(np.int32) for i in range(3))
    out = np.full(len(hsv), COLOURS.index("grey"), dtype=np.int32)
    chroma = (s >= ACHROMATIC_S) & (v >= BLACK_V)
    out[~chroma & (v >= WHITE_V)] = COLOURS.index("white")
    out[v < BLACK_V] = COLOURS.index("black")
    hue_names = np.select(
        [h < 8, h < 22, h < 34, h < 85, h < 130, h < 155, h < 170],
        [COLOURS.index(c) for c in ("red", "orange", "yellow", "green", "blue", "purple", "pink")],
        default=COLOURS.index("red"),
    )
    # dark orange/yellow/red reads as brown; pale red/purple reads as pink
    brown = (h < 34) & (v < 150) & (s >= ACHROMATIC_S) | ((h >= 170) & (v < 110))
    hue_names = np.where(brown, COLOURS.index("brown"), hue_names)
    pale = ((h < 8) | (h >= 130)) & (s < 120) & (v >= 150)
    hue_names = np.where(pale, COLOURS.index("pink"), hue_names)
    out[chroma] = hue_names[chroma]
    return out


def colour_words(frame: np.ndarray, mask: np.ndarray) -> str:
    """The dominant one or two colour names of the masked pixels, e.g. ``"black and white"``."""
    pixels = frame[mask.astype(bool)]
    if len(pixels) == 0:
        return ""
    if len(pixels) > MAX_PIXELS:
        pixels = pixels[:: len(pixels) // MAX_PIXELS + 1]
    hsv = cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.uint8), cv2.COLOR_RGB2HSV).reshape(-1, 3)
    counts = np.bincount(colour_indices(hsv), minlength=len(COLOURS)) / len(hsv)
    order = np.argsort(-counts, kind="stable")
    words = [COLOURS[order[0]]]
    if counts[order[1]] >= SECOND_COLOUR_SHARE:
        words.append(COLOURS[order[1]])
    return " and ".join(words)


def size_word(mask: np.ndarray) -> str:
    frac = float(np.count_nonzero(mask)) / max(1, mask.size)
    return "small" if frac < SMALL_AREA else "large" if frac >= LARGE_AREA else "medium"


class EmbeddedDescriber(SpecialistBase):
    """Deterministic colour + size attributes: ``describe`` returns e.g. ``"red, small"``."""

    role = "describer"
    tier = "embedded"
    model = "colour-histogram"

    def describe(self, frame: np.ndarray, mask: np.ndarray, category: str) -> str:
        colours = colour_words(frame, mask)
        return f"{colours}, {size_word(mask)}" if colours else size_word(mask)
