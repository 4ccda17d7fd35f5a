"""verl-lambda's patches of verl for the two algorithms, and only those (the CPU backend's are in
``verl_lambda.cpu.patches``; the mechanics and the version guard in ``verl_lambda.hooks``).

Each is a small named wrapper, installed when the verl module it concerns is imported, that acts only on what this
plugin owns: ``loss_agg_mode=lambda_grpo`` and ``policy_loss.loss_mode=grpo_lambda``, and their option groups
``actor.lambda_grpo`` and ``actor.policy_loss.grpo_lambda``. For every other mode, verl's original function runs
unchanged. ``PATCHES``, the table of them, is handed to ``verl_lambda.hooks.apply`` by ``verl_lambda.plugin``.
Everything else in the package reaches verl through the accessors of ``verl_lambda.verl_access``. The wrappers
import the algorithms when they are built, not at import: the plugin imports this module in every process.

Layer 5 (patch tables).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

from verl_lambda import verl_access
from verl_lambda.hooks import GROUP_MEAN_MODE, GRPO_LAMBDA_MODE, LAMBDA_GRPO_MODE, wrap, wrap_function

logger = logging.getLogger("verl_lambda")

OUR_AGG_MODES = (LAMBDA_GRPO_MODE, GROUP_MEAN_MODE)  # actor.loss_agg_mode values this plugin owns

# ----------------------------------------------------------------------------------------------------------------
# Actor config: accept the two modes and their option groups, validated where verl validates the actor.
# ----------------------------------------------------------------------------------------------------------------


def _init_accepting_options(
    key: str, options_cls: type, mode_field: str, on_selected: Callable[[Any], None] | None = None
) -> Callable[[Callable], Callable]:
    """``__init__`` wrapper: pop ``key`` (our option group), build the original, attach the parsed options.

    ``on_selected(options)`` runs when the config selects our mode (``mode_field == key``).
    """

    def make(original_init: Callable) -> Callable:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            values = kwargs.pop(key, None)
            original_init(self, *args, **kwargs)
            options = options_cls.from_dict(values)
            object.__setattr__(self, key, options)
            selected = getattr(self, mode_field) == key
            # the reproduction launchers record every option of both methods, defaults included: warn only about a
            # setting that would have changed something
            if values and not selected and options != options_cls():
                logger.warning("verl-lambda: options under %s are ignored unless %s=%s", key, mode_field, key)
            if selected and on_selected is not None:
                on_selected(options)

        return __init__

    return make


def _lambda_grpo_selected(options: Any) -> None:
    """A process that builds a lambda_grpo actor config aggregates ``agg_loss("lambda_grpo")`` outside the actor's
    policy term (entropy metric, distillation) with the configured base."""
    from verl_lambda import lambda_grpo

    lambda_grpo.use_base_outside_policy_term(options.base)


def _actor_post_init_with_lambda_modes(original_post_init: Callable) -> Callable:
    """Let verl validate everything else, then check what our modes need."""

    def __post_init__(self) -> None:
        mode = self.loss_agg_mode
        if mode not in OUR_AGG_MODES:
            original_post_init(self)
        else:  # verl checks the mode against a fixed list; validate the rest as for its default mode
            object.__setattr__(self, "loss_agg_mode", "token-mean")
            try:
                original_post_init(self)
            finally:
                object.__setattr__(self, "loss_agg_mode", mode)
            _check_actor_for_our_agg_mode(self, mode)

    return __post_init__


# Engine options that split the model into pipeline stages; λ's gradient would then exist on the last stage only.
_PIPELINE_FIELDS = ("pipeline_parallel_size", "pipeline_model_parallel_size", "pp_size")


def _check_actor_for_our_agg_mode(config: Any, mode: str) -> None:
    if config.strategy == "megatron":
        why = "λ's gradient lives on the last pipeline stage only" if mode == LAMBDA_GRPO_MODE else "untested there"
        raise ValueError(
            f"[verl-lambda] actor_rollout_ref.actor.loss_agg_mode={mode} is not supported with "
            f"actor.strategy=megatron yet ({why}). Use actor.strategy=fsdp or fsdp2."
        )
    if mode == LAMBDA_GRPO_MODE:
        # the engine's own option group (``torchtitan``, ``veomni``, ...); ``engine`` is bound to it only after this
        for group, options in vars(config).items():
            for field in _PIPELINE_FIELDS:
                stages = getattr(options, field, None) or 1
                if group != "engine" and isinstance(stages, int) and stages > 1:
                    raise ValueError(
                        f"[verl-lambda] actor_rollout_ref.actor.loss_agg_mode=lambda_grpo is not supported with "
                        f"pipeline parallelism: actor_rollout_ref.actor.{group}.{field}={stages} (λ's gradient would "
                        "exist on the last pipeline stage only, and global rank 0 would save a λ that never moved). "
                        "Set it to 1."
                    )
    loss_mode = config.policy_loss.get("loss_mode", "vanilla")
    if not _forwards_loss_agg_mode(loss_mode):
        action = "weight" if mode == LAMBDA_GRPO_MODE else "aggregate"
        raise ValueError(
            f"[verl-lambda] loss_agg_mode={mode} cannot {action} policy_loss.loss_mode={loss_mode}: in this verl, "
            "that loss does not aggregate through agg_loss(loss_agg_mode) (it uses a fixed mode or a plain mean)."
        )


def _forwards_loss_agg_mode(loss_mode: str) -> bool:
    """Whether the registered policy loss passes its ``loss_agg_mode`` on (to ``agg_loss`` or to the loss it
    delegates to), read from its source. Which losses do changes between verl releases (0.9.0's ``gspo`` always used
    ``seq-mean-token-mean``, 0.9.1's honours the mode); an unknown or unreadable loss is left to the check at its
    first call (``length_weighted_loss``)."""
    import ast
    import inspect
    import textwrap

    from verl.trainer.ppo import core_algos

    function = core_algos.POLICY_LOSS_REGISTRY.get(loss_mode)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (TypeError, OSError, SyntaxError):
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            arguments = [*node.args, *(keyword.value for keyword in node.keywords if keyword.arg == "loss_agg_mode")]
            if any(isinstance(arg, ast.Name) and arg.id == "loss_agg_mode" for arg in arguments):
                return True
    return False


def _critic_post_init_refusing_lambda_grpo(original_post_init: Callable) -> Callable:
    def __post_init__(self) -> None:
        if self.loss_agg_mode in OUR_AGG_MODES:
            what = (
                "λ-GRPO weights the actor's policy loss only"
                if self.loss_agg_mode == LAMBDA_GRPO_MODE
                else "its prompt groups exist in the actor's update only"
            )
            raise ValueError(
                f"[verl-lambda] critic.loss_agg_mode={self.loss_agg_mode}: {what}. verl's critic inherits "
                "actor_rollout_ref.actor.loss_agg_mode unless critic.loss_agg_mode is set; set it explicitly, e.g. "
                "critic.loss_agg_mode=token-mean."
            )
        original_post_init(self)

    return __post_init__


def patch_critic_config(module: ModuleType) -> None:
    """``verl.workers.config.critic``: a critic never aggregates with ``lambda_grpo`` (it would silently get an
    unweighted base aggregation it did not ask for); it must name its own mode."""
    wrap(module.CriticConfig, "__post_init__", _critic_post_init_refusing_lambda_grpo)


def patch_actor_config(module: ModuleType) -> None:
    """``verl.workers.config.actor``: our modes and option groups on ActorConfig (+ subclasses), PolicyLossConfig."""
    from verl_lambda.config import GRPOLambdaConfig, LambdaGRPOConfig

    actor_classes = [module.ActorConfig]
    actor_classes += [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, module.ActorConfig)]
    for cls in dict.fromkeys(actor_classes):
        wrap(
            cls,
            "__init__",
            _init_accepting_options("lambda_grpo", LambdaGRPOConfig, "loss_agg_mode", _lambda_grpo_selected),
        )
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


def _agg_loss_with_group_mean(original: Callable) -> Callable:
    from verl_lambda import group_mean

    def agg_loss(loss_mat, loss_mask, loss_agg_mode, *args, **kwargs):
        if loss_agg_mode != GROUP_MEAN_MODE:
            return original(loss_mat, loss_mask, loss_agg_mode, *args, **kwargs)
        return group_mean.agg_loss(original, loss_mat, loss_mask, *args, **kwargs)

    return agg_loss


def patch_core_algos(module: ModuleType) -> None:
    """``verl.trainer.ppo.core_algos``: ``agg_loss`` learns ``lambda_grpo`` and ``group-mean-token-mean``;
    ``grpo_lambda`` joins the registry."""
    wrap_function(module, "agg_loss", _agg_loss_with_lambda_grpo)
    wrap_function(module, "agg_loss", _agg_loss_with_group_mean)
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


def _ppo_loss_with_group_mean(original: Callable) -> Callable:
    from verl_lambda import group_mean

    def ppo_loss(config, model_output, data, dp_group=None):
        if getattr(config, "loss_agg_mode", None) != GROUP_MEAN_MODE:
            return original(config, model_output, data, dp_group)
        with group_mean.group_mean_loss(data):
            return original(config, model_output, data, dp_group)

    return ppo_loss


def _get_policy_loss_fn_weighted(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def get_policy_loss_fn(name):
        return lambda_grpo.weighting_policy_term(original(name))

    return get_policy_loss_fn


def patch_losses(module: ModuleType) -> None:
    """``verl.workers.utils.losses``: ``ppo_loss`` applies λ-GRPO's weights to its policy-gradient term only, and
    hands the group token mean its rows' group counts."""
    wrap_function(module, "ppo_loss", _ppo_loss_with_length_weights)
    wrap_function(module, "ppo_loss", _ppo_loss_with_group_mean)
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
        lambda_grpo.attach_weights(data, state, self.engine.get_data_parallel_group())
        wrap(self.engine, "optimizer_step", _optimizer_step_then_lambda)  # this engine instance only, once
        with lambda_grpo.active_lambda(state):
            return original(self, data)  # λ steps inside, right after the model's optimizer step

    return train_batch


def _train_mini_batch_with_group_tokens(original: Callable) -> Callable:
    from verl_lambda import group_mean

    def train_mini_batch(self, data):
        if group_mean.uses_group_mean(self):
            group_mean.attach_group_tokens(data, self.engine.get_data_parallel_group())
        return original(self, data)

    return train_mini_batch


def _train_batch_with_group_count(original: Callable) -> Callable:
    from verl_lambda import group_mean

    def train_batch(self, data):
        if not group_mean.uses_group_mean(self):
            return original(self, data)
        n_groups = group_mean.mini_batch_groups(data, self.engine.get_data_parallel_group())
        with group_mean.active_groups(n_groups):
            return original(self, data)

    return train_batch


def loss_scaler(engine: Any) -> Any | None:
    """The engine's enabled gradient scaler (verl's FSDP engine uses a ``ShardedGradScaler`` for fp16), or None."""
    scaler = getattr(engine, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def _optimizer_step_then_lambda(original: Callable) -> Callable:
    """An engine's ``optimizer_step`` (bound method) followed by λ's step, which uses what only this moment knows:
    the loss scale the backward pass used (the scaler updates it inside the step) and whether the model stepped."""
    from verl_lambda import lambda_grpo

    engine = original.__self__

    def optimizer_step():
        state = lambda_grpo.stepping_lambda()
        if state is None:
            return original()
        scaler = loss_scaler(engine)
        scale = scaler.get_scale() if scaler is not None else 1.0
        grad_norm = original()
        if scaler is not None:  # the scaler skipped the model's step iff it found inf/NaN, and then it backs off
            model_stepped = scaler.get_scale() >= scale
        else:  # verl skips the model's step on a non-finite grad norm
            model_stepped = math.isfinite(float(grad_norm))
        state.step(engine.get_data_parallel_group(), loss_scale=scale, model_stepped=model_stepped)
        return grad_norm

    return optimizer_step


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
    """``verl.workers.engine_workers``: λ lives with the actor's TrainingWorker, next to its engine (whose
    ``optimizer_step`` the first λ-GRPO update wraps on that instance)."""
    worker = module.TrainingWorker
    wrap(worker, "train_mini_batch", _train_mini_batch_with_groups)
    wrap(worker, "train_batch", _train_batch_with_lambda_step)
    wrap(worker, "train_mini_batch", _train_mini_batch_with_group_tokens)
    wrap(worker, "train_batch", _train_batch_with_group_count)
    wrap(worker, "save_checkpoint", _save_checkpoint_with_lambda)
    wrap(worker, "load_checkpoint", _load_checkpoint_with_lambda)


# ----------------------------------------------------------------------------------------------------------------
# Trainer: what each row carries to the actor, and the base aggregation outside the actor's policy term.
# ----------------------------------------------------------------------------------------------------------------


def _rollout_correction_keeping_lengths(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def compute_rollout_correction_and_add_to_batch(batch, rollout_corr_config):
        # verl's rejection sampling overwrites response_mask; λ-GRPO's group statistics need the true lengths.
        # One (bs,) tensor, kept whichever the mode: this function does not know the actor's mode.
        lambda_grpo.keep_response_lengths(batch)
        return original(batch, rollout_corr_config)

    return compute_rollout_correction_and_add_to_batch


def patch_rollout_correction(module: ModuleType) -> None:
    """``verl.trainer.ppo.rollout_corr_helper``: keep the response lengths before rejection sampling masks tokens."""
    wrap_function(module, "compute_rollout_correction_and_add_to_batch", _rollout_correction_keeping_lengths)


def _uses_lambda_grpo(trainer_config: Any) -> bool:
    return trainer_config.actor_rollout_ref.actor.get("loss_agg_mode") == LAMBDA_GRPO_MODE


def _trainer_init_with_lambda_base(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo
    from verl_lambda.config import LambdaGRPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if _uses_lambda_grpo(self.config):  # the trainer's entropy metric aggregates with the actor's mode
            options = LambdaGRPOConfig.from_dict(self.config.actor_rollout_ref.actor.get("lambda_grpo"))
            lambda_grpo.use_base_outside_policy_term(options.base)

    return __init__


def patch_legacy_trainer(module: ModuleType) -> None:
    """``verl.trainer.ppo.ray_trainer`` (``trainer.use_v1=false``): the configured base for the entropy metric."""
    wrap(module.RayPPOTrainer, "__init__", _trainer_init_with_lambda_base)


def patch_fully_async_trainer(module: ModuleType) -> None:
    """``verl.experimental.fully_async_policy.fully_async_trainer``: its ``FullyAsyncTrainer`` sets itself up without
    ``RayPPOTrainer.__init__`` and builds no ``ActorConfig``, so it learns the configured base here (its entropy
    metric aggregates with the actor's mode). Its actor workers are verl's engine workers, patched as any other."""
    for cls in verl_access.ray_actor_classes(module.FullyAsyncTrainer):
        wrap(cls, "__init__", _trainer_init_with_lambda_base)


def _compute_advantage_marking_rows(original: Callable) -> Callable:
    from verl_lambda import lambda_grpo

    def _compute_advantage(self, batch, metrics):
        if not _uses_lambda_grpo(self.config):
            return original(self, batch, metrics)
        with lambda_grpo.capturing_response_lengths() as captured:
            batch = original(self, batch, metrics)
        fields = lambda_grpo.row_fields(batch.keys, self.config.algorithm.adv_estimator, captured)
        return verl_access.put_rows(batch, fields) if fields else batch

    return _compute_advantage


def patch_v1_trainer(module: ModuleType) -> None:
    """``verl.trainer.ppo.v1.trainer_base``: rows carry their true length and verl's GRPO group membership to the
    actor (the V1 trainer sends the actor only what its store holds), and the entropy metric gets the configured
    base."""
    wrap(module.PPOTrainer, "__init__", _trainer_init_with_lambda_base)
    wrap(module.PPOTrainer, "_compute_advantage", _compute_advantage_marking_rows)


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "verl.workers.config.actor": patch_actor_config,
    "verl.trainer.ppo.core_algos": patch_core_algos,
    "verl.workers.utils.losses": patch_losses,
    "verl.workers.engine_workers": patch_engine_workers,
    "verl.workers.config.critic": patch_critic_config,
    "verl.trainer.ppo.rollout_corr_helper": patch_rollout_correction,
    "verl.trainer.ppo.ray_trainer": patch_legacy_trainer,
    "verl.trainer.ppo.v1.trainer_base": patch_v1_trainer,
    "verl.experimental.fully_async_policy.fully_async_trainer": patch_fully_async_trainer,
}
