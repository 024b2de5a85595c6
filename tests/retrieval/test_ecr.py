from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twinseek.retrieval.ecr import TemplateEcr, VlmEcr, ensure_ecr
from twinseek.twins.model import Relation, Track
from twinseek.twins.store import TwinStore
from twinseek.twins.views import template_ecr

from support.store import make_twin, put
from support.tiny_models import build_tiny_qwen2vl


def test_template_names_objects_look_motion_scene_and_relations() -> None:
    twin, _ = make_twin()
    twin.video.scene = [("lakeside", 0.6), ("seashore", 0.2)]
    twin.tracks.append(Track(video_id="clip", track_id=2, category="person", category_score=0.9,
                             category_source="t", attributes="red, small", first_frame=0, last_frame=10,
                             frame_count=3, mean_area=0.01, direction="stationary"))
    twin.relations.append(Relation(video_id="clip", subject_track=1, predicate="left of", object_track=2,
                                   kind="spatial", frame_start=0, frame_end=10))
    text = template_ecr(twin)
    assert "Seen in the video: lakeside, seashore." in text and "dog" in text and "brown" in text and "moving right" in text
    assert "person" in text and "stationary" in text and "The dog is left of the person." in text
    assert "wolf" not in text  # a runner-up label below the noise floor is not offered as an alternative


def test_unsure_categories_are_flagged() -> None:
    twin, _ = make_twin()
    twin.tracks[0].category, twin.tracks[0].category_score, twin.tracks[0].category_group = "cleaver", 0.05, None
    assert "unclear, perhaps a cleaver" in template_ecr(twin)


def test_ensure_ecr_fills_missing_and_respects_source(tmp_path: Path) -> None:
    with TwinStore(tmp_path) as store:
        for vid in ("a", "b"):
            twin, masks = make_twin(vid)
            put(store, twin, masks)
        assert ensure_ecr(store, TemplateEcr()) == 2
        assert ensure_ecr(store, TemplateEcr()) == 0  # already there from the same source
        video = store.get_video("a")
        assert video.ecr_source == "template" and "dog" in (video.ecr_text or "")
        assert ensure_ecr(store, TemplateEcr(), force=True) == 2


@pytest.fixture(scope="module")
def qwen2vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("qwen2vl"))


def test_vlm_ecr_runs_the_real_processor_and_generate(qwen2vl_dir: Path) -> None:
    vlm = VlmEcr(str(qwen2vl_dir), device="cpu", max_new_tokens=6)
    text = vlm.describe(np.random.default_rng(0).integers(0, 255, (4, 96, 128, 3), dtype=np.uint8))
    assert isinstance(text, str) and len(text) <= 6 * 8  # random weights: bounded text, content meaningless
    assert vlm.source.startswith("vlm:")


def test_llm_ecr_keeps_the_template_facts_and_falls_back(stub) -> None:  # type: ignore[no-untyped-def]
    from twinseek.retrieval.ecr import LLMEcr

    from support.llm_stub import completion

    twin, _ = make_twin()
    stub.script = [completion("A brown dog trots to the right across a field.")]
    ecr = LLMEcr(stub.client())
    text = ecr.generate(twin)
    assert text.startswith("A brown dog trots") and template_ecr(twin) in text
    assert '"cat":"dog"' in stub.requests[0]["messages"][-1]["content"]  # the compact twin was sent
    assert ecr.source.startswith("llm:stub:")
    stub.script = [("status", 503)]
    assert ecr.generate(twin) == template_ecr(twin)
