"""Graph state: ids, scores and short texts only (the twins, masks and models stay in :class:`Resources`).

``InputState`` is what a caller gives (the query); ``AgentState`` adds what the nodes write. Lists that several
nodes append to, and per-candidate maps that later rounds overwrite, use reducers.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict


def merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Later values win (a candidate judged again after refinement)."""
    return {**(left or {}), **(right or {})}


def add_times(left: dict[str, float] | None, right: dict[str, float] | None) -> dict[str, float]:
    """Seconds per node, summed over the rounds a node ran."""
    out = dict(left or {})
    for name, secs in (right or {}).items():
        out[name] = round(out.get(name, 0.0) + secs, 4)
    return out


class Candidate(TypedDict):
    video_id: str
    path: str
    score: float
    scores: dict[str, float]
    evidence: list[dict[str, Any]]  # ComponentMatch dumps
    similarity: float  # absolute similarity to the query in [0, 1] (mean of the tools' raw scores)


class Judgement(TypedDict):
    relevance: float
    reasoning: str
    objects: list[int]
    missing: list[str]
    source: Literal["llm", "fallback", "retrieval"]
    round: int


class Fallback(TypedDict):
    node: str
    video_id: str | None
    reason: str


class ActionRecord(TypedDict):
    video_id: str
    round: int
    action: str
    args: dict[str, Any]
    status: Literal["ran", "rejected", "unavailable", "failed"]
    detail: str
    model: str | None
    refinements: list[int]  # ids of the refinements the call produced or read from the cache (the search's view)


class InputState(TypedDict):
    query: str


class AgentState(InputState, total=False):
    decomposition: dict[str, Any]  # Decomposition dump (sub-queries, rewrite, source)
    candidates: list[Candidate]  # ranked, best first
    judgements: Annotated[dict[str, Judgement], merge]
    to_reason: list[str]  # candidates the next reason step looks at
    refine_round: int
    actions: Annotated[list[ActionRecord], operator.add]
    fallbacks: Annotated[list[Fallback], operator.add]
    trace: Annotated[list[str], operator.add]  # one short line per step
    path: Annotated[list[str], operator.add]  # nodes in the order they ran
    timings: Annotated[dict[str, float], add_times]
    models: Annotated[dict[str, str], merge]
    hits: list[dict[str, Any]]  # finalize: Hit dumps
    dropped: list[dict[str, Any]]  # finalize: candidates below tau
