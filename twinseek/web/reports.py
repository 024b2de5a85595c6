"""Eval run folders (written by ``twinseek eval``) for the reports pages: listing, summaries, Markdown."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from twinseek.evals.report import summary_table
from twinseek.evals.results import load_results

logger = logging.getLogger(__name__)

RESULT_FILES = ("results.json", "results.json.gz")
REPORT_FILES = ("report.md", "report.html")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RunInfo(BaseModel):
    """One eval run folder as the reports page lists it."""

    name: str
    modified: str
    files: list[str] = Field(description="Which of results.json(.gz), report.md and report.html it has.")
    bench: str | None = None
    queries: int | None = None
    systems: list[str] = Field(default_factory=list)
    started: str | None = None
    summary: tuple[list[str], list[list[str]]] | None = Field(None, description="(header, rows) of the summary.")
    error: str | None = Field(None, description="Why results.json could not be read.")


def is_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).is_file() for f in (*RESULT_FILES, *REPORT_FILES))


def run_folder(root: Path, name: str) -> Path:
    """The run folder ``name`` directly inside ``root``; ``LookupError`` for anything else."""
    if not RUN_NAME.match(name):
        raise LookupError(name)
    base = root.resolve()
    folder = (base / name).resolve()
    if folder.parent != base or not is_run(folder):
        raise LookupError(name)
    return folder


def list_runs(root: Path) -> list[RunInfo]:
    """The run folders in ``root``, newest first."""
    if not root.is_dir():
        return []
    folders = [f for f in root.iterdir() if RUN_NAME.match(f.name) and is_run(f)]
    folders.sort(key=lambda f: f.stat().st_mtime, reverse=True)
    return [run_info(f) for f in folders]


def run_info(folder: Path) -> RunInfo:
    info = RunInfo(name=folder.name, files=[f for f in (*RESULT_FILES, *REPORT_FILES) if (folder / f).is_file()],
                   modified=datetime.fromtimestamp(folder.stat().st_mtime, timezone.utc).isoformat(timespec="seconds"))
    if not any(f in info.files for f in RESULT_FILES):
        return info
    try:
        result = load_run(folder)
    except Exception as exc:  # an old or damaged results.json still lists, with the reason
        logger.warning("cannot read the results of %s: %s", folder, exc)
        info.error = f"{type(exc).__name__}: {exc}"[:300]
        return info

    c = result.config
    info.bench, info.queries, info.started = Path(c.bench).name, c.queries, c.started
    info.systems = [s.label for s in result.systems.values()]
    info.summary = summary_table(result)
    return info


def load_run(folder: Path) -> Any:

    return load_results(folder)


def render_markdown(text: str) -> str:
    """A report's Markdown as HTML; raw HTML in it is escaped, not passed through."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
