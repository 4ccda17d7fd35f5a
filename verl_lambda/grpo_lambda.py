"""GRPO-λ in verl: ``actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda`` (arXiv 2510.00194).

A policy loss with verl's ``PolicyLossFn`` signature (registered by ``verl_lambda.patches``). It is verl's vanilla
clipped surrogate, dual clip included, with the per-token ratio replaced by ``exp(e_t)``, where ``e`` is the
eligibility trace of token log-ratios (``verl_lambda.ops.eligibility_trace``): a critic-free λ-return that gives
earlier tokens credit for later ones. It reads old log-probs as verl's own losses do and aggregates with
``agg_loss(loss_agg_mode)``, so it works under every ``loss_agg_mode``, ``lambda_grpo`` included.

With ``gamma * lam = 0``, style ``recent`` and no advantage clamp it is exactly verl's ``vanilla`` loss.

Layer 4 (methods and backend).
"""

from __future__ import annotations

from typing import Any

import torch

from verl_lambda import verl_access
from verl_lambda.config import GRPOLambdaConfig
from verl_lambda.ops.eligibility_trace import trace_mass, traced_log_ratio

# verl is imported inside the functions, not here: ``from verl... import`` here would make a first import of this
# module import verl, which loads the plugin, whose patch of core_algos imports this half-built module back.

# verl clamps log-ratios to this range before exponentiating (core_algos.compute_policy_loss_vanilla).
LOG_RATIO_CLAMP = 20.0


def clip_negative_advantages(
    advantages: torch.Tensor, response_mask: torch.Tensor, floor: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO-λ's stabiliser: negative advantages are clamped from below at ``floor`` (<= 0; None disables).

    Returns:
        the advantages (bs, T) and the share of valid tokens that were clamped (0-d).
    """
    if floor is None:
        return advantages, torch.zeros((), device=advantages.device)
    mask = response_mask.to(torch.float32)
    clamped = torch.lt(advantages, floor).to(torch.float32)
    share = (clamped * mask).sum() / mask.sum().clamp(min=1)  # elementwise: autocast would lower a dot product
    return advantages.clamp(min=floor), share  # floor <= 0, so only negative advantages move


def clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, response_mask: torch.Tensor, config: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate with dual clip, per token, with verl's clip settings from the actor config.

    Returns:
        pg_losses (bs, T), the clipped share and the dual-clipped share of valid tokens (0-d each), with the same
        definitions as verl's vanilla loss.
    """
    from verl.utils.torch_functional import masked_mean

    clip_ratio = config.clip_ratio
    low = config.clip_ratio_low if config.clip_ratio_low is not None else clip_ratio
    high = config.clip_ratio_high if config.clip_ratio_high is not None else clip_ratio
    clip_ratio_c = config.get("clip_ratio_c", 3.0)
    if clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c (dual-clip bound) must be > 1.0, got {clip_ratio_c}")

    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - low, 1 + high)
    pessimistic = torch.maximum(unclipped, clipped)
    clipfrac = masked_mean(torch.gt(clipped, unclipped).float(), response_mask)
    dual_bound = -advantages * clip_ratio_c
    dual = torch.min(dual_bound, pessimistic)
    clipfrac_lower = masked_mean(torch.gt(pessimistic, dual_bound) * (advantages < 0).float(), response_mask)
    pg_losses = torch.where(advantages < 0, dual, pessimistic)
    return pg_losses, clipfrac, clipfrac_lower


def compute_policy_loss_grpo_lambda(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """GRPO-λ's policy loss.

    Args:
        old_log_prob: (bs, T) log-probs of the sampled tokens under the behaviour policy.
        log_prob: (bs, T) log-probs under the current policy.
        advantages: (bs, T) verl's (GRPO) advantages.
        response_mask: (bs, T) valid response tokens.
        loss_agg_mode: how ``agg_loss`` aggregates the per-token losses.
        config: the actor config; options under ``config.policy_loss.grpo_lambda``.
        rollout_is_weights: (bs, T) optional rollout-correction weights, applied as in verl's vanilla loss.

    Returns:
        the scalar loss and metrics: verl's vanilla ``actor/pg_clipfrac``, ``actor/ppo_kl`` (of the per-token
        ratio), ``actor/pg_clipfrac_lower``, and ``actor/grpo_lambda/{trace_mean,trace_max,clamped_adv_frac}``.
    """
    from verl.trainer.ppo import core_algos
    from verl.utils.torch_functional import masked_mean

    assert config is not None
    options: GRPOLambdaConfig = config.policy_loss.grpo_lambda  # parsed and validated with the actor config
    advantages, clamped_frac = clip_negative_advantages(advantages, response_mask, options.neg_adv_clamp)

    # padded positions may hold anything (inf - inf = NaN); they must not reach the trace or the metrics
    log_ratio = torch.where(response_mask.bool(), log_prob - old_log_prob, 0.0)
    # clamped as verl's vanilla loss clamps it, before the trace: one infinite log-ratio at a valid token (e.g.
    # old_log_prob = rollout_log_probs in bypass mode) would otherwise turn every later token of its response into
    # inf or NaN (inf * 0 in the scan); a NaN stays NaN, as in verl
    clamped_log_ratio = torch.clamp(log_ratio, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)
    ppo_kl = masked_mean(-clamped_log_ratio, response_mask)
    if options.variant == "epsilon-trace":
        trace = traced_log_ratio(clamped_log_ratio, response_mask, options.decay, options.style)
        ratio = torch.exp(torch.clamp(trace, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP))
        token_weights = None
    else:  # epsilon-weight: per-token ratio and clipping, each token weighted by its trace mass
        trace = traced_log_ratio(clamped_log_ratio.detach(), response_mask, options.decay, options.style)  # metrics
        ratio = torch.exp(clamped_log_ratio)
        token_weights = trace_mass(response_mask, options.decay, options.style)  # float32 under any autocast

    pg_losses, clipfrac, clipfrac_lower = clipped_surrogate(ratio, advantages, response_mask, config)
    if token_weights is not None:
        pg_losses = pg_losses * token_weights
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    pg_loss = core_algos.agg_loss(
        loss_mat=pg_losses,
        loss_mask=response_mask,
        loss_agg_mode=loss_agg_mode,
        **verl_access.global_batch_info(config),
    )

    trace = trace.detach()  # 0 at masked positions, so plain reductions are masked ones
    low, high = torch.aminmax(trace) if trace.numel() else (torch.zeros(()), torch.zeros(()))
    metrics = {
        "actor/pg_clipfrac": clipfrac.detach().item(),
        "actor/ppo_kl": ppo_kl.detach().item(),
        "actor/pg_clipfrac_lower": clipfrac_lower.detach().item(),
        "actor/grpo_lambda/trace_mean": (trace.sum() / response_mask.sum().clamp(min=1)).item(),
        "actor/grpo_lambda/trace_max": max(-low.item(), high.item()),
        "actor/grpo_lambda/clamped_adv_frac": clamped_frac.detach().item(),
    }
    return pg_loss, metrics
