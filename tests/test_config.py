"""Options are hydra overrides under the actor config, validated where verl validates the actor (the driver's
``validate_config`` and every worker): each bad value is an error naming its key and the allowed values."""

import subprocess
import sys

import pytest
from hydra.errors import InstantiationException
from verl.utils.config import omega_conf_to_dataclass

from verl_lambda.config import GRPOLambdaConfig, LambdaGRPOConfig
from verl_lambda.cpu.harness import compose_config

ACTOR = "actor_rollout_ref.actor"
LAMBDA = f"+{ACTOR}.lambda_grpo"
TRACE = f"+{ACTOR}.policy_loss.grpo_lambda"


def actor_from_overrides(model_dir, *overrides):
    """What verl's driver does in validate_config: instantiate the actor config from the composed config."""
    config = compose_config(model_dir, overrides)
    return omega_conf_to_dataclass(config.actor_rollout_ref.actor)


def test_defaults_need_no_option(tiny_model_dir):
    actor = actor_from_overrides(tiny_model_dir, f"{ACTOR}.loss_agg_mode=lambda_grpo")
    assert actor.loss_agg_mode == "lambda_grpo" and actor.lambda_grpo == LambdaGRPOConfig()
    actor = actor_from_overrides(tiny_model_dir, f"{ACTOR}.policy_loss.loss_mode=grpo_lambda")
    assert actor.policy_loss.grpo_lambda == GRPOLambdaConfig()


def test_options_reach_the_actor_config(tiny_model_dir):
    actor = actor_from_overrides(
        tiny_model_dir,
        f"{ACTOR}.loss_agg_mode=lambda_grpo",
        f"{LAMBDA}.lr=0.05",
        f"{LAMBDA}.base=token-mean",
        f"{LAMBDA}.min=-2",
        f"{LAMBDA}.max=2",
        f"{LAMBDA}.learnable=false",
        f"{LAMBDA}.optimizer=sgd",
        f"{ACTOR}.policy_loss.loss_mode=grpo_lambda",
        f"{TRACE}.lam=0.9",
        f"{TRACE}.style=both",
        f"{TRACE}.neg_adv_clamp=null",
    )
    assert actor.lambda_grpo == LambdaGRPOConfig(
        lr=0.05, base="token-mean", min=-2, max=2, learnable=False, optimizer="sgd"
    )
    assert actor.policy_loss.grpo_lambda == GRPOLambdaConfig(lam=0.9, style="both", neg_adv_clamp=None)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (f"{LAMBDA}.r=0", "lambda_grpo.r must be a number > 0"),
        (f"{LAMBDA}.r=-0.5", "lambda_grpo.r must be a number > 0"),
        (f"{LAMBDA}.lr=-0.1", "lambda_grpo.lr must be a number >= 0"),
        (f"{LAMBDA}.base=token-sum", "lambda_grpo.base must be one of ['seq-mean-token-mean', 'token-mean']"),
        (f"{LAMBDA}.optimizer=rmsprop", "lambda_grpo.optimizer must be one of ['adam', 'sgd']"),
        (f"{LAMBDA}.grad_clip=0", "lambda_grpo.grad_clip must be a number > 0 or null"),
        (f"{LAMBDA}.learnable=3", "lambda_grpo.learnable must be true or false"),
        (f"{LAMBDA}.colour=red", "lambda_grpo.colour is not an option. Allowed keys: base, r, init"),
        (f"{TRACE}.lam=1.5", "policy_loss.grpo_lambda.lam must be a number in [0, 1]"),
        (f"{TRACE}.gamma=-0.1", "policy_loss.grpo_lambda.gamma must be a number in [0, 1]"),
        (f"{TRACE}.style=forward", "policy_loss.grpo_lambda.style must be one of ['recent', 'both']"),
        (f"{TRACE}.variant=ppo", "policy_loss.grpo_lambda.variant must be one of ['epsilon-trace', 'epsilon-weight']"),
        (f"{TRACE}.neg_adv_clamp=0.5", "policy_loss.grpo_lambda.neg_adv_clamp must be a number <= 0 or null"),
        (f"{TRACE}.lambda=0.5", "policy_loss.grpo_lambda.lambda is not an option. Allowed keys: gamma, lam"),
        # wrong types: a value where a group belongs, words or lists where numbers belong
        (
            f"+{ACTOR}.lambda_grpo=0.5",
            "lambda_grpo must be a group of options, e.g. +actor_rollout_ref.actor.lambda_grpo.",
        ),
        (f"+{ACTOR}.policy_loss.grpo_lambda=0.9", "policy_loss.grpo_lambda must be a group of options, e.g."),
        (f"{LAMBDA}.lr=fast", "lambda_grpo.lr must be a number >= 0, got 'fast'"),
        (f"{LAMBDA}.init=[1]", "lambda_grpo.init must be a finite number, got [1]"),
        (f"{LAMBDA}.min=low", "lambda_grpo.min must be a finite number or null, got 'low'"),
        (f"{LAMBDA}.r=true", "lambda_grpo.r must be a number > 0, got True"),
        (f"{TRACE}.gamma=high", "policy_loss.grpo_lambda.gamma must be a number in [0, 1], got 'high'"),
        (f"{TRACE}.neg_adv_clamp=[0]", "policy_loss.grpo_lambda.neg_adv_clamp must be a number <= 0 or null"),
    ],
)
def test_bad_values_name_their_key(tiny_model_dir, override, message):
    with pytest.raises(InstantiationException) as info:
        actor_from_overrides(
            tiny_model_dir, f"{ACTOR}.loss_agg_mode=lambda_grpo", f"{ACTOR}.policy_loss.loss_mode=grpo_lambda", override
        )
    assert "[verl-lambda] actor_rollout_ref.actor." + message in str(info.value)


