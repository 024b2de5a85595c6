"""Perception of one decoded video: the specialists' seeds, tracks, depth, categories, attributes and on-screen text,
and the relations between the tracks, become the video's twin (what step (b) of :mod:`twinseek.twins.pipeline` runs
on the frames it decoded)."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from twinseek.config import Settings
from twinseek.errors import ModelUnavailableError
from twinseek.media.decode import DecodedVideo, VideoInfo
from twinseek.media.masks import keyframes
from twinseek.media.shots import ShotSpan
from twinseek.timing import timed
from twinseek.twins.actions import add_actions
from twinseek.twins.adapters.base import Detection, ObjectDetector, TextReader, TrackedObject
from twinseek.twins.categories import categorise_video
from twinseek.twins.masks import mask_geometry
from twinseek.twins.model import Instance, Relation, ScreenText, Shot, Track, Twin, Video
from twinseek.twins.relations import compute_relations, track_motion
from twinseek.twins.specialists import Specialists
from twinseek.twins.speech import transcribe_video
from twinseek.twins.views import DESCRIPTION_SOURCE, describe

logger = logging.getLogger(__name__)


@dataclass
class Perceived:
    """What the specialists see in a run of sampled frames (a whole short video, or a chunk of a long one's shots):
    everything of the twin but the video row, its speech and its description. Track ids count from 1."""

    tracks: list[Track]
    instances: list[Instance]
    masks: dict[tuple[int, int], np.ndarray]  # (track_id, frame_index) -> mask
    relations: list[Relation]
    screen_text: list[ScreenText]
    scene: list[tuple[str, float]]
    frame_votes: dict[str, float]
    frames: int  # how many sampled frames it saw
    frame_labels: dict[int, list[tuple[str, float]]] = field(default_factory=dict)  # source frame -> its labels


def build_twin(
    video_id: str,
    decoded: DecodedVideo,
    content_hash: str,
    specialists: Specialists,
    settings: Settings,
    timings: dict[str, float] | None = None,
) -> tuple[Twin, dict[tuple[int, int], np.ndarray]]:
    """Run the specialists over decoded frames. Returns the twin (mask paths still empty) and its masks
    keyed by ``(track_id, frame_index)``."""
    timings = {} if timings is None else timings  # seconds per step, added to the caller's
    seen = perceive(video_id, decoded.frames, decoded.indices, decoded.info.fps, specialists, settings, timings,
                    runs=shot_runs(decoded.indices, getattr(decoded, "shots", None) or []))
    twin = assemble_twin(video_id, decoded.info, content_hash, decoded.indices, seen, _shots(decoded), specialists,
                         settings, timings)
    return twin, seen.masks


def perceive(
    video_id: str,
    frames: Sequence[np.ndarray],
    indices: Sequence[int],
    fps: float,
    specialists: Specialists,
    settings: Settings,
    timings: dict[str, float],
    runs: Sequence[range] | None = None,
) -> Perceived:
    """The specialists over sampled frames (``indices``: their source frame indices).

    ``runs``: the positions of the frames of each shot, in order (:func:`shot_runs`; None: one shot). Objects are
    followed within a shot only (a mask carried across a cut lands on another scene), and the keyframe models see
    every shot."""
    runs = list(runs) if runs else [range(len(frames))]
    vocabulary = settings.paper.vocabulary if specialists.detector.open_vocabulary else None
    with timed(timings, "detect"):
        seeds = _detect_seeds(frames, runs, specialists, settings, vocabulary)
    if specialists.objects is not None:
        with timed(timings, "objects"):
            _add_object_seeds(seeds, frames, specialists.objects, keyframes(runs, settings.perception.detector_keyframes))
    with timed(timings, "segment"):
        tracked = _segment_shots(frames, seeds, runs, specialists)
    tracked.sort(key=lambda t: (min(t.masks), t.track_id))
    depth_maps: dict[int, np.ndarray] = {}
    if specialists.depth is not None:
        with timed(timings, "depth"):
            depth_maps = {pos: specialists.depth.estimate(frames[pos]) for pos in range(len(frames))}
    built: list[tuple[TrackedObject, list[Instance], dict[tuple[int, int], np.ndarray]]] = []
    for obj in tracked:
        track_insts, track_masks = _instances(video_id, len(built) + 1, obj, indices, depth_maps)
        if track_insts:
            built.append((obj, track_insts, track_masks))
    with timed(timings, "categorise"):
        labelled = categorise_video([b[0] for b in built], frames, specialists, settings, vocabulary, runs)
    categories = labelled.choices
    tracks, instances, masks = [], [], {}
    for new_id, ((obj, track_insts, track_masks), category, votes) in enumerate(
            zip(built, categories, labelled.votes), start=1):
        with timed(timings, "describe"):
            attributes = _describe(obj, frames, specialists, category[0])
        for inst in track_insts:
            inst.category, inst.category_score, inst.attributes = category[0], category[1], attributes
        speed, direction = track_motion(track_insts, fps)
        tracks.append(Track(
            video_id=video_id, track_id=new_id, category=category[0], category_score=category[1],
            category_source=category[2], category_group=category[3], category_candidates=category[4],
            votes=votes, attributes=attributes, first_frame=track_insts[0].frame_index,
            last_frame=track_insts[-1].frame_index, frame_count=len(track_insts),
            mean_area=float(np.mean([i.area for i in track_insts])), speed=speed, direction=direction,
        ))
        instances.extend(track_insts)
        masks.update(track_masks)
    if specialists.pose is not None:
        with timed(timings, "pose"):
            add_actions(tracks, instances, frames, indices, fps, specialists.pose)
    with timed(timings, "relations"):
        relations = compute_relations(instances, indices)
    screen_text: list[ScreenText] = []
    if specialists.reader is not None:
        with timed(timings, "text"):
            screen_text = _read_text(frames, indices, specialists.reader,
                                     keyframes(runs, settings.perception.ocr_keyframes))
    return Perceived(tracks, instances, masks, relations, screen_text, list(labelled.scene),
                     dict(labelled.frame_votes), len(frames),
                     {indices[pos]: labels for pos, labels in labelled.frame_labels.items()})


def assemble_twin(
    video_id: str,
    info: VideoInfo,
    content_hash: str,
    indices: Sequence[int],
    seen: Perceived,
    shots: list[Shot],
    specialists: Specialists,
    settings: Settings,
    timings: dict[str, float],
) -> Twin:
    """The twin of a video from what was perceived in it: its video row, its speech (run here, once per video) and
    its description."""
    video = Video(
        video_id=video_id, path=str(info.path.resolve()), content_hash=content_hash, width=info.width,
        height=info.height, fps=info.fps, frame_count=info.frame_count, duration_s=info.duration_s,
        sampled_frames=list(indices), profile=settings.profile, specialists=specialists.provenance(),
        scene=seen.scene, frame_votes=seen.frame_votes, screen_text=seen.screen_text,
    )
    with timed(timings, "speech"):
        speech = transcribe_video(info.path, specialists.speech, settings)
    twin = Twin(video=video, tracks=seen.tracks, instances=seen.instances, relations=seen.relations, speech=speech,
                shots=label_shots(shots, seen.frame_labels))
    with timed(timings, "words"):
        twin.video.description, twin.video.description_source = describe(twin), DESCRIPTION_SOURCE
    return twin


def _shots(decoded: DecodedVideo) -> list[Shot]:
    """The twin's shots: those the decoding pass found (:class:`~twinseek.media.shots.ShotVideo`), else the whole
    video as one shot (frames decoded without shot detection)."""
    spans = getattr(decoded, "shots", None) or []
    if spans:
        return shots_of(spans, decoded.info.fps)
    fps, count = decoded.info.fps, decoded.info.frame_count
    return [Shot(index=0, start_frame=0, end_frame=max(count - 1, 0), start_s=0.0,
                 end_s=count / fps if fps > 0 else 0.0, key_frames=list(decoded.indices))]


def shots_of(spans: Sequence[ShotSpan], fps: float) -> list[Shot]:
    """The twin's shots from the decoding pass's spans: times from the frame rate (a shot ends when its last frame
    does)."""
    return [Shot(index=s.index, start_frame=s.start_frame, end_frame=s.end_frame,
                 start_s=s.start_frame / fps if fps > 0 else 0.0,
                 end_s=(s.end_frame + 1) / fps if fps > 0 else 0.0, key_frames=list(s.key_frames))
            for s in spans]


SHOT_LABELS = 5  # labels kept per shot


def label_shots(shots: Sequence[Shot], frame_labels: dict[int, list[tuple[str, float]]]) -> list[Shot]:
    """The shots with their labels: per shot, each label's mean score over the shot's labelled frames (a frame
    that lacks a label scores 0 for it), best first. A shot without a labelled frame keeps none."""
    frames = sorted(frame_labels)
    labelled = []
    for shot in shots:
        inside = [frame_labels[f] for f in
                  frames[bisect.bisect_left(frames, shot.start_frame):bisect.bisect_right(frames, shot.end_frame)]]
        totals: dict[str, float] = {}
        for labels in inside:
            for label, score in labels:
                totals[label] = totals.get(label, 0.0) + score / len(inside)
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:SHOT_LABELS]
        labelled.append(shot.model_copy(update={"labels": [(label, round(score, 3)) for label, score in ranked]}))
    return labelled


def shot_runs(indices: Sequence[int], shots: Sequence[ShotSpan]) -> list[range]:
    """The positions (in ``indices``, the sampled frames) of each shot's frames, in order; shots without a sampled
    frame are left out. One run for a video without shots."""
    if not shots:
        return [range(len(indices))]
    runs, start = [], 0
    for shot in shots:
        end = start
        while end < len(indices) and indices[end] <= shot.end_frame:
            end += 1
        if end > start:
            runs.append(range(start, end))
        start = end
    if start < len(indices):  # frames past the last shot's end (not expected): their own run
        runs.append(range(start, len(indices)))
    return runs


def _segment_shots(frames: Sequence[np.ndarray], seeds: dict[int, list[Detection]], runs: Sequence[range],
                   specialists: Specialists) -> list[TrackedObject]:
    """The segmenter over each shot's frames on its own; track ids stay distinct across shots."""
    if len(runs) == 1 and len(runs[0]) == len(frames):
        return [t for t in specialists.segmenter.segment(frames, seeds) if t.masks]
    tracked: list[TrackedObject] = []
    for run in runs:
        local = {pos - run.start: dets for pos, dets in seeds.items() if pos in run}
        for obj in specialists.segmenter.segment([frames[p] for p in run], local):
            if obj.masks:
                obj.masks = {pos + run.start: mask for pos, mask in obj.masks.items()}
                obj.track_id = len(tracked) + 1
                tracked.append(obj)
    return tracked


def _add_object_seeds(
    seeds: dict[int, list[Detection]], frames: Sequence[np.ndarray], objects: ObjectDetector, positions: list[int]
) -> None:
    """COCO boxes on keyframes (``positions``) join the seeds (the segmenter carries them to the frames between).

    A person box that a person mask already covers only confirms it (the mask is finer than a box)."""
    for pos, boxes in zip(positions, objects.detect_batch([frames[p] for p in positions])):
        existing = seeds.setdefault(pos, [])
        people = [s for s in existing if s.mask is not None and s.label == "person"]
        for det in boxes:
            if det.label == "person" and people:
                continue  # the person masks of this frame are finer; more person boxes split their tracks
            twin = next((s for s in existing if s.mask is not None and s.label == det.label
                         and _inside(s.mask, det.box) >= PERSON_BOX_COVER), None)
            if twin is not None:
                twin.score = max(twin.score, det.score)
                continue
            existing.append(det)


PERSON_BOX_COVER = 0.3  # share of a seed mask inside a same-label box for the box to only confirm it


def _inside(mask: np.ndarray, box: tuple[float, float, float, float]) -> float:
    area = int(mask.sum())
    if not area:
        return 0.0
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(mask[max(0, y1):max(0, y2), max(0, x1):max(0, x2)].sum()) / area


def _read_text(
    frames: Sequence[np.ndarray], indices: Sequence[int], reader: TextReader, positions: list[int]
) -> list[ScreenText]:
    """On-screen text of keyframes (``positions``), read only where the reader's cheap test finds text."""
    found = []
    for pos in positions:
        frame = frames[pos]
        try:
            lines = reader.read(frame) if reader.has_text(frame) else []
        except ModelUnavailableError:
            raise
        except Exception:  # text is optional: keep the twin
            logger.exception("text reader failed on sampled frame %d", pos)
            continue
        h, w = frame.shape[:2]
        for line in lines:
            x1, y1, x2, y2 = line.box
            found.append(ScreenText(frame_index=indices[pos], text=line.text, score=line.score,
                                    bbox=(max(0.0, x1 / w), max(0.0, y1 / h), min(1.0, x2 / w), min(1.0, y2 / h))))
    return found


def _detect_seeds(
    frames: Sequence[np.ndarray], runs: Sequence[range], specialists: Specialists, settings: Settings,
    vocabulary: Sequence[str] | None,
) -> dict[int, list[Detection]]:
    # A detector cheap enough for every frame runs on each; a slower one on a few keyframes (and every shot).
    if specialists.detector.every_frame:
        positions = list(range(len(frames)))
    else:
        positions = keyframes(runs, settings.paper.keyframes)
    return {pos: specialists.detector.detect(frames[pos], vocabulary) for pos in positions}


def _instances(
    video_id: str, track_id: int, obj: TrackedObject, indices: Sequence[int], depth_maps: dict[int, np.ndarray]
) -> tuple[list[Instance], dict[tuple[int, int], np.ndarray]]:
    insts, masks = [], {}
    for pos in sorted(obj.masks):
        mask = obj.masks[pos]
        geometry = mask_geometry(mask)
        if geometry is None:
            continue
        bbox, centroid, area = geometry
        depth = None
        if pos in depth_maps:
            h, w = mask.shape
            depth = float(depth_maps[pos][min(int(centroid[1] * h), h - 1), min(int(centroid[0] * w), w - 1)])
        insts.append(Instance(video_id=video_id, track_id=track_id, frame_index=indices[pos], category="",
                              category_score=0.0, mask_path="", bbox=bbox, centroid=centroid, depth=depth, area=area))
        masks[(track_id, indices[pos])] = mask
    return insts, masks



def _typical_view(obj: TrackedObject) -> int:
    """The frame whose mask area is the track's median: the largest view is often one that bled into the
    background."""
    areas = {pos: int(m.sum()) for pos, m in obj.masks.items()}
    median = float(np.median(list(areas.values())))
    return min(areas, key=lambda pos: abs(areas[pos] - median))


def _describe(obj: TrackedObject, frames: Sequence[np.ndarray], specialists: Specialists, category: str) -> str:
    pos = _typical_view(obj)
    try:
        return specialists.describer.describe(frames[pos], obj.masks[pos], category)
    except Exception:  # an attribute text is optional: keep the twin
        logger.exception("attribute describer failed on track %s", obj.track_id)
        return ""
