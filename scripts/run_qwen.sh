#!/usr/bin/env bash
# Shared body of scripts/run_qwen1_5b.sh, run_qwen3b.sh and run_qwen7b.sh: one method on Qwen2.5 with verl's hybrid
# engine (vLLM rollout, FSDP actor), trained on a maths set and validated on the papers' benchmarks. The three
# launchers only set the model-size settings (QWEN_SIZE, SIZE_*) and exec this file; run them, not this one.
#
# Environment (all optional):
#   ALGO           lambda_grpo (default) | grpo_lambda | grpo | dapo: the method's overrides come from
#                  verl_lambda/presets.py (`python -m verl_lambda.presets ALGO`), the one definition of each method
#   MODEL_PATH     Hugging Face id or local path (launcher default: Qwen/Qwen2.5-<size>)
#   DATA_DIR       output of examples/prepare_data.py (default ~/data/verl_lambda)
#   TRAIN          training set built there (default math; see `python examples/prepare_data.py --list`)
#   EVAL           benchmarks validated during training, comma-separated (default all: the six of the registry)
#   GPUS_PER_NODE  GPUs per node (launcher default); NNODES: nodes in the Ray cluster (default 1)
#   PROJECT        wandb project (default verl_lambda_reproduce)
#   EXPERIMENT     run name (default qwen2.5-<size>-<ALGO>-<TRAIN>): the row label in the results table
#   OUT_DIR        checkpoints and metrics.jsonl (default outputs/<EXPERIMENT>; use a shared filesystem on clusters)
#   LOGGER         verl trainer.logger (default [console,wandb,file]; the file logger feeds the results table)
#   ROLLOUT_TP     vLLM tensor parallel size; MAX_TOKEN_LEN_PER_GPU: tokens per GPU micro-batch (launcher defaults)
#   VAL_N          samples per validation prompt (default 1, greedy; >1 samples at temperature 1.0: avg@VAL_N)
#   MATH_VERIFY=1  also accept answers Math-Verify finds equal (needs `pip install math-verify`; off by default)
#   PYTHON         interpreter with verl + verl-lambda (default python3; .venv/bin/python when CPU=1 and it exists)
#   DRY_RUN=1      compose and validate the full config exactly as main_ppo would, print it, exit; launches nothing
#   CPU=1          run end to end on CPU for STEPS steps (default 2) with the tiny built-in model and the fixture rows
#                  of tests/fixtures/reproduce: proves the wiring (data, reward routing, validation, logging), not
#                  the science
# Arguments: extra hydra overrides, appended last (they win), e.g. trainer.total_epochs=5 or
#   +actor_rollout_ref.actor.lambda_grpo.lr=0.05 (plugin options: see the README's configuration reference).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${QWEN_SIZE:?run scripts/run_qwen1_5b.sh, run_qwen3b.sh or run_qwen7b.sh, which set the model size}"
CPU=${CPU:-0}
DRY_RUN=${DRY_RUN:-0}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if [ "$CPU" = 1 ] && [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; fi
fi

ALGO=${ALGO:-lambda_grpo}
TRAIN=${TRAIN:-math}
EVAL=${EVAL:-all}
MODEL_PATH=${MODEL_PATH:-$SIZE_MODEL_PATH}
GPUS_PER_NODE=${GPUS_PER_NODE:-$SIZE_GPUS_PER_NODE}
NNODES=${NNODES:-1}
ROLLOUT_TP=${ROLLOUT_TP:-$SIZE_ROLLOUT_TP}
MAX_TOKEN_LEN_PER_GPU=${MAX_TOKEN_LEN_PER_GPU:-$SIZE_MAX_TOKEN_LEN_PER_GPU}
PROJECT=${PROJECT:-verl_lambda_reproduce}
VAL_N=${VAL_N:-1}
STEPS=${STEPS:-2}
if [ "$CPU" = 1 ]; then
  EXPERIMENT=${EXPERIMENT:-cpu-qwen2.5-${QWEN_SIZE}-${ALGO}-${TRAIN}}
else
  EXPERIMENT=${EXPERIMENT:-qwen2.5-${QWEN_SIZE}-${ALGO}-${TRAIN}}
fi
OUT_DIR=${OUT_DIR:-$REPO/outputs/$EXPERIMENT}
case "$OUT_DIR" in /*) ;; *) OUT_DIR="$PWD/$OUT_DIR" ;; esac  # Ray workers do not share our working directory
FIXTURE_DATA=0  # CPU=1 without DATA_DIR: build the data from the fixture rows (never over a given DATA_DIR)
if [ -z "${DATA_DIR:-}" ]; then
  if [ "$CPU" = 1 ]; then DATA_DIR="$OUT_DIR/data" FIXTURE_DATA=1; else DATA_DIR="$HOME/data/verl_lambda"; fi
fi
METRICS="$OUT_DIR/metrics.jsonl"

# Fail early, with the list of valid names, on a wrong ALGO, TRAIN or EVAL.
ALGO_ARGS=$("$PYTHON" -m verl_lambda.presets "$ALGO")
DATA_ARGS=$("$PYTHON" -m verl_lambda.reproduce.datasets "$DATA_DIR" "$TRAIN" "$EVAL")
mapfile -t ALGO_ARGS <<<"$ALGO_ARGS"
mapfile -t DATA_ARGS <<<"$DATA_ARGS"

# Sources: "verl recipe" is verl's standard GRPO maths example, examples/grpo_trainer/run_qwen2-7b_math.sh (verl
# <= 0.5) and its successor run_qwen3_8b_fsdp.sh (verl 0.9), which share every value below unless noted. Neither
# paper's text that we could read states these settings; where it does, the paper is named.
DATA=(
  "${DATA_ARGS[@]}"                            # TRAIN / EVAL sets: README.md ("Reproduce the papers") explains the choice
  data.train_batch_size=1024                   # prompts per step: verl recipe
  data.max_prompt_length=1024                  # verl recipe
  data.max_response_length=2048                # verl recipe (0.9; the <= 0.5 script used 1024)
  data.filter_overlong_prompts=True            # verl recipe
  data.truncation=error                        # verl recipe
)
MODEL=(
  "actor_rollout_ref.model.path=$MODEL_PATH"   # λ-GRPO: Qwen2.5 1.5B/3B/7B (base vs instruct not stated; base here)
  actor_rollout_ref.model.use_remove_padding=True            # verl recipe (speed only)
  actor_rollout_ref.model.enable_gradient_checkpointing=True # verl recipe (memory only)
)
ACTOR=(
  actor_rollout_ref.actor.optim.lr=1e-6                      # verl recipe
  actor_rollout_ref.actor.ppo_mini_batch_size=256            # verl recipe: 4 policy updates per step
  actor_rollout_ref.actor.use_kl_loss=True                   # verl recipe (GRPO's KL term in the loss)
  actor_rollout_ref.actor.kl_loss_coef=0.001                 # verl recipe
  actor_rollout_ref.actor.kl_loss_type=low_var_kl            # verl recipe
  actor_rollout_ref.actor.entropy_coeff=0                    # verl recipe
  actor_rollout_ref.actor.use_dynamic_bsz=True               # verl recipe (packing; the loss is unchanged)
  "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=$MAX_TOKEN_LEN_PER_GPU"  # memory only: launcher
  actor_rollout_ref.actor.fsdp_config.param_offload=False    # verl recipe
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=False  # verl recipe
  # The methods' own settings are the plugin's defaults (README, configuration reference): λ-GRPO r=1/9 (paper),
  # λ learnable from 0 with Adam, lr 0.01 (ours: not published); GRPO-λ λ=0.99, γ=1, negative-advantage clamp
  # -0.1 (paper). Clip ratio 0.2: verl's default, GRPO's (DAPO's 0.2/0.28 comes with ALGO=dapo).
)
ROLLOUT=(
  actor_rollout_ref.rollout.name=vllm                        # verl's hybrid engine: vLLM rollout, FSDP actor
  "actor_rollout_ref.rollout.tensor_model_parallel_size=$ROLLOUT_TP"  # launcher (verl recipe: 2 for 7B)
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6       # verl recipe
  actor_rollout_ref.rollout.n=5                              # group size G: verl recipe
  actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True    # verl recipe
  "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=$MAX_TOKEN_LEN_PER_GPU"  # memory only
  actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True        # verl recipe
  "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=$MAX_TOKEN_LEN_PER_GPU"  # memory only
  actor_rollout_ref.ref.fsdp_config.param_offload=True       # verl recipe
)
if [ "$VAL_N" -gt 1 ]; then
  ROLLOUT+=(
    "actor_rollout_ref.rollout.val_kwargs.n=$VAL_N"          # avg@VAL_N for the small sets (AIME24: 30 problems)
    actor_rollout_ref.rollout.val_kwargs.do_sample=True
    actor_rollout_ref.rollout.val_kwargs.temperature=1.0     # = training sampling (verl's rollout default)
    actor_rollout_ref.rollout.val_kwargs.top_p=1.0           # verl's default
  )
fi                                                           # VAL_N=1: verl's default greedy validation
REWARD=(
  reward.custom_reward_function.path=pkg://verl_lambda.reproduce.reward  # one checker per data_source
  reward.custom_reward_function.name=compute_score
)
if [ "${MATH_VERIFY:-0}" = 1 ]; then REWARD+=(+reward.custom_reward_function.reward_kwargs.math_verify=True); fi
ALGORITHM=(
  "${ALGO_ARGS[@]}"                            # the method: verl_lambda/presets.py
  algorithm.use_kl_in_reward=False             # verl recipe
)
TRAINER=(
  trainer.total_epochs=15                      # verl recipe (MATH train: 7 steps per epoch, 105 steps)
  trainer.test_freq=5                          # verl recipe: validation every 5 steps and at the last step
  trainer.val_before_train=True                # verl default: step 0 = the base model's row of the table
  trainer.save_freq=20                         # verl recipe
  trainer.balance_batch=True                   # verl recipe (speed only)
  "trainer.logger=${LOGGER:-[console,wandb,file]}"
  "trainer.project_name=$PROJECT"
  "trainer.experiment_name=$EXPERIMENT"
  "trainer.n_gpus_per_node=$GPUS_PER_NODE"
  "trainer.nnodes=$NNODES"                     # Ray cluster started beforehand for NNODES > 1: README.md ("Reproduce the papers")
  "trainer.default_local_dir=$OUT_DIR/checkpoints"
  # verl's file logger runs in the Ray task runner, which may live on another node: pass its path explicitly.
  "++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH=$METRICS"
  # hydra's record of each launch (its overrides and config) goes next to the run, not into the working directory.
  "hydra.run.dir=$OUT_DIR/hydra/$(date +%Y%m%d-%H%M%S)"
)
ARGS=("${DATA[@]}" "${MODEL[@]}" "${ACTOR[@]}" "${ROLLOUT[@]}" "${REWARD[@]}" "${ALGORITHM[@]}" "${TRAINER[@]}")

if [ "$CPU" = 1 ]; then
  # The same launch on verl-lambda's CPU backend: the backend's overrides (tiny Qwen2 model, hf rollout, CPU-sized
  # batches) go after the GPU ones (hydra: the last value wins), then the smoke-run settings.
  export VERL_PLATFORM=cpu HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  BACKEND=$("$PYTHON" -m verl_lambda.cpu.launch --out "$OUT_DIR" --print-backend-overrides --prompts 4 --n 4 --size tiny)
  mapfile -t BACKEND <<<"$BACKEND"
  ARGS+=(
    "${BACKEND[@]}"
    data.max_prompt_length=384                 # the tiny model has 512 positions
    data.max_response_length=32
    "trainer.total_training_steps=$STEPS"
    "trainer.test_freq=$STEPS"                 # validate every benchmark once, at the last step
    trainer.val_before_train=False
    trainer.save_freq=-1
    "trainer.logger=${LOGGER:-[console,file]}"
  )
  if [ "$DRY_RUN" != 1 ] && [ "$FIXTURE_DATA" = 1 ]; then
    "$PYTHON" "$REPO/examples/prepare_data.py" --out "$DATA_DIR" --from-jsonl "$REPO/tests/fixtures/reproduce" \
      --train "$TRAIN" --eval "$EVAL" >/dev/null
  fi
fi
ARGS+=("$@")

if [ "$DRY_RUN" = 1 ]; then
  echo "[run_qwen] DRY_RUN: $PYTHON -m verl.trainer.main_ppo ${ARGS[*]}" >&2
  exec "$PYTHON" -m verl_lambda.reproduce.compose "${ARGS[@]}"
fi
if [ -s "$METRICS" ]; then  # verl's file logger truncates its file: keep the previous segment of a resumed run
  mv "$METRICS" "$OUT_DIR/metrics.$(date +%Y%m%d-%H%M%S).jsonl"
fi
mkdir -p "$OUT_DIR"
export VERL_FILE_LOGGER_PATH="$METRICS"
echo "[run_qwen] $EXPERIMENT: metrics in $METRICS, checkpoints in $OUT_DIR/checkpoints" >&2
echo "[run_qwen] $PYTHON -m verl.trainer.main_ppo ${ARGS[*]}" >&2
exec "$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}"
