"""A multi-seed study of the methods on CPU, with verl's real trainer: ``python -m verl_lambda.study``.

It trains the warm-started tiny model (``verl_lambda.toy.warm_start``) on the chain tasks (``verl_lambda.toy.task``:
``chain-long`` stops early, ``chain-short`` runs past the end) with ``python -m verl.trainer.main_ppo``, and answers
three questions, each with its own runs, figure and family of comparisons (``QUESTIONS``):

- ``ablation``: what GRPO-λ's gain is made of. GRPO, GRPO + the negative-advantage clamp, GRPO-λ, GRPO-λ without the
  clamp (a 2 × 2 design: trace × clamp), GRPO-λ's ``both`` style, and GRPO at GRPO-λ's step size (its learning rate
  scaled by the ratio of the two methods' update norms, ``matched_lr``); 5 seeds.
- ``lambda_lr``: λ-GRPO at λ learning rates that move the weights well beyond ±5% (0.01, 0.05, 0.2); 3 seeds.
- ``dapo``: λ-GRPO against the λ-GRPO paper's DAPO (token-mean only) and DAPO with clip-higher; 5 seeds.

Runs are paired by seed: runs with the same seed see the same data order and the same warm start. Each question's
comparisons on one task form a family: their paired t-tests' p-values are Holm-adjusted and their intervals are
Bonferroni-simultaneous (``verl_lambda.stats``), on the final reward (the mean of the last five steps). Per-step
curves are means over seeds with percentile bootstrap bands, clipped to each metric's range, and gaps where a value
is undefined (the weight-length correlation while all of a step's weights are equal).

Written to ``--out`` (default ``docs/study``), once every run of the selected questions is complete:

- ``<question>.png`` (the curves: one row per metric, one column per task) and ``<question>-effects.png`` (each
  comparison's paired effect with its simultaneous interval);
- ``results.json`` and ``results.md``: per question, task and arm the measures (mean and 95% t-interval over seeds),
  and per comparison its effect, simultaneous interval, p-value and Holm-adjusted p-value;
- ``runs/<task>/<arm>/seed<k>/``: each run's ``metrics.jsonl`` (every metric verl logged, with the task's per-step
  |length − target|), command and summary; its ``train.log`` and rollout dumps are not committed.

Resumable and run in parts: a run whose metrics are complete is never recomputed, and ``--hours H`` starts no run
after H hours, so ``python -m verl_lambda.study --hours 2`` repeated until it writes the results runs the whole study
in parts of at most two hours. ``--quick`` (one seed, three steps, GRPO and GRPO-λ on
``chain-long``) checks the whole pipeline in a few minutes; the test suite runs it.

Layer 7 (applications).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from verl_lambda import stats
from verl_lambda.metrics import read_metrics
from verl_lambda.presets import LAMBDA_GRPO_OPTION
from verl_lambda.toy.task import LENGTH_GAP_KEY

TASKS = ("chain-long", "chain-short")
# The light rollout: the study compares the methods, not the generation engines (the demo and the vllm tests run
# verl's vLLM rollout), and it leaves memory to spare on a 2-core, 24 GB machine.
ROLLOUT = "hf"
STEPS = 30
FINAL_WINDOW = 5
# The actor's learning rate: faster than the demo's (verl_lambda.cpu.launch.TASK_LR), so that 30 steps show most of
# the rise of the reward.
STUDY_LR = 5e-3

REWARD = "critic/score/mean"
LENGTH = "response_length/mean"
UPDATE_NORM = "actor/update_norm"  # the CPU backend's: ‖θ_after − θ_before‖ of one optimizer step
LAMBDA = "actor/lambda_grpo/lambda"
CORR = "actor/lambda_grpo/weight_length_corr"
SHARE = "actor/lambda_grpo/max_weight_share"


@dataclass(frozen=True)
class Arm:
    """One configuration of the study: a preset (``verl_lambda.presets``) and what the study changes in it."""

    name: str
    label: str
    preset: str
    lambda_lr: float | None = None  # λ's own Adam learning rate (lambda_grpo.lr; the preset's default 0.01 if None)
    matched_to: str | None = None  # run at this arm's update norm: STUDY_LR scaled by the norms' ratio (matched_lr)


ARMS = {
    arm.name: arm
    for arm in (
        Arm("grpo", "GRPO", "grpo"),
        Arm("grpo_clamp", "GRPO + clamp", "grpo_clamp"),
        Arm("grpo_lambda", "GRPO-λ", "grpo_lambda"),
        Arm("grpo_lambda_noclamp", "GRPO-λ, no clamp", "grpo_lambda_noclamp"),
        Arm("grpo_lambda_both", "GRPO-λ (both)", "grpo_lambda_both"),
        Arm("grpo_matched", "GRPO at GRPO-λ's step", "grpo", matched_to="grpo_lambda"),
        Arm("lambda_grpo", "λ-GRPO (λ lr 0.01)", "lambda_grpo"),
        Arm("lambda_grpo_lr0.05", "λ-GRPO (λ lr 0.05)", "lambda_grpo", lambda_lr=0.05),
        Arm("lambda_grpo_lr0.2", "λ-GRPO (λ lr 0.2)", "lambda_grpo", lambda_lr=0.2),
        Arm("dapo_token_mean", "DAPO (token-mean)", "dapo_token_mean"),
        Arm("dapo_clip_higher", "DAPO (clip-higher)", "dapo_clip_higher"),
    )
}


@dataclass(frozen=True)
class Comparison:
    """A paired contrast: per seed, Σ coefficient × the arm's measure (e.g. {"a": 1, "b": -1} is a − b)."""

    name: str
    coefficients: dict[str, float]


