"""Moments: component time spans in the catalogue, the localiser on twins with known spans (shots, speech, no
shots), and the one time formatter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from twinseek.config import RetrievalSettings
from twinseek.retrieval.components import ComponentIndex
from twinseek.retrieval.compositional import CompositionalSearch, SubQuery
from twinseek.retrieval.dense import DenseIndex, EcrTextEmbedder
from twinseek.retrieval.moments import (
    MomentLocaliser,
    Segment,
    pick_moments,
    placing,
    score_segments,
    segments,
    span_label,
)
from twinseek.twins.model import Twin
from twinseek.twins.store import TwinStore
from twinseek.twins.views import ComponentTexts

from support.moments import timed_twin
from support.retrieval import KeywordEncoder, keyword_index
from support.store import make_twin


def sq(text: str, negated: bool = False, weight: float = 1.0) -> SubQuery:
    return SubQuery(text=text, type="object", weight=weight, negated=negated)


def put(store: TwinStore, twin: Twin) -> Twin:
    store.put_twin(twin, store.new_mask_dir(twin.video.video_id))
    return twin


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TwinStore]:
    with TwinStore(tmp_path / "store") as s:
        yield s


def localiser(index: ComponentIndex, **settings: object) -> MomentLocaliser:
    return MomentLocaliser(index, index.encoders, RetrievalSettings(**settings))


# -- spans of components ----------------------------------------------------------------------------------------
def test_components_carry_their_seconds_speech_its_own_times(store: TwinStore) -> None:
    twin = put(store, timed_twin("v", {"dog": (200, 290), "cat": (0, 90)}, scene=["park"],
                                 speech=[(12.5, 14.25, "look at the ball")])[0])
    rows = {r["text"].split(";")[0]: r for r in ComponentTexts.rows(twin)}
    assert (rows["dog"]["start_s"], rows["dog"]["end_s"]) == (20.0, 29.1)  # frames 200-290 at 10 fps, inclusive
    assert (rows["cat"]["start_s"], rows["cat"]["end_s"]) == (0.0, 9.1)
    assert (rows["park"]["start_s"], rows["park"]["end_s"]) == (0.0, 30.0)  # a scene label: the whole video
    speech = rows['someone says "look at the ball"']
    assert (speech["start_s"], speech["end_s"], speech["frame_start"], speech["frame_end"]) == (12.5, 14.25, 125, 142)
    index = keyword_index(store)
    index.sync()
    stored = {r["kind"]: r for r in store.db.query("select kind, start_s, end_s from components")}
    assert (stored["speech"]["start_s"], stored["speech"]["end_s"]) == (12.5, 14.25)
    found = CompositionalSearch(index).search([sq("a dog"), sq("a ball")])[0].evidence
    assert [(m.start_s, m.end_s) for m in found] == [(20.0, 29.1), (12.5, 14.25)]  # the dog (or its gloss); speech
    assert found[1].kind == "speech"


def test_an_index_from_before_spans_is_rebuilt_with_them(store: TwinStore) -> None:
    put(store, timed_twin("v", {"dog": (200, 290)})[0])
    index = keyword_index(store)
    index.sync()
    store.db.execute("update components set start_s = null, end_s = null")  # rows as an older version wrote them
    meta = index.vectors().meta
    index.vectors().meta = {**meta, "fingerprint": meta["fingerprint"].replace("texts=6", "texts=4")}
    index.vectors().save(index.folder)
    fresh = keyword_index(store)
    assert fresh.sync().rebuilt
    assert store.db.execute("select count(*) from components where start_s is null").fetchone()[0] == 0


# -- the localiser ----------------------------------------------------------------------------------------------
def test_the_dog_query_finds_the_dog_shot(store: TwinStore) -> None:
    put(store, timed_twin("v", {"cat": (0, 90), "person": (100, 190), "dog": (200, 290)}, scene=["park"])[0])
    index = keyword_index(store)
    index.sync()
    loc = localiser(index)
    twin = store.get_twin("v")
    moments = loc.locate(loc.prepare([sq("a dog")]), twin)
    assert len(moments) == 1  # the other shots score below the bar: no second moment
    best = moments[0]
    assert (best.start_s, best.end_s, best.shots) == (20.0, 30.0, [2])
    assert best.frames == list(range(200, 300, 10)) and best.evidence[0].startswith("dog")
    assert best.label == "00:00:20-00:00:30"
    # a negated sub-query places nothing; only negated ones: no moment
    assert loc.locate(loc.prepare([sq("a dog"), sq("a cat", negated=True)]), twin)[0].shots == [2]
    assert loc.prepare([sq("a cat", negated=True)]) is None and loc.locate(None, twin) == []
    assert loc.embedded_videos == 0  # every vector came back from the catalogue


def test_a_label_of_the_whole_video_does_not_hide_the_shot_that_matches(store: TwinStore) -> None:
    # a long video's scene label "dog" meets every shot alike and matches as well as the dog track: it places nothing
    put(store, timed_twin("v", {"cat": (0, 90), "person": (100, 190), "dog": (200, 290)}, scene=["dog"])[0])
    index = keyword_index(store)
    index.sync()
    loc = localiser(index)
    best = loc.locate(loc.prepare([sq("a dog")]), store.get_twin("v"))[0]
    assert (best.start_s, best.end_s, best.shots) == (20.0, 30.0, [2])
    spans = np.array([[0.0, 30.0], [20.0, 29.1], [0.0, 27.5]])
    assert placing(spans, segments(store.get_twin("v"))).tolist() == [False, True, False]  # 27.5 of 30 s: >= 90%
    assert placing(spans, [Segment(0.0, 30.0, 0)]).tolist() == [True, True, True]  # one shot: all of them
    cells = [Segment(0.0, 15.0), Segment(15.0, 30.0)]  # a twin without shots: a clip-long track is its evidence
    assert placing(spans, cells).tolist() == [True, True, True]


def test_a_match_over_adjacent_shots_is_one_moment_and_separate_ones_are_ranked(store: TwinStore) -> None:
    put(store, timed_twin("long", {"dog": (100, 290)})[0])
    put(store, timed_twin("twice", {"dog": (0, 90), "cat": (100, 190), "person": (200, 290)})[0])
    index = keyword_index(store)
    index.sync()
    loc = localiser(index)
    q = loc.prepare([sq("a dog")])
    long = loc.locate(q, store.get_twin("long"))
    assert [(m.start_s, m.end_s, m.shots) for m in long] == [(10.0, 30.0, [1, 2])]
    both = loc.prepare([sq("a dog"), sq("a person", weight=0.5)])
    moments = loc.locate(both, store.get_twin("twice"))
    assert [m.shots for m in moments] == [[0], [2]]  # the dog's shot first, then the person's, none overlapping
    assert moments[0].score > moments[1].score
    assert loc.locate(both, store.get_twin("twice"), limit=1) == moments[:1]
    assert loc.locate(both, store.get_twin("twice")) == moments  # deterministic


def test_speech_segments_are_moments(store: TwinStore) -> None:
    put(store, timed_twin("talk", {"person": (0, 290)}, speech=[(3.0, 4.5, "hello"), (14.0, 17.0, "a brown horse")])[0])
    index = keyword_index(store)
    index.sync()
    loc = localiser(index)
    twin = store.get_twin("talk")
    (moment,) = loc.locate(loc.prepare([sq("a horse")]), twin)
    assert moment.shots == [1] and moment.evidence == ['someone says "a brown horse"']
    without_shots = twin.model_copy(update={"shots": []})  # cells of sampled frames, trimmed to the evidence
    (trimmed,) = loc.locate(loc.prepare([sq("a horse")]), without_shots)
    assert (trimmed.start_s, trimmed.end_s, trimmed.shots) == (14.0, 17.0, []) and trimmed.frames == [140, 150, 160]


def test_a_video_without_shots_is_cut_at_its_sampled_frames(store: TwinStore) -> None:
    twin = put(store, make_twin("clip")[0])  # frames 0, 5, 10 of 12 at 10 fps; the dog on all of them
    index = keyword_index(store)
    index.sync()
    loc = localiser(index)
    (moment,) = loc.locate(loc.prepare([sq("a brown dog")]), twin)  # a short clip: one moment, all of it
    assert (moment.start_s, moment.end_s, moment.shots, moment.frames) == (0.0, 1.2, [], [0, 5, 10])
    put(store, timed_twin("long", {"dog": (200, 200), "cat": (0, 290)}, with_shots=False)[0])
    (dog,) = loc.locate(loc.prepare([sq("a dog")]), store.get_twin("long"))
    # seen on one sampled frame (20 s; sampled every second): its cell, from halfway to each neighbour, not the
    # one frame the track's span says (a moment is as coarse as the sampling, never finer)
    assert (dog.start_s, dog.end_s, dog.frames) == (19.5, 20.5, [200])


def test_a_video_the_catalogue_lacks_is_embedded_with_the_same_encoders(store: TwinStore) -> None:
    put(store, timed_twin("v", {"cat": (0, 90), "dog": (200, 290)})[0])
    index = keyword_index(store)
    index.sync()
    late = put(store, timed_twin("late", {"dog": (0, 90), "cat": (100, 290)})[0])  # ingested after the sync
    loc = localiser(index)
    q = loc.prepare([sq("a dog")])
    assert loc.locate(q, late)[0].shots == [0] and loc.embedded_videos == 1
    assert loc.locate(q, store.get_twin("v"))[0].shots == [2] and loc.embedded_videos == 1


def test_a_twin_without_components_or_moments_wanted_has_none(store: TwinStore) -> None:
    empty = put(store, timed_twin("empty", {})[0])
    index = keyword_index(store)
    index.sync()
    assert localiser(index).locate(localiser(index).prepare([sq("a dog")]), empty) == []
    dog = put(store, timed_twin("dog", {"dog": (0, 90)})[0])
    none = localiser(index, max_moments=0)
    assert none.locate(none.prepare([sq("a dog")]), dog) == []


# -- the pieces -------------------------------------------------------------------------------------------------
def test_segments_are_shots_or_cells_of_sampled_frames() -> None:
    twin, _ = timed_twin("v", {"dog": (0, 90)})
    assert segments(twin) == [Segment(0.0, 10.0, 0), Segment(10.0, 20.0, 1), Segment(20.0, 30.0, 2)]
    cells = segments(twin.model_copy(update={"shots": []}))
    assert len(cells) == 30 and cells[0] == Segment(0.0, 0.5) and cells[-1] == Segment(28.5, 30.0)


def test_segment_scores_take_the_best_component_meeting_each_segment() -> None:
    segs = [Segment(0, 10, 0), Segment(10, 20, 1), Segment(20, 30, 2)]
    spans = np.array([[0, 30], [21, 25], [5, 12]], float)  # whole video, inside shot 2, across shots 0-1
    sims = np.array([[0.2, 0.0], [0.9, -0.3], [0.1, 0.8]])
    scores, best = score_segments(sims, spans, segs, [1.0, 0.5])
    assert np.allclose(scores, [(0.2 + 0.4) / 1.5, (0.2 + 0.4) / 1.5, (0.9 + 0.0) / 1.5])
    assert best.tolist() == [[0, 2], [0, 2], [1, 0]]


def test_runs_grow_while_scores_clear_the_bar() -> None:
    scores = np.array([0.1, 0.5, 0.9, 0.7, 0.2, 0.85, 0.1])
    assert pick_moments(scores, 0.5, 3) == [(1, 3, 2), (5, 5, 5)]  # bar 0.1 + 0.5 x 0.8 = 0.5: 0.5 is not below it
    assert pick_moments(scores, 0.7, 3) == [(2, 3, 2), (5, 5, 5)]  # bar 0.66
    assert pick_moments(scores, 0.7, 1) == [(2, 3, 2)]
    assert pick_moments(scores, 0.95, 3) == [(2, 2, 2)]  # bar 0.86: 0.85 starts no moment
    assert pick_moments(scores, 0.0, 3) == [(0, 6, 2)]
    assert pick_moments(np.full(4, 0.3), 0.5, 3) == [(0, 3, 0)]  # nothing places it: the whole video


def test_shots_the_sampling_never_saw_neither_score_nor_break_a_run() -> None:
    seen = [True, False, True, False, False, True, True]
    segs = [Segment(10.0 * k, 10.0 * k + 10, k, observed) for k, observed in enumerate(seen)]
    scores = np.array([0.9, 0.0, 0.8, 0.0, 0.0, 0.1, 0.2])
    # the run crosses unseen shot 1 to shot 2; the unseen 3-4 before shot 5 (below the bar) split at 40 s
    assert pick_moments(scores, 0.5, 1, segs) == [(0, 3, 0)]
    assert pick_moments(scores, 0.5, 1) == [(0, 0, 0)]  # without the segments, the unseen shots score 0
    # an unseen stretch at the video's start joins the run; the bar is over the seen shots only
    start = [Segment(0, 10, 0, False), Segment(10, 20, 1), Segment(20, 30, 2)]
    assert pick_moments(np.array([0.0, 0.9, 0.5]), 0.5, 3, start) == [(0, 1, 1)]  # bar 0.7, not 0.45


def test_the_time_format() -> None:
    assert span_label(192.0, 221.0) == "00:03:12-00:03:41"
    assert span_label(192.4, 221.2) == "00:03:12-00:03:42"  # the printed span holds the moment
    assert span_label(3661.0, 3725.5) == "01:01:01-01:02:06"
    assert span_label(0.0, 0.0) == "00:00:00-00:00:00"


def test_a_searchs_sub_queries_are_encoded_once(store: TwinStore) -> None:
    put(store, timed_twin("v", {"dog": (200, 290)})[0])
    index = keyword_index(store)
    index.sync()
    encoder = index.encoders.queries
    assert isinstance(encoder, KeywordEncoder)
    before = len(encoder.calls)
    CompositionalSearch(index).search([sq("a dog"), sq("a cat", negated=True)])
    query = localiser(index).prepare([sq("a dog"), sq("a cat", negated=True)])
    assert encoder.calls[before:] == [["a dog", "a cat"]]  # the moments reuse the stage's vectors
    assert query is not None and np.allclose(query.vectors, encoder.encode(["a dog"]))


def test_the_scene_gists_of_the_dense_index_place_a_match_the_components_miss(store: TwinStore) -> None:
    # two scenes (shots 0-1: desert, shot 2: lake) whose tracks say nothing of the query ("oasis" is only in the
    # first scene's labels, which the keyword encoder of the components does not know)
    twin, _ = timed_twin("v", {"person": (0, 290)})
    twin.shots[0].labels = twin.shots[1].labels = [("oasis", 0.8)]
    twin.shots[2].labels = [("lake", 0.8)]
    put(store, twin)
    index = keyword_index(store)
    index.sync()
    dense = DenseIndex(store, EcrTextEmbedder(KeywordEncoder(["oasis", "lake", "person"])))
    dense.sync()
    with_dense = MomentLocaliser(index, index.encoders, RetrievalSettings(), dense=dense)
    query = with_dense.prepare([sq("a person")], "a person at an oasis")
    assert query is not None and query.dense is not None
    (best, *_) = with_dense.locate(query, store.get_twin("v"))
    assert (best.start_s, best.end_s, best.shots) == (0.0, 20.0, [0, 1])
    # components only (weight 0, or no query text): the person is everywhere, so the whole video is one moment
    alone = MomentLocaliser(index, index.encoders, RetrievalSettings(moment_dense_weight=0), dense=dense)
    (whole,) = alone.locate(alone.prepare([sq("a person")], "a person at an oasis"), store.get_twin("v"))
    assert (whole.start_s, whole.end_s) == (0.0, 30.0)
    assert with_dense.locate(with_dense.prepare([sq("a person")]), store.get_twin("v"))[0].shots == [0, 1, 2]


def test_a_video_of_several_scenes_is_localised_scene_by_scene(store: TwinStore) -> None:
    # the dog track meets only shot 1, but shots 0-1 are one scene: by scene, the moment is the scene
    twin, _ = timed_twin("v", {"dog": (100, 150), "cat": (200, 290)})
    twin.shots[0].labels = twin.shots[1].labels = [("park", 0.8)]
    twin.shots[2].labels = [("sofa", 0.8)]
    put(store, twin)
    assert segments(twin, by_scene=True) == [Segment(0.0, 20.0, 0, True, (0, 1)), Segment(20.0, 30.0, 2, True, (2,))]
    assert segments(twin) == segments(twin, by_scene=False) and len(segments(twin)) == 3
    index = keyword_index(store)
    index.sync()
    by_scene = localiser(index, moment_unit="scene")
    (best, *_) = by_scene.locate(by_scene.prepare([sq("a dog")]), store.get_twin("v"))
    assert (best.start_s, best.end_s, best.shots) == (0.0, 20.0, [0, 1])
    by_shot = localiser(index)  # the default
    (best, *_) = by_shot.locate(by_shot.prepare([sq("a dog")]), store.get_twin("v"))
    assert (best.start_s, best.end_s, best.shots) == (10.0, 20.0, [1])
