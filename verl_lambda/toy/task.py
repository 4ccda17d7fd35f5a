"""The embedded synthetic tasks, in verl's RL dataset schema, with their reward function.

``classes`` (the tests' task): continue a string with characters of the same class.

Prompt: eight characters of one class, e.g. ``40721983`` (class ``0-9``; the others are ``a-j`` and ``k-t``).
Reward: the number of response characters in that class divided by the response budget
(``extra_info.max_chars``), so it lies in [0, 1]. The classes have ten characters each and the vocabulary 47, so the
untrained model (which samples nearly uniformly) scores about 0.2; a model that continues in class and does not stop
early scores 1.

Why this task: (1) the reward is dense and the class can be read off the preceding character, so the 2-layer tiny
model improves within a few dozen GRPO steps and a CPU demo shows learning; (2) inside a prompt group, longer
responses hold more characters of the class, so reward (hence GRPO's advantage) correlates positively with response
length. That correlation is what λ-GRPO's learnable λ responds to: it should rise. Its drawback for a demo of λ:
the optimum is the length cap, and once every response reaches it all weights are 1 and λ has nothing to learn.

``lengths-long`` and ``lengths-short`` (the demo's and the study's tasks): the prompt is n characters of one class
(n from 3 to 10), and the length that earns reward is set by what the response writes, so it differs between prompts
and between the responses of a group for as long as the policy makes mistakes:

- ``lengths-long``, a streak: the reward is the number of leading response characters in the class, up to a target
  T = n + 14 (17 to 24, below the cap of 32), divided by T; characters written after the streak ended (past the
  first miss) or past the target cost half as much each. The best response writes T characters of the class and
  stops; a response that stops right after its first miss is longer the longer its streak: longer earns more.
- ``lengths-short``, a needle: the reward is (T - h + 1) / T for the first class character at position h, with
  T = n + 4 (7 to 14), and characters after it cost half as much each. The best response is one class character;
  a response that stops at its first hit is shorter the earlier the hit: shorter earns more.

``chain-long`` and ``chain-short`` (tasks whose optimum the policy can reach and keep): the prompt is n characters
of one class (n from 3 to 10), and the response continues the class's sequence from the prompt's last character to
the class's end and stops (``...c`` → ``defghij``; the classes are sequences, ``0123456789``, ``abcdefghij``,
``klmnopqrst``). The target T, the characters left to the class's end, is 1 to 9: it differs between prompts, and the
response itself shows where to stop (after the class's last character). The reward is the number of leading
characters that follow the sequence (wrapping after the class's end), up to T, minus ``CHAIN_EXTRA_COST`` for every
other character, divided by T and floored at 0: 1 for the exact answer, 0 for a response that fills the 32-token
cap (its 32 - T extra characters cost more than T earns). The two variants differ only in the warm start's lengths:
``chain-long`` demonstrations stop before or at the class's end, ``chain-short`` ones run past it; one character in
seven of a demonstration is a random class character, so the warm-started policy also makes mistakes that RL
removes. Within a group, reward rises with length among the demonstrations of ``chain-long`` and falls with it among
those of ``chain-short``; during RL, what a longer response costs (a mistake, or characters past the class's end)
decides the sign, step by step.
``chain_length_gap`` gives |response length - T| of a sample from verl's rollout dumps (the launcher logs its mean).

The starting policy is the tiny model after a few seconds of supervised warm start on the task's format
(``verl_lambda.toy.warm_start``): random characters until the first miss (long) or the first hit (short), then stop.
Its lengths therefore vary within every group, and with them the reward, in the direction the variant says, so
λ-GRPO's λ has a signal (rise for ``lengths-long``, fall for ``lengths-short``) for as long as the responses of a
group differ in length. Neither optimum is the length cap.

Layer 2 (foundations).
"""

from __future__ import annotations

import os
import random
import string
from pathlib import Path
from typing import Any

DATA_SOURCE = "verl_lambda/classes"
LENGTHS_SOURCE = "verl_lambda/lengths"
CHAIN_SOURCE = "verl_lambda/chain"
REWARD_FN_NAME = "compute_score"
CLASSES = {"0-9": string.digits, "a-j": string.ascii_lowercase[:10], "k-t": string.ascii_lowercase[10:20]}
TASKS = ("classes", "lengths-long", "lengths-short", "chain-long", "chain-short")
PROMPT_CHARS = range(3, 11)  # n, the number of prompt characters of the lengths tasks
# What each character written beyond the rewarded part costs, relative to what one rewarded character earns.
EXTRA_COST = 0.5
# The chain tasks: what each character beyond the paid streak costs, the demonstrations' share of random characters,
# and how far past the class's end a ``chain-short`` demonstration may run.
CHAIN_EXTRA_COST = 0.5
CHAIN_NOISE = 1.0 / 7.0
CHAIN_OVERSHOOT = 12
# The metric the CPU launcher logs for the chain tasks: each step's mean |response length - T|.
LENGTH_GAP_KEY = "task/length_gap"


def target_length(prompt_chars: int, variant: str) -> int:
    """T of the lengths tasks: the longest streak that pays (long) or the position a hit stops paying (short)."""
    return prompt_chars + 14 if variant == "long" else prompt_chars + 4


def length_score(response: str, wanted: str, target: int, variant: str) -> float:
    """The lengths tasks' reward for ``response`` given the class's characters ``wanted``; see the module docstring."""
    if variant == "long":
        streak = next((i for i, char in enumerate(response) if char not in wanted), len(response))
        paid = min(streak, target)
        extra = max(0, len(response) - paid - 1)  # the miss that ends a streak is free: stopping needs it
        return max(0.0, (paid - EXTRA_COST * extra) / target)
    hit = next((i + 1 for i, char in enumerate(response) if char in wanted), None)
    if hit is None:
        return 0.0
    return max(0.0, (target - hit + 1 - EXTRA_COST * (len(response) - hit)) / target)


