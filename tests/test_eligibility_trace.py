"""GRPO-λ's traced log-ratio (spec §4, §6) against independent dense float64 references."""

import pytest
import torch
from trace_reference import dense_trace_gradient, dense_traced_log_ratio, recurrence, trace_weights

import verl_lambda
from verl_lambda.ops.eligibility_trace import DIRECT_SCAN_WORK, decayed_cumsum, trace_mass

DECAYS = [0.0, 0.5, 0.9, 0.99, 1.0]
STYLES = ["recent", "both"]


def masks(bs: int, length: int, seed: int) -> torch.Tensor:
    """Right padding of random lengths, a masked stretch inside some responses (a tool's output), an empty row."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (bs,), generator=gen)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    for row in range(0, bs, 2):
        start = int(torch.randint(0, length, (1,), generator=gen))
        mask[row, start : start + max(1, length // 7)] = 0
    if bs > 2:
        mask[-1] = 0
    return mask


def test_public_name():
    from verl_lambda.ops.eligibility_trace import traced_log_ratio

    assert verl_lambda.traced_log_ratio is traced_log_ratio


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize(("bs", "length"), [(5, 1), (5, 7), (4, 64), (4, 65), (3, 1000), (1, 4096)])
def test_values_and_gradients_match_the_dense_reference(style, decay, bs, length):
    gen = torch.Generator().manual_seed(length)
    log_ratio = (torch.randn(bs, length, generator=gen) * 0.1).requires_grad_()
    mask = masks(bs, length, seed=length)
    upstream = torch.randn(bs, length, generator=gen)
    got = verl_lambda.traced_log_ratio(log_ratio, mask, decay, style)
    (got * upstream).sum().backward()
    want = dense_traced_log_ratio(log_ratio.detach(), mask, decay, style)
    scale = max(1.0, want.abs().max().item())
    assert got.dtype == torch.float32 and got.shape == (bs, length)
    assert (got.double() - want).abs().max().item() <= 2e-5 * scale
    assert torch.all(got[mask == 0] == 0)
    grad_want = dense_trace_gradient(upstream, mask, decay, style)
    grad_scale = max(1.0, grad_want.abs().max().item())
    assert (log_ratio.grad.double() - grad_want).abs().max().item() <= 2e-5 * grad_scale


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("decay", [0.99, 1.0])
def test_an_8192_token_trace_matches_the_dense_reference(style, decay):
    """The longest case, where float32 accumulation over the chunked scan is hardest (the grid above stops at 4096
    tokens to keep the fast suite fast; the dense reference is O(T²))."""
    test_values_and_gradients_match_the_dense_reference(style, decay, 1, 8192)


def test_float64_gradcheck():
    mask = masks(3, 40, seed=1).double()
    for style in STYLES:
        for decay in (0.0, 0.6, 1.0):
            gen = torch.Generator().manual_seed(int(decay * 10) + len(style))
            x = torch.randn(3, 40, dtype=torch.float64, generator=gen).requires_grad_()
            assert torch.autograd.gradcheck(verl_lambda.traced_log_ratio, (x, mask, decay, style))


def test_special_cases():
    d = torch.randn(4, 30, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(4, 30)
    assert torch.equal(verl_lambda.traced_log_ratio(d, mask, 0.0, "recent"), d)
    # both at κ = 0: 0**0 = 1 keeps the first token in every trace
    both = verl_lambda.traced_log_ratio(d, mask, 0.0, "both")
    torch.testing.assert_close(both[:, 1:], d[:, 1:] + d[:, :1])
    torch.testing.assert_close(both[:, 0], d[:, 0])
    # κ = 1: a prefix sum, and both styles agree
    torch.testing.assert_close(verl_lambda.traced_log_ratio(d, mask, 1.0, "recent"), d.cumsum(-1))
    torch.testing.assert_close(verl_lambda.traced_log_ratio(d, mask, 1.0, "both"), d.cumsum(-1))


def test_masked_stretch_still_counts_as_distance():
    d = torch.zeros(1, 6)
    d[0, 0] = 1.0
    mask = torch.tensor([[1.0, 0, 0, 1, 1, 1]])
    e = verl_lambda.traced_log_ratio(d, mask, 0.5, "recent")
    torch.testing.assert_close(e, torch.tensor([[1.0, 0, 0, 0.125, 0.0625, 0.03125]]))


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("decay", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("length", [9, 300])  # the direct matmul and the chunked scan
def test_non_finite_values_at_masked_positions_contribute_nothing(style, decay, length):
    """Spec §6: whatever a masked position holds (inf, -inf, NaN), the trace and its gradient are those of a 0."""
    mask = masks(4, length, seed=length)
    clean = torch.randn(4, length, generator=torch.Generator().manual_seed(1)) * 0.1
    dirty = clean.clone()
    hidden = (mask == 0).nonzero()
    for i, (row, col) in enumerate(hidden.tolist()):
        dirty[row, col] = (float("inf"), float("-inf"), float("nan"))[i % 3]
    upstream = torch.randn(4, length, generator=torch.Generator().manual_seed(2))
    upstream[mask == 0] = float("nan")  # a loss may also send anything back through masked positions
    results = []
    for d in (clean.where(mask.bool(), 0.0), dirty):
        d = d.clone().requires_grad_()
        e = verl_lambda.traced_log_ratio(d, mask, decay, style)
        (e * upstream.nan_to_num(0.0)).sum().backward()  # the clean reference
        results.append((e.detach(), d.grad))
        d.grad = None
        verl_lambda.traced_log_ratio(d, mask, decay, style).backward(upstream)
        results.append((None, d.grad))
    (e_clean, g_clean), (_, g_clean_nan), (e_dirty, g_dirty), (_, g_dirty_nan) = results
    assert torch.isfinite(e_dirty).all() and torch.equal(e_dirty, e_clean)
    assert torch.equal(g_dirty, g_clean) and torch.equal(g_dirty_nan, g_clean) and torch.equal(g_clean_nan, g_clean)
    assert torch.all(g_dirty[mask == 0] == 0)


@pytest.mark.parametrize("decay", [0.999, 1.0])
def test_float32_is_stable_at_32k_tokens(decay):
    length = 32768
    gen = torch.Generator().manual_seed(0)
    log_ratio = torch.randn(2, length, generator=gen) * 0.05
    mask = torch.ones(2, length)
    mask[1, 20000:] = 0
    got = verl_lambda.traced_log_ratio(log_ratio, mask, decay)
    want = recurrence(log_ratio, mask, decay)
    assert torch.isfinite(got).all()
    assert (got.double() - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item())
    both = verl_lambda.traced_log_ratio(log_ratio, mask, decay, "both")
    assert torch.isfinite(both).all()


def test_memory_is_linear_in_length():
    """A (bs, T, T) tensor at T = 65536 would need 16 GiB per row; this runs in a few MB."""
    e = verl_lambda.traced_log_ratio(
        torch.randn(1, 65536, generator=torch.Generator().manual_seed(0)) * 0.01, torch.ones(1, 65536), 0.99, "both"
    )
    assert e.shape == (1, 65536) and torch.isfinite(e).all()


def test_bad_arguments():
    d, mask = torch.zeros(1, 3), torch.ones(1, 3)
    for decay in (-0.1, 1.5):
        with pytest.raises(ValueError, match="decay must be in"):
            verl_lambda.traced_log_ratio(d, mask, decay)
    with pytest.raises(ValueError, match="style must be one of"):
        verl_lambda.traced_log_ratio(d, mask, 0.5, "forward")


def test_trace_mass():
    mask = masks(4, 50, seed=3)
    mass = trace_mass(mask, 0.8)
    for row in range(3):
        valid = mask[row].bool()
        if valid.any():
            assert mass[row, valid].mean().item() == pytest.approx(1.0, rel=1e-5)
            positions = valid.nonzero().squeeze(-1)
            raw = torch.tensor([sum(0.8 ** (t - k) for t in positions.tolist() if t >= k) for k in positions.tolist()])
            torch.testing.assert_close(mass[row, valid], (raw / raw.mean()).float())
    assert torch.all(mass[mask == 0] == 0) and torch.all(mass[-1] == 0)
    torch.testing.assert_close(trace_mass(torch.ones(2, 9), 0.0), torch.ones(2, 9))


@pytest.mark.parametrize("style", ["recent", "both"])
def test_trace_mass_is_the_column_sums_of_the_trace_weights(style):
    mask = masks(3, 40, seed=4)
    weights = trace_weights(torch.arange(40), 40, 0.8, style) * mask.double()[:, :, None]  # (bs, t, k), valid t only
    raw = weights.sum(1) * mask.double()
    mean = raw.sum(-1, keepdim=True) / mask.double().sum(-1, keepdim=True).clamp(min=1)
    expected = torch.where(mean > 0, raw / mean.clamp(min=1e-30), 0.0).float()
    torch.testing.assert_close(trace_mass(mask, 0.8, style), expected)
    if style == "both":  # the style changes the weights (early tokens keep κ**k)
        assert not torch.allclose(trace_mass(mask, 0.8, "both"), trace_mass(mask, 0.8, "recent"))


def test_cached_decay_tables_stay_bounded_when_the_length_changes_every_call():
    """V1's nested micro-batches give every call its own T; the short-scan matrices (T x T) must not pile up."""
    from verl_lambda.ops import eligibility_trace

    eligibility_trace._CACHE.clear()
    gen = torch.Generator().manual_seed(0)
    for length in range(1200, 2049, 16):  # one row: the direct T x T path, 5.8-16 MiB per matrix in float32
        d = torch.randn(1, length, generator=gen) * 0.1
        e = verl_lambda.traced_log_ratio(d, torch.ones(1, length), 0.9)
        assert eligibility_trace._CACHE.size <= eligibility_trace.CACHE_BYTES
    torch.testing.assert_close(e.double(), recurrence(d, torch.ones(1, length), 0.9), rtol=1e-5, atol=1e-5)
    assert eligibility_trace._CACHE.size > 0
    # its byte count is exactly what it holds, and it evicts the least recently used: the matrices of the last two
    # lengths (2032 and 2048, 32 MiB together) are both still there
    entries = eligibility_trace._CACHE.entries.values()
    assert eligibility_trace._CACHE.size == sum(t.numel() * t.element_size() for t in entries)
    assert {t.shape[-1] for t in entries if t.dim() == 2} >= {length - 16, length}
    eligibility_trace._CACHE.clear()
    assert eligibility_trace._CACHE.size == 0 and not eligibility_trace._CACHE.entries


