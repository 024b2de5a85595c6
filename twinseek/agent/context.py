"""Run options of one agent search, passed to the graph with ``context=`` (``context_schema=AgentContext``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from twinseek.agent.resources import Resources

Tool = Literal["compositional", "dense", "fused"]


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
    # Heavy resources (store, retriever, LLM, specialists); None: a process-wide set opened from the settings.
    resources: Resources | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        if self.max_refine_rounds < 0 or self.refine_top < 0:
            raise ValueError("max_refine_rounds and refine_top must be >= 0")
        if self.llm_weight is None and self.resources is not None:
            self.llm_weight = self.resources.llm_weight
        if self.llm_weight is not None and not 0.0 <= self.llm_weight <= 1.0:
            raise ValueError(f"llm_weight must be in [0, 1], got {self.llm_weight}")
        if self.videos is not None:
            if isinstance(self.videos, str):
                raise ValueError("videos must be a list of video ids, not one string")
            self.videos = tuple(self.videos)
        if self.tool not in ("compositional", "dense", "fused"):
            raise ValueError(f"unknown retrieval tool {self.tool!r}")

    @property
    def retrieval_tool(self) -> Tool:
        """The retrieval tool actually used: compositional alignment off means dense only."""
        return self.tool if self.ca else "dense"

    def options(self) -> dict[str, object]:
        """The options as plain values (for the result's record)."""
        return {"k": self.k, "tau": self.tau, "max_refine_rounds": self.max_refine_rounds, "qd": self.qd,
                "ca": self.ca, "lr": self.lr, "jit": self.jit, "tool": self.retrieval_tool,
                "refine_top": self.refine_top, "llm_weight": self.llm_weight,
                "videos": list(self.videos) if self.videos is not None else None}
