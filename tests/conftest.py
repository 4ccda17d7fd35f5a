"""Shared set-up. The cpu platform must be chosen before verl resolves its platform, i.e. before tests import
verl's worker modules: this file is imported first."""

import os

os.environ.setdefault("VERL_PLATFORM", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The embedded tiny Qwen2 model and tokenizer, built once per session (no downloads)."""
    from verl_lambda.toy import build_model

    return str(build_model(tmp_path_factory.mktemp("toy") / "model-tiny"))


@pytest.fixture(autouse=True)
def default_base_outside_the_policy_term():
    """``agg_loss("lambda_grpo")`` outside the actor's policy term aggregates with a process-wide base, which building
    a lambda_grpo actor config (or a trainer) sets: every test starts from, and leaves, the default, in any order."""
    from verl_lambda import lambda_grpo

    lambda_grpo.use_base_outside_policy_term(lambda_grpo.LambdaGRPOConfig.base)
    yield
    lambda_grpo.use_base_outside_policy_term(lambda_grpo.LambdaGRPOConfig.base)
