r"""The papers' table from the runs' results: mean ± std over seeds, and paired bootstrap intervals against GRPO.

    python -m verl_lambda.reproduce.report outputs/                       # every run and evaluation below outputs/
    python -m verl_lambda.reproduce.report outputs/ --kind eval           # only scripts/eval_ckpt.sh results
    python -m verl_lambda.reproduce.report outputs/ --step 0 --kind train # the base model (validation at step 0)
    python -m verl_lambda.reproduce.report outputs/ --metric acc_strict   # the strict checker's scores
    python -m verl_lambda.reproduce.report outputs/ --benchmarks aime24,math500,olympiadbench,minerva,amc23

**Inputs.** A result is a folder with verl's file-logger output (``metrics*.jsonl``; the launchers write
``<OUT_DIR>/metrics.jsonl``, keeping a resumed run's earlier segments as ``metrics.<time>.jsonl``) and, where
``trainer.validation_data_dir`` was set, per-problem dumps ``validation/<step>.jsonl`` (one line per response with
our reward's ``acc``, ``acc_strict``, ``acc_math_verify`` and ``problem``). A training run's folder has
``run.json`` (written by the launcher: model, method, data, prompt, checker, seed, ...); an evaluation's folder
(``scripts/eval_ckpt.sh``) has ``eval.json`` (the checkpoint, its step and the decoding settings). A JSONL file given
directly is a run too (labelled ``LABEL=`` or by its name). Directories are searched recursively.

**Rows.** Results that differ only in their seed are one row, labelled by the run name without ``-s<seed>``
(``qwen2.5-7b-grpo-math``), one row per kind (training-time validation, each evaluation setting). "Differ only in
their seed" is checked on everything a run recorded: ``run.json``'s settings and, when the launcher wrote it, the
resolved verl config of ``resolved_config.yaml`` (every option of both methods included; for an evaluation, the
evaluation's config and its training run's). Seeds, paths, run and experiment names and logger settings may differ
(:data:`IGNORED_SETTINGS`), and so may the options of a method the run does not use; results that share a label but
differ in anything else are never merged: each gets its own row, labelled with the differing keys, and a note names
every differing key (``--ignore-setting REGEX`` lets more keys differ, e.g. ``trainer\.nnodes``). A row shows, per
benchmark and for the unweighted average over the benchmarks shown (as the papers average), the mean ± sample
standard deviation over its seeds, in %. A seed's benchmark score is the mean over the benchmark's problems of the
problem's mean over its samples (avg@k), from the dumps; without dumps, verl's logged ``mean@N`` (the same number).
The step of each row is its last validated one (``--step`` chooses another); a warning says when rows, or the seeds
of a row, come from different steps. ``clip`` is the share of training responses that hit the length cap
(``response_length/clip_ratio``), mean of the last 10 training steps up to that step.

**Differences.** Each method's row is set against the row of ``--baseline`` (GRPO) with the same settings otherwise
(model, data, prompt, checker, evaluation). The difference per benchmark is the mean over seeds present in both and
problems scored in both of the per-problem difference (seed *s* of a method against seed *s* of the baseline: same
data order and rollout seed); the average is the mean over benchmarks. The 95% interval is a paired bootstrap
(:func:`paired_bootstrap`): each replicate resamples the paired seeds, and the problems of each benchmark, with
replacement. It needs the per-problem dumps.

**Published numbers.** A paper's published gain (:mod:`verl_lambda.reproduce.published`) is printed next to a
difference only when both rows were run in that paper's regime (``PAPER=`` of the launchers, recorded in
``run.json``), with one of its models and no regime-changing setting; otherwise the row says "not this paper's
regime" and why.

**Also printed:** the number of problems scored per benchmark (from the dumps; fewer than the benchmark has is
flagged), and SimpleRL-Zoo's published rows for the models in the table.

Layer 7 (applications).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verl_lambda.metrics import is_metrics_file, read_metrics
from verl_lambda.reproduce import published
from verl_lambda.reproduce.datasets import EVAL_SPECS

METRICS = ("acc", "acc_strict", "acc_math_verify")
TITLES = {spec.data_source: spec.title for spec in EVAL_SPECS.values()}
SIZES = {spec.data_source: spec.size for spec in EVAL_SPECS.values()}
ORDER = [spec.data_source for spec in EVAL_SPECS.values()]
_VAL = re.compile(r"^val-(?:core|aux)/(?P<source>.+)/(?P<metric>acc(?:_strict|_math_verify)?)/mean@(?P<n>\d+)$")
_SEED = re.compile(r"^(?P<name>.+)-s(?P<seed>\d+)$")
CONFIG_FILE = "resolved_config.yaml"
# Recorded settings that may differ within a row (keys of the flattened settings; "eval:" prefixes an evaluation's
# own config): seeds, paths, run and experiment names, logger settings.
IGNORED_SETTINGS: tuple[str, ...] = (
    r"(^|[.:])seed$",  # SEED, data.seed, actor_rollout_ref.rollout.seed
    r"(^|[.:])data_loader_seed$",
    r"^cpu$",
    r"^(eval:)?trainer\.(default_local_dir|validation_data_dir|rollout_data_dir|default_hdfs_dir)$",
    r"^(eval:)?trainer\.(experiment_name|project_name)$",
    r"^(eval:)?trainer\.(logger|log_val_generations)$",
    r"wandb",
    r"^(eval:)?ray_kwargs\.ray_init\.runtime_env\.env_vars\.",
    r"^(eval:)?hydra\.",
    r"^eval:actor_rollout_ref\.model\.path$",  # each seed's merged checkpoint (the model is the run's)
    r"^(eval_)?overrides$",
)
_FILE_KEYS = re.compile(r"^(eval:)?data\.(train|val)_files$")


# --------------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``ddof=1``; None for a single value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)


@dataclass
class Interval:
    estimate: float
    low: float
    high: float


def paired_bootstrap(
    diffs: Mapping[str, np.ndarray], reps: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[dict[str, Interval], Interval]:
    """Percentile bootstrap of paired differences, per benchmark and for their unweighted average.

    Args:
        diffs: per benchmark, a ``(seeds, problems)`` array of per-problem differences (method − baseline), every
            array with the same seeds in the same order.
        reps: bootstrap replicates.
        seed: of the generator (``numpy.random.default_rng``), so the interval is reproducible.
        level: coverage of the interval.

    Each replicate draws seed indices ``rng.integers(0, S, S)`` once (seeds shared by the benchmarks, since a seed
    moves every benchmark of a run), then for each benchmark in order problem indices ``rng.integers(0, P, P)``;
    the replicate's difference for a benchmark is the mean of ``d[s, p]`` over the drawn seeds and problems, and
    its average difference the mean over benchmarks.
    """
    names = list(diffs)
    if not names:
        raise ValueError("no benchmarks to bootstrap")
    seeds = {diffs[b].shape[0] for b in names}
    if len(seeds) != 1 or 0 in seeds or any(diffs[b].shape[1] == 0 for b in names):
        raise ValueError("every benchmark needs the same seeds and at least one problem")
    (n_seeds,) = seeds
    rng = np.random.default_rng(seed)
    samples = np.empty((reps, len(names)))
    for r in range(reps):
        seed_index = rng.integers(0, n_seeds, n_seeds)
        for j, b in enumerate(names):
            d = diffs[b]
            problem_index = rng.integers(0, d.shape[1], d.shape[1])
            samples[r, j] = d[:, problem_index].mean(axis=1)[seed_index].mean()
    tail = 100 * (1 - level) / 2
    lows, highs = np.percentile(samples, tail, axis=0), np.percentile(samples, 100 - tail, axis=0)
    per_benchmark = {b: Interval(float(diffs[b].mean()), float(lows[j]), float(highs[j])) for j, b in enumerate(names)}
    averages = samples.mean(axis=1)
    average = Interval(
        float(np.mean([diffs[b].mean() for b in names])),
        float(np.percentile(averages, tail)),
        float(np.percentile(averages, 100 - tail)),
    )
    return per_benchmark, average


# --------------------------------------------------------------------------------------------------------------
# Results: one run folder, evaluation folder or metrics file
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Scores:
    """One result's scores at one step."""

    step: int
    accuracy: dict[str, float]  # data_source -> accuracy in [0, 1]
    samples: dict[str, int]  # data_source -> samples per problem (the N of mean@N; the largest when they vary)
    problems: dict[str, dict[str, float]] = field(default_factory=dict)  # data_source -> problem -> mean score


