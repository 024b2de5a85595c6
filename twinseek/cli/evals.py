"""``twinseek eval`` and ``twinseek calibrate``: the agent, its ablations and baselines on a bench; the judge's
calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twinseek.cli.options import ProfileOpt, _errors_exit
from twinseek.cli.render import console, print_eval_summary, safe, safe_name


def eval_(
    bench_dir: Annotated[Path, typer.Argument(help="Bench folder (videos/, queries.jsonl, masks/).")],
    store: Annotated[Path | None, typer.Option("--store", "-s", help="Twin store of the gallery [default: "
                                               "~/.cache/twinseek/bench-stores/<bench>-<profile>].")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder [default: runs/eval-<bench>-<time>].")] = None,
    profile: ProfileOpt = None,
    systems: Annotated[str | None, typer.Option(help="Comma-separated: full, full-qd, full-ca-lr, random, naive, "
                                                     "dense, compositional, whole (moment kind).")] = None,
    ablate: Annotated[str | None, typer.Option(help="The agent with these switches off, e.g. QD,CA (one run).")] = None,
    baseline: Annotated[list[str] | None, typer.Option(help="random, naive, dense or compositional (repeatable).")] = None,
    all_systems: Annotated[bool, typer.Option("--all", help="Full system, each ablation and every baseline.")] = False,
    kinds: Annotated[str | None, typer.Option(help="Comma-separated query kinds (default: all).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N queries of each kind.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random baseline and the LLM.")] = 0,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Videos the agent returns.")] = 10,
    tau: Annotated[float, typer.Option(min=0.0, max=1.0, help="Relevance threshold.")] = 0.5,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Rule-based decomposition for dense/compositional.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out: finished systems and queries "
                                                          "are kept; the settings must be the same.")] = False,
) -> None:
    """Evaluate the agent, its ablations and baselines on a bench; writes results.json (as it goes) and a report."""
    from twinseek.evals.runner import run  # lazy: numpy, scipy, the pipeline (the schemas: 14 ms of pydantic)
    from twinseek.evals.schemas import ALL_SYSTEMS, SystemSpec, parse_systems

    if resume and out is None:
        raise typer.BadParameter("--resume needs --out, the folder of the run to continue")
    try:
        names = list(ALL_SYSTEMS) if all_systems else [*(systems.split(",") if systems else []), *(baseline or [])]
        wanted: list[str | SystemSpec] = [*names, *([SystemSpec.agent(ablate.split(","), ablate)] if ablate else [])]
        # --resume alone continues the run's own systems
        specs = parse_systems(wanted) if wanted else None if resume else parse_systems(["full"])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    kind_list = [x.strip() for x in kinds.split(",") if x.strip()] if kinds else None
    with _errors_exit():
        try:
            result = run(bench_dir, store=store, out=out, systems=specs, kinds=kind_list, limit=limit, seed=seed,
                         profile=profile or "embedded", k=k, tau=tau,  # type: ignore[arg-type]
                         llm_decomposition=not no_llm, skip_unavailable=all_systems, progress=True, resume=resume)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    print_eval_summary(result)


def build_moment_bench(
    source: Annotated[Path, typer.Argument(help="Source bench folder (videos/, queries.jsonl), e.g. the dev bench.")],
    out: Annotated[Path, typer.Argument(help="Folder to write the moment bench to (videos/, queries.jsonl, "
                                        "manifest.json, README.md).")],
    videos: Annotated[int, typer.Option(min=1, help="Long videos to make.")] = 12,
    clips: Annotated[int, typer.Option(min=1, help="Segments (distinct clips) per long video.")] = 6,
    segment: Annotated[str, typer.Option(help="Target seconds of a segment, MIN,MAX (a clip loops a whole number "
                                         "of times to come nearest).")] = "30,40",
    min_video: Annotated[float, typer.Option(min=0, help="Shortest long video in seconds (more loops "
                                             "otherwise).")] = 180.0,
    seed: Annotated[int, typer.Option(help="Seed of the clip order and segment lengths.")] = 0,
    only: Annotated[str | None, typer.Option(help="Comma-separated source clips to use [default: all].")] = None,
) -> None:
    """Make a moment bench: long videos of looped real clips from SOURCE, and moment queries whose ground truth is
    the time span of their clip (score it with `twinseek eval OUT --kinds moment`)."""
    from twinseek.evals.moment_bench import MomentBenchSpec  # lazy: pydantic, av
    from twinseek.evals.moment_bench import build_moment_bench as build

    try:
        low, high = (float(x) for x in segment.split(","))
        spec = MomentBenchSpec(videos=videos, clips_per_video=clips, segment_s=(low, high), min_video_s=min_video,
                               seed=seed, clips=tuple(c.strip() for c in only.split(",") if c.strip()) if only else None)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise typer.BadParameter(str(exc)) from exc
    with _errors_exit():
        manifest = build(source, out, spec)
    lengths = [v.seconds for v in manifest.videos.values()]
    console.print(f"{len(manifest.videos)} videos ({min(lengths):.0f}-{max(lengths):.0f} s, "
                  f"{manifest.total_seconds / 60:.1f} min), {len(manifest.queries)} moment queries "
                  f"({len(manifest.excluded)} source queries left out): {safe_name(out)}")


def calibrate(
    bench_dir: Annotated[Path, typer.Argument(help="Bench folder with labelled ranked queries (queries.jsonl).")],
    store: Annotated[Path, typer.Option("--store", "-s", help="Twin store holding the bench's videos.")],
    folds: Annotated[int, typer.Option(min=2, help="Held-out report: the queries split by video into folds, each "
                                                   "scored by calibrators fitted on the others.")] = 2,
    fit_fold: Annotated[int | None, typer.Option(min=0, help="Fit the calibrators written on this fold's queries "
                                                 "only (the others stay held out) [default: all].")] = None,
    holdout: Annotated[int, typer.Option(min=0, help="First N queries of each kind left out of everything (those "
                                                     "`twinseek eval --limit N` reports).")] = 0,
    method: Annotated[str, typer.Option(help="platt or isotonic.")] = "platt",
    judge: Annotated[str | None, typer.Option(help="verdict, describe, yesno or listwise [default: the settings' agent.judge]."
                                              )] = None,
    tau: Annotated[float, typer.Option(min=0.0, max=1.0, help="Threshold of the held-out report.")] = 0.5,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Calibrator file [default: STORE/"
                                             "calibration-<judge>.json, which the store's searches use; the "
                                             "retrieval calibrator goes next to it].")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N fit queries of each kind.")] = None,
    judge_top: Annotated[int, typer.Option(min=1, help="Best-ranked candidates the LLM judges per query for the "
                                           "fit.")] = 1,
    rows: Annotated[Path | None, typer.Option(help="Refit from the labelled rows an earlier run saved "
                                              "(calibration-<judge>-rows.jsonl) instead of searching again.")] = None,
    profile: ProfileOpt = None,
) -> None:
    """Fit the maps from a candidate's judgement, similarity and rank to P(relevant) for this LLM and judge mode
    (then tau=0.5 means P >= 0.5), and report them on held-out folds."""
    from twinseek.agent.context import JUDGES  # lazy: the agent package loads torch and langgraph
    from twinseek.evals.calibrate import calibrate as fit

    if method not in ("platt", "isotonic"):
        raise typer.BadParameter(f"method must be platt or isotonic, got {method!r}")
    if judge is not None and judge not in JUDGES:
        raise typer.BadParameter(f"judge must be one of {', '.join(JUDGES)}, got {judge!r}")
    with _errors_exit():
        try:
            cal, _, report = fit(bench_dir, store, holdout=holdout, method=method, judge=judge,  # type: ignore[arg-type]
                                 out=out, limit=limit, folds=folds, tau=tau, progress=True, rows_from=rows,
                                 judge_top=judge_top, fit_fold=fit_fold,
                                 profile=profile or "embedded")
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    meta = cal.fitted_on
    if meta.get("features_dropped"):
        console.print(f"[yellow]dropped[/yellow] {safe(', '.join(meta['features_dropped']))}: fitted against its "  # type: ignore[arg-type]
                      "direction (no usable signal in these labels)")
    console.print(f"{cal.method} calibrator for {safe(cal.llm)}/{cal.judge} over {', '.join(cal.features)}: "
                  f"{meta['pairs']} judged candidates ({meta['relevant']} relevant) from "
                  f"{len(meta.get('queries', []))} queries")  # type: ignore[arg-type]
    for title, held in ((f"the top {judge_top} judged", report.held_out),
                        ("none judged (judge_top 0)", report.held_out_unjudged)):
        table = Table(title=f"held out, {title} ({report.folds}-fold cross-fitted, tau {report.tau:g})")
        for col in ("kind", "queries", "R@1", "R@1 retrieval", "positives >= tau", "absent rejected"):
            table.add_column(col)
        for kind, m in held.items():
            cells = [f"{m[key]:.3f}" if key in m else "-" for key in ("r@1", "r@1_retrieval", "positives_above_tau",
                                                                      "rejected")]
            table.add_row(safe(kind), str(int(m["queries"])), *cells)
        console.print(table)
    for path in report.paths:
        console.print(f"written: {safe_name(Path(path))}")
