"""SAM-2 video segmentation and tracking, prompted with detector boxes on keyframes.

Two back ends: the ``sam2`` package (Meta's reference code and ``.pt`` checkpoints) and transformers'
``Sam2VideoModel``. Both share the prompting plan: seeds are linked across keyframes *before* prompting (the
video state is built once, every object is added at its first keyframe and a single propagation covers the
clip), and duplicates that linking could not see (an object that moved between keyframes) are merged
afterwards with the rule "a seed whose box overlaps an already-tracked object's mask at that frame with
IoU >= 0.5 is not a new object".
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from twinseek.errors import ConfigError, ModelUnavailableError
from twinseek.media.masks import mask_iou
from twinseek.twins.adapters.base import Box, Detection, SpecialistBase, TrackedObject, box_from_mask
from twinseek.twins.adapters.paper._common import (
    PaperSpecialist,
    WeightsSpec,
    box_iou,
    load_pretrained,
    model_dtype,
    resolve_device,
)
from twinseek.twins.model import Tier

log = logging.getLogger(__name__)

Masks = dict[int, dict[int, np.ndarray]]  # obj_id -> frame position -> bool mask (non-empty only)

# A config name hydra cannot find (OSError), or a checkpoint that does not fit the config (missing or
# unexpected keys, size mismatches).
_BUILD_ERRORS: tuple[type[Exception], ...] = (OSError, RuntimeError, KeyError, ValueError)

SAM2_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt"


@dataclass
class SeedPrompt:
    """One object to track: box prompts by frame position, and the best seed's label."""

    obj_id: int
    boxes: dict[int, Box] = field(default_factory=dict)
    label: str | None = None
    score: float = 0.0

    @property
    def first(self) -> int:
        return min(self.boxes)

    def take(self, pos: int, det: Detection, box: Box) -> None:
        self.boxes[pos] = box
        if det.score > self.score or self.label is None:
            self.label, self.score = det.label, float(det.score)


def link_seeds(
    seeds: Mapping[int, Sequence[Detection]], n_frames: int, frame_shape: tuple[int, int], iou: float = 0.5
) -> list[SeedPrompt]:
    """Group keyframe detections into objects by box IoU, in keyframe order.

    Within a keyframe an overlapping lower-scored box is a duplicate; across keyframes a box overlapping an
    object's latest seed box is the same (static) object and becomes an extra prompt for it.
    """
    prompts: list[SeedPrompt] = []
    for pos in sorted(p for p in seeds if 0 <= p < n_frames):
        taken: list[Box] = []
        for det in sorted(seeds[pos], key=lambda d: -d.score):
            box = _clip_box(det.box, frame_shape)
            if box is None or _overlaps(box, taken, iou):
                continue
            taken.append(box)
            match = _best_match(box, [p for p in prompts if pos not in p.boxes], iou)
            if match is None:
                match = SeedPrompt(obj_id=len(prompts) + 1)
                prompts.append(match)
            match.take(pos, det, box)
    return prompts


def _clip_box(box: Box, frame_shape: tuple[int, int]) -> Box | None:
    height, width = frame_shape
    x1, y1, x2, y2 = (float(np.clip(v, 0, lim)) for v, lim in zip(box, (width, height, width, height)))
    return (x1, y1, x2, y2) if x2 - x1 >= 1 and y2 - y1 >= 1 else None


def _overlaps(box: Box, others: Sequence[Box], iou: float) -> bool:
    return bool(others) and bool((box_iou(np.asarray(box), np.asarray(others)) >= iou).any())


def _best_match(box: Box, candidates: Sequence[SeedPrompt], iou: float) -> SeedPrompt | None:
    if not candidates:
        return None
    latest = np.asarray([p.boxes[max(p.boxes)] for p in candidates])
    overlaps = box_iou(np.asarray(box), latest)
    best = int(overlaps.argmax())
    return candidates[best] if overlaps[best] >= iou else None


def _same_object(
    prompt: SeedPrompt, own: dict[int, np.ndarray], other: dict[int, np.ndarray], iou: float
) -> bool:
    """Does ``prompt``'s first seed land on an already-tracked object's mask at that frame?"""
    pos = prompt.first
    other_mask = other.get(pos)
    if other_mask is None:
        return False
    other_box = box_from_mask(other_mask)
    if other_box is not None and box_iou(np.asarray(prompt.boxes[pos]), np.asarray([other_box]))[0] >= iou:
        return True
    return pos in own and mask_iou(own[pos], other_mask, empty=0.0) >= iou


