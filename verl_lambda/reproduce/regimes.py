r"""Each paper's own regime (``PAPER=lambda_grpo`` or ``PAPER=grpo_lambda`` in the launchers), and the settings
table that says, for every setting a run depends on, what each paper states, what we run and where that comes from.

    python -m verl_lambda.reproduce.regimes              # the settings table (Markdown)
    python -m verl_lambda.reproduce.pages --write-docs   # rewrite the generated blocks of docs/reproduce/*.md

The launchers (:mod:`verl_lambda.reproduce.launch`) take every paper-dependent value from :data:`REGIMES`, and the
table (:func:`settings_table`) is rendered from the same objects; ``tests/test_regimes.py`` composes each regime's
launches and checks that every value the table states for a config key is the value verl receives, and that the
committed ``docs/reproduce/settings.md`` is the rendered table. Neither paper's full text could be read: what a
paper states comes from its abstract and the public ICLR 2026 reviews of it (R1-R4: reviewer 1-4), collected with
their sources in the project's research notes; "not stated" means no source we found states it.

Layer 7 (applications).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from verl_lambda.config import GRPOLambdaConfig, LambdaGRPOConfig
from verl_lambda.presets import PRESETS

LAMBDA_GRPO, GRPO_LAMBDA = "lambda_grpo", "grpo_lambda"
DEFAULT_PAPER = LAMBDA_GRPO

VERL_RECIPE = "verl recipe (examples/grpo_trainer/run_qwen2-7b_math.sh, verl <= 0.5; run_qwen3_8b_fsdp.sh, verl 0.9)"
SIMPLERL_ZOO = "SimpleRL-Zoo (Zeng et al. 2025, arXiv 2503.18892; its README's commands)"
VERL_DEFAULT = "verl 0.9.1's default (verl/trainer/config)"
R1_USAGE = (
    "DeepSeek-R1's README, 'Usage Recommendations' (no system prompt; 'Please reason step by step, and put your final"
    " answer within \\boxed{}'; temperature 0.6, top-p 0.95, also the generation_config.json of"
    " deepseek-ai/DeepSeek-R1-Distill-Qwen-7B)"
)


@dataclass(frozen=True)
class ModelChoice:
    """The model of one size of a regime, and what that size's launch changes with it."""

    model: str
    rollout_tp: int  # vLLM tensor parallelism (TP 2 for 7B: verl recipe; one GPU holds a <= 3B model)
    max_response_length: int  # training (and training-time validation) response cap
    prompt: str  # key of verl_lambda.reproduce.datasets.PROMPTS
    source: str  # where the model and the cap come from


@dataclass(frozen=True)
class Regime:
    """One paper's experimental regime as far as its sources state it; the rest is ours, with its source."""

    paper: str  # the PAPER value
    title: str
    sizes: dict[str, ModelChoice]
    algos: tuple[str, ...]  # the paper's comparison (presets); the first is the default ALGO
    baseline: str  # the preset every method is compared with
    train_set: str  # key of datasets.TRAIN_SETS
    benchmarks: tuple[str, ...]  # keys of datasets.EVAL_SPECS
    eval_max_response_length: int  # eval_ckpt.sh
    eval_temperature: float
    eval_top_p: float
    # Neither paper states these (see SETTINGS for the sources of our values); the same in both regimes.
    train_batch_size: int = 1024
    ppo_mini_batch_size: int = 256
    rollout_n: int = 8
    actor_lr: float = 1e-6
    kl_loss_coef: float = 0.001
    kl_loss_type: str = "low_var_kl"
    entropy_coeff: float = 0.0
    total_steps: int = 100
    max_prompt_length: int = 1024
    eval_n_small: int = 32  # samples per problem on AIME24 and AMC23
    eval_n_large: int = 4  # on the other benchmarks
    notes: tuple[str, ...] = field(default=())

    @property
    def default_algo(self) -> str:
        return self.algos[0]

    @property
    def updates_per_step(self) -> int:
        """Actor (and λ) optimizer steps per training step: mini-batches per batch, ppo_epochs = 1."""
        return self.train_batch_size // self.ppo_mini_batch_size


