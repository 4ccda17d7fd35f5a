"""Build the reproduction's training set and evaluation benchmarks as verl parquet files.

    python examples/prepare_data.py --out ~/data/verl_lambda                      # MATH train + all six benchmarks
    python examples/prepare_data.py --out ~/data/verl_lambda --train math,simplerl_zoo_hard
    python examples/prepare_data.py --out ~/data/verl_lambda --train none --eval math500,aime24
    python examples/prepare_data.py --out /tmp/d --from-jsonl tests/fixtures/reproduce   # offline, from JSONL

Writes ``OUT/<prompt>/train/<set>.parquet`` and ``OUT/<prompt>/eval/<benchmark>.parquet`` for each prompt template
(``--prompt``, default all: ``qwen_boxed`` and ``verl``), and ``OUT/manifest.json``. Downloads use the Hugging Face
``datasets`` library (run it where the Hub is reachable, e.g. a cluster login node; ``HF_HOME`` decides the cache).
``--from-jsonl DIR`` reads each source split from ``DIR/<hf id with / as __>[__<config or data folder>]__<split>.jsonl``
instead, in the Hub's record format: that is how the tests and the CPU smoke run work without a network.

The registry (ids, fields, answer extraction, data_source and checker of every dataset) is
``verl_lambda/reproduce/datasets.py``; ``--list`` prints it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from verl_lambda.reproduce.datasets import (
    DEFAULT_PROMPT,
    DEFAULT_TRAIN_SET,
    EVAL_SPECS,
    PROMPTS,
    TRAIN_SETS,
    TRAIN_SPECS,
    build,
)


def describe() -> str:
    lines = ["training sets (--train):"]
    for name, parts in TRAIN_SETS.items():
        specs = [TRAIN_SPECS[p] for p in parts]
        sources = " + ".join(
            f"{s.hf_id}{':' + s.hf_data_files if s.hf_data_files else ''}[{s.hf_split}]{' lv.3-5' if s.keep else ''}"
            for s in specs
        )
        lines.append(f"  {name:<18} {sources}{'  (default)' if name == DEFAULT_TRAIN_SET else ''}")
    lines.append("benchmarks (--eval):")
    for name, spec in EVAL_SPECS.items():
        config = f" {spec.hf_config}" if spec.hf_config else ""
        lines.append(
            f"  {name:<18} {spec.hf_id}{config} [{spec.hf_split}], {spec.size} problems, "
            f"data_source={spec.data_source}, checker={spec.checker}; reported by {', '.join(spec.reported_by)}"
        )
    lines.append("prompt templates (--prompt):")
    for name, prompt in PROMPTS.items():
        lines.append(f"  {name:<18} {prompt.source}{'  (default)' if name == DEFAULT_PROMPT else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="output directory (DATA_DIR of the launchers)")
    parser.add_argument(
        "--train",
        default=DEFAULT_TRAIN_SET,
        help=f"training set(s), comma-separated, or none (default {DEFAULT_TRAIN_SET}; one of {list(TRAIN_SETS)})",
    )
    parser.add_argument("--eval", default="all", help=f"benchmarks, comma-separated, all or none ({list(EVAL_SPECS)})")
    parser.add_argument("--prompt", default="all", help=f"prompt templates, comma-separated, or all ({list(PROMPTS)})")
    parser.add_argument("--from-jsonl", type=Path, default=None, help="read source splits from JSONL files here")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N rows of each dataset (smoke runs)")
    parser.add_argument("--list", action="store_true", help="print the registry and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(describe())
        return 0
    if args.out is None:
        parser.error("--out is required")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        manifest = build(
            args.out, args.train, args.eval, from_dir=args.from_jsonl, limit=args.limit, prompts=args.prompt
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"prepare_data: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(manifest, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