@dataclass
class Result:
    path: Path
    kind: str  # "train" or "eval"
    label: str
    seed: int | None
    settings: dict[str, Any]
    metrics: dict[int, dict[str, Any]] = field(default_factory=dict)  # step -> every metric logged at that step
    checkpoint_step: int | None = None  # eval: the evaluated checkpoint's step
    config: dict[str, Any] = field(default_factory=dict)  # the resolved verl config(s), flattened; {} if none

    def recorded(self, ignore: Sequence[str] = ()) -> dict[str, Any]:
        """Everything this result recorded that must be equal within a row: settings and config, flattened, without
        :data:`IGNORED_SETTINGS` and ``ignore`` (regular expressions); with a config, the extra overrides are in it."""
        settings = dict(self.settings)
        if self.config:
            settings.pop("extra_overrides", None)
        flat = {**flatten(settings), **self.config}
        patterns = [re.compile(p) for p in (*IGNORED_SETTINGS, *ignore)]
        unused = _unused_options(self.settings.get("method_active") or {})
        return {
            k: v
            for k, v in flat.items()
            if not any(p.search(k) for p in patterns) and not k.split(":", 1)[-1].startswith(unused)
        }

    @property
    def validated_steps(self) -> list[int]:
        return sorted(s for s, m in self.metrics.items() if any(_VAL.match(k) for k in m))

    def dump(self, step: int) -> Path:
        return self.path / "validation" / f"{step}.jsonl"

    def clip_ratio(self, step: int, window: int = 10) -> float | None:
        """Mean ``response_length/clip_ratio`` of the last ``window`` training steps up to ``step``."""
        values = [m.get("response_length/clip_ratio") for s, m in sorted(self.metrics.items()) if s <= step]
        values = [v for v in values if isinstance(v, int | float)][-window:]
        return float(np.mean(values)) if values else None

    def scores(self, step: int, metric: str) -> Scores | None:
        """The scores at ``step`` (from the dump when there is one), None if the step was not validated."""
        if step not in self.validated_steps:
            return None
        dump = self.dump(step)
        if dump.exists():
            from_dump = scores_from_dump(dump, metric, step)
            if from_dump is not None:
                return from_dump
        return scores_from_metrics(self.metrics[step], metric, step)


