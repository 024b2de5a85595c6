"""Shots on the dev bench: how many shots each clip gets, and whether per-shot sampling keeps the frames of
one-shot clips identical to the old uniform sampling (so their twins do not change).

    PYTHONPATH=. nice python benchmarks/shot_sampling.py [VIDEOS_DIR] [--out benchmarks/results/shot-sampling.json]

For each video: the shots (start/end frames), the sampled indices of the streaming shot pass
(``twinseek.media.shots.decode_shots``) and of ``decode_video`` (uniform), whether they are equal, whether the
decoded frames are pixel-equal, and the seconds of each.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from twinseek.config import SamplingSettings, ShotSettings
from twinseek.media.decode import decode_video, is_supported
from twinseek.media.shots import decode_shots

DEV_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev-bench" / "videos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="?", type=Path, default=DEV_VIDEOS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shot-sampling.json"))
    args = parser.parse_args()
    sampling, shots = SamplingSettings(), ShotSettings()
    rows = []
    for path in sorted(p for p in args.videos.iterdir() if is_supported(p)):
        t0 = time.perf_counter()
        old = decode_video(path, sampling)
        t1 = time.perf_counter()
        new = decode_shots(path, sampling, shots)
        t2 = time.perf_counter()
        same = new.indices == old.indices
        pixels = same and all(np.array_equal(a, b) for a, b in zip(new.frames, old.frames, strict=True))
        rows.append({
            "video": path.name, "frames": new.info.frame_count, "fps": round(new.info.fps, 3),
            "duration_s": round(new.info.duration_s, 2), "shots": len(new.shots),
            "shot_spans": [[s.start_frame, s.end_frame] for s in new.shots],
            "sampled": len(new.indices), "same_indices": same, "same_pixels": pixels,
            "uniform_s": round(t1 - t0, 3), "shots_s": round(t2 - t1, 3),
        })
        print(f"{path.name:40s} {len(new.shots):3d} shots  {len(new.indices):3d} frames  same={same} "
              f"pixels={pixels}  {t1 - t0:.2f}s / {t2 - t1:.2f}s", flush=True)
    one = [r for r in rows if r["shots"] == 1]
    summary = {
        "videos": len(rows), "one_shot": len(one), "one_shot_identical": sum(r["same_pixels"] for r in one),
        "multi_shot": len(rows) - len(one), "shots_total": sum(r["shots"] for r in rows),
        "uniform_s": round(sum(r["uniform_s"] for r in rows), 2), "shots_s": round(sum(r["shots_s"] for r in rows), 2),
        "settings": {"sampling": sampling.model_dump(), "shots": shots.model_dump()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "videos": rows}, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}))


if __name__ == "__main__":
    main()
