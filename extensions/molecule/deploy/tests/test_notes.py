"""An app the collection did not write, beside the reference app on the same hosts.

examples/notes is Starlette (not FastAPI), a src layout, an app factory, a
two-second startup, no /version route, a secret it reads from
$CREDENTIALS_DIRECTORY and notes it keeps in its state directory. 1.0.0 is
locked with a uv.lock, 2.0.0 with a pylock.toml (both made by prepare.yml).
Connected as an unprivileged user with sudo (become), under load: the first
deploy, a new version (its migration run by the before-switch hook), a
rollback (a down-migration), a migration that fails, and a release broken at
import; no request may fail, on any host, before, during or after its handover.
How slow the slowest request of a handover is, against the steady state, is the
benchmark's to measure (bench/run.py): a time taken on shared cores is no
functional test's business.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import testinfra

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(PROJECT / "bench"))
from loadgen import Load  # noqa: E402 (the benchmark's load generator, per request)

DEPLOY, ROLLBACK, STATUS = (PROJECT / f"playbooks/{name}.yml" for name in ("deploy", "rollback", "status"))
SOURCES = PROJECT / "build/molecule-deploy"
REPORT = PROJECT / "build/reports/notes-load.json"
HOSTS = ["deploy-web1", "deploy-web2", "deploy-web3"]
TARGETS = [f"http://127.0.0.1:{port}" for port in (18084, 18085, 18086)]
TOKEN = "notes-token-5b1e\nsecond line"  # noqa: S105 (a test value)
LOCKS = {"1.0.0": "uv.lock", "2.0.0": "pylock.toml", "3.0.0": "uv.lock"}
NOTIFIED = SOURCES / "notes-notifications.txt"
KEPT = {"text": "written under 1.0.0"}
_RUNS: dict[str, dict] = {}


def notes(version, **extra):
    """The extra vars that describe notes (the inventory describes the reference app)."""
    source = SOURCES / f"notes-{version}"
    return {
        "asgi_app": "notes",
        "asgi_entrypoint": "notes.app:create_app()",
        "asgi_lockfile": str(source / LOCKS[version]),
        "asgi_app_source": str(source),
        "asgi_listen_tcp": ["0.0.0.0:8001"],
        "asgi_readiness_path": "/health",
        "service_secrets": {"api_token": TOKEN},
        "service_state_directory": True,
        # Its state is per host: every host migrates its own.
        "asgi_before_switch": "python -m notes.migrate",
        "asgi_before_switch_on": "all",
        "asgi_after_switch": "curl -fsS --max-time 5 http://127.0.0.1:8001/health",
        "asgi_after_deploy": "tasks:" + str(PROJECT / "extensions/molecule/deploy/hooks/notify.yml"),
        # Its migrations print nothing secret: their last lines may show in the audit log and in failures.
        "asgi_hook_show_output": True,
        # Fleets are run by an unprivileged SSH user with sudo.
        "ansible_user": "deploy",
        "ansible_become": True,
        "version": version,
        **extra,
    }


def on(name):
    return testinfra.get_host(f"podman://{name}")


def live(name):
    return on(name).run("basename $(readlink /srv/notes/current)").stdout.strip()


@pytest.fixture(scope="module")
def runs(playbook):
    """Every phase once, in order, under one load on the notes ports; per phase: the load, the result."""
    if _RUNS:
        return _RUNS
    phases = [
        ("first deploy 1.0.0 (uv.lock)", DEPLOY, notes("1.0.0")),
        # Its after-deploy hook is a command: it runs under the deploy lock, taken again after the last handover.
        ("deploy 2.0.0 (pylock.toml), handover", DEPLOY, notes("2.0.0", asgi_after_deploy="python -c 'import notes'")),
        # One host at a time (a rollback's default is every host at once): here the hosts share two cores, and
        # three instances importing the app at once is this lab's contention, not a handover's.
        (
            "rollback to 1.0.0",
            ROLLBACK,
            notes("1.0.0", asgi_rollback_before_switch="python -m notes.migrate --to 1", serial=1),
        ),
        (
            "deploy 2.0.0, its migration fails",
            DEPLOY,
            notes("2.0.0", asgi_before_switch="python -m notes.migrate --to 3"),
        ),
        ("deploy 3.0.0, broken at import", DEPLOY, notes("3.0.0")),
    ]
    NOTIFIED.unlink(missing_ok=True)
    with Load(TARGETS, users=3, rate=90, path="/notes") as load:
        for name, book, extra in phases:
            before = load.now()
            result = playbook(book, extra)
            if name.startswith("first deploy") and result.returncode == 0:
                for host_name in HOSTS:
                    write_note(host_name)
            settle = load.now()
            _RUNS[name] = {
                "rc": result.returncode,
                "said": " ".join((result.stdout + result.stderr).split()),
                "during": load.window(before, settle),
                "once_serving": load.once_serving(before, settle),
                "switches": switches(load, before) if result.returncode == 0 else {},
            }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    fields = ("during", "once_serving", "switches")
    REPORT.write_text(json.dumps({k: {f: v[f] for f in fields} for k, v in _RUNS.items()}, indent=2))
    return _RUNS


def write_note(name):
    wrote = on(name).run("curl -fsS --max-time 10 -d %s http://127.0.0.1:8001/notes", json.dumps(KEPT))
    assert wrote.rc == 0, (name, wrote.stderr)


def read_notes(name):
    return json.loads(on(name).run("curl -fsS --max-time 10 http://127.0.0.1:8001/notes").stdout)


def hook_lines(name):
    lines = [json.loads(line) for line in on(name).file("/srv/notes/deploys.log").content_string.splitlines()]
    return [(e["hook"], e["release"].split("-")[0], e["result"]) for e in lines if e.get("event") == "hook"]


def switches(load, since):
    """Per host, the load on that host while its handover ran (the audit line times it) and a second after."""
    found = {}
    for name, target in zip(HOSTS, TARGETS, strict=True):
        lines = [json.loads(line) for line in on(name).file("/srv/notes/deploys.log").content_string.splitlines()]
        [last] = [e for e in lines if "duration_s" in e and e.get("event") != "hook"][-1:]
        ended = load.at(datetime.fromisoformat(last["time"].rstrip("Z")).replace(tzinfo=UTC).timestamp())
        if ended < since:
            continue  # this host did not change in the phase
        found[name] = load.window(ended - last["duration_s"], ended + 1.0, target.removeprefix("http://"))
    return found


def assert_stopped_before_any_switch(run, *said):
    """The run failed, said why, served every request, and left every host on 1.0.0, unlocked."""
    assert run["rc"] != 0
    for words in (*said, "No host was switched"):
        assert words in run["said"], (words, run["said"][-3000:])
    assert run["during"]["failures"] == 0, run["during"]
    for name in HOSTS:
        assert live(name).startswith("1.0.0-"), name
        assert not on(name).file("/srv/notes/deploy.lock").exists


def test_the_first_deploy_serves_the_app_and_its_secret_on_every_host(runs):
    first = runs["first deploy 1.0.0 (uv.lock)"]
    assert first["rc"] == 0, first["said"][-3000:]
    for name in HOSTS:
        reply = json.loads(on(name).run("curl -fsS --max-time 10 http://127.0.0.1:8001/secret").stdout)
        # Read from $CREDENTIALS_DIRECTORY inside the app process (LoadCredential=): byte for byte.
        assert reply["api_token_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest(), name
    # Before its first answer a host not yet deployed refuses connections, as it should; never after.
    assert sorted(first["once_serving"]) == sorted(urlsplit(t).netloc for t in TARGETS), first["once_serving"]
    for target, window in first["once_serving"].items():
        assert window["requests"] >= 5 and window["failures"] == 0, (target, window)


@pytest.mark.parametrize("phase", ["deploy 2.0.0 (pylock.toml), handover", "rollback to 1.0.0"])
def test_a_handover_of_a_slow_starting_app_fails_no_request_on_any_host(runs, phase):
    run = runs[phase]
    assert run["rc"] == 0, run["said"][-3000:]
    assert run["during"]["requests"] > 50 and run["during"]["failures"] == 0, run["during"]
    assert sorted(run["switches"]) == HOSTS
    for name, switch in run["switches"].items():
        assert switch["requests"] > 0 and switch["failures"] == 0, (name, switch)


def test_each_host_runs_the_release_it_was_given_and_says_so_in_its_journal(runs):
    for name in HOSTS:
        host = on(name)
        assert live(name).startswith("1.0.0-"), name
        # One structured line per start, for an app that logs nothing of the kind itself.
        journal = host.run("journalctl -t notes -o cat --no-pager | grep 'asgi.deploy start'").stdout
        line = json.loads(journal.strip().splitlines()[-1].split("asgi.deploy start ", 1)[1])
        assert (line["app"], line["release_id"], line["version"]) == ("notes", live(name), "1.0.0")
        assert len(line["lock_sha256"]) == 64 and line["host"] == name


def test_a_release_broken_at_import_is_stopped_before_any_host_switches(runs):
    assert_stopped_before_any_switch(
        runs["deploy 3.0.0, broken at import"],
        "could not be built on this host at import check",
        "notes 3.0.0 breaks at import",
    )


def test_the_reference_app_beside_it_was_never_touched(runs):
    for name in HOSTS:
        entries = [json.loads(line) for line in on(name).file("/srv/demo/deploys.log").content_string.splitlines()]
        assert all(e.get("run") for e in entries)
        assert not [e for e in entries if "notes" in json.dumps(e)], name


def test_the_hooks_ran_as_the_app_in_order_and_the_audit_says_each_result(runs):
    for phase in ("first deploy 1.0.0 (uv.lock)", "deploy 2.0.0 (pylock.toml), handover", "rollback to 1.0.0"):
        assert runs[phase]["rc"] == 0, runs[phase]["said"][-3000:]
    for name in HOSTS:
        # 2.0.0's after-deploy command ran once, after the last batch, on its first host (serial 1: the last host).
        after_deploy = [("after_deploy", "2.0.0", "success")] if name == HOSTS[-1] else []
        assert hook_lines(name) == [
            ("before_switch", "1.0.0", "success"),
            ("after_switch", "1.0.0", "success"),
            ("before_switch", "2.0.0", "success"),
            ("after_switch", "2.0.0", "success"),
            *after_deploy,
            # The down-migration runs from the release being left: only it knows its schema.
            ("rollback_before_switch", "2.0.0", "success"),
            ("after_switch", "1.0.0", "success"),
            ("before_switch", "2.0.0", "failed"),
        ], name
    # The after-deploy hook as a task file (1.0.0's) ran once, never for a rollback or a failed deploy.
    assert [line.split()[1].split("-")[0] for line in NOTIFIED.read_text().splitlines()] == ["1.0.0"]


def test_a_failing_migration_stops_the_deploy_before_any_host_switches(runs):
    assert_stopped_before_any_switch(
        runs["deploy 2.0.0, its migration fails"], "hook before_switch failed (exit 1)", "knows schemas up to 2, not 3"
    )


def test_the_state_directory_outlives_a_deploy_and_a_rollback_and_follows_the_migrations(runs):
    for name in HOSTS:
        reply = read_notes(name)
        # Written under 1.0.0, read back after 2.0.0 and the rollback to 1.0.0.
        assert {"id": 1, **KEPT} in reply["notes"], name
        # 2.0.0 migrated to schema 2, the rollback's down-migration back to 1, the failed migration changed nothing.
        assert reply["schema"] == 1, name
        state = on(name).file("/var/lib/notes")
        assert state.is_directory and state.user == "notes", name


def test_the_playbooks_ran_as_an_unprivileged_user_through_sudo(runs):
    for name in HOSTS:
        host = on(name)
        assert host.user("deploy").uid != 0
        sudo = host.run("journalctl _COMM=sudo -o cat --no-pager | grep -c 'deploy : .*USER=root'")
        assert int(sudo.stdout.strip() or 0) > 10, (name, sudo.stdout, sudo.stderr)


def test_the_status_playbook_runs_as_the_unprivileged_user_too(runs, playbook):
    shown = playbook(STATUS, notes("1.0.0"))
    assert shown.returncode == 0, shown.stdout[-3000:]
    for name in HOSTS:
        assert live(name) in shown.stdout, name
