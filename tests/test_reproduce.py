"""The reproduction tooling: data conversion of every dataset and prompt, answer checking (Math-Verify and strict,
from verl's reward threads), the metrics reader, the results table with seeds and paired bootstrap intervals,
the launches (``DRY_RUN=1`` of the launchers with ``SEED`` and of ``eval_ckpt.sh``) and one end-to-end CPU run.

Nothing is downloaded: the datasets come from the hand-written fixture rows in ``tests/fixtures/reproduce``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from gpu_node import compose_as_on_a_gpu_node
from omegaconf import DictConfig, OmegaConf

from verl_lambda.config import GRPOLambdaConfig, LambdaGRPOConfig
from verl_lambda.metrics import is_metrics_file, read_metrics
from verl_lambda.presets import ALGORITHMS, canonical
from verl_lambda.presets import overrides as algo_overrides
from verl_lambda.reproduce import launch as launcher
from verl_lambda.reproduce import published, report
from verl_lambda.reproduce.compose import HEADER
from verl_lambda.reproduce.datasets import (
    ALL_SPECS,
    DEFAULT_PROMPT,
    EVAL_SPECS,
    PROMPTS,
    TRAIN_SETS,
    TRAIN_SPECS,
    build,
    data_overrides,
    field_value,
    last_boxed,
    load_records,
    to_verl_rows,
)
from verl_lambda.reproduce.regimes import REGIMES
from verl_lambda.reproduce.reward import CHECKER_OF, compute_score, parse_number
from verl_lambda.reproduce.verify import INSTALL_HINT, MathVerifyPool

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "reproduce"

# --------------------------------------------------------------------------------------------------------------
# Data: every dataset of the registry, from its source format to verl's schema, in every prompt template
# --------------------------------------------------------------------------------------------------------------

# Ground truths of the fixture rows, in order, as the checkers must receive them.
EXPECTED_TRUTHS = {
    "math": ["11", "\\frac{3}{4}", "7", "\\sqrt{2}", "(-1,1)"],  # the 6th solution has no \boxed{}: skipped
    "math_lvl3to5": ["7", "\\sqrt{2}", "(-1,1)"],
    "simplerl_zoo_hard": ["8", "-3, 3"],  # the 2nd record has an empty answer: skipped
    "gsm8k_train": ["12", "1000", "10"],
    "deepscaler": ["2", "\\frac{5}{6}"],
    "gsm8k": ["22", "100", "2000"],
    "math500": ["5", "\\frac{1}{2}", "(2,1)"],
    "minerva": ["75", "1", "\\frac{1}{9}"],
    "olympiadbench": ["8", "-2, 2", "\\frac{7}{2}"],
    "aime24": ["22", "401"],
    "amc23": ["540", "0.25"],
}


def fixture_rows(name: str, prompt: str = DEFAULT_PROMPT) -> list[dict]:
    spec = ALL_SPECS[name]
    return to_verl_rows(load_records(spec, FIXTURES), spec, "test" if name in EVAL_SPECS else "train", prompt)


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
        system, user = row["prompt"]  # the default template: SimpleRL-Zoo's qwen-boxed
        assert system == {"role": "system", "content": "You are a helpful assistant."}
        question = row["extra_info"]["question"]
        assert user == {
            "role": "user",
            "content": f"{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
        }
        info = row["extra_info"]
        assert info["dataset"] == name and info["split"] == ("test" if name in EVAL_SPECS else "train")
        source = records[info["index"]]  # the index points at the source row
        fields = [field_value(source, f) for f in spec.question_fields]
        assert any(f and str(f).strip() in question for f in fields)
        assert spec.data_source in CHECKER_OF


def test_verl_prompt_template_and_braces_in_questions():
    [row] = fixture_rows("math500", prompt="verl")[1:2]
    [message] = row["prompt"]
    assert message == {
        "role": "user",
        "content": f"{row['extra_info']['question']} Let's think step by step and output the final answer within "
        "\\boxed{}.",
    }
    assert PROMPTS["qwen_boxed"].messages("Is {x} $\\{1\\}$?")[1]["content"].startswith("Is {x} $\\{1\\}$?\n")


def test_olympiadbench_context_goes_before_the_question():
    question = fixture_rows("olympiadbench")[2]["extra_info"]["question"]
    assert question.startswith("Let $a_1 = 1$") and question.endswith("Compute $a_3$.")


def test_unreadable_answers_are_skipped_in_training_and_fatal_in_benchmarks():
    spec = TRAIN_SPECS["math"]
    assert [r["extra_info"]["index"] for r in fixture_rows("math")] == [0, 1, 2, 3, 4]
    assert [r["extra_info"]["index"] for r in fixture_rows("simplerl_zoo_hard")] == [0, 2]
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


def test_prepare_data_cli_writes_every_prompt_and_the_launchers_name_its_files(tmp_path):
    out = tmp_path / "data"
    command = [sys.executable, str(REPO / "examples" / "prepare_data.py"), "--out", str(out)]
    done = subprocess.run(
        [*command, "--from-jsonl", str(FIXTURES), "--train", "gsm8k_math,simplerl_zoo_hard", "--eval", "all"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["prompts"]) == set(PROMPTS)
    for prompt in PROMPTS:
        written = manifest["prompts"][prompt]
        assert set(written["train"]) == {"gsm8k_math", "simplerl_zoo_hard"} and set(written["eval"]) == set(EVAL_SPECS)
        train = pq.read_table(out / prompt / "train" / "gsm8k_math.parquet").to_pylist()
        assert train == fixture_rows("gsm8k_train", prompt) + fixture_rows("math", prompt)
        for name in EVAL_SPECS:
            rows = pq.read_table(out / prompt / "eval" / f"{name}.parquet").to_pylist()
            assert rows == fixture_rows(name, prompt) and written["eval"][name]["rows"] == len(rows)
    # the launchers' data overrides name exactly these files
    train_arg, val_arg = data_overrides(out, "gsm8k_math", "all", "verl")
    assert train_arg == f"data.train_files='{out / 'verl' / 'train' / 'gsm8k_math.parquet'}'"
    assert all(f"'{out / 'verl' / 'eval' / name}.parquet'" in val_arg for name in EVAL_SPECS)
    bad = subprocess.run([*command, "--train", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown training set ['nope']" in bad.stderr


def test_build_limit_and_name_checks(tmp_path):
    manifest = build(tmp_path, "math", "aime24,amc23", from_dir=FIXTURES, limit=1, prompts="verl")
    assert manifest["prompts"]["verl"]["train"]["math"]["rows"] == 1
    assert sorted(p.name for p in (tmp_path / "verl" / "eval").iterdir()) == ["aime24.parquet", "amc23.parquet"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        build(tmp_path, "none", "aime2024", from_dir=FIXTURES)
    with pytest.raises(ValueError, match="unknown prompt"):
        build(tmp_path, "none", "aime24", from_dir=FIXTURES, prompts="chatml")
    with pytest.raises(ValueError, match="unknown training set"):
        data_overrides(tmp_path, "gsm8k", "all")  # a benchmark, not a training set


# --------------------------------------------------------------------------------------------------------------
# Answer checking: extraction and routing (ours), Math-Verify (the default) and the strict checker
# --------------------------------------------------------------------------------------------------------------

# (ground truth, response, Math-Verify's verdict, the strict checker's verdict): realistic endings of responses.
CHECKER_CASES = [
    # near-integer floats: verl's PRM800K grader rounds 7.5e-13 and 1e-10 to 0 and used to accept these
    (
        "7.5e-13",
        "The ratio is about $7.5 \\times 10^{-13}$, negligible, so to the nearest integer it is \\boxed{0}.",
        False,
        False,
    ),
    ("1e-10", "Since $q$ is tiny we may take $q \\approx \\boxed{0}$.", False, False),
    # scientific notation and a \times 10^{b} compare numerically (both checkers used to refuse these)
    ("7.5e-13", "Dividing, $P = \\frac{3}{4} \\cdot 10^{-12} = \\boxed{7.5 \\times 10^{-13}}$.", True, True),
    ("300000000", "The speed of light is $\\boxed{3 \\times 10^{8}}$ m/s.", True, True),
    ("3 \\times 10^{8}", "So $c = \\boxed{300{,}000{,}000}$.", True, True),
    ("2.5e-3", "Hence $x = \\boxed{0.0025}$.", True, True),
    ("1000", "There are $\\boxed{10^{3}}$ of them.", True, True),
    # forms Math-Verify accepts and the strict checker refuses
    ("-2, 2", "Taking square roots, $x = \\boxed{\\pm 2}$.", True, False),
    ("[1,2]", "The solution set is $\\boxed{x \\in [1,2]}$.", True, False),
    ("\\frac{1}{2}", "The probability is $\\boxed{\\frac{2}{4}}$.", True, False),  # PRM800K refuses unreduced
    # both agree
    ("\\frac{1}{2}", "The probability is $\\boxed{0.5}$.", True, True),
    ("(2,1)", "So $(a,b) = \\boxed{(1,2)}$.", False, False),  # a tuple keeps its order
    ("12\\%", "The increase is $\\boxed{12}$ percent.", True, True),
    ("x^2+2x", "Expanding, $\\boxed{x(x+2)}$.", True, True),
    ("\\text{(C)}", "The answer is \\boxed{C}.", True, True),
    ("5", "The answer is 5.", False, False),  # no box: no answer
    ("5", "First \\boxed{4}, no wait: \\boxed{5}.", True, True),  # the last box counts
    ("10,080", "\\boxed{80, 10}", False, False),  # a thousands separator is not a list
    ("\\frac{\\sqrt{3}}{3}", "\\boxed{\\frac{1}{\\sqrt{3}}}", True, True),
    ("3", "\\boxed{x+1}", False, False),
    ("18", "She earns \\boxed{\\$18.00}.", True, True),
    ("540", "\\boxed{540^\\circ}", True, True),
    ("75", "\\boxed{75 \\text{ km/h}}", True, True),
    ("x=3", "\\boxed{3}", True, True),
]


@pytest.mark.parametrize(("truth", "response", "by_math_verify", "by_strict"), CHECKER_CASES)
def test_checkers_on_realistic_responses(truth, response, by_math_verify, by_strict):
    result = compute_score("math500", response, truth, extra_info={"index": 7})
    assert result["acc_math_verify"] == float(by_math_verify), result
    assert result["acc_strict"] == float(by_strict), result
    assert result["score"] == result["acc"] == result["acc_math_verify"]  # Math-Verify is the default
    assert result["problem"] == "math500/7"
    strict = compute_score("math500", response, truth, checker="strict")
    assert strict["score"] == strict["acc"] == float(by_strict)


def test_why_numbers_are_compared_before_the_libraries():
    from math_verify import parse
    from verl.utils.reward_score import prime_math

    assert prime_math.grade_answer("0", "7.5e-13")  # verl's grader rounds near-integer floats (0.9.1)
    assert "E" in str(parse("\\boxed{7.5e-13}")[0])  # Math-Verify reads the "e" as Euler's number
    assert parse_number("7.5e-13") == parse_number("7.5 \\times 10^{-13}") == parse_number("75 \\cdot 10^{-14}")
    assert parse_number("10^{3}") == 1000 and parse_number("10\\,000") == 10000 and parse_number("25\\%") == 25
    assert parse_number("2^{10}") is None and parse_number("\\frac{1}{2}") is None
    assert parse_number("10^{100000}") is None  # left to the checkers, not built as a Fraction


# (data_source, ground truth from the fixtures, response, correct by Math-Verify, correct by the strict checker)
REWARD_CASES = [
    ("gsm8k", "1000", "3 boxes of $200 and one of $400, so \\boxed{1,000}.", True, True),
    ("gsm8k", "100", "25 * 4 = 100, so she reads \\boxed{100.00} pages.", True, True),
    ("gsm8k", "22", "15 + 7 = 22\n#### 22", True, True),  # no box: GSM8K's own ending, verl's extraction
    ("gsm8k", "22", "15 + 7 = 23\n#### 23", False, False),
    ("gsm8k", "22", "The answer is 22.", False, False),  # neither a box nor ####
    ("math500", "\\frac{1}{2}", "$0.5 = \\boxed{0.5}$", True, True),
    ("math500", "\\frac{1}{2}", "\\boxed{\\dfrac{1}{2}}", True, True),
    ("math500", "(2,1)", "so $(a,b) = \\boxed{(2, 1)}$", True, True),
    ("math500", "5", "\\boxed{5}, no wait: \\boxed{4}", False, False),
    ("minerva", "\\frac{1}{9}", "\\boxed{1/9}", True, True),
    ("minerva", "1", "\\boxed{10}", False, False),
    ("olympiadbench", "-2, 2", "\\boxed{2, -2}", True, True),  # several answers: any order
    ("olympiadbench", "-2, 2", "\\boxed{2}", False, False),
    ("olympiadbench", "\\frac{7}{2}", "\\boxed{3.5}", True, True),
    ("olympiadbench", "8", "\\boxed{7}", False, False),
    ("aime24", "22", "There are \\boxed{022} such integers.", True, True),
    ("aime24", "401", "\\boxed{400}", False, False),
    ("amc23", "540", "\\boxed{540^\\circ}", True, True),
    ("amc23", "0.25", "\\boxed{\\frac14}", True, True),
    ("amc23", "0.25", "\\boxed{\\frac{1}{3}}", False, False),
    ("math", "\\sqrt{2}", "\\boxed{\\sqrt 2}", True, True),
    ("math", "(-1,1)", "\\boxed{[-1, 1]}", False, False),  # an interval keeps its brackets
    ("deepscaler", "\\frac{5}{6}", "\\boxed{\\frac{5}{6}}", True, True),
    ("deepscaler", "2", "\\boxed{3}", False, False),
]


@pytest.mark.parametrize(("data_source", "truth", "response", "by_math_verify", "by_strict"), REWARD_CASES)
def test_reward_routing(data_source, truth, response, by_math_verify, by_strict):
    result = compute_score(data_source, response, truth, extra_info={"split": "test", "index": 1})
    assert set(result) == {"score", "acc", "acc_math_verify", "acc_strict", "pred", "problem"}
    assert result["score"] == result["acc"] == result["acc_math_verify"] == float(by_math_verify), result
    assert result["acc_strict"] == float(by_strict)
    assert isinstance(result["pred"], str) and result["problem"] == f"{data_source}/1"


def test_every_data_source_has_right_and_wrong_cases_with_fixture_truths():
    truths: dict[str, set[str]] = {}
    for name, values in EXPECTED_TRUTHS.items():
        truths.setdefault(ALL_SPECS[name].data_source, set()).update(values)
    assert set(truths) == set(CHECKER_OF)
    for data_source in CHECKER_OF:
        cases = [c for c in REWARD_CASES if c[0] == data_source]
        assert {c[3] for c in cases} == {True, False}, data_source
        assert {c[1] for c in cases} <= truths[data_source], data_source


def test_gsm8k_pred_is_the_answer_that_was_scored():
    result = compute_score("gsm8k", "15 + 7 = 22\n####22", "22")  # verl's strict format needs "#### 22"
    assert result["score"] == 0.0 and result["pred"] == "" and result["problem"] == ""
    assert compute_score("gsm8k", "15 + 7 = 22\n#### 22", "22")["pred"] == "22"


def test_reward_argument_errors():
    with pytest.raises(ValueError, match="no checker for data_source='openai/gsm8k'"):
        compute_score("openai/gsm8k", "\\boxed{1}", "1")
    with pytest.raises(ValueError, match="checker must be one of"):
        compute_score("math500", "\\boxed{1}", "1", checker="sympy")
    with pytest.raises(ValueError, match=r"reward_kwargs\.math_verify is gone"):
        compute_score("math500", "\\boxed{1}", "1", math_verify=True)


def test_missing_math_verify_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "math_verify" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install \"verl-lambda\[reproduce\]\""):
        compute_score("math500", "\\boxed{\\pm 2}", "-2, 2")
    strict = compute_score("math500", "\\boxed{\\frac{2}{4}}", "\\frac12", checker="strict")  # strict still works
    assert strict["acc"] == 0.0 and strict["acc_math_verify"] is None
    assert "verl-lambda[reproduce]" in INSTALL_HINT


def test_math_verify_from_verl_reward_threads():
    """verl calls reward functions through loop.run_in_executor (a thread pool): Math-Verify's signal-based
    timeouts refuse to run there, so the checker runs it in child processes."""
    from math_verify import parse

    errors: list[BaseException] = []

    def direct() -> None:
        try:
            parse("\\boxed{\\pm 2}")
        except ValueError as exc:
            errors.append(exc)

    thread = threading.Thread(target=direct)
    thread.start()
    thread.join(60)
    assert errors and "threaded environment" in str(errors[0])  # what the child processes avoid

    async def score_like_verl(truth: str, response: str) -> dict:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: compute_score("math500", response, truth))

    async def many() -> list[dict]:
        cases = [(t, r) for t, r, _, _ in CHECKER_CASES[:8]]
        return await asyncio.gather(*(score_like_verl(t, r) for t, r in cases))

    results = asyncio.run(many())
    assert [r["acc_math_verify"] for r in results] == [float(c[2]) for c in CHECKER_CASES[:8]]


def test_math_verify_pool_kills_an_answer_that_overruns():
    pool = MathVerifyPool(workers=1, hard_timeout=3.0)  # below Math-Verify's own 5 s: ours must act
    try:
        assert pool.equal("2", "2.0") is True  # the child is up (its start-up does not count against the limit)
        assert pool.equal("1", "10^{10^{10}}") is False  # sympy would build a ten-billion-digit integer
        assert pool.timeouts == 1
        assert pool.equal("\\frac{1}{2}", "0.5") is True  # a fresh child answers the next request
    finally:
        pool.close()


def test_verl_loads_the_reward_function_with_its_kwargs():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://verl_lambda.reproduce.reward",
                    "name": "compute_score",
                    "reward_kwargs": {"checker": "strict"},
                }
            }
        }
    )
    score = get_custom_reward_fn(config)
    result = score(data_source="math500", solution_str="\\boxed{\\pm 2}", ground_truth="-2, 2", extra_info={})
    assert result["acc"] == 0.0 and result["acc_math_verify"] == 1.0  # strict chosen, both logged


# --------------------------------------------------------------------------------------------------------------
# verl's file-logger JSONL: the project's one reader
# --------------------------------------------------------------------------------------------------------------


def test_read_metrics(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_metrics(path) == []
    with pytest.raises(FileNotFoundError):
        read_metrics(path, missing_ok=False)
    path.write_text('{"step": 1, "data": {"a": 1.0}}\n{"step": 2, "data": {"a": 2.0, "b": 3}}\n{"step": 3, "da')
    assert read_metrics(path) == [{"step": 1, "a": 1.0}, {"step": 2, "a": 2.0, "b": 3}]  # 3 is being written
    assert list(read_metrics(path)[0]) == ["step", "a"] and is_metrics_file(path)
    path.write_text('{"step": 1, "data": {"a": 1.0}}\n{"step": 2}\n{"step": 3, "data": {}}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a verl file-logger record"):
        read_metrics(path)
    dump = tmp_path / "0.jsonl"
    dump.write_text('{"input": "q", "output": "a", "score": 1.0}\n')
    assert not is_metrics_file(dump)


# --------------------------------------------------------------------------------------------------------------
# The table: seeds, per-problem dumps, paired bootstrap intervals against GRPO
# --------------------------------------------------------------------------------------------------------------

BENCHMARKS = {"math500": (6, 1), "aime24": (4, 2)}  # problems, samples per problem (registry order: math500 first)


def write_run(
    root: Path,
    algo: str,
    seed: int,
    rng: np.random.Generator,
    rate: float,
    step: int = 100,
    dumps: bool = True,
    model: str = "Qwen/Qwen2.5-7B",
    paper: str = "lambda_grpo",
) -> dict[str, dict[str, float]]:
    """A launcher-shaped run folder with random answers; returns its per-problem scores (mean over samples)."""
    name = f"{launcher.model_tag(model)}-{algo}-math-s{seed}"
    run_dir = root / name
    (run_dir / "validation").mkdir(parents=True)
    settings = {
        "paper": paper, "model": model, "algo": algo, "train": "math", "eval": "all", "prompt": "qwen_boxed",
        "checker": "math_verify", "rollout_n": 8, "max_response_length": 8192, "total_steps": 100, "val_n": 1,
        "cpu": False, "extra_overrides": [], "seed": seed, "regime_changes": [],
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps({"kind": "train", "experiment": name, "settings": settings}))
    per_problem: dict[str, dict[str, float]] = {}
    lines, val = [], {}
    for source, (problems, samples) in BENCHMARKS.items():
        per_problem[source] = {}
        for p in range(problems):
            answers = (rng.random(samples) < rate).astype(float)
            per_problem[source][f"{source}/{p}"] = float(answers.mean())
            for a in answers:
                lines.append({"problem": f"{source}/{p}", "acc": a, "acc_strict": a, "acc_math_verify": a,
                              "score": a, "input": "q", "output": "r", "step": step})  # fmt: skip
        val[f"val-core/{source}/acc/mean@{samples}"] = float(np.mean(list(per_problem[source].values())))
    rng.shuffle(lines)
    if dumps:
        (run_dir / "validation" / f"{step}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    records = [{"step": 0, "data": {f"val-core/{s}/acc/mean@1": 0.1 for s in BENCHMARKS}}]
    records += [{"step": s, "data": {"response_length/clip_ratio": 0.01 * s}} for s in range(1, step)]
    records += [{"step": step, "data": {**val, "response_length/clip_ratio": 0.5}}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return per_problem


def direct_bootstrap(diffs: dict[str, np.ndarray], reps: int, seed: int = 0) -> tuple[dict, tuple]:
    """The same resampling as report.paired_bootstrap, written out index by index."""
    rng = np.random.default_rng(seed)
    names = list(diffs)
    samples = np.zeros((reps, len(names)))
    for r in range(reps):
        n_seeds = diffs[names[0]].shape[0]
        seed_index = rng.integers(0, n_seeds, n_seeds)
        for j, b in enumerate(names):
            problem_index = rng.integers(0, diffs[b].shape[1], diffs[b].shape[1])
            samples[r, j] = diffs[b][np.ix_(seed_index, problem_index)].mean()
    per = {b: np.percentile(samples[:, j], [2.5, 97.5]) for j, b in enumerate(names)}
    return per, tuple(np.percentile(samples.mean(axis=1), [2.5, 97.5]))


@pytest.fixture
def three_seeds(tmp_path):
    rng = np.random.default_rng(7)
    scores = {algo: {seed: write_run(tmp_path, algo, seed, rng, rate) for seed in (1, 2, 3)}
              for algo, rate in (("grpo", 0.4), ("lambda_grpo", 0.6))}  # fmt: skip
    return tmp_path, scores


def test_report_rows_are_mean_and_std_over_seeds(three_seeds):
    root, scores = three_seeds
    columns, rows, warnings = report.build_rows(report.collect([str(root)]))
    assert columns == ["math500", "aime24"]
    assert not any("different steps" in w for w in warnings)
    for row in rows:
        algo = row.algo
        assert row.label == f"qwen2.5-7b-{algo}-math" and row.seeds == [1, 2, 3] and row.steps == [100]
        for source in columns:
            per_seed = [100 * np.mean(list(scores[algo][s][source].values())) for s in (1, 2, 3)]
            mean, std = row.values[source]
            assert mean == pytest.approx(np.mean(per_seed)) and std == pytest.approx(np.std(per_seed, ddof=1))
        averages = [100 * np.mean([np.mean(list(scores[algo][s][c].values())) for c in columns]) for s in (1, 2, 3)]
        assert row.average[0] == pytest.approx(np.mean(averages))
        assert row.average[1] == pytest.approx(np.std(averages, ddof=1))
        assert row.problems("math500") == [6, 6, 6] and row.samples == {"math500": 1, "aime24": 2}
        assert row.clip == pytest.approx(np.mean([0.01 * s for s in range(91, 100)] + [0.5]))


def test_report_paired_bootstrap_matches_a_direct_computation(three_seeds):
    root, scores = three_seeds
    columns, rows, _ = report.build_rows(report.collect([str(root)]))
    [comparison], notes = report.compare(rows, columns, baseline="grpo", reps=500)
    assert not notes and comparison.row.algo == "lambda_grpo" and comparison.seeds == [1, 2, 3]
    diffs = {}
    for source in columns:
        problems = sorted(scores["grpo"][1][source])
        diffs[source] = 100 * np.array(
            [[scores["lambda_grpo"][s][source][p] - scores["grpo"][s][source][p] for p in problems] for s in (1, 2, 3)]
        )
    per, average = direct_bootstrap(diffs, reps=500)
    for source in columns:
        interval = comparison.per_benchmark[source]
        assert interval.estimate == pytest.approx(diffs[source].mean())
        assert interval.estimate == pytest.approx(rows[1].values[source][0] - rows[0].values[source][0])
        assert (interval.low, interval.high) == pytest.approx(tuple(per[source]))
    assert comparison.average.estimate == pytest.approx(np.mean([d.mean() for d in diffs.values()]))
    assert (comparison.average.low, comparison.average.high) == pytest.approx(average)
    assert comparison.average.low <= comparison.average.estimate <= comparison.average.high


def test_paired_bootstrap_limits():
    same = {"a": np.zeros((3, 5)), "b": np.zeros((3, 2))}
    per, average = report.paired_bootstrap(same, reps=200)
    assert (average.low, average.estimate, average.high) == (0.0, 0.0, 0.0)
    shifted = {"a": np.full((3, 50), 5.0) + np.random.default_rng(0).normal(0, 1, (3, 50))}
    per, average = report.paired_bootstrap(shifted, reps=500)
    assert 4.0 < per["a"].low < per["a"].estimate < per["a"].high < 6.0
    with pytest.raises(ValueError, match="same seeds"):
        report.paired_bootstrap({"a": np.zeros((3, 2)), "b": np.zeros((2, 2))}, reps=10)


def test_report_cli_tables_and_published_numbers(three_seeds, capsys):
    root, _ = three_seeds
    assert report.main([str(root), "--bootstrap", "300"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].split()[:8] == ["row", "kind", "seeds", "step", "MATH500", "AIME24", "(avg@2)", "Avg"]
    assert lines[2].startswith("qwen2.5-7b-grpo-math") and " 1,2,3 " in lines[2] and " ± " in lines[2]
    assert "difference to grpo, in points" in out and "qwen2.5-7b-lambda_grpo-math" in out
    assert "problems scored" in out and "6 of 500" in out  # fewer than the benchmark has: flagged
    # the paper's published difference, next to a row run in its regime
    assert "qwen2.5-7b-lambda_grpo-math − grpo: the λ-GRPO (arXiv 2510.06870) paper reports +1.7 points" in out
    assert "not this paper's regime" not in out
    assert "SimpleRL-Zoo, qwen2.5-7b base (greedy): GSM8K 88.2" not in out  # only the columns shown
    assert "SimpleRL-Zoo, qwen2.5-7b base (greedy): MATH500 64.6, AIME24 3.3" in out
    assert report.main([str(root), "--markdown", "--bootstrap", "50", "--metric", "acc_strict"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("| row | kind | seeds | step | MATH500 |")


def test_report_warns_about_steps_seeds_and_missing_dumps(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for seed in (1, 2):
        write_run(tmp_path, "grpo", seed, rng, 0.5, dumps=False)
    write_run(tmp_path, "dapo", 1, rng, 0.5, step=90, dumps=False)
    write_run(tmp_path, "dapo", 2, rng, 0.5, step=100, dumps=False)
    columns, rows, warnings = report.build_rows(report.collect([str(tmp_path)]))
    assert any("its seeds come from different steps [90, 100]" in w for w in warnings)
    assert any("rows come from different steps" in w for w in warnings)
    assert any("2 seed(s); at least 3" in w for w in warnings)
    [comparison], _ = report.compare(rows, columns)
    assert comparison.note == "no per-problem dumps: no interval" and isinstance(comparison.average, float)
    _, rows, _ = report.build_rows(report.collect([str(tmp_path)]), columns=["gsm8k", "math500"])
    assert all("gsm8k" not in r.values and r.average is None for r in rows)  # a column a run lacks: no average
    _, rows, _ = report.build_rows(report.collect([str(tmp_path)]), step="0")
    assert all(r.steps == [0] and r.values["math500"][0] == pytest.approx(10.0) for r in rows)
    assert report.main([str(tmp_path / "missing")]) == 1 and "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken" / "metrics.jsonl"
    broken.parent.mkdir()
    broken.write_text('{"step": 1, "data": {}}\n{"step": 2}\n')
    assert report.main([str(broken)]) == 1 and "metrics.jsonl:2" in capsys.readouterr().err


def test_report_reads_checkpoint_evaluations(tmp_path):
    rng = np.random.default_rng(3)
    write_run(tmp_path, "grpo", 1, rng, 0.5)
    run_dir = tmp_path / "qwen2.5-7b-grpo-math-s1"
    record = {"kind": "train", "experiment": run_dir.name, **json.loads((run_dir / "run.json").read_text())}
    (run_dir / "run.json").write_text(json.dumps(record))
    out = run_dir / "eval" / "step100-t1.0-p0.95-n32x4-len16384"
    (out / "validation").mkdir(parents=True)
    lines = [{"problem": f"aime24/{p}", "acc": float(k < p), "acc_strict": 0.0, "acc_math_verify": float(k < p)}
             for p in range(3) for k in range(32)]  # fmt: skip
    (out / "validation" / "0.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (out / "metrics.jsonl").write_text(json.dumps({"step": 0, "data": {"val-core/aime24/acc/mean@32": 1 / 32}}) + "\n")
    (out / "eval.json").write_text(json.dumps({
        "kind": "eval", "label": run_dir.name, "step": 100, "tag": out.name.split("-", 1)[1],
        "run": record, "settings": {"greedy": False, "temperature": 1.0, "samples": {"aime24": 32}},
    }))  # fmt: skip
    columns, rows, _ = report.build_rows(report.collect([str(tmp_path)]), columns=["aime24"])
    [evaluation] = [r for r in rows if r.kind == "eval"]
    assert evaluation.label == "qwen2.5-7b-grpo-math [t1.0-p0.95-n32x4-len16384]"
    assert evaluation.steps == [100] and evaluation.samples == {"aime24": 32}  # the checkpoint's step
    assert evaluation.values["aime24"][0] == pytest.approx(100 * np.mean([0, 1 / 32, 2 / 32]))
    assert "AIME24 (avg@32)" in report.render(columns, rows, [])


def test_published_numbers_are_transcribed_consistently():
    six = ("gsm8k", "math500", "minerva", "olympiadbench", "aime24", "amc23")  # SimpleRL-Zoo averages these
    for model in published.SIMPLERL_ZOO_ROWS:
        for kind, row in published.simplerl_zoo_rows(model).items():
            assert np.mean([row[c] for c in six]) == pytest.approx(row["avg"], abs=0.051), (model, kind)
    assert [d.text for d in published.deltas_for("lambda_grpo", "grpo", "qwen2.5-3b")] == ["+1.0"]
    # GRPO-λ's numbers: its own models (the 7B is R1-distilled), every trace style and variant of its method
    assert len(published.deltas_for("grpo_lambda_both", "grpo", "deepseek-r1-distill-qwen-7b")) == 2
    assert [d.model for d in published.deltas_for("grpo_lambda", "grpo", "qwen2.5-7b")] == [None]
    assert {d.paper for d in published.PUBLISHED_DELTAS} == {"lambda_grpo", "grpo_lambda"}
    assert published.regime_models("grpo_lambda") == {
        "qwen2.5-math-1.5b-instruct", "llama-3.2-3b-instruct", "deepseek-r1-distill-qwen-7b",
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Launches: every launcher with every method, composed by verl's config machinery in this process
# --------------------------------------------------------------------------------------------------------------


def test_compose_ppo_config_with_and_without_main_ppos_steps():
    from verl_lambda.compose import compose_ppo_config

    raw = compose_ppo_config(["trainer.total_epochs=3", "data.max_response_length=77"], validate=False, resolve=False)
    assert raw.trainer.total_epochs == 3
    response_length = OmegaConf.to_container(raw, resolve=False)["actor_rollout_ref"]["rollout"]["response_length"]
    assert str(response_length).startswith("${")  # left unresolved
    resolved = compose_ppo_config(["data.max_response_length=77"], validate=False, resolve=True)
    assert OmegaConf.to_container(resolved)["actor_rollout_ref"]["rollout"]["response_length"] == 77


SIZE_MODELS = {  # PAPER=lambda_grpo, the default
    "1.5b": ("Qwen/Qwen2.5-1.5B", 1, 4096),
    "3b": ("Qwen/Qwen2.5-3B", 1, 4096),
    "7b": ("Qwen/Qwen2.5-7B", 2, 8192),
}
MODELS = {
    "lambda_grpo": SIZE_MODELS,
    "grpo_lambda": {  # the GRPO-λ paper's models and response caps (its 3B is not named: ours)
        "1.5b": ("Qwen/Qwen2.5-Math-1.5B-Instruct", 1, 256),
        "3b": ("meta-llama/Llama-3.2-3B-Instruct", 1, 256),
        "7b": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 2, 768),
    },
}
BAD_OPTION = "+actor_rollout_ref.actor.lambda_grpo.r=-1"


def launch_cases() -> list[tuple[str, str, str]]:
    """Each regime's default method on every size, its other methods on 7B, and every other preset (and alias) on
    the default regime's 7B: every preset composed by verl in a launch, at a fraction of sizes x presets x papers."""
    cases = set()
    for paper, regime in REGIMES.items():
        cases |= {(paper, size, regime.default_algo) for size in SIZE_MODELS}
        cases |= {(paper, "7b", algo) for algo in regime.algos}
    cases |= {("lambda_grpo", "7b", algo) for algo in ALGORITHMS}
    return sorted(cases)


