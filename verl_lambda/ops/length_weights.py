"""λ-GRPO's length weights and the aggregation they act on (arXiv 2510.06870). Pure torch, no verl import.

For one prompt group of G responses with lengths L_i (valid response tokens)::

    z_i = (L_i - mean L) / std L          population std; z = 0 for every i when std == 0
    h_i = max(1 + r * z_i, H_FLOOR)       r = 1/9 in the paper
    f_i = G * softmax_j(h_j ** λ)_i       so that sum_i f_i = G; λ = 0 gives f = 1

λ > 0 shifts weight toward longer responses, λ < 0 toward shorter ones. The weights are differentiable in λ, which
is how λ is learned.

Groups are handled as padded rows: row ``i`` holds the lengths of every member of sample i's group (``(n, G)`` with
a mask), so a sample's weight can be computed wherever the sample lands, without its group-mates.
"""

from __future__ import annotations

import torch

# h = 1 + r z is positive for G <= 81 at r = 1/9 (|z| <= sqrt(G - 1)); larger groups or r are floored here.
H_FLOOR = 1e-3
LAMBDA_GRPO_BASES = ("seq-mean-token-mean", "token-mean")


def length_preference(
    group_lengths: torch.Tensor, group_mask: torch.Tensor, r: float = 1.0 / 9.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h = max(1 + r z, H_FLOOR)`` for every member of every row's group.

    Args:
        group_lengths: (n, G) lengths of the group members of each row, any value where ``group_mask`` is False.
        group_mask: (n, G) bool, True for real members.
        r: slope of the length preference.

    Returns:
        h: (n, G) float32, 1 at masked positions.
        floored: (n, G) bool, members whose h hit the floor.
    """
    mask = group_mask.bool()
    lengths = torch.where(mask, group_lengths.float(), 0.0)
    count = mask.sum(-1, keepdim=True).clamp(min=1)
    mean = lengths.sum(-1, keepdim=True) / count
    var = torch.where(mask, (lengths - mean) ** 2, 0.0).sum(-1, keepdim=True) / count
    std = var.sqrt()
    z = torch.where(std > 0, (lengths - mean) / torch.where(std > 0, std, 1.0), 0.0)
    h = 1.0 + r * z
    floored = mask & (h < H_FLOOR)
    h = torch.where(mask, h.clamp(min=H_FLOOR), 1.0)
    return h, floored


def group_weights(h: torch.Tensor, group_mask: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """``f = G * softmax(h ** λ)`` over the members of each row's group.

    Args:
        h: (n, G) positive length preferences.
        group_mask: (n, G) bool, True for real members.
        lam: 0-d tensor or float; gradients flow to it.

    Returns:
        (n, G) weights, 0 at masked positions, each row summing to its group size.
    """
    mask = group_mask.bool()
    # float64: h ** λ stays finite for |λ ln h| < 709, so large |λ| saturates the softmax instead of giving NaN.
    lam = torch.as_tensor(lam, device=h.device).to(torch.float64)
    g = torch.exp(lam * torch.log(h.to(torch.float64)))  # h ** λ, differentiable in λ
    probs = torch.softmax(g.masked_fill(~mask, float("-inf")), dim=-1)
    return (mask.sum(-1, keepdim=True) * probs).float()


def group_rows(group_ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay out every sample's group as a padded row.

    Args:
        group_ids: (bs,) int64, equal id = same group.
        lengths: (bs,) lengths.

    Returns:
        group_lengths: (bs, G) lengths of the members of each sample's group, G = the largest group size.
        group_mask: (bs, G) bool.
        self_index: (bs,) position of the sample itself within its row.
    """
    group_ids = group_ids.long().view(-1)
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)  # members of a group become contiguous, in sample order
    starts = torch.cumsum(counts, 0) - counts
    width = int(counts.max()) if len(counts) else 0
    slots = torch.arange(width, device=group_ids.device)
    members = order[(starts[:, None] + slots).clamp(max=len(order) - 1)]  # (n_groups, G) sample indices
    member_mask = slots < counts[:, None]
    rank_in_group = torch.empty_like(group_ids)
    rank_in_group[order] = torch.arange(len(order), device=group_ids.device) - starts[inverse[order]]
    group_lengths = torch.where(member_mask, lengths.view(-1)[members], 0)
    return group_lengths[inverse], member_mask[inverse], rank_in_group


