"""λ-GRPO in verl: ``actor_rollout_ref.actor.loss_agg_mode=lambda_grpo`` (arXiv 2510.06870).

How a training step flows (the wrappers live in ``verl_lambda.patches``):

1. ``TrainingWorker.train_mini_batch`` receives this rank's share of the step. verl has reordered the batch for load
   balance and split it across data-parallel ranks, so a prompt group (verl's ``uid``) can be spread anywhere.
   ``attach_group_lengths`` all-gathers (uid, length) over the data-parallel group, builds the table of the step's
   complete groups (the λ-independent ``ln h`` of each member, one padded row per group) and gives every sample its
   row and position in it, per-sample indices that survive any split.
2. ``TrainingWorker.train_batch`` (one mini-batch) computes f and its slope df/dλ at the current λ
   (``attach_weights``). For every micro-batch, ``ppo_loss`` hands f to ``agg_loss`` (``length_weighted_loss``),
   which applies it to the policy-gradient term only (entropy and KL keep the unweighted base aggregation); one
   graph node carries λ's gradient.
3. After each actor optimizer step, ``LearnableLambda.step`` averages λ's gradient over the data-parallel group and
   steps λ's own optimizer, so every rank holds the same λ.
4. λ and its optimizer state are saved next to the actor checkpoint and restored on resume.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from verl_lambda.config import LAMBDA_GRPO_MODE, LambdaGRPOConfig
from verl_lambda.ops.length_weights import (
    group_table,
    length_preference,
    softmax_inputs,
    weighted_agg_loss,
    weights_and_slope,
    with_slope,
)

logger = logging.getLogger("verl_lambda")

# Per-sample tensors attached to the training batch, (bs,) int64: the row of the sample's group in the step's group
# table (``LearnableLambda.groups``) and the sample's position in that row.
GROUP_INDEX_KEY = "lambda_grpo_group_index"
SELF_INDEX_KEY = "lambda_grpo_self_index"
# Per-sample weight f and slope df/dλ at the current λ, set for each mini-batch (λ moves between mini-batches).
WEIGHT_KEY = "lambda_grpo_weight"
SLOPE_KEY = "lambda_grpo_slope"
# verl's V1 trainer pads a batch with synthetic samples whose uid starts with this; they form no group.
PADDING_UID_PREFIX = "pad"
CHECKPOINT_FILE = "lambda_grpo_state.pt"
# Where verl aggregates with the actor's mode outside the actor loss (the trainer's entropy metric, a critic that
# inherits the mode), lambda_grpo means its default base, unweighted.
DEFAULT_BASE = LambdaGRPOConfig.base
METRIC_PREFIX = "lambda_grpo/"


class LearnableLambda:
    """One actor's λ: a CPU float32 scalar outside the model (weights sync to the rollout from the model's state
    dict), with its own optimizer, stepped once per actor optimizer step."""

    def __init__(self, options: LambdaGRPOConfig) -> None:
        self.options = options
        self.value = torch.nn.Parameter(torch.tensor(float(options.init)), requires_grad=options.learnable)
        self.optimizer: torch.optim.Optimizer | None = None
        if options.learnable:
            optimizer_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[options.optimizer]
            self.optimizer = optimizer_cls([self.value], lr=options.lr)
        self.step_grads: list[float] = []  # data-parallel averaged dλ of each step since the last report
        self.skipped_steps = 0
        # The current step's group table over all ranks, (ln h, mask bias, size) of ``softmax_inputs``.
        self.groups: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def zero_grad(self) -> None:
        self.value.grad = None

    def step(self, dp_group: dist.ProcessGroup | None) -> None:
        """Average dλ over the data-parallel group, then clip, step and clamp. Collective over ``dp_group``."""
        if self.optimizer is None:
            return
        grad = self.value.grad.detach().clone() if self.value.grad is not None else torch.zeros(())
        if dist.is_initialized():
            dist.all_reduce(grad, op=dist.ReduceOp.AVG, group=dp_group)
        if not torch.isfinite(grad):
            # Like verl for the model: a non-finite gradient skips the step.
            self.skipped_steps += 1
            self.value.grad = None
            return
        if self.options.grad_clip is not None:
            grad = grad.clamp(-self.options.grad_clip, self.options.grad_clip)
        self.value.grad = grad
        self.optimizer.step()
        self.value.grad = None
        with torch.no_grad():
            self.value.clamp_(
                min=-math.inf if self.options.min is None else self.options.min,
                max=math.inf if self.options.max is None else self.options.max,
            )
        self.step_grads.append(float(grad))

    def state_dict(self) -> dict[str, Any]:
        return {
            "lambda": self.value.detach().clone(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "skipped_steps": self.skipped_steps,
            "options": dataclasses.asdict(self.options),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.value.copy_(state["lambda"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        saved = state.get("options", {})
        if self.optimizer is not None and state.get("optimizer") is not None:
            if saved.get("optimizer", self.options.optimizer) == self.options.optimizer:
                self.optimizer.load_state_dict(state["optimizer"])
                for group in self.optimizer.param_groups:  # the launch's configured lr wins over the saved one
                    group["lr"] = self.options.lr
            else:
                logger.warning("verl-lambda: λ's optimizer changed since the checkpoint; its state starts fresh")


_STATE_ATTR = "_verl_lambda_state"


def lambda_state(worker: Any) -> LearnableLambda | None:
    """The λ of an actor ``TrainingWorker`` whose loss uses ``lambda_grpo`` (created on first use); else None."""
    state = worker.__dict__.get(_STATE_ATTR)
    if state is None:
        config = getattr(getattr(worker, "loss_fn", None), "keywords", {}).get("config")
        options = getattr(config, "lambda_grpo", None)  # set on actor configs only, not on the critic's
        if getattr(config, "loss_agg_mode", None) != LAMBDA_GRPO_MODE or options is None:
            return None
        state = worker.__dict__[_STATE_ATTR] = LearnableLambda(options)
    return state


# ---------------------------------------------------------------------------------------------------------------
# Group lengths across the whole step.
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class StepReport:
    """Statistics of the step's weights over all ranks, computed with λ at the start of the step."""

    weights: torch.Tensor  # (N,) f of every non-padding sample of the step
    lengths: torch.Tensor  # (N,)
    floored: int


