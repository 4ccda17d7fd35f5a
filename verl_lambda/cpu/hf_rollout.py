"""``actor_rollout_ref.rollout.name=hf``: a transformers-based rollout server for verl's agent loop, for CPU runs.

verl 0.9.1 generates only through inference servers (vLLM, SGLang, TensorRT-LLM) that need a GPU. This module
plugs a small server into the same three extension points those backends use, so verl's own agent loop, load
balancer, weight sync and trainers run unchanged:

- ``HFServer``: a Ray actor per replica that answers ``generate(prompt_ids, sampling_params, request_id)`` with a
  ``TokenOutput``. Concurrent requests are batched (one forward per token for the whole batch).
- ``HFReplica``: the ``RolloutReplica`` that launches one ``HFServer`` per replica, next to the trainer workers.
- ``HFServerAdapter``: the ``BaseRollout`` living in each trainer worker; it pushes the freshly trained weights to
  the server every step (``update_weights``).

It is meant for smoke-testing configs on a laptop or in CI, not for speed: weights travel through Ray's object
store and generation runs on CPU in fp32.

Layer 4 (methods and backend).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

from verl_lambda.cpu.sampling import SamplingSpec, sample

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "hf"
# Requests arriving within this window are generated as one batch (verl's agent loop sends a whole step at once).
BATCH_WINDOW_S = 0.02


def server_actor_name(replica_rank: int, node_rank: int = 0) -> str:
    return f"hf_server_{replica_rank}_{node_rank}"


def _max_tokens(config: RolloutConfig, prompt_len: int, sampling_params: dict[str, Any]) -> int:
    """The response budget, decided exactly as verl's vLLM server decides it."""
    max_model_len = config.max_model_len or config.prompt_length + config.response_length
    room = max_model_len - prompt_len
    if room < 1:
        raise ValueError(f"Prompt length ({prompt_len}) leaves no room to generate within {max_model_len} tokens")
    if "max_tokens" in sampling_params:
        wanted = sampling_params["max_tokens"]
    elif "max_new_tokens" in sampling_params:
        wanted = sampling_params["max_new_tokens"]
    else:
        wanted = min(config.response_length, config.prompt_length + config.response_length - prompt_len)
    return max(1, min(wanted, room))


def sampling_spec(config: RolloutConfig, prompt_len: int, sampling_params: dict[str, Any]) -> SamplingSpec:
    """Translate verl's per-request sampling params (vLLM names) into a ``SamplingSpec``."""
    return SamplingSpec(
        max_tokens=_max_tokens(config, prompt_len, sampling_params),
        temperature=float(sampling_params.get("temperature", config.temperature)),
        top_p=float(sampling_params.get("top_p", config.top_p)),
        top_k=int(sampling_params.get("top_k", config.top_k)),
        repetition_penalty=float(sampling_params.get("repetition_penalty", config.repetition_penalty)),
        ignore_eos=bool(sampling_params.get("ignore_eos", config.ignore_eos)),
        logprobs=bool(sampling_params.get("logprobs", False)),
    )


@dataclass
class _Request:
    prompt_ids: list[int]
    spec: SamplingSpec
    done: asyncio.Future = field(repr=False)


