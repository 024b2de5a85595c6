"""Embedding-centric reasoning (ECR) texts: one description per video, stored in ``videos.ecr_text``.

Three generators, all recording their source beside the text:

- ``template`` (always available): a deterministic description built from the twin;
- ``llm``: an LLM summary of the compact twin JSON (embedded default: the local llama.cpp model);
- ``vlm`` (paper tier): a Qwen2-VL-family model describing sampled frames of the video itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from twinseek.prompts import ecr as prompts
from twinseek.twins.model import Relation, Track, Twin, screen_lines

logger = logging.getLogger(__name__)

MAX_OBJECTS = 5
SCENE_WORDS = 6
MAX_RELATIONS = 6
PAIR_PREDICATES = ("above", "below", "left of", "right of", "near", "overlapping", "in front of", "behind",
                   "approaching", "moving away from")


class EcrGenerator(Protocol):
    @property
    def source(self) -> str: ...

    def generate(self, twin: Twin) -> str: ...


def _position_word(x: float, y: float) -> str:
    horizontal = "left" if x < 0.33 else "right" if x > 0.67 else "centre"
    vertical = "top" if y < 0.33 else "bottom" if y > 0.67 else ""
    return f"{vertical} {horizontal}".strip() if vertical else horizontal


def _motion_phrase(track: Track) -> str:
    if track.direction == "stationary":
        return "staying still"
    if track.direction == "in place":
        return "moving about"
    return f"moving {track.direction}"


UNSURE_SCORE = 0.15  # below this a category is a guess, and the text says so


def _name(track: Track) -> str:
    if track.category_score < UNSURE_SCORE:
        return f"object (unclear, perhaps a {track.category})"
    name = track.category
    if track.category_group and track.category_group.lower() not in name.lower():
        name += f" (a {track.category_group})"
    return name


GIST_OBJECT_SCORE = 0.5  # objects named this confidently join the gist
MAX_SCREEN_LINES = 6


def scene_gist(twin: Twin) -> str:
    """The video's gist: its whole-frame labels, the objects named with confidence and the on-screen text,
    without the noisier per-object guesses."""
    parts = []
    if twin.video.scene:
        parts.append("Seen in the video: " + ", ".join(label for label, _ in twin.video.scene[:SCENE_WORDS]) + ".")
    named = list(dict.fromkeys(_name(t) for t in sorted(twin.tracks, key=lambda t: -t.mean_area * t.frame_count)
                               if t.category_score >= GIST_OBJECT_SCORE))[:MAX_OBJECTS]
    if named:
        parts.append("Objects: " + ", ".join(named) + ".")
    if twin.video.screen_text:
        parts.append(screen_sentence(twin))
    return " ".join(parts)


def screen_sentence(twin: Twin) -> str:
    lines = screen_lines(twin.video.screen_text, limit=MAX_SCREEN_LINES)
    return "On-screen text: " + " / ".join(f'"{line}"' for line in lines) + "." if lines else ""


def template_ecr(twin: Twin) -> str:
    """A deterministic description of the twin's main objects, their look, motion and relations."""
    tracks = sorted(twin.tracks, key=lambda t: -t.mean_area * t.frame_count)[:MAX_OBJECTS]
    sentences = [scene_gist(twin)] if twin.video.scene or twin.video.screen_text else []
    if not tracks:
        return " ".join(sentences + ["No object was clearly segmented."])
    positions = _mean_positions(twin)
    for t in tracks:
        x, y = positions.get(t.track_id, (0.5, 0.5))
        alternatives = [label for label, score in t.category_candidates[:2]
                        if label != t.category and score >= UNSURE_SCORE / 2]
        maybe = f", or perhaps a {' or a '.join(alternatives)}" if alternatives else ""
        look = f", {t.attributes}" if t.attributes else ""
        sentences.append(f"A {_name(t)}{maybe}{look}, {_motion_phrase(t)}, mostly in the "
                         f"{_position_word(x, y)} of the frame.")
    names = {t.track_id: t.category for t in twin.tracks}
    kept = {t.track_id for t in tracks}
    relations = _main_relations(twin.relations, kept)
    if relations:
        sentences.append(" ".join(f"The {names[r.subject_track]} is {r.predicate} the {names[r.object_track]}."
                                  for r in relations if r.object_track in names))
    return " ".join(sentences)


def _mean_positions(twin: Twin) -> dict[int, tuple[float, float]]:
    sums: dict[int, list[float]] = {}
    for inst in twin.instances:
        acc = sums.setdefault(inst.track_id, [0.0, 0.0, 0.0])
        acc[0] += inst.centroid[0]
        acc[1] += inst.centroid[1]
        acc[2] += 1
    return {tid: (a[0] / a[2], a[1] / a[2]) for tid, a in sums.items()}


def _main_relations(relations: Sequence[Relation], tracks: set[int]) -> list[Relation]:
    """The longest-lasting pair relation per (subject, object), one direction of each pair."""
    best: dict[tuple[int, int], Relation] = {}
    for r in relations:
        if r.object_track is None or r.predicate not in PAIR_PREDICATES:
            continue
        if r.subject_track not in tracks or r.object_track not in tracks or r.subject_track > r.object_track:
            continue
        key = (r.subject_track, r.object_track)
        if key not in best or (r.frame_end - r.frame_start) > (best[key].frame_end - best[key].frame_start):
            best[key] = r
    return list(best.values())[:MAX_RELATIONS]


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
        from twinseek.errors import TwinseekError

        try:
            text = self.llm.chat_text(prompts.ecr_messages(twin.to_compact_json(max_frames=self.max_frames)),
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

        from twinseek.config import SamplingSettings
        from twinseek.twins.decode import decode_video

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
