"""Dense video-level retrieval: one vector per video, searched with one vector per query.

* :class:`EcrTextEmbedder` (embedded default): embeds each video's ECR text (``videos.ecr_text``; when empty, the
  deterministic :func:`template_ecr` summary of its twin) with MiniLM, and queries with the same encoder.
* :class:`TaraEmbedder` (paper tier, TARA, arXiv 2512.13511): a Qwen2-VL-family MLLM prompted with an explicit
  one-word limitation (EOL); the embedding is the final hidden state at the last attended prompt position,
  L2-normalised. Videos, texts and composed (video + edit text) queries share one space.

:class:`DenseIndex` keeps the vectors under ``<store>/index/dense/`` and the embedded texts in the
``dense_items`` table, synced like the component index.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel

from twinseek.config import RetrievalSettings, SamplingSettings
from twinseek.errors import ModelUnavailableError, VideoError
from twinseek.media.decode import decode_video, iter_frames, probe, uniform_picks
from twinseek.retrieval.catalogue import CatalogIndex, digest, params_from
from twinseek.retrieval.encoders import EmbeddingBackend, MiniLMEncoder, TextEncoder, text_encoder
from twinseek.twins.model import Twin
from twinseek.twins.store import TwinStore
from twinseek.twins.views import TEXT_VERSION, scene_gist, scene_gists, template_ecr
from twinseek.weights import is_hub_id, model_dtype, resolve_device

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class DenseInput:
    """What a video embedder may use: the file (for MLLMs) and the video's text (ECR or template)."""

    video_id: str
    path: str
    text: str
    start_s: float | None = None  # a scene's span (None: the whole video)
    end_s: float | None = None


class VideoEmbedder(Protocol):
    """Embeds whole videos and text queries into one space (rows L2-normalised, float32)."""

    model: str
    tier: str

    @property
    def fingerprint(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_videos(self, videos: Sequence[DenseInput]) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


class DenseHit(BaseModel):
    video_id: str
    score: float


def dense_text(twin: Twin) -> dict[str, str]:
    """The text a video is embedded by: the scene gist, plus a model-written ECR when there is one.

    The template ECR's per-object sentences are left out: on the dev bench they made whole-video retrieval
    worse (noisy crop labels dilute the gist), and compositional search matches objects anyway.
    """
    gist = scene_gist(twin)
    ecr, source = (twin.video.ecr_text or "").strip(), twin.video.ecr_source or "template"
    if ecr and source != "template":
        return {"source": source, "text": f"{gist} {ecr}".strip()}
    if gist:
        return {"source": "gist", "text": gist}
    return {"source": "template", "text": ecr or template_ecr(twin)}


def dense_rows(twin: Twin) -> list[dict[str, Any]]:
    """The dense items of a video: one (:func:`dense_text`, the whole video) for a video of one scene; for a video
    of several scenes (:func:`~twinseek.twins.scenes.scenes`), one per scene (its gist, spanning it), and the
    whole-video text as well when a model wrote an ECR for it (that text describes the whole video)."""
    gists = scene_gists(twin)
    whole: dict[str, Any] = dict(dense_text(twin), start_s=None, end_s=None)
    if len(gists) == 1 and gists[0][0] is None:
        return [whole]
    rows: list[dict[str, Any]] = [
        {"source": "scene", "text": text, "start_s": round(part.start_s, 3), "end_s": round(part.end_s, 3)}
        for part, text in gists if part is not None and text]
    if whole["source"] not in ("gist", "template") or not rows:
        rows.append(whole)
    return rows


class EcrTextEmbedder:
    """Video = its ECR (or template) text embedded with a sentence encoder; queries with the same encoder."""

    tier = "embedded"

    def __init__(self, encoder: TextEncoder | None = None, batch_size: int = 64) -> None:
        self.encoder = encoder or MiniLMEncoder()
        self.model = f"ecr-text:{self.encoder.model}"
        self.batch_size = batch_size

    @property
    def fingerprint(self) -> str:
        return f"ecr-text;{getattr(self.encoder, 'fingerprint', self.encoder.model)};dense-text=4;{TEXT_VERSION}"

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed_videos(self, videos: Sequence[DenseInput]) -> np.ndarray:
        return self.encoder.encode([v.text for v in videos], batch_size=self.batch_size)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_queries(list(texts), batch_size=self.batch_size)


# -- TARA ------------------------------------------------------------------------------------------------------
TEXT_PROMPT = "<sent>\nSummary above sentence in one word:"
VIDEO_PROMPT = "<video>\nSummary above video in one word:"
COMPOSED_PROMPT = (
    "Source video: <video>\nEdit instruction: <sent>\nLook at the attached video carefully. The provided text is "
    "instruction to edit the video. Imagine this edit instruction being applied to the provided video frame.\n"
    "Summarize the resulting edited video in one word:"
)
# Used only when the processor has no chat template (the published Qwen2-VL checkpoints ship one).
FALLBACK_TEMPLATE = "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
QWEN_VIDEO_TOKENS = "<|vision_start|><|video_pad|><|vision_end|>"


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at each row's last attended position: index -1 under left padding, ``len - 1`` under right
    padding (pooling at a pad position silently ruins the embedding)."""
    mask = attention_mask.bool()
    last = mask.shape[1] - 1 - mask.flip(dims=[1]).int().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def _content(prompt: str, sent: str | None) -> list[dict[str, str]]:
    """A chat message's content parts for an EOL prompt: ``<video>`` becomes a video part."""
    text = prompt.replace("<sent>", sent or "")
    parts: list[dict[str, str]] = []
    before, marker, after = text.partition("<video>")
    if before:
        parts.append({"type": "text", "text": before})
    if marker:
        parts.append({"type": "video"})
    if after:
        parts.append({"type": "text", "text": after})
    return parts


def resolve_model(source: str) -> str:
    """A local model folder or a hub id already in the cache; never downloads."""
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path)
    from huggingface_hub import try_to_load_from_cache

    if is_hub_id(source) and isinstance(try_to_load_from_cache(source, "config.json"), str):
        return source
    raise ModelUnavailableError(
        f"TARA model {source!r} is neither a local folder nor a cached hub id; twinseek never downloads at run "
        f"time. Set retrieval.tara_model (TWINSEEK_RETRIEVAL__TARA_MODEL=/path/to/model) to a Qwen2-VL-family "
        f"checkpoint folder (e.g. fetched with `hf download {source} --local-dir ...` on a connected machine)."
    )


