"""verl-lambda's patches of verl for the two algorithms, and only those (the CPU backend's are in
``verl_lambda.cpu.patches``; the mechanics and the version guard in ``verl_lambda.hooks``).

Each is a small named wrapper, installed when the verl module it concerns is imported, that acts only on what this
plugin owns: ``loss_agg_mode=lambda_grpo`` and ``policy_loss.loss_mode=grpo_lambda``, and their option groups
``actor.lambda_grpo`` and ``actor.policy_loss.grpo_lambda``. For every other mode, verl's original function runs
unchanged. Everything else in the package reaches verl through the accessors at the end of this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from verl_lambda.hooks import GRPO_LAMBDA_MODE, LAMBDA_GRPO_MODE, wrap, wrap_function

logger = logging.getLogger("verl_lambda")

# ----------------------------------------------------------------------------------------------------------------
# Actor config: accept the two modes and their option groups, validated where verl validates the actor.
# ----------------------------------------------------------------------------------------------------------------

# Policy losses that do not aggregate through `agg_loss(loss_agg_mode)`, so lambda_grpo cannot weight them.
_LOSSES_WITHOUT_AGG_MODE = {"sapo": "always aggregates with seq-mean-token-mean", "geo_mean": "takes a plain mean"}


def _init_accepting_options(key: str, options_cls: type, mode_field: str) -> Callable[[Callable], Callable]:
    """``__init__`` wrapper: pop ``key`` (our option group), build the original, attach the parsed options."""

    def make(original_init: Callable) -> Callable:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            values = kwargs.pop(key, None)
            original_init(self, *args, **kwargs)
            object.__setattr__(self, key, options_cls.from_dict(values))
            if values and getattr(self, mode_field) != key:
                logger.warning("verl-lambda: options under %s are ignored unless %s=%s", key, mode_field, key)

        return __init__

    return make


def _actor_post_init_with_lambda_modes(original_post_init: Callable) -> Callable:
    """Let verl validate everything else, then check what our modes need."""

    def __post_init__(self) -> None:
        mode = self.loss_agg_mode
        if mode != LAMBDA_GRPO_MODE:
            original_post_init(self)
        else:  # verl checks the mode against a fixed list; validate the rest as for its default mode
            object.__setattr__(self, "loss_agg_mode", "token-mean")
            try:
                original_post_init(self)
            finally:
                object.__setattr__(self, "loss_agg_mode", mode)
            _check_lambda_grpo_actor(self)

    return __post_init__


def _check_lambda_grpo_actor(config: Any) -> None:
    if config.strategy == "megatron":
        raise ValueError(
            "[verl-lambda] actor_rollout_ref.actor.loss_agg_mode=lambda_grpo is not supported with "
            "actor.strategy=megatron yet (λ's gradient lives on the last pipeline stage only). "
            "Use actor.strategy=fsdp or fsdp2."
        )
    loss_mode = config.policy_loss.get("loss_mode", "vanilla")
    if loss_mode in _LOSSES_WITHOUT_AGG_MODE:
        raise ValueError(
            f"[verl-lambda] loss_agg_mode=lambda_grpo cannot weight policy_loss.loss_mode={loss_mode}: that loss "
            f"{_LOSSES_WITHOUT_AGG_MODE[loss_mode]} instead of using loss_agg_mode."
        )


def patch_actor_config(module: ModuleType) -> None:
    """``verl.workers.config.actor``: our modes and option groups on ActorConfig (+ subclasses), PolicyLossConfig."""
    from verl_lambda.config import GRPOLambdaConfig, LambdaGRPOConfig

    actor_classes = [module.ActorConfig]
    actor_classes += [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, module.ActorConfig)]
    for cls in dict.fromkeys(actor_classes):
        wrap(cls, "__init__", _init_accepting_options("lambda_grpo", LambdaGRPOConfig, "loss_agg_mode"))
    wrap(module.PolicyLossConfig, "__init__", _init_accepting_options("grpo_lambda", GRPOLambdaConfig, "loss_mode"))
    wrap(module.ActorConfig, "__post_init__", _actor_post_init_with_lambda_modes)


# ----------------------------------------------------------------------------------------------------------------
# Losses: the lambda_grpo aggregation and the grpo_lambda policy loss.
# ----------------------------------------------------------------------------------------------------------------


def _agg_loss_with_lambda_grpo(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def agg_loss(loss_mat, loss_mask, loss_agg_mode, *args, **kwargs):
        if loss_agg_mode != LAMBDA_GRPO_MODE:
            return original(loss_mat, loss_mask, loss_agg_mode, *args, **kwargs)
        return lambda_grpo.agg_loss(original, loss_mat, loss_mask, *args, **kwargs)

    return agg_loss


def patch_core_algos(module: ModuleType) -> None:
    """``verl.trainer.ppo.core_algos``: ``agg_loss`` learns ``lambda_grpo``; ``grpo_lambda`` joins the registry."""
    wrap_function(module, "agg_loss", _agg_loss_with_lambda_grpo)
    if GRPO_LAMBDA_MODE not in module.POLICY_LOSS_REGISTRY:
        from verl_lambda.grpo_lambda import compute_policy_loss_grpo_lambda

        module.register_policy_loss(GRPO_LAMBDA_MODE)(compute_policy_loss_grpo_lambda)


def _ppo_loss_with_length_weights(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def ppo_loss(config, model_output, data, dp_group=None):
        if getattr(config, "loss_agg_mode", None) != LAMBDA_GRPO_MODE:
            return original(config, model_output, data, dp_group)
        with lambda_grpo.length_weighted_loss(config, data):
            return original(config, model_output, data, dp_group)

    return ppo_loss


def _get_policy_loss_fn_weighted(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def get_policy_loss_fn(name):
        return lambda_grpo.weighting_policy_term(original(name))

    return get_policy_loss_fn


def patch_losses(module: ModuleType) -> None:
    """``verl.workers.utils.losses``: ``ppo_loss`` applies λ-GRPO's weights to its policy-gradient term only."""
    wrap_function(module, "ppo_loss", _ppo_loss_with_length_weights)
    # Only this module's name is wrapped: the weights must reach the policy loss that ppo_loss calls, and no other.
    wrap(module, "get_policy_loss_fn", _get_policy_loss_fn_weighted)


