"""Our metrics against references: R@K, first-relevant ranks (MdR/MnR) and (m)AP against ranx on the same
random rankings; J and F against the DAVIS definitions on masks whose answers are known by hand."""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest

from twinseek.evals.bench import Bench, ImplicitQuery
from twinseek.evals.metrics import average_precision_at_k, boundary_f, evaluate, grounding_scores, mask_j

KS = (1, 5, 10)


# ---------------------------------------------------------------- ranked retrieval against ranx
class TableScorer:
    def __init__(self, table: dict[str, dict[str, float]]) -> None:
        self.table = table

    def score_videos(self, query_text: str) -> dict[str, float]:
        return self.table[query_text]


@pytest.fixture(scope="module")
def rankings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Bench, TableScorer]:
    """40 queries over a 30-video gallery, 1 to 5 relevant videos each, distinct random scores (no ties)."""
    rng = random.Random(7)
    videos = {f"v{i:02d}": Path(f"v{i:02d}.mp4") for i in range(30)}
    queries, table = [], {}
    for q in range(40):
        positives = rng.sample(sorted(videos), rng.randint(1, 5))
        queries.append(ImplicitQuery(id=f"q{q}", text=f"query {q}", positives=positives))
        scores = rng.sample(range(10_000), len(videos))
        table[f"query {q}"] = {v: s / 10_000 for v, s in zip(videos, scores)}
    bench = Bench(root=tmp_path_factory.mktemp("ref"), videos=videos, queries=queries)
    return bench, TableScorer(table)


def _ranx(bench: Bench, scorer: TableScorer, metrics: list[str]) -> dict[str, np.ndarray]:
    ranx = pytest.importorskip("ranx")
    qrels = ranx.Qrels({q.id: dict.fromkeys(q.positives, 1) for q in bench.queries})
    run = ranx.Run({q.id: scorer.table[q.text] for q in bench.queries})  # type: ignore[union-attr]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety notes
        ranx.evaluate(qrels, run, metrics, make_comparable=True)
    return {m: np.array([run.scores[m][q.id] for q in bench.queries]) for m in metrics}  # in bench order


def test_ranked_metrics_match_ranx(rankings: tuple[Bench, TableScorer]) -> None:
    bench, scorer = rankings
    records, ours = evaluate(scorer, bench, ks=KS)
    theirs = _ranx(bench, scorer, [f"hit_rate@{k}" for k in KS] + ["mrr", "map"] + [f"map@{k}" for k in KS])

    # first relevant rank = 1 / reciprocal rank, per query
    ranks = np.round(1 / theirs["mrr"]).astype(int)
    assert [r.rank for r in records] == ranks.tolist()
    for k in KS:  # R@K is ranx's hit rate (first relevant within K), not its recall
        assert ours[f"implicit_r@{k}"] == pytest.approx(float(np.mean(theirs[f"hit_rate@{k}"])), abs=1e-12)
    assert ours["implicit_mdr"] == pytest.approx(float(np.median(ranks)))
    assert ours["implicit_mnr"] == pytest.approx(float(np.mean(ranks)))
    # AP over the whole ranking and its mean are ranx's map
    assert [r.ap for r in records] == pytest.approx(theirs["map"].tolist(), abs=1e-12)
    assert ours["implicit_map"] == pytest.approx(float(np.mean(theirs["map"])), abs=1e-12)
    # AP@K divides by min(K, #relevant), ranx's map@K by #relevant: equal after rescaling
    for k in KS:
        for i, q in enumerate(bench.queries):
            ranking = sorted(scorer.table[q.text], key=lambda v: -scorer.table[q.text][v])
            n = len(q.positives)
            assert average_precision_at_k(ranking, q.positives, k) * min(k, n) / n == pytest.approx(
                float(theirs[f"map@{k}"][i]), abs=1e-12)
    assert 0 < ours["implicit_r@1"] < ours["implicit_r@5"] < ours["implicit_r@10"] < 1  # a test with teeth


