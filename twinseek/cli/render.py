"""What the command line prints: the two consoles, untrusted text made safe for rich, and a printer for each thing
a command shows (an ingest, a twin, a ranking, an answer, the agent's progress, a chat reply, an eval)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twinseek.config import Settings
from twinseek.twins.knowledge import word_knowledge

if TYPE_CHECKING:
    from twinseek.agent.api import ProgressEvent, SearchResult
    from twinseek.agent.chat import ChatReply
    from twinseek.agent.state import Hit, Moment
    from twinseek.evals.schemas import RunResult
    from twinseek.media.shots import ShotProgress
    from twinseek.twins.model import Twin
    from twinseek.twins.pipeline import BatchBuilder, Ingestor, IngestResult, WorkerInfo

console = Console()
err_console = Console(stderr=True)

# C0 controls but tab and newline, DEL and C1 controls: ESC sequences from a file name or an LLM reply could
# rewrite the terminal.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_ALL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe(text: object) -> str:
    """Untrusted text (a query, an LLM's words, an id, an error) ready for rich: markup escaped, terminal control
    characters removed (tabs and newlines kept)."""
    return escape(CONTROL.sub("", str(text)))


def safe_name(text: object) -> str:
    """A file name or path for rich: every control character (newlines too) shown as ``?``, markup escaped."""
    return escape(_CONTROL_ALL.sub("?", str(text)))


def ingest_with_progress(ingestor: Ingestor, files: list[Path], force: bool, executor: BatchBuilder | None = None,
                         retries: int = 1) -> list[IngestResult]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        videos = progress.add_task("videos", total=len(files))
        frames = progress.add_task("frames", total=None)
        # serial ingest: the video being decoded, shot by shot (frames decoded of its total)
        shots = progress.add_task("shots", total=None, visible=False)

        def shot(p: ShotProgress) -> None:
            progress.update(shots, description=f"{safe_name(p.path.name)}: shot {p.shot.index + 1}",
                            total=p.frame_count, completed=p.frames_done, visible=True)

        def done(result: IngestResult) -> None:
            progress.advance(videos)
            progress.advance(frames, result.frames)
            progress.update(shots, visible=False)

        ingestor.on_shot = shot
        return ingestor.ingest_many(files, force=force, on_done=done, executor=executor, retries=retries)


def print_ingest_summary(results: Sequence[IngestResult], settings: Settings) -> None:
    table = Table(title=f"ingest into {safe_name(settings.store)} (profile {settings.profile})")
    by_worker = any(r.worker for r in results)
    for col in ("file", "status", "video id", "frames", "tracks", "seconds") + (("worker",) if by_worker else ()):
        table.add_column(col)
    for r in results:
        style = {"ingested": "green", "skipped": "dim", "failed": "red"}[r.status]
        status = r.status + (" (repaired)" if r.repaired else "")
        table.add_row(safe_name(Path(r.path).name), f"[{style}]{status}[/{style}]", safe(r.video_id or ""),
                      str(r.frames or ""), str(r.tracks or ""), f"{r.seconds:.1f}" if r.seconds else "",
                      *((safe(r.worker or ""),) if by_worker else ()))
    console.print(table)
    for r in results:
        if r.status == "failed":
            console.print(f"[red]failed[/red] {safe_name(r.error)}")
    counts = {s: sum(r.status == s for r in results) for s in ("ingested", "skipped", "failed")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))


def print_workers(workers: Sequence[WorkerInfo]) -> None:
    """One line on the workers of a parallel ingest: how many, on how many hosts / Ray nodes, peak memory."""
    if not workers:
        return
    nodes = {w.node_id or w.host for w in workers}
    rss = sorted(w.peak_rss_mb for w in workers)
    where = ("Ray node" if workers[0].node_id else "host") + ("s" if len(nodes) > 1 else "")
    console.print(f"{len(workers)} workers on {len(nodes)} {where}, "
                  f"peak RSS per worker {rss[0]:.0f}-{rss[-1]:.0f} MiB")


def print_twin(twin: Twin) -> None:
    # lazy: views loads numpy and PIL; the twin model's pydantic classes cost 9 ms at every start
    from twinseek.twins.model import screen_lines
    from twinseek.twins.views import glossed_words

    v = twin.video
    console.print(f"[bold]{safe(v.video_id)}[/bold]  {v.width}x{v.height}  {v.duration_s:.1f}s  "
                  f"{len(v.sampled_frames)} sampled frames  profile {safe(v.profile)}")
    console.print("  models: " + safe(", ".join(f"{p.role}={p.model} ({p.tier})" for p in v.specialists)))
    table = Table(show_edge=False)
    for col in ("track", "category", "score", "attributes", "frames", "motion", "area"):
        table.add_column(col)
    for t in twin.tracks:
        cat = t.category + (f" ({t.category_group})" if t.category_group else "")
        table.add_row(str(t.track_id), safe(cat), f"{t.category_score:.2f}", safe(t.attributes),
                      f"{t.first_frame}-{t.last_frame} ({t.frame_count})", safe(t.direction), f"{t.mean_area:.3f}")
    console.print(table)
    acting = [t for t in twin.tracks if t.actions]
    if acting:
        console.print("  actions: " + "; ".join(
            f"#{t.track_id} " + ", ".join(f"{safe(label)} {conf:.2f}" for label, conf in t.actions) for t in acting))
    if v.screen_text:
        lines = screen_lines(v.screen_text)
        console.print("  on-screen text: " + " / ".join(f'"{escape(line)}"' for line in lines[:12])
                      + (f" … ({len(lines) - 12} more)" if len(lines) > 12 else ""))
    knowledge = word_knowledge()
    glosses = dict.fromkeys(g for t in twin.tracks for word, group in glossed_words(t)
                            if (g := knowledge.gloss(word, group)))
    for gloss in glosses:
        console.print(f"  [dim]know:[/dim] {escape(gloss)}")
    if twin.relations:
        shown = twin.relations[:12]
        console.print("  relations: " + safe("; ".join(
            f"{r.subject_track} {r.predicate}" + (f" {r.object_track}" if r.object_track else "")
            + f" [{r.frame_start}-{r.frame_end}]" for r in shown)
            + (f" … ({len(twin.relations) - len(shown)} more)" if len(twin.relations) > len(shown) else "")))
    _print_scenes(twin)
    if twin.speech is not None:
        _print_speech(twin)


MAX_SCENES_SHOWN = 12


def _print_scenes(twin: Twin) -> None:
    """The shots' count, and each scene of a video of several: its span and labels."""
    from twinseek.retrieval.moments import span_label  # lazy, like views
    from twinseek.twins.scenes import scenes

    if not twin.shots:
        return
    parts = scenes(twin)
    console.print(f"  shots: {len(twin.shots)}" + (f", in {len(parts)} scenes" if parts else ""))
    for part in parts[:MAX_SCENES_SHOWN]:
        labels = ", ".join(label for label, _ in part.labels[:4])
        console.print(f"    scene {part.index}: {span_label(part.start_s, part.end_s)} "
                      f"({shot_range(part.shots[0], part.shots[-1])}) {safe(labels)}")
    if len(parts) > MAX_SCENES_SHOWN:
        console.print(f"    … ({len(parts) - MAX_SCENES_SHOWN} more)")


def _print_speech(twin: Twin) -> None:
    """The speech status, then the transcript, one timed segment a line (``[0:03.2-0:05.0] text``)."""
    speech = twin.speech
    if speech is None:
        return
    extra = f", {speech.language}" if speech.language else ""
    if speech.transcribed_s and speech.audio_s > speech.transcribed_s + 0.5:
        extra += f", first {speech.transcribed_s:.0f} s of {speech.audio_s:.0f} s"
    console.print(f"  speech: {safe(speech.status)}{safe(extra)}")
    for seg in speech.segments[:40]:
        console.print(f"    [dim][{_clock(seg.start)}-{_clock(seg.end)}][/dim] {escape(seg.text)}")
    if len(speech.segments) > 40:
        console.print(f"    … ({len(speech.segments) - 40} more segments)")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}"


