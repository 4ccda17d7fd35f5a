"""Every op of ours that runs inside verl's loss computes in float32 under bf16 and fp16 autocast (spec §5).

verl's FSDP engine computes the loss inside ``torch.autocast(device_type, param_dtype)``, bf16 by default on GPUs.
Autocast lowers matmuls (the trace's chunked scan uses them), so without care the trace would silently run in bf16.
These tests run each public op under CPU autocast and compare with a float64 reference: per response,
``max |Δ| / max |reference| <= 1e-5``, forward and backward, and results are float32. The same code disables
autocast for the input's own device type, so it holds on CUDA as well; that is unverified until
``scripts/gpu_check.sh`` has run on a GPU (docs/gpu.md).
"""

import pytest
import torch
from length_reference import reference_dweights_dlam, reference_weights
from trace_reference import dense_trace_gradient, dense_traced_log_ratio

from verl_lambda.ops.eligibility_trace import decayed_cumsum, trace_mass, traced_log_ratio
from verl_lambda.ops.length_weights import length_weights, weighted_agg_loss

AUTOCAST = [torch.bfloat16, torch.float16]
TOLERANCE = 1e-5


def relative_error(actual: torch.Tensor, reference: torch.Tensor) -> float:
    """max over rows of max |Δ| / max |reference| within the row (a row of zeros counts by its absolute error)."""
    actual = actual.detach().double().reshape(len(reference), -1)
    reference = reference.detach().double().reshape(len(reference), -1)
    scale = reference.abs().amax(-1).clamp(min=1e-12)
    return float(((actual - reference).abs().amax(-1) / scale).max())


