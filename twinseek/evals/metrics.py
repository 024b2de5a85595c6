"""Metrics of reasoning text-to-video retrieval, grounding and the choice tasks of the dev bench.

Conventions (each chosen so that a number never depends on an unstated detail):

* **Ranks** are 1-based. A relevant video that a system does not rank at all counts as rank
  ``gallery_size + 1`` in MdR/MnR (one past the end: worse than any ranked position, and bounded, unlike
  dropping the query, which would flatter a system that abstains).
* **Ties** in scores are broken deterministically by :func:`rank_videos`: ``ties="id"`` (default) orders tied
  videos by ascending id; ``ties="pessimistic"`` puts the relevant videos after the irrelevant ones in a tie,
  so a constant scorer cannot profit from id order. A video the scorer leaves out gets score ``-inf``.
* **Choices** (multiple choice, counterfactual pairs) count as correct only when the right text scores
  *strictly* above every alternative: a tie is wrong, so a constant scorer gets 0, not the index-0 answer.
* **Thresholds**: a video is "returned" when its score is ``>= tau`` (as the paper keeps r >= tau). An absent
  query is rejected when every score is ``< tau``; recall-above-tau is the share of positive queries whose
  relevant video scores ``>= tau``.
* **Grounding** follows DAVIS: J is mask IoU, with J = 1 when both masks are empty; F is the boundary F-measure
  of ``seg2bmap`` contours matched within ``ceil(bound_th * image diagonal)`` pixels.
* **Moments** (kind ``moment``): the temporal IoU of two spans is their overlap over their union (``len a +
  len b - overlap``); a span of no length (end <= start) overlaps nothing. A query counts for moment R@1 at IoU
  ``m`` when the video at rank 1 is a positive *and* the best (first) moment the system gives for it has tIoU
  ``>= m`` with a ground-truth span of that video (the best over its spans when it holds several); mean IoU
  averages that tIoU, 0 when the video at rank 1 is wrong. A system that gives no moment for its top video (the
  baselines, a hit with nothing localised) is scored with the whole video as its span: an honest "somewhere in
  here", whose tIoU is the span's share of the video.
* Functions over a list of queries return ``nan`` for an empty list; :func:`aggregate` skips empty groups.

Against ranx (``tests/evals/test_metrics_reference.py`` checks these on random rankings): R@K is the share of queries
whose *first* relevant video is in the top K, ranx's ``hit_rate@K`` (not ranx's ``recall@K``, the share of the
relevant videos found); the first relevant rank is ``1 / RR`` of ranx's ``mrr``; plain AP (``k=None``) and mAP
equal ranx's ``map``. AP@K divides by ``min(K, number of relevant)`` so that a perfect top K scores 1, while
ranx's ``map@K`` divides by the number of relevant: the two agree when K >= the number of relevant videos.

One evaluator: :func:`evaluate_query` turns a scorer's answer to one bench query into a
:class:`~twinseek.evals.schemas.QueryResult`; ``twinseek eval`` and every benchmark script go through it (or
:func:`evaluate`, all queries and :func:`aggregate`).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal, Protocol

import numpy as np
from scipy import ndimage

from twinseek.evals.bench import (
    RANKED_KINDS,
    AbsentQuery,
    Bench,
    CounterfactualQuery,
    ImplicitQuery,
    McqQuery,
    MomentQuery,
    Query,
    RankedQuery,
)
from twinseek.evals.schemas import TOP_N, QueryInfo, QueryRecord, QueryResult, RankedVideo
from twinseek.media.decode import probe
from twinseek.media.masks import MaskLike, as_mask, mask_iou, resize_mask

logger = logging.getLogger(__name__)

KS: tuple[int, ...] = (1, 5, 10, 50, 100)
DEFAULT_TAU = 0.5
MOMENT_IOUS: tuple[float, ...] = (0.5, 0.7)  # the tIoU thresholds of moment R@1 (as in Charades-STA, LVBench)
Ties = Literal["id", "pessimistic"]
Span = tuple[float, float]


# ---------------------------------------------------------------- ranking
def rank_videos(scores: Mapping[str, float], positives: Collection[str] = (), ties: Ties = "id") -> list[str]:
    """Video ids, best score first; ties broken as described in the module docstring."""
    pos = set(positives) if ties == "pessimistic" else set()
    return sorted(scores, key=lambda v: (-_finite(scores[v]), v in pos, v))


def _finite(score: float | None) -> float:
    return -math.inf if score is None or math.isnan(score) else float(score)


def rank_of_first_relevant(ranking: Sequence[str], positives: Collection[str]) -> int | None:
    """1-based position of the first relevant video in ``ranking``; ``None`` when none is ranked."""
    wanted = set(positives)
    return next((i for i, v in enumerate(ranking, start=1) if v in wanted), None)


def effective_rank(rank: int | None, gallery_size: int) -> int:
    """``rank``, or ``gallery_size + 1`` for an unranked relevant video."""
    return gallery_size + 1 if rank is None else rank


def recall_at_k(ranks: Sequence[int | None], k: int) -> float:
    """R@K: share of queries whose first relevant video is ranked within the top ``k``."""
    if not ranks:
        return math.nan
    return sum(r is not None and r <= k for r in ranks) / len(ranks)


def median_rank(ranks: Sequence[int | None], gallery_size: int) -> float:
    """MdR: median first-relevant rank (mean of the two middle ranks for an even count)."""
    return float(np.median([effective_rank(r, gallery_size) for r in ranks])) if ranks else math.nan


def mean_rank(ranks: Sequence[int | None], gallery_size: int) -> float:
    """MnR: mean first-relevant rank, unranked counted as ``gallery_size + 1``."""
    return float(np.mean([effective_rank(r, gallery_size) for r in ranks])) if ranks else math.nan


def average_precision_at_k(ranking: Sequence[str], positives: Collection[str], k: int | None = None) -> float:
    """AP@K = sum over relevant positions i <= K of precision@i, divided by min(K, number of positives).

    ``k=None`` means the whole ranking (plain AP, denominator = number of positives). Relevant videos that are
    not ranked (or ranked below K) contribute 0. ``k`` beyond the ranking's length is allowed.

    Raises:
        ValueError: ``positives`` is empty (AP is undefined) or ``k < 1``.
    """
    wanted = set(positives)
    if not wanted:
        raise ValueError("average precision needs at least one relevant video")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cutoff = len(ranking) if k is None else k
    hits, total = 0, 0.0
    for i, video in enumerate(ranking[:cutoff], start=1):
        if video in wanted:
            hits += 1
            total += hits / i
    return total / (len(wanted) if k is None else min(k, len(wanted)))


def mean_average_precision(
    rankings: Sequence[Sequence[str]], positives: Sequence[Collection[str]], k: int | None = None
) -> float:
    """mAP (or mAP@K): mean of :func:`average_precision_at_k` over queries."""
    if len(rankings) != len(positives):
        raise ValueError(f"{len(rankings)} rankings but {len(positives)} positive sets")
    aps = [average_precision_at_k(r, p, k) for r, p in zip(rankings, positives)]
    return float(np.mean(aps)) if aps else math.nan


# ---------------------------------------------------------------- choices and thresholds
def mcq_correct(option_scores: Sequence[float], answer: int) -> bool:
    """The answer's score is strictly above every other option's (a tie is wrong)."""
    right = option_scores[answer]
    return all(right > s for i, s in enumerate(option_scores) if i != answer)


def counterfactual_correct(true_score: float, counterfactual_score: float) -> bool:
    """The true text scores strictly above its counterfactual."""
    return true_score > counterfactual_score


def absent_rejected(scores: Mapping[str, float], tau: float = DEFAULT_TAU) -> bool:
    """An absent query is rejected when no video scores ``>= tau``."""
    return all(_finite(s) < tau for s in scores.values())


def accuracy(flags: Iterable[bool]) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else math.nan


# ---------------------------------------------------------------- moments (temporal IoU)
def temporal_iou(a: Span, b: Span) -> float:
    """tIoU of two time spans ``(start_s, end_s)``: overlap / (len a + len b - overlap); 0 when either has no
    length (end <= start), so a degenerate prediction never scores."""
    len_a, len_b = a[1] - a[0], b[1] - b[0]
    if len_a <= 0 or len_b <= 0:
        return 0.0
    overlap = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return overlap / (len_a + len_b - overlap)


def moment_iou(predicted: Span, truth: Iterable[Span]) -> float:
    """The best tIoU of ``predicted`` against the ground-truth spans of one video (0 when it has none)."""
    return max((temporal_iou(predicted, t) for t in truth), default=0.0)


@functools.lru_cache(maxsize=256)
def video_duration(path: str) -> float:
    """Seconds of a video (its container's metadata): the span of "the whole video"."""
    return probe(path).duration_s


def _moment_metrics(group: Sequence[QueryRecord]) -> dict[str, float]:
    """``moment_r@1_iou<m>``, ``moment_miou``, ``moment_localised`` (share of queries whose top video came with a
    moment of the system's own), and the same with ``moment_<source>_`` per source kind, with its ``_n`` and
    video-level ``_r@1``."""
    out = _moment_numbers("moment", group)
    for source in sorted({r.source for r in group if r.source}):
        sub = [r for r in group if r.source == source]
        out[f"moment_{source}_n"] = float(len(sub))
        out[f"moment_{source}_r@1"] = recall_at_k([r.rank for r in sub], 1)
        out.update(_moment_numbers(f"moment_{source}", sub))
    return out


def _moment_numbers(prefix: str, group: Sequence[QueryRecord]) -> dict[str, float]:
    out = {f"{prefix}_r@1_iou{m:g}": accuracy(r.rank == 1 and (r.iou or 0.0) >= m for r in group) for m in MOMENT_IOUS}
    out[f"{prefix}_miou"] = float(np.mean([r.iou or 0.0 for r in group])) if group else math.nan
    out[f"{prefix}_localised"] = accuracy(bool(r.localised) for r in group)
    return out


def _score_moment(scorer: VideoScorer, query: MomentQuery, bench: Bench, top: str | None,
                  result: QueryResult) -> None:
    """The rank-1 video's best moment against the ground truth (see the module docstring)."""
    result.source = query.source
    result.iou = 0.0
    if top is None:
        return
    ask = getattr(scorer, "moment", None)
    span = ask(query.text, top) if ask is not None else None
    result.localised = span is not None
    if span is None:
        span = (0.0, video_duration(str(bench.videos[top])))
    result.moment = [round(float(span[0]), 3), round(float(span[1]), 3)]
    if top in query.positives:
        result.iou = moment_iou((float(span[0]), float(span[1])), query.spans_of(top))


# ---------------------------------------------------------------- grounding (DAVIS J and F)
def mask_j(pred: MaskLike, gt: MaskLike) -> float:
    """Region similarity J (IoU). Both masks empty gives 1.0 (DAVIS ``db_eval_iou``)."""
    return mask_iou(as_mask(pred), as_mask(gt))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a binary mask (DAVIS ``seg2bmap`` at the mask's own size).

    A pixel is on the boundary when it differs from its east, south or south-east neighbour; the last row and
    column compare only along the image edge, and the bottom-right corner is never a boundary.
    """
    seg = np.asarray(seg).astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    # skimage.morphology.disk: x^2 + y^2 <= r^2
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.asarray(xx**2 + yy**2 <= radius**2)


def boundary_f(pred: MaskLike, gt: MaskLike, bound_th: float = 0.008) -> float:
    """Contour accuracy F (DAVIS ``db_eval_boundary``): F-measure of boundary precision and recall.

    ``bound_th < 1`` is a fraction of the image diagonal (tolerance ``ceil(bound_th * diagonal)`` pixels),
    ``>= 1`` a pixel count. As in DAVIS: both boundaries empty -> 1; only one empty -> 0.
    """
    p, g = as_mask(pred), as_mask(gt)
    _same_shape(p, g)
    radius = int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*p.shape)))
    pb, gb = seg2bmap(p), seg2bmap(g)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 or n_g == 0:
        return 1.0 if n_p == n_g else 0.0
    disk = _disk(radius)
    precision = float((pb & ndimage.binary_dilation(gb, structure=disk)).sum()) / n_p
    recall = float((gb & ndimage.binary_dilation(pb, structure=disk)).sum()) / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")


def grounding_scores(
    pred_masks: Mapping[int, MaskLike], gt_masks: Mapping[int, MaskLike], bound_th: float = 0.008
) -> dict[str, float]:
    """Mean J and F over the frames present in both dicts (keys: decoded frame index).

    A prediction at another resolution is resized (nearest) to the ground truth's, since methods decode at a
    reduced size. With no common frame, J = F = 0: a method that grounds nothing scores nothing.
    Returns ``{"j", "f", "jf", "frames"}``.
    """
    frames = sorted(set(pred_masks) & set(gt_masks))
    js, fs = [], []
    for k in frames:
        gt = as_mask(gt_masks[k])
        pred = resize_mask(as_mask(pred_masks[k]), gt.shape)
        js.append(mask_j(pred, gt))
        fs.append(boundary_f(pred, gt, bound_th))
    j = float(np.mean(js)) if js else 0.0
    f = float(np.mean(fs)) if fs else 0.0
    return {"j": j, "f": f, "jf": (j + f) / 2, "frames": float(len(frames))}


# ---------------------------------------------------------------- per-query records and aggregation
def retrieval_record(
    query_id: str, kind: str, scores: Mapping[str, float], positives: Collection[str], ties: Ties = "id"
) -> QueryRecord:
    """Record of a ranked query (implicit, explicit, negation, absent) from the scores of the whole gallery."""
    ranking = rank_videos(scores, positives, ties)
    finite = [_finite(s) for s in scores.values()]
    record = QueryRecord(id=query_id, kind=kind, gallery_size=len(scores), max_score=max(finite, default=None))
    if positives:
        record.rank = rank_of_first_relevant(ranking, positives)
        record.ap = average_precision_at_k(ranking, positives)
        record.positive_score = max((_finite(scores[p]) for p in positives if p in scores), default=-math.inf)
    return record


def aggregate(records: Sequence[QueryRecord], ks: Sequence[int] = KS, tau: float = DEFAULT_TAU) -> dict[str, float]:
    """Metrics by kind: ``<kind>_r@K``, ``_mdr``, ``_mnr``, ``_map``, ``_recall@tau``, ``_j``/``_f``/``_jf`` and
    ``_returned_j`` (J over the grounded queries whose positive was returned; their count ``_returned_grounded``)
    for ranked kinds (video level for ``moment``, plus :func:`_moment_metrics`); ``absent_rejection@tau`` and ``absent_mean_max_score``; ``mcq_accuracy``;
    ``counterfactual_accuracy`` and ``counterfactual_<aspect>_accuracy``; ``<kind>_n`` query counts."""
    by_kind: dict[str, list[QueryRecord]] = defaultdict(list)
    for r in records:
        by_kind[r.kind].append(r)
    out: dict[str, float] = {}
    for kind, group in by_kind.items():
        out[f"{kind}_n"] = float(len(group))
        if kind in RANKED_KINDS:
            out.update(_ranked_metrics(kind, group, ks, tau))
        if kind == "moment":
            out.update(_moment_metrics(group))
        elif kind == "absent":
            out["absent_rejection@tau"] = accuracy(_finite(r.max_score) < tau for r in group)
            out["absent_mean_max_score"] = float(np.mean([_finite(r.max_score) for r in group]))
        else:
            out[f"{kind}_accuracy"] = accuracy(bool(r.correct) for r in group)
            out.update(_by_aspect(kind, group))
    return out


def _ranked_metrics(kind: str, group: Sequence[QueryRecord], ks: Sequence[int], tau: float) -> dict[str, float]:
    ranks = [r.rank for r in group]
    gallery = max(r.gallery_size or 0 for r in group)
    out = {f"{kind}_r@{k}": recall_at_k(ranks, k) for k in ks}
    out[f"{kind}_mdr"] = median_rank(ranks, gallery)
    out[f"{kind}_mnr"] = mean_rank(ranks, gallery)
    out[f"{kind}_map"] = float(np.mean([r.ap or 0.0 for r in group]))
    out[f"{kind}_recall@tau"] = accuracy(r.positive_score is not None and r.positive_score >= tau for r in group)
    grounded = [r for r in group if r.j is not None]
    if grounded:
        out[f"{kind}_j"] = float(np.mean([r.j for r in grounded]))
        out[f"{kind}_f"] = float(np.mean([r.f or 0.0 for r in grounded]))
        out[f"{kind}_jf"] = (out[f"{kind}_j"] + out[f"{kind}_f"]) / 2
        # the masks' quality where the positive video was returned (>= tau): J above also counts a positive that
        # was not returned (no hit, no masks) as J = 0, mixing retrieval and grounding
        returned = [r for r in grounded if r.positive_score is not None and r.positive_score >= tau]
        out[f"{kind}_returned_j"] = float(np.mean([r.j for r in returned])) if returned else float("nan")
        out[f"{kind}_returned_grounded"] = float(len(returned))
    return out


def _by_aspect(kind: str, group: Sequence[QueryRecord]) -> dict[str, float]:
    aspects: dict[str, list[bool]] = defaultdict(list)
    for r in group:
        if r.aspect:
            aspects[r.aspect.lower().replace(" ", "-")].append(bool(r.correct))
    return {f"{kind}_{a}_accuracy": accuracy(flags) for a, flags in sorted(aspects.items())}


# ---------------------------------------------------------------- the evaluator
class VideoScorer(Protocol):
    """Anything that scores every gallery video for a text (higher = more relevant).

    Optional extras the evaluator uses when a scorer has them: ``video_score(text, video_id) -> float`` (the
    score of one given video, e.g. the agent judging that video for a multiple-choice option),
    ``moment(text, video_id) -> (start_s, end_s) | None`` (the best moment it found in that video, for the moment
    kind; ``None`` or no such method: the whole video) and ``take_info() -> QueryInfo`` (timings, models and
    fallbacks of the query just answered).
    """

    def score_videos(self, query_text: str) -> dict[str, float]: ...


class Grounder(Protocol):
    """Predicted masks of the objects ``query`` targets in ``video_id``, by decoded frame index."""

    def __call__(self, query: ImplicitQuery, video_id: str) -> Mapping[int, MaskLike]: ...


def score_for_video(scorer: VideoScorer, text: str, video_id: str) -> float:
    """A scorer's score of one video for ``text``: its ``video_score`` when it has one, else its gallery score;
    ``-inf`` when the scorer leaves the video out."""
    direct = getattr(scorer, "video_score", None)
    value = direct(text, video_id) if direct is not None else scorer.score_videos(text).get(video_id, -math.inf)
    return _finite(value)


def evaluate_query(scorer: VideoScorer, query: Query, bench: Bench, grounder: Grounder | None = None,
                   ties: Ties = "id") -> QueryResult:
    """Score one query with ``scorer``: the metric fields of its kind and what the system did.

    Ranked kinds rank the whole gallery (``bench.videos``; a video the scorer leaves out scores ``-inf``). With a
    ``grounder``, an implicit query with ground-truth masks is also scored for grounding (J, F) on its first
    relevant video, wherever that video was ranked.
    """
    start = time.perf_counter()
    if isinstance(query, McqQuery | CounterfactualQuery):
        result = _choice(scorer, query)
    else:
        result = _ranked(scorer, query, bench, grounder, ties)
    take_info = getattr(scorer, "take_info", None)
    info: QueryInfo = take_info() if take_info is not None else QueryInfo()
    result.seconds = round(time.perf_counter() - start, 4)
    result.timings, result.models, result.fallbacks = info.timings, info.models, info.fallbacks
    result.hits, result.returned = info.hits, info.returned
    if info.max_relevance is not None:
        result.max_score = info.max_relevance  # the agent's own relevance, not a synthetic rank score
    return result


def evaluate(scorer: VideoScorer, bench: Bench, grounder: Grounder | None = None, ks: Sequence[int] = KS,
             tau: float = DEFAULT_TAU, ties: Ties = "id") -> tuple[list[QueryResult], dict[str, float]]:
    """Every query of ``bench`` through :func:`evaluate_query`; returns the records and their :func:`aggregate`."""
    records = [evaluate_query(scorer, q, bench, grounder, ties) for q in bench.queries]
    return records, aggregate(records, ks, tau)


def _choice(scorer: VideoScorer, query: McqQuery | CounterfactualQuery) -> QueryResult:
    if isinstance(query, McqQuery):
        scores = [score_for_video(scorer, o, query.video) for o in query.options]
        correct, text, aspect = mcq_correct(scores, query.answer), query.options[query.answer], None
    else:
        scores = [score_for_video(scorer, t, query.video) for t in (query.text, query.counterfactual)]
        correct, text, aspect = counterfactual_correct(*scores), query.text, query.aspect
    return QueryResult(id=query.id, kind=query.kind, text=text, positives=[query.video], correct=correct,
                       aspect=aspect, choice_scores=[_json_float(s) for s in scores])


def _ranked(scorer: VideoScorer, query: RankedQuery, bench: Bench, grounder: Grounder | None,
            ties: Ties) -> QueryResult:
    raw = scorer.score_videos(query.text)
    missing = len(set(bench.videos) - set(raw))
    if missing:  # usually a retriever whose index() was not called on this gallery
        logger.warning("query %s: the scorer left %d of %d videos unscored (ranked last)",
                       query.id, missing, len(bench.videos))
    scores = {v: _finite(raw.get(v, -math.inf)) for v in bench.videos}
    positives = [] if isinstance(query, AbsentQuery) else list(query.positives)
    record = retrieval_record(query.id, query.kind, scores, positives, ties)
    ranked = rank_videos(scores, positives, ties)
    ranking = [RankedVideo(video=v, score=_json_float(scores[v])) for v in ranked[:TOP_N]]
    result = QueryResult(**record.model_dump(), text=query.text, positives=positives, ranking=ranking)
    if isinstance(query, MomentQuery):
        _score_moment(scorer, query, bench, ranked[0] if ranked else None, result)
    if grounder is not None and isinstance(query, ImplicitQuery) and query.has_masks:
        grounding = grounding_scores(grounder(query, query.positives[0]), bench.query_masks(query))
        result.j, result.f = grounding["j"], grounding["f"]
    return result


def _json_float(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else value
