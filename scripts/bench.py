"""Overhead of verl-lambda against verl's built-in path, measured in one process as ratios.

    python scripts/bench.py [--quick] [--only NAME ...] [--rounds N]

Each case times our path (A) and verl's (B) on the same inputs, alternating A and B round after round, and takes
the ratio pair by pair, so drift of the machine's speed cancels; it reports the median time of each side and the
median of the paired ratios, next to the target.
``--quick`` shrinks every size so the whole script runs in seconds (a smoke test).

The process runs with glibc's malloc told to keep freed memory (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``): otherwise every multi-megabyte temporary is a fresh mmap whose page faults cost as
much as the arithmetic, and which side pays them depends on allocation order rather than on the code measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("VERL_PLATFORM", "cpu")
_MALLOC_POLICY = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
if any(os.environ.get(key) != value for key, value in _MALLOC_POLICY.items()):  # glibc reads these at start-up
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC_POLICY})

import torch  # noqa: E402  (after the re-exec above)


@dataclass
class Row:
    case: str
    ours_ms: float
    baseline_ms: float
    ratio: float  # median of the paired ratios ours / baseline
    target: str
    speedup: bool = False  # report baseline / ours (how many times faster) instead of ours / baseline

    @property
    def value(self) -> float:
        return 1.0 / self.ratio if self.speedup else self.ratio

    @property
    def met(self) -> bool:
        bound = float(self.target.lstrip("<=>x ").rstrip("x"))
        return self.value >= bound if self.speedup else self.value <= bound


def interleaved(ours: Callable[[], object], baseline: Callable[[], object], rounds: int, warmup: int = 2):
    """Time ``ours`` and ``baseline`` alternately: (median ms of ours, median ms of baseline, median paired ratio)."""
    for _ in range(warmup):
        ours(), baseline()
    a, b = [], []
    for _ in range(rounds):
        for fn, times in ((ours, a), (baseline, b)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return statistics.median(a), statistics.median(b), statistics.median(ratios)


def _backward(loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    return lambda: loss_fn().backward()


def bench_lambda_grpo_aggregation(quick: bool, rounds: int) -> list[Row]:
    """λ-GRPO's loss aggregation (weights from λ + weighted seq-mean-token-mean) vs verl's seq-mean-token-mean."""
    from verl.trainer.ppo import core_algos

    from verl_lambda.ops.length_weights import (
        group_table,
        length_preference,
        softmax_inputs,
        weighted_agg_loss,
        weights_and_slope,
        with_slope,
    )

    bs, length, group = (64, 256, 8) if quick else (512, 4096, 8)
    gen = torch.Generator().manual_seed(0)
    loss_mat = torch.randn(bs, length, generator=gen).requires_grad_()
    lengths = torch.randint(1, length + 1, (bs,), generator=gen)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    group_lengths, group_mask, group_index, self_index = group_table(torch.arange(bs) // group, lengths)
    groups = softmax_inputs(length_preference(group_lengths, group_mask)[0], group_mask)  # once per step
    lam = torch.tensor(0.5, requires_grad=True)
    verl_agg = core_algos.agg_loss.__wrapped__ if hasattr(core_algos.agg_loss, "__wrapped__") else core_algos.agg_loss

    def ours():  # a mini-batch that is one micro-batch: f and df/dλ at the current λ, then the aggregation
        weights = with_slope(lam, *weights_and_slope(*groups, group_index, self_index, lam.item()))
        return weighted_agg_loss(loss_mat, mask, weights, "seq-mean-token-mean", global_batch_size=bs)

    value, slope = weights_and_slope(*groups, group_index, self_index, lam.item())

    def ours_per_micro_batch():  # f and df/dλ come from the mini-batch, as in training
        weights = with_slope(lam, value, slope)
        return weighted_agg_loss(loss_mat, mask, weights, "seq-mean-token-mean", global_batch_size=bs)

    def verls():
        return verl_agg(loss_mat, mask, "seq-mean-token-mean", global_batch_size=bs)

    # a few milliseconds per call: many alternations keep the machine's jitter out of the median
    worst = interleaved(_backward(ours), _backward(verls), rounds * 10)
    micro = interleaved(_backward(ours_per_micro_batch), _backward(verls), rounds * 10)
    name = f"λ-GRPO aggregation fwd+bwd, {bs}x{length}, vs seq-mean-token-mean"
    return [
        Row(f"{name}: one micro-batch, weights included", *worst, "<= 1.25x"),
        Row(f"{name}: per micro-batch (weights once per mini-batch)", *micro, "<= 1.25x"),
    ]


def _policy_loss_inputs(bs: int, length: int):
    gen = torch.Generator().manual_seed(0)
    log_prob0 = torch.randn(bs, length, generator=gen) * 0.1 - 2
    old = log_prob0 + torch.randn(bs, length, generator=gen) * 0.05
    advantages = torch.randn(bs, 1, generator=gen).expand(bs, length).contiguous()
    lengths = torch.randint(length // 4, length + 1, (bs,), generator=gen)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    return log_prob0, old, advantages, mask


def _actor_config(**grpo_lambda):
    from verl.workers.config import FSDPActorConfig, PolicyLossConfig

    config = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=2,
        ppo_micro_batch_size_per_gpu=2,
        policy_loss=PolicyLossConfig(loss_mode="grpo_lambda", grpo_lambda=grpo_lambda),
    )
    config.global_batch_info.update(dp_size=1, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None)
    return config


def bench_grpo_lambda_loss(quick: bool, rounds: int) -> list[Row]:
    """GRPO-λ's policy loss vs verl's vanilla loss, forward+backward on the same inputs."""
    from verl.trainer.ppo import core_algos

    bs, length = (8, 512) if quick else (64, 8192)
    log_prob0, old, advantages, mask = _policy_loss_inputs(bs, length)
    rows = []
    for style in ("recent", "both"):
        config = _actor_config(style=style)
        grpo_lambda = core_algos.get_policy_loss_fn("grpo_lambda")

        def ours(config=config, fn=grpo_lambda):
            return fn(old, log_prob0.clone().requires_grad_(), advantages, mask, "token-mean", config)[0]

        def verls(config=config):
            log_prob = log_prob0.clone().requires_grad_()
            return core_algos.compute_policy_loss_vanilla(old, log_prob, advantages, mask, "token-mean", config)[0]

        timing = interleaved(_backward(ours), _backward(verls), rounds * 3)
        rows.append(Row(f"GRPO-λ loss fwd+bwd ({style}), {bs}x{length}, vs vanilla", *timing, "<= 1.5x"))
    return rows


def bench_trace_vs_dense(quick: bool, rounds: int) -> list[Row]:
    """The O(T) chunked scan vs an O(T^2) dense implementation of the same trace, forward+backward."""
    from verl_lambda.ops.eligibility_trace import traced_log_ratio

    bs, length, decay = (2, 512, 0.99) if quick else (8, 4096, 0.99)
    d0 = torch.randn(bs, length) * 0.05
    mask = torch.ones(bs, length)
    steps = torch.arange(length)
    lags = (steps[:, None] - steps[None, :]).float()

    def dense_weights() -> torch.Tensor:  # (T, T) decay ** (t - k) below the diagonal
        return torch.where(lags >= 0, decay ** lags.clamp(min=0), 0.0)

    cached = dense_weights()

    def dense(weights: torch.Tensor | None = None) -> None:
        d = d0.clone().requires_grad_()
        weights = dense_weights() if weights is None else weights
        ((d * mask) @ weights.T * mask).sum().backward()

    def ours():
        d = d0.clone().requires_grad_()
        traced_log_ratio(d, mask, decay).sum().backward()

    name = f"trace fwd+bwd, {bs}x{length}, O(T) scan vs dense O(T^2)"
    naive = interleaved(ours, dense, max(3, rounds // 3))
    reused = interleaved(ours, lambda: dense(cached), max(3, rounds))
    return [
        Row(f"{name}, T x T weights built per call", *naive, ">= 50x", speedup=True),
        Row(f"{name}, T x T weights built once", *reused, ">= 50x", speedup=True),
    ]


def bench_actor_update(quick: bool, rounds: int) -> list[Row]:
    """One actor update (verl's FSDP2 engine on CPU, tiny model): lambda_grpo vs seq-mean-token-mean."""
    import tempfile

    from verl_lambda.cpu.harness import ActorHarness, free_port, init_process_group, make_batch
    from verl_lambda.toy import build_model

    init_process_group(0, 1, free_port())  # its own port: a MASTER_PORT inherited from a caller may be taken
    model_dir = str(build_model(os.path.join(tempfile.mkdtemp(), "model"), size="tiny"))
    groups, length = (4, 16) if quick else (16, 128)
    batch = make_batch(vocab_size=40, n_groups=groups, group_size=8, max_response_len=length, seed=0)
    micro = f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={groups * 8 // 4}"
    mode = "actor_rollout_ref.actor.loss_agg_mode"
    ours = ActorHarness(model_dir, [f"{mode}=lambda_grpo", micro])
    verls = ActorHarness(model_dir, [f"{mode}=seq-mean-token-mean", micro])
    size = len(batch)
    timing = interleaved(lambda: ours.update(batch, size), lambda: verls.update(batch, size), rounds)
    label = f"actor update step, FSDP2 on CPU, tiny model, {size} x {length} tokens, vs seq-mean-token-mean"
    return [Row(label, *timing, "<= 1.02x")]


CASES = {
    "lambda_grpo_agg": bench_lambda_grpo_aggregation,
    "lambda_grpo_update": bench_actor_update,
    "grpo_lambda_loss": bench_grpo_lambda_loss,
    "trace_dense": bench_trace_vs_dense,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test that runs in seconds")
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per side (default 30, quick 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 30)
    rows: list[Row] = []
    for name in args.only or CASES:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        rows += CASES[name](args.quick, rounds)
    print(f"\ntorch {torch.__version__}, {args.threads} threads, fixed malloc policy")
    print("median times of each side and median of the paired ratios\n")
    print("| case | ours (ms) | verl / baseline (ms) | result | target | met |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        result = f"{row.value:.1f}x faster" if row.speedup else f"{row.value:.3f}x"
        met = "yes" if row.met else "no"
        print(f"| {row.case} | {row.ours_ms:.2f} | {row.baseline_ms:.2f} | {result} | {row.target} | {met} |")


if __name__ == "__main__":
    main()
