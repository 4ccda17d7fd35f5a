"""End to end with verl's own vLLM rollout: ``python -m verl.trainer.main_ppo`` on the cpu platform with
``rollout.name=vllm`` (vLLM's CPU build as a server, the hybrid engine's weight sync every step), asserting on what
verl logged. Every run uses both methods at once (λ-GRPO's aggregation with GRPO-λ's policy loss) and two
mini-batches per step, so GRPO-λ's second mini-batch is off-policy and its trace is non-zero.

That the weights reach vLLM every step is checked against verl's reference model, which holds the initial weights:
``algorithm.use_kl_in_reward`` with coefficient 0 and ``kl_penalty=abs`` logs, without changing any reward, the mean
|log π_actor − log π_initial| of the step's response tokens (``actor/reward_kl_penalty``). From step 2 on it is far
above the tolerance to which vLLM's log-probs of the same tokens agree with the actor's recomputation; so had a sync
been skipped, vLLM would have sampled with older weights and the agreement would fail. (Measured with syncs skipped
after the first: ``training/rollout_probs_diff_max`` 0.036 and 0.046 at steps 2 and 3, against at most 4.5e-8 in
these runs.)
"""

import math

import pytest
import torch
from vllm_support import require_vllm

from verl_lambda import lambda_grpo
from verl_lambda.cpu.launch import run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
PROMPTS, N, MAX_LEN = 4, 4, 32
LAMBDA_LR = 0.05
BOTH_METHODS = (
    # the λ-GRPO preset is the algorithm; GRPO-λ's policy loss is added on top
    "actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
)
DRIFT_FROM_INITIAL_WEIGHTS = (
    "algorithm.use_kl_in_reward=True",
    "algorithm.kl_penalty=abs",
    "algorithm.kl_ctrl.kl_coef=0.0",
    "++actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32",  # the reference computes as the actor
)
# Agreement of vLLM's log-probs with the FSDP actor's recomputation of the same tokens (fp32 both), measured on the
# 2-core machine over 194 steps (both trainers, tiny and small models, three 50-step demos): token probabilities at
# most 7.8e-6 apart (growing from ~3e-8 as the policy sharpens), per-response mean log-probs 1.5e-6, |k3 KL| 8.6e-9.
# The bounds leave a factor of 10-35; with the syncs skipped after the first, steps 2-3 read 0.036-0.046, 0.04-0.42
# and 0.04-0.08.
PROBS_TOL, LOG_PPL_TOL, KL_TOL = 1e-4, 2e-5, 3e-7
# The policy's drift from its initial weights from step 2 on (measured: 0.2-0.5), well above every tolerance.
MIN_DRIFT = 1e-2


def train(out, steps: int, trainer: str, *extra: str, lambda_lr: float = LAMBDA_LR):
    require_vllm()
    return run(
        out,
        steps,
        "lambda_grpo",
        task="classes",
        extra=[
            *BOTH_METHODS,
            *DRIFT_FROM_INITIAL_WEIGHTS,
            f"+actor_rollout_ref.actor.lambda_grpo.lr={lambda_lr}",
            *extra,
        ],
        quiet=True,
        timeout=600,
        stall_timeout=300,
        prompts_per_step=PROMPTS,
        n=N,
        use_v1=trainer == "v1",
        rollout="vllm",
    )


@pytest.fixture(scope="module")
def vllm_v1_run(tmp_path_factory):
    """3 steps on the V1 trainer, with a checkpoint at step 2 (shared by three tests)."""
    out = tmp_path_factory.mktemp("vllm_v1")
    return out, train(out, 3, "v1", "trainer.save_freq=2")


@pytest.fixture(scope="module")
def vllm_v0_run(tmp_path_factory):
    """3 steps on the legacy trainer (``trainer.use_v1=false``)."""
    out = tmp_path_factory.mktemp("vllm_v0")
    return out, train(out, 3, "v0")


def check_vllm_rollout_agrees_with_the_actor(record: dict) -> None:
    step = record["step"]
    assert record["training/rollout_probs_diff_valid"] == 1
    assert record["training/rollout_probs_diff_max"] <= PROBS_TOL, step
    assert abs(record["rollout_corr/log_ppl_diff_max"]) <= LOG_PPL_TOL, step
    assert abs(record["rollout_corr/log_ppl_diff_min"]) <= LOG_PPL_TOL, step
    assert abs(record["rollout_corr/k3_kl"]) <= KL_TOL, step


