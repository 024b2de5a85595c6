"""Bench loading: the dev-bench format, every kind of bad line, and the ReasonT2VBench adapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twinseek.errors import TwinseekError
from twinseek.evals.bench import (
    AbsentQuery,
    BenchError,
    CounterfactualQuery,
    ImplicitQuery,
    McqQuery,
    load_bench,
    load_reasont2vbench,
)
from twinseek.media.masks import load_mask

DEV_BENCH = Path(__file__).resolve().parents[3] / "shared" / "data" / "dev-bench"

VALID = [
    {"kind": "implicit", "id": "q1", "text": "a bird", "positives": ["swan"], "has_masks": True},
    {"kind": "implicit", "id": "q2", "text": "a vehicle", "positives": ["car"]},
    {"kind": "explicit", "id": "q3", "text": "a car drives", "positives": ["car"]},
    {"kind": "negation", "id": "q4", "text": "a car, no birds", "positives": ["car"]},
    {"kind": "absent", "id": "q5", "text": "a flamingo", "positives": []},
    {"kind": "mcq", "id": "q6", "video": "swan", "options": ["swan", "no swan"], "answer": 0},
    {"kind": "counterfactual", "id": "q7", "video": "car", "text": "drives in", "counterfactual": "drives out",
     "aspect": "Direction"},
]


def write_mask(path: Path, value: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((4, 6), np.uint8)
    arr[1:3, 2:5] = value
    Image.fromarray(arr).save(path)


def write_bench(root: Path, lines: list[object], videos: tuple[str, ...] = ("swan.mp4", "car.gif")) -> Path:
    """A bench folder; the loader checks files, not contents, so videos can be empty placeholders."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for name in videos:
        (root / "videos" / name).write_bytes(b"")
    (root / "videos" / "notes.txt").write_text("not a video")
    write_mask(root / "masks" / "swan" / "00000.png")
    write_mask(root / "masks" / "swan" / "00007.png")
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    (root / "queries.jsonl").write_text(text + "\n\n")
    return root


def test_valid_bench_loads_every_kind(tmp_path: Path) -> None:
    bench = load_bench(write_bench(tmp_path, VALID))
    assert sorted(bench.videos) == ["car", "swan"]
    assert [q.kind for q in bench.queries] == [
        "implicit", "implicit", "explicit", "negation", "absent", "mcq", "counterfactual"]
    assert isinstance(bench.queries[0], ImplicitQuery) and bench.queries[0].has_masks
    assert isinstance(bench.queries[4], AbsentQuery) and bench.queries[4].positives == []
    assert isinstance(bench.queries[5], McqQuery) and bench.queries[5].answer == 0
    assert isinstance(bench.queries[6], CounterfactualQuery) and bench.queries[6].aspect == "Direction"
    masks = bench.masks_for("swan")
    assert sorted(masks) == [0, 7] and masks[7].name == "00007.png"
    assert bench.masks_for("car") == {}
    assert bench.query_masks(bench.queries[0]) == masks
    assert load_mask(masks[0]).sum() == 6


def test_kinds_filtering(tmp_path: Path) -> None:
    root = write_bench(tmp_path, VALID)
    assert [q.id for q in load_bench(root, kinds=["implicit", "absent"]).queries] == ["q1", "q2", "q5"]
    bench = load_bench(root)
    assert [q.id for q in bench.of_kind("mcq", "counterfactual")] == ["q6", "q7"]
    assert [q.id for q in bench.select(["explicit"]).queries] == ["q3"]
    assert bench.select(None) is bench
    with pytest.raises(ValueError, match="unknown query kind"):
        load_bench(root, kinds=["implicitt"])