REGIMES: dict[str, Regime] = {
    LAMBDA_GRPO: Regime(
        paper=LAMBDA_GRPO,
        title="λ-GRPO (arXiv 2510.06870)",
        sizes={
            # Qwen2.5 1.5B/3B/7B: abstract. Base models: R3 reports the paper's pre-RL Qwen2.5-1.5B at GSM8K 8.5 and
            # MATH 1.8, far below the instruct models, and the paper cites SimpleRL-Zoo (zero RL from base models).
            "1.5b": ModelChoice("Qwen/Qwen2.5-1.5B", 1, 4096, "qwen_boxed", "abstract (size); base: R3"),
            "3b": ModelChoice("Qwen/Qwen2.5-3B", 1, 4096, "qwen_boxed", "abstract (size); base: R3"),
            "7b": ModelChoice("Qwen/Qwen2.5-7B", 2, 8192, "qwen_boxed", "abstract (size); base: R3"),
        },
        algos=("lambda_grpo", "grpo", "dapo_token_mean"),
        baseline="grpo",
        train_set="math",
        benchmarks=("gsm8k", "math500", "minerva", "olympiadbench", "aime24", "amc23"),
        eval_max_response_length=16384,
        eval_temperature=1.0,
        eval_top_p=0.95,
    ),
    GRPO_LAMBDA: Regime(
        paper=GRPO_LAMBDA,
        title="GRPO-λ (arXiv 2510.00194)",
        sizes={
            "1.5b": ModelChoice("Qwen/Qwen2.5-Math-1.5B-Instruct", 1, 256, "qwen_boxed", "R1 (model, cap 256)"),
            # Not stated: a ~3B model, LLaMA-3.1 architecture (abstract: LLaMA-3.1 and Qwen-2.5 across 1.5B-7B; R1
            # mentions 1.5B/3B at cap 256). Llama-3.2-3B-Instruct is the Llama 3 family's 3B (gated on the Hub).
            "3b": ModelChoice(
                "meta-llama/Llama-3.2-3B-Instruct", 1, 256, "qwen_boxed", "not stated (ours, see table); cap: R1"
            ),
            "7b": ModelChoice("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 2, 768, "r1_boxed", "R1 (model, cap 768)"),
        },
        algos=(
            "grpo_lambda",
            "grpo_lambda_both",
            "grpo_lambda_eps_weight",
            "grpo_lambda_both_eps_weight",
            "grpo",
            "grpo_clamp",
            "grpo_lambda_noclamp",
        ),
        baseline="grpo",
        train_set="gsm8k_math",
        benchmarks=("math500", "minerva", "olympiadbench", "aime24", "amc23"),
        eval_max_response_length=3072,
        eval_temperature=0.6,
        eval_top_p=0.95,
    ),
}
PAPERS = tuple(REGIMES)

# λ-GRPO's options in the launchers: the plugin's defaults with the recommended bounds (the paper publishes none of
# λ's optimizer settings). Bounds: beyond |λ| = 5 one response soon holds most of its group's weight
# (actor/lambda_grpo/max_weight_share; scripts/weight_share.py) and dλ vanishes, so λ could no longer come back.
LAUNCH_LAMBDA_GRPO = replace(LambdaGRPOConfig(), min=-5.0, max=5.0)
LAUNCH_GRPO_LAMBDA = GRPOLambdaConfig()


def regime(paper: str) -> Regime:
    if paper not in REGIMES:
        raise ValueError(f"PAPER must be one of {list(REGIMES)}, got {paper!r}")
    return REGIMES[paper]


# --------------------------------------------------------------------------------------------------------------
# The settings table
# --------------------------------------------------------------------------------------------------------------

Expected = Callable[[Regime, str], dict[str, Any]]  # (regime, size) -> {config key: value the launch must give}


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    lambda_grpo: str  # what the λ-GRPO paper states
    grpo_lambda: str  # what the GRPO-λ paper states
    ours: str  # what our presets run
    source: str  # where our value comes from
    expected: Expected | None = None  # the config values the launches must have (tests/test_regimes.py)


def _per_size(attribute: str, paper: str) -> str:
    sizes = REGIMES[paper].sizes
    values = [str(getattr(sizes[s], attribute)) for s in ("1.5b", "3b", "7b")]
    return " / ".join(values) if len(set(values)) > 1 else values[0]


def _both(text: Callable[[Regime], Any]) -> str:
    a, b = (str(text(REGIMES[p])) for p in PAPERS)
    return a if a == b else f"λ-GRPO: {a}; GRPO-λ: {b}"


_L, _G = REGIMES[LAMBDA_GRPO], REGIMES[GRPO_LAMBDA]
_LG, _GL = LAUNCH_LAMBDA_GRPO, LAUNCH_GRPO_LAMBDA
_A = "actor_rollout_ref.actor"
_R = "actor_rollout_ref.rollout"


def _sci(value: float) -> str:
    mantissa, exponent = f"{value:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def _models(paper: str) -> str:
    return " / ".join(f"`{REGIMES[paper].sizes[s].model}`" for s in ("1.5b", "3b", "7b"))


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model (1.5B / 3B / 7B)",
        "Qwen2.5 1.5B, 3B, 7B (abstract); base models (R3: pre-RL Qwen2.5-1.5B at GSM8K 8.5, MATH 1.8; R1: 'Qwen2.5"
        " (1.5B/3B/7B) trained with rule-based reward')",
        "four backbones, LLaMA-3.1 and Qwen-2.5 architectures, 1.5B-7B (abstract); three R1-distilled, among them"
        " DeepSeek-R1-Distill-Qwen-7B and Qwen2.5-Math-1.5B-Instruct (R1); the 3B is not named",
        f"λ-GRPO: {_models(LAMBDA_GRPO)}; GRPO-λ: {_models(GRPO_LAMBDA)}",
        "λ-GRPO: the paper. GRPO-λ: the paper (R1) for 1.5B and 7B; 3B not stated, ours: Llama-3.2-3B-Instruct, the"
        " 3B of the Llama 3 family (LLaMA-3.1 architecture, as the abstract names; whether the paper's 3B was"
        " R1-distilled is unknown; gated on the Hub). The fourth backbone is likely DeepSeek-R1-Distill-Qwen-1.5B"
        " (research notes' inference): `MODEL_PATH` runs it",
        lambda r, s: {"actor_rollout_ref.model.path": r.sizes[s].model},
    ),
    Setting(
        "training data",
        "not stated",
        "'4 different math reasoning datasets' (abstract); names not stated",
        f"λ-GRPO: `{_L.train_set}` (MATH train, 7,500); GRPO-λ: `{_G.train_set}` (GSM8K train + MATH train)",
        "not stated; ours. λ-GRPO: MATH's training split, verl's MATH source, disjoint from MATH500. GRPO-λ: verl"
        " recipe's data, two maths sets whose GSM8K solutions fit a 256-token cap",
        lambda r, s: {"data.train_files": f"{r.train_set}.parquet"},
    ),
    Setting(
        "prompt template",
        "not stated",
        "not stated",
        f"λ-GRPO: `{_per_size('prompt', LAMBDA_GRPO)}`; GRPO-λ: `{_per_size('prompt', GRPO_LAMBDA)}` (1.5B / 3B / 7B)",
        "not stated; ours. `qwen_boxed`: Qwen2.5-Math's qwen-boxed evaluation template, SimpleRL-Zoo's prompt for"
        f" Qwen2.5. `r1_boxed` for the R1-distilled 7B: {R1_USAGE}",
    ),
    Setting(
        "advantage estimator and loss aggregation",
        "GRPO's group-normalised advantage; λ-GRPO weights the aggregation (its DAPO: token-mean)",
        "GRPO's group-normalised advantage, negatives clamped (critic-free λ-return)",
        "`grpo` advantage, divided by the group's std; aggregation `seq-mean-token-mean` (GRPO), `token-mean` (both"
        " DAPO presets), `lambda_grpo` (λ-GRPO)",
        f"GRPO's paper (arXiv 2402.03300) and DAPO's (arXiv 2503.14476); std normalisation: {VERL_DEFAULT}",
        lambda r, s: {"algorithm.adv_estimator": "grpo", "algorithm.norm_adv_by_std_in_grpo": True},
    ),
    Setting(
        "max prompt length",
        "not stated",
        "not stated",
        _both(lambda r: r.max_prompt_length),
        f"not stated; {VERL_RECIPE}",
        lambda r, s: {"data.max_prompt_length": r.max_prompt_length},
    ),
    Setting(
        "max response length (training)",
        "not stated",
        "256 (1.5B, 3B), 768 (7B) (R1)",
        f"λ-GRPO: {_per_size('max_response_length', LAMBDA_GRPO)};"
        f" GRPO-λ: {_per_size('max_response_length', GRPO_LAMBDA)} (1.5B / 3B / 7B)",
        f"λ-GRPO: not stated; {SIMPLERL_ZOO} (8192 for Qwen2.5-7B), at least 4096 so that the cap does not truncate the"
        " lengths λ-GRPO acts on. GRPO-λ: the paper (R1)",
        lambda r, s: {"data.max_response_length": r.sizes[s].max_response_length},
    ),
    Setting(
        "responses per prompt (group size n)",
        "not stated (grpo-composer's 4 is that repository's choice)",
        "not stated",
        _both(lambda r: r.rollout_n),
        f"not stated; {SIMPLERL_ZOO} (DAPO: 16; verl recipe: 5, too few for within-group length statistics)",
        lambda r, s: {f"{_R}.n": r.rollout_n},
    ),
    Setting(
        "prompts per step / PPO mini-batch / epochs",
        "not stated",
        "not stated",
        _both(lambda r: f"{r.train_batch_size} / {r.ppo_mini_batch_size} / 1 ({r.updates_per_step} updates per step)"),
        f"not stated; {VERL_RECIPE}; SimpleRL-Zoo also uses 1024 prompts per step; ppo_epochs: {VERL_DEFAULT}",
        lambda r, s: {
            "data.train_batch_size": r.train_batch_size,
            f"{_A}.ppo_mini_batch_size": r.ppo_mini_batch_size,
            f"{_A}.ppo_epochs": 1,
        },
    ),
    Setting(
        "actor optimizer, learning rate and schedule",
        "not stated",
        "not stated",
        _both(lambda r: f"AdamW, lr {_sci(r.actor_lr)}, constant, no warm-up, weight decay 0.01, gradient clip 1.0"),
        f"not stated; lr: {VERL_RECIPE}; optimizer, schedule, weight decay, clip: {VERL_DEFAULT}",
        lambda r, s: {
            f"{_A}.optim.lr": r.actor_lr,
            f"{_A}.optim.lr_scheduler_type": "constant",
            f"{_A}.optim.lr_warmup_steps_ratio": 0.0,
            f"{_A}.optim.weight_decay": 0.01,
            f"{_A}.optim.clip_grad": 1.0,
        },
    ),
    Setting(
        "KL regularisation",
        "not stated (grpo-composer's 0.01 is labelled 'paper doesn't specify')",
        "not stated; GRPO-λ ends further from the reference policy (limitations)",
        _both(
            lambda r: (
                f"KL loss `{r.kl_loss_type}`, coefficient {r.kl_loss_coef:g}; none in the reward;"
                " `dapo_clip_higher`: off"
            )
        ),
        f"not stated; {VERL_RECIPE} (SimpleRL-Zoo: 1e-4 for <= 14B); DAPO's paper (no KL)",
        lambda r, s: {
            f"{_A}.use_kl_loss": True,
            f"{_A}.kl_loss_coef": r.kl_loss_coef,
            f"{_A}.kl_loss_type": r.kl_loss_type,
            "algorithm.use_kl_in_reward": False,
        },
    ),
    Setting(
        "entropy bonus",
        "not stated (entropy is analysed: λ-GRPO keeps it higher than DAPO)",
        "not stated",
        _both(lambda r: f"{r.entropy_coeff:g}"),
        f"not stated; {VERL_RECIPE} (SimpleRL-Zoo: 0.001)",
        lambda r, s: {f"{_A}.entropy_coeff": r.entropy_coeff},
    ),
    Setting(
        "clip ratios",
        "not stated; its DAPO has no clip-higher (R2, R3)",
        "not stated (clip ε not found)",
        "0.2 / 0.2, dual-clip c = 3; `dapo_clip_higher`: 0.2 / 0.28",
        f"not stated; {VERL_DEFAULT} (GRPO's); clip-higher: DAPO's paper",
        lambda r, s: {f"{_A}.clip_ratio_low": 0.2, f"{_A}.clip_ratio_high": 0.2, f"{_A}.clip_ratio_c": 3.0},
    ),
    Setting(
        "rollout sampling (training)",
        "not stated",
        "not stated",
        "temperature 1.0, top-p 1.0, top-k off",
        f"not stated; {VERL_DEFAULT}",
        lambda r, s: {f"{_R}.temperature": 1.0, f"{_R}.top_p": 1.0, f"{_R}.top_k": -1},
    ),
    Setting(
        "training steps",
        "not stated",
        "not stated",
        _both(lambda r: f"{r.total_steps} (a step budget, not epochs)"),
        f"not stated; {SIMPLERL_ZOO} trains about 100 steps",
        lambda r, s: {"trainer.total_training_steps": r.total_steps},
    ),
    Setting(
        "training-time validation",
        "not stated",
        "not stated",
        "every 10 steps, at step 0 and the last step; greedy, one sample, at the training cap",
        f"not stated; ours (the reported numbers come from eval_ckpt.sh); decoding: {VERL_DEFAULT}",
        lambda r, s: {"trainer.test_freq": 10, "trainer.val_before_train": True, f"{_R}.val_kwargs.do_sample": False},
    ),
    Setting(
        "λ-GRPO: r, base",
        "r = 1/9; a small set of r explored (arxivlens); base not stated",
        "—",
        f"r = 1/9; base `{_LG.base}`",
        "r: the paper (design notes, ALGORITHMS.md §1). Base: our reading (a review calls the paper's DAPO"
        " 'equivalent to fixing λ at 1', which fits weights on GRPO's per-response mean; ALGORITHMS.md §2)",
        lambda r, s: {f"{_A}.lambda_grpo.r": _LG.r, f"{_A}.lambda_grpo.base": _LG.base},
    ),
    Setting(
        "λ-GRPO: λ's init, optimizer, learning rate, bounds, signal",
        "λ learnable, a single global scalar (R2, R4); 'optimized using validation data' (summary); init, optimizer,"
        " lr and bounds not stated (no λ-lr sensitivity study, R2)",
        "—",
        f"init {_LG.init:g}, {_LG.optimizer}, lr {_LG.lr:g} (`LAMBDA_LR`), bounds [{_LG.min:g}, {_LG.max:g}]"
        f" (`LAMBDA_MIN`, `LAMBDA_MAX`), signal `{_LG.signal}` (`lambda_grpo_validation`: held-out groups)",
        "not stated; ours: the plugin's defaults (λ = 0 starts as GRPO); bounds: the plugin's recommendation from"
        " the max_weight_share measurement (scripts/weight_share.py). Choosing the lr: choosing-lambda-lr.md",
        lambda r, s: {
            f"{_A}.lambda_grpo.init": _LG.init,
            f"{_A}.lambda_grpo.optimizer": _LG.optimizer,
            f"{_A}.lambda_grpo.lr": _LG.lr,
            f"{_A}.lambda_grpo.min": _LG.min,
            f"{_A}.lambda_grpo.max": _LG.max,
            f"{_A}.lambda_grpo.signal": _LG.signal,
        },
    ),
    Setting(
        "GRPO-λ: λ, γ (κ = γλ)",
        "—",
        "λ = 0.99, chosen empirically (R4); γ not stated",
        f"λ = {_GL.lam:g}, γ = {_GL.gamma:g}, κ = {_GL.decay:g}; `grpo_clamp`: λ = 0",
        "λ: the paper (R4). γ: not stated; ours 1.0, the natural choice for single-turn RLVR (the CS336"
        " reproduction uses it with λ = 0.99)",
        lambda r, s: {f"{_A}.policy_loss.grpo_lambda.lam": _GL.lam, f"{_A}.policy_loss.grpo_lambda.gamma": _GL.gamma},
    ),
    Setting(
        "GRPO-λ: trace style and variant",
        "—",
        "trace styles `recent` and `both`, 'both' outperforming 'recent' (R2); an ε-trace and an ε-weight variant"
        " (design notes)",
        "`recent` / `both` × ε-trace / ε-weight: `grpo_lambda`, `grpo_lambda_both`, `grpo_lambda_eps_weight`,"
        " `grpo_lambda_both_eps_weight`",
        "styles: the paper (R2). Variants: ε-trace clips the traced ratio (the paper's loss as the design notes"
        " reconstruct it, ALGORITHMS.md §4); ε-weight's form is our reading (ibid.). Which style and variant the"
        " paper's headline numbers use is not stated",
    ),
    Setting(
        "GRPO-λ: negative-advantage clamp",
        "—",
        "-0.1, fixed, no sensitivity study (R2); needed for stability (limitations)",
        f"{_GL.neg_adv_clamp:g}; `grpo_lambda_noclamp`: none; `grpo_clamp`: GRPO with the clamp",
        "the paper (R2); the two switches are ours, to separate the clamp from the trace",
        lambda r, s: {f"{_A}.policy_loss.grpo_lambda.neg_adv_clamp": _GL.neg_adv_clamp},
    ),
    Setting(
        "reward and answer checker",
        "rule-based reward (R1)",
        "not stated",
        "1 for a correct last `\\boxed{}` answer, else 0: exact numeric comparison, then Math-Verify (`CHECKER=strict`:"
        " verl's MATH normaliser and PRM800K grader); no format reward",
        "not stated; ours (README, 'Answer checking')",
        lambda r, s: {
            "reward.custom_reward_function.path": "pkg://verl_lambda.reproduce.reward",
            "reward.custom_reward_function.reward_kwargs.checker": "math_verify",
        },
    ),
    Setting(
        "benchmarks",
        "8 maths benchmarks (figure caption); GSM8K, MATH500, AIME24, Minerva named (R3, third-party listing);"
        " the other 4 not found",
        "AIME24, MATH500, OlympiadBench ('OlympiadMath'), Minerva, AMC (abstract; AMC's year not stated)",
        f"λ-GRPO: {_names(_L.benchmarks)}; GRPO-λ: {_names(_G.benchmarks)}",
        "λ-GRPO: the 4 named, plus OlympiadBench and AMC23 (inferred, research notes; SimpleRL-Zoo's six): an"
        " average of 6, not the paper's 8. GRPO-λ: the paper; AMC is assumed to be AMC23 (40 problems)",
        lambda r, s: {"data.val_files": [f"{b}.parquet" for b in r.benchmarks]},
    ),
    Setting(
        "evaluation sampling",
        "not stated",
        "not stated; responses up to about 3k tokens (Figs. 12-15, R1)",
        "λ-GRPO: temperature 1.0, top-p 0.95, 16,384 tokens; GRPO-λ: temperature 0.6, top-p 0.95, 3,072 tokens;"
        " both: avg@32 on AIME24 and AMC23, avg@4 on the others",
        f"not stated. λ-GRPO: the evaluation of zero-RL models in {SIMPLERL_ZOO}. GRPO-λ: length, the paper (about"
        f" 3k); sampling: {R1_USAGE}. Sample counts: ours (the small benchmarks' noise)",
    ),
    Setting(
        "baselines",
        "GRPO; 'DAPO' with token-mean aggregation only (R2, R3: no clip-higher); Dr.GRPO omitted",
        "GRPO",
        f"λ-GRPO: {_names(_L.algos[1:])}; GRPO-λ: {_names(_G.algos[4:])} (GRPO and the clamp switches)",
        "the papers; `grpo_clamp` and `grpo_lambda_noclamp` are ours, to tell the trace's effect from the clamp's",
    ),
    Setting(
        "seeds",
        "one run per setting (R2: no multi-seed intervals)",
        "no significance tests (R2)",
        "3 seeds per row (`SEED`): data order, rollout sampling and mini-batch shuffling; paired bootstrap"
        " intervals against GRPO",
        "ours (README, 'The table')",
        lambda r, s: {"data.seed": 1, f"{_R}.seed": 1000, f"{_A}.data_loader_seed": 1},
    ),
    Setting(
        "framework and hardware",
        "not stated",
        "not stated",
        "verl 0.9.1 hybrid engine (vLLM rollout, FSDP actor); 1 node × 8 GPUs; vLLM TP 2 for 7B, 1 for ≤ 3B",
        f"not stated; {VERL_RECIPE}",
        lambda r, s: {
            f"{_R}.name": "vllm",
            f"{_R}.tensor_model_parallel_size": r.sizes[s].rollout_tp,
            "trainer.n_gpus_per_node": 8,
        },
    ),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    """The settings table, Markdown."""
    lines = [
        "| setting | λ-GRPO paper | GRPO-λ paper | our preset | source |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        lines.append(
            "| " + " | ".join(_cell(c) for c in (s.name, s.lambda_grpo, s.grpo_lambda, s.ours, s.source)) + " |"
        )
    return "\n".join(lines)


