"""Shots and per-shot frame sampling, in one streaming pass over a video (PyAV decode, PySceneDetect cuts).

One pass decodes every frame once and does two things with it:

* **cuts**: every ``analysis_step``-th frame is scaled to ``ShotSettings.analysis_width`` pixels wide and fed to
  PySceneDetect's :class:`~scenedetect.detectors.ContentDetector` (our decode loop, not scenedetect's video
  backends: one decoder, our error handling, and the frames we keep come from the same pass);
* **candidates**: the current shot keeps a bounded pool of frames at ``max_side`` (every ``stride``-th frame from
  the shot's start, at most ``ShotSettings.candidate_fps`` a second; when the pool is full the stride doubles and
  every other frame goes), plus the video-level uniform picks ("anchors") that fall in it.

When a shot closes (a cut, or the end of the stream) its frame count is settled at once from the budget rate
known from the probe (:func:`frame_budget` / frame count), with a carry so that rounding and the one-frame
minimum per shot even out over the video, and its frames are picked from its pool, nearest to uniform positions
inside the shot, and handed to a sink (:func:`stream_shots`): the pass itself holds only the pool (at most
``2 * frames_per_shot + 1`` frames) and the anchors of the open shot (at most ``frames_per_shot``), so its memory
does not grow with the video's length. :func:`decode_shots` collects every shot (at most the budget's frames);
the chunked ingest (:mod:`twinseek.twins.chunks`) builds and drops them a chunk of shots at a time.

A video that is one shot gets exactly :func:`~twinseek.media.decode.sample_indices` over the frame budget, i.e.
today's uniform sampling for a short video (16 frames). A stream shorter than its header (truncated, damaged) is
sampled again over the frames that decode, as :func:`~twinseek.media.decode.decode_video` does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twinseek.config import SamplingSettings, ShotSettings
from twinseek.errors import CorruptVideoError, EmptyVideoError
from twinseek.media.decode import (
    DecodedVideo,
    VideoInfo,
    av_frames,
    probe,
    resample,
    sample_indices,
    target_size,
    uniform_picks,
)

logger = logging.getLogger(__name__)

# Videos at least this long log each shot at INFO (shorter ones at DEBUG: a folder of clips stays quiet).
LONG_VIDEO_S = 60.0


@dataclass
class ShotSpan:
    """A shot found by the pass: source frames ``start_frame..end_frame`` (inclusive) and the frames sampled in
    it (``key_frames``, source indices, sorted)."""

    index: int
    start_frame: int
    end_frame: int
    key_frames: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.end_frame - self.start_frame + 1


@dataclass(frozen=True)
class ShotProgress:
    """What a progress callback sees when a shot closes."""

    path: Path  # the video
    shot: ShotSpan
    frames_done: int  # source frames decoded so far (the shot's end + 1)
    frame_count: int  # the header's frame count (the pass's total)
    sampled: int  # frames sampled so far, this shot's included
    seconds: float  # wall time of the pass so far


ProgressCallback = Callable[[ShotProgress], None]


@dataclass
class ShotVideo(DecodedVideo):
    """A :class:`DecodedVideo` whose frames were sampled per shot; ``shots`` cover the decoded frames in order."""

    shots: list[ShotSpan] = field(default_factory=list)


def frame_budget(info: VideoInfo, sampling: SamplingSettings) -> int:
    """Frames to sample from a video: ``frames`` for a short one, ``frames_per_minute`` for a long one, at most
    ``max_frames`` (and never more than it has). With ``sampling.fps`` set: that rate's count, capped likewise."""
    if sampling.fps:
        wanted = len(sample_indices(info.frame_count, info.fps, sampling))
    else:
        by_length = math.floor(sampling.frames_per_minute * info.duration_s / 60.0)
        wanted = min(max(sampling.frames, by_length), sampling.max_frames)
    return max(1, min(wanted, info.frame_count))


def anchors(info: VideoInfo, sampling: SamplingSettings) -> list[int]:
    """The video-level uniform picks over the budget (what a one-shot video gets)."""
    budget = frame_budget(info, sampling)
    if sampling.fps:
        return sample_indices(info.frame_count, info.fps, sampling)
    return sample_indices(info.frame_count, info.fps, sampling.model_copy(update={"frames": budget,
                                                                                 "max_frames": budget}))


def analysis_step(fps: float, shots: ShotSettings) -> int:
    """Feed the detector every n-th frame so that it sees at most ``analysis_fps`` frames a second (PySceneDetect's
    ``frame_skip``, which it advises only for high frame rates: its threshold is tuned on adjacent frames)."""
    return max(1, int(math.floor(fps / shots.analysis_fps + 1e-6))) if fps > shots.analysis_fps else 1


