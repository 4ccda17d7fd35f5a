"""λ-GRPO's weights and weighted aggregation (spec §1-3), against the spec's fixture, an independent reference
and verl's own aggregation."""

import pytest
import torch
from length_reference import (
    precise_softmax_slopes,
    precise_weights_and_slopes,
    reference_dweights_dlam,
    reference_weights,
)
from verl.trainer.ppo import core_algos

import verl_lambda
from verl_lambda.ops.length_weights import (
    DIRECT_LOG,
    H_FLOOR,
    group_table,
    length_preference,
    softmax_inputs,
    weighted_agg_loss,
    weights_and_slope,
)

FIXTURE = torch.tensor([300, 420, 500, 560, 610, 700, 820, 1100])


def test_public_name_is_the_library_function():
    from verl_lambda.ops.length_weights import length_weights

    assert verl_lambda.length_weights is length_weights


def test_spec_fixture():
    ids = torch.zeros(8, dtype=torch.long)
    assert torch.equal(verl_lambda.length_weights(FIXTURE, ids, 0.0), torch.ones(8))
    up = verl_lambda.length_weights(FIXTURE, ids, 1.0)
    down = verl_lambda.length_weights(FIXTURE, ids, -1.0)
    assert up[0] == pytest.approx(0.85, abs=0.01) and up[-1] == pytest.approx(1.25, abs=0.01)
    assert down[0] == pytest.approx(1.18, abs=0.01) and down[-1] == pytest.approx(0.82, abs=0.01)
    assert torch.all(up.diff() > 0) and torch.all(down.diff() < 0)
    assert up.sum().item() == pytest.approx(8.0, abs=1e-5)


def test_groups_of_one_and_equal_lengths_get_one():
    lengths = torch.tensor([5, 17, 9, 9, 9, 3])
    ids = torch.tensor([0, 1, 2, 2, 2, 3])
    for lam in (-3.0, 0.7, 5.0):
        assert torch.equal(verl_lambda.length_weights(lengths, ids, lam), torch.ones(6))


@pytest.mark.parametrize("seed", range(5))
def test_matches_independent_reference_on_scattered_groups(seed):
    gen = torch.Generator().manual_seed(seed)
    n_groups, size = 7, int(torch.randint(2, 17, (1,), generator=gen))
    ids = torch.arange(n_groups).repeat_interleave(size)
    lengths = torch.randint(1, 2000, (len(ids),), generator=gen)
    perm = torch.randperm(len(ids), generator=gen)  # members scattered through the batch
    ids, lengths = ids[perm] * 13 + 5, lengths[perm]  # ids need not be contiguous
    lam = float(torch.empty(1).uniform_(-4, 4, generator=gen))
    got = verl_lambda.length_weights(lengths, ids, lam)
    want = torch.tensor(reference_weights(lengths.tolist(), ids.tolist(), lam))
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-6)
    for gid in ids.unique():
        assert got[ids == gid].sum().item() == pytest.approx(float((ids == gid).sum()), rel=1e-5)


def test_order_of_the_batch_does_not_matter():
    gen = torch.Generator().manual_seed(3)
    ids = torch.arange(5).repeat_interleave(6)
    lengths = torch.randint(1, 500, (30,), generator=gen)
    base = verl_lambda.length_weights(lengths, ids, 1.5)
    perm = torch.randperm(30, generator=gen)
    torch.testing.assert_close(verl_lambda.length_weights(lengths[perm], ids[perm], 1.5), base[perm])


