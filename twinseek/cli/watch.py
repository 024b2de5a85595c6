"""``twinseek watch``: ingest the videos of a folder as they arrive (see :mod:`twinseek.twins.watch`)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from twinseek.cli.options import ProfileOpt, StoreOpt, _errors_exit, _settings, _usage_error
from twinseek.cli.render import console, err_console, print_workers, safe, safe_name

if TYPE_CHECKING:
    from twinseek.twins.watch import Change, WatchedFile


def watch(
    folder: Annotated[Path, typer.Argument(help="The folder to watch (and its subfolders).")],
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    settle: Annotated[float | None, typer.Option(
        min=0, help="Seconds a file's size and modification time must stay the same before it is ingested (a "
        "file still being copied waits) [default: watch.settle_s, 2].")] = None,
    once: Annotated[bool, typer.Option("--once", help="Ingest what the folder holds now (once it has settled), "
                                       "then exit: for cron and scripts.")] = False,
    fps: Annotated[float | None, typer.Option(help="Sample frames at this rate.")] = None,
    frames: Annotated[int | None, typer.Option(help="Sample this many frames uniformly.")] = None,
    max_side: Annotated[int | None, typer.Option(help="Longest side of decoded frames.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", min=1, help="Build twins in this many worker processes (default: serial, in this "
        "process); with --ray, the number of Ray actors.")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS|local", help="Build twins on Ray actors ('local', 'auto' or HOST:PORT), as "
        "twinseek ingest does.")] = None,
    retries: Annotated[int, typer.Option(min=0, help="With --workers/--ray: further tries of a build that fails "
                                         "other than for bad input.")] = 1,
) -> None:
    """Watch a folder and ingest each video that arrives, once it has stopped growing.

    The files already there are ingested first (those a previous watcher finished are passed over, and a video
    the store has is skipped by content). The watch queue is kept in the store: the web app's Ingest page shows
    it, and a restarted watcher resumes it. A bad file is recorded as failed and watching goes on. Ctrl-C stops
    after the file being ingested (twice: at once; the store's writes are atomic either way)."""
    from twinseek.twins.parallel import make_executor  # lazy: numpy, PIL and the models' code
    from twinseek.twins.pipeline import Ingestor
    from twinseek.twins.store import TwinStore
    from twinseek.twins.watch import FolderWatcher

    settings = _settings(store, profile, fps=fps, frames=frames, max_side=max_side)
    if settle is not None:
        settings.watch = settings.watch.model_copy(update={"settle_s": settle})
    if not folder.is_dir():  # checked before the store is opened: a mistyped folder creates no empty store
        _usage_error(f"not a folder: {folder}")
    stop = threading.Event()
    with _errors_exit(), TwinStore(settings.store) as twin_store, contextlib.ExitStack() as stack:
        executor = make_executor(settings, workers, ray)
        if executor is not None:
            err_console.print(f"starting {'Ray actors' if ray else f'{workers} worker processes'} ...")
            stack.enter_context(executor)
        watcher = FolderWatcher(folder, Ingestor(twin_store, settings), settings.watch, executor=executor,
                                batch=2 * (workers or os.cpu_count() or 1), retries=retries, on_change=_print_change)
        err_console.print(f"watching {safe_name(watcher.folder)} into {safe_name(settings.store)} "
                          f"(settle {settings.watch.settle_s:g} s{'; once' if once else ''}; Ctrl-C stops)")
        with _stop_on_signals(stop):
            summary = watcher.run(stop, once=once)
        counts = {s: summary.count(s) for s in ("ingested", "skipped", "failed")}
        console.print(", ".join(f"{n} {s}" for s, n in counts.items())
                      + (f", {len(summary.dropped)} dropped" if summary.dropped else "")
                      + (" (stopped)" if stop.is_set() else ""))
        if executor is not None:
            print_workers(executor.workers())
    if once and counts["failed"] and not counts["ingested"] + counts["skipped"]:
        raise typer.Exit(1)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C (or SIGTERM) sets ``stop``: the watcher ends after the current file. A second Ctrl-C
    interrupts at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        err_console.print("[yellow]stopping after the current file[/yellow] (Ctrl-C again to stop at once)")

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


_STYLES = {"waiting": "dim", "queued": "cyan", "running": "blue", "ingested": "green", "skipped": "dim",
           "failed": "red", "dropped": "yellow"}


def _print_change(f: WatchedFile, change: Change) -> None:
    """One line per step of a file: seen (waiting), ready (queued), ingesting, and how it ended."""
    detail = {
        "waiting": "seen; waiting until it stops changing",
        "queued": f"ready ({_size(f.size or 0)})",
        "running": "ingesting ...",
        "ingested": f"as {safe(f.video_id)}: {f.frames} frames, {f.tracks} tracks, {f.seconds:.1f} s",
        "skipped": f"already in the store as {safe(f.video_id)}",
        "failed": safe_name(f.error or ""),
        "dropped": "gone before it was ingested",
    }[change]
    style = _STYLES[change]
    console.print(f"{time.strftime('%H:%M:%S')} [{style}]{change:<8}[/{style}] {safe_name(f.name)}  {detail}",
                  soft_wrap=True, highlight=False)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"
