"""How the reason node judges candidates: the judgement modes, the compact evidence they read, and grounding.

Three modes (``agent.judge`` / ``AgentContext.judge``):

- ``verdict``: the paper's per-candidate chain of thought over the compact twin (a JSON verdict with reasoning,
  missing facts, objects and a relevance). The default with a user's endpoint, whose model can argue.
- ``yesno``: one yes/no question per candidate over its *compact evidence*; the relevance is P(yes) read from the
  first token's log-probabilities, never a generated number. The default with the embedded model: a 0.5B LLM
  copies the numbers of its worked examples, but its yes/no token probabilities still order candidates. The
  fixed prompt prefix (system text and examples) is the same for every candidate and query, so llama.cpp's prompt
  cache reuses it and each call only reads the candidate's few hundred tokens.
- ``listwise``: one call that orders the top candidates (their evidence numbered); relevance by position.

Compact evidence = the components that matched the sub-queries (object category and attributes, relations),
the scene labels and the start of the ECR text. The reasoning a person reads in ``yesno``/``listwise`` is built
from the same evidence, with no extra LLM call.

Grounding (:func:`grounded_tracks`): the objects returned with a hit are the tracks behind the component
evidence of the object sub-queries; an LLM may only order them (tracks it names first), never add its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from twinseek.tools.compositional import ComponentMatch
from twinseek.tools.decompose import Decomposition
from twinseek.tools.retrieval import Candidate
from twinseek.twins.model import Track, Twin

ECR_CHARS = 280  # the ECR text's share of the evidence (its first sentences name the main objects)
MAX_OTHER_OBJECTS = 3
LISTWISE_MAX_TOKENS = 48


# -- grounding ----------------------------------------------------------------------------------------------------
def _supporting(candidate: Candidate) -> list[ComponentMatch]:
    """Matches that support the query (a negated sub-query's match is counter-evidence), strongest first."""
    found = [e for e in candidate.evidence if not e.negated and e.similarity > 0 and e.track_ids]
    return sorted(found, key=lambda e: -e.similarity * max(e.weight, 1e-6))


def grounded_tracks(candidate: Candidate, twin: Twin, decomposition: Decomposition | None,
                    confirmed: Sequence[int] = ()) -> list[int]:
    """The tracks that satisfied the object sub-queries (their matched object components), strongest match first;
    with no object sub-query matched, the tracks of the other supporting matches (attributes, relations); with no
    component evidence at all (dense retrieval only), the most salient track.

    ``confirmed`` (an LLM's picks) only moves the tracks it names to the front; ids outside the evidence are ignored.
    """
    known = {t.track_id for t in twin.tracks}
    objects_asked = {s.text for s in decomposition.subqueries if s.type == "object"} if decomposition else set()
    matches = _supporting(candidate)
    chosen = [e for e in matches if e.subquery in objects_asked] or matches
    # an object sub-query is about one thing: its match's first track (a relation component's subject); a relation
    # sub-query is about all the tracks its relation links
    tracks = list(dict.fromkeys(t for e in chosen for t in (
        e.track_ids[:1] if e.subquery in objects_asked or e.kind != "relation" else e.track_ids) if t in known))
    if not tracks and not matches and twin.tracks:
        tracks = [max(twin.tracks, key=lambda t: t.mean_area * t.frame_count).track_id]
    first = [t for t in dict.fromkeys(confirmed) if t in tracks]
    return first + [t for t in tracks if t not in first]


# -- compact evidence ---------------------------------------------------------------------------------------------
def _describe(track: Track) -> str:
    cat = track.category if not track.category_group or track.category_group == track.category \
        else f"{track.category} ({track.category_group})"
    parts = [cat]
    if track.attributes:
        parts.append(track.attributes[:80])
    if track.direction and track.direction != "stationary":
        parts.append(f"moving {track.direction}")
    return ", ".join(parts)


def _match_line(match: ComponentMatch, tracks: dict[int, Track]) -> str:
    what = match.text or ", ".join(_describe(tracks[t]) for t in match.track_ids if t in tracks) or "?"
    if match.kind == "relation" or len(match.track_ids) > 1:
        ids = " & ".join(f"object {t}" for t in match.track_ids)
    else:
        ids = f"object {match.track_ids[0]}" if match.track_ids else "nothing"
    sign = "NOT " if match.negated else ""
    return f'- "{sign}{match.subquery}" -> {ids}: {what[:120]}'


def compact_evidence(candidate: Candidate, twin: Twin, ecr_text: str | None) -> str:
    """The few hundred tokens a judgement reads about one candidate (see the module docstring)."""
    tracks = {t.track_id: t for t in twin.tracks}
    lines = []
    if twin.video.scene:
        lines.append("Scene: " + ", ".join(label for label, _ in twin.video.scene[:3]))
    matched = [e for e in candidate.evidence if e.similarity > 0]
    if matched:
        lines.append("Matches:")
        lines += [_match_line(e, tracks) for e in matched]
    shown = {t for e in matched for t in e.track_ids}
    others = sorted((t for t in twin.tracks if t.track_id not in shown), key=lambda t: -t.mean_area * t.frame_count)
    if others:
        lines.append("Other objects: " + "; ".join(f"{t.track_id} {_describe(t)}" for t in others[:MAX_OTHER_OBJECTS]))
    if ecr_text:
        text = " ".join(ecr_text.split())
        lines.append("Summary: " + (text if len(text) <= ECR_CHARS else text[:ECR_CHARS].rsplit(" ", 1)[0] + " ..."))
    return "\n".join(lines) or "Nothing was detected in this video."


def evidence_reasoning(candidate: Candidate, twin: Twin, p_yes: float | None, grounded: Sequence[int]) -> str:
    """A short explanation for a person, from the evidence (no LLM call)."""
    tracks = {t.track_id: t for t in twin.tracks}
    parts = []
    for e in _supporting(candidate)[:3]:
        objs = ", ".join(f"{_describe(tracks[t])} (#{t})" for t in e.track_ids if t in tracks)
        parts.append(f'"{e.subquery}" matches {objs or e.text or "a component"}')
    against = [e for e in candidate.evidence if e.negated and e.similarity > 0.5]
    parts += [f'but "{e.subquery}" (excluded) also matches' for e in against[:1]]
    if twin.video.scene:
        parts.append("scene: " + ", ".join(label for label, _ in twin.video.scene[:2]))
    text = "; ".join(parts) if parts else "no component of the query was found"
    if not grounded:
        text += "; no object to point at"
    lead = f"The LLM answers yes with p={p_yes:.2f}. " if p_yes is not None else ""
    return (lead + text[0].upper() + text[1:] + ".")[:400]


# -- the prompts --------------------------------------------------------------------------------------------------
YESNO_SYSTEM = """You decide whether a video matches a search query. You get the query, then what was found in \
the video: the objects and relations that matched parts of the query, the scene and a short summary. \
Think about what the query means (it may describe a thing indirectly), then answer with one word: yes or no."""

# Ours, not from any bench: a match described indirectly, then a miss whose objects are near the query's words.
YESNO_EXAMPLES: list[tuple[str, str]] = [
    ("Query: a pet that purrs, sleeping on a sofa\nFound:\nScene: living room\nMatches:\n"
     '- "a pet that purrs" -> object 1: cat, grey, lying still\n- "a sofa" -> object 2: couch\n'
     "Summary: A grey cat lies curled up on a couch in a living room.", "yes"),
    ("Query: a horse jumping over a fence\nFound:\nScene: field\nMatches:\n"
     '- "a horse" -> object 1: cow, brown\n- "a fence" -> object 2: fence\n'
     "Summary: A brown cow grazes beside a wooden fence.", "no"),
]


def yesno_messages(query: str, decomposition: Decomposition | None, evidence: str,
                   system: str | None = None) -> list[dict[str, str]]:
    """The yes/no question for one candidate: the fixed prefix (system, examples) first, then this query and the
    candidate's evidence (so the prefix is shared across candidates and searches)."""
    del decomposition  # the sub-queries already appear in the evidence's match lines
    messages = [{"role": "system", "content": YESNO_SYSTEM if system is None else system}]
    for user, answer in YESNO_EXAMPLES:
        messages += [{"role": "user", "content": user + "\nDoes the video match the query?"},
                     {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": f"Query: {query}\nFound:\n{evidence}\nDoes the video match the query?"})
    return messages


LISTWISE_SYSTEM = """You rank videos for a search query. Each video is numbered and described by what was found \
in it (objects and relations that matched parts of the query, the scene, a summary). The query may describe \
things indirectly: think about what it means. Reply with the numbers of the videos, best match first."""


class ListwiseOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Order")

    order: list[int] = Field(max_length=12)


def listwise_messages(query: str, evidences: Sequence[str], system: str | None = None) -> list[dict[str, str]]:
    blocks = "\n\n".join(f"[{i}]\n{text}" for i, text in enumerate(evidences, start=1))
    return [{"role": "system", "content": LISTWISE_SYSTEM if system is None else system},
            {"role": "user", "content": f"Query: {query}\n\n{blocks}\n\nOrder the {len(evidences)} videos."}]


def listwise_scores(order: Sequence[int], n: int) -> list[float]:
    """Scores in [0, 1] by position: the first named 1.0, then evenly down; a video not named ranks after all the
    named ones (ties among them); invalid and repeated numbers are ignored."""
    seen = [i for i in dict.fromkeys(order) if 1 <= i <= n]
    rest = [i for i in range(1, n + 1) if i not in seen]
    scores = [0.0] * n
    step = 1.0 / max(n, 1)
    for pos, i in enumerate(seen):
        scores[i - 1] = 1.0 - pos * step
    for i in rest:
        scores[i - 1] = 1.0 - len(seen) * step
    return scores


def blend(judged: float, similarity: float, weight: float) -> float:
    """``weight`` of the judgement, the rest from the absolute retrieval similarity (both in [0, 1])."""
    value = weight * judged + (1 - weight) * similarity
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


PAIRWISE_SYSTEM = """You compare two videos for a search query. Each is described by what was found in it (objects \
and relations that matched parts of the query, the scene, a summary). The query may describe things indirectly: \
think about what it means. Answer with one letter: A if video A matches the query better, B if video B does."""


def pairwise_messages(query: str, first: str, second: str, system: str | None = None) -> list[dict[str, str]]:
    """Which of two candidates matches better (answer ``A`` or ``B``); ask both orders to cancel position bias."""
    return [{"role": "system", "content": PAIRWISE_SYSTEM if system is None else system},
            {"role": "user", "content": f"Query: {query}\n\nVideo A:\n{first}\n\nVideo B:\n{second}\n\n"
                                        "Which video matches the query better, A or B?"}]


CHOICE_SYSTEM = """You pick the video that matches a search query. The videos are numbered and described by what \
was found in them (objects and relations that matched parts of the query, the scene, a summary). The query may \
describe things indirectly: think about what it means. Answer with one digit: the number of the matching video, \
or 0 if none of them matches."""


def choice_messages(query: str, evidences: Sequence[str], system: str | None = None) -> list[dict[str, str]]:
    """One call for the top candidates: which one matches (``1``..``n``), or none (``0``); the first token's
    distribution over the digits scores every candidate and the chance that none matches."""
    blocks = "\n\n".join(f"[{i}]\n{text}" for i, text in enumerate(evidences, start=1))
    return [{"role": "system", "content": CHOICE_SYSTEM if system is None else system},
            {"role": "user", "content": f"Query: {query}\n\n{blocks}\n\nWhich video matches the query? "
                                        f"Answer 1 to {len(evidences)}, or 0 for none."}]
