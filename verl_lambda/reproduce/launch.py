r"""The reproduction's launches: one method trained on one model (``scripts/run_qwen*.sh``) and a trained checkpoint
evaluated as papers report (``scripts/eval_ckpt.sh``), both as ``python -m verl.trainer.main_ppo`` runs of verl's
hybrid engine (vLLM rollout, FSDP actor).

    python -m verl_lambda.reproduce.launch train --size 7b [hydra overrides ...]
    python -m verl_lambda.reproduce.launch eval RUN_DIR|CHECKPOINT|HF_MODEL [hydra overrides ...]

Settings come from environment variables (:data:`TRAIN_VARIABLES`, :data:`EVAL_VARIABLES`; the README's
"Reproduce the papers" has the table); extra arguments are hydra overrides appended last (they win). Every value
that is not the method itself is listed once below with its source. "verl recipe" is verl's standard GRPO maths
example, ``examples/grpo_trainer/run_qwen2-7b_math.sh`` (verl <= 0.5) and its successor ``run_qwen3_8b_fsdp.sh``
(verl 0.9); "SimpleRL-Zoo" is the zero-RL study of base models (Zeng et al. 2025, arXiv 2503.18892) as its README
(github.com/hkust-nlp/simpleRL-reason) states its commands. Neither paper's text that we could read states its
training settings.

A launch is computed by a pure function (:func:`train_launch`, :func:`eval_launch`) into a :class:`Launch`: the
overrides, the extra environment, the output folder, what ``run.json`` records and the preparation steps; then
:func:`run` either composes and prints the config (``DRY_RUN=1``, nothing written) or prepares and ``exec``\ s
main_ppo. ``CPU=1`` runs the same launch on verl-lambda's CPU backend with the tiny built-in model.

Layer 7 (applications).
"""

from __future__ import annotations

import argparse
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

from verl_lambda.presets import overrides as algo_overrides
from verl_lambda.reproduce.datasets import (
    DEFAULT_PROMPT,
    DEFAULT_TRAIN_SET,
    EVAL_SPECS,
    PROMPTS,
    TRAIN_SETS,
    data_overrides,
    eval_files,
    resolve_names,
)
from verl_lambda.reproduce.reward import CHECKERS, DEFAULT_CHECKER

RUN_FILE, EVAL_FILE = "run.json", "eval.json"
TAG = "[verl-lambda]"


@dataclass(frozen=True)
class SizeDefaults:
    """What differs between the model sizes of the λ-GRPO paper (Qwen2.5 1.5B, 3B and 7B)."""

    model: str
    rollout_tp: int  # vLLM tensor parallelism
    max_response_length: int


SIZES: dict[str, SizeDefaults] = {
    # base models: zero RL, as SimpleRL-Zoo (base vs instruct is not stated in the λ-GRPO text we could read)
    "1.5b": SizeDefaults("Qwen/Qwen2.5-1.5B", rollout_tp=1, max_response_length=4096),
    "3b": SizeDefaults("Qwen/Qwen2.5-3B", rollout_tp=1, max_response_length=4096),
    # TP 2 for 7B: verl recipe; 8192 tokens: SimpleRL-Zoo's command for Qwen-2.5-7B
    "7b": SizeDefaults("Qwen/Qwen2.5-7B", rollout_tp=2, max_response_length=8192),
}

TRAIN_VARIABLES: dict[str, str] = {
    "ALGO": "lambda_grpo | grpo_lambda | grpo | dapo (verl_lambda/presets.py)",
    "SEED": "1; data order (data.seed), rollout sampling and mini-batch shuffling; part of the run name",
    "MODEL_PATH": "Hugging Face id or local path (launcher default: Qwen/Qwen2.5-<size>); names the run",
    "DATA_DIR": "~/data/verl_lambda, the output of examples/prepare_data.py",
    "TRAIN": f"{DEFAULT_TRAIN_SET}: training set, one of {list(TRAIN_SETS)}",
    "EVAL": "all: benchmarks validated during training, comma-separated",
    "PROMPT": f"{DEFAULT_PROMPT}: prompt template, one of {list(PROMPTS)}",
    "CHECKER": f"{DEFAULT_CHECKER}: answer checker that gives the reward and acc, one of {list(CHECKERS)}",
    "ROLLOUT_N": "8: responses per prompt (GRPO's group size)",
    "MAX_RESPONSE_LENGTH": "4096 (1.5B, 3B) / 8192 (7B): response token limit in training and validation",
    "TOTAL_STEPS": "100: training steps (a fixed budget, whatever the training set's size)",
    "TEST_FREQ": "10: validate every TEST_FREQ steps (and at step 0 and the last step)",
    "SAVE_FREQ": "20: checkpoint every SAVE_FREQ steps (and the last step)",
    "KEEP_CKPTS": "2: actor checkpoints kept (older ones are deleted)",
    "VAL_N": "1: samples per problem in training-time validation (1: greedy; >1: temperature 1.0, avg@VAL_N)",
    "GPUS_PER_NODE": "8",
    "NNODES": "1: nodes of the Ray cluster, started beforehand when > 1",
    "ROLLOUT_TP": "per size: vLLM tensor parallel size",
    "MAX_TOKEN_LEN_PER_GPU": "24576 (or one whole sequence if longer): tokens per GPU micro-batch (memory only)",
    "PROJECT": "verl_lambda_reproduce: W&B project",
    "EXPERIMENT": "<model>-<ALGO>-<TRAIN>[-<PROMPT>]-s<SEED>: run name, W&B name",
    "OUT_DIR": "$OUT_ROOT/<EXPERIMENT> (OUT_ROOT: outputs/): checkpoints, metrics, dumps; shared on clusters",
    "LOGGER": "[console,file] plus wandb unless WANDB=off",
    "WANDB": "auto: online when logged in (WANDB_API_KEY or ~/.netrc), else offline into OUT_DIR/wandb; or off",
    "DRY_RUN": "1: compose and validate the config as main_ppo would, print it, launch nothing",
    "CPU": "1: the same launch on CPU with the tiny built-in model and the fixture rows, STEPS steps (default 2)",
    "PYTHON": "interpreter (the scripts default to .venv/bin/python when it exists, else python3)",
}

