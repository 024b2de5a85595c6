"""The moment bench: long videos made of real clips of a bench, and queries whose answer is a time span.

A long video is a run of *segments*; a segment is one clip of the source bench played forward ``loops`` times
in a row. Every clip is re-encoded to one frame size (fitted inside ``width`` x ``height`` keeping its aspect,
padded with black) and one frame rate (``fps``; a 2 fps GIF repeats its frames) with ffmpeg, so the long videos
are plain constant-rate H.264 files whose segment boundaries fall on known frames. The record of which clip sits
at which span is the ground truth. With the defaults, 12 videos of 6 clips (3-5 minutes each) are made from the
36 clips of the dev bench, each clip used twice (never twice in one video), in an order fixed by ``seed``.

A query of the source bench whose kind is in ``kinds`` (explicit and implicit by default) and whose positive
clip is in some long video becomes a ``moment`` query: the same id and text, ``positives`` = the long videos
holding a positive clip, ``spans`` = ``[video, start_s, end_s]`` of every segment of such a clip (a query
whose clip is used twice has two positives; naming either at rank 1 is right). The folder it writes::

    <out>/videos/<long id>.mp4      the gallery (640x360, 24 fps, no audio)
    <out>/queries.jsonl             kind "moment" (see :class:`twinseek.evals.bench.MomentQuery`)
    <out>/manifest.json             :class:`Manifest`: the spec, the clips, each video's segments, the queries
    <out>/README.md                 what the folder is and how it was made

    twinseek build-moment-bench DEV OUT [--videos 12 --clips 6 --segment 30,40 --seed 0]
    build_moment_bench(dev_dir, out, MomentBenchSpec(...)) -> Manifest

What it is not: the clips are short and looped, so a "moment" is one repeated clip, and every segment boundary
is a hard cut (often with a change of frame shape); within a segment each loop restarts the clip (a cut too).
Real long videos change less abruptly. It measures whether a system finds the right stretch of a long file,
not how it copes with slow scene changes.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twinseek.errors import TwinseekError
from twinseek.evals.bench import Bench, MomentQuery, load_bench
from twinseek.media.decode import probe

logger = logging.getLogger(__name__)

FORMAT = "twinseek-moment-bench/1"


class MomentBenchSpec(BaseModel):
    """How a moment bench is made (recorded in its manifest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    videos: int = Field(12, ge=1, description="Long videos to make.")
    clips_per_video: int = Field(6, ge=1, description="Segments (distinct clips) per long video.")
    segment_s: tuple[float, float] = Field((30.0, 40.0), description="Target seconds of a segment, drawn "
                                           "uniformly; the clip is looped a whole number of times to come nearest.")
    min_video_s: float = Field(180.0, ge=0, description="A video shorter than this gets more loops of its "
                               "shortest segments until it is not.")
    fps: int = Field(24, ge=1, description="Frame rate of the long videos.")
    width: int = Field(640, ge=16, description="Frame width (clips are fitted inside and padded).")
    height: int = Field(360, ge=16, description="Frame height.")
    seed: int = Field(0, description="Seed of the clip order and the segment lengths.")
    kinds: tuple[str, ...] = Field(("explicit", "implicit"), description="Source query kinds made into moment "
                                   "queries.")
    clips: tuple[str, ...] | None = Field(None, description="Source clips to use (default: every video of the "
                                          "source bench).")
    crf: int = Field(20, ge=0, le=51, description="x264 quality of the re-encoding.")

    @field_validator("segment_s")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"segment_s must be 0 < min <= max, got {value}")
        return value


class Segment(BaseModel):
    """One clip played ``loops`` times: frames ``[start_frame, end_frame)``, seconds ``[start_s, end_s)``."""

    clip: str
    loops: int = Field(ge=1)
    start_frame: int = Field(ge=0)
    end_frame: int = Field(ge=1)
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)


class LongVideo(BaseModel):
    file: str = Field(description="Relative to the bench folder.")
    frames: int
    seconds: float
    segments: list[Segment]


