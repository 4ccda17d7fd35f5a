"""λ-GRPO on verl's real actor worker (FSDP2 engine, cpu platform, gloo): special cases, invariance to micro-batch
size and data-parallel degree (real processes), λ's synchronisation, and checkpoint round-trips."""

import pytest
import torch
from lambda_runs import launch_ranks, run

from verl_lambda import lambda_grpo
from verl_lambda.cpu.harness import PRECISIONS, ActorHarness, init_process_group, make_batch, precision_overrides
from verl_lambda.cpu.patches import CHECK_AUTOCAST_ENV
from verl_lambda.ops.length_weights import length_weights

BATCH = {"n_groups": 4, "group_size": 4, "max_response_len": 12}
MODE = "actor_rollout_ref.actor.loss_agg_mode"
MICRO = "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_process_group(0, 1)


def spec(model_dir, overrides, steps=1, **kwargs):
    return {"model_dir": model_dir, "overrides": list(overrides), "batch": BATCH, "steps": steps, **kwargs}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(
    ("base", "verl_mode"), [("seq-mean-token-mean", "seq-mean-token-mean"), ("token-mean", "token-mean")]
)
def test_frozen_lambda_zero_trains_exactly_like_verls_mode(tiny_model_dir, base, verl_mode, precision, monkeypatch):
    """Bitwise verl's mode, in fp32 and in bf16 mixed precision (the loss inside autocast(bf16), as on GPUs)."""
    monkeypatch.setenv(CHECK_AUTOCAST_ENV, precision)  # the loss fails if the engine's autocast is not `precision`
    frozen = [
        f"{MODE}=lambda_grpo",
        f"+actor_rollout_ref.actor.lambda_grpo.base={base}",
        "+actor_rollout_ref.actor.lambda_grpo.learnable=false",
        *precision_overrides(precision),
    ]
    ours = run(spec(tiny_model_dir, frozen, steps=2, on_policy=True))
    verls = run(spec(tiny_model_dir, [f"{MODE}={verl_mode}", *precision_overrides(precision)], steps=2, on_policy=True))
    for a, b in zip(ours["steps"], verls["steps"], strict=True):
        assert a["pg_loss"] == b["pg_loss"]
        assert a["grad_norm"] == b["grad_norm"]
    assert ours["param_sum"] == verls["param_sum"]
    assert ours["steps"][-1]["lambda"] == 0.0


def test_invariant_to_micro_batch_size(tiny_model_dir):
    results = {}
    for micro in (1, 2, 4, 8):
        overrides = [f"{MODE}=lambda_grpo", f"{MICRO}={micro}", "+actor_rollout_ref.actor.lambda_grpo.init=0.5"]
        results[micro] = run(spec(tiny_model_dir, overrides, steps=2, shuffle_seed=1))["steps"]
    dynamic = [
        f"{MODE}=lambda_grpo",
        "+actor_rollout_ref.actor.lambda_grpo.init=0.5",
        "actor_rollout_ref.actor.use_dynamic_bsz=true",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=64",
    ]  # ~3 samples per micro-batch, reordered
    results["dynamic"] = run(spec(tiny_model_dir, dynamic, steps=2, shuffle_seed=1))["steps"]
    packed = [
        f"{MODE}=lambda_grpo",
        "+actor_rollout_ref.actor.lambda_grpo.init=0.5",
        f"{MICRO}=4",
        "actor_rollout_ref.model.use_remove_padding=true",
    ]  # sequences packed, as verl's GPU recipes run
    results["remove_padding"] = run(spec(tiny_model_dir, packed, steps=2, shuffle_seed=1))["steps"]
    reference = results[8]
    for micro, steps in results.items():
        for got, want in zip(steps, reference, strict=True):
            assert sum(got["pg_loss"]) == pytest.approx(sum(want["pg_loss"]), rel=1e-5, abs=1e-7), micro
            assert got["lambda_grad"] == pytest.approx(want["lambda_grad"], rel=1e-5, abs=1e-8), micro
            assert got["lambda"] == pytest.approx(want["lambda"], rel=1e-6), micro
    assert reference[0]["lambda_grad"] != 0.0


