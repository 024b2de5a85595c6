"""Ingestion cost of several code versions, measured back to back in one run (same machine, same load).

Each version (a git ref, or ``WORKTREE`` for the working tree as it is) is exported with ``git archive`` and ingests
the same videos serially in its own process, with its own code only (``PYTHONPATH`` = the export): model loading
and a warm-up ingest of the first video are not timed. Per version: seconds per video (sum), CPU seconds of the process (all
threads; steadier than wall time on a shared machine), sampled frames/s,
seconds per step, peak RSS, mean best-track mask J against the ground truth (``masks/<video>/<k>.png``), and the
load average before and after; then the ratio of every version's cost to the first one's.

    .venv/bin/python benchmarks/ingest_versions.py [--refs pre15=6a5d08d^1,main=main,new=WORKTREE]
        [--bench DIR] [--frames 16] [--pattern '*'] [--limit N] [--keep-stores DIR] [--out FILE]

The first ref is the baseline: ``6a5d08d^1`` is the code before the perception steps of #15 (COCO seeds, OCR,
word knowledge), whose cost target is at most 1.3x that baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Runs inside each version's own interpreter: only APIs that every measured version has (Ingestor.ingest, the
# result's seconds/timings, the store's get_twin/load_mask/delete), so old exports can be measured too.
RUNNER = r'''
import fnmatch, json, os, sys, time
from collections import defaultdict
from pathlib import Path
import numpy as np
from PIL import Image
from twinseek.config import load_settings
from twinseek.twins.pipeline import Ingestor, collect_videos
from twinseek.twins.store import TwinStore

bench, frames, pattern, limit, store_dir, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
videos = [v for v in collect_videos([bench / "videos"]) if fnmatch.fnmatch(v.name, pattern)]
videos = videos[: int(limit)] if limit != "none" else videos


def peak_rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def best_track_j(store, video_id, gt_dir):
    try:
        twin = store.get_twin(video_id, refinements=False)
    except TypeError:  # versions before the refinement overlay
        twin = store.get_twin(video_id)
    wanted = [f for f in twin.video.sampled_frames if (gt_dir / f"{f:05d}.png").exists()]
    if not wanted:
        return None
    tracks = defaultdict(dict)
    for inst in twin.instances:
        tracks[inst.track_id][inst.frame_index] = store.load_mask(inst)
    best = 0.0
    for masks in tracks.values():
        shape = next(iter(masks.values())).shape
        js = []
        for f in wanted:
            gt = np.asarray(Image.open(gt_dir / f"{f:05d}.png").convert("L").resize((shape[1], shape[0]), Image.NEAREST)) > 127
            if f not in masks:
                js.append(float(not gt.any()))
                continue
            union = (masks[f] | gt).sum()
            js.append(float((masks[f] & gt).sum() / union) if union else 1.0)
        best = max(best, float(np.mean(js)))
    return best


settings = load_settings(profile="embedded", sampling={"frames": frames})
with TwinStore(store_dir) as store:
    ingestor = Ingestor(store, settings)
    warm = ingestor.ingest(videos[0])  # loads every model; not timed
    store.delete(warm.video_id)
    rows, steps = [], defaultdict(float)
    start, cpu_start = time.perf_counter(), time.process_time()
    for video in videos:
        r = ingestor.ingest(video)
        if r.status != "ingested":
            rows.append({"video": video.name, "status": r.status, "error": r.error})
            continue
        for step, secs in r.timings.items():
            steps[step] += secs
        rows.append({"video": video.name, "status": r.status, "frames": r.frames, "tracks": r.tracks,
                     "seconds": round(r.seconds, 3), "video_id": r.video_id})
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    for row in rows:
        gt_dir = bench / "masks" / Path(row["video"]).stem
        if row["status"] == "ingested" and gt_dir.is_dir():
            row["best_track_j"] = best_track_j(store, row["video_id"], gt_dir)
ok = [r for r in rows if r["status"] == "ingested"]
js = [r["best_track_j"] for r in ok if r.get("best_track_j") is not None]
frames_done = sum(r["frames"] for r in ok)
Path(out).write_text(json.dumps({
    "videos": len(ok), "failed": len(rows) - len(ok), "frames": frames_done, "wall_s": round(wall, 2),
    "seconds": round(sum(r["seconds"] for r in ok), 2), "cpu_s": round(cpu, 2), "fps": round(frames_done / wall, 2),
    "seconds_per_step": {k: round(v, 2) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])},
    "peak_rss_mb": peak_rss_mb(), "mean_best_track_j": round(float(np.mean(js)), 4) if js else None,
    "j_videos": len(js), "rows": rows,
}, indent=1))
'''


def export(ref: str, dest: Path) -> Path:
    """The code of ``ref`` in ``dest`` (``WORKTREE``: a copy of this checkout's package as it is now, uncommitted
    changes included, so that editing the checkout during the run changes nothing)."""
    dest.mkdir(parents=True)
    if ref == "WORKTREE":
        shutil.copytree(ROOT / "twinseek", dest / "twinseek", ignore=shutil.ignore_patterns("__pycache__"))
        return dest
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refs", default="pre15=6a5d08d^1,main=main,new=WORKTREE",
                        help="comma-separated NAME=REF (git ref or WORKTREE); the first is the baseline")
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench",
                        help="bench folder (videos/, masks/); default: ../shared/data/dev-bench")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--pattern", default="*", help="only videos whose file name matches")
    parser.add_argument("--limit", type=int, default=None, help="at most this many videos")
    parser.add_argument("--keep-stores", type=Path, default=None, metavar="DIR",
                        help="keep each version's store in DIR/<name> (e.g. for `twinseek store diff`)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest_versions.json")
    args = parser.parse_args()

    if not (args.bench / "videos").is_dir():
        raise SystemExit(f"no bench at {args.bench} (a videos/ folder): pass --bench DIR")
    refs = [tuple(item.split("=", 1)) for item in args.refs.split(",") if item]
    if any(len(r) != 2 for r in refs):
        raise SystemExit("--refs takes NAME=REF pairs, e.g. pre15=6a5d08d^1,new=WORKTREE")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, ref in refs:
            code = export(ref, Path(tmp) / "code" / name)
            store = (args.keep_stores or Path(tmp) / "stores") / name
            if store.exists():
                raise SystemExit(f"{store} exists: each version needs a fresh store")
            out = Path(tmp) / f"{name}.json"
            env = {**os.environ, "PYTHONPATH": str(code)}
            load_before = os.getloadavg()
            print(f"{name} ({ref}) ...", flush=True)
            subprocess.run([sys.executable, "-c", RUNNER, str(args.bench), str(args.frames), args.pattern,
                            str(args.limit or "none"), str(store), str(out)], env=env, check=True, cwd=code)
            result = json.loads(out.read_text())
            result.update(ref=ref, commit=_commit(ref), load_avg_before=[round(x, 2) for x in load_before],
                          load_avg_after=[round(x, 2) for x in os.getloadavg()])
            results[name] = result
            print(f"  {result['frames']} frames, {result['seconds']:.1f} s, {result['fps']:.2f} frames/s, "
                  f"J {result['mean_best_track_j']}", flush=True)
    names = [name for name, _ in refs]
    ratios = {f"{a}/{b}": round(results[a]["seconds"] / results[b]["seconds"], 3)
              for i, a in enumerate(names) for b in names[:i]}
    cpu_ratios = {f"{a}/{b}": round(results[a]["cpu_s"] / results[b]["cpu_s"], 3)
                  for i, a in enumerate(names) for b in names[:i]}
    summary = {"bench": str(args.bench), "frames_per_video": args.frames, "pattern": args.pattern,
               "cost_ratios": ratios, "cpu_ratios": cpu_ratios, "versions": results,
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(f"\n{'version':10s} {'seconds':>8s} {'CPU s':>8s} {'frames/s':>9s} {'J':>6s} {'RSS MiB':>8s}  load before/after")
    for name in names:
        r = results[name]
        print(f"{name:10s} {r['seconds']:8.1f} {r['cpu_s']:8.1f} {r['fps']:9.2f} {r['mean_best_track_j'] or float('nan'):6.3f} "
              f"{r['peak_rss_mb']:8.0f}  {r['load_avg_before'][0]} / {r['load_avg_after'][0]}")
    print("cost ratios (seconds):", ", ".join(f"{k} {v}" for k, v in ratios.items()))
    print("CPU-time ratios:", ", ".join(f"{k} {v}" for k, v in cpu_ratios.items()))
    print(f"written to {args.out}")


def _commit(ref: str) -> str:
    if ref == "WORKTREE":
        ref = "HEAD"
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], check=True, capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    main()
