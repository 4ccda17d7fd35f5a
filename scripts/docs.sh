#!/usr/bin/env bash
# Build the docs site (mkdocs.yml, pages in docs/) with `mkdocs build --strict` into build/site: a broken link, a
# missing anchor, a page left out of the nav or a nav entry without its page fails the build. Installs
# docs/requirements.txt into .venv first when it is missing or changed (a stamp in .venv, as scripts/setup.sh keeps;
# .venv itself comes from scripts/setup.sh, run here if it does not exist yet). Extra arguments go to mkdocs build.
# Preview while editing: .venv/bin/python -m mkdocs serve
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
stamp=.venv/.verl-lambda-docs
wanted=$(sha256sum docs/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "[docs] installing docs/requirements.txt into .venv"
  .venv/bin/python -m pip --disable-pip-version-check install --quiet -r docs/requirements.txt \
    2> >(grep -v "^WARNING: Location" >&2)
  echo "$wanted" > "$stamp"
fi
start=$(date +%s)
# Not --quiet: it hides warnings from --strict's count. Material's notice about its end of life is not a warning.
if ! log=$(NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict "$@" 2>&1); then
  grep -v "^INFO" <<< "$log" >&2
  echo "[docs] mkdocs build --strict failed" >&2
  exit 1
fi
grep -v "^INFO" <<< "$log" || true
echo "[docs] site built in build/site in $(( $(date +%s) - start ))s (open build/site/index.html)"
