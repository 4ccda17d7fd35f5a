"""Carry ``verl_lambda/ops`` into a verl source tree: the series' math modules are these files, verbatim.

    python upstream/port_ops.py VERL_TREE            # write the modules into VERL_TREE
    python upstream/port_ops.py VERL_TREE --check    # exit 1 (and show a diff) if VERL_TREE's copies differ

The only changes are verl's license header on top and no ``Layer N (...)`` line in the docstring (the plugin's
layering, ``verl_lambda/layers.py``, means nothing in verl). ``scripts/check_upstream.sh`` runs ``--check`` on the
tree it patched, so a change of ``verl_lambda/ops`` that the series does not carry yet is reported.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# ours -> theirs (path inside the verl tree)
MODULES = {
    "verl_lambda/ops/length_weights.py": "verl/trainer/ppo/length_weights.py",
    "verl_lambda/ops/eligibility_trace.py": "verl/trainer/ppo/eligibility_trace.py",
}
LICENSE = """\
# Copyright 2026 Bytedance Ltd. and/or its affiliates
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""


def ported(source: Path) -> str:
    """The verl module made from one of our ops modules."""
    text = re.sub(r"\n\nLayer \d+ \([^)]*\)\.\n", "\n", source.read_text(encoding="utf-8"), count=1)
    return LICENSE + text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verl_tree", type=Path)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for ours, theirs in MODULES.items():
        expected = ported(REPO / ours)
        target = args.verl_tree / theirs
        if not args.check:
            target.write_text(expected, encoding="utf-8")
            print(f"wrote {target} from {ours}")
            continue
        actual = target.read_text(encoding="utf-8") if target.exists() else ""
        if actual != expected:
            stale.append(theirs)
            diff = difflib.unified_diff(
                actual.splitlines(keepends=True), expected.splitlines(keepends=True), f"series:{theirs}", ours
            )
            sys.stdout.writelines(diff)
    if stale:
        print(f"the series' copies of verl_lambda/ops differ from ours: {', '.join(stale)}")
        return 1
    if args.check:
        print("the series carries verl_lambda/ops verbatim")
    return 0


if __name__ == "__main__":
    sys.exit(main())
