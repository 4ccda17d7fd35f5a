"""Check the patched verl's math against verl-lambda's math fixtures (tests/fixtures/math).

    python upstream/check_fixtures.py [VERL_TREE]

Run by ``scripts/check_upstream.sh`` with the patched verl importable (and verl's plugin discovery off). Checks:

1. every fixture case through the patched verl: ``length_weights``, ``traced_log_ratio`` and ``trace_mass`` from
   the series' modules, and the weighted aggregation through ``core_algos.agg_loss(..., "lambda_grpo",
   seq_weights=..., base=...)``, i.e. the registered loss aggregation mode;
2. with VERL_TREE, any fixture values embedded in the series' own tests (a ``FIXTURE_CASES`` literal in
   ``tests/trainer/ppo/test_lambda_grpo_on_cpu.py`` or ``test_grpo_lambda_on_cpu.py``) against the same files.
   Today neither test embeds any: both compute their expectations from in-test float64 references (the direct
   formulas of the weights, the trace and the trace mass), so the fixtures reach the series through 1. only.

Exit status 1 on any mismatch.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "support"))

import make_math_fixtures as fixtures  # noqa: E402

SERIES_TESTS = {
    "tests/trainer/ppo/test_lambda_grpo_on_cpu.py": "length_weights",
    "tests/trainer/ppo/test_grpo_lambda_on_cpu.py": "traced_log_ratio",
}


def verl_impl() -> SimpleNamespace:
    """The patched verl's math, with the ops' signatures."""
    import verl
    from verl.trainer.ppo import core_algos, eligibility_trace, length_weights

    print(f"patched verl: {Path(verl.__file__).parent}")

    def weighted_agg_loss(loss_mat, loss_mask, weights, base, dp_size, batch_num_tokens=None, global_batch_size=None):
        return core_algos.agg_loss(
            loss_mat,
            loss_mask,
            "lambda_grpo",
            dp_size=dp_size,
            batch_num_tokens=batch_num_tokens,
            global_batch_size=global_batch_size,
            seq_weights=weights,
            base=base,
        )

    return SimpleNamespace(
        length_weights=length_weights.length_weights,
        weighted_agg_loss=weighted_agg_loss,
        traced_log_ratio=eligibility_trace.traced_log_ratio,
        trace_mass=eligibility_trace.trace_mass,
    )


def embedded_cases(path: Path) -> list[dict]:
    """The ``FIXTURE_CASES`` literal of a test module, read without importing it; [] if it has none."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FIXTURE_CASES" for t in node.targets):
            return ast.literal_eval(node.value)
    return []


def check_embedded(verl_tree: Path) -> list[str]:
    problems = []
    for test, function in SERIES_TESTS.items():
        stored = {case["name"]: case for case in fixtures.load(function)}
        cases = embedded_cases(verl_tree / test)
        for case in cases:
            reference = stored.get(case["name"])
            if reference is None:
                problems.append(f"{test}: FIXTURE_CASES[{case['name']}] is not a case of {function}.json")
                continue
            if fixtures.decode(case["inputs"]) != fixtures.decode(reference["inputs"]):
                problems.append(f"{test}: FIXTURE_CASES[{case['name']}] has other inputs than {function}.json")
            for problem in fixtures.compare(reference["expected"], case["expected"]):
                problems.append(f"{test}: FIXTURE_CASES[{case['name']}] {problem}")
        print(f"{test}: {len(cases)} embedded fixture cases")
    return problems


def main(argv: list[str]) -> int:
    problems = fixtures.check(verl_impl(), label="patched verl")
    count = sum(len(fixtures.load(function)) for function in fixtures.FUNCTIONS)
    if len(argv) > 1:
        problems += check_embedded(Path(argv[1]))
    for problem in problems:
        print(problem)
    if problems:
        print(f"FAILED: the series' math disagrees with verl_lambda.ops on the fixtures ({len(problems)} mismatches)")
        return 1
    print(f"{count} fixture cases: the series' math agrees with verl_lambda.ops")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
