"""Training-data builders: real antonym swaps, negators where intended, well-formed composed triplets, no leaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinseek.embedders import lexicon as lx
from twinseek.embedders.data import (
    LeakFilter,
    Triplet,
    bench_texts,
    build_triplets,
    composed_triplets,
    grammar_sentences,
    llm_sentences,
    negation_triplets,
    read_triplets,
    satisfies,
    temporal_triplets,
    write_jsonl,
)

SENTENCES = ["a man opens the door", "a girl is picking up a book in the kitchen", "a chef puts on a hat",
             "a boy walks into the room", "a dog runs in the park"]


@pytest.mark.parametrize("sentence,expected", [
    ("a man opens the door", "a man closes the door"),
    ("she is picking up a book", "she is putting down a book"),
    ("a woman walks into the room", "a woman walks out of the room"),
    ("he fills the glass", "he empties the glass"),
    ("they push the cart", "they pull the cart"),
    ("a boy takes off his hat", "a boy puts on his hat"),
])
def test_swap_chiral_uses_temporal_antonyms(sentence: str, expected: str) -> None:
    swapped = lx.swap_chiral(sentence)
    assert swapped is not None and swapped[0] == expected
    assert (swapped[1], swapped[2]) in lx.CHIRAL_PAIRS or (swapped[2], swapped[1]) in lx.CHIRAL_PAIRS


def test_temporal_triplets_are_real_antonym_swaps() -> None:
    triplets = temporal_triplets(grammar_sentences(200, 1), seed=1, source="grammar")
    assert len(triplets) > 150
    pairs = {frozenset(p) for p in lx.CHIRAL_PAIRS}
    for t in triplets:
        assert frozenset((t.meta["phrase"], t.meta["antonym"])) in pairs
        assert t.negative != t.anchor and t.positive != t.anchor
        assert lx.inflect_phrase(t.meta["antonym"], "VB").split()[0][:3] in t.negative or t.meta["antonym"] in (
            "lower", "empty", "leave", "stop", "catch", "drain", "remove")
    assert temporal_triplets(["a dog runs in the park"], 0, "x") == []


def test_negation_triplets_negators_present_and_absent() -> None:
    triplets = negation_triplets(SENTENCES, seed=0, source="test")
    added = [t for t in triplets if t.builder == "negation-added"]
    removed = [t for t in triplets if t.builder == "negation-removed"]
    assert added and removed
    for t in added:  # the hard negative adds a negator the anchor does not have
        assert not lx.has_negator(t.anchor) and not lx.has_negator(t.positive) and lx.has_negator(t.negative)
    for t in removed:  # the anchor says what is absent; the negative drops the negator and asserts it
        assert lx.has_negator(t.anchor) and not lx.has_negator(t.positive) and not lx.has_negator(t.negative)
        assert t.meta["absent"] in t.anchor and t.meta["absent"] in t.negative
    assert any(t.negative == "a man does not open the door" for t in added)


def test_composed_triplets_well_formed() -> None:
    for t in composed_triplets(SENTENCES, seed=3, source="test"):
        assert t.negative in SENTENCES and t.anchor.startswith(t.negative + ". Edit: ")
        assert t.positive != t.negative and t.meta["aspect"] in {"object", "attribute", "background", "style"}


def test_provenance_and_jsonl_round_trip(tmp_path: Path) -> None:
    triplets = build_triplets(SENTENCES, "test", seed=7)
    assert {t.kind for t in triplets} == {"temporal", "negation", "composed"}
    path = tmp_path / "t.jsonl"
    assert write_jsonl(path, triplets) == len(triplets)
    back = read_triplets(path)
    assert back == triplets
    row = json.loads(path.read_text().splitlines()[0])
    assert {"source", "builder", "version", "seed"} <= set(row) and row["seed"] == 7


def _bench(tmp_path: Path) -> Path:
    rows = [{"kind": "explicit", "id": "q1", "text": "a woman walks out of the room quickly", "positives": ["v"]},
            {"kind": "counterfactual", "id": "q2", "video": "v", "text": "a man opens the fridge door",
             "counterfactual": "a man closes the fridge door"},
            {"kind": "mcq", "id": "q3", "video": "v", "options": ["a cat sleeps on the sofa", "b"], "answer": 0}]
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path


def test_leak_filter_drops_bench_overlap(tmp_path: Path) -> None:
    root = _bench(tmp_path)
    assert "a man closes the fridge door" in bench_texts(root)
    leak = LeakFilter.from_bench(root)
    assert leak.leaks("A man opens the fridge door.")  # exact up to case/punctuation
    assert leak.leaks("yesterday a woman walks out of the room quickly again")  # shared 5-gram
    assert leak.leaks("the cat sleeps on a sofa")  # near-identical word set
    assert not leak.leaks("a boy picks up a book in the kitchen")
    sentences = ["a man opens the fridge door", "a boy picks up a book", "a man closes the fridge door"]
    triplets = build_triplets(sentences, "test", leak_filter=leak)
    texts = [x for t in triplets for x in (t.anchor, t.positive, t.negative)]
    assert texts and not any(leak.leaks(x) for x in texts)
    assert all("fridge" not in x for x in texts)  # the leaking sentence and its antonym twin are both gone


def test_grammar_sentences_do_not_leak_the_dev_bench() -> None:
    root = Path(__file__).resolve().parents[3] / "shared" / "data" / "dev-bench"
    if not (root / "queries.jsonl").is_file():
        pytest.skip("dev bench not present")
    leak = LeakFilter.from_bench(root)
    triplets = build_triplets(grammar_sentences(300, 0), "grammar", leak_filter=leak)
    assert triplets and not any(leak.leaks(t.anchor) or leak.leaks(t.negative) for t in triplets)


def test_llm_sentences_from_stub(stub) -> None:  # type: ignore[no-untyped-def]
    from support.llm_stub import completion

    stub.script = [completion(json.dumps({"captions": ["a man opens a box.", "a girl closes the window"]}))]
    got = llm_sentences(stub.client(), n=2, seed=0)
    assert got == ["a girl closes the window", "a man opens a box"]
    assert isinstance(temporal_triplets(got, 0, "llm")[0], Triplet)


def test_component_matching() -> None:
    assert satisfies("black swan (bird), grey, large; bottom", ["bird"])
    assert not satisfies("goose, white", ["swan"])
