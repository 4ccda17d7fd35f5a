#!/usr/bin/env bash
# λ-GRPO on Qwen2.5-7B (base) with verl (vLLM rollout, FSDP actor); ALGO=grpo|dapo|grpo_lambda for the other methods.
#   SEED=1 bash scripts/run_qwen7b.sh               # one seed of one method; run SEED=1,2,3 for a table row
#   ALGO=grpo SEED=1 bash scripts/run_qwen7b.sh     # the baseline, same data, seed and evaluation
#   DRY_RUN=1 bash scripts/run_qwen7b.sh            # print the validated config, launch nothing
#   CPU=1 bash scripts/run_qwen7b.sh                # 2 steps on CPU with the tiny built-in model: a wiring check
# Every option and the source of every setting: verl_lambda/reproduce/launch.py (docs/reproduce.md).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_qwen.sh" train --size 7b "$@"
