"""The twin in words: the one-line description (names a person uses, agreement, counts, scene, text), and the one
vocabulary every renderer shares."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from twinseek.twins.model import Instance, Provenance, ScreenText, Track, Twin, Video
from twinseek.twins.store import TwinStore
from twinseek.twins.views import (
    DEFAULT_RULES,
    DESCRIPTION_SOURCE,
    NOTHING,
    ComponentTexts,
    compact,
    describe,
    description,
    template_ecr,
)
from twinseek.twins.words import category_phrase, lexicon, motion_words

FRAMES = list(range(0, 16))
CLASSIFIER = "mobilenet_v2-imagenet"
COCO = "ssd_mobilenet_v2_coco_2018_03_29"


def track(tid: int, category: str, score: float, *, group: str | None = None, source: str = CLASSIFIER,
          votes: dict[str, float] | None = None, frames: int = 16, area: float = 0.1) -> Track:
    return Track(video_id="v", track_id=tid, category=category, category_score=score, category_source=source,
                 category_group=group, votes=votes or {}, first_frame=0, last_frame=frames - 1, frame_count=frames,
                 mean_area=area)


def twin(*tracks: Track, boxes: dict[int, tuple[float, float, float, float]] | None = None,
         frame_votes: dict[str, float] | None = None, text: list[ScreenText] | None = None) -> Twin:
    """A twin whose tracks are each seen on their first ``frame_count`` frames, at ``boxes[track]``."""
    video = Video(video_id="v", path="/v.mp4", content_hash="h", width=64, height=48, fps=8.0, frame_count=16,
                  duration_s=2.0, sampled_frames=FRAMES, profile="embedded",
                  specialists=[Provenance(role="detector", tier="embedded", model="m")],
                  frame_votes=frame_votes or {}, screen_text=text or [])
    boxes = boxes or {}
    instances = [Instance(video_id="v", track_id=t.track_id, frame_index=f, category=t.category,
                          category_score=t.category_score, mask_path="", bbox=(b := boxes.get(t.track_id, (0.1 * t.track_id, 0.1, 0.1 * t.track_id + 0.08, 0.3))),
                          centroid=((b[0] + b[2]) / 2, (b[1] + b[3]) / 2), area=t.mean_area)
                 for t in tracks for f in FRAMES[: t.frame_count]]
    return Twin(video=video, tracks=list(tracks), instances=instances)


def test_a_breed_is_said_by_its_basic_level_name_a_distinctive_species_by_its_own() -> None:
    setter = track(1, "English setter", 0.7, group="dog", votes={"English setter": 0.75, "clumber": 0.25})
    assert describe(twin(setter)) == "objects: dog (animal)"  # the views agree on "dog", not on the breed
    swan = track(1, "black swan", 0.95, group="bird", votes={"black swan": 1.0})
    assert describe(twin(swan)) == "objects: black swan (bird)"  # sure and distinctive: the leaf is kept
    unsure = track(1, "black swan", 0.4, group="bird", votes={"black swan": 0.5, "goose": 0.5})
    assert describe(twin(unsure)) == "objects: swan (bird)"  # not sure of the species: its basic-level name
    assert lexicon().basic("Arabian camel") == "camel" and lexicon().basic("beach wagon") == "car"


def test_labels_the_views_do_not_agree_on_are_left_out_not_printed() -> None:
    guess = track(1, "cleaver", 0.07, votes={"cleaver": 0.25, "letter opener": 0.25, "hatchet": 0.25})
    split = track(2, "grey whale", 0.5, group="whale", votes={"grey whale": 0.25, "seashore": 0.25})
    brief = track(3, "goldfish", 0.99, group="fish", votes={"goldfish": 1.0}, frames=2)  # seen on 2 of 16 frames
    assert describe(twin(guess, split, brief)) == NOTHING
    weak_person = track(4, "person", 0.3, source="mediapipe-selfie")  # a selfie mask on a blob
    assert describe(twin(weak_person)) == NOTHING
    person = track(5, "person", 0.93, source="mediapipe-pose")
    assert describe(twin(person, guess)) == "objects: person"


def test_a_detector_word_stays_unless_the_views_agree_on_the_classifiers_finer_name() -> None:
    refined = track(1, "ox", 0.98, group="cow", source=f"{COCO}+{CLASSIFIER}", votes={"ox": 0.75, "oxcart": 0.25})
    assert describe(twin(refined)) == "objects: cow (animal)"
    doubtful = track(1, "American egret", 0.9, group="bird", source=f"{COCO}+{CLASSIFIER}",
                     votes={"American egret": 0.25, "albatross": 0.25})
    assert describe(twin(doubtful)) == "objects: bird (animal)"  # the detector's word
    kite = track(1, "kite", 0.8, source=COCO)  # COCO's kite (the toy), not ImageNet's kite (the bird)
    assert describe(twin(kite)) == "objects: kite"
    weak_coco = track(1, "surfboard", 0.3, source=COCO)
    owl = track(1, "ladder", 0.3, source="google/owlv2-base-patch16-ensemble")  # passed OWLv2's own threshold
    assert describe(twin(weak_coco)) == NOTHING and describe(twin(owl)) == "objects: ladder"


def test_counts_are_objects_seen_at_once_and_overlapping_tracks_count_once() -> None:
    fish = [track(i, "goldfish", 0.97, group="fish", votes={"goldfish": 1.0}) for i in (1, 2, 3)]
    apart = {1: (0.0, 0.0, 0.2, 0.2), 2: (0.4, 0.4, 0.6, 0.6), 3: (0.7, 0.7, 0.9, 0.9)}
    assert describe(twin(*fish, boxes=apart)) == "objects: goldfish x3 (fish)"
    split = {1: (0.0, 0.0, 0.4, 0.4), 2: (0.05, 0.05, 0.35, 0.3), 3: (0.7, 0.7, 0.9, 0.9)}  # 2 lies inside 1
    assert describe(twin(*fish, boxes=split)) == "objects: goldfish x2 (fish)"


def test_scene_words_come_from_scene_classes_the_frames_agree_on_and_text_only_when_readable() -> None:
    dog = track(1, "English setter", 0.7, group="dog", votes={"English setter": 1.0})
    votes = {"seashore": 0.75, "alp": 0.25, "speedboat": 0.6}  # speedboat is an object class, never a scene
    text = [ScreenText(frame_index=0, text="BREAKING NEWS", score=0.98, bbox=(0, 0, 1, 0.1)),
            ScreenText(frame_index=0, text="ir!7#", score=0.99, bbox=(0, 0.2, 1, 0.3)),
            ScreenText(frame_index=4, text="OPEN DAY", score=0.6, bbox=(0, 0.5, 1, 0.6))]
    line = describe(twin(dog, frame_votes=votes, text=text))
    assert line == 'objects: dog (animal); scene: seashore; text: "BREAKING NEWS"'
    assert describe(twin(dog, frame_votes=votes), replace(DEFAULT_RULES, scene_agree=0.2)).endswith(
        "scene: seashore, mountain")


def test_the_stored_description_is_read_only_when_todays_rules_wrote_it(tmp_path: Path) -> None:
    swan = twin(track(1, "black swan", 0.95, group="bird", votes={"black swan": 1.0}))
    swan.video.description, swan.video.description_source = "objects: something old", "words-0/describe-0"
    assert description(swan) == "objects: black swan (bird)"  # written by other rules: made again
    swan.video.description_source = DESCRIPTION_SOURCE
    assert description(swan) == "objects: something old"
    with TwinStore(tmp_path) as store:
        store.put_twin(swan, store.new_mask_dir("v"))
        again = store.get_twin("v")
        assert again.video.description == "objects: something old" and again.tracks[0].votes == {"black swan": 1.0}
        store.set_description("v", "objects: swan", DESCRIPTION_SOURCE)
        assert description(store.get_twin("v")) == "objects: swan"


def test_with_a_vlm_caption_the_description_leads_with_it() -> None:
    swan = twin(track(1, "black swan", 0.95, group="bird", votes={"black swan": 1.0}))
    swan.video.ecr_text, swan.video.ecr_source = "A black swan  glides on a pond.", "vlm:qwen2.5-vl:ecr-1"
    assert description(swan) == "A black swan glides on a pond. (objects: black swan (bird))"
    swan.video.ecr_source = "template"  # the twin's own template says nothing new: not repeated
    assert description(swan) == "objects: black swan (bird)"


def test_every_renderer_says_a_track_one_way() -> None:
    dog = track(1, "dog", 0.9, group="dog", source="test").model_copy(update={"direction": "right", "speed": 0.3})
    model = twin(dog)
    assert category_phrase(dog) == "dog" and motion_words(dog) == "moving right"
    view = compact(model)
    assert view["o"][0]["cat"] == "dog" and view["o"][0]["mv"] == "moving right" and view["desc"] == describe(model)
    assert ComponentTexts.object_text(dog).startswith("dog; ") and "moving right" in ComponentTexts.object_text(dog)
    assert "A dog, moving right" in template_ecr(model)
    still = dog.model_copy(update={"direction": "stationary"})
    assert "stationary" in template_ecr(twin(still)) and "stationary" in ComponentTexts.object_text(still)


@pytest.mark.parametrize("rules", [DEFAULT_RULES, replace(DEFAULT_RULES, agree=0.34)])
def test_rules_are_recorded_in_the_description_source(rules) -> None:  # type: ignore[no-untyped-def]
    assert rules.source.startswith(DESCRIPTION_SOURCE.split(";")[0])
    assert (rules.source == DESCRIPTION_SOURCE) == (rules == DEFAULT_RULES)
