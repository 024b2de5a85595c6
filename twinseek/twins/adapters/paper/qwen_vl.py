"""Qwen2-VL / Qwen2.5-VL attribute describer through transformers."""

from __future__ import annotations

import logging
import re

import numpy as np
import torch
from PIL import Image

from twinseek.twins.adapters.base import box_from_mask, crop
from twinseek.twins.adapters.paper._common import PaperSpecialist, WeightsSpec, load_pretrained

log = logging.getLogger(__name__)

QUESTION = (
    "The highlighted object is a {category}. Describe its colour, texture and appearance in a few words. "
    "Answer with the words only."
)
# Used only when a processor ships without a chat template (the published Qwen checkpoints have one).
FALLBACK_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
MIN_SIDE = 56  # Qwen's patch merger needs at least 28 px a side; tiny crops are upscaled to this
BACKGROUND_KEEP = (
    0.3  # background brightness kept around the object: context stays visible, the object stands out
)
_PREFIX = re.compile(r"^(the\s+)?(object|it|this)\s+(is|has|looks)\s+", re.IGNORECASE)


class QwenVLDescriber(PaperSpecialist):
    role = "describer"
    spec = WeightsSpec("Qwen-VL", "qwen_vl", "Qwen/Qwen2.5-VL-3B-Instruct")

    def __init__(
        self, model: str, device: str = "auto", max_new_tokens: int = 32, max_chars: int = 80
    ) -> None:
        super().__init__(model, device)
        self.max_new_tokens = max_new_tokens
        self.max_chars = max_chars

    def _load(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self._processor = load_pretrained(AutoProcessor, self.source, self.spec)
        net = load_pretrained(AutoModelForImageTextToText, self.source, self.spec, dtype=self.dtype)
        self._net = net.to(self.device).eval()

    def describe(self, frame: np.ndarray, mask: np.ndarray, category: str) -> str:
        image = highlight(frame, mask)
        if image is None:
            log.debug("empty mask for %r: nothing to describe", category)
            return ""
        self.load()
        return clean_answer(self._generate(image, self._prompt(category)), self.max_chars)

    def _prompt(self, category: str) -> str:
        question = QUESTION.format(category=category.strip() or "object")
        if getattr(self._processor, "chat_template", None) is None:
            return FALLBACK_PROMPT.format(question=question)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self._processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @torch.inference_mode()
    def _generate(self, image: Image.Image, prompt: str) -> str:
        inputs = self._processor(text=[prompt], images=[image], return_tensors="pt")
        inputs = inputs.to(self.device, dtype=self.dtype)
        out = self._net.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self._processor.batch_decode(new_tokens, skip_special_tokens=True)[0]


def highlight(frame: np.ndarray, mask: np.ndarray) -> Image.Image | None:
    """The object's crop with the background dimmed, upscaled to at least ``MIN_SIDE``; None for an empty mask."""
    box = box_from_mask(mask)
    if box is None:
        return None
    keep = np.where(mask[..., None], 1.0, BACKGROUND_KEEP)
    dimmed = (frame.astype(np.float32) * keep).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(crop(dimmed, box, pad=0.15)))
    scale = MIN_SIDE / min(image.size)
    if scale > 1:
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
        )
    return image


def clean_answer(text: str, max_chars: int) -> str:
    """One line, no chat preamble or quotes, cut at a word boundary to ``max_chars``."""
    text = "".join(ch for ch in text if (ch.isprintable() or ch.isspace()) and ch != "\ufffd")
    text = " ".join(text.split())
    text = _PREFIX.sub("", text).strip(" \"'`.:;,-")
    if len(text) > max_chars:
        cut = text[:max_chars].rsplit(" ", 1)[0] if " " in text[:max_chars] else text[:max_chars]
        text = cut.rstrip(" ,;:-")
    return text
