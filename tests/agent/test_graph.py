"""The agent graph on a small store, with the real LLM client talking to the scripted stub server.

The stub answers by content (which schema is asked for, which video's twin is in the prompt), so the replies do
not depend on the order in which candidates reach the LLM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twinseek.agent import Agent, Resources
from twinseek.agent.refine import ACTIONS
from twinseek.config import load_settings
from twinseek.retrieval.dense import EcrTextEmbedder
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.retrieval.fusion import minmax
from twinseek.twins.store import TwinStore

from support.agent import (
    DECOMPOSITION,
    KEYWORDS,
    QUERY,
    animal_twin,
    build_store,
    clip,
    fake_specialists,
    open_agent,
    plan,
    put_twin,
    reply,
    responder,
    route,
    verdict,
)
from support.llm_stub import completion, top_logprobs
from support.retrieval import KeywordEncoder

__all__ = ["clip"]  # the session fixture of support.agent, used here too


@pytest.fixture
def agent(tmp_path: Path, clip: Path, stub: Any) -> Iterator[Agent]:
    with open_agent(tmp_path / "store", clip, stub) as a:
        yield a


def similarity(scores: dict[str, float]) -> float:
    """The agent's absolute retrieval similarity, computed independently: mean raw tool score, clipped."""
    raw = [scores[s] for s in ("compositional", "dense") if s in scores]
    return min(1.0, max(0.0, sum(raw) / len(raw)))


# -- tests ------------------------------------------------------------------------------------------------------
def test_tau_drops_weak_candidates_and_ranks_by_relevance(agent: Agent, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.9, [1]), others=0.3))
    result = agent.search(QUERY, k=3)
    assert [h.video_id for h in result.hits] == ["shapes"]
    hit = result.hits[0]
    assert hit.relevance == 0.9 and hit.judged_by == "paper:stub" and [o.track_id for o in hit.objects] == [1]
    assert {d.video_id for d in result.dropped} == {"dogs", "cats"}
    assert result.path == ["decompose", "retrieve", "rerank", "reason", "finalize"]
    assert [s.text for s in result.decomposition.subqueries] == ["a square", "red"]
    assert not result.fallbacks
    lower = agent.search(QUERY, k=3, tau=0.25)
    assert [h.video_id for h in lower.hits][0] == "shapes" and len(lower.hits) == 3
    assert [h.relevance for h in lower.hits] == [0.9, 0.3, 0.3]


def test_llm_weight_blends_the_judgement_with_retrieval(agent: Agent, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.9, [1]), others=0.3))
    result = agent.search(QUERY, k=3, llm_weight=0.5, tau=0.0)
    for hit in result.hits:  # the LLM's judgement half-and-half with the absolute retrieval similarity
        judged = 0.9 if hit.video_id == "shapes" else 0.3
        assert hit.video_id != "shapes" or 0 < similarity(hit.scores) < 1  # the retrieval half is not void
        assert hit.relevance == pytest.approx(0.5 * judged + 0.5 * similarity(hit.scores), abs=1e-4)
    assert result.options["llm_weight"] == 0.5