def scores_from_metrics(metrics: Mapping[str, Any], metric: str, step: int) -> Scores:
    """Per-benchmark accuracy from verl's ``val-*/<data_source>/<metric>/mean@N`` (the largest N logged)."""
    accuracy: dict[str, float] = {}
    samples: dict[str, int] = {}
    for key, value in metrics.items():
        match = _VAL.match(key)
        if match and match["metric"] == metric and isinstance(value, int | float) and math.isfinite(value):
            source, n = match["source"], int(match["n"])
            if n >= samples.get(source, 0):
                accuracy[source], samples[source] = float(value), n
    return Scores(step, accuracy, samples)


def scores_from_dump(path: Path, metric: str, step: int) -> Scores | None:
    """Per-problem scores from a ``trainer.validation_data_dir`` dump (None if it lacks ``problem`` or ``metric``)."""
    per_problem: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
            problem, value = entry.get("problem"), entry.get(metric)
            if not problem or value is None:
                return None  # another reward function's dump: fall back to the logged means
            source = problem.rsplit("/", 1)[0]
            per_problem[source][problem].append(float(value))
    problems = {s: {p: float(np.mean(v)) for p, v in ps.items()} for s, ps in per_problem.items()}
    accuracy = {s: float(np.mean(list(ps.values()))) for s, ps in problems.items()}
    samples = {s: max(len(v) for v in ps.values()) for s, ps in per_problem.items()}
    return Scores(step, accuracy, samples, problems)


_OPTION_KEYS = {
    "lambda_grpo": ("method_options.lambda_grpo.", "actor_rollout_ref.actor.lambda_grpo."),
    "grpo_lambda": ("method_options.grpo_lambda.", "actor_rollout_ref.actor.policy_loss.grpo_lambda."),
}


def _unused_options(active: Mapping[str, bool]) -> tuple[str, ...]:
    """Key prefixes of the options of a method the run does not use (recorded, but nothing depends on them)."""
    return tuple(
        prefix for method, prefixes in _OPTION_KEYS.items() if active.get(method) is False for prefix in prefixes
    )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": leaf}`` (lists stay leaves)."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value} if prefix else {}


def _relative(value: Any, roots: Sequence[Path]) -> Any:
    """Paths under a result's own folders written relative to them (each seed has its own folder)."""
    if isinstance(value, str):
        for root in roots:
            if value.startswith(str(root) + "/") or value == str(root):
                return "<run>" + value[len(str(root)) :]
        return value
    if isinstance(value, list):
        return [_relative(v, roots) for v in value]
    return value


def _file_names(value: Any) -> Any:
    """Data files by their last two path components (a data folder is a path: it may differ between machines)."""
    if isinstance(value, str):
        return "/".join(Path(value).parts[-2:])
    if isinstance(value, list):
        return [_file_names(v) for v in value]
    return value


