"""The ``twinseek`` command line: :data:`app`, the typer application (``[project.scripts] twinseek =
"twinseek.cli:app"``; ``python -m twinseek.cli``).

- :mod:`~twinseek.cli.app`: the typer apps, logging and the table of commands;
- :mod:`~twinseek.cli.options`: the options and error handling every command shares;
- :mod:`~twinseek.cli.ingest`: ``ingest``;
- :mod:`~twinseek.cli.store`: ``twins ...`` and ``store ...`` (refinements included);
- :mod:`~twinseek.cli.search`: ``search``, ``ask``, ``chat`` and ``demo``;
- :mod:`~twinseek.cli.evals`: ``eval`` and ``calibrate``;
- :mod:`~twinseek.cli.web`: ``serve``;
- :mod:`~twinseek.cli.render`: the consoles, escaping of untrusted text, and every printer.

``twinseek --help`` and the check of a command's store, which comes first, load no model library (torch,
transformers, langgraph, faiss): each command imports what it needs when it runs.
"""

from __future__ import annotations

from twinseek.cli.app import app

__all__ = ["app"]
