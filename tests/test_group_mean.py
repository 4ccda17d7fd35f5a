"""``loss_agg_mode=group-mean-token-mean``: the group token mean (DAPO's aggregation as its paper writes it).

Against a direct computation (verl's own policy loss with ``token-mean`` on each group alone, then the mean over
groups), against verl's ``token-mean`` where the two agree, and on verl's real actor worker: invariant to micro-batch
size and to the data-parallel degree (real gloo processes)."""

import pytest
import torch
from lambda_runs import launch_ranks, run
from loss_harness import BS, actor_config, loss_inputs, metric_values
from verl.trainer.ppo import core_algos
from verl.utils import tensordict_utils as tu
from verl.workers.utils import losses
from verl.workers.utils.padding import no_padding_2_padding

from verl_lambda import group_mean, hooks
from verl_lambda.cpu.harness import init_process_group, make_batch
from verl_lambda.ops.group_mean import GROUP_MEAN_MODE, group_mean_agg_loss, group_token_counts

MODE = "actor_rollout_ref.actor.loss_agg_mode"
MICRO = "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"


def direct_group_mean(loss_mat, mask, group_ids):
    """(1/N_groups) Σ_g (1/T_g) Σ_{i∈g} Σ_t l_it, group by group in float64; groups without a token do not count."""
    means = []
    for g in sorted(set(group_ids.tolist())):
        if g < 0:
            continue
        rows = group_ids == g
        tokens = mask[rows].double().sum()
        if tokens > 0:
            means.append((loss_mat[rows].double() * mask[rows]).sum() / tokens)
    return torch.stack(means).mean()


# ---------------------------------------------------------------------------------------------------------------
# The math.
# ---------------------------------------------------------------------------------------------------------------


def test_group_token_counts_of_a_small_batch():
    ids = torch.tensor([0, 1, 0, -1, 2, 1, 0])
    tokens = torch.tensor([3, 4, 5, 9, 0, 6, 2])
    group_tokens, share = group_token_counts(ids, tokens)
    assert group_tokens.tolist() == [10.0, 10.0, 10.0, 0.0, 0.0, 10.0, 10.0]  # padding and an empty group: 0
    assert share.tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 3, 0.0, 0.0, 1 / 2, 1 / 3])
    assert float(share.sum()) == pytest.approx(2.0)  # the two groups that hold tokens


@pytest.mark.parametrize("seed", range(5))
def test_equals_the_direct_formula_for_groups_of_different_sizes(seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = [1, 2, 5, 3, 4]
    ids = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)] + [torch.tensor([-1, -1])])
    ids = ids[torch.randperm(len(ids), generator=gen)]
    loss_mat = torch.randn(len(ids), 11, generator=gen)
    mask = (torch.rand(len(ids), 11, generator=gen) > 0.4).float()
    mask[ids == 0] = 0.0  # a group of one whose response has no valid token: not a group
    group_tokens, share = group_token_counts(ids, mask.sum(-1))
    got = group_mean_agg_loss(loss_mat, mask, group_tokens, group_share=share)
    torch.testing.assert_close(got.double(), direct_group_mean(loss_mat, mask, ids), rtol=1e-6, atol=1e-7)
    # split into micro-batches (any rows), each scaled by the mini-batch's group count: the same total
    n_groups = float(share.sum())
    parts = torch.randperm(len(ids), generator=gen).chunk(3)
    total = sum(group_mean_agg_loss(loss_mat[p], mask[p], group_tokens[p], n_groups) for p in parts)
    torch.testing.assert_close(total.double(), direct_group_mean(loss_mat, mask, ids), rtol=1e-6, atol=1e-7)


