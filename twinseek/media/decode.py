"""Video decoding and uniform frame sampling (PyAV).

Supported containers: mp4, m4v, mov, mkv, webm, avi and animated GIF. Frames come back as RGB ``uint8``
arrays whose longest side is at most ``max_side``. Anything that cannot be decoded raises a
:class:`~twinseek.errors.VideoError` subclass naming the file.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from twinseek.config import SamplingSettings
from twinseek.errors import (
    CorruptVideoError,
    EmptyVideoError,
    UnsupportedFormatError,
    VideoError,
    VideoTooLargeError,
)

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"})


@dataclass
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float


@dataclass
class DecodedVideo:
    info: VideoInfo
    frames: list[np.ndarray] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the decoded (resized) frames."""
        h, w = self.frames[0].shape[:2]
        return h, w


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def check_file(path: str | Path, sampling: SamplingSettings | None = None) -> int:
    """Cheap checks before anything reads the file: what it is, its suffix and its size (from ``stat``).

    Returns the size in bytes; raises a ``VideoError`` naming what is wrong: missing, a dangling symlink, a
    symlink loop, a directory, a fifo, a socket, a device, an unsupported suffix, empty, or too large.
    """
    path = Path(path)
    sampling = sampling or SamplingSettings()
    try:
        st = path.stat()
    except OSError as exc:
        raise VideoError(path, _unreachable(path, exc)) from exc
    kind = _not_regular(st.st_mode)
    if kind:
        raise VideoError(path, f"not a regular file: {kind}")
    if not is_supported(path):
        raise UnsupportedFormatError(path, f"suffix {path.suffix or '(none)'}; supported: "
                                     + ", ".join(sorted(SUPPORTED_SUFFIXES)))
    if st.st_size == 0:
        raise EmptyVideoError(path, "file is empty")
    if st.st_size > sampling.max_file_mb * 1024 * 1024:
        raise VideoTooLargeError(path, f"{st.st_size / 2**20:.0f} MiB > max_file_mb={sampling.max_file_mb:g}")
    return st.st_size


def _unreachable(path: Path, exc: OSError) -> str:
    """Why ``stat`` failed, in words: a broken symlink says so rather than "file not found"."""
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if path.is_symlink():
        try:
            return f"dangling symlink to {os.readlink(path)}"
        except OSError:
            return "dangling symlink"
    if exc.errno == errno.ENOTDIR:
        return "a parent of it is not a folder"
    return "file not found"


def _not_regular(mode: int) -> str | None:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (fifo)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "an unknown kind of file"


def ffmpeg_reason(exc: Exception) -> str:
    """What went wrong, in words: "not a video, or a damaged one" for data FFmpeg cannot read, else FFmpeg's own
    message without its ``[Errno N]`` code and the path (which the error names already)."""
    if isinstance(exc, av.error.InvalidDataError):
        return "not a video, or a damaged one"
    if isinstance(exc, av.error.FFmpegError):
        return (exc.strerror or str(exc)).strip()
    return str(exc)


