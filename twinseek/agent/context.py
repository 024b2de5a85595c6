"""Run options of one agent search, passed to the graph with ``context=`` (``context_schema=AgentContext``).

Only serialisable values: the store, indexes, models and LLM client are bound when the graph is built for a
store (:func:`twinseek.agent.graph.build_graph`), never carried here. A field left None takes the settings'
value; the graph's first node resolves them all, once, into a :class:`~twinseek.agent.run.Run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from twinseek.config import JudgeName
from twinseek.retrieval.rerank import RERANKERS, RerankerName
from twinseek.retrieval.stages import TOOLS, Tool

__all__ = ["JUDGES", "PROMPTS", "AgentContext", "DecomposerName", "JudgeName", "RerankerName", "Tool"]

DecomposerName = Literal["llm", "rules"]
PROMPTS = ("decompose", "reason", "yesno", "listwise", "describe", "plan")  # system prompts a search may replace
JUDGES: tuple[JudgeName, ...] = ("verdict", "yesno", "listwise", "describe")


@dataclass(kw_only=True)
class AgentContext:
    """Options of one search. The ablation switches follow Table 3 of the paper (arXiv 2511.12371):

    - ``qd`` query decomposition (off: the whole query is the one sub-query);
    - ``ca`` compositional alignment (off: dense retrieval only);
    - ``lr`` LLM reasoning (off: rank by retrieval score and return all ``k`` with the evidence's objects);
    - ``jit`` just-in-time refinement (off: the refine node never runs).
    """

    k: int = 10
    tau: float = 0.5
    max_refine_rounds: int = 1
    qd: bool = True
    ca: bool = True
    lr: bool = True
    jit: bool = True
    tool: Tool = "fused"
    refine_top: int = 3  # candidates refined per round (the best-ranked ones that report missing facts)
    max_tracks: int = 6  # tracks shown to the LLM per candidate: evidence first, then the largest
    max_frames: int = 4  # frames per track shown to the LLM
    # relevance = llm_weight * LLM judgement + (1 - llm_weight) * the candidate's absolute retrieval similarity;
    # 1.0 is the paper (the LLM decides); lower values keep a weak LLM from overturning good retrieval.
    # None: the settings' ``agent.llm_weight`` (1.0 with a user's endpoint, 0.5 with the embedded LLM).
    llm_weight: float | None = None
    # Restrict the search to these video ids ("how well does this video match?"): the whole gallery is still
    # ranked for the retrieval scores, then only these become candidates.
    videos: tuple[str, ...] | None = None
    # Who decomposes the query when ``qd`` is on: the LLM (cached, rule-based fallback) or the rules alone.
    decomposer: DecomposerName = "llm"
    # ECR reranker of the candidates and how many it rescores; None: the settings' ``retrieval.reranker`` /
    # ``retrieval.rerank_top_k``.
    reranker: RerankerName | None = None
    rerank_top: int | None = None
    # Overall seconds of the search: past them the LLM work left is skipped (recorded as a fallback) and the
    # search answers with what it has. None: the settings' ``agent.deadline_s``; ``math.inf``: no deadline.
    deadline_s: float | None = None
    # Replacement system prompts by name (``decompose``, ``reason``, ``plan``); a replaced decomposition prompt
    # gets its own entries in the decomposition cache.
    prompts: Mapping[str, str] | None = None
    # How the LLM judges candidates (see twinseek.agent.judge); None: the settings' ``agent.judge`` (by the LLM's
    # tier: "verdict" for a user's endpoint, "describe" for the embedded LLMs).
    judge: JudgeName | None = None
    # Map judged scores to P(relevant) with the calibrator of the LLM and judge mode, when there is one (then tau
    # is a probability threshold). Off: the relevance is the uncalibrated score (``twinseek calibrate`` reads it).
    calibrate: bool = True
    # How many candidates the LLM judges (best-ranked first); the others keep their retrieval relevance. None: the
    # settings' ``agent.judge_top`` (every candidate with a user's endpoint, the top 5 with the embedded LLMs).
    judge_top: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        if self.max_refine_rounds < 0 or self.refine_top < 0:
            raise ValueError("max_refine_rounds and refine_top must be >= 0")
        if self.llm_weight is not None and not 0.0 <= self.llm_weight <= 1.0:
            raise ValueError(f"llm_weight must be in [0, 1], got {self.llm_weight}")
        if self.videos is not None:
            if isinstance(self.videos, str):
                raise ValueError("videos must be a list of video ids, not one string")
            self.videos = tuple(self.videos)
        if self.tool not in TOOLS:
            raise ValueError(f"unknown retrieval tool {self.tool!r}")
        if self.decomposer not in ("llm", "rules"):
            raise ValueError(f"decomposer must be 'llm' or 'rules', got {self.decomposer!r}")
        if self.reranker is not None and self.reranker not in RERANKERS:
            raise ValueError(f"unknown reranker {self.reranker!r}; known: {', '.join(RERANKERS)}")
        if self.rerank_top is not None and self.rerank_top < 0:
            raise ValueError(f"rerank_top must be >= 0, got {self.rerank_top}")
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0 (or None: no deadline), got {self.deadline_s}")
        if self.judge_top is not None and self.judge_top < 0:
            raise ValueError(f"judge_top must be >= 0, got {self.judge_top}")
        if self.judge is not None and self.judge not in JUDGES:
            raise ValueError(f"judge must be one of {', '.join(JUDGES)}, got {self.judge!r}")
        if self.prompts is not None:
            unknown = set(self.prompts) - set(PROMPTS)
            if unknown:
                raise ValueError(f"unknown prompt(s) {sorted(unknown)}; known: {', '.join(PROMPTS)}")
            self.prompts = dict(self.prompts)

    @property
    def retrieval_tool(self) -> Tool:
        """The retrieval tool actually used: compositional alignment off means dense only."""
        return self.tool if self.ca else "dense"
