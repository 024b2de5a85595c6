"""The Agent facade: SearchResult JSON, mask overlays, streaming, async and ``Agent.open`` on real settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import twinseek
from twinseek.agent import Agent, SearchResult

from support.agent import QUERY, build_store, open_agent, plan, responder, route, verdict
from support.synthetic import Scene, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "shapes.mp4", Scene())


@pytest.fixture
def agent(tmp_path: Path, clip: Path, stub: Any) -> Iterator[Agent]:
    with open_agent(tmp_path / "store", clip, stub) as a:
        yield a


def refining(stub: Any) -> None:
    """Replies that make the search refine the square's colour and then accept it."""
    def shapes(user: str) -> dict[str, Any]:
        if "bright red" in user:
            return verdict(0.8, [1], why="object 1 is a bright red square")
        return verdict(0.4, [1], missing=["colour of object 1"])

    route(stub, responder(shapes, plan_reply=plan(("describe_object", {"track_id": 1})), others=0.55))


def test_lazy_top_level_export() -> None:
    assert twinseek.Agent is Agent
    with pytest.raises(AttributeError):
        twinseek.Nope  # noqa: B018


def test_search_result_json_round_trip_and_lazy_masks(agent: Agent, stub: Any) -> None:
    refining(stub)
    result = agent.search(QUERY, k=3)
    again = SearchResult.model_validate_json(result.model_dump_json())
    assert again == result
    assert [h.video_id for h in result.hits][0] == "shapes" and len(result.hits) == 3
    hit = result.hits[0]
    assert hit.refined and hit.reasoning and hit.objects[0].category == "square"
    masks = hit.objects[0].masks
    assert [m.frame for m in masks] == [0, 8, 16, 23] and all(Path(m.path).is_absolute() for m in masks)
    mask = masks[0].load()
    assert mask.dtype == bool and mask.shape == (240, 320) and mask.any()
    assert set(result.timings) >= {"decompose", "retrieve", "rerank", "reason", "refine", "finalize", "total"}
    assert result.models["reason"] == "paper:stub" and result.models["refine.describe_object"].endswith("fake-describer")
    assert result.options["k"] == 3 and result.options["tau"] == 0.5


def test_overlays_are_viewable_images_of_the_right_size(agent: Agent, stub: Any, tmp_path: Path) -> None:
    route(stub, responder(lambda _: verdict(0.9, [1, 2]), others=0.7))
    result = agent.search(QUERY, k=3)
    paths = result.save_overlays(tmp_path / "overlays")
    assert all(p.exists() for p in paths)
    shapes = [p for p in paths if p.parent.name == "01_shapes"]
    assert [p.name for p in shapes] == [f"f{f:06d}.png" for f in (0, 8, 16, 23)]
    with Image.open(shapes[0]) as img:
        assert img.format == "PNG" and img.size == (320, 240)
        pixels = np.asarray(img.convert("RGB"))
    square = result.hits[0].objects[0].masks[0].load()
    assert pixels[square].mean(axis=0)[0] > 150  # the red square is still red under its tint
    gif = tmp_path / "overlays" / "01_shapes.gif"
    with Image.open(gif) as img:
        assert img.format == "GIF" and img.n_frames == 4 and img.size == (320, 240)
    # a hit whose video file is gone: masks drawn on black, at the masks' size
    dogs = next(h for h in result.hits if h.video_id == "dogs")
    with Image.open(tmp_path / "overlays" / f"{dogs.rank:02d}_dogs.gif") as img:
        assert img.size == (64, 48) and img.n_frames == 3
    # one key frame (the drawers used to divide by max_frames - 1)
    one = result.save_overlays(tmp_path / "one", max_frames=1)
    assert [p.name for p in one if p.parent.name == "01_shapes"] == ["f000000.png"]


def test_stream_yields_node_events_then_the_result(agent: Agent, stub: Any) -> None:
    refining(stub)
    events = list(agent.stream(QUERY, k=3))
    nodes = [e.node for e in events if e.kind == "node"]
    assert nodes == ["decompose", "retrieve", "rerank", "reason", "refine", "reason", "finalize"]
    progress = [e.data for e in events if e.kind == "progress" and e.node == "reason"]
    assert {p["video_id"] for p in progress} == {"shapes", "dogs", "cats"}
    assert any(e.kind == "progress" and e.node == "refine" and e.data["status"] == "ran" for e in events)
    assert events[-1].kind == "result" and events[-1].result is not None
    assert events[-1].result.path == nodes and events[-1].result.hits[0].video_id == "shapes"
    assert all(e.data["timings"] for e in events if e.kind == "node")


def test_asearch_matches_search(agent: Agent, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.9, [1]), others=0.1))

    async def both() -> list[SearchResult]:
        return list(await asyncio.gather(agent.asearch(QUERY, k=3), agent.asearch(QUERY, k=3, qd=False)))

    first, second = asyncio.run(both())
    assert [h.video_id for h in first.hits] == ["shapes"] == [h.video_id for h in second.hits]
    assert "decompose" in first.path and "decompose" not in second.path


