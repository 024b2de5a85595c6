"""The moment kind: temporal IoU, moment R@1 and mean IoU through the one evaluator, the moment query model, the
plan of the long videos, and the bench builder on tiny solid-colour clips (the ground truth checked against the
frames of the videos it made)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from twinseek.agent.state import Moment
from twinseek.cli import app
from twinseek.evals import run
from twinseek.evals.bench import Bench, MomentQuery, load_bench
from twinseek.evals.metrics import aggregate, evaluate_query, moment_iou, temporal_iou
from twinseek.evals.moment_bench import (
    MomentBenchError,
    MomentBenchSpec,
    build_moment_bench,
    load_manifest,
    plan_videos,
    segments_of,
)
from twinseek.evals.report import metric_tables
from twinseek.evals.schemas import SystemSpec
from twinseek.evals.scorers import AgentScorer

from support.synthetic import Scene, write_video

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


# ---------------------------------------------------------------- temporal IoU
@pytest.mark.parametrize(("a", "b", "iou"), [
    ((0, 10), (0, 10), 1.0),
    ((0, 10), (5, 15), 5 / 15),
    ((0, 10), (2, 4), 0.2),  # one inside the other: the small one's share
    ((0, 10), (10, 20), 0.0),  # touching: no overlap
    ((0, 10), (12, 20), 0.0),
    ((3, 3), (0, 10), 0.0),  # a point localises nothing
    ((3, 3), (3, 3), 0.0),
    ((8, 2), (0, 10), 0.0),  # inverted: no length
    ((0.0, 30.0), (29.9, 60.0), 0.1 / 60.0),
])
def test_temporal_iou(a: tuple[float, float], b: tuple[float, float], iou: float) -> None:
    assert temporal_iou(a, b) == pytest.approx(iou)
    assert temporal_iou(b, a) == pytest.approx(iou)  # symmetric


def test_moment_iou_takes_the_best_ground_truth_span() -> None:
    assert moment_iou((0, 10), [(100, 110), (0, 10), (5, 15)]) == 1.0
    assert moment_iou((0, 10), [(5, 15), (100, 110)]) == pytest.approx(1 / 3)
    assert moment_iou((0, 10), []) == 0.0


# ---------------------------------------------------------------- the query model
def test_moment_query_checks_spans_against_positives() -> None:
    q = MomentQuery(id="q", text="a swan", positives=["a", "b"], spans=[("a", 0, 5), ("b", 10, 20), ("b", 40, 50)])
    assert q.spans_of("b") == [(10, 20), (40, 50)] and q.spans_of("c") == []
    with pytest.raises(ValidationError, match="not a positive"):
        MomentQuery(id="q", text="t", positives=["a"], spans=[("a", 0, 5), ("z", 0, 5)])
    with pytest.raises(ValidationError, match="without a span"):
        MomentQuery(id="q", text="t", positives=["a", "b"], spans=[("a", 0, 5)])
    with pytest.raises(ValidationError, match="empty or negative"):
        MomentQuery(id="q", text="t", positives=["a"], spans=[("a", 5, 5)])


# ---------------------------------------------------------------- the evaluator
@pytest.fixture(scope="module")
def two_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 2-second videos (24 frames at 12 fps): what "the whole video" means when a system gives no moment."""
    folder = tmp_path_factory.mktemp("gallery")
    return {v: write_video(folder / f"{v}.mp4", Scene(frames=24, fps=12, width=64, height=48, seed=i))
            for i, v in enumerate(("long00", "long01"))}


class Scripted:
    """A scorer with a fixed ranking and fixed moments per video (``None``: no moment)."""

    def __init__(self, scores: dict[str, float], moments: dict[str, tuple[float, float] | None]) -> None:
        self.scores, self.moments = scores, moments

    def score_videos(self, query_text: str) -> dict[str, float]:
        return self.scores

    def moment(self, text: str, video_id: str) -> tuple[float, float] | None:
        return self.moments.get(video_id)


