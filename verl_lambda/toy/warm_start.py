"""A short supervised warm start for the lengths tasks: the starting policy of a real RL run is an SFT model.

The untrained tiny model stops almost at random (about one in fifty tokens is its stop token), so most of its
responses run to the cap. A few seconds of next-token training on demonstrations of the task's format
(``verl_lambda.toy.task.demonstration``: random characters until the first miss, or the first hit, then stop) give it
what RL usually starts from: a policy that follows the format, at lengths that vary from response to response,
without knowing the task (its characters are no better than the demonstrations' chance level). Deterministic for a
given seed; 10-20 s on 2 CPU cores.

Layer 2 (foundations).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import torch

from verl_lambda.toy.model import build_model
from verl_lambda.toy.task import demonstration

_STAMP = "warm_start.json"
# Where warm-started models are kept between runs (they are deterministic, so one build serves every run).
CACHE_ENV = "VERL_LAMBDA_CACHE"


def cached_warm_start(task: str, size: str = "tiny", **settings) -> Path:
    """The model of ``size`` warm-started for ``task``, from the cache (``$VERL_LAMBDA_CACHE``, default
    ``~/.cache/verl-lambda``), built there on first use. Written to a temporary folder and renamed, so a reader never
    sees half a model."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "verl-lambda")
    key = hashlib.sha256(json.dumps({"size": size, **settings}, sort_keys=True).encode()).hexdigest()[:12]
    target = root / f"warm-start-{task}-{size}-{key}"
    if (target / _STAMP).exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        warm_start(scratch, task, size=size, **settings)
        try:
            scratch.rename(target)
        except OSError:  # another process built it first
            if not (target / _STAMP).exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def warm_start(
    out_dir: str | Path,
    task: str,
    size: str = "tiny",
    steps: int = 100,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> Path:
    """Build the tiny model of ``size`` in ``out_dir`` and fine-tune it on ``task``'s demonstrations.

    Idempotent: a model already warm-started with the same settings is reused.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    settings = dict(task=task, size=size, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    stamp = out_dir / _STAMP
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return out_dir
    build_model(out_dir, size=size, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, torch_dtype=torch.float32)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        examples = []
        for _ in range(batch_size):
            prompt, response = demonstration(task, rng)
            examples.append(
                (tokenizer(prompt)["input_ids"], tokenizer(response)["input_ids"] + [tokenizer.eos_token_id])
            )
        width = max(len(p) + len(r) for p, r in examples)
        input_ids = torch.full((batch_size, width), tokenizer.pad_token_id)
        labels = torch.full((batch_size, width), -100)  # the loss sees the responses and their stop token only
        attention = torch.zeros(batch_size, width, dtype=torch.long)
        for row, (prompt, response) in enumerate(examples):
            end = len(prompt) + len(response)
            input_ids[row, :end] = torch.tensor(prompt + response)
            labels[row, len(prompt) : end] = torch.tensor(response)
            attention[row, :end] = 1
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(out_dir)
    stamp.write_text(json.dumps(settings))
    return out_dir
