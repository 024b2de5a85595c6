"""Ingestion: video file -> sampled frames -> specialists -> relations -> twin in the store (atomically)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from twinseek.config import Settings
from twinseek.errors import ModelUnavailableError, TwinseekError
from twinseek.media import encode_mask, spread
from twinseek.twins.adapters.base import (
    BatchCategoriser,
    Category,
    Detection,
    Detector,
    ObjectDetector,
    TextReader,
    TrackedObject,
    box_from_mask,
    crop,
)
from twinseek.twins.decode import DecodedVideo, VideoInfo, check_file, decode_video, is_supported, probe
from twinseek.twins.masks import mask_geometry
from twinseek.twins.model import Instance, ScreenText, Track, Twin, Video, utc_now
from twinseek.twins.relations import compute_relations, track_motion
from twinseek.twins.specialists import Specialists, build_specialists
from twinseek.twins.store import TwinStore
from twinseek.twins.views import DESCRIPTION_SOURCE, describe
from twinseek.twins.words import ANIMAL_GROUPS

logger = logging.getLogger(__name__)

CROPS_PER_TRACK = 4  # crops the categoriser sees per track (the largest views of the object)
SCENE_FRAMES = 8  # whole frames the categoriser labels one by one to describe the scene
SCENE_LABELS = 6  # labels kept for the scene
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
# Files larger than this have their container header probed before their content is hashed (hashing them costs
# more than the probe); smaller ones are hashed first, so that a re-run skips them without a probe.
PROBE_BEFORE_HASH_BYTES = 32 * 2**20


@dataclass
class IngestResult:
    path: str
    status: Literal["ingested", "skipped", "failed"]
    video_id: str | None = None
    error: str | None = None
    frames: int = 0
    tracks: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    repaired: bool = False  # the video was stored already but some of its mask files were missing
    worker: str | None = None  # who built the twin (pid@host, or the Ray node); None for the parent itself


class Timer:
    """Accumulates wall time per named step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def step(self, name: str):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def apply_torch_threads(settings: Settings) -> None:
    """Set torch's intra-op threads from the settings (see ``Settings.torch_threads``)."""
    threads = settings.torch_threads or (1 if settings.profile == "embedded" else None)
    if threads:
        import torch

        torch.set_num_threads(threads)


def file_hash(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return slug or "video"


def collect_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders (recursively) into supported video files; files are kept as given so that an
    unsupported file named explicitly is reported rather than silently ignored."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            # anything with a video suffix that is not a folder: a fifo or a broken link named clip.mp4 is
            # reported by ingest as what it is rather than silently left out
            found.extend(sorted(f for f in p.rglob("*") if is_supported(f) and not f.is_dir()))
        else:
            found.append(p)
    return found


# -- the three steps of ingesting one video ------------------------------------------------------------------
# (a) prepare, in the parent: input checks, content hash and the skip decision (a stored video never reaches a
#     worker); (b) build, in a worker (or the parent when serial): decode + specialists, a picklable BuiltTwin;
#     (c) commit, in the parent, the single writer: masks into a fresh mask folder, then the rows in one
#     transaction. Serial ingest, the process pool and Ray actors (twinseek.twins.parallel) all share (a) and (c).
@dataclass
class BuildJob:
    """A video the parent decided to build: all a worker needs (picklable: no store, no models)."""

    path: Path
    content_hash: str
    video_id: str
    timings: dict[str, float] = field(default_factory=dict)  # the parent's steps (hash)
    seconds: float = 0.0  # the parent's wall time preparing it
    attempts: int = 1
    info: VideoInfo | None = None  # the container's probe, when the parent made one (a large file)
    repaired: bool = False  # stored already, but some of its mask files were missing


@dataclass(frozen=True)
class WorkerInfo:
    """Who built a twin: process id, host, Ray node id (built by a Ray actor), the process's peak RSS."""

    pid: int
    host: str
    node_id: str | None = None
    peak_rss_mb: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.pid}@{self.host}" + (f" (node {self.node_id[:8]})" if self.node_id else "")

    @classmethod
    def here(cls) -> WorkerInfo:
        return cls(os.getpid(), socket.gethostname(), _ray_node_id(), peak_rss_mb())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux: ``VmHWM``, the high-water mark of this process's own memory (``ru_maxrss`` would also count the
    parent's memory at the fork before a spawned worker's exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource  # elsewhere: kilobytes on Linux-likes, bytes on macOS

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(maxrss / (2**20 if sys.platform == "darwin" else 1024), 1)


