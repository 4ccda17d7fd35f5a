"""Each paper's regime (PAPER= of the launchers): the launches compose with verl 0.9.1 with the paper's models and
caps, the settings table states what the launches run (checked against the composed configs) with a source for
every row, the generated docs are current, λ's knobs and the regime changes are recorded, and the cost estimates
keep their documented shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpu_node import compose_as_on_a_gpu_node
from omegaconf import OmegaConf

from verl_lambda.reproduce import cost, pages, regimes
from verl_lambda.reproduce import launch as launcher
from verl_lambda.reproduce.regimes import REGIMES, SETTINGS

REPO = Path(__file__).resolve().parents[1]
SIZES = ("1.5b", "3b", "7b")


compose = compose_as_on_a_gpu_node


@pytest.fixture(scope="module")
def regime_configs(tmp_path_factory):
    """Every paper's default launch on every size (SEED unset: 1), composed and validated as main_ppo would."""
    root = tmp_path_factory.mktemp("regimes")
    env = {"DATA_DIR": str(root / "data"), "OUT_ROOT": str(root / "out"), "HOME": str(root), "WANDB": "off"}
    configs = {}
    for paper in REGIMES:
        for size in SIZES:
            launch = launcher.train_launch(size, {**env, "PAPER": paper})
            configs[(paper, size)] = (launch, compose(launch.overrides))
    return configs


def _comparable(key: str, value):
    """Data files are compared by name: the data folder is the user's."""
    if key in ("data.train_files", "data.val_files"):
        return [Path(v).name for v in value] if not isinstance(value, str) else Path(value).name
    return value


@pytest.mark.parametrize("paper", list(REGIMES))
@pytest.mark.parametrize("size", SIZES)
def test_every_value_the_table_states_is_what_the_launch_runs(regime_configs, paper, size):
    launch, config = regime_configs[(paper, size)]
    regime = REGIMES[paper]
    checked = 0
    for setting in SETTINGS:
        if setting.expected is None:
            continue
        for key, value in setting.expected(regime, size).items():
            assert _comparable(key, OmegaConf.select(config, key)) == value, (setting.name, key)
            checked += 1
    assert checked >= 40
    assert launch.record["settings"]["algo"] == regime.default_algo


