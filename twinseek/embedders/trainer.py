"""Trainers: the text embedder (TARA recipe, text only) and the twin encoders (compositional loss).

Both run on :class:`~twinseek.embedders.loop.Trainer` and save a folder the retrieval tools load by path:

* ``train_text``: MiniLM (embedded default) or a Qwen2-VL-family EOL embedder with LoRA (paper tier), InfoNCE
  with in-batch + one hard negative per triplet. Use the folder as ``retrieval.query_encoder`` (dense search
  embeds videos and queries with it) or ``retrieval.tara_model`` (paper tier).
* ``train_twin``: sub-query / component towers (shared by default: one MiniLM; ``towers="two"`` for the
  paper's CLIP-style pair) with :class:`CompositionalInfoNCELoss`; optional GVE curriculum over tasks
  (sub-query->component, query->ECR, caption->caption) and reranker-mined hard negatives between rounds.
  :func:`retrieval_overrides` turns the folder into ``retrieval`` settings.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import Tensor, nn

from twinseek.embedders.curriculum import CurriculumTask, ModalityPyramid
from twinseek.embedders.data import Triplet, TwinPair, satisfies
from twinseek.embedders.loop import TrainConfig, Trainer
from twinseek.embedders.losses import CachedInfoNCELoss, CompositionalInfoNCELoss, InfoNCELoss
from twinseek.embedders.mining import mine_hard_negatives
from twinseek.embedders.models import (
    SentenceTransformerModule,
    TaraTextModule,
    encode_texts,
    read_manifest,
    write_manifest,
)
from twinseek.tools.rerank import Reranker

logger = logging.getLogger(__name__)


class TextTrainConfig(TrainConfig):
    base: str | None = Field(None, description="Model folder; default the embedded MiniLM (or a TARA MLLM for lora).")
    tier: Literal["embedded", "paper"] = Field("embedded", description="paper = LoRA on a Qwen2-VL EOL embedder.")
    temperature: float = Field(0.05, gt=0)
    learnable_temperature: bool = False
    symmetric: bool = False
    cached_mini_batch: int = Field(0, ge=0, description="> 0: gradient-cache loss with this mini-batch.")
    lora_r: int = Field(8, ge=1)
    max_seq_length: int = Field(64, ge=8)


class TrainResult(BaseModel):
    output: Path
    steps: int
    loss: float
    first_loss: float | None = None


def _batches(items: Sequence[Any], size: int, seed: int, epoch: int) -> list[list[Any]]:
    order = list(items)
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    chunks = [order[i:i + size] for i in range(0, len(order), size)]
    return [c for c in chunks if len(c) >= 2]  # one item has no in-batch negative


def _base_path(base: str | None) -> str:
    if base:
        return base
    from twinseek.tools.encoders import minilm_path

    return str(minilm_path())


def text_model(config: TextTrainConfig) -> nn.Module:
    if config.tier == "paper":
        if not config.base:
            raise ValueError("the paper tier needs --base: a local Qwen2-VL-family model folder")
        return TaraTextModule(config.base, lora_r=config.lora_r)
    return SentenceTransformerModule(_base_path(config.base), max_seq_length=config.max_seq_length)


def text_loss(model: nn.Module, config: TextTrainConfig) -> InfoNCELoss | CachedInfoNCELoss:
    kwargs = dict(temperature=config.temperature, learnable_temperature=config.learnable_temperature,
                  symmetric=config.symmetric)
    if config.cached_mini_batch:
        return CachedInfoNCELoss(model, config.cached_mini_batch, **kwargs)  # type: ignore[arg-type]
    return InfoNCELoss(model, **kwargs)  # type: ignore[arg-type]


def train_text(triplets: Sequence[Triplet], config: TextTrainConfig, output: str | Path,
               model: nn.Module | None = None) -> TrainResult:
    """Fine-tune a text embedder on (anchor, positive, hard negative) triplets and save it to ``output``."""
    if len(triplets) < 2:
        raise ValueError("need at least two triplets")
    model = model if model is not None else text_model(config)
    loss = text_loss(model, config)
    temp = loss.base.temp if isinstance(loss, CachedInfoNCELoss) else loss.temp
    trainer = Trainer(model, config, extra=[temp])
    steps = math.ceil(len(triplets) / config.batch_size)
    first: list[float] = []

    def step_loss(batch: list[Triplet]) -> Tensor:
        value = loss([t.anchor for t in batch], [t.positive for t in batch], [t.negative for t in batch])
        if not first:
            first.append(float(value.detach()))
        return value

    result = trainer.fit(lambda e: _batches(triplets, config.batch_size, config.seed, e), steps, step_loss,
                         params={"kind": "text", "triplets": len(triplets), "loss": loss.get_config_dict()})
    folder = model.save(output, loss=loss.get_config_dict(), steps=trainer.step,  # type: ignore[operator]
                        run=str(config.run_dir), triplets=len(triplets))
    logger.info("saved text embedder to %s", folder)
    return TrainResult(output=Path(output), steps=trainer.step, loss=result["loss"], first_loss=first[0] if first else None)


# -- twin encoders -----------------------------------------------------------------------------------------------
class TwinTrainConfig(TrainConfig):
    base: str | None = Field(None, description="Sentence-transformers folder to start from (default MiniLM).")
    towers: Literal["shared", "two"] = Field("shared", description="One encoder for both sides, or a CLIP-style pair.")
    temperature: float = Field(0.05, gt=0)
    max_positives: int = Field(4, ge=1, description="Positive components sampled per sub-query in a batch.")
    curriculum: bool = Field(False, description="GVE modality-pyramid sampling over the available tasks.")
    sigma_start: float = Field(0.1, gt=0)
    sigma_end: float = Field(1.0, gt=0)
    max_seq_length: int = Field(64, ge=8)


class TwinTowers(nn.Module):
    """Query tower and component tower (the same module when shared)."""

    def __init__(self, base: str, towers: str, max_seq_length: int) -> None:
        super().__init__()
        self.query = SentenceTransformerModule(base, max_seq_length=max_seq_length)
        self.component = (SentenceTransformerModule(base, max_seq_length=max_seq_length)
                          if towers == "two" else self.query)
        self.shared = towers != "two"

    def save(self, folder: str | Path, **manifest: Any) -> Path:
        folder = Path(folder)
        if self.shared:
            self.query.save(folder / "encoder", **manifest)
            roles = {"query": "encoder", "object": "encoder", "relation": "encoder"}
        else:
            self.query.save(folder / "query", **manifest)
            self.component.save(folder / "component", **manifest)
            roles = {"query": "query", "object": "component", "relation": "component"}
        write_manifest(folder, "twin-encoders", roles=roles, **manifest)
        return folder


def retrieval_overrides(folder: str | Path) -> dict[str, str]:
    """``retrieval`` settings that load a twin-encoder folder: ``object_encoder``, ``relation_encoder``,
    ``query_encoder`` (a text-embedder folder maps to ``query_encoder`` alone)."""
    folder = Path(folder).resolve()
    manifest = read_manifest(folder)
    if manifest.get("kind") != "twin-encoders":
        return {"query_encoder": str(folder)}
    return {f"{role}_encoder": str(folder / sub) for role, sub in manifest["roles"].items()}


class TwinTask:
    """Builds batches and losses for the three twin tasks."""

    def __init__(self, towers: TwinTowers, config: TwinTrainConfig, pairs: Sequence[TwinPair],
                 ecr_pairs: Sequence[tuple[str, str]] = (), captions: Sequence[Triplet] = ()) -> None:
        self.towers, self.config = towers, config
        self.pairs, self.ecr_pairs, self.captions = list(pairs), list(ecr_pairs), list(captions)
        self.compositional = CompositionalInfoNCELoss(temperature=config.temperature)
        self.infonce = InfoNCELoss(temperature=config.temperature)
        self.mined: dict[str, tuple[list[str], list[float]]] = {}

    def available(self) -> list[str]:
        names = ["subquery->component"]
        if len(self.ecr_pairs) >= 2:
            names.append("query->ecr")
        if len(self.captions) >= 2:
            names.append("caption->caption")
        return names

    def batch(self, task: str, rng: random.Random) -> tuple[str, Any]:
        size = self.config.batch_size
        if task == "query->ecr":
            return task, rng.sample(self.ecr_pairs, min(size, len(self.ecr_pairs)))
        if task == "caption->caption":
            return task, rng.sample(self.captions, min(size, len(self.captions)))
        by_video: dict[str, list[TwinPair]] = {}
        for pair in rng.sample(self.pairs, len(self.pairs)):
            by_video.setdefault(pair.video_id, []).append(pair)
        videos = rng.sample(sorted(by_video), min(size, len(by_video)))
        return task, [rng.choice(by_video[v]) for v in videos]  # one sub-query per video: clean negatives

    def loss(self, batch: tuple[str, Any]) -> Tensor:
        task, items = batch
        if task == "query->ecr":
            q = self.towers.query([a for a, _ in items])
            return self.infonce.compute_loss_from_embeddings(q, self.towers.component([b for _, b in items]))
        if task == "caption->caption":
            a = self.towers.query([t.anchor for t in items])
            p, n = self.towers.query([t.positive for t in items]), self.towers.query([t.negative for t in items])
            return self.infonce.compute_loss_from_embeddings(a, p, n)
        return self._compositional(items)

    def _compositional(self, pairs: list[TwinPair]) -> Tensor:
        comps: list[tuple[str, str]] = []  # (video, text)
        for pair in pairs:
            comps += [(pair.video_id, t) for t in pair.positives[: self.config.max_positives]]
        comps = list(dict.fromkeys(comps))
        targets = torch.zeros(len(pairs), len(comps))
        for i, pair in enumerate(pairs):
            for j, (video, text) in enumerate(comps):
                if video == pair.video_id:
                    targets[i, j] = 1.0 if text in pair.positives else -1.0
                elif satisfies(text, pair.terms):
                    targets[i, j] = -1.0  # another video's matching component: a false negative
        negs = [n for p in pairs for n in self.mined.get(p.query, ([], []))[0]]
        weights = [w for p in pairs for w in self.mined.get(p.query, ([], []))[1]]
        q = self.towers.query([p.query for p in pairs])
        c = self.towers.component([t for _, t in comps])
        n = self.towers.component(negs) if negs else None
        w = torch.tensor(weights) if negs else None
        return self.compositional.compute_loss_from_embeddings(q, c, n, w, targets=targets)

    def curriculum_tasks(self) -> list[CurriculumTask]:
        def embed(module: nn.Module) -> Any:
            return lambda texts: encode_texts(module, list(texts)).numpy()

        q, c = embed(self.towers.query), embed(self.towers.component)
        tasks = [CurriculumTask("subquery->component", [(p.query, p.positives[0]) for p in self.pairs], q, c)]
        if len(self.ecr_pairs) >= 2:
            tasks.append(CurriculumTask("query->ecr", list(self.ecr_pairs), q, c))
        if len(self.captions) >= 2:
            tasks.append(CurriculumTask("caption->caption", [(t.anchor, t.positive) for t in self.captions], q, q))
        return tasks


def ecr_pairs_from_store(store_root: str | Path) -> list[tuple[str, str]]:
    """(template query naming the video's objects, its ECR text) per video of a store."""
    from twinseek.twins.store import TwinStore

    out = []
    with TwinStore(store_root, create=False) as store:
        for video_id in store.video_ids():
            twin = store.get_twin(video_id, refinements=False)
            names = list(dict.fromkeys(t.category for t in twin.tracks))[:3]
            scene = [label for label, _ in twin.video.scene][:1]
            ecr = (twin.video.ecr_text or "").strip()
            if names and ecr:
                query = "a video of " + " and ".join(f"a {n}" for n in names) + (f" near a {scene[0]}" if scene else "")
                out.append((query, ecr))
    return out


def train_twin(pairs: Sequence[TwinPair], config: TwinTrainConfig, output: str | Path,
               ecr_pairs: Sequence[tuple[str, str]] = (), captions: Sequence[Triplet] = (),
               reranker: Reranker | None = None, rounds: int = 1) -> TrainResult:
    """Train the twin encoders; with a ``reranker`` and ``rounds > 1``, mine hard negatives between rounds."""
    if len({p.video_id for p in pairs}) < 2:
        raise ValueError("compositional training needs sub-queries from at least two videos")
    towers = TwinTowers(_base_path(config.base), config.towers, config.max_seq_length)
    task = TwinTask(towers, config, pairs, ecr_pairs, captions)
    result: dict[str, float] = {}
    first: list[float] = []
    for round_ in range(rounds):
        if round_ and reranker is not None:
            task.mined = mine_twin_negatives(task, reranker)
        cfg = config.model_copy(update={"run_dir": config.run_dir / f"round{round_ + 1}"}) if rounds > 1 else config
        result = _fit_twin(towers, task, cfg, first)
    towers.save(output, steps=int(result["steps"]), run=str(config.run_dir), pairs=len(pairs),
                tasks=task.available(), curriculum=config.curriculum, rounds=rounds)
    return TrainResult(output=Path(output), steps=int(result["steps"]), loss=result["loss"],
                       first_loss=first[0] if first else None)


def _fit_twin(towers: TwinTowers, task: TwinTask, cfg: TwinTrainConfig, first: list[float]) -> dict[str, float]:
    trainer = Trainer(towers, cfg)
    steps = max(1, math.ceil(len(task.pairs) / cfg.batch_size))
    pyramid = (ModalityPyramid(task.curriculum_tasks(), cfg.epochs, cfg.sigma_start, cfg.sigma_end, cfg.seed)
               if cfg.curriculum else None)

    def batches(epoch: int) -> Iterator[tuple[str, Any]]:
        names = ["subquery->component"] * steps
        if pyramid is not None:
            pyramid.start_epoch(epoch)
            names = pyramid.sample(steps, epoch)
        rng = random.Random(cfg.seed * 1_000_003 + epoch)
        return iter([task.batch(name, rng) for name in names])

    def step_loss(batch: tuple[str, Any]) -> Tensor:
        value = task.loss(batch)
        if not first:
            first.append(float(value.detach()))
        return value

    return trainer.fit(batches, steps, step_loss, params={"kind": "twin", "pairs": len(task.pairs),
                                                         "tasks": task.available()})


def mine_twin_negatives(task: TwinTask, reranker: Reranker, pool: int = 20, keep: int = 3,
                        threshold: float = 0.95) -> dict[str, tuple[list[str], list[float]]]:
    """Reranker-filtered hard negatives per sub-query from the other videos' components."""
    out: dict[str, tuple[list[str], list[float]]] = {}
    by_video: dict[str, set[str]] = {}
    for pair in task.pairs:
        by_video.setdefault(pair.video_id, set()).update(pair.positives + pair.others)

    def embed(texts: Sequence[str]) -> np.ndarray:
        return encode_texts(task.towers.component, list(texts)).numpy()

    def embed_query(texts: Sequence[str]) -> np.ndarray:
        return encode_texts(task.towers.query, list(texts)).numpy()

    for video, own in by_video.items():
        corpus = sorted({t for v, texts in by_video.items() if v != video for t in texts} - own)
        mine = [p for p in task.pairs if p.video_id == video]
        if not corpus or not mine:
            continue
        for pair, got in zip(mine, mine_hard_negatives([p.query for p in mine], [p.positives[0] for p in mine],
                                                       corpus, embed, reranker, pool, keep, threshold,
                                                       embed_query)):
            out[pair.query] = (got.negatives, got.weights)
    return out