def load_config(folder: Path, prefix: str = "", roots: Sequence[Path] = ()) -> dict[str, Any]:
    """``folder/resolved_config.yaml`` flattened, keys prefixed with ``prefix``; {} when there is none."""
    path = folder / CONFIG_FILE
    if not path.exists():
        return {}
    import yaml

    flat = flatten(yaml.safe_load(path.read_text()) or {})
    roots = [folder.resolve(), *(r.resolve() for r in roots)]
    out = {}
    for key, value in flat.items():
        name = prefix + key
        out[name] = _file_names(value) if _FILE_KEYS.match(name) else _relative(value, roots)
    return out


def _load_metrics(files: Iterable[Path]) -> dict[int, dict[str, Any]]:
    """Merge file-logger files of one result, oldest first (a resumed run's later segment wins shared steps)."""
    merged: dict[int, dict[str, Any]] = {}
    for path in sorted(files, key=lambda p: (p.stat().st_mtime, p.name)):
        for record in read_metrics(path, missing_ok=False):
            merged.setdefault(record["step"], {}).update({k: v for k, v in record.items() if k != "step"})
    return merged


def _label_and_seed(name: str, seed: int | None) -> tuple[str, int | None]:
    match = _SEED.match(name)
    if match and (seed is None or int(match["seed"]) == seed):
        return match["name"], int(match["seed"])
    return name, seed


def load_result(path: Path, label: str | None = None) -> Result:
    """A result from a folder (run or evaluation) or a single metrics file."""
    if path.is_file():
        name = path.parent.resolve().name if path.stem.startswith("metrics") else path.stem
        base, seed = _label_and_seed(label or name, None)
        return Result(path.parent, "train", base, seed, {}, _load_metrics([path]))
    files = [f for f in path.glob("metrics*.jsonl") if is_metrics_file(f)]
    if (path / "eval.json").exists():
        record = json.loads((path / "eval.json").read_text())
        run = record.get("run") or {}
        run_settings = dict(run.get("settings", {}))
        seed = run_settings.get("seed")
        base, seed = _label_and_seed(label or record.get("label") or path.name, seed)
        settings = {**{k: v for k, v in run_settings.items() if k not in ("prompt", "checker")}, **record["settings"]}
        settings["eval"] = record.get("tag", "")
        label = f"{base} [{settings['eval']}]" if settings["eval"] else base
        run_dir = Path(record["run_dir"]) if record.get("run_dir") else None
        config = load_config(path, "eval:", [run_dir] if run_dir else [])
        if run_dir is not None and run_dir.is_dir():
            config.update(load_config(run_dir))  # the training run's config: what was trained
        return Result(path, "eval", label, seed, settings, _load_metrics(files), record.get("step"), config)
    run = json.loads((path / "run.json").read_text()) if (path / "run.json").exists() else {}
    settings = dict(run.get("settings", {}))
    base, seed = _label_and_seed(label or run.get("experiment") or path.name, settings.get("seed"))
    return Result(path, "train", base, seed, settings, _load_metrics(files), config=load_config(path))


def collect(arguments: Sequence[str]) -> list[Result]:
    """Results from ``PATH`` or ``LABEL=PATH`` arguments; a directory is searched for result folders."""
    results: list[Result] = []
    for argument in arguments:
        label, path = None, Path(argument).expanduser()
        if not path.exists() and "=" in argument:
            label, _, rest = argument.partition("=")
            path = Path(rest).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {path}")
        if path.is_file():
            results.append(load_result(path, label))
            continue
        folders = {f.parent for f in path.rglob("metrics*.jsonl") if is_metrics_file(f)}
        folders |= {f.parent for f in path.rglob("eval.json")}
        for folder in sorted(folders):
            results.append(load_result(folder, label))
    return results


# --------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    kind: str
    settings: dict[str, Any]
    members: list[tuple[Result, Scores]]  # one per seed, sorted by seed
    values: dict[str, tuple[float, float | None]]  # data_source -> (mean, std) over seeds, in %
    average: tuple[float, float | None] | None
    steps: list[int]
    samples: dict[str, int]
    clip: float | None

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r, _ in self.members]

    @property
    def algo(self) -> str | None:
        return self.settings.get("algo")

    def key_without(self, *names: str, method: bool = False) -> str:
        """The row's settings as a key, without ``names`` (and without every method key when ``method``)."""
        kept = {k: v for k, v in self.settings.items() if k not in names and not (method and is_method_key(k))}
        return json.dumps({"kind": self.kind, **kept}, sort_keys=True, default=str)

    def problems(self, source: str) -> list[int]:
        return [len(s.problems.get(source, {})) for _, s in self.members if s.problems]


