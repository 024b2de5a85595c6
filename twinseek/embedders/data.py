"""Training data for the embedders, written as JSONL with provenance (source, builder, version, seed).

* TARA text triplets (``anchor``, ``positive``, ``negative``): temporal (a chiral verb phrase swapped for its
  temporal antonym), negation (a negator added or removed), composed (anchor = caption + edit instruction,
  positive = edited caption, negative = original caption).
* Compositional pairs for the twin encoders: a sub-query phrased from a component of a twin in a store, the
  components of that video that satisfy it (positives), and match terms so a batch can tell true negatives
  (other videos' components that do not match) from false ones.

Sentence sources: a built-in caption grammar (``grammar``), the ECR texts of a store (``store``), a text file
(``file``), or captions written by the LLM (``llm``). Evaluation benches are never a source; :class:`LeakFilter`
drops any sentence that overlaps a bench's texts.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from twinseek.embedders import lexicon as lx
from twinseek.twins.store import TwinStore
from twinseek.twins.views import ComponentTexts

logger = logging.getLogger(__name__)

DATA_VERSION = "1"
TripletKind = Literal["temporal", "negation", "composed", "static"]
_STOP = frozenset("a an the of in on at to with and is are its it this that some something someone thing".split())


class Provenance(BaseModel):
    source: str = Field(description="Where the sentence came from: grammar, store:<path>, file:<path>, llm.")
    builder: str
    version: str = DATA_VERSION
    seed: int


class Triplet(Provenance):
    kind: TripletKind
    anchor: str = Field(min_length=1)
    positive: str = Field(min_length=1)
    negative: str = Field(min_length=1)
    meta: dict[str, Any] = Field(default_factory=dict)


class TwinPair(Provenance):
    """A sub-query, the video it was phrased from and the texts of that video's components satisfying it."""

    query: str = Field(min_length=1)
    video_id: str
    component_kind: Literal["object", "relation", "scene"]
    positives: list[str] = Field(min_length=1)
    others: list[str] = Field(default_factory=list, description="Same-video components that do not satisfy it.")
    terms: list[str] = Field(description="Content words a component text must contain to satisfy the query.")


# -- JSONL -------------------------------------------------------------------------------------------------------
def write_jsonl(path: str | Path, records: Iterable[BaseModel]) -> int:
    """Write atomically (temp file + ``os.replace``); returns the number of lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(record.model_dump_json() + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def read_triplets(path: str | Path) -> list[Triplet]:
    return [Triplet.model_validate_json(line) for line in _lines(path)]


def read_twin_pairs(path: str | Path) -> list[TwinPair]:
    return [TwinPair.model_validate_json(line) for line in _lines(path)]


def _lines(path: str | Path) -> list[str]:
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# -- leak filter -------------------------------------------------------------------------------------------------
def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def bench_texts(root: str | Path) -> list[str]:
    """Every text of a bench's ``queries.jsonl`` (queries, counterfactuals, MCQ options)."""
    texts: list[str] = []
    for line in _lines(Path(root) / "queries.jsonl"):
        row = json.loads(line)
        texts += [row[k] for k in ("text", "counterfactual") if isinstance(row.get(k), str)]
        texts += [o for o in row.get("options", []) if isinstance(o, str)]
    return texts


class LeakFilter:
    """Drops sentences that overlap evaluation texts: an identical normalised text, a shared run of ``ngram``
    words, or a word-set Jaccard similarity of at least ``jaccard``."""

    def __init__(self, texts: Iterable[str], ngram: int = 5, jaccard: float = 0.7) -> None:
        self.ngram, self.jaccard = ngram, jaccard
        self.sets: list[frozenset[str]] = []
        self.grams: set[tuple[str, ...]] = set()
        self.exact: set[str] = set()
        for text in texts:
            toks = _tokens(text)
            self.exact.add(" ".join(toks))
            self.sets.append(frozenset(toks) - _STOP)
            self.grams.update(self._grams(toks))

    @classmethod
    def from_bench(cls, root: str | Path, **kwargs: Any) -> LeakFilter:
        return cls(bench_texts(root), **kwargs)

    def _grams(self, toks: list[str]) -> Iterator[tuple[str, ...]]:
        return (tuple(toks[i:i + self.ngram]) for i in range(len(toks) - self.ngram + 1))

    def leaks(self, text: str) -> bool:
        toks = _tokens(text)
        if " ".join(toks) in self.exact or any(g in self.grams for g in self._grams(toks)):
            return True
        words = frozenset(toks) - _STOP
        return bool(words) and any(len(words & s) / len(words | s) >= self.jaccard for s in self.sets if s)

    def clean(self, texts: Iterable[str]) -> list[str]:
        kept = [t for t in texts if not self.leaks(t)]
        return kept

    def clean_triplets(self, triplets: Iterable[Triplet]) -> list[Triplet]:
        out = [t for t in triplets if not any(self.leaks(x) for x in (t.anchor, t.positive, t.negative))]
        return out


