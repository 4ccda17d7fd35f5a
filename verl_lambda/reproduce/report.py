"""The papers' table from verl's logged validation metrics: one row per run, per-benchmark accuracy and average.

    python -m verl_lambda.reproduce.report outputs/*/metrics.jsonl [--step last|N] [--markdown] [--baseline LABEL]
    python -m verl_lambda.reproduce.report outputs/                 # every metrics file below a directory
    python -m verl_lambda.reproduce.report a=x.jsonl b=y.jsonl --benchmarks aime24,math500,olympiadbench,minerva,amc23

Input: the JSONL of verl's ``file`` logger (``trainer.logger=[...,file]``; ``VERL_FILE_LOGGER_PATH`` or
``$VERL_FILE_LOGGER_ROOT/<project>/<experiment>.jsonl``), one line per step: ``{"step": s, "data": {metric: value}}``.
verl logs validation as ``val-core/<data_source>/acc/mean@N`` (N = samples per prompt, ``rollout.val_kwargs.n``):
the mean over a benchmark's problems of the per-problem accuracy, i.e. pass@1 averaged over N samples. The table
shows it in %, for the validation step chosen by ``--step`` (``last``: the last validated step of each run; ``0``:
before training, if ``trainer.val_before_train``).

A run's label is ``LABEL=`` when given, else the file name without ``.jsonl``, or the folder name for files called
``metrics*.jsonl`` (the launchers write ``<OUT_DIR>/metrics.jsonl``, ``OUT_DIR`` named after the experiment). Files
with the same label are one run (a resumed run: later files win for the steps they share). Columns follow the
registry's benchmark order, then any other data_source; ``Avg`` is the unweighted mean over the columns shown, as the
papers average (missing when a run lacks a column).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from verl_lambda.reproduce.datasets import EVAL_SPECS

_ACC = re.compile(r"^val-core/(?P<source>.+)/acc/mean@(?P<n>\d+)$")
TITLES = {spec.data_source: spec.title for spec in EVAL_SPECS.values()}
ORDER = [spec.data_source for spec in EVAL_SPECS.values()]


@dataclass
class Run:
    label: str
    files: list[Path] = field(default_factory=list)
    steps: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> validation metrics

    def add(self, path: Path) -> None:
        """Merge the validation metrics of one file (later files win for the steps they share)."""
        self.files.append(path)
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                step, data = int(entry["step"]), entry["data"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a verl file-logger line ({exc})") from exc
            values = {k: float(v) for k, v in data.items() if k.startswith("val-core/") and _ACC.match(k)}
            if values:
                self.steps.setdefault(step, {}).update(values)


def accuracies(metrics: Mapping[str, float]) -> dict[str, tuple[float, int]]:
    """``{data_source: (accuracy in [0, 1], N)}``, taking the largest N a benchmark was logged with."""
    found: dict[str, tuple[float, int]] = {}
    for key, value in metrics.items():
        match = _ACC.match(key)
        if match and math.isfinite(value):
            source, n = match["source"], int(match["n"])
            if source not in found or n > found[source][1]:
                found[source] = (value, n)
    return found


def is_file_logger_output(path: Path) -> bool:
    """Whether the first line of ``path`` is a verl file-logger record (not, e.g., a dump of generations)."""
    with open(path) as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        entry = json.loads(first)
    except ValueError:
        return False
    return isinstance(entry, dict) and set(entry) == {"step", "data"}


def label_of(path: Path) -> str:
    return path.parent.resolve().name if path.stem.startswith("metrics") else path.stem


def collect(arguments: Sequence[str]) -> dict[str, Run]:
    """Runs from ``PATH``, ``LABEL=PATH`` or directory arguments (every file-logger ``*.jsonl`` below a directory)."""
    runs: dict[str, Run] = {}
    for argument in arguments:
        label, path = "", Path(argument).expanduser()
        if not path.exists() and "=" in argument:
            label, _, rest = argument.partition("=")
            path = Path(rest).expanduser()
        if path.is_dir():
            files = sorted(path.rglob("*.jsonl"), key=lambda p: (p.stat().st_mtime, str(p)))
            files = [f for f in files if is_file_logger_output(f)]  # skip dumped generations and the like
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
        for file in files:
            name = label or label_of(file)
            runs.setdefault(name, Run(name)).add(file)
    return runs


@dataclass
class Row:
    label: str
    step: int | None
    values: dict[str, float | None]  # data_source -> accuracy in %
    average: float | None
    samples: dict[str, int] = field(default_factory=dict)  # data_source -> N of its mean@N


def table(
    runs: Mapping[str, Run], step: str = "last", benchmarks: Sequence[str] | None = None
) -> tuple[list[tuple[str, int]], list[Row]]:
    """``(columns, rows)``: columns are ``(data_source, N)``; rows hold accuracies in % and their average."""
    chosen: dict[str, tuple[int | None, dict[str, tuple[float, int]]]] = {}
    for label, run in runs.items():
        if not run.steps:
            chosen[label] = (None, {})
        elif step == "last":
            last = max(run.steps)
            chosen[label] = (last, accuracies(run.steps[last]))
        else:
            wanted = int(step)
            chosen[label] = (wanted, accuracies(run.steps[wanted])) if wanted in run.steps else (None, {})
    sources = {s for _, acc in chosen.values() for s in acc}
    if benchmarks:
        columns = [b if b not in EVAL_SPECS else EVAL_SPECS[b].data_source for b in benchmarks]
    else:
        columns = [s for s in ORDER if s in sources] + sorted(sources - set(ORDER))
    samples = {c: max((acc[c][1] for _, acc in chosen.values() if c in acc), default=1) for c in columns}
    rows = []
    for label, (at, acc) in chosen.items():
        values = {c: (100.0 * acc[c][0] if c in acc else None) for c in columns}
        present = [v for v in values.values() if v is not None]
        average = sum(present) / len(present) if present and len(present) == len(columns) else None
        rows.append(Row(label, at, values, average, {c: acc[c][1] for c in columns if c in acc}))
    return [(c, samples[c]) for c in columns], rows


def _title(source: str, n: int) -> str:
    title = TITLES.get(source, source)
    return f"{title} (avg@{n})" if n > 1 else title


def _cell(value: float | None, n: int | None = None, column_n: int | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if n == column_n else f"{value:.1f}@{n}"  # a run logged with another N says so


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


def render(
    columns: Sequence[tuple[str, int]], rows: Sequence[Row], markdown: bool = False, baseline: str | None = None
) -> str:
    header = ["run", "step", *(_title(c, n) for c, n in columns), "Avg"]
    body = []
    for r in rows:
        cells = [_cell(r.values[c], r.samples.get(c), n) for c, n in columns]
        body.append([r.label, "–" if r.step is None else str(r.step), *cells, _cell(r.average)])
    if baseline is not None:
        base = next((r for r in rows if r.label == baseline), None)
        if base is None:
            raise ValueError(f"--baseline {baseline!r} is not one of the runs: {[r.label for r in rows]}")
        for r in rows:
            if r is base:
                continue
            diffs = [
                None if r.values[c] is None or base.values[c] is None else r.values[c] - base.values[c]
                for c, _ in columns
            ]
            average = None if r.average is None or base.average is None else r.average - base.average
            body.append([f"Δ {r.label} − {baseline}", "", *(_signed(d) for d in diffs), _signed(average)])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))

    return "\n".join([line(header), *(line(row) for row in body)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="file-logger JSONL files, LABEL=FILE, or directories of them")
    parser.add_argument("--step", default="last", help="'last' (default) or a step number, e.g. 0 for the base model")
    parser.add_argument("--benchmarks", default=None, help="comma-separated columns (registry names or data_sources)")
    parser.add_argument("--baseline", default=None, help="label of the run to subtract (adds Δ rows, in points)")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)
    if args.step != "last" and not args.step.lstrip("-").isdigit():
        parser.error(f"--step must be 'last' or an integer, got {args.step!r}")
    try:
        runs = collect(args.runs)
        benchmarks = args.benchmarks.split(",") if args.benchmarks else None
        columns, rows = table(runs, args.step, benchmarks)
        if not columns:
            raise ValueError("no val-core/<data_source>/acc/mean@N metrics in these files (was validation logged?)")
        print(render(columns, rows, markdown=args.markdown, baseline=args.baseline))
    except (ValueError, FileNotFoundError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 1
    for row in rows:
        if row.step is None:
            print(f"note: {row.label} has no validation at step {args.step}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