def print_retrieval(result: SearchResult) -> None:
    _print_decomposition(result)
    table = Table(show_edge=False)
    for col in ("#", "video", "moment", "relevance", "score", "stages", "best evidence"):
        table.add_column(col, min_width=MOMENT_WIDTH if col == "moment" else None)
    for hit in result.hits:
        stages = " ".join(f"{name[:4]}={v:.2f}" for name, v in hit.scores.items())
        best = max(hit.evidence, key=lambda m: m.similarity, default=None)
        evidence = f"{best.text} ({best.similarity:.2f})" if best is not None and best.text else ""
        table.add_row(str(hit.rank), safe(hit.video_id), _moment_cell(hit), f"{hit.relevance:.2f}",
                      f"{hit.retrieval_score:.3f}", stages, safe(evidence))
    console.print(table)
    for hit in result.hits:
        for line in moment_lines(hit):
            console.print(f"  [bold]{hit.rank}[/bold] {line}")
    _print_footer(result)


MOMENT_WIDTH = len("00:00:00-00:00:00")  # a moment's span is never cut in a table


def _shots(moment: Moment) -> str:
    return shot_range(moment.shots[0], moment.shots[-1]) if moment.shots else ""


def shot_range(first: int, last: int) -> str:
    return f"shot {first}" if first == last else f"shots {first}-{last}"