def test_llm_weight_defaults_by_the_llm_tier(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    res = agent.resources
    assert agent.run_options().llm_weight == 1.0  # the stub is a user's (paper-tier) endpoint: the LLM decides
    embedded = Resources(res.store, load_settings(store=res.store.root), res.indexes)  # no endpoint configured
    assert embedded.defaults.llm_weight == 0.5 and embedded._llm is None  # decided without starting the server
    chosen = Resources(res.store, load_settings(store=res.store.root, agent={"llm_weight": 0.8}), res.indexes)
    assert Agent(chosen).run_options().llm_weight == 0.8
    assert Agent(chosen).run_options(llm_weight=0.2).llm_weight == 0.2
    with pytest.raises(ValueError, match="llm_weight"):
        agent.context(llm_weight=1.5)


def test_refine_describes_the_object_adds_a_refinement_and_lifts_relevance(agent: Agent, stub: Any) -> None:
    def shapes(user: str) -> dict[str, Any]:
        if "bright red" in user:  # the second look, after refinement, sees the colour
            return verdict(0.85, [1], why="object 1 is a bright red square")
        return verdict(0.3, [1], missing=["colour of object 1"], why="a square, colour unknown")

    route(stub, responder(shapes, plan_reply=plan(("describe_object", {"track_id": 1}))))
    result = agent.search(QUERY, k=3)
    assert result.path == ["decompose", "retrieve", "rerank", "reason", "refine", "reason", "finalize"]
    assert [h.video_id for h in result.hits] == ["shapes"]
    assert result.hits[0].refined and result.hits[0].relevance == 0.85
    assert [(a.action, a.status) for a in result.actions] == [("describe_object", "ran")]
    assert result.actions[0].model == "embedded:fake-describer"
    twin = agent.resources.store.get_twin("shapes")  # ingest rows + refinements
    assert twin.tracks[0].attributes == "bright red" and twin.tracks[1].attributes == ""
    assert {i.attributes for i in twin.instances if i.track_id == 1} == {"bright red"}
    assert agent.resources.store.get_twin("shapes", refinements=False).tracks[0].attributes == ""  # ingest as was
    assert result.hits[0].objects[0].attributes == "bright red"
    # refinement stays bounded: one round by default, none with max_refine_rounds=0
    route(stub, responder(lambda _: verdict(0.3, [1], missing=["size"]), plan_reply=plan()))
    again = agent.search(QUERY, k=3, max_refine_rounds=0)
    assert "refine" not in again.path


def test_rejected_plan_is_logged_and_the_search_still_answers(agent: Agent, stub: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    bad = plan(("rm_rf", {"path": "/"}), ("describe_object", {"track_id": "abc"}), ("estimate_depth", {"frames": [0]}))
    route(stub, responder(lambda _: verdict(0.6, [1], missing=["colour"]), plan_reply=bad))
    result = agent.search(QUERY, k=3)
    assert [(a.action, a.status) for a in result.actions] == [
        ("rm_rf", "rejected"), ("describe_object", "rejected"), ("estimate_depth", "unavailable")]
    assert "unknown action" in result.actions[0].detail and "invalid args: track_id" in result.actions[1].detail
    assert "depth" in result.actions[2].detail
    assert any("rm_rf rejected" in line for line in result.trace)
    assert "rejected rm_rf" in caplog.text
    # nothing changed, so no second reasoning; the first judgement stands
    assert result.path == ["decompose", "retrieve", "rerank", "reason", "refine", "finalize"]
    assert [h.video_id for h in result.hits] == ["shapes"] and result.hits[0].relevance == 0.6
    assert agent.resources.store.get_twin("shapes").tracks[0].attributes == ""


def test_unknown_track_and_too_long_vocabulary_are_rejected(agent: Agent, stub: Any) -> None:
    calls = plan(("describe_object", {"track_id": 99}), ("recategorise", {"track_id": 1, "vocabulary": ["x"] * 11}),
                 ("motion_relation", {"track_a": 1, "track_b": 2}))
    route(stub, responder(lambda _: verdict(0.6, [1], missing=["direction"]), plan_reply=calls))
    result = agent.search(QUERY, k=3)
    assert [a.status for a in result.actions] == ["rejected", "rejected", "ran"]
    assert "no object 99" in result.actions[0].detail
    # the motion relation is new information in the store, so reasoning ran again
    assert result.path.count("reason") == 2
    preds = {r.predicate for r in agent.resources.store.get_twin("shapes").relations if r.subject_track == 1
             and r.object_track == 2 and r.kind == "temporal"}
    assert preds & {"approaching", "moving away from", "keeping its distance from"}
    assert set(ACTIONS) == {"describe_object", "recategorise", "estimate_depth", "motion_relation"}


@pytest.mark.parametrize("switch, absent", [("qd", "decompose"), ("lr", "reason"), ("jit", "refine")])
def test_each_ablation_switch_changes_the_path(agent: Agent, stub: Any, switch: str, absent: str) -> None:
    route(stub, responder(lambda _: verdict(0.3, [1], missing=["colour of object 1"]),
                          plan_reply=plan(("describe_object", {"track_id": 1}))))
    full = agent.search(QUERY, k=3)
    assert {"decompose", "reason", "refine"} <= set(full.path)
    stub.requests.clear()
    ablated = agent.search(QUERY, k=3, **{switch: False})
    assert absent not in ablated.path and ablated.options[switch] is False
    asked = [r.get("response_format", {}).get("json_schema", {}).get("name") for r in stub.requests]
    if switch == "qd":
        assert "_Reply" not in asked  # the decomposition's reply schema
        assert [s.text for s in ablated.decomposition.subqueries] == [QUERY]
        assert ablated.models["decompose"] == "off"
    if switch == "lr":  # all K back, ranked by retrieval score, objects from the evidence
        assert asked == [] and len(ablated.hits) == 3  # the decomposition comes from the first search's cache and ablated.hits[0].video_id == "shapes"
        assert ablated.hits[0].relevance == 1.0 and ablated.hits[0].judged_by == "retrieval score (lr off)"
        evidence = {t for e in ablated.hits[0].evidence for t in e.track_ids}
        assert 1 in {o.track_id for o in ablated.hits[0].objects} <= evidence
    if switch == "jit":
        assert "Plan" not in asked and ablated.path.count("reason") == 1


def test_a_decomposition_is_asked_once_per_query_but_a_fallback_is_not_kept(agent: Agent, stub: Any) -> None:
    down = {"on": True}

    def respond(schema: str, video: str, user: str) -> Any:
        if schema in ("Decomposition", "_Reply") and down["on"]:
            return ("status", 500)
        return responder(lambda _: verdict(0.9, [1]))(schema, video, user)

    route(stub, respond)
    assert agent.search(QUERY, k=3, lr=False).decomposition.source == "fallback"
    down["on"] = False
    first = agent.search(QUERY, k=3, lr=False)  # the server is back: asked again, not the cached fallback
    assert first.decomposition.source == "llm" and first.models["decompose"] == "paper:stub"
    stub.requests.clear()
    again = agent.search(QUERY, k=3, lr=False)
    assert not stub.requests and again.decomposition == first.decomposition
    assert [s.text for s in again.decomposition.subqueries] == ["a square", "red"]


def test_a_search_within_given_videos_judges_only_those(agent: Agent, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.9, [1]), others=0.3))
    gallery = agent.search(QUERY, k=3, lr=False)
    last = gallery.hits[-1].video_id
    stub.requests.clear()
    within = agent.search(QUERY, k=3, videos=[last])
    assert [h.video_id for h in within.hits + within.dropped] == [last]
    verdicts = [r for r in stub.requests if r["response_format"]["json_schema"]["name"] == "Verdict"]
    assert len(verdicts) == 1 and f'"video":"{last}"' in verdicts[0]["messages"][-1]["content"]
    assert within.options["videos"] == [last]
    # reasoning off: the score is the absolute similarity (one candidate alone would always min-max scale to 1)
    alone = agent.search(QUERY, k=3, lr=False, videos=[last])
    assert alone.hits[0].relevance == pytest.approx(similarity(gallery.hits[-1].scores), abs=1e-4)
    best = agent.search(QUERY, k=3, lr=False, videos=[gallery.hits[0].video_id])
    assert best.hits[0].relevance == pytest.approx(similarity(gallery.hits[0].scores), abs=1e-4)
    assert best.hits[0].relevance > alone.hits[0].relevance and gallery.hits[0].relevance == 1.0
    assert agent.search(QUERY, k=3, lr=False, videos=["not-a-video"]).hits == []
    with pytest.raises(ValueError, match="list of video ids"):
        agent.search(QUERY, videos="shapes")


