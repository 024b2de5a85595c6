"""Shared plumbing for paper-tier vision adapters (weight handling lives in :mod:`twinseek.weights`)."""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np

from twinseek.twins.adapters.base import SpecialistBase
from twinseek.twins.model import Tier
from twinseek.weights import (  # noqa: F401  (re-exported for the adapters)
    WeightsSpec,
    is_hub_id,
    load_pretrained,
    model_dtype,
    resolve_device,
    resolve_source,
    unavailable,
)

log = logging.getLogger(__name__)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box against (N, 4) boxes, pixel x1y1x2y2."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


class PaperSpecialist(SpecialistBase):
    """Base of the hub-backed paper adapters: resolves the source eagerly, loads the model lazily once."""

    tier: Tier = "paper"
    spec: ClassVar[WeightsSpec]

    def __init__(self, model: str, device: str = "auto") -> None:
        self.model = model
        self.device = resolve_device(device)
        self.dtype = model_dtype(self.device)
        self.source = resolve_source(model, self.spec)
        self._loaded = False

    def load(self) -> None:
        """Load the weights now (otherwise done on first use); later calls are no-ops."""
        if not self._loaded:
            log.info("loading %s from %s on %s", self.spec.name, self.source, self.device)
            self._load()
            self._loaded = True

    def _load(self) -> None:
        raise NotImplementedError
