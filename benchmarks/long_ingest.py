"""Long-video ingest (#22): seconds, real-time factor, seconds per minute of video and peak memory for 1-, 10- and
60-minute 720p inputs, and a resume after a kill.

The inputs are made from the three bundled DAVIS clips (``twinseek/data/samples``): looped and re-encoded once to a
1-minute 1280x720 25 fps H.264 file (a cut every 2-3 s where one clip follows another), which is then concatenated
(stream copy) to 10 and 60 minutes. Each ingest runs serially in a fresh process (embedded profile, default
settings: 16 frames for a short video, 8 a minute for a long one, at most 480; chunks of at most 64 frames) into a
fresh store; its peak RSS is that process's VmHWM, and its seconds include loading the models (a few seconds). The resume: a second ingest of the same file is killed
(SIGKILL) once about half of its chunks are staged, started again, and the chunks the second run built are counted.

    PYTHONPATH=. nice .venv/bin/python benchmarks/long_ingest.py --minutes 1 10 [--work /tmp/twinseek-long-ingest]

Writes ``benchmarks/results/long-ingest/<N>min.json`` per input.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "twinseek" / "data" / "samples"
OUT = ROOT / "benchmarks" / "results" / "long-ingest"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}

# One ingest in its own process: prints one JSON line (the result, the shots, the chunks it built, its VmHWM).
INGEST = r"""
import json, logging, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
from twinseek.config import load_settings
from twinseek.twins import chunks
from twinseek.twins.pipeline import Ingestor, peak_rss_mb
from twinseek.twins.store import TwinStore
video, store = Path(sys.argv[1]), Path(sys.argv[2])
built = []
perceive = chunks.perceive
def counted(*args, **kwargs):
    built.append(len(args[2]))
    return perceive(*args, **kwargs)
chunks.perceive = counted
settings = load_settings(store=store)
with TwinStore(store) as ts:
    start = time.perf_counter()
    result = Ingestor(ts, settings).ingest(video)
    wall = time.perf_counter() - start
    twin = ts.get_twin(result.video_id)
print(json.dumps({"seconds": round(wall, 1), "frames": result.frames, "tracks": result.tracks,
                  "shots": len(twin.shots), "duration_s": twin.video.duration_s,
                  "timings": {k: round(v, 1) for k, v in result.timings.items()},
                  "chunks_built": len(built), "peak_rss_mb": peak_rss_mb()}))
"""


def make_inputs(work: Path, minutes: list[int]) -> dict[int, Path]:
    work.mkdir(parents=True, exist_ok=True)
    one = work / "long-1min.mp4"
    if not one.exists():
        clips = sorted(SAMPLES.glob("*.mp4"))
        listing = work / "clips.txt"
        listing.write_text("".join(f"file '{c}'\n" for _ in range(12) for c in clips))
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                        "-vf", "scale=1280:720,fps=25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                        "-an", "-t", "60", str(one)], check=True)
    paths = {1: one}
    for n in minutes:
        if n == 1:
            continue
        path = work / f"long-{n}min.mp4"
        if not path.exists():
            listing = work / f"one-x{n}.txt"
            listing.write_text(f"file '{one}'\n" * n)
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                            "-c", "copy", str(path)], check=True)
        paths[n] = path
    return paths


def ingest(video: Path, store: Path, log: Path) -> dict[str, Any]:
    with open(log, "a") as err:
        out = subprocess.run([sys.executable, "-c", INGEST, str(video), str(store)], env=ENV, stdout=subprocess.PIPE,
                             stderr=err, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def killed_half_way(video: Path, store: Path, log: Path, chunks: int) -> dict[str, Any]:
    """Start an ingest, SIGKILL it once half of its chunks (``chunks``: how many the full run had) are staged,
    and start it again."""
    want = max(1, chunks // 2)
    start = time.perf_counter()
    with open(log, "a") as err:
        proc = subprocess.Popen([sys.executable, "-c", INGEST, str(video), str(store)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=err)
        staged = 0
        while proc.poll() is None:
            staging = store / "staging"
            staged = sum(1 for _ in staging.glob("*/chunk-*")) if staging.exists() else 0
            if staged >= want:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.5)
    killed_at = time.perf_counter() - start
    second = ingest(video, store, log)
    return {"staged_when_killed": staged, "killed_after_s": round(killed_at, 1), "second_run": second,
            "chunks_total": chunks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--work", type=Path, default=Path("/tmp/twinseek-long-ingest"))
    parser.add_argument("--no-resume", action="store_true", help="Skip the kill-and-resume run.")
    args = parser.parse_args()
    inputs = make_inputs(args.work, args.minutes)
    OUT.mkdir(parents=True, exist_ok=True)
    for n in args.minutes:
        video = inputs[n]
        log = args.work / f"{n}min.log"
        store = args.work / f"store-{n}min"
        subprocess.run(["rm", "-rf", str(store)], check=True)
        full = ingest(video, store, log)
        minutes = full["duration_s"] / 60
        report: dict[str, Any] = {
            "input": {"minutes": n, "file": video.name, "bytes": video.stat().st_size, "size": "1280x720",
                      "fps": 25},
            "full": full,
            # ingest seconds per second of video (< 2 meets "at least 0.5x real time"), and its inverse
            "real_time_factor": round(full["seconds"] / full["duration_s"], 3),
            "speed_x_real_time": round(full["duration_s"] / full["seconds"], 2),
            "seconds_per_minute": round(full["seconds"] / minutes, 1),
            "settings": "defaults (embedded profile; 16 frames, 8 a minute, at most 480; chunks of 64 frames)",
            "cpus": os.cpu_count(),
        }
        print(f"{n} min: {full['seconds']} s ({report['speed_x_real_time']}x real time, "
              f"{report['seconds_per_minute']} s/min), {full['frames']} frames, {full['shots']} shots, "
              f"{full['chunks_built']} chunks, peak RSS {full['peak_rss_mb']} MiB", flush=True)
        if full["chunks_built"] > 1 and not args.no_resume:
            store = args.work / f"store-{n}min-resume"
            subprocess.run(["rm", "-rf", str(store)], check=True)
            report["resume"] = killed_half_way(video, store, log, full["chunks_built"])
            second = report["resume"]["second_run"]
            print(f"  resume: killed with {report['resume']['staged_when_killed']} chunks staged after "
                  f"{report['resume']['killed_after_s']} s; the second run built {second['chunks_built']} of "
                  f"{full['chunks_built']} chunks in {second['seconds']} s", flush=True)
        (OUT / f"{n}min.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
