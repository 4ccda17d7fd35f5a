"""λ learned from held-out groups (``lambda_grpo.signal=validation``): the estimator against verl's own loss, its
direction, that held-out groups leave the policy term, and the same invariances and checkpoint as the train signal."""

import pytest
import torch
from lambda_runs import launch_ranks, run
from loss_harness import BS, actor_config, loss_inputs, metric_values, run_loss
from verl.utils import tensordict_utils as tu
from verl.workers.utils import losses

from verl_lambda import lambda_grpo
from verl_lambda.cpu.harness import ActorHarness, init_process_group, make_batch

MODE = "actor_rollout_ref.actor.loss_agg_mode"
VALIDATION = ["+actor_rollout_ref.actor.lambda_grpo.signal=validation", "+actor_rollout_ref.actor.lambda_grpo.lr=0.05"]
BATCH = {"n_groups": 8, "group_size": 4, "max_response_len": 12}


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_process_group(0, 1)


def test_held_out_groups_are_a_fixed_share_chosen_by_uid():
    uids = [f"prompt-{i}" for i in range(40)]
    held = lambda_grpo.held_out_uids(uids, 0.25)
    assert len(held) == 10 and held == lambda_grpo.held_out_uids(list(reversed(uids)) * 3, 0.25)
    assert lambda_grpo.held_out_uids(["a"], 0.25) == set()  # a single group is trained
    assert len(lambda_grpo.held_out_uids(["a", "b"], 0.9)) == 1  # at least one group stays trained


@pytest.mark.parametrize("base", ["seq-mean-token-mean", "token-mean"])
def test_the_estimator_is_the_gradient_of_verls_loss_on_the_held_out_groups(base):
    """On-policy (ratio 1), dλ of verl's ppo_loss restricted to the held-out groups equals the estimator."""
    config = actor_config("lambda_grpo", lambda_grpo={"base": base, "signal": "validation", "init": 0.7})
    data, log_prob, _ = loss_inputs(seed=3, on_policy=True)
    state = lambda_grpo.LearnableLambda(config.lambda_grpo)
    lambda_grpo.attach_group_lengths(data, state, dp_group=None)
    held = data[lambda_grpo.HELD_OUT_KEY]
    assert 0 < int(held.sum()) < BS
    estimate = state.held_out.gradient(state)

    # the same loss with the train signal on the held-out groups alone: the other groups' advantages are zero
    train = actor_config("lambda_grpo", lambda_grpo={"base": base, "init": 0.7})
    twin = lambda_grpo.LearnableLambda(train.lambda_grpo)
    lambda_grpo.attach_group_lengths(data, twin, dp_group=None)
    only_held = data["advantages"] * held[:, None]
    data["advantages"] = only_held
    lambda_grpo.attach_weights(data, twin)
    count = int(held.sum()) if base == "seq-mean-token-mean" else int(data["response_mask"][held].sum())
    tu.assign_non_tensor(data, global_batch_size=count, batch_num_tokens=count)
    with lambda_grpo.active_lambda(twin):
        loss, _ = losses.ppo_loss(train, {"log_probs": log_prob}, data)
    loss.backward()
    assert estimate == pytest.approx(twin.value.grad.item(), rel=1e-5, abs=1e-9)
    assert estimate != 0.0


def test_direction_follows_the_held_out_length_advantage_relation():
    """Longer held-out responses with higher advantage make λ rise; the reverse makes it fall."""
    lengths = torch.tensor([2, 5, 8, 11] * 8)
    for sign in (1.0, -1.0):
        batch = make_batch(
            vocab_size=40, response_lengths=lengths, advantages=sign * torch.tensor([-1.5, -0.5, 0.5, 1.5] * 8), **BATCH
        )
        data = batch.to_tensordict()
        state = lambda_grpo.LearnableLambda(lambda_grpo.LambdaGRPOConfig(signal="validation", lr=0.05))
        lambda_grpo.attach_group_lengths(data, state, dp_group=None)
        state.step(None)
        assert (state.value.item() > 0) == (sign > 0)
        assert (
            lambda_grpo.step_metrics(state, lambda_grpo.StepReport(torch.ones(1), torch.ones(1), 0))[
                "lambda_grpo/validation_responses"
            ]
            == 8.0
        )  # 2 of the 8 groups