def test_equals_verls_token_mean_when_every_group_has_the_same_token_count():
    gen = torch.Generator().manual_seed(3)
    lengths = torch.tensor([[2, 9, 4, 5], [5, 5, 5, 5], [1, 1, 8, 10], [7, 3, 6, 4]])  # 20 tokens per group
    mask = (torch.arange(12) < lengths.reshape(-1, 1)).float()
    ids = torch.arange(4).repeat_interleave(4)
    loss_mat = torch.randn(16, 12, generator=gen)
    group_tokens, share = group_token_counts(ids, mask.sum(-1))
    got = group_mean_agg_loss(loss_mat, mask, group_tokens, group_share=share)
    torch.testing.assert_close(got, core_algos.agg_loss(loss_mat, mask, "token-mean"), rtol=1e-6, atol=1e-7)
    # and differs from it when the groups' token counts differ
    mask[1, 3:] = 0.0  # the first group loses 6 of its 20 tokens
    group_tokens, share = group_token_counts(ids, mask.sum(-1))
    got = group_mean_agg_loss(loss_mat, mask, group_tokens, group_share=share)
    assert abs(float(got - core_algos.agg_loss(loss_mat, mask, "token-mean"))) > 1e-3


def test_dp_size_needs_the_global_group_count():
    with pytest.raises(ValueError, match="required when dp_size > 1"):
        group_mean_agg_loss(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2), None, dp_size=2)


# ---------------------------------------------------------------------------------------------------------------
# verl's ppo_loss.
# ---------------------------------------------------------------------------------------------------------------


def run_group_loss(config, data, log_prob, entropy=None):
    output = {"log_probs": log_prob} | ({"entropy": entropy} if entropy is not None else {})
    group_mean.attach_group_tokens(data, dp_group=None)
    with group_mean.active_groups(group_mean.mini_batch_groups(data, dp_group=None)):
        return losses.ppo_loss(config, output, data)


@pytest.mark.parametrize("seed", range(3))
def test_ppo_loss_is_the_mean_over_groups_of_verls_token_mean_of_each_group(seed):
    """Every term: the policy loss (verl's vanilla surrogate with token-mean, computed group by group on the padded
    tensors ppo_loss sees), the entropy and the KL loss."""
    from verl.workers.config import PolicyLossConfig

    data, log_prob, entropy = loss_inputs(seed=seed)
    config = actor_config(GROUP_MEAN_MODE, use_kl_loss=True, kl_loss_coef=0.3, entropy_coeff=0.01)
    loss, metrics = run_group_loss(config, data, log_prob, entropy)

    uids = list(tu.get(data, "uid"))
    ids = torch.tensor([sorted(set(uids)).index(u) for u in uids])
    padded = data.select("response_mask", "old_log_probs", "advantages", "ref_log_prob").to_padded_tensor()
    mask = padded["response_mask"].bool()
    new = no_padding_2_padding(log_prob, data)
    group_pg = []
    for g in ids.unique():
        rows = ids == g
        plain = actor_config("token-mean", policy_loss=PolicyLossConfig(loss_mode="vanilla"))
        pg, _ = core_algos.compute_policy_loss_vanilla(
            padded["old_log_probs"][rows], new[rows], padded["advantages"][rows], mask[rows], "token-mean", plain
        )
        group_pg.append(pg.double())
    want_pg = torch.stack(group_pg).mean().detach()
    token_mean, _ = core_algos.compute_policy_loss_vanilla(
        padded["old_log_probs"], new, padded["advantages"], mask, "token-mean", plain
    )
    assert abs(float(want_pg - token_mean)) > 1e-4  # groups of different token counts: not verl's token-mean
    assert metric_values(metrics["actor/pg_loss"])[0] == pytest.approx(float(want_pg), rel=1e-6, abs=1e-7)
    ent = no_padding_2_padding(entropy, data)
    want_entropy = direct_group_mean(ent, mask.float(), ids)
    assert metric_values(metrics["actor/entropy_loss"])[0] == pytest.approx(float(want_entropy), rel=1e-6)
    kld = core_algos.kl_penalty(new, padded["ref_log_prob"], config.kl_loss_type)
    want_kl = direct_group_mean(kld, mask.float(), ids)
    assert metric_values(metrics["kl_loss"])[0] == pytest.approx(float(want_kl), rel=1e-6)
    want = want_pg - 0.01 * want_entropy + 0.3 * want_kl
    assert float(loss) == pytest.approx(float(want), rel=1e-6)


