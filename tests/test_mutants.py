"""Tests written for mutations the suite once let through (issue 21, ``scripts/check_mutants.py``): the papers'
defaults as numbers, λ's step (clipping, bounds, skipped steps in every precision, the loss scale of the backward
pass), λ moving between the mini-batches of one step, GRPO-λ's ε-weight variant in both styles, its metrics by value
with padding present, and the trainers' wrappers on verl's real classes."""

import contextlib
import math

import pytest
import torch
from trace_reference import dense_traced_log_ratio
from verl.trainer.ppo import core_algos
from verl.workers.config import FSDPActorConfig, PolicyLossConfig

from verl_lambda import hooks, lambda_grpo
from verl_lambda.config import LambdaGRPOConfig
from verl_lambda.cpu.harness import PRECISIONS, ActorHarness, init_process_group, make_batch, precision_overrides
from verl_lambda.ops.eligibility_trace import trace_mass
from verl_lambda.ops.length_weights import weights_and_slope

MODE = "actor_rollout_ref.actor.loss_agg_mode"
LAMBDA = "+actor_rollout_ref.actor.lambda_grpo"
BATCH = {"n_groups": 4, "group_size": 4, "max_response_len": 12}
GRPO_LAMBDA = core_algos.get_policy_loss_fn("grpo_lambda")
VANILLA = core_algos.compute_policy_loss_vanilla


@pytest.fixture(scope="module")
def process_group():
    init_process_group(0, 1)


# ---------------------------------------------------------------------------------------------------------------
# The papers' defaults, written as numbers (not read from the classes), as verl's actor config receives them.
# ---------------------------------------------------------------------------------------------------------------


def test_the_papers_defaults_reach_verls_actor_config():
    actor = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=2,
        ppo_micro_batch_size_per_gpu=2,
        loss_agg_mode="lambda_grpo",
        policy_loss=PolicyLossConfig(loss_mode="grpo_lambda"),
    )
    trace = actor.policy_loss.grpo_lambda
    assert (trace.gamma, trace.lam, trace.style, trace.variant, trace.neg_adv_clamp) == (
        1.0,
        0.99,
        "recent",
        "epsilon-trace",
        -0.1,
    )
    assert trace.decay == 0.99
    weights = actor.lambda_grpo
    assert weights.r == 1 / 9 and weights.init == 0.0 and weights.lr == 0.01 and weights.optimizer == "adam"
    assert weights.base == "seq-mean-token-mean" and weights.validation_share == 0.25 and weights.signal == "train"
    assert weights.learnable is True and (weights.min, weights.max, weights.grad_clip) == (None, None, None)
    state = lambda_grpo.LearnableLambda(weights)
    assert isinstance(state.optimizer, torch.optim.Adam) and state.optimizer.param_groups[0]["lr"] == 0.01
    assert state.value.item() == 0.0


def test_the_default_trace_decay_is_what_the_loss_uses():
    """A response of 40 on-policy tokens: the gradient on token k is -A/T (1 - 0.99**(T-k)) / (1 - 0.99)."""
    length = 40
    log_prob = torch.zeros(1, length, requires_grad=True)
    config = actor_config()  # GRPO-λ with no option: the defaults
    loss, _ = GRPO_LAMBDA(
        log_prob.detach(), log_prob, torch.full((1, length), 0.5), torch.ones(1, length), "token-mean", config
    )
    loss.backward()
    k = torch.arange(length, dtype=torch.float64)
    want = -0.5 / length * (1 - 0.99 ** (length - k)) / (1 - 0.99)
    torch.testing.assert_close(log_prob.grad[0].double(), want, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------------------------------------------------------
# GRPO-λ's loss: the ε-weight variant in both styles, padded positions holding anything, metrics by value.
# ---------------------------------------------------------------------------------------------------------------


def actor_config(agg="token-mean", **options):
    config = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=2,
        ppo_micro_batch_size_per_gpu=2,
        loss_agg_mode=agg,
        clip_ratio_low=0.2,
        clip_ratio_high=0.28,
        policy_loss=PolicyLossConfig(loss_mode="grpo_lambda", grpo_lambda=options),
    )
    config.global_batch_info.update(dp_size=1, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None)
    return config


