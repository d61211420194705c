"""A failing release stops the rollout at its first host; a killed deploy converges on a rerun."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import testinfra
from conftest import Load

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
DEPLOY = PROJECT / "playbooks/deploy.yml"
BROKEN = PROJECT / "build/molecule-bad_release/app-3.0.0"
HOSTS = ["bad-web1", "bad-web2", "bad-web3"]
TARGETS = [f"http://127.0.0.1:{port}" for port in (18091, 18092, 18093)]
_RUNS = {}


def on(name):
    return testinfra.get_host(f"podman://{name}")


def live(host):
    return host.run("readlink /srv/demo/current").stdout.strip()


@pytest.fixture(scope="session")
def bad_deploy(playbook):
    """Deploy the broken 3.0.0 under load, once."""
    if "bad" not in _RUNS:
        before = {name: live(on(name)) for name in HOSTS}
        load = Load(TARGETS, PROJECT / "build/load")
        with load.phase("bad_release"):
            result = playbook(DEPLOY, {"version": "3.0.0", "app_source": str(BROKEN)})
        _RUNS["bad"] = (result, before, load.report["bad_release"])
    return _RUNS["bad"]


def test_the_rollout_stops_naming_host_version_check_and_journal(bad_deploy):
    result, _, _ = bad_deploy
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "deploy of 3.0.0-" in output
    assert "failed on bad-web1 at gate next: demo-next.service failed" in output
    assert "The host is back on 1.0.0-" in output
    assert "3.0.0 cannot reach its database" in output  # from the journal tail


def test_the_first_host_is_back_on_its_release_and_the_others_never_changed(bad_deploy):
    _, before, _ = bad_deploy
    for name in HOSTS:
        host = on(name)
        assert live(host) == before[name], name
        served = json.loads(host.run("curl -fsS http://127.0.0.1:8000/version").stdout)
        assert served["release_id"] == before[name].removeprefix("releases/")
        assert not host.service("demo-next.service").is_running
    reverted = [json.loads(line) for line in on("bad-web1").file("/srv/demo/deploys.log").content_string.splitlines()]
    assert reverted[-1]["result"] == "reverted"
    for name in HOSTS[1:]:
        lines = [json.loads(line) for line in on(name).file("/srv/demo/deploys.log").content_string.splitlines()]
        assert [(line["from"], line["strategy"]) for line in lines] == [("", "initial")], name


def test_the_listening_socket_is_still_systemds_after_the_failure(bad_deploy):
    # A failed temporary instance must not fail demo.socket (start-limit
    # propagation): then the next restart would lose the listening socket.
    for name in HOSTS:
        host = on(name)
        assert host.run("systemctl is-active demo.socket").stdout.strip() == "active", name
        listening = host.run("ss -Hltnp 'sport = :8000'").stdout
        assert '"systemd",pid=1' in listening, listening


def test_no_request_fails_while_the_bad_release_is_tried(bad_deploy):
    _, _, report = bad_deploy
    print(report)
    assert report["requests"] > 50
    assert report["failures"] == 0, report


def test_the_lock_is_released_after_the_failure(bad_deploy):
    for name in HOSTS:
        assert not on(name).file("/srv/demo/deploy.lock").exists


def unfinished(host):
    return host.run("for d in /srv/demo/releases/*/; do [ -e $d/release.json ] || echo $d; done").stdout.split()


def test_a_deploy_killed_half_way_converges_when_run_again(bad_deploy, playbook):
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = {**os.environ, "ANSIBLE_CONFIG": str(ephemeral / "ansible.cfg")}
    cmd = ["ansible-playbook", "-i", str(ephemeral / "inventory"), str(DEPLOY), "-e", "version=2.0.0"]
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        # Kill it as soon as some host has started to build 2.0.0; meanwhile
        # current must never point at a release without its manifest.
        while run.poll() is None and time.monotonic() < deadline:
            hosts = [on(name) for name in HOSTS]
            for host in hosts:
                target = live(host)
                assert host.file(f"/srv/demo/{target}/release.json").exists, f"current -> unfinished {target}"
            if any(host.run("ls -d /srv/demo/releases/2.0.0-*").rc == 0 for host in hosts):
                break
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()

    held = playbook(DEPLOY, {"version": "2.0.0"})
    assert held.returncode != 0
    assert "deploy lock held by" in held.stdout + held.stderr

    again = playbook(DEPLOY, {"version": "2.0.0", "force_unlock": True})
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    for name in HOSTS:
        host = on(name)
        assert live(host).startswith("releases/2.0.0-")
        assert unfinished(host) == []
        events = [json.loads(line)["event"] for line in host.file("/srv/demo/deploys.log").content_string.splitlines()]
        assert "force_unlock" in events
        assert not host.file("/srv/demo/deploy.lock").exists
