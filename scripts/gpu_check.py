"""A prepared GPU check of verl-lambda: accuracy under autocast, cost against verl's losses, and one engine update.

    bash scripts/gpu_check.sh [--quick] [--device cuda|cpu] [--out gpu_check.json]

No GPU has run this code yet; this script is what to run on the first one (docs/gpu.md). It also runs on CPU
(``--device cpu``, small sizes), which is how CI keeps it working.

Two levels, chosen by what the interpreter can import:

- torch only (no verl, Ray or vLLM): the ops of ``verl_lambda.ops`` (which import torch only), against float64
  references written here, and their cost against pure-torch versions of verl's losses;
- with verl: in addition, the pure-torch losses are checked against verl's, the costs are taken against verl's own
  functions, and one actor update per method runs through verl's FSDP engine in bf16 and in fp16 with its grad scaler.

``GPU_CHECK_NO_VERL=1`` runs the torch-only level where verl is installed: imports of verl, Ray and vLLM then fail,
so nothing of the torch-only level can depend on them unnoticed.

Checks (one row each in the printed table and in the JSON written to ``--out``):

1. ``accuracy/*``: every op, forward and backward, without autocast and under bf16 and fp16 autocast, against a
   float64 CPU reference: max over responses of ``max |Δ| / max |reference|``, at most 1e-5, and float32 output for
   float32 input (ALGORITHMS.md §5).
2. ``cost/*_loss``: time and peak memory of forward+backward of each method's loss against verl's vanilla loss, as
   ratios ours / baseline (reported, not judged).
3. ``cost/trace_vs_dense``: the O(T) trace against ``W @ d`` with the dense T x T decay matrix: agreement (judged),
   time and peak memory (reported).
4. ``engine/*``: one actor update per method through verl's FSDP engine (verl level only).

Exit status 1 if any check failed (skipped checks do not fail), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.abc
import importlib.metadata
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

NO_VERL_ENV = "GPU_CHECK_NO_VERL"
BLOCKED_PACKAGES = ("verl", "ray", "vllm")  # what the torch-only level must run without


class _BlockImports(importlib.abc.MetaPathFinder):
    """Makes ``BLOCKED_PACKAGES`` unimportable, as on a machine where they are not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in BLOCKED_PACKAGES:  # "verl_lambda" is not "verl"
            raise ModuleNotFoundError(f"No module named {name!r} ({NO_VERL_ENV}=1)", name=name)
        return None


TOLERANCE = 1e-5  # max |Δ| / max |reference| per response
DECAYS = (0.9, 0.99)
STYLES = ("recent", "both")
BASES = ("seq-mean-token-mean", "token-mean")
LAMBDAS = (-2.0, -0.5, 0.0, 0.5, 1.0, 3.0)
# verl's defaults for the clipped surrogate (ActorConfig) and GRPO-λ's (GRPOLambdaConfig), set explicitly on the verl
# side so that the pure-torch losses below compute the same thing.
CLIP_LOW, CLIP_HIGH, CLIP_C, LOG_RATIO_CLAMP = 0.2, 0.2, 3.0, 20.0
TRACE_DECAY, TRACE_STYLE, NEG_ADV_CLAMP = 0.99, "recent", -0.1
GROUP_SIZE = 8


@dataclass
class Sizes:
    """Problem sizes of one run: the GPU sizes of the brief, or small ones on CPU."""

    trace_shapes: tuple[tuple[int, int], ...]  # (responses, T) for the accuracy of the trace ops
    agg_shape: tuple[int, int]  # (responses, T) for the accuracy of weighted_agg_loss
    loss_shape: tuple[int, int]  # (responses, T) for the cost of the losses
    dense_lengths: tuple[int, ...]  # T of the trace against the dense matrix (one response)
    warmup: int
    reps: int


def choose_sizes(device: str, quick: bool) -> Sizes:
    # The first trace shape is short enough for the one-matmul path of the scan, the second takes the chunked scan
    # (rows * T * T above eligibility_trace.DIRECT_SCAN_WORK).
    if device == "cuda":
        return Sizes(
            trace_shapes=((4, 300), (4, 2048)) if quick else ((4, 300), (4, 4096)),
            agg_shape=(32, 2048),
            loss_shape=(64, 8192),
            dense_lengths=(8192,) if quick else (8192, 32768),
            warmup=1,
            reps=3 if quick else 5,
        )
    # sub-millisecond calls on a small, possibly shared CPU: more repetitions keep the medians steady
    return Sizes(
        trace_shapes=((4, 300), (2, 1600)),
        agg_shape=(16, 128),
        loss_shape=(8, 256),
        dense_lengths=(512,) if quick else (512, 2048),
        warmup=2,
        reps=5 if quick else 20,
    )