def _bench(videos: dict[str, Path], *queries: MomentQuery) -> Bench:
    return Bench(root=Path("."), videos=videos, queries=list(queries))


QUERY = MomentQuery(id="q1", text="a swan", positives=["long00", "long01"], source="implicit",
                    spans=[("long00", 0.5, 1.5), ("long01", 1.0, 2.0)])


def test_moment_scored_against_the_span_in_the_video_at_rank_1(two_videos: dict[str, Path]) -> None:
    bench = _bench(two_videos, QUERY)
    # long01 at rank 1: its own span (1-2) counts, not long00's (0.5-1.5)
    hit = evaluate_query(Scripted({"long01": 0.9, "long00": 0.1}, {"long01": (1.0, 2.0)}), QUERY, bench)
    assert (hit.rank, hit.iou, hit.localised, hit.moment, hit.source) == (1, 1.0, True, [1.0, 2.0], "implicit")
    shifted = evaluate_query(Scripted({"long01": 0.9, "long00": 0.1}, {"long01": (0.5, 1.5)}), QUERY, bench)
    assert shifted.iou == pytest.approx(1 / 3)


def test_a_wrong_video_at_rank_1_scores_no_overlap(two_videos: dict[str, Path]) -> None:
    query = MomentQuery(id="q2", text="t", positives=["long00"], spans=[("long00", 0.0, 1.0)], source="explicit")
    bench = _bench(two_videos, query)
    record = evaluate_query(Scripted({"long01": 0.9, "long00": 0.1}, {"long01": (0.0, 1.0)}), query, bench)
    assert record.rank == 2 and record.iou == 0.0 and record.moment == [0.0, 1.0]


def test_no_moment_means_the_whole_video(two_videos: dict[str, Path]) -> None:
    bench = _bench(two_videos, QUERY)
    for scorer in (Scripted({"long00": 1.0, "long01": 0.0}, {}),
                   SimpleNamespace(score_videos=lambda text: {"long00": 1.0, "long01": 0.0})):  # no moment()
        record = evaluate_query(scorer, QUERY, bench)  # type: ignore[arg-type]
        assert record.localised is False and record.moment == [0.0, 2.0]
        assert record.iou == pytest.approx(0.5)  # the 1 s span of a 2 s video


def test_aggregate_moment_metrics_per_source(two_videos: dict[str, Path]) -> None:
    explicit = MomentQuery(id="e", text="e", positives=["long00"], spans=[("long00", 0.0, 1.0)], source="explicit")
    bench = _bench(two_videos, QUERY, explicit)
    scorer = Scripted({"long01": 0.9, "long00": 0.1}, {"long01": (1.2, 2.0), "long00": (0.0, 1.0)})
    records = [evaluate_query(scorer, q, bench) for q in bench.queries]
    m = aggregate(records)
    # QUERY: long01 at rank 1, tIoU 0.8; explicit: long00 at rank 2 (wrong video at rank 1), tIoU 0
    assert m["moment_r@1"] == 0.5 and m["moment_r@1_iou0.5"] == 0.5 and m["moment_r@1_iou0.7"] == 0.5
    assert m["moment_miou"] == pytest.approx(0.4) and m["moment_localised"] == 1.0
    assert m["moment_implicit_n"] == 1 and m["moment_implicit_r@1_iou0.7"] == 1.0
    assert m["moment_explicit_r@1"] == 0.0 and m["moment_explicit_miou"] == 0.0
    strict = aggregate([evaluate_query(Scripted({"long01": 1, "long00": 0}, {"long01": (1.4, 2.0)}), QUERY, bench)])
    assert strict["moment_r@1_iou0.5"] == 1.0 and strict["moment_r@1_iou0.7"] == 0.0  # tIoU 0.6