def _moment_cell(hit: Hit) -> str:
    """The best moment's span (``00:03:12-00:03:41``) for a table cell; empty when the hit has none."""
    return hit.moments[0].label if hit.moments else ""


def moment_lines(hit: Hit) -> list[str]:
    """Each moment of a hit, ready for rich: its span, its shots and the evidence in it (the best moment first,
    the others dimmed)."""
    lines = []
    for k, moment in enumerate(hit.moments):
        parts = [moment.label] + [p for p in (_shots(moment), "; ".join(moment.evidence)) if p]
        text = safe(" · ".join(parts))
        lines.append(text if k == 0 else f"[dim]also {text} ({moment.score:.2f})[/dim]")
    return lines


def print_search_result(result: SearchResult) -> None:
    _print_decomposition(result)
    judged = any(h.judgement is not None for h in result.hits)
    table = Table(show_edge=False)
    columns = (["#", "video", "moment", "relevance"] + (["judge"] if judged else [])
               + ["objects (masks)", "what it shows"])
    for col in columns:
        table.add_column(col, min_width=MOMENT_WIDTH if col == "moment" else None)
    for hit in result.hits:
        objects = ", ".join(f"#{o.track_id} {o.category} ({len(o.masks)})" for o in hit.objects)
        judge = [f"{hit.judgement:.2f}" if hit.judgement is not None else "-"] if judged else []
        table.add_row(str(hit.rank), safe(hit.video_id), _moment_cell(hit), f"{hit.relevance:.2f}", *judge,
                      safe(objects), safe(hit.description))
    console.print(table if result.hits else "no video above the relevance threshold")
    for hit in result.hits:  # below the table: a paragraph each reads better than a narrow column
        console.print(f"  [bold]{hit.rank}[/bold] {safe(hit.reasoning or hit.judged_by)}")
        for line in moment_lines(hit):
            console.print(f"    {line}")
    if result.dropped:  # what the threshold hid, so a person sees how close the rest came
        tau = result.options.get("tau")
        console.print(f"[dim]below tau={tau}: " + safe(", ".join(f"{d.video_id} {d.relevance:.2f}"
                                                                 for d in result.dropped[:8])) + "[/dim]")
    _print_footer(result)