def check_vllm_run_trains_both_methods(records: list[dict], steps: int) -> None:
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    for r in records:
        assert 0.0 <= r["critic/score/mean"] <= 1.0 and r["critic/score/max"] > 0  # the task's reward
        assert 1 <= r["response_length/mean"] <= MAX_LEN and r["response_length/max"] <= MAX_LEN
        assert math.isfinite(r["actor/pg_loss"]) and r["actor/grad_norm"] > 0
        # λ-GRPO: λ is learned from its own gradient (the task rewards longer responses, so the loss falls as λ
        # rises), and the weights it makes have mean 1 over each step's responses
        assert math.isfinite(r["actor/lambda_grpo/lambda_grad"]) and r["actor/lambda_grpo/lambda_grad"] != 0
        assert r["actor/lambda_grpo/weight_mean"] == pytest.approx(1.0, abs=1e-5)
        # GRPO-λ: the eligibility trace of the off-policy second mini-batch
        assert math.isfinite(r["actor/grpo_lambda/trace_mean"]) and 0.0 < r["actor/grpo_lambda/trace_max"] < 20.0
        assert 0.0 <= r["actor/grpo_lambda/clamped_adv_frac"] <= 1.0
    # two Adam steps of λ per step (one per mini-batch), from 0: a mini-batch of two prompts may push it down, the
    # run as a whole pushes it up
    lambdas = [r["actor/lambda_grpo/lambda"] for r in records]
    assert lambdas[-1] > max(0.0, lambdas[0]) and len(set(lambdas)) == len(lambdas), lambdas
    assert records[-1]["actor/lambda_grpo/weight_max"] > 1.0 > records[-1]["actor/lambda_grpo/weight_min"]


def check_weights_reach_vllm_every_step(records: list[dict]) -> None:
    first, *later = records
    # step 1 samples with the initial weights: the actor is still the reference, bit for bit
    assert first["actor/reward_kl_penalty"] == 0.0
    check_vllm_rollout_agrees_with_the_actor(first)
    for r in later:  # after each update, vLLM agrees with the updated actor, far from the initial weights
        assert r["actor/reward_kl_penalty"] > MIN_DRIFT, r["step"]
        check_vllm_rollout_agrees_with_the_actor(r)


def test_vllm_rollout_trains_both_methods_v1(vllm_v1_run):
    check_vllm_run_trains_both_methods(vllm_v1_run[1], 3)


def test_vllm_rollout_trains_both_methods_v0(vllm_v0_run):
    check_vllm_run_trains_both_methods(vllm_v0_run[1], 3)


@pytest.mark.parametrize("trainer", ["v1", "v0"])
def test_vllm_receives_the_weights_every_step(trainer, request):
    records = request.getfixturevalue(f"vllm_{trainer}_run")[1]
    check_weights_reach_vllm_every_step(records)
    assert records[-1]["timing_s/update_weights"] < 30  # the shared-memory sync itself is quick


def test_vllm_lambda_grpo_checkpoint_and_resume(tmp_path, vllm_v1_run):
    """verl's save/resume with the vLLM rollout: the resumed run starts from the step-2 checkpoint's λ and weights,
    and syncs those weights into its new vLLM server before generating.

    vLLM's sampling is not reproducible across a restart (its random state starts afresh), so the resumed step 3
    samples other responses than the uninterrupted one: λ's learning rate is 0 on resume, so that the λ it logs is
    exactly the checkpoint's.
    """
    out, full = vllm_v1_run
    checkpoint = out / "checkpoints" / "global_step_2" / "actor" / lambda_grpo.CHECKPOINT_FILE
    state = torch.load(checkpoint, weights_only=True)
    assert state["lambda"].item() == pytest.approx(full[1]["actor/lambda_grpo/lambda"], abs=1e-7)
    resumed = train(
        tmp_path,
        3,
        "v1",
        "trainer.resume_mode=resume_path",
        f"trainer.resume_from_path={checkpoint.parent.parent}",
        lambda_lr=0.0,
    )
    assert [r["step"] for r in resumed] == [3]
    step = resumed[0]
    assert step["actor/lambda_grpo/lambda"] == state["lambda"].item() != 0.0
    assert math.isfinite(step["actor/lambda_grpo/lambda_grad"]) and step["actor/lambda_grpo/lambda_grad"] != 0
    # the actor resumed from the checkpoint's weights, not the initial ones (which would read 0.0 here) ...
    assert step["actor/reward_kl_penalty"] > MIN_DRIFT
    # ... and those are the weights the new vLLM server generated with
    check_vllm_rollout_agrees_with_the_actor(step)