def test_the_grpo_lambda_regime_is_the_papers(regime_configs):
    caps = {"1.5b": 256, "3b": 256, "7b": 768}
    models = {
        "1.5b": "Qwen/Qwen2.5-Math-1.5B-Instruct",
        "3b": "meta-llama/Llama-3.2-3B-Instruct",
        "7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    }
    for size in SIZES:
        launch, config = regime_configs[("grpo_lambda", size)]
        assert OmegaConf.select(config, "data.max_response_length") == caps[size]
        assert OmegaConf.select(config, "actor_rollout_ref.rollout.response_length") == caps[size]
        assert OmegaConf.select(config, "actor_rollout_ref.model.path") == models[size]
        assert OmegaConf.select(config, "actor_rollout_ref.actor.policy_loss.loss_mode") == "grpo_lambda"
        assert launch.record["experiment"].endswith("-paper_grpo_lambda-s1")
    assert REGIMES["grpo_lambda"].sizes["7b"].prompt == "r1_boxed"  # no system prompt for the R1-distilled model
    styles = {("recent", "epsilon-trace"), ("both", "epsilon-trace"), ("recent", "epsilon-weight"),
              ("both", "epsilon-weight")}  # fmt: skip
    from verl_lambda.presets import method_options, overrides

    covered = {(t.style, t.variant) for t in (method_options(overrides(a))[1] for a in REGIMES["grpo_lambda"].algos)}
    assert covered == styles  # ALGO covers both trace styles and both variants
    assert {"grpo", "grpo_clamp", "grpo_lambda_noclamp"} <= set(REGIMES["grpo_lambda"].algos)
    assert REGIMES["lambda_grpo"].algos == ("lambda_grpo", "grpo", "dapo_token_mean")  # the paper's DAPO


def test_the_settings_table_has_a_source_for_every_row_and_covers_every_setting():
    for setting in SETTINGS:
        for cell in (setting.name, setting.lambda_grpo, setting.grpo_lambda, setting.ours, setting.source):
            assert cell.strip(), setting.name
        assert "|" not in setting.source.replace("\\|", "")
    names = " ".join(s.name for s in SETTINGS).lower()
    required = ("model", "training data", "prompt", "response length", "group size", "mini-batch", "learning rate",
                "schedule", "kl", "entropy", "clip", "rollout sampling", "steps", "λ-grpo", "grpo-λ", "clamp",
                "checker", "benchmarks", "evaluation sampling", "baselines", "seeds")  # fmt: skip
    assert [r for r in required if r not in names] == []
    table = regimes.settings_table()
    assert table.count("\n") == len(SETTINGS) + 1
    assert all(len(line.split(" | ")) == 5 for line in table.splitlines() if not line.startswith("|---"))


def test_the_generated_docs_are_current():
    for file, blocks in pages.generated_blocks().items():
        text = (pages.DOCS / file).read_text()
        assert pages.fill_blocks(text, blocks) == text, f"docs/reproduce/{file}: run --write-docs"
    with pytest.raises(ValueError, match="no generated block"):
        pages.fill_blocks("no markers", {"settings": "x"})
    for page in pages.DOCS.glob("*.md"):  # relative links between the pages resolve
        for target in __import__("re").findall(r"\]\(([a-z0-9-]+\.md)\)", page.read_text()):
            assert (pages.DOCS / target).exists(), (page.name, target)


def test_lambda_knobs_names_and_regime_changes(tmp_path):
    env = {"DATA_DIR": str(tmp_path), "WANDB": "off", "LAMBDA_LR": "0.05", "LAMBDA_MIN": "none"}
    launch = launcher.train_launch("1.5b", env, ["trainer.test_freq=5", "+actor_rollout_ref.actor.lambda_grpo.r=0.2"])
    options = launch.record["settings"]["method_options"]["lambda_grpo"]
    assert (options["lr"], options["min"], options["max"], options["r"]) == (0.05, None, 5.0, 0.2)
    assert launch.record["experiment"] == "qwen2.5-1.5b-lambda_grpo-math-lamlr0.05-lamminnone-s1"
    assert "++actor_rollout_ref.actor.lambda_grpo.r=0.2" in launch.overrides  # + of a written option becomes ++
    # r is stated by the paper: changing it leaves the regime; test_freq and λ's optimizer options do not
    assert launch.record["settings"]["regime_changes"] == ["+actor_rollout_ref.actor.lambda_grpo.r=0.2"]
    grpo = launcher.train_launch("1.5b", {**env, "ALGO": "grpo", "MAX_RESPONSE_LENGTH": "1024"})
    assert grpo.record["experiment"] == "qwen2.5-1.5b-grpo-math-s1"  # λ's knobs do not name a run without λ
    assert grpo.record["settings"]["regime_changes"] == ["MAX_RESPONSE_LENGTH=1024"]
    same = launcher.train_launch(
        "7b", {"DATA_DIR": str(tmp_path), "PAPER": "grpo_lambda", "MAX_RESPONSE_LENGTH": "768"}
    )
    assert same.record["settings"]["regime_changes"] == []  # the regime's own value is no change
    with pytest.raises(ValueError, match=r"lambda_grpo\.lr must be a number >= 0"):
        launcher.train_launch("7b", {"LAMBDA_LR": "-1"})
    with pytest.raises(ValueError, match="LAMBDA_INIT must be a number"):
        launcher.train_launch("7b", {"LAMBDA_INIT": "zero"})
    with pytest.raises(ValueError, match=r"lambda_grpo\.init \(9\.0\) must lie within"):
        launcher.train_launch("7b", {"LAMBDA_INIT": "9"})
    with pytest.raises(ValueError, match="PAPER must be one of"):
        launcher.train_launch("7b", {"PAPER": "dapo"})


def test_what_a_launch_says_at_start(tmp_path):
    env = {"DATA_DIR": str(tmp_path), "WANDB": "off"}
    alias = launcher.train_launch("7b", {**env, "ALGO": "dapo"})
    assert alias.record["settings"]["algo"] == "dapo_clip_higher" and alias.record["algo_requested"] == "dapo"
    notes = "\n".join(launcher.notes(alias))
    assert "ALGO=dapo is the preset dapo_clip_higher" in notes
    assert "the λ-GRPO paper's DAPO is dapo_token_mean" in notes
    both = launcher.notes(launcher.train_launch("7b", {**env, "PAPER": "grpo_lambda", "ALGO": "grpo_lambda_both"}))
    expected = (
        "GRPO-λ options (actor_rollout_ref.actor.policy_loss.grpo_lambda, active): gamma=1.0 lam=0.99 "
        "style=both variant=epsilon-trace neg_adv_clamp=-0.1 (κ = gamma x lam = 0.99)"
    )
    assert expected in both
    assert any("lambda_grpo, not used by ALGO=grpo_lambda_both" in n and "lr=0.01" in n for n in both)
    reach = "\n".join(launcher.notes(launcher.train_launch("7b", {**env, "LAMBDA_LR": "0.2"})))
    assert "400 updates (100 steps x 4 mini-batches): at most about lr x 400 = 80 from init 0" in reach


def test_evaluation_follows_the_runs_regime(tmp_path):
    launch = launcher.train_launch(
        "7b", {"PAPER": "grpo_lambda", "DATA_DIR": str(tmp_path / "data"), "OUT_ROOT": str(tmp_path)}
    )
    launch.out_dir.mkdir(parents=True)
    (launch.out_dir / "run.json").write_text(json.dumps(launch.record))
    (launch.out_dir / "checkpoints" / "global_step_100" / "actor").mkdir(parents=True)
    evaluation = launcher.eval_launch(str(launch.out_dir), {})
    settings = evaluation.record["settings"]
    assert (settings["paper"], settings["max_response_length"], settings["temperature"], settings["top_p"]) == (
        "grpo_lambda", 3072, 0.6, 0.95,
    )  # fmt: skip
    assert set(settings["samples"]) == {"math500", "minerva", "olympiadbench", "aime24", "amc23"}
    assert settings["prompt"] == "r1_boxed"
    assert evaluation.out_dir.name == "step100-t0.6-p0.95-n32x4-len3072"
    model = launcher.eval_launch("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", {"PAPER": "grpo_lambda", "GREEDY": "1"})
    assert model.record["settings"]["prompt"] == "r1_boxed" and model.record["settings"]["max_response_length"] == 3072


def test_cost_estimates():
    for size in SIZES:
        low, high = cost.step_ratio("grpo_lambda", size)
        assert 0 < low <= high < 1  # short caps: cheaper per step
        assert cost.step_ratio("lambda_grpo", size) == (1.0, 1.0)
    assert 1 / cost.step_ratio("grpo_lambda", "1.5b")[1] > 3  # several times cheaper at 256 tokens
    assert cost.per_run("lambda_grpo", "7b") == (240.0, 240.0)  # the anchor
    clip_low, clip_high = cost.per_run("lambda_grpo", "7b", "dapo")
    assert clip_high < 240 and clip_low < clip_high
    table = cost.per_run_table()
    text = (pages.DOCS / "cost.md").read_text()
    for claim in ("3.6–7.6× cheaper", "1.7–3.7× cheaper"):  # the prose quotes the generated numbers
        assert claim in table and claim.replace(" cheaper", "") in text
