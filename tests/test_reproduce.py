"""The reproduction tooling: data conversion of every dataset, answer checking of every data_source, the results
table, ``DRY_RUN=1`` of every launcher with every method, and one end-to-end CPU run of a launcher.

Nothing is downloaded: the datasets come from the hand-written fixture rows in ``tests/fixtures/reproduce``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from verl_lambda.presets import ALGORITHMS
from verl_lambda.presets import overrides as algo_overrides
from verl_lambda.reproduce import report
from verl_lambda.reproduce.compose import HEADER
from verl_lambda.reproduce.datasets import (
    ALL_SPECS,
    EVAL_SPECS,
    INSTRUCTION,
    TRAIN_SETS,
    TRAIN_SPECS,
    build,
    data_overrides,
    last_boxed,
    load_records,
    to_verl_rows,
)
from verl_lambda.reproduce.reward import CHECKER_OF, compute_score

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "reproduce"

# --------------------------------------------------------------------------------------------------------------
# Data: every dataset of the registry, from its source format to verl's schema
# --------------------------------------------------------------------------------------------------------------

# Ground truths of the fixture rows, in order, as the checkers must receive them.
EXPECTED_TRUTHS = {
    "math": ["11", "\\frac{3}{4}", "7", "\\sqrt{2}", "(-1,1)"],  # the 6th solution has no \boxed{}: skipped
    "math_lvl3to5": ["7", "\\sqrt{2}", "(-1,1)"],
    "gsm8k_train": ["12", "1000", "10"],
    "deepscaler": ["2", "\\frac{5}{6}"],
    "gsm8k": ["22", "100", "2000"],
    "math500": ["5", "\\frac{1}{2}", "(2,1)"],
    "minerva": ["75", "1", "\\frac{1}{9}"],
    "olympiadbench": ["8", "-2, 2", "\\frac{7}{2}"],
    "aime24": ["22", "401"],
    "amc23": ["540", "0.25"],
}


def fixture_rows(name: str) -> list[dict]:
    spec = ALL_SPECS[name]
    return to_verl_rows(load_records(spec, FIXTURES), spec, "test" if name in EVAL_SPECS else "train")


def test_every_dataset_has_fixture_rows_and_expectations():
    assert set(EXPECTED_TRUTHS) == set(ALL_SPECS)
    for spec in ALL_SPECS.values():
        assert (FIXTURES / spec.source_file).exists(), spec.source_file
    assert {"math500", "aime24", "amc23", "minerva", "olympiadbench", "gsm8k"} <= set(EVAL_SPECS)
    assert all(parts and set(parts) <= set(TRAIN_SPECS) for parts in TRAIN_SETS.values())


@pytest.mark.parametrize("name", sorted(ALL_SPECS))
def test_conversion_to_verl_schema(name):
    spec, rows = ALL_SPECS[name], fixture_rows(name)
    records = load_records(spec, FIXTURES)
    assert [r["reward_model"]["ground_truth"] for r in rows] == EXPECTED_TRUTHS[name]
    for row in rows:
        assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
        assert row["data_source"] == spec.data_source and row["ability"] == "math"
        assert row["reward_model"]["style"] == "rule"
        [message] = row["prompt"]
        assert message["role"] == "user"
        assert message["content"] == f"{row['extra_info']['question']} {INSTRUCTION}"
        info = row["extra_info"]
        assert info["dataset"] == name and info["split"] == ("test" if name in EVAL_SPECS else "train")
        source = records[info["index"]]  # the index points at the source row
        assert any(source.get(f) and str(source[f]).strip() in info["question"] for f in spec.question_fields)
        assert spec.data_source in CHECKER_OF


def test_olympiadbench_context_goes_before_the_question():
    question = fixture_rows("olympiadbench")[2]["extra_info"]["question"]
    assert question.startswith("Let $a_1 = 1$") and question.endswith("Compute $a_3$.")


def test_unreadable_answers_are_skipped_in_training_and_fatal_in_benchmarks():
    spec = TRAIN_SPECS["math"]
    assert [r["extra_info"]["index"] for r in fixture_rows("math")] == [0, 1, 2, 3, 4]
    broken = [{"question": "What is 1 + 1?", "answer": "Two, obviously."}]
    with pytest.raises(ValueError, match="gsm8k: record 0"):
        to_verl_rows(broken, EVAL_SPECS["gsm8k"], "test")
    assert to_verl_rows([{"problem": "p", "level": "Level 5", "solution": "no box"}], spec, "train") == []


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{ {2} }", "{2}"),
        ("the answer is $\\boxed 7$ indeed", "7"),
        ("\\fbox{12}", "12"),
        ("\\boxed{unclosed", None),
        ("no box here", None),
    ],
)
def test_last_boxed(text, content):
    assert last_boxed(text) == content


def test_prepare_data_cli_writes_the_rows_it_converts(tmp_path):
    out = tmp_path / "data"
    command = [sys.executable, str(REPO / "examples" / "prepare_data.py"), "--out", str(out)]
    done = subprocess.run(
        [*command, "--from-jsonl", str(FIXTURES), "--train", "gsm8k_math,math_lvl3to5", "--eval", "all"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["train"]) == {"gsm8k_math", "math_lvl3to5"} and set(manifest["eval"]) == set(EVAL_SPECS)
    train = pq.read_table(out / "train" / "gsm8k_math.parquet").to_pylist()
    assert train == fixture_rows("gsm8k_train") + fixture_rows("math")
    for name in EVAL_SPECS:
        rows = pq.read_table(out / "eval" / f"{name}.parquet").to_pylist()
        assert rows == fixture_rows(name) and manifest["eval"][name]["rows"] == len(rows)
    # the launchers' data overrides name exactly these files
    train_arg, val_arg = data_overrides(out, "gsm8k_math", "all")
    assert train_arg == f"data.train_files='{out / 'train' / 'gsm8k_math.parquet'}'"
    assert all(f"'{out / 'eval' / name}.parquet'" in val_arg for name in EVAL_SPECS)
    bad = subprocess.run([*command, "--train", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown training set ['nope']" in bad.stderr


def test_build_limit_and_name_checks(tmp_path):
    manifest = build(tmp_path, "math", "aime24,amc23", from_dir=FIXTURES, limit=1)
    assert manifest["train"]["math"]["rows"] == 1 and manifest["eval"]["aime24"]["rows"] == 1
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["aime24.parquet", "amc23.parquet"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        build(tmp_path, "none", "aime2024", from_dir=FIXTURES)
    with pytest.raises(ValueError, match="unknown training set"):
        data_overrides(tmp_path, "gsm8k", "all")  # a benchmark, not a training set


# --------------------------------------------------------------------------------------------------------------
# Reward: every data_source routed to a checker that scores right and wrong answers right
# --------------------------------------------------------------------------------------------------------------

# (data_source, ground truth from the fixtures, response, correct?)
REWARD_CASES = [
    ("gsm8k", "1000", "3 boxes of $200 and one of $400, so \\boxed{1,000}.", True),
    ("gsm8k", "100", "25 * 4 = 100, so she reads \\boxed{100.00} pages.", True),
    ("gsm8k", "22", "15 + 7 = 22\n#### 22", True),  # no box: verl's own GSM8K checker
    ("gsm8k", "22", "15 + 7 = 23\n#### 23", False),
    ("gsm8k", "22", "The answer is 22.", False),  # neither a box nor ####
    ("math500", "\\frac{1}{2}", "$0.5 = \\boxed{0.5}$", True),
    ("math500", "\\frac{1}{2}", "\\boxed{\\dfrac{1}{2}}", True),
    ("math500", "\\frac{1}{2}", "\\boxed{\\frac{2}{4}}", False),  # unreduced fraction, as PRM800K grades
    ("math500", "(2,1)", "so $(a,b) = \\boxed{(2, 1)}$", True),
    ("math500", "(2,1)", "\\boxed{(1, 2)}", False),
    ("math500", "5", "\\boxed{4}, no wait: \\boxed{5}", True),  # the last box counts
    ("math500", "5", "\\boxed{5}, no wait: \\boxed{4}", False),
    ("math500", "5", "The answer is 5.", False),
    ("minerva", "\\frac{1}{9}", "\\boxed{1/9}", True),
    ("minerva", "75", "\\boxed{75 \\text{ km/h}}", True),
    ("minerva", "1", "\\boxed{10}", False),
    ("olympiadbench", "-2, 2", "\\boxed{2, -2}", True),  # several answers: any order
    ("olympiadbench", "-2, 2", "\\boxed{2}", False),
    ("olympiadbench", "\\frac{7}{2}", "\\boxed{3.5}", True),
    ("olympiadbench", "8", "\\boxed{7}", False),
    ("aime24", "22", "There are \\boxed{022} such integers.", True),
    ("aime24", "401", "\\boxed{400}", False),
    ("amc23", "540", "\\boxed{540^\\circ}", True),
    ("amc23", "0.25", "\\boxed{\\frac14}", True),
    ("amc23", "0.25", "\\boxed{\\frac{1}{3}}", False),
    ("math", "\\sqrt{2}", "\\boxed{\\sqrt 2}", True),
    ("math", "(-1,1)", "\\boxed{[-1, 1]}", False),  # an interval keeps its brackets
    ("deepscaler", "\\frac{5}{6}", "\\boxed{\\frac{5}{6}}", True),
    ("deepscaler", "2", "\\boxed{3}", False),
]


@pytest.mark.parametrize(("data_source", "truth", "response", "correct"), REWARD_CASES)
def test_reward_routing(data_source, truth, response, correct):
    result = compute_score(data_source, response, truth, extra_info={"split": "test"})
    assert set(result) == {"score", "acc", "pred"}
    assert result["score"] == result["acc"] == float(correct), result
    assert isinstance(result["pred"], str)


def test_a_number_with_thousands_commas_is_not_a_list_of_answers():
    assert compute_score("math500", "\\boxed{80, 10}", "10,080")["acc"] == 0.0  # not {10, 080} in any order
    assert compute_score("math500", "\\boxed{10,080}", "10,080")["acc"] == 1.0


def test_gsm8k_pred_is_the_answer_that_was_scored():
    result = compute_score("gsm8k", "15 + 7 = 22\n####22", "22")  # verl's strict format needs "#### 22"
    assert result["score"] == 0.0 and result["pred"] == ""
    assert compute_score("gsm8k", "15 + 7 = 22\n#### 22", "22")["pred"] == "22"


def test_every_data_source_has_right_and_wrong_cases_with_fixture_truths():
    truths: dict[str, set[str]] = {}
    for name, values in EXPECTED_TRUTHS.items():
        truths.setdefault(ALL_SPECS[name].data_source, set()).update(values)
    assert set(truths) == set(CHECKER_OF)
    for data_source in CHECKER_OF:
        cases = [c for c in REWARD_CASES if c[0] == data_source]
        assert {c[3] for c in cases} == {True, False}, data_source
        assert {c[1] for c in cases} <= truths[data_source], data_source


def test_unknown_data_source_is_an_error():
    with pytest.raises(ValueError, match="no checker for data_source='openai/gsm8k'"):
        compute_score("openai/gsm8k", "\\boxed{1}", "1")


def test_verl_loads_the_reward_function_with_its_kwargs():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://verl_lambda.reproduce.reward",
                    "name": "compute_score",
                    "reward_kwargs": {"math_verify": False},
                }
            }
        }
    )
    score = get_custom_reward_fn(config)
    assert score(data_source="aime24", solution_str="\\boxed{401}", ground_truth="401", extra_info={})["acc"] == 1.0


def test_math_verify_is_opt_in():
    response = "\\boxed{x+1}"  # refused by checks 1-3
    assert compute_score("math500", response, "3")["acc"] == 0.0
    if importlib.util.find_spec("math_verify") is None:
        with pytest.raises(ImportError, match="pip install math-verify"):
            compute_score("math500", response, "3", math_verify=True)
    else:
        assert compute_score("math500", response, "3", math_verify=True)["acc"] == 0.0


# --------------------------------------------------------------------------------------------------------------
# Report: the papers' table from verl's file-logger JSONL
# --------------------------------------------------------------------------------------------------------------


def write_log(path: Path, entries: list[tuple[int, dict]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": s, "data": d}) + "\n" for s, d in entries))
    return path


def val(accuracies: dict[str, float], n: int = 1) -> dict[str, float]:
    metrics = {f"val-core/{k}/acc/mean@{n}": v for k, v in accuracies.items()}
    metrics |= {f"val-aux/{k}/score/mean@{n}": v for k, v in accuracies.items()}
    return metrics


@pytest.fixture
def runs(tmp_path):
    base = {"gsm8k": 0.70, "math500": 0.50, "aime24": 0.10}
    grpo = tmp_path / "qwen2.5-7b-grpo-math"
    write_log(grpo / "metrics.20250101-000000.jsonl", [(0, val(base)), (5, val({**base, "gsm8k": 0.1}))])
    write_log(grpo / "metrics.jsonl", [(5, val({"gsm8k": 0.75, "math500": 0.55, "aime24": 0.10})), (6, {"x": 1.0})])
    write_log(
        tmp_path / "qwen2.5-7b-lambda_grpo-math" / "metrics.jsonl",
        [(0, val(base)), (3, {"critic/score/mean": 0.4}), (5, val({"gsm8k": 0.77, "math500": 0.58, "aime24": 0.2}))],
    )
    os.utime(grpo / "metrics.20250101-000000.jsonl", (1, 1))  # the older segment of a resumed run
    write_log(grpo / "generations" / "5.jsonl", [])  # not a metrics file: ignored in a directory
    (grpo / "generations" / "5.jsonl").write_text('{"input": "q", "output": "a", "score": 1.0}\n')
    return tmp_path


def test_report_table_last_step(runs):
    columns, rows = report.table(report.collect([str(runs)]))
    assert columns == [("gsm8k", 1), ("math500", 1), ("aime24", 1)]  # registry order
    by_label = {r.label: r for r in rows}
    grpo, lam = by_label["qwen2.5-7b-grpo-math"], by_label["qwen2.5-7b-lambda_grpo-math"]
    assert grpo.step == 5 and grpo.values == pytest.approx({"gsm8k": 75.0, "math500": 55.0, "aime24": 10.0})
    assert grpo.average == pytest.approx(140 / 3)
    assert lam.values["aime24"] == pytest.approx(20.0) and lam.average == pytest.approx(155 / 3)


def test_report_step_selection_labels_and_missing_columns(runs, tmp_path):
    labelled = f"base={runs / 'qwen2.5-7b-grpo-math' / 'metrics.20250101-000000.jsonl'}"
    _, rows = report.table(report.collect([labelled]), step="0")
    assert [r.label for r in rows] == ["base"] and rows[0].values["gsm8k"] == pytest.approx(70.0)
    _, rows = report.table(report.collect([str(runs)]), step="3")
    assert all(r.step is None and r.average is None for r in rows)  # no validation at step 3
    _, rows = report.table(report.collect([str(runs)]), benchmarks=["gsm8k", "amc23"])
    assert all(r.values["amc23"] is None and r.average is None for r in rows)


def test_report_uses_the_largest_n_and_names_it(tmp_path):
    path = write_log(tmp_path / "run.jsonl", [(1, {**val({"aime24": 0.5}, n=1), **val({"aime24": 0.25}, n=16)})])
    columns, rows = report.table(report.collect([str(path)]))
    assert columns == [("aime24", 16)] and rows[0].values["aime24"] == pytest.approx(25.0)
    assert "AIME24 (avg@16)" in report.render(columns, rows)
    other = write_log(tmp_path / "greedy.jsonl", [(1, val({"aime24": 0.3}))])
    columns, rows = report.table(report.collect([str(path), str(other)]))
    assert "30.0@1" in report.render(columns, rows)  # a run validated with another N is marked


def test_report_cli_text_markdown_and_baseline(runs, capsys):
    assert report.main([str(runs), "--markdown", "--baseline", "qwen2.5-7b-grpo-math"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| run | step | GSM8K | MATH500 | AIME24 | Avg |"
    assert lines[1] == "|---|---:|---:|---:|---:|---:|"
    assert lines[2] == "| qwen2.5-7b-grpo-math | 5 | 75.0 | 55.0 | 10.0 | 46.7 |"
    assert lines[4] == "| Δ qwen2.5-7b-lambda_grpo-math − qwen2.5-7b-grpo-math |  | +2.0 | +3.0 | +10.0 | +5.0 |"
    assert report.main([str(runs), "--step", "0"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split() == ["run", "step", "GSM8K", "MATH500", "AIME24", "Avg"]
    assert text[1].split() == ["qwen2.5-7b-grpo-math", "0", "70.0", "50.0", "10.0", "43.3"]


def test_report_errors(tmp_path, capsys):
    empty = write_log(tmp_path / "train-only.jsonl", [(1, {"critic/score/mean": 0.5})])
    assert report.main([str(empty)]) == 1 and "no val-core" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"step": 1}\n')
    assert report.main([str(broken)]) == 1 and "broken.jsonl:1" in capsys.readouterr().err
    assert report.main([str(tmp_path / "missing.jsonl")]) == 1


# --------------------------------------------------------------------------------------------------------------
# DRY_RUN of every launcher with every method: verl's config machinery, without Ray
# --------------------------------------------------------------------------------------------------------------

SCRIPTS = {  # launcher: (model, vLLM tensor parallel size, size tag)
    "run_qwen1_5b.sh": ("Qwen/Qwen2.5-1.5B", 1, "1.5b"),
    "run_qwen3b.sh": ("Qwen/Qwen2.5-3B", 1, "3b"),
    "run_qwen7b.sh": ("Qwen/Qwen2.5-7B", 2, "7b"),
}
DRY_CASES = [(script, algo) for script in SCRIPTS for algo in sorted(ALGORITHMS)]
CUSTOM_CASE = ("run_qwen3b.sh", "grpo")  # also: environment and pass-through overrides
BAD_OPTION = "+actor_rollout_ref.actor.lambda_grpo.r=-1"


def launch(script: str, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "CPU", "DRY_RUN", "ALGO")}
    full_env.update(PYTHON=sys.executable, **env)
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """All DRY_RUNs, two at a time (each imports verl: about 10 s of CPU)."""
    root = tmp_path_factory.mktemp("dry")
    jobs = {}
    for script, algo in [*DRY_CASES, ("run_qwen7b.sh", "bad-option")]:
        env = {"DRY_RUN": "1", "ALGO": "lambda_grpo" if algo == "bad-option" else algo}
        env |= {"OUT_DIR": str(root / f"{script}-{algo}"), "DATA_DIR": str(root / "data")}
        args: tuple[str, ...] = ()
        if (script, algo) == CUSTOM_CASE:
            env |= {"NNODES": "2", "GPUS_PER_NODE": "4", "EXPERIMENT": "custom", "EVAL": "aime24,math500", "VAL_N": "4"}
            args = ("trainer.total_epochs=3",)
        if algo == "bad-option":
            args = (BAD_OPTION,)
        jobs[(script, algo)] = (env, args)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(launch, key[0], env, *args) for key, (env, args) in jobs.items()}
        results = {key: future.result() for key, future in futures.items()}
    return root, results


def composed(done: subprocess.CompletedProcess) -> DictConfig:
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(HEADER + "\n")
    return OmegaConf.create(yaml.safe_load(done.stdout))


def select(config: DictConfig, key: str):
    return OmegaConf.select(config, key)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("script", "algo"), DRY_CASES)
def test_dry_run_composes_and_validates(dry_runs, script, algo):
    root, results = dry_runs
    config = composed(results[(script, algo)])
    model, tp, size = SCRIPTS[script]
    for override in algo_overrides(algo):  # the method is exactly the preset
        key, value = override.split("=", 1)
        assert str(select(config, key)) == value, override
    assert select(config, "actor_rollout_ref.model.path") == model
    assert select(config, "actor_rollout_ref.rollout.name") == "vllm"
    assert select(config, "actor_rollout_ref.rollout.tensor_model_parallel_size") == tp
    assert select(config, "actor_rollout_ref.actor.strategy") in ("fsdp", "fsdp2")
    assert select(config, "reward.custom_reward_function.path") == "pkg://verl_lambda.reproduce.reward"
    assert select(config, "actor_rollout_ref.actor.optim.lr") == 1e-6
    assert select(config, "data.train_batch_size") == 1024 and select(config, "actor_rollout_ref.rollout.n") == 5
    out_dir = root / f"{script}-{algo}"
    metrics = select(config, "ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH")
    assert metrics == str(out_dir / "metrics.jsonl")
    assert not out_dir.exists()  # nothing was launched or written
    if (script, algo) == CUSTOM_CASE:
        assert select(config, "trainer.nnodes") == 2 and select(config, "trainer.n_gpus_per_node") == 4
        assert select(config, "trainer.experiment_name") == "custom"
        assert select(config, "trainer.total_epochs") == 3  # a pass-through override wins
        assert select(config, "actor_rollout_ref.rollout.val_kwargs.n") == 4
        assert select(config, "data.val_files") == [
            str(root / "data" / "eval" / f"{b}.parquet") for b in ("aime24", "math500")
        ]
    else:
        assert select(config, "trainer.nnodes") == 1 and select(config, "trainer.n_gpus_per_node") == 8
        assert select(config, "trainer.experiment_name") == f"qwen2.5-{size}-{algo}-math"
        assert select(config, "trainer.total_epochs") == 15
        assert select(config, "actor_rollout_ref.rollout.val_kwargs.n") == 1
        val_files = [str(root / "data" / "eval" / f"{name}.parquet") for name in EVAL_SPECS]
        assert select(config, "data.val_files") == val_files
    assert select(config, "data.train_files") == str(root / "data" / "train" / "math.parquet")


@pytest.mark.timeout(900)
def test_dry_run_rejects_a_bad_plugin_option(dry_runs):
    _, results = dry_runs
    done = results[("run_qwen7b.sh", "bad-option")]
    assert done.returncode != 0 and done.stdout == ""
    assert "DRY RUN FAILED" in done.stderr
    assert "actor_rollout_ref.actor.lambda_grpo.r must be a number > 0" in done.stderr


@pytest.mark.parametrize(
    ("env", "message"), [({"ALGO": "ppo"}, "ALGO must be one of"), ({"TRAIN": "gsm8k"}, "unknown training set")]
)
def test_launcher_rejects_unknown_names_before_verl(tmp_path, env, message):
    done = launch("run_qwen7b.sh", {"DRY_RUN": "1", "OUT_DIR": str(tmp_path / "out"), **env}, timeout=60)
    assert done.returncode != 0 and message in done.stderr and done.stdout == ""


# --------------------------------------------------------------------------------------------------------------
# End to end: a launcher on CPU for 2 steps (verl's trainer, Ray, the hf rollout, our reward and data)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_cpu_run_of_a_launcher_logs_training_and_every_benchmark(tmp_path, capsys):
    out_dir = tmp_path / "cpu-qwen2.5-1.5b-lambda_grpo-math"
    env = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "ALGO")}
    env.update(CPU="1", STEPS="2", OUT_DIR=str(out_dir), PYTHON=sys.executable)
    log = tmp_path / "launcher.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "run_qwen1_5b.sh")],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,  # Ray's processes join the group, so a timeout kills them all
        )
        try:
            returncode = process.wait(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"the CPU run did not finish in 600 s; log: {log}")
    tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
    assert returncode == 0, tail

    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        data = record["data"]
        assert 0.0 <= data["critic/score/mean"] <= 1.0
        assert "actor/lambda_grpo/lambda" in data  # ALGO defaults to λ-GRPO
    last = records[-1]["data"]
    for spec in EVAL_SPECS.values():  # every benchmark validated, scored by our checker (it returns "score")
        assert 0.0 <= last[f"val-core/{spec.data_source}/acc/mean@1"] <= 1.0
        assert f"val-aux/{spec.data_source}/score/mean@1" in last
    assert list(out_dir.glob("hydra/*/.hydra/overrides.yaml"))  # hydra's record of the launch, next to the run
    manifest = json.loads((out_dir / "data" / "manifest.json").read_text())
    assert {name: v["rows"] for name, v in manifest["eval"].items()} == {
        name: len(truths) for name, truths in EXPECTED_TRUTHS.items() if name in EVAL_SPECS
    }

    assert report.main([str(out_dir / "metrics.jsonl")]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[2:] == [*(spec.title for spec in EVAL_SPECS.values()), "Avg"]
    assert row.split()[:2] == [out_dir.name, "2"]
