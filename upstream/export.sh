#!/usr/bin/env bash
# Re-export the series into upstream/ after editing it (see upstream/README.md, "Refreshing the series").
#
#   bash upstream/export.sh GIT_REPO [BASE]
#
# GIT_REPO: a clone of verl's git repository whose commits BASE..HEAD are the series, one commit per patch, code,
#   docs and examples together (build/upstream/verl-git after `VERL_GIT_DIR=<verl clone> bash
#   scripts/check_upstream.sh`, then edited). The sdist repository build/upstream/verl cannot be exported from: the
#   sdists ship no docs/ or examples/, so its commits hold only the code parts of the patches.
# BASE: the commit the series is made on; by default the tag `series-base` (which check_upstream.sh puts on the
#   HEAD of VERL_GIT_DIR in build/upstream/verl-git), else HEAD~N for the N patches now in upstream/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GIT_REPO=$(cd "$1" && pwd)
OUT="$ROOT/upstream"
FORMAT=(format-patch -q --numbered --zero-commit --no-signature)

if [ -n "${2:-}" ]; then
  base=$2
elif git -C "$GIT_REPO" rev-parse -q --verify "refs/tags/series-base" >/dev/null; then
  base=series-base
else
  shopt -s nullglob
  current=("$OUT"/0*.patch)
  base="HEAD~${#current[@]}"
fi
base=$(git -C "$GIT_REPO" rev-parse --verify "$base^{commit}")
count=$(git -C "$GIT_REPO" rev-list --count "$base..HEAD")
[ "$count" -gt 0 ] || {
  echo "export.sh: no commits between $base and HEAD in $GIT_REPO" >&2
  exit 1
}
[ "$(git -C "$GIT_REPO" rev-list --count --merges "$base..HEAD")" = 0 ] || {
  echo "export.sh: merge commits in $base..HEAD; the series must be linear" >&2
  exit 1
}

tmp=$(mktemp -d)
git -C "$GIT_REPO" "${FORMAT[@]}" -o "$tmp" "$base..HEAD"
rm -f "$OUT"/0*.patch
mv "$tmp"/*.patch "$OUT/"
rmdir "$tmp"
grep -h "^Subject:" "$OUT"/0*.patch
