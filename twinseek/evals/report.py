"""The report of an eval run: Markdown (and HTML) tables of metrics per kind with the systems side by side,
plots beside it (metrics per kind, rank histogram, latency), and mask-overlay examples of hits and misses.

    write_report(run_result, out_dir) -> [report.md, report.html, plots/*.png]

Plots use matplotlib's Agg backend (the ``eval`` extra); without matplotlib the tables are still written.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from twinseek.evals.schemas import RunResult, SystemResult
from twinseek.media.masks import OVERLAY_ALPHA, overlay_frames, write_overlays

logger = logging.getLogger(__name__)

KIND_ORDER = ("implicit", "explicit", "negation", "absent", "mcq", "counterfactual", "moment")
RANKED = ("implicit", "explicit", "negation")
RANKED_METRICS = ("r@1", "r@5", "r@10", "mdr", "mnr", "map", "recall@tau", "j", "f", "jf")
# moment: r@1 is the video's (any positive long video at rank 1); r@1_iou<m> also needs its moment's tIoU >= m
MOMENT_METRICS = ("r@1", "r@1_iou0.5", "r@1_iou0.7", "miou", "localised", "r@5", "mnr")
HEADLINE = {"implicit": "implicit_r@1", "explicit": "explicit_r@1", "negation": "negation_r@1",
            "absent": "absent_rejection@tau", "mcq": "mcq_accuracy", "counterfactual": "counterfactual_accuracy",
            "moment": "moment_r@1_iou0.5"}
OVERLAY_FRAMES = 4

Table = tuple[list[str], list[list[str]]]  # header, rows


# ---------------------------------------------------------------- tables
def _ran(result: RunResult) -> dict[str, SystemResult]:
    return {n: s for n, s in result.systems.items() if s.skipped is None}


def kind_metrics(kind: str, metrics: Mapping[str, float]) -> list[str]:
    """Metric keys of ``kind`` in display order (without the ``<kind>_`` prefix)."""
    if kind == "moment":
        sources = sorted(k[len("moment_"):-len("_n")] for k in metrics if k.startswith("moment_") and k.endswith("_n")
                         and k != "moment_n")
        keys = [*MOMENT_METRICS, *(f"{src}_{m}" for src in sources for m in ("n", *MOMENT_METRICS[:4]))]
        return [m for m in keys if f"moment_{m}" in metrics]
    if kind in RANKED:
        return [m for m in RANKED_METRICS if f"{kind}_{m}" in metrics]
    if kind == "absent":
        return [m for m in ("rejection@tau", "mean_max_score") if f"absent_{m}" in metrics]
    prefix = f"{kind}_"
    return ["accuracy", *sorted(k[len(prefix):] for k in metrics if k.startswith(prefix)
                                 and k.endswith("_accuracy") and k != f"{kind}_accuracy")]


def metric_tables(result: RunResult) -> dict[str, Table]:
    """Kind -> (header, rows): one row per metric, one column per system that ran."""
    systems = _ran(result)
    tables: dict[str, Table] = {}
    for kind in KIND_ORDER:
        if not any(f"{kind}_n" in s.metrics for s in systems.values()):
            continue  # no query of this kind in the run (e.g. --kinds moment): no empty table
        keys: list[str] = []
        for s in systems.values():
            keys.extend(m for m in kind_metrics(kind, s.metrics) if m not in keys)
        if not keys:
            continue
        n = max((int(s.metrics.get(f"{kind}_n", 0)) for s in systems.values()), default=0)
        header = [f"{kind} (n={n})", *(s.label for s in systems.values())]
        rows = [[m, *(_fmt(m, s.metrics.get(f"{kind}_{m}")) for s in systems.values())] for m in keys]
        tables[kind] = (header, rows)
    return tables


def _fmt(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if metric == "n" or metric.endswith("_n"):
        return f"{value:.0f}"
    return f"{value:.1f}" if metric in ("mdr", "mnr") else f"{value:.3f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _run_rows(result: RunResult) -> list[list[str]]:
    rows = []
    for s in result.systems.values():
        if s.skipped:
            rows.append([s.label, "skipped", "", "", s.skipped[:120]])
            continue
        seconds = [r.seconds for r in s.records]
        fallbacks = sum(bool(r.fallbacks) for r in s.records)
        models = sorted({m for r in s.records for m in r.models.values()})
        rows.append([s.label, f"{s.seconds:.1f}", f"{np.median(seconds):.3f}" if seconds else "–", str(fallbacks),
                     ", ".join(models)[:160]])
    return rows


RUN_HEADER = ["system", "seconds", "median s/query", "queries with fallbacks", "models"]

# (column, metric key, format) of the summary: one row per system, the headline numbers of every kind
SUMMARY_COLUMNS: list[tuple[str, str, str]] = [
    ("implicit R@1", "implicit_r@1", "mean"), ("R@5", "implicit_r@5", "mean"), ("MnR", "implicit_mnr", "mnr"),
    ("J", "implicit_j", "mean"), ("explicit R@1", "explicit_r@1", "mean"), ("negation R@1", "negation_r@1", "mean"),
    ("absent rejected", "absent_rejection@tau", "mean"), ("MCQ acc", "mcq_accuracy", "mean"),
    ("counterfactual acc", "counterfactual_accuracy", "mean"),
    ("moment video R@1", "moment_r@1", "mean"), ("R@1 IoU0.5", "moment_r@1_iou0.5", "mean"),
    ("R@1 IoU0.7", "moment_r@1_iou0.7", "mean"), ("mIoU", "moment_miou", "mean"),
]


def summary_table(result: RunResult) -> Table | None:
    """One row per system that ran: the headline metric of each kind and the median seconds per query."""
    systems = _ran(result)
    columns = [c for c in SUMMARY_COLUMNS if any(c[1] in s.metrics for s in systems.values())]
    if not systems or not columns:
        return None
    header = ["system", *(name for name, _, _ in columns), "median s/query"]
    rows = []
    for s in systems.values():
        seconds = [r.seconds for r in s.records]
        rows.append([s.label, *(_fmt(kind, s.metrics.get(key)) for _, key, kind in columns),
                     f"{np.median(seconds):.2f}" if seconds else "–"])
    return header, rows


# ---------------------------------------------------------------- plots
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics_per_kind(result: RunResult, path: Path) -> Path | None:
    """Grouped bars: the headline metric of each kind (R@1, rejection or accuracy) per system."""
    systems = _ran(result)
    kinds = [k for k in KIND_ORDER if any(HEADLINE[k] in s.metrics for s in systems.values())]
    if not kinds or not systems:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(kinds) * max(1, len(systems)) / 3), 4))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems.values()):
        values = [s.metrics.get(HEADLINE[k], np.nan) for k in kinds]
        ax.bar(np.arange(len(kinds)) + i * width - 0.4 + width / 2, values, width, label=s.label)
    ax.set_xticks(np.arange(len(kinds)), [f"{k}\n{HEADLINE[k].split('_', 1)[1]}" for k in kinds])
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("score")
    ax.set_title("Headline metric per query kind")
    # below the axes: inside, it hides the bars that reach 1
    ax.legend(fontsize="small", ncol=min(5, len(systems)), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return _save(fig, path)


def plot_rank_histogram(result: RunResult, path: Path) -> Path | None:
    """Histogram of the first relevant video's rank over ranked queries (unranked: gallery + 1)."""
    systems = _ran(result)
    gallery = result.config.gallery
    ranks = {s.label: [r.rank or gallery + 1 for r in s.records if r.kind in RANKED] for s in systems.values()}
    ranks = {k: v for k, v in ranks.items() if v}
    if not ranks:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.arange(1, gallery + 3) - 0.5
    for label, values in ranks.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=label)
    ax.set_xlabel(f"rank of the first relevant video (unranked = {gallery + 1})")
    ax.set_ylabel("queries")
    ax.set_title("Rank histogram (implicit, explicit, negation)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_latency(result: RunResult, path: Path) -> Path | None:
    """Box plot of seconds per query for each system."""
    systems = {s.label: [max(r.seconds, 1e-4) for r in s.records] for s in _ran(result).values()}
    systems = {k: v for k, v in systems.items() if v}
    if not systems:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(systems)), 4))
    ax.boxplot(list(systems.values()))
    ax.set_xticks(np.arange(1, len(systems) + 1), list(systems), rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("seconds per query")
    ax.set_title("Latency distribution")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(result: RunResult, folder: Path) -> list[Path]:
    """The three plots as PNG files in ``folder`` (none without matplotlib)."""
    try:
        _pyplot()
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'twinseek[eval]'): no plots")
        return []
    made = [plot_metrics_per_kind(result, folder / "metrics_per_kind.png"),
            plot_rank_histogram(result, folder / "rank_histogram.png"),
            plot_latency(result, folder / "latency.png")]
    return [p for p in made if p is not None]


