"""Depth Anything (V1/V2) monocular depth through transformers."""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from twinseek.twins.adapters.paper._common import PaperSpecialist, WeightsSpec, load_pretrained

log = logging.getLogger(__name__)


class DepthAnythingEstimator(PaperSpecialist):
    role = "depth"
    spec = WeightsSpec("Depth Anything", "depth_anything", "depth-anything/Depth-Anything-V2-Small-hf")

    def _load(self) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self._processor = load_pretrained(AutoImageProcessor, self.source, self.spec)
        net = load_pretrained(AutoModelForDepthEstimation, self.source, self.spec, dtype=self.dtype)
        self._net = net.to(self.device).eval()
        # Relative checkpoints predict inverse depth (larger = nearer); metric ones predict metres.
        self._inverse = getattr(net.config, "depth_estimation_type", "relative") != "metric"

    @torch.inference_mode()
    def estimate(self, frame: np.ndarray) -> np.ndarray:
        self.load()
        height, width = frame.shape[:2]
        inputs = self._processor(images=Image.fromarray(np.ascontiguousarray(frame)), return_tensors="pt")
        outputs = self._net(**inputs.to(self.device, dtype=self.dtype))
        outputs.predicted_depth = outputs.predicted_depth.float()
        pred = self._processor.post_process_depth_estimation(outputs, target_sizes=[(height, width)])[0]
        return normalise_depth(pred["predicted_depth"].cpu().numpy(), inverse=self._inverse)


def normalise_depth(raw: np.ndarray, inverse: bool) -> np.ndarray:
    """Map a raw prediction to float32 [0, 1] with 0 = nearest; a constant (or non-finite) map gives zeros.

    Relative inverse depth has an unknown scale and shift, so ``1 / x`` is not meaningful: flipping the
    min-max-normalised map keeps the order, which is all the twin's "relative depth" promises.
    """
    values = np.nan_to_num(raw.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-6 * max(abs(hi), abs(lo)):  # relative: a flat map carries float noise at its own scale
        return np.zeros(values.shape, np.float32)
    scaled = (values - lo) / (hi - lo)
    return np.clip(1.0 - scaled if inverse else scaled, 0.0, 1.0).astype(np.float32)