def padded_inputs(seed=0, bs=6, length=24):
    """Off-policy log-probs with right padding (every row has some), and a masked stretch inside one response."""
    gen = torch.Generator().manual_seed(seed)
    log_prob = (torch.randn(bs, length, generator=gen) * 0.5 - 2).requires_grad_()
    old = log_prob.detach() + torch.randn(bs, length, generator=gen) * 0.3
    advantages = torch.randn(bs, 1, generator=gen).expand(bs, length).clone()
    lengths = torch.randint(4, length - 2, (bs,), generator=gen)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    mask[0, 1:3] = 0
    return old * mask, log_prob, advantages, mask


def loss_grad_metrics(fn, old, log_prob, advantages, mask, agg, config, weights=None):
    log_prob.grad = None
    loss, metrics = fn(old, log_prob, advantages, mask, agg, config, weights)
    loss.backward()
    return loss.detach(), log_prob.grad.clone(), metrics


@pytest.mark.parametrize("style", ["recent", "both"])
def test_epsilon_weight_weights_each_token_by_the_trace_mass_of_its_style(style):
    old, log_prob, advantages, mask = padded_inputs(seed=2)
    config = actor_config("seq-mean-token-mean", lam=0.8, style=style, variant="epsilon-weight", neg_adv_clamp=None)
    ours = loss_grad_metrics(GRPO_LAMBDA, old, log_prob, advantages, mask, "seq-mean-token-mean", config)
    mass = trace_mass(mask, 0.8, style)
    verls = loss_grad_metrics(VANILLA, old, log_prob, advantages, mask, "seq-mean-token-mean", config, mass)
    torch.testing.assert_close(ours[0], verls[0])
    torch.testing.assert_close(ours[1], verls[1])
    other = trace_mass(mask, 0.8, "recent" if style == "both" else "both")
    assert not torch.allclose(mass, other)  # the styles weight differently: the test tells them apart


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
@pytest.mark.parametrize("variant", ["epsilon-trace", "epsilon-weight"])
def test_padded_positions_holding_inf_or_nan_change_nothing(variant, agg):
    """Old log-probs at padded positions may be anything (inf - inf = NaN): loss, gradient and every metric, ppo_kl
    included, are those of the same batch with zeros there. (verl 0.9.1's ``masked_sum`` and token-mean drop NaN
    at masked positions, its seq-mean modes sum ``loss_mat * loss_mask`` and do not: a per-token ratio built from the
    raw log-ratio would make their loss NaN.)"""
    old, log_prob, advantages, mask = padded_inputs(seed=3)
    dirty = old.clone()
    padded = (mask == 0).nonzero()
    for i, (row, col) in enumerate(padded.tolist()):
        dirty[row, col] = (math.nan, math.inf, -math.inf)[i % 3]
    config = actor_config(agg, lam=0.9, variant=variant)
    clean = loss_grad_metrics(GRPO_LAMBDA, old, log_prob, advantages, mask, agg, config)
    got = loss_grad_metrics(GRPO_LAMBDA, dirty, log_prob, advantages, mask, agg, config)
    assert torch.equal(got[0], clean[0]) and torch.equal(got[1], clean[1])
    assert math.isfinite(got[2]["actor/ppo_kl"])
    assert got[2] == clean[2]
    # ppo_kl is the mean of -log_ratio over the valid tokens
    want_kl = ((old - log_prob.detach()) * mask).sum() / mask.sum()
    assert got[2]["actor/ppo_kl"] == pytest.approx(want_kl.item(), rel=1e-5)


