"""The product holds no text from a bench query: no prompt, example, rule or data file of ``twinseek/`` shares a run
of four words (two or more of them content words) with a query of the dev bench. A prompt that paraphrases a bench
query makes its numbers on that bench say nothing about other videos.

Needs the dev bench beside the checkout (``../shared/data/dev-bench``); skipped cleanly where it is absent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT.parent / "shared" / "data" / "dev-bench" / "queries.jsonl"
SUFFIXES = {".py", ".json", ".txt", ".tsv", ".md", ".yaml", ".toml", ".html", ".js", ".jinja"}
STOP = set("a an the of in on at to for with by from and or but is are was were be it its this that who whose which "
           "as not no does do".split())


def grams(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {" ".join(words[i:i + 4]) for i in range(len(words) - 3)
            if sum(w not in STOP for w in words[i:i + 4]) >= 2}


def bench_grams() -> dict[str, str]:
    seen: dict[str, str] = {}
    for line in QUERIES.read_text().splitlines():
        if not line.strip():
            continue
        query = json.loads(line)
        texts = [query.get("text", ""), query.get("counterfactual") or ""]
        texts += [o for o in query.get("options") or [] if isinstance(o, str)]
        for text in texts:
            for gram in grams(text):
                seen.setdefault(gram, query["id"])
    return seen


def leaks(seen: dict[str, str]) -> list[str]:
    found = []
    for path in sorted((ROOT / "twinseek").rglob("*")):
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            hits = sorted(g for g in grams(line) if g in seen)
            if hits:
                found.append(f"{path.relative_to(ROOT)}:{number}: {hits[0]!r} ({seen[hits[0]]})")
    return found


def test_the_detector_finds_a_shared_run_of_four_words() -> None:
    seen = {"crossing a sandy desert": "q1"} | {g: "q1" for g in grams("an animal crossing a sandy desert")}
    assert "animal crossing sandy desert" not in grams("an animal crossing a sandy desert")  # runs, not bags
    assert grams("an animal crossing a sandy desert") & set(seen)
    assert not grams("a cat sleeping on a warm sofa") & set(seen)


@pytest.mark.skipif(not QUERIES.is_file(), reason="the dev bench (../shared/data/dev-bench) is not beside the checkout")
def test_no_product_text_repeats_a_bench_query() -> None:
    found = leaks(bench_grams())
    assert not found, "product text shares four words in a row with a bench query:\n" + "\n".join(found)
