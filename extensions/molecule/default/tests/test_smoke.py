"""The product end to end, once, on two hosts under load: a handover and a rollback (after converge's first deploy).

The smoke test of every controller toolchain: what the full scenarios prove at length, proven once here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(PROJECT / "bench"))
from loadgen import Load  # noqa: E402 (the one load generator: locust, per request)

PLAYBOOKS = PROJECT / "playbooks"
SOURCES = PROJECT / "build/molecule-default"
TARGETS = ["http://127.0.0.1:18111", "http://127.0.0.1:18112"]
PHASES = [
    ("handover to 2.0.0", "deploy.yml", {"version": "2.0.0", "app_source": str(SOURCES / "app-2.0.0")}),
    ("rollback to 1.0.0", "rollback.yml", {"version": "1.0.0"}),
]
_RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="session")
def phases(playbook):
    if not _RESULTS:
        with Load(TARGETS, users=2, rate=40) as load:
            for name, book, extra in PHASES:
                began = load.now()
                result = playbook(PLAYBOOKS / book, extra)
                _RESULTS[name] = {"rc": result.returncode, "out": result.stdout + result.stderr,
                                  **load.window(began, load.now())}  # fmt: skip
    return _RESULTS


@pytest.mark.parametrize("name", [p[0] for p in PHASES])
def test_no_request_fails_during_the_phase(phases, name):
    phase = phases[name]
    assert phase["rc"] == 0, phase["out"][-4000:]
    assert phase["requests"] > 20 and phase["failures"] == 0, {k: v for k, v in phase.items() if k != "out"}


def test_each_handover_started_the_app_once_on_the_slot_that_serves_now(host, phases):
    starts = host.run("journalctl --no-pager -o cat -t demo --grep 'asgi.deploy start'").stdout.splitlines()
    started = [json.loads(line.split("asgi.deploy start ", 1)[1]) for line in starts]
    slots = [(s["version"], s["instance"]) for s in started]
    assert slots == [("1.0.0", "blue"), ("2.0.0", "green"), ("1.0.0", "blue")]
    assert host.file("/etc/systemd/system/demo.service").linked_to == "/etc/systemd/system/demo-blue.service"
    served = json.loads(host.run("curl -fsS --max-time 10 http://127.0.0.1:8000/version").stdout)
    assert served["release_id"] == host.run("basename $(readlink /srv/demo/current)").stdout.strip()
    assert served["app_version"] == "1.0.0"


def test_status_names_the_live_slot_of_every_host(phases, playbook):
    result = playbook(PLAYBOOKS / "status.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "SLOT" in result.stdout and "DRAINING" in result.stdout
    assert result.stdout.count(" blue ") >= 2, result.stdout[-3000:]
