"""Cancelling a search's LLM calls (twinseek.llm.cancel): a cancelled call returns at once, its connection to
a local server is closed (the server stops decoding for nobody), later calls are not made, and a BoundedLLM
carries its search's scope into the worker threads a node starts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from twinseek.config import LLMSettings
from twinseek.llm import cancel
from twinseek.llm.base import LLMCancelled
from twinseek.llm.cancel import CancelScope
from twinseek.llm.client import LLMClient
from twinseek.llm.deadline import BoundedLLM, Deadline

from support.llm_stub import HangingServer


@pytest.fixture()
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


def client(server: HangingServer) -> LLMClient:
    settings = LLMSettings(base_url=server.base_url, api_key="t", model="stub", http_retries=0, timeout_s=30.0)
    return LLMClient(settings, tier="paper", base_url=server.base_url).start()  # the SDK loaded before the clock


def cancel_after(scope: CancelScope, seconds: float) -> float:
    holder: dict[str, float] = {}

    def later() -> None:
        time.sleep(seconds)
        holder["at"] = time.monotonic()
        scope.cancel()

    thread = threading.Thread(target=later)
    thread.start()
    thread.join()
    return holder["at"]


def test_a_cancelled_call_returns_at_once_and_closes_its_connection(hanging: HangingServer) -> None:
    llm = client(hanging)
    scope = CancelScope()
    box: dict[str, Any] = {}

    def call() -> None:
        start = time.monotonic()
        with cancel.using(scope), pytest.raises(LLMCancelled) as caught:
            llm.chat_text("hello")
        box["seconds"], box["error"] = time.monotonic() - start, caught.value

    worker = threading.Thread(target=call)
    worker.start()
    cancelled_at = cancel_after(scope, 0.5)
    worker.join(10)
    assert not worker.is_alive() and box["seconds"] < 2.0, box
    deadline = time.monotonic() + 5
    while not hanging.closed and time.monotonic() < deadline:  # the server sees the client close
        time.sleep(0.02)
    assert hanging.requests == 1 and hanging.closed and hanging.closed[0] - cancelled_at < 1.0
    with cancel.using(scope), pytest.raises(LLMCancelled):  # no further request once cancelled
        llm.chat_text("again")
    assert hanging.requests == 1


def test_a_bounded_llm_keeps_its_scope_in_other_threads(hanging: HangingServer) -> None:
    scope = CancelScope()
    with cancel.using(scope):
        bounded = BoundedLLM(client(hanging), Deadline())  # made in the node: the scope is current there
    with ThreadPoolExecutor(2) as pool:  # no context variables in these threads
        calls = [pool.submit(bounded.yes_probability, "yes?") for _ in range(2)]
        time.sleep(0.5)
        start = time.monotonic()
        scope.cancel()
        for call in calls:
            with pytest.raises(LLMCancelled):
                call.result(10)
    assert time.monotonic() - start < 2.0
    with pytest.raises(LLMCancelled):
        bounded.chat_text("later")


def test_without_a_scope_nothing_changes(hanging: HangingServer) -> None:
    settings = LLMSettings(base_url=hanging.base_url, api_key="t", model="stub", http_retries=0, timeout_s=0.5)
    llm = LLMClient(settings, tier="paper", base_url=hanging.base_url)
    start = time.monotonic()
    with pytest.raises(Exception, match="did not answer within"):
        llm.chat_text("hello")
    assert 0.4 < time.monotonic() - start < 3.0
