"""The study's plan, statistics and figures on synthetic runs, checked against direct computations, and its quick mode
end to end."""

import json
import math
import re
import statistics
from collections import Counter

import pytest
from matplotlib.image import imread

from verl_lambda import stats, study
from verl_lambda.toy.task import CLASSES, LENGTH_GAP_KEY, chain_score


def test_interval_is_the_t_interval_of_the_mean():
    values = [0.31, 0.42, 0.38, 0.29, 0.45]
    mean, low, high = study.interval(values)
    half = 2.776445 * statistics.stdev(values) / math.sqrt(5)  # t(0.975, 4)
    assert mean == pytest.approx(statistics.mean(values))
    assert (low, high) == pytest.approx((mean - half, mean + half), abs=1e-6)
    assert study.interval([0.5]) == (0.5, 0.5, 0.5)


def test_the_plan_runs_each_shared_arm_once_with_the_most_seeds_and_matched_arms_last():
    runs = study.plan_runs(list(study.QUESTIONS.values()))
    assert len(runs) == len(set(runs))
    per_arm = {(task, arm): sum(r.task == task and r.arm == arm for r in runs) for task, arm, _ in
               {(r.task, r.arm, 0) for r in runs}}  # fmt: skip
    # GRPO serves all three questions (5, 3 and 5 seeds); λ-GRPO at λ lr 0.01 the λ-lr (3) and DAPO (5) questions
    assert per_arm[("chain-long", "grpo")] == 5 and per_arm[("chain-short", "lambda_grpo")] == 5
    assert per_arm[("chain-long", "lambda_grpo_lr0.2")] == 3 and per_arm[("chain-short", "grpo_matched")] == 5
    assert len(runs) == 2 * (6 * 5 + 2 * 3 + 1 * 5 + 2 * 5)  # 102: ablation, λ lr, λ-GRPO at 0.01, DAPO
    matched = [i for i, r in enumerate(runs) if study.ARMS[r.arm].matched_to]
    assert matched == list(range(len(runs) - len(matched), len(runs)))


def test_every_arm_and_comparison_names_a_known_preset_and_arm():
    from verl_lambda.presets import PRESETS

    assert all(arm.preset in PRESETS for arm in study.ARMS.values())
    for q in [*study.QUESTIONS.values(), study.QUICK]:
        for c in q.comparisons:
            assert set(c.coefficients) <= set(q.arms), c.name
            assert sum(c.coefficients.values()) == 0, c.name  # a contrast: a common shift of every arm cancels


def _records(rewards, gap=1.0, **extra):
    return [{"step": i + 1, study.REWARD: r, LENGTH_GAP_KEY: gap, study.LENGTH: 6.0, **extra} for i, r in
            enumerate(rewards)]  # fmt: skip


def test_summary_and_comparisons_against_a_direct_computation():
    q = study.QUESTIONS["ablation"]
    finals = {  # arm -> per-seed final reward; every step of a run has that reward
        "grpo": [0.50, 0.55, 0.40, 0.60, 0.52],
        "grpo_clamp": [0.60, 0.58, 0.50, 0.66, 0.55],
        "grpo_lambda": [0.70, 0.75, 0.62, 0.72, 0.69],
        "grpo_lambda_noclamp": [0.52, 0.50, 0.45, 0.61, 0.50],
        "grpo_lambda_both": [0.71, 0.70, 0.60, 0.75, 0.66],
        "grpo_matched": [0.55, 0.60, 0.41, 0.62, 0.58],
    }
    records_of = {
        study.Run(task, arm, seed): _records([v] * 6)
        for task in q.tasks
        for arm, values in finals.items()
        for seed, v in enumerate(values)
    }
    result = study.summarise(q, records_of)["tasks"]["chain-long"]
    assert result["arms"]["grpo_lambda"]["final_reward"] == pytest.approx(study.interval(finals["grpo_lambda"]))
    assert result["arms"]["grpo"]["seeds"] == 5
    rows = {r["name"]: r for r in result["comparisons"]}
    f = {arm: values for arm, values in finals.items()}
    arms = zip(f["grpo_lambda"], f["grpo_lambda_noclamp"], f["grpo_clamp"], f["grpo"], strict=True)
    interaction = [a - b - c + d for a, b, c, d in arms]
    row = rows["trace × clamp (interaction)"]
    assert row["effect"] == pytest.approx(statistics.fmean(interaction))
    # the family is the question's seven comparisons: t at 1 - 0.05 / 14 with 4 degrees of freedom
    half = stats.t_quantile(1 - 0.05 / 14, 4) * statistics.stdev(interaction) / math.sqrt(5)
    assert (row["low"], row["high"]) == pytest.approx((row["effect"] - half, row["effect"] + half))
    assert row["p"] == pytest.approx(stats.paired_p_value(interaction))
    clamp = [(a + b - c - d) / 2 for a, b, c, d in
             zip(f["grpo_clamp"], f["grpo_lambda"], f["grpo"], f["grpo_lambda_noclamp"], strict=True)]  # fmt: skip
    assert rows["clamp (main effect)"]["effect"] == pytest.approx(statistics.fmean(clamp))
    assert [r["p_holm"] for r in result["comparisons"]] == pytest.approx(
        stats.holm([r["p"] for r in result["comparisons"]])
    )
    markdown = study.table({"ablation": study.summarise(q, records_of)})
    assert "| GRPO-λ | 5 |" in markdown and "| trace × clamp (interaction) | 5 |" in markdown


