"""verl_lambda.ops against the math fixtures it shares with the upstream patch series (tests/fixtures/math).

The files are written by ``python tests/support/make_math_fixtures.py`` from verl_lambda.ops; ``bash
scripts/check_upstream.sh`` checks the series' copy of the math against the same files. A change of the ops that
moves any fixture value fails here until the fixtures are regenerated, and then in check_upstream.sh until the
series carries the change.
"""

import make_math_fixtures as fixtures
import pytest
import torch

CASES = [(function, case) for function in fixtures.FUNCTIONS for case in fixtures.load(function)]


def _id(item):
    function, case = item
    return f"{function}[{case['name']}]"


@pytest.mark.parametrize("function,case", CASES, ids=[_id(item) for item in CASES])
def test_ops_reproduce_the_fixture(function, case):
    actual = fixtures.evaluate(function, case["inputs"], fixtures.ops_impl())
    assert fixtures.compare(case["expected"], actual) == []


def test_the_fixture_files_hold_exactly_the_generators_cases():
    for function, make in fixtures.CASES.items():
        expected = [case["name"] for case in make()]
        stored = [case["name"] for case in fixtures.load(function)]
        assert stored == expected, f"{function}.json is stale: run python tests/support/make_math_fixtures.py"
        for made, kept in zip(make(), fixtures.load(function), strict=True):
            assert made["inputs"] == kept["inputs"], f"{function}[{made['name']}]: inputs changed, regenerate"


def _values(encoded):
    return torch.tensor(fixtures.decode(encoded), dtype=torch.float64)


def _outputs(function, case):
    """The case's outputs as verl_lambda.ops computes them now, and as the fixture file stores them (the series'
    copy of the math is checked against the stored ones): the spec's properties must hold for both."""
    computed = fixtures.evaluate(function, case["inputs"], fixtures.ops_impl())
    return {"computed": computed, "stored": case["expected"]}.items()


@pytest.mark.parametrize("case", fixtures.load("length_weights"), ids=lambda case: case["name"])
def test_length_weights_meet_the_spec(case):
    """ALGORITHMS.md §6: finite, summing to G per group, with a finite slope, for every finite λ and r."""
    group_ids = torch.tensor(case["inputs"]["group_ids"])
    for source, outputs in _outputs("length_weights", case):
        weights, slope = _values(outputs["weights"]), _values(outputs["slope"])
        assert weights.isfinite().all() and slope.isfinite().all(), source
        for group in group_ids.unique():
            members = group_ids == group
            assert weights[members].sum().item() == pytest.approx(int(members.sum()), rel=1e-5), source
            assert slope[members].sum().item() == pytest.approx(0.0, abs=1e-4 * max(1, len(members))), source
        if case["inputs"]["lam"] == 0:
            assert torch.equal(weights, torch.ones_like(weights)), source


@pytest.mark.parametrize("case", fixtures.load("traced_log_ratio"), ids=lambda case: case["name"])
def test_the_trace_ignores_masked_positions(case):
    """Masked positions contribute nothing, whatever they hold (inf and NaN included), and get 0."""
    mask = _values(case["inputs"]["response_mask"]) > 0
    if case["name"].startswith("masked_nonfinite"):
        masked = _values(case["inputs"]["log_ratio"])[~mask]
        assert masked.isnan().any() and masked.isposinf().any() and masked.isneginf().any()
    for source, outputs in _outputs("traced_log_ratio", case):
        for key in ("trace", "grad_log_ratio"):
            values = _values(outputs[key])
            assert values.isfinite().all(), (source, key)
            assert (values[~mask] == 0).all(), (source, key)


@pytest.mark.parametrize("case", fixtures.load("trace_mass"), ids=lambda case: case["name"])
def test_trace_mass_has_mean_one_per_response(case):
    mask = _values(case["inputs"]["response_mask"]) > 0
    for source, outputs in _outputs("trace_mass", case):
        mass = _values(outputs["mass"])
        assert mass.isfinite().all() and (mass[~mask] == 0).all(), source
        for row in range(mask.shape[0]):
            if mask[row].any():
                assert mass[row][mask[row]].mean().item() == pytest.approx(1.0, rel=1e-5), source
