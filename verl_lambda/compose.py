"""verl's ``ppo_trainer`` config composed with hydra, as ``python -m verl.trainer.main_ppo`` composes it.

One function for every place in the project that needs verl's full config without launching verl: the launchers'
dry runs (:mod:`verl_lambda.reproduce.compose`), the CPU actor harness, and the tests.

``main_ppo`` is a ``@hydra.main(config_path="config", config_name="ppo_trainer")`` entry point; its ``main`` then
calls ``auto_set_device(config)`` and ``validate_config(config, use_reference_policy=need_reference_policy(config),
use_critic=need_critic(config))`` before Ray starts, and the task runner resolves the interpolations first thing.
:func:`compose_ppo_config` runs the same steps with hydra's compose API (same config directory, defaults list and
override grammar); ``validate`` and ``resolve`` turn the last two off for callers that only want the composed tree.

Layer 2 (foundations).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["compose_ppo_config", "ppo_trainer_config_dir"]


def ppo_trainer_config_dir() -> str:
    """The directory of verl's trainer configs (``verl/trainer/config``), the one ``main_ppo`` loads."""
    from verl.trainer import main_ppo

    return os.path.join(os.path.dirname(os.path.abspath(main_ppo.__file__)), "config")


def compose_ppo_config(
    overrides: Sequence[str] = (), validate: bool = True, resolve: bool = True, config_name: str = "ppo_trainer"
) -> Any:
    """verl's ``ppo_trainer`` config with ``overrides`` (hydra override syntax, applied in order: the last wins).

    Args:
        overrides: hydra overrides, exactly as given to ``python -m verl.trainer.main_ppo``.
        validate: run main_ppo's pre-launch steps, ``auto_set_device`` and ``validate_config`` (which also builds
            verl's ``ActorConfig``, where verl-lambda checks its own options). Errors are verl's.
        resolve: resolve every interpolation in place, as verl's task runner does first; interpolation errors
            surface here.
        config_name: the config of ``verl/trainer/config`` to compose (``ppo_trainer`` for main_ppo).

    Returns:
        the composed ``DictConfig``.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=ppo_trainer_config_dir(), version_base=None):
        config = compose(config_name=config_name, overrides=list(overrides))
    if validate:
        from verl.trainer.ppo.utils import need_critic, need_reference_policy
        from verl.utils.config import validate_config
        from verl.utils.device import auto_set_device

        auto_set_device(config)
        validate_config(
            config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
        )
    if resolve:
        OmegaConf.resolve(config)
    return config
