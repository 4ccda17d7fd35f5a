r"""The reproduction's launches: one method trained on one model (``scripts/run_qwen*.sh``) and a trained checkpoint
evaluated as papers report (``scripts/eval_ckpt.sh``), both as ``python -m verl.trainer.main_ppo`` runs of verl's
hybrid engine (vLLM rollout, FSDP actor).

    python -m verl_lambda.reproduce.launch train --size 7b [hydra overrides ...]
    python -m verl_lambda.reproduce.launch eval RUN_DIR|CHECKPOINT|HF_MODEL [hydra overrides ...]

Settings come from environment variables (:data:`TRAIN_VARIABLES`, :data:`EVAL_VARIABLES`); extra arguments are
hydra overrides appended last (they win). ``PAPER`` selects a paper's regime (:mod:`verl_lambda.reproduce.regimes`:
its models, response caps, prompt, training set, benchmarks, evaluation decoding and the methods it compares):
``lambda_grpo`` (default) or ``grpo_lambda``. Every value that is not the method itself is listed once below or in
the regime with its source; ``docs/reproduce/settings.md`` is the table of all of them. "verl recipe" is verl's
standard GRPO maths example, ``examples/grpo_trainer/run_qwen2-7b_math.sh`` (verl <= 0.5) and its successor
``run_qwen3_8b_fsdp.sh`` (verl 0.9); "SimpleRL-Zoo" is the zero-RL study of base models (Zeng et al. 2025, arXiv
2503.18892) as its README (github.com/hkust-nlp/simpleRL-reason) states its commands.

Every option of both methods is written into the config (``actor.lambda_grpo.*`` and
``actor.policy_loss.grpo_lambda.*``, defaults included), so the config verl runs, the dry run's YAML, the run's
``resolved_config.yaml`` and ``run.json`` all carry them; a ``+key=value`` override of one of them is applied as
``++key=value``.

A launch is computed by a pure function (:func:`train_launch`, :func:`eval_launch`) into a :class:`Launch`: the
overrides, the extra environment, the output folder, what ``run.json`` records and the preparation steps; then
:func:`run` either composes and prints the config (``DRY_RUN=1``, nothing written) or prepares, composes and writes
``resolved_config.yaml`` and ``run.json``, and ``exec``\ s main_ppo. ``CPU=1`` runs the same launch on verl-lambda's
CPU backend with the tiny built-in model.

Layer 7 (applications).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_lambda.config import GRPO_LAMBDA_KEY, LAMBDA_GRPO_KEY, GRPOLambdaConfig, LambdaGRPOConfig
from verl_lambda.presets import ALIASES, PRESETS, canonical, last_values, method_options
from verl_lambda.presets import overrides as algo_overrides
from verl_lambda.reproduce.datasets import (
    DEFAULT_PROMPT,
    EVAL_SPECS,
    PROMPTS,
    TRAIN_SETS,
    data_overrides,
    eval_files,
    resolve_names,
)
from verl_lambda.reproduce.regimes import (
    DEFAULT_PAPER,
    LAUNCH_GRPO_LAMBDA,
    LAUNCH_LAMBDA_GRPO,
    REGIMES,
    regime,
)
from verl_lambda.reproduce.reward import CHECKERS, DEFAULT_CHECKER

RUN_FILE, EVAL_FILE, CONFIG_FILE = "run.json", "eval.json", "resolved_config.yaml"
TAG = "[verl-lambda]"
SIZES = ("1.5b", "3b", "7b")

TRAIN_VARIABLES: dict[str, str] = {
    "PAPER": f"{DEFAULT_PAPER}: the paper whose regime to run, one of {list(REGIMES)} (docs/reproduce/settings.md)",
    "ALGO": "the paper's method (lambda_grpo | grpo_lambda): a preset of verl_lambda/presets.py; the paper's "
    "comparison: " + "; ".join(f"{p}: {', '.join(r.algos)}" for p, r in REGIMES.items()),
    "SEED": "1; data order (data.seed), rollout sampling and mini-batch shuffling; part of the run name",
    "MODEL_PATH": "the regime's model of the size (PAPER=lambda_grpo: Qwen/Qwen2.5-<size>); names the run",
    "DATA_DIR": "~/data/verl_lambda, the output of examples/prepare_data.py",
    "TRAIN": f"the regime's training set, one of {list(TRAIN_SETS)}",
    "EVAL": "the regime's benchmarks, validated during training, comma-separated (or all)",
    "PROMPT": f"the regime's prompt template of the size, one of {list(PROMPTS)}",
    "CHECKER": f"{DEFAULT_CHECKER}: answer checker that gives the reward and acc, one of {list(CHECKERS)}",
    "ROLLOUT_N": "8: responses per prompt (GRPO's group size)",
    "MAX_RESPONSE_LENGTH": "the regime's cap: 4096 / 4096 / 8192 (lambda_grpo), 256 / 256 / 768 (grpo_lambda)",
    "TOTAL_STEPS": "100: training steps (a fixed budget, whatever the training set's size)",
    "LAMBDA_LR": f"{LAUNCH_LAMBDA_GRPO.lr}: λ-GRPO's learning rate of λ (docs/reproduce/choosing-lambda-lr.md)",
    "LAMBDA_INIT": f"{LAUNCH_LAMBDA_GRPO.init}: λ-GRPO's initial λ (0: training starts as GRPO)",
    "LAMBDA_MIN, LAMBDA_MAX": f"{LAUNCH_LAMBDA_GRPO.min}, {LAUNCH_LAMBDA_GRPO.max}: bounds of λ ('none': unbounded)",
    "TEST_FREQ": "10: validate every TEST_FREQ steps (and at step 0 and the last step)",
    "SAVE_FREQ": "20: checkpoint every SAVE_FREQ steps (and the last step)",
    "KEEP_CKPTS": "2: actor checkpoints kept (older ones are deleted)",
    "VAL_N": "1: samples per problem in training-time validation (1: greedy; >1: temperature 1.0, avg@VAL_N)",
    "GPUS_PER_NODE": "8",
    "NNODES": "1: nodes of the Ray cluster, started beforehand when > 1",
    "ROLLOUT_TP": "per size: vLLM tensor parallel size (2 for 7B, else 1)",
    "MAX_TOKEN_LEN_PER_GPU": "24576 (or one whole sequence if longer): tokens per GPU micro-batch (memory only)",
    "PROJECT": "verl_lambda_reproduce: W&B project",
    "EXPERIMENT": "<model>-<ALGO>-<TRAIN>[-<PROMPT>][-lam<option><value>...][-paper_<PAPER>]-s<SEED>: run name, "
    "W&B name (the prompt when not the regime's, λ's LAMBDA_* when not the defaults, the paper when not lambda_grpo)",
    "OUT_DIR": "$OUT_ROOT/<EXPERIMENT> (OUT_ROOT: outputs/): checkpoints, metrics, dumps; shared on clusters",
    "LOGGER": "[console,file] plus wandb unless WANDB=off",
    "WANDB": "auto: online when logged in (WANDB_API_KEY or ~/.netrc), else offline into OUT_DIR/wandb; or off",
    "DRY_RUN": "1: compose and validate the config as main_ppo would, print it, launch nothing",
    "CPU": "1: the same launch on CPU with the tiny built-in model and the fixture rows, STEPS steps (default 2)",
    "PYTHON": "interpreter (the scripts default to .venv/bin/python when it exists, else python3)",
}

EVAL_VARIABLES: dict[str, str] = {
    "PAPER": "the run's (run.json), else lambda_grpo: the regime whose evaluation defaults apply",
    "STEP": "the checkpoint step to evaluate when given a run folder (default: the latest)",
    "EVAL": "the run's benchmarks, else the regime's",
    "SMALL": "aime24,amc23: the small benchmarks, sampled N_SMALL times per problem",
    "N_SMALL": "32: samples per problem on the small benchmarks (avg@32)",
    "N_LARGE": "4: samples per problem on the other benchmarks",
    "GREEDY": "1: greedy decoding, one sample per problem (the base-model rows of SimpleRL-Zoo)",
    "TEMPERATURE, TOP_P": "the regime's: 1.0, 0.95 (lambda_grpo: SimpleRL-Zoo's evaluation); 0.6, 0.95 "
    "(grpo_lambda: DeepSeek-R1's recommendation for its distilled models)",
    "MAX_RESPONSE_LENGTH": "the regime's: 16384 (lambda_grpo: SimpleRL-Zoo's 16,000), 3072 (grpo_lambda: the paper's "
    "~3k)",
    "PROMPT": "the run's (run.json), else the regime's for the model's size (qwen_boxed)",
    "CHECKER": "the run's, else math_verify",
    "EVAL_OUT": "<run>/eval/step<N>-<settings> (a run or checkpoint), else $OUT_ROOT/eval/<model>-<settings>",
    "DATA_DIR, GPUS_PER_NODE, NNODES, ROLLOUT_TP, DRY_RUN, CPU, PYTHON": "as for training",
}

# Environment variables that fix a paper's regime: a run that sets one to another value than the regime's is not in
# that paper's regime (run.json's regime_changes; the report then prints no published gain next to it).
REGIME_VARIABLES = (
    "MODEL_PATH",
    "TRAIN",
    "EVAL",
    "PROMPT",
    "CHECKER",
    "ROLLOUT_N",
    "MAX_RESPONSE_LENGTH",
    "TOTAL_STEPS",
)
# Extra overrides that change neither paper's regime: memory, parallelism, bookkeeping, and λ-GRPO's optimizer
# options (the paper states none of them). Any other extra override is a regime change.
_NEUTRAL_OVERRIDES = re.compile(
    r"^(trainer\.(test_freq|save_freq|max_actor_ckpt_to_keep|logger|project_name|experiment_name|resume_mode|"
    r"default_local_dir|validation_data_dir|n_gpus_per_node|nnodes|log_val_generations)|ray_kwargs\..*|hydra\..*|"
    r".*(max_token_len_per_gpu|micro_batch_size_per_gpu|micro_batch_size|gpu_memory_utilization|"
    r"tensor_model_parallel_size|fsdp_config\..*|use_dynamic_bsz|log_prob_use_dynamic_bsz)|"
    rf"{re.escape(LAMBDA_GRPO_KEY)}\.(init|learnable|optimizer|lr|min|max|grad_clip|signal|validation_share))$"
)


@dataclass
class Launch:
    """One main_ppo launch, computed without side effects."""

    kind: str  # "train" or "eval"
    overrides: list[str]
    env: dict[str, str]  # set for main_ppo on top of the caller's environment
    out_dir: Path
    record: dict[str, Any]  # written to out_dir/run.json (train) or eval.json (eval)
    steps: list[tuple[str, Callable[[], Any]]] = field(default_factory=list)  # preparation, in order


def _env(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "")
    return value if value != "" else default


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _env(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float | None, allow_none: bool = False) -> float | None:
    raw = _env(env, name, "none" if default is None else repr(float(default)))
    if allow_none and raw.lower() in ("none", "null"):
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number{' or none' if allow_none else ''}, got {raw!r}") from None


def model_tag(model_path: str) -> str:
    """The run-name form of a model: its last path component, lower case (``Qwen/Qwen2.5-7B`` -> ``qwen2.5-7b``)."""
    name = Path(model_path.rstrip("/")).name or model_path
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower())


def _absolute(path: str | Path) -> Path:
    return Path(os.path.expanduser(str(path))).absolute()  # Ray workers do not share our working directory


def wandb_mode(env: Mapping[str, str]) -> str:
    """``online``, ``offline`` or ``off`` from ``WANDB`` (``auto``: online only with a login on this machine)."""
    mode = _env(env, "WANDB", "auto")
    if mode not in ("auto", "online", "offline", "off"):
        raise ValueError(f"WANDB must be auto, online, offline or off, got {mode!r}")
    if mode != "auto":
        return mode
    if env.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(env.get("NETRC") or Path(env.get("HOME", str(Path.home()))) / ".netrc")
    try:
        return "online" if "api.wandb.ai" in netrc.read_text() else "offline"
    except OSError:
        return "offline"


def _logging(env: Mapping[str, str], out_dir: Path, default_wandb: bool) -> tuple[list[str], dict[str, str], str]:
    """The logger override, the environment for it, and the W&B mode."""
    mode = wandb_mode(env) if default_wandb else "off"
    loggers = "[console,file]" if mode == "off" else "[console,file,wandb]"
    extra: dict[str, str] = {}
    if mode == "offline":  # runs in verl's task runner, which may be on another node: forward through Ray
        extra = {"WANDB_MODE": "offline", "WANDB_DIR": str(out_dir)}
    overrides = [f"trainer.logger={_env(env, 'LOGGER', loggers)}"]
    overrides += [f"++ray_kwargs.ray_init.runtime_env.env_vars.{k}={v}" for k, v in extra.items()]
    return overrides, extra, mode


def _file_logger(out_dir: Path) -> tuple[list[str], dict[str, str]]:
    metrics = str(out_dir / "metrics.jsonl")
    # verl's file logger runs in the Ray task runner, which may live on another node: pass its path explicitly.
    return [f"++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={metrics}"], {
        "VERL_FILE_LOGGER_PATH": metrics
    }


def _stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def _cpu_backend(env: Mapping[str, str], out_dir: Path, model_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The CPU backend's overrides and environment (verl_lambda.cpu.launch is their one definition)."""
    from verl_lambda.cpu.launch import cpu_backend_overrides, cpu_env

    extra = {k: v for k, v in cpu_env(out_dir).items() if os.environ.get(k) != v}  # what it adds to ours
    return cpu_backend_overrides(model_dir, prompts_per_step=4, n=4), extra