@dataclass
class Row:
    name: str
    device: str
    dtype: str  # "fp32" (no autocast), "autocast bf16", "autocast fp16", or the engine's precision
    value: float | None
    bound: str
    status: str  # pass, fail or skipped
    notes: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf  # NaN compares false with every bound: make it fail


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def autocast_label(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "autocast bf16", torch.float16: "autocast fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def relative_error(actual: Tensor, reference: Tensor, per_row: bool = True) -> float:
    """max over rows of max |Δ| / max |reference| in the row; a vector of one value per response is one row."""
    reference = reference.detach().to("cpu", torch.float64)
    actual = actual.detach().to("cpu", torch.float64).reshape(reference.shape)
    rows = len(reference) if per_row and reference.dim() >= 2 else 1
    reference, actual = reference.reshape(rows, -1), actual.reshape(rows, -1)
    scale = reference.abs().amax(-1).clamp(min=1e-30)
    return _finite(float(((actual - reference).abs().amax(-1) / scale).max()))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak memory allocated during ``fn`` above what was allocated before it (CUDA only; None elsewhere)."""
    if device.type != "cuda":
        fn()
        return None
    gc.collect()
    torch.cuda.empty_cache()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def paired_times(ours: Callable[[], object], baseline: Callable[[], object], device: torch.device, sizes: Sizes):
    """Median ms of each side, timed alternately so that drift of the machine's speed hits both alike."""
    for _ in range(sizes.warmup):
        ours(), baseline()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(sizes.reps):
        for fn, record in ((ours, times[0]), (baseline, times[1])):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            record.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def cost_row(
    name: str, device: torch.device, dtype: str, ours: Callable[[], Any], baseline: Callable[[], Any], sizes: Sizes
):
    """Time and peak memory of ``ours`` against ``baseline`` (each returns its loss and runs its backward)."""
    results: dict[str, Any] = {}
    for side, fn in (("ours", ours), ("baseline", baseline)):
        values: list[Any] = []
        results[f"{side}_peak_mib"] = peak_memory_mib(lambda fn=fn, values=values: values.append(fn()), device)
        results[f"{side}_loss"] = float(values[0])
    ours_ms, base_ms = paired_times(ours, baseline, device, sizes)
    results.update(ours_ms=ours_ms, baseline_ms=base_ms, time_ratio=ours_ms / base_ms)
    mem = results["ours_peak_mib"], results["baseline_peak_mib"]
    results["memory_ratio"] = mem[0] / mem[1] if mem[0] is not None and mem[1] else None
    finite = math.isfinite(results["ours_loss"]) and math.isfinite(results["baseline_loss"])
    notes = f"{ours_ms:.2f} / {base_ms:.2f} ms"
    if mem[0] is not None:
        notes += f"; peak memory {results['memory_ratio']:.3f}x, {mem[0]:.0f} / {mem[1]:.0f} MiB"
    return Row(
        name, device.type, dtype, results["time_ratio"], "reported (ours/baseline)", _status(finite), notes, results
    )


def _status(ok: bool) -> str:
    return "pass" if ok else "fail"


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------------
# float64 references (ALGORITHMS.md §1, §2, §4), deliberately the direct O(T²) forms
# ----------------------------------------------------------------------------------------------------------------


def dense_trace_matrix(
    length: int, decay: float, style: str, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Tensor:
    """(T, T) trace weights W[t, k]: ``κ**(t-k)`` (recent) or ``max(κ**(t-k), κ**k)`` (both) for k <= t, else 0."""
    steps = torch.arange(length, dtype=dtype, device=device)
    lags = steps[:, None] - steps[None, :]
    weights = torch.pow(decay, lags.clamp(min=0))
    if style == "both":
        weights = torch.maximum(weights, torch.pow(decay, steps)[None, :])
    return torch.where(lags >= 0, weights, 0.0)


def reference_trace(d: Tensor, mask: Tensor, upstream: Tensor, decay: float, style: str) -> tuple[Tensor, Tensor]:
    """e = mask * W (mask d) and the gradient of sum(upstream * e) wrt d, in float64 (masked d counts as 0)."""
    weights = dense_trace_matrix(d.shape[-1], decay, style)
    d, upstream = d.double().where(mask, 0.0), upstream.double().where(mask, 0.0)
    return (d @ weights.T).where(mask, 0.0), (upstream @ weights).where(mask, 0.0)


def reference_trace_mass(mask: Tensor, decay: float, style: str) -> Tensor:
    """Column sums of W over valid t, at valid k, normalised to mean 1 over the response's valid tokens."""
    valid = mask.double()
    mass = (valid @ dense_trace_matrix(mask.shape[-1], decay, style)) * valid
    return mass / (mass.sum(-1, keepdim=True) / valid.sum(-1, keepdim=True))


def reference_length_weights(
    lengths: Tensor, group_ids: Tensor, lam: float, r: float = 1.0 / 9.0
) -> tuple[Tensor, Tensor]:
    """f = G softmax(h**λ) per group and its slope ``G p (a - E_p a)`` with ``a = h**λ ln h``, in float64."""
    lengths = lengths.double().cpu()
    group_ids = group_ids.cpu()
    weights, slope = torch.ones_like(lengths), torch.zeros_like(lengths)
    for gid in group_ids.unique():
        members = group_ids == gid
        group = lengths[members]
        std = group.std(unbiased=False)
        z = (group - group.mean()) / std if std > 0 else torch.zeros_like(group)
        h = (1 + r * z).clamp(min=1e-3)
        g = h**lam
        p = torch.softmax(g, 0)
        a = g * h.log()
        weights[members] = len(group) * p
        slope[members] = len(group) * p * (a - (p * a).sum())
    return weights, slope


def reference_weighted_agg(loss_mat: Tensor, mask: Tensor, weights: Tensor, base: str) -> tuple[Tensor, Tensor, Tensor]:
    """The weighted loss (ALGORITHMS.md §2) and its gradients wrt loss_mat and weights, in float64."""
    loss_mat, valid, weights = loss_mat.double().cpu(), mask.double().cpu(), weights.double().cpu()
    tokens = valid.sum(-1)
    sums = (loss_mat * valid).sum(-1)
    if base == "token-mean":
        count = tokens.sum()
        return (weights * sums).sum() / count, weights[:, None] * valid / count, sums / count
    count = (tokens > 0).sum()
    return (weights * sums / tokens).sum() / count, (weights / tokens)[:, None] * valid / count, sums / tokens / count


# ----------------------------------------------------------------------------------------------------------------
# 1. Accuracy of the ops under autocast
# ----------------------------------------------------------------------------------------------------------------


def trace_inputs(rows: int, length: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Log-ratios, a mask with ragged lengths, a masked stretch inside a response and an inf at a padded position."""
    gen = _seeded(seed)
    d = torch.randn(rows, length, generator=gen) * 0.3
    lengths = torch.randint(length // 3, length + 1, (rows,), generator=gen)
    lengths[0], lengths[1] = length, length // 2
    mask = torch.arange(length)[None] < lengths[:, None]
    mask[0, 10:20] = False  # a tool's output inside the response still advances t
    d[1, -1] = math.inf  # masked positions may hold anything
    return d, mask, torch.randn(rows, length, generator=gen)


def accuracy_rows(device: torch.device, sizes: Sizes, autocast_dtypes: Sequence[torch.dtype | None]) -> list[Row]:
    from verl_lambda.ops.eligibility_trace import trace_mass, traced_log_ratio
    from verl_lambda.ops.length_weights import length_weights, weighted_agg_loss

    rows: list[Row] = []
    # references once per input, reused under every autocast setting
    trace_cases = []
    for index, (n, length) in enumerate(sizes.trace_shapes):
        d, mask, upstream = trace_inputs(n, length, seed=index)
        for style in STYLES:
            for decay in DECAYS:
                value, grad = reference_trace(d, mask, upstream, decay, style)
                mass = reference_trace_mass(mask, decay, style)
                trace_cases.append((style, decay, (n, length), d, mask, upstream, value, grad, mass))

    for dtype in autocast_dtypes:
        label = autocast_label(dtype)

        def check(name: str, errors: dict[str, float], out_dtypes: set[torch.dtype], dtype_label: str = label) -> None:
            worst = max(errors.values())
            dtype_ok = out_dtypes == {torch.float32}
            notes = "" if dtype_ok else f"output dtype {sorted(map(str, out_dtypes))}, expected float32"
            status = _status(worst <= TOLERANCE and dtype_ok)
            detail = {"errors": errors, "output_dtypes": sorted(map(str, out_dtypes))}
            rows.append(Row(name, device.type, dtype_label, worst, f"<= {TOLERANCE:g}, float32", status, notes, detail))

        for style in STYLES:
            for decay in DECAYS:
                errors: dict[str, float] = {}
                out_dtypes: set[torch.dtype] = set()
                for case_style, case_decay, shape, d, mask, upstream, value, grad, _ in trace_cases:
                    if (case_style, case_decay) != (style, decay):
                        continue
                    x = d.to(device, copy=True).requires_grad_()  # a leaf of its own: grads must not accumulate
                    with autocast(device, dtype):
                        out = traced_log_ratio(x, mask.to(device), decay, style)
                    out_dtypes.add(out.dtype)
                    (out * upstream.to(device)).sum().backward()
                    errors[f"forward {shape}"] = relative_error(out, value)
                    errors[f"backward {shape}"] = relative_error(x.grad, grad)
                check(f"accuracy/traced_log_ratio[{style},κ={decay}]", errors, out_dtypes)

        for style in STYLES:
            errors, out_dtypes = {}, set()
            for case_style, decay, shape, _, mask, _, _, _, mass in trace_cases:
                if case_style != style:
                    continue
                with autocast(device, dtype):
                    out = trace_mass(mask.to(device), decay, style)
                out_dtypes.add(out.dtype)
                errors[f"κ={decay} {shape}"] = relative_error(out, mass)
            check(f"accuracy/trace_mass[{style}]", errors, out_dtypes)

        errors, out_dtypes = length_weight_errors(device, dtype, length_weights)
        check("accuracy/length_weights", errors, out_dtypes)

        for base in BASES:
            errors, out_dtypes = weighted_agg_errors(device, dtype, base, sizes.agg_shape, weighted_agg_loss)
            check(f"accuracy/weighted_agg_loss[{base}]", errors, out_dtypes)
    return rows


def length_weight_errors(
    device: torch.device, dtype: torch.dtype | None, length_weights: Callable
) -> tuple[dict[str, float], set[torch.dtype]]:
    """f and df/dλ (one backward per response) at several λ, groups shuffled through the batch."""
    gen = _seeded(7)
    groups = [
        torch.tensor([300.0, 420, 500, 560, 610, 700, 820, 1100]),  # the spec's fixture
        torch.randint(1, 8193, (16,), generator=gen).float(),
        torch.randint(1, 100, (5,), generator=gen).float(),
        torch.full((4,), 64.0),  # equal lengths: f = 1
        torch.tensor([37.0]),  # a group of one: f = 1
    ]
    lengths = torch.cat(groups)
    group_ids = torch.cat([torch.full((len(g),), 10 * i) for i, g in enumerate(groups)])
    order = torch.randperm(len(lengths), generator=gen)
    lengths, group_ids = lengths[order], group_ids[order]
    errors: dict[str, float] = {}
    out_dtypes: set[torch.dtype] = set()
    for lam_value in LAMBDAS:
        value, slope = reference_length_weights(lengths, group_ids, lam_value)
        lam = torch.tensor(lam_value, device=device, requires_grad=True)
        with autocast(device, dtype):
            weights = length_weights(lengths.to(device), group_ids.to(device), lam)
        out_dtypes.add(weights.dtype)
        got = torch.stack([torch.autograd.grad(w, lam, retain_graph=True)[0] for w in weights])
        errors[f"f λ={lam_value}"] = relative_error(weights, value, per_row=False)
        errors[f"df/dλ λ={lam_value}"] = relative_error(got, slope, per_row=False)
    return errors, out_dtypes


def weighted_agg_errors(
    device: torch.device, dtype: torch.dtype | None, base: str, shape: tuple[int, int], weighted_agg_loss: Callable
) -> tuple[dict[str, float], set[torch.dtype]]:
    gen = _seeded(11)
    n, length = shape
    loss_mat = torch.randn(n, length, generator=gen)
    lengths = torch.randint(1, length + 1, (n,), generator=gen)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    weights = torch.rand(n, generator=gen) * 1.5 + 0.25
    value, grad_loss, grad_weights = reference_weighted_agg(loss_mat, mask, weights, base)
    x = loss_mat.to(device, copy=True).requires_grad_()
    w = weights.to(device, copy=True).requires_grad_()
    with autocast(device, dtype):
        loss = weighted_agg_loss(x, mask.to(device), w, base)
    loss.backward()
    errors = {
        "value": relative_error(loss, value, per_row=False),
        "d/d loss_mat": relative_error(x.grad, grad_loss),
        "d/d weights": relative_error(w.grad, grad_weights, per_row=False),
    }
    return errors, {loss.dtype}


# ----------------------------------------------------------------------------------------------------------------
# 2. Cost of the losses; the pure-torch losses stand in for verl's where verl is absent
# ----------------------------------------------------------------------------------------------------------------


def torch_surrogate(ratio: Tensor, advantages: Tensor) -> Tensor:
    """PPO's clipped surrogate with dual clip, per token, with the same operations in the same order as verl's
    vanilla loss (so that results can be compared bitwise)."""
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - CLIP_LOW, 1 + CLIP_HIGH)
    pessimistic = torch.maximum(unclipped, clipped)
    dual = torch.min(-advantages * CLIP_C, pessimistic)
    return torch.where(advantages < 0, dual, pessimistic)


def torch_token_mean(loss_mat: Tensor, mask: Tensor) -> Tensor:
    """verl's ``token-mean`` with dp_size 1."""
    return (loss_mat.where(mask.bool(), 0.0) * mask).sum() / mask.sum()


def torch_seq_mean_token_mean(loss_mat: Tensor, mask: Tensor) -> Tensor:
    """verl's ``seq-mean-token-mean`` with dp_size 1."""
    tokens = mask.sum(-1)
    seq_losses = (loss_mat * mask).sum(-1) / (tokens + 1e-8)
    present = (tokens > 0).float()
    return (seq_losses.where(present.bool(), 0.0) * present).sum() / present.sum()


def torch_vanilla_token_losses(old_log_prob: Tensor, log_prob: Tensor, advantages: Tensor) -> Tensor:
    ratio = torch.exp(torch.clamp(log_prob - old_log_prob, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP))
    return torch_surrogate(ratio, advantages)


def torch_grpo_lambda_loss(old_log_prob: Tensor, log_prob: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """GRPO-λ's loss (epsilon-trace, token-mean) from the ops alone: the clipped surrogate with the traced ratio."""
    from verl_lambda.ops.eligibility_trace import traced_log_ratio

    advantages = advantages.clamp(min=NEG_ADV_CLAMP)
    log_ratio = torch.where(mask.bool(), log_prob - old_log_prob, 0.0)
    log_ratio = torch.clamp(log_ratio, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)
    trace = traced_log_ratio(log_ratio, mask, TRACE_DECAY, TRACE_STYLE)
    ratio = torch.exp(torch.clamp(trace, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP))
    return torch_token_mean(torch_surrogate(ratio, advantages), mask)


def loss_inputs(shape: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gen = _seeded(3)
    n, length = shape
    log_prob = torch.randn(n, length, generator=gen) * 0.1 - 2
    old = log_prob + torch.randn(n, length, generator=gen) * 0.05
    advantages = torch.randn(n, 1, generator=gen).expand(n, length).contiguous()
    lengths = torch.randint(length // 4, length + 1, (n,), generator=gen)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    return log_prob.to(device), old.to(device), advantages.to(device), mask.to(device)


class VerlLosses:
    """verl's functions, and GRPO-λ's loss as verl calls it (verl level only)."""

    def __init__(self) -> None:
        from verl.trainer.ppo import core_algos
        from verl.workers.config import FSDPActorConfig, PolicyLossConfig

        from verl_lambda.grpo_lambda import compute_policy_loss_grpo_lambda

        options = {"gamma": 1.0, "lam": TRACE_DECAY, "style": TRACE_STYLE, "neg_adv_clamp": NEG_ADV_CLAMP}
        self.config = FSDPActorConfig(
            strategy="fsdp",
            rollout_n=2,
            ppo_micro_batch_size_per_gpu=2,
            clip_ratio=CLIP_LOW,
            clip_ratio_low=CLIP_LOW,
            clip_ratio_high=CLIP_HIGH,
            clip_ratio_c=CLIP_C,
            policy_loss=PolicyLossConfig(loss_mode="grpo_lambda", grpo_lambda=options),
        )
        self.config.global_batch_info.update(dp_size=1, batch_num_tokens=None, global_batch_size=None)
        self.vanilla = core_algos.compute_policy_loss_vanilla
        self.grpo_lambda = compute_policy_loss_grpo_lambda
        # verl's original agg_loss where verl-lambda's wrapper exposes it (the wrapper passes verl's modes through)
        self.agg_loss = getattr(core_algos.agg_loss, "__wrapped__", core_algos.agg_loss)


def equivalence_rows(device: torch.device, sizes: Sizes, verl: VerlLosses) -> list[Row]:
    """The pure-torch losses against verl's: exact for verl's own losses, to rounding for GRPO-λ."""
    log_prob0, old, advantages, mask = loss_inputs(sizes.agg_shape, device)
    rows = []

    def loss_and_grad(fn: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        log_prob = log_prob0.clone().requires_grad_()
        loss = fn(log_prob)
        loss.backward()
        return loss.detach(), log_prob.grad

    cases = [
        (
            "equivalence/torch vanilla == verl compute_policy_loss_vanilla",
            lambda lp: torch_token_mean(torch_vanilla_token_losses(old, lp, advantages), mask),
            lambda lp: verl.vanilla(old, lp, advantages, mask, "token-mean", verl.config)[0],
            0.0,
        ),
        (
            "equivalence/torch seq-mean-token-mean == verl agg_loss",
            lambda lp: torch_seq_mean_token_mean(torch_vanilla_token_losses(old, lp, advantages), mask),
            lambda lp: verl.agg_loss(torch_vanilla_token_losses(old, lp, advantages), mask, "seq-mean-token-mean"),
            0.0,
        ),
        (
            "equivalence/torch grpo_lambda vs compute_policy_loss_grpo_lambda",
            lambda lp: torch_grpo_lambda_loss(old, lp, advantages, mask),
            lambda lp: verl.grpo_lambda(old, lp, advantages, mask, "token-mean", verl.config)[0],
            1e-6,
        ),
    ]
    for name, ours, verls, bound in cases:
        (a, grad_a), (b, grad_b) = loss_and_grad(ours), loss_and_grad(verls)
        error = max(relative_error(a, b, per_row=False), relative_error(grad_a, grad_b))
        exact = bool(torch.equal(a, b) and torch.equal(grad_a, grad_b))
        ok = exact if bound == 0.0 else error <= bound
        bound_text = "bitwise equal (loss and grad)" if bound == 0.0 else f"<= {bound:g} (loss and grad)"
        rows.append(Row(name, device.type, "fp32", error, bound_text, _status(ok), "bitwise" if exact else ""))
    return rows


def loss_cost_rows(device: torch.device, sizes: Sizes, verl: VerlLosses | None) -> list[Row]:
    """fwd+bwd of each method's loss against verl's vanilla loss, under the autocast verl's engine uses (bf16)."""
    from verl_lambda.ops.length_weights import length_weights, weighted_agg_loss

    log_prob0, old, advantages, mask = loss_inputs(sizes.loss_shape, device)
    n, length = sizes.loss_shape
    lengths = mask.sum(-1)
    group_ids = torch.arange(n, device=device) // GROUP_SIZE
    lam = torch.tensor(0.5, device=device, requires_grad=True)
    source = "verl" if verl is not None else "pure torch"

    def fwd_bwd(loss_fn: Callable[[Tensor], Tensor]) -> Callable[[], float]:
        def run() -> float:
            log_prob = log_prob0.clone().requires_grad_()
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                loss = loss_fn(log_prob)
            loss.backward()
            return loss.item()

        return run

    if verl is not None:
        grpo_lambda = fwd_bwd(lambda lp: verl.grpo_lambda(old, lp, advantages, mask, "token-mean", verl.config)[0])
        vanilla = fwd_bwd(lambda lp: verl.vanilla(old, lp, advantages, mask, "token-mean", verl.config)[0])
        seq_mean = fwd_bwd(
            lambda lp: verl.agg_loss(torch_vanilla_token_losses(old, lp, advantages), mask, "seq-mean-token-mean")
        )
    else:
        grpo_lambda = fwd_bwd(lambda lp: torch_grpo_lambda_loss(old, lp, advantages, mask))
        vanilla = fwd_bwd(lambda lp: torch_token_mean(torch_vanilla_token_losses(old, lp, advantages), mask))
        seq_mean = fwd_bwd(lambda lp: torch_seq_mean_token_mean(torch_vanilla_token_losses(old, lp, advantages), mask))

    def lambda_grpo(lp: Tensor) -> Tensor:  # weights from λ every call, as for a mini-batch of one micro-batch
        weights = length_weights(lengths, group_ids, lam)
        return weighted_agg_loss(torch_vanilla_token_losses(old, lp, advantages), mask, weights, BASES[0])

    shape = f"{n}x{length}"
    rows = [
        cost_row(
            f"cost/grpo_lambda_loss vs vanilla ({source}) {shape}", device, "autocast bf16", grpo_lambda, vanilla, sizes
        ),
        cost_row(
            f"cost/lambda_grpo_loss vs seq-mean-token-mean ({source}) {shape}",
            device,
            "autocast bf16",
            fwd_bwd(lambda_grpo),
            seq_mean,
            sizes,
        ),
    ]
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 3. The O(T) trace against the dense O(T²) matrix
# ----------------------------------------------------------------------------------------------------------------


def dense_rows(device: torch.device, sizes: Sizes) -> list[Row]:
    return [dense_row(device, sizes, length) for length in sizes.dense_lengths]


def dense_row(device: torch.device, sizes: Sizes, length: int) -> Row:
    """One response of ``length`` tokens, κ = 0.99, style ``recent``, fwd+bwd of the trace both ways."""
    from verl_lambda.ops.eligibility_trace import traced_log_ratio

    gen = _seeded(length)
    d0 = (torch.randn(1, length, generator=gen) * 0.05).to(device)
    upstream = torch.randn(1, length, generator=gen).to(device)
    mask = torch.ones(1, length, device=device)

    def ours() -> tuple[Tensor, Tensor]:
        d = d0.clone().requires_grad_()
        out = traced_log_ratio(d, mask, TRACE_DECAY)
        (out * upstream).sum().backward()
        return out.detach(), d.grad

    def dense() -> tuple[Tensor, Tensor]:
        # the T x T matrix is built inside: a dense implementation has to hold it
        d = d0.clone().requires_grad_()
        out = (d * mask) @ dense_trace_matrix(length, TRACE_DECAY, "recent", torch.float32, device).T * mask
        (out * upstream).sum().backward()
        return out.detach(), d.grad

    (value, grad), (dense_value, dense_grad) = ours(), dense()
    error = max(relative_error(value, dense_value), relative_error(grad, dense_grad))
    max_abs = max(float((value - dense_value).abs().max()), float((grad - dense_grad).abs().max()))
    del value, grad, dense_value, dense_grad

    def losses(fn: Callable[[], tuple[Tensor, Tensor]]) -> Callable[[], float]:
        return lambda: float(fn()[0].sum())

    row = cost_row(f"cost/trace_vs_dense T={length}", device, "fp32", losses(ours), losses(dense), sizes)
    row.detail.update(relative_error=error, max_abs_diff=max_abs)
    row.notes = f"max abs Δ {max_abs:.1e}; ours/dense: time {row.detail['time_ratio']:.3f}x, " + row.notes
    row.value, row.bound = error, f"<= {TOLERANCE:g} (rel. to dense)"
    row.status = _status(_finite(error) <= TOLERANCE)
    return row


# ----------------------------------------------------------------------------------------------------------------
# 4. One actor update per method through verl's FSDP engine
# ----------------------------------------------------------------------------------------------------------------

ENGINE_METHODS = {
    "lambda_grpo": [
        "actor_rollout_ref.actor.loss_agg_mode=lambda_grpo",
        "+actor_rollout_ref.actor.lambda_grpo.lr=0.05",
    ],
    "grpo_lambda": ["actor_rollout_ref.actor.policy_loss.loss_mode=grpo_lambda"],
}
ENGINE_PRECISIONS = ("bf16", "fp16")
PARAM_DTYPE = "++actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype={}"
# On CUDA the harness's CPU settings do not apply: the same choices for one GPU. sdpa and no padding removal keep
# flash-attn out; the process group is initialised here, before verl's worker would try to.
CUDA_ACTOR_OVERRIDES = (
    "++actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    "actor_rollout_ref.model.use_remove_padding=False",
    "actor_rollout_ref.model.enable_gradient_checkpointing=False",
    "actor_rollout_ref.actor.strategy=fsdp2",
    "actor_rollout_ref.ref.strategy=fsdp2",
    "actor_rollout_ref.actor.use_torch_compile=False",
    "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    "trainer.device=cuda",
)
ENGINE_BASE_OVERRIDES = (
    "actor_rollout_ref.rollout.n=1",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16",
    "actor_rollout_ref.actor.use_kl_loss=False",
    "actor_rollout_ref.actor.optim.lr=1e-3",
)
VERL_GROWTH_INTERVAL = 400  # verl's FSDP engine builds ShardedGradScaler(growth_interval=400)
# How torch words a dtype the CPU lacks a kernel for ("... not implemented for 'Half'", "... unsupported ...").
UNSUPPORTED_ON_CPU = ("not implemented for", "unsupported", "not supported")
MAX_ENGINE_UPDATES = 3  # an fp16 step may overflow at the scaler's initial scale and be skipped; it then backs off


def init_cuda_process_group() -> None:
    import torch.distributed as dist

    from verl_lambda.cpu.harness import free_port

    # a port of its own: a MASTER_PORT inherited from the caller may be taken
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    torch.cuda.set_device(0)
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl", rank=0, world_size=1)


def make_actor(device: torch.device, model_dir: str, overrides: list[str]) -> Any:
    from verl_lambda.cpu.harness import ActorHarness

    if device.type == "cpu":
        return ActorHarness(model_dir, overrides)

    class CudaActor(ActorHarness):
        """The harness's batch plumbing around a worker composed with the CUDA settings (best-effort, unverified)."""

        def __init__(self, model_dir: str, overrides: Sequence[str] = ()) -> None:
            from verl.workers.engine_workers import ActorRolloutRefWorker

            from verl_lambda.compose import compose_ppo_config

            settings = [f"actor_rollout_ref.model.path={model_dir}", *ENGINE_BASE_OVERRIDES, *CUDA_ACTOR_OVERRIDES]
            self.config = compose_ppo_config([*settings, *overrides], validate=False, resolve=False)
            self.worker = ActorRolloutRefWorker(self.config.actor_rollout_ref, role="actor")
            self.worker.init_model()

    return CudaActor(model_dir, overrides)


def engine_rows(device: torch.device) -> list[Row]:
    from verl_lambda.cpu.harness import free_port, init_process_group
    from verl_lambda.toy import build_model

    if device.type == "cpu":
        init_process_group(0, 1, free_port())
    else:
        init_cuda_process_group()
    # on-policy, with longer responses scoring higher: λ's gradient is non-zero at λ = 0
    lengths = torch.tensor([2, 5, 8, 11] * 4)
    advantages = torch.tensor([-1.5, -0.5, 0.5, 1.5] * 4)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        model_dir = str(build_model(os.path.join(folder, "model"), size="tiny"))
        for method, precision in itertools.product(ENGINE_METHODS, ENGINE_PRECISIONS):
            rows.append(engine_row(device, model_dir, method, precision, lengths, advantages))
    return rows


def engine_row(
    device: torch.device, model_dir: str, method: str, precision: str, lengths: Tensor, advantages: Tensor
) -> Row:
    from verl_lambda.cpu.harness import make_batch

    label = f"param {precision}" + (" + ShardedGradScaler" if precision == "fp16" else "")
    name = f"engine/{method} update"
    started = time.perf_counter()
    actor = None
    try:
        actor = make_actor(device, model_dir, [*ENGINE_METHODS[method], PARAM_DTYPE.format(precision)])
        batch = make_batch(
            vocab_size=40,
            n_groups=4,
            group_size=4,
            max_response_len=12,
            seed=3,
            response_lengths=lengths,
            advantages=advantages,
        )
        scaler_note = prepare_scaler(actor, device, precision)
        batch.tensors["old_log_probs"] = actor.compute_log_prob(batch).cpu()
        row = run_updates(actor, batch, method, name, device, label, scaler_note)
    except Exception as exc:  # any failure becomes the row's result
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        # CPU kernels for bf16/fp16 are incomplete: a missing one is a skip on CPU; anything else is a failure
        missing_kernel = any(marker in str(exc).lower() for marker in UNSUPPORTED_ON_CPU)
        status = "skipped" if device.type == "cpu" and missing_kernel else "fail"
        row = Row(name, device.type, label, None, engine_bound(method), status, f"{status}: {reason}")
        row.detail["traceback"] = traceback.format_exc()[-4000:]
    row.detail["seconds"] = round(time.perf_counter() - started, 2)
    del actor
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def prepare_scaler(actor: Any, device: torch.device, precision: str) -> str:
    """fp16 must run with verl's ShardedGradScaler. verl builds it for the default device ``cuda``, so on a CPU it
    is disabled: there the same class with verl's settings is created for the CPU instead."""
    if precision != "fp16":
        return ""
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    engine = actor.training_worker.engine
    scaler = getattr(engine, "scaler", None)
    if scaler is None:
        raise RuntimeError("verl's engine built no grad scaler for fp16")
    if device.type == "cpu" and not scaler.is_enabled():
        engine.scaler = ShardedGradScaler(device="cpu", growth_interval=VERL_GROWTH_INTERVAL)
        return "verl's ShardedGradScaler re-created for device cpu"
    if not scaler.is_enabled():
        raise RuntimeError("verl's grad scaler is disabled")
    return "verl's ShardedGradScaler"


def run_updates(
    actor: Any, batch: Any, method: str, name: str, device: torch.device, label: str, scaler_note: str
) -> Row:
    from verl_lambda import lambda_grpo

    steps = []
    for _ in range(MAX_ENGINE_UPDATES):
        metrics = actor.update(batch, global_batch_size=len(batch))
        record = {"pg_loss": float(metrics["actor/pg_loss"][0]), "grad_norm": float(metrics["grad_norm"][0])}
        if method == "lambda_grpo":
            record["lambda"] = float(metrics["lambda_grpo/lambda"][0])
            record["lambda_grad"] = float(metrics["lambda_grpo/lambda_grad"][0])
        scaler = getattr(actor.training_worker.engine, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            record["loss_scale"] = float(scaler.get_scale())
        steps.append(record)
        if math.isfinite(record["grad_norm"]):  # a step that was not skipped for overflow
            break
    last = steps[-1]
    finite = math.isfinite(last["pg_loss"]) and math.isfinite(last["grad_norm"])
    notes = f"grad_norm {last['grad_norm']:.3g}"
    moved = True
    if method == "lambda_grpo":
        state = lambda_grpo.lambda_state(actor.training_worker)
        moved = state is not None and last["lambda"] != 0.0 and math.isfinite(last["lambda"])
        notes += f"; λ 0 -> {last['lambda']:.4g}"
    if "loss_scale" in last:
        notes += f"; loss scale {last['loss_scale']:g}"
    if len(steps) > 1:
        notes += f"; {len(steps)} updates, the first {len(steps) - 1} skipped for fp16 overflow"
    if scaler_note:
        notes += f"; {scaler_note}"
    detail = {"steps": steps, "scaler": scaler_note}
    return Row(
        name, device.type, label, last["pg_loss"], engine_bound(method), _status(finite and moved), notes, detail
    )


def engine_bound(method: str) -> str:
    return "finite loss and grad_norm" + (", λ moved" if method == "lambda_grpo" else "")


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------


def detect_verl(device: str) -> tuple[str | None, str]:
    """verl's version and why the verl level does (not) run."""
    if os.environ.get(NO_VERL_ENV) == "1":
        return None, f"{NO_VERL_ENV}=1"
    if device == "cpu":
        os.environ.setdefault("VERL_PLATFORM", "cpu")  # before verl resolves its platform
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import verl  # noqa: F401
        from verl.trainer.ppo import core_algos  # noqa: F401
    except Exception as exc:  # not installed, or installed without what it needs
        return None, f"verl not importable: {type(exc).__name__}: {exc}"
    try:
        return importlib.metadata.version("verl"), "verl importable"
    except importlib.metadata.PackageNotFoundError:
        return getattr(sys.modules["verl"], "__version__", "unknown"), "verl importable"


@contextlib.contextmanager
def section(rows: list[Row], name: str, device: str) -> Iterator[None]:
    """A section that raises records one failed row instead of ending the run."""
    started = time.perf_counter()
    print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
    try:
        yield
    except Exception as exc:  # one failed row, and the other sections still run
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        rows.append(
            Row(f"{name}/error", device, "-", None, "runs", "fail", reason, {"traceback": traceback.format_exc()})
        )
    print(f"[gpu_check] {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}"


def print_table(rows: list[Row]) -> None:
    print("| check | device | dtype | value | bound | status | notes |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        cells = [row.name, row.device, row.dtype, format_value(row.value), row.bound, row.status, row.notes]
        print("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    parser.add_argument("--quick", action="store_true", help="a reduced set (about a minute on an H200)")
    parser.add_argument("--out", default="gpu_check.json", help="where to write the JSON report")
    args = parser.parse_args(argv)
    if os.environ.get(NO_VERL_ENV) == "1":
        sys.meta_path.insert(0, _BlockImports())

    started = time.perf_counter()
    device_kind = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_kind == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    verl_version, level_reason = detect_verl(device_kind)
    device = torch.device("cuda", 0) if device_kind == "cuda" else torch.device("cpu")
    sizes = choose_sizes(device_kind, args.quick)
    torch.manual_seed(0)

    rows: list[Row] = []
    with section(rows, "accuracy", device_kind):
        rows += accuracy_rows(device, sizes, (None, torch.bfloat16, torch.float16))
    verl = None
    if verl_version is not None:
        with section(rows, "equivalence", device_kind):
            verl = VerlLosses()
            rows += equivalence_rows(device, sizes, verl)
    with section(rows, "cost", device_kind):
        rows += loss_cost_rows(device, sizes, verl)
    with section(rows, "dense", device_kind):
        rows += dense_rows(device, sizes)
    if verl_version is not None:
        with section(rows, "engine", device_kind):
            rows += engine_rows(device)
    else:
        for method in ENGINE_METHODS:
            for precision in ENGINE_PRECISIONS:
                note = f"skipped: {level_reason}"
                rows.append(
                    Row(f"engine/{method} update", device_kind, f"param {precision}", None, "-", "skipped", note)
                )

    failed = [f"{row.name} ({row.dtype})" for row in rows if row.status == "fail"]
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0]), *(argv if argv is not None else sys.argv[1:])]),
        "device": device_kind,
        "device_name": device_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        # TF32 would lower float32 matmuls (the scan's) below float32 whatever autocast does; recorded, not changed
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "verl": verl_version,
        "level": "verl" if verl_version is not None else "torch-only",
        "level_reason": level_reason,
        "quick": args.quick,
        "sizes": asdict(sizes),
        "seconds": round(time.perf_counter() - started, 1),
        "passed": not failed,
        "failed": failed,
        "rows": [asdict(row) for row in rows],
    }
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, default=str)

    run = "quick" if args.quick else "full"
    print(f"\nverl-lambda GPU check ({run}): {device_name}, torch {torch.__version__}, verl {verl_version or 'absent'}")
    print(f"level: {report['level']} ({level_reason}); {report['seconds']} s\n")
    print_table(rows)
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks passed or skipped; report in {args.out}")
    if failed:
        print("FAILED: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
