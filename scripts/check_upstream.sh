#!/usr/bin/env bash
# Check upstream/*.patch, the series that adds λ-GRPO and GRPO-λ to verl itself, against verl 0.9.1's released
# source (the sdist on PyPI). Fails if a patch does not apply, if the series' Python is not ruff clean under verl's
# own ruff settings, if a file breaks verl's sanity rules, if the generated config files are out of sync, if the
# series' math disagrees with verl_lambda.ops on tests/fixtures/math, if verl's FSDP2 actor fails to train with the
# series on CPU, or if a test fails. Ends with pytest's summary line (verl's own CPU tests of the touched areas plus
# the series' new tests, run against the patched verl).
#
#   bash scripts/check_upstream.sh
#   VERL_GIT_DIR=~/src/verl bash scripts/check_upstream.sh   # also apply the whole series to that checkout's HEAD
#                                                            # and run verl's own sanity scripts there
#   CHECK_UPSTREAM_E2E=0 bash scripts/check_upstream.sh      # skip the CPU run of verl's FSDP2 actor with the
#                                                            # series (upstream/e2e_cpu.py, about 20-40 s)
#   CHECK_UPSTREAM_090=0 bash scripts/check_upstream.sh      # skip the series' new tests on verl 0.9.0 (about 45 s)
#
# Work happens in build/upstream/ (ignored by git): the sdist (downloaded once), verl/ (the sdist as a git repo with
# the series applied as commits, kept after the run, see upstream/README.md to refresh the series) and venv/ (its own
# environment: a venv that sees .venv's packages through a .pth file, with the patched verl installed over verl).
# Each algorithm patch carries its docs page and example (docs/, examples/), which the sdists do not ship: the code
# parts of every patch are applied to the sdists (git am --exclude, one commit per patch), each patch's new docs and
# example files are laid out and checked here, and the whole patches are applied to verl's git repository when
# VERL_GIT_DIR is set (build/upstream/verl-git, which upstream/export.sh exports the series from).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VERSION=0.9.1
SDIST_SHA256=3e03d8816b2546b2c5580705671b8d0bb3f79b8364e7b5c56dbfc1245536ba22
BUILD="$ROOT/build/upstream"
TREE="$BUILD/verl"
VENV="$BUILD/venv"
PY="$ROOT/.venv/bin/python"
RUFF="$ROOT/.venv/bin/ruff"
# verl must run the series, not verl-lambda (or any other plugin) on top of it
export VERL_USE_EXTERNAL_PLUGINS=none
unset VERL_PLATFORM
start=$(date +%s)

step() { echo "[check_upstream] $*"; }
fail() {
  echo "[check_upstream] FAILED: $*" >&2
  exit 1
}

