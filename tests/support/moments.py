"""Twins with shots and known time spans, for the moment tests: a 30-second video at 10 fps cut into three shots of
10 s (frames 0-99, 100-199, 200-299), sampled every 10 frames, with one track per named category on the frames
given (and a mask per sampled frame of it, when asked)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from twinseek.twins.masks import mask_geometry
from twinseek.twins.model import Instance, Shot, Speech, SpeechSegment, Track, Twin, Video

FPS = 10.0
FRAMES = 300
SAMPLED = tuple(range(0, FRAMES, 10))
SHOT_FRAMES = ((0, 99), (100, 199), (200, 299))


def shots(cuts: Sequence[tuple[int, int]] = SHOT_FRAMES, sampled: Sequence[int] = SAMPLED) -> list[Shot]:
    return [Shot(index=k, start_frame=a, end_frame=b, start_s=a / FPS, end_s=(b + 1) / FPS,
                 key_frames=[f for f in sampled if a <= f <= b]) for k, (a, b) in enumerate(cuts)]


def timed_twin(video_id: str, tracks: Mapping[str, tuple[int, int]], *, with_shots: bool = True,
               speech: Sequence[tuple[float, float, str]] = (), scene: Sequence[str] = (),
               path: str | None = None) -> tuple[Twin, dict[tuple[int, int], np.ndarray]]:
    """The twin and its masks (keyed (track, frame)): ``tracks`` maps a category to its first and last frame (one
    instance per sampled frame between), ``speech`` holds (start, end, text) segments."""
    video = Video(video_id=video_id, path=path or f"/videos/{video_id}.mp4", content_hash=f"hash-{video_id}",
                  width=64, height=48, fps=FPS, frame_count=FRAMES, duration_s=FRAMES / FPS,
                  sampled_frames=list(SAMPLED), profile="embedded", scene=[(s, 0.9) for s in scene])
    out_tracks, instances, masks = [], [], {}
    for tid, (category, (first, last)) in enumerate(tracks.items(), start=1):
        frames = [f for f in SAMPLED if first <= f <= last]
        for k, f in enumerate(frames):
            mask = np.zeros((48, 64), bool)
            mask[10:20, 5 + 2 * (k % 20):15 + 2 * (k % 20)] = True
            bbox, centroid, area = mask_geometry(mask)  # type: ignore[misc]
            instances.append(Instance(video_id=video_id, track_id=tid, frame_index=f, category=category,
                                      category_score=0.9, mask_path="", bbox=bbox, centroid=centroid, area=area))
            masks[(tid, f)] = mask
        out_tracks.append(Track(video_id=video_id, track_id=tid, category=category, category_score=0.9,
                                category_source="test", first_frame=frames[0], last_frame=frames[-1],
                                frame_count=len(frames), mean_area=0.03, direction="stationary"))
    said = Speech(status="transcribed", language="en",
                  segments=[SpeechSegment(start=a, end=b, text=t, confidence=0.9) for a, b, t in speech]) \
        if speech else None
    twin = Twin(video=video, tracks=out_tracks, instances=instances, speech=said,
                shots=shots() if with_shots else [])
    return twin, masks
