"""``torch.cpu`` plus the ``torch.cuda``-style calls verl makes on its device module.

verl reaches the accelerator through ``get_platform().device_module`` (``torch.cuda`` on GPUs). ``torch.cpu`` lacks
the memory, RNG and cache functions verl calls, so this module re-exports it and fills the gaps: memory figures are
the process's resident set, so verl's ``perf/max_memory_allocated_gb`` reports the peak RSS of each worker on CPU.

Layer 4 (methods and backend).
"""

from __future__ import annotations

import resource
import sys

import psutil
import torch
from torch.cpu import *  # noqa: F403  (the module verl treats as torch.<device>)
from torch.cpu import current_device, device_count, is_available, synchronize  # noqa: F401

_KIB = 1024 if sys.platform != "darwin" else 1  # ru_maxrss is KiB on Linux, bytes on macOS


def get_device_name(device: object = None) -> str:
    return "CPU"


def manual_seed(seed: int) -> None:
    torch.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    torch.manual_seed(seed)


def get_rng_state(device: object = None) -> torch.Tensor:
    return torch.get_rng_state()


def set_rng_state(state: torch.Tensor, device: object = None) -> None:
    torch.set_rng_state(state)


def memory_allocated(device: object = None) -> int:
    return psutil.Process().memory_info().rss


def max_memory_allocated(device: object = None) -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _KIB


memory_reserved = memory_allocated
max_memory_reserved = max_memory_allocated


def mem_get_info(device: object = None) -> tuple[int, int]:
    vm = psutil.virtual_memory()
    return vm.available, vm.total


def reset_peak_memory_stats(device: object = None) -> None:
    """The peak RSS of a process cannot be reset; kept for API compatibility."""


def empty_cache() -> None:
    """CPU tensors are freed by the allocator directly; nothing is cached."""


def ipc_collect() -> None:
    """No inter-process tensor cache on CPU."""


def set_per_process_memory_fraction(fraction: float, device: object = None) -> None:
    """Memory is not partitioned on CPU."""
