from __future__ import annotations

from pathlib import Path

import pytest

from twinseek.config import LLMSettings, load_settings


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


# -- strictness: a misspelt key is an error that names the closest valid key -------------------------------------
def test_misspelt_keyword_arguments_name_the_closest_key() -> None:
    from twinseek.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown setting retreival; did you mean retrieval\?"):
        load_settings(retreival={"top_k": 3})
    with pytest.raises(ConfigError, match=r"unknown setting retrieval\.top_kk; did you mean retrieval\.top_k\?"):
        load_settings(retrieval={"top_kk": 3})
    with pytest.raises(ConfigError, match=r"llm\.timeout; did you mean llm\.timeout_s\?"):
        load_settings(llm={"timeout": 5})
    with pytest.raises(ConfigError, match="valid keys here: profile, store"):
        load_settings(zzzz=1)


def test_every_settings_group_forbids_unknown_keys() -> None:
    from pydantic import BaseModel

    from twinseek.config import Settings

    groups = [f.annotation for f in Settings.model_fields.values()
              if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)]
    assert len(groups) >= 6
    assert Settings.model_config["extra"] == "forbid"
    assert all(g.model_config.get("extra") == "forbid" for g in groups)  # type: ignore[union-attr]
    from twinseek.web.settings import WebSettings

    assert WebSettings.model_config.get("extra") == "forbid"


def test_agent_open_with_a_misspelt_group_fails_before_touching_the_store(tmp_path: Path) -> None:
    from twinseek.agent import Agent
    from twinseek.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean retrieval"):
        Agent.open(tmp_path / "no-store", retreival={"top_k": 3})
    assert not (tmp_path / "no-store").exists()


@pytest.mark.parametrize(("name", "suggestion"), [
    ("TWINSEEK_RETREIVAL__TOP_K", "TWINSEEK_RETRIEVAL__TOP_K"),
    ("TWINSEEK_LLM__TIMEOUT", "TWINSEEK_LLM__TIMEOUT_S"),
    ("TWINSEEK_SAMPLNG__FRAMES", "TWINSEEK_SAMPLING__FRAMES"),
    ("twinseek_llm__modle", "TWINSEEK_LLM__MODEL"),  # names are case-insensitive, as pydantic-settings reads them
])
def test_misspelt_environment_variables_name_the_closest_key(monkeypatch: pytest.MonkeyPatch, name: str,
                                                              suggestion: str) -> None:
    from twinseek.errors import ConfigError

    monkeypatch.setenv(name, "3")
    with pytest.raises(ConfigError, match=f"unknown setting {name}; did you mean {suggestion}\\?"):
        load_settings()


def test_environment_variables_that_are_settings_or_allowed_keep_working(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    from twinseek.errors import ConfigError

    monkeypatch.setenv("TWINSEEK_VENV", str(tmp_path / "venv"))  # scripts/bootstrap.sh, not a setting
    monkeypatch.setenv("TWINSEEK_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("TWINSEEK_RETRIEVAL__FUSION_WEIGHTS", '{"dense": 0.5}')
    monkeypatch.setenv("TWINSEEK_LLM__TIMEOUT_S", "7")
    s = load_settings()
    assert s.store == tmp_path / "store" and s.llm.timeout_s == 7 and s.retrieval.fusion_weights == {"dense": 0.5}
    monkeypatch.setenv("TWINSEEK_STORE__PATH", "x")  # a single value has no keys below it
    with pytest.raises(ConfigError, match="TWINSEEK_STORE is a single value"):
        load_settings()


def test_cli_reports_a_misspelt_variable_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from twinseek.cli import app

    monkeypatch.setenv("TWINSEEK_LLM__TIMEOUT", "5")
    result = CliRunner().invoke(app, ["store", "stats"])
    assert result.exit_code == 1 and "did you mean TWINSEEK_LLM__TIMEOUT_S" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_the_describe_judge_runs_its_own_server_only_for_another_embedded_model() -> None:
    llm = LLMSettings(embedded_model="qwen2.5-coder-0.5b", judge_model="qwen2.5-coder-1.5b")
    assert llm.judge_server_model("embedded") == "qwen2.5-coder-1.5b"
    assert llm.judge_server_model("paper") is None  # a user's endpoint judges
    assert llm.model_copy(update={"judge_model": None}).judge_server_model("embedded") is None
    assert llm.model_copy(update={"judge_model": "qwen2.5-coder-0.5b"}).judge_server_model("embedded") is None
