"""Compose and validate a launch's config exactly as ``python -m verl.trainer.main_ppo`` does, then stop.

    python -m verl_lambda.reproduce.compose OVERRIDE [OVERRIDE ...]

verl's ``main_ppo.main`` is: hydra composes ``ppo_trainer`` from ``verl/trainer/config`` with the command-line
overrides; ``auto_set_device(config)``; ``validate_config(config, use_reference_policy=need_reference_policy(config),
use_critic=need_critic(config))``; then Ray starts and the task runner resolves the config. This runs the same steps
before Ray, with hydra's compose API (same config directory, defaults list and override grammar), resolves every
interpolation, prints the config as YAML on stdout and exits 0. Any error exits 1 with its message on stderr.

``validate_config`` builds verl's ``ActorConfig``, which is where verl-lambda checks its own options, so a bad
``lambda_grpo.*`` / ``grpo_lambda.*`` option fails here just as it would at launch. Data files that do not exist
are reported as warnings only (a dry run in CI has no data); ``--require-files`` makes them errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

HEADER = "# verl-lambda dry run: verl's ppo_trainer config, composed and validated as main_ppo would; not launched"


def compose(overrides: Sequence[str]) -> Any:
    """verl's ``ppo_trainer`` config with ``overrides``, after main_ppo's device fix-up and validation."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf
    from verl.trainer import main_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    config_dir = os.path.join(os.path.dirname(os.path.abspath(main_ppo.__file__)), "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = hydra_compose(config_name="ppo_trainer", overrides=list(overrides))
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    OmegaConf.resolve(config)  # what the task runner does first; interpolation errors surface here
    return config


def missing_data_files(config: Any) -> list[str]:
    files = []
    for key in ("train_files", "val_files"):
        value = config.data.get(key)
        files += [value] if isinstance(value, str) else list(value or [])
    return [f for f in files if "://" not in str(f) and not os.path.exists(os.path.expanduser(str(f)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--require-files", action="store_true", help="missing train/val files are errors")
    parser.add_argument("overrides", nargs="*", help="hydra overrides, as given to verl.trainer.main_ppo")
    args = parser.parse_args(argv)
    from omegaconf import OmegaConf

    try:
        with contextlib.redirect_stdout(sys.stderr):  # verl's notices must not mix with the YAML
            config = compose(args.overrides)
    except Exception as exc:
        print(f"DRY RUN FAILED: the launch would stop with {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    missing = missing_data_files(config)
    for path in missing:
        print(f"DRY RUN WARNING: data file not found (a launch would fail loading it): {path}", file=sys.stderr)
    if missing and args.require_files:
        return 1
    print(HEADER)
    print(OmegaConf.to_yaml(config), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
