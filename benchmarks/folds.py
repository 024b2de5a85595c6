"""An eval run's metrics per fold of the bench, the folds split by video (as ``twinseek calibrate`` splits them).

A query belongs to the fold of its (first) positive video, an MCQ or counterfactual text to its video's, a query
with no positive (absent) to the fold of its own id; the fold of a video is a hash of its id, so both halves are
the same in every script. A constant chosen on one fold is reported on the other with this.

    .venv/bin/python benchmarks/folds.py RUN/results.json [RUN2/results.json ...] [--fold 0|1] [--out FILE]

Each results file is reported per fold (or only ``--fold``); with two files, e.g. runs whose calibrators were fitted
on fold 0 and on fold 1, report the first on fold 1 and the second on fold 0: ``--pair``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from twinseek.evals.calibrate import video_fold
from twinseek.evals.metrics import aggregate
from twinseek.evals.schemas import QueryResult

FOLDS = 2
SHOWN = ("implicit_r@1", "implicit_r@5", "implicit_recall@tau", "implicit_j", "explicit_r@1", "negation_r@1",
         "absent_rejection@tau", "mcq_accuracy", "counterfactual_accuracy")


def fold_of(record: QueryResult) -> int:
    return video_fold(sorted(record.positives)[0] if record.positives else record.id, FOLDS)


def per_fold(results: dict[str, Any], tau: float) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, dict[str, float]]] = {}
    for name, system in results["systems"].items():
        records = [QueryResult.model_validate(r) for r in system["records"]]
        out[name] = {f: aggregate([r for r in records if fold_of(r) == f], tau=tau) for f in range(FOLDS)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--pair", action="store_true", help="two runs fitted on fold 0 and fold 1: report each on the "
                    "other fold")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    report: dict[str, Any] = {}
    runs = [json.loads(p.read_text()) for p in args.results]
    for path, run in zip(args.results, runs):
        report[str(path)] = per_fold(run, run["config"].get("tau", 0.5))
    print("| system | run | fold | " + " | ".join(SHOWN) + " |")
    print("|---" * (len(SHOWN) + 3) + "|")
    for i, (path, systems) in enumerate(report.items()):
        for name, folds in systems.items():
            for f, metrics in folds.items():
                if args.pair and f == i:  # fitted on fold i: only the other fold is held out
                    continue
                cells = " | ".join(f"{metrics[k]:.3f}" if k in metrics else "-" for k in SHOWN)
                print(f"| {name} | {Path(path).parent.name} | {f} | {cells} |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
