#!/usr/bin/env bash
# Run a command and record its wall time, for the table `make test` ends with (tools/timings.py).
#
#   tools/timed.sh NAME CMD [ARGS...]   append "NAME<TAB>start<TAB>end<TAB>exit status" to build/timings.tsv
set -uo pipefail
name=${1:?usage: tools/timed.sh NAME CMD [ARGS...]}
shift
log=${TIMINGS:-build/timings.tsv}
mkdir -p "$(dirname "$log")"
started=$(date +%s.%N)
"$@"
status=$?
printf '%s\t%s\t%s\t%s\n' "$name" "$started" "$(date +%s.%N)" "$status" >> "$log"
exit "$status"
