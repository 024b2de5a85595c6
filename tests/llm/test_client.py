"""LLM runtime: the real openai client against a scripted OpenAI-compatible stub server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from twinseek.config import LLMSettings, load_settings
from twinseek.errors import ModelUnavailableError
from twinseek.llm.base import LLMError, LLMOutputError
from twinseek.llm.client import LLMClient, open_llm, yes_share
from twinseek.llm.embedded import EmbeddedModel, assemble_model, find_parts
from twinseek.llm.server import EmbeddedServer

from support.llm_stub import StubLLMServer, completion, top_logprobs  # noqa: F401  (stub: fixture in conftest)


class Pair(BaseModel):
    names: list[str] = Field(min_length=1, max_length=2)
    score: float


# --------------------------------------------------------------------------------------------------------------
# Structured output.


def test_valid_structured_reply(stub: StubLLMServer) -> None:
    stub.script.append(completion('{"names": ["a", "b"], "score": 0.5}'))
    out = stub.client().chat_json([{"role": "user", "content": "hi"}], Pair)
    assert out == Pair(names=["a", "b"], score=0.5)
    rf = stub.requests[0]["response_format"]
    assert rf["type"] == "json_schema"
    schema = rf["json_schema"]["schema"]
    assert schema["properties"]["names"]["maxItems"] == 2
    assert schema["additionalProperties"] is False and schema["required"] == ["names", "score"]
    assert stub.requests[0]["temperature"] == 0 and stub.requests[0]["model"] == "stub"


def test_malformed_then_valid_retries_with_the_error(stub: StubLLMServer) -> None:
    stub.script += [completion('{"names": ["a"'), completion('{"names": ["a"], "score": 1}')]
    out = stub.client().chat_json("hi", Pair)
    assert out.names == ["a"]
    assert len(stub.requests) == 2
    retry = stub.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"names": ["a"'}
    assert "invalid" in retry[-1]["content"]


def test_always_malformed_uses_fallback_and_logs(stub: StubLLMServer, caplog: pytest.LogCaptureFixture) -> None:
    stub.script += [completion("not json")] * 3
    fallback = Pair(names=["fallback"], score=0.0)
    with caplog.at_level(logging.WARNING, logger="twinseek.llm.client"):
        out = stub.client(max_retries=2).chat_json("hi", Pair, fallback=lambda: fallback)
    assert out is fallback
    assert len(stub.requests) == 3
    assert "using the fallback" in caplog.text


def test_always_malformed_without_fallback_raises(stub: StubLLMServer) -> None:
    stub.script += [completion("{}", finish_reason="length")] * 2
    with pytest.raises(LLMOutputError, match="cut at max_tokens"):
        stub.client(max_retries=1).chat_json("hi", Pair)


def test_schema_violation_too_many_items_is_retried(stub: StubLLMServer) -> None:
    stub.script += [completion('{"names": ["a", "b", "c"], "score": 1}'), completion('{"names": ["a"], "score": 1}')]
    assert stub.client().chat_json("hi", Pair).names == ["a"]
    assert "names" in stub.requests[1]["messages"][-1]["content"]


def test_chat_text(stub: StubLLMServer) -> None:
    stub.script.append(completion("hello there"))
    assert stub.client().chat_text("hi", max_tokens=7) == "hello there"
    assert stub.requests[0]["max_tokens"] == 7 and "response_format" not in stub.requests[0]


# --------------------------------------------------------------------------------------------------------------
# Failures of the endpoint.


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_down_is_a_quick_clear_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    client = LLMClient(LLMSettings(base_url=url, http_retries=0), tier="paper", base_url=url)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="cannot reach the LLM"):
        client.chat_text("hi")
    assert time.monotonic() - t0 < 2


def test_timeout(stub: StubLLMServer) -> None:
    stub.script.append(("sleep", 3))
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="did not answer within"):
        stub.client(timeout_s=0.5).chat_text("hi")
    assert time.monotonic() - t0 < 2.5


def test_http_error_status(stub: StubLLMServer) -> None:
    stub.script.append(("status", 400))
    with pytest.raises(LLMError, match="refused the request \\(400\\)"):
        stub.client().chat_text("hi")


def test_fallback_does_not_hide_a_dead_server() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    client = LLMClient(LLMSettings(base_url=url, http_retries=0), tier="paper", base_url=url)
    with pytest.raises(LLMError):
        client.chat_json("hi", Pair, fallback=lambda: Pair(names=["x"], score=0))


# --------------------------------------------------------------------------------------------------------------
# Yes/no probability.


def test_yes_probability_from_top_logprobs(stub: StubLLMServer) -> None:
    # llama.cpp lists case variants separately ("Yes", "yes"): they add up.
    stub.script.append(completion("Yes", logprobs=top_logprobs([("Yes", 0.5), ("No", 0.2), ("yes", 0.1), ("A", 0.1)])))
    p = stub.client().yes_probability("Is it a swan? Answer yes or no.")
    assert p == pytest.approx(0.6 / 0.8)
    req = stub.requests[0]
    assert req["logprobs"] is True and req["top_logprobs"] == 20 and req["max_tokens"] == 1


def test_yes_share_edge_cases() -> None:
    assert yes_share([("The", math.log(0.9)), ("A", math.log(0.1))]) == 0.5
    # only "yes" listed: "no" gets at most the smallest listed probability
    assert yes_share([(" yes", math.log(0.8)), ("Sure", math.log(0.1))]) == pytest.approx(0.8 / 0.9)
    assert yes_share([("NO", math.log(0.7)), ("Maybe", math.log(0.2))]) == pytest.approx(0.2 / 0.9)


def test_yes_probability_without_logprobs_reads_the_text(stub: StubLLMServer) -> None:
    stub.script += [completion("No."), completion("yes")]
    client = stub.client()
    assert client.yes_probability("q") == 0.0
    assert client.yes_probability("q") == 1.0


def test_parallel_requests_from_threads(stub: StubLLMServer) -> None:
    stub.script += [completion('{"names": ["a"], "score": 1}') for _ in range(8)]
    client = stub.client()
    results: list[Pair] = []
    threads = [threading.Thread(target=lambda: results.append(client.chat_json("hi", Pair))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8


# --------------------------------------------------------------------------------------------------------------
# Settings.


def test_settings_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert load_settings().llm.base_url is None
    assert open_llm(load_settings()).tier == "embedded"  # lazily: nothing starts here
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai-env/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "k-openai")
    s = load_settings()
    assert (s.llm.base_url, s.llm.api_key) == ("http://openai-env/v1", "k-openai")
    monkeypatch.setenv("TWINSEEK_LLM__BASE_URL", "http://twinseek-env/v1")
    monkeypatch.setenv("TWINSEEK_LLM__MODEL", "my-model")
    s = load_settings()
    assert (s.llm.base_url, s.llm.api_key, s.llm.model) == ("http://twinseek-env/v1", "k-openai", "my-model")
    s = load_settings(llm={"base_url": "http://explicit/v1"})
    assert s.llm.base_url == "http://explicit/v1"
    client = open_llm(s, model="override")
    assert (client.tier, client.model) == ("paper", "override")


# --------------------------------------------------------------------------------------------------------------
# Model assembly.


def _fake_model(tmp_path: Path, data: list[bytes], sha: str | None) -> tuple[EmbeddedModel, list[Path]]:
    parts = []
    for i, chunk in enumerate(data, start=1):
        part = tmp_path / f"pkg{i}" / "data" / f"part{i:02d}.bin"
        part.parent.mkdir(parents=True)
        part.write_bytes(chunk)
        parts.append(part)
    size = sum(len(d) for d in data)
    return EmbeddedModel("fake", tuple(f"fake-part{i}" for i in range(1, len(data) + 1)), size, sha), parts


def test_assemble_model_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = [b"GGUF" + os.urandom(1000), os.urandom(777), os.urandom(5)]
    model, parts = _fake_model(tmp_path, data, hashlib.sha256(b"".join(data)).hexdigest())
    with caplog.at_level(logging.INFO, logger="twinseek.parts"):
        path = assemble_model(model, tmp_path / "cache", parts)
    assert path == tmp_path / "cache" / "models" / "fake.gguf"
    assert path.read_bytes() == b"".join(data)
    assert "assembling the embedded LLM fake once" in caplog.text
    caplog.clear()
    for part in parts:
        part.unlink()  # reused: the parts are not read again
    with caplog.at_level(logging.INFO, logger="twinseek.parts"):
        assert assemble_model(model, tmp_path / "cache", parts) == path
    assert "assembling" not in caplog.text


def test_assemble_model_hash_mismatch(tmp_path: Path) -> None:
    model, parts = _fake_model(tmp_path, [b"abc", b"def"], "0" * 64)
    with pytest.raises(ModelUnavailableError, match="sha256 .* expected 0000.*pip install --force-reinstall"):
        assemble_model(model, tmp_path / "cache", parts)
    assert list((tmp_path / "cache" / "models").iterdir()) == []  # no half or bad file left behind


def test_assemble_model_size_mismatch(tmp_path: Path) -> None:
    model, parts = _fake_model(tmp_path, [b"abc"], None)
    with pytest.raises(ModelUnavailableError, match="expected 4"):
        assemble_model(EmbeddedModel("fake", model.packages, 4, None), tmp_path / "cache", parts)


def test_missing_parts_name_the_packages() -> None:
    model = EmbeddedModel("fake", ("twinseek-no-such-part1", "twinseek-no-such-part2"), 1, None)
    with pytest.raises(ModelUnavailableError, match="pip install twinseek-no-such-part1 twinseek-no-such-part2"):
        find_parts(model)


def test_embedded_server_that_dies_reports_its_output(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model")
    pytest.importorskip("xllamacpp")
    server = EmbeddedServer(bogus, threads=1, context=256, startup_timeout_s=60)
    with pytest.raises(LLMError, match="exited with code") as info:
        server.start()
    assert "output ends with" in str(info.value)
    assert not server.alive()


def test_per_call_retries_override(stub: StubLLMServer) -> None:
    stub.script = [completion("not json"), completion('{"names": ["a"], "score": 1}')]
    with pytest.raises(LLMOutputError):
        stub.client(max_retries=2).chat_json("q", Pair, retries=0)
    assert len(stub.requests) == 1  # no second attempt
