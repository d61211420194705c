#!/usr/bin/env bash
# Print the lines that say why a molecule run failed, last, so that a CI log
# that keeps only its tail still names the failing test or task.
# Usage: tools/failure-summary.sh LOG
set -uo pipefail
log=${1:?usage: $0 LOG}
echo "== why $(basename "$log" .log) failed (full log: $log)"
sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$log" \
  | grep -E '^(FAILED|ERROR) |fatal: \[|failed: \[|^E  +[A-Za-z]*(Error|assert)|CRITICAL|Idempotence test failed' \
  | cut -c1-400 | tail -n 12
