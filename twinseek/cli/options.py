"""The options and the error handling every command shares: the store and profile options, the settings of a
command (its store checked before anything heavy loads), usage errors (exit 2) and twinseek errors (exit 1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from twinseek.cli.render import err_console, safe
from twinseek.config import Settings, load_settings
from twinseek.errors import ConfigError, StoreError, TwinseekError

if TYPE_CHECKING:
    from twinseek.twins.store import TwinStore

T = TypeVar("T")

StoreOpt = Annotated[Path | None, typer.Option("--store", "-s", help="Store folder [env TWINSEEK_STORE].")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", "-p", help="embedded (default) or paper.")]


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