@pytest.mark.parametrize("base", ["seq-mean-token-mean", "token-mean"])
def test_the_policy_term_is_the_base_aggregation_over_the_rows_that_train(base):
    """Held-out rows leave the policy term, and so do they its normaliser: on-policy (ratio 1, no clipping) the
    per-token loss is -A, so the policy term is -(1/N) Σ_{trained} f_i mean_t A_i (seq-mean-token-mean) or
    -(1/N_tok) Σ_{trained} f_i Σ_t A_i (token-mean), with N and N_tok the trained responses and tokens. Entropy keeps
    verl's normaliser over the whole mini-batch."""
    config = actor_config("lambda_grpo", lambda_grpo={"base": base, "signal": "validation"}, entropy_coeff=0.01)
    data, log_prob, entropy = loss_inputs(seed=5, on_policy=True)
    _, metrics, _ = run_loss(config, data, log_prob, entropy=entropy, lam=1.3)
    held = data[lambda_grpo.HELD_OUT_KEY].bool()
    assert 0 < int(held.sum()) < BS
    weights = data[lambda_grpo.WEIGHT_KEY].double()
    tokens = lambda_grpo.valid_tokens(data["response_mask"]).double()
    advantages = lambda_grpo.response_advantages(data)
    trained = ~held
    if base == "token-mean":
        want = -(weights * advantages * tokens)[trained].sum() / tokens[trained].sum()
    else:
        want = -(weights * advantages)[trained].sum() / int(trained.sum())
    pg_loss = sum(metric_values(metrics["actor/pg_loss"]))
    assert pg_loss == pytest.approx(want.item(), rel=1e-6, abs=1e-9)
    assert weights[held].eq(0).all() and not weights[trained].eq(1).all()
    # entropy: verl's base aggregation over every row of the mini-batch, held-out ones included
    from verl.trainer.ppo import core_algos
    from verl.workers.utils.padding import no_padding_2_padding

    mask = data["response_mask"].to_padded_tensor(0).float() if data["response_mask"].is_nested else None
    mask = data["response_mask"].float() if mask is None else mask
    padded = no_padding_2_padding(entropy.detach(), data)
    want_entropy = core_algos.agg_loss(padded, mask, base, 1, int(mask.sum()), BS)
    assert sum(metric_values(metrics["actor/entropy_loss"])) == pytest.approx(want_entropy.item(), rel=1e-6)


def test_held_out_groups_leave_the_policy_term(tiny_model_dir):
    """One update with the validation signal moves the model as the train signal with λ frozen at the same value
    does on the trained rows alone (same weights, same normaliser: the trained responses)."""
    batch = make_batch(vocab_size=40, seed=4, **BATCH)
    uids = lambda_grpo.held_out_uids(batch.uids, 0.25)
    held = torch.tensor([uid in uids for uid in batch.uids])

    validation = ActorHarness(
        tiny_model_dir, [f"{MODE}=lambda_grpo", *VALIDATION, "+actor_rollout_ref.actor.lambda_grpo.init=0.5"]
    )
    batch.tensors["old_log_probs"] = validation.compute_log_prob(batch)
    metrics = validation.update(batch, global_batch_size=len(batch))
    assert metrics["lambda_grpo/lambda"][0] != 0.5 and metrics["lambda_grpo/validation_responses"] == [8.0]

    frozen = ActorHarness(
        tiny_model_dir,
        [
            f"{MODE}=lambda_grpo",
            "+actor_rollout_ref.actor.lambda_grpo.init=0.5",
            "+actor_rollout_ref.actor.lambda_grpo.learnable=false",
        ],
    )
    trained = batch.select(torch.nonzero(~held).view(-1))
    frozen.update(trained, global_batch_size=len(trained))
    before = ActorHarness(tiny_model_dir, [f"{MODE}=lambda_grpo"]).flat_params()
    moved = validation.flat_params() - before
    torch.testing.assert_close(moved, frozen.flat_params() - before, rtol=1e-4, atol=1e-9)
    assert moved.abs().max() > 0


def test_invariant_to_micro_batch_size_and_resumes_exactly(tiny_model_dir, tmp_path):
    results = {}
    for micro in (1, 4, 32):
        overrides = [
            f"{MODE}=lambda_grpo",
            f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
            *VALIDATION,
        ]
        spec = {"model_dir": tiny_model_dir, "overrides": overrides, "batch": BATCH, "steps": 2, "shuffle_seed": 2}
        results[micro] = run(spec)["steps"]
    for micro, steps in results.items():
        assert [s["lambda_repr"] for s in steps] == [s["lambda_repr"] for s in results[32]], micro
        for got, want in zip(steps, results[32], strict=True):  # the policy term's trained-row normaliser too
            assert sum(got["pg_loss"]) == pytest.approx(sum(want["pg_loss"]), rel=1e-5, abs=1e-7), micro
    assert results[32][-1]["lambda"] != 0.0

    overrides = [f"{MODE}=lambda_grpo", *VALIDATION]
    batch = make_batch(vocab_size=40, seed=5, **BATCH)
    first = ActorHarness(tiny_model_dir, overrides)
    first.update(batch, global_batch_size=len(batch))
    first.worker.save_checkpoint(str(tmp_path / "actor"), global_step=1)
    uninterrupted = first.update(batch, global_batch_size=len(batch))["lambda_grpo/lambda"]
    resumed = ActorHarness(tiny_model_dir, overrides)
    resumed.worker.load_checkpoint(str(tmp_path / "actor"))
    assert resumed.update(batch, global_batch_size=len(batch))["lambda_grpo/lambda"] == uninterrupted


@pytest.mark.e2e  # gloo ranks: processes running verl's actor worker
def test_one_and_two_ranks_step_lambda_identically(tiny_model_dir):
    overrides = [f"{MODE}=lambda_grpo", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4", *VALIDATION]
    spec = {"model_dir": tiny_model_dir, "overrides": overrides, "batch": BATCH, "steps": 2, "shuffle_seed": 3}
    single = launch_ranks(spec, 1)[0]
    rank0, rank1 = launch_ranks(spec, 2)
    for a, b, s in zip(rank0["steps"], rank1["steps"], single["steps"], strict=True):
        assert a["lambda_repr"] == b["lambda_repr"]
        assert a["lambda"] == pytest.approx(s["lambda"], rel=1e-9, abs=1e-12)
        assert sum(a["pg_loss"]) == pytest.approx(sum(s["pg_loss"]), rel=1e-5, abs=1e-7)
    assert single["steps"][-1]["lambda"] != 0.0
