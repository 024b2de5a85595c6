"""Hard negatives for the twin encoders (Reason-to-Contrast): sentence-transformers' ``mine_hard_negatives``
retrieves the components closest to each sub-query with the current model, a cross-encoder (when given) rescores
them and drops likely false negatives, and twinseek drops what it knows to be no negative at all.

A candidate is dropped when the cross-encoder scores it above the sub-query's (weakest) positive
(``absolute_margin=0``: it is probably relevant) or above ``max_score`` (confidently relevant); then when it is a
component of the sub-query's own video or contains all of its match terms (a lexical false negative). The
survivors are kept hardest first.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from twinseek.embedders.data import TwinPair, satisfies

logger = logging.getLogger(__name__)


def mine_twin_negatives(pairs: Sequence[TwinPair], model: Any, cross_encoder: Any = None, keep: int = 3,
                        max_score: float = 0.95, pool: int = 20, batch_size: int = 64) -> dict[str, list[str]]:
    """Sub-query text -> up to ``keep`` hard negatives from the components of every twin in ``pairs``."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    rows = [(p.query, positive) for p in pairs for positive in p.positives]
    corpus = sorted({t for p in pairs for t in (*p.positives, *p.others)})
    filters: dict[str, Any] = {"absolute_margin": 0.0, "max_score": max_score} if cross_encoder is not None else {}
    mined = mine_hard_negatives(
        Dataset.from_dict({"anchor": [q for q, _ in rows], "positive": [t for _, t in rows]}), model, corpus=corpus,
        cross_encoder=cross_encoder, num_negatives=pool, range_max=pool + 10, output_format="labeled-list",
        batch_size=batch_size, verbose=False, **filters)
    own: dict[str, set[str]] = defaultdict(set)  # the components of every video a sub-query text belongs to
    terms: dict[str, list[str]] = {}
    for p in pairs:
        own[p.query].update(p.positives, p.others)
        terms.setdefault(p.query, p.terms)
    out: dict[str, list[str]] = {}
    for query, docs, labels in zip(mined["anchor"], mined["positive"], mined["labels"]):
        if query in out:
            continue
        negatives = [d for d, label in zip(docs, labels) if label == 0]
        kept = [d for d in negatives if d not in own[query] and not satisfies(d, terms[query])]
        out[query] = kept[:keep]
    logger.info("mined %d hard negatives for %d sub-queries", sum(map(len, out.values())), len(out))
    return out