def test_compositional_alignment_off_uses_dense_retrieval_only(agent: Agent, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.9, [1])))
    full = agent.search(QUERY, k=3)
    assert {"compositional", "dense"} <= set(full.models) and "compositional" in full.hits[0].scores
    dense = agent.search(QUERY, k=3, ca=False)
    assert "compositional" not in dense.models and "dense" in dense.models
    assert set(dense.hits[0].scores) == {"dense"} and dense.options["tool"] == "dense"
    assert any(line.startswith("retrieve[dense]") for line in dense.trace)


def test_llm_down_at_decompose_and_reason_still_answers(agent: Agent, stub: Any) -> None:
    route(stub, lambda *_: ("status", 500))
    result = agent.search(QUERY, k=3)
    assert result.decomposition.source == "fallback" and result.models["decompose"] == "rules"
    nodes = {f.node for f in result.fallbacks}
    assert nodes == {"decompose", "reason"}
    assert {f.video_id for f in result.fallbacks if f.node == "reason"} == {"shapes", "dogs", "cats"}
    # relevance = min-max scaled retrieval score: the best candidate 1.0, objects from its evidence
    assert result.hits[0].video_id == "shapes" and result.hits[0].relevance == 1.0
    assert result.hits[0].judged_by == "retrieval score (LLM failed)" and result.hits[0].objects


