#!/usr/bin/env bash
# Evaluate a trained checkpoint as papers report: merge it to a Hugging Face model with verl's model merger, then
# validate only, avg@k per benchmark, with a longer response limit, into its own folder that the report reads.
#   bash scripts/eval_ckpt.sh outputs/qwen2.5-7b-grpo-math-s1             # its latest checkpoint
#   STEP=60 bash scripts/eval_ckpt.sh outputs/qwen2.5-7b-grpo-math-s1     # another one
#   GREEDY=1 bash scripts/eval_ckpt.sh Qwen/Qwen2.5-7B                    # a Hugging Face model (base-model row)
#   DRY_RUN=1 bash scripts/eval_ckpt.sh RUN_DIR                           # print the merge and the config only
# Settings (N_SMALL=32, N_LARGE=4, TEMPERATURE=1.0, TOP_P=0.95, MAX_RESPONSE_LENGTH=16384, ...) and their sources:
# verl_lambda/reproduce/launch.py (docs/reproduce.md). Extra arguments are hydra overrides.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: bash scripts/eval_ckpt.sh RUN_DIR|CHECKPOINT_DIR|HF_MODEL [hydra overrides ...]" >&2
  exit 2
fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_qwen.sh" eval "$@"
