"""Drive verl's real actor worker in-process on CPU, without Ray: for tests and benchmarks.

``ActorHarness`` builds ``verl.workers.engine_workers.ActorRolloutRefWorker(role="actor")`` from verl's own
``ppo_trainer`` config (composed with hydra) on the FSDP2 engine and gloo, and feeds it batches in exactly the
form verl's trainers send to ``update_actor`` / ``compute_log_prob``. Several processes, each with its own
harness, form a real data-parallel group (``init_process_group``).

The cpu platform must be selected before verl resolves its platform: ``VERL_PLATFORM=cpu`` in the environment
before ``import verl`` (``select_cpu_platform`` does it).

Layer 4 (methods and backend).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Overrides that make verl's actor run on the cpu platform (docs/cpu-backend.md).
CPU_ACTOR_OVERRIDES = (
    "++actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    "actor_rollout_ref.model.use_remove_padding=False",
    "actor_rollout_ref.model.enable_gradient_checkpointing=False",
    "actor_rollout_ref.actor.strategy=fsdp2",
    "actor_rollout_ref.ref.strategy=fsdp2",
    "++actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
    "++actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32",  # the KL term compares it to the actor
    "actor_rollout_ref.actor.use_torch_compile=False",
    "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    "trainer.device=cpu",
)


# The precisions a CPU run can emulate. ``fp32``: no mixed precision (autocast off). ``bf16``: what verl's FSDP engine
# does on a GPU by default: fp32 master weights, the forward and the loss under ``autocast(bf16)``.
PRECISIONS = ("fp32", "bf16")


def precision_overrides(precision: str) -> list[str]:
    """Overrides after ``CPU_ACTOR_OVERRIDES`` that set the actor's mixed precision (the reference stays fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return [f"++actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype={precision}"]


def select_cpu_platform() -> None:
    os.environ["VERL_PLATFORM"] = "cpu"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_process_group(rank: int = 0, world_size: int = 1, port: int | None = None) -> None:
    """The environment verl's ``Worker`` reads, and a gloo process group over ``world_size`` local processes."""
    import torch.distributed as dist

    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK="0",
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port or os.environ.get("MASTER_PORT") or free_port()),
    )
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=rank, world_size=world_size)


def compose_config(model_dir: str, overrides: Sequence[str] = ()) -> Any:
    """verl's ``ppo_trainer`` config with the CPU actor settings, ``model_dir`` and ``overrides`` (unvalidated and
    unresolved, as verl's workers receive it)."""
    from verl_lambda.compose import compose_ppo_config

    base = [
        f"actor_rollout_ref.model.path={model_dir}",
        "actor_rollout_ref.rollout.n=1",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "actor_rollout_ref.actor.optim.lr=1e-3",
    ]
    return compose_ppo_config([*base, *CPU_ACTOR_OVERRIDES, *overrides], validate=False, resolve=False)


@dataclass
class Batch:
    """A batch in the padded form of verl's trainers (what ``DataProto.to_tensordict`` gives before no-padding)."""

    tensors: dict[str, torch.Tensor]
    uids: list[str]

    def __len__(self) -> int:
        return len(self.uids)

    def select(self, index: Sequence[int] | torch.Tensor) -> Batch:
        index = torch.as_tensor(index, dtype=torch.long)
        return Batch({k: v[index] for k, v in self.tensors.items()}, [self.uids[i] for i in index.tolist()])

    def to_tensordict(self):
        from verl.utils import tensordict_utils as tu

        td = tu.get_tensordict({k: v.clone() for k, v in self.tensors.items()})
        tu.assign_non_tensor_stack(td, "uid", list(self.uids))
        return td


