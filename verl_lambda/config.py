"""Options of the two algorithms, validated where verl validates the actor config.

Both are read from hydra overrides under the actor config, so a launch needs no new config file::

    actor_rollout_ref.actor.loss_agg_mode=lambda_grpo
    +actor_rollout_ref.actor.lambda_grpo.lr=0.01                   # λ-GRPO options

    actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda
    +actor_rollout_ref.actor.policy_loss.grpo_lambda.lam=0.95      # GRPO-λ options

Every option is documented in the README with its math and its source. This module has no verl import:
the verl side (``verl_lambda.patches``) attaches the parsed options to verl's config objects. Every wrong key, type
or value is a ``ValueError`` naming the full hydra key, raised where verl validates the actor (the driver first).

Layer 2 (foundations).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from verl_lambda.ops.eligibility_trace import TRACE_STYLES
from verl_lambda.ops.length_weights import LAMBDA_GRPO_BASES

LAMBDA_GRPO_MODE = "lambda_grpo"  # actor.loss_agg_mode
GRPO_LAMBDA_MODE = "grpo_lambda"  # actor.policy_loss.loss_mode
LAMBDA_GRPO_KEY = "actor_rollout_ref.actor.lambda_grpo"
GRPO_LAMBDA_KEY = "actor_rollout_ref.actor.policy_loss.grpo_lambda"

LAMBDA_OPTIMIZERS = ("adam", "sgd")
LAMBDA_SIGNALS = ("train", "validation")
TRACE_VARIANTS = ("epsilon-trace", "epsilon-weight")


def _fail(prefix: str, key: str, message: str) -> ValueError:
    return ValueError(f"[verl-lambda] {prefix}.{key} {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Options:
    """Shared parsing: unknown keys and wrong types are errors that name the full hydra key."""

    PREFIX: ClassVar[str]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None):
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ValueError(
                f"[verl-lambda] {cls.PREFIX} must be a group of options, e.g. +{cls.PREFIX}."
                f"{dataclasses.fields(cls)[0].name}=..., got {values!r}"
            )
        values = dict(values)
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise _fail(cls.PREFIX, unknown[0], f"is not an option. Allowed keys: {', '.join(allowed)}")
        options = cls(**values)
        options.validate()
        return options

    def validate(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class LambdaGRPOConfig(_Options):
    """λ-GRPO (arXiv 2510.06870): per-response weights from response length, controlled by a learnable λ.

    For a prompt group of G responses with lengths L_i:
    ``z_i = (L_i - mean L) / std L``, ``h_i = 1 + r z_i``, ``f_i = G softmax_j(h_j^λ)_i``; ``f_i`` multiplies the
    policy-gradient loss of response i. λ = 0 is plain GRPO (or DAPO's token-mean with ``base=token-mean``).

    Attributes:
        base: aggregation the weights act on. ``seq-mean-token-mean``: ``(1/N_seq) Σ_i f_i mean_t l_it``
            (our reading of the paper; λ = 0 is verl's GRPO aggregation). ``token-mean``:
            ``(1/N_tok) Σ_i f_i Σ_t l_it`` (λ = 0 is DAPO's aggregation).
        r: slope of ``h_i = 1 + r z_i`` (paper: 1/9, which keeps h > 0 for groups up to 81 responses).
        init: initial value of λ (ours: 0.0, i.e. training starts as plain GRPO).
        learnable: train λ by the gradient of the loss (paper); ``False`` freezes it at ``init``.
        optimizer: ``adam`` or ``sgd``, λ's own optimizer (ours; the paper does not publish it).
        lr: learning rate of λ's optimizer (ours: 0.01).
        min, max: optional bounds; λ is clamped into them after every step (ours: unbounded, as in the paper).
            Recommended: -5 and 5. Beyond them one response soon holds most of its group's weight (metric
            ``actor/lambda_grpo/max_weight_share``; ``scripts/weight_share.py`` measures it) and dλ vanishes, so λ
            could no longer come back.
        grad_clip: optional bound on |dλ| after the data-parallel average (ours: no clipping).
        signal: where λ's gradient comes from. ``train``: the training loss itself (every group). ``validation``: the
            paper's summary says λ "is optimized using validation data"; here a held-out share of each step's prompt
            groups is left out of the policy-gradient term, and λ's gradient is the on-policy estimate on them,
            ``-(1/N) Σ_i f_i'(λ) A_i`` (base ``token-mean``: ``-(1/N_tok) Σ_i f_i'(λ) A_i L_i``), with A_i the
            GRPO advantage and N (N_tok) the held-out responses (tokens). The policy term is then the base
            aggregation over the rows that train (normalised by their responses or tokens). Ours: the paper's
            validation split is not described.
        validation_share: the share of each step's prompt groups held out for ``signal=validation`` (ours: 0.25).
    """

    PREFIX: ClassVar[str] = LAMBDA_GRPO_KEY

    base: str = "seq-mean-token-mean"
    r: float = 1.0 / 9.0
    init: float = 0.0
    learnable: bool = True
    optimizer: str = "adam"
    lr: float = 0.01
    min: float | None = None
    max: float | None = None
    grad_clip: float | None = None
    signal: str = "train"
    validation_share: float = 0.25

    def validate(self) -> None:
        p = self.PREFIX
        if self.base not in LAMBDA_GRPO_BASES:
            raise _fail(p, "base", f"must be one of {list(LAMBDA_GRPO_BASES)}, got {self.base!r}")
        if not _is_number(self.r) or self.r <= 0:
            raise _fail(p, "r", f"must be a number > 0, got {self.r!r}")
        if not _is_number(self.init):
            raise _fail(p, "init", f"must be a finite number, got {self.init!r}")
        if not isinstance(self.learnable, bool):
            raise _fail(p, "learnable", f"must be true or false, got {self.learnable!r}")
        if self.optimizer not in LAMBDA_OPTIMIZERS:
            raise _fail(p, "optimizer", f"must be one of {list(LAMBDA_OPTIMIZERS)}, got {self.optimizer!r}")
        if not _is_number(self.lr) or self.lr < 0:
            raise _fail(p, "lr", f"must be a number >= 0, got {self.lr!r}")
        for key in ("min", "max"):
            value = getattr(self, key)
            if value is not None and not _is_number(value):
                raise _fail(p, key, f"must be a finite number or null, got {value!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _fail(p, "min", f"({self.min}) must be <= {p}.max ({self.max})")
        if (self.min is not None and self.init < self.min) or (self.max is not None and self.init > self.max):
            raise _fail(p, "init", f"({self.init}) must lie within [{p}.min, {p}.max] = [{self.min}, {self.max}]")
        if self.grad_clip is not None and (not _is_number(self.grad_clip) or self.grad_clip <= 0):
            raise _fail(p, "grad_clip", f"must be a number > 0 or null, got {self.grad_clip!r}")
        if self.signal not in LAMBDA_SIGNALS:
            raise _fail(p, "signal", f"must be one of {list(LAMBDA_SIGNALS)}, got {self.signal!r}")
        if not _is_number(self.validation_share) or not 0 < self.validation_share < 1:
            raise _fail(p, "validation_share", f"must be a number in (0, 1), got {self.validation_share!r}")


@dataclass(frozen=True)
class GRPOLambdaConfig(_Options):
    """GRPO-λ (arXiv 2510.00194): an eligibility trace of token log-ratios replaces the per-token ratio.

    With ``d_k = log π_θ(o_k) - log π_old(o_k)`` and ``κ = gamma * lam``, style ``recent`` uses
    ``e_t = Σ_{k<=t} κ^(t-k) d_k`` and style ``both`` uses ``e_t = Σ_{k<=t} max(κ^(t-k), κ^k) d_k``;
    the clipped surrogate then uses ``ratio_t = exp(e_t)``.

    Attributes:
        gamma: discount of the λ-return (paper: 1.0).
        lam: trace decay λ of the λ-return (paper: 0.99). ``gamma * lam = 0`` with ``recent`` is plain GRPO.
        style: ``recent`` (accumulating trace) or ``both`` (each token also keeps weight κ^k from the start).
        variant: ``epsilon-trace`` (paper: the traced ratio is clipped) or ``epsilon-weight`` (our reading: the
            per-token ratio is clipped and each token's loss is weighted by its normalised trace mass).
        neg_adv_clamp: lower bound for negative advantages (paper: -0.1); ``null`` disables it.
    """

    PREFIX: ClassVar[str] = GRPO_LAMBDA_KEY

    gamma: float = 1.0
    lam: float = 0.99
    style: str = "recent"
    variant: str = "epsilon-trace"
    neg_adv_clamp: float | None = -0.1

    @property
    def decay(self) -> float:
        """κ = gamma * lam, the per-token decay of the trace."""
        return self.gamma * self.lam

    def validate(self) -> None:
        p = self.PREFIX
        for key in ("gamma", "lam"):
            value = getattr(self, key)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise _fail(p, key, f"must be a number in [0, 1], got {value!r}")
        if self.style not in TRACE_STYLES:
            raise _fail(p, "style", f"must be one of {list(TRACE_STYLES)}, got {self.style!r}")
        if self.variant not in TRACE_VARIANTS:
            raise _fail(p, "variant", f"must be one of {list(TRACE_VARIANTS)}, got {self.variant!r}")
        if self.neg_adv_clamp is not None and (not _is_number(self.neg_adv_clamp) or self.neg_adv_clamp > 0):
            raise _fail(p, "neg_adv_clamp", f"must be a number <= 0 or null, got {self.neg_adv_clamp!r}")
