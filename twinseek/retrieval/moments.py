"""Moments: where in a video a query's match lies, as time spans (the localiser of a hit).

A video's time line is cut into *segments*: its shots (:attr:`~twinseek.twins.model.Twin.shots`), or its scenes
in a video of several with ``retrieval.moment_unit = "scene"`` (:mod:`twinseek.twins.scenes`: adjacent shots whose
labels agree), or, for a twin without shots (a store from before them), one cell per sampled frame (from halfway
to the previous sampled frame to halfway to the next: what the twin knows of that stretch). Every component of the video (object, relation,
scene, on-screen text, gloss, speech segment) covers a time span (``start_s``-``end_s`` in the ``components``
table, :meth:`~twinseek.twins.views.ComponentTexts.rows`). A segment scores as the compositional search scores a
video (:mod:`twinseek.retrieval.compositional`, ``mean`` aggregation), but over the components overlapping it only::

    score(segment) = sum_P w_l max_{c overlaps segment} max(0, cos(q_l, c)) / sum_P w_l

over the positive sub-queries ``P`` (a negated one says what is *not* there, which places nothing). In a video of
several scenes, ``moment_dense_weight`` of the score is the dense similarity of the whole query to the gist of the
segment's scene (the dense index holds an item per scene: :func:`~twinseek.retrieval.dense.dense_rows`): a shot
of a long video holds one or two sampled frames, and what its one-frame tracks say is noise that the scene's
labels and gist outweigh.

The best moment is the run of adjacent segments around the best-scoring one whose scores stay at or above
``lowest + moment_fraction x (best - lowest)`` (of the video's segment scores: shift-free, so a floor that every
shot shares, e.g. a scene label of the whole video, neither widens nor narrows it). Further moments start from
the best segment left that clears the same bar, up to ``max_moments``; they never overlap (a segment next to a
moment that clears the bar has joined it). A shot the sampling skipped (a long video has more shots than sampled
frames) is unseen: it neither scores nor breaks a run (:func:`pick_moments`). A video whose segments all score alike is one moment, the whole of it:
a short clip's single shot, or a long video where nothing places the match. Without shots, a moment whose
evidence is speech is trimmed to it: a speech segment's times are exact, where a cell is as coarse as the sampling
(and so is what a track seen on sampled frames says of its extent: a moment is never trimmed to that).

Vectors come back from the component catalogue (``reconstruct``: exact for flat and HNSW, PQ-decoded for IVF-PQ);
a video the catalogue does not hold (not yet synced, or built by another encoder) has its component texts embedded
now with the same encoders. Everything is deterministic given the store and the query: ties go to the earlier
segment.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from twinseek.config import RetrievalSettings
from twinseek.retrieval.catalogue import CatalogIndex
from twinseek.retrieval.compositional import SubQueryLike
from twinseek.retrieval.dense import DenseIndex
from twinseek.retrieval.encoders import ComponentEncoders
from twinseek.retrieval.vectors import IndexCorruptError
from twinseek.twins.model import Twin, frame_span, frame_time, frames_within
from twinseek.twins.scenes import scenes, spans_meet
from twinseek.twins.views import ComponentTexts

logger = logging.getLogger(__name__)

__all__ = ["Moment", "MomentLocaliser", "EncodedSubqueries", "Segment", "segments", "placing", "score_segments",
           "pick_moments",
           "clock", "span_label"]

MAX_EVIDENCE = 4  # component texts named per moment
_EPS = 1e-6


class Moment(BaseModel):
    """Where in a video a hit's evidence lies: a time span (seconds from the start), the shots it covers, how well it
    matches the query and the evidence behind it (component texts, speech)."""

    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    shots: list[int] = Field(default_factory=list, description="Indices of the shots the span covers (empty: the "
                             "twin has no shots).")
    score: float = Field(0.0, description="How well the span matches the query (comparable within one hit).")
    evidence: list[str] = Field(default_factory=list, description="What in the span matched, in words.")
    frames: list[int] = Field(default_factory=list, description="Sampled frames inside the span (for overlays).")

    @property
    def label(self) -> str:
        """``00:03:12-00:03:41``: the span as people read it (:func:`span_label`)."""
        return span_label(self.start_s, self.end_s)


def clock(seconds: float) -> str:
    """``hh:mm:ss`` of a time in seconds (whole seconds, truncated)."""
    whole = max(0, int(seconds + _EPS))
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def span_label(start_s: float, end_s: float) -> str:
    """A time span as ``00:03:12-00:03:41``: the start rounded down and the end up, so the printed span holds the
    moment (a 0.4-second moment at 3.2 s reads ``00:00:03-00:00:04``). The one formatter of moments."""
    return f"{clock(start_s)}-{clock(max(float(np.ceil(end_s - _EPS)), start_s))}"


# -- the time line ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """A stretch of the time line that scores as one: a shot (``shot`` its index), or a sampled frame's cell."""

    start_s: float
    end_s: float
    shot: int | None = None  # its (first) shot
    observed: bool = True  # a sampled frame lies in it (a shot the sampling skipped: the twin knows nothing of it)
    shots: tuple[int, ...] = ()  # a scene's shots (a segment of one shot: empty, ``shot`` says it)

    @property
    def shot_indices(self) -> list[int]:
        return list(self.shots) if self.shots else [] if self.shot is None else [self.shot]


