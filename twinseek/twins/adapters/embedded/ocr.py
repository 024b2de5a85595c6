"""Embedded on-screen text reader: PP-OCRv4 detection + recognition (Apache-2.0) from ``rapidocr-onnxruntime``.

OCR is the most expensive embedded model (about 1.7 s for an 854x480 frame at the package's default size), and
most videos show no text. So reading is gated: :meth:`EmbeddedTextReader.has_text` runs the text *detector*
alone on a small copy of the frame (``test_side`` px, tens of milliseconds), and only frames where it finds
text are read at ``read_side`` px. ``rapidocr-onnxruntime`` declares ``opencv-python``, a second package behind
``cv2`` next to mediapipe's ``opencv-contrib-python``: install it with ``--no-deps`` (scripts/bootstrap.sh does).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from twinseek.errors import ModelUnavailableError
from twinseek.twins.adapters.base import LazyModel, SpecialistBase

log = logging.getLogger(__name__)

MODEL_NAME = "pp-ocrv4-det+rec (rapidocr-onnxruntime)"
MIN_UPSCALE_SIDE = 320  # tiny frames (e.g. 120x90 GIFs) are enlarged to this before detection


TEXT_MIN_ASPECT = 2.0  # a box this elongated (long side / short side) is shaped like a line of text ...
TEXT_MAX_SHORT_SIDE = 0.2  # ... and so is a squarer one whose short side is at most this share of the frame's


def text_like(box: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Is a detected box (4 corner points) shaped like text: a line (elongated, either way round) or a short word /
    glyph of text size? The detector alone also fires on large squarish texture (a swan's plumage, a face): on the
    dev bench such boxes were a quarter of the frames read (a full read costs ~0.3 s) and never held text."""
    pts = np.asarray(box, dtype=np.float32).reshape(4, 2)
    a, b = float(np.linalg.norm(pts[0] - pts[1])), float(np.linalg.norm(pts[0] - pts[3]))
    long_side, short_side = max(a, b), max(min(a, b), 1.0)
    return long_side / short_side >= TEXT_MIN_ASPECT or short_side <= TEXT_MAX_SHORT_SIDE * min(shape[:2])


@dataclass
class TextLine:
    """One line of text read in a frame: the text, the recogniser's confidence and a pixel box."""

    text: str
    score: float
    box: tuple[float, float, float, float]


class EmbeddedTextReader(SpecialistBase, LazyModel):
    """Reads text in frames; the ONNX sessions load lazily (pickles without them)."""

    _lazy = ("_engine",)
    role = "text reader"
    tier = "embedded"
    model = MODEL_NAME

    def __init__(self, test_side: int = 320, read_side: int = 640, min_score: float = 0.6,
                 min_box_score: float = 0.6, threads: int = 1) -> None:
        self.test_side = test_side
        self.read_side = read_side
        self.min_score = min_score
        self.min_box_score = min_box_score
        self.threads = threads
        self._engine: Any = None
        self._lock = threading.Lock()


    def _load(self) -> Any:
        with self._lock:
            if self._engine is None:
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as exc:
                    raise ModelUnavailableError(
                        "on-screen text needs rapidocr-onnxruntime (pip install --no-deps rapidocr-onnxruntime==1.4.4 "
                        "onnxruntime pyclipper shapely pyyaml six), or set TWINSEEK_PERCEPTION__OCR=false") from exc
                # limit_type "max": the package default ("min", 736) enlarges every frame, hence its 1.7 s
                self._engine = RapidOCR(det_limit_type="max", det_limit_side_len=self.read_side,
                                        intra_op_num_threads=self.threads, inter_op_num_threads=1)
                logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            return self._engine

    @staticmethod
    def _bgr(frame: np.ndarray, side: int) -> tuple[np.ndarray, float]:
        """BGR copy with the longest side at ``side`` (enlarging only tiny frames); returns it and the scale."""
        longest = max(frame.shape[:2])
        scale = side / longest if longest > side or longest < MIN_UPSCALE_SIDE else 1.0
        img = frame if scale == 1.0 else cv2.resize(
            frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_RGB2BGR)), scale

    def has_text(self, frame: np.ndarray) -> bool:
        """Cheap test: does the text detector alone find a box shaped like text in a ``test_side`` px copy of the
        frame (see :func:`text_like`)?"""
        engine = self._load()
        img, _ = self._bgr(frame, self.test_side)
        with self._lock:
            boxes, _ = engine.text_det(img)
        return boxes is not None and any(text_like(box, img.shape[:2]) for box in boxes)

    def read(self, frame: np.ndarray) -> list[TextLine]:
        """Lines of text (top to bottom) whose recognition confidence is at least ``min_score``."""
        engine = self._load()
        img, scale = self._bgr(frame, self.read_side)
        with self._lock:
            result, _ = engine(img, use_cls=False, box_thresh=self.min_box_score, text_score=self.min_score)
        lines = []
        for box, text, score in result or []:
            text = " ".join(str(text).split())
            if not text or float(score) < self.min_score:
                continue
            pts = np.asarray(box, dtype=np.float32) / scale
            lines.append(TextLine(text, round(float(score), 3), (float(pts[:, 0].min()), float(pts[:, 1].min()),
                                                                 float(pts[:, 0].max()), float(pts[:, 1].max()))))
        return sorted(lines, key=lambda t: (t.box[1], t.box[0]))

    def read_frames(self, frames: Sequence[np.ndarray]) -> list[list[TextLine]]:
        return [self.read(f) for f in frames]
