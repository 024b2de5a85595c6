"""How a search judges its candidates: the :class:`Judge` (modes, relevance, calibration, LLM-failure fallback), what
each mode reads, and grounding.

Four modes (``agent.judge`` / ``AgentContext.judge``):

- ``describe``: the embedded default. The judge model (``llm.judge_model``, the Qwen2.5-Coder-1.5B on its own
  llama.cpp server) reads the candidate's one-line description (:func:`twinseek.twins.views.description`: what
  the video shows, the names a person uses) after the query, ``Query: ...\nVideo: ...\nDoes this video match the
  query? Answer yes or no.``; the judgement is P(yes) from the first token's log-probabilities. The query comes
  first, so every candidate of a search shares its tokens in llama.cpp's prompt cache; answers are cached in the
  store. With ``agent.judge_prior`` the description's own agreeableness is taken out (contextual calibration).
- ``verdict``: the paper's per-candidate chain of thought over the compact twin (a JSON verdict with reasoning,
  missing facts, objects and a relevance). The default with a user's endpoint, whose model can argue.
- ``yesno``: one yes/no question per candidate over its *compact evidence* (the components that matched the
  sub-queries, the scene labels and the start of the ECR text), with a fixed prompt prefix of two examples.
  Measured on the dev bench: it echoes the sub-queries as if found, so every candidate looks matched.
- ``listwise``: one call that orders the top candidates (their evidence numbered); relevance by position.

The reasoning a person reads is built from the evidence (which sub-query matched which object), with no extra LLM
call; the description the judge read is kept with the hit.

Grounding (:func:`grounded_tracks`): the objects returned with a hit are the tracks behind the component
evidence of the object sub-queries; an LLM may only order them (tracks it names first), never add its own.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Annotated, Literal, Protocol

import sqlite_utils
from pydantic import BaseModel, ConfigDict, Field
from sqlite_utils.migrations import Migrations

from twinseek.agent import prompts
from twinseek.agent.calibration import RETRIEVAL_JUDGE, candidate_features, sigmoid
from twinseek.agent.run import Run
from twinseek.agent.state import AgentState, Fallback, Judgement, fallback
from twinseek.config import JudgeName
from twinseek.llm.base import ChatModel, LLMError
from twinseek.llm.deadline import BoundedLLM, Deadline
from twinseek.retrieval.compositional import ComponentMatch
from twinseek.retrieval.decompose import Decomposition
from twinseek.retrieval.fusion import minmax
from twinseek.retrieval.stages import Candidate
from twinseek.twins.migrations import STORE_SET
from twinseek.twins.model import Track, Twin, utc_now
from twinseek.twins.views import compact_view, description
from twinseek.twins.words import category_phrase, motion_words

if TYPE_CHECKING:
    from twinseek.agent.calibration import Calibrator
    from twinseek.llm.base import ChatModel
    from twinseek.twins.store import TwinStore


class JudgeResources(Protocol):
    """What a :class:`Judge` reads of a store's resources (:class:`twinseek.agent.resources.Resources`)."""

    store: TwinStore

    @property
    def llm(self) -> ChatModel: ...

    @property
    def judge_llm(self) -> ChatModel: ...

    @property
    def parallel(self) -> int: ...

    def calibrator(self, judge: str) -> Calibrator | None: ...


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
    parts = [category_phrase(track)]
    if track.attributes:
        parts.append(track.attributes[:80])
    if track.direction != "stationary":
        parts.append(motion_words(track))
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


def evidence_reasoning(candidate: Candidate, twin: Twin, p_yes: float | None, grounded: Sequence[int],
                       corrected: float | None = None) -> str:
    """A short explanation for a person, from the evidence (no LLM call); ``corrected``: P(yes) with the judged
    description's own agreeableness taken out."""
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
    lead = f"The LLM answers yes with p={p_yes:.2f}" if p_yes is not None else ""
    if lead and corrected is not None:
        lead += f" ({corrected:.2f} for this query beyond what the description says yes to)"
    lead += ". " if lead else ""
    return (lead + text[0].upper() + text[1:] + ".")[:400]


# -- the prompts --------------------------------------------------------------------------------------------------
YESNO_SYSTEM = """You decide whether a video matches a search query. You get the query, then what was found in \
the video: the objects and relations that matched parts of the query, the scene and a short summary. \
Think about what the query means (it may describe a thing indirectly), then answer with one word: yes or no."""

