"""The collection as a fleet team runs it: the built tarball installed, playbooks run by ansible-runner (the
engine AWX and Automation Controller run playbooks with), no ansible.cfg anywhere, results as JSON.

A third app ("runner", the reference app on port 8010) is deployed to two hosts, upgraded, rolled back one
step and removed; the output a person reads is the summary's plain lines, whatever the callback does with
task results.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import testinfra
import yaml

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SOURCES = PROJECT / "build/molecule-default"
HOSTS = ["default-debian12", "default-debian13"]
# Both hosts and their seconds, as the summary lists them.
BOTH = r"default-debian12 [\d.]+ s, default-debian13 [\d.]+ s"
_RUNS: dict[str, dict] = {}


def clean_environment(**extra):
    """This process's environment without Ansible's or molecule's settings: nothing but what a runner has."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    return {**keep, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The collection built with ansible-galaxy and installed from the tarball into a directory of its own."""
    where = tmp_path_factory.mktemp("installed")
    env = clean_environment()
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(where), str(PROJECT)],
        cwd=where, env=env, check=True, capture_output=True,
    )  # fmt: skip
    (tarball,) = where.glob("asgi-deploy-*.tar.gz")
    collections = where / "collections"
    subprocess.run(
        ["ansible-galaxy", "collection", "install", "--offline", "-p", str(collections), str(tarball)],
        cwd=where, env=env, check=True, capture_output=True,
    )  # fmt: skip
    assert (collections / "ansible_collections/asgi/deploy/playbooks/deploy.yml").is_file()
    return collections


@pytest.fixture(scope="module")
def runner(installed, tmp_path_factory):
    """``runner(playbook, extra_vars)``: ansible-runner on a private data dir with no ansible.cfg."""
    data = tmp_path_factory.mktemp("runner")
    (data / "project").mkdir()
    for name in ("deploy", "rollback", "remove"):
        book = [{"name": f"The collection's {name}", "ansible.builtin.import_playbook": f"asgi.deploy.{name}"}]
        (data / "project" / f"{name}.yml").write_text(yaml.safe_dump(book))
    (data / "inventory").mkdir()
    (data / "inventory/hosts.yml").write_text(yaml.safe_dump(inventory()))

    def run(name, extra_vars):
        (data / "env").mkdir(exist_ok=True)
        (data / "env/extravars").write_text(yaml.safe_dump(extra_vars))
        ident = f"{name}-{len(_RUNS)}"
        env = clean_environment(
            ANSIBLE_COLLECTIONS_PATH=str(installed), ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1"
        )
        done = subprocess.run(
            ["ansible-runner", "run", str(data), "-p", f"{name}.yml", "--ident", ident],
            cwd=data, env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        artifacts = data / "artifacts" / ident
        result = {
            "rc": done.returncode,
            "status": (artifacts / "status").read_text() if (artifacts / "status").exists() else "",
            "stdout": (artifacts / "stdout").read_text() if (artifacts / "stdout").exists() else done.stdout,
            "events": [json.loads(p.read_text()) for p in sorted((artifacts / "job_events").glob("*.json"))],
        }
        _RUNS[ident] = result
        return result

    return run


def inventory():
    """The two hosts as AWX would have them: a podman connection, the app described in group vars."""
    return {
        "asgi": {
            "hosts": {name: {"ansible_connection": "containers.podman.podman"} for name in HOSTS},
            "vars": {
                "asgi_app": "runner",
                "asgi_entrypoint": "demo_app.main:app",
                "asgi_lockfile": str(PROJECT / "app/requirements.lock"),
                "asgi_app_source": str(PROJECT / "app"),
                "asgi_listen_tcp": ["127.0.0.1:8010"],
                "release_cache_dir": str(PROJECT / "build/cache"),
                "service_workers": 1,
                "service_environment": {"DEMO_ENVIRONMENT": "runner"},
                "service_secrets": {"demo_api_token": "runner-token"},
            },
        }
    }


def lines_of(stdout):
    return [line.rstrip() for line in stdout.splitlines()]


@pytest.fixture(scope="module")
def runs(runner):
    """First deploy, an upgrade, a rollback one step back (no version given)."""
    if not _RUNS:
        for key, name, extra in (
            ("first", "deploy", {"version": "1.0.0"}),
            ("upgrade", "deploy", {"version": "2.0.0", "app_source": str(SOURCES / "app-2.0.0")}),
            ("back", "rollback", {}),
        ):
            result = runner(name, extra)
            assert result["rc"] == 0 and result["status"] == "successful", result["stdout"][-4000:]
            _RUNS[key] = result
    return _RUNS


def test_a_deploy_through_ansible_runner_says_who_went_where_in_plain_lines(runs):
    said = lines_of(runs["upgrade"]["stdout"])
    head = [i for i, line in enumerate(said) if re.fullmatch(r"deploy: 2 host\(s\) changed in \d+ s:", line)]
    assert head, runs["upgrade"]["stdout"][-4000:]
    moved = said[head[0] + 1]
    assert re.fullmatch(r"  1\.0\.0-\S+ -> 2\.0\.0-\S+ \(handover\): " + BOTH, moved)


def test_a_rollback_through_ansible_runner_says_it_in_plain_lines(runs):
    said = lines_of(runs["back"]["stdout"])
    head = [i for i, line in enumerate(said) if re.fullmatch(r"rollback: 2 host\(s\) changed in \d+ s:", line)]
    assert head, runs["back"]["stdout"][-4000:]
    assert re.fullmatch(r"  2\.0\.0-\S+ -> 1\.0\.0-\S+ \(handover\): " + BOTH, said[head[0] + 1])


def test_a_first_deploy_says_where_each_host_came_from(runs):
    said = lines_of(runs["first"]["stdout"])
    first = re.compile(r"  nothing -> 1\.0\.0-\S+ \(initial\): " + BOTH)
    assert any(first.fullmatch(line) for line in said), said[-30:]


def test_without_ansible_cfg_the_run_warns_that_pipelining_is_off(runs):
    assert "pipelining is off" in runs["upgrade"]["stdout"]


def test_the_runner_events_record_every_host_ok_and_none_failed(runs):
    for key in ("first", "upgrade", "back"):
        (stats,) = [e for e in runs[key]["events"] if e.get("event") == "playbook_on_stats"]
        assert set(stats["event_data"]["ok"]) == set(HOSTS), stats["event_data"]
        assert not stats["event_data"]["failures"] and not stats["event_data"]["dark"], stats["event_data"]


def test_the_hosts_serve_the_release_the_rollback_went_back_to(runs):
    for name in HOSTS:
        version = json.loads(
            testinfra.get_host(f"podman://{name}").check_output("curl -fsS http://127.0.0.1:8010/version")
        )
        assert version["app_version"] == "1.0.0", version


def test_remove_through_ansible_runner_leaves_no_unit_user_or_release(runs, runner):
    result = runner("remove", {})
    assert result["rc"] == 0, result["stdout"][-4000:]
    for name in HOSTS:
        host = testinfra.get_host(f"podman://{name}")
        assert not host.file("/srv/runner").exists
        assert not host.user("runner").exists
        assert host.run("systemctl list-units --all --plain --no-legend 'runner*'").stdout.strip() == ""
