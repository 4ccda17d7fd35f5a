"""The package's layers (``verl_lambda/layers.py``) hold: no module imports a higher layer, and no imports loop.

The checker reads every module with ``ast`` and takes every ``import`` and ``from ... import`` statement anywhere in
the file: at module level, inside functions and classes, under ``try`` and under ``if TYPE_CHECKING:`` alike. A
TYPE_CHECKING-only import counts as an import (the strict reading): it names a dependency a reader must follow, and
it becomes a real one the day someone moves it out of the block. An import resolves to the most specific module of
the package it names (``from verl_lambda.cpu import patches`` is ``verl_lambda.cpu.patches``; ``from verl_lambda.toy
import build_model`` is ``verl_lambda.toy``); the packages Python initialises on the way are covered by their own
rule instead: a package's ``__init__`` sits in the lowest layer of its modules. Dynamic imports (``importlib``,
dotted names in verl's registries) are not seen. Nor are loops through verl: a module whose own import imports verl
makes verl load the plugin, whose patches may import that module back half-built; those modules are run instead.
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from verl_lambda.layers import LAYERS, MODULE_LAYERS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "verl_lambda"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    path: Path
    line: int
    statement: str  # the import statement, as written (unparsed)
    target: str  # the module of the package it imports


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (found under ``root``), by dotted name."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The longest prefix of the dotted ``name`` that is a module of the package (None: not ours)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_in(module: str, modules: Mapping[str, Path], nodes: list[ast.stmt] | None = None) -> list[Import]:
    """Every import of a module of the package that ``module``'s source makes, anywhere in the file (or among
    ``nodes`` of it)."""
    path = modules[module]
    if nodes is None:
        nodes = list(ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))))
    is_package = path.name == "__init__.py"
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package, up level - 1
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
        else:
            continue
        statement = ast.unparse(node)
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.append(Import(module, path, node.lineno, statement, target))
    return found


def _cycle_in(component: set[str], edges: Mapping[str, list[Import]]) -> list[Import]:
    """One loop of imports through ``component`` (a strongly connected set of modules)."""
    start = min(component)
    parents: dict[str, Import] = {}
    stack, seen = [start], {start}
    while stack:  # search from start until an edge returns to it
        module = stack.pop()
        for edge in edges[module]:
            if edge.target == start:
                loop = [edge]
                while loop[-1].module != start:
                    loop.append(parents[loop[-1].module])
                return loop[::-1]
            if edge.target in component and edge.target not in seen:
                seen.add(edge.target)
                parents[edge.target] = edge
                stack.append(edge.target)
    raise AssertionError(f"no loop through {start}")


def _components(modules: list[str], edges: Mapping[str, list[Import]]) -> list[set[str]]:
    """Tarjan's strongly connected components of the import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for edge in edges[module]:
            if edge.target not in index:
                visit(edge.target)
                low[module] = min(low[module], low[edge.target])
            elif edge.target in on_stack:
                low[module] = min(low[module], index[edge.target])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            result.append(component)

    for module in modules:
        if module not in index:
            visit(module)
    return result


def check_layers(root: Path, package: str, layers: Mapping[str, int]) -> list[str]:
    """Every breach of ``layers`` (module -> layer) in the package's source: a module missing from the table (or a
    table entry with no module), an import of a higher layer, a package above one of its modules, an import loop."""
    modules = package_modules(root, package)
    problems = []
    for module, path in modules.items():
        if module not in layers:
            problems.append(f"{path.relative_to(root)}: module {module} is missing from the layer table")
    problems += [
        f"the layer table names {module}, which is not a module of {package}"
        for module in layers
        if module not in modules
    ]
    edges = {module: imports_in(module, modules) for module in modules}
    for module, imports in edges.items():
        for edge in imports:
            here, there = layers.get(module), layers.get(edge.target)
            if here is not None and there is not None and there > here:
                problems.append(
                    f"{edge.path.relative_to(root)}:{edge.line}: {module} (layer {here}) imports {edge.target} "
                    f"(layer {there}, higher): `{edge.statement}`"
                )
    for module, path in modules.items():
        if path.name != "__init__.py" or module not in layers:
            continue
        for inner in modules:
            if inner.startswith(module + ".") and inner in layers and layers[inner] < layers[module]:
                problems.append(
                    f"{path.relative_to(root)}: package {module} (layer {layers[module]}) is above its module {inner} "
                    f"(layer {layers[inner]}), and importing {inner} runs the package's __init__ first"
                )
    for component in _components(sorted(modules), edges):
        if len(component) > 1:
            loop = _cycle_in(component, edges)
            steps = "".join(
                f"\n  {edge.path.relative_to(root)}:{edge.line}: {edge.module} imports {edge.target}: "
                f"`{edge.statement}`"
                for edge in loop
            )
            names = " -> ".join([*(edge.module for edge in loop), loop[0].module])
            problems.append(f"import loop: {names}{steps}")
    return problems


