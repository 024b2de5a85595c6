"""Moment retrieval on long videos made of dev-bench clips (#22): build the bench, ingest it (timed), run the eval.

1. builds the moment bench (:mod:`twinseek.evals.moment_bench`) from the dev bench into ``--bench`` (reused when
   its manifest has the same spec): 12 videos of 6 looped clips, 3-5 minutes each, every clip in two videos;
2. ingests its videos into ``--store``, one at a time, timing each: ingest seconds per minute of video (all videos,
   and without the first, which loads the models), sampled frames, shots, peak RSS;
3. runs ``twinseek eval BENCH --kinds moment`` with ``--systems`` over that store (run folder ``OUT/run``);
4. writes ``OUT/moments.json`` and ``OUT/moments.md``: video R@1, moment R@1 at tIoU 0.5 and 0.7 and mean IoU per
   system, per source kind (explicit, implicit) and per fold (the folds of ``benchmarks/folds.py``: a query's fold
   is its clip's, so a constant chosen on fold 0 is reported on fold 1), the ingest cost, the included queries
   and each video's segments. With ``--short RUN`` (a ``twinseek eval DEV`` run folder or results file of the
   short clips, e.g. ``twinseek eval DEV --kinds explicit,implicit --systems full-lr,dense,random``), the same
   queries' R@1 on the 36-clip gallery is shown beside the long videos' (``whole`` beside ``dense``). Chance
   differs: 1 in 36 on the short clips, 2 in 12 on the long videos (each clip is in two of them).

    .venv/bin/python benchmarks/moments.py [--dev ../shared/data/dev-bench] [--bench DIR] [--store DIR]
        [--systems full-lr,dense,whole,random] [--short RUN] [--out benchmarks/results/moments] [--frames N]
        [--no-llm] [--tiny] [--resume]

``--tiny`` (a check that the pipeline runs end to end in a minute or two): 2 videos of 3 clips, 4-6 s segments,
6 sampled frames, systems dense,whole,random, out ``OUT/tiny``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

from twinseek.config import load_settings
from twinseek.evals.calibrate import video_fold
from twinseek.evals.moment_bench import (
    Manifest,
    MomentBenchSpec,
    build_moment_bench,
    read_queries,
    spans_table,
)
from twinseek.evals.runner import run
from twinseek.evals.schemas import QueryResult, RunResult
from twinseek.twins.pipeline import Ingestor, peak_rss_mb
from twinseek.twins.store import TwinStore

ROOT = Path(__file__).resolve().parent.parent
FOLDS = 2  # as benchmarks/folds.py
# a clip of each source (DAVIS blackswan, LOVEU gold-fish, MSR-VTT GIF video7594) and both folds (f1, f0, f0)
TINY = MomentBenchSpec(videos=2, clips_per_video=3, segment_s=(4.0, 6.0), min_video_s=0,
                       clips=("blackswan", "gold-fish", "video7594"))
METRICS = (("video R@1", "r@1"), ("R@1 IoU0.5", "r@1_iou0.5"), ("R@1 IoU0.7", "r@1_iou0.7"), ("mIoU", "miou"),
           ("localised", "localised"))


def bench_for(dev: Path, bench: Path, spec: MomentBenchSpec) -> Manifest:
    """The bench in ``bench``, built unless a bench of the same spec is there."""
    manifest_path = bench / "manifest.json"
    if manifest_path.is_file():
        manifest = Manifest.model_validate_json(manifest_path.read_text())
        if manifest.spec == spec:
            logging.info("reusing the moment bench in %s", bench)
            return manifest
        raise SystemExit(f"{bench} holds a moment bench of another spec; remove it or pass another --bench")
    return build_moment_bench(dev, bench, spec)


def ingest(manifest: Manifest, bench: Path, store_dir: Path, settings: Any) -> dict[str, Any]:
    """Ingest every long video (timed one by one); videos already in the store are skipped and not timed."""
    rows = []
    store_dir.mkdir(parents=True, exist_ok=True)
    with TwinStore(store_dir) as store:
        ingestor = Ingestor(store, settings.model_copy(update={"store": store_dir}))
        for vid, video in manifest.videos.items():
            start = time.perf_counter()
            result = ingestor.ingest_many([bench / video.file])[0]
            seconds = time.perf_counter() - start
            shots = len(getattr(store.get_twin(result.video_id, refinements=False), "shots", []) or []) \
                if result.video_id and result.status != "failed" else 0
            rows.append({"video": vid, "status": result.status, "video_s": video.seconds, "ingest_s": round(seconds, 2),
                         "s_per_min": round(seconds / (video.seconds / 60), 2), "frames": result.frames,
                         "shots": shots, "tracks": result.tracks, "error": result.error,
                         "peak_rss_mb": round(peak_rss_mb(), 1)})
            logging.info("%s: %s in %.1f s (%d frames, %d shots)", vid, result.status, seconds, result.frames, shots)
    timed = [r for r in rows if r["status"] == "ingested"]
    warm = timed[1:]  # the first ingest of a process loads the models

    def per_min(group: list[dict[str, Any]]) -> float | None:
        minutes = sum(r["video_s"] for r in group) / 60
        return round(sum(r["ingest_s"] for r in group) / minutes, 2) if group and minutes else None

    return {"videos": rows, "ingested": len(timed), "already_stored": sum(r["status"] == "skipped" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows), "s_per_min_all": per_min(timed),
            "s_per_min_warm": per_min(warm), "peak_rss_mb": round(peak_rss_mb(), 1),
            "sampling": settings.sampling.model_dump(mode="json")}


def fold_of_query(clips: list[str], query_id: str) -> int:
    # benchmarks/folds.py: the fold of the query's (first) positive; here the positive clip, not a long video
    return video_fold(sorted(clips)[0] if clips else query_id, FOLDS)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def group_metrics(records: list[QueryResult]) -> dict[str, float | None]:
    """Video R@1, moment R@1 at 0.5/0.7, mean IoU and the share localised over ``records`` (as metrics.aggregate)."""
    return {"n": len(records), "r@1": _mean([float(r.rank == 1) for r in records]),
            "r@1_iou0.5": _mean([float(r.rank == 1 and (r.iou or 0) >= 0.5) for r in records]),
            "r@1_iou0.7": _mean([float(r.rank == 1 and (r.iou or 0) >= 0.7) for r in records]),
            "miou": _mean([r.iou or 0.0 for r in records]), "localised": _mean([float(bool(r.localised))
                                                                                for r in records])}


def breakdown(result: RunResult, folds: dict[str, int]) -> dict[str, dict[str, dict[str, float | None]]]:
    """System -> group (all, explicit, implicit, fold0, fold1, ...) -> metrics."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, system in result.systems.items():
        if system.skipped:
            continue
        records = system.records
        groups = {"all": records}
        for source in sorted({r.source for r in records if r.source}):
            groups[source] = [r for r in records if r.source == source]
        for f in range(FOLDS):
            groups[f"fold{f}"] = [r for r in records if folds.get(r.id) == f]
        out[name] = {g: group_metrics(rs) for g, rs in groups.items()}
    return out