def test_agent_open_with_real_settings_and_a_stub_endpoint(tmp_path: Path, clip: Path, stub: Any) -> None:
    """The real path: settings, MiniLM encoders, index sync, the LLM client from settings."""
    root = build_store(tmp_path / "store", clip)
    route(stub, responder(lambda _: verdict(0.9, [1]), others=0.1))
    llm = {"base_url": stub.base_url, "api_key": "test", "model": "stub", "http_retries": 0, "max_retries": 0}
    with Agent.open(root, llm=llm) as opened:
        assert (root / "index" / "components" / "index.faiss").exists()
        result = opened.search("a red square moving right", k=3)
    assert [h.video_id for h in result.hits] == ["shapes"] and result.models["reason"] == "paper:stub"
    assert result.models["compositional"].startswith("embedded:") and not result.fallbacks
    with pytest.raises(twinseek.errors.StoreError):
        Agent.open(tmp_path / "nowhere", llm=llm)


def test_make_graph_is_the_langgraph_json_factory(tmp_path: Path, clip: Path, stub: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``langgraph.json`` names a factory: resources opened from the settings (or the config's store) per use."""
    import json

    from twinseek.agent.graph import make_graph

    root = build_store(tmp_path / "store", clip)
    spec = json.loads((Path(__file__).resolve().parents[2] / "langgraph.json").read_text())
    assert spec["graphs"]["agent"] == "./twinseek/agent/graph.py:make_graph"
    for key, value in {"BASE_URL": stub.base_url, "API_KEY": "test", "MODEL": "stub", "MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(f"TWINSEEK_LLM__{key}", value)
    monkeypatch.setenv("TWINSEEK_STORE", str(tmp_path / "elsewhere"))
    route(stub, responder(lambda _: verdict(0.9, [1]), others=0.1))

    async def run() -> dict[str, Any]:
        async with make_graph({"configurable": {"store": str(root)}}) as graph:
            from twinseek.agent.context import AgentContext

            return await graph.ainvoke({"query": QUERY}, context=AgentContext(k=3))

    state = asyncio.run(run())
    assert [h.video_id for h in state["hits"]] == ["shapes"] and state["path"][-1] == "finalize"
    with pytest.raises(twinseek.errors.StoreError):  # TWINSEEK_STORE when the config names none
        asyncio.run(make_graph().__aenter__())


def test_the_three_entry_points_resolve_and_rank_alike(tmp_path: Path, clip: Path, stub: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``Agent.search``, the HTTP API and the ``make_graph`` graph (``langgraph dev``) run one graph that resolves
    the same options (tier defaults and deadline included) and ranks alike."""
    from fastapi.testclient import TestClient

    from twinseek.agent.context import AgentContext
    from twinseek.agent.graph import make_graph
    from twinseek.web import WebSettings, create_app

    root = build_store(tmp_path / "store", clip)
    for key, value in {"BASE_URL": stub.base_url, "API_KEY": "test", "MODEL": "stub", "MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(f"TWINSEEK_LLM__{key}", value)
    monkeypatch.setenv("TWINSEEK_AGENT__JUDGE_TOP", "2")  # a settings' value every entry point must honour
    route(stub, responder(lambda _: verdict(0.9, [1]), others=0.1))

    with Agent.open(root) as agent:
        direct = agent.search(QUERY, k=3, tau=0.0)
    with TestClient(create_app(WebSettings(store=root, runs=tmp_path / "runs", warm_llm=False)),
                    base_url="http://127.0.0.1") as client:
        response = client.get("/api/search", params={"q": QUERY, "k": 3, "tau": 0.0})
        assert response.status_code == 200, response.text
        http = SearchResult.model_validate(response.json())

    async def studio() -> dict[str, Any]:
        async with make_graph({"configurable": {"store": str(root)}}) as graph:
            return await graph.ainvoke({"query": QUERY}, context=AgentContext(k=3, tau=0.0))

    graph = SearchResult.from_state(asyncio.run(studio()), 0.0)
    assert direct.options["judge_top"] == 2 and direct.options["judge"] == "verdict"  # settings, then tier
    assert direct.options["deadline_s"] == 120.0 and direct.options["reranker"] == "none"  # none left unresolved
    assert None not in (direct.options[k] for k in ("llm_weight", "judge", "reranker", "rerank_top", "judge_top"))
    for other in (http, graph):
        assert other.options == direct.options
        assert [(h.video_id, h.relevance) for h in other.hits] == [(h.video_id, h.relevance) for h in direct.hits]
    assert len(direct.hits) == 3 and [h.judged_by for h in direct.hits].count("paper:stub") == 2  # judge_top 2