def select(config: DictConfig, key: str):
    return OmegaConf.select(config, key)


def compose(overrides: list[str]) -> DictConfig:
    return compose_as_on_a_gpu_node(overrides)


@pytest.fixture(scope="module")
def composed_launches(tmp_path_factory):
    """The launch cases (SEED=2, W&B without a login), composed and validated as main_ppo would."""
    root = tmp_path_factory.mktemp("launch")
    env = {"SEED": "2", "DATA_DIR": str(root / "data"), "OUT_ROOT": str(root / "out"), "HOME": str(root)}
    configs = {}
    for paper, size, algo in launch_cases():
        launch = launcher.train_launch(size, {**env, "PAPER": paper, "ALGO": algo})
        configs[(paper, size, algo)] = (launch, compose(launch.overrides))
    return root, configs


@pytest.mark.parametrize(("paper", "size", "algo"), launch_cases())
def test_train_launch_composes_with_its_settings(composed_launches, paper, size, algo):
    root, configs = composed_launches
    launch, config = configs[(paper, size, algo)]
    regime = REGIMES[paper]
    model, tp, max_response = MODELS[paper][size]
    prompt = regime.sizes[size].prompt
    for override in algo_overrides(algo):  # the method is exactly the preset
        key, value = override.split("=", 1)
        assert select(config, key.lstrip("+")) == yaml.safe_load(value), override
    suffix = "" if paper == "lambda_grpo" else f"-paper_{paper}"
    name = f"{launcher.model_tag(model)}-{canonical(algo)}-{regime.train_set}{suffix}-s2"
    out_dir = root / "out" / name
    expected = {
        "actor_rollout_ref.model.path": model,
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.tensor_model_parallel_size": tp,
        "actor_rollout_ref.rollout.n": 8,
        "actor_rollout_ref.rollout.seed": 2000,
        "actor_rollout_ref.actor.data_loader_seed": 2,
        "actor_rollout_ref.actor.optim.lr": 1e-6,
        "data.seed": 2,
        "data.train_batch_size": 1024,
        "data.max_response_length": max_response,
        "actor_rollout_ref.rollout.response_length": max_response,
        "trainer.total_training_steps": 100,
        "trainer.max_actor_ckpt_to_keep": 2,
        "trainer.experiment_name": name,
        "trainer.default_local_dir": str(out_dir / "checkpoints"),
        "trainer.validation_data_dir": str(out_dir / "validation"),
        "trainer.logger": ["console", "file", "wandb"],
        "ray_kwargs.ray_init.runtime_env.env_vars.WANDB_MODE": "offline",  # no login here: offline, not a crash
        "ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH": str(out_dir / "metrics.jsonl"),
        "reward.custom_reward_function.path": "pkg://verl_lambda.reproduce.reward",
        "reward.custom_reward_function.reward_kwargs.checker": "math_verify",
        "actor_rollout_ref.rollout.val_kwargs.n": 1,
        "data.val_files": [str(root / "data" / prompt / "eval" / f"{b}.parquet") for b in regime.benchmarks],
        "data.train_files": str(root / "data" / prompt / "train" / f"{regime.train_set}.parquet"),
    }
    assert {key: select(config, key) for key in expected} == expected
    assert select(config, "actor_rollout_ref.actor.strategy") in ("fsdp", "fsdp2")
    settings = launch.record["settings"]
    assert settings["seed"] == 2 and launch.record["wandb"] == "offline"
    assert settings["paper"] == paper and settings["algo"] == canonical(algo) and settings["regime_changes"] == []
    # every option of both methods is in verl's config, exactly as the record states them
    options = settings["method_options"]
    held = {
        "lambda_grpo": OmegaConf.to_container(select(config, "actor_rollout_ref.actor.lambda_grpo")),
        "grpo_lambda": OmegaConf.to_container(select(config, "actor_rollout_ref.actor.policy_loss.grpo_lambda")),
    }
    assert held["lambda_grpo"] == options["lambda_grpo"]
    assert {**held["grpo_lambda"], "kappa": options["grpo_lambda"]["kappa"]} == options["grpo_lambda"]
    assert set(held["lambda_grpo"]) == {f.name for f in dataclasses.fields(LambdaGRPOConfig)}
    assert set(held["grpo_lambda"]) == {f.name for f in dataclasses.fields(GRPOLambdaConfig)}
    assert (held["lambda_grpo"]["min"], held["lambda_grpo"]["max"]) == (-5.0, 5.0)  # the launch's bounds
    assert settings["lambda_updates"] == 400  # 100 steps x 1024 / 256 mini-batches
    assert not out_dir.exists()  # nothing was launched or written


