"""λ-GRPO in verl: ``actor_rollout_ref.actor.loss_agg_mode=lambda_grpo`` (arXiv 2510.06870).

How a training step flows (the wrappers live in ``verl_lambda.patches``; this module reaches verl only through the
accessors of ``verl_lambda.verl_access``):

1. In the trainer, before the actor update, each row of the batch may be given two facts verl would otherwise lose:
   its true response length, when verl's rollout correction rewrites ``response_mask`` with its rejection mask
   (``keep_response_lengths``), and, in the V1 trainer, whether it is a member of its prompt group the way verl's
   GRPO advantage counts members: only the final output of each agent-loop session (``group_members``).
2. ``TrainingWorker.train_mini_batch`` receives this rank's share of the step. verl has reordered the batch for load
   balance and split it across data-parallel ranks, so a prompt group (verl's ``uid``) can be spread anywhere.
   ``attach_group_lengths`` all-gathers (uid, session, member, length) over the data-parallel group, builds the
   table of the step's complete groups (the λ-independent ``ln h`` of each member, one padded row per group) and
   gives every sample its row and position in it, per-sample indices that survive any split.
3. ``TrainingWorker.train_batch`` (one mini-batch) computes f and its slope df/dλ at the current λ
   (``attach_weights``). For every micro-batch, ``ppo_loss`` hands f to ``agg_loss`` (``length_weighted_loss``),
   which applies it to the policy-gradient term only (entropy and KL keep the unweighted base aggregation); one
   graph node carries λ's gradient.
4. Right after the engine's optimizer step (``LearnableLambda.step``), λ's gradient is unscaled by the loss scale
   that backward used (fp16), averaged over the data-parallel group, and stepped by λ's own optimizer, unless the
   model's step was skipped: every rank holds the same λ.
5. λ and its optimizer state are saved next to the actor checkpoint by global rank 0, and on resume global rank 0
   reads them and broadcasts them to every rank, so node-local checkpoint folders work too.

Devices: λ, its optimizer state, the group table, the weights and their slope live on the CPU (the weights travel to
the accelerator with their micro-batch; λ's graph node brings the gradient back). Collectives
(``verl_lambda.collectives``) run on the CPU for verl's ``cpu:gloo,<device>:<backend>`` groups (so gloo carries
them), on the accelerator for a group without a CPU backend.

Layer 4 (methods and backend).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import io
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from verl_lambda import verl_access
from verl_lambda.collectives import all_gather, all_reduce, broadcast_bytes
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
# Per-row facts the trainer attaches (only when verl would otherwise lose them): the response length before verl's
# rollout correction masked tokens out, (bs,) float32; and 1 for rows that are members of their prompt group under
# verl's advantage grouping, 0 for the earlier outputs of a multi-output agent-loop session, (bs,) int64.
RESPONSE_LENGTH_KEY = "lambda_grpo_response_length"
GROUP_MEMBER_KEY = "lambda_grpo_group_member"
# (bs,) bool: the sample's group is held out for λ's validation signal (left out of the policy-gradient term).
HELD_OUT_KEY = "lambda_grpo_held_out"
CHECKPOINT_FILE = "lambda_grpo_state.pt"
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
        self.step_grads: list[float] = []  # data-parallel averaged, unscaled dλ of each step since the last report
        self.skipped_steps = 0
        # The current step's group table over all ranks, (ln h, mask bias, size) of ``softmax_inputs``.
        self.groups: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.held_out: HeldOut | None = None  # the step's held-out groups (signal=validation)
        # signal=validation: the current mini-batch's trained (responses, tokens) over all ranks
        self.trained_counts: tuple[int, int] | None = None
        self.warned_degenerate = False  # the last step's weights had one response over MAX_WEIGHT_SHARE_WARNING

    def zero_grad(self) -> None:
        self.value.grad = None

    def step(self, dp_group: dist.ProcessGroup | None, loss_scale: float = 1.0, model_stepped: bool = True) -> None:
        """Average dλ over the data-parallel group, unscale it, then clip, step and clamp; or skip the step.

        Collective over ``dp_group`` (every rank calls it, skipped or not). ``loss_scale`` is the scale the backward
        pass multiplied the loss by (fp16's grad scaler; 1 otherwise). ``model_stepped`` is False when the engine
        skipped the model's step (a non-finite gradient, or the grad scaler found inf/NaN): λ skips it too.
        """
        if self.optimizer is None:
            return
        if self.options.signal == "validation":
            # computed from the gathered rows of the whole step: the same on every rank, and not under a loss scale
            grad = torch.tensor(self.held_out.gradient(self) if self.held_out is not None else 0.0)
        else:
            grad = self.value.grad.detach() if self.value.grad is not None else torch.zeros(())
            grad = all_reduce(grad, dist.ReduceOp.AVG, dp_group) / loss_scale
        self.value.grad = None
        if not model_stepped or not torch.isfinite(grad):
            # Like verl for the model: a non-finite gradient skips the step, and so does a step the model skipped.
            self.skipped_steps += 1
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
        config = verl_access.actor_loss_config(worker)
        options = getattr(config, "lambda_grpo", None)  # set on actor configs only, not on the critic's
        if getattr(config, "loss_agg_mode", None) != LAMBDA_GRPO_MODE or options is None:
            return None
        state = worker.__dict__[_STATE_ATTR] = LearnableLambda(options)
    return state


# ---------------------------------------------------------------------------------------------------------------
# In the trainer: what each row must carry to the actor.
# ---------------------------------------------------------------------------------------------------------------

_CAPTURED_LENGTHS: contextvars.ContextVar[list[torch.Tensor] | None] = contextvars.ContextVar(
    "lambda_grpo_captured_lengths", default=None
)


def keep_response_lengths(batch: Any) -> None:
    """Before verl's rollout correction overwrites ``response_mask`` with its rejection mask: keep each row's true
    response length under ``RESPONSE_LENGTH_KEY`` (the legacy trainer sends the whole batch to the actor), and hand
    it to an enclosing ``capturing_response_lengths`` (the V1 trainer writes fields to its store one by one)."""
    if RESPONSE_LENGTH_KEY not in batch.batch.keys():
        batch.batch[RESPONSE_LENGTH_KEY] = batch.batch["response_mask"].sum(-1).float()
    captured = _CAPTURED_LENGTHS.get()
    if captured is not None:
        captured.append(batch.batch[RESPONSE_LENGTH_KEY].cpu())


@contextlib.contextmanager
def capturing_response_lengths() -> Iterator[list[torch.Tensor]]:
    """Collect the lengths ``keep_response_lengths`` keeps inside this block (at most one tensor per batch)."""
    captured: list[torch.Tensor] = []
    token = _CAPTURED_LENGTHS.set(captured)
    try:
        yield captured
    finally:
        _CAPTURED_LENGTHS.reset(token)


def group_members(row_keys: Sequence[str]) -> list[bool]:
    """verl's V1 GRPO grouping: of the outputs ``{uid}_{session}_{index}`` of one agent-loop session, only the final
    one (the largest index) is a member of the prompt group; the others take its advantage.

    Args:
        row_keys: the batch's row keys, in row order.

    Returns:
        one flag per row.
    """
    final: dict[str, tuple[int, int]] = {}
    sessions = []
    for row, key in enumerate(row_keys):
        uid, session, index = key.rsplit("_", 2)
        sessions.append(f"{uid}_{session}")
        if sessions[-1] not in final or final[sessions[-1]][0] < int(index):
            final[sessions[-1]] = (int(index), row)
    return [final[session][1] == row for row, session in enumerate(sessions)]


def row_fields(
    row_keys: Sequence[str], adv_estimator: str, captured_lengths: Sequence[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """What the V1 trainer must store for the actor's rows, beyond verl's own fields (empty when nothing).

    ``captured_lengths`` are the true lengths ``keep_response_lengths`` kept if rollout correction ran; group
    membership is stored only where verl's GRPO advantage leaves rows out (multi-output agent-loop sessions).
    """
    fields = {}
    if captured_lengths:
        fields[RESPONSE_LENGTH_KEY] = captured_lengths[0].float()
    if adv_estimator == "grpo":  # verl's AdvantageEstimator.GRPO; other estimators count every row of a uid
        members = group_members(row_keys)
        if not all(members):
            fields[GROUP_MEMBER_KEY] = torch.tensor(members, dtype=torch.int64)
    return fields


# ---------------------------------------------------------------------------------------------------------------
# On the worker: group lengths across the whole step.
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class HeldOut:
    """The held-out members of the step (``signal=validation``): where they sit in the group table, their GRPO
    advantage and length, all (n,)."""

    group_index: torch.Tensor
    self_index: torch.Tensor
    advantages: torch.Tensor
    lengths: torch.Tensor
    base: str

    def gradient(self, state: LearnableLambda) -> float:
        """On-policy dL/dλ on the held-out groups at the current λ (the ratio is 1, so a token's loss is -A_i):
        ``-(1/N) Σ f_i' A_i`` for base seq-mean-token-mean, ``-(1/N_tok) Σ f_i' A_i L_i`` for token-mean."""
        if not len(self.advantages):
            return 0.0
        _, slope = weights_and_slope(*state.groups, self.group_index, self.self_index, state.value.item())
        per_response = slope.double() * self.advantages
        if self.base == "token-mean":
            return float(-(per_response * self.lengths).sum() / self.lengths.sum().clamp(min=1))
        return float(-per_response.sum() / len(per_response))


def held_out_uids(uids: Sequence[str], share: float) -> set[str]:
    """The prompt groups held out for λ's validation signal: a fixed share of the step's groups, chosen by a hash of
    the uid, so every rank picks the same ones whatever the order it sees them in. At least one group is held out
    and at least one trained when there are two or more."""
    unique = sorted(set(uids), key=lambda uid: hashlib.blake2b(uid.encode(), digest_size=8).digest())
    if len(unique) < 2:
        return set()
    count = min(max(1, round(share * len(unique))), len(unique) - 1)
    return set(unique[:count])


@dataclass
class StepReport:
    """Statistics of the step's weights over all ranks, computed with λ at the start of the step."""

    weights: torch.Tensor  # (N,) f of every group member of the step (no padding, no earlier session outputs)
    lengths: torch.Tensor  # (N,)
    floored: int
    # the largest max_i f_i / G over the step's groups of two or more: 1/G at λ = 0, 1 when one response holds all
    max_weight_share: float = 0.0


def response_lengths(data: Any) -> torch.Tensor:
    """The response length of each sample, (bs,) float32 on the CPU.

    The trainer's ``RESPONSE_LENGTH_KEY`` when present (verl's rollout correction has rewritten ``response_mask``),
    else the valid tokens of ``response_mask``, which may be padded or nested.
    """
    if RESPONSE_LENGTH_KEY in data.keys():
        return data[RESPONSE_LENGTH_KEY].float().view(-1).cpu()
    return valid_tokens(data["response_mask"]).float()


def valid_tokens(mask: torch.Tensor) -> torch.Tensor:
    """Valid tokens per row of a padded (bs, T) or jagged response mask, (bs,) int64 on the CPU."""
    if mask.is_nested:  # jagged: per-row sums from the running sum at the row offsets (int64: exact at any size)
        running = torch.nn.functional.pad(mask.values().long().cumsum(0), (1, 0))
        offsets = mask.offsets()
        return (running[offsets[1:]] - running[offsets[:-1]]).cpu()
    return mask.long().sum(-1).cpu()


def response_advantages(data: Any) -> torch.Tensor:
    """Each sample's advantage (GRPO's is constant over its tokens): the mean over its valid tokens, 0 for a response
    with none (e.g. fully rejected by rollout correction). (bs,) float64 on the CPU."""
    advantages, mask = data["advantages"], data["response_mask"]
    if advantages.is_nested:
        advantages, mask = advantages.to_padded_tensor(0.0), mask.to_padded_tensor(0)
    mask = mask.to(torch.float64)
    total = (advantages.to(torch.float64) * mask).sum(-1)
    return (total / mask.sum(-1).clamp(min=1)).cpu()


@dataclass
class _Rows:
    """Per-row facts of the step, gathered over the data-parallel group."""

    uids: list[str]
    sessions: list[Any]
    members: list[bool]
    lengths: list[float]
    advantages: list[float]

    @classmethod
    def of(cls, data: Any, with_advantages: bool = False) -> _Rows:
        uids = verl_access.sample_field(data, "uid")
        if uids is None:
            raise KeyError(
                "[verl-lambda] loss_agg_mode=lambda_grpo needs the prompt-group id `uid` in the actor's training "
                "batch (verl's GRPO trainers add it); it is missing."
            )
        uids = [str(uid) for uid in uids]
        sessions = verl_access.sample_field(data, "session_id")
        members = data[GROUP_MEMBER_KEY].view(-1).bool().tolist() if GROUP_MEMBER_KEY in data.keys() else None
        return cls(
            uids=uids,
            sessions=list(sessions) if sessions is not None else [None] * len(uids),
            members=members if members is not None else [True] * len(uids),
            lengths=response_lengths(data).tolist(),
            advantages=response_advantages(data).tolist() if with_advantages else [],
        )

    def gather(self, dp_group: dist.ProcessGroup | None) -> tuple[_Rows, int]:
        """All ranks' rows in rank order, and the offset of this rank's. Collective over ``dp_group``."""
        shards, rank = all_gather(self, dp_group)
        offset = sum(len(shard.uids) for shard in shards[:rank])
        merged = _Rows(
            uids=[u for s in shards for u in s.uids],
            sessions=[x for s in shards for x in s.sessions],
            members=[m for s in shards for m in s.members],
            lengths=[x for s in shards for x in s.lengths],
            advantages=[x for s in shards for x in s.advantages],
        )
        return merged, offset


def attach_group_lengths(data: Any, state: LearnableLambda, dp_group: dist.ProcessGroup | None) -> StepReport:
    """Give every sample of this rank the length preferences of its complete group. Collective over ``dp_group``.

    Sets ``state.groups`` to the table of the step's groups over all ranks (identical on every rank) and adds
    ``GROUP_INDEX_KEY`` and ``SELF_INDEX_KEY`` to ``data``. A group holds the rows verl's advantage counts for the
    prompt: every row of the uid, or in the V1 trainer only the final output of each agent-loop session (rows marked
    by ``GROUP_MEMBER_KEY``); an earlier output of a session shares its final output's slot, and so its weight, as
    it shares its advantage. Samples of verl's padding form groups of one, so their weight is 1. With
    ``signal=validation`` it also picks the step's held-out groups (``HELD_OUT_KEY``, ``state.held_out``).
    """
    validation = state.options.signal == "validation"
    mine = _Rows.of(data, with_advantages=validation)
    rows, offset = mine.gather(dp_group)
    count = len(rows.uids)
    padding = [verl_access.is_padding_uid(uid) for uid in rows.uids]
    final_of_session = {
        (uid, session): row
        for row, (uid, session, member) in enumerate(zip(rows.uids, rows.sessions, rows.members, strict=True))
        if member
    }
    # the row whose slot each row uses: itself, or for an earlier session output the session's final output
    slot_row = [
        row if member else final_of_session.get((uid, session), row)
        for row, (uid, session, member) in enumerate(zip(rows.uids, rows.sessions, rows.members, strict=True))
    ]
    owners = [row for row in range(count) if slot_row[row] == row]  # rows that hold a slot in the table
    ids: dict[str, int] = {}
    # Real groups get ids 0, 1, ...; every padding sample and orphaned session output gets its own negative id.
    owner_ids = torch.tensor(
        [
            -1 - row if padding[row] or not rows.members[row] else ids.setdefault(rows.uids[row], len(ids))
            for row in owners
        ],
        dtype=torch.long,
    )
    lengths = torch.tensor(rows.lengths, dtype=torch.float32)
    group_lengths, group_mask, owner_group, owner_self = group_table(owner_ids, lengths[owners])
    h, floored = length_preference(group_lengths, group_mask, state.options.r)
    state.groups = softmax_inputs(h, group_mask)

    position = {row: i for i, row in enumerate(owners)}
    slots = torch.tensor([position[slot_row[row]] for row in range(count)], dtype=torch.long)
    group_index, self_index = owner_group[slots], owner_self[slots]
    local = slice(offset, offset + len(mine.uids))
    data[GROUP_INDEX_KEY], data[SELF_INDEX_KEY] = group_index[local], self_index[local]

    counted = torch.tensor([not pad and member for pad, member in zip(padding, rows.members, strict=True)])
    if validation:
        held = held_out_uids(
            [uid for uid, real in zip(rows.uids, counted.tolist(), strict=True) if real],
            share=state.options.validation_share,
        )
        held_rows = torch.tensor([uid in held for uid in rows.uids])
        data[HELD_OUT_KEY] = held_rows[local]
        estimate = held_rows & counted
        state.held_out = HeldOut(
            group_index=group_index[estimate],
            self_index=self_index[estimate],
            advantages=torch.tensor(rows.advantages, dtype=torch.float64)[estimate],
            lengths=lengths.double()[estimate],
            base=state.options.base,
        )
    weights, _ = weights_and_slope(*state.groups, group_index, self_index, state.value.item())
    floored_samples = floored[group_index, self_index][counted]  # members whose own h hit the floor
    sizes = state.groups[2][group_index]
    shared = counted & (sizes > 1)  # a group of one always holds all of its weight
    share = float((weights.double()[shared] / sizes[shared]).max()) if bool(shared.any()) else 0.0
    return StepReport(
        weights=weights[counted], lengths=lengths[counted], floored=int(floored_samples.sum()), max_weight_share=share
    )


# ---------------------------------------------------------------------------------------------------------------
# The loss: weights for the policy-gradient term of each micro-batch.
# ---------------------------------------------------------------------------------------------------------------

_ACTIVE_LAMBDA: contextvars.ContextVar[LearnableLambda | None] = contextvars.ContextVar("active_lambda", default=None)


@dataclass
class _LossContext:
    base: str
    weights: torch.Tensor  # (bs,) f of the micro-batch's samples
    trained_counts: tuple[int, int] | None = None  # signal=validation: the policy term's (responses, tokens)
    in_policy_term: bool = False
    applied: bool = False


_LOSS_CONTEXT: contextvars.ContextVar[_LossContext | None] = contextvars.ContextVar("lambda_loss", default=None)

# What ``agg_loss(loss_agg_mode="lambda_grpo")`` means outside the actor's policy term (the trainer's entropy metric,
# the entropy and KL terms of other losses): the configured base, unweighted. Set in each process from the actor
# config it builds or the trainer config it runs.
_BASE_OUTSIDE_POLICY_TERM = LambdaGRPOConfig.base


def use_base_outside_policy_term(base: str) -> None:
    """Make ``agg_loss("lambda_grpo")`` outside the actor's policy term aggregate with ``base`` in this process."""
    global _BASE_OUTSIDE_POLICY_TERM
    _BASE_OUTSIDE_POLICY_TERM = base


@contextlib.contextmanager
def active_lambda(state: LearnableLambda) -> Iterator[None]:
    """Make ``state`` the λ that actor losses and the optimizer step inside this block use (one actor update)."""
    token = _ACTIVE_LAMBDA.set(state)
    try:
        yield
    finally:
        _ACTIVE_LAMBDA.reset(token)


def stepping_lambda() -> LearnableLambda | None:
    """The λ of the actor update running in this context, if any (the engine's optimizer step steps it too)."""
    return _ACTIVE_LAMBDA.get()


def attach_weights(data: Any, state: LearnableLambda, dp_group: dist.ProcessGroup | None = None) -> None:
    """Before a mini-batch: f and df/dλ of its samples at the current λ, so micro-batches need no recomputation.

    With ``signal=validation`` the held-out rows get f = 0 and the policy term's normalisers become the mini-batch's
    trained responses and tokens over all ranks (``state.trained_counts``): collective over ``dp_group`` then.
    """
    if GROUP_INDEX_KEY not in data.keys() or state.groups is None:
        raise RuntimeError("[verl-lambda] the mini-batch lacks the group lengths attached by train_mini_batch")
    value, slope = weights_and_slope(*state.groups, data[GROUP_INDEX_KEY], data[SELF_INDEX_KEY], state.value.item())
    state.trained_counts = None
    if state.options.signal == "validation":  # held-out groups leave the policy term; λ learns from them alone
        held = data[HELD_OUT_KEY].view(-1).bool().cpu()
        value = value.masked_fill(held.to(value.device), 0.0)
        slope = torch.zeros_like(slope)
        state.trained_counts = trained_counts(held, valid_tokens(data["response_mask"]), dp_group)
    data[WEIGHT_KEY], data[SLOPE_KEY] = value, slope


def trained_counts(held: torch.Tensor, tokens: torch.Tensor, dp_group: dist.ProcessGroup | None) -> tuple[int, int]:
    """(responses, valid tokens) of the mini-batch's rows that train, summed over ``dp_group``: the normalisers of
    the policy term under ``signal=validation``, in place of verl's ``global_batch_size`` and ``batch_num_tokens``,
    which count the held-out rows too (the policy term would shrink by the held-out share, entropy and KL not)."""
    counts = torch.stack([(~held).sum(), tokens[~held].sum()]).long()
    responses, tokens_total = all_reduce(counts, dist.ReduceOp.SUM, dp_group).tolist()
    return max(responses, 1), max(tokens_total, 1)  # a mini-batch of held-out rows only: its policy term is 0


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
    # λ stays on the CPU; `.to` is differentiable, so the gradient of the device-side weights comes back to it
    weights = with_slope(state.value.to(value.device), value, data[SLOPE_KEY])
    context = _LossContext(base=config.lambda_grpo.base, weights=weights, trained_counts=state.trained_counts)
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
    base = context.base if context is not None else _BASE_OUTSIDE_POLICY_TERM
    if context is not None and context.in_policy_term:
        context.applied = True
        if context.trained_counts is not None:  # the base aggregation over the rows that train
            global_batch_size, batch_num_tokens = context.trained_counts
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


# One response holding more than this share of its group's weight means the weights are degenerating: as |λ| grows
# f becomes one-hot and dλ vanishes (at r = 1/9 near |λ| ≈ 20), so λ could no longer come back.
MAX_WEIGHT_SHARE_WARNING = 0.5


def warn_on_degenerate_weights(state: LearnableLambda, report: StepReport) -> None:
    """Warn when one response first holds more than half of its group's weight (again after it recovered)."""
    degenerate = report.max_weight_share > MAX_WEIGHT_SHARE_WARNING
    first_rank = not dist.is_initialized() or dist.get_rank() == 0  # every rank holds the same report
    if degenerate and not state.warned_degenerate and first_rank:
        logger.warning(
            "verl-lambda: λ = %.4g gives one response %.0f%% of its group's weight (actor/lambda_grpo/max_weight_share"
            " > %.2f). As the weights become one-hot, λ's gradient vanishes and λ cannot come back; bound λ with "
            "actor_rollout_ref.actor.lambda_grpo.min/max or lower lambda_grpo.lr (see the configuration reference).",
            state.value.item(),
            100 * report.max_weight_share,
            MAX_WEIGHT_SHARE_WARNING,
        )
    state.warned_degenerate = degenerate


def step_metrics(state: LearnableLambda, report: StepReport) -> dict[str, float]:
    grads = state.step_grads
    warn_on_degenerate_weights(state, report)
    metrics = {
        "lambda": state.value.item(),
        "lambda_grad": sum(grads) / len(grads) if grads else 0.0,
        "skipped_steps": float(state.skipped_steps),
        "h_floored": float(report.floored),
        "max_weight_share": report.max_weight_share,
    }
    if state.options.signal == "validation":
        metrics["validation_responses"] = float(len(state.held_out.advantages)) if state.held_out is not None else 0.0
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
    if output is not None:
        verl_access.append_metrics(output, metrics)
    return output


def save_lambda(state: LearnableLambda, local_path: str) -> None:
    """Write λ's state next to the actor checkpoint (global rank 0; every rank holds the same λ)."""
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    os.makedirs(local_path, exist_ok=True)
    torch.save(state.state_dict(), os.path.join(local_path, CHECKPOINT_FILE))


def load_lambda(state: LearnableLambda, local_path: str) -> None:
    """Restore λ's state on every rank from global rank 0's checkpoint folder, bit for bit.

    Only global rank 0 reads the file (it is the rank that wrote it), then broadcasts its bytes: ranks on other nodes
    get rank 0's λ and optimizer state even when checkpoint folders are node-local. Collective when distributed.
    """
    path = os.path.join(local_path, CHECKPOINT_FILE)
    distributed = dist.is_initialized()
    payload = None
    if not distributed or dist.get_rank() == 0:
        if os.path.exists(path):
            with open(path, "rb") as handle:
                payload = handle.read()
    if distributed:
        payload = broadcast_bytes(payload)
    if payload is None:
        logger.warning("verl-lambda: %s has no %s; λ starts from init=%s", local_path, CHECKPOINT_FILE, state.value)
        return
    state.load_state_dict(torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True))