def response_lengths(data: Any) -> torch.Tensor:
    """Valid response tokens per sample, (bs,) float32; ``response_mask`` may be padded or nested."""
    mask = data["response_mask"]
    if mask.is_nested:  # jagged: per-row sums from the running sum at the row offsets (int64: exact at any size)
        running = torch.nn.functional.pad(mask.values().long().cumsum(0), (1, 0))
        offsets = mask.offsets()
        return (running[offsets[1:]] - running[offsets[:-1]]).float().cpu()
    return mask.sum(-1).float().cpu()


def sample_uids(data: Any) -> list[str]:
    from verl.utils import tensordict_utils as tu

    uids = tu.get(data, "uid")
    if uids is None:
        raise KeyError(
            "[verl-lambda] loss_agg_mode=lambda_grpo needs the prompt-group id `uid` in the actor's training batch "
            "(verl's GRPO trainers add it); it is missing."
        )
    return [str(uid) for uid in uids]


def attach_group_lengths(data: Any, state: LearnableLambda, dp_group: dist.ProcessGroup | None) -> StepReport:
    """Give every sample of this rank the length preferences of its complete group. Collective over ``dp_group``.

    Sets ``state.groups`` to the table of the step's groups over all ranks (identical on every rank) and adds
    ``GROUP_INDEX_KEY`` and ``SELF_INDEX_KEY`` to ``data``. Samples of verl's padding (uid ``pad...``) form groups of
    one, so their weight is 1.
    """
    uids, lengths = sample_uids(data), response_lengths(data)
    if dist.is_initialized():
        shards: list[Any] = [None] * dist.get_world_size(dp_group)
        dist.all_gather_object(shards, (uids, lengths.tolist()), group=dp_group)
        offset = sum(len(shard[0]) for shard in shards[: dist.get_rank(dp_group)])
        all_uids = [uid for shard in shards for uid in shard[0]]
        all_lengths = torch.tensor([length for shard in shards for length in shard[1]], dtype=torch.float32)
    else:
        offset, all_uids, all_lengths = 0, uids, lengths

    ids: dict[str, int] = {}
    padding = [uid.startswith(PADDING_UID_PREFIX) for uid in all_uids]
    # Real groups get ids 0, 1, ...; every padding sample gets its own negative id, i.e. a group of one.
    group_ids = torch.tensor(
        [
            -1 - i if pad else ids.setdefault(uid, len(ids))
            for i, (uid, pad) in enumerate(zip(all_uids, padding, strict=True))
        ],
        dtype=torch.long,
    )
    group_lengths, group_mask, group_index, self_index = group_table(group_ids, all_lengths)
    h, floored = length_preference(group_lengths, group_mask, state.options.r)
    state.groups = softmax_inputs(h, group_mask)
    mine = slice(offset, offset + len(uids))
    data[GROUP_INDEX_KEY], data[SELF_INDEX_KEY] = group_index[mine], self_index[mine]

    real = ~torch.tensor(padding, dtype=torch.bool)
    weights, _ = weights_and_slope(*state.groups, group_index, self_index, state.value.item())
    floored_samples = floored[group_index, self_index][real]  # responses whose own h hit the floor
    return StepReport(weights=weights[real], lengths=all_lengths[real], floored=int(floored_samples.sum()))


