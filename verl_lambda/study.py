"""A multi-seed study of the methods on CPU, with verl's real trainer: ``python -m verl_lambda.study``.

It trains the warm-started tiny model (``verl_lambda.toy.warm_start``) on the lengths tasks (``verl_lambda.toy.task``)
with ``python -m verl.trainer.main_ppo`` for every method and seed, one run after another, then writes to ``--out``
(default ``docs/study``):

- ``<task>.png``: per step, the mean over seeds and its 95% band of mean reward, response length, policy entropy,
  λ and the weight-length correlation, one line per method;
- ``results.md`` and ``results.json``: per task and method, the final reward (mean of the last five steps), the
  steps to a reward threshold and the area under the reward curve (mean reward over all steps), each as mean and 95%
  interval over seeds, and each method's difference to GRPO with its 95% interval (paired by seed: runs with the same
  seed see the same data order);
- ``runs/<task>/<method>/seed<k>/``: each run's ``metrics.jsonl`` (every metric verl logged), command and summary; its
  ``train.log`` (verl's full output, not committed).

Runs whose metrics are complete are reused, so an interrupted study resumes where it stopped. ``--quick`` (one seed,
three steps, GRPO and λ-GRPO on ``lengths-long``) checks the whole pipeline in a few minutes; the test suite runs it.

Layer 7 (applications).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from verl_lambda.metrics import read_metrics

# name: (label, preset of verl_lambda.presets)
METHODS = {
    "grpo": ("GRPO", "grpo"),
    "dapo": ("DAPO", "dapo"),
    "lambda_grpo": ("λ-GRPO", "lambda_grpo"),
    "grpo_lambda": ("GRPO-λ", "grpo_lambda"),
    "combined": ("λ-GRPO + GRPO-λ", "lambda_grpo+grpo_lambda"),
    "lambda_grpo_val": ("λ-GRPO, validation signal", "lambda_grpo_validation"),
}
# Every method on the task where longer responses earn more; on its mirror only where the direction matters.
PLAN = {
    "lengths-long": tuple(METHODS),
    "lengths-short": ("grpo", "lambda_grpo"),
}
QUICK_PLAN = {"lengths-long": ("grpo", "lambda_grpo")}
BASELINE = "grpo"
CURVES = (
    ("mean reward", "critic/score/mean"),
    ("response length (tokens)", "response_length/mean"),
    ("policy entropy", "actor/entropy"),
    ("λ", "actor/lambda_grpo/lambda"),
    ("corr(weight, length)", "actor/lambda_grpo/weight_length_corr"),
)
REWARD = "critic/score/mean"
# The light rollout: the study compares the methods, not the generation engines (the demo and the vllm tests run
# verl's vLLM rollout), and it leaves memory to spare on a 2-core, 24 GB machine.
ROLLOUT = "hf"
FINAL_WINDOW = 5
# The actor's learning rate of the committed study (docs/study): faster than the demo's (TASK_LR), so that 30 steps
# show a reward rise.
STUDY_LR = 5e-3

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (the study has a handful of seeds).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
MEASURES = ("final_reward", "steps_to_threshold", "auc")


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its 95% t-interval over ``values`` (seeds); the interval is the mean itself for one value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = (_T975[n - 2] if n - 2 < len(_T975) else 1.96) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Run:
    task: str
    method: str
    seed: int

    def folder(self, root: Path) -> Path:
        return root / "runs" / self.task / self.method / f"seed{self.seed}"


def plan_runs(plan: dict[str, Sequence[str]], seeds: int) -> list[Run]:
    return [Run(task, method, seed) for task, methods in plan.items() for method in methods for seed in range(seeds)]


def run_one(run: Run, root: Path, steps: int, timeout: float) -> list[dict]:
    """Train (or reuse) one run; its metric records."""
    from verl_lambda.cpu.launch import run as launch

    folder = run.folder(root)
    records = read_metrics(folder / "metrics.jsonl")
    if records and records[-1]["step"] == steps:
        return records
    return launch(
        folder,
        steps,
        METHODS[run.method][1],
        task=run.task,
        seed=run.seed,
        rollout=ROLLOUT,
        lr=STUDY_LR,
        quiet=True,
        timeout=timeout,
    )


def measures(rewards: Sequence[float], threshold: float, steps: int) -> dict[str, float]:
    """One run's final reward (mean of the last steps), steps to ``threshold`` (of a 3-step running mean; steps + 1
    if never reached) and area under the reward curve (the mean over all steps)."""
    smooth = [sum(rewards[max(0, i - 2) : i + 1]) / len(rewards[max(0, i - 2) : i + 1]) for i in range(len(rewards))]
    final = rewards[-FINAL_WINDOW:]
    return {
        "final_reward": sum(final) / len(final),
        "steps_to_threshold": float(next((i + 1 for i, v in enumerate(smooth) if v >= threshold), steps + 1)),
        "auc": sum(rewards) / len(rewards),
    }


def summarise(records_of: dict[Run, list[dict]], steps: int) -> dict:
    """Per task and method: final reward, steps to threshold and AUC with intervals, and differences to GRPO."""
    results: dict = {}
    for task in dict.fromkeys(run.task for run in records_of):
        rewards = {run: [r[REWARD] for r in records] for run, records in records_of.items() if run.task == task}
        start = sum(series[0] for series in rewards.values()) / len(rewards)
        best = max(measures(series, math.inf, steps)["final_reward"] for series in rewards.values())
        threshold = start + (best - start) / 2  # half-way from the start to the best run's final reward
        per_run = {run: measures(series, threshold, steps) for run, series in rewards.items()}
        task_result: dict = {"threshold": threshold, "methods": {}}
        for method in dict.fromkeys(run.method for run in rewards):
            seeds = {run.seed: per_run[run] for run in rewards if run.method == method}
            entry: dict = {key: interval([m[key] for m in seeds.values()]) for key in MEASURES}
            entry["seeds"] = len(seeds)
            base = {run.seed: per_run[run] for run in rewards if run.method == BASELINE}
            paired = sorted(set(seeds) & set(base))
            if method != BASELINE and paired:
                entry["vs_grpo"] = {key: interval([seeds[s][key] - base[s][key] for s in paired]) for key in MEASURES}
            task_result["methods"][method] = entry
        results[task] = task_result
    return results


def curves(records_of: dict[Run, list[dict]], task: str, out_png: Path) -> Path:
    """Mean over seeds and 95% band per step, one line per method, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {run: records for run, records in records_of.items() if run.task == task}
    shown = [(label, key) for label, key in CURVES if any(key in r for records in runs.values() for r in records)]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    for ax, (label, key) in zip(axes[0], shown, strict=True):
        for method in dict.fromkeys(run.method for run in runs):
            series = [[r[key] for r in records if key in r] for run, records in runs.items() if run.method == method]
            series = [s for s in series if s]
            if not series:
                continue
            length = min(len(s) for s in series)
            stats = [interval([s[i] for s in series]) for i in range(length)]
            steps = list(range(1, length + 1))
            color = f"C{list(METHODS).index(method)}"  # one colour per method in every panel and plot
            ax.plot(steps, [m for m, _, _ in stats], label=METHODS[method][0], color=color)
            ax.fill_between(steps, [lo for _, lo, _ in stats], [hi for _, _, hi in stats], alpha=0.15, color=color)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{task}: mean over seeds and 95% band")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def _cell(stat: tuple[float, float, float], digits: int = 3) -> str:
    mean, low, high = stat
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def table(results: dict) -> str:
    """``results`` as Markdown: one table per task."""
    header = ["method", "seeds", "final reward", "steps to threshold", "AUC"]
    header += ["Δ final vs GRPO", "Δ steps vs GRPO", "Δ AUC vs GRPO"]
    digits = {"final_reward": 3, "steps_to_threshold": 1, "auc": 3}
    lines = []
    for task, task_result in results.items():
        lines += [
            f"### {task}",
            "",
            f"Threshold for 'steps to threshold': mean reward {task_result['threshold']:.3f} (half-way from the start "
            "to the best run's final reward; a 3-step running mean; runs that never reach it count as steps + 1).",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for method, entry in task_result["methods"].items():
            cells = [METHODS[method][0], str(entry["seeds"])]
            cells += [_cell(entry[key], digits[key]) for key in MEASURES]
            deltas = entry.get("vs_grpo")
            cells += [_cell(deltas[key], digits[key]) if deltas else "—" for key in MEASURES]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/study"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 steps, GRPO and λ-GRPO on lengths-long")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    args = parser.parse_args(argv)
    plan, seeds, steps = (QUICK_PLAN, 1, 3) if args.quick else (PLAN, args.seeds, args.steps)
    root = args.out.resolve()
    runs = plan_runs(plan, seeds)
    print(f"study: {len(runs)} runs of {steps} steps ({seeds} seeds), output in {root}", flush=True)
    started, records_of = time.monotonic(), {}
    for index, run in enumerate(runs):
        began = time.monotonic()
        records_of[run] = run_one(run, root, steps, args.timeout)
        final = records_of[run][-1]
        elapsed = time.monotonic() - started
        remaining = elapsed / (index + 1) * (len(runs) - index - 1)
        print(
            f"[{index + 1}/{len(runs)}] {run.task} {run.method} seed {run.seed}: final reward "
            f"{final.get(REWARD, math.nan):.3f}, λ {final.get('actor/lambda_grpo/lambda', math.nan):+.3f} "
            f"({time.monotonic() - began:.0f}s; about {remaining / 60:.0f} min left)",
            flush=True,
        )
    results = summarise(records_of, steps)
    for task in plan:
        curves(records_of, task, root / f"{task}.png")
    (root / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (root / "results.md").write_text(table(results))
    print(table(results))
    print(f"done in {(time.monotonic() - started) / 60:.1f} min: {root}")


if __name__ == "__main__":
    main()
