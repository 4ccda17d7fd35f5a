"""GRPO-λ's policy loss (spec §4-5) against verl's own ``vanilla`` loss, the spec's on-policy closed form, and in
combination with ``loss_agg_mode=lambda_grpo``, through verl's loss path."""

import math

import pytest
import torch
from loss_harness import loss_inputs, run_loss
from verl.trainer.ppo import core_algos
from verl.workers.config import FSDPActorConfig, PolicyLossConfig

from verl_lambda.ops.eligibility_trace import trace_mass

MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]


def actor(agg="token-mean", dp_size=1, clip=None, **options):
    config = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=2,
        ppo_micro_batch_size_per_gpu=2,
        loss_agg_mode=agg,
        **({"clip_ratio_low": 0.2, "clip_ratio_high": 0.28} | (clip or {})),
        policy_loss=PolicyLossConfig(loss_mode="grpo_lambda", grpo_lambda=options),
    )
    config.global_batch_info.update(
        dp_size=dp_size, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None
    )
    return config


def inputs(seed=0, bs=6, length=24, spread=1.0):
    gen = torch.Generator().manual_seed(seed)
    log_prob = (torch.randn(bs, length, generator=gen) * 0.5 - 2).requires_grad_()
    old = log_prob.detach() + torch.randn(bs, length, generator=gen) * spread  # some ratios far outside the clip
    advantages = torch.randn(bs, 1, generator=gen).expand(bs, length).clone()
    lengths = torch.randint(1, length + 1, (bs,), generator=gen)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    mask[0, 3:6] = 0  # a masked stretch inside a response
    return old, log_prob, advantages, mask


def loss_and_grad(fn, old, log_prob, advantages, mask, agg, config, weights=None):
    log_prob.grad = None
    loss, metrics = fn(old, log_prob, advantages, mask, agg, config, weights)
    loss.backward()
    return loss.detach(), log_prob.grad.clone(), metrics


GRPO_LAMBDA = core_algos.get_policy_loss_fn("grpo_lambda")
VANILLA = core_algos.compute_policy_loss_vanilla


@pytest.mark.parametrize("agg", MODES)
@pytest.mark.parametrize("with_weights", [False, True])
def test_zero_decay_recent_unclamped_is_exactly_vanilla(agg, with_weights):
    old, log_prob, advantages, mask = inputs()
    weights = torch.rand(mask.shape, generator=torch.Generator().manual_seed(1)) + 0.5 if with_weights else None
    config = actor(agg, lam=0.0, neg_adv_clamp=None)
    ours = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, agg, config, weights)
    verls = loss_and_grad(VANILLA, old, log_prob, advantages, mask, agg, config, weights)
    assert torch.equal(ours[0], verls[0]) and torch.equal(ours[1], verls[1])
    for key, value in verls[2].items():
        assert ours[2][key] == value, key
    assert verls[2]["actor/pg_clipfrac"] > 0 and verls[2]["actor/pg_clipfrac_lower"] > 0  # clip paths exercised


def test_the_negative_advantage_clamp():
    old, log_prob, advantages, mask = inputs(seed=1)
    floored = torch.where(advantages < -0.1, -0.1, advantages)
    ours = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", actor(lam=0.0))
    verls = loss_and_grad(VANILLA, old, log_prob, floored, mask, "token-mean", actor())
    assert torch.equal(ours[0], verls[0]) and torch.equal(ours[1], verls[1])
    share = ((advantages < -0.1).float() * mask).sum() / mask.sum()
    assert ours[2]["actor/grpo_lambda/clamped_adv_frac"] == pytest.approx(share.item())
    assert share > 0


def test_epsilon_weight_is_vanilla_weighted_by_trace_mass():
    old, log_prob, advantages, mask = inputs(seed=2)
    config = actor(lam=0.9, variant="epsilon-weight", neg_adv_clamp=None)
    ours = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "seq-mean-token-mean", config)
    mass = trace_mass(mask, 0.9)
    verls = loss_and_grad(VANILLA, old, log_prob, advantages, mask, "seq-mean-token-mean", config, mass)
    torch.testing.assert_close(ours[0], verls[0])
    torch.testing.assert_close(ours[1], verls[1])


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.99, 1.0])
def test_on_policy_gradient_follows_the_closed_form(decay):
    """All d = 0: the gradient on log pi(o_k) is proportional to sum_{t>=k} κ**(t-k) = (1 - κ**(T-k)) / (1 - κ)."""
    length = 40
    log_prob = (torch.randn(1, length, generator=torch.Generator().manual_seed(0)) - 2).requires_grad_()
    old = log_prob.detach().clone()
    advantages = torch.full((1, length), 0.7)
    mask = torch.ones(1, length)
    _, grad, metrics = loss_and_grad(
        GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", actor(gamma=1.0, lam=decay, neg_adv_clamp=None)
    )
    k = torch.arange(length, dtype=torch.float64)
    expected = (length - k) if decay == 1.0 else (1 - decay ** (length - k)) / (1 - decay)
    torch.testing.assert_close(grad[0].double(), -0.7 / length * expected, rtol=1e-5, atol=1e-8)
    assert grad[0, 0] < grad[0, -1] < 0  # early tokens get more credit
    assert metrics["actor/grpo_lambda/trace_max"] == 0.0


