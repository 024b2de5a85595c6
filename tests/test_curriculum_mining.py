"""GVE modality-pyramid scheduler and reranker-mined hard negatives."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import pytest

from twinseek.embedders.curriculum import CurriculumTask, ModalityPyramid, sigma_at, task_probabilities
from twinseek.embedders.mining import filter_candidates, mine_hard_negatives

WORDS = ["door", "open", "close", "dog", "cat", "red", "blue", "car"]


def one_hot(texts: Sequence[str]) -> np.ndarray:
    """Keyword one-hot encoder (nothing downloaded)."""
    out = np.zeros((len(texts), len(WORDS)), np.float32)
    for i, t in enumerate(texts):
        for j, w in enumerate(WORDS):
            out[i, j] = float(w in t.split())
    return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-9)


def test_sigma_anneals_linearly() -> None:
    assert [round(sigma_at(e, 4), 3) for e in range(4)] == [0.1, 0.4, 0.7, 1.0]
    assert sigma_at(0, 1) == 0.1


def test_probabilities_softmax_over_alignment() -> None:
    probs = task_probabilities({"a": 0.9, "b": 0.5}, sigma=0.1)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert probs["a"] == pytest.approx(1 / (1 + math.exp(-4)))
    flat = task_probabilities({"a": 0.9, "b": 0.5}, sigma=1.0)
    assert 0.5 < flat["a"] < probs["a"]  # a larger sigma flattens towards uniform


def test_pyramid_prefers_aligned_task_first_then_flattens() -> None:
    aligned = CurriculumTask("caption->caption", [("red dog", "red dog"), ("blue car", "blue car")], one_hot)
    hard = CurriculumTask("subquery->component", [("red dog", "blue car"), ("open door", "cat")], one_hot)
    pyramid = ModalityPyramid([aligned, hard], epochs=3, seed=0)
    first = pyramid.start_epoch(0)
    assert first["caption->caption"] > 0.99
    draws = pyramid.sample(200, 0)
    assert draws.count("caption->caption") > 190
    last = pyramid.start_epoch(2)
    assert 0.5 < last["caption->caption"] < first["caption->caption"]
    assert pyramid.sample(50, 2) == pyramid.sample(50, 2)  # deterministic per epoch


def test_alignment_is_mean_cosine() -> None:
    task = CurriculumTask("t", [("red dog", "red dog"), ("red dog", "blue car")], one_hot, probe=2)
    assert task.alignment(random.Random(0)) == pytest.approx(0.5)


def test_filter_drops_false_negatives_and_threshold() -> None:
    kept, weights, dropped = filter_candidates(0.8, ["above", "close", "far", "farther", "sure"],
                                               [0.9, 0.6, 0.2, 0.1, 0.8], keep=2, threshold=0.95)
    assert dropped == ["above", "sure"]  # ranked at/above the positive
    assert kept == ["close", "far"] and weights == pytest.approx([0.4, 0.8])
    kept, _, dropped = filter_candidates(0.99, ["a", "b"], [0.97, 0.5], keep=5, threshold=0.95)
    assert dropped == ["a"] and kept == ["b"]  # confident (>= threshold) even though below the positive


class KeywordReranker:
    model, tier = "keyword", "embedded"

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        q = set(query.split())
        return [len(q & set(d.split())) / max(1, len(q)) for d in documents]


def test_mine_hard_negatives_end_to_end() -> None:
    corpus = ["open door", "open red door", "close door", "red dog", "blue car", "cat"]
    mined = mine_hard_negatives(["open red door"], ["open red door"], corpus, one_hot, KeywordReranker(),
                                pool=4, keep=2)
    m = mined[0]
    assert "open red door" not in m.negatives + m.dropped
    assert m.negatives and len(m.negatives) <= 2
    assert m.weights == sorted(m.weights)  # hardest (highest reranker score, lowest weight) first
