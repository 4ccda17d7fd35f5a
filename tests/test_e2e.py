"""End to end: ``python -m verl.trainer.main_ppo`` on CPU (Ray, verl's V1 trainer, FSDP2 engine workers, the ``hf``
rollout, reward workers), asserting on what verl logged. Each run has a hard timeout. The methods run here in bf16
mixed precision, as verl's FSDP engine runs on a GPU by default (the loss under ``autocast(bf16)``; every actor loss
checks it and logs ``actor/cpu/loss_autocast_bits``). GRPO runs end to end in fp32 in the study's quick mode
(``tests/test_study.py``, which also checks verl's rollout dumps), and the legacy trainer (``trainer.use_v1=false``)
runs both methods with verl's vLLM rollout in ``tests/test_vllm_e2e.py``. ``scripts/test_verl_version.sh`` runs
the combined run below on another verl release."""

import math

import pytest
import torch

from verl_lambda import lambda_grpo
from verl_lambda.cpu.launch import run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
PROMPTS, N, MAX_LEN = 4, 4, 32


def train(out, algo, steps, trainer, *extra, **options):
    return run(
        out,
        steps,
        algo,
        task="classes",  # its reward rises with length, which the λ assertions below rely on
        extra=list(extra),
        quiet=True,
        timeout=600,
        stall_timeout=300,
        prompts_per_step=PROMPTS,
        n=N,
        use_v1=trainer == "v1",
        **options,
    )


LAMBDA_EXTRA = ("+actor_rollout_ref.actor.lambda_grpo.lr=0.05", "trainer.save_freq=2")


@pytest.fixture(scope="module")
def lambda_grpo_v1(tmp_path_factory):
    """λ-GRPO for 3 steps on the V1 trainer, with a checkpoint at step 2 (shared by two tests)."""
    out = tmp_path_factory.mktemp("lambda_grpo_v1")
    return out, train(out, "lambda_grpo", 3, "v1", *LAMBDA_EXTRA, precision="bf16")


def check_lambda_follows_the_task(records):
    """The task rewards longer responses, so λ must rise; the weights must favour long responses."""
    lambdas = [r["actor/lambda_grpo/lambda"] for r in records]
    assert lambdas[0] > 0 and lambdas == sorted(lambdas), lambdas
    assert records[-1]["actor/lambda_grpo/weight_length_corr"] > 0.5
    assert records[-1]["actor/lambda_grpo/weight_max"] > 1.0 > records[-1]["actor/lambda_grpo/weight_min"]
    assert all(r["actor/lambda_grpo/weight_mean"] == pytest.approx(1.0, abs=1e-5) for r in records)


def test_lambda_grpo_trains_v1(lambda_grpo_v1):
    check_lambda_follows_the_task(lambda_grpo_v1[1])
    assert all(r["actor/cpu/loss_autocast_bits"] == 16.0 for r in lambda_grpo_v1[1])  # the loss ran under bf16 autocast


def test_lambda_survives_checkpoint_and_resume(tmp_path, lambda_grpo_v1):
    """verl's own save/resume: a run resumed from step 2 computes exactly the λ of the uninterrupted run's step 3."""
    out, full = lambda_grpo_v1
    checkpoint = out / "checkpoints" / "global_step_2" / "actor" / lambda_grpo.CHECKPOINT_FILE
    state = torch.load(checkpoint, weights_only=True)
    assert state["lambda"].item() == pytest.approx(full[1]["actor/lambda_grpo/lambda"], abs=1e-7)
    resumed = train(
        tmp_path,
        "lambda_grpo",
        3,
        "v1",
        *LAMBDA_EXTRA,
        "trainer.resume_mode=resume_path",
        f"trainer.resume_from_path={checkpoint.parent.parent}",
        precision="bf16",
    )
    assert [r["step"] for r in resumed] == [3]
    assert resumed[0]["actor/lambda_grpo/lambda"] == full[2]["actor/lambda_grpo/lambda"]
    assert resumed[0]["critic/score/mean"] == full[2]["critic/score/mean"]  # same rollouts, not just same λ


def test_both_methods_train_together_with_a_kl_loss_v1(tmp_path):
    """GRPO-λ's trace inside λ-GRPO's aggregation (``lambda_grpo+grpo_lambda``) in bf16, with verl's KL loss (so the
    reference model runs on the cpu platform too) and two mini-batches per step: the second is off-policy, so the
    trace is non-zero."""
    records = train(
        tmp_path,
        "lambda_grpo+grpo_lambda",
        2,
        "v1",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.actor.use_kl_loss=True",
        "actor_rollout_ref.actor.kl_loss_coef=0.01",
        precision="bf16",
    )
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert r["actor/cpu/loss_autocast_bits"] == 16.0  # the trace ran inside bf16 autocast (and computed in float32)
        assert math.isfinite(r["actor/pg_loss"]) and r["actor/grad_norm"] > 0
        assert r["actor/kl_loss"] >= 0
        assert 0.0 <= r["actor/grpo_lambda/clamped_adv_frac"] <= 1.0
        assert math.isfinite(r["actor/grpo_lambda/trace_mean"])
        assert 0.0 < r["actor/grpo_lambda/trace_max"] < 20.0
        # λ-GRPO's weights on the traced loss: one Adam step of λ per mini-batch, weights of mean 1
        assert r["actor/lambda_grpo/lambda"] != 0.0 and math.isfinite(r["actor/lambda_grpo/lambda_grad"])
        assert r["actor/lambda_grpo/weight_mean"] == pytest.approx(1.0, abs=1e-5)


def test_lambda_grpo_uses_true_lengths_under_rollout_rejection_v1(tmp_path):
    """verl's rollout correction rejects every token here (a ratio band the rollout cannot meet), so the response
    masks the actor receives are empty. λ-GRPO's group statistics must still see the generated lengths: through
    the V1 trainer's store, the weights at λ = 1 vary with length as without rejection."""
    records = train(
        tmp_path,
        "lambda_grpo",
        1,
        "v1",
        "algorithm.rollout_correction.rollout_rs=token_k1",
        "algorithm.rollout_correction.rollout_rs_threshold=1.5_2.0",
        "+actor_rollout_ref.actor.lambda_grpo.init=1.0",
    )
    (record,) = records
    assert record["rollout_corr/rollout_rs_masked_fraction"] == 1.0
    assert record["actor/lambda_grpo/weight_max"] > 1.0 > record["actor/lambda_grpo/weight_min"]
    assert record["actor/lambda_grpo/weight_length_corr"] > 0.5