BAD_LINES = {
    "invalid json": ('{"kind": "implicit", "id": "b1", "text": "x", ', "invalid JSON"),
    "unknown kind": ({"kind": "caption", "id": "b1", "text": "x"}, "kind"),
    "missing text": ({"kind": "explicit", "id": "b1", "positives": ["car"]}, "text: Field required"),
    "empty positives": ({"kind": "implicit", "id": "b1", "text": "x", "positives": []}, "positives"),
    "absent with positives": ({"kind": "absent", "id": "b1", "text": "x", "positives": ["car"]}, "positives"),
    "answer out of range": ({"kind": "mcq", "id": "b1", "video": "car", "options": ["a", "b"], "answer": 2},
                            "answer 2 is not an index"),
    "misspelt field": ({"kind": "implicit", "id": "b1", "text": "x", "positives": ["car"], "has_mask": True},
                       "has_mask: Extra inputs"),
    "wrong type": ({"kind": "counterfactual", "id": "b1", "video": "car", "text": "x", "counterfactual": 3},
                   "counterfactual"),
    "unknown video": ({"kind": "explicit", "id": "b1", "text": "x", "positives": ["car", "boat"]},
                      "unknown video id(s) 'boat'"),
    "unknown mcq video": ({"kind": "mcq", "id": "b1", "video": "boat", "options": ["a", "b"], "answer": 0},
                          "unknown video id(s) 'boat'"),
    "duplicate id": ({"kind": "explicit", "id": "q1", "text": "x", "positives": ["car"]}, "duplicate id"),
    "has_masks without masks": ({"kind": "implicit", "id": "b1", "text": "x", "positives": ["car"],
                                 "has_masks": True}, "masks/car/ does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_each_bad_line_is_reported_with_its_line_number(tmp_path: Path, case: str) -> None:
    line, message = BAD_LINES[case]
    root = write_bench(tmp_path, [*VALID, line])
    with pytest.raises(BenchError) as info:
        load_bench(root)
    assert isinstance(info.value, TwinseekError)
    assert len(info.value.problems) == 1, info.value.problems
    assert "line 8" in info.value.problems[0] and message in info.value.problems[0]


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    root = write_bench(tmp_path, ["not json", *VALID, BAD_LINES["unknown video"][0], BAD_LINES["missing text"][0]])
    with pytest.raises(BenchError) as info:
        load_bench(root)
    problems = info.value.problems
    assert len(problems) == 3
    assert [p.split(":")[0].split(" (")[0] for p in problems] == [
        "queries.jsonl line 1", "queries.jsonl line 9", "queries.jsonl line 10"]
    assert "3 problem(s)" in str(info.value)


def test_missing_folders_and_files(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="does not exist"):
        load_bench(tmp_path / "nowhere")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(BenchError) as info:
        load_bench(tmp_path / "empty")
    assert any("videos/" in p for p in info.value.problems)
    assert any("queries.jsonl" in p for p in info.value.problems)


def test_mask_folder_problems(tmp_path: Path) -> None:
    root = write_bench(tmp_path, VALID)
    write_mask(root / "masks" / "boat" / "00000.png")
    write_mask(root / "masks" / "car" / "frame0.png")
    with pytest.raises(BenchError) as info:
        load_bench(root)
    assert len(info.value.problems) == 2
    assert "masks/boat/: no video" in info.value.problems[0]
    assert "frame0.png" in info.value.problems[1]


def test_duplicate_video_ids_across_suffixes(tmp_path: Path) -> None:
    root = write_bench(tmp_path, VALID, videos=("swan.mp4", "car.gif", "car.mp4"))
    with pytest.raises(BenchError, match="'car' is used by both"):
        load_bench(root)


@pytest.mark.skipif(not DEV_BENCH.is_dir(), reason="shared dev bench not present")
def test_real_dev_bench_loads() -> None:
    bench = load_bench(DEV_BENCH)
    assert len(bench.videos) == 36 and len(bench.queries) == 172
    assert len(bench.of_kind("implicit")) == 38
    with_masks = [q for q in bench.of_kind("implicit") if isinstance(q, ImplicitQuery) and q.has_masks]
    assert with_masks and all(bench.query_masks(q) for q in with_masks)


# ---------------------------------------------------------------- ReasonT2VBench adapter
def write_rt2v(root: Path, entries: object) -> Path:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for vid in ("sav_001", "sav_002", "sav_999"):
        (root / "videos" / f"{vid}.mp4").write_bytes(b"")
    (root / "queries.json").write_text(json.dumps(entries))
    return root


def test_reasont2vbench_layout_converts_to_implicit_queries(tmp_path: Path) -> None:
    entries = [
        {"id": "r1", "query": "the animal that could be a pet", "video_id": "sav_001"},
        {"query_id": 2, "text": "something tall", "video_ids": ["sav_002", "sav_001"], "mask_dir": "m/two"},
    ]
    root = write_rt2v(tmp_path, {"queries": entries})
    write_mask(root / "masks" / "r1" / "00003.png", value=1)  # instance index, not 255
    write_mask(root / "m" / "two" / "00000.png")
    bench = load_reasont2vbench(root)
    assert sorted(bench.videos) == ["sav_001", "sav_002", "sav_999"]  # distractors stay in the gallery
    q1, q2 = bench.queries
    assert isinstance(q1, ImplicitQuery) and isinstance(q2, ImplicitQuery)
    assert (q1.id, q1.positives, q1.has_masks, q1.mask_dir) == ("r1", ["sav_001"], True, "masks/r1")
    assert (q2.id, q2.positives, q2.has_masks) == ("2", ["sav_002", "sav_001"], True)
    assert sorted(bench.query_masks(q1)) == [3] and load_mask(bench.query_masks(q1)[3]).sum() == 6
    assert sorted(bench.query_masks(q2)) == [0]


def test_reasont2vbench_problems_are_collected(tmp_path: Path) -> None:
    root = write_rt2v(tmp_path, [
        {"id": "r1", "query": "ok", "video_id": "sav_001"},
        {"id": "r2", "video_id": "sav_001"},
        {"id": "r3", "query": "gone", "video_id": "sav_404"},
    ])
    with pytest.raises(BenchError) as info:
        load_reasont2vbench(root)
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("queries.json entry 2") and "query: Field required" in problems[0]
    assert problems[1].startswith("queries.json entry 3") and "sav_404" in problems[1]
    write_rt2v(tmp_path, {"not": "a list"})
    with pytest.raises(BenchError, match="expected a list"):
        load_reasont2vbench(tmp_path)
