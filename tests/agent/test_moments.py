"""Hits carry their moments: ``Agent.search`` places each hit's match in time (the localiser over the store's
component catalogue), with and without the LLM, and the overlays show the best moment's frames."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twinseek.agent import Agent, Resources, SearchResult
from twinseek.config import load_settings
from twinseek.retrieval.dense import EcrTextEmbedder
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.twins.store import TwinStore

from support.agent import KEYWORDS, fake_specialists, put_twin, reply, responder, route, verdict
from support.moments import timed_twin
from support.retrieval import KeywordEncoder


@pytest.fixture
def agent(tmp_path: Path, stub: Any) -> Iterator[Agent]:
    root = tmp_path / "store"
    with TwinStore(root) as store:
        # the dog lives in shot 2 only; a ball in shot 1, a cat in shot 0
        put_twin(store, *timed_twin("park", {"cat": (0, 90), "ball": (100, 190), "dog": (200, 290)}))
        put_twin(store, *timed_twin("cats", {"cat": (0, 290)}))
    resources = Resources.open(root, load_settings(store=root), llm=stub.client(n_parallel=2, max_retries=0),
                               specialists=fake_specialists(), encoders=ComponentEncoders(KeywordEncoder(KEYWORDS)),
                               dense_embedder=EcrTextEmbedder(KeywordEncoder(KEYWORDS)))
    with Agent(resources) as a:
        yield a


def test_search_returns_each_hit_with_its_moment(agent: Agent) -> None:
    result = agent.search("a dog", k=2, lr=False, qd=False, jit=False, tau=0.0)
    hit = result.hits[0]
    assert hit.video_id == "park"
    best = hit.moments[0]
    assert (best.start_s, best.end_s, best.shots) == (20.0, 30.0, [2])
    assert best.frames == list(range(200, 300, 10)) and any(e.startswith("dog") for e in best.evidence)
    assert SearchResult.model_validate_json(result.model_dump_json()) == result  # moments in the JSON
    assert '"moments"' in result.model_dump_json() and agent.search("a dog", k=2, lr=False, qd=False, jit=False,
                                                                      tau=0.0).hits[0].moments == hit.moments


def test_the_reasoning_agent_localises_by_the_positive_sub_queries(agent: Agent, stub: Any) -> None:
    decomposition = reply({"rewritten": "a dog without a ball", "subqueries": [
        {"text": "a dog", "type": "object", "negated": False},
        {"text": "a ball", "type": "object", "negated": True}]})
    route(stub, responder(lambda _: verdict(0.9, [3]), decomposition=decomposition, others=0.9))
    result = agent.search("a dog without a ball", k=2, tau=0.0, jit=False)
    park = next(h for h in result.hits if h.video_id == "park")
    assert park.judged_by.startswith("paper:") and park.moments[0].shots == [2]  # the ball's shot is not the moment
    cats = next(h for h in result.hits if h.video_id == "cats")
    assert cats.moments  # no dog anywhere: every shot alike, the whole video is the one moment
    assert (cats.moments[0].start_s, cats.moments[0].end_s, cats.moments[0].shots) == (0.0, 30.0, [0, 1, 2])


def test_overlays_show_the_best_moment(agent: Agent, stub: Any, tmp_path: Path) -> None:
    with TwinStore(agent.resources.store.root) as store:  # a dog all along, a ball in shot 2 only
        put_twin(store, *timed_twin("fetch", {"dog": (0, 290), "ball": (200, 290)}))
    agent.resources.sync()
    decomposition = reply({"rewritten": "a dog with a ball", "subqueries": [
        {"text": "a dog", "type": "object", "negated": False}, {"text": "a ball", "type": "object", "negated": False}]})
    route(stub, responder(lambda _: verdict(0.9), decomposition=decomposition, others=0.9))
    result = agent.search("a dog with a ball", k=3, tau=0.0, jit=False, videos=("fetch",))
    hit = result.hits[0]
    assert hit.video_id == "fetch" and hit.moments[0].shots == [2]
    masked = {m.frame for o in hit.objects for m in o.masks}
    assert masked - set(hit.moments[0].frames)  # the dog's masks reach outside the moment ...
    written = result.save_overlays(tmp_path / "overlays")
    frames = sorted(int(p.stem[1:]) for p in written if p.suffix == ".png")
    assert frames and set(frames) <= set(hit.moments[0].frames)  # ... the overlays do not
