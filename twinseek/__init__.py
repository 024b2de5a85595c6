"""twinseek: reasoning text-to-video retrieval over digital twins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from twinseek.agent.api import Agent as Agent


def __getattr__(name: str) -> Any:
    # Lazy: importing twinseek must not pull in langgraph, torch or the models.
    if name == "Agent":
        from twinseek.agent.api import Agent

        return Agent
    raise AttributeError(f"module 'twinseek' has no attribute {name!r}")
