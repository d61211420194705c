#!/usr/bin/env bash
# Print the lines that say why a molecule run failed, last, so that a CI log
# that keeps only its tail still names the failing test or task.
# Usage: tools/failure-summary.sh LOG
set -uo pipefail
log=${1:?usage: $0 LOG}
echo "== why $(basename "$log" .log) failed (full log: $log)"
# Molecule frames a step's output with "  │ ": take it off, then keep failing
# tests, assertion lines, failed tasks and molecule's own verdicts.
sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/^ *│ \{0,1\}//' "$log" \
  | grep -E '::test_.* FAILED|^FAILED |^E  +[A-Za-z]*(Error|assert)|^E  +assert|fatal: \[|failed: \[|^ERROR +[a-z_]+ ➜|Idempotence test failed' \
  | grep -v -e "glob failed" -e "FAILED - RETRYING" | cut -c1-400 | tail -n 15
