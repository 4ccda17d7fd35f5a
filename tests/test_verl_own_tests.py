"""verl's own CPU tests of its losses and configs, shipped in verl's wheel, still pass with verl-lambda loaded."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import verl

VERL_TESTS = Path(verl.__file__).resolve().parent.parent / "tests"
SUITES = [
    "trainer/ppo/*_on_cpu.py",
    "test_base_config_on_cpu.py",
    "trainer/test_multi_trajectories_advantage_on_cpu.py",
]


@pytest.mark.e2e  # a pytest process running verl's own tests
@pytest.mark.timeout(600)
def test_verls_cpu_tests_pass_with_the_plugin_loaded():
    files = sorted(str(p) for pattern in SUITES for p in VERL_TESTS.glob(pattern))
    assert len(files) >= 8, f"verl's tests not found under {VERL_TESTS}"
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}  # verl's CI default platform
    probe = "import verl, verl_lambda.plugin as p; assert p.LOAD_ERROR is None"
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120, env=env)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",  # in their files' order, as verl's CI runs them
            "-c",
            "/dev/null",
            "--rootdir",
            str(VERL_TESTS),
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=VERL_TESTS,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(summary)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary
