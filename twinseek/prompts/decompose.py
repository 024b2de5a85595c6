"""Prompt for query decomposition (stage 1 of the paper: atomic sub-queries plus an explicit visual rewrite).

Kept short on purpose: on 2 CPU cores every prompt token costs ~10-20 ms until llama.cpp has cached the prefix,
so the fixed part (system + examples) comes first and the query last. The worked examples are ours and must not
come from the evaluation bench. Bump ``VERSION`` whenever the text changes (cached decompositions key on it).
"""

from __future__ import annotations

import json

VERSION = "decompose-v2"

SYSTEM = """You turn a video search query into JSON for a video retrieval engine.
rewritten: the whole query restated as what a camera would show; replace riddles and indirect descriptions by \
the concrete thing they mean.
subqueries: the few (usually 2 to 4) short atomic visual facts of this query, each of one type: object (a thing or creature), attribute (its \
colour, size, material, look), action (what it does), spatial (where it is relative to something), temporal \
(order or change over time), scene (place, setting, weather, light).
negated: true when the query says the thing must not be there or happen (not, no, without, never); its text then \
names the thing itself, without the negation word."""


def _sq(text: str, type_: str, negated: bool = False) -> dict[str, object]:
    return {"text": text, "type": type_, "negated": negated}


# (query, reply) pairs shown to the model as earlier turns of the conversation.
EXAMPLES: list[tuple[str, dict[str, object]]] = [
    (
        "the fruit that supposedly fell on Newton's head, rolling across a wooden table",
        {
            "rewritten": "an apple rolling across a wooden table",
            "subqueries": [
                _sq("an apple", "object"),
                _sq("an apple rolling", "action"),
                _sq("on a wooden table", "spatial"),
            ],
        },
    ),
    (
        "a dog that is not on a leash chasing a ball, then lying down on the sand",
        {
            "rewritten": "a dog without a leash chasing a ball, then lying on a sandy beach",
            "subqueries": [
                _sq("a dog", "object"),
                _sq("a leash", "object", negated=True),
                _sq("a dog chasing a ball, then lying down", "temporal"),
                _sq("a sandy beach", "scene"),
            ],
        },
    ),
]


def messages(query: str, system: str | None = None) -> list[dict[str, str]]:
    """Chat messages asking for the decomposition of ``query`` (``system`` replaces :data:`SYSTEM`)."""
    msgs = [{"role": "system", "content": SYSTEM if system is None else system}]
    for example_query, reply in EXAMPLES:
        msgs.append({"role": "user", "content": example_query})
        msgs.append({"role": "assistant", "content": json.dumps(reply)})
    msgs.append({"role": "user", "content": query.strip()})
    return msgs
