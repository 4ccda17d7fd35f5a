"""The package's layers and the layer of every module: the single source that ``tests/test_layers.py`` checks.

A module imports only modules of its own layer or below, at module level or inside a function alike (a lazy import
that goes up still closes a circle), and the modules of one layer import each other without a loop. A package's
``__init__`` sits in the lowest layer of its modules, since importing any of them runs it first. Every module's
docstring has a line ``Layer N (name)``. A new module needs an entry below, or the test fails.

Layer 2 (foundations).
"""

from __future__ import annotations

from typing import NamedTuple


class Layer(NamedTuple):
    name: str
    summary: str


LAYERS: dict[int, Layer] = {
    1: Layer("math", "the methods' pure math: torch only, no verl, nothing else of the package"),
    2: Layer(
        "foundations",
        "options, presets, config composition, capability checks, metrics and plots, the toy model and tasks, and "
        "the accessors through which the layers above read and write verl's batches, configs and workers",
    ),
    3: Layer("mechanics", "how patches attach to verl: post-import hooks, wrapping, the version and failure guards"),
    4: Layer("methods and backend", "the two algorithms in verl, and the CPU backend's platform, rollouts and harness"),
    5: Layer("patch tables", "the wrappers of verl, in two tables: the algorithms' and the CPU backend's"),
    6: Layer("entry point", "the verl.plugins entry point, which hands the patch tables to the mechanics"),
    7: Layer("applications", "programs: the node check, the CPU launcher, the study, the reproduction"),
}

MODULE_LAYERS: dict[str, int] = {
    # 1 math
    "verl_lambda": 1,  # re-exports layer 1's public functions; every module of the package runs it first
    "verl_lambda.ops": 1,
    "verl_lambda.ops.eligibility_trace": 1,
    "verl_lambda.ops.group_mean": 1,
    "verl_lambda.ops.length_weights": 1,
    # 2 foundations
    "verl_lambda.capabilities": 2,
    "verl_lambda.collectives": 2,
    "verl_lambda.compose": 2,
    "verl_lambda.config": 2,
    "verl_lambda.layers": 2,
    "verl_lambda.metrics": 2,
    "verl_lambda.plot": 2,
    "verl_lambda.presets": 2,
    "verl_lambda.stats": 2,
    "verl_lambda.toy": 2,
    "verl_lambda.toy.model": 2,
    "verl_lambda.toy.task": 2,
    "verl_lambda.toy.warm_start": 2,
    "verl_lambda.verl_access": 2,
    # 3 mechanics
    "verl_lambda.hooks": 3,
    # 4 methods and backend
    "verl_lambda.cpu": 4,
    "verl_lambda.cpu.device": 4,
    "verl_lambda.cpu.harness": 4,
    "verl_lambda.cpu.hf_rollout": 4,
    "verl_lambda.cpu.padding": 4,
    "verl_lambda.cpu.platform": 4,
    "verl_lambda.cpu.sampling": 4,
    "verl_lambda.cpu.vllm_rollout": 4,
    "verl_lambda.group_mean": 4,
    "verl_lambda.grpo_lambda": 4,
    "verl_lambda.lambda_grpo": 4,
    # 5 patch tables
    "verl_lambda.cpu.patches": 5,
    "verl_lambda.patches": 5,
    # 6 entry point
    "verl_lambda.plugin": 6,
    # 7 applications
    "verl_lambda.__main__": 7,
    "verl_lambda.cpu.launch": 7,
    "verl_lambda.reproduce": 7,
    "verl_lambda.reproduce.compose": 7,
    "verl_lambda.reproduce.cost": 7,
    "verl_lambda.reproduce.datasets": 7,
    "verl_lambda.reproduce.launch": 7,
    "verl_lambda.reproduce.pages": 7,
    "verl_lambda.reproduce.published": 7,
    "verl_lambda.reproduce.regimes": 7,
    "verl_lambda.reproduce.report": 7,
    "verl_lambda.reproduce.reward": 7,
    "verl_lambda.reproduce.verify": 7,
    "verl_lambda.study": 7,
    "verl_lambda.toy.__main__": 7,  # the toy's command line; the toy itself is layer 2
}
