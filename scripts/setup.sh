#!/usr/bin/env bash
# Create or refresh .venv at the repository root: verl 0.9.1, a CPU build of torch, and verl-lambda (editable).
# Idempotent: does nothing when .venv already matches pyproject.toml. Shared by demo_cpu.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}   # torch must be named in the same pip command as verl (see README)
stamp=.venv/.verl-lambda-setup
wanted="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) ${TORCH_SPEC}"

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "[setup] installing ${TORCH_SPEC} + verl[verl-core]==0.9.1 + verl-lambda[test] into .venv (first time: ~2-3 min)"
  start=$(date +%s)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${TORCH_SPEC}" -e ".[test]" \
    2> >(grep -v "^WARNING: Location" >&2)
  echo "$wanted" > "$stamp"
  echo "[setup] done in $(( $(date +%s) - start ))s"
fi
