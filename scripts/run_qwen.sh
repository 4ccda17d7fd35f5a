#!/usr/bin/env bash
# Shared body of scripts/run_qwen1_5b.sh, run_qwen3b.sh, run_qwen7b.sh and eval_ckpt.sh: picks the interpreter and
# hands over to verl_lambda/reproduce/launch.py, which holds every setting with its source (per paper: regimes.py).
#   bash scripts/run_qwen.sh train --size 7b [hydra overrides ...]     (what run_qwen7b.sh runs)
#   bash scripts/run_qwen.sh eval RUN_DIR|CHECKPOINT|MODEL [overrides]  (what eval_ckpt.sh runs)
# Interpreter: $PYTHON if set, else this checkout's .venv (scripts/setup.sh) when it exists, else python3.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; fi
fi
export PYTHON
export OUT_ROOT=${OUT_ROOT:-$REPO/outputs}
exec "$PYTHON" -m verl_lambda.reproduce.launch "$@"
