"""The group token mean in verl: ``actor_rollout_ref.actor.loss_agg_mode=group-mean-token-mean``.

DAPO's aggregation as its paper writes it: the token mean inside each prompt group (verl's ``uid``), then the mean
over groups (the math in ``verl_lambda.ops.group_mean``). How a training step flows (the wrappers live in
``verl_lambda.patches``):

1. ``TrainingWorker.train_mini_batch`` receives this rank's share of the step, reordered and split by verl so that a
   group can be spread over ranks. ``attach_group_tokens`` all-gathers (uid, valid tokens) over the data-parallel
   group and gives every row its group's token count over the whole step and its share ``1/G`` of the group.
2. ``TrainingWorker.train_batch`` (one mini-batch) sums the shares of the mini-batch's rows over all ranks:
   ``N_groups``, the mini-batch's group count (``active_groups``).
3. For every micro-batch, ``ppo_loss`` hands each row's group token count and ``N_groups`` to ``agg_loss``
   (``group_mean_loss``): every term of the actor's loss (policy gradient, entropy, KL) aggregates this way, as
   every term aggregates with the actor's ``loss_agg_mode`` in verl.

Outside an actor update (the trainer's entropy metric over the whole batch) the mode means ``token-mean``: the
metric has no group table there, and the two agree whenever the groups' token counts do.

Layer 4 (methods and backend).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from verl_lambda import verl_access
from verl_lambda.collectives import all_gather, all_reduce
from verl_lambda.lambda_grpo import valid_tokens
from verl_lambda.ops.group_mean import GROUP_MEAN_MODE, group_mean_agg_loss, group_token_counts

# Per-row tensors attached to the actor's batch for the step, (bs,) float64: the valid tokens of the row's group over
# the whole step (0 for verl's padding rows), and the row's share 1/G of its group (0 for padding).
GROUP_TOKENS_KEY = "group_mean_group_tokens"
GROUP_SHARE_KEY = "group_mean_group_share"

# What ``agg_loss`` outside an actor update computes for this mode.
OUTSIDE_ACTOR_LOSS = "token-mean"


def uses_group_mean(worker: Any) -> bool:
    """Whether an actor ``TrainingWorker``'s loss aggregates with ``group-mean-token-mean``."""
    config = verl_access.actor_loss_config(worker)
    return getattr(config, "loss_agg_mode", None) == GROUP_MEAN_MODE


def attach_group_tokens(data: Any, dp_group: dist.ProcessGroup | None) -> None:
    """Give every row of this rank its group's token count over the step and its share of the group (the keys
    above). Collective over ``dp_group``: an object all-gather, as verl's own gather of token counts there."""
    uids = verl_access.sample_field(data, "uid")
    if uids is None:
        raise KeyError(
            f"[verl-lambda] loss_agg_mode={GROUP_MEAN_MODE} needs the prompt-group id `uid` in the actor's training "
            "batch (verl's GRPO trainers add it); it is missing."
        )
    mine = ([str(uid) for uid in uids], valid_tokens(data["response_mask"]).tolist())
    shards, rank = all_gather(mine, dp_group)
    offset = sum(len(shard[0]) for shard in shards[:rank])
    all_uids = [uid for shard in shards for uid in shard[0]]
    ids: dict[str, int] = {}
    group_ids = torch.tensor(
        [-1 if verl_access.is_padding_uid(uid) else ids.setdefault(uid, len(ids)) for uid in all_uids],
        dtype=torch.long,
    )
    tokens = torch.tensor([count for shard in shards for count in shard[1]], dtype=torch.float64)
    group_tokens, group_share = group_token_counts(group_ids, tokens)
    local = slice(offset, offset + len(mine[0]))
    data[GROUP_TOKENS_KEY], data[GROUP_SHARE_KEY] = group_tokens[local], group_share[local]


def mini_batch_groups(data: Any, dp_group: dist.ProcessGroup | None) -> float:
    """``N_groups`` of a mini-batch: the sum of its rows' group shares over all ranks. Collective over ``dp_group``."""
    if GROUP_SHARE_KEY not in data.keys():
        raise RuntimeError("[verl-lambda] the mini-batch lacks the group token counts attached by train_mini_batch")
    total = data[GROUP_SHARE_KEY].to(torch.float64).sum().reshape(1)
    return float(all_reduce(total, dist.ReduceOp.SUM, dp_group))


_MINI_BATCH_GROUPS: contextvars.ContextVar[float | None] = contextvars.ContextVar("mini_batch_groups", default=None)


@contextlib.contextmanager
def active_groups(n_groups: float) -> Iterator[None]:
    """Make ``n_groups`` the group count that the actor losses inside this block (one mini-batch) divide by."""
    token = _MINI_BATCH_GROUPS.set(n_groups)
    try:
        yield
    finally:
        _MINI_BATCH_GROUPS.reset(token)


@dataclass
class _LossContext:
    group_tokens: torch.Tensor  # (bs,) of the micro-batch's rows
    n_groups: float


_LOSS_CONTEXT: contextvars.ContextVar[_LossContext | None] = contextvars.ContextVar("group_mean_loss", default=None)


@contextlib.contextmanager
def group_mean_loss(data: Any) -> Iterator[None]:
    """Around one call of verl's ``ppo_loss`` on a micro-batch: its rows' group token counts and the mini-batch's
    group count, for every ``agg_loss`` inside."""
    n_groups = _MINI_BATCH_GROUPS.get()
    if n_groups is None:
        raise RuntimeError(
            f"[verl-lambda] the {GROUP_MEAN_MODE} loss ran outside an actor update (no group count is active). It is "
            "computed in TrainingWorker.train_batch; forward-only calls need compute_loss=False."
        )
    if GROUP_TOKENS_KEY not in data.keys():
        raise RuntimeError("[verl-lambda] the micro-batch lacks the group token counts attached by train_mini_batch")
    token = _LOSS_CONTEXT.set(_LossContext(group_tokens=data[GROUP_TOKENS_KEY].view(-1), n_groups=n_groups))
    try:
        yield
    finally:
        _LOSS_CONTEXT.reset(token)


def agg_loss(
    verl_agg_loss: Callable,
    loss_mat: torch.Tensor,
    loss_mask: torch.Tensor,
    dp_size: int = 1,
    batch_num_tokens: int | None = None,
    global_batch_size: int | None = None,
    loss_scale_factor: float | None = None,
) -> torch.Tensor:
    """``agg_loss`` for ``group-mean-token-mean``: the group token mean inside the actor's loss, ``token-mean``
    elsewhere."""
    context = _LOSS_CONTEXT.get()
    if context is None:
        return verl_agg_loss(
            loss_mat, loss_mask, OUTSIDE_ACTOR_LOSS, dp_size, batch_num_tokens, global_batch_size, loss_scale_factor
        )
    return group_mean_agg_loss(loss_mat, loss_mask, context.group_tokens, context.n_groups, dp_size)