# Ours, not from any bench: a match described indirectly, then a miss whose objects are near the query's words.
YESNO_EXAMPLES: list[tuple[str, str]] = [
    ("Query: an animal that hoots at night, perched on a branch\nFound:\nScene: forest\nMatches:\n"
     '- "an animal that hoots at night" -> object 1: great grey owl (bird), stationary\n'
     '- "a branch" -> object 2: tree\nSummary: A grey owl sits still on a tree in a forest.', "yes"),
    ("Query: a train crossing a bridge\nFound:\nScene: street\nMatches:\n"
     '- "a train" -> object 1: bus, red\n- "a bridge" -> object 2: road\n'
     "Summary: A red bus stands parked at the side of a road.", "no"),
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


# -- the description judge ---------------------------------------------------------------------------------------
DESCRIBE_QUESTION = "Does this video match the query? Answer yes or no."
CONTENT_FREE_QUERY = "N/A"  # a query that says nothing: P(yes) for it measures how agreeable a description is


def describe_messages(query: str, description: str, system: str | None = None) -> list[dict[str, str]]:
    """The question about one candidate in the ``describe`` mode: the query first (every candidate of a search
    shares those tokens, which llama.cpp's prompt cache keeps), then the video's one-line description."""
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": f"Query: {query}\nVideo: {description}\n{DESCRIBE_QUESTION}"}]


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def prior_corrected(p_yes: float, p_content_free: float) -> float:
    """P(yes) with the description's own agreeableness taken out (contextual calibration, Zhao et al. 2021): the
    logit of P(yes) for a content-free query is subtracted, so a line with many plausible nouns no longer says
    yes to every query."""
    return sigmoid(logit(p_yes) - logit(p_content_free))


# -- the cache of its answers --------------------------------------------------------------------------------------
# The judge's answers, in the store's database. Their migration was the store's own before the cache owned it: it
# keeps the store's set name and its own function name, which every existing store recorded (none runs it again).
judgement_migrations = Migrations(STORE_SET)


@judgement_migrations()
def m007_judgements(db: sqlite_utils.Database) -> None:
    """The judge's answers (P(yes) of one prompt by one model, at temperature 0): a candidate judged again for the
    same query, after a restart or in another eval run, is not sent to the LLM again. Not twin data: searches write
    it, like the decompositions."""
    db.table("judgements").create({"key": str, "model": str, "value": float, "created_at": str}, pk="key",
                                  if_not_exists=True)


class JudgementCache:
    """The judge's answers persisted in a twin store's SQLite (table ``judgements``, migration ``m007_judgements``,
    which the store applies when the first cache opens on it), keyed by a hash of the model, its temperature and
    the prompt (:meth:`Judge._ask`)."""

    def __init__(self, store: TwinStore) -> None:
        store.ensure(judgement_migrations)
        self.store = store

    def get(self, key: str) -> float | None:
        """The cached answer, or None."""
        row = self.store.db.execute("select value from judgements where key = ?", [key]).fetchone()
        return None if row is None else float(row[0])

    def put(self, key: str, model: str, value: float) -> None:
        with self.store.writer(), self.store.db.atomic():
            self.store.db.table("judgements").upsert({"key": key, "model": model, "value": value,
                                                      "created_at": utc_now()}, pk="key")

    def clear(self) -> int:
        """Forget every cached answer (a cold start); returns how many there were."""
        with self.store.writer(), self.store.db.atomic():
            return self.store.db.execute("delete from judgements").rowcount


# -- the judge -----------------------------------------------------------------------------------------------------
Judged = tuple[str, Judgement, Fallback | None]
REASON_MAX_TOKENS = 160


class Verdict(BaseModel):
    """The LLM's judgement of one candidate (reasoning first: the verdict follows the argument)."""

    model_config = ConfigDict(extra="forbid", title="Verdict")

    # Bounded strings: llama.cpp turns maxLength into its grammar, so the small model stops early (latency).
    reasoning: str = Field(max_length=240)
    missing: list[Annotated[str, Field(max_length=60)]] = Field(max_length=3)
    objects: list[int] = Field(max_length=8)
    relevance: float = Field(ge=0, le=1)


def from_retrieval(relevance: float, source: Literal["fallback", "deadline", "retrieval", "unjudged"],
                   round_: int = 0) -> Judgement:
    return Judgement(relevance=round(relevance, 4), source=source, round=round_)  # finalize grounds it


def retrieval_relevance(candidates: Sequence[Candidate], run: Run) -> dict[str, float]:
    """Relevance from retrieval alone (reasoning off, or the LLM failed): the retrieval score min-max scaled over
    the candidates (all equal: all 1); in a search within given videos, their absolute similarity (a candidate
    alone would always scale to 1)."""
    if run.videos is not None:
        return {c.video_id: c.similarity for c in candidates}
    return dict(zip((c.video_id for c in candidates), minmax([c.score for c in candidates])))


def evidence_tracks(candidate: Candidate) -> list[int]:
    """Tracks behind the matched components (a negated sub-query's match is counter-evidence, not a hit)."""
    return [t for e in candidate.evidence if not e.negated and e.similarity > 0 for t in e.track_ids]


class Judge:
    """How one search judges its candidates: the judgement mode (``run.judge``), the
    LLM that judges (the ``describe`` mode's judge model, else the search's LLM), bounded by the search's deadline,
    the relevance each judgement becomes (calibrated, else blended with the retrieval similarity) and the fallback
    to retrieval when the LLM fails. Made per reason step from the run options and the state; keeps nothing."""

    def __init__(self, res: JudgeResources, run: Run, state: AgentState) -> None:
        self.res, self.run, self.state = res, run, state
        self.mode: JudgeName = run.judge
        deadline = Deadline.after(state.get("started_at"), run.deadline_s)
        self.llm = BoundedLLM(res.judge_llm if self.mode == "describe" else res.llm, deadline)
        self.positions = {c.video_id: i for i, c in enumerate(state.get("candidates", []))}
        self.answers = JudgementCache(res.store)

    @property
    def model_name(self) -> str:
        return f"{self.llm.tier}:{self.llm.model}"

    # -- the candidates it judges
    def judge_all(self, todo: list[Candidate], twins: dict[str, Twin], round_: int,
                  report: Callable[[str, Judgement], None]) -> list[Judged]:
        """Judge ``todo`` (best-ranked first), reporting each judgement as it comes; results in ``todo``'s order."""
        if self.mode == "listwise":
            results = self._listwise(todo, twins, round_)
            for vid, judgement, _ in results:
                report(vid, judgement)
            return results
        one = {"describe": self._describe, "yesno": self._yesno}.get(self.mode, self._verdict)
        results = []
        # the embedded server decodes n_parallel requests at once; the shared prompt prefix is cached
        with ThreadPoolExecutor(max_workers=min(self.res.parallel, max(1, len(todo)))) as pool:
            futures = {pool.submit(one, c, twins[c.video_id], round_): c.video_id for c in todo}
            for future in as_completed(futures):  # reported here: the stream writer belongs to this thread
                judgement, failure = future.result()
                results.append((futures[future], judgement, failure))
                report(futures[future], judgement)
        order = {c.video_id: i for i, c in enumerate(todo)}
        return sorted(results, key=lambda r: order[r[0]])

    def unjudged(self, cand: Candidate) -> Judgement:
        """A candidate below the judged top: P(relevant) from its retrieval similarity and rank by the retrieval
        calibrator when there is one (so it compares with the judged candidates'), else its absolute similarity."""
        p = self.retrieval_probability(cand)
        return from_retrieval(cand.similarity if p is None else p, "unjudged")

    def retrieval_probability(self, cand: Candidate) -> float | None:
        """P(relevant) from the candidate's retrieval similarity and rank (the retrieval calibrator), or None when
        there is no calibrator or the search asked for uncalibrated relevance."""
        calibrator = self.res.calibrator(RETRIEVAL_JUDGE) if self.run.calibrate else None
        if calibrator is None:
            return None
        return calibrator.probability(candidate_features(similarity=cand.similarity, rank=self._position(cand)))

    def relevance(self, judged: float, cand: Candidate) -> float:
        """P(relevant) from the calibrator of this LLM and judge mode, which reads the judgement, the retrieval
        similarity and rank (see :mod:`twinseek.agent.calibration`); without one, the judgement blended with the
        absolute retrieval similarity (a small LLM's judgement is noisy)."""
        weight = self.run.llm_weight
        score = blend(judged, cand.similarity, weight)
        calibrator = self.res.calibrator(self.mode) if self.run.calibrate else None
        if calibrator is None:
            return score
        return calibrator.probability(candidate_features(similarity=cand.similarity, rank=self._position(cand),
                                                         judged=judged, score=score))

    # -- the modes
    def _describe(self, cand: Candidate, twin: Twin, round_: int) -> tuple[Judgement, Fallback | None]:
        """P(yes) of the judge model reading the candidate's one-line description (``judge = "describe"``),
        with the description's agreeableness taken out when ``agent.judge_prior`` is on."""
        text = description(twin)
        try:
            p_yes = self._ask(describe_messages(self.state["query"], text, self.run.prompt("describe")))
            judged = prior_corrected(p_yes, self._ask(describe_messages(CONTENT_FREE_QUERY, text))) \
                if self.run.judge_prior else p_yes
        except LLMError as exc:
            return self._failed(cand, exc, round_)
        objects = grounded_tracks(cand, twin, self.state.get("decomposition"))
        return Judgement(relevance=round(self.relevance(judged, cand), 4), judged=round(judged, 4), source="llm",
                         round=round_, read=text, objects=objects,
                         reasoning=evidence_reasoning(cand, twin, p_yes, objects,
                                                      judged if self.run.judge_prior else None)), None

    def _ask(self, messages: list[dict[str, str]]) -> float:
        """P(yes) for ``messages``, from the store's cache of the judge's answers when this model was asked the same
        before (the answer of a temperature-0 model to the same prompt; other temperatures are keyed apart)."""
        key = hashlib.sha256(json.dumps([self.llm.model, self.llm.settings.temperature, messages]).encode()).hexdigest()
        cached = self.answers.get(key)
        if cached is not None:
            return cached
        p_yes = self.llm.yes_probability(messages)
        self.answers.put(key, self.llm.model, p_yes)
        return p_yes

    def _verdict(self, cand: Candidate, twin: Twin, round_: int) -> tuple[Judgement, Fallback | None]:
        """The paper's judgement: a chain-of-thought verdict over the compact twin (``judge = "verdict"``)."""
        dec = self.state["decomposition"]
        view = compact_view(twin, evidence_tracks(cand), self.run.max_tracks, self.run.max_frames)
        messages = prompts.reason_messages(self.state["query"], [(s.text, s.negated) for s in dec.subqueries], view,
                                           system=self.run.prompt("reason"))
        try:
            verdict = self.llm.chat_json(messages, Verdict, max_tokens=REASON_MAX_TOKENS)
        except LLMError as exc:
            return self._failed(cand, exc, round_)
        missing = [m.strip()[:120] for m in verdict.missing if m.strip()]
        return Judgement(relevance=round(self.relevance(verdict.relevance, cand), 4), judged=verdict.relevance,
                         reasoning=verdict.reasoning.strip(), objects=grounded_tracks(cand, twin, dec, verdict.objects),
                         missing=missing, source="llm", round=round_), None

    def _yesno(self, cand: Candidate, twin: Twin, round_: int) -> tuple[Judgement, Fallback | None]:
        """P(yes) on the candidate's compact evidence: one call of one generated token (``judge = "yesno"``)."""
        evidence = compact_evidence(cand, twin, twin.video.ecr_text)
        messages = yesno_messages(self.state["query"], self.state.get("decomposition"), evidence,
                                  system=self.run.prompt("yesno"))
        try:
            p_yes = self.llm.yes_probability(messages)
        except LLMError as exc:
            return self._failed(cand, exc, round_)
        objects = grounded_tracks(cand, twin, self.state.get("decomposition"))
        return Judgement(relevance=round(self.relevance(p_yes, cand), 4), judged=round(p_yes, 4), source="llm",
                         round=round_, reasoning=evidence_reasoning(cand, twin, p_yes, objects), objects=objects), None

    def _listwise(self, todo: list[Candidate], twins: dict[str, Twin], round_: int) -> list[Judged]:
        """One call orders all the candidates by their compact evidence (``judge = "listwise"``)."""
        evidences = [compact_evidence(c, twins[c.video_id], twins[c.video_id].video.ecr_text) for c in todo]
        messages = listwise_messages(self.state["query"], evidences, system=self.run.prompt("listwise"))
        try:
            order = self.llm.chat_json(messages, ListwiseOrder, max_tokens=LISTWISE_MAX_TOKENS, retries=0).order
        except LLMError as exc:  # one call failed: one fallback for all the candidates
            failed = [(c.video_id, *self._failed(c, exc, round_)) for c in todo]
            return [(vid, j, f if i == 0 else None) for i, (vid, j, f) in enumerate(failed)]
        out: list[Judged] = []
        for c, score in zip(todo, listwise_scores(order, len(todo))):
            twin = twins[c.video_id]
            objects = grounded_tracks(c, twin, self.state.get("decomposition"))
            out.append((c.video_id, Judgement(relevance=round(self.relevance(score, c), 4), source="llm",
                                              judged=score, round=round_, objects=objects,
                                              reasoning=evidence_reasoning(c, twin, None, objects)), None))
        return out

    # -- when the LLM fails
    def _failed(self, cand: Candidate, exc: LLMError, round_: int) -> tuple[Judgement, Fallback | None]:
        rel = retrieval_relevance(self.state["candidates"], self.run)[cand.video_id]
        if self.llm.deadline.passed:  # one fallback for the node, recorded by the caller
            return from_retrieval(rel, "deadline", round_), None
        return from_retrieval(rel, "fallback", round_), fallback(
            "reason", cand.video_id, f"LLM failed ({exc}); relevance from retrieval")

    def _position(self, cand: Candidate) -> int:
        """The candidate's 0-based position in the retrieval (or reranked) order."""
        return self.positions.get(cand.video_id, len(self.positions))
