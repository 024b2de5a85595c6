"""Judgement modes (verdict / yes-no log-probability / listwise), grounding from evidence and calibrated relevance,
on the small store of ``test_agent_graph`` with the real LLM client talking to the scripted stub server."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_stub import completion, top_logprobs
from synthetic import Scene
from test_agent_graph import DECOMPOSITION, QUERY, clip, open_agent, plan, reply, shapes_twin, verdict

from twinseek.agent import Agent, Resources
from twinseek.agent.calibration import (
    CalibrationError,
    Calibrator,
    find_calibrator,
    fit_calibrator,
    store_calibration_path,
)
from twinseek.agent.judge import grounded_tracks, listwise_scores
from twinseek.config import load_settings
from twinseek.tools.compositional import ComponentMatch
from twinseek.tools.decompose import Decomposition, SubQuery
from twinseek.tools.retrieval import Candidate

__all__ = ["clip"]  # the session fixture of test_agent_graph, used here too
P_YES = {"shapes": 0.8, "dogs": 0.3, "cats": 0.1}


def video_in(text: str) -> str:
    """Which test video a prompt's evidence is about (the twins' categories)."""
    return "shapes" if "square" in text else "dogs" if "dog" in text else "cats"


class Script(list):  # type: ignore[type-arg]
    """Replies by request content: decomposition, yes/no (logprobs), listwise order, verdicts, plans."""

    def __init__(self, stub: Any, order: list[int] | None = None, objects: list[int] | None = None) -> None:
        super().__init__([None])
        self.stub, self.order, self.objects = stub, order, objects

    def pop(self, index: Any = -1) -> Any:
        body = self.stub.requests[-1]
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("name", "")
        user = body["messages"][-1]["content"]
        if schema in ("Decomposition", "_Reply"):
            return reply(DECOMPOSITION)
        if body.get("logprobs"):
            p = P_YES[video_in(user.split("Found:", 1)[1])]
            return completion("yes" if p >= 0.5 else "no", logprobs=top_logprobs([("yes", p), ("no", 1 - p)]))
        if schema == "ListwiseOrder":
            return reply({"order": self.order or [1, 2, 3]})
        if schema == "Verdict":
            return verdict(0.9, self.objects or [1])
        if schema == "Plan":
            return plan()
        return completion("")


@pytest.fixture
def agent(tmp_path: Path, clip: Path, stub: Any) -> Iterator[Agent]:
    with open_agent(tmp_path / "store", clip, stub) as a:
        yield a


def _judge_requests(stub: Any) -> list[dict[str, Any]]:
    return [r for r in stub.requests if r.get("logprobs") or "json_schema" in (r.get("response_format") or {})
            and r["response_format"]["json_schema"]["name"] in ("ListwiseOrder", "Verdict")]


def test_yesno_ranks_by_p_yes_one_token_per_candidate_with_a_shared_prefix(agent: Agent, stub: Any) -> None:
    stub.script = Script(stub)
    result = agent.search(QUERY, k=3, judge="yesno", llm_weight=1.0, tau=0.2)
    assert [h.video_id for h in result.hits] == ["shapes", "dogs"]  # cats (P 0.1) below tau
    assert [h.relevance for h in result.hits] == [pytest.approx(0.8), pytest.approx(0.3)]
    asked = _judge_requests(stub)
    assert len(asked) == 3 and all(r["max_tokens"] == 1 and r["logprobs"] for r in asked)
    prefixes = {json.dumps(r["messages"][:-1]) for r in asked}
    assert len(prefixes) == 1  # the fixed prefix is identical for every candidate: the server's cache reuses it
    assert all(r["messages"][-1]["content"].startswith(f"Query: {QUERY}\nFound:") for r in asked)
    top = result.hits[0]
    assert '"a square"' in top.reasoning and "p=0.80" in top.reasoning  # reasoning built from the evidence
    assert [o.track_id for o in top.objects] == [1] and top.objects[0].masks
    assert "refine" not in result.path and result.models["judge"] == "yesno"


def test_yesno_blends_with_retrieval_like_the_verdict(agent: Agent, stub: Any) -> None:
    stub.script = Script(stub)
    result = agent.search(QUERY, k=3, judge="yesno", llm_weight=0.5, tau=0.0)
    for hit in result.hits:
        raw = [hit.scores[s] for s in ("compositional", "dense") if s in hit.scores]
        sim = min(1.0, max(0.0, sum(raw) / len(raw)))
        assert hit.relevance == pytest.approx(0.5 * P_YES[hit.video_id] + 0.5 * sim, abs=1e-4)


def test_listwise_is_one_call_and_orders_by_position(agent: Agent, stub: Any) -> None:
    stub.script = Script(stub, order=[3, 1])  # the third candidate first, then the first; the second unnamed
    plain = agent.search(QUERY, k=3, lr=False)
    before = len(stub.requests)
    result = agent.search(QUERY, k=3, judge="listwise", llm_weight=1.0, tau=0.0)
    asked = _judge_requests(stub)
    assert len(asked) == 1 and len(stub.requests) - before == 1  # decomposition cached: one call in all
    order = [h.video_id for h in plain.hits]
    assert [h.video_id for h in result.hits] == [order[2], order[0], order[1]]
    assert [h.relevance for h in result.hits] == pytest.approx([1.0, 2 / 3, 1 / 3], abs=1e-4)
    assert all(h.reasoning for h in result.hits)


def test_a_verdict_cannot_point_at_tracks_outside_the_evidence(agent: Agent, stub: Any) -> None:
    stub.script = Script(stub, objects=[2, 99])  # the disc and an unknown id: neither satisfied "a square"
    result = agent.search(QUERY, k=3, judge="verdict")
    shapes = next(h for h in result.hits if h.video_id == "shapes")
    assert [o.track_id for o in shapes.objects] == [1]


def _cand(*matches: tuple[str, str, list[int], float, bool]) -> Candidate:
    return Candidate(video_id="v", path="v.mp4", score=1.0, evidence=[
        ComponentMatch(subquery=q, negated=neg, weight=1.0, similarity=sim, kind=kind, track_ids=tracks)
        for q, kind, tracks, sim, neg in [(m[0], m[1], m[2], m[3], m[4]) for m in matches]])


def test_grounded_tracks_follow_the_object_subqueries() -> None:
    twin, _ = shapes_twin("v", Path("v.mp4"), Scene())
    known = [t.track_id for t in twin.tracks]
    assert len(known) >= 2
    a, b = known[0], known[1]
    dec = Decomposition(rewritten="q", source="llm", subqueries=[
        SubQuery(text="a dog", type="object", weight=1.0, negated=False),
        SubQuery(text="brown", type="attribute", weight=0.5, negated=False),
        SubQuery(text="a cat", type="object", weight=1.0, negated=True)])
    cand = _cand(("a dog", "relation", [b, a], 0.7, False), ("brown", "object", [a], 0.9, False),
                 ("a cat", "object", [a], 0.8, True))
    assert grounded_tracks(cand, twin, dec) == [b]  # the object sub-query's subject; not the attribute's, not NOT
    assert grounded_tracks(cand, twin, dec, confirmed=[99, b]) == [b]  # an LLM id outside the evidence is ignored
    no_objects = _cand(("brown", "object", [a], 0.9, False))
    assert grounded_tracks(no_objects, twin, dec) == [a]  # no object sub-query matched: the other evidence
    salient = max(twin.tracks, key=lambda t: t.mean_area * t.frame_count).track_id
    assert grounded_tracks(_cand(), twin, dec) == [salient]  # dense retrieval only: the most salient track


def test_listwise_scores_by_position() -> None:
    assert listwise_scores([2, 2, 7, 1], 3) == pytest.approx([2 / 3, 1.0, 1 / 3])
    assert listwise_scores([], 2) == [1.0, 1.0]


# -- calibration --------------------------------------------------------------------------------------------------
def _pairs() -> tuple[list[float], list[bool]]:
    scores = [i / 40 for i in range(41)]
    return scores, [s > 0.6 or (0.45 < s < 0.5) for s in scores]  # mostly a threshold near 0.6, a little noise


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_fit_calibrator_is_monotone_and_separates(method: Any, tmp_path: Path) -> None:
    scores, labels = _pairs()
    cal = fit_calibrator(scores, labels, llm="m", judge="yesno", method=method, fitted_on={"queries": ["q1"]})
    probs = [cal(s) for s in scores]
    assert all(b >= a - 1e-9 for a, b in zip(probs, probs[1:]))
    assert cal(0.0) < 0.2 and cal(1.0) > 0.8 and all(0 <= p <= 1 for p in probs)
    assert cal.fitted_on["pairs"] == 41 and cal.fitted_on["queries"] == ["q1"]
    again = Calibrator.load(cal.save(tmp_path / "c.json"))
    assert again == cal and math.isclose(again(0.55), cal(0.55))


def test_fit_calibrator_needs_both_classes() -> None:
    with pytest.raises(CalibrationError, match="relevant and irrelevant"):
        fit_calibrator([0.1, 0.2], [False, False], llm="m", judge="yesno")


def test_find_calibrator_order_and_model_check(tmp_path: Path) -> None:
    scores, labels = _pairs()
    mine = fit_calibrator(scores, labels, llm="m", judge="yesno").save(store_calibration_path(tmp_path, "yesno"))
    assert find_calibrator(None, tmp_path, "m", "yesno") == Calibrator.load(mine)
    assert find_calibrator(None, tmp_path, "other-model", "yesno") is None  # fitted for another LLM: skipped
    assert find_calibrator(None, tmp_path, "m", "verdict") is None
    with pytest.raises(CalibrationError, match="fitted for m/yesno"):
        find_calibrator(mine, tmp_path, "other-model", "yesno")
    with pytest.raises(CalibrationError, match="no file"):
        find_calibrator(tmp_path / "missing.json", tmp_path, "m", "yesno")
    shipped = find_calibrator(None, tmp_path / "empty", "qwen2.5-coder-0.5b", "yesno")
    assert shipped is None or shipped.llm == "qwen2.5-coder-0.5b"


def test_a_search_reports_calibrated_relevance_and_tau_is_a_probability(agent: Agent, stub: Any) -> None:
    stub.script = Script(stub)
    raw = agent.search(QUERY, k=3, judge="yesno", llm_weight=1.0, tau=0.0, calibrate=False)
    cal = Calibrator(method="platt", a=10.0, b=-7.0, llm="stub", judge="yesno")  # P >= 0.5 iff score >= 0.7
    cal.save(store_calibration_path(agent.resources.store.root, "yesno"))
    result = agent.search(QUERY, k=3, judge="yesno", llm_weight=1.0, tau=0.5)
    assert [h.video_id for h in result.hits] == ["shapes"]
    assert result.hits[0].relevance == pytest.approx(cal(raw.hits[0].relevance), abs=1e-4)
    assert {d.video_id: d.relevance for d in result.dropped} == pytest.approx(
        {h.video_id: round(cal(h.relevance), 4) for h in raw.hits[1:]}, abs=1e-4)
    assert result.options["calibrate"] is True and raw.options["calibrate"] is False


def test_the_default_judge_follows_the_llm_tier(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    res = agent.resources
    assert agent.context().judge == "verdict"  # the stub is a user's endpoint: the paper's verdicts
    embedded = Resources(res.store, load_settings(store=res.store.root), res.indexes)
    assert embedded.judge == "yesno" and embedded.llm_key == "qwen2.5-coder-0.5b" and embedded._llm is None
    chosen = Resources(res.store, load_settings(store=res.store.root, agent={"judge": "listwise"}), res.indexes)
    assert Agent(chosen).context().judge == "listwise" and Agent(chosen).context(judge="yesno").judge == "yesno"
    with pytest.raises(ValueError, match="judge"):
        agent.context(judge="vote")


def test_calibration_pairs_come_from_uncalibrated_searches_and_fit(agent: Agent, stub: Any) -> None:
    from types import SimpleNamespace

    from twinseek.evals.calibrate import pairs_for

    stub.script = Script(stub)
    cal = Calibrator(method="platt", a=-50.0, b=0.0, llm="stub", judge="yesno")  # would invert every score
    cal.save(store_calibration_path(agent.resources.store.root, "yesno"))
    queries = [SimpleNamespace(id="q1", text=QUERY, positives=["shapes-bench"]),
               SimpleNamespace(id="q2", text="a blue disc", positives=[])]
    pairs = pairs_for(agent, queries, {"shapes-bench": "shapes"}, k=3, judge="yesno", llm_weight=1.0)
    assert sorted(pairs) == sorted([(0.8, True, "q1"), (0.3, False, "q1"), (0.1, False, "q1"),
                                    (0.8, False, "q2"), (0.3, False, "q2"), (0.1, False, "q2")])
    fitted = fit_calibrator([s for s, _, _ in pairs], [r for _, r, _ in pairs], llm="stub", judge="yesno")
    assert fitted(0.8) > fitted(0.3) > fitted(0.1)
