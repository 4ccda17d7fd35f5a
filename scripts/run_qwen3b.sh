#!/usr/bin/env bash
# λ-GRPO on Qwen2.5-3B with verl (vLLM rollout, FSDP actor); ALGO=grpo|dapo|grpo_lambda for the other methods.
#   bash scripts/run_qwen3b.sh                    # one node, 8 GPUs (4 are enough: GPUS_PER_NODE=4)
#   ALGO=grpo bash scripts/run_qwen3b.sh          # the baseline, same data and evaluation
#   DRY_RUN=1 bash scripts/run_qwen3b.sh          # print the validated config, launch nothing
# Every option, and the source of every hyper-parameter: scripts/run_qwen.sh. Only model-size settings live here.
set -euo pipefail
export QWEN_SIZE=3b
export SIZE_MODEL_PATH=Qwen/Qwen2.5-3B          # λ-GRPO paper: Qwen2.5 3B (base or instruct not stated; base here)
export SIZE_GPUS_PER_NODE=8                     # same node as the 7B run; README.md ("Reproduce the papers"), memory
export SIZE_ROLLOUT_TP=1                        # a 3B model fits one GPU in vLLM: more replicas, faster rollout
export SIZE_MAX_TOKEN_LEN_PER_GPU=24576         # tokens per micro-batch per GPU: verl recipe (memory only)
exec bash "$(dirname "${BASH_SOURCE[0]}")/run_qwen.sh" "$@"