@pytest.mark.parametrize("style", ["recent", "both"])
def test_trace_metrics_are_over_the_valid_tokens_only(style):
    old, log_prob, advantages, mask = padded_inputs(seed=4)
    assert (mask == 0).sum() > mask.numel() // 4  # plenty of padding: a mean over all positions would differ
    config = actor_config(lam=0.9, style=style)
    _, _, metrics = loss_grad_metrics(GRPO_LAMBDA, old, log_prob, advantages, mask, "token-mean", config)
    trace = dense_traced_log_ratio(log_prob.detach() - old, mask, 0.9, style)
    assert metrics["actor/grpo_lambda/trace_mean"] == pytest.approx((trace.sum() / mask.sum()).item(), rel=1e-5)
    assert metrics["actor/grpo_lambda/trace_max"] == pytest.approx(trace.abs().max().item(), rel=1e-5)
    clamped = ((advantages < -0.1) & (mask > 0)).sum() / mask.sum()
    assert metrics["actor/grpo_lambda/clamped_adv_frac"] == pytest.approx(clamped.item())


# ---------------------------------------------------------------------------------------------------------------
# λ's step: clipping, bounds, non-finite gradients.
# ---------------------------------------------------------------------------------------------------------------


def stepped(grad, **options):
    """λ after one step of SGD(lr=1) on ``grad`` (no process group: the gradient is this rank's)."""
    state = lambda_grpo.LearnableLambda(LambdaGRPOConfig(optimizer="sgd", lr=1.0, **options))
    state.value.grad = torch.tensor(grad)
    state.step(dp_group=None)
    return state


def test_grad_clip_bounds_lambdas_gradient_before_the_step():
    assert stepped(-5.0).value.item() == 5.0
    clipped = stepped(-5.0, grad_clip=0.5)
    assert clipped.value.item() == 0.5 and clipped.step_grads == [-0.5]
    assert stepped(3.0, grad_clip=0.5).value.item() == -0.5
    assert stepped(0.25, grad_clip=0.5).value.item() == -0.25  # inside the bound: untouched


def test_min_and_max_bound_lambda_after_every_step():
    assert stepped(-5.0, max=2.0).value.item() == 2.0
    assert stepped(5.0, min=-1.5).value.item() == -1.5
    assert stepped(0.5, min=-1.5, max=2.0).value.item() == -0.5


@pytest.mark.parametrize("grad", [math.nan, math.inf])
def test_a_non_finite_lambda_gradient_skips_lambdas_step(grad):
    state = stepped(grad, init=0.25)
    assert state.value.item() == 0.25 and state.skipped_steps == 1 and state.step_grads == []
    state.value.grad = torch.tensor(1.0)
    state.step(dp_group=None, model_stepped=False)  # a step the model skipped: λ skips it too
    assert state.value.item() == 0.25 and state.skipped_steps == 2


# ---------------------------------------------------------------------------------------------------------------
# On verl's real actor worker (FSDP2 engine, cpu platform).
# ---------------------------------------------------------------------------------------------------------------


def test_each_mini_batch_is_weighted_at_lambda_after_the_previous_mini_batchs_step(
    tiny_model_dir, process_group, monkeypatch
):
    """Two mini-batches per step: the loss of the second receives f at the λ its first mini-batch's step produced."""
    seen, after_step = [], []
    real_loss, real_step = lambda_grpo.length_weighted_loss, lambda_grpo.LearnableLambda.step

    @contextlib.contextmanager
    def loss_spy(config, data):
        state = lambda_grpo.stepping_lambda()
        indices = (data[lambda_grpo.GROUP_INDEX_KEY].clone(), data[lambda_grpo.SELF_INDEX_KEY].clone())
        seen.append((len(after_step), state.groups, indices, data[lambda_grpo.WEIGHT_KEY].clone()))
        with real_loss(config, data):
            yield

    def step_spy(self, *args, **kwargs):
        real_step(self, *args, **kwargs)
        after_step.append(self.value.item())

    monkeypatch.setattr(lambda_grpo, "length_weighted_loss", loss_spy)
    monkeypatch.setattr(lambda_grpo.LearnableLambda, "step", step_spy)
    overrides = [f"{MODE}=lambda_grpo", f"{LAMBDA}.init=0.5", f"{LAMBDA}.lr=0.05"]
    harness = ActorHarness(tiny_model_dir, overrides)
    batch = make_batch(vocab_size=40, seed=2, **BATCH)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))  # groups spread over both mini-batches
    harness.update(batch.select(perm), global_batch_size=16, mini_batch_size=8)

    assert len(after_step) == 2 and 0.5 != after_step[0] != after_step[1]  # λ moved after each mini-batch
    lambdas = [0.5, *after_step]
    assert sorted({steps for steps, *_ in seen}) == [0, 1]  # both mini-batches computed a loss
    for steps, groups, (group_index, self_index), weights in seen:
        want, _ = weights_and_slope(*groups, group_index, self_index, lambdas[steps])
        torch.testing.assert_close(weights, want, rtol=0, atol=0)
    second = [weights for steps, *_, weights in seen if steps == 1]
    first_lambda, _ = weights_and_slope(*seen[-1][1], *seen[-1][2], 0.5)
    assert not torch.allclose(second[-1], first_lambda)  # λ's move is visible in the weights