EVAL_VARIABLES: dict[str, str] = {
    "STEP": "the checkpoint step to evaluate when given a run folder (default: the latest)",
    "EVAL": "all: benchmarks",
    "SMALL": "aime24,amc23: the small benchmarks, sampled N_SMALL times per problem",
    "N_SMALL": "32: samples per problem on the small benchmarks (avg@32)",
    "N_LARGE": "4: samples per problem on the other benchmarks",
    "GREEDY": "1: greedy decoding, one sample per problem (the base-model rows of SimpleRL-Zoo)",
    "TEMPERATURE": "1.0, TOP_P: 0.95 (SimpleRL-Zoo's evaluation of its zero-RL models)",
    "MAX_RESPONSE_LENGTH": "16384: response token limit (SimpleRL-Zoo's evaluation: 16,000)",
    "PROMPT": "the run's (run.json), else qwen_boxed",
    "CHECKER": "the run's, else math_verify",
    "EVAL_OUT": "<run>/eval/step<N>-<settings> (a run or checkpoint), else $OUT_ROOT/eval/<model>-<settings>",
    "DATA_DIR, GPUS_PER_NODE, NNODES, ROLLOUT_TP, DRY_RUN, CPU, PYTHON": "as for training",
}


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


def train_launch(size: str, env: Mapping[str, str], extra: Sequence[str] = ()) -> Launch:
    """The training launch of ``scripts/run_qwen<size>.sh`` under ``env`` (see :data:`TRAIN_VARIABLES`)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    defaults, cpu = SIZES[size], _env(env, "CPU", "0") == "1"
    algo = _env(env, "ALGO", "lambda_grpo")
    seed = _int(env, "SEED", 1)
    model = _env(env, "MODEL_PATH", defaults.model)
    train = _env(env, "TRAIN", DEFAULT_TRAIN_SET)
    evals = _env(env, "EVAL", "all")
    prompt = _env(env, "PROMPT", DEFAULT_PROMPT)
    checker = _env(env, "CHECKER", DEFAULT_CHECKER)
    resolve_names(prompt, list(PROMPTS), "prompt")
    if checker not in CHECKERS:
        raise ValueError(f"CHECKER must be one of {list(CHECKERS)}, got {checker!r}")
    rollout_n = _int(env, "ROLLOUT_N", 8, minimum=2)
    max_response = _int(env, "MAX_RESPONSE_LENGTH", defaults.max_response_length, minimum=1)
    total_steps = _int(env, "TOTAL_STEPS", 100, minimum=1)
    val_n = _int(env, "VAL_N", 1, minimum=1)
    gpus = _int(env, "GPUS_PER_NODE", 8, minimum=1)
    nnodes = _int(env, "NNODES", 1, minimum=1)
    rollout_tp = _int(env, "ROLLOUT_TP", defaults.rollout_tp, minimum=1)
    # Tokens per GPU micro-batch: verl recipe, raised to hold one whole sequence when the response limit is raised.
    token_len = _int(env, "MAX_TOKEN_LEN_PER_GPU", max(24576, 1024 + max_response), minimum=1)
    algorithm = algo_overrides(algo)  # fails early with the list of names

    name = f"{model_tag(model)}-{algo}-{train}" + (f"-{prompt}" if prompt != DEFAULT_PROMPT else "") + f"-s{seed}"
    experiment = _env(env, "EXPERIMENT", f"cpu-{name}" if cpu else name)
    out_dir = _absolute(_env(env, "OUT_DIR", str(Path(_env(env, "OUT_ROOT", "outputs")) / experiment)))
    fixture_data = cpu and not env.get("DATA_DIR")  # CPU=1 without DATA_DIR: the fixture rows, never a given dir
    data_dir = out_dir / "data" if fixture_data else _absolute(_env(env, "DATA_DIR", "~/data/verl_lambda"))

    data = [
        *data_overrides(data_dir, train, evals, prompt),  # README.md ("Reproduce the papers") explains the choice
        "data.train_batch_size=1024",  # prompts per step: verl recipe; SimpleRL-Zoo's command too
        "data.max_prompt_length=1024",  # verl recipe
        # Zero RL lengthens responses; a cap they hit would confound the length effects λ-GRPO and DAPO act on.
        # The share that hits it is logged every step as response_length/clip_ratio (the report prints it).
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
        "actor_rollout_ref.actor.optim.lr=1e-6",  # verl recipe
        "actor_rollout_ref.actor.ppo_mini_batch_size=256",  # verl recipe: 4 policy updates per step
        "actor_rollout_ref.actor.use_kl_loss=True",  # verl recipe (GRPO's KL term in the loss)
        "actor_rollout_ref.actor.kl_loss_coef=0.001",  # verl recipe (SimpleRL-Zoo: 1e-4 for <= 14B)
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl",  # verl recipe
        "actor_rollout_ref.actor.entropy_coeff=0",  # verl recipe (SimpleRL-Zoo: 0.001)
        "actor_rollout_ref.actor.use_dynamic_bsz=True",  # verl recipe (packing; the loss is unchanged)
        f"actor_rollout_ref.actor.ppo_max_token_len_per_gpu={token_len}",  # memory only
        "actor_rollout_ref.actor.fsdp_config.param_offload=False",  # verl recipe
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload=False",  # verl recipe
        f"actor_rollout_ref.actor.data_loader_seed={seed}",  # mini-batch shuffling within a step
        # The methods' own settings are the plugin's defaults (README, configuration reference): λ-GRPO r=1/9
        # (paper), λ learnable from 0 with Adam, lr 0.01 (ours: not published); GRPO-λ λ=0.99, γ=1, negative-
        # advantage clamp -0.1 (paper). Clip ratio 0.2: verl's default, GRPO's (DAPO's 0.2/0.28 comes with ALGO).
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
        *algorithm,  # the method: verl_lambda/presets.py
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
        f"trainer.nnodes={nnodes}",  # a Ray cluster started beforehand for NNODES > 1 (README: multi-node)
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
    overrides += list(extra)
    settings = {
        "model": "tiny (CPU backend)" if cpu else model,
        "algo": algo,
        "train": train,
        "eval": evals,
        "prompt": prompt,
        "checker": checker,
        "rollout_n": 4 if cpu else rollout_n,
        "max_response_length": 32 if cpu else max_response,
        "total_steps": _int(env, "STEPS", 2) if cpu else total_steps,
        "val_n": val_n,
        "cpu": cpu,
        "extra_overrides": list(extra),
        "seed": seed,
    }
    record = {
        "kind": "train",
        "experiment": experiment,
        "size": size,
        "settings": settings,
        "data_dir": str(data_dir),
        "gpus_per_node": gpus,
        "nnodes": nnodes,
        "rollout_tp": rollout_tp,
        "max_token_len_per_gpu": token_len,
        "wandb": wandb,
    }
    return Launch("train", overrides, launch_env, out_dir, record, steps)


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
    greedy = _env(env, "GREEDY", "0") == "1"
    temperature = float(_env(env, "TEMPERATURE", "1.0"))
    top_p = float(_env(env, "TOP_P", "0.95"))
    n_small = 1 if greedy else _int(env, "N_SMALL", 32, minimum=1)
    n_large = 1 if greedy else _int(env, "N_LARGE", 4, minimum=1)
    max_response = _int(env, "MAX_RESPONSE_LENGTH", 16384, minimum=1)
    if cpu:
        max_response = min(max_response, 32)  # the tiny model has 512 positions
    evals = _env(env, "EVAL", run_settings.get("eval", "all"))
    small = set(resolve_names(_env(env, "SMALL", "aime24,amc23"), list(EVAL_SPECS), "benchmark"))
    prompt = _env(env, "PROMPT", run_settings.get("prompt", DEFAULT_PROMPT))
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
        f"data.max_response_length={max_response}",  # longer than training: papers evaluate with 16K-32K tokens
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


def run(launch: Launch, dry_run: bool, python: str = sys.executable) -> int:
    """Print and validate the config (``dry_run``), or prepare the run and ``exec`` main_ppo (does not return)."""
    command = [python, "-m", "verl.trainer.main_ppo", *launch.overrides]
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
        return print_config(launch.overrides)
    if launch.record["settings"]["checker"] == "math_verify":
        from verl_lambda.reproduce.verify import require_math_verify

        require_math_verify()  # here, before minutes of Ray start-up; every node needs it (README)
    launch.out_dir.mkdir(parents=True, exist_ok=True)
    for description, step in launch.steps:
        print(f"{TAG} {description}", file=sys.stderr)
        step()
    metrics = launch.out_dir / "metrics.jsonl"
    if metrics.exists() and metrics.stat().st_size > 0:  # verl's file logger truncates it: keep the earlier segment
        metrics.rename(launch.out_dir / f"metrics.{_stamp()}.jsonl")
    _write_record(launch)
    print(f"{TAG} {launch.kind}: output in {launch.out_dir}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