def chain_target(wanted: str, last: str) -> int:
    """T of the chain tasks: the characters of the class ``wanted`` after the prompt's ``last`` one."""
    return len(wanted) - 1 - wanted.index(last)


def chain_score(response: str, wanted: str, last: str) -> float:
    """The chain tasks' reward for ``response``, continuing the prompt's ``last`` character in the class ``wanted``."""
    target = chain_target(wanted, last)
    position, streak = wanted.index(last), 0
    for char in response:
        position = (position + 1) % len(wanted)
        if char != wanted[position]:
            break
        streak += 1
    paid = min(streak, target)
    return max(0.0, (paid - CHAIN_EXTRA_COST * (len(response) - paid)) / target)


def _chain_prompt(rng: random.Random) -> tuple[str, str]:
    """(class name, prompt) of a chain task: n random class characters, the last one not the class's end."""
    name = rng.choice(sorted(CLASSES))
    wanted = CLASSES[name]
    count = rng.choice(PROMPT_CHARS)
    prompt = [rng.choice(wanted) for _ in range(count - 1)] + [rng.choice(wanted[:-1])]
    return name, "".join(prompt)


def _chain_demonstration(task: str, rng: random.Random) -> tuple[str, str]:
    name, prompt = _chain_prompt(rng)
    wanted = CLASSES[name]
    target = chain_target(wanted, prompt[-1])
    length = rng.randint(1, target) if task == "chain-long" else rng.randint(target, target + CHAIN_OVERSHOOT)
    start = wanted.index(prompt[-1])
    response = "".join(
        rng.choice(wanted) if rng.random() < CHAIN_NOISE else wanted[(start + i) % len(wanted)]
        for i in range(1, length + 1)
    )
    return prompt, response


def demonstration(task: str, rng: random.Random) -> tuple[str, str]:
    """One (prompt, response) of the task's format for the warm start: random characters until the first miss
    (``lengths-long``) or the first hit (``lengths-short``), then stop. The characters are no better than chance
    (a class character with probability 0.5 in a streak, 10/47 in a needle search), so the task is not learnt."""
    from verl_lambda.toy.model import CHARACTERS

    if task.startswith("chain-"):
        return _chain_demonstration(task, rng)
    name = rng.choice(sorted(CLASSES))
    wanted = CLASSES[name]
    prompt = "".join(rng.choice(wanted) for _ in range(rng.choice(PROMPT_CHARS)))
    response = ""
    for _ in range(32):
        char = rng.choice(wanted) if task == "lengths-long" and rng.random() < 0.5 else rng.choice(CHARACTERS)
        response += char
        if (char not in wanted) == (task == "lengths-long"):
            break
    return prompt, response


def reward_fn_path() -> str:
    """File path for ``reward.custom_reward_function.path`` (verl loads the reward function from a file)."""
    return os.path.abspath(__file__)


def chain_length_gap(prompt: str, response: str, ground_truth: str) -> int:
    """|response length - T| of a chain task's sample, from what verl's rollout dumps hold (prompt, response, class)."""
    return abs(len(response) - chain_target(CLASSES[ground_truth], prompt[-1]))


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **kwargs) -> float:
    """``classes``: the share of the response budget filled with characters of the class ``ground_truth``.
    ``lengths-*``: ``length_score``. ``chain-*``: ``chain_score``."""
    info = extra_info or {}
    wanted = CLASSES[ground_truth]
    if data_source == CHAIN_SOURCE:
        return chain_score(solution_str, wanted, info["last"])
    in_class = sum(char in wanted for char in solution_str)
    if data_source == LENGTHS_SOURCE:
        return length_score(solution_str, wanted, int(info["target"]), info["variant"])
    max_chars = int(info.get("max_chars", 32))
    return min(in_class, max_chars) / max_chars


def make_rows(
    n: int, split: str, max_chars: int, seed: int, task: str = "classes", prompt_chars: int = 8
) -> list[dict[str, Any]]:
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    rng = random.Random(seed)
    rows = []
    for index in range(n):
        info: dict[str, Any] = {"split": split, "index": index, "max_chars": max_chars}
        if task.startswith("chain-"):
            name, text = _chain_prompt(rng)
            info.update(target=chain_target(CLASSES[name], text[-1]), last=text[-1], variant=task.split("-")[1])
            rows.append(_row(CHAIN_SOURCE, text, name, info))
            continue
        name = rng.choice(sorted(CLASSES))
        if task == "classes":
            count, source = prompt_chars, DATA_SOURCE
        else:
            count, source = rng.choice(PROMPT_CHARS), LENGTHS_SOURCE
            info.update(target=target_length(count, task.split("-")[1]), variant=task.split("-")[1])
        text = "".join(rng.choice(CLASSES[name]) for _ in range(count))
        rows.append(_row(source, text, name, info))
    return rows


def _row(source: str, text: str, name: str, info: dict[str, Any]) -> dict[str, Any]:
    """One prompt in verl's RL dataset schema."""
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": text}],
        "ability": "toy",
        "reward_model": {"style": "rule", "ground_truth": name},
        "extra_info": info,
    }


def build_dataset(
    out_dir: str | Path, max_chars: int = 32, n_train: int = 1024, n_test: int = 32, task: str = "classes"
) -> Path:
    """Write ``train.parquet`` and ``test.parquet`` of ``task`` in verl's RL dataset schema."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        pd.DataFrame(make_rows(n, split, max_chars, seed, task=task)).to_parquet(out_dir / f"{split}.parquet")
    return out_dir