def test_inverted_bounds(tiny_model_dir):
    with pytest.raises(InstantiationException, match=r"lambda_grpo\.min \(1\) must be <= .*lambda_grpo\.max \(-1\)"):
        actor_from_overrides(
            tiny_model_dir, f"{ACTOR}.loss_agg_mode=lambda_grpo", f"{LAMBDA}.min=1", f"{LAMBDA}.max=-1"
        )
    with pytest.raises(InstantiationException, match=r"lambda_grpo\.init \(0\.0\) must lie within"):
        actor_from_overrides(tiny_model_dir, f"{ACTOR}.loss_agg_mode=lambda_grpo", f"{LAMBDA}.min=0.5")


def test_megatron_is_refused_at_config_time():
    from verl.workers.config import McoreActorConfig

    with pytest.raises(ValueError, match=r"not supported with actor\.strategy=megatron"):
        McoreActorConfig(rollout_n=2, ppo_micro_batch_size_per_gpu=2, loss_agg_mode="lambda_grpo")
    McoreActorConfig(rollout_n=2, ppo_micro_batch_size_per_gpu=2, policy_loss={"loss_mode": "grpo_lambda"})


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("override", "message"),
    [
        (f"{LAMBDA}.r=-1", "actor_rollout_ref.actor.lambda_grpo.r must be a number > 0, got -1"),
        (f"+{ACTOR}.lambda_grpo=0.5", "actor_rollout_ref.actor.lambda_grpo must be a group of options"),
    ],
)
def test_the_driver_rejects_a_bad_value_before_starting_anything(tiny_model_dir, tmp_path, override, message):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "verl.trainer.main_ppo",
            f"actor_rollout_ref.model.path={tiny_model_dir}",
            f"{ACTOR}.loss_agg_mode=lambda_grpo",
            override,
            "trainer.n_gpus_per_node=1",
            f"{ACTOR}.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "[verl-lambda] " + message in output
    assert "ray init kwargs" not in output  # failed in validate_config, before Ray or any worker started


def test_options_of_a_mode_not_selected_warn_only_when_they_would_change_something(caplog):
    """The reproduction launchers write every option of both methods, defaults included; a run of the other method
    must not warn about those, while a non-default option that is silently ignored must."""
    from verl.workers.config import FSDPActorConfig

    def build(options):
        with caplog.at_level("WARNING", logger="verl_lambda"):
            caplog.clear()
            FSDPActorConfig(strategy="fsdp", rollout_n=2, ppo_micro_batch_size_per_gpu=2, lambda_grpo=options)
        return [r.getMessage() for r in caplog.records if "are ignored unless" in r.getMessage()]

    assert build({"lr": 0.01, "init": 0.0, "r": 1.0 / 9.0}) == []
    assert len(build({"lr": 0.05})) == 1