def test_llm_down_at_refine_keeps_the_first_judgement(agent: Agent, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.7, [1], missing=["colour"]), plan_reply=("status", 500)))
    result = agent.search(QUERY, k=3)
    assert [f.node for f in result.fallbacks] == ["refine"] and "no plan" in result.fallbacks[0].reason
    assert result.path == ["decompose", "retrieve", "rerank", "reason", "refine", "finalize"]
    assert [h.video_id for h in result.hits] == ["shapes"] and result.hits[0].relevance == 0.7


def test_llm_reranker_reorders_and_its_failure_is_a_fallback(agent: Agent, stub: Any) -> None:
    agent.resources.settings.retrieval.reranker = "llm"

    def respond(schema: str, video: str, user: str) -> Any:
        if not schema:  # a yes/no rerank question about one ECR text
            p = 0.9 if "dog" in user else 0.1
            return completion("yes", logprobs=top_logprobs([("yes", p), ("no", 1 - p)]))
        return responder(lambda _: verdict(0.9, [1]), others=0.6)(schema, video, user)

    route(stub, respond)
    result = agent.search(QUERY, k=3, lr=False)
    assert result.hits[0].video_id == "dogs" and result.models["rerank"] == "paper:stub"
    assert "rerank" in result.hits[0].scores and not result.fallbacks
    route(stub, lambda schema, *_: ("status", 500) if not schema else reply(DECOMPOSITION))
    failed = agent.search(QUERY, k=3, lr=False)
    assert [f.node for f in failed.fallbacks] == ["rerank"] and failed.hits[0].video_id == "shapes"


# -- the pipeline's shape: typed state, bound resources, one decomposer, the deadline ---------------------------
def test_the_graph_state_is_typed_models_end_to_end(agent: Agent, stub: Any) -> None:
    from twinseek.agent.context import AgentContext
    from twinseek.agent.state import Candidate, DroppedCandidate, Fallback, Hit, Judgement
    from twinseek.retrieval.decompose import Decomposition

    route(stub, responder(lambda _: verdict(0.9, [1]), others=0.3))
    state = agent.graph.invoke({"query": QUERY}, context=agent.context(3))
    assert isinstance(state["decomposition"], Decomposition)
    assert all(isinstance(c, Candidate) for c in state["candidates"]) and len(state["candidates"]) == 3
    assert all(isinstance(j, Judgement) and j.source == "llm" for j in state["judgements"].values())
    assert all(isinstance(h, Hit) for h in state["hits"]) and all(isinstance(d, DroppedCandidate) for d in state["dropped"])
    assert state["started_at"] > 0  # the first node records when the search began
    # LangGraph Studio builds forms from the graph's JSON schemas: input, output (typed) and context
    assert set(agent.graph.get_input_jsonschema()["properties"]) == {"query", "started_at"}
    assert {"hits", "candidates", "judgements"} <= set(agent.graph.get_output_jsonschema()["properties"])
    assert {"k", "tau", "deadline_s", "reranker", "prompts"} <= set(agent.graph.get_context_jsonschema()["properties"])
    # the context carries run options only; the graph was bound to the store when it was built
    assert {f.name for f in __import__("dataclasses").fields(AgentContext)} >= {"k", "tau", "deadline_s", "reranker"}
    assert not any(isinstance(v, (Resources, TwinStore)) for v in vars(agent.context()).values())
    route(stub, lambda *_: ("status", 500))
    failed = agent.graph.invoke({"query": QUERY}, context=agent.context(3))
    assert all(isinstance(f, Fallback) for f in failed["fallbacks"]) and failed["fallbacks"]