def _ray_node_id() -> str | None:
    ray = sys.modules.get("ray")  # only a process Ray started has it imported and initialised
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


@dataclass
class BuiltTwin:
    """A worker's result: the twin (mask paths still empty) and its masks as PNG bytes keyed by
    ``(track_id, frame_index)``. Small: a few KiB per mask, no frames."""

    twin: Twin
    masks: dict[tuple[int, int], bytes]
    frames: int
    seconds: float
    timings: dict[str, float]
    worker: WorkerInfo


class TwinBuilder:
    """Step (b): decodes a video and builds its twin. Holds the specialists, whose models load once (on first use,
    or in :meth:`warm_up`); one per worker process or Ray actor, and one in the parent for serial ingest."""

    def __init__(self, settings: Settings, specialists: Specialists | None = None) -> None:
        self.settings = settings
        self._specialists = specialists
        apply_torch_threads(settings)

    @property
    def specialists(self) -> Specialists:
        if self._specialists is None:
            self._specialists = build_specialists(self.settings)
        return self._specialists

    def build(self, job: BuildJob) -> BuiltTwin:
        start = time.perf_counter()
        timer = Timer()
        with timer.step("decode"):
            decoded = decode_video(job.path, self.settings.sampling, info=job.info)
        twin, masks = build_twin(job.video_id, decoded, job.content_hash, self.specialists, self.settings, timer)
        with timer.step("encode"):
            encoded = {key: encode_mask(mask) for key, mask in masks.items()}
        return BuiltTwin(twin, encoded, len(decoded.frames), time.perf_counter() - start, dict(timer.seconds),
                         WorkerInfo.here())

    def warm_up(self) -> WorkerInfo:
        """Load every model now (a worker does this once, before its first video), by running the specialists
        on a tiny synthetic clip; returns who this worker is."""
        frames = [np.full((64, 96, 3), 90 + 40 * i, np.uint8) for i in range(2)]
        info = VideoInfo(path=Path("warm-up"), width=96, height=64, fps=1.0, frame_count=2, duration_s=2.0)
        build_twin("warm-up", DecodedVideo(info, frames, [0, 1]), "", self.specialists, self.settings)
        return WorkerInfo.here()


class BatchBuilder(Protocol):
    """What :meth:`Ingestor.ingest_many` needs of an executor (:class:`twinseek.twins.parallel.BuildExecutor`):
    typed here so that the pipeline never imports the executors (they import the pipeline)."""

    def ingest_batch(
        self, ingestor: Ingestor, files: Sequence[Path], *, force: bool = False,
        on_done: Callable[[IngestResult], None] | None = None, retries: int = 1,
    ) -> list[IngestResult]: ...