class _Allocator:
    """Settles each shot's frame count as it closes: the budget's rate (frames per source frame, from the probe)
    times the shot's length, plus a carry (rounding, the one-frame minimum) so that the video's total stays within
    the budget and the frames stay spread over its length; at most ``frames_per_shot`` (the excess of a long shot
    is dropped, not carried: the cap is what it says)."""

    def __init__(self, budget: int, frame_count: int, frames_per_shot: int) -> None:
        self.budget, self.cap = budget, frames_per_shot
        self.rate = budget / max(frame_count, 1)
        self.carry = 0.0
        self.given = 0

    def take(self, length: int) -> int:
        owed = length * self.rate + self.carry
        k = min(self.cap, length, max(0, math.floor(owed + 0.5)), self.budget - self.given)
        if k == 0 and owed > 0 and self.given < self.budget:
            k = 1  # at least one frame per shot while the budget allows: borrowed from the shots after it
        self.carry = min(owed, self.cap) - k
        self.given += k
        return k


def _nearest(ideal: list[int], available: list[int]) -> list[int]:
    """For each ideal position the nearest available frame not taken yet (``available`` sorted)."""
    taken: set[int] = set()
    picks = []
    for want in ideal:
        free = [a for a in available if a not in taken]
        if not free:
            break
        best = min(free, key=lambda a: (abs(a - want), a))
        taken.add(best)
        picks.append(best)
    return sorted(picks)


@dataclass(frozen=True)
class PassState:
    """Where a pass stands at a shot boundary: enough to resume it there (a chunked ingest that was stopped)
    without decoding-and-analysing the frames before it again."""

    start_frame: int  # the first frame of the next shot
    shot_index: int  # the next shot's index
    carry: float  # the allocator's carry and frames given so far
    given: int


ShotSink = Callable[[ShotSpan, dict[int, np.ndarray], PassState], None]


class _Pass:
    """The state of one streaming pass (see the module docstring). Each closed shot goes to ``sink`` with its
    sampled frames and the state from which the pass could resume after it."""

    def __init__(self, info: VideoInfo, sampling: SamplingSettings, shots: ShotSettings,
                 on_shot: ProgressCallback | None, sink: ShotSink, resume: PassState | None) -> None:
        from scenedetect.detectors import ContentDetector  # lazy: cv2 and scenedetect load on first use

        self.info, self.sampling, self.settings, self.on_shot, self.sink = info, sampling, shots, on_shot, sink
        self.detector = ContentDetector(threshold=shots.threshold, min_scene_len=shots.min_scene_len)
        self.step = analysis_step(info.fps, shots)
        # candidates: at most candidate_fps a second (each conversion to max_side costs ~2 ms at 720p)
        self.base_stride = max(1, int(info.fps / shots.candidate_fps)) if shots.candidate_fps else 1
        budget = frame_budget(info, sampling)
        self.allocator = _Allocator(budget, info.frame_count, sampling.frames_per_shot)
        uniform = anchors(info, sampling)
        # anchors matter only to a one-shot video, which gets them all: kept while they fit one shot's cap
        self.anchors = set(uniform) if len(uniform) <= sampling.frames_per_shot else set()
        self.pool_size = 2 * sampling.frames_per_shot
        self.start, self.shot_index = 0, 0
        if resume is not None:
            self.start, self.shot_index = resume.start_frame, resume.shot_index
            self.allocator.carry, self.allocator.given = resume.carry, resume.given
            # the detector starts fresh at a cut, as it stands after emitting one: merging of close cuts on
            # (PySceneDetect 0.7's FlashFilter enables it with the first cut)
            self.detector._flash_filter._merge_enabled = resume.shot_index > 0
        self.stride = self.base_stride
        self.pool: dict[int, np.ndarray] = {}
        self.sampled = 0
        self.began = time.perf_counter()
        self.log_level = logging.INFO if info.duration_s >= LONG_VIDEO_S else logging.DEBUG

    def wants(self, index: int) -> bool:
        return index in self.anchors or (index - self.start) % self.stride == 0

    def keep(self, index: int, rgb: np.ndarray) -> None:
        self.pool[index] = rgb
        if len(self.pool) > self.pool_size:
            self.stride *= 2
            self.pool = {i: f for i, f in self.pool.items()
                         if i in self.anchors or (i - self.start) % self.stride == 0}

    def cut(self, first_of_next: int) -> None:
        """A cut before ``first_of_next``: the open shot closes at the frame before it."""
        if first_of_next <= self.start:
            return
        later = {i: f for i, f in self.pool.items() if i >= first_of_next}  # a cut can be reported late
        self.pool = {i: f for i, f in self.pool.items() if i < first_of_next}
        self.close(first_of_next - 1, last=False)
        self.start, self.stride, self.pool = first_of_next, self.base_stride, later

    def close(self, end: int, last: bool) -> None:
        span = ShotSpan(self.shot_index, self.start, end)
        if (last and self.shot_index == 0 and self.anchors
                and all(a in self.pool for a in self.anchors if a <= end)):
            span.key_frames = sorted(a for a in self.anchors if a <= end)  # one shot: the uniform picks exactly
            self.allocator.given += len(span.key_frames)
        else:
            k = self.allocator.take(span.length)
            ideal = [span.start_frame + u for u in uniform_picks(span.length, k)] if k else []
            span.key_frames = _nearest(ideal, sorted(self.pool))
        frames = {i: self.pool[i] for i in span.key_frames}
        self.pool = {}
        self.shot_index += 1
        self.sampled += len(frames)
        logger.log(self.log_level, "%s: shot %d, frames %d-%d (%.1f-%.1f s), %d sampled", self.info.path.name,
                   span.index, span.start_frame, span.end_frame, span.start_frame / self.info.fps,
                   (span.end_frame + 1) / self.info.fps, len(span.key_frames))
        self.sink(span, frames, PassState(end + 1, self.shot_index, self.allocator.carry, self.allocator.given))
        if self.on_shot is not None:
            self.on_shot(ShotProgress(self.info.path, span, end + 1, self.info.frame_count, self.sampled,
                                      time.perf_counter() - self.began))