def test_grad_clip_and_bounds_act_on_lambdas_step_in_the_engine(tiny_model_dir, process_group):
    """SGD with lr 1 on a gradient clipped to 1e-3, then clamped into [-5e-4, 5e-4]."""
    overrides = [
        f"{MODE}=lambda_grpo",
        f"{LAMBDA}.optimizer=sgd",
        f"{LAMBDA}.lr=1.0",
        f"{LAMBDA}.grad_clip=0.001",
        f"{LAMBDA}.min=-0.0005",
        f"{LAMBDA}.max=0.0005",
    ]
    harness = ActorHarness(tiny_model_dir, overrides)
    lengths = torch.tensor([2, 5, 8, 11] * 4)
    advantages = torch.tensor([-1.5, -0.5, 0.5, 1.5] * 4)  # longer is better: dL/dλ < 0, λ rises
    batch = make_batch(vocab_size=40, response_lengths=lengths, advantages=advantages, seed=3, **BATCH)
    batch.tensors["old_log_probs"] = harness.compute_log_prob(batch)
    metrics = harness.update(batch, global_batch_size=16)
    (grad,) = metrics["lambda_grpo/lambda_grad"]
    assert grad == pytest.approx(-0.001, rel=1e-6)  # clipped: the raw dλ is far larger
    assert metrics["lambda_grpo/lambda"] == [pytest.approx(0.0005)]  # 0.001 after the step, clamped to max


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_non_finite_grad_norm_skips_lambdas_step_without_a_scaler(tiny_model_dir, process_group, precision):
    """A NaN in the unweighted KL term: the model's gradient is NaN (verl skips its step) while λ's is finite, so
    only the model's skipped step can tell λ to skip."""
    overrides = [
        f"{MODE}=lambda_grpo",
        f"{LAMBDA}.init=0.5",
        "actor_rollout_ref.actor.use_kl_loss=True",
        "actor_rollout_ref.actor.kl_loss_coef=0.1",
        "actor_rollout_ref.actor.kl_loss_type=mse",  # its gradient, log π - ref, carries the NaN (low_var_kl clamps)
        *precision_overrides(precision),
    ]
    harness = ActorHarness(tiny_model_dir, overrides)
    batch = make_batch(vocab_size=40, seed=4, **BATCH)
    batch.tensors["old_log_probs"] = harness.compute_log_prob(batch)
    ref = batch.tensors["old_log_probs"].clone()
    ref[3, 0] = math.nan  # a valid token (every response has at least one)
    batch.tensors["ref_log_prob"] = ref
    before = harness.flat_params()
    metrics = harness.update(batch, global_batch_size=16)
    assert not math.isfinite(metrics["grad_norm"][0])
    assert torch.equal(harness.flat_params(), before)  # verl skipped the model's step
    assert metrics["lambda_grpo/lambda"] == [0.5] and metrics["lambda_grpo/skipped_steps"] == [1.0]