def segments(twin: Twin, by_scene: bool = False) -> list[Segment]:
    """The video's time line: its shots in order (``by_scene``: its scenes, in a video of several,
    :func:`~twinseek.twins.scenes.scenes`); without shots, one cell per sampled frame (the whole video when none
    was sampled)."""
    video = twin.video
    parts = scenes(twin) if by_scene else []
    if parts:
        return [Segment(p.start_s, max(p.end_s, p.start_s), p.shots[0], True, p.shots) for p in parts]
    if twin.shots:
        return [Segment(s.start_s, max(s.end_s, s.start_s), s.index, bool(s.key_frames))
                for s in sorted(twin.shots, key=lambda s: s.index)]
    times = sorted({frame_time(video, f) for f in video.sampled_frames})
    end = max([video.duration_s, *(frame_span(video, f, f)[1] for f in video.sampled_frames[-1:])], default=0.0)
    if len(times) < 2:
        return [Segment(0.0, end)]
    cuts = [0.0, *((a + b) / 2 for a, b in zip(times, times[1:])), max(end, times[-1])]
    return [Segment(round(a, 3), round(b, 3)) for a, b in zip(cuts, cuts[1:])]


def _reach(spans: np.ndarray, segs: Sequence[Segment]) -> tuple[np.ndarray, np.ndarray]:
    """The first and last segment each component span meets (:func:`~twinseek.twins.scenes.spans_meet`)."""
    return spans_meet(spans, np.array([s.start_s for s in segs]), np.array([s.end_s for s in segs]))