_METHOD_PREFIXES = (
    "method_options.",
    "method_active.",
    "actor_rollout_ref.actor.lambda_grpo.",
    "actor_rollout_ref.actor.policy_loss.",
)


def is_method_key(key: str) -> bool:
    """A recorded key in which a method's run may differ from its baseline's: the preset and both methods' options."""
    from verl_lambda.presets import method_keys

    bare = key.split(":", 1)[-1]
    return bare == "algo" or bare.startswith(_METHOD_PREFIXES) or bare in method_keys()


def differing_keys(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys whose values are not the same in every one of ``settings`` (a key some lack counts)."""
    keys = sorted({k for s in settings for k in s})
    missing = object()
    return [k for k in keys if len({json.dumps(s.get(k, missing), default=repr) for s in settings}) > 1]


def _step_order(step: int | None) -> tuple[bool, int]:
    return step is None, step or 0


def _chosen_step(result: Result, step: str) -> int | None:
    steps = result.validated_steps
    if not steps:
        return None
    if result.kind == "eval" or step == "last":
        return steps[-1]
    return int(step) if int(step) in steps else None


def build_rows(
    results: Sequence[Result],
    step: str = "last",
    metric: str = "acc",
    columns: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
) -> tuple[list[str], list[Row], list[str]]:
    """``(columns, rows, warnings)``: rows group results that differ only in their seed (and in the settings of
    :data:`IGNORED_SETTINGS` and ``ignore``); results with the same label whose other recorded settings differ are
    refused one row: a warning names every differing key."""
    warnings: list[str] = []
    groups: dict[str, list[tuple[Result, Scores]]] = {}
    labels: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for result in results:
        at = _chosen_step(result, step)
        scores = result.scores(at, metric) if at is not None else None
        if scores is None or not scores.accuracy:
            warnings.append(f"{result.path}: no {metric} validation at step {step}; left out")
            continue
        settings = result.recorded(ignore)
        key = json.dumps([result.kind, result.label, settings], sort_keys=True, default=str)
        members = groups.setdefault(key, [])
        if any(r.seed == result.seed for r, _ in members):
            warnings.append(f"{result.path}: a second result for {result.label} seed {result.seed}; left out")
            continue
        members.append((result, scores))
        labels[key] = (result.label, result.kind, settings)
    sources = {s for members in groups.values() for _, sc in members for s in sc.accuracy}
    if columns:
        chosen = [EVAL_SPECS[c].data_source if c in EVAL_SPECS else c for c in columns]
    else:
        chosen = [s for s in ORDER if s in sources] + sorted(sources - set(ORDER))
    rows = []
    for key, members in groups.items():
        label, kind, settings = labels[key]
        members.sort(key=lambda m: (m[0].seed is None, m[0].seed or 0))
        values = {}
        for c in chosen:
            per_seed = [100 * sc.accuracy[c] for _, sc in members if c in sc.accuracy]
            if len(per_seed) == len(members):
                values[c] = mean_std(per_seed)
        complete = all(c in sc.accuracy for _, sc in members for c in chosen)
        averages = [100 * float(np.mean([sc.accuracy[c] for c in chosen])) for _, sc in members] if complete else []
        samples = {c: max(sc.samples.get(c, 0) for _, sc in members) for c in chosen}
        steps = sorted({(r.checkpoint_step if r.kind == "eval" else sc.step) for r, sc in members}, key=_step_order)
        clips = [r.clip_ratio(sc.step) for r, sc in members if r.kind == "train"]
        clips = [c for c in clips if c is not None]
        rows.append(
            Row(
                label, kind, settings, members, values, mean_std(averages) if complete else None, steps, samples,
                float(np.mean(clips)) if clips else None,
            )
        )  # fmt: skip
    rows.sort(key=lambda r: (r.kind, r.label, json.dumps(r.settings, sort_keys=True, default=str)))
    warnings += refused_merges(rows)
    _disambiguate(rows)
    steps_seen = {tuple(r.steps) for r in rows}
    if len(steps_seen) > 1:
        warnings.append("rows come from different steps: " + ", ".join(f"{r.label}: {r.steps}" for r in rows))
    for r in rows:
        if len(r.steps) > 1:
            warnings.append(f"{r.label}: its seeds come from different steps {r.steps}")
        if len(r.members) < 3:
            warnings.append(f"{r.label}: {len(r.members)} seed(s); at least 3 per row are recommended")
    return chosen, rows, warnings


def _same_label(rows: Sequence[Row]) -> list[list[Row]]:
    by_label: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        by_label[(r.kind, r.label)].append(r)
    return [same for same in by_label.values() if len(same) > 1]


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def refused_merges(rows: Sequence[Row]) -> list[str]:
    """One note per label whose results were not merged into one row, naming every key their settings differ in."""
    notes = []
    for same in _same_label(rows):
        keys = differing_keys([r.settings for r in same])
        values = "; ".join(f"{k}: " + " | ".join(_short(r.settings.get(k, "(absent)")) for r in same) for k in keys)
        seeds = " | ".join(",".join(map(str, r.seeds)) for r in same)
        notes.append(
            f"{same[0].label}: not merged into one row ({len(same)} rows, seeds {seeds}): their recorded settings "
            f"differ in {len(keys)} key(s): {values}. Only seeds, paths, run names and logger settings may differ "
            "within a row (--ignore-setting REGEX to allow another key)"
        )
    return notes


def _disambiguate(rows: list[Row], shown: int = 3) -> None:
    """Rows that share a label but differ in settings get (the first few of) the differing settings in the label."""
    for same in _same_label(rows):
        differing = differing_keys([r.settings for r in same])
        more = f", … +{len(differing) - shown}" if len(differing) > shown else ""
        for r in same:
            r.label += " (" + ", ".join(f"{k}={_short(r.settings.get(k), 24)}" for k in differing[:shown]) + more + ")"


@dataclass
class Comparison:
    row: Row
    baseline: Row
    per_benchmark: dict[str, Interval | float]  # an Interval with dumps, else the difference of the means
    average: Interval | float | None
    seeds: list[int | None]
    note: str = ""


def compare(
    rows: Sequence[Row], columns: Sequence[str], baseline: str = "grpo", reps: int = 10_000
) -> tuple[list[Comparison], list[str]]:
    """Each row against the ``baseline`` algorithm's row with otherwise equal settings."""
    notes: list[str] = []
    comparisons = []
    for row in rows:
        if row.algo in (None, baseline):
            continue
        # The baseline with the same settings but the method's (its preset and both methods' options); its extra
        # overrides may differ too when the config records their effect.
        candidates = [b for b in rows if b.algo == baseline]
        base = next((b for b in candidates if b.key_without(method=True) == row.key_without(method=True)), None)
        loose = ("extra_overrides", "regime_changes")
        base = base or next(
            (b for b in candidates if b.key_without(*loose, method=True) == row.key_without(*loose, method=True)), None
        )
        if base is None:
            notes.append(f"{row.label}: no {baseline} row with the same settings to compare with")
            continue
        mine = {r.seed: sc for r, sc in row.members}
        theirs = {r.seed: sc for r, sc in base.members}
        seeds = [s for s in mine if s in theirs]
        if not seeds:
            notes.append(f"{row.label}: no seed in common with {base.label}")
            continue
        if set(mine) != set(theirs):
            notes.append(f"{row.label}: compared on the seeds both have, {seeds}")
        if all(mine[s].problems and theirs[s].problems for s in seeds):
            diffs, note = {}, ""
            for c in columns:
                common = set.intersection(
                    *(set(mine[s].problems.get(c, {})) & set(theirs[s].problems.get(c, {})) for s in seeds)
                )
                if not common:
                    continue
                order = sorted(common)
                diffs[c] = (
                    np.array([[mine[s].problems[c][p] - theirs[s].problems[c][p] for p in order] for s in seeds]) * 100
                )
            intervals, average = paired_bootstrap(diffs, reps=reps) if diffs else ({}, None)
            if len(diffs) < len(columns):
                note, average = "some benchmarks have no problems in common", None
            comparisons.append(Comparison(row, base, dict(intervals), average, seeds, note))
        else:
            per = {
                c: float(np.mean([mine[s].accuracy[c] - theirs[s].accuracy[c] for s in seeds])) * 100
                for c in columns
                if all(c in mine[s].accuracy and c in theirs[s].accuracy for s in seeds)
            }
            average = float(np.mean(list(per.values()))) if len(per) == len(columns) else None
            comparisons.append(Comparison(row, base, per, average, seeds, "no per-problem dumps: no interval"))
    return comparisons, notes


# --------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------


def _title(source: str, n: int) -> str:
    title = TITLES.get(source, source)
    return f"{title} (avg@{n})" if n > 1 else title


def _ms(value: tuple[float, float | None] | None) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def _diff(value: Interval | float | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, Interval):
        return f"{value.estimate:+.1f} [{value.low:+.1f}, {value.high:+.1f}]"
    return f"{value:+.1f}"


def _table(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in body)])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))

    return "\n".join([line(header), *(line(r) for r in body)])


