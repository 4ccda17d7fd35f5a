"""Entry point of the ``verl.plugins`` group: verl imports this module on ``import verl`` in every process.

verl swallows a plugin's import errors (it logs them at DEBUG), so this module never raises: it reports a failure
at ERROR itself and installs a guard that makes selecting one of verl-lambda's modes fail with the reason, instead
of verl's generic "Invalid loss_agg_mode". Loading is cheap: patches are installed as post-import hooks.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("verl_lambda")

LOAD_ERROR: BaseException | None = None


def load() -> None:
    """Apply verl-lambda's patches; on failure, log it and guard our modes. Idempotent, never raises."""
    try:
        from verl_lambda import hooks

        hooks.apply()
    except Exception as exc:  # any failure must be reported here, verl would swallow it
        report_failure(exc)


def report_failure(exc: BaseException) -> None:
    """Log a load or patch failure at ERROR and make our modes raise it when they are selected."""
    global LOAD_ERROR
    if LOAD_ERROR is None:
        LOAD_ERROR = exc
    logger.error("verl-lambda failed to load, its modes are unavailable: %s", exc, exc_info=exc)
    try:
        from verl_lambda import hooks

        hooks.install_mode_guard(exc)
    except Exception:  # the ERROR above stays the report of last resort
        logger.error("verl-lambda could not install its mode guard either", exc_info=True)


def assert_loaded() -> None:
    """Raise the load failure, if any (for scripts and tests)."""
    if LOAD_ERROR is not None:
        raise RuntimeError(f"verl-lambda failed to load: {LOAD_ERROR}") from LOAD_ERROR


load()
