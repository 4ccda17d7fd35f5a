"""The math fixtures shared by verl-lambda's tests and its upstream patch series (``upstream/``).

Inputs and expected outputs of ``verl_lambda.ops``: λ-GRPO's ``length_weights`` with its slope ``d f / d λ``,
the weighted aggregation ``weighted_agg_loss`` with its gradients, and GRPO-λ's ``traced_log_ratio`` (forward and
backward) and ``trace_mass``. The cases cover the spec's numeric fixture, groups over 81 responses (h floored),
large ``|λ|``, masked positions holding inf and NaN, both trace styles and κ in {0, 0.5, 0.99, 1}.

    python tests/support/make_math_fixtures.py           # (re)write tests/fixtures/math/*.json from verl_lambda.ops
    python tests/support/make_math_fixtures.py --check   # exit 1 if verl_lambda.ops disagrees with the files

``tests/test_math_fixtures.py`` checks ``verl_lambda.ops`` against the files; ``upstream/check_fixtures.py`` checks
the patched verl's copy of the math against the same files. Evaluation and comparison are defined here once, for
any implementation with the ops' signatures (``evaluate(case, impl)``). Non-finite numbers are stored as the
strings "inf", "-inf" and "nan"; everything else is a plain JSON number.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "math"
FUNCTIONS = ("length_weights", "weighted_agg_loss", "traced_log_ratio", "trace_mass")
# float32 results compared across machines and torch builds; the same code on the same build agrees bitwise
RTOL, ATOL = 1e-5, 1e-6
SPEC_LENGTHS = [300, 420, 500, 560, 610, 700, 820, 1100]


# ---------------------------------------------------------------------------------------------------------------
# Encoding.
# ---------------------------------------------------------------------------------------------------------------


def encode(value: Any, digits: int = 17) -> Any:
    """Tensors and floats to JSON: nested lists, non-finite floats as strings, integral floats as integers.

    Values of float32 tensors keep 9 significant digits (enough to identify a float32), Python floats all 17.
    """
    if isinstance(value, torch.Tensor):
        digits = 17 if value.dtype == torch.float64 else 9
        value = value.detach().cpu().double().tolist()
    if isinstance(value, list | tuple):
        return [encode(item, digits) for item in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return float(f"{value:.{digits}g}")
    return value


def decode(value: Any) -> Any:
    """Inverse of ``encode`` for numbers: strings back to non-finite floats."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def tensor(value: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(decode(value), dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------
# Cases (inputs only; the expected outputs come from verl_lambda.ops).
# ---------------------------------------------------------------------------------------------------------------


def _case(name: str, **inputs: Any) -> dict[str, Any]:
    # float inputs are rounded to 4 decimals (exact in the file, and short); non-finite values stay as they are
    rounded = {
        key: torch.round(value, decimals=4) if isinstance(value, torch.Tensor) and value.is_floating_point() else value
        for key, value in inputs.items()
    }
    return {"name": name, "inputs": {key: encode(value) for key, value in rounded.items()}}


def length_weights_cases() -> list[dict[str, Any]]:
    ninth = 1.0 / 9.0
    spec = {"lengths": SPEC_LENGTHS, "group_ids": [0] * 8, "r": ninth}
    cases = [_case(f"spec_G8_lam{lam:g}", lam=lam, **spec) for lam in (0.0, 1.0, -1.0, 0.37)]
    cases += [_case(f"spec_G8_large_lam{lam:g}", lam=lam, **spec) for lam in (50.0, -50.0, 1000.0, -1e5, 1e30)]
    # a group of 100: the one short response has z = -sqrt(99), h = 1 - sqrt(99)/9 < 0, floored
    floored = {"lengths": [1] + [1000] * 99, "group_ids": [7] * 100, "r": ninth}
    cases += [_case(f"G100_floored_lam{lam:g}", lam=lam, **floored) for lam in (2.0, -2.0, -1e4)]
    gen = torch.Generator().manual_seed(13)
    lengths = torch.randint(1, 200, (120,), generator=gen)
    cases.append(_case("G120_random_lam3", lengths=lengths, group_ids=[0] * 120, lam=3.0, r=ninth))
    # several groups interleaved, a group of one, a group of equal lengths, and float lengths
    cases.append(
        _case(
            "groups_interleaved_lam0.8",
            lengths=[12, 40, 7, 33, 5, 90, 18, 18, 18, 61],
            group_ids=[3, 9, 3, 9, 4, 3, 5, 5, 5, 9],
            lam=0.8,
            r=ninth,
        )
    )
    cases.append(_case("equal_lengths_lam5", lengths=[64] * 6, group_ids=[1] * 6, lam=5.0, r=ninth))
    cases.append(_case("ties_lam30", lengths=[10, 10, 20, 20, 15], group_ids=[0] * 5, lam=30.0, r=0.5))
    cases.append(_case("float_lengths_lam-0.6", lengths=[3.5, 8.25, 1.0, 12.0], group_ids=[2] * 4, lam=-0.6, r=ninth))
    cases.append(_case("large_r_lam1.5", lengths=[5, 50, 100, 400, 410], group_ids=[0] * 5, lam=1.5, r=2.0))
    return cases


