#!/usr/bin/env bash
# A real verl training run on CPU: python -m verl.trainer.main_ppo with the tiny embedded model and task.
#   STEPS=50 ALGO=lambda_grpo|grpo|dapo|grpo_lambda TASK=chain-long|chain-short|lengths-long|lengths-short|classes \
#     MODEL_SIZE=tiny|small|base \
#     ROLLOUT=vllm|hf OUT=outputs/... bash scripts/demo_cpu.sh
# TASK: chain-long (continue the class's sequence to its end: a per-prompt target of 1-9 tokens; the warm start stops
# early), chain-short (the same task, from a warm start that runs past the end), lengths-long (longer responses, up
# to a per-prompt target, earn more), lengths-short (its mirror:
# λ falls) or classes (the tests' task); see verl_lambda/toy/task.py.
# ROLLOUT: vllm (verl's own vLLM server rollout with vLLM's CPU build; the default where setup.sh installed it) or
# hf (a transformers model: lighter, and the default where vLLM cannot be installed).
# Extra arguments are passed to verl as hydra overrides, e.g. +actor_rollout_ref.actor.lambda_grpo.lr=0.05
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
if [ -z "${ROLLOUT:-}" ]; then
  if why=$(.venv/bin/python -m verl_lambda.cpu.vllm_rollout --check-installed 2>&1); then
    ROLLOUT=vllm
  else
    echo "[demo] ${why}; using the hf rollout"
    ROLLOUT=hf
  fi
fi
OUT=${OUT:-outputs/demo-${ALGO:-lambda_grpo}-${ROLLOUT}-$(date +%Y%m%d-%H%M%S)}
exec .venv/bin/python -m verl_lambda.cpu.launch --out "$OUT" --steps "${STEPS:-50}" --algo "${ALGO:-lambda_grpo}" \
  --task "${TASK:-chain-long}" --size "${MODEL_SIZE:-tiny}" --rollout "$ROLLOUT" "$@"