def merge_tracks(
    prompts: Sequence[SeedPrompt], masks: Masks, source: str, iou: float = 0.5
) -> list[TrackedObject]:
    """Tracks from propagated masks, folding later-seeded duplicates into the earlier track; empty tracks go."""
    kept: list[tuple[SeedPrompt, dict[int, np.ndarray]]] = []
    for prompt in sorted(prompts, key=lambda p: (p.first, p.obj_id)):
        own = dict(masks.get(prompt.obj_id, {}))
        target = next(
            (k for k in kept if k[0].first < prompt.first and _same_object(prompt, own, k[1], iou)), None
        )
        if target is None:
            kept.append((prompt, own))
            continue
        log.debug("seed object %d duplicates track %d", prompt.obj_id, target[0].obj_id)
        for pos, mask in own.items():
            target[1].setdefault(pos, mask)
        if prompt.score > target[0].score:
            target[0].label, target[0].score = prompt.label, prompt.score
    return [
        TrackedObject(
            track_id=p.obj_id,
            masks=dict(sorted(m.items())),
            label=p.label,
            label_score=p.score,
            source=source,
        )
        for p, m in kept
        if m
    ]


def prompts_by_frame(prompts: Iterable[SeedPrompt]) -> list[tuple[int, list[tuple[int, Box]]]]:
    """``[(pos, [(obj_id, box), ...]), ...]`` in frame order."""
    grouped: dict[int, list[tuple[int, Box]]] = {}
    for prompt in prompts:
        for pos, box in prompt.boxes.items():
            grouped.setdefault(pos, []).append((prompt.obj_id, box))
    return sorted(grouped.items())


def collect_masks(into: Masks, frame_masks: Iterator[tuple[int, Sequence[int], np.ndarray]]) -> None:
    """Store the non-empty masks of ``(pos, obj_ids, bool (n, H, W))`` items."""
    for pos, obj_ids, stack in frame_masks:
        for obj_id, mask in zip(obj_ids, stack):
            if mask.any():
                into.setdefault(int(obj_id), {})[int(pos)] = mask


class _SeededSegmenter(SpecialistBase):
    """``segment`` for box-prompted trackers; subclasses implement ``_track``."""

    role = "segmenter"
    tier: Tier = "paper"
    link_iou: float = 0.5

    def segment(
        self, frames: Sequence[np.ndarray], seeds: Mapping[int, Sequence[Detection]]
    ) -> list[TrackedObject]:
        if len(frames) == 0:
            return []
        prompts = link_seeds(seeds, len(frames), frames[0].shape[:2], self.link_iou)
        if not prompts:
            log.info("no seeds to prompt SAM-2 with: no tracks")
            return []
        log.debug("SAM-2: %d objects from %d keyframes", len(prompts), len(seeds))
        masks = self._track(frames, prompts)
        return merge_tracks(prompts, masks, self.model, self.link_iou)

    def _track(self, frames: Sequence[np.ndarray], prompts: Sequence[SeedPrompt]) -> Masks:
        raise NotImplementedError


class Sam2PackageSegmenter(_SeededSegmenter):
    """SAM-2 through Meta's ``sam2`` package: a hydra config name and a ``.pt`` checkpoint."""

    def __init__(
        self, config: str, checkpoint: str | None, device: str = "auto", overrides: Sequence[str] = ()
    ) -> None:
        self.config = config
        self.checkpoint = _checked_checkpoint(checkpoint)
        self.device = resolve_device(device)
        self.overrides = list(overrides)
        self.model = f"sam2:{Path(config).stem}"
        self._predictor: Any = None

    def load(self) -> None:
        if self._predictor is not None:
            return
        try:
            from hydra.errors import HydraException
            from sam2.build_sam import build_sam2_video_predictor
        except ImportError as exc:
            raise ConfigError(
                "the sam2 package is not installed: `SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps "
                "sam2 && pip install hydra-core iopath` (or choose specialists.segmenter='sam2-hf')"
            ) from exc
        log.info("loading SAM-2 %s from %s on %s", self.config, self.checkpoint, self.device)
        try:
            self._predictor = build_sam2_video_predictor(
                self.config, str(self.checkpoint), device=self.device, hydra_overrides_extra=self.overrides
            )
        except _BUILD_ERRORS + (HydraException,) as exc:
            raise ConfigError(
                f"cannot build SAM-2 from config {self.config!r} and checkpoint {self.checkpoint}: {exc} "
                "(paper.sam2_config must match the checkpoint, e.g. configs/sam2.1/sam2.1_hiera_l.yaml)"
            ) from exc
        if not self.device.startswith("cuda"):
            self._predictor.memory_attention.register_forward_pre_hook(
                _memory_to_query_dtype, with_kwargs=True
            )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        # Meta's reference runs SAM-2 under bf16 autocast on CUDA; on CPU that is slow, so fp32.
        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=model_dtype(self.device))
        return contextlib.nullcontext()

    def _track(self, frames: Sequence[np.ndarray], prompts: Sequence[SeedPrompt]) -> Masks:
        self.load()
        pred = self._predictor
        masks: Masks = {}
        with torch.inference_mode(), self._autocast():
            state = self._init_state(frames)
            for pos, objects in prompts_by_frame(prompts):
                for obj_id, box in objects:
                    pred.add_new_points_or_box(
                        state, frame_idx=pos, obj_id=obj_id, box=np.asarray(box, np.float32)
                    )
            collect_masks(masks, _package_frames(pred.propagate_in_video(state)))
            start = min(p.first for p in prompts)
            if start > 0:  # frames before the first keyframe
                collect_masks(
                    masks,
                    _package_frames(pred.propagate_in_video(state, start_frame_idx=start, reverse=True)),
                )
        return masks

    def _init_state(self, frames: Sequence[np.ndarray]) -> Any:
        # The package reads a video from disk only (an .mp4 or a folder of <index>.jpg); it loads every frame
        # into memory in init_state, so the folder can go right after.
        with tempfile.TemporaryDirectory(prefix="twinseek-sam2-") as folder:
            for i, frame in enumerate(frames):
                Image.fromarray(np.ascontiguousarray(frame)).save(Path(folder) / f"{i:05d}.jpg", quality=95)
            return self._predictor.init_state(video_path=folder, offload_video_to_cpu=self.device != "cpu")


