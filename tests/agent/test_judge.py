"""Judgement modes (verdict / yes-no log-probability / listwise), grounding from evidence and calibrated relevance,
on the small store of ``support.agent`` with the real LLM client talking to the scripted stub server."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twinseek.agent import Agent, Resources
from twinseek.agent.calibration import (
    CalibrationError,
    Calibrator,
    candidate_features,
    find_calibrator,
    fit_calibrator,
    retrieval_sibling,
    store_calibration_path,
)
from twinseek.agent.judge import grounded_tracks, listwise_scores
from twinseek.config import load_settings
from twinseek.llm.client import choice_shares
from twinseek.retrieval.compositional import ComponentMatch
from twinseek.retrieval.decompose import Decomposition, SubQuery
from twinseek.retrieval.stages import Candidate

from support.agent import DECOMPOSITION, QUERY, clip, open_agent, plan, reply, shapes_twin, verdict
from support.llm_stub import completion, top_logprobs
from support.synthetic import Scene

__all__ = ["clip"]  # the session fixture of support.agent, used here too
P_YES = {"shapes": 0.8, "dogs": 0.3, "cats": 0.1}
P_CONTENT_FREE = 0.6  # what the scripted judge answers a query that says nothing


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
            read = user.split("Found:", 1)[1] if "Found:" in user else user.split("\nVideo: ", 1)[1]
            p = P_CONTENT_FREE if user.startswith("Query: N/A\n") else P_YES[video_in(read)]
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


def test_describe_reads_each_candidates_description_with_the_query_first(agent: Agent, stub: Any) -> None:
    from twinseek.twins.views import description

    stub.script = Script(stub)
    result = agent.search(QUERY, k=3, judge="describe", llm_weight=1.0, tau=0.2)
    assert [h.video_id for h in result.hits] == ["shapes", "dogs"]  # cats below tau
    asked = [r for r in stub.requests if r.get("logprobs") and not r["messages"][0]["content"].startswith("Query: N/A")]
    assert len(asked) == 3 and all(r["max_tokens"] == 1 and len(r["messages"]) == 1 for r in asked)
    for hit in result.hits:
        read = description(agent.resources.store.get_twin(hit.video_id))
        assert read.startswith("objects: ") and hit.description == read
        assert any(r["messages"][0]["content"] == f"Query: {QUERY}\nVideo: {read}\nDoes this video match the "
                   "query? Answer yes or no." for r in asked)
    assert result.models["judge"] == "describe" and [o.track_id for o in result.hits[0].objects] == [1]
    before = len(stub.requests)
    again = agent.search(QUERY, k=3, judge="describe", llm_weight=1.0, tau=0.2)  # decomposition and answers cached
    assert len(stub.requests) == before and [h.judgement for h in again.hits] == [h.judgement for h in result.hits]


def test_describe_takes_a_descriptions_agreeableness_out_unless_told_not_to(agent: Agent, stub: Any,
                                                                             tmp_path: Path, clip: Path) -> None:
    from twinseek.agent.judge import prior_corrected

    stub.script = Script(stub)
    first = agent.search(QUERY, k=3, judge="describe", llm_weight=1.0, tau=0.0)
    again = agent.search(QUERY + " again", k=3, judge="describe", llm_weight=1.0, tau=0.0)
    judged = {h.video_id: h.judgement for h in first.hits}
    assert judged == pytest.approx({v: prior_corrected(P_YES[v], P_CONTENT_FREE) for v in judged}, abs=1e-4)
    content_free = [r for r in stub.requests if r.get("logprobs")
                    and r["messages"][-1]["content"].startswith("Query: N/A\n")]
    assert len(content_free) == 3  # once per description, then read from the store's cache of the judge's answers
    assert {h.video_id: h.judgement for h in again.hits} == pytest.approx(judged, abs=1e-4)
    stub.script = Script(stub)
    with open_agent(tmp_path / "plain", clip, stub, agent={"judge_prior": False}) as plain:
        raw = plain.search(QUERY, k=3, judge="describe", llm_weight=1.0, tau=0.0)
    assert {h.video_id: h.judgement for h in raw.hits} == pytest.approx({v: P_YES[v] for v in judged}, abs=1e-4)


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
    cal = Calibrator(method="platt", coef=[10.0], intercept=-7.0, llm="stub", judge="yesno")  # P>=0.5 iff score>=0.7
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
    assert agent.run_options().judge == "verdict"  # the stub is a user's endpoint: the paper's verdicts
    embedded = Resources(res.store, load_settings(store=res.store.root), res.indexes)
    assert embedded.defaults.judge == "describe" and embedded.llm_key == "qwen2.5-coder-0.5b" and embedded._llm is None
    # the description judge is the 1.5B on its own server; calibrators of the other modes keep the LLM's name
    assert embedded.judge_llm_key("describe") == "qwen2.5-coder-1.5b"
    assert embedded.judge_llm_key("retrieval") == embedded.judge_llm_key("yesno") == "qwen2.5-coder-0.5b"
    chosen = Resources(res.store, load_settings(store=res.store.root, agent={"judge": "listwise"}), res.indexes)
    assert Agent(chosen).run_options().judge == "listwise" and Agent(chosen).run_options(judge="yesno").judge == "yesno"
    with pytest.raises(ValueError, match="judge"):
        agent.context(judge="vote")


def test_calibration_rows_come_from_uncalibrated_searches_and_fit(agent: Agent, stub: Any) -> None:
    from types import SimpleNamespace

    from twinseek.evals.calibrate import rows_for

    stub.script = Script(stub)
    cal = Calibrator(method="platt", coef=[-50.0], intercept=0.0, llm="stub", judge="yesno")  # inverts every score
    cal.save(store_calibration_path(agent.resources.store.root, "yesno"))
    queries = [SimpleNamespace(id="q1", kind="implicit", text=QUERY, positives=["shapes-bench"]),
               SimpleNamespace(id="q2", kind="absent", text="a blue disc", positives=[])]
    rows = rows_for(agent, queries, {"shapes-bench": "shapes"}, k=3, judge="yesno", llm_weight=1.0)
    got = sorted((r.query, r.video_id, r.features["judged"], r.relevant) for r in rows)
    assert got == sorted([("q1", "shapes", 0.8, True), ("q1", "dogs", 0.3, False), ("q1", "cats", 0.1, False),
                          ("q2", "shapes", 0.8, False), ("q2", "dogs", 0.3, False), ("q2", "cats", 0.1, False)])
    for r in rows:  # the features a search computes: similarity and log(1 + retrieval position)
        assert 0 <= r.features["similarity"] <= 1 and r.features["rank"] == pytest.approx(math.log1p(r.rank))
        assert r.judged and r.features["score"] == pytest.approx(r.features["judged"])  # llm_weight 1: score = judged
    fitted = fit_calibrator([r.features["judged"] for r in rows], [r.relevant for r in rows], llm="stub",
                            judge="yesno")
    assert fitted(0.8) > fitted(0.3) > fitted(0.1)


# -- calibrators over several features, judged top, held-out report ----------------------------------------------
def test_a_calibrator_reads_several_features_and_old_files() -> None:
    cal = Calibrator(method="platt", features=["judged", "similarity", "rank"], coef=[2.0, 4.0, -1.0],
                     intercept=-2.0, llm="m", judge="yesno")
    z = 2.0 * 0.5 + 4.0 * 0.4 - 1.0 * math.log1p(2) - 2.0
    values = candidate_features(similarity=0.4, rank=2, judged=0.5)
    assert cal.probability(values) == pytest.approx(1 / (1 + math.exp(-z)))
    with pytest.raises(CalibrationError, match="lacks"):
        cal.probability(candidate_features(similarity=0.4, rank=0))  # no judgement: not for this calibrator
    with pytest.raises(CalibrationError, match="probability"):
        cal(0.5)
    with pytest.raises(ValueError, match="coefficients"):
        Calibrator(method="platt", features=["judged", "rank"], coef=[1.0], llm="m", judge="yesno")
    old = Calibrator.model_validate({"format": "twinseek-calibration-v1", "method": "platt", "a": 10.0, "b": -7.0,
                                     "llm": "m", "judge": "yesno"})  # written by the first release
    assert old.features == ["score"] and old(0.7) == pytest.approx(0.5)


def test_fit_over_features_learns_which_one_carries_the_signal() -> None:
    import random

    rng = random.Random(0)
    rows, labels = [], []
    for i in range(400):
        relevant = i % 4 == 0
        rows.append(candidate_features(similarity=rng.uniform(0.2, 0.5), rank=rng.randrange(10),
                                       judged=min(1.0, max(0.0, rng.gauss(0.7 if relevant else 0.3, 0.1)))))
        labels.append(relevant)
    cal = fit_calibrator(rows, labels, llm="m", judge="yesno", features=("judged", "similarity", "rank"))
    assert cal.features[0] == "judged" and set(cal.features) <= {"judged", "similarity", "rank"}
    assert cal.coef[0] > 5 * max(abs(c) for c in cal.coef[1:])  # noise features get little weight or are dropped
    assert cal.probability(candidate_features(similarity=0.3, rank=5, judged=0.9)) > 0.9


def test_judge_top_judges_the_best_ranked_only_and_the_rest_keep_retrieval(agent: Agent, stub: Any) -> None:
    stub.script = Script(stub)
    result = agent.search(QUERY, k=3, judge="yesno", llm_weight=1.0, tau=0.0, judge_top=1)
    assert len(_judge_requests(stub)) == 1 and result.options["judge_top"] == 1
    judged = [h for h in result.hits if h.judgement is not None]
    assert [h.video_id for h in judged] == ["shapes"] and judged[0].retrieval_rank == 1
    for hit in result.hits:
        if hit.judgement is None:  # below the judged top, no calibrator: its absolute similarity
            assert hit.judged_by.startswith("retrieval similarity") and hit.relevance == pytest.approx(
                hit.similarity, abs=1e-4)
            assert hit.reasoning and "LLM" not in hit.reasoning  # explained from its evidence, no LLM call
    assert [h.relevance for h in result.hits] == sorted((h.relevance for h in result.hits), reverse=True)
    # a retrieval calibrator maps the others' similarity and rank to P(relevant)
    none = Calibrator(method="platt", features=["similarity", "rank"], coef=[0.0, 0.0], intercept=-3.0,
                      llm="stub", judge="retrieval")
    none.save(store_calibration_path(agent.resources.store.root, "retrieval"))
    again = agent.search(QUERY, k=3, judge="yesno", llm_weight=1.0, tau=0.5, judge_top=1)
    assert [h.video_id for h in again.hits] == ["shapes"]
    assert [d.relevance for d in again.dropped] == [pytest.approx(1 / (1 + math.exp(3)), abs=1e-4)] * 2
    with pytest.raises(ValueError, match="judge_top"):
        agent.context(judge_top=-1)
    before = len(_judge_requests(stub))
    unjudged = agent.search(QUERY, k=3, judge="yesno", tau=0.0, judge_top=0)
    assert "reason" not in unjudged.path and len(_judge_requests(stub)) == before  # no judgement call at all
    assert all(h.judgement is None and h.reasoning for h in unjudged.hits)


def test_the_embedded_llms_judge_the_top_candidates_by_default(agent: Agent) -> None:
    from twinseek.config import TIER_DEFAULTS

    top = TIER_DEFAULTS["embedded"].judge_top
    res = agent.resources
    embedded = Resources(res.store, load_settings(store=res.store.root), res.indexes)
    assert embedded.defaults.judge_top == top and top is not None and top > 0
    assert Agent(embedded).run_options().judge_top == top
    assert agent.run_options().judge_top is None  # a user's endpoint judges every candidate
    chosen = Resources(res.store, load_settings(store=res.store.root, agent={"judge_top": 4}), res.indexes)
    assert chosen.defaults.judge_top == 4 and Agent(chosen).run_options().judge_top == 4


def _rows(kind: str, query: str, relevant_at: int | None, judged_p: list[float]) -> list[Any]:
    from twinseek.evals.calibrate import Row

    return [Row(query=query, kind=kind, video_id=f"v{i}", rank=i, judged=i < len(judged_p),
                relevant=i == relevant_at,
                features=candidate_features(similarity=0.4 - 0.02 * i, rank=i,
                                            judged=judged_p[i] if i < len(judged_p) else None))
            for i in range(5)]


def test_held_out_report_scores_each_fold_with_calibrators_fitted_on_the_others() -> None:
    from twinseek.evals.calibrate import held_out_metrics

    rows = []
    for q in range(8):  # the judge sees the positive clearly (0.9 vs 0.1): it moves it to the top
        rows += _rows("implicit", f"i{q}", q % 2, [0.9 if i == q % 2 else 0.1 for i in range(2)])
    for q in range(4):
        rows += _rows("absent", f"a{q}", None, [0.1, 0.1])
    report = held_out_metrics(rows, folds=2, tau=0.5, llm="m", judge="yesno", method="platt")
    assert report["implicit"]["queries"] == 8 and report["implicit"]["r@1_retrieval"] == 0.5
    assert report["implicit"]["r@1"] == 1.0 and report["implicit"]["positives_above_tau"] == 1.0
    assert report["absent"]["rejected"] == 1.0 and report["absent"]["best_relevance_mean"] < 0.5
    unjudged = held_out_metrics(rows, folds=2, tau=0.5, judged=False, llm="m", judge="yesno", method="platt")
    assert unjudged["implicit"]["r@1"] == 0.5  # without the judgement the retrieval order stays


def test_calibrate_writes_both_calibrators_and_a_held_out_report(agent: Agent, stub: Any, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from twinseek.evals import calibrate as module

    stub.script = Script(stub)
    # the folds split by video: "shapes" and "dogs" (positives) fall in different folds, and so do a2 and a3
    queries = [SimpleNamespace(id=f"q{i}", kind="implicit", text=QUERY, positives=[("shapes", "dogs")[i % 2]])
               for i in range(4)] + [SimpleNamespace(id=f"a{i}", kind="absent", text="a blue disc", positives=[])
                                     for i in (2, 3)]
    bench = SimpleNamespace(queries=queries, videos={"shapes": "x", "dogs": "y"}, model_copy=None)
    monkeypatch.setattr(module, "load_any_bench", lambda *a, **k: bench)
    monkeypatch.setattr(module, "store_ids", lambda *a, **k: {"shapes": "shapes", "dogs": "dogs"})
    monkeypatch.setattr("twinseek.agent.Agent.open", classmethod(lambda cls, *a, **k: _Borrowed(agent)))
    cal, path, report = module.calibrate("bench", agent.resources.store.root, judge="yesno", folds=2, judge_top=3,
                                         llm_weight=1.0)
    assert path == store_calibration_path(agent.resources.store.root, "yesno") and path.is_file()
    assert Path(report.paths[1]).name == "calibration-retrieval.json" and Path(report.paths[1]).is_file()
    assert cal.features[0] == "judged" and cal.fitted_on["queries"] == sorted(q.id for q in queries)
    assert set(report.held_out) == {"implicit", "absent"} and report.folds == 2
    saved = Path(report.paths[2])
    assert saved.name == "calibration-yesno-rows.jsonl" and len(saved.read_text().splitlines()) == 1 + 6 * 3
    again, _, report2 = module.calibrate("bench", agent.resources.store.root, folds=2, rows_from=saved,
                                         out=tmp_path / "refit.json")  # no search: the saved rows
    with pytest.raises(ValueError, match="judge_top"):
        module.calibrate("bench", agent.resources.store.root, judge_top=0)
    assert again.coef == cal.coef and again.features == cal.features and report2.held_out == report.held_out
    # fitted on one fold (its videos' queries) alone: the calibrator says which queries and videos it saw
    half, _, _ = module.calibrate("bench", agent.resources.store.root, folds=2, rows_from=saved, fit_fold=0,
                                  out=tmp_path / "half.json")
    assert half.fitted_on["queries"] == ["a2", "q0", "q2"] and half.fitted_on["fold"] == 0
    assert half.fitted_on["videos"] == ["shapes"] and "dogs" in half.fitted_on["candidate_videos"]
    assert half.coef != cal.coef


class _Borrowed:
    """The test's agent as ``Agent.open`` would return it, left open on exit (the fixture closes it)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def __enter__(self) -> Agent:
        return self.agent

    def __exit__(self, *exc: object) -> None:
        return None


