"""Shots and per-shot sampling in one streaming pass (twinseek.media.shots), on synthetic videos with hard cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twinseek.config import SamplingSettings, ShotSettings
from twinseek.errors import CorruptVideoError, EmptyVideoError
from twinseek.media import shots as shots_module
from twinseek.media.decode import VideoInfo, decode_video, probe, sample_indices
from twinseek.media.shots import (
    PassState,
    ShotProgress,
    ShotSpan,
    _Allocator,
    analysis_step,
    decode_shots,
    frame_budget,
    stream_shots,
)

from support.synthetic import Scene, write_shots_video, write_video


def _info(frames: int, fps: float = 25.0) -> VideoInfo:
    return VideoInfo(Path("x.mp4"), 1280, 720, fps, frames, frames / fps)


def test_hard_cuts_are_found_and_every_shot_is_sampled(tmp_path: Path) -> None:
    lengths = [30, 50, 20, 40]
    video = decode_shots(write_shots_video(tmp_path / "cuts.mp4", lengths))
    starts = [s.start_frame for s in video.shots]
    assert starts == [0, 30, 80, 100]
    assert [s.end_frame for s in video.shots] == [29, 79, 99, 139]
    assert [s.index for s in video.shots] == [0, 1, 2, 3]
    # 16 frames (a short video) spread by duration, each shot's frames inside it
    assert len(video.indices) == 16 and video.indices == sorted(video.indices)
    assert [len(s.key_frames) for s in video.shots] == [3, 6, 2, 5]
    for shot in video.shots:
        assert all(shot.start_frame <= k <= shot.end_frame for k in shot.key_frames)
    assert sorted(k for s in video.shots for k in s.key_frames) == video.indices
    assert len(video.frames) == 16 and video.frames[0].shape == (240, 320, 3)


def test_a_one_shot_video_gets_todays_uniform_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "one.mp4", Scene(frames=60))
    sampling = SamplingSettings()
    shots = decode_shots(path, sampling)
    old = decode_video(path, sampling)
    assert len(shots.shots) == 1 and (shots.shots[0].start_frame, shots.shots[0].end_frame) == (0, 59)
    assert shots.indices == sample_indices(60, 12.0, sampling) == old.indices
    assert all(np.array_equal(a, b) for a, b in zip(shots.frames, old.frames, strict=True))


def test_detection_off_is_one_shot_with_uniform_frames(tmp_path: Path) -> None:
    path = write_shots_video(tmp_path / "cuts.mkv", [20, 20, 20])
    video = decode_shots(path, SamplingSettings(frames=6), ShotSettings(detect=False))
    assert len(video.shots) == 1 and video.indices == sample_indices(60, 12.0, SamplingSettings(frames=6))


def test_the_frame_budget_grows_with_length_and_is_bounded() -> None:
    sampling = SamplingSettings()  # 16 frames, 8 a minute, at most 480
    assert frame_budget(_info(25 * 4), sampling) == 16  # a 4-second clip
    assert frame_budget(_info(25 * 120), sampling) == 16  # two minutes: 8 x 2 = 16
    assert frame_budget(_info(25 * 600), sampling) == 80  # ten minutes
    assert frame_budget(_info(25 * 7200), sampling) == 480  # two hours: capped
    assert frame_budget(_info(5), sampling) == 5  # never more than the video has
    assert frame_budget(_info(25 * 600), SamplingSettings(frames_per_minute=0)) == 16
    assert frame_budget(_info(25 * 600), SamplingSettings(fps=1.0, max_frames=100)) == 100


def test_the_allocation_spreads_by_duration_within_the_budget() -> None:
    # 3 shots of a 205-frame video, budget 16: by duration, the short shot still gets one
    alloc = _Allocator(16, 205, 64)
    assert [alloc.take(n) for n in (100, 5, 100)] == [8, 1, 7]
    # a long shot is capped; the cap's excess is not handed to the shots after it
    alloc = _Allocator(100, 10_000, 10)
    assert [alloc.take(n) for n in (8000, 1000, 1000)] == [10, 10, 10]
    # many tiny shots: one frame per shot while the budget allows, then spread over the video, never over it
    alloc = _Allocator(10, 10_000, 64)
    takes = [alloc.take(10) for _ in range(1000)]
    assert sum(takes) <= 10 and sum(takes) >= 9
    given = [i for i, k in enumerate(takes) if k]
    assert given[0] == 0 and given[-1] > 800  # the end of the video is sampled too


def test_a_long_video_gets_more_frames_and_the_pool_stays_bounded(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # 6 shots of 100 frames at 12 fps (50 s); 60 frames a minute -> a budget of 50, at most 4 per shot, pool 8
    path = write_shots_video(tmp_path / "long.mkv", [100] * 6, width=96, height=64)
    sampling = SamplingSettings(frames=16, frames_per_minute=60, frames_per_shot=4)
    pools: list[int] = []
    keep = shots_module._Pass.keep

    def watched(self: shots_module._Pass, index: int, rgb: np.ndarray) -> None:
        keep(self, index, rgb)
        pools.append(len(self.pool))

    monkeypatch.setattr(shots_module._Pass, "keep", watched)
    video = decode_shots(path, sampling, ShotSettings(candidate_fps=0))  # every frame a candidate
    assert len(video.shots) == 6
    assert [len(s.key_frames) for s in video.shots] == [4] * 6  # capped per shot
    assert frame_budget(video.info, sampling) == 50
    # the open shot's pool never holds more than 2 x frames_per_shot frames after thinning, however long the shot
    assert len(pools) > 100 and max(pools) <= 2 * 4


def test_shots_stream_to_a_sink_and_a_pass_resumes_at_a_shot_boundary(tmp_path: Path) -> None:
    path = write_shots_video(tmp_path / "cuts.mkv", [20, 30, 25, 25], width=96, height=64)
    info = probe(path)
    sampling, settings = SamplingSettings(frames=12), ShotSettings()
    whole: list[tuple[ShotSpan, list[int], PassState]] = []
    stream_shots(info, sampling, settings, lambda s, f, st: whole.append((s, sorted(f), st)))
    assert [s.start_frame for s, _, _ in whole] == [0, 20, 50, 75]
    assert all(s.key_frames == keys for s, keys, _ in whole)
    # resumed after shot 1: the same shots and frames from there on
    rest: list[tuple[ShotSpan, list[int], PassState]] = []
    stream_shots(info, sampling, settings, lambda s, f, st: rest.append((s, sorted(f), st)), resume=whole[1][2])
    assert [(s.index, s.start_frame, s.end_frame, k) for s, k, _ in rest] == \
        [(s.index, s.start_frame, s.end_frame, k) for s, k, _ in whole[2:]]


def test_high_frame_rates_are_analysed_at_a_bounded_rate(tmp_path: Path) -> None:
    assert analysis_step(25.0, ShotSettings()) == 1 and analysis_step(30.0, ShotSettings()) == 1
    assert analysis_step(59.94, ShotSettings()) == 1 and analysis_step(60.0, ShotSettings()) == 2
    assert analysis_step(120.0, ShotSettings()) == 4
    video = decode_shots(write_shots_video(tmp_path / "fast.mkv", [61, 60], fps=60, width=96, height=64))
    assert [s.start_frame for s in video.shots] == [0, 62]  # the cut at 61 is seen at the next analysed frame


def test_progress_is_reported_per_shot(tmp_path: Path) -> None:
    seen: list[ShotProgress] = []
    decode_shots(write_shots_video(tmp_path / "cuts.mkv", [20, 20, 20], width=96, height=64),
                 on_shot=seen.append)
    assert [p.shot.index for p in seen] == [0, 1, 2]
    assert [p.frames_done for p in seen] == [20, 40, 60] and all(p.frame_count == 60 for p in seen)
    assert seen[-1].sampled == 16


def test_a_truncated_stream_is_sampled_over_what_decodes(tmp_path: Path) -> None:
    full = write_shots_video(tmp_path / "full.mkv", [30, 30])
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    try:
        video = decode_shots(cut, SamplingSettings(frames=8))
    except CorruptVideoError as exc:
        assert "cut.mkv" in str(exc)
    else:  # mkv is streamable: what decodes is re-sampled, never past the cut, and the shots cover it
        assert 0 < len(video.frames) <= 8 and video.indices[-1] < video.info.frame_count < 60
        assert video.shots[-1].end_frame == video.info.frame_count - 1


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"this is not a video" * 100)
    with pytest.raises(CorruptVideoError, match="fake.mp4"):
        decode_shots(fake)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(EmptyVideoError, match="empty.mp4"):
        decode_shots(empty)