def score_segments(sims: np.ndarray, spans: np.ndarray, segs: Sequence[Segment],
                   weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's score and, per (segment, sub-query), the best component among those meeting it (-1: none).

    ``sims``: (n_components, n_subqueries) cosines; ``spans``: (n_components, 2) seconds. Each component meets a
    run of segments, so the work is one pass over the (component, segment) pairs (a few per component: an hour's
    2,000 components over 300 shots take milliseconds), not the full product."""
    n_seg, n_q = len(segs), sims.shape[1]
    top = np.zeros((n_seg, n_q))
    best = np.full((n_seg, n_q), -1)
    if len(sims) and n_seg:
        first, last = _reach(spans, segs)
        counts = last - first + 1
        comp = np.repeat(np.arange(len(sims)), counts)
        seg = first[comp] + np.arange(len(comp)) - np.repeat(np.cumsum(counts) - counts, counts)
        for q in range(n_q):
            value = np.maximum(sims[comp, q], 0.0)
            order = np.lexsort((comp, -value, seg))  # per segment: the most similar, the lowest id of equals
            head = order[np.r_[True, seg[order][1:] != seg[order][:-1]]]
            top[seg[head], q], best[seg[head], q] = value[head], comp[head]
    w = np.asarray(weights, np.float64)
    return top @ (w / w.sum()), best


def pick_moments(scores: np.ndarray, fraction: float, limit: int,
                 segs: Sequence[Segment] | None = None) -> list[tuple[int, int, int]]:
    """Runs of segments, best first, as ``(first, last, peak)`` indices (inclusive): around the best segment left,
    the neighbours scoring at least ``lowest + fraction x (best - lowest)``; a further run's peak must clear that
    bar too.

    With ``segs``, segments the sampling never saw (``observed`` false: a long video samples fewer frames than it
    has shots) neither score nor break a run: a run crosses unseen segments to the next seen one that clears the
    bar, and where it stops, the unseen stretch beyond its edge is split at its middle in time (the cut between
    what matched and what did not lies somewhere in it; at the video's start or end the whole stretch joins)."""
    if not len(scores) or limit <= 0:
        return []
    seen = np.array([s.observed for s in segs], bool) if segs is not None else np.ones(len(scores), bool)
    if not seen.any():
        seen[:] = True
    low, high = float(scores[seen].min()), float(scores[seen].max())
    bar = low + fraction * (high - low) - _EPS
    taken = np.zeros(len(scores), bool)
    runs: list[tuple[int, int, int]] = []
    while len(runs) < limit:
        free = np.where(taken | ~seen, -np.inf, scores)
        peak = int(free.argmax())  # the earliest of equal scores
        if taken[peak] or not seen[peak] or (runs and scores[peak] < bar):
            break
        first = _grow(scores, seen, taken, bar, peak, -1, segs)
        last = _grow(scores, seen, taken, bar, peak, 1, segs)
        taken[first:last + 1] = True
        runs.append((first, last, peak))
    return runs


def _grow(scores: np.ndarray, seen: np.ndarray, taken: np.ndarray, bar: float, edge: int, step: int,
          segs: Sequence[Segment] | None) -> int:
    """How far a run grows from ``edge`` in direction ``step`` (see :func:`pick_moments`)."""
    n = len(scores)
    while True:
        gap_end = edge + step  # the unseen segments next to the run, then the first seen one beyond them
        while 0 <= gap_end < n and not seen[gap_end] and not taken[gap_end]:
            gap_end += step
        inside = 0 <= gap_end < n
        if inside and seen[gap_end] and not taken[gap_end] and scores[gap_end] >= bar:
            edge = gap_end  # the match goes on past the unseen stretch
            continue
        gap = list(range(edge + step, gap_end, step))
        if not gap or segs is None:
            return edge
        if not inside:
            return gap[-1]  # the video's start or end: nothing seen beyond says it changed
        middle = (segs[edge].end_s + segs[gap_end].start_s) / 2 if step > 0 else \
            (segs[gap_end].end_s + segs[edge].start_s) / 2
        joined = [g for g in gap if (segs[g].start_s + segs[g].end_s) / 2 < middle] if step > 0 else \
            [g for g in gap if (segs[g].start_s + segs[g].end_s) / 2 > middle]
        return joined[-1] if joined else edge


WHOLE_SHARE = 0.9  # a component covering this share of a video's time line or more places nothing


def placing(spans: np.ndarray, segs: Sequence[Segment]) -> np.ndarray:
    """Which components can place a match (a boolean mask over ``spans``): all of them on a time line of one shot
    or of a twin without shots (cells of its sampled frames); over several shots, those covering less than
    ``WHOLE_SHARE`` of it. A scene label or a gloss of the whole
    video meets every segment alike, and when it is the best match of a sub-query it hides the components that do
    tell the segments apart (a long video's scene label "goldfish" made every shot score as the goldfish shots)."""
    if len(segs) < 2 or segs[0].shot is None or not len(spans):  # one shot, or a twin from before shots (cells)
        return np.ones(len(spans), bool)
    length = max(segs[-1].end_s - segs[0].start_s, _EPS)
    return np.asarray((spans[:, 1] - spans[:, 0]) < WHOLE_SHARE * length, bool)


# -- the localiser ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedSubqueries:
    """The positive sub-queries of a search, encoded once for all its hits."""

    texts: tuple[str, ...]
    weights: tuple[float, ...]
    vectors: np.ndarray  # (n, dim), unit rows
    dense: np.ndarray | None = None  # the whole query by the dense index's embedder (dim,): meets the scene gists


class MomentLocaliser:
    """Places a query's match in a video's time line, reading the video's components and their vectors from the
    component catalogue (bound with the store's indexes: :class:`~twinseek.retrieval.stages.RetrievalIndexes`)."""

    def __init__(self, index: CatalogIndex, encoders: ComponentEncoders, settings: RetrievalSettings | None = None,
                 dense: DenseIndex | None = None) -> None:
        self.index = index
        self.encoders = encoders
        self.settings = settings or RetrievalSettings()
        self.dense = dense  # its scene items (videos of several scenes) join the shots' scores
        self.embedded_videos = 0  # videos whose components had to be embedded (not in the catalogue): a cost to see

    def prepare(self, subqueries: Sequence[SubQueryLike], text: str | None = None) -> EncodedSubqueries | None:
        """The sub-queries that place a match (the positive ones), encoded; None when there is none. ``text``: the
        query as dense search embeds it (:func:`~twinseek.retrieval.stages.dense_query`), which the scene gists
        of the dense index meet."""
        positive = [q for q in subqueries if not q.negated and q.text.strip()]
        if not positive:
            return None
        texts = tuple(q.text for q in positive)
        dense = None
        if text and self.dense is not None and self.settings.moment_dense_weight > 0:
            dense = self.dense.embedder.embed_queries([text])[0]
        return EncodedSubqueries(texts, tuple(float(q.weight) for q in positive),
                                 self.encoders.encode_queries(list(texts)), dense)

    def locate(self, query: EncodedSubqueries | None, twin: Twin, limit: int | None = None,
               fraction: float | None = None) -> list[Moment]:
        """Up to ``limit`` (``max_moments``) moments of ``twin`` for ``query``, best first; none without a
        positive sub-query or a component."""
        limit = self.settings.max_moments if limit is None else limit
        fraction = self.settings.moment_fraction if fraction is None else fraction
        if query is None or limit <= 0:
            return []
        rows, vectors = self._components(twin)
        if not rows:
            return []
        video = twin.video
        spans = np.array([_row_span(twin, r) for r in rows], np.float64).reshape(-1, 2)
        segs = segments(twin, self.settings.moment_unit == "scene")
        keep = placing(spans, segs)
        rows, vectors, spans = [r for r, k in zip(rows, keep) if k], vectors[keep], spans[keep]
        sims = vectors @ query.vectors.T
        scores, best = score_segments(sims, spans, segs, query.weights)
        scene = self._scene_scores(query, video.video_id, segs)
        if scene is not None:
            weight = self.settings.moment_dense_weight
            scores = (1 - weight) * scores + weight * scene
        moments = []
        for first, last, peak in pick_moments(scores, fraction, limit, segs):
            run = segs[first:last + 1]
            start, end = run[0].start_s, run[-1].end_s
            chosen = _evidence(sims, best[first:last + 1])
            said = [c for c in chosen if rows[c]["kind"] == "speech"]
            if not twin.shots and said and len(said) == len(chosen):  # cells are coarse, speech times exact
                lo, hi = max(start, spans[said, 0].min()), min(end, spans[said, 1].max())
                if hi > lo:
                    start, end = lo, hi
            moments.append(Moment(
                start_s=round(start, 3), end_s=round(end, 3), shots=[i for s in run for i in s.shot_indices],
                score=round(float(scores[peak]), 4), evidence=[rows[c]["text"] for c in chosen[:MAX_EVIDENCE]],
                frames=frames_within(video, video.sampled_frames, start, end)))
        logger.debug("%s: %d moments over %d segments", video.video_id, len(moments), len(segs))
        return moments

    def _components(self, twin: Twin) -> tuple[list[dict[str, Any]], np.ndarray]:
        """The video's component rows and unit vectors: from the catalogue when it holds them, else embedded now."""
        video_id = twin.video.video_id
        try:
            vectors = self.index.vectors()
            if vectors.meta.get("fingerprint") == self.index.source.fingerprint:
                cursor = self.index.db.execute(
                    "select id, kind, text, frame_start, frame_end, start_s, end_s "
                    f"from [{self.index.source.table}] "
                    "where video_id = ? order by id", [video_id])
                names = [c[0] for c in cursor.description]
                rows = [dict(zip(names, r)) for r in cursor.fetchall()]
                if rows:
                    return rows, vectors.reconstruct(np.array([r["id"] for r in rows], np.int64))
        except IndexCorruptError as exc:  # an index that needs a sync: the texts are embedded below
            logger.info("moments of %s: component index unusable (%s); embedding its components", video_id, exc)
        rows = ComponentTexts.rows(twin)
        if not rows:
            return [], np.zeros((0, self.encoders.dim), np.float32)
        self.embedded_videos += 1
        return rows, self.encoders.encode_components([r["kind"] for r in rows], [r["text"] for r in rows])


    def _scene_scores(self, query: EncodedSubqueries, video_id: str, segs: Sequence[Segment]) -> np.ndarray | None:
        """Per segment, the dense similarity (clipped at 0) of the query to the gist of the scene it lies in (the
        scene meeting its middle); None for a video of one scene, without a dense query or a usable dense
        index."""
        if query.dense is None or self.dense is None or len(segs) < 2:
            return None
        try:
            vectors = self.dense.checked(query.dense[None, :])
            rows = self.dense.db.execute(
                f"select id, start_s, end_s from [{self.dense.source.table}] "
                "where video_id = ? and start_s is not null order by id", [video_id]).fetchall()
            if len(rows) < 2:
                return None
            sims = vectors.reconstruct(np.array([r[0] for r in rows], np.int64)) @ query.dense
        except IndexCorruptError as exc:  # out of sync: the components alone place the match
            logger.info("moments of %s: dense index unusable (%s); components only", video_id, exc)
            return None
        starts = np.array([r[1] for r in rows], np.float64)
        ends = np.array([r[2] for r in rows], np.float64)
        out = np.zeros(len(segs))
        for n, seg in enumerate(segs):
            middle = (seg.start_s + seg.end_s) / 2
            inside = (starts <= middle + _EPS) & (ends >= middle - _EPS)
            if inside.any():
                out[n] = max(0.0, float(sims[inside].max()))
        return out


def _row_span(twin: Twin, row: dict[str, Any]) -> tuple[float, float]:
    """A component row's seconds (rows indexed before spans were stored: from its frames)."""
    if row.get("start_s") is not None and row.get("end_s") is not None:
        return float(row["start_s"]), float(row["end_s"])
    return frame_span(twin.video, int(row["frame_start"] or 0), int(row["frame_end"] or 0))


def _evidence(sims: np.ndarray, best: np.ndarray) -> list[int]:
    """The components behind a run's score: per sub-query the most similar component meeting the run, most
    similar first, each once."""
    chosen: dict[int, float] = {}
    for q in range(best.shape[1]):
        ids = [int(c) for c in best[:, q] if c >= 0]
        if ids:
            top = max(ids, key=lambda c: (sims[c, q], -c))
            chosen[top] = max(chosen.get(top, -np.inf), float(sims[top, q]))
    return sorted(chosen, key=lambda c: (-chosen[c], c))
