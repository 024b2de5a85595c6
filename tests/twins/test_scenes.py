"""Scenes: shots grouped by their labels (twinseek.twins.scenes), and what the component and dense texts make of
them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twinseek.retrieval.components import ComponentIndex, with_scenes
from twinseek.retrieval.compositional import CompositionalSearch, SubQuery, scene_maxima
from twinseek.retrieval.dense import DenseIndex, EcrTextEmbedder, dense_rows, dense_text
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.twins.model import Shot, Twin
from twinseek.twins.perception import label_shots
from twinseek.twins.scenes import group_shots, label_similarity, scene_twin, scenes
from twinseek.twins.store import TwinStore
from twinseek.twins.views import ComponentTexts, scene_gist

from support.moments import timed_twin
from support.retrieval import KeywordEncoder

DESERT = [("Arabian camel", 0.7), ("sand dune", 0.2)]
DESERT_2 = [("Arabian camel", 0.5), ("sand dune", 0.4)]
LAKE = [("black swan", 0.8), ("lakeside", 0.1)]


def sq(text: str) -> SubQuery:
    return SubQuery(text=text, type="object", weight=1.0, negated=False)


def _shot(index: int, start: int, end: int, labels: list[tuple[str, float]], fps: float = 10.0) -> Shot:
    return Shot(index=index, start_frame=start, end_frame=end, start_s=start / fps, end_s=(end + 1) / fps,
                key_frames=[start] if labels else [], labels=labels)


def test_label_similarity_is_a_cosine() -> None:
    assert label_similarity(dict(DESERT), dict(DESERT)) == pytest.approx(1.0)
    assert label_similarity(dict(DESERT), dict(LAKE)) == 0.0
    assert label_similarity({}, dict(LAKE)) == 0.0
    assert 0.8 < label_similarity(dict(DESERT), dict(DESERT_2)) < 1.0


def test_agreeing_shots_form_one_scene_and_unseen_shots_split_at_the_middle() -> None:
    shots = [_shot(0, 0, 9, []), _shot(1, 10, 19, DESERT), _shot(2, 20, 29, DESERT_2),
             _shot(3, 30, 39, []), _shot(4, 40, 79, []), _shot(5, 80, 89, LAKE), _shot(6, 90, 99, [])]
    groups = group_shots(shots)
    # before the first labelled shot: the first scene; the unseen 30-79 split at the middle of 3.0 and 8.0 (5.5 s):
    # shot 3 (3.0-4.0 s) lies before it, shot 4 (4.0-8.0, middle 6.0) after; after the last: the last scene
    assert [[s.index for s in g] for g in groups] == [[0, 1, 2, 3], [4, 5, 6]]
    assert group_shots([_shot(0, 0, 9, []), _shot(1, 10, 19, [])]) == [[_shot(0, 0, 9, []), _shot(1, 10, 19, [])]]
    # a threshold above the shots' agreement splits them
    assert len(group_shots(shots[1:3], threshold=0.99)) == 2


def test_alternating_views_stay_one_scene_within_the_window() -> None:
    # A B A B (shot, reverse shot), then C C: links from each A back to the last A span the B between them
    a, b, c = [("studio", 0.9)], [("newsroom", 0.9)], [("beach", 0.9)]
    shots = [_shot(k, 10 * k, 10 * k + 9, labels) for k, labels in enumerate([a, b, a, b, c, c])]
    assert [[s.index for s in g] for g in group_shots(shots)] == [[0, 1, 2, 3], [4, 5]]
    # a window of one shot back links only neighbours: every view change is a scene
    assert [[s.index for s in g] for g in group_shots(shots, window=1)] == [[0], [1], [2], [3], [4, 5]]
    # too far back to link (A B B B A with a window of 3): the first A stays alone
    far = [_shot(k, 10 * k, 10 * k + 9, labels) for k, labels in enumerate([a, b, b, b, a])]
    assert [[s.index for s in g] for g in group_shots(far)] == [[0], [1, 2, 3], [4]]


def test_scenes_of_a_twin_carry_spans_and_mean_labels() -> None:
    twin, _ = timed_twin("v", {"camel": (0, 90), "swan": (200, 290)})
    twin.shots[0].labels, twin.shots[1].labels, twin.shots[2].labels = DESERT, DESERT_2, LAKE
    found = scenes(twin)
    assert [(s.shots, s.start_s, s.end_s) for s in found] == [((0, 1), 0.0, 20.0), ((2,), 20.0, 30.0)]
    assert found[0].labels[0] == ("Arabian camel", 0.6)
    # one scene (or no labels): none, the whole video is read as before
    twin.shots[2].labels = DESERT
    assert scenes(twin) == []
    for shot in twin.shots:
        shot.labels = []
    assert scenes(twin) == []


def _two_scene_twin() -> Twin:
    twin, _ = timed_twin("v", {"camel": (0, 90), "swan": (200, 290)}, scene=["mixed", "labels"],
                         speech=[(1.0, 3.0, "look at the camel"), (22.0, 25.0, "the swans are black")])
    twin.shots[0].labels, twin.shots[1].labels, twin.shots[2].labels = DESERT, DESERT_2, LAKE
    return twin


def test_a_scene_twin_keeps_what_lies_in_the_scene() -> None:
    twin = _two_scene_twin()
    first, second = scenes(twin)
    part = scene_twin(twin, second)
    assert [t.category for t in part.tracks] == ["swan"]
    assert {i.track_id for i in part.instances} == {2}
    assert part.speech is not None and [s.text for s in part.speech.segments] == ["the swans are black"]
    assert part.video.scene == list(second.labels) and all(200 <= f for f in part.video.sampled_frames)
    gist = scene_gist(scene_twin(twin, first))
    assert "Arabian camel" in gist and "camel" in gist and "swan" not in gist and "look at the camel" in gist


def test_scene_components_span_their_scene_and_one_scene_keeps_the_whole_video_labels() -> None:
    twin = _two_scene_twin()
    rows = [r for r in ComponentTexts.rows(twin) if r["kind"] == "scene"]
    spans = {(r["text"], r["start_s"], r["end_s"]) for r in rows}
    assert ("Arabian camel", 0.0, 20.0) in spans and ("black swan", 20.0, 30.0) in spans
    assert not any(r["text"] in ("mixed", "labels") for r in rows)  # the mixed whole-video labels give way
    whole, _ = timed_twin("w", {"camel": (0, 90)}, scene=["desert"])
    assert [(r["text"], r["start_s"], r["end_s"]) for r in ComponentTexts.rows(whole) if r["kind"] == "scene"] == [
        ("desert", 0.0, 30.0)]


def test_dense_rows_are_one_per_scene_and_search_scores_a_video_by_its_best(tmp_path: Path) -> None:
    twin = _two_scene_twin()
    rows = dense_rows(twin)
    assert [(r["source"], r["start_s"], r["end_s"]) for r in rows] == [("scene", 0.0, 20.0), ("scene", 20.0, 30.0)]
    single, _ = timed_twin("w", {"camel": (0, 90)}, scene=["desert"])
    assert dense_rows(single) == [dict(dense_text(single), start_s=None, end_s=None)]
    words = ["camel", "swan", "desert"]
    with TwinStore(tmp_path) as store:
        store.put_twin(twin, store.new_mask_dir("v"))
        store.put_twin(single, store.new_mask_dir("w"))
        index = DenseIndex(store, EcrTextEmbedder(KeywordEncoder(words)))
        assert index.sync().items == 3
        # the swan scene alone names only the swan: a whole-video text would have mixed in the camel
        assert [(h.video_id, round(h.score, 4)) for h in index.search_text("swan", k=2)] == [("v", 1.0), ("w", 0.0)]
        assert [(h.video_id, round(h.score, 4)) for h in index.search_text("camel", k=2)] == [("v", 1.0),
                                                                                             ("w", 0.7071)]
        assert [h.video_id for h in index.search_text("camel", k=1)] == ["v"]


def test_shot_labels_are_the_mean_of_their_frames() -> None:
    shots = [_shot(0, 0, 9, []), _shot(1, 10, 19, []), _shot(2, 20, 29, [])]
    labelled = label_shots(shots, {0: [("dune", 0.8), ("camel", 0.2)], 5: [("dune", 0.4)], 12: [("swan", 0.9)]})
    assert labelled[0].labels == [("dune", 0.6), ("camel", 0.1)]
    assert labelled[1].labels == [("swan", 0.9)] and labelled[2].labels == []


def test_the_parts_of_a_query_must_meet_in_one_scene(tmp_path: Path) -> None:
    # "split": a dog in the desert scene (shots 0-1), a ball in the lake scene (shot 2); "together": both, one scene
    split, _ = timed_twin("split", {"dog": (0, 150), "ball": (200, 290)})
    split.shots[0].labels, split.shots[1].labels, split.shots[2].labels = DESERT, DESERT_2, LAKE
    together, _ = timed_twin("together", {"dog": (0, 290), "ball": (0, 290)})
    rows = with_scenes(ComponentTexts.rows(split), scenes(split))
    dog = next(r for r in rows if r["kind"] == "object" and r["text"].startswith("dog"))
    assert (dog["scene_first"], dog["scene_last"]) == (0, 0)
    assert all(r["scene_first"] is None for r in with_scenes(ComponentTexts.rows(together), scenes(together)))
    with TwinStore(tmp_path) as store:
        for twin in (split, together):
            store.put_twin(twin, store.new_mask_dir(twin.video.video_id))
        index = ComponentIndex(store, ComponentEncoders(KeywordEncoder(["dog", "ball", "camel", "swan"])))
        index.sync()
        hits = {h.video_id: h for h in CompositionalSearch(index).search([sq("a dog"), sq("a ball")])}
        assert hits["together"].score == pytest.approx(1.0)
        assert hits["split"].score == pytest.approx(0.5)  # its best scene holds the dog only
        assert [m.text.split(";")[0] for m in hits["split"].evidence][0] == "dog"
        # one part alone: the scene that holds it scores as a whole video would
        assert {h.video_id: h.score for h in CompositionalSearch(index).search([sq("a ball")])}["split"] == \
            pytest.approx(1.0)


def _naive_maxima(sims: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_scenes = int(ranges[:, 1].max()) + 1
    values, args = np.full((n_scenes, sims.shape[1]), -np.inf), np.full((n_scenes, sims.shape[1]), -1)
    for k in range(n_scenes):
        mask = (ranges[:, 0] < 0) | ((ranges[:, 0] <= k) & (ranges[:, 1] >= k))
        if mask.any():
            masked = np.where(mask[:, None], sims, -np.inf)
            args[k] = masked.argmax(axis=0)
            values[k] = masked[args[k], np.arange(sims.shape[1])]
    return values, args


@pytest.mark.parametrize("seed", range(20))
def test_scene_maxima_is_the_best_component_meeting_each_scene(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_scenes, n_q = int(rng.integers(1, 40)), int(rng.integers(2, 8)), int(rng.integers(1, 4))
    sims = rng.integers(0, 5, (n, n_q)) / 4.0  # few distinct values: ties go to the first row
    first = rng.integers(0, n_scenes, n)
    ranges = np.stack([first, np.minimum(first + rng.integers(0, 3, n), n_scenes - 1)], axis=1)
    ranges[rng.random(n) < 0.2] = -1  # components of the whole video
    ranges[0] = (n_scenes - 1, n_scenes - 1)  # the last scene is met
    values, args = scene_maxima(sims, ranges)
    expected_values, expected_args = _naive_maxima(sims, ranges)
    assert np.array_equal(values, expected_values) and np.array_equal(args, expected_args)


def test_scene_maxima_of_a_video_of_one_scene_is_over_every_component() -> None:
    sims = np.array([[0.1, 0.9], [0.7, 0.2]])
    values, args = scene_maxima(sims, np.full((2, 2), -1))
    assert values.tolist() == [[0.7, 0.9]] and args.tolist() == [[1, 0]]
