"""The demo's measured numbers, kept in committed files and rendered into the README and the docs from them.

    # after a run of the demo (bash scripts/demo_cpu.sh [--seed N], OUT=... to choose its folder):
    python scripts/demo_summary.py summarise OUT --name seed-1 --command "bash scripts/demo_cpu.sh --seed 1" \\
        --started 2026-12-03T07:52:45Z --ended 2026-12-03T08:05:10Z
    python scripts/demo_summary.py render           # rewrite the marked paragraphs from docs/data/demo/*.json
    python scripts/demo_summary.py render --check   # exit 1 if a marked paragraph differs from what render writes

``summarise`` reads a demo's output folder (``metrics.jsonl``, every metric verl logged; ``summary.json``, the
launcher's wall time and peak memory; ``rollouts/<step>.jsonl``, verl's dump of every sample) and writes
``docs/data/demo/<name>.json``. ``render`` writes the paragraph
between ``<!-- demo-numbers:start -->`` and ``<!-- demo-numbers:end -->`` in README.md and docs/index.md as ranges
over every committed summary; ``tests/test_docs.py`` runs the check, so the prose cannot drift from the files.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data" / "demo"
TARGETS = [ROOT / "README.md", ROOT / "docs" / "index.md"]
START, END = "<!-- demo-numbers:start -->", "<!-- demo-numbers:end -->"

REWARD = "critic/score/mean"
LENGTH = "response_length/mean"
LAMBDA = "actor/lambda_grpo/lambda"
LAMBDA_GRAD = "actor/lambda_grpo/lambda_grad"
PROBS_DIFF = "training/rollout_probs_diff_max"
STEP_TIME = "timing_s/step"
CLIP_RATIO = "response_length/clip_ratio"
ROLLOUTS = "rollouts"  # verl's per-step dumps of the run's samples (the launcher sets trainer.rollout_data_dir)


def _step_samples(out_dir: Path, step: int) -> dict[str, list[tuple[int, float]]]:
    """(response length in characters, score) of each sample of ``step``, by prompt group."""
    groups: dict[str, list[tuple[int, float]]] = {}
    for line in (out_dir / ROLLOUTS / f"{step}.jsonl").read_text().splitlines():
        if line.strip():
            sample = json.loads(line)
            groups.setdefault(sample["uid"].rsplit("_", 2)[0], []).append((len(sample["output"]), sample["score"]))
    return groups


def length_reward_corr(groups: dict[str, list[tuple[int, float]]]) -> float | None:
    """The mean over a step's groups of corr(length, reward) inside the group; None if no group has both varying."""
    corrs = [
        statistics.correlation([n for n, _ in g], [r for _, r in g])
        for g in groups.values()
        if len({n for n, _ in g}) > 1 and len({r for _, r in g}) > 1
    ]
    return statistics.fmean(corrs) if corrs else None


def follows(grad: float, corr: float | None) -> bool | None:
    """Whether λ's gradient has the sign the step's length-reward relation asks for: negative (λ rises, longer
    responses weigh more) where longer earns more, positive where shorter does; None where there is no relation."""
    if corr is None or corr == 0 or grad == 0:
        return None
    return (grad < 0) == (corr > 0)


