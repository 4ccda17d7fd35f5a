"""GRPO-λ on verl's real actor worker (FSDP2 engine, cpu platform) in the precisions verl runs: fp32, and bf16 mixed
precision as on a GPU (the forward and the loss inside ``autocast(bf16)``). Inside the engine the loss must be its
float32 value whatever the autocast context: the trace computed in bf16 would be off by about 1e-3 relative."""

import pytest
import torch
from verl.trainer.ppo import core_algos

from verl_lambda.cpu.harness import PRECISIONS, ActorHarness, init_process_group, make_batch, precision_overrides
from verl_lambda.cpu.patches import CHECK_AUTOCAST_ENV
from verl_lambda.grpo_lambda import compute_policy_loss_grpo_lambda

BATCH = {"n_groups": 4, "group_size": 4, "max_response_len": 48}
TRACE = [
    "actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda",
    "actor_rollout_ref.actor.loss_agg_mode=token-mean",
]


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_process_group(0, 1)


@pytest.fixture
def captured_losses(monkeypatch):
    """Every call of the registered grpo_lambda loss: its inputs and the loss it returned."""
    calls = []
    real = core_algos.POLICY_LOSS_REGISTRY["grpo_lambda"]

    def spy(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None, **kwargs):
        loss, metrics = real(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, **kwargs)
        inputs = [t.detach().clone() for t in (old_log_prob, log_prob, advantages, response_mask)]
        calls.append((inputs, loss_agg_mode, config, loss.detach().clone()))
        return loss, metrics

    monkeypatch.setitem(core_algos.POLICY_LOSS_REGISTRY, "grpo_lambda", spy)
    return calls


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("style", ["recent", "both"])
def test_the_loss_inside_the_engine_is_its_float32_value(
    tiny_model_dir, captured_losses, monkeypatch, precision, style
):
    monkeypatch.setenv(CHECK_AUTOCAST_ENV, precision)  # the loss fails if the engine's autocast is not `precision`
    overrides = [
        *TRACE,
        *precision_overrides(precision),
        f"+actor_rollout_ref.actor.policy_loss.grpo_lambda.style={style}",
    ]
    harness = ActorHarness(tiny_model_dir, overrides)
    batch = make_batch(vocab_size=40, seed=11, **BATCH)
    old = harness.compute_log_prob(batch)
    noise = torch.randn(old.shape, generator=torch.Generator().manual_seed(0)) * 0.02
    batch.tensors["old_log_probs"] = (old + noise) * batch.tensors["response_mask"]  # off-policy: the trace matters
    metrics = harness.update(batch, global_batch_size=len(batch))
    assert metrics["actor/cpu/loss_autocast_bits"] == [32.0 if precision == "fp32" else 16.0]
    assert captured_losses
    for (old_lp, log_prob, advantages, mask), agg, config, loss in captured_losses:
        assert loss.dtype == torch.float32
        # the same loss from the same inputs in float64, outside any autocast
        want, _ = compute_policy_loss_grpo_lambda(
            old_lp.double(), log_prob.double(), advantages.double(), mask, agg, config
        )
        assert abs(loss.item() - want.item()) <= 1e-5 * abs(want.item()), (loss.item(), want.item())
    assert max(abs(v) for v in metrics["actor/grpo_lambda/trace_max"]) > 0.05  # the trace was far from 0