def _model_of(row: Row) -> str | None:
    from verl_lambda.reproduce.launch import model_tag

    model = row.settings.get("model")
    return model_tag(str(model)) if model else None


def render(
    columns: Sequence[str],
    rows: Sequence[Row],
    comparisons: Sequence[Comparison],
    metric: str = "acc",
    baseline: str = "grpo",
    markdown: bool = False,
) -> str:
    samples = {c: max((r.samples.get(c, 1) for r in rows), default=1) for c in columns}
    header = ["row", "kind", "seeds", "step", *(_title(c, samples[c]) for c in columns), "Avg", "clip"]
    body = []
    for r in rows:
        seeds = ",".join("?" if s is None else str(s) for s in r.seeds)
        clip = "–" if r.clip is None else f"{100 * r.clip:.1f}%"
        # a row sampled another number of times than the column title says is marked "@N"
        cells = [
            _ms(r.values.get(c)) + (f" @{r.samples[c]}" if r.samples.get(c, 1) != samples[c] else "") for c in columns
        ]
        body.append([r.label, r.kind, seeds, "/".join(map(str, r.steps)), *cells, _ms(r.average), clip])
    out = [f"{metric}, in %: mean ± std over seeds (the seeds listed); a seed's score is avg@k over its problems"]
    out.append(_table(header, body, markdown))
    if comparisons:
        out += [
            "",
            f"difference to {baseline}, in points: estimate [95% paired bootstrap interval over problems and seeds]",
        ]
        header = ["row", "baseline", "seeds", *(TITLES.get(c, c) for c in columns), "Avg", "published", "note"]
        body = []
        for comp in comparisons:
            seeds = ",".join("?" if s is None else str(s) for s in comp.seeds)
            cells = [_diff(comp.per_benchmark.get(c)) for c in columns]
            claims = published_claims(comp.row, comp.baseline, baseline)
            claim = "; ".join(c.cell for c in claims) or "–"
            body.append([comp.row.label, comp.baseline.label, seeds, *cells, _diff(comp.average), claim, comp.note])
        out.append(_table(header, body, markdown))
    problem_rows = []
    for r in rows:
        counts = [r.problems(c) for c in columns]
        if not any(counts):
            continue
        cells = []
        for c, n in zip(columns, counts, strict=True):
            text = "–" if not n else (str(n[0]) if len(set(n)) == 1 else f"{min(n)}-{max(n)}")
            if n and SIZES.get(c) and max(n) < SIZES[c]:
                text += f" of {SIZES[c]}"
            cells.append(text)
        problem_rows.append([r.label, *cells])
    if problem_rows:
        out += ["", "problems scored (from the per-problem dumps)"]
        out.append(_table(["row", *(TITLES.get(c, c) for c in columns)], problem_rows, markdown))
    out += _published(rows, columns, comparisons, baseline)
    return "\n".join(out)


