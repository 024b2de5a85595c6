"""Graph state: typed ids, scores and short texts (the twins, masks and models stay in the bound resources).

``InputState`` is what a caller gives (the query, and when the search started); ``AgentState`` adds what the
nodes write. Every item is a pydantic model, built once by the node that writes it and never re-validated.
Lists that several nodes append to, and per-candidate maps that later rounds overwrite, use reducers.
The models of the answer (:class:`Hit` and its parts) are the ones :class:`~twinseek.agent.api.SearchResult`
carries.
"""

from __future__ import annotations

import logging
import operator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import Required, TypedDict  # pydantic needs these (Studio's schemas) before 3.12

from twinseek.agent.run import Run
from twinseek.media.masks import load_mask
from twinseek.retrieval.compositional import ComponentMatch
from twinseek.retrieval.decompose import Decomposition
from twinseek.retrieval.moments import Moment  # the localiser's (retrieval) model, re-exported
from twinseek.retrieval.stages import Candidate

logger = logging.getLogger(__name__)

__all__ = ["ActionRecord", "AgentState", "Candidate", "DroppedCandidate", "Fallback", "FrameMask", "Hit",
           "HitObject", "InputState", "Judgement", "Moment", "fallback"]

JudgementSource = Literal["llm", "fallback", "deadline", "retrieval", "unjudged"]


def merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Later values win (a candidate judged again after refinement)."""
    return {**(left or {}), **(right or {})}


def add_times(left: dict[str, float] | None, right: dict[str, float] | None) -> dict[str, float]:
    """Seconds per node, summed over the rounds a node ran."""
    out = dict(left or {})
    for name, secs in (right or {}).items():
        out[name] = round(out.get(name, 0.0) + secs, 4)
    return out


class Judgement(BaseModel):
    """A candidate's relevance and why: from the LLM, or from retrieval (reasoning off, LLM failed, deadline)."""

    model_config = ConfigDict(frozen=True)

    relevance: float = Field(ge=0, le=1)
    judged: float | None = Field(None, description="The LLM's own judgement in [0, 1] (P(yes), a listwise or "
                                 "verdict score) before blending and calibration; None when the LLM did not judge.")
    reasoning: str = ""
    objects: list[int] = Field(default_factory=list, description="Track ids that satisfy the query.")
    missing: list[str] = Field(default_factory=list, description="Facts the twin lacks (refinement asks for them).")
    source: JudgementSource
    round: int = Field(0, ge=0, description="Refinement round it was made in (0: before any refinement).")
    read: str = Field("", description="What the judge read about the candidate (its description, in the "
                      "'describe' mode); empty when it read the compact twin or evidence, or did not judge.")


class Fallback(BaseModel):
    """A step that could not do its job and what stood in for it."""

    node: str
    video_id: str | None = None
    reason: str


def fallback(node: str, video_id: str | None, reason: str) -> Fallback:
    """A fallback, logged as it is recorded."""
    logger.warning("%s%s: %s", node, f" ({video_id})" if video_id else "", reason)
    return Fallback(node=node, video_id=video_id, reason=reason[:300])


class ActionRecord(BaseModel):
    """One planned refinement call and what became of it."""

    video_id: str
    round: int
    action: str
    args: dict[str, Any] = Field(default_factory=dict)
    status: Literal["ran", "rejected", "unavailable", "failed"]
    detail: str = ""
    model: str | None = None
    refinements: list[int] = Field(default_factory=list, description="Ids of the refinements the call produced "
                                   "or read from the cache: the search's view (``twinseek store refinements list``).")


class FrameMask(BaseModel):
    frame: int = Field(description="Frame index in the source video.")
    path: str = Field(description="Absolute path of the mask PNG (white = object).")

    def load(self) -> np.ndarray:
        """The mask as a bool array (read from disk now, not before)."""
        return load_mask(Path(self.path))


class HitObject(BaseModel):
    track_id: int
    category: str
    attributes: str = ""
    masks: list[FrameMask] = Field(default_factory=list)


class Hit(BaseModel):
    rank: int
    video_id: str
    path: str
    relevance: float = Field(ge=0, le=1)
    retrieval_score: float
    retrieval_rank: int = Field(1, ge=1, description="Position in the retrieval (or reranked) order, 1 = first.")
    similarity: float = Field(0.0, description="Absolute retrieval similarity (comparable across queries).")
    judgement: float | None = Field(None, description="The LLM's own judgement before blending and calibration.")
    description: str = Field("", description="The video in one line (what the judge reads in the 'describe' mode).")
    scores: dict[str, float] = Field(default_factory=dict, description="Score per retrieval stage.")
    reasoning: str = ""
    missing: list[str] = Field(default_factory=list)
    judged_by: str = Field("", description="tier:model of the LLM, or which fallback gave the relevance.")
    refined: bool = Field(False, description="Judged again after just-in-time refinement.")
    objects: list[HitObject] = Field(default_factory=list)
    evidence: list[ComponentMatch] = Field(default_factory=list)
    moments: list[Moment] = Field(default_factory=list, description="Where in the video the match lies, best "
                                  "first (empty when nothing localises it).")


class DroppedCandidate(BaseModel):
    video_id: str
    relevance: float


class InputState(TypedDict, total=False):
    query: Required[str]
    started_at: float  # time.time() when the search began; the deadline counts from here (default: first node)


class AgentState(InputState, total=False):
    run: Run  # the resolved run options (the first node writes them)
    decomposition: Decomposition
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
    hits: list[Hit]  # finalize: the answer, best first
    dropped: list[DroppedCandidate]  # finalize: candidates below tau
