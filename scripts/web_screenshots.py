"""Screenshots of the web app for the docs (docs/web-*.png), with the real embedded LLM.

Serves a scratch copy of a store (default: the bundled clips, ingested), drives the system chromium through the
search page (the demo query, reasoning on), the video page and the ingest page (an upload of one more clip and
one broken file), and writes the three screenshots.

    .venv/bin/python scripts/web_screenshots.py [--store DIR] [--clip VIDEO] [--out docs]
    .venv/bin/python scripts/web_screenshots.py --store DIR --moment QUERY [--out docs]   # web-moment.png
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

from twinseek.agent.api import Agent
from twinseek.cli.search import DEMO_QUERY
from twinseek.config import load_settings
from twinseek.data import sample_clips
from twinseek.llm.server import stop_embedded_servers
from twinseek.twins.pipeline import Ingestor
from twinseek.twins.store import TwinStore
from twinseek.web import WebSettings, background_server, create_app

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# a dev-bench clip to upload (LOVEU, CC), from the shared folder beside the checkout when there is one
DEV_CLIP = next((p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared")
                 if (p / "data" / "dev-bench" / "videos" / "camel.mp4").exists()), None)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--clip", type=Path,
                        default=DEV_CLIP / "data" / "dev-bench" / "videos" / "camel.mp4" if DEV_CLIP else None,
                        help="a video to upload on the ingest page")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--moment", metavar="QUERY", help="instead: search --store for QUERY and screenshot the "
                        "video page of the top hit at its best moment (web-moment.png)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.moment:
        if not args.store:
            parser.error("--moment needs --store")
        moment_screenshot(args.store, args.moment, args.out, args.chromium)
        return

    with tempfile.TemporaryDirectory(prefix="twinseek-shots-") as tmp:
        store = Path(tmp) / "store"
        if args.store:
            shutil.copytree(args.store, store)
        else:
            with TwinStore(store) as s:
                Ingestor(s, load_settings(store=store)).ingest_many(sample_clips())
        uploads = Path(tmp) / "uploads"
        uploads.mkdir()
        clip = shutil.copy(args.clip, uploads / args.clip.name) if args.clip else None
        broken = uploads / "broken-recording.mp4"
        broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 4096)
        try:
            # a generous LLM timeout: on a busy 2-core machine the 0.5B model can take a minute per candidate
            with Agent.open(store, llm={"timeout_s": 300}) as agent, background_server(create_app(
                    WebSettings(store=store, runs=ROOT / "benchmarks" / "results"), agent=agent)) as url, \
                    sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
                page = browser.new_page(viewport={"width": 1360, "height": 900})
                page.set_default_timeout(600_000)
                while not httpx.get(f"{url}/api/health").json()["llm"].startswith("ready"):
                    time.sleep(1)  # the embedded server starts with the app
                page.goto(f"{url}/?{urlencode({'q': DEMO_QUERY, 'k': 3, 'jit': 'false'})}")
                page.wait_for_selector("body[data-search-done]")
                page.wait_for_function("() => [...document.querySelectorAll('img.overlay-img')]"
                                       ".every(i => i.complete && i.naturalWidth > 0)")
                page.screenshot(path=str(args.out / "web-search.png"), full_page=True)
                page.goto(f"{url}/videos/blackswan")
                page.wait_for_function("() => document.getElementById('video').readyState >= 2")
                page.click('.frame-strip button[data-frame="26"]')
                page.wait_for_function("() => document.getElementById('mask-layer').complete")
                time.sleep(1)
                page.screenshot(path=str(args.out / "web-video.png"), full_page=True)
                page.goto(f"{url}/ingest")
                page.set_input_files("#files", [str(f) for f in (clip, broken) if f])
                page.click("#upload-form button[type=submit]")
                page.wait_for_selector('.job[data-status="done"]')
                page.screenshot(path=str(args.out / "web-ingest.png"), full_page=True)
                browser.close()
        finally:
            stop_embedded_servers()
    print(f"screenshots in {args.out}")


def moment_screenshot(store: Path, query: str, out: Path, chromium: str) -> None:
    """The video page of ``query``'s top hit in ``store``, opened at its best moment (as the search page links it),
    with the mask of the moment's first sampled frame laid over the player."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="twinseek-moment-") as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(store, copy, ignore=shutil.ignore_patterns("staging"))
        try:
            with Agent.open(copy, llm={"timeout_s": 300}) as agent:
                hit = agent.search(query, k=3, lr=False, tau=0.0).hits[0]  # the retrieval order: no judge
                moment = hit.moments[0]
                print(f"{hit.video_id} {moment.label} shots {moment.shots} frames {moment.frames}")
                # the app serves a video file only below an ingest root (or in the store): the hit's folder is one
                roots = [Path(hit.path).resolve().parent]
                with background_server(create_app(WebSettings(store=copy, ingest_roots=roots), agent=agent)) as url, \
                        sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=chromium, args=ARGS)
                    page = browser.new_page(viewport={"width": 1360, "height": 900})
                    page.set_default_timeout(120_000)
                    page.goto(f"{url}/videos/{hit.video_id}?"
                              + urlencode({"start": f"{moment.start_s:.3f}", "end": f"{moment.end_s:.3f}"}))
                    page.wait_for_function("() => document.getElementById('video').readyState >= 2")
                    if moment.frames:
                        page.click(f'.frame-strip button[data-frame="{moment.frames[0]}"]')
                        page.wait_for_function("() => document.getElementById('mask-layer').complete")
                    time.sleep(1)
                    page.screenshot(path=str(out / "web-moment.png"), full_page=True)
                    browser.close()
        finally:
            stop_embedded_servers()
    print(f"screenshot in {out / 'web-moment.png'}")


if __name__ == "__main__":
    main()
