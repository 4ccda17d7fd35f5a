"""The benchmark script runs (small sizes) and reports every case as a ratio against verl's path."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


@pytest.mark.e2e  # a process running the benchmark on verl's loss
@pytest.mark.timeout(400)
def test_bench_quick_reports_every_case():
    result = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=360)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "case" not in line]
    cases = [
        "λ-GRPO aggregation",
        "actor update step",
        "GRPO-λ loss fwd+bwd (recent)",
        "(both)",
        "weights built per call",
        "weights built once",
    ]
    for case in cases:
        assert any(case in row for row in rows), (case, result.stdout)
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0  # both sides were timed
