#!/usr/bin/env bash
# The project's checks: lint, types, then the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${TWINSEEK_VENV:-.venv}"
"$VENV/bin/ruff" check twinseek tests benchmarks
"$VENV/bin/mypy" twinseek
"$VENV/bin/python" -m pytest "$@"
