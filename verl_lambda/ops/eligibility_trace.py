"""GRPO-λ's eligibility trace of token log-ratios (arXiv 2510.00194). Pure torch, no verl import.

With ``d_k = log pi_theta(o_k) - log pi_old(o_k)`` for response token k and decay ``κ = gamma * lambda``::

    recent:  e_t = sum_{k<=t} κ**(t-k) d_k                 (e_t = κ e_{t-1} + d_t)
    both:    e_t = sum_{k<=t} max(κ**(t-k), κ**k) d_k

``exp(e_t)`` replaces the per-token ratio in the clipped surrogate, so credit flows back to earlier tokens: on-policy
(all d = 0) the gradient on log pi(o_k) under ``recent`` is proportional to ``(1 - κ**(T-k)) / (1 - κ)``.

Cost: O(T) time and O(bs*T) memory. A direct ``κ**(t-k)`` matrix would be O(T²), and ``κ**t * cumsum(κ**-k d_k)``
overflows float32 for κ near 1 and T in the thousands; instead the recurrence runs as a chunked scan: a small
``C x C`` decay matrix inside chunks, and the same scan, at decay ``κ**C``, over the chunk ends.

Precision: the scan's matmuls are what autocast lowers (verl computes the loss inside ``autocast(bf16)`` on GPUs), so
every function here turns autocast off for its input's device type and computes in float32 (float64 for float64
input), forward and backward.

Layer 1 (math).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F

TRACE_STYLES = ("recent", "both")
# Chunk of the scan: large enough that few levels of recursion are needed, small enough that the C x C matmul per
# chunk stays cheaper than the elementwise work around it.
SCAN_CHUNK = 32
# Below this many multiply-adds (rows x T x T) a scan is one matmul with a cached triangular matrix.
DIRECT_SCAN_WORK = 1 << 22


def full_precision(tensor: torch.Tensor) -> torch.autocast:
    """Autocast off for ``tensor``'s device type (CUDA, CPU, ...): inside, matmuls run in their inputs' dtype."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 for float64 input, float32 for every other (bf16, fp16, float32)."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _check_decay(decay: float) -> float:
    decay = float(decay)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    return decay


def decayed_cumsum(x: torch.Tensor, decay: float, reverse: bool = False, chunk: int = SCAN_CHUNK) -> torch.Tensor:
    """``y_t = decay * y_{t-1} + x_t`` along the last dimension (``y_t = decay * y_{t+1} + x_t`` if ``reverse``).

    O(T) time and memory. Not meant for autograd (the trace's backward is its own reverse scan).

    Args:
        x: (..., T) float tensor.
        decay: in [0, 1].
        reverse: scan from the end.
        chunk: scan chunk size.

    Returns:
        (..., T) tensor of x's dtype, computed in that dtype whatever autocast context is active.
    """
    decay = _check_decay(decay)
    with full_precision(x):
        return _decayed_cumsum(x, decay, reverse, chunk)


def _decayed_cumsum(x: torch.Tensor, decay: float, reverse: bool, chunk: int) -> torch.Tensor:
    if decay == 0.0 or x.shape[-1] <= 1:
        return x.clone()
    if decay == 1.0:
        return x.flip(-1).cumsum(-1).flip(-1) if reverse else x.cumsum(-1)
    length = x.shape[-1]
    if length <= chunk or x.numel() * length <= DIRECT_SCAN_WORK:
        # short enough that one triangular matmul beats the chunked scan's extra ops (e.g. the level of chunk ends)
        matrix = _decay_matrix(decay, length, x.dtype, x.device)
        return x @ (matrix if reverse else matrix.T)
    pad = (-length) % chunk
    chunks = (F.pad(x, (0, pad)) if pad else x).unflatten(-1, (-1, chunk))  # (..., N, C); zero padding is inert
    # the scan restarted at every chunk: forward uses within[i, j] = decay**(i-j) (j <= i), reverse its transpose
    within = _decay_matrix(decay, chunk, x.dtype, x.device)
    local = chunks @ (within if reverse else within.T)
    if chunks.shape[-2] > 1:
        # the scan value at each chunk boundary obeys the same recurrence at decay**C; feed it into the next chunk
        into = decay_powers(decay, chunk + 1, x.dtype, x.device)[1:]  # decay**1 .. decay**C
        if reverse:
            starts = _decayed_cumsum(local[..., 0], decay**chunk, True, chunk)
            local.addcmul_(F.pad(starts[..., 1:], (0, 1)).unsqueeze(-1), into.flip(0))  # decay**(C - i)
        else:
            ends = _decayed_cumsum(local[..., -1], decay**chunk, False, chunk)
            local.addcmul_(F.pad(ends[..., :-1], (1, 0)).unsqueeze(-1), into)  # decay**(i + 1)
    out = local.flatten(-2)
    return out[..., :length] if pad else out


