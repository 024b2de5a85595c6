"""The description judge's upper bound inside the search: the same candidates, judged over hand-written lines.

``twinseek calibrate --judge describe`` saves every candidate of every ranked query with its features (the judge's
prior-corrected P(yes) over the product's description, the retrieval similarity and rank) and its label. This
script keeps the candidates, their retrieval features and labels, and asks the same judge (Qwen2.5-Coder-1.5B, the
product's prompt and prior correction) about the oracle line of every candidate that has one
(``oracle-descriptions.json``: the DAVIS/LOVEU dev videos); then both row sets go through the same held-out report
(calibrators fitted on one fold of the videos, scored on the other, both ways). The difference between the two is
what better descriptions would buy the search; the rest of the gap to perfect is the judge's.

    .venv/bin/python benchmarks/judge_oracle.py --rows STORE/calibration-describe-rows.jsonl [--bench DIR]
        [--kinds implicit,absent] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from describe import CONTENT_FREE, Judge  # noqa: E402  (the benchmark's cached judge: the product's prompt)

from twinseek.agent.judge import prior_corrected  # noqa: E402
from twinseek.config import load_settings  # noqa: E402
from twinseek.evals.bench import load_bench  # noqa: E402
from twinseek.evals.calibrate import Row, held_out_metrics  # noqa: E402
from twinseek.llm.client import open_llm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=Path, required=True)
    ap.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "data" / "dev-bench")
    ap.add_argument("--kinds", default="implicit,absent")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "describe-cache.json")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "judge-oracle.json")
    args = ap.parse_args(argv)
    lines = [line for line in args.rows.read_text().splitlines() if line.strip()]
    head = json.loads(lines[0])
    kinds = set(args.kinds.split(","))
    rows = [r for r in (Row.model_validate_json(line) for line in lines[1:]) if r.kind in kinds]
    oracle: dict[str, str] = json.loads((args.bench / "oracle-descriptions.json").read_text())
    texts = {q.id: q.text for q in load_bench(args.bench).queries if hasattr(q, "text")}
    judge = Judge(open_llm(load_settings(), embedded_model=args.model, threads=args.threads, n_parallel=1), args.cache)
    swapped = []
    try:
        for r in rows:
            if r.video_id in oracle and r.judged:
                line = oracle[r.video_id]
                judged = prior_corrected(judge.p_yes(texts[r.query], line), judge.p_yes(CONTENT_FREE, line))
                r = r.model_copy(update={"features": {**r.features, "judged": judged}})
            swapped.append(r)
    finally:
        judge.save()
    fit: dict[str, Any] = {"llm": head["llm"], "judge": head["judge"], "method": "platt",
                           "retrieval_llm": head.get("retrieval_llm")}
    report = {"rows": str(args.rows), "kinds": sorted(kinds), "oracle_videos": sorted(oracle),
              "product": held_out_metrics(rows, 2, 0.5, **fit), "oracle": held_out_metrics(swapped, 2, 0.5, **fit),
              "product_unjudged": held_out_metrics(rows, 2, 0.5, judged=False, **fit)}
    for name in ("product_unjudged", "product", "oracle"):
        for kind, metrics in report[name].items():
            print(f"{name:17s} {kind:9s} " + "  ".join(f"{k} {v}" for k, v in metrics.items()))
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
