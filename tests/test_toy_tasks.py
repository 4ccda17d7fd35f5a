"""The lengths tasks: where their optimum lies, which way reward follows length inside a group, and the warm start."""

import random
import statistics

import pytest
import torch

from verl_lambda.toy import task
from verl_lambda.toy.task import CLASSES, LENGTHS_SOURCE, compute_score, length_score, make_rows, target_length

WANTED = CLASSES["0-9"]
CAP = 32


@pytest.mark.parametrize("n", list(task.PROMPT_CHARS))
def test_long_pays_most_for_the_target_streak_not_for_the_cap(n):
    target = target_length(n, "long")
    assert target < CAP
    best = "1" * target
    assert length_score(best, WANTED, target, "long") == 1.0
    assert length_score(best + "x", WANTED, target, "long") == 1.0  # the miss that stops the streak is free
    capped = "1" * CAP
    assert length_score(capped, WANTED, target, "long") < 1.0
    # below the target, every further character of the streak pays
    streaks = [length_score("1" * k + "x", WANTED, target, "long") for k in range(target + 1)]
    assert streaks == sorted(streaks) and len(set(streaks)) == target + 1
    # characters after the streak ended cost
    assert length_score("11x1", WANTED, target, "long") < length_score("11x", WANTED, target, "long")


@pytest.mark.parametrize("n", list(task.PROMPT_CHARS))
def test_short_pays_most_for_one_character(n):
    target = target_length(n, "short")
    assert length_score("1", WANTED, target, "short") == 1.0
    hits = [length_score("x" * k + "1", WANTED, target, "short") for k in range(target)]
    assert hits == sorted(hits, reverse=True) and hits[-1] > 0
    assert length_score("1" * CAP, WANTED, target, "short") == 0.0  # the cap earns nothing
    assert length_score("x" * 5, WANTED, target, "short") == 0.0  # no hit


def test_reward_follows_length_inside_groups_in_the_direction_of_each_variant():
    """The starting policy's format (a streak or a needle search, then stop): within a prompt's group, reward rises
    with length on lengths-long and falls with it on lengths-short, which is what λ-GRPO's λ learns from."""
    assert within_group_corr_same_class("long") > 0.5
    assert within_group_corr_same_class("short") < -0.5


def within_group_corr_same_class(variant: str, groups: int = 300, size: int = 8) -> float:
    """Mean over groups of corr(reward, length) among demonstrations that share the class of one prompt."""
    rng, corrs = random.Random(0), []
    for _ in range(groups):
        prompt, _ = task.demonstration(f"lengths-{variant}", rng)
        name = next(key for key, chars in CLASSES.items() if prompt[0] in chars)
        responses = []
        while len(responses) < size:
            other_prompt, response = task.demonstration(f"lengths-{variant}", rng)
            if other_prompt[0] in CLASSES[name]:
                responses.append(response)
        target = target_length(len(prompt), variant)
        rewards = [length_score(r, CLASSES[name], target, variant) for r in responses]
        lengths = [len(r) for r in responses]
        if len(set(rewards)) > 1 and len(set(lengths)) > 1:
            corrs.append(statistics.correlation(rewards, lengths))
    return statistics.mean(corrs)


@pytest.mark.parametrize("variant", ["long", "short"])
def test_rows_carry_a_target_that_varies_between_prompts(variant):
    rows = make_rows(64, "train", CAP, seed=0, task=f"lengths-{variant}")
    targets = {row["extra_info"]["target"] for row in rows}
    assert len(targets) == len(task.PROMPT_CHARS)
    for row in rows[:8]:
        prompt = row["prompt"][0]["content"]
        info = row["extra_info"]
        assert info["target"] == target_length(len(prompt), variant)
        wanted = CLASSES[row["reward_model"]["ground_truth"]]
        response = wanted[0] * 3 + "x"
        assert compute_score(LENGTHS_SOURCE, response, row["reward_model"]["ground_truth"], info) == length_score(
            response, wanted, info["target"], variant
        )


