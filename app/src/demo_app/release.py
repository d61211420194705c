"""Version metadata of the running release.

asgi.deploy writes ``release.json`` beside each release's venv
(``/srv/<app>/releases/<id>/{venv,release.json}``) and names it in
``ASGI_RELEASE_MANIFEST``. Any ASGI app can read it the same way.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

DIST_NAME = "demo-app"
MANIFEST_ENV = "ASGI_RELEASE_MANIFEST"
FIELDS = ("release_id", "app_version", "git_sha", "lock_sha256", "python", "built_at", "manifest")


def manifest_path() -> Path:
    explicit = os.environ.get(MANIFEST_ENV)
    return Path(explicit) if explicit else Path(sys.prefix).parent / "release.json"


def version_info() -> dict[str, str]:
    """Return the release metadata; fields the manifest lacks read ``unknown``."""
    try:
        manifest = json.loads(manifest_path().read_text())
    except (OSError, ValueError):
        manifest = {}
    try:
        app_version = metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        app_version = "unknown"
    info = {
        "release_id": manifest.get("release_id", "unknown"),
        "app_version": app_version,
        "git_sha": manifest.get("git_sha", "unknown"),
        "lock_sha256": manifest.get("lock_sha256", "unknown"),
        "python": platform.python_version(),
        "built_at": manifest.get("built_at", "unknown"),
        # Where it was read: the file the collection named, or the guess beside the venv.
        "manifest": str(manifest_path()),
    }
    return {key: str(info[key]) for key in FIELDS}
