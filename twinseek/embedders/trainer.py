"""Trainers: the text embedder (TARA recipe, text only) and the twin encoders (compositional loss), on
sentence-transformers.

Both save a folder the retrieval tools load by path:

* ``train_text``: MiniLM (embedded default) fine-tuned by ``SentenceTransformerTrainer`` with
  ``MultipleNegativesRankingLoss`` (in-batch negatives plus the triplet's hard negative; ``symmetric`` adds the
  positive-to-anchor direction as GVE does, ``cached_mini_batch`` uses the gradient-cache variant). Use the folder
  as ``retrieval.query_encoder``. The paper tier (``tier="paper"``) puts LoRA on a Qwen2-VL-family EOL embedder;
  an MLLM with TARA's prompt template is no sentence-transformers model, so that path runs on
  ``transformers.Trainer`` with the same loss (``retrieval.tara_model``).
* ``train_twin``: sub-query / component towers (shared by default: one MiniLM; ``towers="two"``: a
  sentence-transformers ``Router`` with a query and a document route, saved as two folders) with
  :class:`~twinseek.embedders.losses.CompositionalInfoNCELoss`; optional GVE curriculum over tasks
  (sub-query->component, query->ECR, caption->caption) and, between rounds, hard negatives mined by
  sentence-transformers' ``mine_hard_negatives`` (reranker-filtered with a cross-encoder, Reason-to-Contrast).
  :func:`retrieval_overrides` turns the folder into ``retrieval`` settings.

Checkpoints (``<run_dir>/checkpoint-<step>``, every ``checkpoint_every`` steps and at the end) hold the model,
optimizer, scheduler and RNG states; a run whose folder has one continues from it (``resume``). Per-step loss and
learning rate go to ``<run_dir>/log.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.base.sampler import BatchSamplers, NoDuplicatesBatchSampler
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from twinseek.embedders.curriculum import (
    ConflictFreeBatchSampler,
    CurriculumTask,
    ModalityPyramid,
    PyramidBatchSampler,
)
from twinseek.embedders.data import Triplet, TwinPair
from twinseek.embedders.losses import CompositionalInfoNCELoss, compositional_labels
from twinseek.embedders.mining import mine_twin_negatives
from twinseek.embedders.models import (
    TaraTextModule,
    load_sentence_transformer,
    read_manifest,
    save_sentence_transformer,
    write_manifest,
)
from twinseek.retrieval.encoders import minilm_path
from twinseek.twins.store import TwinStore

logger = logging.getLogger(__name__)

LOG = "log.jsonl"
COMPOSITIONAL = "subquery->component"


class TrainConfig(BaseModel):
    run_dir: Path = Field(description="The run folder (params.json, log.jsonl, checkpoint-<step>/).")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps in total.")
    checkpoint_every: int = Field(50, ge=1, description="Steps between checkpoints (one is always written at the end).")
    seed: int = 0
    resume: bool = Field(True, description="Continue from the run folder's last checkpoint when it has one.")
    progress: bool | None = Field(None, description="Progress bar; default: only when logging is at INFO or below.")

    def arguments(self, **extra: Any) -> SentenceTransformerTrainingArguments:
        """The trainer's arguments: AdamW, linear warm-up then cosine decay, gradient norm clipped at 1."""
        show = self.progress
        if show is None:
            show = logging.getLogger("twinseek").getEffectiveLevel() <= logging.INFO
        return SentenceTransformerTrainingArguments(
            output_dir=str(self.run_dir), num_train_epochs=self.epochs, max_steps=self.max_steps or -1,
            per_device_train_batch_size=self.batch_size, learning_rate=self.lr, weight_decay=self.weight_decay,
            warmup_steps=self.warmup_ratio, lr_scheduler_type="cosine", max_grad_norm=1.0,
            save_strategy="steps", save_steps=self.checkpoint_every, save_total_limit=2, logging_steps=1,
            seed=self.seed, data_seed=self.seed, report_to="none", disable_tqdm=not show,
            dataloader_pin_memory=torch.cuda.is_available(), **extra)


class TrainResult(BaseModel):
    output: Path
    steps: int
    loss: float
    first_loss: float | None = None


class JsonlLog(TrainerCallback):
    """Appends each logged step (step, epoch, loss, learning rate, grad norm) to ``<run_dir>/log.jsonl``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOG

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fit(trainer: Trainer, config: TrainConfig, params: Mapping[str, Any]) -> tuple[int, float, float | None]:
    """Train (from the last checkpoint of the run folder when resuming); (steps, last loss, first loss)."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    (config.run_dir / "params.json").write_text(
        json.dumps({**json.loads(config.model_dump_json()), **params}, indent=2, default=str))
    last = get_last_checkpoint(str(config.run_dir)) if config.resume else None
    if last:
        logger.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return trainer.state.global_step, losses[-1] if losses else math.nan, losses[0] if losses else None


