"""The ``twinseek`` command line: :data:`app`, the typer application (``[project.scripts] twinseek =
"twinseek.cli:app"``).

- :mod:`~twinseek.cli.app`: the typer apps, logging, the options and error handling every command shares;
- :mod:`~twinseek.cli.render`: the consoles, escaping of untrusted text, and every printer.
"""

from __future__ import annotations

from twinseek.cli.app import app

__all__ = ["app"]