class TaraEmbedder:
    """TARA-style EOL embeddings from a Qwen2-VL-family MLLM (``AutoModelForImageTextToText``)."""

    tier = "paper"

    def __init__(self, model: str, device: str = "auto", frames: int = 16, max_side: int = 448,
                 batch_size: int = 4, padding_side: Literal["left", "right"] | None = "left") -> None:
        self.model = model
        self.source = resolve_model(model)
        self.device = resolve_device(device)
        self.dtype = model_dtype(self.device)
        self.frames, self.max_side, self.batch_size = frames, max_side, batch_size
        self.padding_side = padding_side
        self._net: Any = None
        self._processor: Any = None

    @property
    def fingerprint(self) -> str:
        return f"tara;{self.model};frames={self.frames};eol=1"

    def load(self) -> None:
        if self._net is not None:
            return
        from transformers import AutoModelForImageTextToText, AutoProcessor

        logger.info("loading TARA MLLM from %s on %s", self.source, self.device)
        self._processor = AutoProcessor.from_pretrained(self.source, local_files_only=True)
        if self.padding_side:
            self._processor.tokenizer.padding_side = self.padding_side
        net = AutoModelForImageTextToText.from_pretrained(self.source, local_files_only=True, dtype=self.dtype)
        self._net = net.to(self.device).eval()  # type: ignore[arg-type]  # transformers' .to stub

    @property
    def dim(self) -> int:
        self.load()
        config = self._net.config
        return int(getattr(config, "text_config", config).hidden_size)

    def prompt(self, template: str, sent: str | None = None) -> str:
        """The EOL prompt wrapped in the model's chat template (generation prompt appended)."""
        self.load()
        content = _content(template, sent)
        if getattr(self._processor, "chat_template", None) is None:
            flat = "".join(QWEN_VIDEO_TOKENS if p["type"] == "video" else p["text"] for p in content)
            return FALLBACK_TEMPLATE.format(content=flat)
        messages = [{"role": "user", "content": content}]
        return self._processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @torch.inference_mode()
    def _embed(self, prompts: list[str], videos: list[np.ndarray] | None = None) -> np.ndarray:
        inputs = self._processor(text=prompts, videos=videos, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device)
        if "pixel_values_videos" in inputs:
            inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.dtype)
        hidden = self._net(**inputs, output_hidden_states=True).hidden_states[-1]
        pooled = last_token_pool(hidden, inputs["attention_mask"]).float()
        return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        prompts = [self.prompt(TEXT_PROMPT, t) for t in texts]
        chunks = [self._embed(prompts[i:i + self.batch_size]) for i in range(0, len(prompts), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)

    def frames_of(self, path: str | Path, start_s: float | None = None, end_s: float | None = None) -> np.ndarray:
        """``self.frames`` uniformly sampled RGB frames, (T, H, W, 3) uint8: of the whole video, or of the span
        ``start_s``-``end_s`` (a scene)."""
        if start_s is None or end_s is None:
            decoded = decode_video(path, SamplingSettings(frames=self.frames, max_frames=self.frames,
                                                          max_side=self.max_side))
            return np.stack(decoded.frames)
        info = probe(path)
        first = min(int(start_s * info.fps), max(info.frame_count - 1, 0))
        last = max(first, min(int(np.ceil(end_s * info.fps)) - 1, info.frame_count - 1))
        wanted = {first + i for i in uniform_picks(last - first + 1, self.frames)}
        frames = [frame for _, frame in iter_frames(path, self.max_side, wanted)]
        if not frames:
            raise VideoError(Path(path), f"no frame decoded in {start_s:.1f}-{end_s:.1f} s")
        return np.stack(frames)

    def embed_video_frames(self, frames: np.ndarray, edit: str | None = None) -> np.ndarray:
        """One video (T, H, W, 3); with ``edit``, the composed (video + edit instruction) query."""
        self.load()
        prompt = self.prompt(COMPOSED_PROMPT if edit is not None else VIDEO_PROMPT, edit)
        return self._embed([prompt], [np.asarray(frames)])[0]

    def embed_composed(self, path: str | Path, edit: str) -> np.ndarray:
        return self.embed_video_frames(self.frames_of(path), edit)

    def embed_videos(self, videos: Sequence[DenseInput]) -> np.ndarray:
        if not videos:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.embed_video_frames(self.frames_of(v.path, v.start_s, v.end_s)) for v in videos])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_texts(texts)


