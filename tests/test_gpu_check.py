"""The prepared GPU check (scripts/gpu_check.sh, docs/gpu.md) runs on CPU at both of its levels, so it cannot rot
before a GPU runs it: with verl (engine updates included) and as on a machine with torch only."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"
AUTOCAST = ("autocast bf16", "autocast fp16")
ACCURACY = [
    *(f"accuracy/traced_log_ratio[{style},κ={decay}]" for style in ("recent", "both") for decay in (0.9, 0.99)),
    "accuracy/trace_mass[recent]",
    "accuracy/trace_mass[both]",
    "accuracy/length_weights",
    "accuracy/weighted_agg_loss[seq-mean-token-mean]",
    "accuracy/weighted_agg_loss[token-mean]",
]
ENGINE = ("engine/lambda_grpo update", "engine/grpo_lambda update")


def run_check(tmp_path: Path, **env: str) -> dict:
    out = tmp_path / "report.json"
    result = subprocess.run(
        ["bash", str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
        env={**os.environ, **env},
    )
    assert out.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    failed = [
        (row["name"], row["dtype"], row["value"], row["notes"]) for row in report["rows"] if row["status"] == "fail"
    ]
    assert result.returncode == 0, (failed, result.stdout[-3000:], result.stderr[-3000:])
    assert report["passed"] and not failed
    assert report["device"] == "cpu" and report["quick"] is True
    return report


def rows_by_key(report: dict) -> dict[tuple[str, str], dict]:
    return {(row["name"], row["dtype"]): row for row in report["rows"]}


def assert_accuracy_passed(report: dict) -> None:
    rows = rows_by_key(report)
    for name in ACCURACY:
        for dtype in ("fp32", *AUTOCAST):
            row = rows[(name, dtype)]
            assert row["status"] == "pass", row
            assert row["value"] <= 1e-5, row
            assert row["detail"]["output_dtypes"] == ["torch.float32"], row


def assert_costs_reported(report: dict) -> None:
    names = [row["name"] for row in report["rows"]]
    for prefix in ("cost/grpo_lambda_loss vs vanilla", "cost/lambda_grpo_loss vs seq-mean-token-mean"):
        (row,) = [row for row in report["rows"] if row["name"].startswith(prefix)]
        assert row["status"] == "pass" and row["detail"]["ours_ms"] > 0 and row["detail"]["baseline_ms"] > 0, row
        assert row["detail"]["ours_peak_mib"] is None  # peak memory is a CUDA figure
    assert "cost/trace_vs_dense T=512" in names


@pytest.mark.e2e  # a process running verl's engine
@pytest.mark.timeout(300)
def test_gpu_check_on_cpu_with_verl(tmp_path):
    report = run_check(tmp_path)
    assert report["level"] == "verl" and report["verl"]
    assert_accuracy_passed(report)
    assert_costs_reported(report)
    rows = rows_by_key(report)
    for name in (
        "equivalence/torch vanilla == verl compute_policy_loss_vanilla",
        "equivalence/torch seq-mean-token-mean == verl agg_loss",
        "equivalence/torch grpo_lambda vs compute_policy_loss_grpo_lambda",
    ):
        assert rows[(name, "fp32")]["status"] == "pass"
    for name in ENGINE:
        bf16 = rows[(name, "param bf16")]
        assert bf16["status"] == "pass", bf16  # bf16 runs on CPU; only fp16 may be skipped there
        fp16 = rows[(name, "param fp16 + ShardedGradScaler")]
        assert fp16["status"] in ("pass", "skipped"), fp16
    assert "λ 0 -> " in rows[(ENGINE[0], "param bf16")]["notes"]


@pytest.mark.timeout(300)
def test_gpu_check_torch_only_level(tmp_path):
    """As on a machine without verl, Ray or vLLM: the script makes them unimportable and must still pass."""
    report = run_check(tmp_path, GPU_CHECK_NO_VERL="1")
    assert report["level"] == "torch-only" and report["verl"] is None
    assert_accuracy_passed(report)
    assert_costs_reported(report)
    assert "(pure torch)" in next(row["name"] for row in report["rows"] if row["name"].startswith("cost/grpo_lambda"))
    assert not any(row["name"].startswith("equivalence/") for row in report["rows"])
    engine = [row for row in report["rows"] if row["name"].startswith("engine/")]
    assert len(engine) == 4 and all(row["status"] == "skipped" for row in engine)
