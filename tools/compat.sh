#!/usr/bin/env bash
# Run tests/compat (the graceful-shutdown fix against a real uvicorn) with the
# oldest and the newest uvicorn the collection supports, each in its own venv
# under build/compat (plugins/plugin_utils/artifacts.py: UVICORN_TESTED).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
versions=$(PYTHONPATH=.collections python -c \
  'from ansible_collections.asgi.deploy.plugins.plugin_utils.artifacts import UVICORN_TESTED; print(*UVICORN_TESTED)')
for version in $versions; do
  venv=build/compat/uvicorn-$version
  if [ ! -x "$venv/bin/pytest" ]; then
    uv venv --quiet --python "$(command -v python3.11 || command -v python3)" "$venv"
    uv pip install --quiet --python "$venv/bin/python" "uvicorn==$version" h11 httptools pytest
  fi
  echo "== tests/compat with uvicorn $version"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/compat
done