def test_invariant_to_micro_batch_size_in_bf16_mixed_precision(tiny_model_dir, monkeypatch):
    """The same under bf16 autocast, for one step: the loss and dλ come from the same bf16 forward whatever the split,
    and our weights and aggregation run in float32. (From the second step on the models themselves differ by bf16
    rounding of differently accumulated updates, about 3e-5 relative in the loss: not ours to remove.)"""
    monkeypatch.setenv(CHECK_AUTOCAST_ENV, "bf16")
    results = {}
    for micro in (1, 4, 8):
        overrides = [f"{MODE}=lambda_grpo", f"{MICRO}={micro}", "+actor_rollout_ref.actor.lambda_grpo.init=0.5"]
        results[micro] = run(spec(tiny_model_dir, [*overrides, *precision_overrides("bf16")], shuffle_seed=1))["steps"]
    (want,) = results[8]
    for micro, (got,) in results.items():
        assert sum(got["pg_loss"]) == pytest.approx(sum(want["pg_loss"]), rel=1e-6, abs=1e-8), micro
        assert got["lambda_grad"] == pytest.approx(want["lambda_grad"], rel=1e-6, abs=1e-9), micro
        assert got["lambda"] == want["lambda"], micro
    assert want["lambda_grad"] != 0.0


@pytest.mark.e2e  # gloo ranks: processes running verl's actor worker
def test_invariant_to_data_parallel_degree_and_lambda_stays_in_sync(tiny_model_dir):
    """2 real gloo ranks vs 1: same loss and dλ, λ bit-identical on both ranks, and each rank's loss saw the
    weights of the complete groups although the shuffled batch scatters every group over both ranks."""
    overrides = [
        f"{MODE}=lambda_grpo",
        f"{MICRO}=2",
        "+actor_rollout_ref.actor.lambda_grpo.lr=0.05",
        "+actor_rollout_ref.actor.lambda_grpo.init=0.3",
    ]
    run_spec = spec(tiny_model_dir, overrides, steps=3, shuffle_seed=7, weights_at=1.0)
    single = launch_ranks(run_spec, 1)[0]
    rank0, rank1 = launch_ranks(run_spec, 2)
    for step, (a, b, s) in enumerate(zip(rank0["steps"], rank1["steps"], single["steps"], strict=True)):
        assert a["lambda_repr"] == b["lambda_repr"], f"ranks drifted apart at step {step}"
        assert a["lambda"] == pytest.approx(s["lambda"], rel=1e-6, abs=1e-7)
        assert a["lambda_grad"] == pytest.approx(s["lambda_grad"], rel=1e-5, abs=1e-8)
        assert sum(a["pg_loss"]) == pytest.approx(sum(s["pg_loss"]), rel=1e-5, abs=1e-7)
    # every group has members on both ranks
    groups0, groups1 = set(rank0["steps"][0]["uids"]), set(rank1["steps"][0]["uids"])
    assert groups0 == groups1
    # weights each rank used == weights of the complete groups computed on the whole batch
    uids = rank0["steps"][0]["uids"] + rank1["steps"][0]["uids"]
    lengths = torch.tensor(rank0["steps"][0]["lengths"] + rank1["steps"][0]["lengths"])
    ids = torch.tensor([sorted(set(uids)).index(u) for u in uids])
    want = length_weights(lengths, ids, 1.0)
    seen = torch.tensor(rank0["steps"][0]["weights_seen"] + rank1["steps"][0]["weights_seen"])
    torch.testing.assert_close(seen, want)
    assert not torch.allclose(want, torch.ones_like(want))


def test_padding_samples_form_no_group():
    from verl.utils import tensordict_utils as tu

    batch = make_batch(vocab_size=40, n_groups=2, group_size=3, seed=0)
    batch.uids[-2:] = ["pad0123", "pad0123"]  # verl's V1 padding shares one uid
    td = batch.to_tensordict()
    tu.assign_non_tensor(td, dummy=0)
    options = lambda_grpo.LambdaGRPOConfig(init=2.0)
    state = lambda_grpo.LearnableLambda(options)
    report = lambda_grpo.attach_group_lengths(td, state, dp_group=None)
    sizes = state.groups[2][td[lambda_grpo.GROUP_INDEX_KEY]]
    assert sizes[-2:].tolist() == [1.0, 1.0]
    assert sizes[:4].tolist() == [3.0, 3.0, 3.0, 1.0]  # group 1 keeps one
    assert len(report.weights) == 4


