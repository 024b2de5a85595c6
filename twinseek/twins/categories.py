"""Which category each tracked object and the scene get: the categoriser's candidates for the object's largest
views, weighed against a confident object-detector label (the hint: ``car`` is refined to ``sports car``) and the
label the object's seed carried (``person`` from a person mask)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from twinseek.config import Settings
from twinseek.media.masks import keyframes, spread
from twinseek.twins.adapters.base import (
    BatchCategoriser,
    Category,
    Detector,
    TrackedObject,
    box_from_mask,
    crop,
)
from twinseek.twins.specialists import Specialists
from twinseek.twins.words import ANIMAL_GROUPS

CROPS_PER_TRACK = 4  # crops the categoriser sees per track (the largest views of the object)
SCENE_FRAMES = 8  # whole frames the categoriser labels one by one to describe the scene
SCENE_LABELS = 6  # labels kept for the scene
SHOT_FRAMES = 3  # frames of each shot labelled on their own (the shot's labels: twinseek.twins.scenes)
SEED_LABEL_MIN = 0.5  # a seed label at least this confident beats the categoriser (e.g. "person") ...
CLASSIFIER_UNSURE = 0.15  # a classifier top score below this is a guess: a weak seed label beats it
COCO_ANIMALS = frozenset({"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"})
OTHER_ANIMAL_MIN = 0.3  # an ImageNet animal outside COCO's category needs this to rename a COCO animal
CLASSIFIER_SURE = 0.5  # a classifier top score outside the detector's category (and above its score) wins
REFINE_MIN = 0.1  # a classifier candidate within the detector's category needs this to name it (car -> cab)
GROUP_OVERRIDE_MIN = 0.35  # ... unless the categoriser's candidates put this much mass on one other group
# Groups an object carrying a person seed may plausibly be classified as (a person's crop is often
# "jersey" or "unicycle" for a closed-set classifier): these never override the seed.
SEED_COMPATIBLE_GROUPS = frozenset({"person", "clothing", "sports"})


CategoryChoice = tuple[str, float, str, str | None, list[tuple[str, float]]]


@dataclass
class VideoLabels:
    """What the categoriser said about a video: each object's category (``choices``) and the share of its views
    each candidate label won (``votes``), the scene labels, the share of scene frames each label won, and the
    labels of each scene frame (by position in the frames: what labels the shots)."""

    choices: list[CategoryChoice]
    votes: list[dict[str, float]]
    scene: list[tuple[str, float]]
    frame_votes: dict[str, float]
    frame_labels: dict[int, list[tuple[str, float]]] = field(default_factory=dict)


def _votes(found: Sequence[Category]) -> dict[str, float]:
    return {c.label: round(c.votes, 3) for c in found if c.votes}


def categorise_video(
    objects: Sequence[TrackedObject], frames: Sequence[np.ndarray], specialists: Specialists, settings: Settings,
    vocabulary: Sequence[str] | None, runs: Sequence[range] | None = None,
) -> VideoLabels:
    """Categories of every object and the scene labels, from one batched call where the detector allows it.

    The scene frames are ``SCENE_FRAMES`` spread over the video and the middle frame of every shot (``runs``: the
    positions of each shot's frames) that none of them falls in. Besides, up to ``SHOT_FRAMES`` frames spread over
    each shot are labelled (``frame_labels``): a shot's labels, which do not depend on how a long video was cut
    into chunks.

    A confident label from the object detector (COCO) is used as a hint: the classifier then only refines it
    (``car`` -> ``sports car``)."""
    detector_model = specialists.objects.model if specialists.objects is not None else None
    confident = settings.perception.detector_confident
    groups, hints = [], []
    for obj in objects:
        crops = []
        for pos in _largest_views(obj, CROPS_PER_TRACK):
            box = box_from_mask(obj.masks[pos])
            if box is not None:
                crops.append(crop(frames[pos], box))
        groups.append(crops)
        from_detector = bool(obj.label) and obj.label_source == detector_model and obj.label_score >= confident
        hints.append(obj.label if from_detector else None)
    picks = keyframes(runs, SCENE_FRAMES) if runs else spread(len(frames), SCENE_FRAMES)
    # each shot's own frames, the same however the video is cut into chunks: what its labels come from
    shot_picks = sorted({run[i] for run in runs or [] for i in spread(len(run), SHOT_FRAMES)})
    chosen = set(picks)
    extra = [p for p in shot_picks if p not in chosen]
    # scene frames one by one, so that a label seen in part of the video (a cut, a pan) is not averaged away
    found = _categorise_groups(specialists.detector, groups + [[frames[p]] for p in picks + extra], vocabulary,
                               hints + [None] * (len(picks) + len(extra)))
    choices = [_categorise(obj, f, specialists, hint, detector_model) for obj, f, hint in zip(objects, found, hints)]
    totals: dict[str, float] = defaultdict(float)
    firsts: dict[str, float] = defaultdict(float)
    by_pick = dict(zip(picks + extra, found[len(objects):]))
    for labels in (by_pick[p] for p in picks):
        for c in labels[:2]:
            totals[c.label] += c.score / max(len(picks), 1)
        if labels:
            firsts[labels[0].label] += 1 / len(picks)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:SCENE_LABELS]
    frame_votes = {label: round(share, 3) for label, share in sorted(firsts.items(), key=lambda kv: -kv[1])}
    frame_labels = {pos: [(c.label, round(c.score, 3)) for c in by_pick[pos]] for pos in shot_picks}
    return VideoLabels(choices, [_votes(f) for f in found[:len(objects)]],
                       [(label, round(score, 3)) for label, score in ranked], frame_votes, frame_labels)


def _categorise_groups(
    detector: Detector, groups: list[list[np.ndarray]], vocabulary: Sequence[str] | None, hints: list[str | None],
) -> list[list[Category]]:
    if isinstance(detector, BatchCategoriser):
        return detector.categorise_batch(groups, vocabulary, hints)
    return [detector.categorise(g, vocabulary) if g else [] for g in groups]


def _largest_views(obj: TrackedObject, k: int) -> list[int]:
    return sorted(obj.masks, key=lambda pos: -int(obj.masks[pos].sum()))[:k]



def _categorise(
    obj: TrackedObject, found: Sequence[Category], specialists: Specialists, hint: str | None,
    detector_model: str | None,
) -> CategoryChoice:
    """(label, score, source, group, runner-ups) of one object from its classifier candidates ``found``.

    A confident object-detector label (``hint``) decides the category; the classifier only names it more
    precisely when one of its candidates within that category is probable enough. Otherwise a confident seed
    label (a person mask) wins over the categoriser unless the categoriser is sure of another group."""
    plain = [c for c in found if c.group != hint] if hint else list(found)
    within_best = max((c.score for c in found if c.group == hint), default=0.0)
    if hint is not None and plain and (
        plain[0].score >= max(CLASSIFIER_SURE, obj.label_score)
        # COCO has ten animals and names any other after the nearest (a camel is its "horse"): an animal the
        # classifier prefers to every one within COCO's category is the better name
        or (hint in COCO_ANIMALS and plain[0].group in ANIMAL_GROUPS and plain[0].score >= OTHER_ANIMAL_MIN
            and plain[0].score > within_best)):
        hint = None
        found = plain
    if hint is not None:
        within = [c for c in found if c.group == hint]
        runners = [(c.label, round(c.score, 3)) for c in plain[:3] if c.label != hint]
        if within and within[0].score >= REFINE_MIN and within[0].label != hint:
            best = within[0]
            return (best.label, round(obj.label_score, 4), f"{detector_model}+{best.source}", hint,
                    [r for r in runners if r[0] != best.label])
        return hint, round(obj.label_score, 4), obj.label_source, None, runners
    runners = [(c.label, round(c.score, 3)) for c in found[:3]]
    override = _confident_group(found)
    classifier_unsure = not found or found[0].score < CLASSIFIER_UNSURE
    if obj.label and override is None and (obj.label_score >= SEED_LABEL_MIN or classifier_unsure):
        return (obj.label, obj.label_score, obj.label_source or obj.source or specialists.segmenter.model, None,
                runners)
    if not found:
        return "object", 0.0, "none", None, []
    best = override or found[0]
    score = sum(c.score for c in found if c.group == best.group) if override else best.score
    return best.label, round(score, 4), best.source, best.group, [r for r in runners if r[0] != best.label]


def _confident_group(found: Sequence[Category]) -> Category | None:
    """The best candidate of a group holding at least ``GROUP_OVERRIDE_MIN`` of the candidates' mass.

    A person segmenter also fires on animals (mediapipe masks swans and dogs): when the classifier is sure
    the object is, say, a bird, the bird wins over the seed label.
    """
    mass: dict[str, float] = defaultdict(float)
    for c in found:
        if c.group:
            mass[c.group] += c.score
    if not mass:
        return None
    group = max(mass, key=lambda g: mass[g])
    if mass[group] < GROUP_OVERRIDE_MIN or group in SEED_COMPATIBLE_GROUPS:
        return None
    return next(c for c in found if c.group == group)
