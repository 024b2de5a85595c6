"""Ingestion benchmark on a bench folder (default: ../shared/data/dev-bench).

Reports, in one run: sampled frames per second of full ingestion and of decode-only (and their ratio), time
per specialist, peak RSS, and mask quality: for every video with ground-truth masks (``masks/<video>/<k>.png``
for decoded frame ``k``), the mean IoU (J) of the best-matching track over the sampled frames.

    .venv/bin/python benchmarks/ingest.py [--bench DIR] [--frames 16] [--profile embedded] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from twinseek.config import load_settings
from twinseek.media import load_mask, mask_iou, resize_mask
from twinseek.twins.decode import decode_video
from twinseek.twins.pipeline import Ingestor, collect_videos
from twinseek.twins.store import TwinStore

ROOT = Path(__file__).resolve().parent.parent


def best_track_j(store: TwinStore, video_id: str, gt_dir: Path) -> tuple[float, int | None]:
    """Mean J of the best track against the ground truth, over the sampled frames that have ground truth."""
    twin = store.get_twin(video_id, refinements=False)
    frames = [f for f in twin.video.sampled_frames if (gt_dir / f"{f:05d}.png").exists()]
    if not frames:
        return float("nan"), None
    by_track: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    for inst in twin.instances:
        by_track[inst.track_id][inst.frame_index] = store.load_mask(inst)
    size = next(iter(next(iter(by_track.values())).values())).shape if by_track else None
    gts = {}
    for f in frames:
        gt = load_mask(gt_dir / f"{f:05d}.png")
        gts[f] = resize_mask(gt, size) if size is not None else gt
    best, best_id = 0.0, None
    for track_id, masks in by_track.items():
        j = float(np.mean([mask_iou(masks[f], gts[f]) if f in masks else float(not gts[f].any()) for f in frames]))
        if j > best:
            best, best_id = j, track_id
    return best, best_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--profile", default="embedded")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest.json")
    args = parser.parse_args()

    videos = collect_videos([args.bench / "videos"])
    settings = load_settings(profile=args.profile, sampling={"frames": args.frames})

    start = time.perf_counter()
    decoded_frames = sum(len(decode_video(v, settings.sampling).frames) for v in videos)
    decode_s = time.perf_counter() - start

    rows = []
    totals: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp, TwinStore(tmp) as store:
        ingestor = Ingestor(store, settings)
        load_start = time.perf_counter()
        _ = ingestor.specialists  # model construction is lazy; loading happens on first use
        warm = ingestor.ingest(videos[0])  # warm-up: loads the models, not counted
        load_s = time.perf_counter() - load_start - sum(warm.timings.values())
        store.delete(warm.video_id)
        start = time.perf_counter()
        for video in videos:
            result = ingestor.ingest(video)
            gt_dir = args.bench / "masks" / video.stem
            j, track = best_track_j(store, result.video_id, gt_dir) if gt_dir.is_dir() else (None, None)
            for step, secs in result.timings.items():
                totals[step] += secs
            rows.append({"video": video.name, "frames": result.frames, "tracks": result.tracks,
                         "seconds": round(result.seconds, 3), "best_track_j": None if j is None else round(j, 3),
                         "best_track": track})
            print(f"{video.name:28s} frames={result.frames:3d} tracks={result.tracks:2d} "
                  f"{result.seconds:6.2f}s" + ("" if j is None else f"  J={j:.3f}"), flush=True)
        ingest_s = time.perf_counter() - start
    ingested_frames = sum(r["frames"] for r in rows)
    js = [r["best_track_j"] for r in rows if r["best_track_j"] is not None]
    summary = {
        "profile": args.profile,
        "videos": len(videos),
        "sampled_frames_per_video": args.frames,
        "decode_only_fps": round(decoded_frames / decode_s, 2),
        "ingest_fps": round(ingested_frames / ingest_s, 2),
        "ingest_to_decode_ratio": round((ingested_frames / ingest_s) / (decoded_frames / decode_s), 3),
        "model_load_s": round(load_s, 2),
        "seconds_per_step": {k: round(v, 2) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "mean_best_track_j": round(float(np.mean(js)), 3) if js else None,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "videos": rows}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
