"""The synthetic "classes" task: continue a string with characters of the same class.

Prompt: eight characters of one class, e.g. ``40721983`` (class ``0-9``; the others are ``a-j`` and ``k-t``).
Reward: the number of response characters in that class divided by the response budget
(``extra_info.max_chars``), so it lies in [0, 1]. The classes have ten characters each and the vocabulary 47, so the
untrained model (which samples nearly uniformly) scores about 0.2; a model that continues in class and does not stop
early scores 1.

Why this task: (1) the reward is dense and the class can be read off the preceding character, so the 2-layer tiny
model improves within a few dozen GRPO steps and a CPU demo shows learning; (2) inside a prompt group, longer
responses hold more characters of the class, so reward (hence GRPO's advantage) correlates positively with response
length. That correlation is what λ-GRPO's learnable λ responds to: it should rise.
"""

from __future__ import annotations

import os
import random
import string
from pathlib import Path
from typing import Any

DATA_SOURCE = "verl_lambda/classes"
REWARD_FN_NAME = "compute_score"
CLASSES = {"0-9": string.digits, "a-j": string.ascii_lowercase[:10], "k-t": string.ascii_lowercase[10:20]}


def reward_fn_path() -> str:
    """File path for ``reward.custom_reward_function.path`` (verl loads the reward function from a file)."""
    return os.path.abspath(__file__)


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **kwargs) -> float:
    """Share of the response budget filled with characters of the class ``ground_truth``."""
    max_chars = int((extra_info or {}).get("max_chars", 32))
    wanted = CLASSES[ground_truth]
    return min(sum(char in wanted for char in solution_str), max_chars) / max_chars


def make_rows(n: int, split: str, max_chars: int, seed: int, prompt_chars: int = 8) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for index in range(n):
        name = rng.choice(sorted(CLASSES))
        text = "".join(rng.choice(CLASSES[name]) for _ in range(prompt_chars))
        rows.append(
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": text}],
                "ability": "toy",
                "reward_model": {"style": "rule", "ground_truth": name},
                "extra_info": {"split": split, "index": index, "max_chars": max_chars},
            }
        )
    return rows


def build_dataset(out_dir: str | Path, max_chars: int = 32, n_train: int = 1024, n_test: int = 32) -> Path:
    """Write ``train.parquet`` and ``test.parquet`` in verl's RL dataset schema."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        pd.DataFrame(make_rows(n, split, max_chars, seed)).to_parquet(out_dir / f"{split}.parquet")
    return out_dir
