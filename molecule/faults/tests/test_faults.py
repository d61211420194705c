"""Fault injection under load: after every fault, a normal deploy converges.

Three hosts serve loopback load for the whole module. Each test injects one
fault once a condition holds (a task name on the playbook's output, a unit
state, a link on a host), never after a fixed sleep, then runs the deploy a
user would run next and asserts every host converged: one release, serving,
next stopped, no lock. Requests and failures per case and per host go to
build/reports/faults-load.json. Tests run in file order and share the hosts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
from conftest import Background, _wait_for, alive

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(PROJECT / "bench"))
from loadgen import Load  # noqa: E402 (the benchmark's load generator, per request and per host)

DEPLOY = PROJECT / "playbooks/deploy.yml"
ROLLBACK = PROJECT / "playbooks/rollback.yml"
SOURCES = PROJECT / "build/molecule-faults"
REPORT = PROJECT / "build/reports/faults-load.json"
HOSTS = ["faults-web1", "faults-web2", "faults-web3"]
PORTS = {"faults-web1": 18101, "faults-web2": 18102, "faults-web3": 18103}
GOOD = ("1.0.0", "2.0.0")
CASES: dict[str, dict] = {}


def on(name):
    return testinfra.get_host(f"podman://{name}")


def source(version):
    return str(PROJECT / "app") if version == "1.0.0" else str(SOURCES / f"app-{version}")


def live(name):
    return on(name).run("basename $(readlink /srv/demo/current) 2>/dev/null").stdout.strip()


def audit(name):
    text = on(name).run("cat /srv/demo/deploys.log 2>/dev/null").stdout
    return [json.loads(line) for line in text.splitlines()]


def active(name, unit):
    return on(name).run("systemctl is-active %s", unit).stdout.strip()


def units_report(name, since):
    """What systemd did to the app's units since ``since`` (epoch seconds on the host), for a failure message."""
    command = (
        "systemctl status --no-pager -n0 'demo*'; journalctl --no-pager -o short-precise --since @%s"
        " _PID=1 + UNIT=demo.service + UNIT=demo.socket | tail -n 80"
    )
    return on(name).run(command, since).stdout


def main_pid(name, unit="demo.service"):
    return int(on(name).run("systemctl show -p MainPID --value %s", unit).stdout.strip() or 0)


def other(version):
    return GOOD[1] if version == GOOD[0] else GOOD[0]


def fleet_version(names=HOSTS):
    """The one good version the fleet runs between cases (a case that failed may leave it split: then the
    next one fails too, on this line, naming the split)."""
    versions = {live(name).rsplit("-", 1)[0] for name in names}
    assert len(versions) == 1, f"the fleet is split: {versions}"
    version = versions.pop()
    assert version in GOOD, version
    return version


@pytest.fixture(scope="module")
def load():
    """Loopback load on every host for the whole module; the report is written at the end."""
    with Load([f"http://127.0.0.1:{port}" for port in PORTS.values()], users=6, rate=90, timeout=15) as running:
        _wait_for(lambda: len(running.records) > 30, what="load on every host")
        yield running
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps({"conditions": {"hosts": HOSTS, "users": 6, "rate_per_s": 90}, "cases": CASES}, indent=2)
    )


class Case:
    """One fault: the load during it, per host, and whatever the test notes."""

    def __init__(self, load, name):
        self.load, self.name = load, name

    def __enter__(self):
        self.began = self.load.now()
        return self

    def __exit__(self, *exc):
        ended = self.load.now()
        per_host = {name: self.load.window(self.began, ended, f"127.0.0.1:{PORTS[name]}") for name in HOSTS}
        CASES.setdefault(self.name, {}).update(seconds=round(ended - self.began, 1), hosts=per_host)
        return False

    def note(self, **facts):
        CASES.setdefault(self.name, {}).update(facts)

    def failures(self, name=None):
        hosts = CASES[self.name]["hosts"]
        return sum(h["failures"] for n, h in hosts.items() if name in (None, n))


def deploy(playbook, version, **extra):
    """Run deploy.yml; the result's ``said`` is its output with line wrapping undone (messages wrap in YAML)."""
    result = playbook(DEPLOY, {"version": version, "app_source": source(version), **extra})
    result.said = " ".join((result.stdout + result.stderr).split())
    return result