def _build_tiny_model(model_dir: Path) -> None:
    from verl_lambda.toy import build_model

    build_model(model_dir, size="tiny")


def _build_fixture_data(data_dir: Path, train: str, evals: str, prompt: str) -> None:
    from verl_lambda.reproduce.datasets import build

    fixtures = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "reproduce"
    if not fixtures.is_dir():
        raise FileNotFoundError(f"CPU=1 builds its data from the repository's fixture rows: no {fixtures}")
    build(data_dir, train, evals, from_dir=fixtures, prompts=prompt)


# --------------------------------------------------------------------------------------------------------------
# The two methods' options: every one written into the config, and read back from the overrides for the record
# --------------------------------------------------------------------------------------------------------------


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def method_option_overrides(lambda_grpo: LambdaGRPOConfig, grpo_lambda: GRPOLambdaConfig) -> list[str]:
    """``++`` overrides that set every option of both methods (add or override: presets and users may set them)."""
    lines = []
    for key, options in ((LAMBDA_GRPO_KEY, lambda_grpo), (GRPO_LAMBDA_KEY, grpo_lambda)):
        lines += [f"++{key}.{f.name}={_hydra_value(getattr(options, f.name))}" for f in dataclasses.fields(options)]
    return lines


def _forced(extra: Sequence[str], filled: Sequence[str]) -> list[str]:
    """``extra`` with ``+key=value`` turned into ``++key=value`` for the keys the launch already sets."""
    keys = {o.split("=", 1)[0].lstrip("+") for o in filled}
    return [
        f"+{o}" if o.startswith("+") and not o.startswith("++") and o[1:].split("=", 1)[0] in keys else o for o in extra
    ]


