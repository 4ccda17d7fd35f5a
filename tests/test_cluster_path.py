"""Settings that are common on clusters and must never train wrong silently: verl's rollout correction, agent loops
with several outputs per session, a critic next to a λ-GRPO actor, pipeline parallelism. Each goes through verl's
own functions where they run on CPU (the fp16 grad scaler and node-local checkpoints are in the engine tests)."""

import numpy as np
import pytest
import torch
from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.utils import tensordict_utils as tu
from verl.workers.utils.padding import left_right_2_no_padding

from verl_lambda import lambda_grpo
from verl_lambda.cpu.harness import make_batch
from verl_lambda.ops.length_weights import length_weights, weights_and_slope

LAMBDA = 1.0


def weights_seen(td, state):
    return weights_and_slope(*state.groups, td[lambda_grpo.GROUP_INDEX_KEY], td[lambda_grpo.SELF_INDEX_KEY], LAMBDA)[0]


# ---------------------------------------------------------------------------------------------------------------
# Rollout correction: rejection sampling rewrites response_mask before the actor update.
# ---------------------------------------------------------------------------------------------------------------


def rejected_batch(seed=0):
    """A DataProto as verl's trainers hold it before rollout correction; in rows 1, 6 and 9 the rollout policy's
    log-probs are far below the training policy's, so token_k1 rejection sampling masks out all their tokens."""
    batch = make_batch(vocab_size=40, n_groups=3, group_size=4, max_response_len=12, seed=seed)
    tensors = dict(batch.tensors)
    gen = torch.Generator().manual_seed(seed)
    tensors["old_log_probs"] = -torch.rand(tensors["responses"].shape, generator=gen) * tensors["response_mask"]
    rollout = tensors["old_log_probs"].clone()
    rollout[[1, 6, 9]] -= 3.0  # ratio e**3 ≈ 20, outside [0.5, 2]
    tensors["rollout_log_probs"] = rollout
    data = DataProto.from_dict(tensors=tensors, non_tensors={"uid": np.array(batch.uids, dtype=object)})
    return data, batch


def rejection(data):
    from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch

    config = {"rollout_is": None, "rollout_rs": "token_k1", "rollout_rs_threshold": "0.5_2.0"}
    return compute_rollout_correction_and_add_to_batch(data, config)[0]


def test_rollout_correction_keeps_the_true_lengths_legacy_trainer():
    """Legacy trainer: the batch goes to the actor whole. A rejected response keeps its generated length in its
    group's statistics; the weights are those of the G responses the policy generated."""
    data, batch = rejected_batch()
    true_lengths = data.batch["response_mask"].sum(-1)
    data = rejection(data)
    assert data.batch["response_mask"][[1, 6, 9]].sum() == 0 and data.batch["response_mask"].sum() > 0
    td = left_right_2_no_padding(data.to_tensordict())  # what RayPPOTrainer._update_actor sends
    state = lambda_grpo.LearnableLambda(lambda_grpo.LambdaGRPOConfig(init=LAMBDA))
    report = lambda_grpo.attach_group_lengths(td, state, dp_group=None)
    ids = torch.tensor([int(uid.split("-")[1]) for uid in batch.uids])
    torch.testing.assert_close(weights_seen(td, state), length_weights(true_lengths, ids, LAMBDA))
    torch.testing.assert_close(report.lengths, true_lengths.float())


def test_rollout_correction_lengths_reach_the_v1_store_fields():
    """V1 trainer: the true lengths kept during its advantage step become a field for the store, in row order."""
    data, _ = rejected_batch(seed=1)
    true_lengths = data.batch["response_mask"].sum(-1).float()
    with lambda_grpo.capturing_response_lengths() as captured:
        rejection(data)
    keys = [f"u{i // 4}_{i % 4}_0" for i in range(12)]
    fields = lambda_grpo.row_fields(keys, "grpo", captured)
    assert set(fields) == {lambda_grpo.RESPONSE_LENGTH_KEY}  # one output per session: every row is a member
    torch.testing.assert_close(fields[lambda_grpo.RESPONSE_LENGTH_KEY], true_lengths)
    assert lambda_grpo.row_fields(keys, "grpo", []) == {}  # no rollout correction, nothing to store


# ---------------------------------------------------------------------------------------------------------------
# V1 agent loops with several outputs per session.
# ---------------------------------------------------------------------------------------------------------------

# Two prompts, three sessions each (rollout.n = 3); some sessions returned several outputs (index 0, 1, ...).
KEYS = [
    "p-a_0_0", "p-a_0_1", "p-a_1_0", "p-a_2_0", "p-a_2_1", "p-a_2_2",
    "p_b_0_0", "p_b_1_0", "p_b_1_1", "p_b_2_0",
]  # fmt: skip
FINAL = [False, True, True, False, False, True, True, False, True, True]
LENGTHS = [30, 5, 9, 40, 50, 12, 7, 100, 3, 11]