def test_retrieval_sibling_names() -> None:
    assert retrieval_sibling(Path("/s/calibration-yesno.json"), "yesno") == Path("/s/calibration-retrieval.json")
    assert retrieval_sibling(Path("/s/mine.json"), "yesno") == Path("/s/mine-retrieval.json")


def test_choice_shares_read_one_token_options() -> None:
    top = [("1", math.log(0.5)), (" 2", math.log(0.2)), ("0", math.log(0.1)), ("The", math.log(0.15))]
    shares = choice_shares(top, ["0", "1", "2", "3"])
    # "3" is not among the top tokens: it gets the smallest listed probability (0.1), an upper bound on its own
    assert shares == pytest.approx({"0": 0.1 / 0.9, "1": 0.5 / 0.9, "2": 0.2 / 0.9, "3": 0.1 / 0.9})
    assert choice_shares([("The", 0.0)], ["A", "B"]) == {"A": 0.5, "B": 0.5}  # neither: no information


def test_warming_sends_the_fixed_prefixes_of_a_search_once_each(agent: Agent, stub: Any) -> None:
    from twinseek.agent.resources import warm_llm
    from twinseek.prompts import decompose as decompose_prompt

    stub.script = Script(stub)
    before = len(stub.requests)
    warm_llm(agent.resources.llm, "yesno").join(timeout=30)
    sent = stub.requests[before:]
    assert len(sent) == 2 and all(r["max_tokens"] == 1 for r in sent)
    prefixes = {json.dumps(r["messages"][:-1]) for r in sent}
    assert json.dumps(decompose_prompt.messages("x")[:-1]) in prefixes  # what a decomposition starts with
    search = agent.search(QUERY, k=3, judge="yesno", judge_top=1)
    asked = _judge_requests(stub)[-1]
    assert json.dumps(asked["messages"][:-1]) in prefixes  # the judgement starts with the warmed prefix
    assert search.hits
    assert agent.resources.warm() is None  # a user's endpoint (the stub): nothing to warm


