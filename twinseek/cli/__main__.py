"""``python -m twinseek.cli``: the ``twinseek`` command."""

from twinseek.cli import app

app()