def test_large_groups_floor_h_and_never_nan():
    # G = 200 > 81 at the default r: one very short response has z = -sqrt(199), so 1 + z/9 < 0 without the floor.
    lengths = torch.tensor([1000] * 199 + [10])
    h, floored = length_preference(lengths[None], torch.ones(1, 200, dtype=torch.bool))
    assert floored.sum() == 1 and floored[0, -1] and h[0, -1] == H_FLOOR
    # A bimodal group at r = 1: half the responses sit at z = -1, i.e. h = 0.
    bimodal = torch.tensor([10] * 100 + [1000] * 100)
    _, floored = length_preference(bimodal[None], torch.ones(1, 200, dtype=torch.bool), r=1.0)
    assert floored.sum() == 100
    ids = torch.zeros(200, dtype=torch.long)
    for lam in (-50.0, -5.0, 0.0, 5.0, 50.0):
        f = verl_lambda.length_weights(lengths, ids, lam)
        assert torch.isfinite(f).all() and f.sum().item() == pytest.approx(200.0, rel=1e-4)
    want = torch.tensor(reference_weights(lengths.tolist(), ids.tolist(), -3.0))
    torch.testing.assert_close(verl_lambda.length_weights(lengths, ids, -3.0), want.float())


@pytest.mark.parametrize("lam", [-2.0, -0.3, 0.0, 0.5, 2.0])
def test_autograd_dlambda_matches_the_analytic_gradient(lam):
    lam_t = torch.tensor(lam, requires_grad=True)
    f = verl_lambda.length_weights(FIXTURE, torch.zeros(8, dtype=torch.long), lam_t)
    grads = [torch.autograd.grad(f[i], lam_t, retain_graph=True)[0].item() for i in range(8)]
    want = reference_dweights_dlam(FIXTURE.tolist(), lam)
    assert grads == pytest.approx(want, rel=1e-4, abs=1e-6)


def _loss_inputs(seed=0, bs=12, t=20):
    gen = torch.Generator().manual_seed(seed)
    loss_mat = torch.randn(bs, t, generator=gen)
    lengths = torch.randint(0, t + 1, (bs,), generator=gen)
    lengths[0] = 0  # a fully masked response
    mask = (torch.arange(t)[None] < lengths[:, None]).float()
    return loss_mat, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("base", ["seq-mean-token-mean", "token-mean"])
def test_unit_weights_are_exactly_verls_aggregation(base, dtype):
    loss_mat, mask = _loss_inputs()
    loss_mat = loss_mat.to(dtype)
    ours = weighted_agg_loss(
        loss_mat, mask, torch.ones(len(mask)), base, dp_size=2, batch_num_tokens=97, global_batch_size=30
    )
    verls = core_algos.agg_loss.__wrapped__(loss_mat, mask, base, dp_size=2, batch_num_tokens=97, global_batch_size=30)
    assert torch.equal(ours, verls)
    local = weighted_agg_loss(loss_mat, mask, torch.ones(len(mask)), base)
    assert torch.equal(local, core_algos.agg_loss.__wrapped__(loss_mat, mask, base))


def test_weighted_aggregation_formulas():
    loss_mat, mask = _loss_inputs(1)
    f = torch.rand(len(mask), generator=torch.Generator().manual_seed(1)) + 0.5
    n_seq, n_tok = 40, 333
    # the formulas in float64; the float32 result may differ by float32 rounding of the sum of the magnitudes
    loss64, mask64, f64 = loss_mat.double(), mask.double(), f.double()
    rows = [i for i in range(len(mask)) if mask[i].sum() > 0]

    def seq_mean(values):
        return (sum(f64[i] * (values[i] * mask64[i]).sum() / mask64[i].sum() for i in rows) / n_seq * 3).item()

    def tok_mean(values):
        return (sum(f64[i] * (values[i] * mask64[i]).sum() for i in range(len(mask))) / n_tok * 3).item()

    got = weighted_agg_loss(loss_mat, mask, f, "seq-mean-token-mean", dp_size=3, global_batch_size=n_seq)
    assert got.item() == pytest.approx(seq_mean(loss64), rel=0, abs=1e-6 * seq_mean(loss64.abs()))
    got = weighted_agg_loss(loss_mat, mask, f, "token-mean", dp_size=3, batch_num_tokens=n_tok)
    assert got.item() == pytest.approx(tok_mean(loss64), rel=0, abs=1e-6 * tok_mean(loss64.abs()))
    with pytest.raises(ValueError, match="base must be one of"):
        weighted_agg_loss(loss_mat, mask, f, "token-sum")
    with pytest.raises(ValueError, match="global_batch_size is required"):
        weighted_agg_loss(loss_mat, mask, f, "seq-mean-token-mean", dp_size=2)