def test_the_package_keeps_its_layers():
    problems = check_layers(ROOT, PACKAGE, MODULE_LAYERS)
    assert not problems, "\n".join(problems)


def test_every_layer_is_described_and_used():
    assert sorted(LAYERS) == list(range(1, len(LAYERS) + 1))
    assert set(MODULE_LAYERS.values()) == set(LAYERS)
    for layer in LAYERS.values():
        assert layer.name and layer.summary and "\n" not in layer.summary


def test_every_module_docstring_names_its_layer():
    wrong = []
    for module, path in package_modules(ROOT, PACKAGE).items():
        layer = MODULE_LAYERS.get(module)
        if layer is None:
            continue  # reported by test_the_package_keeps_its_layers
        expected = f"Layer {layer} ({LAYERS[layer].name})"
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        said = [line for line in docstring.splitlines() if re.match(r"Layer \d", line)]
        if len(said) != 1 or not said[0].startswith(expected):
            wrong.append(f"{path.relative_to(ROOT)}: its docstring should have one line starting {expected!r}: {said}")
    assert not wrong, "\n".join(wrong)


def test_the_package_names_only_layer_one_functions():
    """``import verl_lambda`` gives the public math and nothing of the layers above."""
    package = importlib.import_module(PACKAGE)
    assert package.__all__, "the package re-exports layer 1's public functions"
    for name in package.__all__:
        function = getattr(package, name)
        assert callable(function) and MODULE_LAYERS[function.__module__] == 1, (name, function.__module__)


# ----------------------------------------------------------------------------------------------------------------
# The checker itself catches what it is for.
# ----------------------------------------------------------------------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> None:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


SYNTHETIC = {
    "pkg/__init__.py": '"""Layer 1."""\n',
    "pkg/math.py": '"""Layer 1."""\n',
    "pkg/base.py": '"""Layer 2."""\nfrom pkg import math\n',
    "pkg/sub/__init__.py": '"""Layer 2."""\n',
    "pkg/sub/tool.py": '"""Layer 2."""\nfrom . import other\nfrom ..base import x\n',
    "pkg/sub/other.py": '"""Layer 2."""\nimport pkg.math\n',
    "pkg/top.py": '"""Layer 3."""\nfrom pkg.sub import tool\n',
}
SYNTHETIC_LAYERS = {
    "pkg": 1,
    "pkg.math": 1,
    "pkg.base": 2,
    "pkg.sub": 2,
    "pkg.sub.tool": 2,
    "pkg.sub.other": 2,
    "pkg.top": 3,
}


def test_the_checker_passes_a_clean_package(tmp_path):
    write_package(tmp_path, SYNTHETIC)
    assert check_layers(tmp_path, "pkg", SYNTHETIC_LAYERS) == []


def test_the_checker_catches_an_upward_import_even_lazy_or_type_checking_only(tmp_path):
    write_package(
        tmp_path,
        {
            **SYNTHETIC,
            "pkg/math.py": '''\
                """Layer 1."""
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from pkg.base import Thing


                def f():
                    from pkg.sub import tool

                    return tool
                ''',
        },
    )
    problems = check_layers(tmp_path, "pkg", SYNTHETIC_LAYERS)
    assert "pkg/math.py:5: pkg.math (layer 1) imports pkg.base (layer 2, higher): `from pkg.base import Thing`" in (
        problems
    )
    assert "pkg/math.py:9: pkg.math (layer 1) imports pkg.sub.tool (layer 2, higher): `from pkg.sub import tool`" in (
        problems
    )
    # pkg.base imports pkg.math, which now imports pkg.base back: a loop too
    assert any(problem.startswith("import loop: pkg.base -> pkg.math -> pkg.base") for problem in problems), problems