def stream_shots(
    info: VideoInfo, sampling: SamplingSettings, shots: ShotSettings, sink: ShotSink,
    on_shot: ProgressCallback | None = None, resume: PassState | None = None,
) -> tuple[int, CorruptVideoError | None]:
    """One streaming pass over ``info.path``: each shot, as it closes, goes to ``sink`` with its sampled frames
    (the pass keeps no frame after that). ``resume``: start at a shot boundary of an earlier pass over the same
    video (frames before it are decoded but neither analysed nor kept).

    Returns the number of frames that decoded (the header's count when the stream is whole) and the error that
    ended the pass early, if any; the last shot is closed at the last frame that decoded either way."""
    from scenedetect.common import FrameTimecode

    state = _Pass(info, sampling, shots, on_shot, sink, resume)
    first = resume.start_frame if resume is not None else 0
    small: tuple[int, int] | None = None
    decoded, error = 0, None
    try:
        for index, frame in av_frames(info.path, info.frame_count - 1):
            decoded = index + 1
            if index < first:
                continue
            if shots.detect and (index - first) % state.step == 0:
                if small is None:
                    small = target_size(frame.width, frame.height, shots.analysis_width)
                bgr = frame.to_ndarray(width=small[0], height=small[1], format="bgr24")
                for cut in state.detector.process_frame(FrameTimecode(index, fps=info.fps), bgr):
                    state.cut(cut.frame_num)
            if state.wants(index):
                w, h = target_size(frame.width, frame.height, sampling.max_side)
                state.keep(index, frame.to_ndarray(width=w, height=h, format="rgb24"))
    except CorruptVideoError as exc:
        logger.debug("%s", exc)
        error = exc
    if decoded > first:
        state.close(decoded - 1, last=True)
    return decoded, error


class _Collector:
    """A sink that keeps every shot and its frames (a whole video's sampled frames: at most the budget)."""

    def __init__(self) -> None:
        self.shots: list[ShotSpan] = []
        self.frames: dict[int, np.ndarray] = {}

    def __call__(self, shot: ShotSpan, frames: dict[int, np.ndarray], _: PassState) -> None:
        self.shots.append(shot)
        self.frames.update(frames)


def decode_shots(
    path: str | Path, sampling: SamplingSettings | None = None, shots: ShotSettings | None = None,
    info: VideoInfo | None = None, on_shot: ProgressCallback | None = None,
) -> ShotVideo:
    """Probe a video, find its shots and sample frames per shot in one decoding pass (see the module docstring).

    ``on_shot`` is called as each shot closes. Raises a ``VideoError`` naming the file on any failure; a stream
    whose real length differs from its header is sampled again over the frames that decode, with a warning.
    """
    sampling = sampling or SamplingSettings()
    shots = shots or ShotSettings()
    info = info or probe(path, sampling)
    collected = _Collector()
    decoded, error = stream_shots(info, sampling, shots, collected, on_shot)
    if decoded < info.frame_count:
        if decoded <= 0:
            raise error or EmptyVideoError(info.path, "no frame decoded")
        resample(info, decoded)
        collected = _Collector()
        decoded, error = stream_shots(info, sampling, shots, collected, on_shot)
        if not collected.frames:
            raise error or EmptyVideoError(info.path, "no frame decoded")
    indices = sorted(collected.frames)
    return ShotVideo(info=info, frames=[collected.frames[i] for i in indices], indices=indices,
                     shots=collected.shots)
