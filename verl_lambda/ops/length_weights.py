"""λ-GRPO's length weights and the aggregation they act on (arXiv 2510.06870). Pure torch, no verl import.

For one prompt group of G responses with lengths L_i (valid response tokens)::

    z_i = (L_i - mean L) / std L          population std; z = 0 for every i when std == 0
    h_i = max(1 + r * z_i, H_FLOOR)       r = 1/9 in the paper
    f_i = G * softmax_j(h_j ** λ)_i       so that sum_i f_i = G; λ = 0 gives f = 1

λ > 0 shifts weight toward longer responses, λ < 0 toward shorter ones. The weights are differentiable in λ, which
is how λ is learned.

Groups are handled as a padded table, one row per group (``(n_groups, G)`` with a mask), and every sample carries its
row and its position in that row: a sample's weight can be computed wherever the sample lands, without its
group-mates, and the per-λ work is done once per group rather than once per sample.

Precision: verl computes the loss inside ``autocast(bf16)`` on GPUs. The weights are computed in float64 (which
autocast never lowers) and the weighted aggregation in float32 (float64 for float64 input) with autocast off for the
input's device type, forward and backward, so both equal their float32 results under any autocast context.

Layer 1 (math).
"""

from __future__ import annotations

import torch

# h = 1 + r z is positive for G <= 81 at r = 1/9 (|z| <= sqrt(G - 1)); larger groups or r are floored here, and
# the ceiling only keeps ln h finite for absurdly large r.
H_FLOOR = 1e-3
H_CEIL = 1e300
# Up to this λ ln h, h ** λ is formed directly (it stays below e**20, so a - E_p a keeps its precision in float64);
# beyond it the softmax is computed in a form that neither loses precision nor overflows (``_saturating_softmax``).
DIRECT_LOG = 20.0
# Beyond this λ ln h the softmax of h ** λ is one-hot up to float64 rounding; exp is capped here so nothing overflows.
SATURATED_LOG = 700.0
LAMBDA_GRPO_BASES = ("seq-mean-token-mean", "token-mean")


def _full_precision(tensor: torch.Tensor) -> torch.autocast:
    """Autocast off for ``tensor``'s device type: inside, every op computes in its inputs' dtype."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def length_preference(
    group_lengths: torch.Tensor, group_mask: torch.Tensor, r: float = 1.0 / 9.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h = clamp(1 + r z, H_FLOOR, H_CEIL)`` for every member of every group (one group per row), in float64.

    Args:
        group_lengths: (n, G) lengths of each row's group members, any value where ``group_mask`` is False.
        group_mask: (n, G) bool, True for real members.
        r: slope of the length preference.

    Returns:
        h: (n, G) float64, 1 at masked positions.
        floored: (n, G) bool, members whose h hit the floor.
    """
    mask = group_mask.bool()
    lengths = torch.where(mask, group_lengths.to(torch.float64), 0.0)
    count = mask.sum(-1, keepdim=True).clamp(min=1)
    mean = lengths.sum(-1, keepdim=True) / count
    var = torch.where(mask, (lengths - mean) ** 2, 0.0).sum(-1, keepdim=True) / count
    std = var.sqrt()
    z = torch.where(std > 0, (lengths - mean) / torch.where(std > 0, std, 1.0), 0.0)
    h = 1.0 + r * z
    floored = mask & (h < H_FLOOR)
    h = torch.where(mask, h.clamp(min=H_FLOOR, max=H_CEIL), 1.0)
    return h, floored


