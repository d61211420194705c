#!/usr/bin/env bash
# ansible-test on the collection with every controller toolchain this repository tests:
# ansible-core 2.19 on Python 3.11 (.venv) and 2.21 on Python 3.13 (.venv-2.21).
#
#   tools/ansible-test.sh sanity [ansible-test options...]   sanity, pylint included
#   tools/ansible-test.sh units [ansible-test options...]    tests/unit, as ansible-test units runs them
#   TOOLCHAINS=".venv" tools/ansible-test.sh sanity          one toolchain only
#
# ansible-test needs the collection at ansible_collections/asgi/deploy/: this
# copies the tracked (and new, unignored) files there, in a temporary directory
# outside this checkout (inside it, ansible-test would ask this repository's git
# which files exist), and runs from the copy in ansible-test's own virtualenvs
# (--venv), never in a container.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command=${1:?usage: tools/ansible-test.sh sanity|units [options...]}
shift
case "$command" in
  sanity)
    args=(--test compile --test import --test validate-modules --test ansible-doc --test action-plugin-docs
      --test no-assert --test shebang --test symlinks --test runtime-metadata --test use-argspec-type-path
      --test empty-init --test pylint)
    # The collection as it ships (plugins, roles, playbooks) and its unit tests; not the repository's tooling.
    targets=(plugins/ roles/ playbooks/ meta/ tests/unit/)
    ;;
  units)
    args=()
    targets=(tests/unit/)
    ;;
  *) echo "tools/ansible-test.sh: sanity or units, not $command" >&2; exit 2 ;;
esac
here=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/ansible_collections/asgi/deploy
mkdir -p "$root"
git ls-files -z -co --exclude-standard | grep -zv '^\.collections/' | xargs -0 cp --parents -t "$root"
for toolchain in ${TOOLCHAINS:-.venv .venv-2.21}; do
  bin=$here/$toolchain/bin
  python=$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  core=$("$bin/python" -c 'import ansible.release as r; print(r.__version__)')
  # ansible-test's pip bootstrap script lives on a host this network cannot reach: seed its cache.
  pip_version=$("$bin/python" -c 'import re, ansible_test._internal.python_requirements as r, inspect; print(re.search(r"pip=.([0-9.]+)", inspect.getsource(r.get_venv_packages)).group(1))')
  mkdir -p ~/.ansible/test/cache
  cp tools/get-pip-offline.py ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
  echo "== ansible-test $command, ansible-core $core, Python $python"
  (cd "$root" && PATH="$bin:$PATH" "$bin/ansible-test" "$command" --venv --requirements --python "$python" \
    "${args[@]}" "$@" "${targets[@]}")
done