# ---------------------------------------------------------------------------------------------------------------
# The loss: weights for the policy-gradient term of each micro-batch.
# ---------------------------------------------------------------------------------------------------------------

_ACTIVE_LAMBDA: contextvars.ContextVar[LearnableLambda | None] = contextvars.ContextVar("active_lambda", default=None)


@dataclass
class _LossContext:
    base: str
    weights: torch.Tensor  # (bs,) f of the micro-batch's samples
    in_policy_term: bool = False
    applied: bool = False


_LOSS_CONTEXT: contextvars.ContextVar[_LossContext | None] = contextvars.ContextVar("lambda_loss", default=None)


@contextlib.contextmanager
def active_lambda(state: LearnableLambda) -> Iterator[None]:
    """Make ``state`` the λ that actor losses inside this block use (one actor update)."""
    token = _ACTIVE_LAMBDA.set(state)
    try:
        yield
    finally:
        _ACTIVE_LAMBDA.reset(token)


def attach_weights(data: Any, state: LearnableLambda) -> None:
    """Before a mini-batch: f and df/dλ of its samples at the current λ, so micro-batches need no recomputation."""
    if GROUP_INDEX_KEY not in data.keys() or state.groups is None:
        raise RuntimeError("[verl-lambda] the mini-batch lacks the group lengths attached by train_mini_batch")
    value, slope = weights_and_slope(*state.groups, data[GROUP_INDEX_KEY], data[SELF_INDEX_KEY], state.value.item())
    data[WEIGHT_KEY], data[SLOPE_KEY] = value, slope


@contextlib.contextmanager
def length_weighted_loss(config: Any, data: Any) -> Iterator[None]:
    """Around one call of verl's ``ppo_loss`` on a micro-batch: its samples' f, differentiable in λ."""
    state = _ACTIVE_LAMBDA.get()
    if state is None:
        raise RuntimeError(
            "[verl-lambda] the lambda_grpo loss ran outside an actor update (no λ is active). It is computed in "
            "TrainingWorker.train_batch; forward-only calls need compute_loss=False."
        )
    if WEIGHT_KEY not in data.keys():
        raise RuntimeError("[verl-lambda] the micro-batch lacks the weights attached by train_batch")
    value = data[WEIGHT_KEY]
    weights = with_slope(state.value.to(value.device), value, data[SLOPE_KEY])
    context = _LossContext(base=config.lambda_grpo.base, weights=weights)
    token = _LOSS_CONTEXT.set(context)
    try:
        yield
    finally:
        _LOSS_CONTEXT.reset(token)
    if not context.applied:
        raise RuntimeError(
            f"[verl-lambda] policy_loss.loss_mode={config.policy_loss.get('loss_mode', 'vanilla')} never aggregated "
            "its loss with agg_loss(loss_agg_mode), so lambda_grpo had nothing to weight."
        )


