"""Prove that the fast suite kills the twelve mutants of issue 21 (shared/tests/mutants_dd9c8cb.py).

Those are one-line mutations of the package at commit dd9c8cb that ``pytest -m "not e2e"`` did not catch. The table
below carries them over to today's code (the same change, where the code now is); ``pretrace_clamp`` is reversed,
since the trace is now fed the clamped log-ratio: its mutant feeds it the raw one. Each entry names the fast tests
that must kill it.

For every mutant: copy ``verl_lambda/`` into a temporary folder, apply that mutant alone (each old text must occur
exactly once, or the table is stale and the script stops), and run its tests with the copy first on ``PYTHONPATH``
and ``PYTHONSAFEPATH=1``, so that neither the working directory (this checkout's unmutated package) nor the editable
install wins; subprocesses the tests start (gloo ranks, ``python -c``) inherit both variables and see the mutant too.
A baseline run of every named test on the unmutated copy comes first: a mutant is killed only by tests that pass
without it.

    python scripts/check_mutants.py                 # all twelve, with the baseline
    python scripts/check_mutants.py no_bounds -q    # one, quietly; --no-baseline skips the baseline

Exit status 0 when every mutant run was killed. Not part of CI (it runs the named tests 13 times, ~10-20 minutes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GL = "verl_lambda/grpo_lambda.py"
LG = "verl_lambda/lambda_grpo.py"
PA = "verl_lambda/patches.py"
T = "tests/test_mutants.py::"

# name -> (edits [(file, old text, new text)], the fast tests that kill it)
MUTANTS: dict[str, tuple[list[tuple[str, str, str]], list[str]]] = {
    "pretrace_clamp": (
        [
            (
                GL,
                "trace = traced_log_ratio(clamped_log_ratio, response_mask, options.decay, options.style)\n"
                "        ratio",
                "trace = traced_log_ratio(log_ratio, response_mask, options.decay, options.style)\n        ratio",
            )
        ],
        ["tests/test_grpo_lambda_loss.py::test_an_infinite_log_ratio_is_clamped_before_the_trace_like_verls"],
    ),
    "eps_weight_style": (
        [
            (
                GL,
                "token_weights = trace_mass(response_mask, options.decay, options.style)",
                "token_weights = trace_mass(response_mask, options.decay)",
            )
        ],
        [T + "test_epsilon_weight_weights_each_token_by_the_trace_mass_of_its_style"],
    ),
    "loss_mask_dropped": (
        [
            (
                GL,
                "log_ratio = torch.where(response_mask.bool(), log_prob - old_log_prob, 0.0)",
                "log_ratio = log_prob - old_log_prob",
            )
        ],
        [T + "test_padded_positions_holding_inf_or_nan_change_nothing"],
    ),
    "trace_metric": (
        [
            (
                GL,
                '"actor/grpo_lambda/trace_mean": (trace.sum() / response_mask.sum().clamp(min=1)).item()',
                '"actor/grpo_lambda/trace_mean": trace.mean().item()',
            )
        ],
        [T + "test_trace_metrics_are_over_the_valid_tokens_only"],
    ),
    "default_trace_lam": (
        [("verl_lambda/config.py", "lam: float = 0.99", "lam: float = 0.9")],
        [
            T + "test_the_papers_defaults_reach_verls_actor_config",
            T + "test_the_default_trace_decay_is_what_the_loss_uses",
        ],
    ),
    "v1_trainer_unpatched": (
        [
            (PA, '    wrap(module.PPOTrainer, "__init__", _trainer_init_with_lambda_base)\n', ""),
            (PA, '    wrap(module.RayPPOTrainer, "__init__", _trainer_init_with_lambda_base)\n', "    pass\n"),
        ],
        [
            T + "test_the_legacy_trainer_learns_the_base_from_its_config",
            T + "test_the_v1_trainer_learns_the_base_and_marks_rows",
        ],
    ),
    "v1_rows_unpatched": (
        [(PA, '    wrap(module.PPOTrainer, "_compute_advantage", _compute_advantage_marking_rows)\n', "")],
        [T + "test_the_v1_trainer_learns_the_base_and_marks_rows"],
    ),
    "no_grad_clip": (
        [(LG, "grad = grad.clamp(-self.options.grad_clip, self.options.grad_clip)", "grad = grad")],
        [
            T + "test_grad_clip_bounds_lambdas_gradient_before_the_step",
            T + "test_grad_clip_and_bounds_act_on_lambdas_step_in_the_engine",
        ],
    ),
    "no_bounds": (
        [(LG, "            self.value.clamp_(\n", "            (lambda **kw: None)(\n")],
        [
            T + "test_min_and_max_bound_lambda_after_every_step",
            T + "test_grad_clip_and_bounds_act_on_lambdas_step_in_the_engine",
        ],
    ),
    "stale_lambda_per_step": (
        [
            (
                LG,
                "    weights, _ = weights_and_slope(*state.groups, group_index, self_index, state.value.item())\n",
                "    state._lam0 = state.value.item()\n"
                "    weights, _ = weights_and_slope(*state.groups, group_index, self_index, state.value.item())\n",
            ),
            (
                LG,
                "data[SELF_INDEX_KEY], state.value.item())",
                "data[SELF_INDEX_KEY], getattr(state, '_lam0', state.value.item()))",
            ),
        ],
        [T + "test_each_mini_batch_is_weighted_at_lambda_after_the_previous_mini_batchs_step"],
    ),
    "no_nonfinite_skip": (
        [
            (PA, "model_stepped = math.isfinite(float(grad_norm))", "model_stepped = True"),
            (LG, "if not model_stepped or not torch.isfinite(grad):", "if not model_stepped:"),
        ],
        [
            T + "test_a_non_finite_grad_norm_skips_lambdas_step_without_a_scaler",
            T + "test_a_non_finite_lambda_gradient_skips_lambdas_step",
        ],
    ),
    "scale_after_step": (
        [
            (
                PA,
                "        grad_norm = original()\n"
                "        if scaler is not None:  # the scaler skipped the model's step iff it found inf/NaN, "
                "and then it backs off\n"
                "            model_stepped = scaler.get_scale() >= scale",
                "        grad_norm = original()\n"
                "        if scaler is not None:  # the scaler skipped the model's step iff it found inf/NaN, "
                "and then it backs off\n"
                "            model_stepped = scaler.get_scale() >= scale\n"
                "            scale = scaler.get_scale()",
            )
        ],
        [T + "test_lambdas_gradient_is_unscaled_by_the_scale_backward_used_not_the_grown_one"],
    ),
}


def package_copy(parent: Path, edits: list[tuple[str, str, str]]) -> Path:
    """``parent/verl_lambda``: this checkout's package with ``edits`` applied; returns ``parent``."""
    shutil.copytree(ROOT / "verl_lambda", parent / "verl_lambda", ignore=shutil.ignore_patterns("__pycache__"))
    for relative, old, new in edits:
        path = parent / relative
        text = path.read_text()
        count = text.count(old)
        if count != 1:
            raise SystemExit(f"stale mutant table: {relative} holds {count} copies of {old!r}")
        path.write_text(text.replace(old, new))
    return parent


