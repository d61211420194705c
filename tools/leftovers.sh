#!/usr/bin/env bash
# Fail when a test left something behind: a playbook, runner, load generator,
# benchmark or CI-gate app process, a CI gate's scratch directory, or a container
# of a molecule scenario or of the bench lab.
# `make test` runs it last.
set -uo pipefail
status=0
procs=$(pgrep -af 'ansible-playbook|ansible-runner|locust|bench/run.py|molecule (test|converge|verify)|asgi-check-' \
  | grep -v "$$" || true)
if [ -n "$procs" ]; then
  echo "leftovers: processes still running after the tests:" >&2
  echo "$procs" >&2
  status=1
fi
scratch=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'asgi-check-*' 2>/dev/null || true)
if [ -n "$scratch" ]; then
  echo "leftovers: CI gate scratch directories still there:" >&2
  echo "$scratch" >&2
  status=1
fi
scenarios=$(ls -d "$(dirname "${BASH_SOURCE[0]}")"/../extensions/molecule/*/molecule.yml 2>/dev/null | xargs -n1 dirname | xargs -n1 basename | paste -sd'|')
containers=$(podman ps -a --format '{{.Names}} {{.Labels}}' 2>/dev/null \
  | grep -E "^(${scenarios:-none})-|^(deploy|bad|faults|apps)-web|io.asgi-deploy.bench" || true)
if [ -n "$containers" ]; then
  echo "leftovers: containers still there after the tests:" >&2
  echo "$containers" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "leftovers: none (no test process or container left)"
exit "$status"
