"""The report refuses to put runs whose recorded settings differ into one row (naming the differing keys), lets only
seeds, paths, run names and logger settings differ within a row, and prints a paper's published gain only next to a
row run in that paper's regime ("not this paper's regime" otherwise)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from verl_lambda.reproduce import launch as launcher
from verl_lambda.reproduce import report

PROBLEMS = 5


def write_run(
    root: Path,
    algo: str,
    seed: int,
    *,
    paper: str = "lambda_grpo",
    model: str = "Qwen/Qwen2.5-7B",
    lr: float = 1e-6,
    lambda_lr: float = 0.01,
    regime_changes: tuple[str, ...] = (),
    logger: tuple[str, ...] = ("console", "file"),
    name: str | None = None,
    rate: float = 0.5,
) -> Path:
    """A run folder as the launcher and verl leave it: run.json, resolved_config.yaml, metrics and a dump."""
    tag = launcher.model_tag(model)
    experiment = name or f"{tag}-{algo}-math{'' if paper == 'lambda_grpo' else '-paper_' + paper}-s{seed}"
    run_dir = root / f"{experiment}-{'-'.join(logger)}"  # its folder: a path, free to differ
    (run_dir / "validation").mkdir(parents=True)
    active = launcher.active_methods(algo)
    settings = {
        "paper": paper, "model": model, "algo": algo, "train": "math", "eval": "math500", "prompt": "qwen_boxed",
        "checker": "math_verify", "rollout_n": 8, "max_response_length": 8192, "total_steps": 100, "val_n": 1,
        "cpu": False, "extra_overrides": [], "seed": seed, "regime_changes": list(regime_changes),
        "method_active": active,
        "method_options": {"lambda_grpo": {"lr": lambda_lr, "r": 1 / 9}, "grpo_lambda": {"lam": 0.99}},
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps({"kind": "train", "experiment": experiment, "settings": settings}))
    config = {
        "data": {"seed": seed, "train_files": f"/data/{seed}/qwen_boxed/train/math.parquet"},
        "actor_rollout_ref": {
            "model": {"path": model},
            "actor": {
                "optim": {"lr": lr},
                "data_loader_seed": seed,
                "loss_agg_mode": "lambda_grpo" if active["lambda_grpo"] else "seq-mean-token-mean",
                "lambda_grpo": {"lr": lambda_lr, "r": 1 / 9},
                "policy_loss": {"loss_mode": "grpo_lambda" if active["grpo_lambda"] else "vanilla"},
            },
            "rollout": {"seed": 1000 * seed},
        },
        "trainer": {
            "experiment_name": experiment,
            "logger": list(logger),
            "default_local_dir": str(run_dir / "checkpoints"),
            "validation_data_dir": str(run_dir / "validation"),
            "n_gpus_per_node": 8,
        },
    }
    (run_dir / "resolved_config.yaml").write_text("# header\n" + yaml.safe_dump(config))
    rng = np.random.default_rng(seed)
    lines = [
        {"problem": f"math500/{p}", "acc": float(a), "acc_strict": float(a), "acc_math_verify": float(a)}
        for p, a in enumerate(rng.random(PROBLEMS) < rate)
    ]
    (run_dir / "validation" / "100.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    mean = float(np.mean([x["acc"] for x in lines]))
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 100, "data": {"val-core/math500/acc/mean@1": mean}}))
    return run_dir


def rows_of(root: Path, **kwargs):
    return report.build_rows(report.collect([str(root)]), **kwargs)


def test_seeds_paths_names_and_loggers_may_differ_within_a_row(tmp_path):
    write_run(tmp_path, "grpo", 1, logger=("console", "file", "wandb"))
    write_run(tmp_path, "grpo", 2)
    write_run(tmp_path, "grpo", 3, name="qwen2.5-7b-grpo-math-s3")
    _, rows, warnings = rows_of(tmp_path)
    [row] = rows
    assert row.seeds == [1, 2, 3] and not any("not merged" in w for w in warnings)
    assert "trainer.n_gpus_per_node" in row.settings and "actor_rollout_ref.optim.lr" not in row.settings
    assert row.settings["actor_rollout_ref.actor.optim.lr"] == 1e-6  # the config is part of what is compared


def test_runs_whose_settings_differ_are_refused_one_row(tmp_path):
    write_run(tmp_path, "grpo", 1)
    write_run(tmp_path, "grpo", 2)
    write_run(tmp_path, "grpo", 3, lr=2e-6)  # same name, another actor learning rate
    _, rows, warnings = rows_of(tmp_path)
    assert sorted(len(r.members) for r in rows) == [1, 2]
    [note] = [w for w in warnings if "not merged" in w]
    assert note.startswith("qwen2.5-7b-grpo-math: not merged into one row (2 rows, seeds 1,2 | 3)")
    assert "differ in 1 key(s): actor_rollout_ref.actor.optim.lr: 1e-06 | 2e-06" in note
    labels = sorted(r.label for r in rows)
    assert labels == [
        "qwen2.5-7b-grpo-math (actor_rollout_ref.actor.optim.lr=1e-06)",
        "qwen2.5-7b-grpo-math (actor_rollout_ref.actor.optim.lr=2e-06)",
    ]
    # a key may be allowed to differ
    _, rows, warnings = rows_of(tmp_path, ignore=[r"optim\.lr$"])
    assert [r.seeds for r in rows] == [[1, 2, 3]] and not any("not merged" in w for w in warnings)


def test_every_differing_key_is_named_and_unused_method_options_may_differ(tmp_path):
    write_run(tmp_path, "lambda_grpo", 1)
    write_run(tmp_path, "lambda_grpo", 2, lambda_lr=0.05, regime_changes=("TOTAL_STEPS=30",))
    write_run(tmp_path, "grpo", 1)
    write_run(tmp_path, "grpo", 2, lambda_lr=0.05)  # λ-GRPO's options do not act on a GRPO run
    _, rows, warnings = rows_of(tmp_path)
    [note] = [w for w in warnings if "not merged" in w]
    for key in (
        "actor_rollout_ref.actor.lambda_grpo.lr: 0.01 | 0.05",
        "method_options.lambda_grpo.lr: 0.01 | 0.05",
        'regime_changes: [] | ["TOTAL_STEPS=30"]',
    ):
        assert key in note
    assert "differ in 3 key(s)" in note
    [grpo] = [r for r in rows if r.algo == "grpo"]
    assert grpo.seeds == [1, 2]


def test_report_cli_names_the_refusal(tmp_path, capsys):
    write_run(tmp_path, "grpo", 1)
    write_run(tmp_path, "grpo", 2, model="Qwen/Qwen2.5-7B-Instruct", name="qwen2.5-7b-grpo-math-s2")
    assert report.main([str(tmp_path), "--bootstrap", "10"]) == 0
    captured = capsys.readouterr()
    assert "not merged into one row" in captured.err
    assert "actor_rollout_ref.model.path: Qwen/Qwen2.5-7B | Qwen/Qwen2.5-7B-Instruct" in captured.err
    assert report.main([str(tmp_path), "--bootstrap", "10", "--ignore-setting", "model"]) == 0
    assert "not merged" not in capsys.readouterr().err


def published_cells(root: Path, baseline: str = "grpo") -> dict[str, str]:
    columns, rows, _ = rows_of(root)
    comparisons, _ = report.compare(rows, columns, baseline, reps=10)
    return {
        c.row.label: "; ".join(x.cell for x in report.published_claims(c.row, c.baseline, baseline))
        for c in comparisons
    }


def test_published_gains_only_in_their_papers_regime(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path, "grpo", seed)
        write_run(tmp_path, "lambda_grpo", seed)
        write_run(tmp_path, "grpo_lambda", seed)  # GRPO-λ in the λ-GRPO paper's regime
    cells = published_cells(tmp_path)
    assert cells["qwen2.5-7b-lambda_grpo-math"] == "+1.7"
    assert cells["qwen2.5-7b-grpo_lambda-math"] == "not this paper's regime"
    [claim] = report.published_claims(next(r for r in rows_of(tmp_path)[1] if r.algo == "grpo_lambda"), None, "grpo")
    assert claim.paper == "grpo_lambda" and "run with PAPER=lambda_grpo" in claim.why


def test_published_gains_of_the_grpo_lambda_paper(tmp_path):
    r1 = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    for seed in (1, 2):
        write_run(tmp_path, "grpo", seed, paper="grpo_lambda", model=r1)
        write_run(tmp_path, "grpo_lambda_both", seed, paper="grpo_lambda", model=r1)
        write_run(tmp_path, "grpo_lambda_noclamp", seed, paper="grpo_lambda", model=r1)
        name = f"deepseek-r1-distill-qwen-7b-grpo_lambda-math-len1024-s{seed}"
        write_run(tmp_path, "grpo_lambda", seed, paper="grpo_lambda", model=r1, name=name,
                  regime_changes=("MAX_RESPONSE_LENGTH=1024",))  # fmt: skip
        write_run(tmp_path, "lambda_grpo", seed, paper="grpo_lambda", model=r1)
    cells = published_cells(tmp_path)
    prefix = "deepseek-r1-distill-qwen-7b"
    assert cells[f"{prefix}-grpo_lambda_both-math-paper_grpo_lambda"] == "> +3 (average over its models); +4.5 (7B)"
    assert cells[f"{prefix}-grpo_lambda-math-len1024"] == "not this paper's regime"  # a changed cap
    assert cells[f"{prefix}-grpo_lambda_noclamp-math-paper_grpo_lambda"] == ""  # no published number for it
    assert cells[f"{prefix}-lambda_grpo-math-paper_grpo_lambda"] == "not this paper's regime"
    columns, rows, _ = rows_of(tmp_path)
    comparisons, _ = report.compare(rows, columns, "grpo", reps=10)
    text = report.render(columns, rows, comparisons)
    assert "the GRPO-λ (arXiv 2510.00194) paper reports > +3 (average over its models); +4.5 (7B) points" in text
    assert "not this paper's regime (changed MAX_RESPONSE_LENGTH=1024)" in text
    assert "run with PAPER=grpo_lambda; this number comes from PAPER=lambda_grpo's regime" in text


@pytest.mark.parametrize(
    ("paper", "model", "target", "why"),
    [
        ("lambda_grpo", "Qwen/Qwen2.5-7B", "lambda_grpo", ""),
        (
            "lambda_grpo",
            "Qwen/Qwen2.5-7B-Instruct",
            "lambda_grpo",
            "qwen2.5-7b-instruct is not one of PAPER=lambda_grpo's",
        ),
        ("grpo_lambda", "Qwen/Qwen2.5-Math-1.5B-Instruct", "grpo_lambda", ""),
        ("grpo_lambda", "Qwen/Qwen2.5-7B", "lambda_grpo", "run with PAPER=grpo_lambda"),
        (None, "Qwen/Qwen2.5-7B", "lambda_grpo", "its run did not record a PAPER"),
    ],
)
def test_regime_problem(tmp_path, paper, model, target, why):
    run_dir = write_run(tmp_path, "grpo", 1, paper=paper or "lambda_grpo", model=model)
    if paper is None:  # a run.json of a launcher before PAPER
        record = json.loads((run_dir / "run.json").read_text())
        del record["settings"]["paper"]
        (run_dir / "run.json").write_text(json.dumps(record))
    [row] = rows_of(tmp_path)[1]
    problem = report.regime_problem(row, target)
    assert (problem == "") if not why else (why in problem), problem
