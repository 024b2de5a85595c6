"""Embedded pose estimator: mediapipe's BlazePose (``pose_landmark_full.tflite`` and ``pose_detection.tflite``, both
inside the ``mediapipe==0.10.14`` wheel), run on the crop of one person track's box in one sampled frame.

It gives BlazePose's 33 keypoints (nose, eyes, ears, mouth corners, shoulders, elbows, wrists, hands, hips, knees,
ankles, heels, toes) as ``(x, y, visibility)`` in the *frame's* pixels; :mod:`twinseek.twins.actions` reads them.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from twinseek.errors import ModelUnavailableError
from twinseek.twins.adapters.base import Box, LazyModel, SpecialistBase

KEYPOINTS = 33  # BlazePose's landmarks, in its order (see twinseek.twins.actions for the ones read)
CROP_PAD = 0.25  # the box grows by this share of its size on each side: the detector wants some context
MIN_CROP_SIDE = 40  # pixels: a smaller crop (a far-away person, a 120x90 GIF) gives no reliable keypoints
MIN_SIDE = 256  # a crop is upscaled so that its shorter side is at least this (BlazePose's input is 256x256)
MIN_DETECTION = 0.5  # mediapipe's person detection confidence


class EmbeddedPoseEstimator(SpecialistBase, LazyModel):
    """``keypoints(frame, box)``: the 33 BlazePose keypoints of the person in ``box``, or ``None`` when no body is
    found there (or the crop is too small to tell)."""

    role = "pose"
    tier = "embedded"
    model = "mediapipe-blazepose-full"
    _lazy = ("_pose",)

    def __init__(self) -> None:
        self._pose: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._pose is None:
            try:
                import mediapipe as mp  # lazy: mediapipe loads TF Lite and its graphs (about a second)
            except ImportError as exc:
                raise ModelUnavailableError("mediapipe==0.10.14 is not installed (pip install twinseek[embedded])") \
                    from exc
            # static_image_mode: each crop is a new image (the tracker's ROI from another crop would mislead)
            self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                                min_detection_confidence=MIN_DETECTION)
        return self._pose

    def keypoints(self, frame: np.ndarray, box: Box) -> np.ndarray | None:
        """``float32 (33, 3)``: x and y in frame pixels, visibility in [0, 1]; ``None`` where no body is found."""
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = box
        dx, dy = (x2 - x1) * CROP_PAD, (y2 - y1) * CROP_PAD
        cx1, cy1 = max(0, int(x1 - dx)), max(0, int(y1 - dy))
        cx2, cy2 = min(w, int(np.ceil(x2 + dx))), min(h, int(np.ceil(y2 + dy)))
        if min(cx2 - cx1, cy2 - cy1) < MIN_CROP_SIDE:
            return None
        crop = np.ascontiguousarray(frame[cy1:cy2, cx1:cx2])
        scale = max(1.0, MIN_SIDE / min(crop.shape[:2]))
        if scale > 1.0:
            import cv2  # lazy: only small crops are resized

            crop = cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)),
                              interpolation=cv2.INTER_LINEAR)
        with self._lock:  # mediapipe graphs are not re-entrant
            result = self._load().process(crop)
        if result.pose_landmarks is None:
            return None
        ch, cw = crop.shape[:2]
        points = np.array([(lm.x * cw / scale + cx1, lm.y * ch / scale + cy1, lm.visibility)
                           for lm in result.pose_landmarks.landmark], dtype=np.float32)
        return points if len(points) == KEYPOINTS else None
