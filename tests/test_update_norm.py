"""The CPU backend's ``actor/update_norm`` on verl's real FSDP2 engine: the norm of what one optimizer step changed."""

import math

import pytest
import torch
from verl.utils import tensordict_utils as tu
from verl.workers.engine.fsdp.transformer_impl import FSDPEngine

from verl_lambda.cpu.harness import ActorHarness, init_process_group, make_batch
from verl_lambda.cpu.patches import UPDATE_NORM_METRIC, _train_batch_reporting_update_norm
from verl_lambda.hooks import wrapped_by

LR = "actor_rollout_ref.actor.optim.lr"


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_process_group(0, 1)


def test_the_wrapper_is_on_verls_engine_class():
    assert _train_batch_reporting_update_norm.__qualname__ in wrapped_by(FSDPEngine.train_batch)


@pytest.mark.parametrize("mini_batches", [1, 2])
def test_update_norm_is_the_norm_of_each_optimizer_steps_parameter_change(tiny_model_dir, mini_batches):
    batch = make_batch(vocab_size=40, seed=3, n_groups=4, group_size=4, max_response_len=12)
    harness = ActorHarness(tiny_model_dir, [f"{LR}=1e-3"])
    before = harness.flat_params().double()
    td = harness.input_for_update(batch, global_batch_size=len(batch), mini_batch_size=len(batch) // mini_batches)
    norms = [float(v) for v in tu.get(harness.worker.update_actor(td), "metrics")[UPDATE_NORM_METRIC]]
    change = float((harness.flat_params().double() - before).norm())
    assert len(norms) == mini_batches
    assert all(n > 0 for n in norms)
    if mini_batches == 1:
        assert norms[0] == pytest.approx(change, rel=1e-9)
    else:  # two steps: their changes add up to the whole, so the norms bound it on both sides
        assert max(norms) - 1e-12 <= change <= sum(norms) + 1e-12
        assert math.sqrt(sum(n * n for n in norms)) == pytest.approx(change, rel=0.5)


def test_update_norm_scales_with_the_learning_rate(tiny_model_dir):
    """Adam's first step moves every parameter by about lr: ten times the lr, ten times the update norm."""
    batch = make_batch(vocab_size=40, seed=3, n_groups=4, group_size=4, max_response_len=12)
    norms = []
    for lr in (1e-4, 1e-3):
        harness = ActorHarness(tiny_model_dir, [f"{LR}={lr}"])
        td = harness.input_for_update(batch, global_batch_size=len(batch))
        norms.append(float(tu.get(harness.worker.update_actor(td), "metrics")[UPDATE_NORM_METRIC][0]))
    assert norms[1] / norms[0] == pytest.approx(10, rel=0.05)
    assert torch.isfinite(torch.tensor(norms)).all()