def _read_records(out_dir: Path) -> list[dict]:
    records = []
    for line in (out_dir / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            records.append({"step": int(entry["step"]), **entry["data"]})
    return records


def _mean(records: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in records)


def summarise(
    out_dir: Path,
    command: str,
    started: str,
    ended: str,
    seed: int | None,
    ran_as: str | None = None,
    load: tuple[float, float] | None = None,
) -> dict:
    """One demo run in the numbers the README quotes, and the per-step series its claims are checked against."""
    records = _read_records(out_dir)
    launcher = json.loads((out_dir / "summary.json").read_text())
    steps = [r["step"] for r in records]
    if steps != list(range(1, len(records) + 1)):
        raise ValueError(f"{out_dir}: steps {steps} are not 1..n (a resumed or incomplete run)")
    lambdas = [r[LAMBDA] for r in records]
    peak = max(range(len(lambdas)), key=lambda i: lambdas[i])
    low = min(range(len(lambdas)), key=lambda i: lambdas[i])
    from verl_lambda.cpu.launch import length_gaps

    gaps = length_gaps(out_dir / ROLLOUTS)
    gap = [round(gaps[step], 3) for step in steps]
    corrs = [length_reward_corr(_step_samples(out_dir, step)) for step in steps]
    followed = [follows(r[LAMBDA_GRAD], c) for r, c in zip(records, corrs, strict=True)]
    t0, t1 = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (started, ended))
    return {
        "date": t0.date().isoformat(),
        "started_utc": started,
        "ended_utc": ended,
        "command": command,
        "ran_as": ran_as or command,
        "seed": seed,
        "load_average_1min_at_start_and_end": list(load) if load else None,
        "steps": len(records),
        "total_s": round((t1 - t0).total_seconds()),
        "verl_run_s": launcher["wall_s"],
        "peak_rss_gb": launcher["peak_rss_gb"],
        "first_step_s": round(records[0][STEP_TIME], 2),
        "median_step_s_after_first": round(statistics.median(r[STEP_TIME] for r in records[1:]), 2),
        "reward_first10_mean": round(_mean(records[:10], REWARD), 4),
        "reward_last10_mean": round(_mean(records[-10:], REWARD), 4),
        "length_first10_mean": round(_mean(records[:10], LENGTH), 2),
        "length_last10_mean": round(_mean(records[-10:], LENGTH), 2),
        "length_gap_first10_mean": round(statistics.fmean(gap[:10]), 2),
        "length_gap_last10_mean": round(statistics.fmean(gap[-10:]), 2),
        "final_lambda": round(lambdas[-1], 4),
        "peak_lambda": round(lambdas[peak], 4),
        "peak_lambda_step": records[peak]["step"],
        "lowest_lambda": round(lambdas[low], 4),
        "lowest_lambda_step": records[low]["step"],
        "lambda_grad_nonzero_steps": sum(r[LAMBDA_GRAD] != 0 for r in records),
        "lambda_grad_above_1e-4_steps": sum(abs(r[LAMBDA_GRAD]) > 1e-4 for r in records),
        "lambda_grad_follows_steps": sum(f is True for f in followed),
        "length_reward_related_steps": sum(f is not None for f in followed),
        "rollout_probs_diff_max": max(r[PROBS_DIFF] for r in records),
        "per_step": {
            "reward": [round(r[REWARD], 4) for r in records],
            "length": [round(r[LENGTH], 2) for r in records],
            "clip_ratio": [round(r.get(CLIP_RATIO, float("nan")), 4) for r in records],
            "lambda": [round(v, 5) for v in lambdas],
            "lambda_grad": [r[LAMBDA_GRAD] for r in records],
            "length_gap": gap,
            "length_reward_corr": [None if c is None else round(c, 4) for c in corrs],
            "rollout_probs_diff_max": [r[PROBS_DIFF] for r in records],
        },
    }


def load_summaries(folder: Path = DATA) -> list[dict]:
    runs = [json.loads(path.read_text()) for path in folder.glob("*.json")]
    return sorted(runs, key=lambda run: (run["seed"] is not None, run["seed"] or 0, run["started_utc"]))


def span(values, fmt: str = "{:.2f}", unit: str = "") -> str:
    """``a–b`` over the runs, or one value when they agree at the shown precision."""
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return f"{low}{unit}" if low == high else f"{low}–{high}{unit}"


def _span_of(values, show) -> str:
    low, high = show(min(values)), show(max(values))
    return low if low == high else f"{low} to {high}"


def signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def _exponent(value: float) -> str:
    return re.sub(r"e([+-])0*(\d)", lambda m: f"e{m.group(1).replace('+', '')}{m.group(2)}", f"{value:.1e}")