[ -x "$PY" ] || bash scripts/setup.sh
shopt -s nullglob
PATCHES=(upstream/0*.patch)
[ ${#PATCHES[@]} -gt 0 ] || fail "no patches in upstream/"

# unpack_sdist VERSION SHA256 DEST: verl's released source of VERSION (downloaded once, checked against SHA256),
# unpacked afresh into DEST
unpack_sdist() {
  local version=$1 sha256=$2 dest=$3 sdist="$BUILD/sdist/verl-$1.tar.gz"
  mkdir -p "$BUILD/sdist"
  if [ ! -f "$sdist" ]; then
    step "downloading the verl==$version sdist"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps "verl==$version" \
      -d "$BUILD/sdist"
  fi
  echo "$sha256  $sdist" | sha256sum --check --quiet - || fail "$sdist is not verl $version's sdist (sha256)"
  rm -rf "$dest" "$BUILD/verl-$version"
  tar --no-same-owner -xzf "$sdist" -C "$BUILD"
  mv "$BUILD/verl-$version" "$dest"
}

# 1-2. verl's released source, downloaded once, as a fresh git repository
unpack_sdist "$VERSION" "$SDIST_SHA256" "$TREE"
git_tree() { git -C "$TREE" -c user.name=check_upstream -c user.email=check_upstream@localhost -c commit.gpgsign=false "$@"; }
git_tree init -q
git_tree add -A
git_tree commit -q -m "verl $VERSION sdist"

# 3. the series, in order: the code part of each patch as one commit (the sdist has no docs/ or examples/), and the
# new docs and example files of each patch laid out for the checks of step 4
SDIST_EXCLUDE=(--exclude='docs/*' --exclude='examples/*')
LAID_OUT=0
for patch in "${PATCHES[@]}"; do
  name=$(basename "$patch")
  git_tree am -q --keep-non-patch "${SDIST_EXCLUDE[@]}" "$ROOT/$patch" || fail "$name does not apply to verl $VERSION"
  git -C "$TREE" apply --stat "$ROOT/$patch" >/dev/null || fail "$name is not a valid patch"
  mapfile -t docs < <("$PY" upstream/series.py layout "$ROOT/$patch")  # none: an empty array
  if [ ${#docs[@]} -gt 0 ]; then
    includes=()
    for file in "${docs[@]}"; do includes+=("--include=$file"); done
    git -C "$TREE" apply "${includes[@]}" "$ROOT/$patch" || fail "the new docs and example files of $name do not apply"
    LAID_OUT=$((LAID_OUT + ${#docs[@]}))
    step "applied $name (code; its ${#docs[@]} new docs and example files laid out for the checks)"
  else
    step "applied $name"
  fi
done
step "$LAID_OUT new docs and example files checked here; the patches' changes to docs/index.rst and" \
  "examples/README.md against verl's git repository ($([ -n "${VERL_GIT_DIR:-}" ] && echo "VERL_GIT_DIR below" || echo "set VERL_GIT_DIR to do it"))"

# 4. verl's ruff settings (its pyproject.toml) on the Python files of the series, and verl's sanity rules
mapfile -t PYFILES < <("$PY" upstream/series.py touched "${PATCHES[@]}")
(cd "$TREE" && "$RUFF" check --no-cache --quiet "${PYFILES[@]}" && "$RUFF" format --check --no-cache --quiet "${PYFILES[@]}") \
  || fail "the series is not ruff clean under verl's settings (cd $TREE && ruff check / ruff format --diff)"
step "ruff (verl's settings): ${#PYFILES[@]} files clean"
"$PY" upstream/series.py sanity "$TREE" "${PATCHES[@]}" || fail "verl's sanity rules"
git -C "$TREE" clean -fdq docs examples  # the laid-out files; the sdist has neither folder

# 5. optionally, the whole series on verl's git repository (not reachable from CI)
if [ -n "${VERL_GIT_DIR:-}" ]; then
  GTREE="$BUILD/verl-git"
  rm -rf "$GTREE"
  git clone -q --shared "$VERL_GIT_DIR" "$GTREE"
  head=$(git -C "$GTREE" log -1 --format='%h %cs')
  git -C "$GTREE" tag series-base  # where upstream/export.sh starts the series
  git -C "$GTREE" -c user.name=check_upstream -c user.email=check_upstream@localhost am -q --keep-non-patch \
    "${PATCHES[@]/#/$ROOT/}" || fail "the series does not apply to $VERL_GIT_DIR ($head)"
  step "the whole series applies to $VERL_GIT_DIR at $head"
  (cd "$GTREE" && for check in check_docs_time_info.py "check_example_naming.py --root examples" check_uv_gpu_only.py \
      validate_structure.py "check_license.py --directories ." check_docstrings.py; do
    # shellcheck disable=SC2086
    "$PY" tests/special_sanity/$check >/dev/null || fail "verl's tests/special_sanity/$check on $GTREE"
  done) || exit 1
  "$PY" upstream/series.py sanity "$GTREE" "${PATCHES[@]}" >/dev/null || fail "verl's sanity rules on $GTREE"
  step "verl's own sanity scripts pass on $GTREE"
fi

# 6. the patched verl in its own environment
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv --without-pip "$VENV"
fi
base_purelib=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
venv_purelib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$base_purelib" > "$venv_purelib/zz_verl_lambda_base.pth"  # torch & co. from .venv, after the venv's own
rm -rf "$BUILD/src" && mkdir -p "$BUILD/src"
git -C "$TREE" archive HEAD | tar -x -C "$BUILD/src"  # install from a copy: the build dirties its source tree
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  --force-reinstall "$BUILD/src" 2>&1 | grep -v "outside environment\|No files were found to uninstall" || true
VPY="$VENV/bin/python"
installed=$(cd /tmp && "$VPY" -c 'import verl, os; print(os.path.dirname(verl.__file__))')
[ "$installed" = "$venv_purelib/verl" ] || fail "import verl finds $installed, not the patched verl in $VENV"
(cd /tmp && "$VPY" -c 'import verl.trainer.ppo.loss_params') || fail "the installed verl lacks the series"
step "patched verl installed in $VENV"
# with the plugin loaded as usual, a verl that ships the methods keeps its own (verl-lambda adds its CPU backend only)
(cd /tmp && VERL_USE_EXTERNAL_PLUGINS=auto PYTHONPATH="$ROOT" "$VPY" -c '
import verl, verl_lambda.plugin as plugin
plugin.assert_loaded()
from verl.trainer.ppo import core_algos
assert not hasattr(core_algos.agg_loss, "__wrapped__"), "verl-lambda wrapped a verl that ships lambda_grpo"
assert core_algos.POLICY_LOSS_REGISTRY["grpo_lambda"].__module__.startswith("verl."), "grpo_lambda is not verl'"'"'s"
') || fail "verl-lambda does not step aside for a verl that ships the methods"
step "verl-lambda loaded on the patched verl leaves both methods to it"

# 7. the generated config files are in sync (verl's autogen-trainer-cfg hook)
for spec in "_generated_ppo_trainer.yaml:" "_generated_ppo_megatron_trainer.yaml:model_engine=megatron" \
  "_generated_ppo_veomni_trainer.yaml:model_engine=veomni" "_generated_ppo_torchtitan_trainer.yaml:model_engine=torchtitan"; do
  out=${spec%%:*}
  arg=${spec#*:}
  # shellcheck disable=SC2086
  (cd "$TREE" && "$VPY" scripts/print_cfg.py --cfg job $arg 2>/dev/null | sed -n '/^actor_rollout_ref/,$p' \
    | diff -q - <(sed -n '/^actor_rollout_ref/,$p' "verl/trainer/config/$out") >/dev/null) \
    || fail "verl/trainer/config/$out is out of date (verl's scripts/generate_trainer_config.sh)"
done
step "generated config files in sync"

# 8. one implementation of the math: verl_lambda.ops, the fixtures and the series agree
PYTHONPATH="$ROOT" "$PY" tests/support/make_math_fixtures.py --check >/dev/null \
  || fail "verl_lambda.ops disagrees with tests/fixtures/math: python tests/support/make_math_fixtures.py"
report=$("$VPY" upstream/check_fixtures.py "$TREE" 2>&1) || {
  echo "$report"
  fail "the series' math disagrees with verl_lambda.ops on tests/fixtures/math"
}
step "${report##*$'\n'}"
"$PY" upstream/port_ops.py "$TREE" --check >/dev/null \
  || step "NOTE: the series' copies of verl_lambda/ops differ in text (the fixtures agree): python upstream/port_ops.py $TREE --check"

# 9. verl's FSDP2 actor on CPU, trained with the series (verl has no CPU platform: verl-lambda's CPU backend)
if [ "${CHECK_UPSTREAM_E2E:-1}" = 1 ]; then
  (cd "$BUILD" && PYTHONPATH="$ROOT" "$VPY" "$ROOT/upstream/e2e_cpu.py" >"$BUILD/e2e.log" 2>&1) \
    || fail "verl's actor on CPU with the series: see $BUILD/e2e.log"
  step "$(tail -1 "$BUILD/e2e.log")"
fi

# the series' new tests (run on 0.9.1 below, and on 0.9.0)
NEW_TESTS=(
  tests/workers/test_loss_params_on_cpu.py
  tests/trainer/ppo/test_lambda_grpo_on_cpu.py
  tests/trainer/ppo/test_grpo_lambda_on_cpu.py
  tests/trainer/ppo/test_group_mean_token_mean_on_cpu.py
)

# 10. verl 0.9.0 too: the code parts of the patches on its sdist, and the series' new tests there
# (CHECK_UPSTREAM_090=0 skips it)
if [ "${CHECK_UPSTREAM_090:-1}" = 1 ]; then
  OLD_VERSION=0.9.0
  OLD_SHA256=41a7ebff5482a94fe1b0311ec48825fcb10123f9420801ca1b8e7e1d122f3f12
  OLD_TREE="$BUILD/verl-$OLD_VERSION-series"
  unpack_sdist "$OLD_VERSION" "$OLD_SHA256" "$OLD_TREE"
  old_tree() { git -C "$OLD_TREE" -c user.name=check_upstream -c user.email=check_upstream@localhost -c commit.gpgsign=false "$@"; }
  old_tree init -q && old_tree add -A && old_tree commit -q -m "verl $OLD_VERSION sdist"
  reduced=()
  for patch in "${PATCHES[@]}"; do
    if ! old_tree am -q --keep-non-patch "${SDIST_EXCLUDE[@]}" "$ROOT/$patch" >/dev/null 2>&1; then
      # the series is made against verl main: a hunk whose surrounding lines differ in 0.9.0 applies with 1 line of
      # context
      old_tree am --abort
      old_tree am -q -C1 --keep-non-patch "${SDIST_EXCLUDE[@]}" "$ROOT/$patch" \
        || fail "$(basename "$patch") does not apply to verl $OLD_VERSION"
      reduced+=("$(basename "$patch" | cut -c1-4)")
    fi
  done
  step "the code parts of the patches apply to verl $OLD_VERSION${reduced[*]:+ (with 1 line of context: ${reduced[*]})}"
  # verl 0.9.0 imports flash_attn for its padding helpers even on CPU: pure-torch stand-ins (verl-lambda's CPU ones)
  mkdir -p "$BUILD/shim-$OLD_VERSION/flash_attn"
  : >"$BUILD/shim-$OLD_VERSION/flash_attn/__init__.py"
  echo "from verl_lambda.cpu.padding import index_first_axis, pad_input, rearrange, unpad_input  # noqa: F401" \
    >"$BUILD/shim-$OLD_VERSION/flash_attn/bert_padding.py"
  OLD_ENV=(env PYTHONPATH="$BUILD/shim-$OLD_VERSION:$OLD_TREE:$ROOT")
  found=$(cd /tmp && "${OLD_ENV[@]}" "$PY" -c 'import verl, os; print(verl.__version__, os.path.dirname(verl.__file__))')
  [ "$found" = "$OLD_VERSION $OLD_TREE/verl" ] || fail "import verl finds $found, not the patched verl $OLD_VERSION"
  # the slowest cases (two gloo ranks each, 25-35 s) run on 0.9.1 only
  SLOW_CASES=(
    --deselect "tests/workers/test_loss_params_on_cpu.py::test_two_ranks_hold_the_same_value_after_a_step"
    --deselect "tests/trainer/ppo/test_group_mean_token_mean_on_cpu.py::test_groups_split_across_ranks_get_the_counts_of_the_whole_step"
  )
  old_pytest() {
    (cd "$OLD_TREE" && "${OLD_ENV[@]}" "$PY" -m pytest -q -c /dev/null --rootdir "$OLD_TREE" -p no:cacheprovider \
      -p no:randomly -o asyncio_mode=auto --disable-warnings -W ignore::DeprecationWarning "$@")
  }
  summary=$(old_pytest -rf "${NEW_TESTS[@]}" "${SLOW_CASES[@]}" 2>&1) && rc=0 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "$summary" | tail -30
    fail "the series' new tests on verl $OLD_VERSION"
  fi
  step "verl $OLD_VERSION: $(echo "$summary" | tail -1)"
fi

# 11. verl's own CPU tests of the touched areas, and the series' new tests
VERL_TESTS=(
  tests/trainer/ppo/test_core_algos_on_cpu.py
  tests/trainer/ppo/test_dynamic_policy_losses_on_cpu.py
  tests/trainer/ppo/test_loss_aggregation_on_cpu.py
  tests/trainer/ppo/test_value_loss_normalization_on_cpu.py
  tests/trainer/ppo/test_rollout_corr.py
  tests/trainer/ppo/test_rollout_corr_integration.py
  tests/trainer/ppo/test_reinforce_pp_multiturn_on_cpu.py
  tests/trainer/ppo/test_metric_utils_on_cpu.py
  tests/trainer/test_multi_trajectories_advantage_on_cpu.py
  tests/test_base_config_on_cpu.py
)
step "$(($(date +%s) - start))s so far; pytest of ${#VERL_TESTS[@]} verl test files and ${#NEW_TESTS[@]} new ones"
cd "$TREE"
# as verl's CI runs them: its own rootdir and options, not verl-lambda's pytest settings
exec "$VPY" -m pytest -q -c /dev/null --rootdir "$TREE" -p no:cacheprovider -p no:randomly -o asyncio_mode=auto \
  --disable-warnings \
  -W ignore::DeprecationWarning "${VERL_TESTS[@]}" "${NEW_TESTS[@]}"
