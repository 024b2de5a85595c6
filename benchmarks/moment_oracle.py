"""Moments with perfect words (#22): the upper bound of moment localisation given an oracle description per segment.

The moment bench's long videos are dev-bench clips looped (``manifest.json``: per video, its segments). For every
DAVIS/LOVEU clip the dev bench has one hand-written line (``oracle-descriptions.json``, e.g. ``objects: camel
(animal), person; scene: desert, fence``); MSR-VTT clips have none. Each long video gets one *oracle component* per
segment with a line: the line as text (encoded as a ``gloss``, the object encoder), the segment's
``[start_s, end_s]`` as span. Three variants of each video's components:

* ``real``: the components the localiser reads (the component catalogue: :meth:`MomentLocaliser._components`);
* ``oracle``: the oracle components alone;
* ``real+oracle``: both.

For every moment query whose clip has an oracle line, with the sub-queries the eval used (the store's cached
decomposition of the embedded 0.5B LLM; the rule decomposer where none is cached):

(a) given the right video: for each positive video, the localiser's own scoring (:func:`score_segments` over
    :func:`segments` of the twin, :func:`pick_moments` at the default ``moment_fraction``) and the tIoU of the
    best moment with the video's ground-truth span: mean tIoU and the share >= 0.5 / 0.7;
(b) over the gallery: every long video scored by its best (seen) segment score; video R@1 (a positive at rank 1,
    ties to the lower video id) and moment R@1 at tIoU 0.5 (that, and the top video's best moment's tIoU >= 0.5).

``real`` in (a) should reproduce the eval's moment on the right video (checked against ``--run``: the queries
whose top video was a positive); ``real`` in (b) is not the eval's ranking (which is the retrieval score), only the
best-segment score over real components, for comparison.

    PYTHONPATH=. .venv/bin/python benchmarks/moment_oracle.py [--store /work/stores/moments]
        [--bench ~/.cache/twinseek/moment-bench] [--oracle ../shared/data/dev-bench/oracle-descriptions.json]
        --store STORE [--run RUN/results.json] [--out benchmarks/results/moments/oracle.json]

The store is copied to a temporary folder first (opening one may write lock files and migrations).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from twinseek.config import load_settings
from twinseek.evals.calibrate import video_fold
from twinseek.evals.metrics import moment_iou
from twinseek.evals.moment_bench import Manifest, read_queries
from twinseek.retrieval.decompose import Decomposition, fallback_decompose
from twinseek.retrieval.moments import (
    EncodedSubqueries,
    MomentLocaliser,
    _row_span,
    pick_moments,
    placing,
    score_segments,
    segments,
)
from twinseek.retrieval.stages import RetrievalIndexes
from twinseek.twins.model import Twin
from twinseek.twins.store import TwinStore

ROOT = Path(__file__).resolve().parent.parent
FOLDS = 2  # as benchmarks/folds.py and benchmarks/moments.py
DECOMPOSER = "embedded:qwen2.5-coder-0.5b"
VARIANTS = ("real", "oracle", "real+oracle")


def cached_decompositions(db: Path, model: str) -> dict[str, Decomposition]:
    """Query text -> the store's cached decomposition by ``model`` (the newest prompt version where several)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("select query, decomposition from decompositions where model = ? "
                            "order by prompt_version", [model]).fetchall()
    return {q: Decomposition.model_validate_json(d) for q, d in rows}


class Components:
    """Per video and variant: (spans (n, 2), unit vectors (n, dim))."""

    def __init__(self, localiser: MomentLocaliser, manifest: Manifest, oracle: dict[str, str],
                 twins: dict[str, Twin], ids: dict[str, str]) -> None:
        self.by_video: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        self.oracle_segments: dict[str, int] = {}
        for vid, video in manifest.videos.items():
            twin = twins[vid]
            rows, vectors = localiser._components(twin)  # what the localiser reads (the catalogue)
            real = (np.array([_row_span(twin, r) for r in rows], np.float64).reshape(-1, 2),
                    np.asarray(vectors, np.float32))
            lined = [s for s in video.segments if s.clip in oracle]
            self.oracle_segments[vid] = len(lined)
            if lined:
                spans = np.array([[s.start_s, s.end_s] for s in lined], np.float64)
                vecs = localiser.encoders.encode_components(["gloss"] * len(lined), [oracle[s.clip] for s in lined])
                orc = (spans, np.asarray(vecs, np.float32))
            else:
                orc = (np.zeros((0, 2)), np.zeros((0, localiser.encoders.dim), np.float32))
            self.by_video[vid] = {"real": real, "oracle": orc,
                                  "real+oracle": (np.vstack([real[0], orc[0]]), np.vstack([real[1], orc[1]]))}