def test_an_arm_with_fewer_seeds_is_compared_on_the_seeds_both_have():
    q = study.QUESTIONS["lambda_lr"]  # 3 seeds
    records_of = {study.Run("chain-long", "grpo", s): _records([0.5 + 0.01 * s] * 6) for s in range(5)}
    records_of |= {study.Run("chain-long", arm, s): _records([0.6] * 6) for arm in q.arms[1:] for s in range(3)}
    q1 = study.Question(q.name, q.title, q.arms, {}, 3, q.comparisons, q.panels, tasks=("chain-long",))
    result = study.summarise(q1, records_of)["tasks"]["chain-long"]
    assert result["arms"]["grpo"]["seeds"] == 3  # the question's own seeds, not every GRPO run there is
    assert all(r["seeds"] == 3 for r in result["comparisons"])
    assert result["comparisons"][0]["effect"] == pytest.approx(0.6 - 0.51)


def test_an_undefined_correlation_is_a_gap_not_a_zero():
    flat = {study.CORR: 0.0, "actor/lambda_grpo/weight_min": 1.0, "actor/lambda_grpo/weight_max": 1.0}
    spread = {study.CORR: 0.0, "actor/lambda_grpo/weight_min": 0.9, "actor/lambda_grpo/weight_max": 1.1}
    assert study.value(flat, study.CORR) is None
    assert study.value(spread, study.CORR) == 0.0  # defined, and zero
    assert study.value({study.REWARD: math.nan}, study.REWARD) is None
    assert study.value({}, study.REWARD) is None


def _write_run(folder, records):
    folder.mkdir(parents=True)
    lines = [json.dumps({"step": r["step"], "data": {k: v for k, v in r.items() if k != "step"}}) for r in records]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_matched_lr_scales_the_learning_rate_by_the_ratio_of_median_update_norms(tmp_path):
    run = study.Run("chain-long", "grpo_matched", 0)
    for seed, (grpo, traced) in enumerate([([0.1, 0.2, 0.3], [0.5, 0.6, 0.4]), ([0.2, 0.2, 0.1], [0.3, 0.9, 0.6])]):
        for arm, norms in (("grpo", grpo), ("grpo_lambda", traced)):
            _write_run(
                study.Run(run.task, arm, seed).folder(tmp_path),
                [{"step": i + 1, study.UPDATE_NORM: n} for i, n in enumerate(norms)],
            )
    lr, info = study.matched_lr(tmp_path, run.task, study.ARMS[run.arm], steps=3)
    # per run the median over steps (GRPO 0.2 and 0.2, GRPO-λ 0.5 and 0.6), then over seeds: 0.2 and 0.55
    assert info["ratio"] == pytest.approx(0.55 / 0.2)
    assert lr == pytest.approx(study.STUDY_LR * 0.55 / 0.2)
    with pytest.raises(RuntimeError, match="no complete grpo_lambda run"):
        study.matched_lr(tmp_path, "chain-short", study.ARMS[run.arm], steps=3)


