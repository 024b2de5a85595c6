#!/usr/bin/env bash
# The project's checks: lint, types, the documentation site, then the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${TWINSEEK_VENV:-.venv}"
"$VENV/bin/ruff" check twinseek tests benchmarks
"$VENV/bin/mypy" twinseek
# The documentation site with its API reference: a broken link or anchor fails. Built outside the repository
# (NO_MKDOCS_2_WARNING silences mkdocs-material's end-of-life banner).
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet --site-dir "${TMPDIR:-/tmp}/twinseek-site"
"$VENV/bin/python" -m pytest "$@"
