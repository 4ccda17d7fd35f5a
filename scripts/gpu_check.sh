#!/usr/bin/env bash
# The prepared GPU check (docs/gpu.md), run from the checkout without installing it:
#   bash scripts/gpu_check.sh [--quick] [--device cuda|cpu] [--out gpu_check.json]
# Python: $PYTHON if set, else the checkout's .venv, else python3. The report is written relative to the cwd.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
    PY="$ROOT/.venv/bin/python"
else
    PY=python3
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" "$ROOT/scripts/gpu_check.py" "$@"