class Ingestor:
    """Turns video files into twins in a store. Specialists are built once and reused across videos.

    :meth:`ingest` runs the three steps in this process; :meth:`ingest_many` with an ``executor`` (a process pool
    or Ray actors, see :mod:`twinseek.twins.parallel`) builds in workers while this process prepares and commits.
    """

    def __init__(self, store: TwinStore, settings: Settings, specialists: Specialists | None = None) -> None:
        self.store = store
        self.settings = settings
        self.builder = TwinBuilder(settings, specialists)

    @property
    def specialists(self) -> Specialists:
        return self.builder.specialists

    def ingest(self, path: str | Path, force: bool = False) -> IngestResult:
        """Ingest one file. Raises ``VideoError`` for bad input; nothing is written in that case.

        The file's kind, suffix and size are checked before its content is read (hashed), and so is the container
        header of a file larger than ``PROBE_BEFORE_HASH_BYTES``. A video already stored (same content) is skipped
        unless ``force``, or unless some of its mask files are missing: then it is ingested again, which repairs it.
        """
        prepared = self.prepare(path, force)
        if isinstance(prepared, IngestResult):
            return prepared
        return self.commit(prepared, self.builder.build(prepared))

    def prepare(self, path: str | Path, force: bool = False, reserved: Container[str] = ()) -> BuildJob | IngestResult:
        """Step (a): check the file and hash its content; a video already stored is skipped here (unless
        ``force`` or its mask files are missing), before any worker sees it. Returns the ``skipped`` result or the
        job to build. ``reserved``: video ids of jobs still being built (a batch assigns ids before it commits).
        Raises ``VideoError``."""
        path = Path(path)
        start = time.perf_counter()
        timer = Timer()
        with timer.step("decode"):
            size = check_file(path, self.settings.sampling)
            # a big file's container is checked before it is read whole; a small one is cheaper to hash first
            # (a probe costs ~20 ms, and a re-run skips most files without needing one)
            info = probe(path, self.settings.sampling) if size > PROBE_BEFORE_HASH_BYTES else None
        with timer.step("hash"):
            content_hash = file_hash(path)
        existing = self.store.find_by_hash(content_hash)
        repaired = False
        if existing and not force:
            missing = self.store.missing_masks(existing)
            if not missing:
                return IngestResult(str(path), "skipped", existing)
            logger.warning("%s: %d mask files of the stored twin %s are missing (e.g. %s); ingesting it again",
                           path, len(missing), existing, missing[0])
            repaired = True
        video_id = existing or self._assign_id(path, reserved)
        return BuildJob(path, content_hash, video_id, dict(timer.seconds), time.perf_counter() - start, info=info,
                        repaired=repaired)

    def commit(self, job: BuildJob, built: BuiltTwin) -> IngestResult:
        """Step (c), the single writer: the masks go to a fresh mask folder, then every row in one transaction
        (the previous twin of the video, if any, is replaced and its folder removed)."""
        start = time.perf_counter()
        twin = built.twin
        twin.video.ingested_at = utc_now()
        mask_dir = self.store.new_mask_dir(job.video_id)
        try:
            for inst in twin.instances:
                inst.mask_path = self.store.write_mask(mask_dir, inst.track_id, inst.frame_index,
                                                       built.masks[(inst.track_id, inst.frame_index)])
            self.store.put_twin(twin, mask_dir)
        except BaseException:
            self.store.discard_mask_dir(mask_dir)
            raise
        write_s = time.perf_counter() - start
        timings = dict(job.timings)
        for step, secs in [*built.timings.items(), ("write", write_s)]:
            timings[step] = timings.get(step, 0.0) + secs
        worker = None if built.worker.pid == os.getpid() else built.worker.name
        return IngestResult(str(job.path), "ingested", job.video_id, frames=built.frames, tracks=len(twin.tracks),
                            seconds=job.seconds + built.seconds + write_s, timings=timings, worker=worker,
                            repaired=job.repaired)

    def ingest_many(
        self, paths: Sequence[str | Path], force: bool = False, on_done: Callable[[IngestResult], None] | None = None,
        executor: BatchBuilder | None = None, retries: int = 1,
    ) -> list[IngestResult]:
        """Ingest files and folders; a file that fails (bad input, or any unexpected error, logged with its
        traceback) is reported as ``failed`` and the rest go on. ``KeyboardInterrupt`` still stops.

        With an ``executor`` the twins are built in its workers, and a build that fails other than for bad input
        (a crashed worker, a transient error) is tried again up to ``retries`` more times before it is reported.
        Results come back in the order of the files either way; ``on_done`` sees each as it finishes."""
        files = collect_videos(paths)
        if executor is not None:
            return executor.ingest_batch(self, files, force=force, on_done=on_done, retries=retries)
        results = []
        for path in files:
            try:
                result = self.ingest(path, force=force)
            except TwinseekError as exc:
                logger.warning("skipping %s", exc)
                result = IngestResult(str(path), "failed", error=str(exc))
            except Exception as exc:  # a bug or a crashed model on one file must not end a folder ingest
                logger.exception("unexpected error ingesting %s; going on with the next file", path)
                result = IngestResult(str(path), "failed", error=f"{path}: {type(exc).__name__}: {exc}")
            results.append(result)
            if on_done:
                on_done(result)
        return results

    def _assign_id(self, path: Path, reserved: Container[str] = ()) -> str:
        """The file's stem as a slug; a different file with the same stem gets a hash suffix. A changed file
        at a path already in the store keeps its id (the new twin replaces the old)."""
        same_path = self.store.find_by_path(str(path.resolve()))
        if same_path:
            return same_path.video_id
        base = slugify(path.stem)
        if base not in self.store and base not in reserved:
            return base
        return f"{base}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"