def active_methods(algo: str) -> dict[str, bool]:
    """Which of the two methods' option groups the preset ``algo`` uses."""
    overrides = " ".join(algo_overrides(algo))
    return {
        "lambda_grpo": "loss_agg_mode=lambda_grpo" in overrides,
        "grpo_lambda": "policy_loss.loss_mode=grpo_lambda" in overrides,
    }


def options_record(lambda_grpo: LambdaGRPOConfig, grpo_lambda: GRPOLambdaConfig) -> dict[str, dict[str, Any]]:
    return {
        "lambda_grpo": dataclasses.asdict(lambda_grpo),
        "grpo_lambda": {**dataclasses.asdict(grpo_lambda), "kappa": grpo_lambda.decay},
    }


def describe_methods(record: Mapping[str, Any]) -> list[str]:
    """The launch's method options, one line per method, and how far λ can travel: printed at every start."""
    settings = record["settings"]
    options, active = settings["method_options"], settings["method_active"]
    lines = [f"ALGO={settings['algo']} (PAPER={settings['paper']}): {PRESETS[settings['algo']].description}"]
    lg, gl = options["lambda_grpo"], options["grpo_lambda"]
    state = "active" if active["lambda_grpo"] else f"not used by ALGO={settings['algo']}"
    lines.append(
        f"λ-GRPO options ({LAMBDA_GRPO_KEY}, {state}): " + " ".join(f"{k}={_hydra_value(v)}" for k, v in lg.items())
    )
    updates = settings.get("lambda_updates")
    if active["lambda_grpo"] and lg["learnable"] and updates:
        lines.append(
            f"  λ's reach: Adam moves λ by about lr per update, {updates} updates "
            f"({settings['total_steps']} steps x {updates // max(settings['total_steps'], 1)} mini-batches): at most "
            f"about lr x {updates} = {lg['lr'] * updates:g} from init {lg['init']:g}; watch actor/lambda_grpo/lambda, "
            "lambda_grad and max_weight_share (docs/reproduce/choosing-lambda-lr.md)"
        )
    state = "active" if active["grpo_lambda"] else f"not used by ALGO={settings['algo']}"
    lines.append(
        f"GRPO-λ options ({GRPO_LAMBDA_KEY}, {state}): "
        + " ".join(f"{k}={_hydra_value(v)}" for k, v in gl.items() if k != "kappa")
        + f" (κ = gamma x lam = {gl['kappa']:g})"
    )
    if settings.get("regime_changes"):
        lines.append(
            f"not PAPER={settings['paper']}'s regime: changed {', '.join(settings['regime_changes'])} (the report "
            "prints no published gain next to this run)"
        )
    return lines


def _regime_changes(resolved: Mapping[str, str], defaults: Mapping[str, str], extra: Sequence[str]) -> list[str]:
    """The regime-fixing settings this launch changes (``NAME=value``) and its extra overrides that are not neutral."""
    changes = [f"{name}={resolved[name]}" for name in REGIME_VARIABLES if resolved[name] != defaults[name]]
    for override in extra:
        key = override.split("=", 1)[0].lstrip("+~")
        if not _NEUTRAL_OVERRIDES.match(key):
            changes.append(override)
    return changes


