"""A Django site as teams have it, on three web hosts sharing one PostgreSQL (db1), under load.

examples/polls is `django-admin startproject mysite` with the tutorial's polls app: its settings
come from the environment (DATABASE_URL, DJANGO_ALLOWED_HOSTS), its secret key from a systemd
credential, its static files are collected by the build step into each release and served by
WhiteNoise, and `python -m django migrate` is the before-switch hook, run once for the fleet.
Phases: the first deploy, an upgrade whose migration adds a column, a rollback (without a
version: one step back) onto the expanded schema, and a migration that fails. No request may
fail in a phase where something serves; a static file's content follows the release.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import testinfra

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
DEPLOY, ROLLBACK, EXEC, LOGS = (PROJECT / f"playbooks/{name}.yml" for name in ("deploy", "rollback", "exec", "logs"))
SOURCES = PROJECT / "build/molecule-deploy"
REPORT = PROJECT / "build/reports/polls-load.json"
HOSTS = ["deploy-web1", "deploy-web2", "deploy-web3"]
PORTS = {"deploy-web1": 18087, "deploy-web2": 18088, "deploy-web3": 18089}
SECRET_KEY = "lab-django-secret-key-6f2b%not-for-production"  # noqa: S105 (a test value, with a % in it)
_RUNS: dict[str, dict] = {}


def on(name):
    return testinfra.get_host(f"podman://{name}")


def db_address():
    return on("deploy-db1").run("hostname -I").stdout.split()[0]


def polls(version, **extra):
    """The extra vars that describe the site (the inventory describes the reference app)."""
    source = SOURCES / f"polls-{version}"
    return {
        "asgi_app": "polls",
        "asgi_entrypoint": "mysite.asgi:application",
        "asgi_lockfile": str(source / "requirements.lock"),
        "asgi_app_source": str(source),
        "asgi_listen_tcp": ["0.0.0.0:8002"],
        "asgi_readiness_path": "/healthz",
        "service_environment": {
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
            "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
            "DATABASE_URL": f"postgres://polls:polls-lab-password@{db_address()}:5432/polls",
        },
        "service_secrets": {"django_secret_key": SECRET_KEY},
        "asgi_build": "python -m django collectstatic --noinput",
        "asgi_before_switch": "python -m django migrate --noinput",
        "asgi_before_switch_on": "one",
        "asgi_hook_show_output": True,
        "ansible_user": "deploy",
        "ansible_become": True,
        "asgi_version": version,
        **extra,
    }


def live(name):
    return on(name).run("basename $(readlink /srv/polls/current)").stdout.strip()


def style(name):
    return on(name).run("curl -fsS --max-time 10 http://127.0.0.1:8002/static/polls/style.css").stdout


def create_question(playbook, text, version):
    """A question written by the code of ``version``, through exec.yml (as the app runs)."""
    code = (
        "from django.utils import timezone; from polls.models import Question; "
        f"print(Question.objects.create(question_text={text!r}, pub_date=timezone.now()).id)"
    )
    result = playbook(EXEC, {**polls(version), "asgi_cmd": f'python -m django shell -c "{code}"', "asgi_once": True})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def psql(query):
    return on("deploy-db1").run("runuser -u postgres -- psql polls -tAc %s", query).stdout.split()


@pytest.fixture(scope="module")
def runs(playbook):
    """Every phase once, in order, under one load on the site's ports; per phase: the load, the result."""
    if _RUNS:
        return _RUNS
    sys_path = str(PROJECT / "bench")
    import sys

    sys.path.insert(0, sys_path)
    from loadgen import Load

    phases = [
        ("first deploy 1.0.0", DEPLOY, polls("1.0.0")),
        ("deploy 2.0.0, its migration adds a column", DEPLOY, polls("2.0.0")),
        ("rollback, one step back onto the expanded schema", ROLLBACK, polls("1.0.0", asgi_version="")),
        ("deploy 3.0.0, its migration fails", DEPLOY, polls("3.0.0")),
    ]
    targets = [f"http://127.0.0.1:{port}" for port in PORTS.values()]
    with Load(targets, users=3, rate=60, path="/polls/") as load:
        for name, book, extra in phases:
            before = load.now()
            result = playbook(book, extra)
            settle = load.now()
            while load.now() - settle < 2:
                time.sleep(0.05)
            _RUNS[name] = {
                "rc": result.returncode,
                "said": result.stdout + result.stderr,
                "during": load.window(before, settle),
                "once_serving": load.once_serving(before, settle),
                "live": {h: live(h) for h in HOSTS},
                "style": {h: style(h) for h in HOSTS},
            }
            if name.startswith("first deploy") and result.returncode == 0:
                _RUNS[name]["question"] = create_question(playbook, "written by 1.0.0", "1.0.0").stdout
            if name.startswith("rollback") and result.returncode == 0:
                create_question(playbook, "written by 1.0.0 after the rollback", "1.0.0")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {k: {"rc": v["rc"], **v["during"], "once_serving": v["once_serving"]} for k, v in _RUNS.items()}, indent=2
        )
    )
    return _RUNS