def during_web2_handover(case, target, inject):
    """Deploy ``target`` in the background, ``inject()`` once faults-web2 is handing over, wait for the deploy."""
    run = Background(DEPLOY, {"version": target, "app_source": source(target)})
    try:
        _wait_for(
            lambda: active("faults-web2", "demo-next.service") == "active",
            timeout=300,
            interval=0.05,
            what="a handover on faults-web2",
        )
        inject()
        code = run.wait(timeout=600)
    finally:
        if run.proc.poll() is None:
            run.kill()
    case.note(deploy_rc=code)


def converge(playbook, version, **extra):
    """The deploy a user runs after a fault; it must succeed and leave the fleet whole."""
    result = deploy(playbook, version, **extra)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert_converged(version)
    return result


def assert_converged(version):
    for name in HOSTS:
        host = on(name)
        release = live(name)
        assert release.startswith(version + "-"), (name, release)
        assert active(name, "demo.service") == "active", name
        assert active(name, "demo-next.service") != "active", name
        assert not host.file("/srv/demo/deploy.lock").exists, name
        served = json.loads(host.run("curl -fsS --max-time 10 http://127.0.0.1:8000/version").stdout)
        assert served["release_id"] == release, name
        unfinished = host.run("for d in /srv/demo/releases/*/; do [ -e $d/release.json ] || echo $d; done").stdout
        assert unfinished.strip() == "", (name, unfinished)


# -- 1. ansible-playbook SIGKILLed at five points ---------------------------------


def reach(point, run, target, main_before):
    """Wait until the deploy ``run`` is at ``point`` on faults-web1 (or on its output)."""
    web1 = "faults-web1"
    if point == "during the build":
        return run.wait_for("TASK [asgi.deploy.release : Build | Build the release venv", timeout=300)
    if point == "during the last host's handover":
        return _wait_for(
            lambda: active("faults-web3", "demo-next.service") == "active",
            timeout=300,
            interval=0.05,
            what="faults-web3's handover",
        )
    conditions = {
        "after next started": lambda: active(web1, "demo-next.service") == "active",
        "right after current switched": lambda: live(web1).startswith(target),
        "during main's restart": lambda: live(web1).startswith(target) and main_pid(web1) not in (0, main_before),
    }
    return _wait_for(conditions[point], timeout=300, interval=0.05, what=f"the deploy {point} on {web1}")