def fp16_update(model_dir, scaler_kwargs):
    """One fp16 update; with a real ``ShardedGradScaler(**scaler_kwargs)`` as verl's engine builds on GPUs (verl's
    own is disabled on a CPU, so it is swapped in), or with none."""
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    overrides = [
        f"{MODE}=lambda_grpo",
        "++actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp16",
        f"{LAMBDA}.init=0.5",
        f"{LAMBDA}.optimizer=sgd",
    ]
    harness = ActorHarness(model_dir, overrides)
    engine = harness.training_worker.engine
    engine.scaler = None if scaler_kwargs is None else ShardedGradScaler(device="cpu", **scaler_kwargs)
    metrics = harness.update(make_batch(vocab_size=40, seed=1, **BATCH), global_batch_size=16)
    return metrics, engine.scaler


def test_lambdas_gradient_is_unscaled_by_the_scale_backward_used_not_the_grown_one(tiny_model_dir, process_group):
    """growth_interval=1: the scaler doubles its scale inside the engine's step; λ's gradient was scaled by the old
    one, read before the step."""
    plain, _ = fp16_update(tiny_model_dir, None)
    scaled, scaler = fp16_update(tiny_model_dir, {"init_scale": 2.0**16, "growth_interval": 1})
    assert scaler.get_scale() == 2.0**17  # it grew during the step
    assert plain["lambda_grpo/lambda_grad"][0] != 0.0
    assert scaled["lambda_grpo/lambda_grad"] == plain["lambda_grpo/lambda_grad"]
    assert scaled["lambda_grpo/lambda"] == plain["lambda_grpo/lambda"] != [0.5]


# ---------------------------------------------------------------------------------------------------------------
# The trainers' wrappers, on verl's real classes.
# ---------------------------------------------------------------------------------------------------------------


def token_mean_outside_the_policy_term() -> bool:
    loss_mat = torch.randn(4, 7, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1.0] * 7, [1.0] * 2 + [0.0] * 5, [1.0] * 5 + [0.0] * 2, [1.0] + [0.0] * 6])
    got = core_algos.agg_loss(loss_mat, mask, "lambda_grpo")
    assert not torch.equal(
        core_algos.agg_loss(loss_mat, mask, "token-mean"), core_algos.agg_loss(loss_mat, mask, "seq-mean-token-mean")
    )
    return torch.equal(got, core_algos.agg_loss(loss_mat, mask, "token-mean"))


def trainer_config(model_dir):
    from verl_lambda.cpu.harness import compose_config

    overrides = [
        f"{MODE}=lambda_grpo",
        f"{LAMBDA}.base=token-mean",
        "data.train_batch_size=2",
        "data.dataloader_num_workers=0",
    ]
    return compose_config(model_dir, overrides)


def test_the_legacy_trainer_learns_the_base_from_its_config(tiny_model_dir):
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.trainer.ppo.utils import Role

    assert not token_mean_outside_the_policy_term()
    RayPPOTrainer(
        trainer_config(tiny_model_dir),
        tokenizer=None,
        role_worker_mapping={Role.ActorRollout: object},
        resource_pool_manager=None,
        train_dataset=[{"prompt": i} for i in range(4)],
        val_dataset=[{"prompt": i} for i in range(2)],
    )
    assert token_mean_outside_the_policy_term()


def test_the_v1_trainer_learns_the_base_and_marks_rows(tiny_model_dir):
    from verl.trainer.ppo.v1 import trainer_base
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    assert not token_mean_outside_the_policy_term()
    trainer = PPOTrainerSync(trainer_config(tiny_model_dir))
    assert token_mean_outside_the_policy_term()
    # the V1 trainer's advantage step (it reads and writes verl's TransferQueue, which needs Ray) is ours around verl's
    assert hooks.wrapped_by(trainer_base.PPOTrainer._compute_advantage) == ("_compute_advantage_marking_rows",)
    assert type(trainer)._compute_advantage is trainer_base.PPOTrainer._compute_advantage
