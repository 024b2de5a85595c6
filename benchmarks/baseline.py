"""The naive and random baselines on the dev bench: the numbers every retriever must beat.

Naive baseline (``twinseek.evals.baselines.NaiveLabelBaseline``): MobileNetV2 ImageNet labels of 8 uniformly
sampled frames per video, top-2 per frame, written as ``"frame 1: a, b; frame 2: ..."`` and embedded with
all-MiniLM-L6-v2; queries embedded by the same model; cosine ranking over the whole gallery (36 videos).
MobileNetV2 runs once (top-3 per frame kept); the label-text variants (top-1/2/3, per-frame text or
deduplicated list) reuse those labels. The random baseline is reported for ``--seed`` and as the mean over
10 seeds (chance level).

Writes ``benchmarks/results/baseline.json`` (``--out``) and prints a summary table.

Usage: ``python benchmarks/baseline.py [--bench DIR] [--out FILE] [--seed 0] [--no-variants]``
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from twinseek.evals.baselines import (  # noqa: E402
    LabelStyle,
    MobileNetFrameLabeler,
    NaiveLabelBaseline,
    RandomBaseline,
    SentenceEncoder,
)
from twinseek.evals.bench import Bench, load_bench  # noqa: E402
from twinseek.evals.metrics import VideoScorer, evaluate  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)

SUMMARY = [
    "implicit_r@1", "implicit_r@5", "implicit_mnr", "explicit_r@1", "negation_r@1",
    "counterfactual_accuracy", "mcq_accuracy", "absent_mean_max_score",
]
REFERENCE = {"implicit_r@1": 0.39, "explicit_r@1": 0.27, "negation_r@1": 0.24,
             "counterfactual_accuracy": 0.56, "mcq_accuracy": 0.35}
DEFAULT: tuple[int, LabelStyle] = (2, "frames")
VARIANTS: list[tuple[int, LabelStyle]] = [(1, "frames"), (2, "frames"), (3, "frames"),
                                          (1, "labels"), (2, "labels"), (3, "labels")]
RANDOM_SEEDS = 10


class CachedEncoder:
    """Memoises text embeddings: variants re-encode the same queries many times."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self.cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.encoder.encode(missing)))
        return np.stack([self.cache[t] for t in texts])


def metrics_of(bench: Bench, scorer: VideoScorer) -> dict[str, float]:
    return {k: round(v, 4) for k, v in evaluate(scorer, bench)[1].items()}


def summary(metrics: dict[str, float]) -> dict[str, float]:
    return {k: metrics[k] for k in SUMMARY if k in metrics}


def run_naive(bench: Bench, variants: bool) -> dict[str, object]:
    start = time.perf_counter()
    labeler = MobileNetFrameLabeler(frames=8, top_k=3)
    labels = {vid: labeler.label_frames(path) for vid, path in bench.videos.items()}
    label_s = time.perf_counter() - start
    encoder = CachedEncoder(SentenceEncoder())
    results: dict[str, dict[str, float]] = {}
    texts: dict[str, str] = {}
    for top_k, style in VARIANTS if variants else [DEFAULT]:
        model = NaiveLabelBaseline(encoder=encoder, style=style)
        model.index_labels({v: [f[:top_k] for f in frames] for v, frames in labels.items()})
        results[f"top{top_k}-{style}"] = metrics_of(bench, model)
        if (top_k, style) == DEFAULT:
            texts = dict(model.texts)
    main = results[f"top{DEFAULT[0]}-{DEFAULT[1]}"]
    return {
        "config": {"frames": 8, "top_k": DEFAULT[0], "style": DEFAULT[1], "sampling": "decode_video (centred)"},
        "summary": summary(main),
        "metrics": main,
        "variants": {name: summary(m) for name, m in results.items()},
        "video_texts": texts,
        "timing_s": {"label": round(label_s, 1), "total": round(time.perf_counter() - start, 1)},
    }


def run_random(bench: Bench, seed: int) -> dict[str, object]:
    runs = []
    for s in range(seed, seed + RANDOM_SEEDS):
        model = RandomBaseline(seed=s)
        model.index(bench.videos)
        runs.append(metrics_of(bench, model))
    mean = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]}
    return {"seed": seed, "summary": summary(runs[0]), "metrics": runs[0],
            f"mean_over_{RANDOM_SEEDS}_seeds": summary(mean)}


def print_table(naive: dict[str, object], random: dict[str, object]) -> None:
    rows: dict[str, dict[str, float]] = {"reference (naive)": REFERENCE}
    rows.update({f"naive {k}": v for k, v in naive["variants"].items()})  # type: ignore[attr-defined]
    rows["random seed"] = random["summary"]  # type: ignore[assignment]
    rows[f"random mean {RANDOM_SEEDS}"] = random[f"mean_over_{RANDOM_SEEDS}_seeds"]  # type: ignore[assignment]
    heads = [k.replace("_accuracy", "").replace("absent_mean_max_score", "absent_max") for k in SUMMARY]
    print(f"{'':20s} " + " ".join(f"{h:>13s}" for h in heads))
    for name, row in rows.items():
        print(f"{name:20s} " + " ".join(f"{row[k]:13.3f}" if k in row else f"{'-':>13s}" for k in SUMMARY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", type=Path, default=REPO.parent / "shared" / "data" / "dev-bench")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "baseline.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-variants", action="store_true", help="only the default naive configuration")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)

    bench = load_bench(args.bench)
    naive = run_naive(bench, not args.no_variants)
    random = run_random(bench, args.seed)
    result = {
        "bench": str(args.bench),
        "gallery_size": len(bench.videos),
        "queries": {k: len(bench.of_kind(k)) for k in sorted({q.kind for q in bench.queries})},
        "conventions": "ties by video id; choices correct only when strictly above the alternatives; "
                       "unranked relevant video = gallery size + 1",
        "reference_naive": REFERENCE,
        "naive": naive,
        "random": random,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(naive, random)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
