"""Settings: explicit argument > environment (``TWINSEEK_*``) > profile default > built-in default.

Nested fields use ``__`` in the environment, e.g. ``TWINSEEK_SAMPLING__FRAMES=24`` or
``TWINSEEK_PAPER__OWLV2=/models/owlv2``. Settings are strict: an unknown key, as a keyword argument
(``load_settings(retreival=...)``, ``Agent.open(store, retreival=...)``) or as a ``TWINSEEK_*`` variable
(``TWINSEEK_LLM__TIMEOUT``), raises a :class:`~twinseek.errors.ConfigError` naming the closest valid key. The few
``TWINSEEK_*`` variables that are not settings are listed in :data:`NON_SETTINGS_VARIABLES`. A *profile* chooses which adapter serves each specialist role:
``embedded`` (the default, offline on CPU with weights from registry packages) or ``paper`` (the models the
papers use, loaded from a local path or the user's hub cache).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twinseek.errors import ConfigError

ENV_PREFIX = "TWINSEEK_"
ENV_NESTED = "__"
# Variables with the prefix that are not settings; every other TWINSEEK_* variable must name a setting.
NON_SETTINGS_VARIABLES = frozenset({
    "TWINSEEK_VENV",  # scripts/bootstrap.sh and scripts/test.sh: where the virtual environment lives
    "TWINSEEK_WEB_TOKEN",  # the web app's bearer token (a CLI option's environment fallback)
    "TWINSEEK_NO_BROWSER",  # tests/web/test_browser.py and scripts/bootstrap.sh: skip the browser tests
    "TWINSEEK_CHROMIUM",  # tests/web/test_browser.py: the chromium binary to drive
    "TWINSEEK_ARTIFACTS",  # tests/web/test_browser.py: where screenshots go
})

ProfileName = Literal["embedded", "paper"]
Tier = Literal["embedded", "paper"]

SegmenterName = Literal["embedded", "sam2", "sam2-hf"]
DetectorName = Literal["embedded", "owlv2", "ultralytics"]
DepthName = Literal["none", "depth-anything"]
DescriberName = Literal["embedded", "qwen-vl"]
PoseName = Literal["none", "embedded"]


class _Section(BaseModel):
    """A group of settings: a misspelt key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SamplingSettings(_Section):
    """How frames are sampled from a video and the limits that keep memory bounded."""

    frames: int = Field(16, ge=1, description="Sampled frames of a short video (ignored when fps is set): a video "
                        "gets max(frames, frames_per_minute x minutes), at most max_frames, spread over its shots.")
    frames_per_minute: float = Field(8.0, ge=0, description="How a long video's frame budget grows: this many "
                                     "frames per minute of video once that exceeds `frames` (2 minutes at the "
                                     "defaults); 0 = every video gets `frames`.")
    frames_per_shot: int = Field(64, ge=1, description="At most this many sampled frames in one shot (a long "
                                 "unbroken shot does not take the whole budget); one-shot videos are sampled "
                                 "uniformly.")
    chunk_frames: int = Field(64, ge=1, description="A video whose sampled frames exceed this is perceived a chunk "
                              "of consecutive shots at a time (at most this many frames each, staged in the store "
                              "so that a stopped ingest resumes); tracks stay within a chunk.")
    fps: float | None = Field(None, gt=0, description="Sample at this rate instead of a fixed count.")
    max_frames: int = Field(480, ge=1, description="Hard cap on sampled frames per video (480: an hour at 8 frames "
                            "a minute); short videos keep `frames`.")
    max_side: int = Field(640, ge=32, description="Longest side of a decoded frame, in pixels.")
    max_file_mb: float = Field(4096, gt=0, description="Files larger than this are refused.")
    max_duration_s: float = Field(4 * 3600, gt=0, description="Videos longer than this are refused.")
    max_audio_s: float = Field(600, gt=0, description="Speech: only the first this many seconds of a video's "
                               "sound are decoded and transcribed (a 2-hour video costs at most this much).")


