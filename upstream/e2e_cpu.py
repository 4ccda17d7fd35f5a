"""The patched verl's own FSDP2 actor worker, on CPU, training with the series' methods.

    VERL_USE_EXTERNAL_PLUGINS=none PYTHONPATH=<repo> build/upstream/venv/bin/python upstream/e2e_cpu.py

Run by ``scripts/check_upstream.sh`` (unless CHECK_UPSTREAM_E2E=0). verl has no CPU platform, so the only part of
verl-lambda loaded is its CPU backend (``verl_lambda.cpu``: the cpu platform, gloo, the FSDP engines on CPU); the
algorithms come from the patched verl. Checks, with ``ActorRolloutRefWorker(role="actor")`` and ``update_actor``
fed as verl's trainers feed them:

1. ``loss_agg_mode=lambda_grpo``: λ is built by the actor, learned (longer responses score higher, so λ rises),
   reported in the step's metrics, saved in the checkpoint manager's extra state and restored by a new worker
   (not when ``checkpoint.load_contents`` leaves out ``extra``);
2. a frozen λ = 0 trains bitwise like ``loss_agg_mode=seq-mean-token-mean`` (parameters after one step);
3. ``policy_loss.loss_mode=grpo_lambda`` combined with ``lambda_grpo`` trains and reports its metrics;
4. ``loss_agg_mode=group-mean-token-mean`` trains through the worker's group counts (attached per step, the
   mini-batch's group count per mini-batch) and, with equal group token counts, like ``token-mean``.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ["VERL_USE_EXTERNAL_PLUGINS"] = "none"  # the series, not the plugin, provides the algorithms

from verl_lambda.cpu.harness import ActorHarness, init_process_group, make_batch, select_cpu_platform

select_cpu_platform()

from verl_lambda import hooks  # noqa: E402
from verl_lambda.cpu import patches as cpu_patches  # noqa: E402

cpu_patches.register_cpu_platform()
for module_name, patch in cpu_patches.PATCHES.items():
    hooks.when_imported(module_name, patch)

import torch  # noqa: E402
import verl  # noqa: E402
from verl.trainer.ppo import loss_params  # noqa: E402  (only the patched verl has it)

from verl_lambda.toy import build_model  # noqa: E402

GROUPS, GROUP = 4, 4
OVERRIDES = ["actor_rollout_ref.rollout.n=4"]


def batch():
    lengths = torch.tensor([3, 6, 9, 12] * GROUPS)
    advantages = torch.zeros(GROUPS * GROUP)
    for group in range(GROUPS):
        members = slice(group * GROUP, (group + 1) * GROUP)
        group_lengths = lengths[members].float()
        advantages[members] = (group_lengths - group_lengths.mean()) / group_lengths.std()  # longer scores higher
    return make_batch(
        vocab_size=40,
        n_groups=GROUPS,
        group_size=GROUP,
        max_response_len=12,
        seed=0,
        advantages=advantages,
        response_lengths=lengths,
    )


def train(model_dir: str, overrides: list[str], steps: int):
    harness = ActorHarness(model_dir, OVERRIDES + overrides)
    metrics = [harness.update(batch(), global_batch_size=GROUPS * GROUP, mini_batch_size=8) for _ in range(steps)]
    return harness, metrics


def main() -> int:
    print(f"patched verl: {os.path.dirname(verl.__file__)} ({loss_params.__name__})")
    init_process_group(0, 1)
    workdir = tempfile.mkdtemp(prefix="verl_series_e2e_")
    model_dir = str(build_model(os.path.join(workdir, "model")))

    harness, metrics = train(model_dir, ["actor_rollout_ref.actor.loss_agg_mode=lambda_grpo"], steps=2)
    lam = harness.training_worker.loss_params.lam.item()
    print("lambda_grpo:", {key: value for key, value in metrics[-1].items() if key.startswith("lambda_grpo/")})
    assert lam > 0.015, f"λ should rise when longer responses score higher, got {lam}"
    assert metrics[-1]["lambda_grpo/lambda"] == [lam]
    checkpoint = os.path.join(workdir, "checkpoint")
    harness.worker.save_checkpoint(checkpoint)
    extra_state = torch.load(os.path.join(checkpoint, "extra_state_world_size_1_rank_0.pt"), weights_only=False)
    assert extra_state["loss_params"]["params"]["lambda"].item() == lam, "λ is not in the checkpoint's extra state"
    assert "loss_params.pt" not in os.listdir(checkpoint)
    resumed = ActorHarness(model_dir, [*OVERRIDES, "actor_rollout_ref.actor.loss_agg_mode=lambda_grpo"])
    resumed.worker.load_checkpoint(checkpoint)
    assert resumed.training_worker.loss_params.lam.item() == lam
    without_extra = ActorHarness(
        model_dir,
        [
            *OVERRIDES,
            "actor_rollout_ref.actor.loss_agg_mode=lambda_grpo",
            "actor_rollout_ref.actor.checkpoint.load_contents=[model,optimizer]",
        ],
    )
    without_extra.worker.load_checkpoint(checkpoint)
    assert without_extra.training_worker.loss_params.lam.item() == 0.0, "load_contents without extra restored λ"
    print(f"λ = {lam:.6f} after 2 steps (4 optimizer steps), restored from the checkpoint's extra state")

    frozen, _ = train(
        model_dir,
        ["actor_rollout_ref.actor.loss_agg_mode=lambda_grpo", "actor_rollout_ref.actor.lambda_grpo.learnable=false"],
        steps=1,
    )
    base, _ = train(model_dir, ["actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean"], steps=1)
    assert torch.equal(frozen.flat_params(), base.flat_params()), "frozen λ = 0 must train like seq-mean-token-mean"
    print("frozen λ = 0: parameters bitwise equal to seq-mean-token-mean after one step")

    _, metrics = train(
        model_dir,
        [
            "actor_rollout_ref.actor.loss_agg_mode=lambda_grpo",
            "actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda",
        ],
        steps=1,
    )
    assert "actor/grpo_lambda/trace_mean" in metrics[-1] and "lambda_grpo/lambda" in metrics[-1]
    print("grpo_lambda with lambda_grpo: trained, metrics reported")

    # every group of batch() holds 3 + 6 + 9 + 12 = 30 tokens: the group token mean is token-mean
    group_mean, _ = train(model_dir, ["actor_rollout_ref.actor.loss_agg_mode=group-mean-token-mean"], steps=1)
    token_mean, _ = train(model_dir, ["actor_rollout_ref.actor.loss_agg_mode=token-mean"], steps=1)
    torch.testing.assert_close(group_mean.flat_params(), token_mean.flat_params(), rtol=1e-5, atol=1e-6)
    print("group-mean-token-mean with equal group token counts: parameters equal to token-mean's after one step")
    print("e2e: verl's FSDP2 actor trains with the series on CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