def open_video(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptVideoError(path, ffmpeg_reason(exc)) from exc
    if not container.streams.video:
        container.close()
        raise CorruptVideoError(path, "no video stream")
    return container


def _count_packets(path: Path) -> int:
    """Count video packets by demuxing only (cheap): for the containers we read, one packet per frame."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        try:
            return sum(1 for p in container.demux(stream) if p.size > 0)
        except av.error.FFmpegError:
            return 0


def probe(path: str | Path, sampling: SamplingSettings | None = None) -> VideoInfo:
    """Read a video's metadata without decoding frames; raises a ``VideoError`` for bad files."""
    path = Path(path)
    sampling = sampling or SamplingSettings()
    check_file(path, sampling)
    with open_video(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        width, height = stream.codec_context.width, stream.codec_context.height
        frame_count = int(stream.frames or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
    if frame_count <= 0:
        frame_count = _count_packets(path)
    if frame_count <= 0:
        raise EmptyVideoError(path, "zero frames")
    if duration <= 0:
        duration = frame_count / fps
    if duration > sampling.max_duration_s:
        raise VideoTooLargeError(path, f"{duration:.0f} s > max_duration_s={sampling.max_duration_s:g}")
    if width <= 0 or height <= 0:
        raise CorruptVideoError(path, "frame size unknown")
    return VideoInfo(path, width, height, fps, frame_count, duration)


def sample_indices(frame_count: int, fps: float, sampling: SamplingSettings) -> list[int]:
    """Source frame indices to keep: uniform by count, or every ``1/sampling.fps`` seconds; capped."""
    if frame_count <= 0:
        return []
    if sampling.fps:
        step = max(fps / sampling.fps, 1.0)
        picks = sorted({i for k in range(int(frame_count / step) + 1) if (i := int(round(k * step))) < frame_count})
    else:
        picks = uniform_picks(frame_count, sampling.frames)
    if len(picks) > sampling.max_frames:
        logger.info("sampling %d frames exceeds max_frames=%d: thinning", len(picks), sampling.max_frames)
        picks = [picks[i] for i in uniform_picks(len(picks), sampling.max_frames)]
    return picks


def uniform_picks(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``, centred in equal segments (first/last frames are
    often fades)."""
    if k >= n:
        return list(range(n))
    return sorted({int((i + 0.5) * n / k) for i in range(k)})


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    # even sizes keep swscale and later mask maths simple
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def av_frames(path: str | Path, last: int | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
    """The stream's decoded PyAV frames in order with their index, up to index ``last`` (all when ``None``): the one
    decoding loop (:func:`iter_frames` and the shot pass read it). Raises ``CorruptVideoError`` naming the last index
    that decoded; frames already yielded stay valid."""
    path = Path(path)
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                yield index, frame
                if last is not None and index >= last:
                    return
        except av.error.FFmpegError as exc:
            raise CorruptVideoError(path, f"decoding failed after frame {index}: {ffmpeg_reason(exc)}") from exc


def iter_frames(path: str | Path, max_side: int = 640, wanted: set[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Decode frames in order, yielding ``(index, rgb)`` for the wanted indices (all when ``None``).

    Raises ``CorruptVideoError`` when decoding fails; frames already yielded stay valid.
    """
    for index, frame in av_frames(path, max(wanted) if wanted else None):
        if wanted is None or index in wanted:
            w, h = target_size(frame.width, frame.height, max_side)
            yield index, frame.to_ndarray(width=w, height=h, format="rgb24")


def decode_video(
    path: str | Path, sampling: SamplingSettings | None = None, info: VideoInfo | None = None
) -> DecodedVideo:
    """Probe, sample and decode a video. Raises a ``VideoError`` naming the file on any failure.

    ``info``: the file's :func:`probe` result when the caller already has it. A stream whose real length differs
    from its header (truncated or mislabelled files) is re-sampled over the frames that actually decode, with a
    warning.
    """
    sampling = sampling or SamplingSettings()
    info = info or probe(path, sampling)
    targets = sample_indices(info.frame_count, info.fps, sampling)
    decoded, last_good, error = _decode_targets(info.path, targets, sampling.max_side)
    if len(decoded) < len(targets):
        available = last_good + 1
        if available <= 0:
            raise error or EmptyVideoError(info.path, "no frame decoded")
        resample(info, available)
        targets = sample_indices(available, info.fps, sampling)
        decoded, _, error = _decode_targets(info.path, targets, sampling.max_side)
        if not decoded:
            raise error or EmptyVideoError(info.path, "no frame decoded")
    indices = sorted(decoded)
    return DecodedVideo(info=info, frames=[decoded[i] for i in indices], indices=indices)


def resample(info: VideoInfo, decoded: int) -> None:
    """The header over-counted (a truncated or damaged stream): ``info`` now says what decodes, so that frames are
    sampled again over it (:func:`decode_video`, and the shot pass of :mod:`twinseek.media.shots`)."""
    logger.warning("%s: header says %d frames, %d decode; re-sampling", info.path, info.frame_count, decoded)
    info.frame_count = decoded
    info.duration_s = decoded / info.fps


def _decode_targets(
    path: Path, targets: list[int], max_side: int
) -> tuple[dict[int, np.ndarray], int, VideoError | None]:
    """Decode ``targets``; return what decoded, the last decoded index and the error that stopped it."""
    decoded: dict[int, np.ndarray] = {}
    last_good = -1
    try:
        for index, rgb in iter_frames(path, max_side, set(targets)):
            decoded[index] = rgb
            last_good = index
    except CorruptVideoError as exc:
        # the error text carries the last index that decoded
        logger.debug("%s", exc)
        last_good = max(last_good, _last_index_from(exc))
        return decoded, last_good, exc
    if len(decoded) < len(targets):
        last_good = max(last_good, _count_decodable(path) - 1)
    return decoded, last_good, None


def _last_index_from(exc: CorruptVideoError) -> int:
    try:
        return int(exc.detail.split("after frame ")[1].split(":")[0])
    except (IndexError, ValueError):
        return -1


def _count_decodable(path: Path) -> int:
    count = 0
    try:
        with open_video(path) as container:
            for _ in container.decode(container.streams.video[0]):
                count += 1
    except av.error.FFmpegError:
        pass
    return count