class ShotSettings(_Section):
    """Shot boundaries (PySceneDetect's ContentDetector on small frames of the ingest's own decoding pass)."""

    detect: bool = Field(True, description="Find shots at ingest; off: the whole video is one shot.")
    threshold: float = Field(27.0, gt=0, description="ContentDetector threshold on the mean HSV change between "
                             "analysed frames (PySceneDetect's default).")
    min_scene_len: int = Field(15, ge=0, description="Frames a shot lasts at least; closer cuts are merged "
                               "(PySceneDetect's default).")
    analysis_width: int = Field(256, ge=32, description="Width of the frames the detector compares "
                                "(PySceneDetect's own downscale target).")
    analysis_fps: float = Field(30.0, gt=0, description="The detector sees at most this many frames a second: "
                                "higher rates are skipped down to it (PySceneDetect's frame_skip, which it advises "
                                "only for high frame rates, as its threshold is tuned on adjacent frames).")
    candidate_fps: float = Field(8.0, ge=0, description="Frames a second the open shot keeps as candidates for its "
                                 "sampled frames (thinned as it grows; a pick lands within half a step of where it "
                                 "should); 0 = every frame. Each candidate is converted at max_side, which costs.")


class SpecialistSettings(_Section):
    """Which adapter serves each role; ``None`` means the profile's choice."""

    segmenter: SegmenterName | None = None
    detector: DetectorName | None = None
    depth: DepthName | None = None
    describer: DescriberName | None = None
    pose: PoseName | None = None  # keypoints of person tracks, read by the action rules ("none": no actions)
    speech: str | None = Field(None, description="Speech recogniser: 'embedded' (Whisper base, from registry "
                               "packages), 'none' (off), or the path of any faster-whisper (CTranslate2) model folder.")


class PerceptionSettings(_Section):
    """Extra eyes of the twin: COCO boxes as segmentation seeds (embedded profile) and on-screen text (any)."""

    coco_detector: bool = Field(True, description="Embedded profile: SSD-MobileNet-v2 COCO boxes seed the tracker.")
    detector_keyframes: int = Field(4, ge=1, description="Sampled frames the COCO detector runs on (uniformly "
                                    "spread); flow carries its boxes to the frames between.")
    detector_threshold: float = Field(0.5, ge=0, le=1, description="COCO score from which a box seeds an object.")
    detector_confident: float = Field(0.6, ge=0, le=1, description="COCO score from which the detector's "
                                      "category wins over the ImageNet classifier (which then only refines it).")
    ocr: bool = Field(True, description="Read on-screen text (PP-OCRv4) on a few keyframes where text is found.")
    ocr_keyframes: int = Field(3, ge=1, description="Sampled frames tested for text (and read where found).")
    ocr_min_score: float = Field(0.6, ge=0, le=1, description="Recognition confidence a text line needs.")


class WatchSettings(_Section):
    """``twinseek watch``: a watched folder's videos are ingested once they stop changing."""

    settle_s: float = Field(2.0, ge=0, description="Seconds a file's size and modification time must stay the "
                            "same (checked by polling stat) before it is ingested: a file still being copied waits.")
    poll_s: float = Field(0.5, gt=0, description="How often the files not yet settled are checked.")
    rescan_s: float | None = Field(60.0, gt=0, description="Rescan the whole folder this often, for changes the "
                                   "file-system events missed (None: only at start).")
    force_polling: bool | None = Field(None, description="Poll the folder instead of using inotify events (network "
                                       "file systems); None lets watchfiles decide.")


# Profile defaults for the specialist roles.
PROFILES: dict[str, dict[str, str]] = {
    "embedded": {"segmenter": "embedded", "detector": "embedded", "depth": "none", "describer": "embedded",
                 "pose": "embedded", "speech": "embedded"},
    "paper": {"segmenter": "sam2", "detector": "owlv2", "depth": "depth-anything", "describer": "qwen-vl",
              "pose": "embedded", "speech": "embedded"},
}

DEFAULT_VOCABULARY = (
    "person", "bicycle", "car", "motorcycle", "bus", "truck", "boat", "airplane", "train", "bird", "cat", "dog",
    "horse", "sheep", "cow", "camel", "elephant", "bear", "zebra", "giraffe", "fish", "swan", "duck", "kite",
    "surfboard", "skateboard", "ball", "backpack", "umbrella", "handbag", "chair", "couch", "table", "bottle",
    "cup", "laptop", "phone", "book", "tree", "building", "sign", "fence", "ladder", "cart",
)


