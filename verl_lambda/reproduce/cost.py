"""GPU-hour estimates per regime, size and preset (``docs/reproduce/cost.md`` renders these tables).

Estimates, not measurements: no GPU was available to develop this. One published measurement anchors them, and every
other number is an assumption named in :data:`ASSUMPTIONS` (the document states each with its reasoning):

- **Anchor.** SimpleRL-Zoo's README: 2 × 8 H100-80GB trained Qwen2.5-7B for about 100 steps in about 15 hours,
  240 H100-hours, with 1024 prompts × 8 responses per step and responses up to 8,192 tokens: the λ-GRPO regime's 7B
  launch exactly (batch, group size, cap, steps).
- **Model size.** At equal tokens, generation and training cost scale with the parameter count; small models use GPUs
  less well, so a ≤ 3B run costs its parameter share of the anchor times 1 to 1.5.
- **Response caps.** A step's time splits into a tail, the generation of the longest responses after the rest have
  finished (decode-bound, proportional to the cap), and the rest, proportional to the tokens generated and trained
  (prompt + response). The GRPO-λ regime's caps (256, 768) cut both; a fixed per-step overhead (weight sync to vLLM,
  answer checking, data movement) does not shrink.
- **Presets.** Every preset costs what GRPO costs (the traces and weights are O(T) per response:
  docs/performance.md), except ``dapo_clip_higher``, which has no KL term and so no reference-model forward pass.

Layer 7 (applications).
"""

from __future__ import annotations

from dataclasses import dataclass

from verl_lambda.presets import canonical
from verl_lambda.reproduce.regimes import GRPO_LAMBDA, LAMBDA_GRPO, REGIMES

PARAMETERS = {"1.5b": 1.54, "3b": 3.09, "7b": 7.62}  # billions: Qwen2.5 1.5B / 3B / 7B (the GRPO-λ 3B is 3.2B)
PARAMETERS_BY_MODEL = {"meta-llama/Llama-3.2-3B-Instruct": 3.21}
SIZES = ("1.5b", "3b", "7b")


@dataclass(frozen=True)
class Assumptions:
    anchor_h100_hours: float = 240.0  # SimpleRL-Zoo, Qwen2.5-7B, 100 steps, 1024 x 8, cap 8192
    anchor_parameters: float = 7.62
    anchor_cap: int = 8192
    small_model_inefficiency: tuple[float, float] = (1.0, 1.5)  # <= 3B: GPUs less well used
    fixed_h100_hours: float = 100 * 30 / 3600 * 8  # 30 s per step on 8 GPUs: weight sync, checking, data movement
    tail_share: tuple[float, float] = (0.2, 0.4)  # of a long-cap step: waiting for the longest responses
    prompt_tokens: int = 150  # a MATH or GSM8K question in its template
    long_cap_mean_response: tuple[int, int] = (1000, 2000)  # λ-GRPO regime, averaged over a run
    short_cap_fill: float = 0.9  # GRPO-λ regime: mean response / cap (its models answer past the caps; R1)
    no_kl_saving: tuple[float, float] = (0.05, 0.10)  # dapo_clip_higher: no reference forward pass
    eval_h100_hours: tuple[float, float] = (2.0, 4.0)  # eval_ckpt.sh per checkpoint: merge, start-up, generation


ASSUMPTIONS = Assumptions()


def _parameters(paper: str, size: str) -> float:
    return PARAMETERS_BY_MODEL.get(REGIMES[paper].sizes[size].model, PARAMETERS[size])


def long_cap_run(paper: str, size: str, a: Assumptions = ASSUMPTIONS) -> tuple[float, float]:
    """H100-hours of a 100-step run at the λ-GRPO regime's caps: the anchor scaled by parameters."""
    share = _parameters(paper, size) / a.anchor_parameters
    low, high = (1.0, 1.0) if size == "7b" else a.small_model_inefficiency
    return a.anchor_h100_hours * share * low, a.anchor_h100_hours * share * high


def step_ratio(paper: str, size: str, a: Assumptions = ASSUMPTIONS) -> tuple[float, float]:
    """The variable cost of a step in ``paper``'s regime relative to the same size in the λ-GRPO regime."""
    cap = REGIMES[paper].sizes[size].max_response_length
    long_cap = REGIMES[LAMBDA_GRPO].sizes[size].max_response_length
    if cap >= long_cap:
        return 1.0, 1.0
    short = a.prompt_tokens + a.short_cap_fill * cap
    ratios = [
        tail * cap / long_cap + (1 - tail) * short / (a.prompt_tokens + mean)
        for tail in a.tail_share
        for mean in a.long_cap_mean_response
    ]
    return min(ratios), max(ratios)


