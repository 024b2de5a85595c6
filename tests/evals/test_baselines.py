"""Baselines with a keyword one-hot encoder (nothing downloaded), plus MobileNet labels on a synthetic clip."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from twinseek.errors import ModelUnavailableError
from twinseek.evals.baselines import (
    MobileNetFrameLabeler,
    NaiveLabelBaseline,
    RandomBaseline,
    answer_mcq,
    counterfactual_margin,
    evaluate_choices,
    labels_to_text,
)
from twinseek.evals.bench import Bench, CounterfactualQuery, ExplicitQuery, ImplicitQuery, McqQuery
from twinseek.evals.metrics import evaluate

from support.synthetic import Scene, write_video

KEYWORDS = ["swan", "bird", "car", "road", "dog", "grass"]
LABELS = {
    "swans": [["swan", "bird"], ["swan", "goose"]],
    "street": [["car", "road"], ["car", "cab"]],
    "park": [["dog", "grass"], ["dog", "ball"]],
}


class KeywordEncoder:
    """One-hot counts of known keywords, L2-normalised (a text with none maps to zeros)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = np.array([[t.lower().count(k) for k in KEYWORDS] for t in texts], dtype=np.float32)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms == 0, 1, norms)


class StubLabeler:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def label_frames(self, path: Path) -> list[list[str]]:
        self.seen.append(path.stem)
        return LABELS[path.stem]


def gallery(root: Path) -> dict[str, Path]:
    return {v: root / f"{v}.mp4" for v in LABELS}


def test_labels_to_text_styles() -> None:
    frames = [["black swan", "goose"], ["black swan", "drake"]]
    assert labels_to_text(frames) == "frame 1: black swan, goose; frame 2: black swan, drake"
    assert labels_to_text(frames, "labels") == "black swan, goose, drake"


def test_naive_baseline_ranks_by_label_text_cosine(tmp_path: Path) -> None:
    labeler, encoder = StubLabeler(), KeywordEncoder()
    model = NaiveLabelBaseline(encoder=encoder, labeler=labeler)
    with pytest.raises(RuntimeError, match="index"):
        model.score_videos("a swan")
    model.index(gallery(tmp_path))
    model.index(gallery(tmp_path))  # labels are cached: MobileNet would not run twice
    assert labeler.seen == ["swans", "street", "park"]
    assert model.texts["swans"] == "frame 1: swan, bird; frame 2: swan, goose"
    scores = model.score_videos("a swan, a big bird")
    assert max(scores, key=scores.__getitem__) == "swans"
    assert scores["street"] == pytest.approx(0.0)
    assert scores["swans"] == pytest.approx(3 / (np.sqrt(5) * np.sqrt(2)))  # (2,1) . (1,1)


def test_naive_baseline_through_the_evaluator(tmp_path: Path) -> None:
    model = NaiveLabelBaseline(encoder=KeywordEncoder(), labeler=StubLabeler(), style="labels")
    videos = gallery(tmp_path)
    model.index(videos)
    queries = [
        ImplicitQuery(id="q1", text="a waterbird like a swan", positives=["swans"]),
        ImplicitQuery(id="q2", text="a dog on grass", positives=["park"]),
        ExplicitQuery(id="q3", text="traffic", positives=["street"]),  # no keyword: all scores tie at 0
        McqQuery(id="q4", video="street", options=["a dog", "a car on a road"], answer=1),
        CounterfactualQuery(id="q5", video="swans", text="a swan", counterfactual="a dog"),
    ]
    bench = Bench(root=tmp_path, videos=videos, queries=queries)
    _, out = evaluate(model, bench)
    assert out["implicit_r@1"] == 1.0 and out["implicit_mnr"] == 1.0
    assert out["explicit_r@1"] == 0.0 and out["explicit_mnr"] == 2.0  # tie at 0: park, street, swans
    assert out["mcq_accuracy"] == 1.0 and out["counterfactual_accuracy"] == 1.0
    assert evaluate_choices(model, queries) == {"mcq_accuracy": 1.0, "counterfactual_accuracy": 1.0}


def test_choice_helpers_with_any_scorer() -> None:
    class Table:
        def score_videos(self, query_text: str) -> dict[str, float]:
            return {"v": {"yes": 0.8, "no": 0.3, "tie": 0.8}.get(query_text, 0.0)}

    assert answer_mcq(Table(), McqQuery(id="m", video="v", options=["no", "yes"], answer=1)) == 1
    assert answer_mcq(Table(), McqQuery(id="m", video="v", options=["yes", "tie"], answer=0)) is None
    cf = CounterfactualQuery(id="c", video="v", text="yes", counterfactual="no")
    assert counterfactual_margin(Table(), cf) == pytest.approx(0.5)
    tie = CounterfactualQuery(id="c", video="v", text="yes", counterfactual="tie")
    assert evaluate_choices(Table(), [cf, tie]) == {"counterfactual_accuracy": 0.5}


def test_random_baseline_is_seeded_and_per_query(tmp_path: Path) -> None:
    a, b, c = RandomBaseline(seed=1), RandomBaseline(seed=1), RandomBaseline(seed=2)
    for model in (a, b, c):
        model.index(gallery(tmp_path))
    first = a.score_videos("q")
    a.score_videos("another query")
    assert a.score_videos("q") == first == b.score_videos("q")  # independent of call order
    assert c.score_videos("q") != first
    assert set(first) == set(LABELS) and all(0.0 <= s < 1.0 for s in first.values())
    assert json.dumps(first)  # plain floats


def test_mobilenet_labels_a_synthetic_clip(tmp_path: Path) -> None:
    labeler = MobileNetFrameLabeler(frames=3, top_k=2)
    try:
        names = labeler.classifier.names
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    path = write_video(tmp_path / "shapes.mp4", Scene(frames=12))
    frames = labeler.label_frames(path)
    assert len(frames) == 3 and all(len(f) == 2 for f in frames)
    assert all(label in names for f in frames for label in f)
    text = labels_to_text(frames)
    assert text.startswith("frame 1: ") and "; frame 3: " in text