def localise(query: EncodedSubqueries, twin: Twin, spans: np.ndarray, vectors: np.ndarray,
             fraction: float) -> tuple[tuple[float, float] | None, float]:
    """The best moment (None: no component) and the best seen segment's score, as the localiser scores them."""
    segs = segments(twin)
    keep = placing(spans, segs)  # as the localiser: a component of the whole time line places nothing
    spans, vectors = spans[keep], vectors[keep]
    if not len(spans):
        return None, 0.0
    scores, _ = score_segments(vectors @ query.vectors.T, spans, segs, query.weights)
    runs = pick_moments(scores, fraction, 1, segs)
    seen = np.array([s.observed for s in segs], bool)
    best = float(scores[seen].max()) if seen.any() else float(scores.max())
    if not runs:
        return None, best
    first, last, _ = runs[0]
    return (round(segs[first].start_s, 3), round(segs[last].end_s, 3)), best


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: (a) over every (query, positive video) pair, (b) over queries."""
    out: dict[str, Any] = {"queries": len(records), "pairs": sum(len(r["right_video"]) for r in records)}
    for v in VARIANTS:
        ious = [p[v]["iou"] for r in records for p in r["right_video"]]
        out[v] = {"miou": _mean(ious), "iou>=0.5": _mean([float(x >= 0.5) for x in ious]),
                  "iou>=0.7": _mean([float(x >= 0.7) for x in ious]),
                  "r@1": _mean([float(r["gallery"][v]["rank1_positive"]) for r in records]),
                  "r@1_iou0.5": _mean([float(r["gallery"][v]["rank1_positive"] and r["gallery"][v]["iou"] >= 0.5)
                                       for r in records])}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True, help="the store the moment bench was ingested into")
    ap.add_argument("--bench", type=Path, default=Path.home() / ".cache" / "twinseek" / "moment-bench")
    ap.add_argument("--oracle", type=Path,
                    default=ROOT.parent / "shared" / "data" / "dev-bench" / "oracle-descriptions.json")
    ap.add_argument("--run", type=Path,
                    help="the eval run to check the real-components localisation against (skipped if absent)")
    ap.add_argument("--system", default="full-lr", help="the run's system to compare with")
    ap.add_argument("--decomposer", default=DECOMPOSER, help="cached decompositions of this tier:model")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "moments" / "oracle.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    manifest = Manifest.model_validate_json((args.bench / "manifest.json").read_text())
    oracle: dict[str, str] = json.loads(args.oracle.read_text())
    queries = [q for q in read_queries(args.bench) if q.clips and q.clips[0] in oracle]
    settings = load_settings(profile="embedded")
    fraction = settings.retrieval.moment_fraction

    with tempfile.TemporaryDirectory(prefix="moment-oracle-") as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(args.store, copy)
        decomps = cached_decompositions(copy / "twins.db", args.decomposer)
        with TwinStore(copy, create=False) as store:
            by_path = {str(Path(v.path)): v.video_id for v in (store.get_video(i) for i in store.video_ids())}
            ids = {vid: by_path.get(str(args.bench / v.file), vid) for vid, v in manifest.videos.items()}
            twins = {vid: store.get_twin(ids[vid], refinements=False) for vid in manifest.videos}
            indexes = RetrievalIndexes(store, settings.retrieval)
            localiser = indexes.moments
            comps = Components(localiser, manifest, oracle, twins, ids)
            if localiser.embedded_videos:
                logging.warning("%d videos were not in the catalogue: their components were embedded now",
                                localiser.embedded_videos)
            records = []
            for q in queries:
                dec = decomps.get(q.text)
                source = "cached-llm" if dec is not None else "rules"
                dec = dec or fallback_decompose(q.text)
                encoded = localiser.prepare(dec.subqueries)
                if encoded is None:  # no positive sub-query: the raw query as one
                    encoded = EncodedSubqueries((q.text,), (1.0,), localiser.encoders.encode_queries([q.text]))
                    source += "+raw"
                found = {vid: {v: localise(encoded, twins[vid], *comps.by_video[vid][v], fraction) for v in VARIANTS}
                         for vid in manifest.videos}
                right = []
                for vid in q.positives:
                    truth = q.spans_of(vid)
                    right.append({"video": vid, "truth": truth, **{
                        v: {"moment": found[vid][v][0], "iou": round(moment_iou(found[vid][v][0], truth), 4)
                            if found[vid][v][0] else 0.0} for v in VARIANTS}})
                gallery = {}
                for v in VARIANTS:
                    top = sorted(manifest.videos, key=lambda vid: (-found[vid][v][1], vid))[0]
                    moment = found[top][v][0]
                    gallery[v] = {"top": top, "rank1_positive": top in q.positives,
                                  "iou": round(moment_iou(moment, q.spans_of(top)), 4) if moment else 0.0}
                records.append({"id": q.id, "text": q.text, "source": q.source, "clip": q.clips[0],
                                "fold": video_fold(sorted(q.clips)[0], FOLDS), "decomposition": source,
                                "subqueries": list(encoded.texts), "right_video": right, "gallery": gallery})

    groups = {"all": records, **{s: [r for r in records if r["source"] == s] for s in sorted({r["source"]
                                                                                             for r in records})},
              **{f"fold{f}": [r for r in records if r["fold"] == f] for f in range(FOLDS)}}
    report: dict[str, Any] = {
        "store": str(args.store), "bench": str(args.bench), "oracle": str(args.oracle),
        "moment_fraction": fraction, "decomposer": args.decomposer,
        "decompositions": {s: sum(r["decomposition"] == s for r in records)
                           for s in sorted({r["decomposition"] for r in records})},
        "oracle_segments": comps.oracle_segments,
        "excluded_queries": len(read_queries(args.bench)) - len(records),
        "groups": {g: summarise(rs) for g, rs in groups.items() if rs},
        "check": check_against_run(args.run, args.system, records), "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    return 0


def check_against_run(path: Path, system: str, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How often the ``real`` moment of the eval's top video (when a positive) equals the run's moment."""
    if not path.is_file():
        return None
    run = {r["id"]: r for r in json.loads(path.read_text())["systems"][system]["records"]}
    same = total = 0
    for rec in records:
        got = run.get(rec["id"])
        if not got or not got.get("ranking") or got.get("moment") is None:
            continue
        top = got["ranking"][0]["video"]
        mine = next((p["real"]["moment"] for p in rec["right_video"] if p["video"] == top), None)
        if mine is None and top not in {p["video"] for p in rec["right_video"]}:
            continue
        total += 1
        same += mine is not None and all(abs(a - b) < 1e-3 for a, b in zip(mine, got["moment"]))
    return {"system": system, "run": str(path), "top_is_positive": total, "same_moment": same}


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(report: dict[str, Any]) -> str:
    lines = ["| group | n (pairs) | words | mIoU right video | IoU>=0.5 | IoU>=0.7 | video R@1 (best segment) | "
             "moment R@1 IoU0.5 |", "|---|---|---|---|---|---|---|---|"]
    for g, m in report["groups"].items():
        for v in VARIANTS:
            s = m[v]
            lines.append(f"| {g} | {m['queries']} ({m['pairs']}) | {v} | {_cell(s['miou'])} | {_cell(s['iou>=0.5'])} "
                         f"| {_cell(s['iou>=0.7'])} | {_cell(s['r@1'])} | {_cell(s['r@1_iou0.5'])} |")
    lines += ["", f"decompositions: {report['decompositions']}; moment_fraction {report['moment_fraction']}; "
              f"queries left out (MSR-VTT clip, no oracle line): {report['excluded_queries']}; check: {report['check']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
