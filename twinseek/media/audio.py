"""A video's sound track as 16 kHz mono float32 samples (PyAV), what a speech recogniser reads.

Any channel layout (mono, stereo, 5.1) is mixed down and any sample rate (8 kHz, 44.1 kHz, one that changes
mid-stream) resampled (a numpy mean of the channels, then ``scipy.signal.resample_poly``). :func:`decode_audio` returns None for a file without an audio
stream and raises :class:`AudioError` for one whose audio cannot be read at all; a stream that breaks part-way
keeps what decoded before the break (logged).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

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
        runs: list[tuple[tuple[int, str, int], list[np.ndarray]]] = []  # frames alike (rate, format, channels)
        total_s, truncated, broken = 0.0, False, None
        try:
            for frame in container.decode(stream):
                key = (int(frame.sample_rate), frame.format.name, max(1, len(frame.layout.channels)))
                if not runs or runs[-1][0] != key:  # the first frame, or the stream changed its rate or layout
                    runs.append((key, []))
                runs[-1][1].append(frame.to_ndarray() if key[1].rstrip("p") in FULL_SCALE else _converted(frame))
                total_s += frame.samples / key[0]
                if max_s and total_s >= max_s:
                    truncated = True
                    break
        except (av.error.FFmpegError, ValueError) as exc:
            broken = _reason(exc)
            if not runs:
                raise AudioError(f"audio stream ({codec}) cannot be decoded ({broken})") from exc
            logger.warning("%s: audio decoding stopped after %.1f s (%s); keeping what decoded", path, total_s, broken)
    pieces = [_resample(_mono(np.concatenate(arrays, axis=1), *key), key[0]) for key, arrays in runs if arrays]
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if max_s:
        samples = samples[:int(max_s * RATE)]
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    if peak > 1.0:
        samples = samples / peak
    return Audio(samples.astype(np.float32, copy=False), max(header_s, len(samples) / RATE), channels,
                 source_rate, codec, truncated, broken)


# full scale of each sample format (planar or packed); u8 is offset by 128
FULL_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2.0**31, "s64": 2.0**63, "flt": 1.0, "dbl": 1.0}


def _converted(frame: av.AudioFrame) -> np.ndarray:
    """A frame of an unusual sample format as packed float mono, converted by FFmpeg."""
    converter = av.AudioResampler(format="flt", layout="mono", rate=frame.sample_rate)
    out = [f.to_ndarray() for f in [*converter.resample(frame), *converter.resample(None)]]
    return np.concatenate(out, axis=1) if out else np.zeros((1, 0), np.float32)


def _mono(data: np.ndarray, rate: int, fmt: str, channels: int) -> np.ndarray:
    """Frames of one format (``to_ndarray`` arrays joined: (channels, n) planar, (1, n * channels) packed) as
    float32 mono, the channels' mean. A numpy down-mix of whole runs: PyAV's resampler, frame by frame, cost more
    than decoding (0.2 s for a minute of AAC)."""
    base = fmt.rstrip("p")
    if base not in FULL_SCALE:  # already converted to float mono by _converted
        return data.reshape(-1).astype(np.float32)
    if not fmt.endswith("p"):
        data = data.reshape(-1, channels).T
    mono = data.astype(np.float32).mean(axis=0) if len(data) > 1 else data[0].astype(np.float32)
    if base == "u8":
        mono -= 128.0
    return mono / np.float32(FULL_SCALE[base])


def _resample(mono: np.ndarray, rate: int) -> np.ndarray:
    if rate == RATE:
        return mono
    g = math.gcd(RATE, rate)
    return resample_poly(mono, RATE // g, rate // g).astype(np.float32)


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