def _base_path(base: str | None) -> str:
    if base:
        return base

    return str(minilm_path())


# -- text embedder -----------------------------------------------------------------------------------------------
class TextTrainConfig(TrainConfig):
    base: str | None = Field(None, description="Model folder; default the embedded MiniLM (or a TARA MLLM for lora).")
    tier: Literal["embedded", "paper"] = Field("embedded", description="paper = LoRA on a Qwen2-VL EOL embedder.")
    temperature: float = Field(0.05, gt=0)
    symmetric: bool = Field(False, description="Add the positive-to-anchor direction (GVE / CLIP).")
    cached_mini_batch: int = Field(0, ge=0, description="> 0: gradient-cache loss with this mini-batch.")
    lora_r: int = Field(8, ge=1)
    max_seq_length: int = Field(64, ge=8)


def text_loss(model: nn.Module, config: TextTrainConfig) -> Any:
    """sentence-transformers' InfoNCE with in-batch negatives: plain, symmetric and/or gradient-cached."""
    directions = ("query_to_doc", "doc_to_query") if config.symmetric else ("query_to_doc",)
    kwargs: dict[str, Any] = {"scale": 1 / config.temperature, "directions": directions,
                              "partition_mode": "per_direction" if config.symmetric else "joint"}
    if config.cached_mini_batch:
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.cached_mini_batch,  # type: ignore[arg-type]
                                                  **kwargs)
    return MultipleNegativesRankingLoss(model, **kwargs)  # type: ignore[arg-type]


def triplet_dataset(triplets: Sequence[Triplet]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [t.anchor for t in triplets], "positive": [t.positive for t in triplets],
                              "negative": [t.negative for t in triplets]})


def train_text(triplets: Sequence[Triplet], config: TextTrainConfig, output: str | Path,
               model: SentenceTransformer | None = None) -> TrainResult:
    """Fine-tune a text embedder on (anchor, positive, hard negative) triplets and save it to ``output``."""
    if len(triplets) < 2:
        raise ValueError("need at least two triplets")
    if config.tier == "paper":
        return _train_tara(triplets, config, output)
    model = model if model is not None else load_sentence_transformer(_base_path(config.base), config.max_seq_length)
    loss = text_loss(model, config)
    # no duplicate text within a batch: a duplicate would be its own in-batch "negative"
    trainer = SentenceTransformerTrainer(model=model, args=config.arguments(batch_sampler=BatchSamplers.NO_DUPLICATES),
                                         train_dataset=triplet_dataset(triplets), loss=loss,
                                         callbacks=[JsonlLog(config.run_dir)])
    steps, last, first = _fit(trainer, config, {"kind": "text", "triplets": len(triplets),
                                                "loss": loss.get_config_dict()})
    save_sentence_transformer(model, output, base=config.base or "all-MiniLM-L6-v2", loss=loss.get_config_dict(),
                              steps=steps, run=str(config.run_dir), triplets=len(triplets))
    logger.info("saved text embedder to %s", output)
    return TrainResult(output=Path(output), steps=steps, loss=last, first_loss=first)


