"""Ingestion benchmark on a bench folder (default: ../shared/data/dev-bench): serial against parallel, in one run.

Reports, in one run: sampled frames per second of decode-only and of full ingestion in each mode, each mode's
ratio against the serial frames/s measured in the same run, worker start-up time (model loading, not counted in
frames/s), peak RSS of the parent and of each worker, whether each mode's store is identical to the serial one
(``twinseek store diff``: videos, tracks, instances, relations, mask pixels), time per specialist (serial), and mask
quality: for every video with ground-truth masks (``masks/<video>/<k>.png`` for decoded frame ``k``), the mean IoU
(J) of the best-matching track over the sampled frames. The machine's load average is recorded before and after.

Modes: ``serial`` (one process), ``workers`` (``--workers`` spawned processes), ``ray`` (``--workers`` Ray actors
on a local Ray instance), ``ray-2nodes`` (a simulated two-node cluster, ``ray.cluster_utils.Cluster``, one actor
per node, each node ``--workers``/2 CPUs).

    .venv/bin/python benchmarks/ingest.py [--bench DIR] [--frames 16] [--modes serial,workers,ray,ray-2nodes]
        [--workers 2] [--pattern '*.mp4'] [--limit N] [--profile embedded] [--out FILE] [--keep-stores DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import logging
import os
import platform
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from twinseek.config import Settings, load_settings
from twinseek.media.decode import decode_video
from twinseek.media.masks import load_mask, mask_iou, resize_mask
from twinseek.twins.compare import diff_stores
from twinseek.twins.parallel import BuildExecutor, ProcessPoolBuildExecutor, RayBuildExecutor
from twinseek.twins.pipeline import Ingestor, collect_videos, peak_rss_mb
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


MODES = ("serial", "workers", "ray", "ray-2nodes")


@contextmanager
def executor_for(mode: str, settings: Settings, workers: int) -> Iterator[BuildExecutor | None]:
    if mode == "serial":
        yield None
    elif mode == "workers":
        with ProcessPoolBuildExecutor(settings, workers) as executor:
            yield executor
    elif mode == "ray":
        with RayBuildExecutor(settings, "local", workers) as executor:
            yield executor
    elif mode == "ray-2nodes":
        import ray
        from ray.cluster_utils import Cluster

        per_node = {"num_cpus": max(1, workers // 2), "object_store_memory": 100 * 2**20, "include_dashboard": False}
        cluster = Cluster(initialize_head=True, head_node_args=per_node)
        cluster.add_node(**per_node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
        try:
            with RayBuildExecutor(settings, workers=2 * per_node["num_cpus"]) as executor:
                yield executor
        finally:
            ray.shutdown()
            cluster.shutdown()
    else:
        raise SystemExit(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def run_mode(mode: str, videos: list[Path], settings: Settings, workers: int, store_dir: Path,
             bench: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    start = time.perf_counter()
    with executor_for(mode, settings, workers) as executor, TwinStore(store_dir) as store:
        ingestor = Ingestor(store, settings)
        if executor is None:
            ingestor.builder.warm_up()  # the workers of the other modes load their models before the clock starts
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        results = ingestor.ingest_many(videos, executor=executor)
        ingest_s = time.perf_counter() - start
        worker_info = executor.workers() if executor is not None else []
        rows, totals = [], defaultdict(float)
        for result in results:
            if result.status != "ingested":
                print(f"  {Path(result.path).name}: {result.status} {result.error or ''}", flush=True)
                continue
            gt_dir = bench / "masks" / Path(result.path).stem
            j, track = best_track_j(store, result.video_id, gt_dir) if gt_dir.is_dir() else (None, None)
            for step, secs in result.timings.items():
                totals[step] += secs
            rows.append({"video": Path(result.path).name, "frames": result.frames, "tracks": result.tracks,
                         "seconds": round(result.seconds, 3), "best_track_j": None if j is None else round(j, 3),
                         "best_track": track, "worker": result.worker})
    frames = sum(r["frames"] for r in rows)
    js = [r["best_track_j"] for r in rows if r["best_track_j"] is not None]
    summary: dict[str, Any] = {
        "videos": len(rows), "failed": sum(r.status == "failed" for r in results), "frames": frames,
        "seconds": round(ingest_s, 2), "fps": round(frames / ingest_s, 2), "startup_s": round(startup_s, 2),
        "parent_peak_rss_mb": peak_rss_mb(), "mean_best_track_j": round(float(np.mean(js)), 3) if js else None,
        "seconds_per_step": {k: round(v, 2) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
    }
    if worker_info:
        summary["workers"] = [{"worker": w.name, "peak_rss_mb": w.peak_rss_mb} for w in worker_info]
        summary["nodes"] = len({w.node_id or w.host for w in worker_info})
        summary["worker_peak_rss_mb_max"] = max(w.peak_rss_mb for w in worker_info)
    print(f"{mode:11s} {frames} frames in {ingest_s:.1f} s: {frames / ingest_s:.2f} frames/s "
          f"(start-up {startup_s:.1f} s)", flush=True)
    return summary, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--profile", default="embedded")
    parser.add_argument("--modes", default="serial,workers,ray,ray-2nodes",
                        help=f"comma-separated, from {', '.join(MODES)}; serial (the baseline) always runs first")
    parser.add_argument("--workers", type=int, default=2, help="worker processes / Ray actors of the parallel modes")
    parser.add_argument("--pattern", default="*", help="only videos whose file name matches (e.g. '*.mp4': "
                        "DAVIS + LOVEU without the MSR-VTT GIFs)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many videos (smoke runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest.json")
    parser.add_argument("--keep-stores", type=Path, default=None, metavar="DIR",
                        help="write each mode's store to DIR/<mode> and keep it (for `twinseek store diff` against "
                             "another code version, or an eval); default: a temporary folder")
    args = parser.parse_args()

    videos = [v for v in collect_videos([args.bench / "videos"]) if fnmatch.fnmatch(v.name, args.pattern)]
    videos = videos[: args.limit]
    if not videos:
        raise SystemExit(f"no videos matching {args.pattern!r} in {args.bench / 'videos'} (--bench DIR)")
    modes = ["serial", *[m for m in args.modes.split(",") if m and m != "serial"]]
    settings = load_settings(profile=args.profile, sampling={"frames": args.frames})
    load_before = os.getloadavg()

    start = time.perf_counter()
    decoded_frames = sum(len(decode_video(v, settings.sampling).frames) for v in videos)
    decode_fps = decoded_frames / (time.perf_counter() - start)

    summaries: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if args.keep_stores is not None:
            tmp = str(args.keep_stores)
            for mode in modes:
                if (args.keep_stores / mode).exists():
                    raise SystemExit(f"{args.keep_stores / mode} exists: --keep-stores needs fresh store folders")
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
        for mode in modes:
            summaries[mode], mode_rows = run_mode(mode, videos, settings, args.workers, Path(tmp) / mode, args.bench)
            rows = rows or mode_rows
            summaries[mode]["ratio_vs_serial"] = round(summaries[mode]["fps"] / summaries["serial"]["fps"], 3)
            if mode != "serial":
                with TwinStore(Path(tmp) / "serial", create=False) as a, TwinStore(Path(tmp) / mode, create=False) as b:
                    diff = diff_stores(a, b)
                summaries[mode]["identical_to_serial"] = diff.identical
                summaries[mode]["differences"] = diff.differences[:5]
    summaries["serial"]["ingest_to_decode_ratio"] = round(summaries["serial"]["fps"] / decode_fps, 3)
    summary = {
        "profile": args.profile, "videos": len(videos), "pattern": args.pattern,
        "sampled_frames_per_video": args.frames, "workers": args.workers, "decode_only_fps": round(decode_fps, 2),
        "modes": summaries,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
                    "load_avg_1_5_15_after": [round(x, 2) for x in os.getloadavg()]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "videos": rows}, indent=2))
    print(f"\n{'mode':11s} {'frames/s':>9s} {'x serial':>9s} {'start-up s':>10s} {'peak RSS/worker MiB':>20s} "
          f"{'J':>6s}  identical")
    for mode, m in summaries.items():
        rss = m.get("worker_peak_rss_mb_max", m["parent_peak_rss_mb"])
        print(f"{mode:11s} {m['fps']:9.2f} {m['ratio_vs_serial']:9.2f} {m['startup_s']:10.1f} {rss:20.0f} "
              f"{m['mean_best_track_j'] or float('nan'):6.3f}  {m.get('identical_to_serial', '-')}")
    print(f"load average before {summary['machine']['load_avg_1_5_15_before']}, after "
          f"{summary['machine']['load_avg_1_5_15_after']}; written to {args.out}")


if __name__ == "__main__":
    main()