def train_launch(size: str, env: Mapping[str, str], extra: Sequence[str] = ()) -> Launch:
    """The training launch of ``scripts/run_qwen<size>.sh`` under ``env`` (see :data:`TRAIN_VARIABLES`)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    paper = _env(env, "PAPER", DEFAULT_PAPER)
    reg = regime(paper)
    choice, cpu = reg.sizes[size], _env(env, "CPU", "0") == "1"
    requested = _env(env, "ALGO", reg.default_algo)
    algo = canonical(requested)  # fails early with the list of names; an alias becomes its preset's name
    seed = _int(env, "SEED", 1)
    model = _env(env, "MODEL_PATH", choice.model)
    train = _env(env, "TRAIN", reg.train_set)
    evals = ",".join(resolve_names(_env(env, "EVAL", ",".join(reg.benchmarks)), list(EVAL_SPECS), "benchmark"))
    prompt = _env(env, "PROMPT", choice.prompt)
    checker = _env(env, "CHECKER", DEFAULT_CHECKER)
    resolve_names(prompt, list(PROMPTS), "prompt")
    if checker not in CHECKERS:
        raise ValueError(f"CHECKER must be one of {list(CHECKERS)}, got {checker!r}")
    rollout_n = _int(env, "ROLLOUT_N", reg.rollout_n, minimum=2)
    max_response = _int(env, "MAX_RESPONSE_LENGTH", choice.max_response_length, minimum=1)
    total_steps = _int(env, "TOTAL_STEPS", reg.total_steps, minimum=1)
    val_n = _int(env, "VAL_N", 1, minimum=1)
    gpus = _int(env, "GPUS_PER_NODE", 8, minimum=1)
    nnodes = _int(env, "NNODES", 1, minimum=1)
    rollout_tp = _int(env, "ROLLOUT_TP", choice.rollout_tp, minimum=1)
    # Tokens per GPU micro-batch: verl recipe, raised to hold one whole sequence when the response limit is raised.
    token_len = _int(env, "MAX_TOKEN_LEN_PER_GPU", max(24576, reg.max_prompt_length + max_response), minimum=1)
    # λ-GRPO's λ: the launch's defaults (plugin defaults, bounds ±5) unless LAMBDA_* say otherwise.
    launch_lambda = dataclasses.replace(
        LAUNCH_LAMBDA_GRPO,
        lr=_float(env, "LAMBDA_LR", LAUNCH_LAMBDA_GRPO.lr),
        init=_float(env, "LAMBDA_INIT", LAUNCH_LAMBDA_GRPO.init),
        min=_float(env, "LAMBDA_MIN", LAUNCH_LAMBDA_GRPO.min, allow_none=True),
        max=_float(env, "LAMBDA_MAX", LAUNCH_LAMBDA_GRPO.max, allow_none=True),
    )
    launch_lambda.validate()  # a bad LAMBDA_* fails here, naming the option

    name = f"{model_tag(model)}-{algo}-{train}" + (f"-{prompt}" if prompt != choice.prompt else "")
    if active_methods(algo)["lambda_grpo"]:  # λ's settings when not the launch's: runs of a sweep get their own folders
        for option in ("lr", "init", "min", "max"):
            value = getattr(launch_lambda, option)
            if value != getattr(LAUNCH_LAMBDA_GRPO, option):
                name += f"-lam{option}{'none' if value is None else f'{value:g}'}"
    name += (f"-paper_{paper}" if paper != DEFAULT_PAPER else "") + f"-s{seed}"
    experiment = _env(env, "EXPERIMENT", f"cpu-{name}" if cpu else name)
    out_dir = _absolute(_env(env, "OUT_DIR", str(Path(_env(env, "OUT_ROOT", "outputs")) / experiment)))
    fixture_data = cpu and not env.get("DATA_DIR")  # CPU=1 without DATA_DIR: the fixture rows, never a given dir
    data_dir = out_dir / "data" if fixture_data else _absolute(_env(env, "DATA_DIR", "~/data/verl_lambda"))

    data = [
        *data_overrides(data_dir, train, evals, prompt),  # the regime's (docs/reproduce/settings.md)
        f"data.train_batch_size={reg.train_batch_size}",  # prompts per step: verl recipe; SimpleRL-Zoo's command too
        f"data.max_prompt_length={reg.max_prompt_length}",  # verl recipe
        # λ-GRPO regime: zero RL lengthens responses; a cap they hit would confound the length effects λ-GRPO and DAPO
        # act on. GRPO-λ regime: the paper's caps. The share that hits the cap is logged every step as
        # response_length/clip_ratio (the report prints it).
        f"data.max_response_length={max_response}",
        "data.filter_overlong_prompts=True",  # verl recipe
        "data.truncation=error",  # verl recipe
        # verl's default data.seed=null shuffles with an unseeded torch.Generator, i.e. torch's fixed default seed:
        # one data order for every run. The seed makes the order part of what a seed varies.
        f"data.seed={seed}",
    ]
    model_args = [
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.model.use_remove_padding=True",  # verl recipe (speed only)
        "actor_rollout_ref.model.enable_gradient_checkpointing=True",  # verl recipe (memory only)
    ]
    actor = [
        f"actor_rollout_ref.actor.optim.lr={reg.actor_lr}",  # verl recipe (constant: verl's default schedule)
        f"actor_rollout_ref.actor.ppo_mini_batch_size={reg.ppo_mini_batch_size}",  # verl recipe: 4 updates per step
        "actor_rollout_ref.actor.use_kl_loss=True",  # verl recipe (GRPO's KL term in the loss)
        f"actor_rollout_ref.actor.kl_loss_coef={reg.kl_loss_coef}",  # verl recipe (SimpleRL-Zoo: 1e-4 for <= 14B)
        f"actor_rollout_ref.actor.kl_loss_type={reg.kl_loss_type}",  # verl recipe
        f"actor_rollout_ref.actor.entropy_coeff={reg.entropy_coeff:g}",  # verl recipe (SimpleRL-Zoo: 0.001)
        "actor_rollout_ref.actor.use_dynamic_bsz=True",  # verl recipe (packing; the loss is unchanged)
        f"actor_rollout_ref.actor.ppo_max_token_len_per_gpu={token_len}",  # memory only
        "actor_rollout_ref.actor.fsdp_config.param_offload=False",  # verl recipe
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload=False",  # verl recipe
        f"actor_rollout_ref.actor.data_loader_seed={seed}",  # mini-batch shuffling within a step
        # Every option of both methods, so that the config and the record carry them: λ-GRPO's are the plugin's
        # defaults (r = 1/9: paper; λ learnable from 0 with Adam, lr 0.01: ours) with bounds ±5 and LAMBDA_*;
        # GRPO-λ's the plugin's defaults (λ = 0.99, clamp -0.1: paper; γ = 1: ours). The preset (ALGO) comes after
        # and sets what its method changes (trace style, variant, clamp, signal). Clip ratio 0.2: verl's default.
        *method_option_overrides(launch_lambda, LAUNCH_GRPO_LAMBDA),
    ]
    rollout = [
        "actor_rollout_ref.rollout.name=vllm",  # verl's hybrid engine: vLLM rollout, FSDP actor
        f"actor_rollout_ref.rollout.tensor_model_parallel_size={rollout_tp}",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.6",  # verl recipe
        # Group size: SimpleRL-Zoo 8 (DAPO 16); verl's recipe uses 5, too few for stable within-group statistics.
        f"actor_rollout_ref.rollout.n={rollout_n}",
        # vLLM seeds replica r with rollout.seed + r: 1000 apart, no two seeds' runs share a replica's stream.
        f"actor_rollout_ref.rollout.seed={1000 * seed}",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True",  # verl recipe
        f"actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu={token_len}",  # memory only
        "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True",  # verl recipe
        f"actor_rollout_ref.ref.log_prob_max_token_len_per_gpu={token_len}",  # memory only
        "actor_rollout_ref.ref.fsdp_config.param_offload=True",  # verl recipe
    ]
    if val_n > 1:  # else verl's default: greedy, one sample
        rollout += [
            f"actor_rollout_ref.rollout.val_kwargs.n={val_n}",
            "actor_rollout_ref.rollout.val_kwargs.do_sample=True",
            "actor_rollout_ref.rollout.val_kwargs.temperature=1.0",  # = training sampling (verl's default)
            "actor_rollout_ref.rollout.val_kwargs.top_p=1.0",
        ]
    reward = [
        "reward.custom_reward_function.path=pkg://verl_lambda.reproduce.reward",  # one checker per data_source
        "reward.custom_reward_function.name=compute_score",
        f"++reward.custom_reward_function.reward_kwargs.checker={checker}",
    ]
    logger_args, logger_env, wandb = _logging(env, out_dir, default_wandb=not cpu)
    file_args, file_env = _file_logger(out_dir)
    trainer = [
        *algo_overrides(algo),  # the method: verl_lambda/presets.py
        "algorithm.use_kl_in_reward=False",  # verl recipe
        # A fixed step budget (SimpleRL-Zoo trains about 100 steps), not epochs, whose length depends on the set.
        f"trainer.total_training_steps={total_steps}",
        "trainer.total_epochs=1000",  # only so that the step budget, not the epoch count, ends the run
        f"trainer.test_freq={_int(env, 'TEST_FREQ', 10, minimum=1)}",  # plus the last step
        "trainer.val_before_train=True",  # verl default: step 0, the base model's row
        f"trainer.save_freq={_int(env, 'SAVE_FREQ', 20, minimum=1)}",  # plus the last step (verl always saves it)
        f"trainer.max_actor_ckpt_to_keep={_int(env, 'KEEP_CKPTS', 2, minimum=1)}",  # a 7B checkpoint is ~90 GB
        "trainer.balance_batch=True",  # verl recipe (speed only)
        *logger_args,
        f"trainer.project_name={_env(env, 'PROJECT', 'verl_lambda_reproduce')}",
        f"trainer.experiment_name={experiment}",
        f"trainer.n_gpus_per_node={gpus}",
        f"trainer.nnodes={nnodes}",  # a Ray cluster started beforehand for NNODES > 1 (docs/reproduce.md, "Multi-node")
        f"trainer.default_local_dir={out_dir / 'checkpoints'}",
        "trainer.resume_mode=auto",  # verl default: rerunning the same command resumes from the last checkpoint
        f"trainer.validation_data_dir={out_dir / 'validation'}",  # per-problem results: <step>.jsonl
        *file_args,
        f"hydra.run.dir={out_dir / 'hydra' / _stamp()}",  # hydra's record of the launch, next to the run
    ]
    overrides = [*data, *model_args, *actor, *rollout, *reward, *trainer]
    launch_env = {**logger_env, **file_env}
    steps: list[tuple[str, Callable[[], Any]]] = []
    if cpu:
        # The same launch on verl-lambda's CPU backend: its overrides (tiny Qwen2 model, hf rollout, CPU-sized
        # batches) go after the GPU ones (hydra: the last value wins), then the smoke-run settings.
        cpu_steps = _int(env, "STEPS", 2, minimum=1)
        model_dir = out_dir / "model-tiny"
        backend, backend_env = _cpu_backend(env, out_dir, model_dir)
        overrides += [
            *backend,
            "data.max_prompt_length=384",  # the tiny model has 512 positions
            "data.max_response_length=32",
            f"trainer.total_training_steps={cpu_steps}",
            f"trainer.test_freq={cpu_steps}",  # validate every benchmark once, at the last step
            "trainer.val_before_train=False",
            f"trainer.save_freq={cpu_steps}",  # one checkpoint, at the end: what eval_ckpt.sh reads
        ]
        launch_env.update(backend_env)
        steps.append((f"build the tiny model in {model_dir}", lambda: _build_tiny_model(model_dir)))
        if fixture_data:
            steps.append(
                (
                    f"build the fixture data in {data_dir}",
                    lambda: _build_fixture_data(data_dir, train, evals, prompt),
                )
            )
    overrides += _forced(extra, overrides)
    lambda_grpo, grpo_lambda = method_options(overrides)  # what the config will hold, validated
    batch = last_values(overrides, ["data.train_batch_size", "actor_rollout_ref.actor.ppo_mini_batch_size"])
    steps_run = _int(env, "STEPS", 2) if cpu else total_steps
    updates = steps_run * max(
        int(batch["data.train_batch_size"]) // int(batch["actor_rollout_ref.actor.ppo_mini_batch_size"]), 1
    )
    regime_defaults = {
        "MODEL_PATH": choice.model, "TRAIN": reg.train_set, "EVAL": ",".join(reg.benchmarks), "PROMPT": choice.prompt,
        "CHECKER": DEFAULT_CHECKER, "ROLLOUT_N": str(reg.rollout_n),
        "MAX_RESPONSE_LENGTH": str(choice.max_response_length), "TOTAL_STEPS": str(reg.total_steps),
    }  # fmt: skip
    resolved = {
        "MODEL_PATH": model, "TRAIN": train, "EVAL": evals, "PROMPT": prompt, "CHECKER": checker,
        "ROLLOUT_N": str(rollout_n), "MAX_RESPONSE_LENGTH": str(max_response), "TOTAL_STEPS": str(total_steps),
    }  # fmt: skip
    settings = {
        "paper": paper,
        "model": "tiny (CPU backend)" if cpu else model,
        "algo": algo,
        "train": train,
        "eval": evals,
        "prompt": prompt,
        "checker": checker,
        "rollout_n": 4 if cpu else rollout_n,
        "max_response_length": 32 if cpu else max_response,
        "total_steps": steps_run,
        "val_n": val_n,
        "cpu": cpu,
        "extra_overrides": list(extra),
        "seed": seed,
        "regime_changes": _regime_changes(resolved, regime_defaults, extra),
        "method_active": active_methods(algo),
        "method_options": options_record(lambda_grpo, grpo_lambda),
        "lambda_updates": updates,
    }
    record = {
        "kind": "train",
        "experiment": experiment,
        "size": size,
        "algo_requested": requested,
        "settings": settings,
        "data_dir": str(data_dir),
        "gpus_per_node": gpus,
        "nnodes": nnodes,
        "rollout_tp": rollout_tp,
        "max_token_len_per_gpu": token_len,
        "wandb": wandb,
        "config_file": CONFIG_FILE,
    }
    return Launch("train", overrides, launch_env, out_dir, record, steps)


def notes(launch: Launch) -> list[str]:
    """What a user should know before this launch runs (printed at start, dry run included)."""
    settings = launch.record["settings"]
    if launch.kind != "train":
        return []
    lines = describe_methods(launch.record)
    requested = launch.record.get("algo_requested", settings["algo"])
    if requested in ALIASES:
        lines.append(f"ALGO={requested} is the preset {ALIASES[requested]}")
    reg = REGIMES[settings["paper"]]
    if settings["algo"] not in reg.algos:
        lines.append(
            f"ALGO={settings['algo']} is not in PAPER={reg.paper}'s comparison ({', '.join(reg.algos)})"
            + ("; the λ-GRPO paper's DAPO is dapo_token_mean" if settings["algo"] == "dapo_clip_higher" else "")
        )
    return lines


# --------------------------------------------------------------------------------------------------------------
# Evaluation of a checkpoint
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Target:
    """What ``eval`` was pointed at: an FSDP actor checkpoint (merged first) or a Hugging Face model."""

    model: str  # the Hugging Face model to evaluate (the merged folder for a checkpoint)
    actor_dir: Path | None = None  # the FSDP checkpoint to merge into ``model``
    run_dir: Path | None = None
    step: int | None = None
    run: dict[str, Any] | None = None  # the run's run.json


def _step_of(path: Path) -> int | None:
    match = re.fullmatch(r"global_step_(\d+)", path.name)
    return int(match.group(1)) if match else None


def _read_run(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None or not (run_dir / RUN_FILE).exists():
        return None
    return json.loads((run_dir / RUN_FILE).read_text())


def resolve_target(target: str, step: int | None = None) -> Target:
    """A run folder (its ``checkpoints/global_step_<STEP or latest>``), a ``global_step_N`` folder, its ``actor``
    folder, or else a Hugging Face model (a folder with ``config.json`` or a Hub id)."""
    path = _absolute(target)
    actor_dir: Path | None = None
    run_dir: Path | None = None
    if (path / "checkpoints").is_dir() or (path / RUN_FILE).exists():
        run_dir = path
        steps = sorted(s for s in map(_step_of, (path / "checkpoints").glob("global_step_*")) if s is not None)
        if step is None and not steps:
            raise FileNotFoundError(f"{path}: no checkpoints/global_step_* to evaluate")
        chosen = steps[-1] if step is None else step
        actor_dir = path / "checkpoints" / f"global_step_{chosen}" / "actor"
    elif _step_of(path) is not None:
        actor_dir = path / "actor"
    elif (path / "fsdp_config.json").exists() and _step_of(path.parent) is not None:
        actor_dir = path
    if actor_dir is None:
        if path.exists() and not (path / "config.json").exists():
            raise FileNotFoundError(f"{path}: not a run folder, a checkpoint or a Hugging Face model folder")
        return Target(model=str(path) if path.exists() else target)
    if not actor_dir.is_dir():
        raise FileNotFoundError(f"no checkpoint {actor_dir}")
    step_dir = actor_dir.parent
    run_dir = run_dir or (step_dir.parent.parent if step_dir.parent.name == "checkpoints" else None)
    merged = step_dir / "hf_model"  # inside the step folder: deleted with it when verl rotates checkpoints
    return Target(str(merged), actor_dir, run_dir, _step_of(step_dir), _read_run(run_dir))


def eval_tag(greedy: bool, temperature: float, top_p: float, n_small: int, n_large: int, max_len: int) -> str:
    """The settings part of an eval folder's name, e.g. ``t1.0-p0.95-n32x4-len16384`` or ``greedy-len16384``."""
    decoding = "greedy" if greedy else f"t{temperature}-p{top_p}-n{n_small}x{n_large}"
    return f"{decoding}-len{max_len}"