def test_a_matched_run_launches_at_the_matched_learning_rate(tmp_path, monkeypatch):
    """run_one hands the launcher matched_lr's learning rate and records how it was set; the quick study's real runs
    show that the launcher's ``lr`` becomes the actor's ``optim.lr``."""
    from verl_lambda.cpu import launch

    run = study.Run("chain-long", "grpo_matched", 0)
    for arm, norms in (("grpo", [0.4, 0.2, 0.3]), ("grpo_lambda", [0.1, 0.3, 0.2])):
        _write_run(study.Run(run.task, arm, 0).folder(tmp_path), [{"step": i + 1, study.UPDATE_NORM: n}
                                                                   for i, n in enumerate(norms)])  # fmt: skip
    launched = {}

    def fake_launch(folder, steps, preset, **options):  # our launcher, not verl: it would start a 3-step training
        launched.update(folder=folder, steps=steps, preset=preset, **options)
        return [{"step": i + 1} for i in range(steps)]

    monkeypatch.setattr(launch, "run", fake_launch)
    study.run_one(run, tmp_path, steps=3, timeout=60)
    lr, info = study.matched_lr(tmp_path, run.task, study.ARMS[run.arm], steps=3)
    assert lr == pytest.approx(study.STUDY_LR * 0.2 / 0.3)
    assert launched["preset"] == "grpo" and launched["lr"] == lr and launched["folder"] == run.folder(tmp_path)
    assert json.loads((run.folder(tmp_path) / "matched.json").read_text()) == json.loads(json.dumps(info))


def test_figures_are_800_pixels_wide_with_a_panel_per_metric_and_task(tmp_path):
    q = study.QUESTIONS["lambda_lr"]
    records_of = {
        study.Run(task, arm, s): _records(
            [0.3 + 0.02 * i for i in range(6)],
            **{
                study.LAMBDA: -0.1,
                study.SHARE: 0.2,
                study.CORR: 0.0,
                "actor/lambda_grpo/weight_min": 1.0,
                "actor/lambda_grpo/weight_max": 1.0,
            },
        )
        for task in q.tasks
        for arm in q.arms
        for s in range(3)
    }
    png = study.figure(q, records_of, tmp_path / "q.png")
    height, width = imread(png).shape[:2]
    assert width == 800 and height > 600
    result = study.summarise(q, records_of)
    effects = study.effects_figure(q, result, tmp_path / "q-effects.png")
    assert imread(effects).shape[1] == 800


@pytest.mark.e2e
@pytest.mark.timeout(1500)
def test_quick_study_runs_end_to_end(tmp_path):
    """--quick: GRPO and GRPO-λ, one seed, three steps of verl's trainer each, then the tables and the figures. Its
    GRPO run is also the suite's end-to-end check of verl's GRPO on CPU."""
    assert study.main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    task = results["quick"]["tasks"]["chain-long"]
    assert set(task["arms"]) == {"grpo", "grpo_lambda"}
    assert [c["name"] for c in task["comparisons"]] == ["GRPO-λ − GRPO (total)"]
    assert (tmp_path / "quick.png").stat().st_size > 10_000 and (tmp_path / "quick-effects.png").exists()
    assert "### chain-long" in (tmp_path / "results.md").read_text()
    for arm in ("grpo", "grpo_lambda"):
        run = study.Run("chain-long", arm, 0).folder(tmp_path)
        records = study._complete(run, steps=3)  # with the gaps the finished run kept in its folder
        assert [r["step"] for r in records] == [1, 2, 3]
        assert all(r[study.UPDATE_NORM] > 0 and LENGTH_GAP_KEY in r for r in records)  # what matched_lr reads
        assert f"actor_rollout_ref.actor.optim.lr={study.STUDY_LR}" in (run / "command.txt").read_text()
    # GRPO end to end in fp32: the loss ran without autocast, the hf rollout's log-probs are what verl's FSDP actor
    # recomputes, and verl's dump of what the rollout generated is scored by the task's reward
    grpo = study.Run("chain-long", "grpo", 0).folder(tmp_path)
    for r in study._complete(grpo, steps=3):
        assert r["actor/cpu/loss_autocast_bits"] == 32.0
        assert r["training/rollout_probs_diff_max"] < 1e-4
        assert 0.0 <= r[study.REWARD] <= 1.0 and 1 <= r[study.LENGTH] <= 32
    command = (grpo / "command.txt").read_text()
    prompts = int(re.search(r"data\.train_batch_size=(\d+)", command).group(1))
    n = int(re.search(r"rollout\.n=(\d+)", command).group(1))
    rows = [json.loads(line) for line in (grpo / "rollouts" / "1.jsonl").read_text().splitlines()]
    assert len(rows) == prompts * n  # rollout.n samples of each prompt (a prompt drawn twice has 2n)
    assert all(count % n == 0 for count in Counter(row["input"] for row in rows).values())
    for row in rows:
        assert len(row["output"]) <= 32  # one token per character
        assert row["score"] == pytest.approx(chain_score(row["output"], CLASSES[row["gts"]], row["input"][-1]))