def _print_decomposition(result: SearchResult) -> None:
    d = result.decomposition
    console.print(f"[bold]{safe(result.query)}[/bold]  ->  {safe(d.rewritten)}  [dim]({d.source})[/dim]")
    console.print("  sub-queries: " + "; ".join(
        safe(f"{'NOT ' if q.negated else ''}{q.text} [{q.type}, {q.weight:.1f}]") for q in d.subqueries))


def _print_footer(result: SearchResult) -> None:
    for f in result.fallbacks:
        where = f" ({safe(f.video_id)})" if f.video_id else ""
        console.print(f"[yellow]fallback[/yellow] {safe(f.node)}{where}: {safe(f.reason)}")
    console.print("  [dim]" + safe(", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
                                     + " | " + ", ".join(f"{k}={v}" for k, v in result.models.items())) + "[/dim]")


def print_progress(event: ProgressEvent) -> None:
    """One stderr line per finished node (its trace), and per judged or refined candidate."""
    data = event.data
    if event.kind == "node":
        secs = data.get("timings", {}).get(event.node, 0.0)
        lines = data.get("trace", []) or [event.node or ""]
        err_console.print(f"[dim]{secs:6.1f}s[/dim] " + safe(lines[0]))
        for line in lines[1:]:
            err_console.print("        " + safe(line))
    elif event.node == "reason" and "video_id" in data:
        err_console.print(f"[dim]        judged {safe(str(data['video_id']))}: {data['relevance']:.2f} "
                          f"({safe(str(data['source']))})[/dim]")
    elif event.node == "refine" and "action" in data:
        err_console.print(f"[dim]        refine {safe(str(data['video_id']))}: {safe(str(data['action']))} "
                          f"{safe(str(data['status']))}[/dim]")


def print_reply(reply: ChatReply) -> None:
    if reply.kind == "results" and reply.result is not None:
        table = Table(title=safe(reply.text), show_edge=False)
        for col in ("#", "video", "moment", "relevance", "objects", "reasoning"):
            table.add_column(col, min_width=MOMENT_WIDTH if col == "moment" else None)
        for hit in reply.result.hits:
            objects = ", ".join(f"#{o.track_id} {o.category}" for o in hit.objects)
            table.add_row(str(hit.rank), safe(hit.video_id), _moment_cell(hit), f"{hit.relevance:.2f}",
                          safe(objects), safe(hit.reasoning[:80]))
        console.print(table if reply.result.hits else f"no video above tau for: {safe(reply.text)}")
        for f in reply.result.fallbacks:
            console.print(f"[yellow]fallback[/yellow] {safe(f.node)}: {safe(f.reason)}")
    elif reply.kind == "show":
        console.print(safe(reply.text))
        for file in reply.files:
            console.print(f"  {safe_name(file)}")
    else:
        style = "red" if reply.kind == "error" else ""
        console.print(f"[{style}]{safe(reply.text)}[/{style}]" if style else safe(reply.text))


def print_eval_summary(result: RunResult) -> None:
    from twinseek.evals.report import HEADLINE  # lazy: the report module loads numpy and PIL

    metrics = result.metrics()
    keys = [key for key in HEADLINE.values() if any(key in m for m in metrics.values())]
    table = Table(title=f"eval on {safe_name(Path(result.config.bench).name)} ({result.config.queries} queries)")
    table.add_column("system")
    short = {"r@1": "R@1", "rejection@tau": "reject", "accuracy": "acc"}
    for key in keys:
        kind, metric = key.split("_", 1)
        table.add_column(safe(f"{kind[:8]} {short.get(metric, metric)}"), justify="right")
    for s in result.systems.values():
        if s.skipped:
            table.add_row(safe(s.label), f"[yellow]skipped[/yellow] {safe(s.skipped[:60])}")
            continue
        table.add_row(safe(s.label), *(f"{s.metrics[key]:.3f}" if key in s.metrics else "–" for key in keys))
    console.print(table)
    console.print(f"results: {safe_name(result.results_path)}")
    if result.report_files:
        console.print(f"report:  {safe_name(result.report_files[0])}")