def _write_eval_files(sources: Sequence[Path], out_dir: Path, samples: Mapping[str, int]) -> None:
    """Copies of the benchmark files with verl's per-row sample count ``__rollout_n__`` (read by verl's v1
    trainer in validation, ``verl/trainer/ppo/v1/agent_loop_tq.py``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        table = pq.read_table(source)
        column = pa.array([samples[source.stem]] * table.num_rows, pa.int64())
        pq.write_table(table.append_column("__rollout_n__", column), out_dir / source.name)


def _merge_checkpoint(actor_dir: Path, merged: Path, python: str) -> None:
    import subprocess

    if (merged / "config.json").exists():
        print(f"{TAG} {merged} exists: not merging again", file=sys.stderr)
        return
    command = merge_command(actor_dir, merged, python)
    print(f"{TAG} {shlex.join(command)}", file=sys.stderr)
    subprocess.run(command, check=True)


def merge_command(actor_dir: Path, merged: Path, python: str = sys.executable) -> list[str]:
    """verl's model merger: an FSDP actor checkpoint to a Hugging Face model folder."""
    return [python, "-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(actor_dir),
            "--target_dir", str(merged)]  # fmt: skip


def eval_launch(target: str, env: Mapping[str, str], extra: Sequence[str] = ()) -> Launch:
    """Validate-only launch of a checkpoint or model under ``env`` (see :data:`EVAL_VARIABLES`)."""
    step_env = _env(env, "STEP", "")
    resolved = resolve_target(target, int(step_env) if step_env else None)
    run = resolved.run or {}
    run_settings = run.get("settings", {})
    cpu = _env(env, "CPU", str(int(bool(run_settings.get("cpu", False))))) == "1"
    # The regime's evaluation: the run's paper (run.json), else PAPER (a Hugging Face model), else λ-GRPO's.
    paper = _env(env, "PAPER", run_settings.get("paper", DEFAULT_PAPER))
    reg = regime(paper)
    greedy = _env(env, "GREEDY", "0") == "1"
    temperature = float(_env(env, "TEMPERATURE", str(reg.eval_temperature)))
    top_p = float(_env(env, "TOP_P", str(reg.eval_top_p)))
    n_small = 1 if greedy else _int(env, "N_SMALL", reg.eval_n_small, minimum=1)
    n_large = 1 if greedy else _int(env, "N_LARGE", reg.eval_n_large, minimum=1)
    max_response = _int(env, "MAX_RESPONSE_LENGTH", reg.eval_max_response_length, minimum=1)
    if cpu:
        max_response = min(max_response, 32)  # the tiny model has 512 positions
    evals = _env(env, "EVAL", run_settings.get("eval", ",".join(reg.benchmarks)))
    small = set(resolve_names(_env(env, "SMALL", "aime24,amc23"), list(EVAL_SPECS), "benchmark"))
    size_prompts = {c.model: c.prompt for c in reg.sizes.values()}
    prompt = _env(env, "PROMPT", run_settings.get("prompt", size_prompts.get(resolved.model, DEFAULT_PROMPT)))
    checker = _env(env, "CHECKER", run_settings.get("checker", DEFAULT_CHECKER))
    if checker not in CHECKERS:
        raise ValueError(f"CHECKER must be one of {list(CHECKERS)}, got {checker!r}")
    gpus = _int(env, "GPUS_PER_NODE", run.get("gpus_per_node", 8), minimum=1)
    nnodes = _int(env, "NNODES", 1, minimum=1)
    rollout_tp = _int(env, "ROLLOUT_TP", run.get("rollout_tp", 1), minimum=1)
    token_len = max(_int(env, "MAX_TOKEN_LEN_PER_GPU", run.get("max_token_len_per_gpu", 24576)), 1024 + max_response)

    tag = eval_tag(greedy, temperature, top_p, n_small, n_large, max_response)
    if resolved.run_dir is not None and resolved.step is not None:
        default_out = resolved.run_dir / "eval" / f"step{resolved.step}-{tag}"
        label = run.get("experiment", resolved.run_dir.name)
    else:
        label = model_tag(resolved.model)
        default_out = Path(_env(env, "OUT_ROOT", "outputs")) / "eval" / f"{label}-{tag}"
    out_dir = _absolute(_env(env, "EVAL_OUT", str(default_out)))
    data_dir = _absolute(_env(env, "DATA_DIR", run.get("data_dir", "~/data/verl_lambda")))
    sources = eval_files(data_dir, evals, prompt)
    samples = {f.stem: n_small if f.stem in small else n_large for f in sources}
    files = [out_dir / "data" / f.name for f in sources]

    world = gpus * nnodes
    data = [
        f"data.train_files='{files[0]}'",  # verl builds a training loader even to validate only; never iterated
        "data.val_files=[" + ",".join(f"'{f}'" for f in files) + "]",
        f"data.train_batch_size={world}",  # the smallest batch verl's config checks accept; nothing is trained
        "data.max_prompt_length=1024",
        f"data.max_response_length={max_response}",  # the regime's: longer than its training caps
        "data.filter_overlong_prompts=True",
        "data.truncation=error",
    ]
    rollout = [
        f"actor_rollout_ref.model.path={resolved.model}",
        "actor_rollout_ref.model.use_remove_padding=True",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={world}",
        "actor_rollout_ref.actor.use_kl_loss=False",  # no reference model: nothing is trained
        "actor_rollout_ref.actor.use_dynamic_bsz=True",
        f"actor_rollout_ref.actor.ppo_max_token_len_per_gpu={token_len}",
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.tensor_model_parallel_size={rollout_tp}",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.6",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True",
        f"actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu={token_len}",
        # Per-benchmark sample counts come from each row's __rollout_n__; val_kwargs.n is the fallback.
        f"actor_rollout_ref.rollout.val_kwargs.n={max(n_small, n_large)}",
        f"actor_rollout_ref.rollout.val_kwargs.do_sample={not greedy}",
        f"actor_rollout_ref.rollout.val_kwargs.temperature={0.0 if greedy else temperature}",
        f"actor_rollout_ref.rollout.val_kwargs.top_p={1.0 if greedy else top_p}",
        "actor_rollout_ref.rollout.val_kwargs.top_k=-1",
    ]
    reward = [
        "reward.custom_reward_function.path=pkg://verl_lambda.reproduce.reward",
        "reward.custom_reward_function.name=compute_score",
        f"++reward.custom_reward_function.reward_kwargs.checker={checker}",
    ]
    logger_args, logger_env, _ = _logging(env, out_dir, default_wandb=False)
    file_args, file_env = _file_logger(out_dir)
    trainer = [
        *algo_overrides("grpo"),  # nothing is trained; a valid actor config without the plugin's modes
        "trainer.use_v1=True",  # per-row __rollout_n__ is the v1 trainer's
        "trainer.val_only=True",
        "trainer.val_before_train=True",
        "trainer.resume_mode=disable",
        "trainer.total_training_steps=1",
        "trainer.total_epochs=1",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        *logger_args,
        f"trainer.project_name={_env(env, 'PROJECT', 'verl_lambda_reproduce')}",
        f"trainer.experiment_name={label}-eval-{tag}",
        f"trainer.n_gpus_per_node={gpus}",
        f"trainer.nnodes={nnodes}",
        f"trainer.default_local_dir={out_dir / 'checkpoints'}",
        f"trainer.validation_data_dir={out_dir / 'validation'}",  # per-problem results: 0.jsonl
        *file_args,
        f"hydra.run.dir={out_dir / 'hydra' / _stamp()}",
    ]
    overrides = [*data, *rollout, *reward, *trainer]
    launch_env = {**logger_env, **file_env}
    python = _env(env, "PYTHON", sys.executable)
    steps: list[tuple[str, Callable[[], Any]]] = []
    if resolved.actor_dir is not None:
        actor_dir, merged = resolved.actor_dir, Path(resolved.model)
        merge = shlex.join(merge_command(actor_dir, merged, python))
        steps.append((f"merge the checkpoint: {merge}", lambda: _merge_checkpoint(actor_dir, merged, python)))
    steps.append(
        (
            f"write the benchmarks with per-row sample counts {samples} to {out_dir / 'data'}",
            lambda: _write_eval_files(sources, out_dir / "data", samples),
        )
    )
    if cpu:
        backend, backend_env = _cpu_backend(env, out_dir, Path(resolved.model))
        overrides += [*backend, "data.max_prompt_length=384"]  # the tiny model has 512 positions
        launch_env.update(backend_env)
    overrides += list(extra)
    record = {
        "kind": "eval",
        "label": label,
        "target": target,
        "model": resolved.model,
        "checkpoint": str(resolved.actor_dir) if resolved.actor_dir else None,
        "run_dir": str(resolved.run_dir) if resolved.run_dir else None,
        "step": resolved.step,
        "run": run or None,
        "settings": {
            "paper": paper,
            "model": run_settings.get("model", resolved.model),  # what was trained from (a run) or evaluated
            "greedy": greedy,
            "temperature": None if greedy else temperature,
            "top_p": None if greedy else top_p,
            "samples": samples,
            "max_response_length": max_response,
            "prompt": prompt,
            "checker": checker,
            "cpu": cpu,
            "eval_overrides": list(extra),  # not "extra_overrides": the run's own are part of what it is
        },
        "tag": tag,
        "config_file": CONFIG_FILE,
    }
    return Launch("eval", overrides, launch_env, out_dir, record, steps)


