"""Query decomposition: an implicit query -> atomic visual sub-queries and an explicit rewrite.

:class:`Decomposer` is the one decomposer of the package: it asks the LLM (under the JSON schema of
:mod:`twinseek.prompts.decompose`), keeps each answer in the store's SQLite (:class:`DecompositionCache`, keyed by
query text, LLM model and prompt version, so a restart or another eval run does not ask again), and when the LLM
fails uses the deterministic rule-based split instead, recorded in :attr:`Decomposed.fallback` and never cached
(the LLM may be back next time). Retrieval never depends on the LLM being up.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

import sqlite_utils
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlite_utils.migrations import Migrations

from twinseek.errors import StoreError
from twinseek.llm.base import LLMError
from twinseek.prompts import decompose as prompt
from twinseek.twins.migrations import STORE_SET

if TYPE_CHECKING:
    from twinseek.llm.base import ChatModel
    from twinseek.twins.store import TwinStore

__all__ = ["Decomposed", "Decomposer", "Decomposition", "DecompositionCache", "SubQuery", "SubQueryType",
           "fallback_decompose", "llm_decompose", "prompt_version"]

logger = logging.getLogger(__name__)

SubQueryType = Literal["object", "attribute", "action", "spatial", "temporal", "scene"]
MAX_SUBQUERIES = 6


class SubQuery(BaseModel):
    """One atomic visual fact of a query."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=160)
    type: SubQueryType
    weight: float = Field(gt=0, le=1, description="Importance in the video score's weighted mean.")
    negated: bool = Field(description="True when the query requires this NOT to be in the video.")


class Decomposition(BaseModel):
    """Sub-queries of a query plus an explicit, visual rewrite of the whole query."""

    model_config = ConfigDict(extra="forbid")

    subqueries: list[SubQuery] = Field(min_length=1, max_length=MAX_SUBQUERIES)
    rewritten: str = Field(min_length=1)
    source: Literal["llm", "fallback"] = Field("llm", description="Who produced it (for traces).")


class _ReplySubQuery(BaseModel):
    """A sub-query as the LLM writes it: no weight (fewer tokens; a small model's weights are noise anyway)."""

    model_config = ConfigDict(extra="forbid", title="SubQuery")

    text: str = Field(min_length=1, max_length=120)
    type: SubQueryType
    negated: bool


class _Reply(BaseModel):
    """What the LLM writes (``rewritten`` first: naming the concrete things helps the sub-queries)."""

    model_config = ConfigDict(extra="forbid", title="Decomposition")

    rewritten: str = Field(min_length=1, max_length=200)
    subqueries: list[_ReplySubQuery] = Field(min_length=1, max_length=MAX_SUBQUERIES)


# Weights by role: the first sub-query is the subject; context (scene) matters least.
_TYPE_WEIGHT: dict[str, float] = {
    "object": 0.8, "action": 0.8, "attribute": 0.7, "spatial": 0.7, "temporal": 0.7, "scene": 0.5,
}


def _weight(type_: str, index: int, negated: bool) -> float:
    if index == 0 and not negated:
        return 1.0
    return 0.6 if negated else _TYPE_WEIGHT[type_]


def llm_decompose(query: str, llm: ChatModel, *, system: str | None = None, max_tokens: int = 200) -> Decomposition:
    """The LLM's decomposition of ``query`` (``system`` replaces the prompt's system text).

    Raises:
        LLMError: the LLM failed (down, timed out, no valid reply); :class:`Decomposer` falls back on it.
    """
    query = query.strip()
    if not query:
        raise ValueError("cannot decompose an empty query")
    reply = llm.chat_json(prompt.messages(query, system), _Reply, max_tokens=max_tokens)
    subqueries = [
        SubQuery(text=s.text, type=s.type, weight=_weight(s.type, i, s.negated), negated=s.negated)
        for i, s in enumerate(reply.subqueries)
    ]
    return _repair_negation(query, Decomposition(subqueries=subqueries, rewritten=reply.rewritten))


def _repair_negation(query: str, result: Decomposition) -> Decomposition:
    """Guard the negation flags with the query's own words: a negated sub-query drops a video, so it must be real.

    The 0.5B model both drops negations and invents them ("a vehicle with a siren" -> siren negated). No negator
    in the query: clear every flag; negators but none flagged: take the rule-based split's negated clauses.
    Repeated sub-queries (small models loop) are dropped too.
    """
    seen: set[tuple[str, bool]] = set()
    subqueries = []
    for s in result.subqueries:
        key = (s.text.strip().lower(), s.negated)
        if key not in seen:
            seen.add(key)
            subqueries.append(s)
    rules = fallback_decompose(query).subqueries
    if not any(w in NEGATORS or w.endswith("n't") for w in _words(query)):
        if any(s.negated for s in subqueries):
            logger.info("no negation in %r: clearing the LLM's negated flags", query)
            subqueries = [s.model_copy(update={"negated": False}) if s.negated else s for s in subqueries]
    elif not any(s.negated for s in subqueries):
        negated = [s for s in rules if s.negated]
        logger.info("the LLM missed the negation in %r; adding %s", query, [s.text for s in negated])
        subqueries = subqueries[: MAX_SUBQUERIES - len(negated)] + negated
    return result.model_copy(update={"subqueries": subqueries})