class ClipInfo(BaseModel):
    file: str = Field(description="The source file's name in the source bench's videos/.")
    frames: int = Field(description="Frames after re-encoding at the bench's fps (one loop).")
    seconds: float


class Manifest(BaseModel):
    """``manifest.json`` of a moment bench."""

    format: str = FORMAT
    source: str = Field(description="The source bench folder.")
    spec: MomentBenchSpec
    ffmpeg: str = ""
    clips: dict[str, ClipInfo]
    videos: dict[str, LongVideo]
    queries: list[str] = Field(default_factory=list, description="Ids of the moment queries.")
    excluded: dict[str, str] = Field(default_factory=dict, description="Source query id -> why it was left out.")

    @property
    def total_seconds(self) -> float:
        return sum(v.seconds for v in self.videos.values())


class MomentBenchError(TwinseekError):
    """ffmpeg is missing or failed, or the source bench cannot fill the spec."""


# ---------------------------------------------------------------- the plan (pure)
def plan_videos(clip_frames: dict[str, int], spec: MomentBenchSpec) -> dict[str, list[tuple[str, int]]]:
    """Long video id -> [(clip, loops)] in play order, from each clip's frames per loop; deterministic in ``seed``.

    Clips are dealt from seeded permutations of the pool, one after another, so every clip is used about as often
    as any other; a clip already in the video being filled is skipped for the next one that is not. Each segment
    targets a length drawn from ``segment_s``; a video shorter than ``min_video_s`` lengthens its shortest
    segments by a loop at a time.
    """
    pool = sorted(clip_frames)
    if spec.clips_per_video > len(pool):
        raise MomentBenchError(f"{spec.clips_per_video} clips per video, but only {len(pool)} clips")
    rng = random.Random(spec.seed)
    queue: list[str] = []
    plans: dict[str, list[tuple[str, int]]] = {}
    for i in range(spec.videos):
        chosen: list[str] = []
        while len(chosen) < spec.clips_per_video:
            j = next((j for j, c in enumerate(queue) if c not in chosen), None)
            if j is None:  # the queue holds only clips this video has: deal another round
                deal = pool[:]
                rng.shuffle(deal)
                queue.extend(deal)
                continue
            chosen.append(queue.pop(j))
        earlier = [[c for c, _ in p] for p in plans.values()]
        for _ in range(len(chosen)):  # the same clips in the same order would be one video twice (one twin)
            if chosen not in earlier:
                break
            chosen = chosen[1:] + chosen[:1]
        loops = [max(1, round(rng.uniform(*spec.segment_s) * spec.fps / clip_frames[c])) for c in chosen]
        while sum(n * clip_frames[c] for c, n in zip(chosen, loops)) < spec.min_video_s * spec.fps:
            shortest = min(range(len(chosen)), key=lambda k: (loops[k] * clip_frames[chosen[k]], k))
            loops[shortest] += 1
        plans[f"long{i:02d}"] = list(zip(chosen, loops))
    return plans


def segments_of(plan: Sequence[tuple[str, int]], clip_frames: dict[str, int], fps: int) -> list[Segment]:
    """The segments of one planned video, frame-exact (the long video is constant-rate ``fps``)."""
    out, frame = [], 0
    for clip, loops in plan:
        end = frame + loops * clip_frames[clip]
        out.append(Segment(clip=clip, loops=loops, start_frame=frame, end_frame=end, start_s=round(frame / fps, 4),
                           end_s=round(end / fps, 4)))
        frame = end
    return out


def moment_queries(source: Bench, videos: dict[str, LongVideo],
                   kinds: Sequence[str]) -> tuple[list[MomentQuery], dict[str, str]]:
    """The moment queries made from ``source``'s queries of ``kinds``, and the ids left out with the reason."""
    where: dict[str, list[tuple[str, float, float]]] = {}
    for vid, video in sorted(videos.items()):
        for seg in video.segments:
            where.setdefault(seg.clip, []).append((vid, seg.start_s, seg.end_s))
    queries, excluded = [], {}
    for q in source.queries:
        if q.kind not in kinds:
            continue
        positives = [p for p in getattr(q, "positives", []) if p in where]
        if not positives:
            excluded[q.id] = "its positive clip is in no long video"
            continue
        spans = [span for p in positives for span in where[p]]
        queries.append(MomentQuery(id=q.id, text=q.text, positives=sorted({v for v, _, _ in spans}),  # type: ignore[union-attr]
                                   spans=spans, source=q.kind, clips=positives))
    return queries, excluded