def build_twin(
    video_id: str,
    decoded: DecodedVideo,
    content_hash: str,
    specialists: Specialists,
    settings: Settings,
    timer: Timer | None = None,
) -> tuple[Twin, dict[tuple[int, int], np.ndarray]]:
    """Run the specialists over decoded frames. Returns the twin (mask paths still empty) and its masks
    keyed by ``(track_id, frame_index)``."""
    timer = timer or Timer()
    frames, indices, info = decoded.frames, decoded.indices, decoded.info
    vocabulary = settings.paper.vocabulary if specialists.detector.open_vocabulary else None
    with timer.step("detect"):
        seeds = _detect_seeds(frames, specialists, settings, vocabulary)
    if specialists.objects is not None:
        with timer.step("objects"):
            _add_object_seeds(seeds, frames, specialists.objects, settings.perception.detector_keyframes)
    with timer.step("segment"):
        tracked = [t for t in specialists.segmenter.segment(frames, seeds) if t.masks]
    tracked.sort(key=lambda t: (min(t.masks), t.track_id))
    depth_maps: dict[int, np.ndarray] = {}
    if specialists.depth is not None:
        with timer.step("depth"):
            depth_maps = {pos: specialists.depth.estimate(frames[pos]) for pos in range(len(frames))}
    built: list[tuple[TrackedObject, list[Instance], dict[tuple[int, int], np.ndarray]]] = []
    for obj in tracked:
        track_insts, track_masks = _instances(video_id, len(built) + 1, obj, indices, depth_maps)
        if track_insts:
            built.append((obj, track_insts, track_masks))
    with timer.step("categorise"):
        labelled = _categorise_video([b[0] for b in built], frames, specialists, settings, vocabulary)
    categories = labelled.choices
    tracks, instances, masks = [], [], {}
    for new_id, ((obj, track_insts, track_masks), category, votes) in enumerate(
            zip(built, categories, labelled.votes), start=1):
        with timer.step("describe"):
            attributes = _describe(obj, frames, specialists, category[0])
        for inst in track_insts:
            inst.category, inst.category_score, inst.attributes = category[0], category[1], attributes
        speed, direction = track_motion(track_insts, info.fps)
        tracks.append(Track(
            video_id=video_id, track_id=new_id, category=category[0], category_score=category[1],
            category_source=category[2], category_group=category[3], category_candidates=category[4],
            votes=votes, attributes=attributes, first_frame=track_insts[0].frame_index,
            last_frame=track_insts[-1].frame_index, frame_count=len(track_insts),
            mean_area=float(np.mean([i.area for i in track_insts])), speed=speed, direction=direction,
        ))
        instances.extend(track_insts)
        masks.update(track_masks)
    with timer.step("relations"):
        relations = compute_relations(instances, indices)
    screen_text: list[ScreenText] = []
    if specialists.reader is not None:
        with timer.step("text"):
            screen_text = _read_text(frames, indices, specialists.reader, settings.perception.ocr_keyframes)
    video = Video(
        video_id=video_id, path=str(info.path.resolve()), content_hash=content_hash, width=info.width,
        height=info.height, fps=info.fps, frame_count=info.frame_count, duration_s=info.duration_s,
        sampled_frames=indices, profile=settings.profile, specialists=specialists.provenance(),
        scene=labelled.scene, frame_votes=labelled.frame_votes, screen_text=screen_text,
    )
    twin = Twin(video=video, tracks=tracks, instances=instances, relations=relations)
    with timer.step("words"):
        twin.video.description, twin.video.description_source = describe(twin), DESCRIPTION_SOURCE
    return twin, masks


