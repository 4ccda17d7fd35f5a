"""Options of the two algorithms, validated where verl validates the actor config.

Both are read from hydra overrides under the actor config, so a launch needs no new config file::

    actor_rollout_ref.actor.loss_agg_mode=lambda_grpo
    +actor_rollout_ref.actor.lambda_grpo.lr=0.01                   # λ-GRPO options

    actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda
    +actor_rollout_ref.actor.policy_loss.grpo_lambda.lam=0.95      # GRPO-λ options

The class docstrings below are the configuration reference: ``scripts/gen_config_reference.py`` renders them, with
each field's default, into ``docs/configuration.md`` (each option's entry ends with its source). No verl import:
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

    For a prompt group (verl's ``uid``) of G responses with lengths L_i (valid response tokens), and the current λ::

        z_i = (L_i - mean L) / std L                 population std; z = 0 when all lengths are equal
        h_i = 1 + r * z_i                            floored at 1e-3 (only needed for G > 81 at r = 1/9)
        f_i = G * softmax_j(h_j ** λ)_i              so sum_i f_i = G, and f = 1 for λ = 0 or a group of one
        loss_pg = (1/N_seq) * sum_i f_i * mean_t l_it        base seq-mean-token-mean (default)
                = (1/N_tok) * sum_i f_i * sum_t  l_it        base token-mean

    ``l_it`` is the per-token loss of the active ``policy_loss.loss_mode`` (verl's clipped surrogate by default, or
    GRPO-λ); N_seq and N_tok are the global counts of the mini-batch, exactly as verl's own modes use them, so the
    loss does not depend on micro-batch size or the number of data-parallel ranks. Entropy and KL-loss terms keep the
    unweighted base aggregation. λ = 0 is plain GRPO (or DAPO's aggregation with ``base=token-mean``); λ > 0 shifts
    weight toward longer responses, λ < 0 toward shorter ones. λ is trained by the gradient of the same loss through
    f, averaged over the data-parallel group, with one step of its own optimizer per actor optimizer step.

    Attributes:
        base: aggregation the weights act on: ``seq-mean-token-mean`` (λ = 0 is verl's GRPO aggregation) or
            ``token-mean`` (λ = 0 is DAPO's). Source: ours: a published review of the paper states its DAPO setting
            is "effectively equivalent to fixing λ at 1", which fits weights on top of GRPO's per-response mean; the
            only public third-party implementation uses ``token-mean``.
        r: slope of ``h = 1 + r z`` (1/9 keeps h > 0 for groups up to 81 responses). Source: paper.
        init: initial λ (0: training starts as plain GRPO). Source: ours.
        learnable: train λ by the gradient of the loss; ``false`` freezes it at ``init``. Source: paper (learnable).
        optimizer: λ's own optimizer: ``adam`` or ``sgd``. Source: ours (not published).
        lr: λ's learning rate (Adam moves λ by about ``lr`` per step). Source: ours (not published).
        min, max: optional bounds; λ is clamped into them after each step. Recommended: ``min=-5``, ``max=5``.
            Beyond them one response soon holds most of its group's weight (metric
            ``actor/lambda_grpo/max_weight_share``; ``scripts/weight_share.py`` measures it) and dλ vanishes, so λ
            could no longer come back. Not a default: the paper's λ is unbounded, and a default bound would change
            the method silently. Source: ours.
        grad_clip: optional bound on |dλ| after the data-parallel average. Source: ours.
        signal: where dλ comes from. ``train``: the training loss (every group). ``validation``: a held-out share of
            each step's prompt groups is left out of the policy-gradient term, and dλ is the on-policy estimate on
            them, ``-(1/N) Σ_i f_i'(λ) A_i`` (base ``token-mean``: ``-(1/N_tok) Σ_i f_i'(λ) A_i L_i``), with A_i the
            group-normalised (GRPO) advantage of held-out response i, f_i' the analytic slope of §3 of the design
            notes, and N (N_tok) the held-out responses (tokens). The groups are chosen by a hash of the uid, so
            every rank picks the same ones and λ stays identical on every rank; the entropy and KL terms still see
            them. The policy term is then the base aggregation over the rows that train: normalised by the
            mini-batch's trained responses (``seq-mean-token-mean``) or trained tokens (``token-mean``) over all
            ranks, not by verl's counts, which include the held-out rows (the policy term would otherwise shrink by
            ``validation_share`` while entropy and KL do not). Source: the paper's summary says λ "is optimized
            using validation data"; the estimator and the held-out split are ours.
        validation_share: share of each step's groups held out when ``signal=validation`` (at least one group held
            out, at least one trained). Source: ours.
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

    Per response, with ``d_k = log π_θ(o_k) - log π_old(o_k)`` for response token k and ``κ = gamma * lam``::

        recent:  e_t = sum_{k<=t} κ^(t-k) d_k          (e_t = κ e_{t-1} + d_t)
        both:    e_t = sum_{k<=t} max(κ^(t-k), κ^k) d_k
        d_k     = clamp(d_k, -20, 20)                  (before the trace, as verl's vanilla loss clamps log-ratios)
        ratio_t = exp(clamp(e_t, -20, 20))
        loss    = verl's clipped surrogate with dual clip on ratio_t, aggregated by the actor's loss_agg_mode

    Credit flows back to earlier tokens: on-policy, the gradient on ``log π(o_k)`` is proportional to
    ``(1 - κ^(T-k)) / (1 - κ)`` instead of GRPO's constant. The loss reads old log-probs as verl's own losses do,
    honours ``clip_ratio_low/high``, ``clip_ratio_c`` and rollout-correction weights, and works under every
    ``loss_agg_mode``, ``lambda_grpo`` included. The trace is an O(T) chunked scan (``verl_lambda.traced_log_ratio``),
    exact against a dense float64 reference up to 32k tokens, with O(bs·T) memory; a masked stretch inside a response
    (a tool's output) contributes nothing but still counts as distance.

    Attributes:
        gamma: discount of the λ-return. Source: paper.
        lam: trace decay λ of the λ-return (named like verl's ``algorithm.lam``); ``gamma * lam = 0`` with
            ``recent`` is plain GRPO. Source: paper.
        style: ``recent`` (accumulating trace) or ``both`` (each token also keeps weight κ^k from the start of the
            response). Source: paper (``recent``); ``both`` is our reading.
        variant: ``epsilon-trace``: the traced ratio is clipped (paper). ``epsilon-weight``: verl's per-token ratio
            and clip, each token's loss weighted by its trace mass ``sum_{t>=k} w(t, k)`` (the style's trace weights,
            κ^(t-k) for ``recent``) normalised to mean 1 over the response. Source: paper; ``epsilon-weight`` is our
            reading.
        neg_adv_clamp: negative advantages are clamped from below at this value; ``null`` disables it. Source: paper.
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
