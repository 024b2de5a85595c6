"""Mask quality of the embedded seeds + segmenter on the DAVIS clips of the dev bench.

For every video with ground truth (``masks/<name>/<k>.png``, 0/255 foreground of decoded frame ``k``) this
decodes ``--frames`` uniformly sampled frames, downscales them to a max side of 640, builds the seeds as
ingestion does (``EmbeddedDetector.detect`` person masks on every frame, plus the COCO detector's boxes on
``perception.detector_keyframes`` keyframes) and runs ``EmbeddedSegmenter.segment``; each track is scored by its
mean IoU (J) against the ground truth over the sampled frames (a frame where the track has no mask scores 0 when
the ground truth is non-empty). The best track's J is reported per video, with the COCO seeds (``best_j``) and,
as the baseline of the same run, without them (``best_j_people_only``). Results go to
``benchmarks/results/masks.json``.

Usage: ``python benchmarks/masks.py [--bench DIR] [--frames 16] [--videos a,b]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from twinseek.config import load_settings  # noqa: E402
from twinseek.media.masks import load_mask, mask_iou, resize_mask, spread  # noqa: E402
from twinseek.twins.adapters.base import Detection, TrackedObject  # noqa: E402
from twinseek.twins.adapters.embedded.classifier import EmbeddedDetector  # noqa: E402
from twinseek.twins.adapters.embedded.coco import EmbeddedObjectDetector  # noqa: E402
from twinseek.twins.adapters.embedded.tracker import EmbeddedSegmenter  # noqa: E402
from twinseek.twins.perception import _add_object_seeds  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MAX_SIDE = 640
log = logging.getLogger(__name__)


def decode_sampled(path: Path, n: int) -> tuple[list[int], list[np.ndarray]]:
    """Decode every frame (DAVIS clips are short), keep ``n`` uniformly spaced ones, downscaled to 640 px."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    idx = spread(len(frames), n)
    out = []
    for i in idx:
        f = frames[i]
        scale = MAX_SIDE / max(f.shape[:2])
        if scale < 1:
            f = cv2.resize(f, (round(f.shape[1] * scale), round(f.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(f))
    return idx, out


def load_gt(mask_dir: Path, idx: Sequence[int], shape: tuple[int, int]) -> list[np.ndarray]:
    return [resize_mask(load_mask(mask_dir / f"{k:05d}.png"), shape) for k in idx]


def track_j(track: TrackedObject, gts: Sequence[np.ndarray]) -> float:
    scores = []
    for pos, gt in enumerate(gts):
        mask = track.masks.get(pos)
        if mask is None:
            scores.append(0.0 if gt.any() else 1.0)
        else:
            scores.append(mask_iou(mask, gt))
    return float(np.mean(scores))


def _best(tracks: list[TrackedObject], gts: Sequence[np.ndarray]) -> tuple[float, TrackedObject | None]:
    js = sorted(((track_j(t, gts), t) for t in tracks), key=lambda x: -x[0])
    return js[0] if js else (0.0, None)


def run_video(name: str, bench: Path, n: int, detector: EmbeddedDetector, coco: EmbeddedObjectDetector,
              keyframes: int, seg: EmbeddedSegmenter) -> dict:
    idx, frames = decode_sampled(bench / "videos" / f"{name}.mp4", n)
    gts = load_gt(bench / "masks" / name, idx, frames[0].shape[:2])
    t0 = time.perf_counter()
    seeds: dict[int, list[Detection]] = {pos: detector.detect(f) for pos, f in enumerate(frames)}
    t1 = time.perf_counter()
    people_only = _best(seg.segment(frames, seeds), gts)
    t2 = time.perf_counter()
    _add_object_seeds(seeds, frames, coco, spread(len(frames), keyframes))
    t3 = time.perf_counter()
    tracks = seg.segment(frames, seeds)
    t4 = time.perf_counter()
    best = _best(tracks, gts)
    return {
        "video": name,
        "best_j": round(best[0], 4),
        "best_j_people_only": round(people_only[0], 4),
        "best_track": None if best[1] is None else best[1].track_id,
        "best_source": None if best[1] is None else best[1].source,
        "best_label": None if best[1] is None else best[1].label,
        "tracks": len(tracks),
        "detect_s": round(t1 - t0, 3),
        "coco_s": round(t3 - t2, 3),
        "segment_s": round(t4 - t3, 3),
        "frames": len(frames),
        "size": list(frames[0].shape[:2]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=REPO.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--videos", default="", help="comma-separated subset of clip names")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "masks.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    names = sorted(p.name for p in (args.bench / "masks").iterdir() if (args.bench / "videos" / f"{p.name}.mp4").exists())
    if args.videos:
        names = [n for n in names if n in args.videos.split(",")]
    perception = load_settings().perception
    detector, seg = EmbeddedDetector(), EmbeddedSegmenter()
    coco = EmbeddedObjectDetector(threshold=perception.detector_threshold)
    rows = []
    print(f"{'video':<16} {'J':>6} {'J people':>9} {'tracks':>6} {'detect s':>9} {'coco s':>7} {'segment s':>9}  best")
    for name in names:
        r = run_video(name, args.bench, args.frames, detector, coco, perception.detector_keyframes, seg)
        rows.append(r)
        print(f"{name:<16} {r['best_j']:>6.3f} {r['best_j_people_only']:>9.3f} {r['tracks']:>6} {r['detect_s']:>9.2f} "
              f"{r['coco_s']:>7.2f} {r['segment_s']:>9.2f}  {r['best_source']} ({r['best_label']})")
    mean = lambda key: float(np.mean([r[key] for r in rows])) if rows else 0.0  # noqa: E731
    print(f"{'mean':<16} {mean('best_j'):>6.3f} {mean('best_j_people_only'):>9.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "frames": args.frames, "max_side": MAX_SIDE, "detector_keyframes": perception.detector_keyframes,
        "mean_j": round(mean("best_j"), 4), "mean_j_people_only": round(mean("best_j_people_only"), 4),
        "mean_segment_s": round(mean("segment_s"), 3), "mean_coco_s": round(mean("coco_s"), 3), "videos": rows,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
