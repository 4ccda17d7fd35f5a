#!/usr/bin/env bash
# Set up .venv if needed, lint, then run the whole test suite (every test that starts Ray or a subprocess has a
# hard timeout). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"` or `-k lambda`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