def test_both_style_keeps_the_first_token_in_every_trace():
    length = 10
    log_prob = torch.zeros(1, length, requires_grad=True)
    mask = torch.ones(1, length)
    _, grad, _ = loss_and_grad(
        GRPO_LAMBDA,
        log_prob.detach().clone(),
        log_prob,
        torch.ones(1, length),
        mask,
        "token-sum",
        actor(lam=0.0, style="both", neg_adv_clamp=None),
    )
    assert grad[0, 0].item() == pytest.approx(-length)  # token 0 sits in all 10 traces
    torch.testing.assert_close(grad[0, 1:], torch.full((length - 1,), -1.0))


def test_combined_with_lambda_grpo_through_verls_loss_path():
    """lambda_grpo weights the grpo_lambda per-token losses per response; frozen λ = 0 changes nothing."""
    data, log_prob, _ = loss_inputs(seed=7)
    trace = {"loss_mode": "grpo_lambda", "grpo_lambda": {"lam": 0.9}}
    combined = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=4,
        ppo_micro_batch_size_per_gpu=12,
        loss_agg_mode="lambda_grpo",
        lambda_grpo={"learnable": False},
        policy_loss=PolicyLossConfig(**trace),
    )
    alone = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=4,
        ppo_micro_batch_size_per_gpu=12,
        loss_agg_mode="seq-mean-token-mean",
        policy_loss=PolicyLossConfig(**trace),
    )
    loss_combined, metrics, _ = run_loss(combined, data, log_prob)
    grad_combined = log_prob.grad.clone()
    loss_alone, _, _ = run_loss(alone, data, log_prob)
    assert torch.equal(loss_combined, loss_alone) and torch.equal(grad_combined, log_prob.grad)
    assert "actor/grpo_lambda/trace_mean" in metrics
    # with λ = 1 the loss moves, and dλ flows through the traced surrogate
    learnable = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=4,
        ppo_micro_batch_size_per_gpu=12,
        loss_agg_mode="lambda_grpo",
        lambda_grpo={"init": 1.0},
        policy_loss=PolicyLossConfig(**trace),
    )
    loss_weighted, _, state = run_loss(learnable, data, log_prob, lam=1.0)
    assert not torch.equal(loss_weighted, loss_alone) and state.value.grad.abs() > 0


@pytest.mark.parametrize("style", ["recent", "both"])
def test_an_infinite_log_ratio_is_clamped_before_the_trace_like_verls(style):
    """An infinite or huge log-ratio at a valid token (e.g. old_log_prob = rollout_log_probs = -inf in bypass mode)
    trains as verl's vanilla loss trains it: clamped to ±20 first, so its response does not turn into NaN."""
    old, log_prob, advantages, mask = inputs(seed=4, bs=3, length=12, spread=0.1)
    mask[:] = 1
    old[0, 2], old[1, 5], old[2, 7] = -math.inf, math.inf, 1e6  # log-ratios +inf, -inf, -1e6 at valid tokens
    clamped_old = old.clone()
    clamped_old[0, 2], clamped_old[1, 5], clamped_old[2, 7] = (
        log_prob[0, 2].item() - 20.0,
        log_prob[1, 5].item() + 20.0,
        log_prob[2, 7].item() + 20.0,
    )
    config = actor(lam=0.9, style=style, neg_adv_clamp=None)
    loss, grad, metrics = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", config)
    want_loss, want_grad, _ = loss_and_grad(GRPO_LAMBDA, clamped_old, log_prob, advantages, mask, "token-mean", config)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, want_grad, rtol=1e-6, atol=1e-6)
    assert metrics["actor/grpo_lambda/trace_max"] == pytest.approx(20.0, rel=0.2)
    # κ = 0 is still exactly verl's vanilla loss, infinite log-ratios included
    zero = actor(lam=0.0, style="recent", neg_adv_clamp=None)
    ours = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", zero)
    verls = loss_and_grad(VANILLA, old, log_prob, advantages, mask, "token-mean", zero)
    assert torch.equal(ours[0], verls[0]) and torch.equal(ours[1], verls[1])


