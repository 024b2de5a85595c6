"""A video's sound as 16 kHz mono float32: any layout and rate, no audio stream, an unreadable one, the cap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twinseek.media.audio import RATE, AudioError, decode_audio, rms_dbfs

from support.synthetic import Sound, write_video, write_video_with_garbage_audio, write_video_with_sound


@pytest.mark.parametrize(("name", "rate", "layout", "codec"), [
    ("mono.mp4", 16_000, "mono", "aac"),
    ("surround.mp4", 48_000, "5.1", "aac"),
    ("phone.mkv", 8_000, "stereo", "pcm_s16le"),
])
def test_any_layout_and_rate_becomes_16k_mono_float(tmp_path: Path, name: str, rate: int, layout: str,
                                                     codec: str) -> None:
    path = write_video_with_sound(tmp_path / name, Sound.tone(2.0, rate, layout, hz=440.0))
    audio = decode_audio(path)
    assert audio is not None
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.source_rate == rate and audio.codec == codec
    assert audio.channels == {"mono": 1, "stereo": 2, "5.1": 6}[layout]
    assert abs(audio.seconds - 2.0) < 0.1 and abs(audio.stream_s - 2.0) < 0.1
    assert 0.1 < float(np.abs(audio.samples).max()) <= 1.0  # a 5.1 down-mix is scaled back under full scale
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert abs(np.argmax(spectrum) * RATE / len(audio.samples) - 440.0) < 5  # the tone survives the resampling


def test_no_audio_stream_is_none_and_silence_is_quiet(tmp_path: Path) -> None:
    assert decode_audio(write_video(tmp_path / "mute.mp4")) is None
    silent = decode_audio(write_video_with_sound(tmp_path / "silent.mp4", Sound.silence(1.0)))
    assert silent is not None and rms_dbfs(silent.samples) < -60


def test_a_garbage_audio_stream_raises_audio_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="cannot be decoded"):
        decode_audio(write_video_with_garbage_audio(tmp_path / "bad.mkv"))
    with pytest.raises(AudioError, match="cannot open"):
        (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
        decode_audio(tmp_path / "junk.mp4")


def test_only_the_first_max_s_seconds_are_decoded(tmp_path: Path) -> None:
    audio = decode_audio(write_video_with_sound(tmp_path / "long.mkv", Sound.tone(3.0)), max_s=1.0)
    assert audio is not None and audio.truncated and audio.seconds == 1.0 and audio.stream_s >= 2.9
