"""#21's upper bound: explicit R@1 of the search when the speech and action stages are perfect.

Issue #21 (speech via Whisper, coarse actions from pose) aimed at explicit R@1 >= 0.55 for ``full-lr`` on the dev
bench and stayed at 0.462. Before calling that unreachable, this gives the two stages perfect input: the explicit
queries ``full-lr`` misses are classified by eye (speech, action, other) in
``results/eval-21/oracle-speech-actions.json``, which holds a hand-written transcript (speech clips) and hand-read
action labels (speech and action clips) for the twin's own person tracks. The script

1. copies the store twice (``<work>-real``, ``<work>-oracle``; the source store is only read),
2. writes the oracle into the ``-oracle`` copy through the product's model and store API: ``Track.actions`` and
   ``Speech``/``SpeechSegment`` on the stored twin, the description rewritten by ``views.describe`` and the template
   ECR by ``views.template_ecr``, a new ``ingested_at`` so that both catalogues see a new revision and re-index the
   video (component, speech and dense texts rebuilt the normal way),
3. runs ``twinseek eval BENCH --kinds explicit`` with the same systems on both copies, one after the other,
4. writes the explicit R@1 of each system (real vs oracle) and the per-clip ranks to ``results/eval-21/upper-bound.json``.

The oracle is measurement input, never product data. Run (2 busy cores: about 5 minutes)::

    PYTHONPATH=. python benchmarks/upper_bound_21.py --store /work/stores/s21 --work /work/stores/ub21 \\
        --runs /work/runs/ub21 --bench ../shared/data/dev-bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from twinseek.twins.model import Speech, SpeechSegment, utc_now
from twinseek.twins.store import TwinStore
from twinseek.twins.views import DESCRIPTION_SOURCE, describe, template_ecr

HERE = Path(__file__).resolve().parent
ORACLE = HERE / "results" / "eval-21" / "oracle-speech-actions.json"
OUT = HERE / "results" / "eval-21" / "upper-bound.json"
ORACLE_CLASSES = ("a", "b")  # speech- and action-dependent misses get oracle input; class c does not


def copy_store(source: Path, dest: Path, fresh: bool) -> None:
    if dest.exists():
        if not fresh:
            raise SystemExit(f"{dest} exists (pass --fresh to replace it)")
        shutil.rmtree(dest)
    shutil.copytree(source, dest, symlinks=True)


def inject(store_path: Path, oracle: dict[str, Any]) -> list[dict[str, Any]]:
    """Write the oracle's actions and speech into the store's twins; returns what changed per video."""
    changes = []
    with TwinStore(store_path, create=False) as store:
        for clip in oracle["clips"]:
            if clip["class"] not in ORACLE_CLASSES:
                continue
            video_id = clip["video"]
            twin = store.get_twin(video_id, refinements=False)
            before = {"description": twin.video.description, "ecr_text": twin.video.ecr_text}
            tracks = {str(t.track_id): t for t in twin.tracks}
            for track_id, labels in clip.get("actions", {}).items():
                track = tracks[track_id]
                if track.category != "person":
                    raise SystemExit(f"{video_id} track {track_id} is a {track.category}, not a person")
                track.actions = sorted(((str(label), float(conf)) for label, conf in labels), key=lambda a: -a[1])
            if "speech" in clip:
                segments = [SpeechSegment(**seg) for seg in clip["speech"]]
                twin.speech = Speech(status="transcribed", model=oracle["model"], language=segments[0].language,
                                     audio_s=twin.video.duration_s, transcribed_s=twin.video.duration_s,
                                     segments=segments)
            twin.video.ingested_at = utc_now()  # a new revision: both catalogues re-index the video
            twin.video.description, twin.video.description_source = describe(twin), DESCRIPTION_SOURCE
            if (twin.video.ecr_source or "template") != "template":
                raise SystemExit(f"{video_id}: ECR from {twin.video.ecr_source}, this script rewrites template ECRs")
            twin.video.ecr_text, twin.video.ecr_source = template_ecr(twin), "template"
            mask_dir = store.stored_rows(video_id).video["mask_dir"]
            store.put_twin(twin, mask_dir)  # the same masks: only the rows are replaced
            after = store.get_twin(video_id, refinements=False)
            changes.append({"video": video_id, "query": clip["query"], "class": clip["class"], "before": before,
                            "after": {"description": after.video.description, "ecr_text": after.video.ecr_text}})
    return changes


def run_eval(bench: Path, store: Path, out: Path, systems: str, kinds: str, fresh: bool) -> None:
    if out.exists():
        if not fresh:
            raise SystemExit(f"{out} exists (pass --fresh to replace it)")
        shutil.rmtree(out)
    cmd = ["nice", "-n", "10", sys.executable, "-m", "twinseek.cli", "eval", str(bench), "--store", str(store),
           "--out", str(out), "--systems", systems, "--kinds", kinds]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def indexed_texts(store_path: Path, videos: list[str]) -> dict[str, list[str]]:
    """The component texts the catalogue holds for ``videos`` after the eval (speech rows and person objects)."""
    with TwinStore(store_path, create=False) as store:
        return {v: [r["text"] for r in store.db.query(
            "select text from components where video_id = ? and (kind = 'speech' or text like 'person%') order by id",
            [v])] for v in videos}


def summarise(oracle: dict[str, Any], real_run: Path, oracle_run: Path) -> dict[str, Any]:
    real = json.loads((real_run / "results.json").read_text())["systems"]
    orc = json.loads((oracle_run / "results.json").read_text())["systems"]
    systems: dict[str, Any] = {}
    for name in real:
        ranks_r = {r["id"]: r["rank"] for r in real[name]["records"] if r["kind"] == "explicit"}
        ranks_o = {r["id"]: r["rank"] for r in orc[name]["records"] if r["kind"] == "explicit"}
        n = len(ranks_r)
        systems[name] = {
            "explicit_n": n,
            "explicit_r@1_real": real[name]["metrics"]["explicit_r@1"],
            "explicit_r@1_oracle": orc[name]["metrics"]["explicit_r@1"],
            "explicit_r@5_real": real[name]["metrics"]["explicit_r@5"],
            "explicit_r@5_oracle": orc[name]["metrics"]["explicit_r@5"],
            "hits_at_1_real": sum(r == 1 for r in ranks_r.values()),
            "hits_at_1_oracle": sum(r == 1 for r in ranks_o.values()),
            "rank_changed": {q: [ranks_r[q], ranks_o[q]] for q in ranks_r if ranks_r[q] != ranks_o.get(q)},
        }
    clips = []
    full_lr_r = {r["id"]: r for r in real["full-lr"]["records"]} if "full-lr" in real else {}
    full_lr_o = {r["id"]: r for r in orc["full-lr"]["records"]} if "full-lr" in orc else {}
    for clip in oracle["clips"]:
        q = clip["query"]
        row = {"query": q, "video": clip["video"], "text": clip["text"], "class": clip["class"],
               "oracle": clip["class"] in ORACLE_CLASSES}
        for name in real:
            r = {x["id"]: x["rank"] for x in real[name]["records"]}
            o = {x["id"]: x["rank"] for x in orc[name]["records"]}
            row[name] = [r.get(q), o.get(q)]
        if q in full_lr_o:
            row["full-lr_top3_oracle"] = [x["video"] for x in full_lr_o[q]["ranking"][:3]]
            row["full-lr_top3_real"] = [x["video"] for x in full_lr_r[q]["ranking"][:3]]
        clips.append(row)
    n = systems.get("full-lr", {}).get("explicit_n", 0)
    needed = next((k for k in range(n + 1) if n and k / n >= 0.55), None)
    return {"systems": systems, "clips": clips, "target": {"system": "full-lr", "explicit_r@1": 0.55,
                                                            "hits_needed": needed, "of": n}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True, help="Source store (only read).")
    ap.add_argument("--work", type=Path, required=True, help="Prefix of the two store copies.")
    ap.add_argument("--runs", type=Path, required=True, help="Prefix of the two eval run folders.")
    ap.add_argument("--bench", type=Path, required=True)
    ap.add_argument("--oracle", type=Path, default=ORACLE)
    ap.add_argument("--systems", default="full-lr,full,naive,dense,compositional")
    ap.add_argument("--kinds", default="explicit")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--fresh", action="store_true", help="Replace existing copies and run folders.")
    ap.add_argument("--summarise-only", action="store_true", help="Read the two run folders, run nothing.")
    args = ap.parse_args(argv)

    oracle = json.loads(args.oracle.read_text())
    real_store, oracle_store = Path(f"{args.work}-real"), Path(f"{args.work}-oracle")
    real_run, oracle_run = Path(f"{args.runs}-real"), Path(f"{args.runs}-oracle")
    changes: list[dict[str, Any]] = []
    if not args.summarise_only:
        copy_store(args.store, real_store, args.fresh)
        copy_store(args.store, oracle_store, args.fresh)
        changes = inject(oracle_store, oracle)
        for c in changes:
            print(f"{c['video']}: {c['before']['description']!r} -> {c['after']['description']!r}")
        run_eval(args.bench, real_store, real_run, args.systems, args.kinds, args.fresh)
        run_eval(args.bench, oracle_store, oracle_run, args.systems, args.kinds, args.fresh)
    elif args.out.exists():  # keep what the run that made the copies injected
        changes = json.loads(args.out.read_text()).get("injected", [])
    result = {
        "command": "python benchmarks/upper_bound_21.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "source_store": str(args.store), "stores": [str(real_store), str(oracle_store)],
        "runs": [str(real_run), str(oracle_run)], "oracle": str(args.oracle), "systems_run": args.systems,
        "kinds": args.kinds, "injected": changes,
        "indexed_texts_oracle": indexed_texts(oracle_store, [c["video"] for c in oracle["clips"]
                                                             if c["class"] in ORACLE_CLASSES]),
        **summarise(oracle, real_run, oracle_run),
    }
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    for name, s in result["systems"].items():
        print(f"{name:14s} explicit R@1 real {s['explicit_r@1_real']:.3f} ({s['hits_at_1_real']}/{s['explicit_n']})"
              f"  oracle {s['explicit_r@1_oracle']:.3f} ({s['hits_at_1_oracle']}/{s['explicit_n']})")
    print(f"{'clip':18s} {'query':6s} class  full-lr rank real -> oracle")
    for row in result["clips"]:
        print(f"{row['video']:18s} {row['query']:6s} {row['class']:5s}  {row.get('full-lr')}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
