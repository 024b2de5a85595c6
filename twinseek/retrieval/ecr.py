"""Embedding-centric reasoning (ECR) texts: one description per video, stored in ``videos.ecr_text``.

Three generators, all recording their source beside the text:

- ``template`` (always available): a deterministic description built from the twin
  (:func:`twinseek.twins.views.template_ecr`);
- ``llm``: an LLM summary of the compact twin JSON (embedded default: the local llama.cpp model);
- ``vlm`` (paper tier): a Qwen2-VL-family model describing sampled frames of the video itself.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from twinseek.config import SamplingSettings
from twinseek.errors import TwinseekError
from twinseek.media.decode import decode_video
from twinseek.prompts import ecr as prompts
from twinseek.twins.model import Twin
from twinseek.twins.views import compact_json, template_ecr

logger = logging.getLogger(__name__)

class EcrGenerator(Protocol):
    @property
    def source(self) -> str: ...

    def generate(self, twin: Twin) -> str: ...


class TemplateEcr:
    source = "template"

    def generate(self, twin: Twin) -> str:
        return template_ecr(twin)


class LLMEcr:
    """An LLM's description of the compact twin; falls back to the template when the LLM fails (logged)."""

    def __init__(self, llm, max_tokens: int = 120, max_frames: int = 4) -> None:  # type: ignore[no-untyped-def]
        self.llm = llm
        self.max_tokens = max_tokens
        self.max_frames = max_frames

    @property
    def source(self) -> str:
        return f"llm:{self.llm.model}:{prompts.VERSION}"

    def generate(self, twin: Twin) -> str:

        try:
            text = self.llm.chat_text(prompts.ecr_messages(compact_json(twin, max_frames=self.max_frames)),
                                      max_tokens=self.max_tokens).strip()
        except TwinseekError as exc:
            logger.warning("LLM ECR failed for %s (%s); using the template", twin.video.video_id, exc)
            return template_ecr(twin)
        # the template keeps the twin's facts next to the LLM's reading of them
        return f"{text} {template_ecr(twin)}" if text else template_ecr(twin)


def ensure_ecr(store, generator: EcrGenerator, force: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Write ECR texts for the videos that lack one from this generator; returns how many were written."""
    from tqdm.auto import tqdm

    todo = [v.video_id for v in store.videos() if force or not v.ecr_text or v.ecr_source != generator.source]
    for video_id in tqdm(todo, desc="ECR", unit="video", disable=not todo or None):
        store.set_ecr(video_id, generator.generate(store.get_twin(video_id, refinements=False)), generator.source)
    return len(todo)


VIDEO_PROMPT_FALLBACK = (
    "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
)


class VlmEcr:
    """Paper tier: a Qwen2-VL-family model describes uniformly sampled frames of the video itself."""

    def __init__(self, model: str, device: str = "auto", frames: int = 8, max_new_tokens: int = 96,
                 max_side: int = 448) -> None:
        from twinseek.weights import WeightsSpec, model_dtype, resolve_device, resolve_source

        self.spec = WeightsSpec("Qwen2.5-VL (ECR)", "ecr_vlm", "Qwen/Qwen2.5-VL-3B-Instruct", section="retrieval")
        self.model = model
        self.device = resolve_device(device)
        self.dtype = model_dtype(self.device)
        self.source_path = resolve_source(model, self.spec)
        self.frames, self.max_new_tokens, self.max_side = frames, max_new_tokens, max_side
        self._net: Any = None

    @property
    def source(self) -> str:
        return f"vlm:{self.model}:{prompts.VERSION}"

    def _load(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from twinseek.weights import load_pretrained

        self._processor = load_pretrained(AutoProcessor, self.source_path, self.spec)
        net = load_pretrained(AutoModelForImageTextToText, self.source_path, self.spec, dtype=self.dtype)
        self._net = net.to(self.device).eval()

    def generate(self, twin: Twin) -> str:
        import numpy as np

        video = decode_video(twin.video.path, SamplingSettings(frames=self.frames, max_side=self.max_side))
        frames = video.frames if len(video.frames) % 2 == 0 else video.frames + video.frames[-1:]
        return self.describe(np.stack(frames))

    def describe(self, frames) -> str:  # type: ignore[no-untyped-def]
        """Description of a ``(T, H, W, 3)`` uint8 frame stack (T even: Qwen2-VL merges frame pairs)."""
        import torch

        if self._net is None:
            self._load()
        if getattr(self._processor, "chat_template", None) is None:  # published checkpoints ship one
            prompt = VIDEO_PROMPT_FALLBACK.format(question=prompts.VLM_ECR_PROMPT)
        else:
            messages = [{"role": "user",
                         "content": [{"type": "video"}, {"type": "text", "text": prompts.VLM_ECR_PROMPT}]}]
            prompt = self._processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self._processor(text=[prompt], videos=[frames], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self._net.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        text = self._processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
        return " ".join(text.split())