def test_microbatch_split_sums_to_the_whole():
    """Each micro-batch normalises by the global counts, so micro-batch losses add up to the full-batch loss."""
    loss_mat, mask = _loss_inputs(2, bs=16)
    f = torch.rand(16, generator=torch.Generator().manual_seed(2)) + 0.5
    for base, kw in (
        ("seq-mean-token-mean", {"global_batch_size": 16}),
        ("token-mean", {"batch_num_tokens": mask.sum()}),
    ):
        whole = weighted_agg_loss(loss_mat, mask, f, base, **kw)
        parts = sum(
            weighted_agg_loss(loss_mat[i : i + 4], mask[i : i + 4], f[i : i + 4], base, **kw) for i in range(0, 16, 4)
        )
        # float32 sums in another order: equal up to rounding of the sum of magnitudes, not of the (possibly
        # cancelling) total; over 1000 seeds of f the gap stayed below 5e-8 of that scale
        scale = weighted_agg_loss(loss_mat.abs(), mask, f, base, **kw)
        assert parts.item() == pytest.approx(whole.item(), rel=0, abs=1e-6 * scale.item())


EXTREME_LAMBDAS = [-1e300, -1e6, -1e3, -200.0, -50.0, -1.0, 0.0, 1e-300, 1.0, 37.0, 200.0, 1e3, 1e6, 1e300]


@pytest.mark.parametrize("r", [1.0 / 9.0, 1.0, 100.0, 1e10, 1e300])
def test_finite_and_summing_to_g_for_every_finite_lambda_and_r(r):
    """Spec §6: finite weights summing to G and a finite slope, whatever λ and r (h floored, ties at the maximum)."""
    groups = [FIXTURE, torch.tensor([1000] * 199 + [10]), torch.tensor([5, 5, 9, 9, 1, 1]), torch.tensor([7])]
    lengths = torch.cat(groups)
    ids = torch.cat([torch.full((len(g),), i) for i, g in enumerate(groups)])
    for lam in EXTREME_LAMBDAS:
        lam_t = torch.tensor(lam, dtype=torch.float64, requires_grad=True)
        f = verl_lambda.length_weights(lengths, ids, lam_t)
        assert torch.isfinite(f).all(), (lam, r)
        for i, group in enumerate(groups):
            assert f[ids == i].sum().item() == pytest.approx(len(group), rel=1e-5), (lam, r, i)
        slopes = [torch.autograd.grad(f[i], lam_t, retain_graph=True)[0] for i in (0, 7, 8, len(lengths) - 1)]
        assert all(torch.isfinite(g) for g in slopes), (lam, r)


@pytest.mark.parametrize("lam", [-300.0, -40.0, -5.0, -0.25, 0.7, 6.0, 30.0, 90.0])
def test_saturating_softmax_matches_high_precision_arithmetic(lam):
    """Near and in saturation (h ** λ up to e**300) the weights and the slope still match a 400-digit reference."""
    lengths = torch.tensor([300, 420, 500, 500, 560, 610, 700, 820, 1100, 4000])
    for r in (1.0 / 9.0, 1.0):
        want_f, want_slope = precise_weights_and_slopes(lengths.tolist(), lam, r)
        lam_t = torch.tensor(lam, dtype=torch.float64, requires_grad=True)
        f = verl_lambda.length_weights(lengths, torch.zeros(len(lengths), dtype=torch.long), lam_t, r=r)
        torch.testing.assert_close(f.double(), torch.tensor(want_f, dtype=torch.float64), rtol=1e-5, atol=1e-6)
        got_slope = [torch.autograd.grad(f[i], lam_t, retain_graph=True)[0].item() for i in range(len(lengths))]
        assert got_slope == pytest.approx(want_slope, rel=1e-3, abs=1e-5), (lam, r)