# --------------------------------------------------------------------------------------------------------------
# Running a launch
# --------------------------------------------------------------------------------------------------------------


def _record_file(launch: Launch) -> Path:
    return launch.out_dir / (RUN_FILE if launch.kind == "train" else EVAL_FILE)


def _write_record(launch: Launch) -> None:
    """``run.json`` / ``eval.json``: what the report groups and labels runs by. A different earlier one is kept."""
    path = _record_file(launch)
    record = {**launch.record, "overrides": launch.overrides, "launched": _stamp()}
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("settings") != record["settings"]:
            kept = path.with_name(f"{path.stem}.{_stamp()}.json")
            path.rename(kept)
            print(f"{TAG} WARNING: {launch.out_dir} held other settings; their record is now {kept}", file=sys.stderr)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")


def _write_config(launch: Launch) -> None:
    """``resolved_config.yaml``: verl's config of this launch, composed, validated and resolved as main_ppo does
    (every option of both methods included), written before anything starts. A different earlier one is kept."""
    from omegaconf import OmegaConf

    from verl_lambda.reproduce.compose import RUN_HEADER, compose, to_yaml

    config = compose(launch.overrides)
    if launch.kind == "train":  # the record states what verl's config holds
        groups = {"lambda_grpo": LAMBDA_GRPO_KEY, "grpo_lambda": GRPO_LAMBDA_KEY}
        for name, key in groups.items():
            held = OmegaConf.to_container(OmegaConf.select(config, key), resolve=True)
            recorded = {k: v for k, v in launch.record["settings"]["method_options"][name].items() if k != "kappa"}
            if held != recorded:
                raise ValueError(f"{key} in the composed config {held} differs from the launch's record {recorded}")
    path = launch.out_dir / CONFIG_FILE
    text = to_yaml(config, header=RUN_HEADER, comments=notes(launch))
    if path.exists() and path.read_text() != text:
        kept = path.with_name(f"{path.stem}.{_stamp()}.yaml")
        path.rename(kept)
        print(f"{TAG} {launch.out_dir} held another config; it is now {kept}", file=sys.stderr)
    path.write_text(text)