def per_run(paper: str, size: str, algo: str | None = None, a: Assumptions = ASSUMPTIONS) -> tuple[float, float]:
    """(low, high) H100-hours of one 100-step training run of ``algo`` (default: the regime's) in ``paper``'s regime."""
    steps = REGIMES[paper].total_steps / 100
    base_low, base_high = long_cap_run(paper, size, a)
    r_low, r_high = step_ratio(paper, size, a)
    fixed = a.fixed_h100_hours
    low = fixed + (base_low - fixed) * r_low
    high = fixed + (base_high - fixed) * r_high
    if canonical(algo or REGIMES[paper].default_algo) == "dapo_clip_higher":
        low, high = low * (1 - a.no_kl_saving[1]), high * (1 - a.no_kl_saving[0])
    return low * steps, high * steps


def _round(value: float) -> int:
    return int(5 * round(value / 5)) if value >= 10 else max(1, round(value))


def _range(low: float, high: float) -> str:
    a, b = _round(low), _round(high)
    return f"{a}" if a == b else f"{a}–{b}"


def per_run_table() -> str:
    lines = [
        "| regime | size | model, cap | per step vs the λ-GRPO regime's | H100-hours per run (100 steps) |"
        " a row: 3 seeds + 3 evaluations |",
        "|---|---|---|---|---|---|",
    ]
    e_low, e_high = ASSUMPTIONS.eval_h100_hours
    for paper in (LAMBDA_GRPO, GRPO_LAMBDA):
        for size in SIZES:
            choice = REGIMES[paper].sizes[size]
            r_low, r_high = step_ratio(paper, size)
            ratio = "1 (same)" if r_low == 1.0 else f"{1 / r_high:.1f}–{1 / r_low:.1f}× cheaper"
            low, high = per_run(paper, size)
            lines.append(
                f"| `PAPER={paper}` | {size.upper()} | `{choice.model}`, {choice.max_response_length} | {ratio} |"
                f" {_range(low, high)} | {_range(3 * (low + e_low), 3 * (high + e_high))} |"
            )
    return "\n".join(lines)


STUDIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("the λ-GRPO paper's comparison", LAMBDA_GRPO, REGIMES[LAMBDA_GRPO].algos),
    ("the GRPO-λ paper's comparison (GRPO, 2 styles × 2 variants)", GRPO_LAMBDA, REGIMES[GRPO_LAMBDA].algos[:5]),
    ("... with the clamp switches (`grpo_clamp`, `grpo_lambda_noclamp`)", GRPO_LAMBDA, REGIMES[GRPO_LAMBDA].algos),
    ("`dapo_clip_higher` next to the λ-GRPO comparison", LAMBDA_GRPO, ("dapo_clip_higher",)),
)


def study(paper: str, algos: tuple[str, ...], seeds: int = 3) -> tuple[float, float, int]:
    """(low, high) H100-hours and the run count of ``algos`` × 3 sizes × ``seeds``, each run evaluated once."""
    e_low, e_high = ASSUMPTIONS.eval_h100_hours
    low = high = 0.0
    for algo in algos:
        for size in SIZES:
            r_low, r_high = per_run(paper, size, algo)
            low += seeds * (r_low + e_low)
            high += seeds * (r_high + e_high)
    return low, high, len(algos) * len(SIZES) * seeds


def studies_table() -> str:
    lines = [
        "| study (3 sizes × 3 seeds, each run evaluated once) | presets | runs | H100-hours"
        " | days of one 8×H100 node |",
        "|---|---|---|---|---|",
    ]
    for title, paper, algos in STUDIES:
        low, high, runs = study(paper, algos)
        names = ", ".join(f"`{a}`" for a in algos)
        lines.append(f"| {title} | {names} | {runs} | {_range(low, high)} | {low / 192:.1f}–{high / 192:.1f} |")
    return "\n".join(lines)


__all__ = ["ASSUMPTIONS", "GRPO_LAMBDA", "Assumptions", "per_run", "per_run_table", "step_ratio", "studies_table"]
