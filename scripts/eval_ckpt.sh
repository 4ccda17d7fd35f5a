#!/usr/bin/env bash
# Evaluate a trained checkpoint as its paper reports: merge it to a Hugging Face model with verl's model merger, then
# validate only, avg@k per benchmark, with the regime's decoding and response limit, into its own folder that the
# report reads. The regime is the run's (run.json's PAPER); for a Hugging Face model, PAPER (default lambda_grpo):
#   lambda_grpo: temperature 1.0, top-p 0.95, 16384 tokens, 6 benchmarks
#   grpo_lambda: temperature 0.6, top-p 0.95, 3072 tokens, 5 benchmarks (docs/reproduce/settings.md)
#   bash scripts/eval_ckpt.sh outputs/qwen2.5-7b-grpo-math-s1             # its latest checkpoint
#   STEP=60 bash scripts/eval_ckpt.sh outputs/qwen2.5-7b-grpo-math-s1     # another one
#   GREEDY=1 bash scripts/eval_ckpt.sh Qwen/Qwen2.5-7B                    # a Hugging Face model (base-model row)
#   PAPER=grpo_lambda bash scripts/eval_ckpt.sh deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
#   DRY_RUN=1 bash scripts/eval_ckpt.sh RUN_DIR                           # print the merge and the config only
# Settings (N_SMALL=32, N_LARGE=4, TEMPERATURE, TOP_P, MAX_RESPONSE_LENGTH, ...) and their sources:
# verl_lambda/reproduce/launch.py and regimes.py. Extra arguments are hydra overrides.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: bash scripts/eval_ckpt.sh RUN_DIR|CHECKPOINT_DIR|HF_MODEL [hydra overrides ...]" >&2
  exit 2
fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_qwen.sh" eval "$@"
