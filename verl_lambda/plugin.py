"""Entry point of the ``verl.plugins`` group: verl imports this module on ``import verl`` in every process.

verl swallows a plugin's import errors (it logs them at DEBUG), so this module never raises: it reports a failure
at ERROR itself (``verl_lambda.hooks.report_failure``) and installs a guard that makes selecting one of verl-lambda's
modes fail with the reason, instead of verl's generic "Invalid loss_agg_mode". Loading is cheap: patches are
installed as post-import hooks. This module is the one that knows both patch tables and hands them to
``verl_lambda.hooks.apply``.

Layer 6 (entry point).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger("verl_lambda")

# Set only when verl_lambda.hooks itself cannot be imported; every other failure is recorded by hooks.
_HOOKS_IMPORT_ERROR: BaseException | None = None


def load() -> None:
    """Apply verl-lambda's patches; on failure, log it and guard our modes. Idempotent, never raises."""
    global _HOOKS_IMPORT_ERROR
    try:
        from verl_lambda import hooks
    except Exception as exc:  # nothing can guard our modes now; the ERROR is the report
        _HOOKS_IMPORT_ERROR = _HOOKS_IMPORT_ERROR or exc
        logger.error("verl-lambda failed to load, its modes are unavailable: %s", exc, exc_info=exc)
        return
    try:
        from verl_lambda import patches
        from verl_lambda.cpu import patches as cpu_patches

        hooks.apply(methods=patches.PATCHES, backend=cpu_patches.PATCHES)
    except Exception as exc:  # any failure must be reported here, verl would swallow it
        hooks.report_failure(exc)


def load_error() -> BaseException | None:
    """The first load or patch failure of this process, or None."""
    hooks = sys.modules.get("verl_lambda.hooks")
    return _HOOKS_IMPORT_ERROR or (hooks.LOAD_ERROR if hooks is not None else None)


def __getattr__(name: str) -> Any:
    # ``LOAD_ERROR`` is read live: a patch that fails later, when its verl module is imported, is reported then.
    if name == "LOAD_ERROR":
        return load_error()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def assert_loaded() -> None:
    """Raise the load failure, if any (for scripts and tests)."""
    error = load_error()
    if error is not None:
        raise RuntimeError(f"verl-lambda failed to load: {error}") from error


load()