# ---------------------------------------------------------------- building
def build_moment_bench(source_dir: str | Path, out: str | Path, spec: MomentBenchSpec | None = None) -> Manifest:
    """Make the moment bench of ``source_dir`` (a dev-bench folder) in ``out`` (see the module docstring).

    Raises:
        MomentBenchError: ffmpeg is missing or fails, a named clip is not in the source, or a video's frame count
            is not what the plan says.
        BenchError: the source bench is invalid.
    """
    spec = spec or MomentBenchSpec()
    source = load_bench(source_dir, spec.kinds)
    out = Path(out)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MomentBenchError("ffmpeg is not installed (apt-get install ffmpeg)")
    names = list(spec.clips) if spec.clips is not None else sorted(source.videos)
    unknown = [c for c in names if c not in source.videos]
    if unknown:
        raise MomentBenchError(f"clip(s) not in {source_dir}: {', '.join(unknown)}")
    (out / "videos").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="moment-clips-") as tmp:
        normalised = {c: _normalise(ffmpeg, source.videos[c], Path(tmp) / f"{c}.mp4", spec) for c in names}
        frames = {c: probe(p).frame_count for c, p in normalised.items()}
        videos = {}
        for vid, plan in plan_videos(frames, spec).items():
            segments = segments_of(plan, frames, spec.fps)
            path = out / "videos" / f"{vid}.mp4"
            _concatenate(ffmpeg, [normalised[c] for c, n in plan for _ in range(n)], path, Path(tmp), spec)
            made = probe(path).frame_count
            if made != segments[-1].end_frame:
                raise MomentBenchError(f"{path.name}: {made} frames, the plan says {segments[-1].end_frame}")
            videos[vid] = LongVideo(file=f"videos/{vid}.mp4", frames=made, seconds=round(made / spec.fps, 4),
                                    segments=segments)
            logger.info("%s: %d segments, %.0f s", vid, len(segments), made / spec.fps)
    queries, excluded = moment_queries(source, videos, spec.kinds)
    manifest = Manifest(source=str(source_dir), spec=spec, ffmpeg=_version(ffmpeg),
                        clips={c: ClipInfo(file=source.videos[c].name, frames=frames[c],
                                           seconds=round(frames[c] / spec.fps, 4)) for c in names},
                        videos=videos, queries=[q.id for q in queries], excluded=excluded)
    (out / "queries.jsonl").write_text("".join(q.model_dump_json(exclude_none=True) + "\n" for q in queries))
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=1) + "\n")
    (out / "README.md").write_text(readme(manifest))
    logger.info("moment bench %s: %d videos, %.1f min, %d queries", out, len(videos), manifest.total_seconds / 60,
                len(queries))
    return manifest


