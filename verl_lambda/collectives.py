"""The collectives of the two loss modes that coordinate over verl's data-parallel group, all on CPU values.

Each is a no-op outside ``torch.distributed`` (one process sees the whole step), so the same code serves a single
process, the gloo ranks of the tests and verl's process groups on a cluster.

Layer 2 (foundations).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from verl_lambda import verl_access


def collective_device(group: dist.ProcessGroup | None) -> torch.device:
    """The device a tensor must be on for a collective over ``group``.

    verl creates its process groups with ``cpu:gloo,<device>:<backend>`` (the cpu platform with ``gloo``), so CPU
    tensors are carried by gloo and never need a copy to the accelerator; only a group without a CPU backend (e.g. a
    pure ``nccl`` group) needs the tensor on the accelerator.
    """
    backend = str(dist.get_backend(group))
    if backend == "gloo" or "cpu:" in backend:
        return torch.device("cpu")
    return verl_access.accelerator_device()


def all_reduce(tensor: torch.Tensor, op: dist.ReduceOp.RedOpType, group: dist.ProcessGroup | None) -> torch.Tensor:
    """``tensor`` reduced with ``op`` over ``group``, as a new CPU tensor (``tensor`` itself is left as it is)."""
    if not dist.is_initialized():
        return tensor.cpu()
    reduced = tensor.to(collective_device(group), copy=True)
    dist.all_reduce(reduced, op=op, group=group)
    return reduced.cpu()


def all_gather(obj: Any, group: dist.ProcessGroup | None) -> tuple[list[Any], int]:
    """Every rank's ``obj`` in rank order, and this rank's index in that list.

    An object collective, as verl's own gather of token counts on this group in ``train_mini_batch``: torch pickles on
    the CPU and runs it on the group's CPU backend (gloo) when it has one.
    """
    if not dist.is_initialized():
        return [obj], 0
    shards: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(shards, obj, group=group)
    return shards, dist.get_rank(group)


def broadcast_bytes(payload: bytes | None) -> bytes | None:
    """``payload`` of global rank 0 on every rank (None stays None). Collective over the default group, whose ranks
    are all of a verl worker group's actors; the bytes travel as uint8 tensors on ``collective_device``."""
    device = collective_device(None)
    size = torch.tensor([-1 if payload is None else len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    if int(size) < 0:
        return None
    buffer = torch.empty(int(size), dtype=torch.uint8, device=device)
    if dist.get_rank() == 0:
        buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buffer, src=0)
    return buffer.cpu().numpy().tobytes()
