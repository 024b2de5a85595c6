"""The agent's prompt texts live in :mod:`twinseek.prompts.agent` (every prompt is versioned in one place)."""

from __future__ import annotations

from twinseek.prompts.agent import PLAN_SYSTEM, REASON_SYSTEM, VERSION, plan_messages, reason_messages

__all__ = ["PLAN_SYSTEM", "REASON_SYSTEM", "VERSION", "plan_messages", "reason_messages"]