def test_group_members_are_the_final_outputs_like_verls_grpo_advantage():
    assert lambda_grpo.group_members(KEYS) == FINAL
    # verl's own V1 advantage: rows of a session share the final output's advantage, and each prompt's statistics
    # come from the final outputs only
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

    scores = torch.tensor([0.0, 1.0, 0.0, 5.0, 3.0, 1.0, 1.0, 9.0, 0.0, 1.0])
    mask = torch.ones(len(KEYS), 4)
    data = DataProto.from_dict(
        tensors={
            "token_level_rewards": torch.zeros(len(KEYS), 4).index_put_(
                (torch.arange(len(KEYS)), torch.full((len(KEYS),), 3)), scores
            ),
            "response_mask": mask,
        },
        non_tensors={"uid": np.array([k.rsplit("_", 2)[0] for k in KEYS], dtype=object)},
    )
    advantages = compute_advantage_for_multi_trajectories(data, KEYS, "grpo").batch["advantages"][:, 0]
    for prompt in ("p-a", "p_b"):
        rows = [i for i, k in enumerate(KEYS) if k.startswith(prompt + "_") and FINAL[i]]
        final_scores = scores[rows]
        want = (final_scores - final_scores.mean()) / (final_scores.std() + 1e-6)
        torch.testing.assert_close(advantages[rows], want)


def session_batch(members: bool):
    td = tu.get_tensordict({"response_mask": (torch.arange(100)[None] < torch.tensor(LENGTHS)[:, None]).long()})
    tu.assign_non_tensor_stack(td, "uid", [k.rsplit("_", 2)[0] for k in KEYS])
    tu.assign_non_tensor_stack(td, "session_id", [int(k.rsplit("_", 2)[1]) for k in KEYS])
    if members:
        td[lambda_grpo.GROUP_MEMBER_KEY] = torch.tensor(FINAL, dtype=torch.int64)
    return td


def test_multi_output_sessions_follow_verls_grouping():
    """A group is the final outputs of its sessions (G = rollout.n, not the number of rows); an earlier output of a
    session gets its final output's weight, as it gets its advantage."""
    td = session_batch(members=True)
    state = lambda_grpo.LearnableLambda(lambda_grpo.LambdaGRPOConfig(init=LAMBDA))
    report = lambda_grpo.attach_group_lengths(td, state, dp_group=None)
    got = weights_seen(td, state)
    final = torch.tensor(FINAL)
    ids = torch.tensor([0 if k.startswith("p-a") else 1 for k in KEYS])
    want_final = length_weights(torch.tensor(LENGTHS)[final], ids[final], LAMBDA)
    torch.testing.assert_close(got[final], want_final)
    final_of = {k.rsplit("_", 1)[0]: i for i, k in enumerate(KEYS) if FINAL[i]}
    for row, key in enumerate(KEYS):
        assert got[row] == got[final_of[key.rsplit("_", 1)[0]]]
    assert sorted(state.groups[2].tolist()) == [3.0, 3.0]  # group sizes: three sessions each
    assert len(report.weights) == sum(FINAL)
    # without the trainer's membership field (verl's legacy trainer, one output per session) every row counts
    plain = session_batch(members=False)
    lambda_grpo.attach_group_lengths(plain, state, dp_group=None)
    assert sorted(state.groups[2].tolist()) == [4.0, 6.0]


# ---------------------------------------------------------------------------------------------------------------
# agg_loss("lambda_grpo") outside the actor's policy term; a critic; pipeline parallelism.
# ---------------------------------------------------------------------------------------------------------------


def test_outside_the_policy_term_lambda_grpo_is_the_configured_base():
    """verl's trainer computes its entropy metric with agg_loss(actor.loss_agg_mode): the configured base."""
    from verl.workers.config import FSDPActorConfig

    gen = torch.Generator().manual_seed(0)
    loss_mat, mask = torch.randn(6, 9, generator=gen), (torch.rand(6, 9, generator=gen) > 0.3).float()
    for base in ("token-mean", "seq-mean-token-mean"):
        FSDPActorConfig(
            strategy="fsdp", rollout_n=2, ppo_micro_batch_size_per_gpu=2, loss_agg_mode="lambda_grpo",
            lambda_grpo={"base": base},
        )  # fmt: skip
        got = core_algos.agg_loss(loss_mat, mask, "lambda_grpo")
        assert torch.equal(got, core_algos.agg_loss(loss_mat, mask, base))


