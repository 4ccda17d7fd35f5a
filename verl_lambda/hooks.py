"""How verl-lambda attaches to verl: post-import hooks, named wrappers, the version guard and the failure guard.

The wrappers themselves live in two patch tables, so that a reader sees at a glance which exist for the methods and
which only make CPU runs possible:

- ``verl_lambda.patches``: the two algorithms (``loss_agg_mode=lambda_grpo``, ``policy_loss.loss_mode=grpo_lambda``);
- ``verl_lambda.cpu.patches``: the CPU backend (the ``cpu`` platform, gloo, the FSDP engines on CPU, the ``hf``
  rollout).

Both sit above this module: ``verl_lambda.plugin`` imports them and hands them to ``apply``. Each wrapper is installed
as a post-import hook when the verl module it concerns is imported, so loading the plugin costs nothing in processes
that never import those modules (vLLM workers, reward workers), and is applied idempotently. ``apply`` checks the
installed verl before any patch (``check_verl``). A failing patch is reported here (``report_failure``), which then
guards our modes. This module imports nothing else of the package at import time: it must stay importable, to report
a failure, even when the rest of the package is broken.

Layer 3 (mechanics).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger("verl_lambda")

# Spelled out rather than imported, for the failure guard; verl_lambda.config and verl_lambda.ops.group_mean define
# the same names.
LAMBDA_GRPO_MODE = "lambda_grpo"
GRPO_LAMBDA_MODE = "grpo_lambda"
GROUP_MEAN_MODE = "group-mean-token-mean"

# The verl releases every test of this package runs on. Another verl is accepted only when it has every internal the
# wrappers rely on (verl_lambda.capabilities), with one warning; VERL_LAMBDA_STRICT_VERSION=1 refuses it instead.
TESTED_VERL_VERSIONS = ("0.9.0", "0.9.1")
STRICT_VERSION_ENV = "VERL_LAMBDA_STRICT_VERSION"
MARK = "__verl_lambda_wrapper__"

# A patch table: the verl module a patch concerns -> the patch, called with that module once it is imported.
Patch = Callable[[ModuleType], None]
PatchTable = Mapping[str, Patch]


class UnsupportedVerlVersion(RuntimeError):
    pass


def check_verl(version: str | None = None, verl_root: str | None = None, internals: tuple | None = None) -> str:
    """Accept the installed verl (or ``version`` with its package folder ``verl_root``), or fail naming why.

    A tested version is accepted as is. Any other is checked piece by piece against what the wrappers need
    (``internals``, default all of ``verl_lambda.capabilities``); it is refused with one error listing every missing
    or changed piece, or when ``VERL_LAMBDA_STRICT_VERSION=1``, and otherwise accepted with a warning naming the
    tested versions.
    """
    if version is None or verl_root is None:
        import verl

        version = version or getattr(verl, "__version__", "unknown")
        verl_root = verl_root or os.path.dirname(verl.__file__)
    if version in TESTED_VERL_VERSIONS:
        return version
    from verl_lambda import capabilities

    tested = ", ".join(TESTED_VERL_VERSIONS)
    install = f"pip install 'verl[verl-core]=={TESTED_VERL_VERSIONS[-1]}'"
    problems = capabilities.check(Path(verl_root), internals)
    if problems:
        listed = "".join(f"\n  - {problem}" for problem in problems)
        raise UnsupportedVerlVersion(
            f"verl-lambda was tested with verl {tested}; the installed verl {version} lacks or changed "
            f"{len(problems)} internal(s) its wrappers rely on:{listed}\nInstall a tested verl ({install}) or a "
            "verl-lambda release made for your verl."
        )
    if os.environ.get(STRICT_VERSION_ENV, "").strip() not in ("", "0"):
        raise UnsupportedVerlVersion(
            f"verl-lambda was tested with verl {tested}; the installed verl {version} has every internal its wrappers "
            f"rely on, but {STRICT_VERSION_ENV} is set, so untested versions are refused. Install a tested verl "
            f"({install}) or unset {STRICT_VERSION_ENV}."
        )
    logger.warning(
        "verl-lambda: verl %s is not a tested version (tested: %s). Every verl internal verl-lambda wraps is present, "
        "so it loads; set %s=1 to refuse untested versions.",
        version,
        tested,
        STRICT_VERSION_ENV,
    )
    return version


# ----------------------------------------------------------------------------------------------------------------
# Post-import hooks.
# ----------------------------------------------------------------------------------------------------------------

_HOOKS: dict[str, list[Callable[[ModuleType], None]]] = {}
_HOOK_LOCK = threading.RLock()


class _HookedLoader(importlib.abc.Loader):
    """Runs the registered hooks right after the real loader has executed the module."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _run_hooks(module.__name__, module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... for tools that inspect loaders
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None):
        if fullname not in _HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and not isinstance(spec.loader, _HookedLoader):
                    spec.loader = _HookedLoader(spec.loader)
                return spec
        return None


_FINDER = _PostImportFinder()


def _run_hooks(name: str, module: ModuleType) -> None:
    with _HOOK_LOCK:
        hooks = _HOOKS.pop(name, [])
    for hook in hooks:
        _run_hook(hook, module)


