"""Reranker-mined hard negatives (Reason-to-Contrast): retrieve a pool per training query with the current
embedder, rescore it with a reranker, drop likely false negatives, keep the hardest of the rest.

A candidate is dropped when the reranker ranks it at or above the query's positive (it is probably relevant)
or scores it at or above ``threshold`` (confidently relevant). Survivors are ordered by reranker score, hardest
first; their weight ``1 - score`` down-weights the ones the reranker finds plausible (for weighted InfoNCE).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from twinseek.tools.rerank import Reranker

logger = logging.getLogger(__name__)

EmbedFn = Callable[[Sequence[str]], np.ndarray]


class MinedNegatives(BaseModel):
    query: str
    positive: str
    negatives: list[str] = Field(default_factory=list)
    weights: list[float] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list, description="Pool candidates judged false negatives.")


def retrieve_pool(queries: Sequence[str], corpus: Sequence[str], embed: EmbedFn, k: int,
                  embed_query: EmbedFn | None = None) -> list[list[int]]:
    """Top-``k`` corpus indices per query by cosine similarity (queries by ``embed_query`` when given)."""
    q = np.asarray((embed_query or embed)(list(queries)), np.float32)
    c = np.asarray(embed(list(corpus)), np.float32)
    sims = q @ c.T
    k = min(k, len(corpus))
    top = np.argsort(-sims, axis=1)[:, :k]
    return [list(map(int, row)) for row in top]


def filter_candidates(positive_score: float, candidates: Sequence[str], scores: Sequence[float], keep: int,
                      threshold: float = 0.95) -> tuple[list[str], list[float], list[str]]:
    """(kept negatives hardest first, their weights, dropped) from reranker scores."""
    kept, dropped = [], []
    for text, score in sorted(zip(candidates, scores), key=lambda x: -x[1]):
        if score >= positive_score or score >= threshold:
            dropped.append(text)
        else:
            kept.append((text, score))
    kept = kept[:keep]
    return [t for t, _ in kept], [float(1 - s) for _, s in kept], dropped


def mine_hard_negatives(queries: Sequence[str], positives: Sequence[str], corpus: Sequence[str], embed: EmbedFn,
                        reranker: Reranker, pool: int = 20, keep: int = 3,
                        threshold: float = 0.95, embed_query: EmbedFn | None = None) -> list[MinedNegatives]:
    """One :class:`MinedNegatives` per (query, positive); the positive itself never enters the pool."""
    pools = retrieve_pool(queries, corpus, embed, pool + 1, embed_query)
    out = []
    for query, positive, idx in zip(queries, positives, pools):
        candidates = [corpus[i] for i in idx if corpus[i] != positive][:pool]
        scores = reranker.score(query, [positive, *candidates])
        negatives, weights, dropped = filter_candidates(scores[0], candidates, scores[1:], keep, threshold)
        out.append(MinedNegatives(query=query, positive=positive, negatives=negatives, weights=weights,
                                  dropped=dropped))
    logger.info("mined negatives for %d queries (%d candidates dropped as likely false negatives)",
                len(out), sum(len(m.dropped) for m in out))
    return out
