"""``python -m verl_lambda.toy OUT_DIR [--size tiny|small|base] [--max-chars N]``: build the demo model and data.

Layer 7 (applications): the toy's command line; the toy itself is layer 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from verl_lambda.toy.model import SIZES, build_model
from verl_lambda.toy.task import build_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
    parser.add_argument("--max-chars", type=int, default=32, help="response budget the reward is normalised by")
    args = parser.parse_args()
    model_dir = build_model(args.out_dir / f"model-{args.size}", size=args.size)
    data_dir = build_dataset(args.out_dir / "data", max_chars=args.max_chars)
    print(f"model: {model_dir}\ndata: {data_dir}")


if __name__ == "__main__":
    main()
