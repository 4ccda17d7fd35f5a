"""The methods compared in this project, as verl overrides: one source for the demo, the tests and the cluster
scripts, so that "ALGO=grpo" means the same thing everywhere.

``python -m verl_lambda.presets ALGO`` prints the overrides of ``ALGO``, one per line.

Layer 2 (foundations).
"""

from __future__ import annotations

import sys

# Each preset differs from the others only where the method does; everything else comes from the launch.
ALGORITHMS: dict[str, tuple[str, ...]] = {
    # GRPO (Shao et al., 2024, arXiv 2402.03300): per-response token mean, then mean over responses.
    "grpo": (
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean",
    ),
    # DAPO (Yu et al., 2025, arXiv 2503.14476): token-level aggregation, clip-higher (0.2 / 0.28) and no KL term.
    # Dynamic sampling and overlong shaping are left out: the λ-GRPO paper contrasts the aggregation.
    "dapo": (
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.loss_agg_mode=token-mean",
        "actor_rollout_ref.actor.clip_ratio_low=0.2",
        "actor_rollout_ref.actor.clip_ratio_high=0.28",
        "actor_rollout_ref.actor.use_kl_loss=False",
    ),
    # λ-GRPO (arXiv 2510.06870): learnable length weights on top of GRPO's aggregation (our default base).
    "lambda_grpo": (
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.loss_agg_mode=lambda_grpo",
    ),
    # GRPO-λ (arXiv 2510.00194): eligibility-trace ratio inside GRPO's clipped surrogate.
    "grpo_lambda": (
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean",
        "actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda",
    ),
    # Both: GRPO-λ's traced ratio inside the clipped surrogate, λ-GRPO's weights on its aggregation.
    "lambda_grpo+grpo_lambda": (
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.loss_agg_mode=lambda_grpo",
        "actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda",
    ),
    # λ-GRPO with λ learned from a held-out share of each step's groups (the paper: λ "is optimized using
    # validation data").
    "lambda_grpo_validation": (
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.loss_agg_mode=lambda_grpo",
        "+actor_rollout_ref.actor.lambda_grpo.signal=validation",
    ),
}


def overrides(algo: str) -> list[str]:
    if algo not in ALGORITHMS:
        raise ValueError(f"ALGO must be one of {sorted(ALGORITHMS)}, got {algo!r}")
    return list(ALGORITHMS[algo])


if __name__ == "__main__":
    try:
        print("\n".join(overrides(sys.argv[1] if len(sys.argv) > 1 else "")))
    except ValueError as exc:
        sys.exit(str(exc))
