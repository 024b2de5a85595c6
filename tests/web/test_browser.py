"""The web app in a real browser: Debian's chromium driven by Playwright, against the app served by uvicorn over
a store of the bundled clips (the agent's LLM is the scripted stub, so no model server is needed).

Policy: these tests need the system chromium, which ``scripts/bootstrap.sh`` installs. Where it is missing they
fail, saying so; ``TWINSEEK_NO_BROWSER=1`` skips them on a machine without a browser. Screenshots go to
``tests/_artifacts/web/`` (or ``$TWINSEEK_ARTIFACTS/web``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from twinseek.agent import Agent
from twinseek.web import WebSettings, background_server, create_app

from support.llm_stub import StubLLMServer
from support.synthetic import Scene, write_video
from support.web_support import ARTIFACTS, QUERY, VERDICTS, scripted_agent, system_browser

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with system_browser() as b:
        yield b


@pytest.fixture(scope="module")
def server(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Agent]]:
    store_dir = Path(shutil.copytree(sample_store, tmp_path_factory.mktemp("web-browser") / "store"))
    stub = StubLLMServer()
    try:
        with scripted_agent(store_dir, stub) as agent:
            app = create_app(WebSettings(store=store_dir, runs=store_dir.parent / "runs"), agent=agent)
            with background_server(app) as url:
                yield url, agent
    finally:
        stub.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"
    assert not dialogs, f"a script from the data ran: {dialogs}"


def loaded(page: Any, selector: str) -> int:
    """Wait until the image at ``selector`` has loaded; its naturalWidth."""
    handle = page.wait_for_selector(selector, state="attached")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle)
    return int(handle.evaluate("img => img.naturalWidth"))


def search(page: Any, url: str, **params: Any) -> list[str]:
    page.goto(f"{url}/?{urlencode({'q': QUERY, **params})}")
    page.wait_for_selector("body[data-search-done]")
    return [h.get_attribute("data-video-id") for h in page.query_selector_all("li.hit")]


def test_search_shows_the_clip_first_with_its_mask_overlay(page: Any, server: tuple[str, Agent]) -> None:
    url, _ = server
    hits = search(page, url, k=3)
    assert hits[0] == "blackswan"
    assert loaded(page, "li.hit:first-child img.overlay-img") > 0
    done = page.locator(".steps li.done .name").all_inner_texts()
    assert done[:4] == ["decompose", "retrieve", "rerank", "reason"] and "finalize" in done
    reasoning = page.locator("li.hit:first-child .reasoning").inner_text()
    assert reasoning == VERDICTS["blackswan"][1]  # the markup shown as text, not run (no dialog: see the fixture)
    assert page.locator("li.hit:first-child .objects li").count() == 1
    assert page.locator("#log li").count() >= 5  # the node-by-node progress as it streamed
    assert page.input_value("#q") == QUERY  # the shared URL filled the form
    page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)


def test_video_page_plays_the_video_under_its_masks_and_lists_the_objects(page: Any,
                                                                           server: tuple[str, Agent]) -> None:
    url, agent = server
    twin = agent.resources.store.get_twin("blackswan")
    page.goto(f"{url}/videos/blackswan")
    rows = page.locator("#tracks tbody tr")
    assert rows.count() == len(twin.tracks) > 0
    assert rows.locator(".category b").all_inner_texts() == [t.category for t in twin.tracks]
    assert loaded(page, "#mask-layer") > 0 and page.is_visible("#mask-layer")
    page.wait_for_function("() => document.getElementById('video').readyState >= 1")  # the browser can play the file
    assert page.evaluate("document.getElementById('video').duration") == pytest.approx(twin.video.duration_s, abs=0.2)
    frame = twin.video.sampled_frames[len(twin.video.sampled_frames) // 2]
    page.click(f'.frame-strip button[data-frame="{frame}"]')
    page.wait_for_function(f"() => document.getElementById('mask-layer').dataset.frame === '{frame}'")
    assert loaded(page, "#mask-layer") > 0
    page.uncheck("#show-masks")
    assert not page.is_visible("#mask-layer")
    page.check("#show-masks")
    assert page.locator(".timeline .tl-row").count() >= len(twin.tracks)
    page.screenshot(path=str(ARTIFACTS / "video.png"), full_page=True)


def test_an_uploaded_clip_is_ingested_and_then_found(page: Any, server: tuple[str, Agent],
                                                     tmp_path: Path) -> None:
    url, _ = server
    clip = write_video(tmp_path / "browser-upload.mp4", Scene(seed=7))
    assert "browser-upload" not in search(page, url, k=10, lr="false", qd="false", jit="false")
    page.goto(f"{url}/ingest")
    page.set_input_files("#files", str(clip))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector('.job[data-status="done"]')
    row = page.locator('.job[data-status="done"] tr.file').first
    assert row.get_attribute("data-status") == "ingested", row.inner_text()
    assert "browser-upload" in row.inner_text()
    assert page.locator("#stat-videos").inner_text() == "4"
    page.screenshot(path=str(ARTIFACTS / "ingest.png"), full_page=True)
    assert "browser-upload" in search(page, url, k=10, lr="false", qd="false", jit="false")