@dataclass
class Claim:
    """A paper's published gain (one or more numbers) and whether it may stand next to a row."""

    paper: str
    text: str  # the value(s) as the paper states them
    benchmarks: str
    source: str
    in_regime: bool
    why: str  # why not, when not

    @property
    def cell(self) -> str:
        return self.text if self.in_regime else "not this paper's regime"


def regime_problem(row: Row, paper: str, model: str | None = None) -> str:
    """Why ``row`` is not a run in ``paper``'s regime ("" when it is)."""
    ran = row.settings.get("paper")
    if ran is None:
        return "its run did not record a PAPER (an older launcher)"
    if ran != paper:
        return f"run with PAPER={ran}; this number comes from PAPER={paper}'s regime"
    if row.settings.get("cpu") or str(row.settings.get("model", "")).startswith("tiny"):
        return "a CPU wiring run"
    tag = _model_of(row)
    if model is not None and tag != model:
        return f"the number is for {model}, the row trains {tag}"
    if model is None and tag not in published.regime_models(paper):
        return f"{tag} is not one of PAPER={paper}'s models"
    changes = [c for c in row.settings.get("regime_changes") or [] if c]
    if changes:
        return "changed " + ", ".join(changes)
    return ""


def published_claims(row: Row, base: Row | None, baseline: str) -> list[Claim]:
    """The published gains of ``row``'s method over ``baseline``, one claim per paper, in or out of its regime."""
    by_paper: dict[str, list[tuple[published.PublishedDelta, str]]] = defaultdict(list)
    for d in published.deltas_for(row.algo or "", baseline):
        why = regime_problem(row, d.paper, d.model)
        if not why and base is not None:
            why = regime_problem(base, d.paper, d.model)
            why = f"the baseline: {why}" if why else ""
        if why and d.model is not None and row.settings.get("paper") == d.paper and _model_of(row) != d.model:
            continue  # a number for another size of the same regime
        by_paper[d.paper].append((d, why))
    claims = []
    for paper, found in by_paper.items():
        in_regime = [(d, why) for d, why in found if not why]
        kept, why = (in_regime, "") if in_regime else (found, found[0][1])
        first = kept[0][0]
        text = "; ".join(d.text for d, _ in kept)
        claims.append(Claim(paper, text, first.benchmarks, first.source, not why, why))
    return claims


