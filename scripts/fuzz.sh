#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for $1 each (default 20s).
# New crashers land in the package's testdata/fuzz/<Target>/: fix the bug and
# commit the file, so `go test` replays it forever after.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-20s}
status=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    echo "== ./$dir $target ($fuzztime)"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$dir"; then
      echo "!! $target in ./$dir failed; see ./$dir/testdata/fuzz/$target" >&2
      status=1
    fi
  done
done < <(grep -rlE '^func Fuzz[A-Za-z0-9_]+\(' --include='*_test.go' . | sed 's|^\./||' | sort)
exit $status
