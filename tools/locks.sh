#!/usr/bin/env bash
# Compile or check the hashed lockfiles.
#
#   tools/locks.sh compile   re-resolve every lock from its .in file
#   tools/locks.sh check     fail if a lock no longer matches its .in file
#   tools/locks.sh move PACKAGE==VERSION OUT
#                            the app's lock with that one package moved, in OUT:
#                            a one-package lock change, as the bench and the
#                            release tests ship one
#
# A check recompiles into a scratch copy of the lock: uv keeps every pin the
# lock already has unless the input forbids it, so any difference means the
# lock is stale against its input (a requirement added, removed or re-ranged).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# input  lock  lowest-python  extra uv flags
LOCKS=(
  "requirements/uv.in requirements/uv.txt 3.11"
  "requirements/dev.in requirements/dev.txt 3.11"
  "requirements/dev-2.21.in requirements/dev-2.21.txt 3.13"
  # Hosts run 3.11 (Debian 12) and 3.13 (Debian 13): one lock, markers for both.
  "app/requirements.in app/requirements.lock 3.11 --universal"
  "roles/release/files/uv-requirements.in roles/release/files/uv-requirements.txt 3.11 --universal"
)

compile() {  # input output python [flags]
  uv pip compile --quiet --generate-hashes --python-version "$3" ${4:-} \
    --custom-compile-command "make lock" "$1" -o "$2"
}

mode=${1:-check}
status=0
if [ "$mode" = move ] && [ $# -ne 3 ]; then echo "usage: $0 move PACKAGE==VERSION OUT" >&2; exit 2; fi
for entry in "${LOCKS[@]}"; do
  read -r input lock python flags <<<"$entry"
  [ -f "$input" ] || continue
  case "$mode" in
    compile)
      compile "$input" "$lock" "$python" "${flags:-}"
      echo "locks: compiled $lock"
      ;;
    check)
      if [ ! -f "$lock" ]; then echo "locks: $lock is missing (make lock)" >&2; status=1; continue; fi
      scratch=$(mktemp)
      cp "$lock" "$scratch"
      compile "$input" "$scratch" "$python" "${flags:-}"
      if ! diff -u "$lock" "$scratch" > "$scratch.diff"; then
        echo "locks: $lock is stale against $input (run: make lock)" >&2
        head -n 40 "$scratch.diff" >&2
        status=1
      else
        echo "locks: $lock is fresh"
      fi
      rm -f "$scratch" "$scratch.diff"
      ;;
    move)
      [ "$lock" = app/requirements.lock ] || continue
      cp "$lock" "$3"
      compile "$input" "$3" "$python" "${flags:-} --upgrade-package $2"
      echo "locks: $3 is $lock with $2"
      ;;
    *) echo "usage: $0 compile|check|move" >&2; exit 2 ;;
  esac
done
exit "$status"
