"""ECR reranking (Reason-to-Contrast): text-only rescoring of the top candidates from their ECR texts.

- pairwise: a score per (query, ECR) pair, from a cross-encoder, a Qwen3-Reranker-style causal LM
  (P("yes") from the yes/no logits of the last position), or any chat LLM whose first-token logprobs we can
  read (the embedded default: the local llama.cpp model);
- listwise: all candidates in one LLM prompt, the LLM returns the order;
- query-aware rewriting (QAR): the LLM rewrites a candidate's ECR for the query before it is scored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field

from twinseek.config import RetrievalSettings
from twinseek.prompts import ecr as ecr_prompts
from twinseek.prompts import rerank as prompts
from twinseek.retrieval.fusion import minmax
from twinseek.weights import WeightsSpec, load_pretrained, model_dtype, resolve_device, resolve_source

logger = logging.getLogger(__name__)

RerankTier = Literal["embedded", "paper"]
RerankerName = Literal["none", "llm", "listwise", "cross-encoder", "qwen3"]
RERANKERS: tuple[RerankerName, ...] = ("none", "llm", "listwise", "cross-encoder", "qwen3")
LLM_RERANKERS = frozenset({"llm", "listwise"})  # cheap wrappers around the LLM client


class Reranker(Protocol):
    model: str
    tier: RerankTier

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """Relevance of each document to the query, in [0, 1], higher is better."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder (e.g. ms-marco MiniLM) from a local folder or cached hub id."""

    tier: RerankTier = "paper"
    spec = WeightsSpec("cross-encoder reranker", "reranker", "cross-encoder/ms-marco-MiniLM-L6-v2",
                       section="retrieval")

    def __init__(self, model: str, device: str = "auto", batch_size: int = 16) -> None:
        self.model = model
        self.device = resolve_device(device)
        self.source = resolve_source(model, self.spec)
        self.batch_size = batch_size
        self._ce: Any = None

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        if not documents:
            return []
        if self._ce is None:
            from sentence_transformers import CrossEncoder

            self._ce = load_pretrained(_CrossEncoderLoader(CrossEncoder, self.device), self.source, self.spec)
        logits = np.asarray(self._ce.predict([(query, d) for d in documents], batch_size=self.batch_size))
        if logits.ndim == 2:  # two-class heads: take the positive class
            logits = logits[:, -1]
        return (1 / (1 + np.exp(-logits))).astype(float).tolist()


class _CrossEncoderLoader:
    """Adapts ``CrossEncoder(path)`` to the ``from_pretrained(source, local_files_only=...)`` shape."""

    def __init__(self, cls: type, device: str) -> None:
        self.cls, self.device = cls, device

    def from_pretrained(self, source: str, local_files_only: bool = True) -> object:
        return self.cls(source, device=self.device, local_files_only=local_files_only)


