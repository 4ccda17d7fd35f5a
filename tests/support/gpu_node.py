"""Compose a launch's config as a GPU node's ``main_ppo`` would, from a test process on the cpu platform."""

import pytest
from verl.plugin.platform import platform_manager

from verl_lambda.reproduce.compose import compose as compose_config


def compose_as_on_a_gpu_node(overrides):
    """The test process runs on verl-lambda's cpu platform (conftest.py), whose config hooks would otherwise apply to
    the vLLM rollout: compose without ``VERL_PLATFORM``. verl detects its platform once per process and keeps it, so
    the detection this composition makes is dropped afterwards and the process keeps its cpu platform (without that,
    every later test in the process would run on the platform detected here)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("VERL_PLATFORM", raising=False)
        patch.setattr(platform_manager, "_current_platform", None)
        return compose_config(overrides)
