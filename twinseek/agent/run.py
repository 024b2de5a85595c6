"""A search's options, resolved: :func:`resolve` turns the run context into a :class:`Run` once per search.

:class:`~twinseek.agent.context.AgentContext` is what a caller may say (unset fields are None: "the settings'
value"); :class:`Run` is what the search does, every value decided. Every entry point (``Agent.search``, the
web app, the graph ``langgraph dev`` builds with :func:`~twinseek.agent.graph.make_graph`) runs the same graph,
whose first node resolves the context it was given; the nodes read the :class:`Run` in the state only, and
``SearchResult.options`` records it. The tier defaults come from one table, :data:`twinseek.config.TIER_DEFAULTS`.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from twinseek.agent.context import AgentContext, DecomposerName, Tool
from twinseek.config import JudgeName, LLMTier, Settings
from twinseek.retrieval.rerank import RerankerName


class RunResources(Protocol):
    """What :func:`resolve` reads of a store's resources (:class:`twinseek.agent.resources.Resources`)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def llm_tier(self) -> LLMTier: ...


class Run(BaseModel):
    """The options of one search, resolved (see :class:`~twinseek.agent.context.AgentContext` for each field's
    meaning). No value here defers to anything else; the three that may be None say so themselves: ``videos``
    (None: the whole gallery), ``deadline_s`` (None: no deadline) and ``judge_top`` (None: every candidate)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int
    tau: float
    qd: bool
    ca: bool
    lr: bool
    jit: bool
    tool: Tool  # the retrieval tool used: "dense" when compositional alignment is off
    max_refine_rounds: int
    refine_top: int
    max_tracks: int
    max_frames: int
    llm_weight: float
    videos: tuple[str, ...] | None
    decomposer: DecomposerName
    reranker: RerankerName
    rerank_top: int
    rerank_weight: float
    rewrite: bool
    deadline_s: float | None
    prompts: dict[str, str]
    judge: JudgeName
    judge_top: int | None
    judge_prior: bool
    calibrate: bool

    def prompt(self, name: str) -> str | None:
        """The replacement system prompt called ``name``, or None for the built-in one."""
        return self.prompts.get(name)

    def options(self) -> dict[str, Any]:
        """The record of ``SearchResult.options``: every value, the prompts by name only."""
        out = self.model_dump()
        out["videos"] = list(self.videos) if self.videos is not None else None
        out["prompts"] = sorted(self.prompts) or None
        return out


def resolve(ctx: AgentContext, res: RunResources) -> Run:
    """``ctx`` with every unset value taken from ``res``'s settings, and the tier's defaults
    (:meth:`~twinseek.config.AgentSettings.defaults`) where the settings leave it open too."""
    settings = res.settings
    tier = settings.agent.defaults(res.llm_tier)
    retrieval = settings.retrieval
    deadline = ctx.deadline_s if ctx.deadline_s is not None else settings.agent.deadline_s
    return Run(
        k=ctx.k, tau=ctx.tau, qd=ctx.qd, ca=ctx.ca, lr=ctx.lr, jit=ctx.jit, tool=ctx.retrieval_tool,
        max_refine_rounds=ctx.max_refine_rounds, refine_top=ctx.refine_top, max_tracks=ctx.max_tracks,
        max_frames=ctx.max_frames,
        llm_weight=ctx.llm_weight if ctx.llm_weight is not None else tier.llm_weight,
        videos=ctx.videos, decomposer=ctx.decomposer,
        reranker=ctx.reranker or retrieval.reranker,
        rerank_top=ctx.rerank_top if ctx.rerank_top is not None else retrieval.rerank_top_k,
        rerank_weight=retrieval.rerank_weight, rewrite=retrieval.rewrite,
        deadline_s=None if deadline is None or math.isinf(deadline) else deadline,
        prompts=dict(ctx.prompts or {}),
        judge=ctx.judge or tier.judge,
        judge_top=ctx.judge_top if ctx.judge_top is not None else tier.judge_top,
        judge_prior=settings.agent.judge_prior, calibrate=ctx.calibrate,
    )
