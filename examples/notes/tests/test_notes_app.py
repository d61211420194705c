"""The example app on its own (no server, no collection)."""

import hashlib

import pytest
from notes import migrate
from notes.app import create_app
from notes.store import SCHEMA
from starlette.testclient import TestClient


@pytest.fixture
def env(tmp_path, monkeypatch):
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds/api_token").write_text("t0ken")
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setenv("NOTES_STARTUP_SECONDS", "0")
    return tmp_path


def test_it_is_ready_after_its_startup_and_reads_its_secret(env):
    with TestClient(create_app()) as client:
        assert client.get("/health").json() == {"ready": True}
        assert client.get("/secret").json() == {"api_token_sha256": hashlib.sha256(b"t0ken").hexdigest()}


def test_notes_outlive_the_app_in_the_state_directory_and_the_migration_sets_the_schema(env):
    assert migrate.main([]) == 0
    with TestClient(create_app()) as client:
        assert client.post("/notes", json={"text": "kept"}).status_code == 201
    with TestClient(create_app()) as client:
        reply = client.get("/notes").json()
    assert reply["notes"] == [{"id": 1, "text": "kept"}]
    assert reply["schema"] == SCHEMA


def test_a_migration_refuses_a_state_newer_than_its_code(env):
    (env / "state/schema").write_text(str(SCHEMA + 1))
    assert migrate.main([]) == 1
    assert (env / "state/schema").read_text() == str(SCHEMA + 1)


def test_a_migration_to_a_schema_its_code_does_not_know_fails_and_changes_nothing(env):
    assert migrate.main([]) == 0
    assert migrate.main(["--to", str(SCHEMA + 1)]) == 1
    assert (env / "state/schema").read_text() == str(SCHEMA)


def test_a_down_migration_moves_the_state_back(env):
    (env / "state/schema").write_text(str(SCHEMA))
    assert migrate.main(["--to", "0"]) == 0
    assert (env / "state/schema").read_text() == "0"