# ---------------------------------------------------------------- overlays
def draw_overlays(video: str | Path | None, masks: Mapping[int, Sequence[str | Path]], folder: Path,
                  max_frames: int = OVERLAY_FRAMES, alpha: float = OVERLAY_ALPHA) -> list[Path]:
    """Tint each frame's mask PNGs (one colour per object) over the decoded frame: ``folder/f<frame>.png``.

    Frames are decoded at the masks' size; an unreadable or missing video gives black frames.
    """
    by_frame = {f: dict(enumerate(paths)) for f, paths in masks.items()}
    return write_overlays(overlay_frames(video, by_frame, max_frames, alpha), folder)


# ---------------------------------------------------------------- the report
def _examples_md(result: RunResult) -> list[str]:
    lines: list[str] = []
    for s in _ran(result).values():
        for ex in s.examples:
            verdict = "hit" if ex.outcome == "hit" else f"miss (relevant: {', '.join(ex.positives)})"
            lines.append(f"**{s.label}**, {ex.query_id} ({verdict}): “{ex.text}” → top hit `{ex.video}`\n")
            lines.append(" ".join(f"![{ex.query_id}]({f})" for f in ex.files[:OVERLAY_FRAMES]) or "_no masks_")
            lines.append("")
    return lines


def render_markdown(result: RunResult, plots: Sequence[Path], out_dir: Path) -> str:
    c = result.config
    lines = [f"# Eval report: {Path(c.bench).name}", "",
             f"Bench `{c.bench}`: {c.gallery} videos, {c.queries} queries"
             f"{f' (at most {c.limit} per kind)' if c.limit else ''}; seed {c.seed}; tau {c.tau}; k {c.k}; "
             f"profile {c.profile}; store `{c.store or '-'}`; decomposition of the retrieval-only systems: "
             f"{'LLM' if c.llm_decomposition else 'rules'}; started {c.started}.", "",
             "Ranked kinds: R@K, MdR/MnR (unranked = gallery + 1), mAP, recall@tau, grounding J/F. Absent: share of "
             "queries with no video scored >= tau. MCQ / counterfactual: accuracy (ties count as wrong).", ""]
    summary = summary_table(result)
    if summary is not None:
        lines += ["## Summary", "", _markdown_table(*summary), ""]
    lines += ["## Metrics per kind", ""]
    for header, rows in metric_tables(result).values():
        lines += [_markdown_table(header, rows), ""]
    lines += ["## Runs", "", _markdown_table(RUN_HEADER, _run_rows(result)), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(out_dir)})" for p in plots] + [""]
    examples = _examples_md(result)
    if examples:
        lines += ["## Grounding examples (top hit's masks)", "", *examples]
    return "\n".join(lines)


