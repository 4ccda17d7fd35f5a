#!/usr/bin/env bash
# Set up .venv if needed, lint, then run the whole test suite (every test that starts Ray or a subprocess has a
# hard timeout). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"` or `-k lambda`.
# The tests run in a random order (pytest-randomly, from the test extra): its seed is printed at the top of the log
# ("Using --randomly-seed=N"); `bash scripts/test.sh --randomly-seed=N` replays that order, and
# `-p no:randomly` runs the files' own order.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -p randomly "$@"
