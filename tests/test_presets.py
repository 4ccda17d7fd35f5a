"""The method presets (verl_lambda/presets.py): each composes and validates with verl, sets exactly what its method
changes, and the labelled variants mean what their names say (the DAPO pair, the GRPO-λ styles × variants, the clamp
switches; ``grpo_clamp`` is verl's vanilla loss on clamped advantages)."""

import dataclasses
import subprocess
import sys

import pytest
import torch
from verl.trainer.ppo import core_algos
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import FSDPActorConfig, PolicyLossConfig

from verl_lambda import presets
from verl_lambda.config import GRPO_LAMBDA_KEY, LAMBDA_GRPO_KEY, GRPOLambdaConfig, LambdaGRPOConfig
from verl_lambda.cpu.harness import compose_config

ACTOR = "actor_rollout_ref.actor"


def options(algo: str) -> tuple[LambdaGRPOConfig, GRPOLambdaConfig]:
    return presets.method_options(presets.overrides(algo))


def test_names_aliases_and_lookup():
    assert presets.canonical("dapo") == "dapo_clip_higher"  # plain dapo keeps its first meaning
    assert presets.overrides("dapo") == presets.overrides("dapo_clip_higher")
    assert set(presets.ALGORITHMS) == set(presets.PRESETS) | set(presets.ALIASES)
    expected = {
        "grpo", "grpo_clamp", "dapo_token_mean", "dapo_clip_higher", "lambda_grpo", "lambda_grpo_validation",
        "grpo_lambda", "grpo_lambda_both", "grpo_lambda_eps_weight", "grpo_lambda_both_eps_weight",
        "grpo_lambda_noclamp", "lambda_grpo+grpo_lambda",
    }  # fmt: skip
    assert set(presets.PRESETS) == expected
    assert (presets.LAMBDA_GRPO_KEY, presets.GRPO_LAMBDA_KEY) == (LAMBDA_GRPO_KEY, GRPO_LAMBDA_KEY)
    with pytest.raises(ValueError, match="ALGO must be one of"):
        presets.overrides("ppo")
    done = subprocess.run([sys.executable, "-m", "verl_lambda.presets", "--list"], capture_output=True, text=True)
    assert done.returncode == 0 and "dapo_clip_higher (alias: dapo)" in done.stdout


def _keys(algo: str) -> dict[str, str]:
    return dict(o.lstrip("+").split("=", 1) for o in presets.overrides(algo))


def test_the_two_dapos():
    grpo, token_mean, clip_higher = _keys("grpo"), _keys("dapo_token_mean"), _keys("dapo_clip_higher")
    # the λ-GRPO paper's DAPO: GRPO with token-mean aggregation, nothing else
    assert {k: v for k, v in token_mean.items() if grpo.get(k) != v} == {f"{ACTOR}.loss_agg_mode": "token-mean"}
    assert {k: v for k, v in clip_higher.items() if token_mean.get(k) != v} == {
        f"{ACTOR}.clip_ratio_low": "0.2",
        f"{ACTOR}.clip_ratio_high": "0.28",
        f"{ACTOR}.use_kl_loss": "False",
    }


@pytest.mark.parametrize(
    ("algo", "style", "variant", "lam", "clamp"),
    [
        ("grpo_lambda", "recent", "epsilon-trace", 0.99, -0.1),
        ("grpo_lambda_both", "both", "epsilon-trace", 0.99, -0.1),
        ("grpo_lambda_eps_weight", "recent", "epsilon-weight", 0.99, -0.1),
        ("grpo_lambda_both_eps_weight", "both", "epsilon-weight", 0.99, -0.1),
        ("grpo_lambda_noclamp", "recent", "epsilon-trace", 0.99, None),
        ("grpo_clamp", "recent", "epsilon-trace", 0.0, -0.1),
    ],
)
def test_grpo_lambda_styles_variants_and_clamp(algo, style, variant, lam, clamp):
    _, trace = options(algo)
    assert trace == GRPOLambdaConfig(lam=lam, style=style, variant=variant, neg_adv_clamp=clamp)
    assert _keys(algo)[f"{ACTOR}.policy_loss.loss_mode"] == "grpo_lambda"
    assert _keys(algo)[f"{ACTOR}.loss_agg_mode"] == "seq-mean-token-mean"  # GRPO's aggregation
    assert presets.method_keys() >= {f"{ACTOR}.policy_loss.grpo_lambda.style", f"{ACTOR}.loss_agg_mode"}


def test_lambda_grpo_presets():
    assert options("lambda_grpo") == (LambdaGRPOConfig(), GRPOLambdaConfig())
    assert options("lambda_grpo_validation")[0] == LambdaGRPOConfig(signal="validation")


@pytest.mark.parametrize("algo", sorted(presets.ALGORITHMS))
def test_every_preset_composes_and_validates(tiny_model_dir, algo):
    """verl's config with the preset, and the actor config verl's driver builds from it (validate_config does)."""
    config = compose_config(tiny_model_dir, presets.overrides(algo))
    actor = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    keys = _keys(algo)
    assert actor.loss_agg_mode == keys[f"{ACTOR}.loss_agg_mode"]
    assert actor.policy_loss.loss_mode == keys[f"{ACTOR}.policy_loss.loss_mode"]
    lambda_grpo, grpo_lambda = options(algo)
    assert actor.lambda_grpo == lambda_grpo and actor.policy_loss.grpo_lambda == grpo_lambda
    if presets.canonical(algo) == "dapo_clip_higher":
        assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.use_kl_loss) == (0.2, 0.28, False)


def test_grpo_clamp_is_vanilla_on_clamped_advantages():
    """ALGORITHMS.md §4: κ = 0 with ``recent`` is verl's vanilla loss; with the clamp, on floored advantages."""
    _, trace = options("grpo_clamp")
    gen = torch.Generator().manual_seed(3)
    log_prob = (torch.randn(6, 20, generator=gen) * 0.5 - 2).requires_grad_()
    old = log_prob.detach() + torch.randn(6, 20, generator=gen)
    advantages = torch.randn(6, 1, generator=gen).expand(6, 20).clone()
    mask = (torch.arange(20)[None] < torch.randint(1, 21, (6, 1), generator=gen)).float()

    def actor(**grpo_lambda):
        config = FSDPActorConfig(
            strategy="fsdp",
            rollout_n=2,
            ppo_micro_batch_size_per_gpu=2,
            loss_agg_mode="seq-mean-token-mean",
            policy_loss=PolicyLossConfig(loss_mode="grpo_lambda", grpo_lambda=grpo_lambda),
        )
        config.global_batch_info.update(
            dp_size=1, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None
        )
        return config

    def loss(fn, adv, config):
        log_prob.grad = None
        value, _ = fn(old, log_prob, adv, mask, "seq-mean-token-mean", config, None)
        value.backward()
        return value.detach(), log_prob.grad.clone()

    floored = torch.where(advantages < trace.neg_adv_clamp, trace.neg_adv_clamp, advantages)
    ours = loss(core_algos.get_policy_loss_fn("grpo_lambda"), advantages, actor(**dataclasses.asdict(trace)))
    vanilla = loss(core_algos.compute_policy_loss_vanilla, floored, actor())
    assert (advantages < -0.1).any()
    assert torch.equal(ours[0], vanilla[0]) and torch.equal(ours[1], vanilla[1])