def test_warm_start_is_deterministic_and_cached(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from verl_lambda.toy.warm_start import CACHE_ENV, cached_warm_start, warm_start

    first = warm_start(tmp_path / "a", "lengths-long", steps=3)
    second = warm_start(tmp_path / "b", "lengths-long", steps=3)
    weights = [AutoModelForCausalLM.from_pretrained(path).state_dict() for path in (first, second)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    built = cached_warm_start("lengths-short", steps=3)
    stamp = (built / "warm_start.json").stat().st_mtime_ns
    assert cached_warm_start("lengths-short", steps=3) == built
    assert (built / "warm_start.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [built.name]  # no scratch folder left behind


# The chain tasks: continue the class's sequence to its end.


def test_chain_pays_one_for_the_sequence_to_the_class_end_and_nothing_for_the_cap():
    for name, wanted in CLASSES.items():
        for index, last in enumerate(wanted[:-1]):
            target = task.chain_target(wanted, last)
            assert target == 9 - index and 1 <= target <= 9
            best = wanted[index + 1 :]
            assert len(best) == target and task.chain_score(best, wanted, last) == 1.0
            # a response that runs on to the cap, even one that keeps following the sequence, earns 0
            running = "".join(wanted[(index + k) % 10] for k in range(1, CAP + 1))
            assert task.chain_score(running, wanted, last) == 0.0, name
            # below the target every further character pays; past it every character costs
            scores = [task.chain_score(running[:k], wanted, last) for k in range(target + 4)]
            assert scores[: target + 1] == sorted(scores[: target + 1]) and len(set(scores[: target + 1])) == target + 1
            assert scores[target:] == sorted(scores[target:], reverse=True) and scores[target + 1] < 1.0
    wanted = CLASSES["a-j"]
    assert task.chain_score("defxhij", wanted, "c") == pytest.approx((3 - 0.5 * 4) / 7)  # a miss ends the streak
    assert task.chain_score("defghijabc", wanted, "c") == pytest.approx((7 - 0.5 * 3) / 7)  # wrapping is not paid
    assert task.chain_score("x" * 9, wanted, "c") == 0.0
    assert task.chain_score("", wanted, "c") == 0.0


@pytest.mark.parametrize("variant", ["long", "short"])
def test_chain_rows_targets_span_eight_tokens_and_report_the_gap(variant):
    rows = make_rows(256, "train", CAP, seed=0, task=f"chain-{variant}")
    targets = {row["extra_info"]["target"] for row in rows}
    assert targets == set(range(1, 10))
    for row in rows[:16]:
        prompt, info, name = row["prompt"][0]["content"], row["extra_info"], row["reward_model"]["ground_truth"]
        assert row["data_source"] == task.CHAIN_SOURCE and info["last"] == prompt[-1]
        assert len(prompt) in task.PROMPT_CHARS and all(char in CLASSES[name] for char in prompt)
        assert compute_score(task.CHAIN_SOURCE, "x" * 3, name, info) == task.chain_score(
            "x" * 3, CLASSES[name], prompt[-1]
        )
        assert task.chain_length_gap(prompt, "x" * 3, name) == abs(3 - info["target"])


def test_chain_demonstrations_stop_early_or_late_and_reward_follows_length_accordingly():
    """``chain-long`` demonstrations stop at or before the class's end, ``chain-short`` ones at or after it, so within
    a prompt's group reward rises with length on the first and falls with it on the second."""
    rng = random.Random(0)
    for variant, sign in (("long", 1), ("short", -1)):
        corrs = []
        for _ in range(200):
            prompt, _ = task.demonstration(f"chain-{variant}", rng)
            name = next(key for key, chars in CLASSES.items() if prompt[-1] in chars)
            wanted, target = CLASSES[name], task.chain_target(CLASSES[name], prompt[-1])
            responses = []
            while len(responses) < 8:
                other, response = task.demonstration(f"chain-{variant}", rng)
                if other[-1] == prompt[-1]:
                    responses.append(response)
                    assert (len(response) <= target) if variant == "long" else (len(response) >= target)
            rewards = [task.chain_score(r, wanted, prompt[-1]) for r in responses]
            lengths = [len(r) for r in responses]
            if len(set(rewards)) > 1 and len(set(lengths)) > 1:
                corrs.append(statistics.correlation(rewards, lengths))
        assert sign * statistics.mean(corrs) > 0.3, variant


def test_the_launcher_adds_each_steps_mean_length_gap_from_verls_rollout_dumps(tmp_path):
    from verl_lambda.cpu.launch import LENGTH_GAP_KEY, LENGTH_GAPS_FILE, ROLLOUTS_DIR, with_length_gaps

    dumps = tmp_path / ROLLOUTS_DIR
    dumps.mkdir()
    # verl's dump: prompt, response and class of every sample (T = 7 after "2", 2 after "h")
    (dumps / "1.jsonl").write_text(
        '{"input": "552", "output": "3456789", "gts": "0-9"}\n{"input": "ah", "output": "ijabc", "gts": "a-j"}\n'
    )
    records = with_length_gaps([{"step": 1, "x": 1.0}, {"step": 2}], tmp_path)
    assert records == [{"step": 1, "x": 1.0, LENGTH_GAP_KEY: 1.5}, {"step": 2}]
    # a finished run keeps its gaps next to its metrics, and they are read from there (its dumps are not committed)
    (tmp_path / LENGTH_GAPS_FILE).write_text('{"1": 0.25, "2": 3.0}')
    assert with_length_gaps([{"step": 1}, {"step": 2}], tmp_path) == [
        {"step": 1, LENGTH_GAP_KEY: 0.25},
        {"step": 2, LENGTH_GAP_KEY: 3.0},
    ]