def _read_json(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / "results.json" if (path / "results.json").exists() else path / "results.json.gz"
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)  # type: ignore[no-any-return]
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def short_r1(short: Path | None, ids: dict[str, str]) -> dict[str, dict[str, float | None]]:
    """System -> {all, explicit, implicit} R@1 of the same queries on the short-clip gallery (a dev-bench run)."""
    if short is None:
        return {}
    out = {}
    # read as plain JSON: older results files hold null for a NaN metric, which the RunResult model refuses
    for name, system in _read_json(short)["systems"].items():
        records = [r for r in system.get("records", []) if r["id"] in ids]
        groups = {"all": records, **{k: [r for r in records if r["kind"] == k] for k in sorted(set(ids.values()))}}
        out[name] = {g: _mean([float(r.get("rank") == 1) for r in rs]) for g, rs in groups.items()}
        if len(records) != len(ids):
            logging.warning("the short-clip run of %s has %d of the %d queries", name, len(records), len(ids))
    return out


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(report: dict[str, Any], manifest: Manifest) -> str:
    lines = [f"# Moment retrieval on {len(manifest.videos)} long videos of looped dev-bench clips", "",
             f"Bench: {report['bench']} ({manifest.total_seconds / 60:.1f} min; {len(manifest.queries)} queries). "
             f"Store: {report['store']}. Run: {report['run']}.", ""]
    seen = {g for s in report["systems"].values() for g in s}
    groups = ["all", *sorted(g for g in seen if g != "all" and not g.startswith("fold")),
              *sorted(g for g in seen if g.startswith("fold"))]
    header = ["system", "group", "n", *(label for label, _ in METRICS), "short-clip R@1"]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, by_group in report["systems"].items():
        for g in groups:
            m = by_group.get(g)
            if m is None:
                continue
            # whole ranks as dense does: on short clips (one clip, one span) it is dense
            short_name = "dense" if name == "whole" else name
            short = report["short_clip_r@1"].get(short_name, {}).get(g) if not g.startswith("fold") else None
            lines.append(f"| {name} | {g} | {m['n']} | " + " | ".join(_cell(m[k]) for _, k in METRICS)
                         + f" | {_cell(short)} |")
    cost = report["ingest"]
    lines += ["", "Video R@1: a long video holding the query's clip at rank 1 (each clip is in two videos). Moment "
              "R@1 at IoU m: that, and the tIoU of the best moment given for it with the clip's span >= m. mIoU: "
              "that tIoU, 0 for a wrong video. A top video without a moment of the system's own is scored as "
              "the whole video (`localised` is the share that had one). Short-clip R@1: the same queries on the "
              "36-clip gallery.", "",
              f"Ingest: {cost['ingested']} videos timed ({cost['already_stored']} already stored, {cost['failed']} "
              f"failed): {cost['s_per_min_all']} s per minute of video, {cost['s_per_min_warm']} without the "
              f"first (model loading); peak RSS {cost['peak_rss_mb']} MiB; sampling {cost['sampling']}.", "",
              "| video | status | seconds | ingest s | s/min | frames | shots |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['video']} | {r['status']} | {r['video_s']:.0f} | {r['ingest_s']} | {r['s_per_min']} | "
              f"{r['frames']} | {r['shots']} |" for r in cost["videos"]]
    lines += ["", "## Queries", "", f"{len(report['queries'])} queries (id, source kind, clip, fold):", "",
              ", ".join(f"{q['id']} ({q['source']}, {q['clip']}, f{q['fold']})" for q in report["queries"]),
              "", "## Videos", "", spans_table(manifest), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    ap.add_argument("--bench", type=Path, help="where the moment bench is built [default: ~/.cache/twinseek/"
                    "moment-bench, or moment-bench-tiny]")
    ap.add_argument("--store", type=Path, help="twin store [default: next to the bench, <bench>-store-<profile>]")
    ap.add_argument("--systems", default=None, help="eval systems [default: full-lr,dense,whole,random; tiny: "
                    "dense,whole,random]")
    ap.add_argument("--short", type=Path, help="a dev-bench eval run (folder or results.json[.gz]) to compare with")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "moments")
    ap.add_argument("--frames", type=int, help="sampling.frames override")
    ap.add_argument("--profile", default="embedded")
    ap.add_argument("--no-llm", action="store_true", help="rule decomposition for dense/whole")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--resume", action="store_true", help="continue the eval run in OUT/run (ingest always skips "
                    "stored videos)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = TINY if args.tiny else MomentBenchSpec(seed=args.seed)
    cache = load_settings(profile=args.profile).cache_dir
    bench = args.bench or cache / ("moment-bench-tiny" if args.tiny else "moment-bench")
    store = args.store or bench.with_name(f"{bench.name}-store-{args.profile}")
    out = args.out / "tiny" if args.tiny else args.out
    systems = args.systems or ("dense,whole,random" if args.tiny else "full-lr,dense,whole,random")
    frames = args.frames or (6 if args.tiny else None)
    overrides: dict[str, Any] = {"sampling": {"frames": frames}} if frames else {}
    settings = load_settings(profile=args.profile, **overrides)

    manifest = bench_for(args.dev, bench, spec)
    cost = ingest(manifest, bench, store, settings)
    out.mkdir(parents=True, exist_ok=True)
    result = run(bench, store=store, out=out / "run", systems=systems.split(","), kinds=["moment"], seed=args.seed,
                 profile=args.profile, llm_decomposition=not args.no_llm, settings_overrides=overrides,
                 skip_unavailable=True, resume=args.resume)
    queries = read_queries(bench)
    folds = {q.id: fold_of_query(q.clips, q.id) for q in queries}
    report = {
        "bench": str(bench), "store": str(store), "run": str(out / "run"), "spec": spec.model_dump(mode="json"),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "queries": [{"id": q.id, "source": q.source, "clip": q.clips[0], "fold": folds[q.id],
                     "positives": q.positives} for q in queries],
        "systems": breakdown(result, folds), "metrics": result.metrics(),
        "short_clip_r@1": short_r1(args.short, {q.id: q.source or "" for q in queries}), "ingest": cost,
    }
    (out / "moments.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "moments.md").write_text(markdown(report, manifest))
    print((out / "moments.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