class Qwen3Reranker:
    """Qwen3-Reranker-style scoring with a causal LM: P(yes) at the last position of the judgement prompt."""

    tier: RerankTier = "paper"
    spec = WeightsSpec("Qwen3-Reranker", "reranker", "Qwen/Qwen3-Reranker-0.6B", section="retrieval")

    def __init__(self, model: str, device: str = "auto", batch_size: int = 4, max_length: int = 1024) -> None:
        self.model = model
        self.device = resolve_device(device)
        self.source = resolve_source(model, self.spec)
        self.batch_size, self.max_length = batch_size, max_length
        self._lm: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._tok = load_pretrained(AutoTokenizer, self.source, self.spec, padding_side="left")
        # half precision on accelerators (how Qwen3-Reranker is served), float32 on the CPU
        lm = load_pretrained(AutoModelForCausalLM, self.source, self.spec, dtype=model_dtype(self.device))
        self._lm = lm.to(self.device).eval()
        self._yes = self._tok.convert_tokens_to_ids("yes")
        self._no = self._tok.convert_tokens_to_ids("no")

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        import torch

        if not documents:
            return []
        if self._lm is None:
            self._load()
        texts = [prompts.QWEN3_PREFIX + prompts.pair_text(query, d) + prompts.QWEN3_SUFFIX for d in documents]
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tok(texts[start:start + self.batch_size], padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt").to(self.device)
                # left padding: the last position is the last real token of every row
                logits = self._lm(**batch).logits[:, -1, :]
                pair = torch.stack([logits[:, self._no], logits[:, self._yes]], dim=1).float()
                scores.extend(torch.softmax(pair, dim=1)[:, 1].tolist())
        return scores


class LLMYesNoReranker:
    """Pairwise P(yes) from a chat LLM's first-token logprobs (the embedded default uses the local LLM)."""

    def __init__(self, llm, parallel: int = 2) -> None:  # type: ignore[no-untyped-def]
        self.llm = llm
        self.model = llm.model
        self.tier: RerankTier = llm.tier
        self.parallel = parallel

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        if not documents:
            return []
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            return list(pool.map(lambda d: self.llm.yes_probability(prompts.yes_no_messages(query, d)), documents))


class Ranking(BaseModel):
    order: list[int] = Field(description="candidate numbers, best first", max_length=20)


class ListwiseReranker:
    """All candidates in one prompt; the LLM returns their order. Unlisted candidates keep their order after
    the listed ones; an unusable reply keeps the input order (logged)."""

    def __init__(self, llm, max_chars: int = 300) -> None:  # type: ignore[no-untyped-def]
        self.llm = llm
        self.model = llm.model
        self.tier: RerankTier = llm.tier
        self.max_chars = max_chars

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        n = len(documents)
        if n <= 1:
            return [1.0] * n
        ranking = self.llm.chat_json(prompts.listwise_messages(query, list(documents), self.max_chars), Ranking,
                                     max_tokens=8 + 4 * n, fallback=lambda: Ranking(order=list(range(n))))
        order = list(dict.fromkeys(i for i in ranking.order if 0 <= i < n))
        order += [i for i in range(n) if i not in order]
        scores = [0.0] * n
        for rank, i in enumerate(order):
            scores[i] = 1.0 - rank / n
        return scores


def rewrite_ecr(llm, query: str, ecr: str, max_tokens: int = 120) -> str:  # type: ignore[no-untyped-def]
    """Query-aware ECR rewriting: what in the description supports or refutes the query."""
    try:
        text = llm.chat_text(ecr_prompts.qar_messages(query, ecr), max_tokens=max_tokens).strip()
    except Exception as exc:  # the original ECR is still a valid document
        logger.warning("query-aware rewrite failed (%s); using the original ECR", exc)
        return ecr
    return text or ecr


def rerank(
    candidates: Sequence[tuple[str, float]], documents: dict[str, str], reranker: Reranker, query: str,
    top_k: int = 10, weight: float = 1.0,
) -> list[tuple[str, float]]:
    """Rescore the first ``top_k`` candidates; their new score is ``weight * rerank + (1 - weight) * old``
    (old scores min-max normalised); the rest follow unchanged, below them."""
    head, tail = list(candidates[:top_k]), list(candidates[top_k:])
    if not head:
        return []
    new = reranker.score(query, [documents.get(vid, "") for vid, _ in head])
    old = minmax([s for _, s in head])
    mixed = [(vid, weight * n + (1 - weight) * o) for (vid, _), n, o in zip(head, new, old)]
    mixed.sort(key=lambda x: -x[1])
    floor = min(s for _, s in mixed)
    return mixed + [(vid, min(s, floor - 1e-6)) for vid, s in tail]


def make_reranker(name: RerankerName, settings: RetrievalSettings, llm=None, parallel: int = 2) -> Reranker | None:  # type: ignore[no-untyped-def]
    """The reranker called ``name`` (``None`` for "none"); ``llm`` serves the LLM-based ones."""
    if name == "llm":
        return LLMYesNoReranker(llm, parallel=parallel)
    if name == "listwise":
        return ListwiseReranker(llm)
    if name == "cross-encoder":
        return CrossEncoderReranker(settings.reranker_model, device=settings.device)
    if name == "qwen3":
        return Qwen3Reranker(settings.reranker_model, device=settings.device)
    if name != "none":
        raise ValueError(f"unknown reranker {name!r}; known: {', '.join(RERANKERS)}")
    return None
