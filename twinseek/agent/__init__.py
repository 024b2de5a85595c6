"""The reasoning agent: a LangGraph graph (decompose -> retrieve -> rerank -> reason -> refine -> finalize) and
the :class:`Agent` facade. Needs the ``agent`` extra (langgraph)."""

from __future__ import annotations

from twinseek.agent.api import Agent, Hit, HitObject, Moment, ProgressEvent, SearchResult
from twinseek.agent.context import AgentContext
from twinseek.agent.graph import build_graph
from twinseek.agent.resources import Resources
from twinseek.agent.run import Run, resolve

__all__ = ["Agent", "AgentContext", "Hit", "HitObject", "Moment", "ProgressEvent", "Resources", "Run", "SearchResult",
           "build_graph", "resolve"]