def test_train_launch_options_any_model_and_checks(tmp_path):
    env = {
        "ALGO": "grpo_lambda", "SEED": "3", "MODEL_PATH": "meta-llama/Llama-3.1-8B", "ROLLOUT_N": "16",
        "MAX_RESPONSE_LENGTH": "6000", "TOTAL_STEPS": "50", "KEEP_CKPTS": "1", "NNODES": "2", "GPUS_PER_NODE": "4",
        "VAL_N": "4", "PROMPT": "verl", "CHECKER": "strict", "WANDB": "off", "DATA_DIR": str(tmp_path),
        "OUT_ROOT": str(tmp_path / "out"), "EVAL": "aime24,math500",
    }  # fmt: skip
    launch = launcher.train_launch("3b", env, ["trainer.test_freq=3"])
    config = compose(launch.overrides)
    assert launch.record["experiment"] == "llama-3.1-8b-grpo_lambda-math-verl-s3"  # named from MODEL_PATH
    expected = {
        "actor_rollout_ref.rollout.n": 16, "data.max_response_length": 6000, "trainer.total_training_steps": 50,
        "trainer.max_actor_ckpt_to_keep": 1, "trainer.nnodes": 2, "trainer.n_gpus_per_node": 4,
        "actor_rollout_ref.rollout.val_kwargs.n": 4, "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
        "reward.custom_reward_function.reward_kwargs.checker": "strict", "trainer.logger": ["console", "file"],
        "trainer.test_freq": 3, "data.seed": 3,
        "data.val_files": [str(tmp_path / "verl" / "eval" / f"{b}.parquet") for b in ("aime24", "math500")],
    }  # fmt: skip
    assert {key: select(config, key) for key in expected} == expected
    assert select(config, "ray_kwargs.ray_init.runtime_env.env_vars.WANDB_MODE") is None
    with pytest.raises(Exception, match=r"actor_rollout_ref\.actor\.lambda_grpo\.r must be a number > 0"):
        compose(launcher.train_launch("7b", {"DATA_DIR": str(tmp_path)}, [BAD_OPTION]).overrides)
    bad_settings = [
        ({"ALGO": "ppo"}, "ALGO must be one of"),
        ({"TRAIN": "gsm8k"}, "unknown training set"),
        ({"PROMPT": "chatml"}, "unknown prompt"),
        ({"CHECKER": "sympy"}, "CHECKER must be one of"),
        ({"SEED": "x"}, "SEED must be an integer"),
        ({"ROLLOUT_N": "1"}, "ROLLOUT_N must be >= 2"),
    ]
    for bad, message in bad_settings:
        with pytest.raises(ValueError, match=message):
            launcher.train_launch("7b", bad)


