"""The ``twinseek`` command line: the typer apps, logging (``--verbose``), the options and error handling every
command shares, and the table of commands at the end (each command lives in the module of its kind: ingest, store,
search, evals, web)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.logging import RichHandler

from twinseek.cli.render import CONTROL, err_console, safe
from twinseek.config import Settings, load_settings
from twinseek.embedders.cli import train_app  # import-light: heavy modules load per command
from twinseek.errors import ConfigError, StoreError, TwinseekError
from twinseek.quiet import quiet_third_party

if TYPE_CHECKING:
    from twinseek.twins.store import TwinStore

T = TypeVar("T")

# Help texts are plain text (rich_markup_mode=None): their bracketed notes ("[env TWINSEEK_STORE]", "[default:
# ...]") would otherwise be read as rich markup and vanish.
app = typer.Typer(help="Reasoning text-to-video retrieval over digital twins.", no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
twins_app = typer.Typer(help="Inspect digital twins.", no_args_is_help=True, rich_markup_mode=None)
store_app = typer.Typer(help="Manage a twin store.", no_args_is_help=True, rich_markup_mode=None)
refinements_app = typer.Typer(help="What searches learned about the twins (an overlay on the ingest rows).",
                              no_args_is_help=True, rich_markup_mode=None)
app.add_typer(twins_app, name="twins")
app.add_typer(store_app, name="store")
store_app.add_typer(refinements_app, name="refinements")
app.add_typer(train_app, name="train")

StoreOpt = Annotated[Path | None, typer.Option("--store", "-s", help="Store folder [env TWINSEEK_STORE].")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help="embedded (default) or paper.")]


class ControlCharFilter(logging.Filter):
    """Log messages carry file names and LLM text: their control characters become ``?`` on the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = CONTROL.sub("?", message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, and the third-party "
                                                "libraries' own output (TF Lite, mediapipe, progress bars).")] = False
          ) -> None:
    if not verbose:
        quiet_third_party()
    handler = RichHandler(console=err_console, show_path=False)  # markup off: messages are plain text
    handler.addFilter(ControlCharFilter())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler])


def _settings(store: Path | None = None, profile: str | None = None, *, existing: bool = False,
              **sampling: object) -> Settings:
    """The settings of a command, with its store folder (``--store`` or ``TWINSEEK_STORE``) checked before
    anything heavy loads: the one place where the CLI's options are validated. ``existing``: the command reads a
    store, which must be there (otherwise it is created on first write)."""
    sampling = {k: v for k, v in sampling.items() if v is not None}
    try:
        settings = load_settings(store=store, profile=profile, sampling=sampling or None)
    except ConfigError as exc:  # e.g. a misspelt TWINSEEK_* variable
        _fail(exc)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _check_store(settings.store, existing)
    return settings


def _check_store(path: Path, existing: bool) -> None:
    """A store folder that cannot be one (a file, below a file) is a usage error; a missing one is an error
    of commands that read a store."""
    from twinseek.twins.store import DB_NAME  # lazy: the store loads numpy and PIL; this check comes first

    if path.exists() and not path.is_dir():
        _usage_error(f"--store {path} is a file, not a store folder")
    ancestor = next((p for p in (path, *path.parents) if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        _usage_error(f"--store {path} cannot be created: {ancestor} is not a folder")
    if existing and not (path / DB_NAME).is_file():
        _fail(StoreError(f"no twin store at {path} (expected {path / DB_NAME})"))


def _usage_error(message: str) -> NoReturn:
    """A bad option or argument: one line on stderr, exit status 2 (as click's own usage errors)."""
    err_console.print(f"[red]error:[/red] {safe(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _fail(exc: TwinseekError) -> NoReturn:
    err_console.print(f"[red]error:[/red] {safe(exc)}", soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def _errors_exit() -> Iterator[None]:
    """Turn a twinseek error into a red message and exit code 1."""
    try:
        yield
    except TwinseekError as exc:
        _fail(exc)


def _with_store(store: Path | None, action: Callable[[TwinStore], T]) -> T:
    """Run ``action`` on an existing store; a missing store or video exits with a clear message."""
    from twinseek.twins.store import TwinStore  # lazy: numpy and PIL, after the options are checked

    with _errors_exit(), TwinStore(_settings(store, existing=True).store, create=False) as twin_store:
        return action(twin_store)


# The commands, in the order `twinseek --help` lists them. Their modules import the options and helpers above, so
# they are imported here, below them (twinseek/cli/__init__.py imports this module first).
from twinseek.cli import evals, ingest, search, store, web  # noqa: E402

app.command()(ingest.ingest)
app.command()(search.search)
app.command()(search.ask)
app.command("eval")(evals.eval_)
app.command()(evals.calibrate)
app.command()(search.chat)
app.command()(search.demo)
app.command()(web.serve)
twins_app.command("show")(store.twins_show)
twins_app.command("describe")(store.twins_describe)
twins_app.command("list")(store.twins_list)
store_app.command("stats")(store.store_stats)
store_app.command("check")(store.store_check)
store_app.command("delete")(store.store_delete)
store_app.command("diff")(store.store_diff)
refinements_app.command("list")(store.refinements_list)
refinements_app.command("clear")(store.refinements_clear)
