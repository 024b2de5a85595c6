"""A video's sound track as 16 kHz mono float32 samples (PyAV), what a speech recogniser reads.

Any channel layout (mono, stereo, 5.1) is mixed down and any sample rate (8 kHz, 44.1 kHz, one that changes
mid-stream) resampled by ``av.AudioResampler``. :func:`decode_audio` returns None for a file without an audio
stream and raises :class:`AudioError` for one whose audio cannot be read at all; a stream that breaks part-way
keeps what decoded before the break (logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from twinseek.errors import TwinseekError

logger = logging.getLogger(__name__)

RATE = 16_000  # samples per second of the decoded audio (Whisper's)


class AudioError(TwinseekError):
    """A file's audio stream cannot be decoded (the message says why, without the path: the caller has it)."""


@dataclass
class Audio:
    """Decoded audio: ``samples`` (float32, mono, :data:`RATE` Hz) of the first ``seconds`` of the stream."""

    samples: np.ndarray
    stream_s: float  # the whole stream's length by its header (or by what decoded when the header says none)
    channels: int
    source_rate: int
    codec: str
    truncated: bool = False  # only the first max_s seconds were decoded
    broken: str | None = None  # why decoding stopped early, when it did

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


def decode_audio(path: str | Path, max_s: float | None = None) -> Audio | None:
    """The first audio stream of ``path`` as 16 kHz mono float32, at most ``max_s`` seconds of it; None when
    the file has no audio stream. Raises :class:`AudioError` when the container or its audio cannot be read."""
    path = Path(path)
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise AudioError(f"cannot open the file ({_reason(exc)})") from exc
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        channels, source_rate = int(ctx.channels or 0), int(ctx.sample_rate or 0)
        codec = ctx.name or "unknown"
        header_s = _stream_seconds(stream, container)
        cap = int(max_s * RATE) if max_s else None
        chunks: list[np.ndarray] = []
        total, truncated, broken = 0, False, None
        resampler: av.AudioResampler | None = None
        setup: tuple[str, str, int] | None = None
        try:
            for frame in container.decode(stream):
                this = (frame.format.name, frame.layout.name, frame.sample_rate)
                if resampler is None or this != setup:  # a first frame, or the stream changed its layout or rate
                    if resampler is not None:
                        total += _take(resampler.resample(None), chunks)
                    resampler, setup = av.AudioResampler(format="flt", layout="mono", rate=RATE), this
                total += _take(resampler.resample(frame), chunks)
                if cap is not None and total >= cap:
                    truncated = True
                    break
            if resampler is not None and not truncated:
                total += _take(resampler.resample(None), chunks)
        except (av.error.FFmpegError, ValueError) as exc:
            broken = _reason(exc)
            if not chunks:
                raise AudioError(f"audio stream ({codec}) cannot be decoded ({broken})") from exc
            logger.warning("%s: audio decoding stopped after %.1f s (%s); keeping what decoded", path,
                           total / RATE, broken)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if cap is not None:
        samples = samples[:cap]
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    if peak > 1.0:  # a down-mix of many loud channels (5.1) may pass full scale: scale it back
        samples = samples / peak
    return Audio(samples.astype(np.float32, copy=False), max(header_s, len(samples) / RATE), channels,
                 source_rate, codec, truncated, broken)


def _take(frames: list[av.AudioFrame], chunks: list[np.ndarray]) -> int:
    n = 0
    for out in frames:
        arr = out.to_ndarray().reshape(-1)  # packed float, one channel
        chunks.append(arr)
        n += len(arr)
    return n


def _stream_seconds(stream: av.audio.stream.AudioStream, container: av.container.InputContainer) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def _reason(exc: Exception) -> str:
    if isinstance(exc, av.error.InvalidDataError):
        return "invalid data"
    if isinstance(exc, av.error.FFmpegError):
        return (exc.strerror or str(exc)).strip()
    return str(exc) or type(exc).__name__


def rms_dbfs(samples: np.ndarray) -> float:
    """Loudness of ``samples`` in dB relative to full scale (-inf for digital silence)."""
    if not len(samples):
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")
