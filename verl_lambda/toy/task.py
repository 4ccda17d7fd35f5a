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
(n from 3 to 10), and the response should continue the class for a prompt-dependent target length T below the cap:
T = 2n + 8 (14 to 28 tokens) in ``lengths-long``, T = n - 1 (2 to 9) in ``lengths-short``. Reward =
(share of the response's characters in the class) x (length fit: L / T up to T, then 1 - (L - T) / T down to 0).
The starting policy (``verl_lambda.toy.warm_start``: the tiny model briefly fine-tuned to stop after 4 to 14 random
characters) writes responses of 4 to 14 tokens, so under ``lengths-long`` most responses of a group are shorter than
their target (a longer one earns more: λ should rise), and under ``lengths-short`` most are longer (a shorter one
earns more: λ should fall). Neither optimum is the cap, and the target moves with n, which a 2-layer model learns
slowly: lengths keep varying within groups, so λ keeps a signal all run long, while the class share (random
characters at the start) makes reward rise within a few dozen steps.
"""

from __future__ import annotations

import os
import random
import string
from pathlib import Path
from typing import Any

DATA_SOURCE = "verl_lambda/classes"
LENGTHS_SOURCE = "verl_lambda/lengths"
REWARD_FN_NAME = "compute_score"
CLASSES = {"0-9": string.digits, "a-j": string.ascii_lowercase[:10], "k-t": string.ascii_lowercase[10:20]}
TASKS = ("classes", "lengths-long", "lengths-short")
PROMPT_CHARS = range(3, 11)  # n, the number of prompt characters of the lengths tasks


def target_length(prompt_chars: int, variant: str) -> int:
    """T of the lengths tasks: below the cap either way, above (long) or below (short) most untrained lengths."""
    return 2 * prompt_chars + 8 if variant == "long" else prompt_chars - 1


def length_fit(length: int, target: int) -> float:
    """1 at the target, falling linearly to 0 at length 0 and at twice the target."""
    return length / target if length <= target else max(0.0, 1.0 - (length - target) / target)


def reward_fn_path() -> str:
    """File path for ``reward.custom_reward_function.path`` (verl loads the reward function from a file)."""
    return os.path.abspath(__file__)


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **kwargs) -> float:
    """``classes``: the share of the response budget filled with characters of the class ``ground_truth``.
    ``lengths-*``: the share of the response's characters in the class times its fit to the target length."""
    info = extra_info or {}
    wanted = CLASSES[ground_truth]
    in_class = sum(char in wanted for char in solution_str)
    if data_source == LENGTHS_SOURCE:
        length = len(solution_str)
        return in_class / length * length_fit(length, int(info["target"])) if length else 0.0
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
        name = rng.choice(sorted(CLASSES))
        info: dict[str, Any] = {"split": split, "index": index, "max_chars": max_chars}
        if task == "classes":
            count, source = prompt_chars, DATA_SOURCE
        else:
            count, source = rng.choice(PROMPT_CHARS), LENGTHS_SOURCE
            info.update(target=target_length(count, task.split("-")[1]), variant=task.split("-")[1])
        text = "".join(rng.choice(CLASSES[name]) for _ in range(count))
        rows.append(
            {
                "data_source": source,
                "prompt": [{"role": "user", "content": text}],
                "ability": "toy",
                "reward_model": {"style": "rule", "ground_truth": name},
                "extra_info": info,
            }
        )
    return rows


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