@pytest.mark.parametrize("lam", [-2.0, 0.6, 3.0])
def test_groups_of_different_sizes_in_one_batch(lam):
    """The group table pads every group to the largest size: padding must not enter any group's mean or spread."""
    gen = torch.Generator().manual_seed(11)
    sizes = [2, 5, 3, 8, 4]
    ids = torch.cat([torch.full((size,), gid) for gid, size in enumerate(sizes)])
    lengths = torch.randint(1, 400, (len(ids),), generator=gen)
    perm = torch.randperm(len(ids), generator=gen)
    ids, lengths = ids[perm], lengths[perm]
    got = verl_lambda.length_weights(lengths, ids, lam)
    want = torch.tensor(reference_weights(lengths.tolist(), ids.tolist(), lam))
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, torch.ones_like(got))


def test_h_is_one_plus_z_over_nine_by_default_whatever_the_spread():
    """Spec §1: h = 1 + r z with r = 1/9 by default, z the length's z-score in its group (population std), also for
    a spread below one token; a group of equal lengths has z = 0, so h = 1 exactly, at any r."""
    mask = torch.ones(1, 2, dtype=torch.bool)
    h, floored = length_preference(torch.tensor([[10, 11]]), mask)  # mean 10.5, std 0.5: z = -1, +1
    assert h.tolist() == [[1.0 - 1.0 / 9.0, 1.0 + 1.0 / 9.0]] and not floored.any()
    h, floored = length_preference(torch.tensor([[9, 9, 9]]), torch.ones(1, 3, dtype=torch.bool), r=1.0)
    assert h.tolist() == [[1.0, 1.0, 1.0]] and not floored.any()


def test_saturated_near_ties_get_the_slope_of_high_precision_arithmetic():
    """Beyond ``DIRECT_LOG`` (h ** λ ~ e**25 here) members whose h ** λ differ by O(1) still share the weight, and
    their slope is the 400-digit reference's; two groups in one table, so no sum runs across groups."""
    near = [[25.0, 25.0 - 1e-11, 25.0 - 3e-11, 24.0], [22.0, 22.0 - 3e-10, 22.0 - 1e-9]]
    for lam in (1.0, 4.0, -0.5):  # powers of two: λ ln h is exact, as it must be where e**25 amplifies its rounding
        logs = [[x / lam for x in group] for group in near]  # λ ln h = the values above
        width = max(len(group) for group in logs)
        mask = torch.tensor([[i < len(group) for i in range(width)] for group in logs])
        table = torch.tensor([group + [1.0] * (width - len(group)) for group in logs], dtype=torch.float64)
        log_h, bias, size = softmax_inputs(table.exp(), mask)
        log_h = torch.where(mask, table, 0.0)  # the exact ln h, not exp then log
        assert float((log_h * lam).max()) > DIRECT_LOG
        group_index = torch.tensor([g for g, group in enumerate(logs) for _ in group])
        self_index = torch.tensor([i for group in logs for i in range(len(group))])
        f, slope = weights_and_slope(log_h, bias, size, group_index, self_index, lam)
        want_f, want_slope = precise_softmax_slopes(logs, lam)
        assert sorted(want_f)[-4] > 0.01 and max(abs(x) for x in want_slope) > 0.1  # not one-hot: 4 share the weight
        torch.testing.assert_close(f.double(), torch.tensor(want_f, dtype=torch.float64), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(slope.double(), torch.tensor(want_slope, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_group_table_of_an_empty_batch_is_empty():
    group_lengths, group_mask, group_index, self_index = group_table(torch.empty(0), torch.empty(0))
    assert group_lengths.shape == group_mask.shape == (0, 0) and len(group_index) == len(self_index) == 0


def test_seq_mean_counts_one_token_responses():
    """Without a global count, ``seq-mean-token-mean`` divides by the responses with any valid token."""
    loss_mat = torch.tensor([[2.0, 9.0], [4.0, 6.0], [7.0, 7.0]])
    mask = torch.tensor([[1, 0], [1, 1], [0, 0]])
    got = weighted_agg_loss(loss_mat, mask, torch.ones(3), "seq-mean-token-mean")
    assert got.item() == pytest.approx((2.0 + 5.0) / 2)
