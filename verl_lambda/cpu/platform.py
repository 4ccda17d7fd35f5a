"""A ``cpu`` device platform for verl, selected with ``VERL_PLATFORM=cpu``.

verl 0.9.1 ships platforms for NVIDIA, AMD and Ascend only; without one it falls back to CUDA and fails on a machine
without a GPU. This platform makes verl's own code paths (FSDP2 engine, worker groups, resource checks) run on CPU
with gloo. It is registered when this module is imported, which the plugin does on load, and used only when a user
selects it, so GPU users are unaffected.

Ray still schedules verl's workers on "GPU" resources: a CPU run declares logical GPUs
(``+ray_kwargs.ray_init.num_gpus=N``, one per worker); ``torch.cuda`` stays unused.

Layer 4 (methods and backend).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from types import ModuleType
from typing import Any, ClassVar

import torch
from verl.plugin.platform import PlatformBase

from verl_lambda.cpu import device as cpu_device

PLATFORM_NAME = "cpu"


class PlatformCPU(PlatformBase):
    """Runs verl's training engine and worker groups on CPU processes that talk over gloo."""

    # What verl's vLLM rollout needs on CPU (applied by ``verl.utils.device.auto_set_device``): vLLM has no sleep
    # mode there (so nothing can be freed between rollouts either), and no CUDA graphs to capture.
    VLLM_ROLLOUT_DEFAULTS: ClassVar[dict[str, bool]] = {
        "enable_sleep_mode": False,
        "free_cache_engine": False,
        "enforce_eager": True,
    }
    # The environment of verl's vLLM servers (and so of vLLM's engine and worker processes), unless already set:
    # a 1 GiB KV cache (vLLM's CPU default is a share of the machine's memory), threads left to the OS rather than
    # pinned to cores that the trainer's workers share, and this platform (vLLM's worker processes load verl).
    VLLM_ENV_DEFAULTS: ClassVar[dict[str, str]] = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return cpu_device

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: a CPU run must be asked for with VERL_PLATFORM=cpu.
        return False

    def current_device(self) -> str:  # type: ignore[override]
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        pass

    def synchronize(self, device_index: int | None = None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets it for the logical GPUs a CPU run declares; nothing reads it here.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def rollout_env_vars(self) -> dict[str, str]:
        env = {key: os.environ.get(key, value) for key, value in self.VLLM_ENV_DEFAULTS.items()}
        return {**env, "VERL_PLATFORM": PLATFORM_NAME}

    def cudart(self) -> Any:
        return None


def is_cpu_platform_selected() -> bool:
    """True in a process where verl resolved (or will resolve) its platform to this one."""
    from verl.plugin.platform import get_platform

    return isinstance(get_platform(), PlatformCPU)


def cpu_platform_selected() -> bool:
    """True in a process that asked for this platform (``VERL_PLATFORM=cpu``) and where verl resolved it: what every
    CPU wrapper checks before it acts, so that on GPUs verl's behaviour is unchanged."""
    if os.environ.get("VERL_PLATFORM", "").strip().lower() != PLATFORM_NAME:
        return False
    return is_cpu_platform_selected()


def register_platform() -> None:
    """Register this platform with verl as ``cpu`` (idempotent)."""
    from verl.plugin.platform import PlatformRegistry

    if PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)


# When this module is imported before verl, its import of verl above loads the plugin, whose registration finds this
# module half-built (verl_lambda.cpu.patches.register_cpu_platform) and leaves it to this line.
register_platform()