class PaperModelSettings(_Section):
    """Paper-tier weights: a local directory or a hub id already in the user's cache (no downloads)."""

    sam2_config: str = "configs/sam2.1/sam2.1_hiera_l.yaml"
    sam2_checkpoint: str | None = Field(None, description="Path to a SAM-2 .pt checkpoint (sam2 package).")
    sam2_hf: str = "facebook/sam2.1-hiera-large"
    owlv2: str = "google/owlv2-base-patch16-ensemble"
    depth_anything: str = "depth-anything/Depth-Anything-V2-Small-hf"
    qwen_vl: str = "Qwen/Qwen2.5-VL-3B-Instruct"
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'.")
    detection_threshold: float = Field(0.2, ge=0, le=1)
    vocabulary: list[str] = Field(default_factory=lambda: list(DEFAULT_VOCABULARY))
    keyframes: int = Field(4, ge=1, description="Frames on which detections seed the SAM-2 tracker.")
    sam2_overrides: list[str] = Field(default_factory=list, description="Extra hydra overrides for sam2.")
    ultralytics_weights: str = Field("yolo11n-seg.pt", description="Local YOLO weights (optional AGPL extra).")


EmbeddedLLMName = Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]


class LLMSettings(_Section):
    """The LLM endpoint: a user's OpenAI-compatible server (``paper`` tier) or the embedded llama.cpp server.

    ``base_url`` and ``api_key`` fall back to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` when neither an explicit
    value nor ``TWINSEEK_LLM__*`` sets them. No ``base_url`` at all means the embedded server.
    """

    base_url: str | None = Field(None, description="OpenAI-compatible endpoint; None starts the embedded server.")
    api_key: str | None = Field(None, description="Key for base_url (local servers accept any value).")
    model: str = Field("gpt-4.1-mini", description="Model name sent to base_url (ignored by the embedded server).")
    embedded_model: EmbeddedLLMName = "qwen2.5-coder-0.5b"
    judge_model: EmbeddedLLMName | None = Field(
        "qwen2.5-coder-1.5b", description="The embedded model that judges candidates in the 'describe' mode (its own "
        "llama.cpp server beside the decomposer's); None: the decomposer's model. Ignored with base_url (the "
        "endpoint judges). The 1.5B reads a description far better than the 0.5B (see benchmarks/results/README.md).")
    threads: int | None = Field(None, ge=1, description="Embedded server threads; None = half the CPU cores.")
    context: int = Field(4096, ge=256, description="Embedded server context tokens per parallel slot.")
    n_parallel: int = Field(2, ge=1, description="Embedded server slots (requests decoded concurrently).")
    timeout_s: float = Field(60.0, gt=0, description="Timeout of one request.")
    startup_timeout_s: float = Field(120.0, gt=0, description="How long the embedded server may take to load.")
    max_retries: int = Field(2, ge=0, description="Re-asks after an invalid structured reply.")
    http_retries: int = Field(2, ge=0, description="SDK retries on connection errors, 429 and 5xx (user endpoint).")
    temperature: float | None = Field(0.0, ge=0, description="None leaves the endpoint's default.")
    seed: int | None = 0

    @model_validator(mode="after")
    def _openai_env(self) -> LLMSettings:
        # The OpenAI SDK's own variables rank below TWINSEEK_LLM__* (which reach us as field values).
        if self.base_url is None:
            self.base_url = os.environ.get("OPENAI_BASE_URL") or None
        if self.api_key is None:
            self.api_key = os.environ.get("OPENAI_API_KEY") or None
        return self

    def judge_server_model(self, tier: LLMTier) -> str | None:
        """The embedded model the 'describe' judge runs on a server of its own, or None where the judge is the
        search's LLM (a user's endpoint, no judge model, or the decomposer's model itself)."""
        if tier == "paper" or self.judge_model is None or self.judge_model == self.embedded_model:
            return None
        return self.judge_model


AggregationName = Literal["mean", "min", "softmin"]
DenseEmbedderName = Literal["ecr", "tara"]


TextEncoderName = Literal["minilm", "mpnet", "nomic"]


