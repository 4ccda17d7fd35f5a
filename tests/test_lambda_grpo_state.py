"""λ-GRPO's bookkeeping, unit by unit: λ's state and its checkpoint, group ids around padding, advantages of jagged
batches, the step's metrics and the degenerate-weights warning. Each test pins a value a plausible slip changes."""

import subprocess
import sys
import textwrap

import pytest
import torch
from loss_harness import BS, actor_config, loss_inputs
from verl.trainer.ppo import core_algos
from verl.utils import tensordict_utils as tu

from verl_lambda import lambda_grpo
from verl_lambda.cpu.harness import init_process_group, make_batch
from verl_lambda.ops.length_weights import length_weights

Config = lambda_grpo.LambdaGRPOConfig


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_process_group(0, 1)


# --- λ's state ---------------------------------------------------------------------------------------------------


def test_validation_signal_without_held_out_groups_leaves_lambda_where_it_is():
    state = lambda_grpo.LearnableLambda(Config(signal="validation", init=0.3, lr=0.1))
    state.held_out = None  # a step with fewer than two groups holds none out
    state.step(dp_group=None)
    assert state.value.item() == torch.tensor(0.3).item() and state.step_grads == [0.0]


def test_loading_a_state_without_skipped_steps_counts_none_and_the_launchs_lr_wins():
    saved = lambda_grpo.LearnableLambda(Config(lr=0.01))
    saved.value.grad = torch.tensor(1.0)
    saved.step(dp_group=None)
    state = saved.state_dict()
    del state["skipped_steps"]  # a checkpoint written before the count existed
    resumed = lambda_grpo.LearnableLambda(Config(lr=0.2))
    resumed.skipped_steps = 5
    resumed.load_state_dict(state)
    assert resumed.skipped_steps == 0
    assert resumed.value.item() == saved.value.item()
    assert [group["lr"] for group in resumed.optimizer.param_groups] == [0.2]
    assert resumed.optimizer.state_dict()["state"][0]["step"] == 1  # Adam's moments came back


# --- grouping ----------------------------------------------------------------------------------------------------


def test_a_sessions_final_output_is_its_largest_index_also_when_sessions_interleave():
    keys = ["u_1_0", "v_1_5", "u_1_1", "v_1_2"]
    assert lambda_grpo.group_members(keys) == [False, True, True, False]


def _attach(uids, lengths, lam=0.0):
    batch = make_batch(vocab_size=40, n_groups=1, group_size=len(uids), seed=0, response_lengths=torch.tensor(lengths))
    batch.uids[:] = uids
    td = batch.to_tensordict()
    tu.assign_non_tensor(td, dummy=0)
    state = lambda_grpo.LearnableLambda(Config(init=lam))
    report = lambda_grpo.attach_group_lengths(td, state, dp_group=None)
    return td, state, report


