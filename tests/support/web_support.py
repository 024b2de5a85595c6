"""Shared pieces of the web app tests: a scripted LLM that answers by request, an agent over a real store with
that LLM, polling an ingest job, and the system browser the browser tests drive."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twinseek.agent import Agent, Resources
from twinseek.config import load_settings

from support.llm_stub import StubLLMServer, completion

QUERY = "a black swan swimming"
# What the scripted LLM says about each bundled clip: (relevance, reasoning). The markup in the swan's reasoning
# checks that LLM text is escaped wherever the app shows it.
VERDICTS: dict[str, tuple[float, str]] = {
    "blackswan": (0.9, 'Object 1 is a black swan gliding on the water <script>alert("pwned")</script>.'),
    "car-roundabout": (0.15, "A car on a roundabout: no bird."),
    "horsejump-high": (0.1, "A horse and rider jumping: no bird."),
}


class ScriptedLLM(list):  # type: ignore[type-arg]
    """A ``stub.script`` that answers each request by what it asks: a decomposition whose one sub-query is the
    query, a verdict per video from :data:`VERDICTS` (0.2 for any other video), an empty refinement plan."""

    def __init__(self, stub: StubLLMServer, verdicts: dict[str, tuple[float, str]] | None = None) -> None:
        super().__init__([None])  # never empty: the stub pops from it
        self.stub = stub
        self.verdicts = dict(VERDICTS if verdicts is None else verdicts)

    def pop(self, index: Any = -1) -> Any:
        body = self.stub.requests[-1]
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("name", "")
        user = str(body["messages"][-1]["content"])
        if schema in ("Decomposition", "_Reply"):
            text = user.strip()[:100]
            return _json({"rewritten": text, "subqueries": [{"text": text, "type": "object", "negated": False}]})
        if schema == "Verdict":
            found = re.search(r'"video":"([^"]+)"', user)
            relevance, why = self.verdicts.get(found.group(1) if found else "", (0.2, "not what was asked for"))
            return _json({"reasoning": why, "missing": [], "objects": [1], "relevance": relevance})
        if schema == "Plan":
            return _json({"calls": []})
        return completion("")


def _json(obj: Any) -> dict[str, Any]:
    return completion(json.dumps(obj))


def scripted_agent(store_dir: Path, stub: StubLLMServer) -> Agent:
    """The agent over ``store_dir`` with its configured (embedded) retrieval and the scripted LLM."""
    stub.script = ScriptedLLM(stub)
    llm = stub.client(n_parallel=2, max_retries=0)
    return Agent(Resources.open(store_dir, load_settings(store=store_dir), llm=llm))


def wait_for_job(get_job: Any, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
    """Poll ``get_job(job_id)`` (a dict) until the ingest job is done."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(job_id)
        if job["status"] == "done":
            return job  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise TimeoutError(f"ingest job still {job['status']}: {job}")
        time.sleep(0.2)


# -- the browser ------------------------------------------------------------------------------------------------
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("TWINSEEK_ARTIFACTS") or Path(__file__).parents[1] / "_artifacts") / "web"


def chromium() -> str | None:
    for candidate in (os.environ.get("TWINSEEK_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@contextlib.contextmanager
def system_browser() -> Iterator[Any]:
    """Debian's chromium under Playwright (never a downloaded browser), with a fresh temporary profile.

    Policy: the browser tests need the system chromium, which ``scripts/bootstrap.sh`` installs. Where it is
    missing they fail, saying so; ``TWINSEEK_NO_BROWSER=1`` skips them on a machine without a browser."""
    if os.environ.get("TWINSEEK_NO_BROWSER") == "1":
        pytest.skip("TWINSEEK_NO_BROWSER=1: the browser tests are off on this machine")
    path = chromium()
    if path is None:
        pytest.fail("no chromium on this machine: scripts/bootstrap.sh installs Debian's package (apt-get install "
                    "chromium); set TWINSEEK_NO_BROWSER=1 to skip the browser tests", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed (the dev extra); set TWINSEEK_NO_BROWSER=1 to skip", pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=BROWSER_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