@dataclass(frozen=True)
class Panel:
    label: str  # the y-axis label, with its unit
    key: str
    lower: float = -math.inf  # the metric's possible range: bands are clipped to it
    upper: float = math.inf


@dataclass(frozen=True)
class Question:
    name: str
    title: str
    arms: tuple[str, ...]
    seeds: dict[str, int]  # arm -> seeds when it differs from ``default_seeds``
    default_seeds: int
    comparisons: tuple[Comparison, ...]
    panels: tuple[Panel, ...]
    tasks: tuple[str, ...] = TASKS
    steps: int = STEPS

    def seeds_of(self, arm: str) -> int:
        return self.seeds.get(arm, self.default_seeds)


_REWARD_PANEL = Panel("mean reward", REWARD, 0.0, 1.0)
_GAP_PANEL = Panel("|length − target| (tokens)", LENGTH_GAP_KEY, 0.0, 32.0)
_LENGTH_PANEL = Panel("response length (tokens)", LENGTH, 0.0, 32.0)
_ABLATION = (
    Comparison("GRPO-λ − GRPO (total)", {"grpo_lambda": 1, "grpo": -1}),
    Comparison(
        "clamp (main effect)", {"grpo_clamp": 0.5, "grpo_lambda": 0.5, "grpo": -0.5, "grpo_lambda_noclamp": -0.5}
    ),
    Comparison(
        "trace (main effect)", {"grpo_lambda_noclamp": 0.5, "grpo_lambda": 0.5, "grpo": -0.5, "grpo_clamp": -0.5}
    ),
    Comparison(
        "trace × clamp (interaction)", {"grpo_lambda": 1, "grpo_lambda_noclamp": -1, "grpo_clamp": -1, "grpo": 1}
    ),
    Comparison("GRPO at GRPO-λ's step − GRPO", {"grpo_matched": 1, "grpo": -1}),
    Comparison("GRPO-λ − GRPO at its step", {"grpo_lambda": 1, "grpo_matched": -1}),
    Comparison("GRPO-λ both − recent", {"grpo_lambda_both": 1, "grpo_lambda": -1}),
)
QUESTIONS = {
    q.name: q
    for q in (
        Question(
            "ablation",
            "What GRPO-λ's gain is made of",
            ("grpo", "grpo_clamp", "grpo_lambda", "grpo_lambda_noclamp", "grpo_lambda_both", "grpo_matched"),
            {},
            5,
            _ABLATION,
            (
                _REWARD_PANEL,
                _GAP_PANEL,
                Panel("update norm ‖Δθ‖ per step", UPDATE_NORM, 0.0),
                Panel("clamped advantages (fraction)", "actor/grpo_lambda/clamped_adv_frac", 0.0, 1.0),
            ),
        ),
        Question(
            "lambda_lr",
            "λ at a size where it matters",
            ("grpo", "lambda_grpo", "lambda_grpo_lr0.05", "lambda_grpo_lr0.2"),
            {},
            3,
            tuple(
                Comparison(f"{ARMS[arm].label} − GRPO", {arm: 1, "grpo": -1})
                for arm in ("lambda_grpo", "lambda_grpo_lr0.05", "lambda_grpo_lr0.2")
            ),
            (
                _REWARD_PANEL,
                _GAP_PANEL,
                Panel("λ", LAMBDA),
                Panel("largest weight share of a group", SHARE, 0.0, 1.0),
                Panel("corr(weight, length)", CORR, -1.0, 1.0),
            ),
        ),
        Question(
            "dapo",
            "λ-GRPO against GRPO and DAPO",
            ("grpo", "lambda_grpo", "dapo_token_mean", "dapo_clip_higher"),
            {},
            5,
            (
                Comparison("λ-GRPO − GRPO", {"lambda_grpo": 1, "grpo": -1}),
                Comparison("DAPO (token-mean) − GRPO", {"dapo_token_mean": 1, "grpo": -1}),
                Comparison("DAPO (clip-higher) − GRPO", {"dapo_clip_higher": 1, "grpo": -1}),
                Comparison("λ-GRPO − DAPO (token-mean)", {"lambda_grpo": 1, "dapo_token_mean": -1}),
                Comparison("λ-GRPO − DAPO (clip-higher)", {"lambda_grpo": 1, "dapo_clip_higher": -1}),
            ),
            (_REWARD_PANEL, _GAP_PANEL, _LENGTH_PANEL, Panel("policy entropy (nats per token)", "actor/entropy", 0.0)),
        ),
    )
}
QUICK = Question(  # the matched arm's launch is tested without training (tests/test_study.py)
    "quick",
    "The pipeline, quickly",
    ("grpo", "grpo_lambda"),
    {},
    1,
    (Comparison("GRPO-λ − GRPO (total)", {"grpo_lambda": 1, "grpo": -1}),),
    (_REWARD_PANEL, _GAP_PANEL, Panel("update norm ‖Δθ‖ per step", UPDATE_NORM, 0.0)),
    tasks=("chain-long",),
    steps=3,
)
MEASURES = ("final_reward", "auc", "final_gap", "final_length")