def weighted_agg_loss_cases() -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(5)
    loss_mat = torch.randn(6, 9, generator=gen)
    loss_mask = (torch.rand(6, 9, generator=gen) > 0.3).float()
    loss_mask[4] = 0.0  # an empty response
    weights = torch.rand(6, generator=gen) * 2
    cases = []
    for base in ("seq-mean-token-mean", "token-mean"):
        common = {"loss_mat": loss_mat, "loss_mask": loss_mask, "base": base}
        cases.append(
            _case(f"{base}_local", weights=weights, dp_size=1, batch_num_tokens=None, global_batch_size=None, **common)
        )
        cases.append(
            _case(f"{base}_global", weights=weights, dp_size=4, batch_num_tokens=61, global_batch_size=20, **common)
        )
        cases.append(
            _case(
                f"{base}_unit_weights",
                weights=torch.ones(6),
                dp_size=2,
                batch_num_tokens=70,
                global_batch_size=12,
                **common,
            )
        )
    return cases


def _trace_inputs(seed: int, rows: int, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    log_ratio = torch.randn(rows, length, generator=gen) * 0.3
    mask = torch.ones(rows, length)
    grad_output = torch.randn(rows, length, generator=gen)
    return log_ratio, mask, grad_output


def traced_log_ratio_cases() -> list[dict[str, Any]]:
    log_ratio, mask, grad_output = _trace_inputs(3, 3, 11)
    mask[0, 8:] = 0  # trailing padding
    mask[1, 3:6] = 0  # a masked stretch inside the response (a tool's output)
    mask[2, 0] = 0  # a masked first position
    # masked positions may hold anything, inf and NaN included
    log_ratio[0, 8], log_ratio[0, 9], log_ratio[0, 10] = float("inf"), float("-inf"), float("nan")
    log_ratio[1, 4], log_ratio[2, 0] = float("nan"), float("inf")
    cases = []
    for style in ("recent", "both"):
        for decay in (0.0, 0.5, 0.99, 1.0):
            cases.append(
                _case(
                    f"masked_nonfinite_{style}_decay{decay:g}",
                    log_ratio=log_ratio,
                    response_mask=mask,
                    decay=decay,
                    style=style,
                    grad_output=grad_output,
                )
            )
    # long enough for the chunked scan (rows * T * T above the direct-matmul threshold), with a ragged end
    long_ratio, long_mask, long_grad = _trace_inputs(4, 1, 2100)
    long_mask[0, 2050:] = 0
    long_mask[0, 700:760] = 0
    for style in ("recent", "both"):
        cases.append(
            _case(
                f"long_T2100_{style}_decay0.99",
                log_ratio=long_ratio,
                response_mask=long_mask,
                decay=0.99,
                style=style,
                grad_output=long_grad,
            )
        )
    return cases


def trace_mass_cases() -> list[dict[str, Any]]:
    mask = torch.ones(3, 9)
    mask[0, 6:] = 0
    mask[1, 2:4] = 0
    mask[2] = 0  # an empty response
    return [
        _case(f"{style}_decay{decay:g}", response_mask=mask, decay=decay, style=style)
        for style in ("recent", "both")
        for decay in (0.0, 0.5, 0.99, 1.0)
    ]


CASES = {
    "length_weights": length_weights_cases,
    "weighted_agg_loss": weighted_agg_loss_cases,
    "traced_log_ratio": traced_log_ratio_cases,
    "trace_mass": trace_mass_cases,
}


# ---------------------------------------------------------------------------------------------------------------
# Evaluation, for any implementation with the ops' signatures.
# ---------------------------------------------------------------------------------------------------------------


def ops_impl() -> SimpleNamespace:
    """verl_lambda.ops as an implementation for ``evaluate``."""
    from verl_lambda.ops import eligibility_trace, length_weights

    return SimpleNamespace(
        length_weights=length_weights.length_weights,
        weighted_agg_loss=length_weights.weighted_agg_loss,
        traced_log_ratio=eligibility_trace.traced_log_ratio,
        trace_mass=eligibility_trace.trace_mass,
    )


def evaluate(function: str, inputs: dict[str, Any], impl: SimpleNamespace) -> dict[str, Any]:
    """Run one case through ``impl`` and return its outputs, encoded like the fixture files."""
    if function == "length_weights":
        lengths = decode(inputs["lengths"])
        dtype = torch.long if all(isinstance(x, int) for x in lengths) else torch.float32
        lam = torch.tensor(float(inputs["lam"]), requires_grad=True)
        weights = impl.length_weights(
            torch.tensor(lengths, dtype=dtype), tensor(inputs["group_ids"], torch.long), lam, float(inputs["r"])
        )
        slope = [torch.autograd.grad(weights[i], lam, retain_graph=True)[0] for i in range(len(weights))]
        return {"weights": encode(weights), "slope": encode(torch.stack(slope))}
    if function == "weighted_agg_loss":
        loss_mat = tensor(inputs["loss_mat"]).requires_grad_()
        weights = tensor(inputs["weights"]).requires_grad_()
        loss = impl.weighted_agg_loss(
            loss_mat,
            tensor(inputs["loss_mask"]),
            weights,
            inputs["base"],
            inputs["dp_size"],
            batch_num_tokens=inputs["batch_num_tokens"],
            global_batch_size=inputs["global_batch_size"],
        )
        grad_loss_mat, grad_weights = torch.autograd.grad(loss, (loss_mat, weights))
        return {
            "loss": encode(loss.detach()),
            "grad_loss_mat": encode(grad_loss_mat),
            "grad_weights": encode(grad_weights),
        }
    if function == "traced_log_ratio":
        log_ratio = tensor(inputs["log_ratio"]).requires_grad_()
        trace = impl.traced_log_ratio(log_ratio, tensor(inputs["response_mask"]), inputs["decay"], inputs["style"])
        (grad,) = torch.autograd.grad(trace, log_ratio, grad_outputs=tensor(inputs["grad_output"]))
        return {"trace": encode(trace), "grad_log_ratio": encode(grad)}
    if function == "trace_mass":
        mass = impl.trace_mass(tensor(inputs["response_mask"]), inputs["decay"], inputs["style"])
        return {"mass": encode(mass)}
    raise ValueError(f"unknown function {function!r}")


def compare(expected: dict[str, Any], actual: dict[str, Any], rtol: float = RTOL, atol: float = ATOL) -> list[str]:
    """Mismatches between two encoded outputs: shapes, the places of inf/NaN, then finite values within tolerance."""
    problems = []
    for key in expected:
        if key not in actual:
            problems.append(f"{key}: missing")
            continue
        want, got = (
            torch.tensor(decode(expected[key]), dtype=torch.float64),
            torch.tensor(decode(actual[key]), dtype=torch.float64),
        )
        if want.shape != got.shape:
            problems.append(f"{key}: shape {tuple(got.shape)} instead of {tuple(want.shape)}")
            continue
        if (
            not torch.equal(want.isnan(), got.isnan())
            or not torch.equal(want.isposinf(), got.isposinf())
            or not torch.equal(want.isneginf(), got.isneginf())
        ):
            problems.append(f"{key}: inf/NaN at other positions")
            continue
        finite = want.isfinite()
        close = torch.isclose(got[finite], want[finite], rtol=rtol, atol=atol)
        if not close.all():
            worst = (got[finite] - want[finite]).abs().max().item()
            problems.append(
                f"{key}: {int((~close).sum())} of {int(finite.sum())} values differ (max abs diff {worst:.3g})"
            )
    return problems


def load(function: str, directory: Path = FIXTURE_DIR) -> list[dict[str, Any]]:
    """The cases of one fixture file."""
    return json.loads((directory / f"{function}.json").read_text(encoding="utf-8"))["cases"]


def generate(impl: SimpleNamespace | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every case with its expected outputs from ``impl`` (default: verl_lambda.ops)."""
    impl = impl or ops_impl()
    return {
        function: [{**case, "expected": evaluate(function, case["inputs"], impl)} for case in make()]
        for function, make in CASES.items()
    }


def write(fixtures: dict[str, list[dict[str, Any]]], directory: Path = FIXTURE_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for function, cases in fixtures.items():
        header = {"function": function, "source": "verl_lambda.ops", "generator": "tests/support/make_math_fixtures.py"}
        lines = [json.dumps(case, separators=(",", ":")) for case in cases]
        body = json.dumps(header)[:-1] + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n"
        (directory / f"{function}.json").write_text(body, encoding="utf-8")


def check(impl: SimpleNamespace, directory: Path = FIXTURE_DIR, label: str = "verl_lambda.ops") -> list[str]:
    """Every mismatch between ``impl`` and the fixture files, as printable lines."""
    problems = []
    for function in FUNCTIONS:
        for case in load(function, directory):
            for problem in compare(case["expected"], evaluate(function, case["inputs"], impl)):
                problems.append(f"{label} {function}[{case['name']}] {problem}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare verl_lambda.ops with the files, write nothing")
    parser.add_argument(
        "--embed",
        nargs="+",
        metavar=("FUNCTION", "CASE"),
        help="print FIXTURE_CASES, a Python literal of these cases of FUNCTION's file, for the series' tests",
    )
    args = parser.parse_args(argv)
    if args.embed:
        function, names = args.embed[0], args.embed[1:]
        by_name = {case["name"]: case for case in load(function)}
        print("FIXTURE_CASES = [")
        for name in names:
            print(f"    {by_name[name]!r},")
        print("]")
        return 0
    if args.check:
        problems = check(ops_impl())
        for problem in problems:
            print(problem)
        count = sum(len(load(function)) for function in FUNCTIONS)
        print(f"{count} fixture cases: " + (f"{len(problems)} mismatches" if problems else "verl_lambda.ops agrees"))
        return 1 if problems else 0
    fixtures = generate()
    write(fixtures)
    print(f"wrote {sum(len(cases) for cases in fixtures.values())} cases to {FIXTURE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
