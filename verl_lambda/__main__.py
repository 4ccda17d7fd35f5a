"""``python -m verl_lambda``: check this node's installation, as every node of a cluster needs it.

Prints the verl-lambda and verl versions, whether this verl is a tested release, whether every verl internal the
plugin wraps is present, and whether verl loads the plugin through its entry point (as in every Ray worker). Exits
with status 1 if the plugin would not load.

Layer 7 (applications).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from pathlib import Path


def main() -> int:
    import verl

    import verl_lambda
    from verl_lambda import capabilities, hooks, plugin

    print(f"verl-lambda {verl_lambda.__version__} ({Path(verl_lambda.__file__).parent})")
    tested = verl.__version__ in hooks.TESTED_VERL_VERSIONS
    print(f"verl {verl.__version__} ({Path(verl.__file__).parent}): {'tested' if tested else 'not a tested release'}")
    print(f"  tested releases: {', '.join(hooks.TESTED_VERL_VERSIONS)}")
    problems = capabilities.check(Path(verl.__file__).parent)
    total = len(capabilities.INTERNALS)
    print(f"  internals the wrappers rely on: {total - len(problems)}/{total} present")
    for problem in problems:
        print(f"    missing or changed: {problem}")
    names = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    print(f"  entry point verl.plugins: {names.get('verl_lambda', 'MISSING (install the package, not just its code)')}")
    policy = os.environ.get("VERL_USE_EXTERNAL_PLUGINS", "auto")
    if policy.strip().lower() == "none":
        print("  VERL_USE_EXTERNAL_PLUGINS=none: verl loads no plugin in this environment")
    if plugin.LOAD_ERROR is not None:
        print(f"FAILED: verl-lambda does not load: {plugin.LOAD_ERROR}")
        return 1
    print("ok: verl loads verl-lambda; loss_agg_mode=lambda_grpo and policy_loss.loss_mode=grpo_lambda are available")
    return 0


if __name__ == "__main__":
    sys.exit(main())