def make_batch(
    vocab_size: int,
    n_groups: int,
    group_size: int,
    prompt_len: int = 8,
    max_response_len: int = 16,
    seed: int = 0,
    advantages: torch.Tensor | None = None,
    response_lengths: torch.Tensor | None = None,
) -> Batch:
    """Random prompts/responses, grouped by uid, left-padded prompts and right-padded responses.

    Prompts get random lengths in [prompt_len // 2, prompt_len]; responses lengths are random in
    [1, max_response_len] unless given. Advantages default to group-normalised random scores (GRPO-like).
    """
    gen = torch.Generator().manual_seed(seed)
    bs = n_groups * group_size
    low = 3  # keep the special tokens of the toy tokenizer out of random text
    prompt_lens = torch.randint(prompt_len // 2, prompt_len + 1, (bs,), generator=gen)
    if response_lengths is None:
        response_lengths = torch.randint(1, max_response_len + 1, (bs,), generator=gen)
    prompts = torch.zeros(bs, prompt_len, dtype=torch.long)
    responses = torch.zeros(bs, max_response_len, dtype=torch.long)
    prompt_mask = torch.zeros(bs, prompt_len, dtype=torch.long)
    response_mask = torch.zeros(bs, max_response_len, dtype=torch.long)
    for i in range(bs):
        p, r = int(prompt_lens[i]), int(response_lengths[i])
        prompts[i, prompt_len - p :] = torch.randint(low, vocab_size, (p,), generator=gen)
        prompt_mask[i, prompt_len - p :] = 1
        responses[i, :r] = torch.randint(low, vocab_size, (r,), generator=gen)
        response_mask[i, :r] = 1
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    if advantages is None:
        scores = torch.randn(n_groups, group_size, generator=gen)
        scores = (scores - scores.mean(-1, keepdim=True)) / (scores.std(-1, keepdim=True) + 1e-6)
        advantages = scores.reshape(-1)
    tensors = {
        "prompts": prompts,
        "responses": responses,
        "input_ids": torch.cat([prompts, responses], dim=1),
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "response_mask": response_mask,
        "advantages": advantages.float()[:, None] * response_mask,
        "old_log_probs": torch.zeros(bs, max_response_len),
    }
    uids = [f"group-{i // group_size}" for i in range(bs)]
    return Batch(tensors, uids)


class ActorHarness:
    """verl's actor worker (FSDP2 engine, real ``ppo_loss``) in this process."""

    def __init__(self, model_dir: str, overrides: Sequence[str] = ()) -> None:
        from verl.workers.engine_workers import ActorRolloutRefWorker

        self.config = compose_config(model_dir, overrides)
        self.worker = ActorRolloutRefWorker(self.config.actor_rollout_ref, role="actor")
        self.worker.init_model()

    @property
    def training_worker(self) -> Any:
        return self.worker.actor

    @property
    def module(self) -> torch.nn.Module:
        return self.worker.actor.engine.module

    def _input(self, batch: Batch, **meta: Any):
        from verl.utils import tensordict_utils as tu
        from verl.workers.utils.padding import left_right_2_no_padding

        td = left_right_2_no_padding(batch.to_tensordict())
        tu.assign_non_tensor(td, **meta)
        return td

    def compute_log_prob(self, batch: Batch) -> torch.Tensor:
        """(bs, T) log-probs of the responses under the current weights, as verl's trainer computes old_log_probs."""
        from verl.utils import tensordict_utils as tu
        from verl.workers.utils.padding import no_padding_2_padding

        td = self._input(batch, calculate_entropy=False, compute_loss=False, temperature=1.0)
        output = self.worker.compute_log_prob(td)
        return no_padding_2_padding(tu.get(output, "log_probs"), td).float() * batch.tensors["response_mask"]

    def input_for_update(self, batch: Batch, global_batch_size: int, mini_batch_size: int | None = None, epochs=1):
        """``batch`` as verl's trainer hands it to ``update_actor`` (``global_batch_size`` = the whole step's)."""
        mini_batch_size = mini_batch_size or global_batch_size
        return self._input(
            batch,
            calculate_entropy=False,
            global_batch_size=mini_batch_size,
            mini_batch_size=mini_batch_size,
            epochs=epochs,
            seed=42,
            dataloader_kwargs={"shuffle": False},
            compute_loss=True,
            temperature=1.0,
        )

    def update(self, batch: Batch, global_batch_size: int, mini_batch_size: int | None = None, epochs: int = 1):
        """One ``update_actor`` call on this rank's share ``batch``; returns the metrics dict (or None)."""
        from verl.utils import tensordict_utils as tu

        output = self.worker.update_actor(self.input_for_update(batch, global_batch_size, mini_batch_size, epochs))
        return tu.get(output, "metrics") if output is not None else None

    def flat_params(self) -> torch.Tensor:
        """All parameters of this rank's shard, flattened (FSDP2 DTensors are read locally)."""
        parts = []
        for param in self.module.parameters():
            data = param.data.to_local() if hasattr(param.data, "to_local") else param.data
            parts.append(data.detach().reshape(-1).clone())
        return torch.cat(parts)


def dp_shard(batch: Batch, rank: int, world_size: int) -> Batch:
    """This rank's contiguous share, as verl's dispatch splits a batch across data-parallel ranks."""
    per_rank = len(batch) // world_size
    return batch.select(np.arange(rank * per_rank, (rank + 1) * per_rank))
