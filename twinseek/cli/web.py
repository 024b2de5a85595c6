"""``twinseek serve``: the web app (the ``web`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from twinseek.cli.options import ProfileOpt, StoreOpt, _errors_exit, _settings, _usage_error
from twinseek.cli.render import console, err_console, safe, safe_name


def serve(
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Bind address; beyond loopback it needs --token or --insecure.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option(envvar="TWINSEEK_WEB_TOKEN", help="Require this bearer token on "
                                              "every page and API route [env TWINSEEK_WEB_TOKEN].")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Serve beyond loopback without a token.")] = False,
    profile: ProfileOpt = None,
    runs: Annotated[Path, typer.Option(help="Folder of `twinseek eval` runs for the reports page.")] = Path("runs"),
    max_upload_mb: Annotated[float, typer.Option(min=1, help="Largest upload request, in MB.")] = 2048,
    ingest_root: Annotated[list[Path] | None, typer.Option(help="A server folder the ingest page may name "
                                                           "(repeatable) [default: the current folder].")] = None,
) -> None:
    """The web app: search with live progress and masks over the videos, the twin inspector, ingest, eval
    reports; the JSON API under /api (OpenAPI at /docs). Needs the web extra."""
    try:
        from twinseek.web import WebSettings  # lazy: fastapi and the agent; the web extra may be missing
        from twinseek.web import serve as run_server
    except ImportError as exc:
        err_console.print(f"[red]error:[/red] the web app needs the web extra: pip install 'twinseek[web]' ({safe(exc)})")
        raise typer.Exit(1) from exc
    settings = _settings(store, profile)
    try:
        web = WebSettings(store=settings.store, host=host, port=port, token=token, insecure=insecure,
                          profile=settings.profile, runs=runs, max_upload_mb=max_upload_mb,
                          ingest_roots=ingest_root or [Path.cwd()])
    except ValidationError as exc:
        first = exc.errors()[0]
        _usage_error(f"--{'-'.join(map(str, first['loc'])).replace('_', '-')}: {first['msg']}")
    with _errors_exit():
        run_server(web, on_ready=lambda url: console.print(
            f"twinseek on {safe(url)} (store {safe_name(web.store)})"
            + ("; it asks for the token: open the address with ?token=TOKEN once" if web.token else "")))
