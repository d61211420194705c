#!/usr/bin/env bash
# ansible-test sanity on the collection's plugins, for every Python the hosts run.
#
#   tools/sanity.sh [ansible-test sanity options...]
#
# ansible-test needs the collection at ansible_collections/asgi/deploy/: this
# copies the tracked (and new, unignored) files there, in a temporary directory
# outside this checkout (inside it, ansible-test would ask this repository's git
# which files exist), and runs from the copy in ansible-test's own virtualenvs
# (--venv), never in a container.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/ansible_collections/asgi/deploy
mkdir -p "$root"
git ls-files -z -co --exclude-standard | grep -zv '^\.collections/' | xargs -0 cp --parents -t "$root"
# ansible-test's pip bootstrap script lives on a host this network cannot reach: seed its cache.
pip_version=$(python -c 'import re, ansible_test._internal.python_requirements as r, inspect; print(re.search(r"pip=.([0-9.]+)", inspect.getsource(r.get_venv_packages)).group(1))')
mkdir -p ~/.ansible/test/cache
cp tools/get-pip-offline.py ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
cd "$root"
tests=(--test compile --test import --test validate-modules --test ansible-doc --test action-plugin-docs
  --test no-assert --test shebang --test symlinks --test runtime-metadata --test use-argspec-type-path --test empty-init)
# An interpreter for each version: on PATH, or one pyenv keeps (its shims only run the selected one).
interpreter_dir() {  # X.Y
  local candidate
  for candidate in "$(command -v "python$1" || true)" "$HOME"/.pyenv/versions/"$1"*/bin/"python$1"; do
    if [ -x "$candidate" ] && "$candidate" -c '' 2>/dev/null; then dirname "$candidate"; return; fi
  done
  echo "sanity: no working python$1 on this machine" >&2
  return 1
}
for python in ${SANITY_PYTHONS:-3.11 3.13}; do
  echo "== ansible-test sanity, Python $python"
  dir=$(interpreter_dir "$python")
  PATH="$dir:$PATH" ansible-test sanity --venv --requirements --python "$python" "${tests[@]}" "$@" plugins/
done