# --------------------------------------------------------------------------------------------------------------
# Rule-based fallback.

NEGATORS = frozenset({
    "not", "no", "without", "never", "none", "nobody", "nothing", "neither", "nor", "cannot", "nowhere",
})
# Clause boundaries: commas/semicolons, conjunctions, and "with"/"without" (kept: "without" carries negation).
_SPLIT = re.compile(
    r"\s*[,;]\s*|\s+(?:and|but|while|whilst|whereas|as)\s+|\s+(?=(?:with|without)\s)|\s+(?=then\s)",
    re.IGNORECASE,
)
_LEADING_CONJUNCTION = re.compile(r"^(?:and|but|while|whilst|whereas|as)\s+", re.IGNORECASE)
_SPATIAL_SPLIT = re.compile(
    r"\s+(?=(?:behind|beside|under|underneath|above|below|near|next to|in front of|on top of|between|"
    r"inside|outside|across from|left of|right of)\s)",
    re.IGNORECASE,
)
_TEMPORAL = frozenset({
    "then", "before", "after", "first", "finally", "initially", "later", "begins", "starts", "ends", "until",
    "afterwards", "eventually", "gradually", "suddenly", "again", "repeatedly", "slowly", "quickly",
})
_SPATIAL = frozenset({
    "behind", "beside", "under", "underneath", "above", "below", "near", "next", "front", "top", "between",
    "inside", "outside", "left", "right", "across", "along", "past", "toward", "towards", "around", "over",
})
_SCENE = frozenset({
    "beach", "street", "road", "park", "room", "kitchen", "field", "forest", "city", "indoors", "outdoors", "sky",
    "sea", "ocean", "lake", "river", "snow", "night", "day", "sunset", "sunrise", "rain", "desert", "mountain",
    "stadium", "garden", "office", "stage", "water", "countryside", "town", "background", "weather",
})
_ATTRIBUTE = frozenset({
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey", "gray",
    "golden", "silver", "striped", "spotted", "furry", "wooden", "metal", "plastic", "small", "large", "big",
    "tiny", "tall", "short", "long", "old", "young", "shiny", "dark", "bright", "colourful", "colorful",
})
_FILLER = frozenset({"with", "then", "there", "is", "are", "that", "which", "who", "it", "does", "do", "be"})


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _guess_type(words: list[str], index: int) -> SubQueryType:
    vocab = set(words)
    if vocab & _TEMPORAL:
        return "temporal"
    if any(w.endswith("ing") and len(w) > 4 for w in words):
        return "action"
    if vocab & _SPATIAL:
        return "spatial"
    if vocab & _SCENE:
        return "scene"
    if vocab & _ATTRIBUTE and index > 0:  # "with a red hat"; the first clause is the subject itself
        return "attribute"
    return "object"


def _split_negation(clause: str) -> list[str]:
    """"a dog that is not on a leash" -> ["a dog that is", "not on a leash"]: the subject stays positive."""
    words = clause.split()
    for i, w in enumerate(words[1:], start=1):
        if w.lower() in NEGATORS or w.lower().endswith("n't"):
            return [" ".join(words[:i]), " ".join(words[i:])]
    return [clause]


def _clauses(query: str) -> list[str]:
    chunks = [_LEADING_CONJUNCTION.sub("", c) for c in _SPLIT.split(query)]  # ", while ..." after a comma
    parts = [p for chunk in chunks for p in _SPATIAL_SPLIT.split(chunk)]
    parts = [n for p in parts for n in _split_negation(p)]
    parts = [p.strip(" .!?") for p in parts if p and p.strip(" .!?")]
    if len(parts) > MAX_SUBQUERIES:  # keep the limit: the tail merges into the last clause
        parts = parts[: MAX_SUBQUERIES - 1] + [" ".join(parts[MAX_SUBQUERIES - 1 :])]
    return parts or [query]


def _subquery(clause: str, index: int) -> SubQuery:
    words = _words(clause)
    negated = any(w in NEGATORS or w.endswith("n't") for w in words)
    kept = [w for w in clause.split() if w.lower().strip(",.") not in NEGATORS | _FILLER
            and not w.lower().endswith("n't")]
    text = " ".join(kept) or clause
    type_ = _guess_type(words, index)
    return SubQuery(text=text[:160], type=type_, weight=_weight(type_, index, negated), negated=negated)


def fallback_decompose(query: str) -> Decomposition:
    """Deterministic rule-based decomposition: split on commas, conjunctions, "while", "with"; flag negators."""
    query = query.strip()
    if not query:
        raise ValueError("cannot decompose an empty query")
    subqueries = [_subquery(c, i) for i, c in enumerate(_clauses(query))]
    return Decomposition(subqueries=subqueries, rewritten=query, source="fallback")