def _run_hook(hook: Callable[[ModuleType], None], module: ModuleType) -> None:
    """A failing patch must neither break verl's own modes nor pass silently: report it and guard our modes."""
    try:
        hook(module)
    except Exception as exc:
        report_failure(RuntimeError(f"patching {module.__name__} with {hook.__name__} failed: {exc!r}"))


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook(module)`` once ``name`` is imported: now if it already is, else right after its import."""
    with _HOOK_LOCK:
        if name not in sys.modules:
            _HOOKS.setdefault(name, []).append(hook)
            if _FINDER not in sys.meta_path:
                sys.meta_path.insert(0, _FINDER)
            return
    _run_hook(hook, sys.modules[name])


# ----------------------------------------------------------------------------------------------------------------
# Wrapping.
# ----------------------------------------------------------------------------------------------------------------


def wrap(owner: Any, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    """Replace ``owner.name`` with ``make_wrapper(original)`` once; keeps verl's decorator attributes."""
    original = getattr(owner, name)
    # update_wrapper copies __dict__, so a wrapper's mark lists every wrapper of ours below it too.
    marks = getattr(original, MARK, ())
    if make_wrapper.__qualname__ in marks:
        return
    wrapper = functools.update_wrapper(make_wrapper(original), original)
    setattr(wrapper, MARK, (*marks, make_wrapper.__qualname__))
    setattr(owner, name, wrapper)


def rebind(original: Any, replacement: Any) -> None:
    """Point every verl module that imported ``original`` by name (``from m import f``) at ``replacement``."""
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("verl."):
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                setattr(module, attr, replacement)


def wrap_function(module: ModuleType, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    """``wrap`` for a module-level function, re-binding the names other verl modules imported it under."""
    original = getattr(module, name)
    wrap(module, name, make_wrapper)
    if getattr(module, name) is not original:
        rebind(original, getattr(module, name))


def wrapped_by(obj: Any) -> tuple[str, ...]:
    """The wrappers of ours around ``obj``, innermost first (for tests and diagnostics)."""
    return getattr(obj, MARK, ())


# ----------------------------------------------------------------------------------------------------------------
# Failure path: when the plugin could not load, selecting one of its modes names the reason.
# ----------------------------------------------------------------------------------------------------------------

# The first load or patch failure of this process (``verl_lambda.plugin.LOAD_ERROR`` reads it).
LOAD_ERROR: BaseException | None = None


def report_failure(exc: BaseException) -> None:
    """Log a load or patch failure at ERROR and make our modes raise it when they are selected."""
    global LOAD_ERROR
    if LOAD_ERROR is None:
        LOAD_ERROR = exc
    logger.error("verl-lambda failed to load, its modes are unavailable: %s", exc, exc_info=exc)
    try:
        install_mode_guard(exc)
    except Exception:  # the ERROR above stays the report of last resort
        logger.error("verl-lambda could not install its mode guard either", exc_info=True)


def _init_refusing_our_modes(reason: BaseException) -> Callable[[Callable], Callable]:
    def make(original_init: Callable) -> Callable:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            ours = {"loss_agg_mode": (LAMBDA_GRPO_MODE, GROUP_MEAN_MODE), "loss_mode": (GRPO_LAMBDA_MODE,)}
            if any(kwargs.get(key) in modes for key, modes in ours.items()) or {"lambda_grpo", "grpo_lambda"} & set(
                kwargs
            ):
                raise RuntimeError(
                    f"verl-lambda is installed but failed to load, so its modes are unavailable: {reason}"
                )
            original_init(self, *args, **kwargs)

        return __init__

    return make


def install_mode_guard(reason: BaseException) -> None:
    """After a failed load: ``lambda_grpo`` / ``grpo_lambda`` and their options raise ``reason``, naming verl-lambda."""

    def guard(module: ModuleType) -> None:
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, module.ActorConfig)]
        for cls in dict.fromkeys([module.ActorConfig, module.PolicyLossConfig, *classes]):
            wrap(cls, "__init__", _init_refusing_our_modes(reason))

    when_imported("verl.workers.config.actor", guard)


# ----------------------------------------------------------------------------------------------------------------


def methods_built_in(verl_root: str) -> bool:
    """True for a verl that ships both methods itself (this project's upstream series): its ``core_algos`` registers
    ``lambda_grpo`` and ``grpo_lambda``. The plugin then leaves them to verl and adds only its CPU backend."""
    try:
        source = (Path(verl_root) / "trainer" / "ppo" / "core_algos.py").read_text(encoding="utf-8")
    except OSError:
        return False
    # the registration may carry options after the name (the series' ``takes_token_weights=True``)
    return (
        f'register_agg_loss("{LAMBDA_GRPO_MODE}"' in source and f'register_policy_loss("{GRPO_LAMBDA_MODE}"' in source
    )


_APPLIED = False


def apply(methods: PatchTable, backend: PatchTable) -> None:
    """Check the verl version, then install the patches of ``methods`` (the algorithms' table) and ``backend`` (the
    CPU backend's), each run when its module is imported; ``methods`` is skipped on a verl that ships the methods
    itself. Idempotent. The tables are arguments because they sit above this module (``verl_lambda.plugin`` passes
    them); patches of one module run in the order given, the methods' first."""
    global _APPLIED
    if _APPLIED:
        return
    import verl

    from verl_lambda import capabilities

    verl_root = os.path.dirname(verl.__file__)
    built_in = methods_built_in(verl_root)
    check_verl(verl_root=verl_root, internals=capabilities.CPU_BACKEND_INTERNALS if built_in else None)
    if built_in:
        logger.info("verl-lambda: this verl ships lambda_grpo and grpo_lambda itself; only the CPU backend is added")
    for table in (backend,) if built_in else (methods, backend):
        for module_name, patch in table.items():
            when_imported(module_name, patch)
    _APPLIED = True