def ok(run):
    assert run["rc"] == 0, run["said"][-4000:]


def test_the_first_deploy_migrates_once_collects_static_files_on_every_host_and_serves(runs):
    ok(runs["first deploy 1.0.0"])
    for name in HOSTS:
        assert live(name).startswith("1.0.0-"), name
        assert "green" in runs["first deploy 1.0.0"]["style"][name], name
        reply = on(name).run("curl -fsS --max-time 10 -H 'Accept: application/json' http://127.0.0.1:8002/polls/")
        assert "written by 1.0.0" in reply.stdout, (name, reply.stdout, reply.stderr)
    hooks = [
        json.loads(line)
        for name in HOSTS
        for line in on(name).file("/srv/polls/deploys.log").content_string.splitlines()
        if '"hook"' in line
    ]
    migrations = [h for h in hooks if h["hook"] == "before_switch" and h["release"].startswith("1.0.0-")]
    assert len(migrations) == 1 and migrations[0]["result"] == "success"  # once for the fleet


def test_static_files_are_collected_into_each_release_root_owned_and_read_only(runs):
    ok(runs["first deploy 1.0.0"])
    for name in HOSTS:
        host = on(name)
        found = host.run("find /srv/polls/releases/*/venv -path '*staticfiles/polls/style.*.css' | head -n1").stdout
        assert found.strip(), name
        assert host.file(found.strip()).user == "root", name
        writable = host.run("find /srv/polls/releases ! -type l -perm /022 -print -quit").stdout
        assert writable.strip() == "", (name, writable)


@pytest.mark.parametrize(
    "phase",
    [
        "deploy 2.0.0, its migration adds a column",
        "rollback, one step back onto the expanded schema",
        "deploy 3.0.0, its migration fails",
    ],
)
def test_no_request_fails_while_something_serves(runs, phase):
    run = runs[phase]
    assert run["during"]["requests"] > 50 and run["during"]["failures"] == 0, run["during"]


def test_during_the_first_deploy_no_request_fails_on_a_host_once_it_serves(runs):
    # Before its first answer a host not yet deployed refuses connections, as it should.
    run = runs["first deploy 1.0.0"]
    ok(run)
    assert sorted(run["once_serving"]) == sorted(f"127.0.0.1:{port}" for port in PORTS.values()), run["once_serving"]
    for target, window in run["once_serving"].items():
        assert window["requests"] >= 5 and window["failures"] == 0, (target, window)


def test_an_upgrade_adds_a_column_and_its_static_file_changes_with_the_release(runs):
    run = runs["deploy 2.0.0, its migration adds a column"]
    ok(run)
    assert all(v.startswith("2.0.0-") for v in run["live"].values()), run["live"]
    assert all("blue" in css for css in run["style"].values()), run["style"]