def test_launch_cli_prints_overrides_and_refuses_bad_settings(tmp_path, capsys):
    env = {"DATA_DIR": str(tmp_path), "SEED": "4", "WANDB": "off"}
    assert launcher.main(["train", "--size", "3b", "--print-overrides", "trainer.test_freq=7"], env=env) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "data.seed=4" in lines and lines[-1] == "trainer.test_freq=7"
    assert launcher.main(["train", "--size", "3b"], env={**env, "ALGO": "ppo"}) == 2
    assert "ALGO must be one of" in capsys.readouterr().err


def test_wandb_mode(tmp_path):
    assert launcher.wandb_mode({"HOME": str(tmp_path)}) == "offline"
    assert launcher.wandb_mode({"HOME": str(tmp_path), "WANDB_API_KEY": "k"}) == "online"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    assert launcher.wandb_mode({"HOME": str(tmp_path)}) == "online"
    assert launcher.wandb_mode({"HOME": str(tmp_path), "WANDB": "off"}) == "off"
    with pytest.raises(ValueError, match="WANDB must be"):
        launcher.wandb_mode({"WANDB": "maybe"})


def fake_run(root: Path, steps: tuple[int, ...] = (20, 40)) -> Path:
    """A training run's folder as the launcher and verl leave it, with empty checkpoints."""
    launch = launcher.train_launch("7b", {"SEED": "1", "DATA_DIR": str(root / "data"), "OUT_ROOT": str(root)})
    launch.out_dir.mkdir(parents=True)
    (launch.out_dir / "run.json").write_text(json.dumps(launch.record))
    for step in steps:
        (launch.out_dir / "checkpoints" / f"global_step_{step}" / "actor").mkdir(parents=True)
    return launch.out_dir