def load_manifest(root: str | Path) -> Manifest:
    return Manifest.model_validate_json((Path(root) / "manifest.json").read_text())


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise MomentBenchError(f"ffmpeg failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def _encode_args(spec: MomentBenchSpec, renumbered: bool = False) -> list[str]:
    # constant rate, no audio (the dev clips have none; a long video with sound in some segments would be a cue)
    rate = ["-fps_mode", "passthrough", "-video_track_timescale", str(spec.fps * 512)] if renumbered else \
        ["-r", str(spec.fps), "-fps_mode", "cfr"]
    return ["-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(spec.crf), "-pix_fmt", "yuv420p", *rate]


def _normalise(ffmpeg: str, src: Path, dst: Path, spec: MomentBenchSpec) -> Path:
    """One loop of a clip at the bench's frame rate and size (fitted, padded black, square pixels)."""
    w, h = spec.width, spec.height
    vf = (f"fps={spec.fps},scale={w}:{h}:force_original_aspect_ratio=decrease,"
          f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1")
    _run([ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(src), "-vf", vf, *_encode_args(spec), str(dst)])
    return dst


def _concatenate(ffmpeg: str, parts: Sequence[Path], dst: Path, tmp: Path, spec: MomentBenchSpec) -> None:
    # re-encoded rather than stream-copied: copying keeps each part's timestamps, which drift by milliseconds at
    # every join; and the frames are renumbered (frame k at k / fps, passed through as they come), because the
    # concat demuxer offsets each part by its container duration, which can differ from frames / fps by a fraction
    # of a frame that a constant-rate output would fill with a duplicate
    listing = tmp / f"{dst.stem}.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    _run([ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
          "-vf", f"setpts=N/({spec.fps}*TB)", *_encode_args(spec, renumbered=True), "-movflags", "+faststart",
          str(dst)])


def _version(ffmpeg: str) -> str:
    done = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else ""


def readme(manifest: Manifest) -> str:
    """The README of a built moment bench: what it is, how it was made, the format."""
    spec = manifest.spec
    lengths = [v.seconds for v in manifest.videos.values()]
    uses = {c: sum(s.clip == c for v in manifest.videos.values() for s in v.segments) for c in manifest.clips}
    return f"""# Moment bench (made by twinseek from {manifest.source})

Long videos made of real clips, with the time span of every clip as ground truth, for scoring moment retrieval
(`twinseek eval THIS_FOLDER --kinds moment`). Made by `twinseek build-moment-bench`
(`twinseek/evals/moment_bench.py`), {manifest.ffmpeg}.

- {len(manifest.videos)} videos, {min(lengths):.0f}-{max(lengths):.0f} s each, {sum(lengths) / 60:.1f} minutes in all;
  {spec.clips_per_video} segments per video, from {len(manifest.clips)} clips, each used {min(uses.values())}-{max(uses.values())} times (never twice in one
  video); order and lengths from seed {spec.seed}.
- A segment is one clip played forward `loops` times in a row (a target of {spec.segment_s[0]:g}-{spec.segment_s[1]:g} s each; videos
  under {spec.min_video_s:g} s get more loops). Every clip was re-encoded with ffmpeg to {spec.width}x{spec.height} (fitted,
  aspect kept, padded black) at {spec.fps} fps (low-rate GIFs repeat frames), H.264, no audio.
- So it is honest about what it is not: each segment is a short clip repeated, every loop restarts the clip (a
  cut), and segment boundaries are hard cuts, often with a change of frame shape. The clips keep their own
  licences (see the source bench's README); do not publish this folder.

## Files

- `videos/<id>.mp4`: the gallery.
- `queries.jsonl`: {len(manifest.queries)} queries, kind `moment`, one JSON object per line: `id` and `text` of the
  source query, `source` (its kind), `clips` (its positive clips), `positives` (the long videos holding them) and
  `spans` (`[video, start_s, end_s]` of every segment of those clips). A system is right at rank 1 when it
  names any positive; its moment is scored against the span(s) in the video it named.
- `manifest.json`: the spec, each clip's frames per loop, and per video its segments (`clip`, `loops`,
  `start_frame`/`end_frame` [end exclusive], `start_s`/`end_s` = frames / fps); `excluded`: the source queries
  left out and why.
"""


def spans_table(manifest: Manifest) -> str:
    """The segments of every video as Markdown (for reports)."""
    rows = ["| video | seconds | segments (clip x loops: start-end s) |", "|---|---|---|"]
    for vid, video in manifest.videos.items():
        segs = "; ".join(f"{s.clip} x{s.loops}: {s.start_s:.1f}-{s.end_s:.1f}" for s in video.segments)
        rows.append(f"| {vid} | {video.seconds:.1f} | {segs} |")
    return "\n".join(rows)


def read_queries(root: str | Path) -> list[MomentQuery]:
    """The moment queries of a built bench (without loading its gallery)."""
    lines = (Path(root) / "queries.jsonl").read_text().splitlines()
    return [MomentQuery.model_validate(json.loads(line)) for line in lines if line.strip()]
