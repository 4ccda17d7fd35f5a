#!/usr/bin/env bash
# λ-GRPO on Qwen2.5-7B with verl (vLLM rollout, FSDP actor); ALGO=grpo|dapo|grpo_lambda for the other methods.
#   bash scripts/run_qwen7b.sh                    # one node, 8 GPUs (80 GB each)
#   ALGO=grpo bash scripts/run_qwen7b.sh          # the baseline, same data and evaluation
#   DRY_RUN=1 bash scripts/run_qwen7b.sh          # print the validated config, launch nothing
# Every option, and the source of every hyper-parameter: scripts/run_qwen.sh. Only model-size settings live here.
set -euo pipefail
export QWEN_SIZE=7b
export SIZE_MODEL_PATH=Qwen/Qwen2.5-7B          # λ-GRPO paper: Qwen2.5 7B (base or instruct not stated; base here)
export SIZE_GPUS_PER_NODE=8                     # verl recipe's node for a 7B model; README.md ("Reproduce the papers"), memory
export SIZE_ROLLOUT_TP=2                        # vLLM tensor parallel: verl recipe for 7B/8B models
export SIZE_MAX_TOKEN_LEN_PER_GPU=24576         # tokens per micro-batch per GPU: verl recipe (memory only)
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_qwen.sh" "$@"
