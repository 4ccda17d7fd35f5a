"""Group token mean: DAPO's loss aggregation as its paper writes it (arXiv 2503.14476, eq. 8 read per group).

verl's ``token-mean`` divides a mini-batch's summed token losses by the mini-batch's token count. The group token
mean takes the token mean inside each prompt group, then the mean over groups::

    loss = (1/N_groups) * sum_g (1/T_g) * sum_{i in g} sum_t l_it          T_g = sum_{i in g} L_i

Written per row, every token of row i carries ``1 / (T_g(i) * N_groups)``. ``T_g`` counts the group's valid tokens
over the whole step, and ``N_groups`` is ``sum_i 1/G_g(i)`` over the mini-batch's rows (G_g the group's responses in
the step): a group split across mini-batches counts in each by the share of its responses that mini-batch holds.
Both are global counts, so the loss does not depend on the split into micro-batches or data-parallel ranks. When
every group has the same token count T, ``loss = sum l / (N_groups * T)`` is ``token-mean``.

Pure torch, no verl.

Layer 1 (math).
"""

from __future__ import annotations

import torch

GROUP_MEAN_MODE = "group-mean-token-mean"


def group_token_counts(group_ids: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's group token count and its share of its group.

    Args:
        group_ids: (bs,) int64; equal ids form a group, a negative id marks a row of no group (verl's padding).
        tokens: (bs,) valid response tokens of each row.

    Returns:
        ``(group_tokens, group_share)``, both (bs,) float64: ``T_g`` of the row's group, and ``1/G_g``. A row of no
        group, or of a group with no valid token, gets 0 in both: it adds nothing to the loss nor to ``N_groups``.
    """
    group_ids = group_ids.long().view(-1)
    tokens = tokens.to(torch.float64).view(-1)
    if group_ids.shape != tokens.shape:
        raise ValueError(f"group_ids {tuple(group_ids.shape)} and tokens {tuple(tokens.shape)} must match")
    _, inverse = torch.unique(group_ids, return_inverse=True)
    groups = int(inverse.max()) + 1 if len(inverse) else 0
    totals = torch.zeros(groups, dtype=torch.float64).index_add_(0, inverse, tokens)
    sizes = torch.zeros(groups, dtype=torch.float64).index_add_(0, inverse, torch.ones_like(tokens))
    counted = (group_ids >= 0) & (totals[inverse] > 0)
    group_tokens = torch.where(counted, totals[inverse], 0.0)
    group_share = torch.where(counted, 1.0 / sizes[inverse], 0.0)
    return group_tokens, group_share


def group_mean_agg_loss(
    loss_mat: torch.Tensor,
    loss_mask: torch.Tensor,
    group_tokens: torch.Tensor,
    n_groups: float | None = None,
    dp_size: int = 1,
    group_share: torch.Tensor | None = None,
) -> torch.Tensor:
    """The group token mean of a micro-batch's share of the loss, as verl's ``agg_loss`` returns its modes.

    Args:
        loss_mat: (bs, T) per-token loss.
        loss_mask: (bs, T) valid tokens.
        group_tokens: (bs,) ``T_g`` of each row's group over the whole step (``group_token_counts``); 0 for a row of
            no group.
        n_groups: the mini-batch's ``N_groups`` over all data-parallel ranks. None (one rank, no global counts):
            the micro-batch's own, ``sum(group_share)``.
        dp_size: data-parallel ranks; the result is multiplied by it because FSDP averages gradients over ranks.
        group_share: (bs,) ``1/G_g``, needed only when ``n_groups`` is None.

    Returns:
        0-d tensor in ``loss_mat``'s dtype (float32 at least, as the weights are).
    """
    if n_groups is None:
        if dp_size > 1:
            raise ValueError("the mini-batch's group count over all ranks (n_groups) is required when dp_size > 1")
        if group_share is None:
            raise ValueError("either n_groups or group_share is required")
        n_groups = float(group_share.sum())
    row_sums = (loss_mat * loss_mask.to(loss_mat.dtype)).sum(-1)
    # 1/T_g where the counts live (float64 on the CPU), then one copy in the loss's precision to its device
    inverse = torch.where(group_tokens > 0, 1.0 / group_tokens.clamp(min=1.0), 0.0)
    inverse = inverse.to(row_sums.device, torch.promote_types(row_sums.dtype, torch.float32))
    # a mini-batch of padding rows only has no group: its loss is 0 (every row's inverse is 0)
    return (row_sums * inverse).sum() / max(float(n_groups), 1e-8) * dp_size
