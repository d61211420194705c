"""The hooks every instance's Gunicorn runs (roles/service/files/asgi_deploy_gunicorn.py), apart from the
shutdown fix, which tests/compat runs against real uvicorn releases."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

HOOKS = Path(__file__).resolve().parents[2] / "roles/service/files/asgi_deploy_gunicorn.py"


@pytest.fixture
def hooks(monkeypatch):
    for name in ("ASGI_RELEASE_ID", "ASGI_RELEASE_VERSION", "ASGI_RELEASE_MANIFEST", "ASGI_INSTANCE"):
        monkeypatch.delenv(name, raising=False)
    spec = importlib.util.spec_from_file_location("asgi_deploy_gunicorn", HOOKS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_release_an_instance_runs_is_exported_to_the_app(hooks, tmp_path):
    release = tmp_path / "releases/2.0.0-abcd1234"
    release.mkdir(parents=True)
    (release / "release.json").write_text(json.dumps({"release_id": "2.0.0-abcd1234", "version": "2.0.0"}))
    data = hooks.export_release(str(release))
    assert data["version"] == "2.0.0"
    assert os.environ["ASGI_RELEASE_ID"] == "2.0.0-abcd1234"
    assert os.environ["ASGI_RELEASE_VERSION"] == "2.0.0"
    assert os.environ["ASGI_RELEASE_MANIFEST"] == str(release / "release.json")


def test_without_a_manifest_the_directory_names_the_release(hooks, tmp_path):
    assert hooks.export_release(str(tmp_path / "3.0.0-ffff0000")) == {}
    assert os.environ["ASGI_RELEASE_ID"] == "3.0.0-ffff0000"


def test_the_startup_line_says_what_runs_from_where(hooks, monkeypatch):
    monkeypatch.setenv("ASGI_INSTANCE", "next")
    monkeypatch.setenv("ASGI_RELEASE_ID", "2.0.0-abcd1234")
    monkeypatch.setenv("ASGI_SETTINGS_DIGEST", "s" * 32)
    line = json.loads(hooks.startup_line("billing", {"version": "2.0.0", "lock_sha256": "l" * 64}))
    assert {k: line[k] for k in ("app", "instance", "version", "release_id", "settings")} == {
        "app": "billing",
        "instance": "next",
        "version": "2.0.0",
        "release_id": "2.0.0-abcd1234",
        "settings": "s" * 32,
    }
    assert line["lock_sha256"] == "l" * 64 and line["python"] and line["host"] and line["pid"] == os.getpid()


def test_gunicorn_refuses_to_run_without_systemds_socket(hooks, monkeypatch):
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    with pytest.raises(SystemExit, match="no socket from systemd"):
        hooks.require_systemd_socket("billing")
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    hooks.require_systemd_socket("billing")


def test_a_worker_of_a_slot_a_handover_holds_accepts_on_its_probe_socket_only(hooks, tmp_path, monkeypatch):
    import socket
    from types import SimpleNamespace

    probe_path, public_path = str(tmp_path / "demo-green-probe.sock"), str(tmp_path / "demo.sock")
    sockets = []
    for path in (public_path, probe_path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sockets.append(sock)
    held = {"blue": str(tmp_path / "blue.held"), "green": str(tmp_path / "green.held")}
    probes = {"blue": str(tmp_path / "demo-blue-probe.sock"), "green": probe_path}
    monkeypatch.setenv("ASGI_INSTANCE", "green")
    worker = SimpleNamespace(sockets=list(sockets))
    assert hooks.hold_until_gated(worker, held, probes) is False and worker.sockets == sockets  # not held: all
    Path(held["green"]).write_text("run1\n")
    assert hooks.hold_until_gated(worker, held, probes) is True
    assert [s.getsockname() for s in worker.sockets] == [probe_path]
    monkeypatch.setenv("ASGI_INSTANCE", "blue")  # the other slot's marker holds nobody else
    other = SimpleNamespace(sockets=list(sockets))
    assert hooks.hold_until_gated(other, held, probes) is False and other.sockets == sockets
    for sock in sockets:
        sock.close()
