from __future__ import annotations

import pytest

from twinseek.config import load_settings


def test_defaults_are_the_embedded_profile() -> None:
    s = load_settings()
    assert s.profile == "embedded"
    assert (s.specialists.segmenter, s.specialists.detector, s.specialists.depth) == ("embedded", "embedded", "none")
    assert s.tier_of("segmenter") == "embedded"


def test_paper_profile_chooses_paper_models() -> None:
    s = load_settings(profile="paper")
    assert (s.specialists.segmenter, s.specialists.detector, s.specialists.depth, s.specialists.describer) == (
        "sam2", "owlv2", "depth-anything", "qwen-vl")
    assert s.tier_of("depth") == "paper"


def test_explicit_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINSEEK_PROFILE", "paper")
    monkeypatch.setenv("TWINSEEK_SAMPLING__FRAMES", "24")
    monkeypatch.setenv("TWINSEEK_SPECIALISTS__DEPTH", "none")
    s = load_settings()
    assert s.profile == "paper" and s.sampling.frames == 24 and s.specialists.depth == "none"
    s = load_settings(profile="embedded", sampling={"max_side": 320}, store=None)
    assert s.profile == "embedded"
    assert s.sampling.frames == 24 and s.sampling.max_side == 320  # nested env values survive a partial override


def test_bad_values_are_rejected() -> None:
    with pytest.raises(ValueError):
        load_settings(profile="gpu-cluster")
    with pytest.raises(ValueError):
        load_settings(sampling={"frames": 0})
