#!/usr/bin/env bash
# Re-export the series into upstream/ after editing it (see upstream/README.md, "Refreshing the series").
#
#   bash upstream/export.sh SDIST_REPO [GIT_REPO]
#
# SDIST_REPO: the verl 0.9.1 sdist as a git repository whose first commit is the sdist and whose later commits are
#   the patches that apply to it (build/upstream/verl after `bash scripts/check_upstream.sh`, then edited).
# GIT_REPO: a clone of verl's git repository whose HEAD commits are the same patches followed by the one(s) for files
#   the sdist lacks (docs/, examples/). Without it those patches are kept as they are.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SDIST_REPO=$(cd "$1" && pwd)
GIT_REPO=${2:+$(cd "$2" && pwd)}
OUT="$ROOT/upstream"
FORMAT=(format-patch -q --numbered --zero-commit --no-signature)

base=$(git -C "$SDIST_REPO" rev-list --max-parents=0 HEAD)
count=$(git -C "$SDIST_REPO" rev-list --count "$base..HEAD")
git_only=()
for patch in "$OUT"/0*.patch; do
  n=$((10#$(basename "$patch" | cut -c1-4)))
  [ "$n" -gt "$count" ] && git_only+=("$patch")
done
total=$((count + ${#git_only[@]}))

tmp=$(mktemp -d)
git -C "$SDIST_REPO" "${FORMAT[@]}" -o "$tmp" "$base..HEAD"
if [ -n "$GIT_REPO" ]; then
  extra=${#git_only[@]}
  git -C "$GIT_REPO" "${FORMAT[@]}" --start-number $((count + 1)) -o "$tmp" "-$extra"
  rm -f "${git_only[@]}"
else
  for patch in "${git_only[@]}"; do mv "$patch" "$tmp/"; done
fi
rm -f "$OUT"/0*.patch
for patch in "$tmp"/*.patch; do
  n=$((10#$(basename "$patch" | cut -c1-4)))
  # one numbering for the whole series, whichever repository a patch was made in
  sed -i "0,/^Subject: \[PATCH[^]]*\]/s//Subject: [PATCH $n\/$total]/" "$patch"
  mv "$patch" "$OUT/"
done
rmdir "$tmp"
grep -h "^Subject:" "$OUT"/0*.patch
