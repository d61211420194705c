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
# The shape check that lets a newer uvicorn ship with a warning
# (artifacts.shutdown_fix_fits) must pass on the real wheels the fix is tested with.
wheels=build/compat/wheels
for version in $versions; do
  [ -f "$wheels/uvicorn-$version-py3-none-any.whl" ] ||
    python -m pip download --quiet --no-deps --only-binary :all: "uvicorn==$version" -d "$wheels"
done
PYTHONPATH=.collections python - "$wheels" <<'PY'
import sys
from pathlib import Path
from ansible_collections.asgi.deploy.plugins.plugin_utils.artifacts import shutdown_fix_fits
for wheel in sorted(Path(sys.argv[1]).glob("uvicorn-*.whl")):
    misfits = shutdown_fix_fits(wheel)
    print(f"== shutdown fix fits {wheel.name}: {misfits or 'yes'}")
    assert not misfits, wheel
PY