# ---------------------------------------------------------------------------------------------------------------
# The edges of every option, through the parser verl's actor config calls (mutation testing found them untested).
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (
            LambdaGRPOConfig,
            {"validation_share": 0.0},
            "lambda_grpo.validation_share must be a number in (0, 1), got 0.0",
        ),
        (
            LambdaGRPOConfig,
            {"validation_share": 1.0},
            "lambda_grpo.validation_share must be a number in (0, 1), got 1.0",
        ),
        (LambdaGRPOConfig, {"signal": "test"}, "lambda_grpo.signal must be one of ['train', 'validation'], got 'test'"),
        (LambdaGRPOConfig, {"init": float("inf")}, "lambda_grpo.init must be a finite number, got inf"),
        (LambdaGRPOConfig, {"lr": float("nan")}, "lambda_grpo.lr must be a number >= 0, got nan"),
        (LambdaGRPOConfig, {"max": float("-inf")}, "lambda_grpo.max must be a finite number or null, got -inf"),
        (LambdaGRPOConfig, {"grad_clip": -1.0}, "lambda_grpo.grad_clip must be a number > 0 or null, got -1.0"),
        (LambdaGRPOConfig, {"init": 2.0, "max": 1.5}, "lambda_grpo.init (2.0) must lie within [lambda_grpo.min, "),
        (LambdaGRPOConfig, {"init": -2.0, "min": -1.5}, "lambda_grpo.init (-2.0) must lie within [lambda_grpo.min, "),
        (LambdaGRPOConfig, {"zeta": 1, "colour": 2}, "lambda_grpo.colour is not an option"),  # the first, sorted
        (GRPOLambdaConfig, {"lam": 1.01}, "grpo_lambda.lam must be a number in [0, 1], got 1.01"),
        (GRPOLambdaConfig, {"gamma": -0.01}, "grpo_lambda.gamma must be a number in [0, 1], got -0.01"),
        (
            GRPOLambdaConfig,
            {"neg_adv_clamp": 0.01},
            "grpo_lambda.neg_adv_clamp must be a number <= 0 or null, got 0.01",
        ),
        (GRPOLambdaConfig, {"lam": True}, "grpo_lambda.lam must be a number in [0, 1], got True"),
    ],
)
def test_each_edge_of_an_option_is_refused_naming_its_key(cls, options, message):
    with pytest.raises(ValueError) as info:
        cls.from_dict(options)
    assert message.replace("lambda_grpo.min", f"{cls.PREFIX}.min") in str(info.value)
    assert str(info.value).startswith(f"[verl-lambda] {cls.PREFIX}.")


def test_the_closed_ends_of_every_range_are_accepted():
    bounded = LambdaGRPOConfig.from_dict({"lr": 0, "min": 1.5, "max": 1.5, "init": 1.5, "validation_share": 0.999})
    assert (bounded.lr, bounded.min, bounded.max, bounded.init) == (0, 1.5, 1.5, 1.5)
    assert LambdaGRPOConfig.from_dict({"min": -1, "init": -1, "grad_clip": 1e-9}).init == -1
    assert LambdaGRPOConfig.from_dict({"validation_share": 0.001}).validation_share == 0.001
    trace = GRPOLambdaConfig.from_dict({"gamma": 0, "lam": 1, "neg_adv_clamp": 0})
    assert (trace.gamma, trace.lam, trace.neg_adv_clamp, trace.decay) == (0, 1, 0, 0)
    assert GRPOLambdaConfig.from_dict({"gamma": 0.5, "lam": 0.8}).decay == 0.4
    assert GRPOLambdaConfig.from_dict({"neg_adv_clamp": None}).neg_adv_clamp is None
    assert (
        LambdaGRPOConfig.from_dict(None) == LambdaGRPOConfig() and GRPOLambdaConfig.from_dict({}) == GRPOLambdaConfig()
    )


@pytest.mark.parametrize(("cls", "first"), [(LambdaGRPOConfig, "base"), (GRPOLambdaConfig, "gamma")])
def test_a_value_where_a_group_belongs_names_the_first_option_as_an_example(cls, first):
    with pytest.raises(ValueError) as info:
        cls.from_dict(0.5)
    assert str(info.value) == (
        f"[verl-lambda] {cls.PREFIX} must be a group of options, e.g. +{cls.PREFIX}.{first}=..., got 0.5"
    )


@pytest.mark.parametrize(("cls", "field"), [(LambdaGRPOConfig, "lr"), (GRPOLambdaConfig, "lam")])
def test_parsed_options_are_immutable(cls, field):
    """One parsed instance is shared by verl's config objects (and λ's state): nothing may change it afterwards."""
    import dataclasses

    options = cls.from_dict({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(options, field, 0.5)