def test_h_floored_counts_the_responses_whose_own_h_hit_the_floor():
    from verl.utils import tensordict_utils as tu

    # r = 2: in the group of lengths [1, 10, 10, 10] only the short response has 1 + r z < 0; in the other, z = 0
    lengths = torch.tensor([1, 10, 10, 10, 5, 5, 5, 5])
    batch = make_batch(vocab_size=40, n_groups=2, group_size=4, seed=0, response_lengths=lengths)
    td = batch.to_tensordict()
    tu.assign_non_tensor(td, dummy=0)
    state = lambda_grpo.LearnableLambda(lambda_grpo.LambdaGRPOConfig(r=2.0))
    report = lambda_grpo.attach_group_lengths(td, state, dp_group=None)
    assert report.floored == 1
    assert lambda_grpo.step_metrics(state, report)["lambda_grpo/h_floored"] == 1.0


@pytest.mark.parametrize("lam", [0.0, 3.0, 8.0, 25.0])
def test_max_weight_share_is_the_largest_share_of_a_group_held_by_one_response(lam, caplog):
    """``max_weight_share`` = max over the step's groups of max_i f_i / G (verl's padding, groups of one, excluded);
    past one half a warning names the metric, once until the weights recover."""
    from verl.utils import tensordict_utils as tu

    lengths = torch.tensor([3, 5, 8, 12, 2, 2, 2, 12, 6, 6, 6, 6, 7])
    batch = make_batch(vocab_size=40, n_groups=1, group_size=13, seed=0, response_lengths=lengths)
    batch.uids[:] = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["pad0"]
    td = batch.to_tensordict()
    tu.assign_non_tensor(td, dummy=0)
    state = lambda_grpo.LearnableLambda(lambda_grpo.LambdaGRPOConfig(init=lam))
    with caplog.at_level("WARNING", logger="verl_lambda"):
        report = lambda_grpo.attach_group_lengths(td, state, dp_group=None)
        metrics = lambda_grpo.step_metrics(state, report)
        lambda_grpo.step_metrics(state, report)  # still degenerate: no second warning
    groups = [length_weights(lengths[i : i + 4], torch.zeros(4), lam) / 4 for i in (0, 4, 8)]
    want = max(float(g.max()) for g in groups)
    assert metrics["lambda_grpo/max_weight_share"] == pytest.approx(want, rel=1e-6)
    if lam == 0.0:
        assert want == 0.25  # the padding sample's group of one (share 1) does not count
    warnings = [r for r in caplog.records if "max_weight_share" in r.getMessage()]
    assert len(warnings) == (1 if want > 0.5 else 0)
    assert (want > 0.5) == (lam >= 8.0)


def test_lambda_moves_with_the_length_advantage_correlation(tiny_model_dir):
    """On-policy, a batch where longer responses have higher advantage makes λ rise; the reverse makes it fall."""
    lengths = torch.tensor([2, 5, 8, 11] * 4)
    for sign in (1.0, -1.0):
        advantages = sign * torch.tensor([-1.5, -0.5, 0.5, 1.5] * 4)
        harness = ActorHarness(tiny_model_dir, [f"{MODE}=lambda_grpo", "+actor_rollout_ref.actor.lambda_grpo.lr=0.05"])
        batch = make_batch(vocab_size=40, response_lengths=lengths, advantages=advantages, seed=3, **BATCH)
        batch.tensors["old_log_probs"] = harness.compute_log_prob(batch)
        first = harness.update(batch, global_batch_size=16)
        assert (first["lambda_grpo/lambda"][0] > 0) == (sign > 0)
        assert first["lambda_grpo/weight_length_corr"][0] == 0.0  # step 1 applied λ = 0: all weights 1
        second = harness.update(batch, global_batch_size=16)
        assert (second["lambda_grpo/weight_length_corr"][0] > 0) == (sign > 0)


def test_checkpoint_round_trip_through_verls_save_and_load(tiny_model_dir, tmp_path):
    overrides = [f"{MODE}=lambda_grpo", "+actor_rollout_ref.actor.lambda_grpo.lr=0.05"]
    batch = make_batch(vocab_size=40, seed=5, **BATCH)

    first = ActorHarness(tiny_model_dir, overrides)
    for _ in range(2):
        first.update(batch, global_batch_size=16)
    first.worker.save_checkpoint(str(tmp_path / "actor"), global_step=2)
    assert (tmp_path / "actor" / lambda_grpo.CHECKPOINT_FILE).exists()
    saved_lambda = lambda_grpo.lambda_state(first.training_worker).value.item()
    uninterrupted = [first.update(batch, global_batch_size=16)["lambda_grpo/lambda"][0] for _ in range(2)]

    resumed = ActorHarness(tiny_model_dir, overrides)
    resumed.worker.load_checkpoint(str(tmp_path / "actor"))
    assert lambda_grpo.lambda_state(resumed.training_worker).value.item() == saved_lambda
    continued = [resumed.update(batch, global_batch_size=16)["lambda_grpo/lambda"][0] for _ in range(2)]
    assert continued == uninterrupted  # λ, Adam's moments and the model all came back exactly
    assert saved_lambda != 0.0


