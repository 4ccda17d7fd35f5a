"""λ-GRPO through verl's real loss path (``verl.workers.utils.losses.ppo_loss`` -> policy loss -> ``agg_loss``):
special cases against verl's own modes, the weighted policy term, unweighted entropy/KL, and dλ."""

import pytest
import torch
from length_reference import reference_dweights_dlam, reference_weights
from loss_harness import BS, actor_config, loss_inputs, metric_values, run_loss
from verl.trainer.ppo import core_algos
from verl.utils import tensordict_utils as tu
from verl.workers.utils import losses


@pytest.mark.parametrize(
    ("base", "verl_mode"), [("seq-mean-token-mean", "seq-mean-token-mean"), ("token-mean", "token-mean")]
)
@pytest.mark.parametrize("extras", [{}, {"entropy_coeff": 0.01, "use_kl_loss": True, "kl_loss_coef": 0.1}])
def test_frozen_lambda_zero_is_exactly_verls_mode(base, verl_mode, extras):
    data, log_prob, entropy = loss_inputs()
    frozen = actor_config("lambda_grpo", lambda_grpo={"base": base, "init": 0.0, "learnable": False}, **extras)
    ours, our_metrics, _ = run_loss(frozen, data, log_prob, entropy)
    our_grad = (log_prob.grad.clone(), entropy.grad.clone())
    verls, verl_metrics, _ = run_loss(actor_config(verl_mode, **extras), data, log_prob, entropy)
    assert torch.equal(ours, verls)
    assert torch.equal(our_grad[0], log_prob.grad) and torch.equal(our_grad[1], entropy.grad)
    assert set(our_metrics) == set(verl_metrics)
    for key, metric in verl_metrics.items():
        assert metric_values(our_metrics[key]) == metric_values(metric), key


def test_policy_term_is_weighted_and_entropy_kl_are_not():
    data, log_prob, entropy = loss_inputs(seed=1, on_policy=True)
    extras = {"entropy_coeff": 0.05, "use_kl_loss": True, "kl_loss_coef": 0.2}
    config = actor_config("lambda_grpo", lambda_grpo={"init": 1.5, "learnable": False}, **extras)
    _, ours, _ = run_loss(config, data, log_prob, entropy)
    _, plain, _ = run_loss(actor_config("seq-mean-token-mean", **extras), data, log_prob, entropy)
    assert metric_values(ours["actor/entropy_loss"]) == metric_values(plain["actor/entropy_loss"])
    assert metric_values(ours["kl_loss"]) == metric_values(plain["kl_loss"])
    # On-policy the vanilla per-token loss is -A, so the policy term is -sum_i f_i A_i / N_seq.
    mask = data["response_mask"].bool()
    advantages = data["advantages"][:, 0]
    lengths = mask.sum(-1)
    groups = [int(uid.split("-")[1]) for uid in tu.get(data, "uid")]
    f = torch.tensor(reference_weights(lengths.tolist(), groups, 1.5))
    want = -(f * advantages.double()).sum() / BS
    (pg_loss,) = metric_values(ours["actor/pg_loss"])
    assert pg_loss == pytest.approx(want.item(), rel=1e-5)
    assert pg_loss != pytest.approx(metric_values(plain["actor/pg_loss"])[0], rel=1e-3)


def test_dlambda_through_the_verl_loss_matches_the_analytic_gradient():
    data, log_prob, _ = loss_inputs(seed=2, on_policy=True)
    config = actor_config("lambda_grpo", lambda_grpo={"init": 0.8})
    _, _, state = run_loss(config, data, log_prob, lam=0.8)
    lengths = data["response_mask"].sum(-1).tolist()
    advantages = data["advantages"][:, 0].tolist()
    uids = tu.get(data, "uid")
    want = 0.0
    for gid in sorted(set(uids)):
        idx = [i for i, uid in enumerate(uids) if uid == gid]
        dfs = reference_dweights_dlam([lengths[i] for i in idx], 0.8)
        want += sum(-df * advantages[i] for df, i in zip(dfs, idx, strict=True)) / BS
    assert state.value.grad.item() == pytest.approx(want, rel=1e-4, abs=1e-7)


