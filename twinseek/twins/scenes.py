"""Scenes: runs of adjacent shots that show the same thing, read from a twin's shot labels.

A long video's whole-video words (its six scene labels, its gist) mix everything it shows: a news programme's studio
and its reports, or the six clips of a moment-bench video. Its shots are too fine a unit for words: a scene cut
into many shots (a dialogue, a looped clip) leaves each shot one or two sampled frames. A *scene* is the unit
between: consecutive shots whose whole-frame labels (:attr:`~twinseek.twins.model.Shot.labels`) agree. Each scene
gets its own labels and gist (:func:`scene_twin` restricts the twin to it), which is what the component catalogue
and the dense index read for a video of several scenes (:mod:`twinseek.twins.views`,
:mod:`twinseek.retrieval.dense`).

Scenes are derived, never stored: they follow from the shots and their labels, which ingest stores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from twinseek.twins.model import Shot, Twin

# Two shots' labels agree (a link) when the cosine of their scores is at least this. Chosen with SCENE_WINDOW on
# fold 0 of the moment bench (benchmarks/scenes.py; benchmarks/results/moments/scenes.json).
SCENE_SIMILARITY = 0.8
SCENE_WINDOW = 3  # labelled shots back a shot may link to (3: a scene of alternating views, A B C A, stays one)
SCENE_LABELS = 6  # labels kept per scene (as many as a video's scene labels)


@dataclass(frozen=True)
class Scene:
    """A run of shots (``shots``: their indices) from ``start_s`` to ``end_s``, with its labels (the mean of its
    labelled shots', best first)."""

    index: int
    shots: tuple[int, ...]
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    labels: tuple[tuple[str, float], ...]


SPAN_EPS = 1e-6  # seconds: a span of no length is given this much, so that it meets the segment it lies in


def spans_meet(spans: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and last segment of a time line (``starts``, ``ends``: seconds, in time order, not overlapping)
    that each span (rows of ``spans``: start, end seconds) meets. A span of no length meets the segment it lies in;
    one outside every segment (rounding at the end), the nearest. What places a component in a video's shots or
    scenes (:mod:`twinseek.retrieval.moments`, :mod:`twinseek.retrieval.components`)."""
    ends = np.maximum(ends, starts + SPAN_EPS)
    first = np.minimum(np.searchsorted(ends, spans[:, 0], side="right"), len(starts) - 1)
    last = np.maximum(np.searchsorted(starts, np.maximum(spans[:, 1], spans[:, 0] + SPAN_EPS), side="left") - 1,
                      first)
    return first, np.minimum(last, len(starts) - 1)


def label_similarity(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """The cosine of two label-score maps (0 when either is empty)."""
    dot = sum(score * b.get(label, 0.0) for label, score in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm > 0 else 0.0


def _mean(maps: Sequence[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for m in maps:
        for label, score in m.items():
            total[label] = total.get(label, 0.0) + score / len(maps)
    return total


def group_shots(shots: Sequence[Shot], threshold: float = SCENE_SIMILARITY,
                window: int = SCENE_WINDOW) -> list[list[Shot]]:
    """The shots (in time order) in scenes, by overlapping links (Hanjalic et al., 1999): a labelled shot links
    back to the latest of the ``window`` labelled shots before it whose labels agree with its own (cosine >=
    ``threshold``), and a scene ends only between two labelled shots that no link spans. So a scene may alternate
    views (shot, reverse shot, shot: A B A) and still be one.

    A shot without labels (the sampling saw none of its frames) says nothing: inside a scene it belongs to it;
    between two scenes, it goes to the nearer one's side of the middle of the unseen stretch; before the first
    labelled shot, to the first scene; after the last, to the last."""
    ordered = sorted(shots, key=lambda s: s.index)
    labelled = [s for s in ordered if s.labels]
    if not labelled:
        return [ordered] if ordered else []
    maps = [dict(s.labels) for s in labelled]
    reach = list(range(len(labelled)))  # reach[j]: the furthest labelled shot a link from j goes to
    for i in range(1, len(labelled)):
        for j in range(i - 1, max(-1, i - 1 - window), -1):
            if label_similarity(maps[j], maps[i]) >= threshold:
                reach[j] = max(reach[j], i)
                break
    groups: list[list[Shot]] = [[labelled[0]]]
    spanned = reach[0]
    for i in range(1, len(labelled)):
        if spanned >= i:
            groups[-1].append(labelled[i])
        else:
            groups.append([labelled[i]])
        spanned = max(spanned, reach[i])
    firsts = [members[0] for members in groups]
    lasts = [members[-1] for members in groups]
    placed: list[list[Shot]] = [[] for _ in groups]
    g = 0  # the scene whose first labelled shot is the latest at or before this shot (scenes are contiguous)
    for shot in ordered:
        while g + 1 < len(groups) and shot.index >= firsts[g + 1].index:
            g += 1
        if shot.index <= lasts[g].index or g + 1 == len(groups):  # inside scene g, before the first, after the last
            placed[g].append(shot)
        else:  # between scenes g and g + 1: the middle of the unseen stretch decides
            middle = (lasts[g].end_s + firsts[g + 1].start_s) / 2
            placed[g if (shot.start_s + shot.end_s) / 2 < middle else g + 1].append(shot)
    return placed


def scenes(twin: Twin, threshold: float = SCENE_SIMILARITY, window: int = SCENE_WINDOW) -> list[Scene]:
    """The twin's scenes, in time order; none when it has fewer than two (no shots, shots without labels, or
    shots that all agree): the whole video is then its one scene, read by the whole-video words."""
    groups = group_shots(twin.shots, threshold, window)
    if len(groups) < 2:
        return []
    found = []
    for n, members in enumerate(groups):
        profile = _mean([dict(s.labels) for s in members if s.labels])
        ranked = sorted(profile.items(), key=lambda kv: (-kv[1], kv[0]))[:SCENE_LABELS]
        found.append(Scene(
            index=n, shots=tuple(s.index for s in members), start_frame=min(s.start_frame for s in members),
            end_frame=max(s.end_frame for s in members), start_s=min(s.start_s for s in members),
            end_s=max(s.end_s for s in members), labels=tuple((label, round(score, 3)) for label, score in ranked)))
    return found


def scene_twin(twin: Twin, scene: Scene) -> Twin:
    """The twin restricted to one scene: its labels as the scene labels, the tracks seen in it (with their
    instances and relations), the on-screen text read in it and the speech said in it."""
    lo, hi = scene.start_frame, scene.end_frame
    tracks = [t for t in twin.tracks if t.first_frame <= hi and t.last_frame >= lo]
    kept = {t.track_id for t in tracks}
    video = twin.video.model_copy(update={
        "scene": list(scene.labels), "frame_votes": {},
        "screen_text": [s for s in twin.video.screen_text if lo <= s.frame_index <= hi],
        "sampled_frames": [f for f in twin.video.sampled_frames if lo <= f <= hi],
    })
    speech = twin.speech
    if speech is not None:
        speech = speech.model_copy(update={"segments": [
            s for s in speech.segments if s.start < scene.end_s and s.end > scene.start_s]})
    return twin.model_copy(update={
        "video": video, "tracks": tracks, "speech": speech,
        "instances": [i for i in twin.instances if i.track_id in kept and lo <= i.frame_index <= hi],
        "relations": [r for r in twin.relations if r.subject_track in kept
                      and (r.object_track is None or r.object_track in kept)],
        "shots": [s for s in twin.shots if s.index in set(scene.shots)],
    })