def test_a_rollback_steps_back_and_the_older_code_works_on_the_expanded_schema(runs):
    run = runs["rollback, one step back onto the expanded schema"]
    ok(run)
    assert "the release deployed before 2.0.0-" in run["said"]
    assert all(v.startswith("1.0.0-") for v in run["live"].values()), run["live"]
    assert all("green" in css for css in run["style"].values()), run["style"]  # its own assets came back
    assert "author" in psql("SELECT column_name FROM information_schema.columns WHERE table_name = 'polls_question'")
    authors = psql("SELECT author FROM polls_question WHERE question_text = 'written by 1.0.0 after the rollback'")
    assert authors == ["anonymous"]  # 1.0.0 knows no author: the database default filled it


def test_a_failing_migration_switches_no_host_and_says_why(runs):
    run = runs["deploy 3.0.0, its migration fails"]
    assert run["rc"] != 0
    said = " ".join(run["said"].split())
    for words in ("hook before_switch failed (exit 1)", "division by zero", "No host was switched"):
        assert words in said, (words, said[-4000:])
    assert all(v.startswith("1.0.0-") for v in run["live"].values()), run["live"]
    for name in HOSTS:
        assert not on(name).file("/srv/polls/deploy.lock").exists, name


def test_exec_runs_as_the_app_with_its_credentials_from_the_live_release(runs, playbook):
    ok(runs["rollback, one step back onto the expanded schema"])
    command = 'id -un; test -r "$CREDENTIALS_DIRECTORY/django_secret_key" && echo credential-readable; pwd'
    result = playbook(EXEC, {**polls("1.0.0"), "asgi_cmd": command, "asgi_hosts": "deploy-web2"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    out = result.stdout
    assert "== deploy-web2: exit 0" in out and "deploy-web1:" not in out
    assert (
        "   polls" in out and "   credential-readable" in out and f"   /srv/polls/releases/{live('deploy-web2')}" in out
    )
    events = [json.loads(line) for line in on("deploy-web2").file("/srv/polls/deploys.log").content_string.splitlines()]
    [audited] = [e for e in events if e.get("hook") == "exec"][-1:]
    assert audited["result"] == "success" and "output" not in audited  # the output is the operator's, not the log's


def test_the_console_runs_the_apps_python_with_its_settings_non_interactively(runs):
    ok(runs["rollback, one step back onto the expanded schema"])
    host = on("deploy-web1")
    code = "from django.conf import settings; import django; django.setup(); print(settings.ALLOWED_HOSTS)"
    shown = host.run("asgi-polls python -c %s", code)
    assert shown.rc == 0 and "['localhost', '127.0.0.1']" in shown.stdout, (shown.stdout, shown.stderr)
    who = host.run("asgi-polls id -un")
    assert who.stdout.strip() == "polls", who.stderr


def test_logs_merge_every_hosts_journal_in_time_order_with_each_lines_host(runs, playbook):
    ok(runs["rollback, one step back onto the expanded schema"])
    # Each Gunicorn master's start line: every host started instances in every phase.
    result = playbook(LOGS, {**polls("1.0.0"), "asgi_since": "-1h", "asgi_grep": "asgi.deploy start"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    pattern = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (deploy-web\d) (polls-(?:blue|green)\.service): (.*)$")
    shown = [m.groups() for m in map(pattern.match, result.stdout.splitlines()) if m]
    assert {host for _, host, _, _ in shown} == set(HOSTS), result.stdout[-3000:]
    assert all("asgi.deploy start" in message for _, _, _, message in shown)
    times = [t for t, _, _, _ in shown]
    assert times == sorted(times), "the lines are not in time order"
    # Interleaved, not host after host: the first host's lines do not all come first.
    first_hosts = [host for _, host, _, _ in shown]
    assert first_hosts != sorted(first_hosts), first_hosts