def test_ppo_loss_with_data_parallel_counts_scales_like_verls_modes():
    """A micro-batch holding half of a two-rank mini-batch: its loss is its share of the global group mean times
    dp_size (verl's FSDP averages gradients over ranks)."""
    data, log_prob, _ = loss_inputs(seed=1, dp_size=2)
    config = actor_config(GROUP_MEAN_MODE)
    group_mean.attach_group_tokens(data, dp_group=None)
    local_groups = group_mean.mini_batch_groups(data, dp_group=None)
    with group_mean.active_groups(2 * local_groups):  # the other rank holds as many groups
        two_ranks, _ = losses.ppo_loss(config, {"log_probs": log_prob}, data)
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=None, global_batch_size=None)
    with group_mean.active_groups(local_groups):
        one_rank, _ = losses.ppo_loss(config, {"log_probs": log_prob}, data)
    torch.testing.assert_close(two_ranks, one_rank)


def test_outside_an_actor_update_the_mode_means_token_mean():
    """The trainer's entropy metric calls agg_loss with the actor's mode over the whole batch, without groups."""
    gen = torch.Generator().manual_seed(0)
    loss_mat, mask = torch.randn(6, 9, generator=gen), (torch.rand(6, 9, generator=gen) > 0.2).float()
    assert torch.equal(
        core_algos.agg_loss(loss_mat, mask, GROUP_MEAN_MODE), core_algos.agg_loss(loss_mat, mask, "token-mean")
    )


def test_a_loss_outside_an_update_is_an_error():
    data, log_prob, _ = loss_inputs()
    with pytest.raises(RuntimeError, match="outside an actor update"):
        losses.ppo_loss(actor_config(GROUP_MEAN_MODE), {"log_probs": log_prob}, data)


def test_padding_rows_form_no_group():
    batch = make_batch(vocab_size=40, n_groups=2, group_size=3, seed=0)
    batch.uids[-2:] = ["pad0123", "pad0123"]  # verl's V1 padding shares one uid
    td = batch.to_tensordict()
    group_mean.attach_group_tokens(td, dp_group=None)
    tokens = td["response_mask"].sum(-1).double()
    assert td[group_mean.GROUP_TOKENS_KEY][-2:].tolist() == [0.0, 0.0]
    assert td[group_mean.GROUP_SHARE_KEY][-2:].tolist() == [0.0, 0.0]
    assert td[group_mean.GROUP_TOKENS_KEY][:3].tolist() == [float(tokens[:3].sum())] * 3
    assert td[group_mean.GROUP_TOKENS_KEY][3] == tokens[3]  # the second group kept one real row
    assert group_mean.mini_batch_groups(td, dp_group=None) == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------------------------
# Config.
# ---------------------------------------------------------------------------------------------------------------


def test_the_mode_is_accepted_and_validated_like_verls_own():
    assert actor_config(GROUP_MEAN_MODE).loss_agg_mode == GROUP_MEAN_MODE
    with pytest.raises(ValueError, match="megatron"):
        from verl.workers.config import McoreActorConfig

        McoreActorConfig(
            strategy="megatron", rollout_n=4, ppo_micro_batch_size_per_gpu=BS, loss_agg_mode=GROUP_MEAN_MODE
        )
    assert hooks.GROUP_MEAN_MODE == GROUP_MEAN_MODE


def test_policy_losses_that_ignore_loss_agg_mode_are_refused():
    import verl

    refused = ["sapo", "geo_mean"] + (["gspo"] if verl.__version__ == "0.9.0" else [])
    for loss_mode in refused:
        with pytest.raises(ValueError, match=rf"cannot aggregate policy_loss\.loss_mode={loss_mode}: in this verl"):
            actor_config(GROUP_MEAN_MODE, policy_loss={"loss_mode": loss_mode})


def test_a_critic_that_inherits_the_mode_is_refused():
    from verl.workers.config import FSDPCriticConfig

    with pytest.raises(ValueError, match=r"critic.loss_agg_mode=group-mean-token-mean: .* set it explicitly"):
        FSDPCriticConfig(strategy="fsdp", rollout_n=4, ppo_micro_batch_size_per_gpu=BS, loss_agg_mode=GROUP_MEAN_MODE)