def _memory_to_query_dtype(
    module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """sam2 stores memories in bf16 and relies on CUDA autocast to mix them with fp32 features. Without
    autocast (CPU, MPS), an object tracked on frames before its first prompt attends to bf16-only memory and
    the matmul fails, so cast the memory to the query's dtype."""
    curr = kwargs.get("curr")
    query = curr[0] if isinstance(curr, list) else curr
    memory = kwargs.get("memory")
    if isinstance(query, torch.Tensor) and isinstance(memory, torch.Tensor) and memory.dtype != query.dtype:
        kwargs["memory"] = memory.to(query.dtype)
    return args, kwargs


def _package_frames(
    items: Iterable[tuple[int, Sequence[int], torch.Tensor]],
) -> Iterator[tuple[int, Sequence[int], np.ndarray]]:
    for pos, obj_ids, logits in items:
        yield pos, obj_ids, (logits[:, 0] > 0).cpu().numpy()


def _checked_checkpoint(checkpoint: str | None) -> Path:
    path = Path(checkpoint).expanduser() if checkpoint else None
    if path is not None and path.is_file():
        return path
    detail = "no checkpoint configured" if path is None else f"no file {checkpoint!r}"
    raise ModelUnavailableError(
        f"SAM-2 checkpoint is not available ({detail}); twinseek never downloads at run time. Set "
        f"paper.sam2_checkpoint (e.g. TWINSEEK_PAPER__SAM2_CHECKPOINT=/path/to/sam2.1_hiera_large.pt) and a matching "
        f"paper.sam2_config. On a connected machine: `wget {SAM2_CHECKPOINT_URL}` and copy the file here; or use "
        f"specialists.segmenter='sam2-hf' with a cached transformers checkpoint."
    )


class Sam2HFSegmenter(_SeededSegmenter, PaperSpecialist):
    """SAM-2 through transformers' ``Sam2VideoModel`` (needs torchvision for its processors)."""

    spec = WeightsSpec("SAM-2 (transformers)", "sam2_hf", "facebook/sam2.1-hiera-large")

    def _load(self) -> None:
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        self._processor = load_pretrained(Sam2VideoProcessor, self.source, self.spec)
        net = load_pretrained(Sam2VideoModel, self.source, self.spec, dtype=self.dtype)
        self._net = net.to(self.device).eval()

    @torch.inference_mode()
    def _track(self, frames: Sequence[np.ndarray], prompts: Sequence[SeedPrompt]) -> Masks:
        self.load()
        proc, net = self._processor, self._net
        session = proc.init_video_session(video=list(frames), inference_device=self.device, dtype=self.dtype)
        # Run each prompted frame right after adding its boxes: transformers treats any object with pending
        # inputs as a new conditioning frame wherever the model runs next.
        for pos, objects in prompts_by_frame(prompts):
            proc.add_inputs_to_inference_session(
                inference_session=session,
                frame_idx=pos,
                obj_ids=[obj_id for obj_id, _ in objects],
                input_boxes=[[list(box) for _, box in objects]],
            )
            net(inference_session=session, frame_idx=pos)
        size = [list(frames[0].shape[:2])]
        masks: Masks = {}
        collect_masks(masks, self._frames(net.propagate_in_video_iterator(session), size))
        start = min(p.first for p in prompts)
        if start > 0:
            collect_masks(
                masks,
                self._frames(
                    net.propagate_in_video_iterator(session, start_frame_idx=start, reverse=True), size
                ),
            )
        return masks

    def _frames(
        self, outputs: Iterable[Any], size: list[list[int]]
    ) -> Iterator[tuple[int, Sequence[int], np.ndarray]]:
        for out in outputs:
            stack = self._processor.post_process_masks([out.pred_masks.float()], original_sizes=size)[0]
            yield out.frame_idx, out.object_ids, stack[:, 0].cpu().numpy().astype(bool)
