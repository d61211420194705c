"""Connections that stay open: examples/live's clients hold WebSockets and event streams through every handover.

examples/live is a dashboard backend (Starlette): browsers keep a WebSocket on /updates and a server-sent events
stream on /activity, and every message names the server's version. Here, 4 WebSocket and 2 event-stream clients per
host stay connected (reconnecting when cut) while short requests load /readyz, through: a deploy (one host at a
time), a rollback, a release that never gets ready (its gate fails), and a deploy whose controller is killed during a
handover, then run again. Per client and phase the test records disconnects, close codes, failed connects and the
version each reconnect landed on. Assertions are about behaviour: each client is cut at most once per handover,
always with a close code (WebSockets: 1012, at once; streams: at the drain deadline), no connect fails, no short
request fails, every client ends on the new release, and the rollout hands the next host over while the previous one
still drains.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from pathlib import Path

import pytest
import testinfra
from conftest import Background, _wait_for

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(PROJECT / "bench"))
from liveclients import Clients  # noqa: E402 (the clients that hold connections, shared with the benchmark)
from loadgen import Load  # noqa: E402

DEPLOY, ROLLBACK, STATUS = (PROJECT / f"playbooks/{name}.yml" for name in ("deploy", "rollback", "status"))
SOURCES = PROJECT / "build/molecule-deploy"
REPORT = PROJECT / "build/reports/live-clients.json"
HOSTS = ["deploy-web1", "deploy-web2", "deploy-web3"]
TARGETS = dict(zip(HOSTS, ["127.0.0.1:18090", "127.0.0.1:18091", "127.0.0.1:18092"], strict=True))
# Long enough that the next host's handover (a start and a gate) comes before the last one's streams are cut.
DRAIN = 15
_PHASES: dict[str, dict] = {}


def live_app(version, **extra):
    """The extra vars that describe examples/live (the inventory describes the reference app)."""
    source = SOURCES / f"live-{version}"
    return {
        "asgi_app": "live",
        "asgi_entrypoint": "live.app:app",
        "asgi_lockfile": str(source / "requirements.lock"),
        "asgi_app_source": str(source),
        "asgi_listen_tcp": ["0.0.0.0:8003"],
        "asgi_readiness_path": "/readyz",
        "asgi_readiness_timeout": 10,
        "asgi_drain_timeout": DRAIN,
        "service_environment": {},
        "service_secrets": {},
        "serial": 1,
        "version": version,
        **extra,
    }


def on(name):
    return testinfra.get_host(f"podman://{name}")


def live_slot(name):
    return on(name).run("readlink /etc/systemd/system/live.service").stdout.strip()


def draining(name):
    """A slot of the app still has processes though it is not the live one."""
    live = live_slot(name)
    states = on(name).run("systemctl is-active live-blue.service live-green.service").stdout.split()
    return any(state == "deactivating" for unit, state in zip(("live-blue.service", "live-green.service"), states,
                                                              strict=True) if unit != live)  # fmt: skip


def settled(clients, expected):
    """Between phases: every client is connected again, to the release expected, and no host drains."""
    versions = clients.versions()
    return (
        clients.all_connected() and set(versions.values()) == {expected} and not any(draining(name) for name in HOSTS)
    )


def handing_over(name):
    live = live_slot(name)
    idle = "live-green.service" if live == "live-blue.service" else "live-blue.service"
    return on(name).run("systemctl is-active %s", idle).stdout.strip() in ("activating", "active")


def killed_then_run_again(playbook):
    """deploy 2.0.0, its controller SIGKILLed once deploy-web2 hands over; the host finishes on its own; then the
    deploy a user runs next."""
    run = Background(DEPLOY, live_app("2.0.0"))
    try:
        _wait_for(lambda: handing_over("deploy-web2"), timeout=300, interval=0.05, what="deploy-web2's handover")
    finally:
        run.kill()
    _wait_for(
        lambda: not handing_over("deploy-web2") and on("deploy-web2").run("readlink /srv/live/current").stdout.strip()
        .startswith("releases/2.0.0-"), timeout=120, what="deploy-web2 to finish its handover on its own",
    )  # fmt: skip
    return playbook(DEPLOY, live_app("2.0.0"))


@pytest.fixture(scope="module")
def phases(playbook):
    if _PHASES:
        return _PHASES
    first = playbook(DEPLOY, live_app("1.0.0"))
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    steps = [
        ("deploy 2.0.0", lambda: playbook(DEPLOY, live_app("2.0.0")), "2.0.0"),
        ("rollback to 1.0.0", lambda: playbook(ROLLBACK, live_app("1.0.0")), "1.0.0"),
        ("3.0.0 never gets ready", lambda: playbook(DEPLOY, live_app("3.0.0")), "1.0.0"),
        ("controller killed mid-handover, run again", lambda: killed_then_run_again(playbook), "2.0.0"),
    ]
    short = Load([f"http://{t}" for t in TARGETS.values()], users=2, rate=40, path="/readyz", timeout=15)
    with short, Clients(TARGETS.values(), ws=4, sse=2) as clients:
        _wait_for(clients.all_connected, timeout=60, what="every client connected")
        for name, run, expected in steps:
            began, short_began = clients.now(), short.now()
            result = run()
            _wait_for(lambda expected=expected: settled(clients, expected), timeout=DRAIN + 60, interval=0.2,
                      what=f"{name}: drains over")  # fmt: skip
            ended, short_ended = clients.now(), short.now()
            _PHASES[name] = {
                "rc": result.returncode,
                "said": " ".join((result.stdout + result.stderr).split()),
                "expected": expected,
                "clients": clients.window(began, ended),
                "short": short.window(short_began, short_ended),
                "began": began,
                "ended": ended,
            }
        _PHASES["events"] = clients
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    report = {name: {k: v for k, v in phase.items() if k not in ("said",)} for name, phase in _PHASES.items()
              if name != "events"}  # fmt: skip
    REPORT.write_text(json.dumps(report, indent=2, default=str))
    return _PHASES


HANDOVERS = ["deploy 2.0.0", "rollback to 1.0.0", "controller killed mid-handover, run again"]


@pytest.mark.parametrize("name", HANDOVERS)
def test_each_client_is_cut_at_most_once_with_a_close_code_and_lands_on_the_new_release(phases, name):
    phase = phases[name]
    assert phase["rc"] == 0, phase["said"][-3000:]
    for client, seen in phase["clients"].items():
        assert len(seen["disconnects"]) <= 1, (client, seen)
        assert seen["failed"] == [], (client, seen)
        if seen["kind"] == "ws":
            # Closed by the server that drains, at once, with "service restart": never without a close frame.
            assert [d["code"] for d in seen["disconnects"]] == [1012], (client, seen)
        assert seen["landed"] and set(seen["landed"]) == {phase["expected"]}, (client, seen)


def test_a_release_that_never_gets_ready_cuts_no_client(phases):
    phase = phases["3.0.0 never gets ready"]
    assert phase["rc"] != 0 and "failed on deploy-web1 at gate" in phase["said"], phase["said"][-3000:]
    for client, seen in phase["clients"].items():
        assert seen["disconnects"] == [] and seen["failed"] == [], (client, seen)


@pytest.mark.parametrize("name", [*HANDOVERS, "3.0.0 never gets ready"])
def test_short_requests_never_fail_beside_the_held_connections(phases, name):
    short = phases[name]["short"]
    assert short["requests"] > 20 and short["failures"] == 0, short


def test_the_rollout_hands_the_next_host_over_while_the_previous_one_still_drains(phases):
    """One host at a time: a host's streams are cut at its drain deadline, after the next host's WebSockets got the
    close of that host's own handover. The drain was not on the rollout's path."""
    clients, phase = phases["events"], phases["deploy 2.0.0"]
    for earlier, later in itertools.pairwise(HOSTS):
        streams_cut = clients.first("disconnect", phase["began"], target=TARGETS[earlier], kind="sse")
        next_switched = clients.first("disconnect", phase["began"], target=TARGETS[later], kind="ws")
        assert streams_cut and next_switched, (earlier, later)
        began = phase["began"]
        assert next_switched < streams_cut, (earlier, later, next_switched - began, streams_cut - began)


def test_systemctl_status_of_the_app_shows_the_slot_that_serves(phases):
    for name in HOSTS:
        live = live_slot(name)
        status = on(name).run("systemctl status --no-pager -n0 live").stdout
        assert status.startswith(f"● {live} - live ("), (name, status)
        version = json.loads(on(name).run("curl -fsS --max-time 5 http://127.0.0.1:8003/readyz").stdout)["version"]
        assert version == "2.0.0", name


def test_status_shows_a_draining_slot_and_the_connections_it_still_holds(phases, playbook):
    """A handover of one host whose streams stay open (a drain of a minute): status names the draining slot and
    counts its connections; once the clients go, the drain ends."""
    web1 = TARGETS["deploy-web1"]
    with Clients([web1], ws=0, sse=3) as held:
        _wait_for(held.all_connected, timeout=30, what="the streams")
        moved = playbook(DEPLOY, live_app("2.0.0", asgi_drain_timeout=60), limit="deploy-web1")
        assert moved.returncode == 0, (moved.stdout + moved.stderr)[-3000:]
        shown = playbook(STATUS, live_app("2.0.0"), limit="deploy-web1")
        assert shown.returncode == 0, (shown.stdout + shown.stderr)[-3000:]
        # HOST LIVE PREVIOUS SLOT SERVING DRAINING LOCK KEPT: the old slot drains, holding the three streams.
        row = r"deploy-web1 +2\.0\.0-\S+ +\S+ +(blue|green) +active 2\.0\.0-\S+ +live-(blue|green)\.service \S+"
        row += r" \(3 conn\.\)"
        assert re.search(row, shown.stdout), shown.stdout[-3000:]
    _wait_for(lambda: not draining("deploy-web1"), timeout=30, what="the drain to end once its clients left")