def test_eval_launch_settings_and_targets(tmp_path):
    run_dir = fake_run(tmp_path)
    launch = launcher.eval_launch(str(run_dir), {})
    config = compose(launch.overrides)
    out = run_dir / "eval" / "step40-t1.0-p0.95-n32x4-len16384"
    merged = run_dir / "checkpoints" / "global_step_40" / "hf_model"
    expected = {
        "actor_rollout_ref.model.path": str(merged),
        "trainer.val_only": True, "trainer.val_before_train": True, "trainer.resume_mode": "disable",
        "trainer.use_v1": True, "actor_rollout_ref.actor.use_kl_loss": False,
        "actor_rollout_ref.rollout.val_kwargs.do_sample": True, "actor_rollout_ref.rollout.val_kwargs.temperature": 1.0,
        "actor_rollout_ref.rollout.val_kwargs.top_p": 0.95, "actor_rollout_ref.rollout.tensor_model_parallel_size": 2,
        "data.max_response_length": 16384, "trainer.validation_data_dir": str(out / "validation"),
        "ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH": str(out / "metrics.jsonl"),
        "data.val_files": [str(out / "data" / f"{b}.parquet") for b in EVAL_SPECS],
        "trainer.logger": ["console", "file"],
    }  # fmt: skip
    assert {key: select(config, key) for key in expected} == expected
    assert launch.record["step"] == 40 and launch.record["run"]["settings"]["seed"] == 1
    assert launch.record["settings"]["model"] == "Qwen/Qwen2.5-7B"  # what the run trained: published rows match it
    assert launch.record["settings"]["samples"] == {
        "gsm8k": 4, "math500": 4, "minerva": 4, "olympiadbench": 4, "aime24": 32, "amc23": 32,
    }  # fmt: skip
    assert "verl.model_merger merge --backend fsdp" in launch.steps[0][0]
    greedy = launcher.eval_launch(str(run_dir / "checkpoints" / "global_step_20"), {"GREEDY": "1"}, ["a.b=1"])
    assert greedy.record["settings"]["eval_overrides"] == ["a.b=1"] and greedy.overrides[-1] == "a.b=1"
    assert greedy.out_dir == run_dir / "eval" / "step20-greedy-len16384" and greedy.record["step"] == 20
    assert set(greedy.record["settings"]["samples"].values()) == {1}
    assert "actor_rollout_ref.rollout.val_kwargs.do_sample=False" in greedy.overrides
    model = launcher.eval_launch("Qwen/Qwen2.5-7B", {"GREEDY": "1", "OUT_ROOT": str(tmp_path / "o")})
    assert model.steps[0][0].startswith("write the benchmarks")  # nothing to merge
    assert model.out_dir == tmp_path / "o" / "eval" / "qwen2.5-7b-greedy-len16384"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        launcher.eval_launch(str(run_dir), {"STEP": "60"})


