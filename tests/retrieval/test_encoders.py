"""Component texts, the encoder bundle and (a few assertions on) the real embedded MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from twinseek.config import load_settings
from twinseek.errors import ModelUnavailableError
from twinseek.retrieval.encoders import ComponentEncoders, MiniLMEncoder, TextEncoder, minilm_path
from twinseek.twins.model import Instance, Relation, Track, Twin
from twinseek.twins.views import ComponentTexts
from twinseek.twins.words import position_words, size_word

from support.retrieval import KeywordEncoder
from support.store import make_twin


def track(tid: int = 1, category: str = "black swan", group: str | None = "bird", **kw: object) -> Track:
    fields: dict = dict(video_id="v", track_id=tid, category=category, category_score=0.9, category_source="t",
                        category_group=group, attributes="black with a red beak", first_frame=0, last_frame=10,
                        frame_count=3, mean_area=0.2, speed=0.3, direction="right")
    fields.update(kw)
    return Track(**fields)


def instance(tid: int, x: float, y: float, depth: float | None = None) -> Instance:
    return Instance(video_id="v", track_id=tid, frame_index=0, category="c", category_score=1.0, mask_path="",
                    bbox=(x - 0.1, y - 0.1, x + 0.1, y + 0.1), centroid=(x, y), depth=depth, area=0.04)


def test_keyword_encoder_satisfies_protocol() -> None:
    assert isinstance(KeywordEncoder(["dog"]), TextEncoder)


@pytest.mark.parametrize(("x", "y", "words"), [(0.1, 0.5, "left"), (0.5, 0.5, "centre"), (0.9, 0.1, "top right"),
                                              (0.5, 0.9, "bottom"), (0.2, 0.8, "bottom left")])
def test_position_words(x: float, y: float, words: str) -> None:
    assert position_words(x, y) == words


def test_object_text_has_category_attributes_position_size_motion() -> None:
    text = ComponentTexts.object_text(track(), [instance(1, 0.15, 0.5, depth=0.1), instance(1, 0.2, 0.5, depth=0.2)])
    assert text == "black swan (bird), black with a red beak; left, large, near, moving right"
    plain = ComponentTexts.object_text(track(group="black swan", attributes="", direction="stationary",
                                             mean_area=0.001))
    assert plain == "black swan; tiny, stationary"
    assert size_word(0.05) == "medium"


def test_relation_text_and_rows_merge_runs() -> None:
    tracks = [track(1, "person", None, attributes=""), track(2, "horse", None, attributes="")]
    rels = [Relation(video_id="v", subject_track=1, predicate="left of", object_track=2, kind="spatial",
                     frame_start=0, frame_end=2),
            Relation(video_id="v", subject_track=1, predicate="left of", object_track=2, kind="spatial",
                     frame_start=6, frame_end=9),
            Relation(video_id="v", subject_track=2, predicate="moving right", object_track=None, kind="temporal",
                     frame_start=0, frame_end=9)]
    base, _ = make_twin("v")
    rows = ComponentTexts.rows(Twin(video=base.video, tracks=tracks, instances=[], relations=rels))
    assert [r["text"] for r in rows if r["kind"] != "gloss"] == [
        "person; large, moving right", "horse; large, moving right", "person left of horse", "horse moving right"]
    assert all(r["kind"] == "gloss" for r in rows[4:])  # WordNet glosses follow (see test_perception.py)
    assert (rows[2]["frame_start"], rows[2]["frame_end"], rows[2]["object_track"]) == (0, 9, 2)
    assert rows[3]["object_track"] is None and rows[0]["kind"] == "object"


def test_bundle_routes_each_kind_to_its_encoder() -> None:
    objects, relations = KeywordEncoder(["dog", "left"], "o"), KeywordEncoder(["left", "dog"], "r")
    bundle = ComponentEncoders(objects, relations)
    out = bundle.encode_components(["object", "relation"], ["dog", "dog"])
    assert out.tolist() == [[1, 0], [0, 1]]
    assert bundle.queries is objects and "obj=kw:o" in bundle.fingerprint and "rel=kw:r" in bundle.fingerprint
    with pytest.raises(ValueError, match="share one embedding space"):
        ComponentEncoders(objects, KeywordEncoder(["a", "b", "c"]))


def test_settings_choose_encoder_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    default = ComponentEncoders.from_settings(load_settings().retrieval)
    assert default.objects is default.relations is default.queries
    assert default.objects.model == "all-MiniLM-L6-v2" and default.objects.tier == "embedded"
    monkeypatch.setenv("TWINSEEK_RETRIEVAL__OBJECT_ENCODER", "/models/obj")
    monkeypatch.setenv("TWINSEEK_RETRIEVAL__QUERY_ENCODER", "/models/query")
    settings = load_settings().retrieval
    assert settings.object_encoder == "/models/obj" and settings.relation_encoder is None
    encoder = MiniLMEncoder(settings.object_encoder)  # nothing is loaded until first use
    assert encoder.tier == "trained" and encoder.model == "obj"
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        encoder.encode(["x"])


@pytest.mark.integration
def test_real_minilm_prefers_the_matching_object() -> None:
    encoder = MiniLMEncoder()
    swan = ComponentTexts.object_text(track(), [instance(1, 0.5, 0.5)])
    car = ComponentTexts.object_text(track(2, "car", "vehicle", attributes="red, shiny"), [instance(2, 0.5, 0.5)])
    vecs = encoder.encode(["a black swan", swan, car])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32 and encoder.dim == 384
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    # a local folder drops in for the embedded weights and shares the loaded model when the path matches
    folder = MiniLMEncoder(minilm_path())
    assert folder.tier == "trained" and np.allclose(folder.encode(["a black swan"]), vecs[:1], atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)
