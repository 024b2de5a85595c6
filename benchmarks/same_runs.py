"""Are two eval runs the same? Per system and query: the ranking (videos and scores), what was returned, the hits,
the choice scores and every metric; timings and seconds are not compared. For refactors that promise "no ranking,
metric or stored byte changes": run ``twinseek eval BENCH --all`` before and after on copies of one store, then

    .venv/bin/python benchmarks/same_runs.py BEFORE/results.json AFTER/results.json [--out FILE]

Prints one line per system (queries compared, queries that differ, metrics that differ) and exits 1 if any differs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

COMPARED = ("rank", "gallery_size", "ap", "positive_score", "max_score", "correct", "j", "f", "positives",
            "ranking", "choice_scores", "returned", "hits")


def _portable(field: str, value: Any) -> Any:
    """Hits name their mask files by absolute path: compare them from the store's ``masks/`` folder on, so two
    copies of one store compare equal."""
    if field != "hits":
        return value
    return re.sub(r'"[^"]*/(masks/[^"]*)"', r'"\1"', json.dumps(value, sort_keys=True))


def load(path: Path) -> dict[str, Any]:
    systems: dict[str, Any] = json.loads(path.read_text())["systems"]
    return systems


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per system: how many queries were compared, the ids that differ (and in what), the metrics that differ."""
    out: dict[str, Any] = {}
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            out[name] = {"missing": "before" if name not in before else "after"}
            continue
        old = {r["id"]: r for r in before[name]["records"]}
        new = {r["id"]: r for r in after[name]["records"]}
        differ = {qid: [f for f in COMPARED if _portable(f, old[qid].get(f)) != _portable(f, new[qid].get(f))]
                  for qid in sorted(set(old) & set(new))}
        differ = {qid: fields for qid, fields in differ.items() if fields}
        metrics = {k: (v, after[name]["metrics"].get(k)) for k, v in before[name]["metrics"].items()
                   if after[name]["metrics"].get(k) != v}
        out[name] = {"queries": len(set(old) & set(new)), "only_before": sorted(set(old) - set(new)),
                     "only_after": sorted(set(new) - set(old)), "differ": differ, "metrics_differ": metrics}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = compare(load(args.before), load(args.after))
    same = True
    for name, r in report.items():
        if "missing" in r:
            print(f"{name}: only in one run (missing {r['missing']})")
            same = False
            continue
        ok = not (r["differ"] or r["metrics_differ"] or r["only_before"] or r["only_after"])
        same &= ok
        print(f"{name}: {r['queries']} queries, {len(r['differ'])} differ, {len(r['metrics_differ'])} metrics differ"
              + ("" if ok else f" {sorted(r['differ'])[:5]} {sorted(r['metrics_differ'])[:5]}"))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
