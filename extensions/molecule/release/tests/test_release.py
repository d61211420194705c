"""Releases built by the converge: 1.0.0 (not switched to) and 2.0.0 (current)."""

import hashlib
import json
import os
from pathlib import Path

import pytest

APP = "/srv/demo"
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
CACHE_RECORDS = PROJECT / "build/cache-release/demo/releases"
VERSIONS = ("1.0.0", "2.0.0")


def controller_release(version):
    """The release the controller recorded for a version (the single source of truth)."""
    [record] = [json.loads(p.read_text()) for p in CACHE_RECORDS.glob(f"{version}-*.json")]
    return record


def manifest(host, release_id):
    return json.loads(host.file(f"{APP}/releases/{release_id}/release.json").content_string)


@pytest.mark.parametrize("version", VERSIONS)
def test_each_version_is_one_finished_release_with_the_id_the_controller_computed(host, version):
    release_id = controller_release(version)["release_id"]
    release = host.file(f"{APP}/releases/{release_id}")
    assert release.is_directory
    for part in ("venv/bin/python", "requirements.txt", "release.json"):
        assert host.file(f"{release.path}/{part}").exists, part
    on_host = host.run("ls %s/releases", APP).stdout.split()
    assert [r for r in on_host if r.startswith(version + "-")] == [release_id]


def test_current_is_a_relative_link_to_the_switched_release(host):
    current = host.file(f"{APP}/current")
    assert current.is_symlink
    assert current.linked_to == f"{APP}/releases/{controller_release('2.0.0')['release_id']}"
    assert host.run("readlink %s/current", APP).stdout.strip().startswith("releases/")


@pytest.mark.parametrize("version", VERSIONS)
def test_manifest_records_what_was_built(host, version):
    release = controller_release(version)
    data = manifest(host, release["release_id"])
    lock = (PROJECT / "app/requirements.lock").read_bytes()
    assert data["version"] == version
    assert data["app_version"] == version
    assert data["git_sha"] == "0123456789abcdef0123456789abcdef01234567"
    assert data["lock_sha256"] == hashlib.sha256(lock).hexdigest()
    assert data["built_at"] == release["built_at"]
    assert data["built_by"] == release["built_by"]
    assert len(data["wheelhouse_sha256"]) == 64
    assert data["installer"] == "uv"
    host_python = host.run("python3 -c 'import platform; print(platform.python_version())'").stdout.strip()
    assert data["python"] == host_python


@pytest.mark.parametrize("version", VERSIONS)
def test_app_imports_from_its_own_venv_and_reports_its_release(host, version):
    release_id = controller_release(version)["release_id"]
    python = f"{APP}/releases/{release_id}/venv/bin/python"
    # The reference app reads its settings at import (pydantic-settings): give it some, as its units would.
    cmd = host.run(
        "DEMO_ENVIRONMENT=test DEMO_API_TOKEN=t %s -c "
        "'import json, demo_app.main, demo_app.release as r; print(json.dumps(r.version_info()))'",
        python,
    )
    assert cmd.rc == 0, cmd.stderr
    info = json.loads(cmd.stdout)
    assert info["release_id"] == release_id
    assert info["app_version"] == version


def test_release_files_belong_to_root_and_nobody_else_can_write_them(host):
    not_root = host.run("find %s/releases ! -user root -print -quit", APP).stdout.strip()
    writable = host.run("find %s/releases ! -type l -perm /022 -print -quit", APP).stdout.strip()
    assert not_root == ""
    assert writable == ""


def test_bytecode_is_compiled_at_build_time(host):
    release_id = controller_release("2.0.0")["release_id"]
    cmd = host.run("find %s/releases/%s/venv -path '*fastapi/__pycache__/*.pyc' -print -quit", APP, release_id)
    assert cmd.stdout.strip() != ""


def test_venv_was_installed_offline_from_the_wheelhouse_only(host):
    release_id = controller_release("2.0.0")["release_id"]
    data = manifest(host, release_id)
    sums = host.file(f"{APP}/wheels/{data['wheelhouse_key']}/SHA256SUMS").content_string
    assert hashlib.sha256(sums.encode()).hexdigest() == data["wheelhouse_sha256"]
    assert "uv-" in sums
