"""The app's CI gate: Django's deployment checklist, run as the app would run it."""

from __future__ import annotations

import pytest
from ansible_collections.asgi.deploy.plugins.plugin_utils.app_check import django_deploy_check

WARNINGS = """System check identified some issues:

WARNINGS:
?: (security.W004) You have not set a value for the SECURE_HSTS_SECONDS setting.
?: (security.W008) Your SECURE_SSL_REDIRECT setting is not set to True.

System check identified 2 issues (0 silenced).
"""


def release_with_python(tmp_path, output, status):
    """A release whose venv's python prints what `django check --deploy` would, and exits with ``status``."""
    python = tmp_path / "venv/bin/python"
    python.parent.mkdir(parents=True)
    (tmp_path / "said").write_text(output)
    python.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/argv"\ncat "{tmp_path}/said" >&2\nexit {status}\n')
    python.chmod(0o755)
    return tmp_path


def test_a_django_apps_deployment_warnings_are_said_and_do_not_fail(tmp_path):
    release = release_with_python(tmp_path, WARNINGS, 0)
    errors, warnings = django_deploy_check({"DJANGO_SETTINGS_MODULE": "mysite.settings"}, release)
    assert errors == [] and [w.split(")")[0] for w in warnings] == ["?: (security.W004", "?: (security.W008"]
    assert (tmp_path / "argv").read_text().split() == ["-m", "django", "check", "--deploy"]


def test_an_error_of_djangos_deployment_checks_fails_the_gate_with_its_words(tmp_path):
    said = "SystemCheckError: System check identified some issues:\n?: (security.E100) DEFAULT_HASHING_ALGORITHM ...\n"
    errors, _warnings = django_deploy_check({"DJANGO_SETTINGS_MODULE": "mysite.settings"},
                                            release_with_python(tmp_path, said, 1))  # fmt: skip
    assert errors[0].startswith("Django's deployment checks (python -m django check --deploy) failed")
    assert any("security.E100" in line for line in errors)


@pytest.mark.parametrize("environment", [{}, {"DJANGO_SETTINGS_MODULE": ""}])
def test_other_apps_are_not_django_checked(tmp_path, environment):
    assert django_deploy_check(environment, tmp_path) == ([], [])
    assert not (tmp_path / "argv").exists()
