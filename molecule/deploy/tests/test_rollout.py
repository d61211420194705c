"""Deploys and rollbacks under continuous load on three hosts: zero failed requests.

The phases run once (the first test that needs them), in order; the report goes
to build/reports/deploy-load.json.
"""

import json
import os
import time
from pathlib import Path

import pytest
from conftest import Load

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
PLAYBOOKS = PROJECT / "playbooks"
REPORT = PROJECT / "build/reports/deploy-load.json"
TARGETS = [f"http://127.0.0.1:{port}" for port in (18081, 18082, 18083)]
SOURCES = PROJECT / "build/molecule-deploy"
PHASES = [
    ("steady", "status.yml", {}),
    ("redeploy_v1_no_change", "deploy.yml", {"version": "1.0.0"}),
    ("deploy_v2_handover", "deploy.yml", {"version": "2.0.0", "app_source": str(SOURCES / "app-2.0.0")}),
    ("rollback_v1_handover", "rollback.yml", {"version": "1.0.0"}),
    ("rollback_v2_handover", "rollback.yml", {"version": "2.0.0"}),
    (
        "deploy_v3_restart",
        "deploy.yml",
        {"version": "3.0.0", "app_source": str(SOURCES / "app-3.0.0"), "strategy": "restart"},
    ),
]
_RESULTS = {}
_OUTPUTS = {}


@pytest.fixture(scope="session")
def phases(playbook):
    if _RESULTS:
        return _RESULTS
    load = Load(TARGETS, PROJECT / "build/load")
    for name, book, extra in PHASES:
        with load.phase(name):
            began = time.monotonic()
            result = playbook(PLAYBOOKS / book, extra)
            wall = time.monotonic() - began
        assert result.returncode == 0, f"{name}: {book} failed:\n{(result.stdout + result.stderr)[-4000:]}"
        _OUTPUTS[name] = result.stdout
        load.report[name]["playbook"] = book
        load.report[name]["playbook_wall_s"] = round(wall, 1)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {
                "conditions": {
                    "hosts": 3,
                    "gunicorn_workers_per_host": 2,
                    "locust_users": load.users,
                    "target": "GET /version round-robin over 127.0.0.1:18081-18083",
                    "machine": f"{os.cpu_count()} cores",
                },
                "phases": load.report,
            },
            indent=2,
        )
    )
    _RESULTS.update(load.report)
    return _RESULTS


@pytest.mark.parametrize("name", [p[0] for p in PHASES])
def test_no_request_fails_during_the_phase(phases, name):
    report = phases[name]
    print(name, report)
    assert report["requests"] > 50, report
    assert report["failures"] == 0, report


def test_a_deploy_of_the_live_release_skips_every_host_after_one_probe(phases):
    output = _OUTPUTS["redeploy_v1_no_change"]
    assert "changed=0" in output
    assert "changed=1" not in output
    assert "deploy: no host needed a change (3 checked" in output
    # Nothing past the checks ran: no lock, no build, no settings, no handover.
    assert output.count("skipping: no hosts matched") == 1
    assert "TASK [asgi.deploy.rollout : Roll | Hand over" not in output
    assert "TASK [asgi.deploy.release : Build | Build the release" not in output


def test_each_host_ends_on_the_last_deployed_release(host, phases):
    live = host.run("readlink /srv/demo/current").stdout.strip()
    assert live.startswith("releases/3.0.0-")
    version = json.loads(host.run("curl -fsS http://127.0.0.1:8000/version").stdout)
    assert version["release_id"] == live.removeprefix("releases/")
    # Read from the file the collection named in ASGI_RELEASE_MANIFEST: the release itself, not a moving link.
    assert version["manifest"] == f"/srv/demo/{live}/release.json"


def test_the_audit_log_has_a_line_per_handover(host, phases):
    events = [json.loads(line) for line in host.file("/srv/demo/deploys.log").content_string.splitlines()]
    # Each handover once; each run's lock taken and released around it.
    lines = [e for e in events if "to" in e]
    assert {e["event"] for e in events} - {"deploy", "rollback"} <= {"lock", "unlock"}
    moves = [(line["event"], line["to"].split("-")[0], line["strategy"], line["result"]) for line in lines]
    assert moves == [
        ("deploy", "1.0.0", "initial", "success"),
        ("deploy", "2.0.0", "handover", "success"),
        ("rollback", "1.0.0", "handover", "success"),
        ("rollback", "2.0.0", "handover", "success"),
        ("deploy", "3.0.0", "restart", "success"),
    ]
    assert all(line["actor"] and line["run"] and line["duration_s"] > 0 for line in lines)
    assert lines[0]["from"] == ""
    assert [line["from"] for line in lines[1:]] == [line["to"] for line in lines[:-1]]


def test_no_lock_and_no_temporary_instance_is_left_behind(host, phases):
    assert not host.file("/srv/demo/deploy.lock").exists
    assert not host.service("demo-next.service").is_running


def test_an_unknown_version_is_refused_listing_the_kept_ones_and_nothing_changes(host, playbook, phases):
    before = host.run("readlink /srv/demo/current").stdout
    result = playbook(PLAYBOOKS / "rollback.yml", {"version": "9.9.9"})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "version 9.9.9 is not kept on deploy-web1; kept versions: 1.0.0, 2.0.0, 3.0.0" in output
    assert "Nothing was changed" in output
    assert host.run("readlink /srv/demo/current").stdout == before
    assert not host.file("/srv/demo/deploy.lock").exists
