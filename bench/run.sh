#!/usr/bin/env bash
# `make bench`: runs every bench/<component>/run.sh (each writes
# bench/out/<component>.md and .csv), keeps going past a failing one, then
# builds bench/out/report.md with one PNG chart per measured quantity.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
failed=()
for script in bench/*/run.sh; do
  component=$(basename "$(dirname "$script")")
  echo "== bench: $component"
  if ! timeout 900 bash "$script"; then
    failed+=("$component")
    echo "!! bench $component failed" >&2
  fi
done
go run ./bench/report -dir bench/out -failed "${failed[*]:-}"
echo "report: bench/out/report.md"