def test_unranked_relevant_videos_match_ranx_when_left_out() -> None:
    """A relevant video missing from a run (ranx) is one we rank last, past the gallery: AP agrees."""
    ranx = pytest.importorskip("ranx")
    ranking = ["a", "b", "c", "d"]
    qrels = ranx.Qrels({"q": {"b": 1, "z": 1}})
    run = ranx.Run({"q": {v: 1.0 - i / 10 for i, v in enumerate(ranking)}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = float(ranx.evaluate(qrels, run, "map", make_comparable=True))
    assert average_precision_at_k(ranking, {"b", "z"}) == pytest.approx(theirs) == pytest.approx(0.25)


# ---------------------------------------------------------------- grounding against the DAVIS definitions
H, W = 480, 854  # DAVIS 480p: diagonal 979.6 px, tolerance ceil(0.008 * 979.6) = 8 px


def _rect(r0: int, r1: int, c0: int, c1: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[r0:r1, c0:c1] = True
    return mask


def _rows(n: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """The top ``n`` rows: its boundary (DAVIS ``seg2bmap``) is the single full-width row ``n - 1``."""
    return _rect(0, n, 0, shape[1], shape)


def test_j_is_region_iou_with_known_answers() -> None:
    square = _rect(100, 200, 100, 200)
    assert mask_j(square, square) == 1.0
    assert mask_j(_rect(0, 10, 0, 10), _rect(300, 310, 300, 310)) == 0.0  # disjoint
    shifted = _rect(100, 200, 130, 230)  # 30 px right: 100x70 overlap, union 2 * 10000 - 7000
    assert mask_j(shifted, square) == pytest.approx(7000 / 13000)
    assert mask_j(_rect(100, 150, 100, 200), square) == pytest.approx(0.5)  # inside: |pred| / |gt|
    empty = np.zeros((H, W), bool)
    assert mask_j(empty, empty) == 1.0 and mask_j(empty, square) == 0.0  # DAVIS db_eval_iou


def test_f_tolerance_is_ceil_of_0008_of_the_diagonal() -> None:
    gt = _rows(200)
    assert boundary_f(gt, gt) == 1.0
    assert boundary_f(_rows(208), gt) == 1.0  # boundaries 8 px apart: within ceil(7.84) = 8
    assert boundary_f(_rows(209), gt) == 0.0  # 9 px: outside, every boundary pixel unmatched
    # 100x100: 0.008 * 141.4 = 1.13, ceil -> 2 px (rounding would give 1)
    small = _rows(50, (100, 100))
    assert boundary_f(_rows(52, (100, 100)), small) == 1.0 and boundary_f(_rows(53, (100, 100)), small) == 0.0
    assert boundary_f(_rows(209), gt, bound_th=9) == 1.0  # bound_th >= 1: pixels


def test_f_precision_and_recall_with_known_answers() -> None:
    gt = _rows(200)  # boundary: row 199
    # pred adds a stripe far below: boundaries at rows 199, 259 (above the stripe) and 269 (its last row)
    pred = gt | _rect(260, 270, 0, W)
    # precision 1/3 (one of three full-width rows matches), recall 1: F = 2 * (1/3) / (4/3) = 0.5
    assert boundary_f(pred, gt) == pytest.approx(0.5)
    assert boundary_f(gt, pred) == pytest.approx(0.5)  # symmetric: precision and recall swap
    assert mask_j(pred, gt) == pytest.approx(200 / 210)


def test_f_tolerance_is_a_disk_not_a_square() -> None:
    """Single pixels 6 px apart on both axes: their 2x2 boundary blocks match corner to corner only within the
    8 px disk (the far corners are sqrt(2) * 6 = 8.5 px apart), so 3 of 4 boundary pixels match each way."""
    gt, pred = np.zeros((H, W), bool), np.zeros((H, W), bool)
    gt[100, 100] = True
    pred[106, 106] = True
    assert boundary_f(pred, gt) == pytest.approx(0.75)  # a square tolerance would match all four: 1.0
    assert mask_j(pred, gt) == 0.0


def test_f_empty_masks_follow_davis() -> None:
    empty, square = np.zeros((H, W), bool), _rect(100, 200, 100, 200)
    assert boundary_f(empty, empty) == 1.0  # no boundary either side: precision = recall = 1
    assert boundary_f(empty, square) == 0.0 and boundary_f(square, empty) == 0.0


def test_grounding_averages_frames_and_scores_missing_frames_nothing() -> None:
    gt = {0: _rows(200), 1: _rows(200)}
    pred = {0: _rows(200), 1: _rows(209)}
    scores = grounding_scores(pred, gt)
    assert scores["j"] == pytest.approx((1 + 200 / 209) / 2) and scores["f"] == pytest.approx(0.5)
    assert scores["jf"] == pytest.approx((scores["j"] + scores["f"]) / 2)
    assert math.isclose(grounding_scores({}, gt)["jf"], 0.0)
