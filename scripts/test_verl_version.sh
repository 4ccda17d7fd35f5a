#!/usr/bin/env bash
# Run the algorithm tests against another tested verl release (default 0.9.0; .venv has 0.9.1): λ-GRPO and GRPO-λ
# against verl's own functions, the engine tests in one and two processes, the cluster-path checks, the plugin's
# loading and one end-to-end main_ppo run of both methods together. Extra arguments go to pytest.
#
#   bash scripts/test_verl_version.sh            # verl 0.9.0
#   VERL_VERSION=0.9.1 bash scripts/test_verl_version.sh
#
# The environment is build/verl-<version>/: a venv that sees .venv's packages (torch & co.) after its own, with only
# verl itself installed in it, so that one release is swapped for another without a second copy of everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION=${VERL_VERSION:-0.9.0}
VENV="$ROOT/build/verl-$VERSION"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || bash scripts/setup.sh

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv --without-pip "$VENV"
fi
base_purelib=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
venv_purelib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# addsitedir, not a plain path: .venv's own .pth files (verl-lambda's editable install) must run too
echo "import site; site.addsitedir('$base_purelib')" >"$venv_purelib/zz_verl_lambda_base.pth"
installed() { (cd /tmp && "$VENV/bin/python" -c 'import verl; print(verl.__version__)' 2>/dev/null) || true; }
if [ "$(installed)" != "$VERSION" ]; then
  echo "[test_verl_version] installing verl==$VERSION (without dependencies) into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "verl==$VERSION" \
    2> >(grep -v "^WARNING: Location" >&2)
fi
[ "$(installed)" = "$VERSION" ] || { echo "[test_verl_version] verl $VERSION did not install in $VENV" >&2; exit 1; }
(cd /tmp && "$VENV/bin/python" -c 'import verl, verl_lambda.plugin as p; p.assert_loaded()') \
  || { echo "[test_verl_version] verl-lambda does not load with verl $VERSION" >&2; exit 1; }
echo "[test_verl_version] verl $VERSION in $VENV; verl-lambda loads"

exec "$VENV/bin/python" -m pytest -p no:cacheprovider \
  tests/test_plugin.py \
  tests/test_length_weights.py \
  tests/test_lambda_grpo_loss.py \
  tests/test_grpo_lambda_loss.py \
  tests/test_lambda_grpo_engine.py \
  tests/test_lambda_grpo_validation.py \
  tests/test_group_mean.py \
  tests/test_cluster_path.py \
  tests/test_config.py \
  tests/test_e2e.py::test_both_methods_train_together_with_a_kl_loss_v1 \
  "$@"