def test_the_same_search_twice_gives_the_same_answer(agent: Agent, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.8, [1]), others=0.6))
    first, second = agent.search(QUERY, k=3), agent.search(QUERY, k=3)
    assert [(h.video_id, h.relevance) for h in first.hits] == [(h.video_id, h.relevance) for h in second.hits]
    assert first.decomposition == second.decomposition and first.hits == second.hits


def test_no_process_global_resources(tmp_path: Path, clip: Path, stub: Any) -> None:
    """Two agents on two stores in one process: their own indexes, caches and answers."""
    import twinseek.agent.graph as graph_module
    import twinseek.agent.resources as resources_module

    assert not hasattr(resources_module, "default_resources") and not hasattr(graph_module, "graph")
    root_b = tmp_path / "b"
    with TwinStore(root_b) as store:  # store B holds only the dogs
        put_twin(store, *animal_twin("dogs", "dog"))
    route(stub, responder(lambda _: verdict(0.9, [1]), others=0.7))
    with open_agent(tmp_path / "a", clip, stub) as a, Agent(Resources.open(
            root_b, load_settings(store=root_b), llm=stub.client(n_parallel=2, max_retries=0),
            specialists=fake_specialists(), encoders=ComponentEncoders(KeywordEncoder(KEYWORDS)),
            dense_embedder=EcrTextEmbedder(KeywordEncoder(KEYWORDS)))) as b:
        assert a.resources is not b.resources and a.graph is not b.graph
        assert a.resources.indexes is not b.resources.indexes and a.resources.decomposer is not b.resources.decomposer
        assert {h.video_id for h in a.search(QUERY, k=3, tau=0.0).hits} == {"shapes", "dogs", "cats"}
        stub.requests.clear()
        found = b.search(QUERY, k=3, tau=0.0)
        assert [h.video_id for h in found.hits] == ["dogs"]
        asked = [r["response_format"]["json_schema"]["name"] for r in stub.requests]
        assert asked.count("_Reply") == 1  # A's cached decomposition lives in A's store, not in B's
        assert len(a.resources.decomposer.cache) == len(b.resources.decomposer.cache) == 1  # type: ignore[arg-type]


def test_a_decomposition_persists_across_reopening_the_store(tmp_path: Path, clip: Path, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.9, [1])))
    with open_agent(tmp_path / "s", clip, stub) as first:
        asked = first.search(QUERY, k=3, lr=False)
    assert asked.models["decompose"] == "paper:stub" and any("(llm)" in line for line in asked.trace)
    stub.requests.clear()
    with Agent(Resources.open(tmp_path / "s", load_settings(store=tmp_path / "s"), llm=stub.client(max_retries=0),
                              encoders=ComponentEncoders(KeywordEncoder(KEYWORDS)),
                              dense_embedder=EcrTextEmbedder(KeywordEncoder(KEYWORDS)))) as reopened:
        again = reopened.search(QUERY, k=3, lr=False)
        assert not stub.requests and again.decomposition == asked.decomposition
        assert any("(llm, cached)" in line for line in again.trace)
        # another LLM model is another key: asked again
        reopened.resources._llm = stub.client(model="other", max_retries=0)
        other = reopened.search(QUERY, k=3, lr=False)
    assert other.models["decompose"] == "paper:other" and len(stub.requests) == 1


def test_the_deadline_cuts_slow_llm_calls_and_the_search_still_answers(agent: Agent, stub: Any) -> None:
    import time

    def respond(schema: str, video: str, user: str) -> Any:
        if schema == "Verdict":
            return ("sleep", 4.0)  # a judgement that would take 4 s
        return responder(lambda _: verdict(0.9, [1]))(schema, video, user)

    route(stub, respond)
    start = time.monotonic()
    result = agent.search(QUERY, k=3, deadline_s=1.0)
    took = time.monotonic() - start
    assert took < 3.0, took  # the LLM's own timeout is 30 s: each call was cut to the time left
    assert result.decomposition.source == "llm" and result.options["deadline_s"] == 1.0
    assert [h.video_id for h in result.hits][0] == "shapes"  # answered from retrieval, ranked as retrieved
    assert {h.judged_by for h in result.hits} == {"retrieval score (deadline)"}
    reason = [f for f in result.fallbacks if f.node == "reason"]
    assert len(reason) == 1 and reason[0].reason.startswith("deadline") and reason[0].video_id is None
    assert "refine" not in result.path  # nothing judged by the LLM: nothing to refine