def weighting_policy_term(policy_loss_fn: Callable) -> Callable:
    """Mark the calls of ``policy_loss_fn`` as the policy-gradient term, the only one the weights apply to."""
    context = _LOSS_CONTEXT.get()
    if context is None:
        return policy_loss_fn

    @functools.wraps(policy_loss_fn)
    def policy_term(*args: Any, **kwargs: Any):
        context.in_policy_term = True
        try:
            return policy_loss_fn(*args, **kwargs)
        finally:
            context.in_policy_term = False

    return policy_term


def agg_loss(
    verl_agg_loss: Callable,
    loss_mat: torch.Tensor,
    loss_mask: torch.Tensor,
    dp_size: int = 1,
    batch_num_tokens: int | None = None,
    global_batch_size: int | None = None,
    loss_scale_factor: float | None = None,
) -> torch.Tensor:
    """``agg_loss`` for ``loss_agg_mode=lambda_grpo``: weighted inside the policy term, verl's base mode elsewhere."""
    context = _LOSS_CONTEXT.get()
    base = context.base if context is not None else DEFAULT_BASE
    if context is not None and context.in_policy_term:
        context.applied = True
        return weighted_agg_loss(
            loss_mat, loss_mask, context.weights.to(loss_mat.dtype), base, dp_size, batch_num_tokens, global_batch_size
        )
    return verl_agg_loss(loss_mat, loss_mask, base, dp_size, batch_num_tokens, global_batch_size, loss_scale_factor)


# ---------------------------------------------------------------------------------------------------------------
# Metrics and checkpoints.
# ---------------------------------------------------------------------------------------------------------------


def _correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denominator = (x.square().sum() * y.square().sum()).sqrt()
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def step_metrics(state: LearnableLambda, report: StepReport) -> dict[str, float]:
    grads = state.step_grads
    metrics = {
        "lambda": state.value.item(),
        "lambda_grad": sum(grads) / len(grads) if grads else 0.0,
        "skipped_steps": float(state.skipped_steps),
        "h_floored": float(report.floored),
    }
    if len(report.weights):
        metrics.update(
            weight_min=float(report.weights.min()),
            weight_mean=float(report.weights.mean()),
            weight_max=float(report.weights.max()),
            weight_length_corr=_correlation(report.weights, report.lengths),
        )
    state.step_grads = []
    return {METRIC_PREFIX + key: value for key, value in metrics.items()}


def add_step_metrics(output: Any, state: LearnableLambda, report: StepReport) -> Any:
    """Append λ-GRPO's metrics to ``train_mini_batch``'s output (None on ranks that return nothing)."""
    metrics = step_metrics(state, report)
    if output is None:
        return output
    from verl.utils import tensordict_utils as tu

    merged = dict(tu.get(output, "metrics"))
    merged.update({key: [value] for key, value in metrics.items()})
    tu.assign_non_tensor(output, metrics=merged)
    return output


def save_lambda(state: LearnableLambda, local_path: str) -> None:
    """Write λ's state next to the actor checkpoint (global rank 0; every rank holds the same λ)."""
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    os.makedirs(local_path, exist_ok=True)
    torch.save(state.state_dict(), os.path.join(local_path, CHECKPOINT_FILE))


def load_lambda(state: LearnableLambda, local_path: str) -> None:
    path = os.path.join(local_path, CHECKPOINT_FILE)
    if not os.path.exists(path):
        logger.warning("verl-lambda: %s has no %s; λ starts from init=%s", local_path, CHECKPOINT_FILE, state.value)
        return
    state.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