# -- sentence sources --------------------------------------------------------------------------------------------
def grammar_sentences(n: int, seed: int) -> list[str]:
    """Captions of everyday chiral actions from the curated grammar (subject, verb phrase, object, place)."""
    rng = random.Random(seed)
    phrases = list(lx.CHIRAL_OBJECTS)
    out: set[str] = set()
    for _ in range(n * 20):
        if len(out) >= n:
            break
        subject = rng.choice(lx.SUBJECTS)[0]
        phrase = rng.choice(phrases)
        obj = rng.choice(lx.CHIRAL_OBJECTS[phrase])
        tag = rng.choice(("VBZ", "VBZ", "VBG"))
        verb = lx.inflect_phrase(phrase, tag)
        verb = f"is {verb}" if tag == "VBG" else verb
        out.add(f"{subject} {verb} {obj}{rng.choice(lx.PLACES)}".replace("  ", " ").strip())
    return sorted(out)


def store_sentences(store_root: str | Path) -> list[str]:
    """Sentences of the ECR texts in a store (the user's own gallery descriptions)."""

    out: list[str] = []
    with TwinStore(store_root, create=False) as store:
        for video in store.videos():
            for sent in re.split(r"(?<=[.!?])\s+", (video.ecr_text or "").strip()):
                if 4 <= len(sent.split()) <= 30:
                    out.append(sent.rstrip("."))
    return sorted(set(out))


class _Captions(BaseModel):
    captions: list[str]


def llm_sentences(llm: Any, n: int, seed: int, batch: int = 10) -> list[str]:
    """Short video captions of everyday actions written by the LLM (``LLMClient.chat_json``)."""
    rng = random.Random(seed)
    out: list[str] = []
    topics = ["kitchen", "sports", "street", "home", "garden", "office", "animals", "workshop", "travel"]
    while len(out) < n:
        prompt = (f"Write {batch} different one-sentence captions of short videos about {rng.choice(topics)}. "
                  "Each describes one person doing one visible action with an object, e.g. 'a man opens the fridge'."
                  " Reply as JSON {\"captions\": [...]}.")
        reply = llm.chat_json([{"role": "user", "content": prompt}], _Captions)
        fresh = [c.strip().rstrip(".") for c in reply.captions if c.strip()]
        if not fresh:
            break
        out += fresh
    return sorted(set(out))[:n] if len(set(out)) >= n else sorted(set(out))


# -- triplet builders --------------------------------------------------------------------------------------------
def paraphrase_subject(sentence: str, rng: random.Random) -> str:
    """A light paraphrase: swap the subject for a synonym, else add a neutral framing."""
    lowered = sentence.lower()
    for a, b in lx.SUBJECTS:
        for src, dst in ((a, b), (b, a)):
            if lowered.startswith(src + " "):
                return dst + sentence[len(src):]
    return rng.choice(("in this video, {s}", "{s} in the clip", "a clip where {s}")).format(s=sentence)


def temporal_triplets(sentences: Sequence[str], seed: int, source: str) -> list[Triplet]:
    """anchor = sentence, positive = a paraphrase, negative = the chiral verb swapped for its antonym."""
    rng = random.Random(seed)
    out = []
    for sent in sentences:
        swapped = lx.swap_chiral(sent)
        if swapped is None:
            continue
        negative, phrase, antonym = swapped
        out.append(Triplet(kind="temporal", anchor=sent, positive=paraphrase_subject(sent, rng), negative=negative,
                           source=source, builder="temporal", seed=seed, meta={"phrase": phrase, "antonym": antonym}))
    return out