CategoryChoice = tuple[str, float, str, str | None, list[tuple[str, float]]]


@dataclass
class VideoLabels:
    """What the categoriser said about a video: each object's category (``choices``) and the share of its views
    each candidate label won (``votes``), the scene labels, and the share of scene frames each label won."""

    choices: list[CategoryChoice]
    votes: list[dict[str, float]]
    scene: list[tuple[str, float]]
    frame_votes: dict[str, float]


def _votes(found: Sequence[Category]) -> dict[str, float]:
    return {c.label: round(c.votes, 3) for c in found if c.votes}


def _categorise_video(
    objects: Sequence[TrackedObject], frames: Sequence[np.ndarray], specialists: Specialists, settings: Settings,
    vocabulary: Sequence[str] | None,
) -> VideoLabels:
    """Categories of every object and the scene labels, from one batched call where the detector allows it.

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
    picks = spread(len(frames), SCENE_FRAMES)
    # scene frames one by one, so that a label seen in part of the video (a cut, a pan) is not averaged away
    found = _categorise_groups(specialists.detector, groups + [[frames[p]] for p in picks], vocabulary,
                               hints + [None] * len(picks))
    choices = [_categorise(obj, f, specialists, hint, detector_model) for obj, f, hint in zip(objects, found, hints)]
    totals: dict[str, float] = defaultdict(float)
    firsts: dict[str, float] = defaultdict(float)
    for labels in found[len(objects):]:
        for c in labels[:2]:
            totals[c.label] += c.score / max(len(picks), 1)
        if labels:
            firsts[labels[0].label] += 1 / len(picks)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:SCENE_LABELS]
    frame_votes = {label: round(share, 3) for label, share in sorted(firsts.items(), key=lambda kv: -kv[1])}
    return VideoLabels(choices, [_votes(f) for f in found[:len(objects)]],
                       [(label, round(score, 3)) for label, score in ranked], frame_votes)


def _categorise_groups(
    detector: Detector, groups: list[list[np.ndarray]], vocabulary: Sequence[str] | None, hints: list[str | None],
) -> list[list[Category]]:
    if isinstance(detector, BatchCategoriser):
        return detector.categorise_batch(groups, vocabulary, hints)
    return [detector.categorise(g, vocabulary) if g else [] for g in groups]


def _add_object_seeds(
    seeds: dict[int, list[Detection]], frames: Sequence[np.ndarray], objects: ObjectDetector, k: int
) -> None:
    """COCO boxes on ``k`` keyframes join the seeds (the segmenter carries them to the frames between).

    A person box that a person mask already covers only confirms it (the mask is finer than a box)."""
    positions = spread(len(frames), k)
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
    frames: Sequence[np.ndarray], indices: Sequence[int], reader: TextReader, k: int
) -> list[ScreenText]:
    """On-screen text of ``k`` keyframes, read only where the reader's cheap test finds text."""
    found = []
    for pos in spread(len(frames), k):
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
    frames: Sequence[np.ndarray], specialists: Specialists, settings: Settings, vocabulary: Sequence[str] | None
) -> dict[int, list[Detection]]:
    # A detector cheap enough for every frame runs on each; a slower one on a few keyframes.
    if specialists.detector.every_frame:
        positions = list(range(len(frames)))
    else:
        positions = spread(len(frames), settings.paper.keyframes)
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