@dataclass(frozen=True)
class Run:
    task: str
    arm: str
    seed: int

    def folder(self, root: Path) -> Path:
        return root / "runs" / self.task / self.arm / f"seed{self.seed}"


def plan_runs(questions: Sequence[Question]) -> list[Run]:
    """Every run the questions need, each once (arms shared between questions are run once, with the most seeds any
    of them asks for), in an order where a matched arm comes after the arms it is matched from."""
    seeds: dict[tuple[str, str], int] = {}
    for q in questions:
        for task in q.tasks:
            for arm in q.arms:
                seeds[(task, arm)] = max(seeds.get((task, arm), 0), q.seeds_of(arm))
    runs = [Run(task, arm, seed) for (task, arm), n in seeds.items() for seed in range(n)]
    return sorted(runs, key=lambda run: ARMS[run.arm].matched_to is not None)  # stable: the plan's order otherwise


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and its 95% t-interval over ``values`` (seeds); the interval is the mean itself for one value."""
    return stats.simultaneous_interval(values, family=1)


def matched_lr(root: Path, task: str, arm: Arm, steps: int) -> tuple[float, dict]:
    """The learning rate at which GRPO takes ``arm.matched_to``'s steps: STUDY_LR × r, with r the ratio of the two
    methods' update norms (the median over steps of each run, then the median over the seeds run so far).

    With Adam the update norm is proportional to the learning rate (tests/test_update_norm.py), so scaling GRPO's
    learning rate by r gives it the other method's step size, whatever the two methods' gradient norms."""
    norms = {}
    for name in (arm.matched_to, "grpo"):
        folders = sorted((root / "runs" / task / name).glob("seed*"))
        per_run = [
            statistics.median([r[UPDATE_NORM] for r in records]) for f in folders if (records := _complete(f, steps))
        ]
        if not per_run:
            raise RuntimeError(f"{arm.name} on {task}: no complete {name} run to match the step size to")
        norms[name] = statistics.median(per_run)
    ratio = norms[arm.matched_to] / norms["grpo"]
    return STUDY_LR * ratio, {"update_norm": norms, "ratio": ratio, "lr": STUDY_LR * ratio}


def _complete(folder: Path, steps: int) -> list[dict]:
    """A finished run's records, with each step's |length − target|; [] if it has not logged its last step."""
    from verl_lambda.cpu.launch import with_length_gaps

    records = read_metrics(folder / "metrics.jsonl")
    return with_length_gaps(records, folder) if records and records[-1]["step"] == steps else []


def run_one(run: Run, root: Path, steps: int, timeout: float) -> list[dict]:
    """Train (or reuse) one run; its metric records."""
    from verl_lambda.cpu.launch import run as launch

    folder = run.folder(root)
    if records := _complete(folder, steps):
        return records
    arm = ARMS[run.arm]
    lr, extra = STUDY_LR, []
    if arm.matched_to is not None:
        lr, matching = matched_lr(root, run.task, arm, steps)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "matched.json").write_text(json.dumps(matching, indent=1) + "\n")
    if arm.lambda_lr is not None:
        extra.append(f"{LAMBDA_GRPO_OPTION}.lr={arm.lambda_lr}")
    return launch(
        folder,
        steps,
        arm.preset,
        task=run.task,
        seed=run.seed,
        rollout=ROLLOUT,
        lr=lr,
        extra=extra,
        quiet=True,
        timeout=timeout,
    )


def value(record: dict, key: str) -> float | None:
    """``record[key]``, or None where it is undefined: missing, NaN, or the weight-length correlation of a step whose
    weights are all equal (λ = 0, or every group's lengths equal), which λ-GRPO logs as 0."""
    if key == CORR and record.get("actor/lambda_grpo/weight_min") == record.get("actor/lambda_grpo/weight_max"):
        return None
    v = record.get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def measures(records: Sequence[dict]) -> dict[str, float]:
    """One run's final reward, |length − target| and length (means of the last FINAL_WINDOW steps) and area under
    the reward curve (the mean reward over all steps)."""
    final = records[-FINAL_WINDOW:]
    return {
        "final_reward": statistics.fmean(r[REWARD] for r in final),
        "auc": statistics.fmean(r[REWARD] for r in records),
        "final_gap": statistics.fmean(r[LENGTH_GAP_KEY] for r in final),
        "final_length": statistics.fmean(r[LENGTH] for r in final),
    }


def compare(per_seed: dict[str, dict[int, float]], comparisons: Sequence[Comparison]) -> list[dict]:
    """Each comparison's paired effect over the seeds every arm in it has, with its Bonferroni-simultaneous 95%
    interval (the family: ``comparisons``), its paired t-test's p-value and the Holm-adjusted p-value."""
    rows = []
    for c in comparisons:
        seeds = sorted(set.intersection(*(set(per_seed[arm]) for arm in c.coefficients)))
        effects = [sum(k * per_seed[arm][s] for arm, k in c.coefficients.items()) for s in seeds]
        mean, low, high = stats.simultaneous_interval(effects, family=len(comparisons))
        rows.append(
            {"name": c.name, "seeds": len(seeds), "effect": mean, "low": low, "high": high,
             "p": stats.paired_p_value(effects)}
        )  # fmt: skip
    for row, adjusted in zip(rows, stats.holm([row["p"] for row in rows]), strict=True):
        row["p_holm"] = adjusted
    return rows


def summarise(question: Question, records_of: dict[Run, list[dict]], root: Path | None = None) -> dict:
    """Per task: each arm's measures (mean and 95% t-interval over its seeds), the family of comparisons on the
    final reward, and (with ``root``) how each matched arm's learning rate was set."""
    result: dict = {"title": question.title, "tasks": {}}
    for task in question.tasks:
        # the question's own seeds of each arm (an arm another question shares may have run more)
        runs = {
            run: records
            for run, records in records_of.items()
            if run.task == task and run.arm in question.arms and run.seed < question.seeds_of(run.arm)
        }
        per_run = {run: measures(records) for run, records in runs.items()}
        arms = {}
        for arm in question.arms:
            own = [m for run, m in per_run.items() if run.arm == arm]
            arms[arm] = {key: interval([m[key] for m in own]) for key in MEASURES} | {"seeds": len(own)}
        finals = {
            arm: {run.seed: m["final_reward"] for run, m in per_run.items() if run.arm == arm} for arm in question.arms
        }
        result["tasks"][task] = {"arms": arms, "comparisons": compare(finals, question.comparisons)}
        if root is not None:  # how each matched run's learning rate was set
            for run in sorted(runs, key=lambda r: r.seed):
                if ARMS[run.arm].matched_to and (file := run.folder(root) / "matched.json").exists():
                    matched = result["tasks"][task].setdefault("matched", {}).setdefault(run.arm, {})
                    matched[f"seed{run.seed}"] = json.loads(file.read_text())
    return result


def figure(question: Question, records_of: dict[Run, list[dict]], out_png: Path) -> Path:
    """The curves: one row per metric, one column per task; per arm the mean over seeds and its bootstrap band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(question.panels), len(question.tasks)
    fig, axes = plt.subplots(rows, cols, figsize=(8, 1.9 * rows + 0.9), squeeze=False, sharex=True)
    for col, task in enumerate(question.tasks):
        for row, panel in enumerate(question.panels):
            ax = axes[row][col]
            for arm in question.arms:
                series = [
                    [value(r, panel.key) for r in records]
                    for run, records in records_of.items()
                    if run.task == task and run.arm == arm and run.seed < question.seeds_of(arm)
                ]
                band = stats.bootstrap_band(series, panel.lower, panel.upper)
                if all(b is None for b in band):
                    continue
                steps = list(range(1, len(band) + 1))
                color = f"C{list(ARMS).index(arm) % 10}"  # one colour per arm in every figure
                mean = [b[0] if b else math.nan for b in band]  # NaN: a gap in the line
                ax.plot(steps, mean, color=color, lw=1.3, label=ARMS[arm].label)
                low, high = [b[1] if b else math.nan for b in band], [b[2] if b else math.nan for b in band]
                ax.fill_between(steps, low, high, color=color, alpha=0.15, lw=0)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            if col == 0:
                ax.set_ylabel(panel.label, fontsize=8)
            if row == 0:
                ax.set_title(task, fontsize=10)
            if row == rows - 1:
                ax.set_xlabel("training step", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{question.title}: mean over seeds, 95% bootstrap band", fontsize=10)
    legend_rows = math.ceil(len(labels) / 3)
    fig.tight_layout(rect=(0, 0.035 * legend_rows + 0.01, 1, 1))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def effects_figure(question: Question, result: dict, out_png: Path) -> Path:
    """Each comparison's paired effect on the final reward with its simultaneous interval, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c in question.comparisons]
    fig, axes = plt.subplots(1, len(question.tasks), figsize=(8, 0.45 * len(names) + 1.4), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], question.tasks, strict=True):
        rows = result["tasks"][task]["comparisons"]
        y = list(range(len(rows)))[::-1]
        ax.errorbar(
            [r["effect"] for r in rows],
            y,
            xerr=[[r["effect"] - r["low"] for r in rows], [r["high"] - r["effect"] for r in rows]],
            fmt="o",
            color="C0",
            capsize=3,
        )
        for yi, r in zip(y, rows, strict=True):
            ax.annotate(f"Holm p {r['p_holm']:.2f}", (r["effect"], yi), textcoords="offset points", xytext=(0, 5),
                        ha="center", fontsize=7)  # fmt: skip
        ax.set_ylim(-0.6, len(rows) - 0.3)  # room for the top row's label
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("Δ final reward (paired by seed)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].set_yticks(list(range(len(names)))[::-1], names, fontsize=8)
    fig.suptitle(f"{question.title}: effects with Bonferroni-simultaneous 95% intervals", fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def _cell(stat: Sequence[float], digits: int = 3) -> str:
    mean, low, high = stat
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def table(results: dict) -> str:
    """``results`` as Markdown: per question and task, the arms' measures and the comparisons."""
    lines = []
    for name, result in results.items():
        lines += [f"## {result['title']} (`{name}`)", ""]
        for task, entry in result["tasks"].items():
            lines += [
                f"### {task}",
                "",
                "| arm | seeds | final reward | AUC | final abs(length − target) | final length |",
                "|---|---|---|---|---|---|",
            ]
            for arm, m in entry["arms"].items():
                cells = [ARMS[arm].label, str(m["seeds"]), *(_cell(m[k], 2 if "length" in k or "gap" in k else 3)
                         for k in MEASURES)]  # fmt: skip
                lines.append("| " + " | ".join(cells) + " |")
            lines += [
                "",
                "| comparison (final reward) | seeds | effect [simultaneous 95%] | p | p, Holm |",
                "|---|---|---|---|---|",
            ]
            for r in entry["comparisons"]:
                lines.append(
                    f"| {r['name']} | {r['seeds']} | {r['effect']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] | "
                    f"{r['p']:.3f} | {r['p_holm']:.3f} |"
                )
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/study"))
    parser.add_argument("--questions", nargs="+", choices=list(QUESTIONS), default=list(QUESTIONS))
    parser.add_argument("--hours", type=float, default=math.inf, help="start no run after this many hours")
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 steps, GRPO and GRPO-λ on chain-long")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    args = parser.parse_args(argv)
    questions = [QUICK] if args.quick else [QUESTIONS[name] for name in args.questions]
    steps = questions[0].steps
    root = args.out.resolve()
    runs = plan_runs(questions)
    # finished runs are read once, here; the others are trained in plan order
    records_of = {run: records for run in runs if (records := _complete(run.folder(root), steps))}
    pending = [run for run in runs if run not in records_of]
    print(f"study: {len(runs)} runs of {steps} steps, {len(records_of)} complete; output in {root}", flush=True)
    started, trained = time.monotonic(), []  # seconds of each run trained in this invocation
    for run in pending:
        if time.monotonic() - started > args.hours * 3600:
            left = len(pending) - len(trained)
            print(f"study: --hours {args.hours} reached; {left} runs left, run the same command again", flush=True)
            return 0
        began = time.monotonic()
        records_of[run] = run_one(run, root, steps, args.timeout)
        trained.append(time.monotonic() - began)
        left = len(pending) - len(trained)
        final = records_of[run][-1]
        print(
            f"[{len(runs) - left}/{len(runs)}] {run.task} {run.arm} seed {run.seed}: last step's reward "
            f"{final.get(REWARD, math.nan):.3f}, |length − target| {final.get(LENGTH_GAP_KEY, math.nan):.2f} "
            f"({trained[-1]:.0f}s; {left} runs, about {statistics.fmean(trained) * left / 60:.0f} min left)",
            flush=True,
        )
    results = {q.name: summarise(q, records_of, root) for q in questions}
    for q in questions:
        figure(q, records_of, root / f"{q.name}.png")
        effects_figure(q, results[q.name], root / f"{q.name}-effects.png")
    (root / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    (root / "results.md").write_text(table(results))
    print(table(results))
    print(f"done in {(time.monotonic() - started) / 60:.1f} min: {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
