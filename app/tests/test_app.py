"""The reference service's contract: what deploy gates and operators rely on."""

import json

import pytest
from demo_app import main
from demo_app.release import FIELDS
from fastapi.testclient import TestClient

MANIFEST = {
    "release_id": "1.0.0-abcdef12",
    "git_sha": "0123456789abcdef",
    "lock_sha256": "f" * 64,
    "built_at": "2026-11-24T00:00:00Z",
}


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    path = tmp_path / "release.json"
    path.write_text(json.dumps(MANIFEST))
    monkeypatch.setenv("ASGI_RELEASE_MANIFEST", str(path))
    return path


def test_not_ready_until_startup_has_finished(manifest):
    assert TestClient(main.app).get("/readyz").status_code == 503
    with TestClient(main.app) as client:
        assert client.get("/readyz").json() == {"status": "ready"}


def test_healthz_answers_alive(manifest):
    with TestClient(main.app) as client:
        reply = client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "alive"}


def test_version_reports_the_release_manifest(manifest):
    with TestClient(main.app) as client:
        info = client.get("/version").json()
    assert set(info) == set(FIELDS)
    assert info["release_id"] == MANIFEST["release_id"]
    assert info["git_sha"] == MANIFEST["git_sha"]
    assert info["lock_sha256"] == MANIFEST["lock_sha256"]
    assert info["built_at"] == MANIFEST["built_at"]
    assert info["app_version"] == "1.0.0"
    assert info["python"].count(".") == 2


def test_startup_logs_one_structured_line_with_the_version(manifest, capfd):
    with TestClient(main.app):
        pass
    lines = [line for line in capfd.readouterr().err.splitlines() if '"startup"' in line]
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["event"] == "startup"
    assert event["release_id"] == MANIFEST["release_id"]
    assert event["lock_sha256"] == MANIFEST["lock_sha256"]
    assert event["app_version"] == "1.0.0"


def test_missing_manifest_reads_unknown_not_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("ASGI_RELEASE_MANIFEST", str(tmp_path / "absent.json"))
    with TestClient(main.app) as client:
        info = client.get("/version").json()
    assert info["release_id"] == "unknown"


def test_failing_startup_raises_instead_of_serving(manifest, monkeypatch):
    monkeypatch.setenv("DEMO_APP_FAIL_STARTUP", "1")
    with pytest.raises(main.StartupError), TestClient(main.app):
        pass


def test_sleep_is_capped_and_reports_what_it_slept(manifest):
    with TestClient(main.app) as client:
        assert client.get("/sleep", params={"seconds": 0.01}).json() == {"slept": 0.01}
        assert client.get("/sleep", params={"seconds": -5}).json() == {"slept": 0.0}