def test_past_the_deadline_no_llm_work_is_started(agent: Agent, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.3, [1], missing=["colour"]), plan_reply=plan(
        ("describe_object", {"track_id": 1}))))
    cached = agent.search(QUERY, k=3, jit=False)  # caches the decomposition
    stub.requests.clear()
    late = agent.search(QUERY, k=3, deadline_s=1e-6)
    assert not stub.requests  # not one LLM request
    assert late.decomposition == cached.decomposition  # a cached decomposition is no LLM work: still used
    assert {f.node for f in late.fallbacks} == {"reason"} and late.hits
    fresh = agent.search("a blue disc", k=3, deadline_s=1e-6)
    assert not stub.requests and fresh.decomposition.source == "fallback"
    assert [f.reason for f in fresh.fallbacks if f.node == "decompose"] == ["deadline; rule-based split used"]
    # with the agent's default (settings) deadline nothing is cut; deadline_s=None switches it off
    assert agent.run_options().deadline_s == agent.resources.settings.agent.deadline_s == 120.0
    assert agent.run_options(deadline_s=None).deadline_s is None  # explicitly none: no deadline
    with pytest.raises(ValueError, match="deadline_s"):
        agent.context(deadline_s=0)


def test_the_deadline_stops_refinement(agent: Agent, stub: Any) -> None:
    import time

    from langgraph.runtime import Runtime

    from twinseek.agent.context import AgentContext
    from twinseek.agent.graph import Nodes

    def respond(schema: str, video: str, user: str) -> Any:
        if schema == "Plan":
            return ("sleep", 5.0)  # planning would take longer than the search may
        return responder(lambda _: verdict(0.3, [1], missing=["colour of object 1"]))(schema, video, user)

    route(stub, respond)
    start = time.monotonic()
    result = agent.search(QUERY, k=3, deadline_s=1.5, tau=0.0)
    assert time.monotonic() - start < 4.0
    refine = [f for f in result.fallbacks if f.node == "refine"]
    assert refine and all(f.reason.startswith("no plan: deadline") for f in refine) and not result.actions
    assert result.path == ["decompose", "retrieve", "rerank", "reason", "refine", "finalize"]
    assert result.hits[0].judged_by == "paper:stub"  # the judgements made in time stand
    assert agent.resources.store.get_twin("shapes").tracks[0].attributes == ""  # nothing ran
    # a refine step that starts past the deadline plans nothing and runs nothing
    route(stub, responder(lambda _: verdict(0.3, [1], missing=["colour of object 1"])))
    state = agent.graph.invoke({"query": QUERY}, context=agent.context(3, jit=False, deadline_s=None))
    stub.requests.clear()
    late = {**state, "started_at": time.time() - 10, "run": state["run"].model_copy(update={"deadline_s": 1.0})}
    update = Nodes(agent.resources).refine(late, Runtime(context=AgentContext(k=3)))  # type: ignore[arg-type]
    assert not stub.requests and update["to_reason"] == [] and update["refine_round"] == 1
    assert update["fallbacks"][0].node == "refine" and update["fallbacks"][0].reason.startswith("deadline")


def test_prompt_overrides_reach_the_llm(agent: Agent, stub: Any) -> None:
    route(stub, responder(lambda _: verdict(0.3, [1], missing=["colour"]), plan_reply=plan()))
    agent.search(QUERY, k=1, prompts={"reason": "Judge strictly.", "plan": "Tools:\n{catalogue}\nPlan."})
    systems = {r["response_format"]["json_schema"]["name"]: r["messages"][0]["content"] for r in stub.requests}
    assert systems["Verdict"] == "Judge strictly."
    assert systems["Plan"].startswith("Tools:\n- describe_object(") and systems["Plan"].endswith("\nPlan.")
    with pytest.raises(ValueError, match="unknown prompt"):
        agent.context(prompts={"judge": "x"})


