"""The methods compared in this project, as verl overrides: one source for the demo, the tests, the study and the
cluster launchers, so that "ALGO=grpo" means the same thing everywhere.

    python -m verl_lambda.presets ALGO      # the overrides of ALGO, one per line
    python -m verl_lambda.presets --list    # every preset (and alias) with what it is

A preset sets only what its method changes; every other setting (batch sizes, learning rate, KL, lengths, ...) comes
from the launch. Options of the two methods that a preset leaves alone keep their defaults
(:class:`verl_lambda.config.LambdaGRPOConfig`, :class:`verl_lambda.config.GRPOLambdaConfig`); the reproduction
launchers write every one of them into the config anyway, so that each run records them.

Names, as a study would use them:

- baselines: ``grpo``; ``dapo_token_mean``, the λ-GRPO paper's "DAPO" (token-mean aggregation only, every other
  setting as GRPO; its reviewers point out that it lacks clip-higher); ``dapo_clip_higher``, DAPO's loss as DAPO's own
  paper writes it (token-mean, clip-higher 0.2 / 0.28, no KL term; no dynamic sampling or overlong shaping, which
  are not loss settings). **Plain ``dapo`` is an alias of ``dapo_clip_higher``**: it has meant that since the first
  release (the committed CPU study's "DAPO" runs used it), and a name must not change meaning under recorded
  results. The λ-GRPO paper's comparison uses ``dapo_token_mean``.
- λ-GRPO: ``lambda_grpo`` (learnable length weights on GRPO's aggregation), ``lambda_grpo_validation`` (λ learned
  from held-out groups).
- GRPO-λ: the trace style (``recent``, ``both``) times the variant (``epsilon-trace``, ``epsilon-weight``):
  ``grpo_lambda`` (recent, ε-trace: the plugin's defaults), ``grpo_lambda_both``, ``grpo_lambda_eps_weight``,
  ``grpo_lambda_both_eps_weight``; the clamp switch: ``grpo_lambda_noclamp`` (recent, ε-trace, no negative-advantage
  clamp) and ``grpo_clamp`` (GRPO with the clamp: ``grpo_lambda`` at λ = 0, i.e. κ = 0 with ``recent``, which is
  verl's vanilla loss exactly, plus the clamp at -0.1; ALGORITHMS.md §4).
- both methods: ``lambda_grpo+grpo_lambda``.

Layer 2 (foundations).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # verl_lambda.config imports torch: this module stays light (python -m verl_lambda.presets)
    from verl_lambda.config import GRPOLambdaConfig, LambdaGRPOConfig

ACTOR = "actor_rollout_ref.actor"
LAMBDA_GRPO_KEY = f"{ACTOR}.lambda_grpo"  # = verl_lambda.config.LAMBDA_GRPO_KEY
GRPO_LAMBDA_KEY = f"{ACTOR}.policy_loss.grpo_lambda"  # = verl_lambda.config.GRPO_LAMBDA_KEY
LAMBDA_GRPO_OPTION = f"++{LAMBDA_GRPO_KEY}"  # ++: add or override (the launchers write every option first)
GRPO_LAMBDA_OPTION = f"++{GRPO_LAMBDA_KEY}"

_GRPO = "algorithm.adv_estimator=grpo"
_SEQ_MEAN = f"{ACTOR}.loss_agg_mode=seq-mean-token-mean"
_TOKEN_MEAN = f"{ACTOR}.loss_agg_mode=token-mean"
_LAMBDA_AGG = f"{ACTOR}.loss_agg_mode=lambda_grpo"
_TRACE = f"{ACTOR}.policy_loss.loss_mode=grpo_lambda"
_VANILLA = f"{ACTOR}.policy_loss.loss_mode=vanilla"


@dataclass(frozen=True)
class Preset:
    """One method as verl overrides."""

    name: str
    title: str  # how a results table names it
    overrides: tuple[str, ...]
    description: str
    source: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "grpo",
            "GRPO",
            (_GRPO, _SEQ_MEAN, _VANILLA),
            "per-response token mean, then mean over responses; verl's vanilla clipped surrogate",
            "Shao et al. 2024, arXiv 2402.03300",
        ),
        Preset(
            "grpo_clamp",
            "GRPO + clamp",
            (_GRPO, _SEQ_MEAN, _TRACE, f"{GRPO_LAMBDA_OPTION}.lam=0.0", f"{GRPO_LAMBDA_OPTION}.style=recent"),
            "GRPO with GRPO-λ's negative-advantage clamp (-0.1) and nothing else: grpo_lambda at λ = 0 (κ = 0, recent)"
            " is verl's vanilla loss exactly; it isolates the clamp from the trace",
            "ALGORITHMS.md §4 (κ = 0 special case); the clamp: GRPO-λ paper (reviewer 2)",
        ),
        Preset(
            "dapo_token_mean",
            "DAPO (token-mean)",
            (_GRPO, _TOKEN_MEAN, _VANILLA),
            "the λ-GRPO paper's DAPO baseline: token-mean aggregation, every other setting as GRPO (KL and clip 0.2"
            " included)",
            "λ-GRPO paper's baseline as its reviewers describe it (R2, R3: no clip-higher)",
        ),
        Preset(
            "dapo_clip_higher",
            "DAPO (clip-higher)",
            (
                _GRPO,
                _TOKEN_MEAN,
                _VANILLA,
                f"{ACTOR}.clip_ratio_low=0.2",
                f"{ACTOR}.clip_ratio_high=0.28",
                f"{ACTOR}.use_kl_loss=False",
            ),
            "DAPO's loss: token-mean, clip-higher (0.2 / 0.28), no KL term; no dynamic sampling or overlong shaping",
            "Yu et al. 2025, arXiv 2503.14476",
        ),
        Preset(
            "lambda_grpo",
            "λ-GRPO",
            (_GRPO, _LAMBDA_AGG, _VANILLA),
            "learnable length weights on GRPO's aggregation (base seq-mean-token-mean)",
            "arXiv 2510.06870; base: ALGORITHMS.md §2 (our reading)",
        ),
        Preset(
            "lambda_grpo_validation",
            "λ-GRPO (validation λ)",
            (_GRPO, _LAMBDA_AGG, _VANILLA, f"{LAMBDA_GRPO_OPTION}.signal=validation"),
            "λ-GRPO with λ learned from a held-out share of each step's groups",
            "the paper's summary: λ 'is optimized using validation data'; ALGORITHMS.md §3",
        ),
        Preset(
            "grpo_lambda",
            "GRPO-λ (recent, ε-trace)",
            (
                _GRPO,
                _SEQ_MEAN,
                _TRACE,
                f"{GRPO_LAMBDA_OPTION}.style=recent",
                f"{GRPO_LAMBDA_OPTION}.variant=epsilon-trace",
            ),
            "eligibility-trace ratio (accumulating trace) inside GRPO's clipped surrogate, clamp -0.1",
            "arXiv 2510.00194; ALGORITHMS.md §4",
        ),
        Preset(
            "grpo_lambda_both",
            "GRPO-λ (both, ε-trace)",
            (
                _GRPO,
                _SEQ_MEAN,
                _TRACE,
                f"{GRPO_LAMBDA_OPTION}.style=both",
                f"{GRPO_LAMBDA_OPTION}.variant=epsilon-trace",
            ),
            "GRPO-λ with the 'both' trace (early tokens keep weight κ^k), the style the paper reports doing better",
            "arXiv 2510.00194 (reviewer 2: 'both' outperforms 'recent')",
        ),
        Preset(
            "grpo_lambda_eps_weight",
            "GRPO-λ (recent, ε-weight)",
            (
                _GRPO,
                _SEQ_MEAN,
                _TRACE,
                f"{GRPO_LAMBDA_OPTION}.style=recent",
                f"{GRPO_LAMBDA_OPTION}.variant=epsilon-weight",
            ),
            "per-token ratio and clipping, each token's loss weighted by its normalised trace mass",
            "ALGORITHMS.md §4 (our reading of the paper's ε-weight variant)",
        ),
        Preset(
            "grpo_lambda_both_eps_weight",
            "GRPO-λ (both, ε-weight)",
            (
                _GRPO,
                _SEQ_MEAN,
                _TRACE,
                f"{GRPO_LAMBDA_OPTION}.style=both",
                f"{GRPO_LAMBDA_OPTION}.variant=epsilon-weight",
            ),
            "the 'both' trace with the ε-weight variant",
            "ALGORITHMS.md §4",
        ),
        Preset(
            "grpo_lambda_noclamp",
            "GRPO-λ (recent, ε-trace, no clamp)",
            (
                _GRPO,
                _SEQ_MEAN,
                _TRACE,
                f"{GRPO_LAMBDA_OPTION}.style=recent",
                f"{GRPO_LAMBDA_OPTION}.variant=epsilon-trace",
                f"{GRPO_LAMBDA_OPTION}.neg_adv_clamp=null",
            ),
            "GRPO-λ without the negative-advantage clamp: with grpo_clamp, separates the trace from the clamp",
            "ALGORITHMS.md §4 (the clamp is configurable and disabled by null)",
        ),
        Preset(
            "lambda_grpo+grpo_lambda",
            "λ-GRPO + GRPO-λ",
            (_GRPO, _LAMBDA_AGG, _TRACE),
            "GRPO-λ's traced ratio inside the clipped surrogate, λ-GRPO's weights on its aggregation",
            "ALGORITHMS.md §6",
        ),
    )
}

# Other names of presets: the name a run records is the preset's own (verl_lambda.reproduce.launch resolves them).
ALIASES: dict[str, str] = {"dapo": "dapo_clip_higher"}

# Every name a launcher accepts, with its overrides (aliases included): what the CPU launcher and the tests iterate.
ALGORITHMS: dict[str, tuple[str, ...]] = {
    **{name: p.overrides for name, p in PRESETS.items()},
    **{alias: PRESETS[target].overrides for alias, target in ALIASES.items()},
}


def canonical(algo: str) -> str:
    """The preset ``algo`` names (an alias resolved); a ValueError listing the names for an unknown one."""
    if algo in ALIASES:
        return ALIASES[algo]
    if algo not in PRESETS:
        raise ValueError(f"ALGO must be one of {sorted(ALGORITHMS)}, got {algo!r}")
    return algo


def preset(algo: str) -> Preset:
    return PRESETS[canonical(algo)]


def overrides(algo: str) -> list[str]:
    return list(preset(algo).overrides)


def method_keys() -> set[str]:
    """Every config key some preset sets (without ``+``): the keys in which two methods' runs may differ."""
    return {o.split("=", 1)[0].lstrip("+") for p in PRESETS.values() for o in p.overrides}


