"""Controller-side playbooks run for real: the app's CI gate (check.yml) and the installed collection.

No host is involved: check.yml builds and loads the app on this machine, the way an app's CI runner
does. Each test gets its own copy of examples/notes (apps.py).
"""

from __future__ import annotations

import json

import pytest
from apps import app_copy, run_check


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One wheelhouse cache for the session: the controller builds it once, as for a deploy."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def notes(tmp_path):
    """A factory of examples/notes copies in this test's directory."""
    return lambda lock="uv.lock": app_copy(tmp_path, "notes", lock)


@pytest.fixture
def polls(tmp_path):
    """examples/polls (Django) in this test's directory, locked with uv pip compile --generate-hashes."""
    return app_copy(tmp_path, "polls", "requirements.lock")


@pytest.fixture
def check(tmp_path, cache_dir):
    """check.yml on an app copy: (completed process, report or None)."""

    def checked(app, lock="uv.lock", **options):
        (tmp_path / "report.json").unlink(missing_ok=True)
        done = run_check(tmp_path, app, cache_dir, lock, **options)
        report = tmp_path / "report.json"
        return done, json.loads(report.read_text()) if report.exists() else None

    return checked
