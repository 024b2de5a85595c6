"""Retrieval, choice and grounding metrics against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twinseek.evals.bench import (
    AbsentQuery,
    Bench,
    CounterfactualQuery,
    ExplicitQuery,
    ImplicitQuery,
    McqQuery,
)
from twinseek.evals.metrics import (
    absent_rejected,
    aggregate,
    average_precision_at_k,
    boundary_f,
    counterfactual_correct,
    evaluate,
    evaluate_query,
    grounding_scores,
    mask_j,
    mcq_correct,
    mean_average_precision,
    mean_rank,
    median_rank,
    rank_of_first_relevant,
    rank_videos,
    recall_at_k,
    retrieval_record,
    seg2bmap,
)
from twinseek.evals.schemas import QueryInfo, QueryRecord


# ---------------------------------------------------------------- ranking
def test_rank_of_first_relevant_is_one_based_and_none_when_unranked() -> None:
    assert rank_of_first_relevant(["a", "b", "c"], {"c", "b"}) == 2
    assert rank_of_first_relevant(["a", "b", "c"], {"a"}) == 1
    assert rank_of_first_relevant(["a", "b"], {"z"}) is None
    assert rank_of_first_relevant([], {"a"}) is None
    assert rank_of_first_relevant(["a"], set()) is None


def test_ties_are_broken_by_id_or_pessimistically() -> None:
    scores = {"b": 1.0, "a": 1.0, "c": 0.5, "d": float("nan")}
    assert rank_videos(scores) == ["a", "b", "c", "d"]  # nan ranks last
    assert rank_videos(scores, positives={"a"}, ties="pessimistic") == ["b", "a", "c", "d"]
    # a constant scorer: first relevant rank depends only on the tie rule
    flat = {v: 0.0 for v in "abcd"}
    assert rank_of_first_relevant(rank_videos(flat), {"a"}) == 1
    assert rank_of_first_relevant(rank_videos(flat, {"a"}, "pessimistic"), {"a"}) == 4


def test_recall_median_and_mean_rank() -> None:
    ranks = [1, 3, None]
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 5) == pytest.approx(2 / 3)
    assert recall_at_k(ranks, 1000) == pytest.approx(2 / 3)  # unranked never counts
    assert median_rank(ranks, gallery_size=10) == 3.0  # median(1, 3, 11)
    assert mean_rank(ranks, gallery_size=10) == 5.0  # (1 + 3 + 11) / 3
    assert median_rank([1, 4], gallery_size=10) == 2.5
    assert math.isnan(recall_at_k([], 1)) and math.isnan(mean_rank([], 5))


def test_average_precision_hand_computed() -> None:
    ranking = ["a", "b", "c", "d"]
    # relevant at 2 and 4: P@2 = 1/2, P@4 = 2/4
    assert average_precision_at_k(ranking, {"b", "d"}) == pytest.approx(0.5)
    assert average_precision_at_k(ranking, {"b", "d"}, k=2) == pytest.approx(0.25)  # (1/2) / min(2, 2)
    assert average_precision_at_k(ranking, {"b", "d"}, k=1) == 0.0
    assert average_precision_at_k(ranking, {"b", "d"}, k=100) == pytest.approx(0.5)  # k beyond the list
    assert average_precision_at_k(ranking, {"a"}) == 1.0
    assert average_precision_at_k(["a", "b"], {"b", "z"}) == pytest.approx(0.25)  # z never ranked
    assert average_precision_at_k(ranking, {"z"}) == 0.0
    assert mean_average_precision([ranking, ranking], [{"a"}, {"b", "d"}]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        average_precision_at_k(ranking, set())
    with pytest.raises(ValueError):
        average_precision_at_k(ranking, {"a"}, k=0)


# ---------------------------------------------------------------- choices and thresholds
def test_choices_need_a_strict_win() -> None:
    assert mcq_correct([0.9, 0.2, 0.5], answer=0)
    assert not mcq_correct([0.9, 0.9, 0.5], answer=0)  # tie is wrong
    assert not mcq_correct([0.1, 0.9], answer=0)
    assert counterfactual_correct(0.6, 0.5)
    assert not counterfactual_correct(0.5, 0.5)


def test_absent_rejection_uses_tau() -> None:
    assert absent_rejected({"a": 0.49, "b": 0.1}, tau=0.5)
    assert not absent_rejected({"a": 0.5, "b": 0.1}, tau=0.5)  # >= tau is returned
    assert absent_rejected({}, tau=0.5)


# ---------------------------------------------------------------- grounding
def _square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_j_hand_computed_and_empty_conventions() -> None:
    a = _square(4, 4, 0, 2, 0, 2)  # 4 px
    b = _square(4, 4, 0, 2, 1, 3)  # 4 px, 2 shared
    assert mask_j(a, b) == pytest.approx(2 / 6)
    assert mask_j(a, a) == 1.0
    empty = np.zeros((4, 4), bool)
    assert mask_j(empty, empty) == 1.0  # DAVIS: both empty is a perfect match
    assert mask_j(empty, a) == 0.0 and mask_j(a, empty) == 0.0
    assert mask_j(a.astype(np.uint8) * 255, a) == 1.0
    with pytest.raises(ValueError):
        mask_j(a, np.zeros((3, 3), bool))


def test_seg2bmap_matches_the_davis_rule() -> None:
    seg = _square(4, 4, 1, 3, 1, 3)
    expected = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(seg2bmap(seg), expected)


def test_boundary_f_tolerance_and_empty_cases() -> None:
    gt = _square(5, 8, 0, 5, 0, 4)  # boundary: column 3
    pred = _square(5, 8, 0, 5, 0, 6)  # boundary: column 5, two pixels away
    assert boundary_f(gt, gt) == 1.0
    assert boundary_f(pred, gt, bound_th=1) == 0.0  # radius 1 px: no match
    assert boundary_f(pred, gt, bound_th=2) == 1.0  # radius 2 px: all match
    # fractions of the diagonal hypot(5, 8) = 9.43: ceil(0.943) = 1, ceil(1.887) = 2
    assert boundary_f(pred, gt, bound_th=0.1) == 0.0
    assert boundary_f(pred, gt, bound_th=0.2) == 1.0
    empty = np.zeros_like(gt)
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(empty, gt) == 0.0 and boundary_f(gt, empty) == 0.0


def test_boundary_f_precision_differs_from_recall() -> None:
    gt = _square(5, 8, 0, 5, 0, 4)  # boundary: column 3, 5 px
    pred = gt.copy()
    pred[0:2, 4:6] = True  # a bump on the top two rows
    # pred boundary: (0,5) (1,3) (1,4) (1,5) (2,3) (3,3) (4,3); within 1 px (cross) of column 3: 5 of 7
    assert seg2bmap(pred).sum() == 7
    precision, recall = 5 / 7, 1.0  # every gt pixel is next to a pred boundary pixel
    assert boundary_f(pred, gt, bound_th=1) == pytest.approx(2 * precision * recall / (precision + recall))


def test_grounding_scores_over_common_frames_with_resize(tmp_path: Path) -> None:
    gt = {0: _square(8, 8, 0, 4, 0, 4), 1: _square(8, 8, 0, 4, 0, 4), 5: _square(8, 8, 0, 8, 0, 8)}
    path = tmp_path / "00001.png"
    Image.fromarray(gt[1].astype(np.uint8) * 255).save(path)
    gt[1] = path  # type: ignore[assignment]  # PNG paths are accepted too
    pred = {0: _square(4, 4, 0, 2, 0, 2), 1: np.zeros((8, 8), bool), 7: np.ones((8, 8), bool)}
    scores = grounding_scores(pred, gt)
    assert scores["frames"] == 2.0  # frames 0 and 1
    assert scores["j"] == pytest.approx(0.5)  # frame 0 upsampled = exact; frame 1 empty vs square
    assert scores["f"] == pytest.approx(0.5)
    assert grounding_scores({}, gt) == {"j": 0.0, "f": 0.0, "jf": 0.0, "frames": 0.0}


# ---------------------------------------------------------------- records, aggregation, evaluator
def test_aggregate_by_kind() -> None:
    records = [
        retrieval_record("q1", "implicit", {"a": 0.9, "b": 0.1}, ["a"]),
        retrieval_record("q2", "implicit", {"a": 0.9, "b": 0.1}, ["b"]),
        retrieval_record("q3", "absent", {"a": 0.3, "b": 0.6}, []),
        retrieval_record("q4", "absent", {"a": 0.2, "b": 0.1}, []),
        QueryRecord(id="q5", kind="mcq", correct=True),
        QueryRecord(id="q6", kind="counterfactual", correct=False, aspect="Direction"),
        QueryRecord(id="q7", kind="counterfactual", correct=True, aspect="edit-style"),
    ]
    out = aggregate(records, ks=(1, 5), tau=0.5)
    assert out["implicit_r@1"] == 0.5 and out["implicit_r@5"] == 1.0
    assert out["implicit_mnr"] == 1.5 and out["implicit_mdr"] == 1.5
    assert out["implicit_map"] == pytest.approx(0.75)  # AP 1 and 1/2
    assert out["implicit_recall@tau"] == 0.5  # only q1's positive scores >= 0.5
    assert out["absent_rejection@tau"] == 0.5 and out["absent_mean_max_score"] == pytest.approx(0.4)
    assert out["mcq_accuracy"] == 1.0 and out["counterfactual_accuracy"] == 0.5
    assert out["counterfactual_direction_accuracy"] == 0.0
    assert out["counterfactual_edit-style_accuracy"] == 1.0
    assert out["implicit_n"] == 2.0
    assert "explicit_r@1" not in out  # no empty groups


class DictScorer:
    def __init__(self, table: dict[str, dict[str, float]]) -> None:
        self.table = table

    def score_videos(self, query_text: str) -> dict[str, float]:
        return dict(self.table.get(query_text, {}))


def _bench(tmp_path: Path) -> Bench:
    mask_dir = tmp_path / "masks" / "a"
    mask_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_square(8, 8, 0, 4, 0, 4).astype(np.uint8) * 255).save(mask_dir / "00000.png")
    queries = [
        ImplicitQuery(id="q1", text="find a", positives=["a"], has_masks=True),
        ExplicitQuery(id="q2", text="find b", positives=["b"]),
        AbsentQuery(id="q3", text="nothing"),
        McqQuery(id="q4", video="a", options=["right", "wrong"], answer=0),
        CounterfactualQuery(id="q5", video="b", text="true", counterfactual="false"),
    ]
    videos = {v: tmp_path / f"{v}.mp4" for v in "abc"}
    return Bench(root=tmp_path, videos=videos, queries=queries, mask_dirs={"a": mask_dir})


def test_evaluator_scores_every_task(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scorer = DictScorer({
        "find a": {"a": 0.9, "b": 0.2, "c": 0.1},
        "find b": {"a": 0.9, "b": 0.2},  # c left out: ranked last, with a warning
        "nothing": {"a": 0.3, "b": 0.1, "c": 0.0},
        "right": {"a": 0.7}, "wrong": {"a": 0.4},
        "true": {"b": 0.1}, "false": {"b": 0.2},
    })
    grounder_calls = []

    def grounder(query: ImplicitQuery, video_id: str) -> dict[int, np.ndarray]:
        grounder_calls.append((query.id, video_id))
        return {0: _square(8, 8, 0, 4, 0, 4)}

    with caplog.at_level("WARNING"):
        records, out = evaluate(scorer, _bench(tmp_path), grounder=grounder)
    assert "left 1 of 3 videos unscored" in caplog.text
    assert out["implicit_r@1"] == 1.0
    assert out["explicit_r@1"] == 0.0 and out["explicit_mnr"] == 2.0
    assert out["absent_rejection@tau"] == 1.0
    assert out["mcq_accuracy"] == 1.0 and out["counterfactual_accuracy"] == 0.0
    assert out["implicit_j"] == 1.0 and out["implicit_f"] == 1.0
    assert grounder_calls == [("q1", "a")]
    assert [r.id for r in records] == ["q1", "q2", "q3", "q4", "q5"]
    assert [v.video for v in records[1].ranking] == ["a", "b", "c"] and records[1].ranking[2].score is None
    assert records[3].choice_scores == [0.7, 0.4] and records[3].text == "right" and records[3].positives == ["a"]
    only = evaluate(scorer, _bench(tmp_path).select(["mcq"]))[1]
    assert set(only) == {"mcq_n", "mcq_accuracy"}


class InfoScorer(DictScorer):
    """A scorer with the optional extras: its own score of one video, and the info of the last query."""

    def video_score(self, text: str, video_id: str) -> float:
        return 0.9 if text == "wrong" else 0.1  # disagrees with score_videos: the evaluator must use this

    def take_info(self) -> QueryInfo:
        return QueryInfo(timings={"reason": 0.5}, models={"reason": "stub"}, fallbacks=["x"], max_relevance=0.42)


def test_evaluator_uses_a_scorers_video_score_and_info(tmp_path: Path) -> None:
    bench = _bench(tmp_path)
    scorer = InfoScorer({"right": {"a": 0.7}, "wrong": {"a": 0.4}, "nothing": {"a": 0.9}})
    mcq = evaluate_query(scorer, bench.queries[3], bench)
    assert mcq.choice_scores == [0.1, 0.9] and mcq.correct is False
    assert mcq.timings == {"reason": 0.5} and mcq.models == {"reason": "stub"} and mcq.fallbacks == ["x"]
    absent = evaluate_query(scorer, bench.queries[2], bench)
    assert absent.max_score == 0.42  # the scorer's own relevance, not the synthetic gallery score


def test_returned_j_averages_grounding_where_the_positive_was_returned() -> None:
    from twinseek.evals.schemas import QueryRecord

    records = [QueryRecord(id="a", kind="implicit", rank=1, positive_score=0.9, j=0.6, f=0.5),
               QueryRecord(id="b", kind="implicit", rank=2, positive_score=0.2, j=0.0, f=0.0),  # not returned
               QueryRecord(id="c", kind="implicit", rank=1, positive_score=0.7, j=0.4, f=0.3)]
    out = aggregate(records, ks=(1,), tau=0.5)
    assert out["implicit_j"] == pytest.approx(1.0 / 3)  # the unreturned positive counts as J = 0
    assert out["implicit_returned_j"] == pytest.approx(0.5) and out["implicit_returned_grounded"] == 2
