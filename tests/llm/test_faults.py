"""Every way an OpenAI-compatible endpoint can fail becomes an ``LLMError`` (and so a recorded fallback), and one
call's wall time is bounded by its timeout. The real ``openai`` client talks to the stub server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from twinseek.llm.base import LLMError, LLMOutputError
from twinseek.retrieval.decompose import Decomposer

from support.agent import DECOMPOSITION, QUERY, open_agent, reply, responder, route, verdict
from support.llm_stub import StubLLMServer, completion, top_logprobs
from support.synthetic import Scene, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "shapes.mp4", Scene())


class Pair(BaseModel):
    names: list[str]
    score: float


def _body(obj: Any) -> tuple[str, int, str, bytes]:
    return ("raw", 200, "application/json", json.dumps(obj).encode())


def _choice(**fields: Any) -> dict[str, Any]:
    body = completion("{}")
    body["choices"][0].update(fields)
    return body


# Replies with status 200 that are not chat completions, each as a proxy, a broken server or a wrong
# endpoint sends it, and what the error says.
MALFORMED: dict[str, tuple[Any, str]] = {
    "body not json": (("raw", 200, "application/json", b'{"choices": [{"mess'), "JSONDecodeError"),
    "html page": (("raw", 200, "text/html", b"<html><body>502 Bad Gateway</body></html>"), "not a chat completion"),
    "plain text": (("raw", 200, "text/plain", b"upstream connect error"), "not a chat completion"),
    "empty choices": (_body({**completion(""), "choices": []}), "choices"),
    "null choices": (_body({**completion(""), "choices": None}), "choices"),
    "no choices key": (_body({"id": "x", "object": "chat.completion"}), "choices"),
    "no message": (_body({**completion(""), "choices": [{"index": 0, "finish_reason": "stop"}]}), "message"),
    "content a number": (_body(_choice(message={"role": "assistant", "content": 42})), "content"),
    "content a list": (_body(_choice(message={"role": "assistant", "content": [{"type": "text"}]})), "content"),
    "choice a string": (_body({**completion(""), "choices": ["yes"]}), "choices"),
    "json array": (_body([1, 2, 3]), "malformed"),
}


@pytest.mark.parametrize("fault", sorted(MALFORMED))
@pytest.mark.parametrize("method", ["chat_text", "chat_json", "yes_probability"])
def test_malformed_reply_is_an_llm_error(stub: StubLLMServer, fault: str, method: str) -> None:
    body, said = MALFORMED[fault]
    stub.script.append(body)
    client = stub.client()
    call = {"chat_text": lambda: client.chat_text("hi"),
            "chat_json": lambda: client.chat_json("hi", Pair, fallback=lambda: Pair(names=[], score=0)),
            "yes_probability": lambda: client.yes_probability("hi")}[method]
    with pytest.raises(LLMError, match="malformed reply") as caught:
        call()
    assert said in str(caught.value) and stub.base_url in str(caught.value)
    assert not isinstance(caught.value, LLMOutputError)


def test_malformed_logprobs_are_an_llm_error_and_missing_ones_read_the_text(stub: StubLLMServer) -> None:
    broken = {"content": [{"token": "Yes", "logprob": "high", "top_logprobs": [{"token": "Yes"}]}]}
    stub.script += [_body(_choice(logprobs=broken)), completion("yes", logprobs={"content": None}),
                    completion("Yes", logprobs=top_logprobs([("Yes", 0.6), ("No", 0.2)]))]
    client = stub.client()
    with pytest.raises(LLMError, match="malformed reply"):
        client.yes_probability("q")
    assert client.yes_probability("q") == 1.0  # no logprobs sent: the answer's text
    assert client.yes_probability("q") == pytest.approx(0.75)


def test_malformed_decomposition_reply_takes_the_rule_based_fallback(stub: StubLLMServer) -> None:
    for body, _ in MALFORMED.values():
        stub.script.append(body)
        got = Decomposer().decompose("a dog not on grass", stub.client())  # the graph's one decomposer
        d = got.decomposition
        assert d.source == "fallback" and [s.negated for s in d.subqueries] == [False, True]
        assert got.fallback is not None and not got.cached  # recorded as a fallback, never cached


@pytest.mark.parametrize("fault", ["body not json", "html page", "empty choices"])
def test_agent_search_falls_back_and_records_it(tmp_path: Path, clip: Path, stub: StubLLMServer, fault: str) -> None:
    """Through the public Agent: decomposition and reasoning replies are malformed; the search still answers."""
    bad = MALFORMED[fault][0]
    route(stub, lambda schema, video, user: bad)
    with open_agent(tmp_path / "store", clip, stub) as agent:
        result = agent.search(QUERY, k=3, tau=0.0)
    assert result.decomposition.source == "fallback"
    assert {h.video_id for h in result.hits} == {"shapes", "dogs", "cats"}
    nodes = {f.node for f in result.fallbacks}
    assert {"decompose", "reason"} <= nodes
    assert all("malformed reply" in f.reason for f in result.fallbacks if f.node == "reason")


def test_agent_search_uses_the_llm_once_it_answers_properly(tmp_path: Path, clip: Path, stub: StubLLMServer) -> None:
    """The control: the same path with well-formed replies takes no fallback."""
    route(stub, responder(lambda _: verdict(0.9, [1]), decomposition=reply(DECOMPOSITION)))
    with open_agent(tmp_path / "store", clip, stub) as agent:
        result = agent.search(QUERY, k=3)
    assert not result.fallbacks and result.hits[0].video_id == "shapes"


# --------------------------------------------------------------------------------------------------------------
# Bounded waiting.


def test_hanging_endpoint_costs_one_timeout_not_three(stub: StubLLMServer) -> None:
    """The SDK used to retry timeouts (3 x timeout per call); now a call ends at its timeout."""
    stub.script += [("sleep", 6)] * 3
    client = stub.client(timeout_s=1.0, http_retries=2)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="did not answer within 1s"):
        client.chat_text("hi")
    assert time.monotonic() - t0 < 1.8
    assert len(stub.requests) == 1  # not retried


def test_trickling_endpoint_is_bounded_too(stub: StubLLMServer) -> None:
    """A server that sends one byte every 0.3 s never trips httpx's per-read timeout; the call still ends."""
    stub.script.append(("drip", 0.3))
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="did not answer within 1s"):
        stub.client(timeout_s=1.0).chat_text("hi")
    assert time.monotonic() - t0 < 1.8