def test_the_trainer_process_learns_the_base_from_its_config(tiny_model_dir):
    """The V1 trainer's process builds no actor config; the trainer's __init__ wrapper reads the option."""
    from verl_lambda import patches
    from verl_lambda.cpu.harness import compose_config

    config = compose_config(
        tiny_model_dir,
        ["actor_rollout_ref.actor.loss_agg_mode=lambda_grpo", "+actor_rollout_ref.actor.lambda_grpo.base=token-mean"],
    )

    class Trainer:
        def __init__(self, config):
            self.config = config

    patches.wrap(Trainer, "__init__", patches._trainer_init_with_lambda_base)
    Trainer(config)
    gen = torch.Generator().manual_seed(0)
    loss_mat, mask = torch.randn(4, 7, generator=gen), (torch.rand(4, 7, generator=gen) > 0.3).float()
    assert torch.equal(
        core_algos.agg_loss(loss_mat, mask, "lambda_grpo"), core_algos.agg_loss(loss_mat, mask, "token-mean")
    )


def test_the_fully_async_trainer_learns_the_base_from_its_config(tiny_model_dir, monkeypatch):
    """verl's experimental FullyAsyncTrainer (a Ray actor class) never calls RayPPOTrainer.__init__ nor builds an
    ActorConfig: its own __init__ is wrapped, in the class Ray's actor process instantiates."""
    from omegaconf import open_dict
    from verl.experimental.fully_async_policy import fully_async_trainer

    from verl_lambda import lambda_grpo, verl_access
    from verl_lambda.cpu.harness import compose_config

    overrides = ["actor_rollout_ref.actor.loss_agg_mode=lambda_grpo", "actor_rollout_ref.hybrid_engine=false"]
    config = compose_config(tiny_model_dir, [*overrides, "+actor_rollout_ref.actor.lambda_grpo.base=token-mean"])
    with open_dict(config):
        config.trainer.logger = ["console"]
        config.async_training = {
            "trigger_parameter_sync_step": 1,
            "use_trainer_do_validate": False,
            "require_batches": 1,
        }
        config.rollout = {"nnodes": 1, "n_gpus_per_node": 1}
    monkeypatch.setattr(lambda_grpo, "_BASE_OUTSIDE_POLICY_TERM", "seq-mean-token-mean")
    actor_class = fully_async_trainer.FullyAsyncTrainer.__ray_metadata__.modified_class  # what Ray's process runs
    actor_class(config, tokenizer=None, role_worker_mapping={}, resource_pool_manager=None)
    gen = torch.Generator().manual_seed(0)
    loss_mat, mask = torch.randn(4, 7, generator=gen), (torch.rand(4, 7, generator=gen) > 0.3).float()
    assert torch.equal(
        core_algos.agg_loss(loss_mat, mask, "lambda_grpo"), core_algos.agg_loss(loss_mat, mask, "token-mean")
    )
    decorated, instantiated = verl_access.ray_actor_classes(fully_async_trainer.FullyAsyncTrainer)
    assert instantiated is actor_class and issubclass(instantiated, decorated) and decorated is not instantiated


def test_a_critic_never_inherits_lambda_grpo(tiny_model_dir):
    from hydra.errors import InstantiationException
    from verl.utils.config import omega_conf_to_dataclass

    from verl_lambda.cpu.harness import compose_config

    critic_model = f"critic.model.path={tiny_model_dir}"
    micro = "critic.ppo_micro_batch_size_per_gpu=2"
    config = compose_config(tiny_model_dir, ["actor_rollout_ref.actor.loss_agg_mode=lambda_grpo", critic_model, micro])
    assert config.critic.loss_agg_mode == "lambda_grpo"  # verl's critic.yaml: ${oc.select:...actor.loss_agg_mode}
    with pytest.raises(InstantiationException, match=r"critic\.loss_agg_mode=lambda_grpo.*critic\.loss_agg_mode=token"):
        omega_conf_to_dataclass(config.critic)
    explicit = compose_config(
        tiny_model_dir,
        ["actor_rollout_ref.actor.loss_agg_mode=lambda_grpo", "critic.loss_agg_mode=token-mean", critic_model, micro],
    )
    assert omega_conf_to_dataclass(explicit.critic).loss_agg_mode == "token-mean"


def test_pipeline_parallelism_is_refused_for_every_engine():
    from verl.workers.config.actor import TorchTitanActorConfig
    from verl.workers.config.engine import TorchtitanEngineConfig

    common = {"rollout_n": 2, "ppo_micro_batch_size_per_gpu": 2, "loss_agg_mode": "lambda_grpo"}
    with pytest.raises(ValueError, match=r"actor\.torchtitan\.pipeline_parallel_size=2"):
        TorchTitanActorConfig(**common, torchtitan=TorchtitanEngineConfig(pipeline_parallel_size=2))
    TorchTitanActorConfig(**common)  # one stage is fine
    TorchTitanActorConfig(
        **{**common, "loss_agg_mode": "token-mean"}, torchtitan=TorchtitanEngineConfig(pipeline_parallel_size=2)
    )