class HFServer:
    """Generates with a transformers model on CPU; holds the rollout copy of the policy weights."""

    def __init__(self, config: RolloutConfig, model_config: HFModelConfig | Any, replica_rank: int) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.replica_rank = replica_rank
        path = model_config.get("local_path", None) or model_config.path
        tokenizer = AutoTokenizer.from_pretrained(model_config.get("tokenizer_path", None) or path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
        self.model.eval()
        self.eos_token_ids = self._eos_token_ids(self.model, tokenizer)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_token_ids)
        self.global_steps: int | None = None
        self._draws: dict[tuple, int] = {}
        self._queue: list[_Request] = []
        self._worker: asyncio.Task | None = None
        torch.set_num_threads(int(os.environ.get("VERL_LAMBDA_HF_THREADS", os.cpu_count() or 1)))

    @staticmethod
    def _eos_token_ids(model: torch.nn.Module, tokenizer: Any) -> set[int]:
        ids = model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [] if ids is None else [ids])
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        return ids

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Any = None,
        video_data: Any = None,
        audio_data: Any = None,
        **kwargs: Any,
    ) -> TokenOutput:
        if image_data is not None or video_data is not None or audio_data is not None:
            raise NotImplementedError("the hf rollout is text-only")
        prompt_ids = list(prompt_ids)
        spec = sampling_spec(self.config, len(prompt_ids), sampling_params)
        request = _Request(prompt_ids, spec, asyncio.get_running_loop().create_future())
        self._queue.append(request)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        tokens, log_probs = await request.done
        return TokenOutput(
            token_ids=tokens,
            log_probs=log_probs,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    async def _drain(self) -> None:
        """Serve queued requests in batches of equal sampling parameters until the queue is empty."""
        while self._queue:
            await asyncio.sleep(BATCH_WINDOW_S)
            pending, self._queue = self._queue, []
            by_spec: dict[SamplingSpec, list[_Request]] = {}
            for request in pending:
                by_spec.setdefault(request.spec, []).append(request)
            for spec, requests in by_spec.items():
                for start in range(0, len(requests), self.config.max_num_seqs):
                    chunk = requests[start : start + self.config.max_num_seqs]
                    prompts = [r.prompt_ids for r in chunk]
                    generators = [torch.Generator().manual_seed(self._request_seed(p)) for p in prompts]
                    try:
                        outputs = await asyncio.to_thread(
                            sample, self.model, prompts, spec, self.eos_token_ids, self.pad_token_id, generators
                        )
                    except Exception as exc:  # hand the failure to every waiting caller
                        for r in chunk:
                            r.done.set_exception(exc)
                        continue
                    for r, out in zip(chunk, outputs, strict=True):
                        r.done.set_result((out.token_ids, out.log_probs))

    def _request_seed(self, prompt_ids: list[int]) -> int:
        """A seed from (seed, replica, step, prompt, k-th draw of that prompt in this step).

        Seeding each request instead of the batch makes a replica's rollouts reproducible whatever order and
        batching the requests arrive in, so a resumed run samples what an uninterrupted one does.
        """
        key = (self.global_steps, tuple(prompt_ids))
        draw = self._draws.get(key, 0)
        self._draws[key] = draw + 1
        material = repr((self.config.seed, self.replica_rank, key, draw)).encode()
        return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "little") & ((1 << 63) - 1)

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Replace the rollout weights with the trainer's (names as in the HF checkpoint)."""
        own = self.model.state_dict()
        unknown = sorted(set(state_dict) - set(own))
        if unknown:
            raise KeyError(f"hf rollout got weights the model does not have: {unknown[:5]}")
        with torch.no_grad():
            for name, tensor in state_dict.items():
                own[name].copy_(tensor)

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.model.state_dict().items()}

    async def set_global_steps(self, global_steps: int | None) -> None:
        if global_steps != self.global_steps:
            self._draws.clear()
        self.global_steps = global_steps

    # Memory management and request control of the GPU servers: nothing to do for a CPU model.
    async def wake_up(self, tags: list[str] | None = None) -> None: ...
    async def sleep(self) -> None: ...
    async def clear_kv_cache(self) -> None: ...
    async def release_kv_cache(self) -> None: ...
    async def resume_kv_cache(self) -> None: ...
    async def wait_for_requests_to_drain(self) -> None: ...
    async def resume_generation(self) -> None: ...
    async def start_profile(self, **kwargs: Any) -> None: ...
    async def stop_profile(self) -> None: ...

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        return {"aborted_count": 0, "request_ids": []}


class HFReplica(RolloutReplica):
    """One ``HFServer`` per replica, placed on the node of the replica's trainer workers."""

    async def launch_servers(self) -> None:
        if self.nnodes != 1:
            raise ValueError("the hf rollout runs a replica on one node; set rollout.tensor_model_parallel_size=1")
        node_id = None
        if self.workers:
            node_id = await self.workers[0].__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id())
        options: dict[str, Any] = {"name": server_actor_name(self.replica_rank), "num_cpus": 0}
        options["max_concurrency"] = self.max_concurrency
        if node_id is not None:
            options["scheduling_strategy"] = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=node_id, soft=False
            )
        server = ray.remote(HFServer).options(**options).remote(self.config, self.model_config, self.replica_rank)
        await server.set_global_steps.remote(None)  # waits until the model is loaded
        self.servers = [server]
        self._server_handle = server
        self._server_address = server_actor_name(self.replica_rank)

    def rollout_worker_use_gpu(self) -> bool:
        return False


async def _iterate(weights: Iterable | AsyncIterator) -> AsyncIterator:
    if hasattr(weights, "__aiter__"):
        async for item in weights:
            yield item
    else:
        for item in weights:
            yield item


class HFServerAdapter(BaseRollout):
    """Trainer-side handle of the ``hf`` server: moves trained weights into it."""

    def __init__(self, config: RolloutConfig, model_config: HFModelConfig, device_mesh: Any, **kwargs: Any) -> None:
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        replica_world = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // replica_world
        self._is_sender = rank % replica_world == 0
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        wire_format: str = "named_tensors",
        global_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the hf rollout supports wire_format='named_tensors' only, got {wire_format!r}")
        # Every rank drains the generator: producing the full tensors is collective under FSDP.
        state_dict = {}
        async for name, tensor in _iterate(weights):
            if hasattr(tensor, "full_tensor"):
                tensor = tensor.full_tensor()
            state_dict[name] = tensor.detach().to("cpu", torch.float32, copy=True)
        if self._is_sender:
            server = self._server_handle()
            await server.load_weights.remote(state_dict)
            if global_steps is not None:
                await server.set_global_steps.remote(global_steps)

    async def resume(self, tags: list[str]) -> None: ...

    async def release(self) -> None: ...