# Decay powers and matrices are cached per (decay, size, dtype, device); their size grows with T (a T x T matrix for
# short scans), so the cache is bounded by bytes, not entries.
CACHE_BYTES = 64 << 20


class _BytesLRU:
    """A least-recently-used cache of tensors whose total size stays under ``capacity`` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.size = 0

    def get(self, key: tuple, build: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        value = build()
        nbytes = value.numel() * value.element_size()
        if nbytes <= self.capacity:
            while self.size + nbytes > self.capacity:
                _, evicted = self.entries.popitem(last=False)
                self.size -= evicted.numel() * evicted.element_size()
            self.entries[key] = value
            self.size += nbytes
        return value

    def clear(self) -> None:
        self.entries.clear()
        self.size = 0


_CACHE = _BytesLRU(CACHE_BYTES)


def decay_powers(decay: float, count: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``decay ** arange(count)``, computed in float64 and cached (0 ** 0 = 1; underflow to 0 is harmless)."""

    def build() -> torch.Tensor:
        exponents = torch.arange(count, device=device)
        return (torch.tensor(decay, dtype=torch.float64, device=device) ** exponents).to(dtype)

    return _CACHE.get(("powers", decay, count, dtype, device), build)


def _decay_matrix(decay: float, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(size, size) lower-triangular ``decay ** (i - j)``: applied to a row it is the scan of that row."""

    def build() -> torch.Tensor:
        lags = torch.arange(size, device=device)[:, None] - torch.arange(size, device=device)[None, :]
        powers = decay_powers(decay, size, dtype, device)
        return torch.where(lags >= 0, powers[lags.clamp(min=0)], 0.0)

    return _CACHE.get(("matrix", decay, size, dtype, device), build)


def traced_log_ratio(
    log_ratio: torch.Tensor, response_mask: torch.Tensor, decay: float, style: str = "recent"
) -> torch.Tensor:
    """GRPO-λ's traced log-ratio e for every response token.

    Args:
        log_ratio: (bs, T) ``log pi_theta - log pi_old`` per response token, finite at valid positions.
        response_mask: (bs, T) valid tokens. Masked positions contribute nothing, whatever they hold (inf and NaN
            included: their d counts as 0), and get 0 and a zero gradient; they still advance t and k, so a masked
            stretch inside a response (a tool's output) counts as distance.
        decay: κ = gamma * lambda, in [0, 1].
        style: ``recent`` or ``both``.

    Returns:
        e: (bs, T) float32 (float64 for float64 input), differentiable in ``log_ratio``; computed in that precision
        forward and backward under any autocast context.
    """
    decay = _check_decay(decay)
    if style not in TRACE_STYLES:
        raise ValueError(f"style must be one of {list(TRACE_STYLES)}, got {style!r}")
    return _Trace.apply(log_ratio.to(compute_dtype(log_ratio)), response_mask.bool(), decay, style)


class _Trace(torch.autograd.Function):
    """e = mask * W (mask * d) with the lower-triangular trace weights W; backward is mask * W^T (mask * g).

    Both directions are O(T) scans computed in place, and only the mask is saved for backward. Masking selects
    (``where``) rather than multiplies: a padded position may hold inf or NaN (inf * 0 = NaN), which the scan would
    otherwise carry to every later position of its row.
    """

    @staticmethod
    def forward(ctx, d: torch.Tensor, valid: torch.Tensor, decay: float, style: str) -> torch.Tensor:
        ctx.save_for_backward(valid)
        ctx.decay, ctx.style, ctx.dtype = decay, style, d.dtype
        with full_precision(d):
            return _trace(d.where(valid, 0.0), decay, style).masked_fill_(~valid, 0.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (valid,) = ctx.saved_tensors
        # the backward may run under another autocast context than the forward (or on another thread)
        with full_precision(grad):
            upstream = grad.to(ctx.dtype).where(valid, 0.0)
            return _trace_transposed(upstream, ctx.decay, ctx.style).masked_fill_(~valid, 0.0), None, None, None


def _trace(d: torch.Tensor, decay: float, style: str) -> torch.Tensor:
    """W d for masked-out d. ``recent`` is the scan. For ``both``, max(κ**(t-k), κ**k) is κ**(t-k) for k >= t/2 and
    κ**k below, so with m = ceil(t/2): ``e_t = recent_t - κ**(t-m+1) recent_{m-1} + sum_{k<m} κ**k d_k``.
    Odd t = 2j-1 and even t = 2j share m = j, with t-m+1 = j and j+1."""
    out = _decayed_cumsum(d, decay, False, SCAN_CHUNK)
    if style == "recent" or decay == 1.0:  # at κ = 1 every weight of `both` is 1 too
        return out
    length = d.shape[-1]
    n_odd, n_even = length // 2, (length - 1) // 2  # t = 1, 3, ... and t = 2, 4, ...
    powers = decay_powers(decay, n_odd + 2, d.dtype, d.device)  # κ**0 .. κ**(n_odd + 1)
    before = out[..., :n_odd]  # recent_{j-1} for j = 1 .. n_odd
    early = (d[..., :n_odd] * powers[:n_odd]).cumsum(-1)  # sum_{k<j} κ**k d_k
    # both corrections are computed before `out` changes, since `before` is a view of it
    odd = torch.addcmul(early, before, powers[1 : n_odd + 1], value=-1.0)  # κ**j for t = 2j - 1
    even = torch.addcmul(early[..., :n_even], before[..., :n_even], powers[2 : n_even + 2], value=-1.0)  # κ**(j+1)
    out[..., 1::2] += odd
    out[..., 2::2] += even
    return out


def _trace_transposed(g: torch.Tensor, decay: float, style: str) -> torch.Tensor:
    """W^T g: ``recent`` is the reverse scan R; ``both`` is ``R_k - κ**(k+1) R_{2k+1} + κ**k sum_{t>2k} g_t``
    (the weight of (t, k) is κ**(t-k) for t <= 2k and κ**k beyond)."""
    out = _decayed_cumsum(g, decay, True, SCAN_CHUNK)
    if style == "recent" or decay == 1.0:
        return out
    n_odd = g.shape[-1] // 2  # k with 2k+1 inside the response tensor
    powers = decay_powers(decay, n_odd + 1, g.dtype, g.device)
    prefix = g.cumsum(-1)
    correction = (prefix[..., -1:] - prefix[..., 0 : 2 * n_odd : 2]).mul_(powers[:n_odd])  # κ**k sum_{t>2k} g_t
    correction.addcmul_(out[..., 1::2], powers[1:], value=-1.0)  # - κ**(k+1) R_{2k+1}, read before `out` changes
    out[..., :n_odd] += correction
    return out


def trace_mass(response_mask: torch.Tensor, decay: float, style: str = "recent") -> torch.Tensor:
    """Each token's share of later traces, ``m_k = sum_{t>=k, t valid} w(t, k)`` with the style's trace weights
    (``κ**(t-k)`` for ``recent``), normalised to mean 1 over the valid tokens of its response (GRPO-λ's
    ``epsilon-weight`` variant, our reading).

    Args:
        response_mask: (bs, T) valid tokens.
        decay: κ in [0, 1].
        style: ``recent`` or ``both``.

    Returns:
        (bs, T) float32 weights, 0 at masked positions, computed in float32 under any autocast context.
    """
    decay = _check_decay(decay)
    if style not in TRACE_STYLES:
        raise ValueError(f"style must be one of {list(TRACE_STYLES)}, got {style!r}")
    mask = response_mask.to(torch.float32)
    with full_precision(mask):
        mass = _trace_transposed(mask, decay, style).mul_(mask)  # W^T mask: the column sums over valid t
        mean = mass.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
        return torch.where(mean > 0, mass / mean.clamp(min=1e-30), 0.0)
