"""The one place where verl-lambda touches verl internals.

Every change to verl is a small named wrapper below, applied idempotently when the verl module it concerns is
imported (a post-import hook), so loading the plugin costs nothing in processes that never import those modules
(vLLM workers, reward workers). Everything else in the package reaches verl only through public classes and
registries. Wrappers act only on what this plugin owns:

- ``loss_agg_mode=lambda_grpo`` and ``policy_loss.loss_mode=grpo_lambda``, and their option groups
  ``actor.lambda_grpo`` and ``actor.policy_loss.grpo_lambda``;
- the ``cpu`` platform (``VERL_PLATFORM=cpu``) and the ``hf`` rollout (``rollout.name=hf``).

For every other mode, verl's original function runs unchanged.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import logging
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

logger = logging.getLogger("verl_lambda")

# Spelled out rather than imported: this module must stay importable (for the failure guard) even when the rest
# of the package is broken. verl_lambda.config defines the same names.
LAMBDA_GRPO_MODE = "lambda_grpo"
GRPO_LAMBDA_MODE = "grpo_lambda"

SUPPORTED_VERL_VERSIONS = ("0.9.1",)
_MARK = "__verl_lambda_wrapper__"


class UnsupportedVerlVersion(RuntimeError):
    pass


def check_verl_version(version: str | None = None) -> str:
    """Fail with the supported versions unless ``version`` (default: the installed verl's) is one of them."""
    if version is None:
        import verl

        version = getattr(verl, "__version__", "unknown")
    if version not in SUPPORTED_VERL_VERSIONS:
        raise UnsupportedVerlVersion(
            f"verl-lambda supports verl {', '.join(SUPPORTED_VERL_VERSIONS)}; the installed verl is {version}. "
            f"Install a supported verl (pip install 'verl[verl-core]=={SUPPORTED_VERL_VERSIONS[-1]}') or a "
            "verl-lambda release made for your verl version."
        )
    return version


# ----------------------------------------------------------------------------------------------------------------
# Mechanics: post-import hooks, wrapping, re-binding names imported with `from x import y`.
# ----------------------------------------------------------------------------------------------------------------

_HOOKS: dict[str, list[Callable[[ModuleType], None]]] = {}
_HOOK_LOCK = threading.RLock()


class _HookedLoader(importlib.abc.Loader):
    """Runs the registered hooks right after the real loader has executed the module."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _run_hooks(module.__name__, module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... for tools that inspect loaders
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None):
        if fullname not in _HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and not isinstance(spec.loader, _HookedLoader):
                    spec.loader = _HookedLoader(spec.loader)
                return spec
        return None


_FINDER = _PostImportFinder()


def _run_hooks(name: str, module: ModuleType) -> None:
    with _HOOK_LOCK:
        hooks = _HOOKS.pop(name, [])
    for hook in hooks:
        _run_hook(hook, module)


def _run_hook(hook: Callable[[ModuleType], None], module: ModuleType) -> None:
    """A failing patch must neither break verl's own modes nor pass silently: report it and guard our modes."""
    try:
        hook(module)
    except Exception as exc:
        from verl_lambda import plugin

        plugin.report_failure(RuntimeError(f"patching {module.__name__} with {hook.__name__} failed: {exc!r}"))


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook(module)`` once ``name`` is imported: now if it already is, else right after its import."""
    with _HOOK_LOCK:
        if name not in sys.modules:
            _HOOKS.setdefault(name, []).append(hook)
            if _FINDER not in sys.meta_path:
                sys.meta_path.insert(0, _FINDER)
            return
    _run_hook(hook, sys.modules[name])


def _wrap(owner: Any, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    """Replace ``owner.name`` with ``make_wrapper(original)`` once; keeps verl's decorator attributes."""
    original = getattr(owner, name)
    # update_wrapper copies __dict__, so a wrapper's mark lists every wrapper of ours below it too.
    marks = getattr(original, _MARK, ())
    if make_wrapper.__qualname__ in marks:
        return
    wrapper = functools.update_wrapper(make_wrapper(original), original)
    setattr(wrapper, _MARK, (*marks, make_wrapper.__qualname__))
    setattr(owner, name, wrapper)


def _rebind(original: Any, replacement: Any) -> None:
    """Point every verl module that imported ``original`` by name (``from m import f``) at ``replacement``."""
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("verl."):
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                setattr(module, attr, replacement)


def _wrap_function(module: ModuleType, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    original = getattr(module, name)
    _wrap(module, name, make_wrapper)
    if getattr(module, name) is not original:
        _rebind(original, getattr(module, name))


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
        _wrap(cls, "__init__", _init_accepting_options("lambda_grpo", LambdaGRPOConfig, "loss_agg_mode"))
    _wrap(module.PolicyLossConfig, "__init__", _init_accepting_options("grpo_lambda", GRPOLambdaConfig, "loss_mode"))
    _wrap(module.ActorConfig, "__post_init__", _actor_post_init_with_lambda_modes)


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
    _wrap_function(module, "agg_loss", _agg_loss_with_lambda_grpo)
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
    _wrap_function(module, "ppo_loss", _ppo_loss_with_length_weights)
    # Only this module's name is wrapped: the weights must reach the policy loss that ppo_loss calls, and no other.
    _wrap(module, "get_policy_loss_fn", _get_policy_loss_fn_weighted)


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
    _wrap(worker, "train_mini_batch", _train_mini_batch_with_groups)
    _wrap(worker, "train_batch", _train_batch_with_lambda_step)
    _wrap(worker, "save_checkpoint", _save_checkpoint_with_lambda)
    _wrap(worker, "load_checkpoint", _load_checkpoint_with_lambda)


# ----------------------------------------------------------------------------------------------------------------
# CPU backend: the `cpu` platform, gloo, the FSDP engines on CPU, the `hf` rollout.
# ----------------------------------------------------------------------------------------------------------------


def register_cpu_platform() -> None:
    from verl.plugin.platform import PlatformRegistry

    from verl_lambda.cpu.platform import PLATFORM_NAME, PlatformCPU

    if PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)


def _process_group_on_gloo(original: Callable) -> Callable:
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        # verl builds "cpu:gloo,<device>:<backend>", which torch rejects when the device is the CPU itself.
        if backend is None and _cpu_platform_selected():
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    return initialize_global_process_group_ray


def _cpu_platform_selected() -> bool:
    if os.environ.get("VERL_PLATFORM", "").strip().lower() != "cpu":
        return False
    from verl_lambda.cpu.platform import is_cpu_platform_selected

    return is_cpu_platform_selected()


def patch_distributed(module: ModuleType) -> None:
    """``verl.utils.distributed``: a gloo-only process group on the cpu platform."""
    _wrap_function(module, "initialize_global_process_group_ray", _process_group_on_gloo)


def _offload_policy_without_pinning(original: Callable) -> Callable:
    def CPUOffloadPolicy(*args, **kwargs):  # stands in for the class of the same name
        # verl gives forward-only models (the reference) pinned CPU offload; pinning needs an accelerator, and
        # offloading to the CPU is a no-op when the device is the CPU.
        if _cpu_platform_selected():
            kwargs["pin_memory"] = False
        return original(*args, **kwargs)

    return CPUOffloadPolicy


def patch_fsdp_engines(module: ModuleType) -> None:
    """``verl.workers.engine.fsdp.transformer_impl``: make verl's FSDP engines selectable on the cpu platform, and
    let their reference models build there."""
    from verl.workers.engine.base import EngineRegistry

    _wrap(module, "CPUOffloadPolicy", _offload_policy_without_pinning)

    for model_type, engine_cls in (
        ("language_model", module.FSDPEngineWithLMHead),
        ("value_model", module.FSDPEngineWithValueHead),
    ):
        registry = EngineRegistry._engines.get(model_type, {})
        missing = [backend for backend in ("fsdp", "fsdp2") if "cpu" not in registry.get(backend, {})]
        if missing:
            EngineRegistry.register(model_type=model_type, backend=missing, device="cpu")(engine_cls)


def patch_rollout_registry(module: ModuleType) -> None:
    """``verl.workers.rollout.base``: the ``hf`` rollout's trainer-side adapter."""
    module._ROLLOUT_REGISTRY.setdefault(("hf", "async"), "verl_lambda.cpu.hf_rollout.HFServerAdapter")


def _load_hf_replica() -> type:
    from verl_lambda.cpu.hf_rollout import HFReplica

    return HFReplica


def patch_replica_registry(module: ModuleType) -> None:
    """``verl.workers.rollout.replica``: the ``hf`` rollout's server replica."""
    if "hf" not in module.RolloutReplicaRegistry._registry:
        module.RolloutReplicaRegistry.register("hf", _load_hf_replica)


# ----------------------------------------------------------------------------------------------------------------
# Failure path: when the plugin could not load, selecting one of its modes names the reason.
# ----------------------------------------------------------------------------------------------------------------


def _init_refusing_our_modes(reason: BaseException) -> Callable[[Callable], Callable]:
    def make(original_init: Callable) -> Callable:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            ours = {"loss_agg_mode": LAMBDA_GRPO_MODE, "loss_mode": GRPO_LAMBDA_MODE}
            if any(kwargs.get(key) == mode for key, mode in ours.items()) or {"lambda_grpo", "grpo_lambda"} & set(
                kwargs
            ):
                raise RuntimeError(
                    f"verl-lambda is installed but failed to load, so its modes are unavailable: {reason}"
                )
            original_init(self, *args, **kwargs)

        return __init__

    return make


def install_mode_guard(reason: BaseException) -> None:
    """After a failed load: ``lambda_grpo`` / ``grpo_lambda`` and their options raise ``reason``, naming verl-lambda."""

    def guard(module: ModuleType) -> None:
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, module.ActorConfig)]
        for cls in dict.fromkeys([module.ActorConfig, module.PolicyLossConfig, *classes]):
            _wrap(cls, "__init__", _init_refusing_our_modes(reason))

    when_imported("verl.workers.config.actor", guard)


# ----------------------------------------------------------------------------------------------------------------

PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "verl.workers.config.actor": patch_actor_config,
    "verl.trainer.ppo.core_algos": patch_core_algos,
    "verl.workers.utils.losses": patch_losses,
    "verl.workers.engine_workers": patch_engine_workers,
    "verl.utils.distributed": patch_distributed,
    "verl.workers.engine.fsdp.transformer_impl": patch_fsdp_engines,
    "verl.workers.rollout.base": patch_rollout_registry,
    "verl.workers.rollout.replica": patch_replica_registry,
}

_APPLIED = False


def apply() -> None:
    """Check the verl version, then install every patch (each runs when its module is imported). Idempotent."""
    global _APPLIED
    if _APPLIED:
        return
    check_verl_version()
    register_cpu_platform()
    for module_name, patch in PATCHES.items():
        when_imported(module_name, patch)
    _APPLIED = True