@pytest.mark.parametrize("shape", [(40,), (2, 3, 40), (3, 1, 2, 1000)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("decay", [0.9, 1.0])
def test_decayed_cumsum_scans_the_last_dimension_of_any_shape(shape, reverse, decay):
    """``(..., T)``: every leading dimension is a batch dimension, on the short (one matmul) and the chunked path."""
    chunked = shape[-1] > 32 and torch.Size(shape).numel() * shape[-1] > DIRECT_SCAN_WORK
    assert chunked == (shape[-1] == 1000)
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(len(shape)))
    want = torch.zeros_like(x)
    running = torch.zeros(shape[:-1], dtype=torch.float64)
    for t in reversed(range(shape[-1])) if reverse else range(shape[-1]):
        running = decay * running + x[..., t]
        want[..., t] = running
    for chunk in (8, 32):
        torch.testing.assert_close(decayed_cumsum(x, decay, reverse=reverse, chunk=chunk), want)


@pytest.mark.parametrize("style", STYLES)
def test_every_short_response_length_matches_the_dense_reference(style):
    """T = 1 .. 7: the ``both`` style's odd/even corrections index the decay powers by T // 2 and (T - 1) // 2."""
    gen = torch.Generator().manual_seed(5)
    for length in range(1, 8):
        for decay in (0.5, 0.9):
            x = torch.randn(2, length, dtype=torch.float64, generator=gen, requires_grad=True)
            mask = torch.ones(2, length, dtype=torch.float64)
            upstream = torch.randn(2, length, dtype=torch.float64, generator=gen)
            trace = verl_lambda.traced_log_ratio(x, mask, decay, style)
            torch.testing.assert_close(trace, dense_traced_log_ratio(x.detach(), mask, decay, style))
            (grad,) = torch.autograd.grad(trace, x, upstream)
            torch.testing.assert_close(grad, dense_trace_gradient(upstream, mask, decay, style))


def test_decayed_cumsum_runs_forward_unless_told_otherwise():
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(decayed_cumsum(x, 0.5), torch.tensor([[1.0, 2.5, 4.25]], dtype=torch.float64))
    torch.testing.assert_close(
        decayed_cumsum(x, 0.5, reverse=True), torch.tensor([[2.75, 3.5, 3.0]], dtype=torch.float64)
    )


@pytest.mark.parametrize("style", STYLES)
def test_trace_mass_of_a_one_token_response_is_one(style):
    """Mean 1 over the valid tokens of each response, for one valid token too; an empty response gets 0."""
    mask = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    for decay in (0.0, 0.5, 0.99, 1.0):
        mass = trace_mass(mask, decay, style)
        torch.testing.assert_close(mass, mask)


def test_decayed_cumsum_with_exactly_two_chunks():
    """The chunked scan carries each chunk's end into the next: with two chunks, once."""
    x = torch.randn(16400, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert x.numel() * 16 > DIRECT_SCAN_WORK  # the chunked path, 16 / 8 = 2 chunks
    for reverse in (False, True):
        want, running = torch.zeros_like(x), torch.zeros(len(x), dtype=torch.float64)
        for t in reversed(range(16)) if reverse else range(16):
            running = 0.7 * running + x[:, t]
            want[:, t] = running
        torch.testing.assert_close(decayed_cumsum(x, 0.7, reverse=reverse, chunk=8), want)


def test_a_new_byte_cache_counts_exactly_what_it_holds():
    from verl_lambda.ops.eligibility_trace import _BytesLRU

    cache = _BytesLRU(capacity=100)
    assert cache.size == 0
    cache.get(("a",), lambda: torch.zeros(10))  # 40 bytes
    cache.get(("b",), lambda: torch.zeros(10, dtype=torch.float64))  # 80 bytes: "a" is evicted
    assert cache.size == 80 and list(cache.entries) == [("b",)]
