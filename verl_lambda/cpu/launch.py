"""Run ``python -m verl.trainer.main_ppo`` on CPU with the embedded tiny model and task, with progress and a plot.

    python -m verl_lambda.cpu.launch --out outputs/demo --steps 30 --algo lambda_grpo [hydra overrides ...]

It builds the task's model and data (``verl_lambda.toy``) in ``--out``, starts verl's real trainer (Ray, FSDP2 engine
workers, the rollout, the reward workers) on the ``cpu`` platform, prints one line per training step,
and leaves ``metrics.jsonl`` (every logged metric of every step, from verl's file logger), ``train.log`` (the full
output) and ``metrics.png`` in ``--out``. Extra arguments are passed to verl as hydra overrides and win over the
defaults here. ``--rollout`` picks the generation backend: ``hf`` (a transformers model, light) or ``vllm`` (verl's
own vLLM server rollout with vLLM's CPU build, installed by ``scripts/setup.sh`` on Linux x86_64).

Layer 7 (applications).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from verl_lambda.cpu.harness import PRECISIONS
from verl_lambda.metrics import read_metrics
from verl_lambda.presets import ALGORITHMS
from verl_lambda.presets import overrides as algo_overrides
from verl_lambda.toy.task import LENGTH_GAP_KEY, TASKS

# Ray places each verl worker in a bundle asking for several CPUs; with too few logical CPUs declared, Ray waits
# forever without an error. A 2-core machine runs fine with these declared.
RAY_CPUS_BASE, RAY_CPUS_PER_WORKER = 6, 4
ROLLOUTS = ("hf", "vllm")
STALL_HINT = (
    "If the log shows 'No available node types can fulfill resource request', Ray needs more logical CPUs "
    "(--ray-cpus, i.e. ray_kwargs.ray_init.num_cpus) or GPUs (+ray_kwargs.ray_init.num_gpus)."
)


def cpu_backend_overrides(
    model_dir: Path,
    *,
    prompts_per_step: int = 8,
    n: int = 8,
    workers: int = 1,
    use_v1: bool = True,
    ray_cpus: int | None = None,
    threads: int = 2,
    rollout: str = "hf",
    precision: str = "fp32",
) -> list[str]:
    """What any launch needs to run on the cpu platform with the ``rollout`` backend, with CPU-sized batches.

    ``workers`` is the number of data-parallel ranks (each one a logical GPU to Ray). Data, reward and algorithm
    are left to the caller; append these after a GPU launch's overrides to run it on CPU. With ``rollout="vllm"``
    vLLM generates in fp32 like the actor computes (vLLM's CPU default is bf16), so the rollout's log-probs are the
    actor's; the cpu platform itself sets what vLLM on CPU requires (``PlatformCPU.VLLM_ROLLOUT_DEFAULTS``).
    ``precision="bf16"`` runs the actor as verl's FSDP engine does on a GPU by default (the forward and the loss under
    ``autocast(bf16)``); every run's actor loss checks that it runs under the autocast ``precision`` names and logs
    ``actor/cpu/loss_autocast_bits``.
    """
    from verl_lambda.cpu.harness import CPU_ACTOR_OVERRIDES, precision_overrides
    from verl_lambda.cpu.patches import CHECK_AUTOCAST_ENV

    if rollout not in ROLLOUTS:
        raise ValueError(f"rollout must be one of {ROLLOUTS}, got {rollout!r}")
    micro = max(1, prompts_per_step * n // workers)
    ray_cpus = ray_cpus or RAY_CPUS_BASE + RAY_CPUS_PER_WORKER * workers
    return [
        f"actor_rollout_ref.model.path={model_dir}",
        *CPU_ACTOR_OVERRIDES,
        *precision_overrides(precision),
        f"++ray_kwargs.ray_init.runtime_env.env_vars.{CHECK_AUTOCAST_ENV}={precision}",
        f"data.train_batch_size={prompts_per_step}",
        "data.dataloader_num_workers=0",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts_per_step}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
        "actor_rollout_ref.actor.use_dynamic_bsz=False",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=False",
        "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=False",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={micro}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={micro}",
        "actor_rollout_ref.ref.fsdp_config.param_offload=False",
        f"actor_rollout_ref.rollout.name={rollout}",
        *(["actor_rollout_ref.rollout.dtype=float32"] if rollout == "vllm" else []),
        f"actor_rollout_ref.rollout.n={n}",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.calculate_log_probs=True",
        "reward.num_workers=1",
        f"trainer.n_gpus_per_node={workers}",
        "trainer.nnodes=1",
        f"trainer.use_v1={use_v1}",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        f"ray_kwargs.ray_init.num_cpus={ray_cpus}",
        f"++ray_kwargs.ray_init.num_gpus={workers}",
        f'++ray_kwargs.ray_init.runtime_env.env_vars.OMP_NUM_THREADS="{threads}"',
    ]


# The actor's learning rate per task. The lengths tasks start from a warm-started model whose lengths vary because it
# stops after a miss (long) or a hit (short); learning the class's characters faster than where to stop sends every
# response to the length cap, where λ has nothing left to learn: within ten steps at 1e-2, by step 40 of 50 at 2e-3.
TASK_LR = {"classes": 1e-2, "lengths-long": 2e-3, "lengths-short": 2e-3, "chain-long": 2e-3, "chain-short": 2e-3}
# Where a run's rollouts are dumped (verl's ``trainer.rollout_data_dir``: one ``<step>.jsonl`` per step, each sample's
# prompt, response and class), from which the chain tasks' mean |length - target| of each step is logged.
ROLLOUTS_DIR = "rollouts"


# A finished chain-task run's per-step |length - target|, kept next to its metrics (the dumps are not committed).
LENGTH_GAPS_FILE = "length_gaps.json"


def with_length_gaps(records: list[dict], out_dir: Path) -> list[dict]:
    """``records`` with ``LENGTH_GAP_KEY`` added to the steps whose rollouts were dumped (the chain tasks): from the
    finished run's ``LENGTH_GAPS_FILE``, else from the dumps (only those records')."""
    saved = Path(out_dir) / LENGTH_GAPS_FILE
    if saved.exists():
        gaps = {int(step): gap for step, gap in json.loads(saved.read_text()).items()}
    else:
        gaps = length_gaps(Path(out_dir) / ROLLOUTS_DIR, steps={record["step"] for record in records})
    return [record | ({LENGTH_GAP_KEY: gaps[record["step"]]} if record["step"] in gaps else {}) for record in records]


def length_gaps(rollout_dir: Path, steps: Collection[int] | None = None) -> dict[int, float]:
    """The mean |response length - target| of each step (of ``steps``, or all) a chain task's run dumped."""
    from verl_lambda.toy.task import chain_length_gap

    gaps = {}
    for path in sorted(Path(rollout_dir).glob("*.jsonl")):
        if not path.stem.isdigit() or (steps is not None and int(path.stem) not in steps):
            continue
        samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if samples:
            values = [chain_length_gap(s["input"], s["output"], s["gts"]) for s in samples]
            gaps[int(path.stem)] = sum(values) / len(values)
    return gaps


