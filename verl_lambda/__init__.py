"""verl-lambda: λ-GRPO and GRPO-λ for verl, one config line each.

- ``actor_rollout_ref.actor.loss_agg_mode=lambda_grpo``: λ-GRPO (arXiv 2510.06870), length-dependent response
  weights controlled by a learnable λ.
- ``actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda``: GRPO-λ (arXiv 2510.00194), eligibility-trace
  credit assignment inside the clipped surrogate.

verl loads the plugin itself (entry point ``verl.plugins``); importing this package does nothing else. The public
math functions are importable without verl internals.

Layer 1 (math): the package names layer 1's public functions and nothing of the layers above.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["length_weights", "traced_log_ratio"]

if TYPE_CHECKING:
    from verl_lambda.ops.eligibility_trace import traced_log_ratio
    from verl_lambda.ops.length_weights import length_weights


def __getattr__(name: str) -> Any:
    # Lazy, so that verl's `import verl` (which imports verl_lambda.plugin) never pays for these modules.
    if name == "length_weights":
        from verl_lambda.ops.length_weights import length_weights

        return length_weights
    if name == "traced_log_ratio":
        from verl_lambda.ops.eligibility_trace import traced_log_ratio

        return traced_log_ratio
    raise AttributeError(f"module 'verl_lambda' has no attribute {name!r}")
