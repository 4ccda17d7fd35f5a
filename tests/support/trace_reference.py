"""Independent float64 references for GRPO-λ's trace, written from the definition (spec §4):
``e_t = sum_{k<=t} w(t, k) d_k`` with ``w = κ**(t-k)`` (recent) or ``max(κ**(t-k), κ**k)`` (both)."""

from __future__ import annotations

import torch


def trace_weights(rows: torch.Tensor, length: int, decay: float, style: str) -> torch.Tensor:
    """Dense float64 weights w(t, k) for the positions t in ``rows`` and all k < length."""
    t = rows.double()[:, None]
    k = torch.arange(length, dtype=torch.float64)[None, :]
    kappa = torch.tensor(decay, dtype=torch.float64)
    w = kappa ** (t - k).clamp(min=0)
    if style == "both":
        w = torch.maximum(w, kappa**k)
    return torch.where(k <= t, w, 0.0)


def dense_traced_log_ratio(log_ratio, mask, decay, style="recent", block=512):
    """O(T^2) time, O(block * T) memory: e = mask * W (mask * d), in float64."""
    d = log_ratio.double() * mask.double()
    length = d.shape[-1]
    out = torch.empty_like(d)
    for start in range(0, length, block):
        rows = torch.arange(start, min(start + block, length))
        out[:, rows] = d @ trace_weights(rows, length, decay, style).T
    return out * mask.double()


def dense_trace_gradient(upstream, mask, decay, style="recent", block=512):
    """d(sum(upstream * e)) / d(log_ratio) = mask * W^T (mask * upstream), in float64."""
    g = upstream.double() * mask.double()
    length = g.shape[-1]
    grad = torch.zeros_like(g)
    for start in range(0, length, block):
        rows = torch.arange(start, min(start + block, length))
        grad += g[:, rows] @ trace_weights(rows, length, decay, style)
    return grad * mask.double()


def recurrence(log_ratio, mask, decay):
    """``recent`` by its recurrence e_t = κ e_{t-1} + d_t, a Python loop over t in float64."""
    d = log_ratio.double() * mask.double()
    out = torch.zeros_like(d)
    running = torch.zeros(d.shape[0], dtype=torch.float64)
    for t in range(d.shape[-1]):
        running = decay * running + d[:, t]
        out[:, t] = running
    return out * mask.double()