def toy_task_overrides(
    data_dir: Path,
    reward_path: str,
    *,
    steps: int,
    max_response_length: int = 32,
    lr: float = 1e-2,
    seed: int | None = None,
) -> list[str]:
    """An embedded task with the training settings the demo uses; ``seed`` sets the data order, the rollout's
    sampling and the mini-batch shuffling (verl's defaults otherwise)."""
    seeds = [] if seed is None else [f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}"]
    seeds += [] if seed is None else [f"actor_rollout_ref.actor.data_loader_seed={seed}"]
    return [
        *seeds,
        f"data.train_files={data_dir / 'train.parquet'}",
        f"data.val_files={data_dir / 'test.parquet'}",
        "data.max_prompt_length=64",
        f"data.max_response_length={max_response_length}",
        f"actor_rollout_ref.actor.optim.lr={lr}",
        "actor_rollout_ref.actor.use_kl_loss=False",
        f"reward.custom_reward_function.path={reward_path}",
        "reward.custom_reward_function.name=compute_score",
        "trainer.logger=[console,file]",
        f"trainer.total_training_steps={steps}",
        "trainer.val_before_train=False",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.project_name=verl_lambda_cpu",
    ]


def cpu_env(out_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        VERL_PLATFORM="cpu",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        VERL_FILE_LOGGER_PATH=str(out_dir / "metrics.jsonl"),
        PYTHONUNBUFFERED="1",
    )
    return env


# An exception as Python prints it (``RuntimeError: ...``, ``vllm.v1.engine.exceptions.EngineDeadError: ...``).
_ERROR_LINE = re.compile(r"\b((?:[A-Z]\w*\.)*[A-Z]\w*(?:Error|Exception)): (.+)")


def first_error(lines: Sequence[str]) -> str | None:
    """The first exception any process printed: the cause, where later ones are its consequences (a vLLM worker
    that fails makes its engine, the agent loop and the trainer fail after it, each with its own error)."""
    for line in lines:
        match = _ERROR_LINE.search(line)
        if match:
            return f"{match.group(1)}: {match.group(2).strip()}"
    return None