def test_padding_rows_first_in_the_batch_join_no_real_group():
    """verl's padding rows get negative ids of their own; first in the batch, a slip in those ids would put them in
    group 0 or 1."""
    td, state, report = _attach(["pad0", "pad0", "a", "a", "b", "b"], [4, 9, 2, 6, 3, 8], lam=1.0)
    sizes = state.groups[2][td[lambda_grpo.GROUP_INDEX_KEY]]
    assert sizes.tolist() == [1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    want = torch.cat([length_weights(torch.tensor(pair), torch.zeros(2), 1.0) for pair in ([2, 6], [3, 8])])
    torch.testing.assert_close(report.weights, want)


def test_groups_of_two_count_in_the_weight_share_and_half_is_not_degenerate(caplog):
    """At λ = 0 a group of two gives each response exactly half: the warning is for more than half."""
    with caplog.at_level("WARNING", logger="verl_lambda"):
        _, state, report = _attach(["a", "a", "b", "b"], [2, 10, 3, 3], lam=0.0)
        assert report.max_weight_share == 0.5
        lambda_grpo.step_metrics(state, report)
        assert not caplog.records
        _, state, report = _attach(["a", "a", "b", "b"], [2, 10, 3, 3], lam=3.0)
        share = float(length_weights(torch.tensor([2, 10]), torch.zeros(2), 3.0).max()) / 2
        assert report.max_weight_share == pytest.approx(share, rel=1e-6) and share > 0.5
        lambda_grpo.step_metrics(state, report)
    (record,) = caplog.records
    assert f"{100 * share:.0f}% of its group's weight" in record.getMessage()


# --- advantages and counts ---------------------------------------------------------------------------------------


def test_response_advantages_of_jagged_rows_and_of_a_row_without_tokens():
    advantages = torch.nested.nested_tensor([torch.full((3,), 0.6), torch.full((7,), -1.2)], layout=torch.jagged)
    mask = torch.nested.nested_tensor([torch.ones(3), torch.ones(7)], layout=torch.jagged)
    got = lambda_grpo.response_advantages({"advantages": advantages, "response_mask": mask})
    torch.testing.assert_close(got, torch.tensor([0.6, -1.2], dtype=torch.float64))
    padded = {"advantages": torch.tensor([[0.5, 0.5], [0.9, 0.9]]), "response_mask": torch.tensor([[1, 1], [0, 0]])}
    assert lambda_grpo.response_advantages(padded).tolist() == [0.5, 0.0]  # no tokens: 0, not 0 / 0


def test_trained_counts_of_a_mini_batch_of_held_out_rows_only_are_one_and_one():
    held = torch.tensor([True, True])
    assert lambda_grpo.trained_counts(held, torch.tensor([4, 6]), dp_group=None) == (1, 1)
    one_token = torch.tensor([False, True])
    assert lambda_grpo.trained_counts(one_token, torch.tensor([1, 6]), dp_group=None) == (1, 1)


def test_weights_need_the_group_lengths_of_the_step():
    data, _, _ = loss_inputs()
    state = lambda_grpo.LearnableLambda(Config())
    with pytest.raises(RuntimeError, match="lacks the group lengths"):
        lambda_grpo.attach_weights(data, state)  # neither the table nor the rows' indices
    lambda_grpo.attach_group_lengths(data, state, dp_group=None)
    state.groups = None
    with pytest.raises(RuntimeError, match="lacks the group lengths"):
        lambda_grpo.attach_weights(data, state)  # the rows' indices without the table


def test_only_the_policy_term_is_weighted_and_a_loss_that_never_weights_is_an_error():
    """Inside the loss but outside the policy term (no policy loss has run yet), agg_loss is the base, unweighted;
    a loss that leaves the block without aggregating its policy term through agg_loss is refused."""
    config = actor_config("lambda_grpo")
    data, _, _ = loss_inputs(seed=2)
    state = lambda_grpo.LearnableLambda(config.lambda_grpo)
    state.value.data.fill_(2.0)
    lambda_grpo.attach_group_lengths(data, state, dp_group=None)
    lambda_grpo.attach_weights(data, state)
    gen = torch.Generator().manual_seed(0)
    loss_mat, mask = torch.randn(BS, 10, generator=gen), (torch.rand(BS, 10, generator=gen) > 0.2).float()
    with lambda_grpo.active_lambda(state), pytest.raises(RuntimeError, match="never aggregated"):
        with lambda_grpo.length_weighted_loss(config, data):
            got = core_algos.agg_loss(loss_mat, mask, "lambda_grpo")
    assert torch.equal(got, core_algos.agg_loss(loss_mat, mask, "seq-mean-token-mean"))


# --- metrics -----------------------------------------------------------------------------------------------------


def _report(n=4):
    return lambda_grpo.StepReport(weights=torch.ones(n), lengths=torch.arange(n).float(), floored=0)


def test_lambda_grad_is_the_mean_over_the_steps_mini_batches_and_zero_without_any():
    state = lambda_grpo.LearnableLambda(Config())
    state.step_grads = [0.2, 0.4]
    assert lambda_grpo.step_metrics(state, _report())["lambda_grpo/lambda_grad"] == pytest.approx(0.3)
    assert lambda_grpo.step_metrics(state, _report())["lambda_grpo/lambda_grad"] == 0.0  # the list was reset


def test_validation_responses_is_zero_when_nothing_was_held_out():
    state = lambda_grpo.LearnableLambda(Config(signal="validation"))
    assert lambda_grpo.step_metrics(state, _report())["lambda_grpo/validation_responses"] == 0.0


def test_warning_and_checkpoint_without_torch_distributed(tmp_path):
    """A single process that never initialised torch.distributed (a notebook, a unit test) warns and saves/loads."""
    script = textwrap.dedent(
        f"""
        import logging, torch
        from verl_lambda import lambda_grpo
        logging.basicConfig(level=logging.WARNING)
        state = lambda_grpo.LearnableLambda(lambda_grpo.LambdaGRPOConfig(init=0.7))
        report = lambda_grpo.StepReport(torch.ones(2), torch.ones(2), 0, max_weight_share=0.8)
        lambda_grpo.warn_on_degenerate_weights(state, report)
        lambda_grpo.save_lambda(state, {str(tmp_path)!r})
        fresh = lambda_grpo.LearnableLambda(lambda_grpo.LambdaGRPOConfig())
        lambda_grpo.load_lambda(fresh, {str(tmp_path)!r})
        assert not torch.distributed.is_initialized()
        print("LAMBDA", fresh.value.item())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "80% of its group's weight" in done.stderr
    assert f"LAMBDA {torch.tensor(0.7).item()}" in done.stdout


# --- more of the state, the trainer's fields and the held-out choice ------------------------------------------------


@pytest.mark.parametrize(("saved_learnable", "resumed_learnable"), [(True, False), (False, True)])
def test_resuming_with_learnable_switched_loads_lambda_and_leaves_the_optimizer_alone(
    saved_learnable, resumed_learnable
):
    saved = lambda_grpo.LearnableLambda(Config(init=0.4, learnable=saved_learnable))
    resumed = lambda_grpo.LearnableLambda(Config(learnable=resumed_learnable))
    resumed.load_state_dict(saved.state_dict())
    assert resumed.value.item() == saved.value.item()
    if resumed.optimizer is not None:
        assert resumed.optimizer.state_dict()["state"] == {}  # nothing saved to restore: it starts fresh


def test_an_actor_with_another_aggregation_has_no_lambda(tiny_model_dir):
    from verl_lambda.cpu.harness import ActorHarness

    harness = ActorHarness(tiny_model_dir, ["actor_rollout_ref.actor.loss_agg_mode=token-mean"])
    assert lambda_grpo.lambda_state(harness.training_worker) is None


def test_group_membership_is_stored_only_for_grpos_advantage():
    keys = ["u_1_0", "u_1_1", "v_1_0"]  # session u_1 has two outputs: only the last is a member of its group
    fields = lambda_grpo.row_fields(keys, "grpo", [])
    assert fields[lambda_grpo.GROUP_MEMBER_KEY].tolist() == [0, 1, 1]
    assert lambda_grpo.row_fields(keys, "rloo", []) == {}  # other estimators count every row of a uid
    assert lambda_grpo.row_fields(["u_1_0", "v_1_0"], "grpo", []) == {}  # all members: nothing to store


def test_an_empty_held_out_set_gives_no_gradient():
    empty = torch.zeros(0)
    held = lambda_grpo.HeldOut(empty.long(), empty.long(), empty.double(), empty.double(), "seq-mean-token-mean")
    assert held.gradient(lambda_grpo.LearnableLambda(Config(signal="validation"))) == 0.0


def test_the_held_out_groups_are_a_fixed_share_and_a_fixed_choice():
    """At least one group is held out and at least one trains; which ones is a hash of the uid, pinned here so a
    resumed run (or another version) holds out the same groups."""
    counts = {(n, share): len(lambda_grpo.held_out_uids([str(i) for i in range(n)], share)) for n, share in
              [(1, 0.5), (2, 0.25), (3, 0.5), (4, 0.25), (4, 0.9), (8, 0.25)]}  # fmt: skip
    assert counts == {(1, 0.5): 0, (2, 0.25): 1, (3, 0.5): 2, (4, 0.25): 1, (4, 0.9): 3, (8, 0.25): 2}
    assert lambda_grpo.held_out_uids(list("abcdefgh"), 0.25) == {"e", "f"}


def test_a_step_without_a_group_of_two_has_no_weight_share():
    _, _, report = _attach(["a", "b", "pad0"], [2, 5, 3], lam=4.0)
    assert report.max_weight_share == 0.0


def test_a_checkpoint_is_loaded_as_weights_only(tmp_path):
    """λ's file holds tensors and plain values; anything else (a pickled object that runs code) is refused."""
    state = lambda_grpo.LearnableLambda(Config())
    payload = state.state_dict() | {"extra": Config()}  # a dataclass instance: not a weights-only type
    torch.save(payload, tmp_path / lambda_grpo.CHECKPOINT_FILE)
    with pytest.raises(Exception, match=r"[Ww]eights only load failed"):
        lambda_grpo.load_lambda(lambda_grpo.LearnableLambda(Config()), str(tmp_path))