def _negate_verb(sentence: str) -> str | None:
    """Insert an explicit negator: "a man opens" -> "a man does not open"; "is opening" -> "is not opening"."""
    match = re.search(r"\b(is|are|was|were)\b (?!not\b)", sentence)
    if match:
        return sentence[:match.end()] + "not " + sentence[match.end():]
    for pattern, phrase, tag in lx._surface_index():
        m = pattern.search(sentence)
        if m and tag == "VBZ":
            return sentence[:m.start()] + "does not " + lx.inflect_phrase(phrase, "VB") + sentence[m.end():]
    return None


def negation_triplets(sentences: Sequence[str], seed: int, source: str) -> list[Triplet]:
    """Two kinds, each with a negator present or absent where it changes the meaning:

    * added: anchor = sentence, positive = paraphrase, negative = the sentence with its verb negated;
    * removed: anchor = "sentence, with no X", positive = sentence, negative = "sentence, with a X".
    """
    rng = random.Random(seed)
    out = []
    for sent in sentences:
        if lx.has_negator(sent):
            continue
        negated = _negate_verb(sent)
        if negated is not None:
            out.append(Triplet(kind="negation", anchor=sent, positive=paraphrase_subject(sent, rng),
                               negative=negated, source=source, builder="negation-added", seed=seed,
                               meta={"negator": "not"}))
        thing = rng.choice([x for x in lx.ABSENT_THINGS if x not in sent.lower()])
        frame = rng.randrange(len(lx.NEGATION_FRAMES))
        out.append(Triplet(kind="negation", anchor=lx.NEGATION_FRAMES[frame].format(s=sent, x=thing), positive=sent,
                           negative=lx.AFFIRMATION_FRAMES[frame].format(s=sent, x=thing), source=source,
                           builder="negation-removed", seed=seed, meta={"absent": thing}))
    return out


def _edits(sentence: str, rng: random.Random) -> list[tuple[str, str, str]]:
    """Possible (instruction, edited sentence, aspect) edits of a caption."""
    edits = []
    lowered = sentence.lower()
    for a, b in lx.SWAP_NOUNS:
        for src, dst in ((a, b), (b, a)):
            if re.search(rf"\b{src}\b", lowered):
                edited = re.sub(rf"\b{src}\b", dst, sentence, count=1, flags=re.IGNORECASE)
                edits.append((f"replace the {src} with a {dst}", edited, "object"))
    nouns = re.findall(r"\b(?:a|the) ([a-z]+)\b", lowered)
    if nouns:
        noun, colour = rng.choice(nouns), rng.choice(lx.COLOURS)
        edited = re.sub(rf"\b(a|the) {noun}\b", rf"\1 {colour} {noun}", sentence, count=1, flags=re.IGNORECASE)
        edits.append((f"make the {noun} {colour}", edited, "attribute"))
    place = rng.choice(lx.BACKGROUNDS)
    edits.append((f"change the background to {place}", f"{sentence} in {place}", "background"))
    style = rng.choice(lx.STYLES)
    edits.append((f"turn it into {style}", f"{style} of {sentence}", "style"))
    return edits


def composed_triplets(sentences: Sequence[str], seed: int, source: str) -> list[Triplet]:
    """anchor = caption + edit instruction, positive = edited caption, negative = original caption."""
    rng = random.Random(seed)
    out = []
    for sent in sentences:
        instruction, edited, aspect = rng.choice(_edits(sent, rng))
        out.append(Triplet(kind="composed", anchor=f"{sent}. Edit: {instruction}", positive=edited, negative=sent,
                           source=source, builder="composed", seed=seed, meta={"aspect": aspect}))
    return out


BUILDERS = {"temporal": temporal_triplets, "negation": negation_triplets, "composed": composed_triplets}