# --------------------------------------------------------------------------------------------------------------
# The one decomposer, and its cache.

def prompt_version(system: str | None = None) -> str:
    """The prompt's ``VERSION``; a replaced system text gets its own version (a hash of the text)."""
    if system is None or system == prompt.SYSTEM:
        return prompt.VERSION
    return f"{prompt.VERSION}+{hashlib.sha256(system.encode()).hexdigest()[:12]}"


# The cache's table, in the store's database. Its migration was the store's own before the cache owned it: it keeps
# the store's set name and its own function name, which every existing store recorded (none runs it again).
decomposition_migrations = Migrations(STORE_SET)


@decomposition_migrations()
def m002_decompositions(db: sqlite_utils.Database) -> None:
    db.table("decompositions").create(
        {"query": str, "model": str, "prompt_version": str, "decomposition": str, "created_at": str},
        pk=("query", "model", "prompt_version"), if_not_exists=True,
    )


class DecompositionCache:
    """LLM decompositions persisted in a twin store's SQLite (table ``decompositions``, migration
    ``m002_decompositions``, which the store applies when the first cache opens on it), keyed by (query text,
    ``tier:model`` of the LLM, prompt version).

    A write takes the store's writer lock for at most ``write_timeout_s``: when another process holds it (an
    ingest, an index sync), the decomposition is simply not cached this time rather than stalling the search.
    A store that cannot be written (read-only files) serves what it holds and caches nothing.
    """

    def __init__(self, store: TwinStore, write_timeout_s: float = 0.5) -> None:
        store.ensure(decomposition_migrations)
        self.store = store
        self.write_timeout_s = write_timeout_s

    def get(self, query: str, model: str, version: str) -> Decomposition | None:
        try:
            rows = self.store.db.execute(
                "select decomposition from decompositions where query = ? and model = ? and prompt_version = ?",
                [query, model, version]).fetchall()
        except sqlite3.Error as exc:
            logger.warning("cannot read cached decompositions (%s)", exc)
            return None
        if not rows:
            return None
        try:
            return Decomposition.model_validate_json(rows[0][0])
        except ValidationError:  # written by an incompatible version: ask again (and overwrite)
            return None

    def put(self, query: str, model: str, version: str, decomposition: Decomposition) -> bool:
        """Store one decomposition; False (logged) when the store is busy or read-only."""
        row = {"query": query, "model": model, "prompt_version": version,
               "decomposition": decomposition.model_dump_json(),
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            with self.store.writer(timeout_s=self.write_timeout_s), self.store.db.atomic():
                self.store.db.table("decompositions").insert(row, replace=True)
        except StoreError as exc:
            logger.info("decomposition of %r not cached: %s", query, exc)
            return False
        except (sqlite3.Error, OSError) as exc:
            logger.warning("decomposition of %r not cached: %s", query, exc)
            return False
        return True

    def __len__(self) -> int:
        return int(self.store.db.execute("select count(*) from decompositions").fetchone()[0])

    def clear(self) -> int:
        """Forget every cached decomposition (a cold start); returns how many there were."""
        with self.store.writer(), self.store.db.atomic():
            return self.store.db.execute("delete from decompositions").rowcount


@dataclass(frozen=True)
class Decomposed:
    """A decomposition and how it was obtained."""

    decomposition: Decomposition
    model: str  # tier:model of the LLM that wrote it, or "rules"
    cached: bool = False
    fallback: str | None = None  # why the rule-based split stands in for the LLM's (None: it does not)


class Decomposer:
    """Decomposes queries: the LLM's answer from ``cache`` or the LLM, else the recorded rule-based fallback.

    ``cache`` is optional (``None``: every call asks the LLM). The LLM is passed per call, so a search can bound
    it by its deadline (:class:`~twinseek.llm.deadline.BoundedLLM`); ``llm=None`` decomposes by rules.
    """

    def __init__(self, cache: DecompositionCache | None = None, *, max_tokens: int = 200) -> None:
        self.cache = cache
        self.max_tokens = max_tokens

    def decompose(self, query: str, llm: ChatModel | None, *, system: str | None = None) -> Decomposed:

        query = query.strip()
        if not query:
            raise ValueError("cannot decompose an empty query")
        if llm is None:
            return Decomposed(fallback_decompose(query), "rules")
        model, version = f"{llm.tier}:{llm.model}", prompt_version(system)
        if self.cache is not None and (cached := self.cache.get(query, model, version)) is not None:
            return Decomposed(cached, model, cached=True)
        try:
            decomposition = llm_decompose(query, llm, system=system, max_tokens=self.max_tokens)
        except LLMError as exc:
            logger.warning("LLM decomposition of %r failed (%s); using the rule-based split", query, exc)
            return Decomposed(fallback_decompose(query), "rules", fallback=f"the LLM failed ({exc})")
        if self.cache is not None:
            self.cache.put(query, model, version, decomposition)
        return Decomposed(decomposition, model)
