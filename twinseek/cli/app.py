"""The ``twinseek`` command line: the typer apps, logging (``--verbose``) and the table of commands at the end
(each command lives in the module of its kind: ingest, store, search, evals, web; the options and error handling
they share are :mod:`twinseek.cli.options`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.logging import RichHandler

from twinseek.cli import evals, ingest, search, store, watch, web
from twinseek.cli.render import CONTROL, err_console
from twinseek.embedders.cli import train_app  # import-light: heavy modules load per command
from twinseek.quiet import quiet_third_party

if TYPE_CHECKING:
    pass

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


# The commands, in the order `twinseek --help` lists them (registered here rather than by decorators in their
# modules, whose import order would decide it).
app.command()(ingest.ingest)
app.command()(watch.watch)
app.command()(search.search)
app.command()(search.ask)
app.command("eval")(evals.eval_)
app.command()(evals.calibrate)
app.command()(evals.build_moment_bench)
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
