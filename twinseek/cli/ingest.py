"""``twinseek ingest``: videos into twins, serially or on worker processes / Ray actors."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from twinseek.cli.options import ProfileOpt, StoreOpt, _errors_exit, _settings, _usage_error
from twinseek.cli.render import err_console, ingest_with_progress, print_ingest_summary, print_workers


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Video files or folders (searched recursively).")],
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    fps: Annotated[float | None, typer.Option(help="Sample frames at this rate.")] = None,
    frames: Annotated[int | None, typer.Option(help="Frames sampled from a short video (a long one gets more: "
                                               "sampling.frames_per_minute, up to sampling.max_frames).")] = None,
    max_side: Annotated[int | None, typer.Option(help="Longest side of decoded frames.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-ingest videos already in the store.")] = False,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", min=1, help="Build twins in this many worker processes (each loads the models once; "
        "default: serial, in this process); with --ray, the number of Ray actors (default: one per CPU of the "
        "cluster).")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS|local", help="Build twins on Ray actors: 'local' starts Ray on this machine, "
        "'auto' or HOST:PORT joins a cluster (ray start). Needs twinseek[ray]; video paths must be readable on "
        "every node.")] = None,
    retries: Annotated[int, typer.Option(min=0, help="With --workers/--ray: further tries of a build that fails "
                                         "other than for bad input (a crashed worker).")] = 1,
) -> None:
    """Turn videos into digital twins. Videos already ingested (same content) are skipped.

    This process stays the only writer of the store: with --workers or --ray it checks and hashes each file,
    sends only new videos to the workers and commits each twin as it comes back."""
    from twinseek.twins.parallel import make_executor  # lazy: numpy, PIL and the models' code
    from twinseek.twins.pipeline import Ingestor, collect_videos
    from twinseek.twins.store import TwinStore

    settings = _settings(store, profile, fps=fps, frames=frames, max_side=max_side)
    missing = [p for p in paths if not p.exists() and not p.is_symlink()]
    if missing:  # checked before the store is opened: a mistyped path creates no empty store
        _usage_error(f"no such file or folder: {missing[0]}" + (f" (and {len(missing) - 1} more)"
                                                              if len(missing) > 1 else ""))
    files = collect_videos(paths)
    if not files:
        err_console.print("[yellow]no video files found[/yellow]")
        raise typer.Exit(1)
    with _errors_exit(), TwinStore(settings.store) as twin_store:
        if (workers or 1) > 1 or ray:
            err_console.print(f"starting {'Ray actors' if ray else f'{workers} worker processes'} ...")
        with contextlib.ExitStack() as stack:
            executor = make_executor(settings, workers, ray)
            if executor is not None:
                stack.enter_context(executor)
            results = ingest_with_progress(Ingestor(twin_store, settings), files, force, executor, retries)
        print_ingest_summary(results, settings)
        if executor is not None:
            print_workers(executor.workers())
    if any(r.status == "failed" for r in results) and not any(r.status != "failed" for r in results):
        raise typer.Exit(1)
