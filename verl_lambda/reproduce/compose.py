"""Compose and validate a launch's config exactly as ``python -m verl.trainer.main_ppo`` does, then stop.

    python -m verl_lambda.reproduce.compose OVERRIDE [OVERRIDE ...]

The composition itself is :func:`verl_lambda.compose.compose_ppo_config` (hydra's compose API on verl's
``ppo_trainer`` config, then main_ppo's ``auto_set_device`` and ``validate_config``, then resolving every
interpolation). This is the ``DRY_RUN=1`` of the launchers (:mod:`verl_lambda.reproduce.launch`): it prints the
config as YAML on stdout and exits 0; any error exits 1 with its message on stderr.

``validate_config`` builds verl's ``ActorConfig``, which is where verl-lambda checks its own options, so a bad
``lambda_grpo.*`` / ``grpo_lambda.*`` option fails here just as it would at launch. Data files that do not exist
are reported as warnings only (a dry run in CI has no data); ``--require-files`` makes them errors.

Layer 7 (applications).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

HEADER = "# verl-lambda dry run: verl's ppo_trainer config, composed and validated as main_ppo would; not launched"
RUN_HEADER = "# verl-lambda: verl's ppo_trainer config of this run, composed and validated as main_ppo would, resolved"


def compose(overrides: Sequence[str]) -> Any:
    """verl's ``ppo_trainer`` config with ``overrides``, after main_ppo's device fix-up and validation, resolved."""
    from verl_lambda.compose import compose_ppo_config

    return compose_ppo_config(overrides, validate=True, resolve=True)


def missing_data_files(config: Any) -> list[str]:
    files = []
    for key in ("train_files", "val_files"):
        value = config.data.get(key)
        files += [value] if isinstance(value, str) else list(value or [])
    return [f for f in files if "://" not in str(f) and not os.path.exists(os.path.expanduser(str(f)))]


def to_yaml(config: Any, header: str = HEADER, comments: Sequence[str] = ()) -> str:
    """The config as YAML after ``header`` and ``comments`` as ``#`` lines (what a dry run prints and a launch writes
    to ``resolved_config.yaml``)."""
    from omegaconf import OmegaConf

    lines = [header, *(f"# {line}" for text in comments for line in str(text).splitlines())]
    return "\n".join(lines) + "\n" + OmegaConf.to_yaml(config)


def dry_run(overrides: Sequence[str], require_files: bool = False, comments: Sequence[str] = ()) -> int:
    """Print the composed, validated config as YAML after ``comments`` (exit status 0), or the launch's error (1)."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # verl's notices must not mix with the YAML
            config = compose(overrides)
    except Exception as exc:
        print(f"DRY RUN FAILED: the launch would stop with {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    missing = missing_data_files(config)
    for path in missing:
        print(f"DRY RUN WARNING: data file not found (a launch would fail loading it): {path}", file=sys.stderr)
    if missing and require_files:
        return 1
    print(to_yaml(config, comments=comments), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--require-files", action="store_true", help="missing train/val files are errors")
    parser.add_argument("overrides", nargs="*", help="hydra overrides, as given to verl.trainer.main_ppo")
    args = parser.parse_args(argv)
    return dry_run(args.overrides, args.require_files)


if __name__ == "__main__":
    sys.exit(main())
