"""Ultralytics YOLO detectors (optional extra).

ultralytics is AGPL-3.0, so it is never a default dependency: it is imported only when this adapter is built,
and only from ``pip install 'twinseek[ultralytics]'``. Weights must be a local file: given a bare name such as
``yolo11n.pt`` ultralytics would download it, which twinseek never does at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from twinseek.errors import ConfigError, ModelUnavailableError
from twinseek.twins.adapters.base import Category, Detection, SpecialistBase
from twinseek.twins.adapters.paper._common import resolve_device
from twinseek.twins.model import Tier

log = logging.getLogger(__name__)


class UltralyticsDetector(SpecialistBase):
    role = "detector"
    tier: Tier = "paper"
    open_vocabulary: bool  # set per weights file, see __init__
    every_frame = False  # seeds the segmenter on a few keyframes

    def __init__(self, weights: str, device: str = "auto", threshold: float = 0.25) -> None:
        self._yolo_cls = _import_yolo()
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(
                f"Ultralytics weights {weights!r} are not a local file; twinseek never downloads at run time. "
                "Point the ultralytics detector at a .pt file; on a connected machine get one with "
                "`yolo predict model=yolo11n.pt source=...` (downloads it) and copy it here."
            )
        self.weights = path
        # as ultralytics' YOLO() decides: a "-world" .pt (or .yaml) loads as YOLO-World, which takes labels
        # (set_classes); any other file is a closed-set model that keeps its classes
        self.open_vocabulary = "-world" in path.stem and path.suffix in {".pt", ".yaml", ".yml"}
        self.device = resolve_device(device)
        self.threshold = threshold
        self.model = f"ultralytics:{path.name}"
        self._net: Any = None
        self._classes: tuple[str, ...] | None = None

    def load(self) -> None:
        if self._net is None:
            self._net = self._yolo_cls(str(self.weights))

    def _predict(self, image: np.ndarray, vocabulary: Sequence[str] | None) -> Any:
        self.load()
        self._set_vocabulary(vocabulary)
        # ultralytics reads numpy images as BGR (OpenCV order).
        bgr = np.ascontiguousarray(image[..., ::-1])
        return self._net.predict(
            bgr, conf=self.threshold, device=self.device, retina_masks=True, verbose=False
        )[0]

    def _set_vocabulary(self, vocabulary: Sequence[str] | None) -> None:
        """Open-vocabulary models (YOLO-World) take the vocabulary; closed-set models keep their classes."""
        wanted = tuple(vocabulary) if vocabulary else None
        if wanted is None or wanted == self._classes:
            return
        set_classes = getattr(self._net, "set_classes", None)
        if set_classes is None:
            log.debug("%s has a fixed label set; vocabulary ignored", self.model)
        else:
            set_classes(list(wanted))
        self._classes = wanted

    def detect(self, frame: np.ndarray, vocabulary: Sequence[str] | None = None) -> list[Detection]:
        result = self._predict(frame, vocabulary)
        if result.boxes is None:
            return []
        boxes = result.boxes.xyxy.cpu().numpy()
        scores = result.boxes.conf.cpu().numpy()
        classes = result.boxes.cls.cpu().numpy().astype(int)
        masks = result.masks.data.cpu().numpy() > 0.5 if result.masks is not None else None
        return [
            Detection(
                box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                score=float(s),
                label=str(result.names[c]),
                mask=masks[i] if masks is not None and masks[i].shape == frame.shape[:2] else None,
                source=self.model,
            )
            for i, (b, s, c) in enumerate(zip(boxes, scores, classes))
        ]

    def categorise(
        self, crops: Sequence[np.ndarray], vocabulary: Sequence[str] | None = None
    ) -> list[Category]:
        """Mean over crops of each label's best confidence (class probabilities for classify models)."""
        totals: dict[str, float] = {}
        crops = [c for c in crops if c.ndim == 3 and min(c.shape[:2]) > 0]
        for image in crops:
            for label, score in _label_scores(self._predict(image, vocabulary)).items():
                totals[label] = totals.get(label, 0.0) + score
        ranked = sorted(totals.items(), key=lambda kv: -kv[1])
        return [Category(label=label, score=total / len(crops), source=self.model) for label, total in ranked]


def _label_scores(result: Any) -> dict[str, float]:
    if getattr(result, "probs", None) is not None:
        probs = result.probs.data.cpu().numpy()
        return {str(result.names[i]): float(p) for i, p in enumerate(probs)}
    scores: dict[str, float] = {}
    if result.boxes is not None:
        for c, s in zip(result.boxes.cls.cpu().numpy().astype(int), result.boxes.conf.cpu().numpy()):
            label = str(result.names[c])
            scores[label] = max(scores.get(label, 0.0), float(s))
    return scores


def _import_yolo() -> Any:
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise ConfigError(
            "the ultralytics detector needs the optional ultralytics package, which is AGPL-3.0 licensed and "
            "not installed: `pip install 'twinseek[ultralytics]'` (or choose specialists.detector='owlv2')"
        ) from exc
    return YOLO
