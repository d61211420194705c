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
import time
from pathlib import Path

import pytest
import testinfra
from conftest import Background, Shell, _wait_for, alive

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(PROJECT / "bench"))
from liveclients import Clients  # noqa: E402 (clients that hold WebSockets and event streams)
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
    return Shell.of(name).run("basename $(readlink /srv/demo/current)")


def audit(name):
    text = on(name).run("cat /srv/demo/deploys.log 2>/dev/null").stdout
    return [json.loads(line) for line in text.splitlines()]


def audit_marks():
    """Where each host's audit log ends now: a case reads only what was written after it."""
    return {name: len(audit(name)) for name in HOSTS}


def audit_since(marks, event):
    return [e for name in HOSTS for e in audit(name)[marks[name] :] if e["event"] == event]


def active(name, unit):
    return Shell.of(name).run(f"systemctl is-active {unit}")


def live_slot(name):
    """The slot demo.service names on the host (blue or green)."""
    target = Shell.of(name).run("readlink /etc/systemd/system/demo.service")
    return target.removeprefix("demo-").removesuffix(".service")


def idle_unit(name):
    return "demo-{}.service".format("green" if live_slot(name) == "blue" else "blue")


def handing_over(name, starting=None):
    """A handover runs on the host: the slot that is not live (or ``starting``, the unit known to start) has
    started."""
    return active(name, starting or idle_unit(name)) in ("activating", "active")


def units_report(name, since):
    """What systemd did to the app's units since ``since`` (epoch seconds on the host), for a failure message."""
    command = (
        "systemctl status --no-pager -n0 'demo*'; journalctl --no-pager -o short-precise --since @%s"
        " _PID=1 + UNIT=demo-blue.service + UNIT=demo-green.service + UNIT=demo.socket | tail -n 80"
    )
    return on(name).run(command, since).stdout


def served(name):
    """The release a request to the host's app gets now ("" while none answers)."""
    answer = Shell.of(name).run("curl -fsS --max-time 10 http://127.0.0.1:8000/version")
    return json.loads(answer)["release_id"] if answer.startswith("{") else ""


def main_pid(name, unit="demo.service"):
    return int(Shell.of(name).run(f"systemctl show -p MainPID --value {unit}") or 0)


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


LOAD_RATE = 60


@pytest.fixture(scope="module")
def load():
    """Loopback load on every host for the whole module; the report is written at the end."""
    # 20 requests a second per host, each on a fresh connection, for the whole module: every fault meets requests
    # in flight, and the load (the generator and the apps serving it) leaves CPU for the faults themselves.
    with Load([f"http://127.0.0.1:{port}" for port in PORTS.values()], users=6, rate=LOAD_RATE, timeout=15) as running:
        _wait_for(lambda: len(running.records) > 30, what="load on every host")
        yield running
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps({"conditions": {"hosts": HOSTS, "users": 6, "rate_per_s": LOAD_RATE}, "cases": CASES}, indent=2)
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


def background_deploy(version, config=None, **extra):
    """deploy.yml of ``version`` (from its source) running in the background, to be killed or waited for."""
    return Background(DEPLOY, {"version": version, "app_source": source(version), **extra}, config=config)


def killed_once(run, condition, what, timeout=180):
    """SIGKILL the background ``run`` (every process it started) as soon as ``condition()`` holds."""
    try:
        _wait_for(condition, timeout=timeout, interval=0.05, what=what)
    finally:
        run.kill()


def during_web2_handover(case, target, inject):
    """Deploy ``target`` in the background, ``inject()`` once faults-web2 is handing over, wait for the deploy."""
    run = background_deploy(target)
    try:
        _wait_for(lambda: handing_over("faults-web2"), timeout=300, interval=0.05, what="a handover on faults-web2")
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
        # The slot the last handover left is stopped or still draining: never serving new connections.
        assert active(name, idle_unit(name)) in ("inactive", "deactivating", "failed"), name
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
        return run.wait_for(
            "TASK [asgi.deploy.service : Build | Stage the settings set and build the release", timeout=300
        )
    if point == "during the last host's handover":
        return _wait_for(lambda: handing_over("faults-web3"), timeout=300, interval=0.05, what="faults-web3's handover")
    conditions = {
        "after the new slot started": lambda: handing_over(web1),
        "right after current switched": lambda: live(web1).startswith(target),
        "while the old slot drains": lambda: live(web1).startswith(target) and main_pid(web1) not in (0, main_before),
    }
    return _wait_for(conditions[point], timeout=300, interval=0.05, what=f"the deploy {point} on {web1}")