def trace_inputs(rows=6, length=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(rows, length, generator=gen) * 0.3
    lengths = torch.randint(length // 3, length + 1, (rows,), generator=gen)
    mask = torch.arange(length)[None] < lengths[:, None]
    mask[0, 10:20] = False  # a masked stretch inside a response
    upstream = torch.randn(rows, length, generator=gen)
    return d, mask, upstream


def test_without_the_guard_autocast_would_lower_the_scan():
    """The hazard these tests guard against is real: a plain matmul scan under bf16 autocast loses ~3 digits."""
    d, _, _ = trace_inputs()
    matrix = torch.tril(torch.full((300, 300), 0.99)) ** (torch.arange(300)[:, None] - torch.arange(300)).clamp(min=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lowered = d @ matrix.T
    assert lowered.dtype == torch.bfloat16
    assert relative_error(lowered, d.double() @ matrix.double().T) > 1e-3


@pytest.mark.parametrize("dtype", AUTOCAST)
@pytest.mark.parametrize("style", ["recent", "both"])
@pytest.mark.parametrize("decay", [0.9, 0.99])
@pytest.mark.parametrize("length", [300, 2048])  # one matmul, and the chunked scan
def test_traced_log_ratio_is_float32_exact_under_autocast(dtype, style, decay, length):
    d, mask, upstream = trace_inputs(rows=4, length=length)
    reference = dense_traced_log_ratio(d, mask, decay, style)
    reference_grad = dense_trace_gradient(upstream, mask, decay, style)
    x = d.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        e = traced_log_ratio(x, mask, decay, style)
        (e * upstream).sum().backward()  # backward inside the context, as verl's engine calls it outside: both fine
    assert e.dtype == torch.float32 and x.grad.dtype == torch.float32
    assert relative_error(e, reference) <= TOLERANCE
    assert relative_error(x.grad, reference_grad) <= TOLERANCE


@pytest.mark.parametrize("dtype", AUTOCAST)
def test_traced_log_ratio_backward_outside_the_context(dtype):
    """verl's engine leaves the autocast block before ``backward``: the saved graph must still be float32."""
    d, mask, upstream = trace_inputs()
    x = d.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        e = traced_log_ratio(x, mask, 0.99, "recent")
    (e * upstream).sum().backward()
    assert relative_error(x.grad, dense_trace_gradient(upstream, mask, 0.99)) <= TOLERANCE


@pytest.mark.parametrize("dtype", AUTOCAST)
def test_float64_input_stays_float64_under_autocast(dtype):
    d, mask, _ = trace_inputs(rows=2, length=64)
    with torch.autocast("cpu", dtype=dtype):
        e = traced_log_ratio(d.double(), mask, 0.99, "both")
        scan = decayed_cumsum(d.double(), 0.99)
    assert e.dtype == torch.float64 and scan.dtype == torch.float64
    torch.testing.assert_close(e, dense_traced_log_ratio(d, mask, 0.99, "both"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", AUTOCAST)
@pytest.mark.parametrize("style", ["recent", "both"])
def test_trace_mass_is_float32_exact_under_autocast(dtype, style):
    _, mask, _ = trace_inputs(length=1000)
    # mass_k = column sums of the valid trace weights, normalised to mean 1 over the response's valid tokens
    mass = dense_trace_gradient(mask.double(), mask, 0.99, style)
    reference = mass / (mass.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True))
    with torch.autocast("cpu", dtype=dtype):
        actual = trace_mass(mask, 0.99, style)
    assert actual.dtype == torch.float32
    assert relative_error(actual, reference) <= TOLERANCE


@pytest.mark.parametrize("dtype", AUTOCAST)
@pytest.mark.parametrize("lam", [-3.0, 0.7, 8.0])
def test_length_weights_and_their_slope_are_exact_under_autocast(dtype, lam):
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 4000, (32,), generator=gen)
    group_ids = torch.arange(32) // 8
    value = torch.tensor(lam, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype):
        weights = length_weights(lengths, group_ids, value)
        (weights * torch.arange(32.0)).sum().backward()
    assert weights.dtype == torch.float32
    reference = torch.tensor(reference_weights(lengths.tolist(), group_ids.tolist(), lam), dtype=torch.float64)
    slopes = [s for g in range(4) for s in reference_dweights_dlam(lengths[g * 8 : (g + 1) * 8].tolist(), lam)]
    assert relative_error(weights[None], reference[None]) <= TOLERANCE
    expected_grad = (torch.tensor(slopes, dtype=torch.float64) * torch.arange(32.0, dtype=torch.float64)).sum()
    assert abs(value.grad.item() - expected_grad.item()) <= TOLERANCE * max(1.0, abs(expected_grad.item()))


@pytest.mark.parametrize("dtype", AUTOCAST)
@pytest.mark.parametrize("base", ["seq-mean-token-mean", "token-mean"])
@pytest.mark.parametrize("loss_dtype", [torch.float32, torch.bfloat16])
def test_weighted_aggregation_is_float32_exact_under_autocast(dtype, base, loss_dtype):
    gen = torch.Generator().manual_seed(2)
    loss_mat = torch.randn(8, 500, generator=gen).to(loss_dtype)
    mask = (torch.arange(500)[None] < torch.randint(1, 501, (8, 1), generator=gen)).float()
    weights = torch.rand(8, generator=gen) * 2
    x, w = loss_mat.clone().requires_grad_(), weights.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        loss = weighted_agg_loss(x, mask, w, base, global_batch_size=8, batch_num_tokens=int(mask.sum()))
    loss.backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == loss_dtype and w.grad.dtype == torch.float32
    # float64 reference from the spec's formula (§2), on the same (possibly bf16-rounded) inputs
    xd, wd, md = loss_mat.double().requires_grad_(), weights.double().requires_grad_(), mask.double()
    if base == "token-mean":
        expected = (wd[:, None] * xd * md).sum() / md.sum()
    else:
        expected = (wd * (xd * md).sum(-1) / md.sum(-1)).sum() / 8
    expected.backward()
    assert abs(loss.item() - expected.item()) <= TOLERANCE * abs(expected.item())
    assert relative_error(w.grad[None], wd.grad[None]) <= TOLERANCE
    if loss_dtype == torch.float32:
        assert relative_error(x.grad, xd.grad) <= TOLERANCE