def _published(
    rows: Sequence[Row], columns: Sequence[str], comparisons: Sequence[Comparison], baseline: str
) -> list[str]:
    lines: list[str] = []
    bases = {id(c.row): c.baseline for c in comparisons}
    for row in rows:
        if not row.algo or row.algo == baseline:
            continue
        for claim in published_claims(row, bases.get(id(row)), baseline):
            title = published.PAPER_TITLES[claim.paper]
            if claim.in_regime:
                lines.append(
                    f"  {row.label} − {baseline}: the {title} paper reports {claim.text} points, average of "
                    f"{claim.benchmarks} (ours: the {len(columns)} benchmark{'s' if len(columns) != 1 else ''} "
                    f"above) ({claim.source})"
                )
            else:
                lines.append(
                    f"  {row.label} − {baseline}: not this paper's regime ({claim.why}); the {title} paper's "
                    f"{claim.text} is not set against it"
                )
    models = sorted({m for m in map(_model_of, rows) if m})
    for model in models:
        for kind, values in published.simplerl_zoo_rows(model).items():
            cells = ", ".join(f"{TITLES.get(c, c)} {values[c]:.1f}" for c in columns if c in values)
            decoding = "greedy" if kind == "base" else "temperature 1.0, top-p 0.95"
            lines.append(
                f"  SimpleRL-Zoo, {model} {kind} ({decoding}): {cells}; Avg of its six {values['avg']:.1f}, "
                f"AIME24 avg@32 {values['aime24@32']:.1f} ({published.SIMPLERL_ZOO_README})"
            )
    if not lines:
        return []
    return ["", "published (not recomputed here; other training setups, checkers and decoding):", *lines]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="run or evaluation folders, metrics JSONL files, LABEL=PATH")
    parser.add_argument("--step", default="last", help="'last' (default) or a training step, e.g. 0 (the base model)")
    parser.add_argument("--metric", default="acc", choices=METRICS, help="acc: the run's checker (default)")
    parser.add_argument("--kind", default="all", choices=("all", "train", "eval"), help="which results to show")
    parser.add_argument("--benchmarks", default=None, help="comma-separated columns (registry names)")
    parser.add_argument("--baseline", default="grpo", help="the ALGO every other method is compared with")
    parser.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap replicates (default 10000)")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    parser.add_argument(
        "--ignore-setting",
        action="append",
        default=[],
        metavar="REGEX",
        help="a recorded setting (flattened key, e.g. 'trainer\\.nnodes') that may differ within a row; repeatable",
    )
    args = parser.parse_args(argv)
    if args.step != "last" and not args.step.isdigit():
        parser.error(f"--step must be 'last' or a step number, got {args.step!r}")
    try:
        results = [r for r in collect(args.results) if args.kind in ("all", r.kind)]
        if not results:
            raise ValueError("no results (metrics*.jsonl or eval.json folders) in these paths")
        benchmarks = args.benchmarks.split(",") if args.benchmarks else None
        columns, rows, warnings = build_rows(results, args.step, args.metric, benchmarks, args.ignore_setting)
        if not rows:
            raise ValueError(f"no {args.metric} validation metrics at step {args.step} (was validation logged?)")
        comparisons, notes = compare(rows, columns, args.baseline, args.bootstrap)
        print(render(columns, rows, comparisons, args.metric, args.baseline, args.markdown))
    except (ValueError, FileNotFoundError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 1
    for warning in [*warnings, *notes]:
        print(f"note: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