def group_table(
    group_ids: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay out the batch's groups as a padded table with one row per group.

    Args:
        group_ids: (bs,) int64, equal id = same group.
        lengths: (bs,) lengths.

    Returns:
        group_lengths: (n_groups, G) lengths of each group's members, in sample order; G = the largest group size.
        group_mask: (n_groups, G) bool.
        group_index: (bs,) int64 row of each sample's group.
        self_index: (bs,) int64 position of each sample within its row.
    """
    group_ids = group_ids.long().view(-1)
    _, group_index, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    order = torch.argsort(group_index, stable=True)  # members of a group become contiguous, in sample order
    starts = torch.cumsum(counts, 0) - counts
    width = int(counts.max()) if len(counts) else 0
    slots = torch.arange(width, device=group_ids.device)
    members = order[(starts[:, None] + slots).clamp(max=len(order) - 1)]  # (n_groups, G) sample indices
    group_mask = slots < counts[:, None]
    self_index = torch.empty_like(group_ids)
    self_index[order] = torch.arange(len(order), device=group_ids.device) - starts[group_index[order]]
    group_lengths = torch.where(group_mask, lengths.view(-1)[members], 0)
    return group_lengths, group_mask, group_index, self_index


def softmax_inputs(h: torch.Tensor, group_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The λ-independent parts of the weights, computed once per step: ``(ln h, mask bias, group size)``.

    Args:
        h: (n_groups, G) positive, finite length preferences of each group's members.
        group_mask: (n_groups, G) bool, True for real members.

    Returns:
        log_h: (n_groups, G) float64, 0 at masked positions; bias: (n_groups, G) float64, 0 for members and -inf
        elsewhere; size: (n_groups,) float64 group sizes.
    """
    mask = group_mask.bool()
    log_h = torch.log(h.to(torch.float64)).masked_fill(~mask, 0.0)
    bias = torch.zeros_like(log_h).masked_fill(~mask, float("-inf"))
    return log_h, bias, mask.sum(-1).to(torch.float64)


@torch.no_grad()
def weights_and_slope(
    log_h: torch.Tensor,
    bias: torch.Tensor,
    size: torch.Tensor,
    group_index: torch.Tensor,
    self_index: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``f = G softmax(h ** λ)`` of each sample, and its slope ``d f / d λ``, both (bs,) float32.

    The slope is the spec's analytic gradient ``G p_i (a_i - sum_j p_j a_j)`` with ``p = softmax(h ** λ)`` and
    ``a_j = h_j ** λ ln h_j``. Both are finite for every finite λ (``_saturating_softmax`` takes over where
    ``h ** λ`` would lose precision or overflow). ``log_h``, ``bias`` and ``size`` are the group table of
    ``softmax_inputs``; ``group_index`` and ``self_index`` (bs,) locate each sample in it (``group_table``).
    """
    with _full_precision(log_h):
        return _weights_and_slope(log_h, bias, size, group_index, self_index, lam)


def _weights_and_slope(
    log_h: torch.Tensor,
    bias: torch.Tensor,
    size: torch.Tensor,
    group_index: torch.Tensor,
    self_index: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    u = log_h * lam  # λ ln h, 0 at masked positions
    if float(u.max()) <= DIRECT_LOG:  # the common case: h ** λ is at most e**20, formed directly
        g = torch.exp(u)
        probs = torch.softmax(g + bias, dim=-1)
        a = g * log_h  # d (h ** λ) / dλ
        spread = a - (probs * a).sum(-1, keepdim=True)  # a_i - E_p a
    else:
        probs, spread = _saturating_softmax(log_h, bias, u)
    # the indices travel with the batch and may sit on another device than the step's table
    group_index = group_index.to(log_h.device, torch.long).view(-1)
    own = group_index * log_h.shape[-1] + self_index.to(log_h.device, torch.long).view(-1)  # flat position in table
    weight = size[group_index] * probs.view(-1)[own]
    return weight.float(), (weight * spread.view(-1)[own]).float()


def _saturating_softmax(log_h: torch.Tensor, bias: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``p = softmax(h ** λ)`` and ``a - E_p a`` (0 where p = 0) for groups where ``h ** λ`` is huge.

    With ``s = max_j u_j`` per group, the softmax runs on ``g_j - g_max = e^s expm1(u_j - s)``, formed in log space so
    that ``h ** λ`` itself is never built, and ``a_i - E_p a = e^s (ℓ_i - E_p ℓ) + (v_i ℓ_i - E_p[v ℓ])`` with
    ``ℓ = ln h`` taken relative to the group's maximiser and ``v = g - g_max``: exact ties cancel exactly, so a
    saturated group (one-hot p) gets slope 0 instead of inf - inf.
    """
    member = bias == 0
    s = (u + bias).amax(-1, keepdim=True)  # per-group max over members (every row has one)
    gap = -torch.exp(s + torch.log(-torch.expm1((u - s).clamp(max=0.0))))  # h_j ** λ - max_k h_k ** λ, <= 0
    gap = torch.where(member, gap, float("-inf"))
    probs = torch.softmax(gap, dim=-1)
    live = probs > 0
    top = torch.where(member & (u == s), log_h, float("inf")).amin(-1, keepdim=True)  # ln h of a maximiser
    rel = torch.where(live, log_h - top, 0.0)
    gap_log_h = torch.where(live, gap * log_h, 0.0)
    growth = torch.exp(s.clamp(max=SATURATED_LOG))  # max_k h_k ** λ
    spread = growth * (rel - (probs * rel).sum(-1, keepdim=True)) + (
        gap_log_h - (probs * gap_log_h).sum(-1, keepdim=True)
    )
    return probs, torch.where(live, spread, 0.0)


class _KnownSlope(torch.autograd.Function):
    """``f(λ)`` given by its value and slope at the current λ: one graph node, backward ``sum(grad * slope)``."""

    @staticmethod
    def forward(ctx, lam: torch.Tensor, value: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(slope)
        return value.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (slope,) = ctx.saved_tensors
        grad_lam = (grad * slope).sum().reshape(()) if ctx.needs_input_grad[0] else None
        return grad_lam, None, None


def with_slope(lam: torch.Tensor | float, value: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """``value``, differentiable in ``lam`` with ``d value / d lam = slope`` (exact first-order gradient)."""
    if not isinstance(lam, torch.Tensor) or not lam.requires_grad:
        return value
    return _KnownSlope.apply(lam, value, slope.to(value.device))


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
    group_lengths, group_mask, group_index, self_index = group_table(group_ids, lengths)
    h, _ = length_preference(group_lengths, group_mask, r)
    lam_value = lam.item() if isinstance(lam, torch.Tensor) else float(lam)
    value, slope = weights_and_slope(*softmax_inputs(h, group_mask), group_index, self_index, lam_value)
    return with_slope(lam, value, slope)


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
    exactly (bitwise, gradients included) verl's modes of the same name.

    Args:
        loss_mat: (bs, T) per-token losses of a micro-batch.
        loss_mask: (bs, T) valid tokens.
        weights: (bs,) f of each response; gradients flow to it (and from it to λ).
        base: ``seq-mean-token-mean`` or ``token-mean``.
        dp_size: data-parallel world size.
        batch_num_tokens: valid tokens in the global mini-batch (token-mean); local count if None and dp_size == 1.
        global_batch_size: responses in the global mini-batch (seq-mean-token-mean); likewise.

    Returns:
        a scalar tensor, float32 (float64 for float64 ``loss_mat``), computed in that precision under any autocast
        context.
    """
    if base not in LAMBDA_GRPO_BASES:
        raise ValueError(f"base must be one of {list(LAMBDA_GRPO_BASES)}, got {base!r}")
    per_token = base == "token-mean"
    count = batch_num_tokens if per_token else global_batch_size
    if count is None:
        if dp_size > 1:
            raise ValueError(
                f"(global) {'batch_num_tokens' if per_token else 'global_batch_size'} is required when dp_size > 1"
            )
        count = loss_mask.sum() if per_token else (loss_mask.sum(-1) > 0).sum()
    dtype = torch.float64 if loss_mat.dtype == torch.float64 else torch.float32
    with _full_precision(loss_mat):
        return _WeightedAggregation.apply(loss_mat.to(dtype), loss_mask, weights.to(dtype), per_token, count, dp_size)


class _WeightedAggregation(torch.autograd.Function):
    """One graph node for the weighted aggregation. Forward and backward perform the same floating-point operations,
    in the same order, as autograd does on verl's ``agg_loss`` expression, so f = 1 reproduces verl bitwise."""

    @staticmethod
    def forward(ctx, loss_mat, loss_mask, weights, per_token: bool, count, dp_size: int):
        if per_token:
            loss = (loss_mat * weights[:, None] * loss_mask).sum() / count * dp_size
            ctx.save_for_backward(loss_mat, loss_mask, weights)
        else:
            tokens = torch.sum(loss_mask, dim=-1) + 1e-8
            seq_losses = torch.sum(loss_mat * loss_mask, dim=-1) / tokens  # exactly 0 for empty responses
            loss = (seq_losses * weights).sum() / count * dp_size
            ctx.save_for_backward(loss_mask, weights, tokens, seq_losses)
        ctx.per_token, ctx.count, ctx.dp_size = per_token, count, dp_size
        return loss

    @staticmethod
    def backward(ctx, grad):
        with _full_precision(grad):
            return _WeightedAggregation._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad):
        total = grad * ctx.dp_size / ctx.count  # d loss / d (weighted sum)
        grad_loss_mat = grad_weights = None
        if ctx.per_token:
            loss_mat, loss_mask, weights = ctx.saved_tensors
            if ctx.needs_input_grad[0]:
                grad_loss_mat = total * loss_mask * weights[:, None]
            if ctx.needs_input_grad[2]:
                grad_weights = total * (loss_mat * loss_mask).sum(-1)
        else:
            loss_mask, weights, tokens, seq_losses = ctx.saved_tensors
            if ctx.needs_input_grad[0]:
                grad_loss_mat = (total * weights / tokens)[:, None] * loss_mask
            if ctx.needs_input_grad[2]:
                grad_weights = total * seq_losses
        return grad_loss_mat, None, grad_weights, None, None, None