class RetrievalSettings(_Section):
    """Component encoders, vector indexes and compositional search.

    Encoder fields take a local sentence-transformers folder (e.g. one trained by ``twinseek.embedders``);
    ``None`` means the embedded ``text_encoder`` (all-MiniLM-L6-v2 by default), shared by all three roles.
    """

    text_encoder: TextEncoderName = Field(
        "minilm", description="Embedded text encoder of components, dense ECR texts and queries: minilm "
        "(all-MiniLM-L6-v2), mpnet (all-mpnet-base-v2) or nomic (nomic-embed-text-v1.5 on llama.cpp, with its "
        "search_query/search_document prefixes). An index built by another encoder is re-embedded on sync.")
    object_encoder: str | None = Field(None, description="Encoder of object components (path).")
    relation_encoder: str | None = Field(None, description="Encoder of relation components (path).")
    query_encoder: str | None = Field(None, description="Encoder of sub-queries (path).")
    encoder_device: str = Field("cpu", description="Device of the sentence-transformers encoders.")
    batch_size: int = Field(64, ge=1)
    aggregation: AggregationName = "mean"
    softmin_temperature: float = Field(0.05, gt=0, description="Soft-min temperature (-> 0: min; large: mean).")
    negation_weight: float = Field(1.0, ge=0, description="lambda in the negation penalty.")
    negation_margin: float = Field(0.0, description="Similarity below which a negated sub-query costs nothing.")
    candidate_k: int = Field(256, ge=1, description="Components fetched per sub-query before exact rescoring.")
    top_k: int = Field(10, ge=1, description="Videos kept by stage 1.")
    hnsw_threshold: int = Field(100_000, ge=0, description="Vectors above which an index switches to HNSW.")
    hnsw_m: int = Field(32, ge=4)
    ef_construction: int = Field(80, ge=8)
    ef_search: int = Field(128, ge=1)
    ivfpq_threshold: int = Field(2_000_000, ge=0, description="Vectors above which an index switches to IVF-PQ "
                                 "(compressed: pq_m bytes per vector, PQ-approximate scores).")
    pq_m: int = Field(48, ge=1, description="IVF-PQ bytes per vector.")
    nprobe: int = Field(32, ge=1, description="IVF-PQ lists visited per query.")
    commit_every: int = Field(500, ge=1, description="Videos per committed chunk when syncing an index.")
    dense_embedder: DenseEmbedderName = "ecr"
    tara_model: str = Field("Qwen/Qwen2-VL-2B-Instruct",
                            description="Qwen2-VL-family MLLM for TARA-style embeddings (path or cached hub id).")
    tara_frames: int = Field(16, ge=1)
    device: str = Field("auto", description="Device of the TARA MLLM.")
    # ECR texts, fusion and reranking (Reason-to-Contrast)
    ecr: Literal["template", "llm", "vlm"] = Field("template", description="Who writes each video's ECR text.")
    ecr_vlm: str = Field("Qwen/Qwen2.5-VL-3B-Instruct", description="VLM for ecr=vlm (path or cached hub id).")
    fusion: Literal["rrf", "weighted"] = Field(
        "weighted", description="How compositional and dense rankings combine: weighted = the sum of each tool's "
        "min-max scaled scores over its fusion pool (keeps how far apart the scores are); rrf = reciprocal-rank "
        "fusion (ranks only). On the dev bench weighted won 4 top-1 queries of 81 and lost none.")
    fusion_pool: int = Field(100, ge=1, description="Videos each tool ranks before fusion (at least k): weighted "
                             "fusion scales each tool's scores over this pool, and a video outside a tool's pool "
                             "scores 0 there.")
    fusion_weights: dict[str, float] = Field(default_factory=lambda: {"compositional": 1.0, "dense": 1.0})
    dense_uses_rewrite: bool = Field(True, description="Dense search embeds the query plus its explicit rewrite.")
    reranker: Literal["none", "llm", "listwise", "cross-encoder", "qwen3"] = "none"
    reranker_model: str = Field("Qwen/Qwen3-Reranker-0.6B", description="For cross-encoder/qwen3 rerankers.")
    rerank_top_k: int = Field(10, ge=0, description="Candidates the reranker rescores.")
    rerank_weight: float = Field(1.0, ge=0, le=1, description="Reranker share of the reranked score.")
    rewrite: bool = Field(False, description="Query-aware ECR rewriting before reranking (one LLM call each).")
    # moments: where in a hit the match lies (twinseek.retrieval.moments)
    moment_fraction: float = Field(
        0.5, ge=0, le=1, description="How far a moment reaches around its best shot: neighbouring shots join it "
        "while their score stays at or above lowest + moment_fraction x (best - lowest) of the video's shot scores "
        "(0: the whole run of shots; 1: the best shot and its equals only). Also the bar a further moment's best "
        "shot must clear. Chosen on fold 0 of the moment bench (benchmarks/results/moments/).")
    max_moments: int = Field(3, ge=0, description="Moments kept per hit, best first (0: hits are not localised).")
    moment_unit: Literal["shot", "scene"] = Field(
        "shot", description="What a moment is made of in a video of several scenes (twinseek.twins.scenes): shots "
        "(each scored with its scene's gist), or whole scenes. Shots won on fold 0 of the moment bench.")
    moment_dense_weight: float = Field(
        0.75, ge=0, le=1, description="A segment's score mixes its components' score with this share of the dense "
        "similarity of the query to its scene's gist (videos of several scenes: twinseek.twins.scenes; 0: "
        "components only). Chosen on fold 0 of the moment bench (benchmarks/results/moments/).")