def build_triplets(sentences: Sequence[str], source: str, seed: int = 0,
                   kinds: Sequence[str] = ("temporal", "negation", "composed"),
                   leak_filter: LeakFilter | None = None) -> list[Triplet]:
    """All requested triplet kinds from ``sentences``; leaking sentences and triplets are dropped."""
    if leak_filter is not None:
        before = len(sentences)
        sentences = leak_filter.clean(sentences)
        logger.info("leak filter dropped %d of %d sentences", before - len(sentences), before)
    out: list[Triplet] = []
    for kind in kinds:
        out += BUILDERS[kind](sentences, seed, source)
    if leak_filter is not None:
        out = leak_filter.clean_triplets(out)
    random.Random(seed).shuffle(out)
    return out


# -- compositional pairs -----------------------------------------------------------------------------------------
def content_terms(text: str) -> list[str]:
    return [t for t in _tokens(text) if t not in _STOP]


def content_words(text: str) -> list[str]:
    """Every word of ``text``, lower-cased (what :func:`satisfies` looks the terms up in)."""
    return _tokens(text)


def satisfies(component_text: str, terms: Sequence[str]) -> bool:
    words = set(content_words(component_text))
    return bool(terms) and all(t in words for t in terms)


def _object_queries(track: Any) -> list[str]:
    cat = track.category.lower()
    queries = [f"a {cat}"]
    if track.category_group and track.category_group.lower() != cat:
        queries.append(f"a {track.category_group.lower()}")
    colour = next((w for w in _tokens(track.attributes) if w in lx.COLOURS), None)
    if colour:
        queries.append(f"a {colour} {cat}")
    if track.direction not in ("stationary", "in place"):
        queries.append(f"a {cat} moving {track.direction}")
    return queries


def twin_pairs(store_root: str | Path, seed: int = 0, leak_filter: LeakFilter | None = None,
               paraphraser: Any = None) -> list[TwinPair]:
    """Template sub-queries for every object, relation and scene component of every twin in a store."""

    out: list[TwinPair] = []
    with TwinStore(store_root, create=False) as store:
        for video_id in store.video_ids():
            twin = store.get_twin(video_id, refinements=False)
            rows = ComponentTexts.rows(twin)
            queries: list[tuple[str, str]] = [(q, "object") for t in twin.tracks for q in _object_queries(t)]
            queries += [(r["text"].lower(), "relation") for r in rows if r["kind"] == "relation"]
            queries += [(f"a {r['text'].lower()} scene", "scene") for r in rows if r["kind"] == "scene"]
            out += _pairs_for(video_id, rows, dict.fromkeys(queries), seed, f"store:{store_root}")
    if paraphraser is not None:
        out = paraphraser(out)
    if leak_filter is not None:
        out = [p for p in out if not leak_filter.leaks(p.query)]
    random.Random(seed).shuffle(out)
    return out


def _pairs_for(video_id: str, rows: list[dict[str, Any]], queries: Iterable[tuple[str, str]], seed: int,
               source: str) -> list[TwinPair]:
    out = []
    for query, kind in queries:
        terms = content_terms(query.replace(" scene", ""))
        kinds = {"object": {"object"}, "relation": {"relation"}, "scene": {"scene"}}[kind]
        pos = sorted({r["text"] for r in rows if r["kind"] in kinds and satisfies(r["text"], terms)})
        if not pos:
            continue
        others = sorted({r["text"] for r in rows} - set(pos))
        out.append(TwinPair(query=query, video_id=video_id, component_kind=kind, positives=pos, others=others,
                            terms=terms, source=source, builder=f"twin-{kind}", seed=seed))
    return out


class _Paraphrases(BaseModel):
    paraphrases: list[str]


def llm_paraphraser(llm: Any, max_items: int = 200) -> Any:
    """A function rewording up to ``max_items`` sub-queries with the LLM (kept only when every match term
    survives, so positives stay valid)."""

    def run(pairs: list[TwinPair]) -> list[TwinPair]:
        extra = []
        for pair in pairs[:max_items]:
            reply = llm.chat_json([{"role": "user", "content": (
                f"Give 2 short paraphrases of the video search phrase '{pair.query}' that keep its words "
                f"{pair.terms}. Reply as JSON {{\"paraphrases\": [...]}}.")}], _Paraphrases)
            for text in reply.paraphrases:
                if text.strip() and satisfies(text, pair.terms):
                    extra.append(pair.model_copy(update={"query": text.strip(), "builder": pair.builder + "+llm"}))
        return pairs + extra

    return run