KILL_POINTS = [
    "during the build",
    "after the new slot started",
    "right after current switched",
    "while the old slot drains",
    "during the last host's handover",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_deploy_killed_at_any_point_converges_when_run_again(load, playbook, point):
    target = other(fleet_version())
    main_before = main_pid("faults-web1")
    with Case(load, f"sigkill ansible-playbook {point}") as case:
        run = background_deploy(target)
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
    from ansible_collections.asgi.deploy.plugins.plugin_utils.processes import controller_id

    return controller_id()


# -- 2. two deploys at once ---------------------------------------------------------


def test_of_two_deploys_at_once_the_first_runs_and_the_other_changes_nothing(load, playbook):
    target = other(fleet_version())
    with Case(load, "two deploys at once") as case:
        first = background_deploy(target)
        # The second starts once the first holds a host (started side by side on a loaded machine, the second could
        # begin after the first ended, and rightly find nothing to do).
        _wait_for(lambda: on("faults-web3").file("/srv/demo/deploy.lock").exists, timeout=180,
                  what="the first run to lock faults-web3")  # fmt: skip
        runs = [first, background_deploy(target)]
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


@pytest.mark.parametrize("instance", ["the serving slot", "the starting slot"])
def test_a_master_killed_during_a_handover_fails_no_more_than_its_requests_in_flight(load, playbook, instance):
    target = other(fleet_version())
    serving = "demo-{}.service".format(live_slot("faults-web2"))
    unit = serving if instance == "the serving slot" else idle_unit("faults-web2")
    with Case(load, f"sigkill gunicorn master of {instance}") as case:

        def kill_master():
            pid = main_pid("faults-web2", unit)
            assert pid, unit
            on("faults-web2").run_expect([0], "kill -9 %s", str(pid))
            case.note(killed=unit, pid=pid)

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
        # A release that cannot be built stops before any strategy applies: once is enough.
        ("9.1.0", "handover", "could not be built"),
        ("9.2.0", "handover", "failed on faults-web1 at gate"),
        ("9.2.0", "restart", "failed on faults-web1 at gate"),
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
        assert active(name, idle_unit(name)) not in ("active", "activating"), name
        listening = on(name).run("ss -Hltnp 'sport = :8000'").stdout
        assert '"systemd",pid=1' in listening, listening
    assert case.failures() == 0, CASES[case.name]


def test_a_failed_first_deploy_leaves_the_units_stopped_and_a_good_one_repairs_the_host(load, playbook):
    host = on("faults-web3")
    host.run_expect(
        [0],
        "systemctl stop --job-mode=replace-irreversibly demo.socket demo-blue.service demo-green.service"
        " demo-blue-probe.socket demo-green-probe.socket; systemctl disable demo.socket; "
        "rm -rf /srv/demo /etc/asgi-deploy/demo /etc/systemd/system/demo* "
        "/etc/systemd/system/multi-user.target.wants/demo.service; systemctl daemon-reload",
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


def test_settings_that_fail_at_start_are_gated_on_the_new_slot_and_the_serving_one_keeps_its_own(load, playbook):
    version = fleet_version()
    pid_before = main_pid("faults-web1")
    events_before = {name: len(audit(name)) for name in HOSTS}
    with Case(load, "bad settings") as case:
        result = deploy(
            playbook, version, service_environment={"DEMO_ENVIRONMENT": "lab", "DEMO_APP_FAIL_STARTUP": "1"}
        )
    assert result.returncode != 0
    assert "failed on faults-web1 at gate" in result.said, result.said[-3000:]
    assert main_pid("faults-web1") == pid_before  # the serving slot was never touched
    environ = on("faults-web1").run("tr '\\0' '\\n' < /proc/%s/environ", str(pid_before)).stdout
    assert "DEMO_APP_FAIL_STARTUP" not in environ
    [line] = [e for e in audit("faults-web1")[events_before["faults-web1"] :] if e["event"] == "deploy"]
    assert (line["change"], line["result"], line["step"]) == ("settings", "reverted", "gate"), line
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
    assert "failed on faults-web2 at gate" in result.said, result.said[-3000:]
    assert "Taken back to what they ran (on_failure=revert): faults-web1" in result.said, result.said[-3000:]
    assert {name: live(name) for name in HOSTS} == before
    events = [(e["event"], e.get("result")) for e in audit("faults-web1") if e["event"] in ("deploy", "revert")]
    assert events[-2:] == [("deploy", "success"), ("revert", "success")]
    assert_converged(fleet_version())
    assert case.failures() == 0, CASES[case.name]


# -- 8. many hands: locks, hooks, drift, values, privileges, disk, history ------------


def plant_dead_lock(run_id="deadbeef0000"):
    """A lock of a run of this very controller whose ansible-playbook is gone."""
    dead = {"run": run_id, "actor": "ops@laptop", "operation": "deploy", "version": "x", "pid": 2**22 + 7}
    for name in HOSTS:
        on(name).run_expect([0], "echo %s > /srv/demo/deploy.lock", json.dumps({**dead, "controller_id": controller()}))


def test_two_runs_taking_over_one_dead_runs_lock_a_second_apart_exactly_one_goes_on(load, playbook):
    target = other(fleet_version())
    plant_dead_lock()
    marks = audit_marks()
    with Case(load, "two take-overs of one dead run's lock, 1 s apart") as case:
        first = background_deploy(target)
        # The second starts as the first takes the dead run's lock over: both may read the dead holder.
        first.wait_for("TASK [asgi.deploy.rollout : Plan | Read each host, and lock it where it needs", timeout=180)
        second = background_deploy(target)
        codes = [first.wait(), second.wait()]
        said = [" ".join(run.output().split()) for run in (first, second)]
    assert codes == [0, 2], (codes, said[0][-2000:], said[1][-2000:])
    assert "deploy lock held by run" in said[1] and "Nothing was changed" in said[1], said[1][-3000:]
    assert_converged(target)
    # Each host's dead lock is taken over once. Both runs may appear: the second may take a host over before the
    # first reads it, then yields and lets go, and the first, which started earlier, waits for it and goes on.
    since = {name: audit(name)[marks[name] :] for name in HOSTS}
    taken = {name: [e for e in events if e["event"] == "force_unlock"] for name, events in since.items()}
    assert all(len(events) == 1 for events in taken.values()), taken
    assert {e["holder"]["run"] for events in taken.values() for e in events} == {"deadbeef0000"}, taken
    winners = {[e["run"] for e in events if e["event"] == "lock"][-1] for events in since.values()}
    assert len(winners) == 1, since
    for name, (took,) in taken.items():
        if took["run"] not in winners:  # the run that yielded let go of the host it took over
            assert any(e["event"] == "unlock" and e["run"] == took["run"] for e in since[name]), since[name]
    assert case.failures() == 0, CASES[case.name]


def controller_in_another_pid_namespace():
    """What controller_id() says in a new PID namespace of this machine (same machine id, boot id, host name)."""
    code = (
        f"import sys; sys.path.insert(0, {str(PROJECT / '.collections')!r}); "
        "from ansible_collections.asgi.deploy.plugins.plugin_utils.processes import controller_id; "
        "print(controller_id())"
    )
    done = subprocess.run(["unshare", "--pid", "--fork", sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    return done.stdout.strip()


def test_a_live_run_in_another_pid_namespace_on_this_controller_is_never_taken_over(load, playbook):
    version = fleet_version()
    elsewhere = controller_in_another_pid_namespace()
    assert elsewhere != controller()
    marks = audit_marks()
    with Case(load, "a live run in another PID namespace") as case:
        # The inner run's migration waits for the test's word (a file), not for a time: the outer run meets it there.
        go = "/run/asgi-test-go"
        for name in HOSTS:
            on(name).run("rm -f %s", go)
        inner = background_deploy(version, converge=True, asgi_before_switch=f"while [ ! -e {go} ]; do sleep 0.2; done",
                                  asgi_hook_timeout=120)  # fmt: skip
        try:
            inner.wait_for("TASK [asgi.deploy.rollout : Build | Run the before-switch hook", timeout=180)
            # The lock as a run in another PID namespace (an AWX job, a CI container) records it: this machine,
            # another namespace, and a PID that is no process here. podman cannot exec from another PID
            # namespace, so the live run is this one, its lock rewritten (the run id, which it checks, unchanged).
            for name in HOSTS:
                held = json.loads(on(name).file("/srv/demo/deploy.lock").content_string)
                held.update(controller_id=elsewhere, pid=2**22 + 3)
                on(name).run_expect([0], "echo %s > /srv/demo/deploy.lock", json.dumps(held))
            outer = deploy(playbook, version, converge=True)
        finally:
            for name in HOSTS:
                on(name).run("touch %s", go)
            code = inner.wait(timeout=300)
    assert outer.returncode != 0 and "deploy lock held by run" in outer.said, outer.said[-3000:]
    assert code == 0, inner.output()[-3000:]
    assert not audit_since(marks, "force_unlock")
    assert_converged(version)
    assert case.failures() == 0, CASES[case.name]


def test_a_hook_that_hangs_is_stopped_at_its_time_limit_and_the_next_run_starts_at_once(load, playbook):
    version = fleet_version()
    before = {name: live(name) for name in HOSTS}
    with Case(load, "a hook that hangs") as case:
        began = time.monotonic()
        hung = deploy(playbook, version, converge=True, asgi_before_switch="sleep 600", asgi_hook_timeout=5)
        case.note(hung_run_s=round(time.monotonic() - began, 1))
        assert hung.returncode != 0
        assert "hook before_switch was stopped at its time limit (5s, asgi_hook_timeout)" in hung.said, hung.said[
            -3000:
        ]
        assert "No host was switched" in hung.said
        assert {name: live(name) for name in HOSTS} == before
        for name in HOSTS:
            assert not on(name).file("/srv/demo/deploy.lock").exists, name
            assert on(name).run("systemctl is-active asgi-hook-demo-before-switch").stdout.strip() != "active"
        began = time.monotonic()
        converge(playbook, version)
        case.note(next_run_s=round(time.monotonic() - began, 1))
    assert case.failures() == 0, CASES[case.name]


def test_a_controller_killed_while_a_migration_runs_never_gets_a_second_migration_beside_it(load, playbook):
    version = fleet_version()
    migration = "echo start $(date +%s.%N); sleep 8; echo end $(date +%s.%N)"
    extra = {"converge": True, "asgi_before_switch": migration, "asgi_hook_show_output": True}
    with Case(load, "a controller killed during a migration") as case:
        killed_once(
            background_deploy(version, **extra),
            lambda: active("faults-web1", "asgi-hook-demo-before-switch.service") == "active",
            "the migration to start",
        )
        again = deploy(playbook, version, converge=True, asgi_before_switch=migration, asgi_hook_show_output=True)
    assert again.returncode == 0, again.said[-3000:]
    spans = []
    journal = on("faults-web1").run("journalctl -o cat -u asgi-hook-demo-before-switch.service --no-pager").stdout
    for line in journal.splitlines():
        if line.startswith(("start ", "end ")):
            spans.append(float(line.split()[1]))
    runs = list(zip(spans[-4::2], spans[-3::2], strict=True))  # the killed run's migration, then the next one's
    assert len(runs) == 2 and runs[0][1] <= runs[1][0], runs  # the second started after the first ended
    assert_converged(version)
    assert case.failures() == 0, CASES[case.name]


def test_drift_is_converged_a_unit_not_loaded_main_on_other_settings_and_percent_values(load, playbook):
    version = fleet_version()
    with Case(load, "drift: an unloaded unit, main on other settings, % values") as case:
        # web1: a unit file edited by hand and never loaded; web2: the marker says other settings than main runs.
        on("faults-web1").run_expect([0], "echo '# edited by hand' >> /etc/systemd/system/demo.socket")
        on("faults-web2").run_expect([0], "echo 0123456789abcdef0123456789abcdef > /srv/demo/deployed-settings.sha256")
        untouched = len(audit("faults-web3"))
        repaired = deploy(playbook, version)
        assert repaired.returncode == 0, repaired.said[-3000:]

        def reasons(name):
            return [e for e in audit(name) if e["event"] == "deploy"][-1].get("reasons", [])

        assert "unit files changed on disk but not loaded: demo.socket" in reasons("faults-web1")
        assert any("runs settings" in r for r in reasons("faults-web2")), reasons("faults-web2")
        assert len(audit("faults-web3")) == untouched  # nothing drifted there: no lock, no handover
        # Values with % reach the app as they were written (systemd would expand %h, refuse p%40ss).
        values = {"DEMO_ENVIRONMENT": "lab", "DEMO_GREETING": "100% p%40ss %h"}
        changed = deploy(playbook, version, service_environment=values)
        assert changed.returncode == 0, changed.said[-3000:]
        for name in HOSTS:
            greeting = json.loads(on(name).run("curl -fsS http://127.0.0.1:8000/").stdout)["greeting"]
            assert greeting == "100% p%40ss %h", name
        converge(playbook, version)
    assert case.failures() == 0, CASES[case.name]


def test_a_dependencys_pth_file_never_runs_as_root_and_a_locks_find_links_line_is_used(load, playbook):
    with Case(load, "a dependency's .pth file") as case:
        result = deploy(playbook, "9.5.0", asgi_lockfile=str(SOURCES / "app-9.5.0/requirements.lock"))
        assert result.returncode == 0, result.said[-3000:]
        for name in HOSTS:
            host = on(name)
            assert not host.file("/root/pth-ran-as-root").exists, name
            ran = host.run("cat /srv/demo/current/venv/pth-ran-as").stdout.split()
            builder = host.run("id -u asgi-build-demo").stdout.strip()
            assert ran and set(ran) == {builder}, (name, ran, builder)  # the build identity, and only it
        converge(playbook, GOOD[0])
    assert case.failures() == 0, CASES[case.name]


def test_a_file_system_too_small_is_refused_with_the_numbers_then_fits_once_fewer_releases_are_kept(load, playbook):
    target = other(fleet_version())
    web3 = on("faults-web3")  # its /srv is a tmpfs of its own (prepare.yml)
    kept = int(web3.run("ls /srv/demo/releases | wc -l").stdout)
    assert kept >= 4, "the cases before leave at least four releases on faults-web3; pruning to two must free two"
    free = int(web3.run("df -m --output=avail /srv | tail -1").stdout)
    filler = free - 20
    web3.run_expect([0], "fallocate -l %sM /srv/filler", str(filler))
    # A build step makes a release of the version no host keeps yet (another step, another release): it must be
    # built, so it needs room.
    tight = {"rollout_min_free_mb": 0, "converge": True, "asgi_build": "true"}
    with Case(load, "a file system too small for the next release") as case:
        try:
            before = {name: live(name) for name in HOSTS}
            refused = deploy(playbook, target, release_keep=10, **tight)
            assert refused.returncode != 0
            assert "does not fit under /srv/demo: it needs about" in refused.said, refused.said[-3000:]
            assert "release_keep" in refused.said and "Nothing was changed" in refused.said
            assert {name: live(name) for name in HOSTS} == before
            assert int(web3.run("ls /srv/demo/releases | wc -l").stdout) == kept
            fits = deploy(playbook, target, release_keep=2, **tight)
            assert fits.returncode == 0, fits.said[-3000:]
            # Pruned before the build to the newest release_keep - 1 (one), and never a release something names
            # (current, previous, a slot's link): what is left is what those name, the new release among them, and
            # at most one release besides.
            left = set(web3.run("ls /srv/demo/releases").stdout.split())
            named = {web3.run("basename $(readlink /srv/demo/%s)", link).stdout.strip()
                     for link in ("current", "previous", "blue", "green")} - {""}  # fmt: skip
            assert named <= left and len(left - named) <= 1 and len(left) < kept, (left, named, kept)
        finally:
            web3.run("rm -f /srv/filler")
        case.note(kept_before=kept, filler_mb=filler)
    converge(playbook, target)  # back to the release without a build step, for the cases after
    assert case.failures() == 0, CASES[case.name]


def test_a_canary_that_fails_more_than_the_others_goes_back_and_the_rollout_stops_with_the_numbers(load, playbook):
    version = fleet_version()
    canary_path = Load([f"http://127.0.0.1:{port}" for port in PORTS.values()], users=2, rate=40, path="/", timeout=15)
    with Case(load, "a canary that fails one route") as case, canary_path:
        result = deploy(
            playbook,
            "9.4.0",
            serial=[1, "100%"],
            rollout_pause=8,
            rollout_canary_check=True,
        )
        case.note(bad_route=canary_path.window(0, canary_path.now()))
    assert result.returncode != 0
    assert "canary check: canary faults-web1:" in result.said and "the canary goes back" in result.said, result.said[
        -3000:
    ]
    assert {live(name).rsplit("-", 1)[0] for name in HOSTS} == {version}  # the canary went back, the rest never moved
    assert case.failures() == 0, CASES[case.name]  # /version never failed, anywhere
    bad = canary_path.window(0, canary_path.now(), "127.0.0.1:18101")
    assert bad["failures"] > 0 and canary_path.window(0, canary_path.now(), "127.0.0.1:18102")["failures"] == 0


def test_a_controller_killed_mid_handover_with_ansibles_default_settings_leaves_no_host_half_switched(
    load, playbook, tmp_path
):
    target = other(fleet_version())
    (tmp_path / "ansible.cfg").write_text("")  # ansible-core's defaults: pipelining off, no ControlPersist of ours
    starting = idle_unit("faults-web2")
    with Case(load, "killed mid-handover, default settings") as case:
        # The slot that starts is known before the run, so one unit state is polled: it stays active once it
        # serves, so a slow poll on a loaded machine cannot miss its start (a handover lasts a second or two).
        killed_once(
            background_deploy(target, config=tmp_path / "ansible.cfg"),
            lambda: handing_over("faults-web2", starting),
            "faults-web2's handover",
            timeout=300,
        )
        # The host finishes the switch it started: the new slot live on the new release, current on it, and what
        # it serves is that release (the old slot, told to drain at the switch, may take one more request first).
        _wait_for(
            lambda: (
                live("faults-web2").startswith(target)
                and f"demo-{live_slot('faults-web2')}.service" == starting
                and served("faults-web2") == live("faults-web2")
            ),
            timeout=120,
            what="faults-web2 to finish its handover on its own and serve the release current names",
        )
        # It ran in a scope of its own, out of the SSH session's: nothing that ends the session reaches it.
        scopes = on("faults-web2").run("journalctl --no-pager -o cat _PID=1 --grep 'Started asgi-handover-demo-'")
        assert scopes.stdout.strip(), "the handover did not run in a scope of its own"
        converge(playbook, target)
    assert case.failures() == 0, CASES[case.name]


# -- 9. a fleet on the layout before slots moves to slots -----------------------------


BEFORE_SLOTS = SOURCES / "collection-before-slots"
LIVE_TARGETS = {"faults-web1": "127.0.0.1:18104", "faults-web2": "127.0.0.1:18105", "faults-web3": "127.0.0.1:18106"}


def live_app(version):
    """examples/live, beside the reference app: its WebSocket and event-stream clients stay connected."""
    source = SOURCES / f"live-{version}"
    return {
        "asgi_app": "live", "asgi_entrypoint": "live.app:app", "asgi_lockfile": str(source / "requirements.lock"),
        "asgi_app_source": str(source), "asgi_listen_tcp": ["0.0.0.0:8003"], "asgi_readiness_path": "/readyz",
        "service_environment": {}, "service_secrets": {}, "version": version,
    }  # fmt: skip


def draining_live(name):
    return "deactivating" in on(name).run("systemctl is-active live-blue live-green live live-next").stdout


def test_a_fleet_on_the_layout_before_slots_moves_to_slots_under_load_cutting_each_client_at_most_once(playbook):
    # The collection as it was before slots deploys live 1.0.0: <app>.service and <app>-next.service, as fleets have it.
    before = {"ANSIBLE_COLLECTIONS_PATH": f"{BEFORE_SLOTS}:{os.environ['ANSIBLE_COLLECTIONS_PATH']}"}
    old = playbook(BEFORE_SLOTS / "ansible_collections/asgi/deploy/playbooks/deploy.yml", live_app("1.0.0"), env=before)
    assert old.returncode == 0, (old.stdout + old.stderr)[-3000:]
    for name in HOSTS:
        assert on(name).file("/etc/systemd/system/live.service").is_file, name
        assert on(name).file("/etc/systemd/system/live-next.service").is_file, name
    short = Load([f"http://{t}" for t in LIVE_TARGETS.values()], users=2, rate=40, path="/readyz", timeout=15)
    with short, Clients(LIVE_TARGETS.values(), ws=3, sse=2) as clients:
        _wait_for(clients.all_connected, timeout=60, what="every client connected to 1.0.0")
        began = clients.now()
        moved = playbook(DEPLOY, live_app("2.0.0"))
        _wait_for(lambda: clients.all_connected() and set(clients.versions().values()) == {"2.0.0"}
                  and not any(draining_live(n) for n in HOSTS), timeout=120,
                  what="every client connected again to 2.0.0, no drain left")  # fmt: skip
        seen = clients.window(began)
        requests = short.window(0, short.now())
    CASES["the layout before slots, moved to slots"] = {"clients": seen, "short": requests}
    assert moved.returncode == 0, (moved.stdout + moved.stderr)[-3000:]
    assert requests["requests"] > 20 and requests["failures"] == 0, requests
    for client, what in seen.items():
        assert len(what["disconnects"]) <= 1 and what["failed"] == [], (client, what)
        assert all(d["code"] == 1012 for d in what["disconnects"] if what["kind"] == "ws"), (client, what)
        assert what["landed"] == ["2.0.0"], (client, what)
    for name in HOSTS:
        host = on(name)
        assert host.file("/etc/systemd/system/live.service").linked_to == "/etc/systemd/system/live-blue.service"
        for gone in ("live-next.service", "live-probe.socket", "live-next-probe.socket"):
            assert not host.file(f"/etc/systemd/system/{gone}").exists, (name, gone)
        events = [json.loads(line) for line in host.run("cat /srv/live/deploys.log").stdout.splitlines()]
        assert [e["strategy"] for e in events if e.get("event") == "deploy" and "strategy" in e][-1] == "upgrade"
    removed = playbook(PROJECT / "playbooks/remove.yml", live_app("2.0.0"))
    assert removed.returncode == 0, (removed.stdout + removed.stderr)[-3000:]


# -- 10. trust boundaries ----------------------------------------------------------------


# A build step as a hostile dependency's or a careless team's would be: it looks around and tries to leave things
# root would open - a link where root writes, a FIFO where root reads.
PROBE_BUILD = (
    "mkdir -p probe && id -un > probe/whoami && (ls /proc | grep -c '^[0-9]' > probe/processes) && "
    "(touch /srv/demo/outside 2>/dev/null && echo wrote > probe/outside || echo refused > probe/outside)"
)
PLANTING_BUILD = PROBE_BUILD + " && ln -s /root/clobbered release.json.tmp-1 && mkfifo venv/listen"


def test_a_build_step_sees_only_its_own_processes_writes_only_its_release_and_what_it_plants_fails_the_build(
    load, playbook
):
    version = fleet_version()
    with Case(load, "a build step that looks around, then one that plants links and a FIFO") as case:
        looked = deploy(playbook, version, converge=True, asgi_build=PROBE_BUILD)
        assert looked.returncode == 0, looked.said[-3000:]
        for name in HOSTS:
            probe = "/srv/demo/current/probe/"
            seen = {f: on(name).run("cat %s", probe + f).stdout.strip() for f in ("whoami", "processes", "outside")}
            # Its own identity; its own few processes (the shell, ls, grep), never root's or another app's.
            assert seen["whoami"] == "asgi-build-demo" and int(seen["processes"]) < 10, (name, seen)
            assert seen["outside"] == "refused" and not on(name).file("/srv/demo/outside").exists, (name, seen)
        before = {name: live(name) for name in HOSTS}
        planted = deploy(playbook, version, converge=True, asgi_build=PLANTING_BUILD, asgi_hook_show_output=True)
        case.note(said=planted.said[-600:])
    assert planted.returncode != 0
    assert "the build left what a release may not hold" in planted.said, planted.said[-3000:]
    assert "release.json.tmp-1 (a link outside venv/)" in planted.said and "venv/listen (a FIFO)" in planted.said
    assert {name: live(name) for name in HOSTS} == before
    for name in HOSTS:
        assert not on(name).file("/root/clobbered").exists, name
    converge(playbook, version)
    assert case.failures() == 0, CASES[case.name]


def test_an_app_named_like_a_system_directory_is_refused_before_anything_changes(playbook):
    for book in (DEPLOY, PROJECT / "playbooks/remove.yml"):
        refused = playbook(book, {"asgi_app": "journal", "version": "1.0.0", "asgi_purge": True})
        said = " ".join((refused.stdout + refused.stderr).split())
        assert refused.returncode != 0 and "is the name of a system directory or user" in said, said[-2000:]
    for name in HOSTS:
        assert on(name).file("/var/log/journal").is_directory, name


def test_two_apps_sharing_a_user_keep_it_until_the_last_of_them_is_removed(playbook):
    apps = {
        name: {"asgi_app": name, "asgi_user": "sharedsvc", "asgi_group": "sharedsvc", "asgi_listen_tcp": [address],
               "version": "1.0.0", "app_source": source("1.0.0")}
        for name, address in (("sharea", "127.0.0.1:8011"), ("shareb", "127.0.0.1:8012"))
    }  # fmt: skip
    for extra in apps.values():
        done = playbook(DEPLOY, extra, limit="faults-web1")
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    web1 = on("faults-web1")
    first = playbook(PROJECT / "playbooks/remove.yml", apps["sharea"], limit="faults-web1")
    said = " ".join((first.stdout + first.stderr).split())
    assert first.returncode == 0, said[-3000:]
    assert "user sharedsvc (still used by shareb" in said, said[-3000:]
    assert web1.user("sharedsvc").exists and not web1.file("/srv/sharea").exists
    last = playbook(PROJECT / "playbooks/remove.yml", apps["shareb"], limit="faults-web1")
    assert last.returncode == 0, (last.stdout + last.stderr)[-3000:]
    assert not web1.user("sharedsvc").exists and not web1.file("/srv/shareb").exists
    assert not web1.user("asgi-build-sharea").exists and not web1.user("asgi-build-shareb").exists


def test_rollbacks_without_a_version_go_further_back_and_never_to_a_release_left(load, playbook):
    """The fleet's history as a stack: good -> 3.0.0 -> 4.0.0; a rollback (-> 3.0.0; 4.0.0 is left); another good
    version ships; a rollback goes to 3.0.0 (the release before it), never to 4.0.0; a second rollback goes further
    back (to good), not forward."""
    good = fleet_version()
    other_good = other(good)
    # The cases before built many releases; the default release_keep (5) would prune good's by the third rollback,
    # which then says so and stops (tests/unit holds that refusal). Here every release of the history stays kept.
    keep = {"release_keep": 20}
    with Case(load, "rollbacks over the fleet's history") as case:
        for version in ("3.0.0", "4.0.0"):
            assert deploy(playbook, version, **keep).returncode == 0
        first = playbook(ROLLBACK)  # 4.0.0 -> 3.0.0; 4.0.0 is the release left
        assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
        assert deploy(playbook, other_good, **keep).returncode == 0  # then something else ships
        second = playbook(ROLLBACK)
        after_second = {live(name).rsplit("-", 1)[0] for name in HOSTS}
        third = playbook(ROLLBACK)
        said = " ".join((second.stdout + second.stderr).split())
        case.note(said=said[-800:], after_second=sorted(after_second))
    assert second.returncode == 0, said[-3000:]
    assert third.returncode == 0, " ".join((third.stdout + third.stderr).split())[-3000:]
    assert after_second == {"3.0.0"}, said[-2000:]  # not 4.0.0, the release left
    assert "rolled back from before: 4.0.0-" in said
    assert {live(name).rsplit("-", 1)[0] for name in HOSTS} == {good}  # further back, not forward to other_good
    assert "the release deployed before" in third.stdout
    shown = playbook(PROJECT / "playbooks/status.yml")
    left = r"Rolled back from \(never chosen by default again\): .*4\.0\.0-"
    assert re.search(left, shown.stdout), shown.stdout[-2000:]
    converge(playbook, good)
    assert case.failures() == 0, CASES[case.name]


def test_an_empty_settings_key_is_named_and_a_converging_run_repairs_it(load, playbook):
    version = fleet_version()
    web2 = on("faults-web2")
    web2.run_expect([0], "truncate -s 0 /etc/asgi-deploy/demo/settings.key")
    with Case(load, "an empty settings key") as case:
        refused = deploy(playbook, version, service_environment={"DEMO_ENVIRONMENT": "lab", "DEMO_GREETING": "x"})
        assert refused.returncode != 0
        assert "faults-web2: the settings key is damaged" in refused.said and "is empty" in refused.said
        assert "-e asgi_converge=true" in refused.said and "Nothing was changed" in refused.said
        shown = playbook(PROJECT / "playbooks/status.yml")
        assert "the settings key is damaged" in shown.stdout, shown.stdout[-2000:]
        repaired = deploy(playbook, version, converge=True)
        assert repaired.returncode == 0, repaired.said[-3000:]
    assert [e["what"] for e in audit("faults-web2") if e["event"] == "repair"] == ["settings key"]
    assert len(web2.file("/etc/asgi-deploy/demo/settings.key").content_string.strip()) == 64
    assert_converged(version)
    assert case.failures() == 0, CASES[case.name]


def test_run_inputs_typed_as_an_operator_types_them_arrive_whole_or_are_refused_with_the_form_that_works(playbook):
    version = fleet_version()
    # key=value text, as typed: numbers and booleans as strings, a list with commas.
    typed = playbook(DEPLOY, None, args=["-e", f"asgi_version={version}", "-e", f"app_source={source(version)}",
                                         "-e", "asgi_hook_timeout=20", "-e", "rollout_canary_check=false",
                                         "-e", "asgi_serial=1,100%", "-e", "asgi_converge=true"])  # fmt: skip
    said = " ".join((typed.stdout + typed.stderr).split())
    assert typed.returncode == 0, said[-3000:]
    # A list with spaces: ansible-playbook splits it; refused, showing the form that arrives whole.
    split = playbook(DEPLOY, None, args=["-e", f"asgi_version={version}", "-e", 'asgi_serial=[1, "25%", "100%"]'])
    said = " ".join((split.stdout + split.stderr).split())
    assert split.returncode != 0 and "-e asgi_serial=1,25%,100%" in said, said[-2000:]
    assert_converged(version)
