"""``twinseek twins ...`` and ``twinseek store ...``: read a store's twins, check, compare and manage stores, list
and clear refinements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from twinseek.cli.options import StoreOpt, _errors_exit, _with_store
from twinseek.cli.render import console, print_twin, safe, safe_name
from twinseek.errors import VideoNotFoundError

if TYPE_CHECKING:
    from twinseek.twins.store import StoreCheck, TwinStore


def twins_show(
    video_id: str,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Full twin as JSON.")] = False,
    compact: Annotated[bool, typer.Option("--compact", help="The compact JSON an LLM reads.")] = False,
    ingest: Annotated[bool, typer.Option("--ingest", help="The ingest rows only, without refinements.")] = False,
) -> None:
    """Show one video's twin: its tracks and relations, with what searches learned laid over them."""
    twin = _with_store(store, lambda s: s.get_twin(video_id, refinements=not ingest))
    if as_json:
        typer.echo(twin.to_full_json())
        return
    if compact:
        from twinseek.twins.views import compact_json  # lazy: numpy and PIL

        typer.echo(compact_json(twin))
        return
    print_twin(twin)


def twins_describe(
    video_ids: Annotated[list[str] | None, typer.Argument(help="Videos to describe [default: every video].")] = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {video_id: description} as JSON.")] = False,
) -> None:
    """What each video shows in one line: its main objects by the names a person uses, the scene, on-screen text
    (what the judge reads)."""
    from twinseek.twins.views import description  # lazy: numpy and PIL

    def describe_all(s: TwinStore) -> dict[str, str]:
        return {vid: description(s.get_twin(vid, refinements=False)) for vid in (video_ids or s.video_ids())}

    described = _with_store(store, describe_all)
    if as_json:
        typer.echo(json.dumps(described, ensure_ascii=False))
        return
    table = Table()
    table.add_column("video id")
    table.add_column("description")
    for vid, text in described.items():
        table.add_row(safe(vid), safe(text))
    console.print(table)


def twins_list(store: StoreOpt = None) -> None:
    """List the videos in a store."""
    videos = _with_store(store, lambda s: s.videos())
    table = Table()
    for col in ("video id", "duration", "frames", "profile", "path"):
        table.add_column(col)
    for v in videos:
        table.add_row(safe(v.video_id), f"{v.duration_s:.1f}s", str(len(v.sampled_frames)), safe(v.profile),
                      safe_name(v.path))
    console.print(table)


def store_stats(
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Counts of videos, tracks, instances and relations, and disk use."""
    stats = _with_store(store, lambda s: s.stats())
    if as_json:
        typer.echo(json.dumps(stats))
        return
    for key, value in stats.items():
        console.print(f"{key:>15}: {safe_name(value) if key == 'store' else safe(value)}")


def store_check(
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Also decode every mask file.")] = False,
) -> None:
    """Check a store: rows whose mask files are missing, SQLite integrity, leftover ingest folders. Exits 1
    when stored data is damaged; re-ingesting a damaged video repairs it."""
    def run(s: TwinStore) -> tuple[StoreCheck, dict[str, str]]:
        report = s.check(deep=deep)
        return report, {v: s.get_video(v).path for v in report.damaged_videos}

    report, paths = _with_store(store, run)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        console.print(f"{safe_name(report.store)}: {report.videos} videos, {report.instances} instances")
        for f in report.findings:
            style = "red" if f.damage else "yellow"
            where = f"{safe(f.video_id)}: " if f.video_id else ""
            console.print(f"  [{style}]{f.kind}[/{style}] {where}{safe_name(f.detail)}")
        if report.ok:
            console.print("[green]ok[/green]" + (" (leftovers are cleaned up on the next open)" if report.findings
                                                 else ""))
        elif paths:
            console.print(f"[red]damaged[/red]: {len(paths)} videos. Repair them by ingesting them again:")
            for path in sorted(set(paths.values())):
                console.print(f"  twinseek ingest {safe_name(path)} --store {safe_name(report.store)}")
        else:
            console.print("[red]damaged[/red]: the database itself (see above)")
    if not report.ok:
        raise typer.Exit(1)


def store_delete(video_id: str, store: StoreOpt = None) -> None:
    """Delete a video's twin and its mask files."""
    _with_store(store, lambda s: s.delete(video_id))
    console.print(f"deleted {safe(video_id)}")


def refinements_list(
    store: StoreOpt = None,
    video: Annotated[str | None, typer.Option("--video", help="Only this video's refinements.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per refinement, with provenance.")] = False,
) -> None:
    """List the refinements (oldest first): what each action found, its confidence, model and provenance."""
    from twinseek.agent.refine import describe_refinement  # lazy: the agent package loads torch and langgraph

    rows = _with_store(store, lambda s: s.refinements(_known(s, video)))
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    table = Table(title=f"{len(rows)} refinements")
    for col in ("id", "video", "track", "action", "field", "says", "confidence", "model", "round", "created"):
        table.add_column(col)
    for r in rows:
        p = r.provenance
        table.add_row(str(r.id), safe(r.video_id), "" if r.track_id is None else str(r.track_id), safe(r.action),
                      r.field, safe(describe_refinement(r)),
                      "" if r.confidence is None else f"{r.confidence:.2f}", safe(r.model),
                      str(p.get("round", "")), safe(p.get("created_at", "")))
    console.print(table)


def refinements_clear(
    store: StoreOpt = None,
    video: Annotated[str | None, typer.Option("--video", help="Only this video's refinements.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete refinements (the ingest rows stay as they are; searches will run their actions again)."""
    what = f"the refinements of {video}" if video else "every refinement"
    if not yes and not typer.confirm(f"Delete {what}?"):
        raise typer.Exit(1)
    removed = _with_store(store, lambda s: s.clear_refinements(_known(s, video)))
    console.print(f"deleted {removed} refinements" + (f" of {safe(video)}" if video else ""))


def _known(twin_store: TwinStore, video: str | None) -> str | None:
    """``video`` when the store holds it (a misspelt id is an error, not an empty list)."""
    if video is not None and video not in twin_store:
        raise VideoNotFoundError(video)
    return video


def store_diff(
    a: Annotated[Path, typer.Argument(help="A store folder.")],
    b: Annotated[Path, typer.Argument(help="Another store folder.")],
    masks: Annotated[bool, typer.Option("--masks/--no-masks", help="Compare mask pixels too.")] = True,
    limit: Annotated[int, typer.Option(min=1, help="Differences listed at most.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare two stores row by row: videos, tracks, instances, relations and mask pixels (ingest times, mask
    folder names and relation row ids are bookkeeping and not compared). Exit code 1 when they differ."""
    from twinseek.twins.compare import diff_stores  # lazy: numpy and PIL
    from twinseek.twins.store import TwinStore

    with _errors_exit(), TwinStore(a, create=False) as store_a, TwinStore(b, create=False) as store_b:
        diff = diff_stores(store_a, store_b, masks=masks, limit=limit)
    if as_json:
        typer.echo(diff.model_dump_json(indent=2))
    else:
        counts = (f"{diff.videos} videos, {diff.tracks} tracks, {diff.instances} instances, {diff.relations} "
                  f"relations, {diff.masks} masks compared")
        for line in diff.differences:
            console.print(escape(line), highlight=False)
        console.print(f"[green]identical[/green]: {counts}" if diff.identical
                      else f"[red]{len(diff.differences)} differences[/red] ({counts})")
    if not diff.identical:
        raise typer.Exit(1)
