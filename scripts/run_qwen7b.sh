#!/usr/bin/env bash
# 7B with verl (vLLM rollout, FSDP actor), in one paper's regime (docs/reproduce/settings.md):
#   PAPER=lambda_grpo (default): the λ-GRPO paper's 7B, Qwen2.5-7B (base), zero RL
#     ALGO=lambda_grpo (default) | grpo | dapo_token_mean (the paper's DAPO)
#   PAPER=grpo_lambda: the GRPO-λ paper's 7B, DeepSeek-R1-Distill-Qwen-7B, 768-token responses
#     ALGO=grpo_lambda (default) | grpo_lambda_both | grpo_lambda_eps_weight | grpo_lambda_both_eps_weight
#          | grpo | grpo_clamp | grpo_lambda_noclamp
# Examples:
#   SEED=1 bash scripts/run_qwen7b.sh                    # one seed of the default method (3 seeds for a row)
#   ALGO=grpo SEED=1 bash scripts/run_qwen7b.sh          # the baseline: same data, seed and evaluation
#   PAPER=grpo_lambda ALGO=grpo_lambda_both bash scripts/run_qwen7b.sh
#   LAMBDA_LR=0.05 bash scripts/run_qwen7b.sh            # λ's learning rate (docs/reproduce/choosing-lambda-lr.md)
#   DRY_RUN=1 bash scripts/run_qwen7b.sh                 # print the validated config and every method option
#   CPU=1 bash scripts/run_qwen7b.sh                     # 2 steps on CPU with the tiny built-in model
# Every option and its source: verl_lambda/reproduce/launch.py and regimes.py (docs/reproduce/).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_qwen.sh" train --size 7b "$@"