def test_per_call_timeout_bounds_the_whole_call_with_reasks(stub: StubLLMServer) -> None:
    """``timeout_s`` (what a search deadline passes) bounds re-asks too, and 0 or less fails at once."""
    stub.script += [completion("not json"), ("sleep", 3), completion("never asked")]
    client = stub.client(timeout_s=30.0, max_retries=2)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="did not answer within 1s"):
        client.chat_json("hi", Pair, timeout_s=1.0, fallback=lambda: Pair(names=[], score=0))
    assert time.monotonic() - t0 < 1.8 and len(stub.requests) == 2
    with pytest.raises(LLMError, match="no time left"):
        client.chat_text("hi", timeout_s=0)
    assert len(stub.requests) == 2


def test_transient_statuses_are_retried_within_the_budget(stub: StubLLMServer) -> None:
    stub.script += [("status", 503), ("status", 429, {"Retry-After": "0"}), completion("third time")]
    assert stub.client(http_retries=2).chat_text("hi") == "third time"
    assert len(stub.requests) == 3
    stub.script += [("status", 500)] * 3
    with pytest.raises(LLMError, match="refused the request \\(500\\)"):
        stub.client(http_retries=2).chat_text("hi")
    assert len(stub.requests) == 6
    stub.script += [("status", 401), completion("not asked")]
    with pytest.raises(LLMError, match="\\(401\\)"):  # not transient: no retry
        stub.client(http_retries=2).chat_text("hi")
    assert len(stub.requests) == 7 and len(stub.script) == 1
    stub.script.clear()
    # a Retry-After beyond the call's budget is not waited for
    stub.script += [("status", 429, {"Retry-After": "5"}), completion("too late")]
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="\\(429\\)"):
        stub.client(http_retries=2, timeout_s=2.0).chat_text("hi")
    assert time.monotonic() - t0 < 1.0