JudgeName = Literal["verdict", "yesno", "listwise", "describe"]
LLMTier = Literal["embedded", "paper"]
DEFAULT_DEADLINE_S = 120.0


@dataclass(frozen=True)
class TierDefaults:
    """What a search does, by the LLM's tier, where neither the search nor the settings (``agent.*``) say."""

    judge: JudgeName
    judge_top: int | None  # candidates the LLM judges; None: every candidate
    llm_weight: float


# The one table of tier defaults (read through AgentSettings.defaults).
TIER_DEFAULTS: dict[LLMTier, TierDefaults] = {
    # a user's endpoint: the paper (a chain-of-thought verdict on every candidate decides)
    "paper": TierDefaults(judge="verdict", judge_top=None, llm_weight=1.0),
    # the embedded LLMs: the 1.5B reads the top 5's descriptions (held out on the dev folds: the same R@1 as the top
    # 10 at half the calls), and retrieval keeps half the say (the small models' judgements are weak)
    "embedded": TierDefaults(judge="describe", judge_top=5, llm_weight=0.5),
}
_EMBEDDED = TIER_DEFAULTS["embedded"]


class AgentSettings(_Section):
    """Defaults of the agent's searches (each search may override them, see ``AgentContext``)."""

    llm_weight: float | None = Field(
        None, ge=0, le=1, description="Share of the LLM's judgement in a candidate's relevance; the rest is its "
        "absolute retrieval similarity. None = 1.0 (the paper: the LLM decides) with a user's (paper-tier) endpoint, "
        f"{_EMBEDDED.llm_weight} with the embedded 0.5B LLM, whose judgements are weak and often identical.")
    deadline_s: float | None = Field(
        DEFAULT_DEADLINE_S, gt=0, description="Overall time of one search: past it, the search skips the LLM work "
        "left (each LLM call is also cut to the time remaining), answers with what it has and records the fallback. "
        "None: no deadline. The default leaves the embedded LLM room for a full search on a slow CPU.")
    judge: JudgeName | None = Field(
        None, description="How the LLM judges candidates: 'verdict' (a chain-of-thought verdict per candidate, the "
        "paper), 'describe' (P(yes) of the judge model reading each candidate's one-line description), 'yesno' "
        "(P(yes) over compact evidence) or 'listwise' (one call orders the candidates). None = 'verdict' with a "
        f"user's endpoint, '{_EMBEDDED.judge}' with the embedded LLMs.")
    judge_top: int | None = Field(
        None, ge=0, description="Candidates the LLM judges, best-ranked first; the others keep their retrieval "
        f"relevance. None = every candidate with a user's endpoint, {_EMBEDDED.judge_top} with the embedded LLMs.")
    judge_prior: bool = Field(
        True, description="In the 'describe' mode, take each description's agreeableness out of P(yes) (the logit "
        "of P(yes) for a content-free query is subtracted; one more call per description, cached). Chosen on each half "
        "of the dev bench's videos by benchmarks/describe.py (held out: R@1 9/18 and 13/20, AUC 0.78 and 0.86).")
    calibration: Path | None = Field(
        None, description="Calibrator file (``twinseek calibrate``) mapping judged scores to P(relevant). None: "
        "the store's calibration-<judge>.json, else the one shipped for the embedded LLM, else none.")

    def defaults(self, tier: LLMTier) -> TierDefaults:
        """These settings' judge, judge_top and llm_weight, the tier's defaults where they are None."""
        table = TIER_DEFAULTS[tier]
        return TierDefaults(judge=self.judge or table.judge,
                            judge_top=self.judge_top if self.judge_top is not None else table.judge_top,
                            llm_weight=self.llm_weight if self.llm_weight is not None else table.llm_weight)