def parse_overrides(overrides: Sequence[str]) -> list[Any]:
    """``overrides`` parsed by hydra's override grammar (what verl's config composition applies)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def last_values(overrides: Sequence[str], keys: Sequence[str]) -> dict[str, Any]:
    """The value the last override of each of ``keys`` gives it (a key no override sets is absent)."""
    wanted, found = set(keys), {}
    for override in parse_overrides(overrides):
        if override.key_or_group in wanted and not override.is_delete():
            found[override.key_or_group] = override.value()
    return found


def method_options(overrides: Sequence[str]) -> tuple[LambdaGRPOConfig, GRPOLambdaConfig]:
    """Both methods' options as ``overrides`` (applied in order) leave them, defaults for the rest, validated (a
    ValueError names a bad option as verl would)."""
    from verl_lambda.config import GRPOLambdaConfig, LambdaGRPOConfig

    groups = {LAMBDA_GRPO_KEY: LambdaGRPOConfig, GRPO_LAMBDA_KEY: GRPOLambdaConfig}
    values: dict[str, dict[str, Any]] = {key: {} for key in groups}
    for override in parse_overrides(overrides):
        for key in groups:
            if override.key_or_group.startswith(key + "."):
                option = override.key_or_group[len(key) + 1 :]
                if override.is_delete():
                    values[key].pop(option, None)
                else:
                    values[key][option] = override.value()
    return LambdaGRPOConfig.from_dict(values[LAMBDA_GRPO_KEY]), GRPOLambdaConfig.from_dict(values[GRPO_LAMBDA_KEY])


def describe() -> str:
    lines = []
    for p in PRESETS.values():
        aliases = [a for a, t in ALIASES.items() if t == p.name]
        alias = f" (alias: {', '.join(aliases)})" if aliases else ""
        lines.append(f"{p.name}{alias}: {p.title}. {p.description}. Source: {p.source}")
    return "\n".join(lines)


if __name__ == "__main__":
    argument = sys.argv[1] if len(sys.argv) > 1 else ""
    if argument == "--list":
        print(describe())
        sys.exit(0)
    try:
        print("\n".join(overrides(argument)))
    except ValueError as exc:
        sys.exit(str(exc))
