"""Compositional search: the aggregation maths on hand-computed cases, negation, candidates and evidence."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from twinseek.config import RetrievalSettings
from twinseek.retrieval.components import ComponentIndex
from twinseek.retrieval.compositional import CompositionalSearch, SubQuery, aggregate
from twinseek.twins.store import TwinStore

from support.retrieval import add_video, keyword_index


def sq(text: str, weight: float = 1.0, negated: bool = False) -> SubQuery:
    return SubQuery(text=text, type="object", weight=weight, negated=negated)


def test_weighted_mean_min_and_softmin_by_hand() -> None:
    sims, w, neg = np.array([[0.8, 0.4], [0.6, 0.6]]), [1.0, 0.5], [False, False]
    assert aggregate(sims, w, neg, "mean") == pytest.approx([(0.8 + 0.5 * 0.4) / 1.5, 0.6])
    assert aggregate(sims, w, neg, "min") == pytest.approx([0.4, 0.6])
    tau = 0.1
    expected = -tau * math.log(2 / 3 * math.exp(-0.8 / tau) + 1 / 3 * math.exp(-0.4 / tau))
    assert aggregate(sims, w, neg, "softmin", temperature=tau)[0] == pytest.approx(expected)
    # the soft-min lies between min and the weighted mean and tends to each at the extremes
    assert 0.4 < expected < (0.8 + 0.2) / 1.5
    assert aggregate(sims, w, neg, "softmin", temperature=1e-4)[0] == pytest.approx(0.4, abs=1e-3)
    assert aggregate(sims, w, neg, "softmin", temperature=1e4)[0] == pytest.approx(2 / 3, abs=1e-4)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(sims, w, neg, "max")  # type: ignore[arg-type]


def test_negation_penalty() -> None:
    sims = np.array([[0.8, 0.5], [0.8, 0.1]])
    scores = aggregate(sims, [1.0, 0.5], [False, True], "mean", negation_weight=1.0, negation_margin=0.2)
    assert scores == pytest.approx([0.8 - 0.5 * (0.5 - 0.2), 0.8])  # below the margin costs nothing
    assert aggregate(sims, [1.0, 0.5], [True, True], negation_weight=2.0) == pytest.approx(
        [-2 * (0.8 + 0.25), -2 * (0.8 + 0.05)])


@pytest.fixture
def searcher(tmp_path: Path) -> Iterator[CompositionalSearch]:
    store = TwinStore(tmp_path)
    add_video(store, "both", ["dog", "ball"], [(1, "near", 2)])
    add_video(store, "dog-only", ["dog", "person"])
    add_video(store, "cat", ["cat"])
    add_video(store, "empty", [])
    index = keyword_index(store)
    index.sync()
    yield CompositionalSearch(index, settings=RetrievalSettings(candidate_k=1))
    store.close()


def test_search_ranks_and_explains(searcher: CompositionalSearch) -> None:
    hits = searcher.search([sq("dog"), sq("ball", 0.5)], k=5)
    # candidate_k=1 reaches one component per sub-query, yet every candidate is rescored over all of its own
    assert [h.video_id for h in hits][0] == "both" and hits[0].score == pytest.approx(1.0)
    dog, ball = hits[0].evidence
    assert (dog.kind, dog.text, dog.track_ids, dog.similarity) == ("object", "dog; medium, stationary", [1],
                                                                   pytest.approx(1.0))
    assert ball.subquery == "ball" and ball.track_ids == [2] and ball.weight == 0.5
    near = searcher.search([sq("ball near dog")], k=1)[0].evidence[0]
    assert near.kind == "relation" and near.track_ids == [1, 2] and near.text == "dog near ball"


def test_negated_subquery_reorders_and_all_negated_scores_everything(searcher: CompositionalSearch) -> None:
    searcher.settings = searcher.settings.model_copy(update={"candidate_k": 10})
    hits = searcher.search([sq("dog"), sq("ball", negated=True)], k=5)
    assert [(h.video_id, round(h.score, 6)) for h in hits] == [("dog-only", 1.0), ("both", 0.0), ("cat", 0.0)]
    assert hits[1].evidence[1].negated and hits[1].evidence[1].similarity == pytest.approx(1.0)
    only_neg = searcher.search([sq("cat", negated=True)], k=10)
    assert only_neg[-1].video_id == "cat" and only_neg[-1].score == pytest.approx(-1.0)
    assert {h.video_id for h in only_neg} == {"both", "dog-only", "cat"}  # "empty" has no components
    assert searcher.search([sq("dog")], k=10, aggregation="min")[0].score == pytest.approx(1.0)
    assert searcher.search([]) == []


@pytest.mark.integration
def test_real_minilm_end_to_end(tmp_path: Path) -> None:
    with TwinStore(tmp_path) as store:
        add_video(store, "swan", ["black swan", "pond"], [(1, "in front of", 2)])
        add_video(store, "road", ["red car", "person"], [(2, "left of", 1)])
        index = ComponentIndex(store)  # the embedded MiniLM for objects, relations and queries
        report = index.sync()
        kinds = [r[0] for r in store.db.execute("select kind from components")]
        assert kinds.count("object") + kinds.count("relation") == 6 and report.items == len(kinds)
        assert index.vectors().dim == 384
        hits = CompositionalSearch(index).search([sq("a black bird"), sq("water", 0.5)], k=2)
        assert [h.video_id for h in hits] == ["swan", "road"]
        assert hits[0].evidence[0].text.startswith("black swan") and hits[0].score > hits[1].score + 0.1
        negated = CompositionalSearch(index).search([sq("a vehicle"), sq("a person", negated=True)], k=2)
        assert negated[0].evidence[1].negated and negated[0].video_id in {"swan", "road"}
