"""Published numbers the report prints next to ours, each with the text it was read from and the regime it holds in.

Only numbers we could trace to a text we read are here; where a paper's absolute numbers were not in the text we
could read (both papers' result tables), only what the abstract states is listed. A paper's gain holds in that
paper's regime (``PAPER=`` of the launchers, :mod:`verl_lambda.reproduce.regimes`): its models, response caps and
benchmarks. The report prints it only next to a row run in that regime, and says "not this paper's regime"
otherwise.

Layer 7 (applications).
"""

from __future__ import annotations

from dataclasses import dataclass

from verl_lambda.reproduce.regimes import GRPO_LAMBDA, LAMBDA_GRPO, REGIMES

LAMBDA_GRPO_ABSTRACT = "λ-GRPO paper (arXiv 2510.06870), abstract"
GRPO_LAMBDA_ABSTRACT = "GRPO-λ paper (arXiv 2510.00194), abstract"
SIMPLERL_ZOO_README = "SimpleRL-Zoo README (github.com/hkust-nlp/simpleRL-reason, 'Main Results')"
# The presets the GRPO-λ paper's numbers may speak for: which trace style and variant its headline numbers use is
# not stated in the text we could read.
GRPO_LAMBDA_METHODS = ("grpo_lambda", "grpo_lambda_both", "grpo_lambda_eps_weight", "grpo_lambda_both_eps_weight")


@dataclass(frozen=True)
class PublishedDelta:
    """A published average improvement of ``algos`` over ``baseline``, in ``paper``'s regime."""

    paper: str  # the regime (PAPER) the number was measured in
    algos: tuple[str, ...]  # the presets it speaks for
    baseline: str
    model: str | None  # a model tag (verl_lambda.reproduce.launch.model_tag); None: every model of the regime
    text: str  # the value as the paper states it
    benchmarks: str
    source: str

    @property
    def algo(self) -> str:
        return self.algos[0]


_LAMBDA_GRPO_BENCHMARKS = "8 benchmarks (4 named: GSM8K, MATH500, AIME24, Minerva)"
_GRPO_LAMBDA_BENCHMARKS = "AIME24, MATH500, OlympiadBench, Minerva, AMC"
PUBLISHED_DELTAS: tuple[PublishedDelta, ...] = (
    PublishedDelta(LAMBDA_GRPO, ("lambda_grpo",), "grpo", "qwen2.5-1.5b", "+1.9", _LAMBDA_GRPO_BENCHMARKS,
                   LAMBDA_GRPO_ABSTRACT),
    PublishedDelta(LAMBDA_GRPO, ("lambda_grpo",), "grpo", "qwen2.5-3b", "+1.0", _LAMBDA_GRPO_BENCHMARKS,
                   LAMBDA_GRPO_ABSTRACT),
    PublishedDelta(LAMBDA_GRPO, ("lambda_grpo",), "grpo", "qwen2.5-7b", "+1.7", _LAMBDA_GRPO_BENCHMARKS,
                   LAMBDA_GRPO_ABSTRACT),
    PublishedDelta(LAMBDA_GRPO, ("lambda_grpo",), "dapo_token_mean", None, "a gain (size not stated)",
                   _LAMBDA_GRPO_BENCHMARKS, LAMBDA_GRPO_ABSTRACT),
    PublishedDelta(GRPO_LAMBDA, GRPO_LAMBDA_METHODS, "grpo", None, "> +3 (average over its models)",
                   _GRPO_LAMBDA_BENCHMARKS, GRPO_LAMBDA_ABSTRACT),
    PublishedDelta(GRPO_LAMBDA, GRPO_LAMBDA_METHODS, "grpo", "deepseek-r1-distill-qwen-7b", "+4.5 (7B)",
                   _GRPO_LAMBDA_BENCHMARKS, GRPO_LAMBDA_ABSTRACT),
)  # fmt: skip
PAPER_TITLES = {name: r.title for name, r in REGIMES.items()}

# SimpleRL-Zoo's table, in %: GSM8K, MATH500, Minerva, OlympiadBench, AIME24 (pass@1), AIME24 (avg@32), AMC23, Avg.
# "For AIME24 (Pass@1) and other benchmarks, baselines use greedy decoding, and models with 'zero RL training' use
# temperature=1 and top-p=0.95 ... Average scores are based on AIME (Avg@1) and other benchmarks." (its README)
SIMPLERL_ZOO_COLUMNS = ("gsm8k", "math500", "minerva", "olympiadbench", "aime24", "aime24@32", "amc23", "avg")
SIMPLERL_ZOO_ROWS: dict[str, dict[str, tuple[float, ...]]] = {
    "qwen2.5-0.5b": {
        "base": (36.7, 15.8, 4.8, 2.8, 0.0, 0.3, 12.5, 12.1),
        "zero-RL": (49.5, 34.4, 10.3, 8.9, 0.0, 0.7, 22.5, 20.9),
    },
    "qwen2.5-1.5b": {
        "base": (55.7, 29.6, 6.6, 6.5, 0.0, 0.1, 12.5, 18.5),
        "zero-RL": (74.4, 59.0, 20.2, 21.0, 6.7, 4.2, 35.0, 36.1),
    },
    "qwen2.5-7b": {
        "base": (88.2, 64.6, 25.7, 30.1, 3.3, 0.3, 30.0, 40.3),
        "zero-RL": (91.7, 78.2, 38.6, 40.4, 20.0, 15.6, 62.5, 55.2),
    },
    "qwen2.5-math-7b": {
        "base": (65.5, 63.6, 12.5, 25.8, 13.3, 8.6, 42.5, 37.2),
        "zero-RL": (90.2, 80.2, 37.5, 39.0, 40.0, 24.0, 70.0, 59.5),
    },
    "qwen2.5-14b": {
        "base": (91.6, 65.4, 24.3, 33.5, 6.7, 3.4, 37.5, 43.2),
        "zero-RL": (94.4, 80.2, 40.4, 44.9, 23.3, 14.2, 57.6, 56.8),
    },
    "qwen2.5-32b": {
        "base": (92.9, 68.6, 27.9, 31.1, 10.0, 4.5, 45.0, 45.9),
        "zero-RL": (95.9, 82.4, 42.6, 46.4, 36.7, 27.2, 67.5, 61.9),
    },
    "llama-3.1-8b": {
        "base": (39.7, 13.6, 4.8, 3.1, 0.0, 0.2, 2.5, 10.6),
        "zero-RL": (79.2, 23.0, 9.6, 5.3, 0.0, 0.2, 15.0, 22.0),
    },
}


def deltas_for(algo: str, baseline: str, model: str | None = None) -> list[PublishedDelta]:
    """The published improvements of ``algo`` over ``baseline`` (for ``model``, a model tag, when given)."""
    return [
        d
        for d in PUBLISHED_DELTAS
        if algo in d.algos and d.baseline == baseline and (model is None or d.model in (None, model))
    ]


def regime_models(paper: str) -> set[str]:
    """The model tags of ``paper``'s regime."""
    from verl_lambda.reproduce.launch import model_tag

    return {model_tag(choice.model) for choice in REGIMES[paper].sizes.values()}


def simplerl_zoo_rows(model: str) -> dict[str, dict[str, float]]:
    """SimpleRL-Zoo's rows for ``model`` (a model tag): ``{"base" | "zero-RL": {column: value in %}}``."""
    rows = SIMPLERL_ZOO_ROWS.get(model, {})
    return {kind: dict(zip(SIMPLERL_ZOO_COLUMNS, row, strict=True)) for kind, row in rows.items()}
