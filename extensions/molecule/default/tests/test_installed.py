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


class Runner:
    """``runner(playbook, extra_vars)``: ansible-runner on a private data dir with no ansible.cfg;
    ``runner.slices(playbook, extra_vars, limits)``: one job per limit, all at once, as AWX runs the slices of a
    sliced job (the same extra vars for each)."""

    def __init__(self, data, installed):
        self.data, self.installed, self.started = data, installed, 0

    def __call__(self, name, extra_vars):
        return self.slices(name, extra_vars, [""])[0]

    def slices(self, name, extra_vars, limits):
        (self.data / "env").mkdir(exist_ok=True)
        (self.data / "env/extravars").write_text(yaml.safe_dump(extra_vars))
        env = clean_environment(
            ANSIBLE_COLLECTIONS_PATH=str(self.installed), ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1"
        )
        jobs = []
        for limit in limits:
            self.started += 1
            ident = f"{name}-{self.started}"
            command = ["ansible-runner", "run", str(self.data), "-p", f"{name}.yml", "--ident", ident]
            output = (self.data / f"{ident}.out").open("w")
            jobs.append((ident, output, subprocess.Popen(command + (["--limit", limit] if limit else []),
                                                         cwd=self.data, env=env, stdout=output,
                                                         stderr=subprocess.STDOUT, text=True)))  # fmt: skip
        return [self.result(ident, output, job) for ident, output, job in jobs]

    def result(self, ident, output, job):
        try:
            rc = job.wait(timeout=900)
        finally:
            if job.poll() is None:
                job.kill()
            output.close()
        artifacts = self.data / "artifacts" / ident
        said = (artifacts / "stdout") if (artifacts / "stdout").exists() else self.data / f"{ident}.out"
        result = {
            "rc": rc,
            "status": (artifacts / "status").read_text() if (artifacts / "status").exists() else "",
            "stdout": said.read_text(),
            "events": [json.loads(p.read_text()) for p in sorted((artifacts / "job_events").glob("*.json"))],
        }
        _RUNS[ident] = result
        return result


@pytest.fixture(scope="module")
def runner(installed, tmp_path_factory):
    data = tmp_path_factory.mktemp("runner")
    (data / "project").mkdir()
    for name in ("deploy", "rollback", "remove"):
        book = [{"name": f"The collection's {name}", "ansible.builtin.import_playbook": f"asgi.deploy.{name}"}]
        (data / "project" / f"{name}.yml").write_text(yaml.safe_dump(book))
    (data / "inventory").mkdir()
    (data / "inventory/hosts.yml").write_text(yaml.safe_dump(inventory()))
    return Runner(data, installed)


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


def audit(name):
    text = testinfra.get_host(f"podman://{name}").check_output("cat /srv/runner/deploys.log")
    return [json.loads(line) for line in text.splitlines()]


def test_two_job_slices_of_a_deploy_and_of_a_rollback_each_move_their_own_host_as_one_run(runs, runner):
    kept = testinfra.get_host(f"podman://{HOSTS[0]}").check_output("ls /srv/runner/releases").split()
    up, back = (next(r for r in kept if r.startswith(v + "-")) for v in ("2.0.0", "1.0.0"))
    marks = {name: len(audit(name)) for name in HOSTS}
    # Both slices start at once with the same extra vars, as AWX starts the jobs of a sliced job template.
    sliced = {"version": "2.0.0", "app_source": str(SOURCES / "app-2.0.0"), "run_id": "awx-41", "release": up}
    for result in runner.slices("deploy", sliced, HOSTS) + runner.slices(
        "rollback", {"run_id": "awx-42", "release": back}, HOSTS
    ):
        assert result["rc"] == 0 and result["status"] == "successful", result["stdout"][-4000:]
        assert any(re.fullmatch(r"\w+: 1 host\(s\) changed in \d+ s:", line) for line in lines_of(result["stdout"]))
    for name in HOSTS:
        events = audit(name)[marks[name] :]
        moves = [(e["event"], e["run"], e["to"]) for e in events if e["event"] in ("deploy", "rollback")]
        assert moves == [("deploy", "awx-41", up), ("rollback", "awx-42", back)], events
        # Each slice locked only its own host, and let go of it.
        assert [(e["event"], e["run"]) for e in events if e["event"] in ("lock", "unlock")] == [
            ("lock", "awx-41"), ("unlock", "awx-41"), ("lock", "awx-42"), ("unlock", "awx-42")
        ], events  # fmt: skip


def test_a_slice_that_would_ship_another_release_than_the_run_pins_changes_nothing(runs, runner):
    marks = {name: len(audit(name)) for name in HOSTS}
    result = runner("deploy", {"version": "2.0.0", "app_source": str(SOURCES / "app-2.0.0"), "run_id": "awx-43",
                               "release": "2.0.0-00000000"})  # fmt: skip
    assert result["rc"] != 0 and "this slice would ship another release than the run pins" in result["stdout"]
    assert all(len(audit(name)) == marks[name] for name in HOSTS)


def test_remove_through_ansible_runner_leaves_no_unit_user_or_release(runs, runner):
    result = runner("remove", {})
    assert result["rc"] == 0, result["stdout"][-4000:]
    for name in HOSTS:
        host = testinfra.get_host(f"podman://{name}")
        assert not host.file("/srv/runner").exists
        assert not host.user("runner").exists
        assert host.run("systemctl list-units --all --plain --no-legend 'runner*'").stdout.strip() == ""
