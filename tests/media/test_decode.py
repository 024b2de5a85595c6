from __future__ import annotations

from pathlib import Path

import pytest

from twinseek.config import SamplingSettings
from twinseek.errors import (
    CorruptVideoError,
    EmptyVideoError,
    UnsupportedFormatError,
    VideoError,
    VideoTooLargeError,
)
from twinseek.media.decode import decode_video, probe, sample_indices

from support.synthetic import CODECS, Scene, write_video


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_every_container_decodes_with_true_colours(tmp_path: Path, suffix: str) -> None:
    scene = Scene()
    video = decode_video(write_video(tmp_path / f"clip{suffix}", scene), SamplingSettings(frames=8))
    assert video.info.frame_count == scene.frames
    assert video.info.width == scene.width and video.info.height == scene.height
    assert len(video.frames) == 8 and video.indices == sorted(video.indices)
    first = video.frames[0]
    assert first.shape == (scene.height, scene.width, 3) and first.dtype.name == "uint8"
    # the red square sits at (30, 60) in frame 0: red dominates there in every codec, GIF palette included
    k = video.indices[0]
    cx, cy = scene.shapes[0].centre(scene.t(k))
    r, g, b = first[int(cy), int(cx)].astype(int)
    assert r > 150 and g < 80


def test_uniform_sampling_by_count_and_by_fps() -> None:
    assert sample_indices(100, 25.0, SamplingSettings(frames=4)) == [12, 37, 62, 87]
    assert sample_indices(3, 25.0, SamplingSettings(frames=8)) == [0, 1, 2]
    by_fps = sample_indices(100, 25.0, SamplingSettings(fps=5))
    assert by_fps[:3] == [0, 5, 10] and len(by_fps) == 20


def test_max_frames_caps_fps_sampling() -> None:
    picks = sample_indices(10_000, 30.0, SamplingSettings(fps=10, max_frames=12))
    assert len(picks) == 12 and picks == sorted(picks) and picks[-1] > 9000


def test_frames_are_downscaled_to_max_side(tmp_path: Path) -> None:
    scene = Scene(width=320, height=240, frames=6)
    video = decode_video(write_video(tmp_path / "big.mp4", scene), SamplingSettings(frames=3, max_side=100))
    assert max(video.frames[0].shape[:2]) <= 100
    assert video.info.width == 320  # the info keeps the source size


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="nope.mp4"):
        decode_video(tmp_path / "nope.mp4")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(EmptyVideoError, match="empty.mp4"):
        decode_video(path)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="notes.txt"):
        decode_video(path)


def test_garbage_with_video_suffix_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(b"this is not a video" * 100)
    with pytest.raises(CorruptVideoError, match="fake.mp4"):
        decode_video(path)


def test_truncated_file_is_corrupt_or_resampled(tmp_path: Path) -> None:
    full = write_video(tmp_path / "full.mkv", Scene(frames=30))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    try:
        video = decode_video(cut, SamplingSettings(frames=8))
    except CorruptVideoError as exc:
        assert "cut.mkv" in str(exc)
    else:  # mkv is streamable: what decodes is re-sampled uniformly, never past the cut
        assert 0 < len(video.frames) <= 8 and video.indices[-1] < video.info.frame_count


def test_zero_frame_video(tmp_path: Path) -> None:
    import av

    path = tmp_path / "zero.mkv"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()  # header only, no frame
    with pytest.raises((EmptyVideoError, CorruptVideoError), match="zero.mkv"):
        decode_video(path)


def test_oversized_file_and_duration(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", Scene(frames=12))
    with pytest.raises(VideoTooLargeError, match="max_file_mb"):
        probe(path, SamplingSettings(max_file_mb=0.001))
    with pytest.raises(VideoTooLargeError, match="max_duration_s"):
        probe(path, SamplingSettings(max_duration_s=0.5))