class TaraTrainer(Trainer):
    """``transformers.Trainer`` over the LoRA-wrapped MLLM: the rows are raw texts, the loss is
    sentence-transformers' ``MultipleNegativesRankingLoss`` on TARA's EOL embeddings, and checkpoints keep only
    the trainable (adapter) weights: the frozen base reloads from its folder."""

    def __init__(self, *args: Any, loss: MultipleNegativesRankingLoss, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss = loss

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        embeddings = [model(inputs[column]) for column in ("anchor", "positive", "negative")]
        loss = self.loss.compute_loss_from_embeddings(embeddings, None)  # type: ignore[arg-type]
        return (loss, embeddings) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        model: Any = self.model
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        kept = {k: v for k, v in model.state_dict().items() if k in trainable}
        super()._save(output_dir, state_dict=kept)


def _text_columns(rows: list[dict[str, str]]) -> dict[str, list[str]]:
    return {column: [row[column] for row in rows] for column in ("anchor", "positive", "negative")}


def _train_tara(triplets: Sequence[Triplet], config: TextTrainConfig, output: str | Path) -> TrainResult:
    if not config.base:
        raise ValueError("the paper tier needs --base: a local Qwen2-VL-family model folder")
    module = TaraTextModule(config.base, lora_r=config.lora_r)
    loss = text_loss(module, config.model_copy(update={"cached_mini_batch": 0}))
    trainer = TaraTrainer(model=module, args=config.arguments(remove_unused_columns=False),
                          train_dataset=triplet_dataset(triplets), data_collator=_text_columns,
                          callbacks=[JsonlLog(config.run_dir)], loss=loss)  # type: ignore[arg-type]
    steps, last, first = _fit(trainer, config, {"kind": "text-lora", "triplets": len(triplets),
                                                "loss": loss.get_config_dict()})
    module.save(output, loss=loss.get_config_dict(), steps=steps, run=str(config.run_dir), triplets=len(triplets))
    return TrainResult(output=Path(output), steps=steps, loss=last, first_loss=first)


# -- twin encoders -----------------------------------------------------------------------------------------------
class TwinTrainConfig(TrainConfig):
    base: str | None = Field(None, description="Sentence-transformers folder to start from (default MiniLM).")
    towers: Literal["shared", "two"] = Field("shared", description="One encoder for both sides, or a CLIP-style pair.")
    temperature: float = Field(0.05, gt=0)
    max_positives: int = Field(4, ge=1, description="Positive components per sub-query in a batch.")
    mined_negatives: int = Field(3, ge=1, description="Hard negatives mined per sub-query between rounds.")
    curriculum: bool = Field(False, description="GVE modality-pyramid sampling over the available tasks.")
    sigma_start: float = Field(0.1, gt=0)
    sigma_end: float = Field(1.0, gt=0)
    max_seq_length: int = Field(64, ge=8)


def twin_model(base: str, towers: str, max_seq_length: int) -> SentenceTransformer:
    """One sentence-transformers model for both sides, or a ``Router`` with a query and a document route."""
    if towers != "two":
        return load_sentence_transformer(base, max_seq_length)
    from sentence_transformers.base.modules import Router

    query, document = (load_sentence_transformer(base, max_seq_length) for _ in range(2))
    router = Router.for_query_document(query_modules=list(query), document_modules=list(document))
    return SentenceTransformer(modules=[router], device=str(query.device))


def save_twin(model: SentenceTransformer, folder: str | Path, **manifest: Any) -> Path:
    """A shared encoder as ``encoder/``, a two-route model as ``query/`` and ``component/`` (each a plain
    sentence-transformers folder), with the ``twin-encoders`` manifest naming which serves which role."""
    folder = Path(folder)
    router = getattr(model[0], "sub_modules", None)
    if router is None:
        save_sentence_transformer(model, folder / "encoder", **manifest)
        roles = {"query": "encoder", "object": "encoder", "relation": "encoder"}
    else:
        for route, name in (("query", "query"), ("document", "component")):
            save_sentence_transformer(SentenceTransformer(modules=list(router[route]), device=str(model.device)),
                                      folder / name, **manifest)
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


def compositional_dataset(pairs: Sequence[TwinPair], max_positives: int,
                          negatives: Mapping[str, Sequence[str]] | None = None, max_negatives: int = 0) -> Any:
    """Rows for :class:`CompositionalInfoNCELoss`: ``anchor`` (the sub-query), ``document_1..C`` (its first
    ``max_positives`` positive components, then its mined negatives, then padding) and ``label``."""
    from datasets import Dataset

    width = max_positives + (max_negatives if negatives else 0)
    groups = {v: i for i, v in enumerate(sorted({p.video_id for p in pairs}))}
    columns: dict[str, list[Any]] = {"anchor": [], **{f"document_{c + 1}": [] for c in range(width)}, "label": []}
    for pair in pairs:
        pos = list(pair.positives[:max_positives])
        neg = list((negatives or {}).get(pair.query, []))[: width - max_positives]
        docs = pos + neg + [pos[0]] * (width - len(pos) - len(neg))
        columns["anchor"].append(pair.query)
        for c, text in enumerate(docs):
            columns[f"document_{c + 1}"].append(text)
        columns["label"].append(compositional_labels(groups[pair.video_id], len(pos), len(neg), width))
    return Dataset.from_dict(columns)


class TwinTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` with twinseek's batch samplers: conflict-free batches for the compositional
    task (see :class:`ConflictFreeBatchSampler`) and, with a curriculum, the modality pyramid across tasks."""

    def __init__(self, *args: Any, terms: Mapping[str, Sequence[str]], pyramid: ModalityPyramid | None = None,
                 **kwargs: Any) -> None:
        self.terms, self.pyramid = terms, pyramid
        super().__init__(*args, **kwargs)

    def get_batch_sampler(self, dataset: Any, batch_size: int, drop_last: bool,
                          valid_label_columns: list[str] | None = None, generator: Any = None,
                          seed: int = 0) -> Any:
        kwargs = {"batch_size": batch_size, "drop_last": drop_last, "valid_label_columns": valid_label_columns,
                  "generator": generator, "seed": seed}
        if "document_1" in dataset.column_names:
            return ConflictFreeBatchSampler(dataset, terms=self.terms, **kwargs)
        return NoDuplicatesBatchSampler(dataset, **kwargs)

    def get_multi_dataset_batch_sampler(self, dataset: Any, batch_samplers: list[Any], generator: Any = None,
                                        seed: int | None = 0) -> Any:
        if self.pyramid is None:
            return super().get_multi_dataset_batch_sampler(dataset, batch_samplers, generator, seed)
        names = list(self.train_dataset)  # type: ignore[arg-type]
        return PyramidBatchSampler(dataset, batch_samplers, self.pyramid, names, generator, seed or 0)


def _twin_tasks(pairs: Sequence[TwinPair], ecr_pairs: Sequence[tuple[str, str]], captions: Sequence[Triplet],
                config: TwinTrainConfig, negatives: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The training datasets by task (the compositional one first): the other two only with a curriculum."""
    from datasets import Dataset

    tasks = {COMPOSITIONAL: compositional_dataset(pairs, config.max_positives, negatives, config.mined_negatives)}
    if config.curriculum and len(ecr_pairs) >= 2:
        tasks["query->ecr"] = Dataset.from_dict({"anchor": [q for q, _ in ecr_pairs],
                                                 "positive": [e for _, e in ecr_pairs]})
    if config.curriculum and len(captions) >= 2:
        tasks["caption->caption"] = triplet_dataset(captions)
    return tasks


def _routes(tasks: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Which tower embeds each column of each task (two towers): sub-queries and captions the query tower."""
    out = {}
    for name, dataset in tasks.items():
        side = "query" if name == "caption->caption" else "document"
        out[name] = {c: "query" if c == "anchor" else side for c in dataset.column_names if c != "label"}
    return out


def _pyramid(model: SentenceTransformer, tasks: Mapping[str, Any], config: TwinTrainConfig) -> ModalityPyramid:
    def embed(side: str) -> Any:
        encode = model.encode_query if side == "query" else model.encode_document
        return lambda texts: encode(list(texts), normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)

    def pairs(dataset: Any) -> list[tuple[str, str]]:
        second = "document_1" if "document_1" in dataset.column_names else "positive"
        return list(zip(dataset["anchor"], dataset[second]))

    curriculum = [CurriculumTask(name, pairs(d), embed("query"),
                                 embed("query" if name == "caption->caption" else "document"))
                  for name, d in tasks.items()]
    return ModalityPyramid(curriculum, config.epochs, config.sigma_start, config.sigma_end, config.seed)


def train_twin(pairs: Sequence[TwinPair], config: TwinTrainConfig, output: str | Path,
               ecr_pairs: Sequence[tuple[str, str]] = (), captions: Sequence[Triplet] = (),
               cross_encoder: Any = None, rounds: int = 1) -> TrainResult:
    """Train the twin encoders; with ``rounds > 1``, mine hard negatives between rounds (filtered by
    ``cross_encoder``, a sentence-transformers ``CrossEncoder``, when given)."""
    if len({p.video_id for p in pairs}) < 2:
        raise ValueError("compositional training needs sub-queries from at least two videos")
    model = twin_model(_base_path(config.base), config.towers, config.max_seq_length)
    terms = {p.query: p.terms for p in pairs}
    negatives: dict[str, list[str]] = {}
    steps, last, first = 0, math.nan, None
    for round_ in range(rounds):
        if round_:
            negatives = mine_twin_negatives(pairs, model, cross_encoder, config.mined_negatives)
        cfg = config.model_copy(update={"run_dir": config.run_dir / f"round{round_ + 1}"}) if rounds > 1 else config
        tasks = _twin_tasks(pairs, ecr_pairs, captions, cfg, negatives)
        losses = {name: CompositionalInfoNCELoss(model, scale=1 / cfg.temperature) if name == COMPOSITIONAL
                  else MultipleNegativesRankingLoss(model, scale=1 / cfg.temperature) for name in tasks}
        extra = {"router_mapping": _routes(tasks)} if cfg.towers == "two" else {}
        from datasets import DatasetDict

        trainer = TwinTrainer(model=model, args=cfg.arguments(**extra), train_dataset=DatasetDict(tasks),
                              loss=losses, callbacks=[JsonlLog(cfg.run_dir)], terms=terms,
                              pyramid=_pyramid(model, tasks, cfg) if cfg.curriculum else None)
        steps, last, round_first = _fit(trainer, cfg, {"kind": "twin", "pairs": len(pairs), "tasks": list(tasks),
                                                       "mined": sum(map(len, negatives.values()))})
        first = first if first is not None else round_first
    save_twin(model, output, steps=steps, run=str(config.run_dir), pairs=len(pairs), curriculum=config.curriculum,
              rounds=rounds, towers=config.towers)
    return TrainResult(output=Path(output), steps=steps, loss=last, first_loss=first)


def ecr_pairs_from_store(store_root: str | Path) -> list[tuple[str, str]]:
    """(template query naming the video's objects, its ECR text) per video of a store."""

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