def test_the_checker_catches_a_loop_within_a_layer(tmp_path):
    write_package(
        tmp_path,
        {**SYNTHETIC, "pkg/sub/other.py": '"""Layer 2."""\nimport pkg.math\n\n\ndef g():\n    import pkg.sub.tool\n'},
    )
    problems = check_layers(tmp_path, "pkg", SYNTHETIC_LAYERS)
    assert len(problems) == 1, problems
    assert problems[0] == (
        "import loop: pkg.sub.other -> pkg.sub.tool -> pkg.sub.other"
        "\n  pkg/sub/other.py:6: pkg.sub.other imports pkg.sub.tool: `import pkg.sub.tool`"
        "\n  pkg/sub/tool.py:2: pkg.sub.tool imports pkg.sub.other: `from . import other`"
    )


def test_the_checker_catches_a_module_missing_from_the_table_and_a_stale_entry(tmp_path):
    write_package(tmp_path, {**SYNTHETIC, "pkg/new.py": '"""Layer 2."""\n'})
    problems = check_layers(tmp_path, "pkg", {**SYNTHETIC_LAYERS, "pkg.gone": 2})
    assert problems == [
        "pkg/new.py: module pkg.new is missing from the layer table",
        "the layer table names pkg.gone, which is not a module of pkg",
    ]


def test_the_checker_catches_a_package_above_its_modules(tmp_path):
    write_package(tmp_path, SYNTHETIC)
    problems = check_layers(tmp_path, "pkg", {**SYNTHETIC_LAYERS, "pkg.sub": 3})
    assert problems == [
        "pkg/sub/__init__.py: package pkg.sub (layer 3) is above its module pkg.sub.other (layer 2), and importing "
        "pkg.sub.other runs the package's __init__ first",
        "pkg/sub/__init__.py: package pkg.sub (layer 3) is above its module pkg.sub.tool (layer 2), and importing "
        "pkg.sub.tool runs the package's __init__ first",
    ]


def _run_at_import(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of ``body`` that run when the module is imported: all but function bodies."""
    found = []
    for node in body:
        found.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for field in ("body", "orelse", "finalbody", "handlers"):
                found += _run_at_import([n for n in getattr(node, field, []) if isinstance(n, ast.stmt)])
            for handler in getattr(node, "handlers", []):
                found += _run_at_import(handler.body)
    return found


def modules_importing_verl_on_import(root: Path, package: str) -> list[str]:
    """The package's modules whose own import imports verl (directly, or through another such module)."""
    modules = package_modules(root, package)
    found, edges = set(), {}
    for module, path in modules.items():
        statements = _run_at_import(ast.parse(path.read_text(encoding="utf-8")).body)
        names = [alias.name for node in statements if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in statements if isinstance(node, ast.ImportFrom) and not node.level]
        if any(name == "verl" or name.startswith("verl.") for name in names):
            found.add(module)
        edges[module] = {edge.target for edge in imports_in(module, modules, statements)}
    while more := {module for module, targets in edges.items() if targets & found} - found:
        found |= more
    return sorted(found)


@pytest.mark.parametrize("module", modules_importing_verl_on_import(ROOT, PACKAGE))
def test_a_module_that_imports_verl_can_be_imported_before_verl(module):
    """A loop through verl, which the static check cannot see: such a module's import of verl makes verl load the
    plugin, whose patches may import the module back while it is half-built. The plugin must still load whole."""
    import subprocess
    import sys

    code = f"""
import {module}
import verl
import verl_lambda.plugin as plugin
from verl.plugin.platform import PlatformRegistry
from verl.trainer.ppo import core_algos
from verl.workers.config import actor
assert plugin.LOAD_ERROR is None, plugin.LOAD_ERROR
assert "grpo_lambda" in core_algos.POLICY_LOSS_REGISTRY and PlatformRegistry.get("cpu") is not None
print("OK")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("module", ["verl_lambda.hooks", "verl_lambda.verl_access", "verl_lambda.layers"])
def test_low_modules_import_without_the_layers_above(module):
    """A fresh interpreter importing a low module loads no module of a higher layer (lazy imports excluded)."""
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('verl_lambda')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert all(MODULE_LAYERS[name] <= MODULE_LAYERS[module] for name in loaded), loaded