def render_html(result: RunResult, plots: Sequence[Path], out_dir: Path) -> str:
    parts = [f"<h1>Eval report: {html.escape(Path(result.config.bench).name)}</h1>"]
    summary = summary_table(result)
    if summary is not None:
        parts += ["<h2>Summary</h2>", _html_table(*summary)]
    parts += ["<h2>Metrics per kind</h2>"]
    parts += [_html_table(header, rows) for header, rows in metric_tables(result).values()]
    parts += ["<h2>Runs</h2>", _html_table(RUN_HEADER, _run_rows(result))]
    parts += ["<h2>Plots</h2>"] + [f'<img src="{html.escape(str(p.relative_to(out_dir)))}">' for p in plots]
    for s in _ran(result).values():
        for ex in s.examples:
            imgs = "".join(f'<img src="{html.escape(f)}" width="240">' for f in ex.files[:OVERLAY_FRAMES])
            parts.append(f"<h3>{html.escape(s.label)}: {html.escape(ex.query_id)} ({ex.outcome})</h3>"
                         f"<p>{html.escape(ex.text)} → {html.escape(ex.video or '')}</p>{imgs}")
    style = "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" \
           + "\n".join(parts) + "</body></html>"


def write_report(result: RunResult, out_dir: str | Path, html_report: bool = True) -> list[Path]:
    """Write ``report.md`` (and ``report.html``) with plots in ``out_dir/plots``; returns every file written."""
    out = Path(out_dir)
    plots = write_plots(result, out / "plots")
    md = out / "report.md"
    md.write_text(render_markdown(result, plots, out), encoding="utf-8")
    files = [md, *plots]
    if html_report:
        page = out / "report.html"
        page.write_text(render_html(result, plots, out), encoding="utf-8")
        files.insert(1, page)
    logger.info("report written to %s", md)
    return files