def regimes_table() -> str:
    """The two regimes side by side: what ``PAPER=`` selects."""
    rows = [("", *(f"`PAPER={p}`" for p in PAPERS))]
    for size in ("1.5b", "3b", "7b"):
        rows.append(
            (
                f"model, cap ({size.upper()})",
                *(f"`{r.sizes[size].model}`, {r.sizes[size].max_response_length}" for r in REGIMES.values()),
            )
        )
    rows += [
        (
            "prompt (1.5B / 3B / 7B)",
            *(" / ".join(r.sizes[s].prompt for s in ("1.5b", "3b", "7b")) for r in REGIMES.values()),
        ),
        ("training set", *(f"`{r.train_set}`" for r in REGIMES.values())),
        ("`ALGO` (first: default)", *(_names(r.algos) for r in REGIMES.values())),
        ("benchmarks", *(_names(r.benchmarks) for r in REGIMES.values())),
        (
            "evaluation (`eval_ckpt.sh`)",
            *(
                f"temperature {r.eval_temperature}, top-p {r.eval_top_p}, {r.eval_max_response_length} tokens,"
                f" avg@{r.eval_n_small} / avg@{r.eval_n_large}"
                for r in REGIMES.values()
            ),
        ),
    ]
    lines = ["| " + " | ".join(rows[0]) + " |", "|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def presets_table() -> str:
    lines = ["| `ALGO` | title | what it is | source | in the regime of |", "|---|---|---|---|---|"]
    from verl_lambda.presets import ALIASES

    for p in PRESETS.values():
        aliases = [a for a, t in ALIASES.items() if t == p.name]
        name = f"`{p.name}`" + (f" (alias `{'`, `'.join(aliases)}`)" if aliases else "")
        papers = [f"`{r.paper}`" for r in REGIMES.values() if p.name in r.algos] or ["—"]
        lines.append(
            "| " + " | ".join(_cell(c) for c in (name, p.title, p.description, p.source, ", ".join(papers))) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    print(settings_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
