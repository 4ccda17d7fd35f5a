"""The generated blocks of ``docs/reproduce/*.md``: the settings, regime, preset and cost tables, rendered from
:mod:`verl_lambda.reproduce.regimes` and :mod:`verl_lambda.reproduce.cost` so that the pages cannot drift from the
launchers (``tests/test_regimes.py`` checks that the committed pages match).

    python -m verl_lambda.reproduce.pages --write-docs   # rewrite the generated blocks

Layer 7 (applications).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verl_lambda.reproduce import cost, regimes

# --------------------------------------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reproduce"
BEGIN, END = "<!-- generated: {name} (python -m verl_lambda.reproduce.pages --write-docs) -->", "<!-- end: {name} -->"


def generated_blocks() -> dict[str, dict[str, str]]:
    """``{file name: {block name: content}}`` of every generated block."""
    return {
        "settings.md": {"settings": regimes.settings_table(), "regimes": regimes.regimes_table()},
        "presets.md": {"presets": regimes.presets_table()},
        "cost.md": {"cost-per-run": cost.per_run_table(), "cost-studies": cost.studies_table()},
    }


def fill_blocks(text: str, blocks: dict[str, str]) -> str:
    """``text`` with the content between each block's markers replaced; a block without markers is an error."""
    for name, content in blocks.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        if begin not in text or end not in text:
            raise ValueError(f"no generated block {name!r} (markers {begin!r} ... {end!r})")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{content}\n{end}{tail}"
    return text


def write_docs(directory: Path = DOCS) -> list[Path]:
    written = []
    for file, blocks in generated_blocks().items():
        path = directory / file
        text = path.read_text()
        new = fill_blocks(text, blocks)
        if new != text:
            path.write_text(new)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-docs", action="store_true", help="rewrite the generated blocks of docs/reproduce")
    args = parser.parse_args(argv)
    if args.write_docs:
        for path in write_docs():
            print(f"wrote {path}")
        return 0
    for blocks in generated_blocks().values():
        print("\n\n".join(blocks.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