# ----------------------------------------------------------------------------------------------------------------
# Training worker: group lengths across ranks, λ's optimizer step, metrics and checkpoints.
# ----------------------------------------------------------------------------------------------------------------


def _train_mini_batch_with_groups(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def train_mini_batch(self, data):
        state = lambda_grpo.lambda_state(self)
        if state is None:
            return original(self, data)
        report = lambda_grpo.attach_group_lengths(data, state, self.engine.get_data_parallel_group())
        output = original(self, data)
        return lambda_grpo.add_step_metrics(output, state, report)

    return train_mini_batch


def _train_batch_with_lambda_step(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def train_batch(self, data):
        state = lambda_grpo.lambda_state(self)
        if state is None:
            return original(self, data)
        state.zero_grad()
        lambda_grpo.attach_weights(data, state)
        with lambda_grpo.active_lambda(state):
            output = original(self, data)
        state.step(self.engine.get_data_parallel_group())
        return output

    return train_batch


def _save_checkpoint_with_lambda(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
        result = original(self, local_path, hdfs_path, global_step, max_ckpt_to_keep)
        state = lambda_grpo.lambda_state(self)
        if state is not None:
            lambda_grpo.save_lambda(state, local_path)
        return result

    return save_checkpoint


def _load_checkpoint_with_lambda(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def load_checkpoint(self, local_path, hdfs_path=None, del_local_after_load=False):
        state = lambda_grpo.lambda_state(self)
        if state is not None:  # before the original, which may delete local_path
            lambda_grpo.load_lambda(state, local_path)
        return original(self, local_path, hdfs_path, del_local_after_load)

    return load_checkpoint


def patch_engine_workers(module: ModuleType) -> None:
    """``verl.workers.engine_workers``: λ lives with the actor's TrainingWorker, next to its engine."""
    worker = module.TrainingWorker
    wrap(worker, "train_mini_batch", _train_mini_batch_with_groups)
    wrap(worker, "train_batch", _train_batch_with_lambda_step)
    wrap(worker, "save_checkpoint", _save_checkpoint_with_lambda)
    wrap(worker, "load_checkpoint", _load_checkpoint_with_lambda)


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "verl.workers.config.actor": patch_actor_config,
    "verl.trainer.ppo.core_algos": patch_core_algos,
    "verl.workers.utils.losses": patch_losses,
    "verl.workers.engine_workers": patch_engine_workers,
}