KILL_POINTS = [
    "during the build",
    "after next started",
    "right after current switched",
    "during main's restart",
    "during the last host's handover",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_deploy_killed_at_any_point_converges_when_run_again(load, playbook, point):
    target = other(fleet_version())
    main_before = main_pid("faults-web1")
    with Case(load, f"sigkill ansible-playbook {point}") as case:
        run = Background(DEPLOY, {"version": target, "app_source": source(target)})
        try:
            reach(point, run, target, main_before)
        finally:
            victims = run.kill()
        # SIGKILLed: gone as soon as the kernel has torn them down.
        _wait_for(
            lambda: not [pid for pid in victims if alive(pid)], timeout=20, what="the killed run's processes to die"
        )
        left = {name: {"live": live(name), "lock": on(name).file("/srv/demo/deploy.lock").exists} for name in HOSTS}
        case.note(after_kill=left)
        converge(playbook, target)
    events = [e for name in HOSTS for e in audit(name)]
    taken_over = [e for e in events if e["event"] == "force_unlock" and e.get("reason") == "dead run"]
    assert taken_over, "the rerun did not take over the dead run's lock"
    assert case.failures() == 0, CASES[case.name]


def test_a_dead_runs_lock_on_a_host_that_needs_nothing_is_cleared_by_the_next_deploy(load, playbook):
    version = fleet_version()
    dead = {"run": "deadbeef", "actor": "ops@ci", "operation": "deploy", "version": version, "pid": 2**22 + 1}
    for name in HOSTS:
        on(name).run_expect([0], "echo %s > /srv/demo/deploy.lock", json.dumps({**dead, "controller_id": controller()}))
    with Case(load, "dead run's lock, nothing to change"):
        result = deploy(playbook, version)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert_converged(version)
    for name in HOSTS:
        assert audit(name)[-1]["event"] == "force_unlock", audit(name)[-1]
        assert audit(name)[-1]["reason"] == "dead run", audit(name)[-1]


def controller():
    """This controller's id, as the plan records it in locks."""
    sys.path.insert(0, str(PROJECT / ".collections"))
    from ansible_collections.asgi.deploy.plugins.plugin_utils.fleet import controller_id

    return controller_id()


# -- 2. two deploys at once ---------------------------------------------------------


def test_of_two_deploys_started_together_one_runs_and_the_other_changes_nothing(load, playbook):
    target = other(fleet_version())
    with Case(load, "two deploys at once") as case:
        runs = [Background(DEPLOY, {"version": target, "app_source": source(target)}) for _ in range(2)]
        codes = [run.wait(timeout=600) for run in runs]
        outputs = [" ".join(run.output().split()) for run in runs]
    assert sorted(codes) == [0, 2], (codes, [o[-2000:] for o in outputs])
    loser = outputs[codes.index(2)]
    assert "deploy lock held by run" in loser, loser[-3000:]
    assert "Nothing was changed" in loser, loser[-3000:]
    holder = re.search(r"deploy lock held by run (\w+)", loser).group(1)
    assert_converged(target)
    for name in HOSTS:
        deploys = [e for e in audit(name) if e["event"] == "deploy" and e["to"].startswith(target)]
        assert deploys[-1]["run"] == holder, name  # the run named as the holder is the one that deployed
    case.note(winner=holder)
    assert case.failures() == 0, CASES[case.name]


# -- 3. the Gunicorn master killed during a handover ---------------------------------


@pytest.mark.parametrize("instance", ["demo.service", "demo-next.service"])
def test_a_master_killed_during_a_handover_fails_no_more_than_its_requests_in_flight(load, playbook, instance):
    target = other(fleet_version())
    with Case(load, f"sigkill gunicorn master of {instance}") as case:

        def kill_master():
            pid = main_pid("faults-web2", instance)
            assert pid, instance
            on("faults-web2").run_expect([0], "kill -9 %s", str(pid))
            case.note(killed=instance, pid=pid)

        during_web2_handover(case, target, kill_master)
        converge(playbook, target)
    web2 = CASES[case.name]["hosts"]["faults-web2"]
    assert "ConnectionRefusedError" not in web2["errors"], web2
    # Only the requests in flight on the killed master's workers may fail: a few at this load.
    assert web2["failures"] <= 4, web2
    assert case.failures("faults-web1") == case.failures("faults-web3") == 0, CASES[case.name]


# -- 4. broken releases ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "strategy", "stops_at"),
    [
        ("9.1.0", "handover", "could not be built"),
        ("9.1.0", "restart", "could not be built"),
        ("9.2.0", "handover", "failed on faults-web1 at gate next"),
        ("9.2.0", "restart", "failed on faults-web1 at gate main"),
    ],
)
def test_a_broken_release_stops_the_rollout_and_no_request_fails(load, playbook, version, strategy, stops_at):
    before = {name: live(name) for name in HOSTS}
    with Case(load, f"broken release {version} with {strategy}") as case:
        result = deploy(playbook, version, strategy=strategy)
    assert result.returncode != 0
    assert stops_at in result.said, result.said[-4000:]
    if version == "9.2.0":
        assert "9.2.0 cannot reach its database" in result.said  # the journal tail
    assert {name: live(name) for name in HOSTS} == before
    for name in HOSTS:
        assert not on(name).file("/srv/demo/deploy.lock").exists
        assert active(name, "demo-next.service") != "active"
        listening = on(name).run("ss -Hltnp 'sport = :8000'").stdout
        assert '"systemd",pid=1' in listening, listening
    assert case.failures() == 0, CASES[case.name]


