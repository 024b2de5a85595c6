"""A long video's twin, built a chunk of consecutive shots at a time and resumable.

The decoding pass (:func:`twinseek.media.shots.stream_shots`) hands over each shot with its sampled frames; shots
gather into a chunk of at most ``sampling.chunk_frames`` sampled frames, and when the next shot would not fit, the
chunk is perceived (:func:`twinseek.twins.perception.perceive`), its result staged durably and its frames dropped.
So memory holds one chunk's frames, never the video's.

Staging: ``<store>/staging/<content_hash>/`` holds ``manifest.json`` (what the chunks depend on: the video's
frame count and rate, the sampling, shot and specialist settings) and one folder per finished chunk,
``chunk-NNNN/`` (``chunk.json``: the chunk's shots, tracks, instances, relations, text, scene labels, and the pass
state after its last shot; ``masks/T-F.png``), each written under a temporary name and renamed into place. A build
of the same content that finds them (an ingest killed or failed mid-way, started again) loads the finished chunks
and resumes the pass after the last one: frames before it are decoded but not analysed, and no chunk is perceived
twice. A manifest that does not match (other settings, another version) discards the staging.

At commit the chunks merge into one twin: track ids are renumbered in order (chunk 0's first), and **tracks stay
within a chunk** (an object seen in two chunks is two tracks), and so do relations. Speech runs once per video, and
the description is written over the merged twin. A video whose shots fit one chunk never stages anything and is
built exactly as before (:func:`twinseek.twins.perception.build_twin`). The committer removes the staging.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from twinseek.config import Settings
from twinseek.errors import EmptyVideoError
from twinseek.files import write_atomic
from twinseek.media.decode import VideoInfo, probe, resample
from twinseek.media.masks import encode_mask
from twinseek.media.shots import PassState, ProgressCallback, ShotSpan, ShotVideo, stream_shots
from twinseek.timing import timed
from twinseek.twins.categories import SCENE_LABELS
from twinseek.twins.model import Instance, Relation, ScreenText, Shot, Track, Twin
from twinseek.twins.perception import Perceived, assemble_twin, build_twin, perceive, shot_runs, shots_of
from twinseek.twins.specialists import Specialists

logger = logging.getLogger(__name__)

STAGING = "staging"
STAGING_VERSION = 1  # bump when what a chunk holds changes: old staging is then discarded


def staging_dir(store: Path, content_hash: str) -> Path:
    return Path(store) / STAGING / content_hash


class ChunkRecord(BaseModel):
    """A finished chunk as staged (``chunk.json``); its masks sit beside it as PNG files."""

    index: int
    shots: list[Shot]
    indices: list[int]
    resume: dict[str, float | int]  # the PassState after the chunk's last shot
    tracks: list[Track]
    instances: list[Instance]
    relations: list[Relation]
    screen_text: list[ScreenText]
    scene: list[tuple[str, float]]
    frame_votes: dict[str, float]
    frames: int
    timings: dict[str, float]
    frame_labels: dict[int, list[tuple[str, float]]] = Field(default_factory=dict)  # chunks staged before: none


class Staging:
    """The staged chunks of one video (see the module docstring)."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.root, self.fingerprint = root, fingerprint

    def load(self) -> list[tuple[ChunkRecord, dict[tuple[int, int], bytes]]]:
        """The finished chunks, in order (stops at the first one missing or unreadable); none when the manifest
        does not match (then the staging is removed)."""
        manifest = self.root / "manifest.json"
        try:
            if json.loads(manifest.read_text())["fingerprint"] != self.fingerprint:
                logger.info("%s: staged chunks are of other settings; starting over", self.root)
                self.remove()
                return []
        except (OSError, ValueError, KeyError):
            return []
        chunks: list[tuple[ChunkRecord, dict[tuple[int, int], bytes]]] = []
        while (folder := self.root / f"chunk-{len(chunks):04d}").is_dir():
            try:
                record = ChunkRecord.model_validate_json((folder / "chunk.json").read_text())
                masks = {(i.track_id, i.frame_index): (folder / "masks" / f"{i.track_id}-{i.frame_index}.png")
                         .read_bytes() for i in record.instances}
            except (OSError, ValueError) as exc:
                logger.warning("%s: unreadable (%s); building from it again", folder, exc)
                break
            chunks.append((record, masks))
        return chunks

    def save(self, record: ChunkRecord, masks: dict[tuple[int, int], bytes]) -> None:
        """Stage one chunk atomically: written under a temporary name, then renamed into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = self.root / "manifest.json"
        if not manifest.exists():
            data = json.dumps({"fingerprint": self.fingerprint})
            write_atomic(manifest, lambda tmp: tmp.write_text(data))
        final = self.root / f"chunk-{record.index:04d}"
        tmp = self.root / f".chunk-{record.index:04d}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "masks").mkdir(parents=True)
        for (track, frame), png in masks.items():
            (tmp / "masks" / f"{track}-{frame}.png").write_bytes(png)
        (tmp / "chunk.json").write_text(record.model_dump_json())
        _fsync_dir(tmp / "masks")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(self.root)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fingerprint(info: VideoInfo, settings: Settings) -> str:
    """What staged chunks depend on: the video's length and rate and every setting that shapes a chunk."""
    parts = {"version": STAGING_VERSION, "frames": info.frame_count, "fps": info.fps,
             "sampling": settings.sampling.model_dump(mode="json"), "shots": settings.shots.model_dump(mode="json"),
             "profile": settings.profile, "specialists": settings.specialists.model_dump(mode="json"),
             "perception": settings.perception.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class ChunkedBuild:
    """One video's build, a chunk of shots at a time (see the module docstring)."""

    def __init__(self, video_id: str, info: VideoInfo, content_hash: str, specialists: Specialists,
                 settings: Settings, timings: dict[str, float], on_chunk: Callable[[int], None] | None = None) -> None:
        self.video_id, self.info, self.content_hash = video_id, info, content_hash
        self.specialists, self.settings, self.timings = specialists, settings, timings
        self.on_chunk = on_chunk
        self.staging = Staging(staging_dir(settings.store, content_hash), fingerprint(info, settings))
        self.done = self.staging.load()
        self.loaded = len(self.done)  # chunks a stopped build staged (their timings are not this build's)
        self.built = 0  # chunks perceived by this build (not loaded from the staging)
        self.perceive_s = 0.0  # seconds spent perceiving and staging chunks during the pass
        self.shots: list[ShotSpan] = []
        self.frames: dict[int, np.ndarray] = {}
        self.state: PassState | None = None

    @property
    def resume(self) -> PassState | None:
        if not self.done:
            return None
        resume = self.done[-1][0].resume
        return PassState(int(resume["start_frame"]), int(resume["shot_index"]), float(resume["carry"]),
                         int(resume["given"]))

    def add(self, shot: ShotSpan, frames: dict[int, np.ndarray], state: PassState) -> None:
        """The sink of the decoding pass: a shot joins the open chunk, which is built first if it would overflow."""
        if self.shots and len(self.frames) + len(frames) > self.settings.sampling.chunk_frames:
            self._flush()
        self.shots.append(shot)
        self.frames.update(frames)
        self.state = state

    def _flush(self) -> None:
        """Perceive the open chunk, stage it, drop its frames."""
        assert self.state is not None
        start = time.perf_counter()
        index = len(self.done)
        record, masks = self._perceive(index)
        self.staging.save(record, masks)
        self.done.append((record, masks))
        self.shots, self.frames = [], {}
        self.perceive_s += time.perf_counter() - start

    def _perceive(self, index: int) -> tuple[ChunkRecord, dict[tuple[int, int], bytes]]:
        assert self.state is not None
        start = time.perf_counter()
        timings: dict[str, float] = {}
        indices = sorted(self.frames)
        seen = perceive(self.video_id, [self.frames[i] for i in indices], indices, self.info.fps, self.specialists,
                        self.settings, timings, runs=shot_runs(indices, self.shots))
        with timed(timings, "encode"):
            encoded = {key: encode_mask(mask) for key, mask in seen.masks.items()}
        self.built += 1
        shots = shots_of(self.shots, self.info.fps)
        logger.info("%s: chunk %d (shots %d-%d, %d frames, %d tracks) built in %.1f s", self.info.path.name, index,
                    shots[0].index, shots[-1].index, len(indices), len(seen.tracks), time.perf_counter() - start)
        if self.on_chunk is not None:
            self.on_chunk(index)
        record = ChunkRecord(index=index, shots=shots, indices=indices, resume=asdict(self.state),
                             tracks=seen.tracks, instances=seen.instances, relations=seen.relations,
                             screen_text=seen.screen_text, scene=seen.scene, frame_votes=seen.frame_votes,
                             frames=seen.frames, timings=timings, frame_labels=seen.frame_labels)
        return record, encoded

    def finish(self) -> tuple[Twin, dict[tuple[int, int], bytes]]:
        """After the pass: the last chunk is built and every chunk merges into the twin (mask paths still empty)
        with its masks as PNG bytes. A video that was one chunk is built as a whole, as before chunks."""
        if not self.done:
            indices = sorted(self.frames)
            decoded = ShotVideo(self.info, [self.frames[i] for i in indices], indices, shots=self.shots)
            twin, arrays = build_twin(self.video_id, decoded, self.content_hash, self.specialists, self.settings,
                                      self.timings)
            with timed(self.timings, "encode"):
                return twin, {key: encode_mask(mask) for key, mask in arrays.items()}
        if self.shots:
            self.done.append(self._perceive(len(self.done)))
        for record, _ in self.done[self.loaded:]:
            for step, secs in record.timings.items():
                self.timings[step] = self.timings.get(step, 0.0) + secs
        seen, masks = merge_chunks(self.done)
        shots = [s for record, _ in self.done for s in record.shots]
        indices = [i for record, _ in self.done for i in record.indices]
        twin = assemble_twin(self.video_id, self.info, self.content_hash, indices, seen, shots, self.specialists,
                             self.settings, self.timings)
        return twin, masks


def merge_chunks(
    chunks: list[tuple[ChunkRecord, dict[tuple[int, int], bytes]]],
) -> tuple[Perceived, dict[tuple[int, int], bytes]]:
    """Chunks into one perception: track ids renumbered in chunk order; the scene labels and frame votes averaged
    over the chunks, weighted by their sampled frames."""
    tracks, instances, relations, text = [], [], [], []
    masks: dict[tuple[int, int], bytes] = {}
    scene: dict[str, float] = {}
    votes: dict[str, float] = {}
    frame_labels: dict[int, list[tuple[str, float]]] = {}
    frames = sum(record.frames for record, _ in chunks) or 1
    offset = 0
    for record, chunk_masks in chunks:
        remap = {t.track_id: offset + n for n, t in enumerate(record.tracks, start=1)}
        tracks += [t.model_copy(update={"track_id": remap[t.track_id]}) for t in record.tracks]
        instances += [i.model_copy(update={"track_id": remap[i.track_id]}) for i in record.instances]
        relations += [r.model_copy(update={"subject_track": remap[r.subject_track],
                                           "object_track": None if r.object_track is None else remap[r.object_track]})
                      for r in record.relations]
        masks.update({(remap[t], f): png for (t, f), png in chunk_masks.items()})
        text += record.screen_text
        frame_labels.update(record.frame_labels)
        weight = record.frames / frames
        for label, score in record.scene:
            scene[label] = scene.get(label, 0.0) + score * weight
        for label, share in record.frame_votes.items():
            votes[label] = votes.get(label, 0.0) + share * weight
        offset += len(record.tracks)
    ranked = sorted(scene.items(), key=lambda kv: -kv[1])[:SCENE_LABELS]
    merged = Perceived(tracks, instances, {}, relations, text, [(label, round(s, 3)) for label, s in ranked],
                       {label: round(s, 3) for label, s in sorted(votes.items(), key=lambda kv: -kv[1])}, frames,
                       frame_labels)
    return merged, masks


def build_chunked(
    video_id: str, path: Path, content_hash: str, specialists: Specialists, settings: Settings,
    timings: dict[str, float], info: VideoInfo | None = None, on_shot: ProgressCallback | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[Twin, dict[tuple[int, int], bytes], int]:
    """Decode (one pass, resumed from the staging when there is one) and build a video's twin chunk by chunk.
    Returns the twin, its masks as PNG bytes and the number of sampled frames. Raises a ``VideoError``."""
    start = time.perf_counter()
    info = info or probe(path, settings.sampling)
    build = ChunkedBuild(video_id, info, content_hash, specialists, settings, timings, on_chunk)
    if build.done:
        logger.info("%s: resuming after %d staged chunks", path, len(build.done))
    decoded, error = stream_shots(info, settings.sampling, settings.shots, build.add, on_shot, build.resume)
    if decoded < info.frame_count:  # truncated or damaged: sampled again over what decodes, staging discarded
        if decoded <= 0:
            raise error or EmptyVideoError(info.path, "no frame decoded")
        build.staging.remove()
        resample(info, decoded)
        build = ChunkedBuild(video_id, info, content_hash, specialists, settings, timings, on_chunk)
        stream_shots(info, settings.sampling, settings.shots, build.add, on_shot)
        if not build.frames and not build.done:
            raise error or EmptyVideoError(info.path, "no frame decoded")
    # the pass's own time: decoding, cuts and candidates (the chunks it built are timed step by step)
    timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - start - build.perceive_s
    twin, masks = build.finish()
    return twin, masks, len(twin.video.sampled_frames)