def environment(package_parent: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(package_parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONSAFEPATH"] = "1"  # no implicit cwd or script folder first: the copy wins in every subprocess too
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_tests(package_parent: Path, tests: list[str], quiet: bool) -> tuple[int, str]:
    env = environment(package_parent)
    imported = subprocess.run(
        [sys.executable, "-c", "import verl_lambda; print(verl_lambda.__file__)"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not imported.startswith(str(package_parent)):
        raise SystemExit(f"the tests would import {imported}, not the copy under {package_parent}")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if not quiet:
        print(output[-4000:])
    return result.returncode, output


def failed_tests(output: str) -> list[str]:
    return [line.split(" ", 2)[1] for line in output.splitlines() if line.startswith("FAILED ")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the named tests without mutants")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the verdicts")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(MUTANTS))
    if unknown:
        parser.error(f"unknown mutants {unknown}; known: {', '.join(MUTANTS)}")
    names = args.names or list(MUTANTS)

    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="verl-lambda-mutants-") as tmp:
        if not args.no_baseline:
            tests = list(dict.fromkeys(test for name in names for test in MUTANTS[name][1]))
            code, output = run_tests(package_copy(Path(tmp) / "baseline", []), tests, args.quiet)
            if code != 0:
                print(output[-4000:])
                print("baseline: the named tests fail without any mutant; fix them first")
                return 2
            print(f"baseline: {len(tests)} named tests pass without mutants", flush=True)
        for name in names:
            edits, tests = MUTANTS[name]
            start = time.monotonic()
            code, output = run_tests(package_copy(Path(tmp) / name, edits), tests, args.quiet)
            verdict = "killed" if code == 1 else "SURVIVED" if code == 0 else f"ERROR (pytest exit {code})"
            by = ", ".join(failed_tests(output)) if code == 1 else ""
            verdicts[name] = verdict
            print(f"{name}: {verdict} in {time.monotonic() - start:.0f} s{' by ' + by if by else ''}", flush=True)
    killed = sum(verdict == "killed" for verdict in verdicts.values())
    print(f"{killed}/{len(verdicts)} killed")
    return 0 if killed == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