def test_a_failed_first_deploy_leaves_the_units_stopped_and_a_good_one_repairs_the_host(load, playbook):
    host = on("faults-web3")
    host.run_expect(
        [0],
        "systemctl stop --job-mode=replace-irreversibly demo.socket demo-probe.socket demo.service"
        " demo-next.service demo-next-probe.socket; systemctl disable demo.socket demo-probe.socket demo.service; "
        "rm -rf /srv/demo /etc/asgi-deploy/demo /etc/systemd/system/demo*; systemctl daemon-reload",
    )
    assert "active" not in {active("faults-web3", unit) for unit in ("demo.service", "demo.socket")}
    since = host.run("date +%s").stdout.strip()
    with Case(load, "broken first deploy of an empty host") as case:
        failed = playbook(DEPLOY, {"version": "9.2.0", "app_source": source("9.2.0")}, limit="faults-web3")
        said = " ".join((failed.stdout + failed.stderr).split())
        assert failed.returncode != 0
        # The failure's own message, not the journal tail that ends it.
        assert "first deploy: its units are stopped" in said, said[said.find("fatal:") :][:3000]
        assert active("faults-web3", "demo.service") != "active", units_report("faults-web3", since)
        assert active("faults-web3", "demo.socket") != "active", units_report("faults-web3", since)
        assert host.run("readlink /srv/demo/current").rc != 0
        good = fleet_version(["faults-web1", "faults-web2"])
        repaired = playbook(DEPLOY, {"version": good, "app_source": source(good)}, limit="faults-web3")
        assert repaired.returncode == 0, (repaired.stdout + repaired.stderr)[-3000:]
    assert_converged(good)
    results = [(e["to"].rsplit("-", 1)[0], e["strategy"], e["result"]) for e in audit("faults-web3") if "to" in e]
    assert results == [("9.2.0", "initial", "failed"), (good, "initial", "success")]
    assert case.failures("faults-web1") == case.failures("faults-web2") == 0, CASES[case.name]


# -- 5. bad settings -----------------------------------------------------------------


def test_settings_that_fail_at_start_are_gated_on_next_and_main_keeps_its_own(load, playbook):
    version = fleet_version()
    pid_before = main_pid("faults-web1")
    events_before = {name: len(audit(name)) for name in HOSTS}
    with Case(load, "bad settings") as case:
        result = deploy(playbook, version, service_environment={"DEMO_ENVIRONMENT": "lab", "DEMO_APP_FAIL_STARTUP": "1"})
    assert result.returncode != 0
    assert "failed on faults-web1 at gate next" in result.said, result.said[-3000:]
    assert main_pid("faults-web1") == pid_before  # main never restarted
    environ = on("faults-web1").run("tr '\\0' '\\n' < /proc/%s/environ", str(pid_before)).stdout
    assert "DEMO_APP_FAIL_STARTUP" not in environ
    [line] = [e for e in audit("faults-web1")[events_before["faults-web1"] :] if e["event"] == "deploy"]
    assert (line["change"], line["result"], line["step"]) == ("settings", "reverted", "gate next"), line
    for name in ("faults-web2", "faults-web3"):  # locked and released, never changed
        assert {e["event"] for e in audit(name)[events_before[name] :]} <= {"lock", "unlock"}, name
    assert case.failures() == 0, CASES[case.name]


# -- 6. a host restarted in the middle of a rollout -----------------------------------


def test_a_host_restarted_mid_rollout_and_a_forced_rerun_converges(load, playbook):
    target = other(fleet_version())
    with Case(load, "host restarted mid-rollout") as case:

        def restart_web2():
            subprocess.run(["podman", "restart", "--time", "0", "faults-web2"], check=True, capture_output=True)
            case.note(restarted="faults-web2")

        during_web2_handover(case, target, restart_web2)
        _wait_for(
            lambda: on("faults-web2").run("systemctl is-system-running").stdout.strip() in ("running", "degraded"),
            timeout=120,
            what="faults-web2 booted",
        )
        converge(playbook, target, force_unlock="all")
    assert case.failures("faults-web1") == case.failures("faults-web3") == 0, CASES[case.name]


# -- 7. on_failure=revert --------------------------------------------------------------


def test_with_on_failure_revert_a_failing_second_host_takes_the_first_back_too(load, playbook):
    before = {name: live(name) for name in HOSTS}
    with Case(load, "on_failure=revert, second host fails") as case:
        result = deploy(playbook, "9.3.0", on_failure="revert")
    assert result.returncode != 0
    assert "failed on faults-web2 at gate next" in result.said, result.said[-3000:]
    assert "Taken back to what they ran (on_failure=revert): faults-web1" in result.said, result.said[-3000:]
    assert {name: live(name) for name in HOSTS} == before
    events = [(e["event"], e.get("result")) for e in audit("faults-web1") if e["event"] in ("deploy", "revert")]
    assert events[-2:] == [("deploy", "success"), ("revert", "success")]
    assert_converged(fleet_version())
    assert case.failures() == 0, CASES[case.name]
