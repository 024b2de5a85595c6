"""Prompts of the agent's fine stage: reasoning over one candidate's twin, and the just-in-time refinement plan.

Both are written for the 0.5B embedded model first: short, worked examples, schema-constrained replies. The
fixed part (system text, example) comes first and the per-search part (query, sub-queries) before the
per-candidate twin, so llama.cpp reuses the cached prefix across the candidates of a search. Bump ``VERSION``
whenever a text changes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

VERSION = "agent-v1"

TWIN_FORMAT = (
    "A twin is JSON: o = objects (id, cat category, attr look, mv motion, f frames as [frame, x, y, size, depth] "
    "with x, y in 0..1 from the top-left); r = relations [subject id, predicate, object id, from frame, to frame]."
)

REASON_SYSTEM = f"""You check whether a video matches a search query, reading only the video's digital twin.
{TWIN_FORMAT}
reasoning: at most three short sentences checking each sub-query against the twin.
missing: facts the twin lacks to check a sub-query (e.g. "colour of object 2"); empty when the twin is enough.
objects: ids of the objects that satisfy the query.
relevance: 0 (does not match) to 1 (certainly matches); below 0.5 means the video does not match."""

def _twin(objects: list[dict[str, object]], relations: list[list[object]]) -> str:
    return json.dumps({"video": "v", "secs": 4.0, "o": objects, "r": relations}, separators=(",", ":"))


# Two worked examples (ours, not from any bench): a clear miss, then a likely match whose colour the twin lacks.
# The 0.5B model leans on the last example; a partial match there keeps candidates (and asks for refinement)
# rather than dropping them all.
EXAMPLES: list[tuple[str, dict[str, object]]] = [
    (
        "Query: a dog catching a frisbee\nSub-queries: a dog; a frisbee; dog catching frisbee\nTwin: " + _twin(
            [{"id": 1, "cat": "horse", "attr": "brown", "mv": "right 0.20", "f": [[0, 0.4, 0.5, 0.3, None]]}], []),
        {"reasoning": "The only object is a horse; there is no dog and no frisbee.", "missing": [], "objects": [],
         "relevance": 0.05},
    ),
    (
        "Query: a dark bird swimming towards someone\nSub-queries: a dark bird; bird swimming towards a person\n"
        "Twin: " + _twin(
            [{"id": 1, "cat": "swan (bird)", "attr": "", "mv": "left 0.10", "f": [[0, 0.7, 0.5, 0.2, None]]},
             {"id": 2, "cat": "person", "attr": "blue jacket", "mv": "still", "f": [[0, 0.2, 0.6, 0.1, None]]}],
            [[1, "approaching", 2, 0, 40]]),
        {"reasoning": "Object 1 is a swan, a bird, approaching person 2. The twin does not say whether it is dark.",
         "missing": ["colour of object 1"], "objects": [1], "relevance": 0.6},
    ),
]


def subquery_line(subqueries: Sequence[tuple[str, bool]]) -> str:
    return "; ".join(f"NOT {text}" if negated else text for text, negated in subqueries)


def reason_messages(query: str, subqueries: Sequence[tuple[str, bool]], twin_json: str,
                    system: str | None = None) -> list[dict[str, str]]:
    """Messages asking for the relevance of one candidate (``subqueries`` as ``(text, negated)``; ``system``
    replaces :data:`REASON_SYSTEM`)."""
    return [
        {"role": "system", "content": REASON_SYSTEM if system is None else system},
        *({"role": role, "content": text} for user, reply in EXAMPLES
          for role, text in (("user", user), ("assistant", json.dumps(reply)))),
        {"role": "user", "content": f"Query: {query}\nSub-queries: {subquery_line(subqueries)}\nTwin: {twin_json}"},
    ]


PLAN_SYSTEM = f"""The digital twin of a video lacks facts needed to check a search query. Choose at most three \
tool calls that would add the missing facts to the twin. Use only these tools, with exactly these arguments:
{{catalogue}}
{TWIN_FORMAT}
Reply with calls: a list of {{{{"action": tool name, "args": {{{{argument: value}}}}}}}}; an empty list when no tool helps."""


def plan_messages(catalogue: Sequence[str], query: str, missing: Sequence[str], twin_json: str,
                  system: str | None = None) -> list[dict[str, str]]:
    """Messages asking for a refinement plan; ``catalogue`` has one line per available action. ``system``
    replaces :data:`PLAN_SYSTEM` (a literal ``{catalogue}`` in it becomes the action lines)."""
    lines = "\n".join(f"- {line}" for line in catalogue)
    system = PLAN_SYSTEM.format(catalogue=lines) if system is None else system.replace("{catalogue}", lines)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Query: {query}\nMissing: {'; '.join(missing)}\nTwin: {twin_json}"},
    ]