class MomentAgent:
    """An agent test double: hits with moments; nothing else is asked of it."""

    def search(self, query: str, k: int = 10, **overrides: Any) -> Any:
        hits = [SimpleNamespace(video_id="s1", relevance=0.9, judged_by="stub", objects=[],
                                moments=[Moment(start_s=1.0, end_s=2.0), Moment(start_s=0.0, end_s=0.5)]),
                SimpleNamespace(video_id="s0", relevance=0.6, judged_by="stub", objects=[], moments=[])]
        return SimpleNamespace(hits=hits, dropped=[], timings={}, models={}, fallbacks=[])


def test_agent_scorer_gives_its_hit_s_first_moment(two_videos: dict[str, Path]) -> None:
    scorer = AgentScorer(MomentAgent(), {"long00": "s0", "long01": "s1"}, tau=0.5)
    record = evaluate_query(scorer, QUERY, _bench(two_videos, QUERY))
    assert record.rank == 1 and record.moment == [1.0, 2.0] and record.iou == 1.0
    assert record.hits[0].moments == [(1.0, 2.0), (0.0, 0.5)]
    assert scorer.moment(QUERY.text, "long00") is None  # a hit without moments: the whole video


def test_the_whole_baseline_parses_but_is_not_in_all() -> None:
    from twinseek.evals.schemas import ALL_SYSTEMS

    assert SystemSpec.parse("whole").kind == "whole" and "whole" not in ALL_SYSTEMS


# ---------------------------------------------------------------- the plan
def test_plan_uses_clips_evenly_never_twice_in_a_video() -> None:
    frames = {f"c{i:02d}": 48 + 24 * (i % 5) for i in range(36)}  # 2-6 s clips at 24 fps
    spec = MomentBenchSpec()
    plans = plan_videos(frames, spec)
    assert plans == plan_videos(frames, spec)  # deterministic
    assert plans != plan_videos(frames, MomentBenchSpec(seed=1))
    assert len(plans) == 12 and all(len(p) == 6 and len({c for c, _ in p}) == 6 for p in plans.values())
    assert set(Counter(c for p in plans.values() for c, _ in p).values()) == {2}
    for p in plans.values():
        seconds = [n * frames[c] / 24 for c, n in p]
        assert sum(seconds) >= 180 and all(20 <= s <= 60 for s in seconds)
        segments = segments_of(p, frames, 24)
        assert segments[0].start_frame == 0 and all(a.end_frame == b.start_frame for a, b in zip(segments, segments[1:]))
    with pytest.raises(MomentBenchError):
        plan_videos({"a": 10}, MomentBenchSpec(clips_per_video=2))


def test_plan_never_makes_the_same_video_twice() -> None:
    plans = plan_videos({"a": 24, "b": 24, "c": 24}, MomentBenchSpec(videos=2, clips_per_video=3, segment_s=(1, 1),
                                                                     min_video_s=0))
    assert [c for c, _ in plans["long00"]] != [c for c, _ in plans["long01"]]


# ---------------------------------------------------------------- the builder
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220)}


def _solid(path: Path, colour: tuple[int, int, int], frames: int, fps: int, size: tuple[int, int]) -> None:
    codec, pix_fmt = ("gif", "rgb8") if path.suffix == ".gif" else ("libx264", "yuv420p")
    with av.open(str(path), mode="w") as container:
        stream: Any = container.add_stream(codec, rate=fps)  # a video stream (add_stream is typed for any kind)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        image = np.zeros((size[1], size[0], 3), np.uint8) + np.array(colour, np.uint8)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source bench of three solid clips of different shapes, rates and containers, with queries."""
    root = tmp_path_factory.mktemp("dev")
    (root / "videos").mkdir()
    _solid(root / "videos" / "red.mp4", COLOURS["red"], 12, 12, (96, 54))  # 1 s, 16:9
    _solid(root / "videos" / "green.mp4", COLOURS["green"], 18, 12, (48, 48))  # 1.5 s, square
    _solid(root / "videos" / "blue.gif", COLOURS["blue"], 4, 2, (40, 30))  # 2 s at 2 fps, 4:3
    queries = [
        {"id": "i1", "kind": "implicit", "text": "the colour of a stop sign", "positives": ["red"]},
        {"id": "e1", "kind": "explicit", "text": "a green screen", "positives": ["green"]},
        {"id": "e2", "kind": "explicit", "text": "a blue screen", "positives": ["blue"]},
        {"id": "n1", "kind": "negation", "text": "nothing red", "positives": ["green"]},
        {"id": "m1", "kind": "mcq", "video": "red", "options": ["red", "blue"], "answer": 0},
    ]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    return root