def test_eval_files_carry_per_benchmark_sample_counts(tmp_path):
    build(tmp_path / "data", "none", "aime24,math500", from_dir=FIXTURES, prompts=DEFAULT_PROMPT)
    sources = [tmp_path / "data" / DEFAULT_PROMPT / "eval" / f"{b}.parquet" for b in ("aime24", "math500")]
    launcher._write_eval_files(sources, tmp_path / "out", {"aime24": 32, "math500": 4})
    aime = pq.read_table(tmp_path / "out" / "aime24.parquet").to_pylist()
    assert [r["__rollout_n__"] for r in aime] == [32, 32]
    assert [r["prompt"] for r in aime] == [r["prompt"] for r in fixture_rows("aime24")]
    assert {r["__rollout_n__"] for r in pq.read_table(tmp_path / "out" / "math500.parquet").to_pylist()} == {4}


def test_launch_prepares_its_folder_then_hands_over(tmp_path):
    """What a real launch does before exec'ing main_ppo (here PYTHON=true takes main_ppo's and the merger's place)."""
    true = shutil.which("true")
    assert true is not None
    env = script_env(PYTHON=true, SEED="1", OUT_ROOT=str(tmp_path), DATA_DIR=str(tmp_path / "data"), WANDB="off")
    command = [sys.executable, "-m", "verl_lambda.reproduce.launch"]
    out_dir = tmp_path / "qwen2.5-7b-lambda_grpo-math-s1"
    out_dir.mkdir()
    (out_dir / "metrics.jsonl").write_text('{"step": 1, "data": {}}\n')  # a previous segment of this run
    (out_dir / "run.json").write_text(json.dumps({"settings": {"seed": 1, "rollout_n": 5}}))  # other settings
    done = subprocess.run([*command, "train", "--size", "7b"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{true} -m verl.trainer.main_ppo" in done.stderr
    assert not (out_dir / "metrics.jsonl").exists() and len(list(out_dir.glob("metrics.*.jsonl"))) == 1
    record = json.loads((out_dir / "run.json").read_text())
    assert record["settings"]["rollout_n"] == 8 and record["config_file"] == "resolved_config.yaml"
    assert json.loads(next(out_dir.glob("run.*.json")).read_text())["settings"]["rollout_n"] == 5
    # the resolved config, written before training: every option of both methods, defaults included
    text = (out_dir / "resolved_config.yaml").read_text()
    config = OmegaConf.create(yaml.safe_load(text))
    assert select(config, "actor_rollout_ref.actor.lambda_grpo") == record["settings"]["method_options"]["lambda_grpo"]
    assert select(config, "actor_rollout_ref.actor.policy_loss.grpo_lambda.neg_adv_clamp") == -0.1
    assert "# λ-GRPO options (actor_rollout_ref.actor.lambda_grpo, active): " in text
    assert "[verl-lambda] λ-GRPO options (actor_rollout_ref.actor.lambda_grpo, active): " in done.stderr
    assert "λ's reach: Adam moves λ by about lr per update, 400 updates" in done.stderr

    (out_dir / "checkpoints" / "global_step_100" / "actor").mkdir(parents=True)
    build(tmp_path / "data", "none", "all", from_dir=FIXTURES, prompts=DEFAULT_PROMPT)
    done = subprocess.run([*command, "eval", str(out_dir)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    evaluation = out_dir / "eval" / "step100-t1.0-p0.95-n32x4-len16384"
    record = json.loads((evaluation / "eval.json").read_text())
    assert record["step"] == 100 and record["run"]["settings"]["rollout_n"] == 8
    assert select(OmegaConf.load(evaluation / "resolved_config.yaml"), "trainer.val_only") is True
    assert f"{true} -m verl.model_merger merge --backend fsdp" in done.stderr
    rows = pq.read_table(evaluation / "data" / "amc23.parquet").to_pylist()
    assert [r["__rollout_n__"] for r in rows] == [32, 32]


def test_a_launch_without_math_verify_stops_with_the_install_command(tmp_path):
    # In a child process: were the check to pass, the launch would exec PYTHON (true), not replace pytest.
    script = (
        "import importlib.util, sys; real = importlib.util.find_spec; "
        "importlib.util.find_spec = lambda name, *a: None if name == 'math_verify' else real(name, *a); "
        "from verl_lambda.reproduce.launch import main; sys.exit(main(['train', '--size', '7b']))"
    )
    env = script_env(PYTHON=shutil.which("true") or "true", OUT_ROOT=str(tmp_path), WANDB="off")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and 'pip install "verl-lambda[reproduce]"' in done.stderr
    assert not any(tmp_path.iterdir())  # stopped before writing anything


def script_env(**extra: str) -> dict[str, str]:
    """The caller's environment without the launch variables, and without PYTHON: the scripts must find .venv."""
    drop = {"PYTHON", "VERL_PLATFORM", "CPU", "DRY_RUN", "ALGO", "SEED", "OUT_DIR", "EXPERIMENT", "WANDB_API_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return {**env, **extra}


def run_script(script: str, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(600)
def test_dry_runs_of_the_scripts(tmp_path):
    """The launcher with SEED, and eval_ckpt.sh on a run folder, as a user types them (no PYTHON set)."""
    run_dir = fake_run(tmp_path / "runs")
    train_env = script_env(
        DRY_RUN="1", SEED="2", PAPER="grpo_lambda", ALGO="grpo_lambda_both", OUT_ROOT=str(tmp_path / "out"),
        HOME=str(tmp_path),
    )  # fmt: skip
    eval_env = script_env(DRY_RUN="1", HOME=str(tmp_path))
    with ThreadPoolExecutor(max_workers=2) as pool:
        train = pool.submit(run_script, "run_qwen7b.sh", train_env)
        evaluation = pool.submit(run_script, "eval_ckpt.sh", eval_env, str(run_dir), "trainer.nnodes=1")
        train, evaluation = train.result(), evaluation.result()
    for done in (train, evaluation):
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.startswith(HEADER + "\n")
        assert f"DRY_RUN: {REPO / '.venv' / 'bin' / 'python'} -m verl.trainer.main_ppo" in done.stderr
    config = OmegaConf.create(yaml.safe_load(train.stdout))
    name = "deepseek-r1-distill-qwen-7b-grpo_lambda_both-gsm8k_math-paper_grpo_lambda-s2"
    assert select(config, "trainer.experiment_name") == name
    assert (select(config, "data.seed"), select(config, "actor_rollout_ref.rollout.seed")) == (2, 2000)
    assert select(config, "data.max_response_length") == 768  # the GRPO-λ paper's 7B cap
    # every method option, in the YAML and in the comments before it
    trace = select(config, "actor_rollout_ref.actor.policy_loss.grpo_lambda")
    assert OmegaConf.to_container(trace) == {
        "gamma": 1.0, "lam": 0.99, "style": "both", "variant": "epsilon-trace", "neg_adv_clamp": -0.1,
    }  # fmt: skip
    assert set(select(config, "actor_rollout_ref.actor.lambda_grpo")) >= {"r", "lr", "init", "min", "max"}
    header = "\n".join(line for line in train.stdout.splitlines() if line.startswith("#"))
    for text in ("neg_adv_clamp=-0.1", "κ = gamma x lam = 0.99", "style=both", "variant=epsilon-trace",
                 "r=0.1111111111111111", "lr=0.01", "init=0.0"):  # fmt: skip
        assert text in header and text in train.stderr, text
    assert not (tmp_path / "out").exists()
    config = OmegaConf.create(yaml.safe_load(evaluation.stdout))
    assert select(config, "trainer.val_only") is True
    assert "would merge the checkpoint" in evaluation.stderr and "global_step_40/hf_model" in evaluation.stderr
    assert not (run_dir / "eval").exists()
    usage = run_script("eval_ckpt.sh", eval_env, timeout=60)
    assert usage.returncode == 2 and "usage: bash scripts/eval_ckpt.sh" in usage.stderr


# --------------------------------------------------------------------------------------------------------------
# End to end: a launcher on CPU for 2 steps (verl's trainer, Ray, the hf rollout, our reward, data and dumps)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_cpu_run_of_a_launcher_logs_training_dumps_and_a_checkpoint(tmp_path, capsys):
    out_dir = tmp_path / "cpu-qwen2.5-1.5b-lambda_grpo-math-s1"
    env = script_env(CPU="1", STEPS="2", OUT_DIR=str(out_dir))
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
            returncode = process.wait(timeout=720)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"the CPU run did not finish in 720 s; log: {log}")
    tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
    assert returncode == 0, tail

    records = read_metrics(out_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert 0.0 <= record["critic/score/mean"] <= 1.0
        assert "actor/lambda_grpo/lambda" in record  # ALGO defaults to λ-GRPO
    last = records[-1]
    for spec in EVAL_SPECS.values():  # every benchmark validated and scored by both checkers
        for metric in ("acc", "acc_strict", "acc_math_verify"):
            section = "val-core" if metric == "acc" else "val-aux"
            assert 0.0 <= last[f"{section}/{spec.data_source}/{metric}/mean@1"] <= 1.0
    dump = [json.loads(line) for line in (out_dir / "validation" / "2.jsonl").read_text().splitlines()]
    expected = {
        f"{ALL_SPECS[n].data_source}/{i}" for n, t in EXPECTED_TRUTHS.items() if n in EVAL_SPECS for i in range(len(t))
    }
    assert {row["problem"] for row in dump} == expected and all("acc_strict" in row for row in dump)
    run = json.loads((out_dir / "run.json").read_text())
    assert run["settings"]["seed"] == 1 and run["settings"]["cpu"] is True
    assert (out_dir / "checkpoints" / "global_step_2" / "actor").is_dir()
    assert list(out_dir.glob("hydra/*/.hydra/overrides.yaml"))  # hydra's record of the launch, next to the run

    assert report.main([str(out_dir), "--bootstrap", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[4:10] == [spec.title for spec in EVAL_SPECS.values()]
    assert lines[2].split()[:4] == ["cpu-qwen2.5-1.5b-lambda_grpo-math", "train", "1", "2"]
    evaluation = launcher.eval_launch(str(out_dir), {"N_SMALL": "2", "N_LARGE": "1"})  # the checkpoint just saved
    assert evaluation.record["step"] == 2 and evaluation.record["settings"]["cpu"] is True
    assert f"--local_dir {out_dir / 'checkpoints' / 'global_step_2' / 'actor'}" in evaluation.steps[0][0]
