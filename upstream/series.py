"""Helpers of ``scripts/check_upstream.sh`` for the patch series in ``upstream/``.

    python upstream/series.py layout PATCH             # a patch's new files the sdists lack (docs/, examples/)
    python upstream/series.py touched PATCH...         # the Python files the patches add or change
    python upstream/series.py sanity TREE PATCH...     # verl's sanity rules on the files the patches add or change
    python upstream/series.py stats PATCH...           # files, +lines, -lines per patch (Markdown table)

Each algorithm patch carries its own docs page and example (``docs/``, ``examples/``), which verl's sdists do not
ship: ``check_upstream.sh`` applies the code parts of every patch to the sdists (``git am --exclude``), lays out each
patch's new docs and example files for the checks below, and applies the whole series to verl's git repository when
``VERL_GIT_DIR`` is set.

``sanity`` applies, to the files a patch adds or changes, the rules of verl's pre-commit hooks and
``tests/special_sanity`` (the sdist does not ship those scripts): license header on new Python files, docstrings of
public functions and classes (``core_algos.py`` as verl checks it, and the public API of new modules), no
device-specific API in new modules, the
comment/blank-line format of ``actor.yaml``, a "Last updated" line in docs, example script names
``run_<model>_<train-backend>.sh`` without inference-backend or platform tokens, uv only behind the GPU gate, and
verl's spelling rules; and that a patch adding a page ``docs/algo/X.md`` adds ``algo/X.md`` to ``docs/index.rst``, and
a patch adding an example folder ``examples/D/`` adds its row (`` `D/` ``) to ``examples/README.md``, in the same
patch.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

LICENSE_HEADS = (
    "Copyright 2024 Bytedance Ltd. and/or its affiliates",
    "Copyright 2025 Bytedance Ltd. and/or its affiliates",
    "Copyright 2026 Bytedance Ltd. and/or its affiliates",
)
DOCSTRING_CHECKED = ("verl/trainer/ppo/core_algos.py",)
DEVICE_KEYWORDS = (".cuda", '"cuda"', '"nccl"')
DOC_YAML = ("verl/trainer/config/actor/actor.yaml",)
SDIST_LACKS = ("docs/", "examples/")  # what verl's sdists do not ship: applied to verl's git repository only
EXAMPLE_BACKENDS = ("fsdp", "fsdp2", "fsdp_turbo", "megatron", "megatron_lite", "mindspeed", "automodel", "veomni")
EXAMPLE_FORBIDDEN = ("vllm", "sglang", "trtllm", "npu", "amd", "gb200", "b200", "blackwell", "fp8")
UV_COMMAND = re.compile(r"""(?:^|[\s;&|(="'])uv\s+(?:-\S+\s+)*(?:run|sync|pip|lock|venv|tool|add|export)\b""")
UV_GATE = re.compile(r"""^\s*if .*\$\{VERL_USE_UV:-1\}.*\[\s*"\$\{DEVICE:-gpu\}"\s*=\s*gpu\s*\]""")


# verl's PR title rule (tests/special_sanity/check_pr_title.py, .github/workflows/check-pr-title.yml) and template
PR_MODULES = (
    "fsdp megatron veomni sglang vllm trtllm rollout trainer tests training_utils recipe hardware deployment ray "
    "worker single_controller misc docker ci perf model algo env tool ckpt doc data cfg reward fully_async one_step_off"
).split()
PR_TYPES = ("feat", "fix", "refactor", "chore", "test")
PR_SECTIONS = (
    "### What does this PR do?",
    "### Checklist Before Starting",
    "### Test",
    "### API and Usage Example",
    "### Design & Code Changes",
    "### Checklist Before Submitting",
)


def pr_shape(path: Path, number: int, total: int) -> list[str]:
    """A patch's message as a PR description: ``[n/N] [modules] type: description`` passing verl's title check, the
    template's sections in order, a search link, and whether its runs were CPU-only."""
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition("\n\n")
    subject = re.search(r"^Subject: (.*(?:\n .*)*)", head, re.MULTILINE).group(1).replace("\n", "")
    subject = re.sub(r"\s+", " ", re.sub(r"^\[PATCH[^\]]*\]\s*", "", subject)).strip()
    body = rest.split("\n---\n", 1)[0]
    problems = []
    order = re.match(r"^\[(\d)/(\d)\]\s*(.+)$", subject)
    if not order or (int(order.group(1)), int(order.group(2))) != (number, total):
        problems.append(f"{path.name}: the title must start with [{number}/{total}] (the order): {subject!r}")
    core = order.group(3) if order else subject
    title = re.match(r"^\[([a-z_,\s]+)\]\s+(" + "|".join(PR_TYPES) + r"):\s+.+$", core, re.IGNORECASE)
    if not title or any(m not in PR_MODULES for m in re.findall(r"[a-z_]+", title.group(1).lower())):
        problems.append(f"{path.name}: the title fails verl's check_pr_title.py: {core!r}")
    found = [re.search(rf"^{re.escape(section)}$", body, re.MULTILINE) for section in PR_SECTIONS]
    positions = [match.start() if match else -1 for match in found]
    if -1 in positions or positions != sorted(positions):
        problems.append(
            f"{path.name}: the message lacks verl's PR template sections in order ({', '.join(PR_SECTIONS)})"
        )
    if "github.com/verl-project/verl/pulls?q=" not in body:
        problems.append(f"{path.name}: no search link for similar PRs (Checklist Before Starting)")
    if "CPU only" not in body:
        problems.append(f"{path.name}: the Test section does not say which runs were CPU-only")
    return problems


@dataclass
class Patch:
    path: Path
    added: list[str] = field(default_factory=list)  # new files
    changed: list[str] = field(default_factory=list)  # existing files
    plus: int = 0
    minus: int = 0
    added_lines: dict[str, list[str]] = field(default_factory=dict)  # per file, the lines the patch adds

    @property
    def files(self) -> list[str]:
        return self.changed + self.added


def parse(path: Path) -> Patch:
    patch = Patch(path)
    current, new_file = None, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("diff --git "):
            if current is not None:
                (patch.added if new_file else patch.changed).append(current)
            current, new_file = line.split(" b/", 1)[1], False
        elif line.startswith("new file mode"):
            new_file = True
        elif current is not None and line.startswith("+") and not line.startswith("+++"):
            patch.plus += 1
            patch.added_lines.setdefault(current, []).append(line[1:])
        elif current is not None and line.startswith("-") and not line.startswith("---"):
            patch.minus += 1
    if current is not None:
        (patch.added if new_file else patch.changed).append(current)
    return patch


def layout(path: Path) -> list[str]:
    """The new files of a patch that verl's sdists lack (docs pages, examples): laid out for the checks."""
    return [name for name in parse(path).added if name.startswith(SDIST_LACKS)]


def _indexed(patch: Patch) -> list[str]:
    """A docs page or example folder the patch adds without its entry in docs/index.rst or examples/README.md."""
    problems = []
    toctree = [line.strip() for line in patch.added_lines.get("docs/index.rst", [])]
    rows = "\n".join(patch.added_lines.get("examples/README.md", []))
    for name in patch.added:
        if re.fullmatch(r"docs/algo/[^/]+\.md", name) and name.removeprefix("docs/") not in toctree:
            problems.append(f"{patch.path.name}: {name} is not added to docs/index.rst's toctree by the same patch")
    for folder in sorted(
        {name.split("/")[1] for name in patch.added if name.count("/") >= 2 and name.startswith("examples/")}
    ):
        if f"`{folder}/`" not in rows:
            problems.append(f"{patch.path.name}: examples/{folder}/ has no row in examples/README.md in the same patch")
    return problems


def _public_without_docstring(source: str, in_private_classes: bool) -> list[str]:
    """Public functions, methods and classes without a docstring, as verl's check_docstrings.py finds them; with
    ``in_private_classes=False`` the methods of private classes are not public API and are skipped."""
    missing = []

    def visit(node: ast.AST, owner: str = "", in_function: bool = False, private: bool = False) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                public = not child.name.startswith("_") and not in_function and (in_private_classes or not private)
                if public and ast.get_docstring(child) is None:
                    missing.append(f"{owner}{child.name}")
                visit(child, owner, True, private)
            elif isinstance(child, ast.ClassDef):
                if not child.name.startswith("_") and ast.get_docstring(child) is None:
                    missing.append(f"{owner}{child.name}")
                visit(child, f"{child.name}.", in_function, private or child.name.startswith("_"))

    visit(ast.parse(source))
    return missing


def _yaml_format(lines: list[str]) -> list[str]:
    """verl's tests/special_sanity/test_config_docs.py rules: a comment above every key, a blank line after it."""
    errors = []
    for i, line in enumerate(lines):
        if not re.match(r"^(\s*)([a-zA-Z0-9_]+):", line):
            continue
        if i == 0 or not lines[i - 1].strip().startswith("#"):
            errors.append(f"line {i + 1}: no comment above {line.strip()!r}")
        if "#" in line and not line.strip().startswith("#") and line.index("#") > line.index(":"):
            errors.append(f"line {i + 1}: inline comment")
        if i + 1 < len(lines) and lines[i + 1].strip() != "":
            errors.append(f"line {i + 1}: no blank line after {line.strip()!r}")
    return errors


def _uv_outside_gate(lines: list[str]) -> list[int]:
    bad, gated = [], []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if re.match(r"^if\b", stripped):
            gated.append(bool(UV_GATE.match(line)))
        elif stripped.startswith("fi") and gated:
            gated.pop()
        elif re.match(r"^(else|elif)\b", stripped) and gated:
            gated[-1] = False
        if UV_COMMAND.search(line) and not any(gated):
            bad.append(i + 1)
    return bad


def sanity(tree: Path, paths: list[Path]) -> list[str]:
    problems = []
    for number, path in enumerate(paths, start=1):
        problems += pr_shape(path, number, len(paths))
    for patch in map(parse, paths):
        problems += _indexed(patch)
        for name in patch.files:
            file = tree / name
            if not file.exists():  # a file of a patch that was not applied to this tree
                continue
            text = file.read_text(encoding="utf-8")
            where = f"{patch.path.name}: {name}"
            if "veRL" in text or re.search(r"Sglang|sgLang|sglAng|sglaNg|sglanG", text):
                problems.append(f"{where}: write verl and SGLang")
            if name.endswith(".py"):
                if name in patch.added and not any(head in text for head in LICENSE_HEADS):
                    problems.append(f"{where}: no Apache-2.0 license header in verl's form")
                if name in DOCSTRING_CHECKED or (name in patch.added and name.startswith("verl/")):
                    missing = _public_without_docstring(text, in_private_classes=name in DOCSTRING_CHECKED)
                    problems += [f"{where}: {f} has no docstring" for f in missing]
                if name in patch.added and name.startswith("verl/"):
                    problems += [
                        f"{where}: device-specific {k} (use verl.utils.device)" for k in DEVICE_KEYWORDS if k in text
                    ]
            if name in DOC_YAML:
                problems += [f"{where}: {error}" for error in _yaml_format(text.splitlines(keepends=True))]
            if name.startswith("docs/") and name.endswith((".md", ".rst")) and name != "docs/index.rst":
                if "Last updated" not in text:
                    problems.append(f"{where}: no 'Last updated: mm/dd/yyyy' line")
            if name.startswith("examples/") and name.endswith(".sh"):
                stem = Path(name).stem
                tokens = stem.split("_")[1:]
                if not stem.startswith("run_") or not any(stem.endswith(f"_{b}") for b in EXAMPLE_BACKENDS):
                    problems.append(f"{where}: example scripts are named run_<model>_<train-backend>.sh")
                if any(token in EXAMPLE_FORBIDDEN for token in tokens):
                    problems.append(f"{where}: inference backend or platform in an example name")
                problems += [f"{where}:{n}: uv outside the GPU gate" for n in _uv_outside_gate(text.splitlines())]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    command, args = argv[1], argv[2:]
    if command == "layout":
        names = layout(Path(args[0]))
        if names:  # nothing at all for a patch without docs or examples
            print("\n".join(names))
    elif command == "touched":
        names = {n for p in args for n in parse(Path(p)).files if n.endswith(".py")}
        print("\n".join(sorted(names)))
    elif command == "sanity":
        problems = sanity(Path(args[0]), [Path(a) for a in args[1:]])
        for problem in problems:
            print(problem)
        print(f"sanity: {len(problems)} problems" if problems else "sanity: verl's rules hold for the series' files")
        return 1 if problems else 0
    elif command == "stats":
        print("| patch | files | + | - |\n|---|---|---|---|")
        for p in map(parse, [Path(a) for a in args]):
            print(f"| {p.path.name} | {len(p.files)} ({len(p.added)} new) | {p.plus} | {p.minus} |")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