# ---------------------------------------------------------------------------------------------------------------
# verl's real actor worker (FSDP2 engine on the cpu platform).
# ---------------------------------------------------------------------------------------------------------------

BATCH = {"n_groups": 4, "group_size": 4, "max_response_len": 12}


@pytest.fixture
def process_group():
    init_process_group(0, 1)


def spec(model_dir, overrides, steps=1, **kwargs):
    return {"model_dir": model_dir, "overrides": list(overrides), "batch": BATCH, "steps": steps, **kwargs}


def test_trains_like_token_mean_when_groups_have_equal_token_counts(tiny_model_dir, process_group):
    """Whole groups per mini-batch (two mini-batches of two groups) and 20 tokens in every group."""
    lengths = [2, 9, 4, 5, 5, 5, 5, 5, 1, 1, 8, 10, 7, 3, 6, 4]
    batch = {**BATCH, "response_lengths": lengths}
    ours = run({**spec(tiny_model_dir, [f"{MODE}={GROUP_MEAN_MODE}"], steps=2, mini_batch=8), "batch": batch})
    verls = run({**spec(tiny_model_dir, [f"{MODE}=token-mean"], steps=2, mini_batch=8), "batch": batch})
    for a, b in zip(ours["steps"], verls["steps"], strict=True):
        assert a["pg_loss"] == pytest.approx(b["pg_loss"], rel=1e-5, abs=1e-7)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    assert ours["param_sum"] == pytest.approx(verls["param_sum"], rel=1e-6)
    # unequal token counts: a different update
    other = run(spec(tiny_model_dir, [f"{MODE}={GROUP_MEAN_MODE}"], steps=1, mini_batch=8))
    plain = run(spec(tiny_model_dir, [f"{MODE}=token-mean"], steps=1, mini_batch=8))
    assert other["steps"][0]["grad_norm"] != pytest.approx(plain["steps"][0]["grad_norm"], rel=1e-3)


def same_updates(results, reference):
    for name, steps in results.items():
        for got, want in zip(steps, reference, strict=True):
            assert sum(got["pg_loss"]) == pytest.approx(sum(want["pg_loss"]), rel=1e-5, abs=1e-7), name
            assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-5), name


def test_invariant_to_micro_batch_size(tiny_model_dir, process_group):
    """Groups scattered over micro-batches and two mini-batches per step (a group split between them counts in each
    by its share): the same update."""
    micro_batches = {}
    for micro in (1, 2, 8):
        overrides = [f"{MODE}={GROUP_MEAN_MODE}", f"{MICRO}={micro}"]
        micro_batches[micro] = run(spec(tiny_model_dir, overrides, steps=2, shuffle_seed=1, mini_batch=8))["steps"]
    same_updates(micro_batches, micro_batches[8])


@pytest.mark.e2e  # gloo ranks: processes running verl's actor worker
def test_invariant_to_data_parallel_degree(tiny_model_dir, process_group):
    """Groups scattered over two ranks, one mini-batch per step (verl's dispatch gives each rank a contiguous share,
    so with two mini-batches a mini-batch would hold other rows on two ranks than on one)."""
    one_rank = run(spec(tiny_model_dir, [f"{MODE}={GROUP_MEAN_MODE}", f"{MICRO}=4"], steps=2, shuffle_seed=1))
    two_ranks = [f"{MODE}={GROUP_MEAN_MODE}", f"{MICRO}=2"]
    rank0, rank1 = launch_ranks(spec(tiny_model_dir, two_ranks, steps=2, shuffle_seed=1), 2)
    for a, b in zip(rank0["steps"], rank1["steps"], strict=True):  # verl reduces both metrics over the ranks
        assert (a["pg_loss"], a["grad_norm"]) == (b["pg_loss"], b["grad_norm"])
    same_updates({"2 ranks": rank0["steps"]}, one_rank["steps"])