def test_a_feature_fitted_against_its_direction_is_dropped() -> None:
    import random

    rng = random.Random(1)
    rows, labels = [], []
    for i in range(300):
        relevant = i % 3 == 0  # similarity carries the signal; the "judgement" says the opposite (noise)
        rows.append(candidate_features(similarity=rng.gauss(0.45 if relevant else 0.3, 0.05), rank=0,
                                       judged=rng.gauss(0.3 if relevant else 0.5, 0.1)))
        labels.append(relevant)
    cal = fit_calibrator(rows, labels, llm="m", judge="yesno", features=("judged", "similarity", "rank"))
    assert "judged" not in cal.features and cal.fitted_on["features_dropped"] == ["judged"]
    assert cal.coef[cal.features.index("similarity")] > 0  # a yes never lowers P(relevant); similarity still counts


def test_without_reasoning_a_retrieval_calibrator_gives_probabilities_that_tau_thresholds(agent: Agent,
                                                                                          stub: Any) -> None:
    stub.script = Script(stub)
    plain = agent.search(QUERY, k=3, lr=False, tau=0.5)
    assert len(plain.hits) == 3 and plain.hits[0].relevance == 1.0  # no calibrator: min-max scaled, all returned
    sims = sorted({h.similarity for h in plain.hits})
    cut = (sims[0] + sims[-1]) / 2  # P(relevant) = 0.5 between the least and the most similar (rank: no weight)
    cal = Calibrator(method="platt", features=["similarity", "rank"], coef=[200.0, 0.0], intercept=-200.0 * cut,
                     llm="stub", judge="retrieval")
    cal.save(store_calibration_path(agent.resources.store.root, "retrieval"))
    result = agent.search(QUERY, k=3, lr=False, tau=0.5)
    expected, ceiling = {}, 1.0  # never above a candidate ranked higher: tau keeps a prefix of the order
    for h in plain.hits:
        ceiling = min(ceiling, cal.probability(candidate_features(similarity=h.similarity, rank=h.retrieval_rank - 1)))
        expected[h.video_id] = ceiling
    kept = [h.video_id for h in plain.hits if expected[h.video_id] >= 0.5]
    assert [h.video_id for h in result.hits] == kept and 0 < len(kept) < 3  # retrieval order, below tau dropped
    assert {h.video_id: h.relevance for h in result.hits} == pytest.approx({v: expected[v] for v in kept}, abs=1e-4)
    assert {d.video_id for d in result.dropped} == {h.video_id for h in plain.hits} - set(kept)
    raw = agent.search(QUERY, k=3, lr=False, tau=0.5, calibrate=False)
    assert [h.relevance for h in raw.hits] == [h.relevance for h in plain.hits]


def test_an_eval_ranks_the_whole_gallery_when_a_retrieval_calibrator_drops_candidates(agent: Agent,
                                                                                      stub: Any) -> None:
    from twinseek.evals.scorers import AgentScorer, RetrievalScorer

    stub.script = Script(stub)
    ids = {v: v for v in ("shapes", "dogs", "cats")}
    before_rest = AgentScorer(agent, ids, k=3, switches={"lr": False})._retrieval_order(QUERY, None)
    before_scores = RetrievalScorer(agent, ids=ids).score_videos(QUERY)
    Calibrator(method="platt", features=["similarity", "rank"], coef=[0.0, 0.0], intercept=-5.0, llm="stub",
               judge="retrieval").save(store_calibration_path(agent.resources.store.root, "retrieval"))
    assert agent.search(QUERY, k=3, lr=False).hits == []  # every candidate below tau now
    # the retrieval order below the hits, and a baseline's scores, still cover the whole gallery
    assert AgentScorer(agent, ids, k=3, switches={"lr": False})._retrieval_order(QUERY, None) == before_rest
    assert RetrievalScorer(agent, ids=ids).score_videos(QUERY) == before_scores and len(before_rest) == 3
