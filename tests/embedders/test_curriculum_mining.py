"""GVE modality-pyramid scheduler and reranker-mined hard negatives."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from twinseek.embedders.curriculum import CurriculumTask, ModalityPyramid, sigma_at, task_probabilities

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


class FixedPyramid(ModalityPyramid):
    """A pyramid whose alignments are given (no model needed)."""

    def __init__(self, alignments: dict[str, float], epochs: int) -> None:
        tasks = [CurriculumTask(n, [("x", "y")], one_hot) for n in alignments]
        super().__init__(tasks, epochs)
        self.alignments = alignments

    def start_epoch(self, epoch: int) -> dict[str, float]:
        self.probabilities = task_probabilities(self.alignments, sigma_at(epoch, self.epochs))
        return self.probabilities


def test_pyramid_batch_sampler_draws_batches_by_task_probability() -> None:
    from datasets import Dataset
    from torch.utils.data import BatchSampler, ConcatDataset, SequentialSampler

    from twinseek.embedders.curriculum import PyramidBatchSampler

    main = Dataset.from_dict({"anchor": [f"m{i}" for i in range(40)]})
    side = Dataset.from_dict({"anchor": [f"s{i}" for i in range(6)]})
    samplers = [BatchSampler(SequentialSampler(d), 2, False) for d in (main, side)]
    sampler = PyramidBatchSampler(ConcatDataset([main, side]), samplers, FixedPyramid({"main": 0.2, "side": 0.9}, 3),
                                  ["main", "side"])
    first = list(sampler)
    assert len(first) == len(sampler) == 20  # the main task's batches per epoch
    from_side = [b for b in first if b[0] >= 40]
    assert len(from_side) >= 18 and all(40 <= i < 46 for b in from_side for i in b)  # offsets into the side task
    assert [46 + 0] not in first and from_side[3] == from_side[0]  # the 3-batch side task starts over
    sampler.set_epoch(2)
    later = list(sampler)
    assert 0 < sum(b[0] < 40 for b in later) < 20 and list(sampler) == later  # flatter, deterministic per epoch
    with pytest.raises(ValueError, match="differ"):
        PyramidBatchSampler(ConcatDataset([main, side]), samplers, FixedPyramid({"a": 0, "b": 1}, 1), ["main", "side"])


def test_conflict_free_batches_keep_videos_and_matching_components_apart() -> None:
    import torch
    from datasets import Dataset

    from twinseek.embedders.curriculum import ConflictFreeBatchSampler
    from twinseek.embedders.losses import compositional_labels

    rows = [("a red car", "v1", "red car"), ("a car", "v1", "car moving"), ("a blue car", "v2", "blue car"),
            ("a dog", "v3", "dog"), ("a cat", "v4", "cat"), ("a red apple", "v5", "red apple"),
            ("a car on a road", "v6", "car on road"), ("a bird", "v7", "bird")]
    groups = {v: i for i, v in enumerate(dict.fromkeys(v for _, v, _ in rows))}
    data = Dataset.from_dict({"anchor": [q for q, _, _ in rows], "document_1": [d for _, _, d in rows],
                              "document_2": [d for _, _, d in rows],
                              "label": [compositional_labels(groups[v], 1, 0, 2) for _, v, _ in rows]})
    sampler = ConflictFreeBatchSampler(data, batch_size=4, drop_last=False, generator=torch.Generator(), seed=0,
                                       terms={"a car on a road": ["car"]})
    assert sampler.conflict(0, 1)  # one video
    assert sampler.conflict(1, 2) and sampler.conflict(2, 6)  # "blue car" satisfies "a car"; "car" of row 6
    assert not sampler.conflict(0, 5) and not sampler.conflict(3, 4)  # "red apple" is no red car
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert 0 < len(batches) <= len(sampler) == 2 and all(len(b) >= 2 for b in batches)
        for b in batches:
            assert not any(sampler.conflict(i, j) for i in b for j in b if i < j)
    sampler.set_epoch(0)
    assert list(sampler) == list(sampler)


@pytest.fixture(scope="module")
def minilm() -> object:
    from sentence_transformers import SentenceTransformer

    from twinseek.retrieval.encoders import minilm_path

    try:
        return SentenceTransformer(str(minilm_path()), device="cpu")
    except Exception as exc:  # noqa: BLE001 - the embedded model is an extra
        pytest.skip(f"embedded MiniLM unavailable: {exc}")


def _twin_pairs() -> list:
    from twinseek.embedders.data import TwinPair

    def pair(query: str, video: str, positives: list[str], others: list[str], terms: list[str]) -> TwinPair:
        return TwinPair(query=query, video_id=video, component_kind="object", positives=positives, others=others,
                        terms=terms, source="test", builder="test", seed=0)

    return [pair("a red car", "v1", ["red car"], ["wheel of a red car", "asphalt road"], ["red", "car"]),
            pair("a blue truck", "v2", ["blue truck"], ["red car parked"], ["blue", "truck"]),
            pair("a dog", "v3", ["brown dog"], ["green lawn"], ["dog"]),
            pair("a swan", "v4", ["white swan"], ["lake water", "scarlet automobile"], ["swan"])]


def test_mined_negatives_are_the_hardest_true_negatives(minilm: object) -> None:
    from twinseek.embedders.mining import mine_twin_negatives

    pairs = _twin_pairs()
    mined = mine_twin_negatives(pairs, minilm, keep=3)
    got = mined["a red car"]
    own = {"red car", "wheel of a red car", "asphalt road"}
    assert got and not (set(got) & own)  # never its own video's components
    assert "red car parked" not in got  # another video's red car: a false negative, dropped
    corpus = sorted({t for p in pairs for t in (*p.positives, *p.others)} - own - {"red car parked"})
    sims = minilm.encode(["a red car"], normalize_embeddings=True) @ minilm.encode(  # type: ignore[attr-defined]
        corpus, normalize_embeddings=True).T
    hardest = [corpus[i] for i in np.argsort(-sims[0])]
    assert got == hardest[:len(got)]  # hardest first, by the model's own similarity
    assert got[0] in ("scarlet automobile", "blue truck")


def test_cross_encoder_filters_mined_negatives(minilm: object, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    from twinseek.embedders.mining import mine_twin_negatives

    from support.tiny_models import build_tiny_cross_encoder

    pairs = _twin_pairs()
    cross_encoder = CrossEncoder(str(build_tiny_cross_encoder(tmp_path)), device="cpu")
    corpus = sorted({t for p in pairs for t in (*p.positives, *p.others)})
    scores = {q: dict(zip(corpus, cross_encoder.predict([(q, c) for c in corpus]))) for q in ("a dog", "a swan")}
    threshold = float(np.median([s for row in scores.values() for s in row.values()]))
    mined = mine_twin_negatives(pairs, minilm, cross_encoder, keep=10, max_score=threshold)
    kept = [(q, n) for q in scores for n in mined.get(q, [])]
    assert kept  # some survive...
    for query, negative in kept:  # ...and each scored at most the threshold and at most the positive
        positive = next(p.positives[0] for p in pairs if p.query == query)
        assert scores[query][negative] <= threshold + 1e-6
        assert scores[query][negative] <= scores[query][positive] + 1e-6
    unfiltered = mine_twin_negatives(pairs, minilm, keep=10)
    assert sum(map(len, mined.values())) < sum(map(len, unfiltered.values()))
