"""The study's statistics on synthetic runs, checked against a direct computation, and its quick mode end to end."""

import math
import statistics

import pytest

from verl_lambda import study


def test_interval_is_the_t_interval_of_the_mean():
    values = [0.31, 0.42, 0.38, 0.29, 0.45]
    mean, low, high = study.interval(values)
    half = 2.776 * statistics.stdev(values) / math.sqrt(5)  # t(0.975, 4)
    assert mean == pytest.approx(statistics.mean(values))
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert study.interval([0.5]) == (0.5, 0.5, 0.5)


def synthetic(task, method, seed, rewards, lam=None):
    records = [{"step": i + 1, study.REWARD: r} for i, r in enumerate(rewards)]
    if lam is not None:
        for record, value in zip(records, lam, strict=True):
            record["actor/lambda_grpo/lambda"] = value
    return study.Run(task, method, seed), records


def test_summary_against_a_direct_computation():
    steps = 8
    runs = dict(
        [
            synthetic("t", "grpo", 0, [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4]),
            synthetic("t", "grpo", 1, [0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.4]),
            synthetic(
                "t", "lambda_grpo", 0, [0.1, 0.3, 0.5, 0.6, 0.6, 0.7, 0.7, 0.7], lam=[0.01 * i for i in range(8)]
            ),
            synthetic(
                "t", "lambda_grpo", 1, [0.1, 0.2, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6], lam=[0.02 * i for i in range(8)]
            ),
        ]
    )
    result = study.summarise(runs, steps)["t"]
    finals = {run: sum(r[study.REWARD] for r in records[-5:]) / 5 for run, records in runs.items()}
    best = max(finals.values())
    assert result["threshold"] == pytest.approx(0.1 + (best - 0.1) / 2)
    lam = result["methods"]["lambda_grpo"]
    want_final = [finals[run] for run in runs if run.method == "lambda_grpo"]
    assert lam["final_reward"] == pytest.approx(study.interval(want_final))
    # steps to the threshold 0.4 of a 3-step running mean: seed 0 reaches it at step 4 (0.467), seed 1 at step 5
    assert lam["steps_to_threshold"][0] == pytest.approx(4.5)
    assert result["methods"]["grpo"]["steps_to_threshold"][0] == steps + 1  # never reached
    base = [finals[run] for run in runs if run.method == "grpo"]
    assert lam["vs_grpo"]["final_reward"] == pytest.approx(
        study.interval([a - b for a, b in zip(want_final, base, strict=True)])
    )
    assert "vs_grpo" not in result["methods"]["grpo"]
    markdown = study.table({"t": result})
    assert "| λ-GRPO | 2 |" in markdown and "| GRPO | 2 |" in markdown


@pytest.mark.e2e
@pytest.mark.timeout(1500)
def test_quick_study_runs_end_to_end(tmp_path):
    """--quick: GRPO and λ-GRPO, one seed, three steps of verl's trainer each, then the table and the plots."""
    study.main(["--quick", "--out", str(tmp_path)])
    results = (tmp_path / "results.json").read_text()
    assert '"lambda_grpo"' in results and '"grpo"' in results
    assert (tmp_path / "lengths-long.png").stat().st_size > 10_000
    assert "### lengths-long" in (tmp_path / "results.md").read_text()
    from verl_lambda.metrics import read_metrics

    records = read_metrics(tmp_path / "runs" / "lengths-long" / "lambda_grpo" / "seed0" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert any(r["actor/lambda_grpo/lambda_grad"] != 0.0 for r in records)