def test_response_lengths_of_padded_and_jagged_masks():
    rows = [torch.tensor([1.0, 1, 0, 1]), torch.tensor([1.0]), torch.tensor([0.0, 0, 1])]
    jagged = torch.nested.nested_tensor(rows, layout=torch.jagged)
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    for mask in (jagged, padded):
        assert lambda_grpo.response_lengths({"response_mask": mask}).tolist() == [3.0, 1.0, 1.0]


@pytest.mark.e2e  # gloo ranks: processes running verl's actor worker
def test_every_rank_resumes_rank0s_lambda_from_node_local_checkpoint_folders(tiny_model_dir, tmp_path):
    """Each rank saves to and loads from its own folder (node-local disks): only rank 0's folder holds λ's file, and
    after the resume both ranks hold rank 0's λ and optimizer state bit for bit."""
    overrides = [f"{MODE}=lambda_grpo", f"{MICRO}=2", "+actor_rollout_ref.actor.lambda_grpo.lr=0.05"]
    run_spec = spec(tiny_model_dir, overrides, steps=2, shuffle_seed=7, checkpoint_root=str(tmp_path))
    rank0, rank1 = launch_ranks(run_spec, 2)
    assert lambda_grpo.CHECKPOINT_FILE in rank0["files"] and lambda_grpo.CHECKPOINT_FILE not in rank1["files"]
    assert rank0["saved"] == rank1["saved"]  # the ranks agreed before the save
    assert float.fromhex(rank0["saved"]["lambda"]) != 0.0 and rank0["saved"]["exp_avg"] != ["0x0.0p+0"]
    assert rank0["loaded"] == rank0["saved"]
    assert rank1["loaded"] == rank0["saved"]


def _fp16_update(model_dir, init_scale):
    """One update of verl's FSDP2 engine with fp16 parameters and, unless ``init_scale`` is None, a real
    ``ShardedGradScaler`` as verl's engine builds on GPUs (verl's own is disabled on a CPU, so it is swapped in)."""
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    overrides = [
        f"{MODE}=lambda_grpo",
        "++actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp16",
        "+actor_rollout_ref.actor.lambda_grpo.init=0.5",
        "+actor_rollout_ref.actor.lambda_grpo.optimizer=sgd",
    ]
    harness = ActorHarness(model_dir, overrides)
    engine = harness.training_worker.engine
    engine.scaler = None if init_scale is None else ShardedGradScaler(device="cpu", init_scale=init_scale)
    batch = make_batch(vocab_size=40, seed=1, **BATCH)
    before = harness.flat_params()
    metrics = harness.update(batch, global_batch_size=16)
    return metrics, harness.flat_params() - before, engine.scaler


def test_fp16_loss_scale_is_removed_from_lambdas_gradient_and_lambda_skips_with_the_model(tiny_model_dir):
    plain, plain_change, _ = _fp16_update(tiny_model_dir, None)
    scaled, scaled_change, scaler = _fp16_update(tiny_model_dir, 2.0**16)
    assert scaler.get_scale() == 2.0**16  # a good step: the scale did not back off
    assert plain["lambda_grpo/lambda_grad"][0] != 0.0
    # a power-of-two scale is exact in float32: the unscaled dλ and the SGD step are the unscaled run's, exactly
    assert scaled["lambda_grpo/lambda_grad"] == plain["lambda_grpo/lambda_grad"]
    assert scaled["lambda_grpo/lambda"] == plain["lambda_grpo/lambda"] != [0.5]
    assert scaled_change.abs().max() > 0 and plain_change.abs().max() > 0  # both models stepped
    # a scale so large that fp16 gradients overflow: the scaler skips the model's step, and λ must skip it too
    skipped, skipped_change, scaler = _fp16_update(tiny_model_dir, 2.0**100)
    assert scaler.get_scale() == 2.0**99 and torch.all(skipped_change == 0)
    assert skipped["lambda_grpo/lambda"] == [0.5] and skipped["lambda_grpo/skipped_steps"] == [1.0]