def run(launch: Launch, dry_run: bool, python: str = sys.executable) -> int:
    """Print and validate the config (``dry_run``), or prepare the run, write its resolved config and record, and
    ``exec`` main_ppo (does not return)."""
    command = [python, "-m", "verl.trainer.main_ppo", *launch.overrides]
    for line in notes(launch):  # the method's options, λ's reach, alias and regime notes: at every start
        print(f"{TAG} {line}", file=sys.stderr)
    if dry_run:
        from verl_lambda.reproduce.compose import dry_run as print_config
        from verl_lambda.reproduce.verify import INSTALL_HINT, require_math_verify

        if launch.record["settings"]["checker"] == "math_verify":
            try:
                require_math_verify()
            except ImportError:
                print(f"{TAG} DRY_RUN WARNING: {INSTALL_HINT}; a launch would stop here", file=sys.stderr)
        for description, _ in launch.steps:
            print(f"{TAG} DRY_RUN: would {description}", file=sys.stderr)
        os.environ.update(launch.env)  # e.g. VERL_PLATFORM=cpu, read when verl is imported; this process ends here
        print(f"{TAG} DRY_RUN: {shlex.join(command)}", file=sys.stderr)
        return print_config(launch.overrides, comments=notes(launch))
    if launch.record["settings"]["checker"] == "math_verify":
        from verl_lambda.reproduce.verify import require_math_verify

        require_math_verify()  # before minutes of Ray start-up; every node needs it (docs/reproduce.md)
    launch.out_dir.mkdir(parents=True, exist_ok=True)
    for description, step in launch.steps:
        print(f"{TAG} {description}", file=sys.stderr)
        step()
    os.environ.update(launch.env)  # e.g. VERL_PLATFORM=cpu, read when verl is imported; main_ppo gets it too
    _write_config(launch)  # composed and validated here: a bad setting stops before Ray starts
    metrics = launch.out_dir / "metrics.jsonl"
    if metrics.exists() and metrics.stat().st_size > 0:  # verl's file logger truncates it: keep the earlier segment
        metrics.rename(launch.out_dir / f"metrics.{_stamp()}.jsonl")
    _write_record(launch)
    print(
        f"{TAG} {launch.kind}: output in {launch.out_dir} ({CONFIG_FILE}, {_record_file(launch).name})", file=sys.stderr
    )
    print(f"{TAG} {shlex.join(command)}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(python, command, {**os.environ, **launch.env})
    return 0  # not reached


def _variables(variables: Mapping[str, str]) -> str:
    return "environment variables (default: meaning):\n" + "\n".join(f"  {k:<22} {v}" for k, v in variables.items())


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    train = sub.add_parser(
        "train", help="train one method (scripts/run_qwen*.sh)", epilog=_variables(TRAIN_VARIABLES), formatter_class=raw
    )
    train.add_argument("--size", required=True, choices=sorted(SIZES))
    evaluate = sub.add_parser(
        "eval",
        help="evaluate a checkpoint or model (scripts/eval_ckpt.sh)",
        epilog=_variables(EVAL_VARIABLES),
        formatter_class=raw,
    )
    evaluate.add_argument("target", help="run folder, checkpoints/global_step_N[/actor], or Hugging Face model")
    for p in (train, evaluate):
        p.add_argument("--print-overrides", action="store_true", help="print the overrides, one per line, and exit")
    args, extra = parser.parse_known_args(argv)
    env = dict(os.environ if env is None else env)
    try:
        if args.kind == "train":
            launch = train_launch(args.size, env, extra)
        else:
            launch = eval_launch(args.target, env, extra)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{TAG} {exc}", file=sys.stderr)
        return 2
    if args.print_overrides:
        print("\n".join(launch.overrides))
        return 0
    try:
        return run(launch, dry_run=_env(env, "DRY_RUN", "0") == "1", python=_env(env, "PYTHON", sys.executable))
    except ImportError as exc:  # Math-Verify missing on this node: say how to install it, before Ray starts
        print(f"{TAG} {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the config does not compose or validate: stop before Ray starts
        print(f"{TAG} the launch would stop with {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
