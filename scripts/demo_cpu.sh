#!/usr/bin/env bash
# A real verl training run on CPU: python -m verl.trainer.main_ppo with the tiny embedded model and task.
#   STEPS=50 ALGO=lambda_grpo|grpo|dapo|grpo_lambda MODEL_SIZE=tiny|small|base OUT=outputs/... bash scripts/demo_cpu.sh
# Extra arguments are passed to verl as hydra overrides, e.g. +actor_rollout_ref.actor.lambda_grpo.lr=0.05
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
OUT=${OUT:-outputs/demo-${ALGO:-lambda_grpo}-$(date +%Y%m%d-%H%M%S)}
exec .venv/bin/python -m verl_lambda.cpu.launch --out "$OUT" --steps "${STEPS:-50}" --algo "${ALGO:-lambda_grpo}" \
  --size "${MODEL_SIZE:-tiny}" "$@"