def _tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants (Ray's raylet and workers are among them)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _progress_line(record: dict, total: int) -> str:
    parts = [f"step {record['step']:>3}/{total}"]
    for label, key, fmt in (
        ("reward", "critic/score/mean", "{:.3f}"),
        ("length", "response_length/mean", "{:.1f}"),
        ("|length - target|", LENGTH_GAP_KEY, "{:.2f}"),
        ("λ", "actor/lambda_grpo/lambda", "{:+.3f}"),
        ("λ grad", "actor/lambda_grpo/lambda_grad", "{:+.4f}"),
        ("corr(f,L)", "actor/lambda_grpo/weight_length_corr", "{:+.2f}"),
        ("time", "timing_s/step", "{:.1f}s"),
    ):
        if key in record:
            parts.append(f"{label} " + fmt.format(record[key]))
    return "  ".join(parts)


def build_assets(out_dir: Path, task: str, size: str, max_chars: int) -> tuple[Path, Path]:
    """The model and the data of ``task``: the tiny model as built for ``classes``, the warm-started one (cached)
    for the lengths tasks."""
    from verl_lambda.toy import build_dataset, build_model
    from verl_lambda.toy.warm_start import cached_warm_start

    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    model_dir = (
        build_model(out_dir / f"model-{size}", size=size) if task == "classes" else cached_warm_start(task, size)
    )
    return model_dir, build_dataset(out_dir / f"data-{task}", max_chars=max_chars, task=task)


def run(
    out_dir: Path,
    steps: int,
    algo: str,
    size: str = "tiny",
    task: str = "chain-long",
    extra: Sequence[str] = (),
    timeout: float = 1800,
    stall_timeout: float = 600,
    quiet: bool = False,
    **options,
) -> list[dict]:
    """Build assets, run verl's trainer, return the metric records. Raises on failure, timeout or a stalled run."""
    from verl_lambda.toy import reward_fn_path

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir, data_dir = build_assets(out_dir, task, size, options.get("max_response_length", 32))
    task_keys = ("max_response_length", "lr", "seed")
    training = {k: v for k, v in options.items() if k in task_keys and v is not None}
    training.setdefault("lr", TASK_LR[task])
    backend = {k: v for k, v in options.items() if k not in task_keys}
    metrics_path, log_path = out_dir / "metrics.jsonl", out_dir / "train.log"
    metrics_path.unlink(missing_ok=True)
    (out_dir / LENGTH_GAPS_FILE).unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        *algo_overrides(algo),
        *cpu_backend_overrides(model_dir, **backend),
        *toy_task_overrides(data_dir, reward_fn_path(), steps=steps, **training),
        f"trainer.experiment_name={algo}",
        f"trainer.default_local_dir={out_dir / 'checkpoints'}",
        *([f"trainer.rollout_data_dir={out_dir / ROLLOUTS_DIR}"] if task.startswith("chain-") else []),
        *extra,
    ]
    (out_dir / "command.txt").write_text(" ".join(command) + "\n")
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    rollout = options.get("rollout", "hf")
    say(f"verl main_ppo on CPU: algo={algo}, task {task}, {rollout} rollout, {steps} steps, output in {out_dir}")
    say(f"full log: {log_path}")

    start, last_progress, shown, peak_rss = time.monotonic(), time.monotonic(), 0, 0
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=cpu_env(out_dir), cwd=out_dir, start_new_session=True
        )
        try:
            while process.poll() is None:
                time.sleep(1.0)
                peak_rss = max(peak_rss, _tree_rss(process.pid))
                new = read_metrics(metrics_path)[shown:]
                for record in with_length_gaps(new, out_dir):  # each step's dump is read once, when it is shown
                    say(_progress_line(record, steps))
                if new:
                    shown, last_progress = shown + len(new), time.monotonic()
                elapsed = time.monotonic() - start
                if elapsed > timeout or time.monotonic() - last_progress > stall_timeout:
                    raise TimeoutError(
                        f"verl made no progress for {time.monotonic() - last_progress:.0f}s "
                        f"({shown}/{steps} steps after {elapsed:.0f}s). {STALL_HINT} Log: {log_path}"
                    )
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    records = with_length_gaps(read_metrics(metrics_path), out_dir)
    for record in records[shown:]:
        say(_progress_line(record, steps))
    if process.returncode != 0:
        lines = log_path.read_text().splitlines(keepends=True)
        cause = first_error(lines)
        raise RuntimeError(
            f"verl exited with code {process.returncode}"
            + (f"; the first error any process logged: {cause}" if cause else "")
            + f"\nlast lines of {log_path}:\n{''.join(lines[-30:])}"
        )
    if not records or records[-1]["step"] != steps:  # a resumed run logs only the steps after its checkpoint
        raise RuntimeError(f"verl finished without logging step {steps}; see {log_path}")
    if task.startswith("chain-"):
        gaps = {str(r["step"]): r[LENGTH_GAP_KEY] for r in records if LENGTH_GAP_KEY in r}
        (out_dir / LENGTH_GAPS_FILE).write_text(json.dumps(gaps, indent=0) + "\n")
    summary = {"wall_s": round(time.monotonic() - start, 1), "peak_rss_gb": round(peak_rss / 2**30, 2)}
    (out_dir / "summary.json").write_text(json.dumps(summary) + "\n")
    say(f"done in {summary['wall_s']:.0f}s, peak memory of all processes {summary['peak_rss_gb']:.1f} GB")
    return records


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--algo", default="lambda_grpo", choices=sorted(ALGORITHMS))
    parser.add_argument("--size", default="tiny", help="tiny model size: tiny, small or base")
    parser.add_argument(
        "--task",
        default="chain-long",
        choices=TASKS,
        help="lengths-long: longer responses (up to a prompt's target) earn more; lengths-short: its mirror; "
        "chain-long / chain-short: continue the class's sequence to its end, from a policy that stops early / late; "
        "classes: the tests' task (verl_lambda/toy/task.py)",
    )
    parser.add_argument("--seed", type=int, default=None, help="data order, rollout sampling, mini-batch shuffling")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--n", type=int, default=8, help="responses per prompt")
    parser.add_argument("--max-response-length", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="actor learning rate (default: per task, TASK_LR)")
    parser.add_argument("--workers", type=int, default=1, help="data-parallel ranks")
    parser.add_argument("--trainer", choices=("v1", "v0"), default="v1", help="verl's trainer.use_v1 true/false")
    parser.add_argument("--rollout", choices=ROLLOUTS, default="hf", help="generation backend (rollout.name)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="the actor's compute precision: fp32, or bf16 autocast as verl's FSDP engine runs on GPUs",
    )
    parser.add_argument("--ray-cpus", type=int, default=None, help="logical CPUs declared to Ray")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--print-backend-overrides",
        action="store_true",
        help="build the task's model, print the CPU backend's overrides (one per line) and exit",
    )
    args, extra = parser.parse_known_args(argv)
    if args.print_backend_overrides:
        model_dir, _ = build_assets(args.out.resolve(), args.task, args.size, args.max_response_length)
        overrides = cpu_backend_overrides(
            model_dir,
            prompts_per_step=args.prompts,
            n=args.n,
            workers=args.workers,
            use_v1=args.trainer == "v1",
            rollout=args.rollout,
            precision=args.precision,
        )
        print("\n".join(overrides))
        return
    records = run(
        args.out,
        args.steps,
        args.algo,
        size=args.size,
        task=args.task,
        extra=extra,
        timeout=args.timeout,
        seed=args.seed,
        prompts_per_step=args.prompts,
        n=args.n,
        max_response_length=args.max_response_length,
        lr=args.lr,
        workers=args.workers,
        use_v1=args.trainer == "v1",
        ray_cpus=args.ray_cpus,
        rollout=args.rollout,
        precision=args.precision,
    )
    if not args.no_plot:
        from verl_lambda.plot import plot_training

        title = f"{args.algo} on CPU: {args.task}, {args.size} model, {args.rollout} rollout"
        png = plot_training(records, args.out / "metrics.png", title=title)
        print(f"plot: {png}")
    print(f"metrics: {args.out / 'metrics.jsonl'}")
    print(lambda_summary(records))


def lambda_summary(records: Sequence[dict]) -> str:
    """How much λ had to learn from: in how many steps its gradient was non-zero, and where it went."""
    grads = [r["actor/lambda_grpo/lambda_grad"] for r in records if "actor/lambda_grpo/lambda_grad" in r]
    if not grads:
        return "λ: not in this run (λ-GRPO logs actor/lambda_grpo/*)"
    lambdas = [r["actor/lambda_grpo/lambda"] for r in records if "actor/lambda_grpo/lambda" in r]
    return (
        f"λ: gradient non-zero in {sum(g != 0 for g in grads)} of {len(grads)} steps; "
        f"λ {lambdas[0]:+.3f} after step 1, {lambdas[-1]:+.3f} after step {len(lambdas)}"
    )


if __name__ == "__main__":
    main()
