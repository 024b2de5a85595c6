"""How well shots group into scenes (#22): the scene threshold chosen on fold 0 of the moment bench, reported on
fold 1 (the link threshold and window of :func:`twinseek.twins.scenes.group_shots`).

The moment bench's long videos are dev clips looped (``manifest.json``: each video's segments); a segment is the
scene a perfect grouping would find. For each threshold and window of :func:`twinseek.twins.scenes.group_shots`, and each
segment, the best tIoU of a scene found in its video; per fold (a segment's fold is its clip's, as in
``benchmarks/moments.py``): the mean of that best tIoU, the share of segments matched at tIoU >= 0.5, and the
number of scenes per segment. The pair with the highest fold-0 mean is the one chosen (ties: the lower); fold 1 reports it.

    PYTHONPATH=. .venv/bin/python benchmarks/scenes.py --store STORE [--bench ~/.cache/twinseek/moment-bench]
        [--out benchmarks/results/moments/scenes.json]

The store must hold the bench's videos ingested with shot labels (ingest since m012_shot_labels). It is opened
read-only (a copy, as opening may write lock files).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twinseek.evals.calibrate import video_fold
from twinseek.evals.metrics import temporal_iou
from twinseek.evals.moment_bench import load_manifest
from twinseek.twins.scenes import SCENE_SIMILARITY, SCENE_WINDOW, scenes
from twinseek.twins.store import TwinStore

FOLDS = 2
THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
WINDOWS = [1, 2, 3, 4, 6]


def measure(store: TwinStore, manifest: Any, threshold: float, window: int) -> dict[str, dict[str, float]]:
    per_fold: dict[int, list[tuple[float, int]]] = {f: [] for f in range(FOLDS)}
    for video_id, video in manifest.videos.items():
        twin = store.get_twin(video_id)
        found = scenes(twin, threshold, window) or []
        spans = [(s.start_s, s.end_s) for s in found] or [(0.0, video.seconds)]
        for seg in video.segments:
            best = max(temporal_iou((a, b), (seg.start_s, seg.end_s)) for a, b in spans)
            inside = sum(1 for a, b in spans if (a + b) / 2 >= seg.start_s and (a + b) / 2 < seg.end_s)
            per_fold[video_fold(seg.clip, FOLDS)].append((best, inside))
    out = {}
    for fold, rows in per_fold.items():
        out[f"fold{fold}"] = {"segments": len(rows), "mean_best_iou": round(sum(r[0] for r in rows) / len(rows), 3),
                              "matched_0.5": round(sum(r[0] >= 0.5 for r in rows) / len(rows), 3),
                              "scenes_per_segment": round(sum(r[1] for r in rows) / len(rows), 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--bench", type=Path, default=Path.home() / ".cache/twinseek/moment-bench")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/moments/scenes.json"))
    args = parser.parse_args()
    manifest = load_manifest(args.bench)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(args.store, copy, ignore=shutil.ignore_patterns("masks", "index"))
        with TwinStore(copy) as store:
            rows = {f"{t}/{w}": measure(store, manifest, t, w) for t in THRESHOLDS for w in WINDOWS}
    chosen = max(rows, key=lambda key: (rows[key]["fold0"]["mean_best_iou"], -float(key.split("/")[0]),
                                        -int(key.split("/")[1])))
    result = {"store": str(args.store), "bench": str(args.bench), "settings": "threshold/window", "rows": rows,
              "chosen_on_fold0": chosen, "held_out_fold1": rows[chosen]["fold1"],
              "default": f"{SCENE_SIMILARITY}/{SCENE_WINDOW}", "default_fold1": rows.get(
                  f"{SCENE_SIMILARITY}/{SCENE_WINDOW}", {}).get("fold1")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("threshold/window  fold0 mean/0.5/scenes   fold1 mean/0.5/scenes")
    for key, row in rows.items():
        f0, f1 = row["fold0"], row["fold1"]
        print(f"{key:>10}  {f0['mean_best_iou']:.3f} {f0['matched_0.5']:.3f} {f0['scenes_per_segment']:5.2f}   "
              f"{f1['mean_best_iou']:.3f} {f1['matched_0.5']:.3f} {f1['scenes_per_segment']:5.2f}")
    print(f"chosen on fold 0: {chosen}; fold 1 at it: {result['held_out_fold1']}")


if __name__ == "__main__":
    main()