# -- the dense index ---------------------------------------------------------------------------------------------
class DenseSource:
    """One item per video, its ECR text (or template summary), or one per scene of a video of several
    (:func:`dense_rows`), embedded by a :class:`VideoEmbedder`."""

    name = "dense"
    table = "dense_items"

    def __init__(self, embedder: VideoEmbedder) -> None:
        self.embedder = embedder

    @property
    def fingerprint(self) -> str:
        return self.embedder.fingerprint

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def signatures(self, store: TwinStore) -> dict[str, str]:
        return {r.video_id: digest((r.content_hash, r.mask_dir, r.ingested_at, r.ecr_text, r.ecr_source, r.relations,
                                    r.last_relation)) for r in store.video_revisions()}

    def rows(self, store: TwinStore, video_id: str) -> list[dict[str, Any]]:
        return dense_rows(store.get_twin(video_id, refinements=False))  # retrieval sees ingest rows only

    def embed(self, store: TwinStore, rows: list[dict[str, Any]]) -> np.ndarray:
        inputs = [DenseInput(r["video_id"], store.get_video(r["video_id"]).path, r["text"], r.get("start_s"),
                             r.get("end_s")) for r in rows]
        return self.embedder.embed_videos(inputs)


def embedder_from_settings(settings: RetrievalSettings | None = None, *, cache_dir: Path | None = None,
                           backend: EmbeddingBackend | None = None) -> VideoEmbedder:
    """The configured dense embedder: TARA, or the ECR texts embedded with ``query_encoder`` (a local folder)
    or else ``retrieval.text_encoder``."""
    settings = settings or RetrievalSettings()
    if settings.dense_embedder == "tara":
        return TaraEmbedder(settings.tara_model, settings.device, frames=settings.tara_frames)
    encoder = (MiniLMEncoder(settings.query_encoder, settings.encoder_device) if settings.query_encoder else
               text_encoder(settings.text_encoder, device=settings.encoder_device, cache_dir=cache_dir,
                            backend=backend))
    return EcrTextEmbedder(encoder, settings.batch_size)


class DenseIndex(CatalogIndex):
    """Video-level vectors of a store: ``dense_items`` table + ``<store>/index/dense/``."""

    def __init__(self, store: TwinStore, embedder: VideoEmbedder | None = None,
                 settings: RetrievalSettings | None = None) -> None:
        settings = settings or RetrievalSettings()
        self.embedder = embedder or embedder_from_settings(settings)
        super().__init__(store, DenseSource(self.embedder), params_from(settings, 1), settings.commit_every)

    def search_text(self, query: str, k: int = 10) -> list[DenseHit]:
        """Top-``k`` videos for a text query, each scored by its best item (a video of several scenes has one
        per scene)."""
        vector = self.embedder.embed_queries([query])
        total = len(self.catalogue().ids)
        if not total or k <= 0:
            return []
        want = min(total, k)
        while True:
            hits = self.search(vector, want)[0]
            videos = self.videos_of(np.array([h.id for h in hits], np.int64))
            best: dict[str, float] = {}
            for hit, video in zip(hits, videos):
                if video is not None and video not in best:  # hits come best first
                    best[video] = hit.score
            if len(best) >= k or want >= total:
                return [DenseHit(video_id=v, score=s) for v, s in list(best.items())[:k]]
            want = min(total, want * 2 + k)  # several items of one video took places: look further