class Settings(BaseSettings):
    """Process-wide settings. Build with :func:`load_settings` or directly with keyword overrides."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="forbid")

    profile: ProfileName = "embedded"
    store: Path = Path("twinseek-store")
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    shots: ShotSettings = Field(default_factory=ShotSettings)
    specialists: SpecialistSettings = Field(default_factory=SpecialistSettings)
    paper: PaperModelSettings = Field(default_factory=PaperModelSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    perception: PerceptionSettings = Field(default_factory=PerceptionSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads; None = 1 for the embedded profile (its models are "
        "small, and two threads on a busy 2-core machine ran MobileNetV2 7x slower), torch's default otherwise.")
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "twinseek",
        description="Where assembled model files are cached.",
    )

    def __init__(self, **values: Any) -> None:
        # pydantic-settings reads only the variables that match a field, so a misspelt one would be ignored
        check_environment(os.environ)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            unknown = [tuple(str(p) for p in e["loc"]) for e in exc.errors() if e["type"] == "extra_forbidden"]
            if unknown:
                raise ConfigError("; ".join(_unknown_key(path, env=False) for path in unknown)) from exc
            raise

    @model_validator(mode="after")
    def _resolve_profile(self) -> Settings:
        defaults = PROFILES[self.profile]
        for role, choice in defaults.items():
            if getattr(self.specialists, role) is None:
                setattr(self.specialists, role, choice)
        return self

    def tier_of(self, role: str) -> Tier:
        """The tier of the adapter chosen for a specialist role."""
        choice = getattr(self.specialists, role)
        return "embedded" if choice in ("embedded", "none") else "paper"


def load_settings(**overrides: Any) -> Settings:
    """Settings from explicit overrides (highest), then ``TWINSEEK_*`` environment, then defaults.

    ``None`` values in ``overrides`` are dropped, so CLI options that were not given fall through.
    """
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


# -- strictness -----------------------------------------------------------------------------------------------------
def check_environment(environ: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` for a ``TWINSEEK_*`` variable that names no setting (case-insensitive, like
    pydantic-settings), unless it is one of :data:`NON_SETTINGS_VARIABLES`."""
    allowed = {name.upper() for name in NON_SETTINGS_VARIABLES}
    bad = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in allowed:
            continue
        path = tuple(upper[len(ENV_PREFIX):].lower().split(ENV_NESTED))
        if _first_unknown(path) is not None:
            bad.append(_unknown_key(path, env=True, given=name))
    if bad:
        raise ConfigError("; ".join(bad))


def setting_keys(model: type[BaseModel] | None = None, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every setting as a key path, e.g. ``("retrieval", "top_k")`` (groups included, e.g. ``("retrieval",)``)."""
    keys = []
    for name, field in (model or Settings).model_fields.items():
        keys.append((*prefix, name))
        section = _section(field.annotation)
        if section is not None:
            keys += setting_keys(section, (*prefix, name))
    return keys


def _section(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _first_unknown(path: Sequence[str]) -> int | None:
    """The position of the first part of ``path`` that names no setting, or None when the path is valid.

    Below a field that is not a group of settings nothing may follow, except below a mapping (``fusion_weights``),
    whose keys are the user's."""
    model: type[BaseModel] | None = Settings
    for depth, part in enumerate(path):
        if model is None:
            return depth
        field = model.model_fields.get(part)
        if field is None:
            return depth
        model = _section(field.annotation)
        if model is None and _is_mapping(field.annotation):
            return None
    return None


def _is_mapping(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _unknown_key(path: Sequence[str], *, env: bool, given: str | None = None) -> str:
    render = _env_name if env else _dotted
    what = given or render(path)
    depth = _first_unknown(path)
    depth = len(path) - 1 if depth is None else depth
    parent = tuple(path[:depth])
    siblings = _children(parent)
    if not siblings:
        return f"unknown setting {what}: {render(parent)} is a single value, not a group of settings"
    guess = _closest(path)
    if guess is not None:
        return f"unknown setting {what}; did you mean {render(guess)}?"
    return f"unknown setting {what}; valid keys here: {', '.join(render((*parent, k)) for k in siblings)}"


def _children(parent: Sequence[str]) -> list[str]:
    return [k[-1] for k in setting_keys() if len(k) == len(parent) + 1 and k[: len(parent)] == tuple(parent)]


def _closest(path: Sequence[str]) -> tuple[str, ...] | None:
    """``path`` with each unknown part replaced by its closest valid name (difflib), or None when one has none."""
    fixed = list(path)
    while (depth := _first_unknown(fixed)) is not None:
        close = difflib.get_close_matches(fixed[depth], _children(fixed[:depth]), n=1, cutoff=0.5)
        if not close:
            return None
        fixed[depth] = close[0]
    return tuple(fixed)


def _env_name(path: Iterable[str]) -> str:
    return ENV_PREFIX + ENV_NESTED.join(path).upper()


def _dotted(path: Iterable[str]) -> str:
    return ".".join(path)