def paragraph(runs: list[dict]) -> str:
    """The demo's numbers over the committed runs, as one paragraph."""
    if not runs:
        raise ValueError(f"no demo summaries in {DATA.relative_to(ROOT)}")

    def values(key):
        return [run[key] for run in runs]

    seeds = ", ".join("the default seed" if r["seed"] is None else f"`--seed {r['seed']}`" for r in runs)
    dates = sorted(set(values("date")))
    loads = [load for run in runs for load in run["load_average_1min_at_start_and_end"]]
    text = (
        f"Measured in {len(runs)} run{'s' if len(runs) > 1 else ''} of `bash scripts/demo_cpu.sh` at its defaults "
        f"(λ-GRPO on `chain-long`, "
        f"{span(values('steps'), '{:d}')} steps of 8 prompts × 8 responses, tiny model, vLLM rollout; {seeds}) on "
        f"{' and '.join(dates)}, on the 2-core development machine while other jobs shared it (1-minute load "
        f"average {span(loads, '{:.1f}')} at the runs' starts and ends), after the first install: "
        f"{_span_of(values('total_s'), _minutes)} in total "
        f"({span(values('verl_run_s'), '{:.0f}', ' s')} of it verl's run, Ray, verl's workers and the vLLM server "
        f"starting included), {span(values('first_step_s'), '{:.1f}', ' s')} for the first step, then "
        f"{span(values('median_step_s_after_first'))} s per step (median); peak resident memory of all processes "
        f"together {span(values('peak_rss_gb'), '{:.1f}', ' GB')}. Mean reward went from "
        f"{span(values('reward_first10_mean'))} (first 10 steps) to {span(values('reward_last10_mean'))} (last 10), "
        f"the mean |length − target| from {span(values('length_gap_first10_mean'))} to "
        f"{span(values('length_gap_last10_mean'))} tokens, and the mean length over the last 10 steps was "
        f"{span(values('length_last10_mean'), '{:.1f}')} tokens (the cap is 32). λ ended at "
        f"{_span_of(values('final_lambda'), signed)} (its lowest value {_span_of(values('lowest_lambda'), signed)}, "
        f"its highest {_span_of(values('peak_lambda'), signed)}); its gradient was "
        f"above 1e-4 in {span(values('lambda_grad_above_1e-4_steps'), '{:d}')} of the "
        f"{span(values('steps'), '{:d}')} steps and had the sign the step's length–reward relation asks for in "
        f"{span(values('lambda_grad_follows_steps'), '{:d}')} of the "
        f"{span(values('length_reward_related_steps'), '{:d}')} steps where that relation was defined. vLLM's token "
        f"probabilities agreed with the actor's recomputation to {_exponent(max(values('rollout_probs_diff_max')))} "
        f"or better in every step of every run. Each run's numbers, command and date: `docs/data/demo/*.json` "
        f"(`python scripts/demo_summary.py`)."
    )
    return text


def wrap(text: str, width: int = 120) -> str:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def rendered(document: str, block: str) -> str:
    pattern = re.compile(re.escape(START) + r"\n(?:.*?\n)?" + re.escape(END), re.S)
    if len(pattern.findall(document)) != 1:
        raise ValueError(f"expected exactly one {START} ... {END} block")
    return pattern.sub(lambda _: f"{START}\n{block}\n{END}", document)


def render(check: bool) -> int:
    block = wrap(paragraph(load_summaries()))
    stale = []
    for target in TARGETS:
        document = target.read_text()
        new = rendered(document, block)
        if new != document:
            stale.append(target.relative_to(ROOT))
            if not check:
                target.write_text(new)
    if check and stale:
        names = ", ".join(map(str, stale))
        print(f"demo numbers out of date in {names}: run python scripts/demo_summary.py render", file=sys.stderr)
        return 1
    print("demo numbers up to date" if check else f"rendered {len(TARGETS)} files ({len(stale)} changed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    one = sub.add_parser("summarise", help="write docs/data/demo/<name>.json from a demo's output folder")
    one.add_argument("out", type=Path)
    one.add_argument("--name", required=True)
    one.add_argument("--command", required=True, help="the demo command that made the run")
    one.add_argument("--started", required=True, help="UTC start, ISO 8601")
    one.add_argument("--ended", required=True, help="UTC end, ISO 8601")
    one.add_argument("--seed", type=int, default=None)
    one.add_argument("--ran-as", default=None, help="the command line actually run, where it differs from --command")
    one.add_argument("--load", type=float, nargs=2, default=None, help="1-minute load average at start and end")
    show = sub.add_parser("render", help="rewrite the marked paragraphs from the committed summaries")
    show.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "render":
        return render(args.check)
    summary = summarise(args.out, args.command, args.started, args.ended, args.seed, args.ran_as, args.load)
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{args.name}.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