SPEC = MomentBenchSpec(videos=2, clips_per_video=3, segment_s=(2.0, 3.0), min_video_s=0, fps=12, width=64,
                       height=36, seed=3)


@needs_ffmpeg
def test_build_writes_videos_whose_frames_match_the_manifest(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "moments"
    manifest = build_moment_bench(source, out, SPEC)
    assert load_manifest(out) == manifest and (out / "README.md").read_text().startswith("# Moment bench")
    assert {c: i.frames for c, i in manifest.clips.items()} == {"red": 12, "green": 18, "blue": 24}
    for vid, video in manifest.videos.items():
        with av.open(str(out / video.file)) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (64, 36) and stream.average_rate == 12
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert len(frames) == video.frames == video.segments[-1].end_frame
        for seg in video.segments:
            assert seg.end_frame - seg.start_frame == seg.loops * manifest.clips[seg.clip].frames
            assert seg.start_s == pytest.approx(seg.start_frame / 12, abs=1e-3)
            want = np.array(COLOURS[seg.clip])
            for k in (seg.start_frame, seg.end_frame - 1):  # a segment's first and last frames are its clip's
                centre = frames[k][14:22, 28:36].reshape(-1, 3).mean(axis=0)
                assert np.abs(centre - want).max() < 40, (vid, seg.clip, k, centre)
        blue = next(s for s in video.segments if s.clip == "blue")
        assert frames[blue.start_frame][18, 2].max() < 20  # 4:3 fitted into 16:9: black bars at the sides

    bench = load_bench(out)
    assert set(bench.videos) == {"long00", "long01"} and {q.kind for q in bench.queries} == {"moment"}
    by_id = {q.id: q for q in bench.queries}
    assert sorted(by_id) == ["e1", "e2", "i1"] and manifest.excluded == {}  # negation and mcq are not made
    red = by_id["i1"]
    assert isinstance(red, MomentQuery) and red.source == "implicit" and red.clips == ["red"]
    assert red.positives == ["long00", "long01"]  # every clip is in both videos
    assert red.spans_of("long00") == [(s.start_s, s.end_s) for s in manifest.videos["long00"].segments
                                      if s.clip == "red"]


@needs_ffmpeg
def test_build_from_the_cli_then_evaluate_the_random_baseline(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["build-moment-bench", str(source), str(out), "--videos", "2", "--clips", "2",
                                      "--segment", "1,2", "--min-video", "0", "--only", "red,green"])
    assert result.exit_code == 0, result.output
    assert "2 videos" in result.output and "2 moment queries" in result.output
    run_result = run(out, out=tmp_path / "run", systems=["random"], kinds=["moment"], report=True)
    metrics = run_result.systems["random"].metrics
    assert metrics["moment_n"] == 2 and metrics["moment_localised"] == 0.0
    manifest = load_manifest(out)
    for record in run_result.systems["random"].records:  # both videos hold every clip: rank 1 is always right
        video = manifest.videos[record.ranking[0].video]
        seg = next(s for s in video.segments if s.clip == {"e1": "green", "i1": "red"}[record.id])
        assert record.moment == pytest.approx([0.0, video.seconds], abs=0.01)  # no moment: the whole video
        assert record.iou == pytest.approx((seg.end_s - seg.start_s) / video.seconds, abs=0.01)
    assert list(metric_tables(run_result)) == ["moment"]  # no empty tables of the kinds not run
    bad = CliRunner().invoke(app, ["build-moment-bench", str(source), str(out), "--only", "purple"])
    assert bad.exit_code != 0 and "purple" in bad.output