def test_a_nan_log_ratio_at_a_valid_token_stays_nan_as_in_verl():
    old, log_prob, advantages, mask = inputs(seed=5, bs=3, length=12)
    mask[:] = 1
    old[1, 4] = math.nan
    config = actor(lam=0.9, neg_adv_clamp=None)
    loss, _, _ = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", config)
    verls, _, _ = loss_and_grad(VANILLA, old, log_prob, advantages, mask, "token-mean", config)
    assert torch.isnan(loss) and torch.isnan(verls)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    ("style", "variant"), [("recent", "epsilon-trace"), ("both", "epsilon-trace"), ("both", "epsilon-weight")]
)
def test_the_loss_under_autocast_equals_its_float64_value(dtype, style, variant):
    """Inside verl's engine the loss runs under ``autocast(bf16)``; the whole GRPO-λ loss must still be the float32
    computation: compared with the same loss on float64 inputs, forward and backward."""
    old, log_prob, advantages, mask = inputs(seed=6, bs=6, length=400, spread=0.05)
    config = actor("seq-mean-token-mean", lam=0.99, style=style, variant=variant)
    with torch.autocast("cpu", dtype=dtype):
        loss, grad, _ = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "seq-mean-token-mean", config)
    assert loss.dtype == torch.float32 and grad.dtype == torch.float32
    log_prob64 = log_prob.detach().double().requires_grad_()
    want, want_grad, _ = loss_and_grad(
        GRPO_LAMBDA, old.double(), log_prob64, advantages.double(), mask.double(), "seq-mean-token-mean", config
    )
    assert abs(loss.item() - want.item()) <= 1e-5 * abs(want.item())
    scale = want_grad.abs().amax(-1)
    assert ((grad.double() - want_grad).abs().amax(-1) <= 1e-5 * scale).all()


# ---------------------------------------------------------------------------------------------------------------
# Pinned by mutation testing (docs/mutation): clip settings, metrics at their edges, the clamp's value.
# ---------------------------------------------------------------------------------------------------------------


def test_a_lower_clip_ratio_of_its_own_is_verls():
    """``clip_ratio_low`` differs from ``clip_ratio`` (the fixture's 0.2 equals the default ``clip_ratio``)."""
    old, log_prob, advantages, mask = inputs(seed=3, spread=2.0)
    config = actor(lam=0.0, neg_adv_clamp=None, clip={"clip_ratio_low": 0.05, "clip_ratio_high": 0.3})
    ours = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", config)
    verls = loss_and_grad(VANILLA, old, log_prob, advantages, mask, "token-mean", config)
    assert torch.equal(ours[0], verls[0]) and torch.equal(ours[1], verls[1])
    symmetric = actor(lam=0.0, neg_adv_clamp=None, clip={"clip_ratio_low": 0.2, "clip_ratio_high": 0.3})
    assert not torch.equal(
        loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", symmetric)[0], ours[0]
    )


@pytest.mark.parametrize("bound", [1.0, 1.5])
def test_the_dual_clip_bound_must_exceed_one_as_in_verl(bound):
    old, log_prob, advantages, mask = inputs(seed=4)
    config = actor(lam=0.0, neg_adv_clamp=None, clip={"clip_ratio_c": bound})
    if bound <= 1.0:
        with pytest.raises(ValueError, match="clip_ratio_c"):
            GRPO_LAMBDA(old, log_prob, advantages, mask, "token-mean", config)
        return
    ours = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", config)
    verls = loss_and_grad(VANILLA, old, log_prob, advantages, mask, "token-mean", config)
    assert torch.equal(ours[0], verls[0])


def test_an_infinite_log_ratio_enters_the_trace_as_20():
    """verl's clamp is ±20: the trace of the token holding +inf is exactly 20 (trace_max), not 19 or 21."""
    old, log_prob, advantages, mask = inputs(seed=5, spread=0.01)
    old = old.clone()
    old[1, 0] = -math.inf  # log_prob - old = +inf at a valid token
    _, _, metrics = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", actor(lam=0.0))
    assert metrics["actor/grpo_lambda/trace_max"] == 20.0


def test_trace_max_is_the_largest_magnitude_of_either_sign():
    old, log_prob, advantages, mask = inputs(seed=6, spread=0.0)
    old = log_prob.detach() + 0.5  # every log-ratio is -0.5: the trace is negative everywhere
    _, _, metrics = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", actor(lam=0.9))
    from verl_lambda.ops.eligibility_trace import traced_log_ratio

    trace = traced_log_ratio(log_prob.detach() - old, mask, 0.9 * 1.0, "recent")
    assert trace.max() <= 0
    assert metrics["actor/grpo_lambda/trace_max"] == pytest.approx(float(trace.abs().max()))


@pytest.mark.parametrize("valid", [0, 1])
def test_metrics_of_a_micro_batch_with_one_or_no_valid_token(valid):
    """Shares and means divide by the valid tokens: one token is its own mean, none gives 0 (not NaN)."""
    old, log_prob, advantages, mask = inputs(seed=7)
    mask = torch.zeros_like(mask)
    mask[2, 4] = float(valid)
    advantages = torch.full_like(advantages, -1.0)  # clamped wherever valid
    old = log_prob.detach() - 0.3
    _, _, metrics = loss_and_grad(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", actor(lam=0.0))
    assert metrics["actor/grpo_lambda/clamped_adv_frac"] == float(valid)
    assert metrics["actor/grpo_lambda/trace_mean"] == pytest.approx(0.3 * valid)