def test_lambda_direction_on_policy():
    """Advantages sum to zero in a group, so λ moves only with length: up when longer is better, down otherwise."""
    data, log_prob, _ = loss_inputs(seed=3, on_policy=True)
    lengths = data["response_mask"].sum(-1).float()
    uids = tu.get(data, "uid")
    for sign in (1.0, -1.0):
        adv = torch.zeros(BS)
        for gid in set(uids):
            idx = torch.tensor([i for i, uid in enumerate(uids) if uid == gid])
            centred = lengths[idx] - lengths[idx].mean()
            adv[idx] = sign * centred / (centred.abs().max() + 1e-6)
        data["advantages"] = adv[:, None] * data["response_mask"]
        config = actor_config("lambda_grpo", lambda_grpo={"lr": 0.1})
        _, _, state = run_loss(config, data, log_prob)
        state.step(dp_group=None)
        assert (state.value.item() > 0) == (sign > 0), (sign, state.value.item())


def test_modes_we_do_not_own_are_untouched():
    gen = torch.Generator().manual_seed(0)
    loss_mat = torch.randn(5, 7, generator=gen)
    mask = (torch.rand(5, 7, generator=gen) > 0.3).float()
    for mode in ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        assert torch.equal(
            core_algos.agg_loss(loss_mat, mask, mode), core_algos.agg_loss.__wrapped__(loss_mat, mask, mode)
        )
    data, log_prob, _ = loss_inputs(seed=4)
    config = actor_config("token-mean")
    patched, _ = losses.ppo_loss(config, {"log_probs": log_prob}, data)
    original, _ = losses.ppo_loss.__wrapped__(config, {"log_probs": log_prob}, data)
    assert torch.equal(patched, original)
    assert losses.get_policy_loss_fn("vanilla") is core_algos.compute_policy_loss_vanilla


def test_policy_losses_that_ignore_loss_agg_mode_are_refused():
    """At config time, in the driver: sapo and geo_mean always, and gspo in verl 0.9.0 (which fixed its mode)."""
    import verl

    refused = ["sapo", "geo_mean"] + (["gspo"] if verl.__version__ == "0.9.0" else [])
    for loss_mode in refused:
        with pytest.raises(ValueError, match=rf"cannot weight policy_loss\.loss_mode={loss_mode}: in this verl"):
            actor_config("lambda_grpo", policy_loss={"loss_mode": loss_mode})


def test_weights_applied_to_every_policy_loss_that_uses_agg_loss():
    import verl
    from verl.workers.config import PolicyLossConfig

    data, log_prob, _ = loss_inputs(seed=5)
    weighted = ["vanilla", "cispo", "dppo_tv"] + (["gspo"] if verl.__version__ != "0.9.0" else [])
    for loss_mode in weighted:
        frozen = actor_config(
            "lambda_grpo", lambda_grpo={"learnable": False}, policy_loss=PolicyLossConfig(loss_mode=loss_mode)
        )
        plain = actor_config("seq-mean-token-mean", policy_loss=PolicyLossConfig(loss_mode=loss_mode))
        assert torch.equal(run_loss(frozen, data, log_prob)[0], run_loss(plain, data, log_prob)[0]), loss_mode


def test_a_loss_outside_an_update_is_an_error():
    data, log_prob, _ = loss_inputs()
    with pytest.raises(RuntimeError, match="outside an actor update"):
        losses.ppo_loss(actor_config("lambda_grpo"), {"log_probs": log_prob}, data)


def test_outside_the_actor_loss_lambda_grpo_means_its_default_base_unweighted():
    """The trainer's entropy metric and a critic that inherits the actor's mode call agg_loss("lambda_grpo")."""
    gen = torch.Generator().manual_seed(0)
    loss_mat, mask = torch.randn(6, 9, generator=gen), (torch.rand(6, 9, generator=gen) > 0.2).float()
    got = core_algos.agg_loss(loss_mat, mask, "lambda_grpo")
    assert torch.equal(got, core_algos.agg_loss(loss_mat, mask, "seq-mean-token-mean"))


def test_the_weight_length_correlation_metric_is_pearsons():
    import statistics

    from verl_lambda.lambda_grpo import _correlation

    weights, lengths = torch.tensor([0.9, 1.2, 1.0, 0.7, 1.2]), torch.tensor([12.0, 30.0, 18.0, 5.0, 22.0])
    want = statistics.correlation(weights.double().tolist(), lengths.double().tolist())
    assert _correlation(weights, lengths) == pytest.approx(want, rel=1e-12)
    assert _correlation(weights, -3.0 * lengths) == pytest.approx(-want, rel=1e-12)
    assert _correlation(torch.ones(4), torch.tensor([1.0, 2.0, 3.0, 4.0])) == 0.0  # undefined: reported as 0 today
