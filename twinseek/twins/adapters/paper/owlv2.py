"""OWLv2 open-vocabulary detector (Minderer et al., 2023) through transformers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from twinseek.config import DEFAULT_VOCABULARY
from twinseek.twins.adapters.base import Category, Detection
from twinseek.twins.adapters.paper._common import PaperSpecialist, WeightsSpec, box_iou, load_pretrained

log = logging.getLogger(__name__)

# OWL-ViT/OWLv2 were trained and evaluated with prompt templates; the bare word is a weaker query.
PROMPT = "a photo of a {}"


class Owlv2Detector(PaperSpecialist):
    role = "detector"
    open_vocabulary = True  # any text labels
    every_frame = False  # too slow for every frame: its boxes seed SAM-2 on a few keyframes
    spec = WeightsSpec("OWLv2", "owlv2", "google/owlv2-base-patch16-ensemble")

    def __init__(
        self,
        model: str,
        device: str = "auto",
        threshold: float = 0.2,
        vocabulary: Sequence[str] = DEFAULT_VOCABULARY,
        nms_iou: float = 0.5,
        max_detections: int = 50,
        batch_size: int = 4,
    ) -> None:
        super().__init__(model, device)
        self.threshold = threshold
        self.vocabulary = list(vocabulary)
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.batch_size = batch_size

    def _load(self) -> None:
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        self._processor = load_pretrained(Owlv2Processor, self.source, self.spec)
        net = load_pretrained(Owlv2ForObjectDetection, self.source, self.spec, dtype=self.dtype)
        self._net = net.to(self.device).eval()

    def _labels(self, vocabulary: Sequence[str] | None) -> list[str]:
        labels = list(dict.fromkeys(v.strip() for v in (vocabulary or self.vocabulary) if v.strip()))
        if not labels:
            raise ValueError("OWLv2 needs a non-empty vocabulary")
        return labels

    @torch.inference_mode()
    def _forward(self, images: Sequence[np.ndarray], labels: Sequence[str]) -> Any:
        self.load()
        queries = [[PROMPT.format(label) for label in labels]] * len(images)
        pil = [Image.fromarray(np.ascontiguousarray(im)) for im in images]
        inputs = self._processor(text=queries, images=pil, return_tensors="pt", truncation=True)
        return self._net(**inputs.to(self.device, dtype=self.dtype))

    def detect(self, frame: np.ndarray, vocabulary: Sequence[str] | None = None) -> list[Detection]:
        labels = self._labels(vocabulary)
        height, width = frame.shape[:2]
        outputs = self._forward([frame], labels)
        result = self._processor.post_process_grounded_object_detection(
            _float_outputs(outputs),
            threshold=self.threshold,
            target_sizes=[(height, width)],
            text_labels=[labels],
        )[0]
        boxes = result["boxes"].float().cpu().numpy().reshape(-1, 4)
        # Boxes may reach into OWLv2's square padding: clip them to the real frame, drop what is left empty.
        boxes = np.clip(boxes, 0, [width, height, width, height])
        scores = result["scores"].float().cpu().numpy()
        valid = np.flatnonzero((boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1))
        keep = valid[nms(boxes[valid], scores[valid], self.nms_iou)][: self.max_detections]
        return [
            Detection(
                box=_box(boxes[i]), score=float(scores[i]), label=result["text_labels"][i], source=self.model
            )
            for i in keep
        ]

    def categorise(
        self, crops: Sequence[np.ndarray], vocabulary: Sequence[str] | None = None
    ) -> list[Category]:
        """Mean over crops of each label's best per-box probability on boxes that cover the crop's object."""
        labels = self._labels(vocabulary)
        crops = [c for c in crops if c.ndim == 3 and min(c.shape[:2]) > 0]
        if not crops:
            return []
        per_crop = [
            _crop_scores(_float_outputs(self._forward(crops[i : i + self.batch_size], labels)))
            for i in range(0, len(crops), self.batch_size)
        ]
        mean = np.concatenate(per_crop).mean(axis=0)
        order = np.argsort(-mean, kind="stable")
        return [Category(label=labels[i], score=float(mean[i]), source=self.model) for i in order]


def _float_outputs(outputs: Any) -> Any:
    # Post-processing (and numpy) want float32 logits and boxes, whatever dtype the model ran in.
    outputs.logits = outputs.logits.float()
    outputs.pred_boxes = outputs.pred_boxes.float()
    return outputs


def _crop_scores(outputs: Any) -> np.ndarray:
    """(crops, labels) probabilities. Only boxes covering >= 25% of the (square-padded) input count, so that
    small things inside the crop do not name the object; a crop without such a box falls back to all boxes."""
    probs = torch.sigmoid(outputs.logits).cpu().numpy()  # (crops, boxes, labels)
    cx, cy, w, h = np.moveaxis(outputs.pred_boxes.cpu().numpy(), -1, 0)  # normalised centre format
    big = (w * h >= 0.25) & (np.abs(cx - 0.5) < 0.35) & (np.abs(cy - 0.5) < 0.35)
    big[~big.any(axis=1)] = True
    return np.where(big[..., None], probs, 0.0).max(axis=1)


def _box(row: np.ndarray) -> tuple[float, float, float, float]:
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Class-agnostic NMS: one object gets one box even when several labels fire on it."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        best, order = order[0], order[1:]
        keep.append(int(best))
        if order:
            overlaps = box_iou(boxes[best], boxes[order])
            order = [o for o, ov in zip(order, overlaps) if ov < iou]
    return keep