def test_rerank_options_per_search(agent: Agent, stub: Any) -> None:
    def respond(schema: str, video: str, user: str) -> Any:
        if not schema:  # a yes/no rerank question about one ECR text
            p = 0.9 if "dog" in user else 0.1
            return completion("yes", logprobs=top_logprobs([("yes", p), ("no", 1 - p)]))
        return responder(lambda _: verdict(0.9, [1]))(schema, video, user)

    route(stub, respond)
    assert agent.resources.settings.retrieval.reranker == "none"
    plain = agent.search(QUERY, k=3, lr=False)
    assert "rerank" not in plain.models and plain.hits[0].video_id == "shapes"
    reranked = agent.search(QUERY, k=3, lr=False, reranker="llm")
    assert reranked.hits[0].video_id == "dogs" and reranked.models["rerank"] == "paper:stub"
    assert reranked.options["reranker"] == "llm"
    top1 = agent.search(QUERY, k=3, lr=False, reranker="llm", rerank_top=1)  # only the best is rescored
    assert [h.video_id for h in top1.hits] == [h.video_id for h in plain.hits]
    with pytest.raises(ValueError, match="unknown reranker"):
        agent.context(reranker="magic")


def _reference_search(indexes: Any, query: str, decomposition: Any, k: int, tool: str) -> list[tuple[str, float]]:
    """The coarse stage as ``Retriever.search`` computed it before the graph owned the pipeline (no reranker):
    each tool ranks a pool of max(k, top_k, rerank_top_k) videos (fused: at least fusion_pool); ``fused`` sums
    each tool's min-max scaled scores (a video missing from a list adds 0; ties by id); the top ``k`` are
    returned with their scores."""
    s = indexes.settings
    pool = max(k, s.top_k, s.rerank_top_k, s.fusion_pool if tool == "fused" else 0)
    lists = {}
    if tool != "dense":
        lists["compositional"] = [(h.video_id, h.score) for h in indexes.compositional.search(decomposition.subqueries,
                                                                                              k=pool)]
    if tool != "compositional":
        text = f"{query} {decomposition.rewritten}"
        lists["dense"] = [(h.video_id, h.score) for h in indexes.dense.search_text(text, k=pool)]
    if tool != "fused":
        return lists[tool][:k]
    fused: dict[str, float] = {}
    for ranked in lists.values():
        lo, hi = min(v for _, v in ranked), max(v for _, v in ranked)
        for vid, score in ranked:
            fused[vid] = fused.get(vid, 0.0) + ((score - lo) / (hi - lo) if hi - lo > 1e-12 else 1.0)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def test_search_is_the_graph_with_reasoning_off_and_ranks_as_the_retriever_did(tmp_path: Path, clip: Path,
                                                                                stub: Any) -> None:
    """Real MiniLM encoders on a store of nine twins: ``lr`` off gives exactly the old coarse ranking and scores."""
    root = build_store(tmp_path / "store", clip)
    with TwinStore(root) as store:
        for vid, category in (("birds", "bird"), ("horses", "horse"), ("cars", "car"), ("swans", "black swan"),
                              ("balls", "ball"), ("bikes", "bicycle")):
            put_twin(store, *animal_twin(vid, category))
    llm = {"base_url": stub.base_url, "api_key": "test", "model": "stub", "http_retries": 0, "max_retries": 0}
    with Agent.open(root, llm=llm) as agent:
        indexes = agent.resources.indexes
        for query in ("a red square moving right", "a brown dog, not a cat", "a black swan on water", "a vehicle"):
            decomposition = agent.resources.decomposer.decompose(query, None).decomposition
            for tool in ("fused", "dense", "compositional"):
                for k in (3, 9):
                    result = agent.search(query, k=k, tool=tool, lr=False, jit=False, decomposer="rules")
                    expected = _reference_search(indexes, query, decomposition, k, tool)
                    assert result.path == ["decompose", "retrieve", "rerank", "finalize"]
                    assert [h.video_id for h in result.hits] == [v for v, _ in expected], (query, tool, k)
                    assert [h.retrieval_score for h in result.hits] == pytest.approx([s for _, s in expected])
                    assert [h.relevance for h in result.hits] == pytest.approx(
                        minmax([s for _, s in expected]), abs=1e-4)  # lr off: scaled retrieval scores
    assert not stub.requests  # rules decomposition, no reasoning: the LLM was never asked
