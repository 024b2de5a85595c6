"""Moments in the web app: the search API returns them, the hits link to the video page at them, the page's player
starts there with the masks of the moment's frames, and the overlay GIF is drawn for that span. Over a small store
of a 30-second synthetic video cut into three shots (the dog in the third only), with keyword encoders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from twinseek.agent import Agent, Resources
from twinseek.config import load_settings
from twinseek.retrieval.dense import EcrTextEmbedder
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.twins.store import TwinStore
from twinseek.web import WebSettings, background_server, create_app

from support.agent import KEYWORDS, put_twin
from support.llm_stub import StubLLMServer
from support.moments import FPS, FRAMES, timed_twin
from support.retrieval import KeywordEncoder
from support.synthetic import Scene, write_video
from support.web_support import ARTIFACTS, system_browser

BASE = "http://127.0.0.1"
NO_LLM = {"lr": "false", "qd": "false", "jit": "false", "tau": "0"}
DOG_SPAN = "start=20.000&end=30.000"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web-moments")
    clip = write_video(root / "park.mp4", Scene(frames=FRAMES, fps=int(FPS), width=160, height=120))
    with TwinStore(root / "store") as store:
        put_twin(store, *timed_twin("park", {"cat": (0, 90), "ball": (100, 190), "dog": (200, 290)},
                                    path=str(clip)))
        put_twin(store, *timed_twin("cats", {"cat": (0, 290)}, path=str(clip)))
        tour, masks = timed_twin("tour", {"bird": (0, 290)}, path=str(clip))  # two scenes, one label with markup
        for shot, labels in zip(tour.shots, ([("<b>lake</b>", 0.9)], [("<b>lake</b>", 0.9)], [("desert", 0.9)])):
            shot.labels = labels
        put_twin(store, tour, masks)
    return root / "store"


@pytest.fixture(scope="module")
def agent(store_dir: Path) -> Iterator[Agent]:
    stub = StubLLMServer()  # never asked: the searches here run without the LLM
    resources = Resources.open(store_dir, load_settings(store=store_dir), llm=stub.client(max_retries=0),
                               encoders=ComponentEncoders(KeywordEncoder(KEYWORDS)),
                               dense_embedder=EcrTextEmbedder(KeywordEncoder(KEYWORDS)))
    with Agent(resources) as a:
        yield a
    stub.close()


def app_settings(store_dir: Path) -> WebSettings:
    return WebSettings(store=store_dir, runs=store_dir.parent / "runs", ingest_roots=[store_dir.parent])


@pytest.fixture(scope="module")
def client(store_dir: Path, agent: Agent) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings(store_dir), agent=agent), base_url=BASE) as c:
        yield c


def player_data(page: str) -> dict[str, Any]:
    return json.loads(page.split('id="player-data">')[1].split("</script>")[0])  # type: ignore[no-any-return]


def test_the_search_api_returns_each_hits_moments(client: TestClient) -> None:
    result = client.get("/api/search", params={"q": "a dog", "k": 2, **NO_LLM}).json()
    park = result["hits"][0]
    assert park["video_id"] == "park"
    [best] = park["moments"]
    assert (best["start_s"], best["end_s"], best["shots"]) == (20.0, 30.0, [2])
    assert best["frames"] == list(range(200, 300, 10)) and best["evidence"]


def test_hits_link_to_the_video_page_at_their_moment(client: TestClient) -> None:
    stream = client.get("/api/search/stream", params={"q": "a dog", "k": 2, **NO_LLM}).text
    html = json.loads(stream.split("event: result\ndata: ")[1].split("\n\n")[0])["html"]
    link = f'href="/videos/park?{DOG_SPAN.replace("&", "&amp;")}"'
    assert link in html and ">00:00:20-00:00:30</a>" in html and "shot 2" in html
    assert f'overlay.gif?tracks=3&amp;{DOG_SPAN.replace("&", "&amp;")}"' in html  # the dog, drawn for its moment


def test_the_video_page_starts_at_the_moment_with_its_frames_masks(client: TestClient) -> None:
    page = client.get(f"/videos/park?{DOG_SPAN}").text
    assert '/api/videos/park/file#t=20.000,30.000"' in page  # the player starts (and stops) at the moment
    assert 'id="moment"' in page and "00:00:20-00:00:30" in page and 'class="seg moment"' in page
    data = player_data(page)
    assert data["moment"] == {"start": 20.0, "end": 30.0, "frames": list(range(200, 300, 10))}
    assert page.count('class="in-moment"') == 10 and page.count('class="seg shot') == 3
    whole = client.get("/videos/park").text
    assert "moment" not in player_data(whole) and 'id="moment"' not in whole and "#t=" not in whole
    assert client.get("/videos/park?start=30&end=20").status_code == 422
    assert client.get("/videos/park?start=-1").status_code == 422


def test_the_timeline_shows_the_scenes_of_a_video_of_several(client: TestClient) -> None:
    page = client.get("/videos/tour").text
    assert "scenes (2)" in page and "scene 0: 00:00:00-00:00:20: &lt;b&gt;lake&lt;/b&gt;" in page
    assert "<b>lake</b>" not in page  # labels are escaped
    assert "scenes (" not in client.get("/videos/park").text  # shots without labels: one scene, no lane


def test_the_overlay_is_drawn_for_the_span(client: TestClient) -> None:
    cat = {"tracks": "1"}  # the cat lives in shot 0 only
    assert client.get("/api/videos/park/overlay.gif", params=cat).status_code == 200
    assert client.get("/api/videos/park/overlay.gif", params={**cat, "start": 20, "end": 30}).status_code == 404
    assert client.get("/api/videos/park/overlay.gif", params={**cat, "start": 5, "end": 12}).status_code == 200


def test_the_browser_plays_from_the_moment_under_its_masks(store_dir: Path, agent: Agent) -> None:
    with system_browser() as browser, background_server(create_app(app_settings(store_dir), agent=agent)) as url:
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        page.set_default_timeout(120_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/?q=a+dog&k=2&lr=false&qd=false&jit=false&tau=0")
        page.wait_for_selector("body[data-search-done]")
        page.click("li.hit:first-child a.video-id")
        page.wait_for_url(f"**/videos/park?{DOG_SPAN}")
        page.wait_for_function("() => document.getElementById('video').readyState >= 1")
        page.wait_for_function("() => Math.abs(document.getElementById('video').currentTime - 20) < 0.2")
        page.wait_for_function("() => document.getElementById('mask-layer').dataset.frame === '200'")
        assert page.is_visible("#mask-layer") and page.is_visible("#moment")
        page.screenshot(path=str(ARTIFACTS / "video-moment.png"), full_page=True)
        context.close()
        assert not errors, errors