def row_weights(
    h: torch.Tensor, group_mask: torch.Tensor, self_index: torch.Tensor, lam: torch.Tensor | float
) -> torch.Tensor:
    """The weight of each row's own sample: ``group_weights(...)[i, self_index[i]]``, shape (n,)."""
    return group_weights(h, group_mask, lam).gather(-1, self_index.long().view(-1, 1)).squeeze(-1)


def length_weights(
    lengths: torch.Tensor, group_ids: torch.Tensor, lam: torch.Tensor | float, r: float = 1.0 / 9.0
) -> torch.Tensor:
    """λ-GRPO's per-response weights f for a batch that contains every member of its groups.

    Args:
        lengths: (bs,) response lengths (valid tokens), integer or float.
        group_ids: (bs,) int64 group ids (verl's ``uid``); equal id = same prompt group.
        lam: λ, a 0-d tensor or float; the result is differentiable in it.
        r: slope of the length preference ``h = 1 + r z`` (paper: 1/9).

    Returns:
        f: (bs,) float32, summing to G within each group; 1 for groups of one or of equal lengths, and for λ = 0.
    """
    group_lengths, group_mask, self_index = group_rows(group_ids, lengths)
    h, _ = length_preference(group_lengths, group_mask, r)
    return row_weights(h, group_mask, self_index, lam)


def weighted_agg_loss(
    loss_mat: torch.Tensor,
    loss_mask: torch.Tensor,
    weights: torch.Tensor,
    base: str = "seq-mean-token-mean",
    dp_size: int = 1,
    batch_num_tokens: int | torch.Tensor | None = None,
    global_batch_size: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Aggregate per-token losses with per-response weights f, normalised by the global counts of the mini-batch.

    ``seq-mean-token-mean``: ``(1/N_seq) * sum_i f_i * mean_t l_it``; ``token-mean``: ``(1/N_tok) * sum_i f_i sum_t
    l_it``. As in verl's ``agg_loss``, the result is multiplied by ``dp_size`` because data-parallel gradients are
    averaged, which makes the loss invariant to micro-batch size and the number of ranks. With f = 1 both are
    exactly verl's modes of the same name.

    Args:
        loss_mat: (bs, T) per-token losses of a micro-batch.
        loss_mask: (bs, T) valid tokens.
        weights: (bs,) f of each response.
        base: ``seq-mean-token-mean`` or ``token-mean``.
        dp_size: data-parallel world size.
        batch_num_tokens: valid tokens in the global mini-batch (token-mean); local count if None and dp_size == 1.
        global_batch_size: responses in the global mini-batch (seq-mean-token-mean); likewise.

    Returns:
        a scalar tensor.
    """
    if base == "token-mean":
        if batch_num_tokens is None:
            if dp_size > 1:
                raise ValueError("(global) batch_num_tokens is required when dp_size > 1")
            batch_num_tokens = loss_mask.sum()
        return (loss_mat * weights[:, None] * loss_mask).sum() / batch_num_tokens * dp_size
    if base == "seq-mean-token-mean":
        tokens = torch.sum(loss_mask, dim=-1)
        seq_losses = torch.sum(loss_mat * loss_mask, dim=-1) / (tokens + 1e-8)
        seq_mask = (tokens > 0).float()
        if global_batch_size is None:
            if dp_size > 1:
                raise ValueError("global_batch_size is required when dp_size > 1")
            global_batch_size = seq_mask.sum()
        return (seq_losses * weights * seq_mask).sum() / global_batch_size * dp_size
    raise ValueError(f"base must be one of {list(LAMBDA_GRPO_BASES)}, got {base!r}")
