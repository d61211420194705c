"""Connections that stay open: examples/live's clients hold WebSockets and event streams through every handover.

examples/live is a dashboard backend (Starlette): browsers keep a WebSocket on /updates and a server-sent events
stream on /activity, and every message names the server's version. It sits behind the front door (proxy.yml: nginx
on each host, TLS from the lab's test CA, the app on a Unix socket only nginx reaches), and every client connects as
a browser would, over HTTPS to live.lab.test. Here, 4 WebSocket and 2 event-stream clients per
host stay connected (reconnecting when cut) while short requests load /readyz, through: a deploy (one host at a
time), a rollback, a release that never gets ready (its gate fails), and a deploy whose controller is killed during a
handover, then run again. Per client and phase the test records disconnects, close codes, failed connects and the
version each reconnect landed on. Assertions are about behaviour: each client is cut at most once per handover,
always with a close code (WebSockets: 1012, at once; streams: at the drain deadline), no connect fails, no short
request fails, every client ends on the new release, and each host's handover lets go of the host before the drain it
started ends (the drain is off the rollout's path).
"""

from __future__ import annotations

import calendar
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import testinfra
from conftest import Background, Shell, _wait_for

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(PROJECT / "bench"))
from ansible_collections.asgi.deploy.plugins.module_utils.front_door import check_through  # noqa: E402
from liveclients import Clients  # noqa: E402 (the clients that hold connections, shared with the benchmark)
from loadgen import Load  # noqa: E402

DEPLOY, ROLLBACK, STATUS, PROXY = (
    PROJECT / f"playbooks/{name}.yml" for name in ("deploy", "rollback", "status", "proxy")
)
SOURCES = PROJECT / "build/molecule-deploy"
REPORT = PROJECT / "build/reports/live-clients.json"
HOSTS = ["deploy-web1", "deploy-web2", "deploy-web3"]
# Each host's nginx (443, and 80 for the redirect), published on loopback.
TARGETS = dict(zip(HOSTS, ["127.0.0.1:18093", "127.0.0.1:18094", "127.0.0.1:18095"], strict=True))
PLAIN = dict(zip(HOSTS, ["127.0.0.1:18096", "127.0.0.1:18097", "127.0.0.1:18098"], strict=True))
NAME, CA = "live.lab.test", SOURCES / "tls/ca.pem"
HOST_CA = "/etc/ssl/asgi-lab-ca.pem"
# The old slot's streams are cut at this deadline: long after its handover let go of the host (a second or two).
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
        # Behind the front door: a Unix socket only nginx reaches.
        "asgi_listen_tcp": [],
        "asgi_listen_unix": "/run/live.sock",
        "asgi_proxy": True,
        "proxy_server_names": [NAME],
        "proxy_tls_certificate": (SOURCES / "tls/cert.pem").read_text(),
        "proxy_tls_certificate_key": (SOURCES / "tls/key.pem").read_text(),
        "proxy_gate": True,
        "proxy_gate_cafile": HOST_CA,
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


def through_nginx(name, path, *options):
    """curl on the host, through its own nginx, as a client of live.lab.test would (the lab's CA trusted)."""
    return on(name).run(
        "curl -sS --max-time 10 --cacert %s --resolve %s:443:127.0.0.1 " + " ".join(["%s"] * len(options)) + " %s",
        HOST_CA, NAME, *options, f"https://{NAME}{path}",
    )  # fmt: skip


def live_slot(name):
    return Shell.of(name).run("readlink /etc/systemd/system/live.service")


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
    return Shell.of(name).run(f"systemctl is-active {idle}") in ("activating", "active")


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
    door = playbook(PROXY, live_app("1.0.0"))
    assert door.returncode == 0, (door.stdout + door.stderr)[-3000:]
    first = playbook(DEPLOY, live_app("1.0.0"))
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    steps = [
        ("deploy 2.0.0", lambda: playbook(DEPLOY, live_app("2.0.0")), "2.0.0"),
        ("rollback to 1.0.0", lambda: playbook(ROLLBACK, live_app("1.0.0")), "1.0.0"),
        ("3.0.0 never gets ready", lambda: playbook(DEPLOY, live_app("3.0.0")), "1.0.0"),
        ("controller killed mid-handover, run again", lambda: killed_then_run_again(playbook), "2.0.0"),
    ]
    short = Load([f"https://{t}" for t in TARGETS.values()], users=2, rate=40, path="/readyz", timeout=15,
                 tls_name=NAME, tls_ca=str(CA))  # fmt: skip
    with short, Clients(TARGETS.values(), ws=4, sse=2, tls_name=NAME, tls_ca=str(CA)) as clients:
        _wait_for(clients.all_connected, timeout=60, what="every client connected")
        for name, run, expected in steps:
            began, short_began, began_wall = clients.now(), short.now(), time.time()
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
                "began_wall": began_wall,
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


def epoch(stamp):
    """An audit line's time (UTC, to the second) in seconds since the epoch."""
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def test_each_hosts_handover_lets_go_of_the_host_before_the_drain_it_started_ends(phases):
    """The drain is off the rollout's path: each host's handover ended - its lock released in that same call, so the
    rollout could go on - before the old slot's streams were cut at their drain deadline."""
    clients, phase = phases["events"], phases["deploy 2.0.0"]
    since = int(phase["began_wall"])
    for name in HOSTS:
        cut = clients.first("disconnect", phase["began"], target=TARGETS[name], kind="sse")
        assert cut, name
        # The hosts share the controller's clock (one kernel): the cut on it, from the clients' own clock.
        cut_at = phase["began_wall"] + (cut - phase["began"])
        events = [json.loads(line) for line in Shell.of(name).run("cat /srv/live/deploys.log").splitlines()]
        run = next(e["run"] for e in events if e["event"] == "deploy" and e.get("to", "").startswith("2.0.0-")
                   and epoch(e["time"]) >= since)  # fmt: skip
        unlocked = next(e for e in events if e["event"] == "unlock" and e["run"] == run)
        # The audit line says the second the host was let go; the streams were cut after that second ended.
        assert epoch(unlocked["time"]) + 1 <= cut_at, (name, unlocked, cut_at - since)


def test_systemctl_status_of_the_app_shows_the_slot_that_serves(phases):
    for name in HOSTS:
        live = live_slot(name)
        status = on(name).run("systemctl status --no-pager -n0 live").stdout
        assert status.startswith(f"● {live} - live ("), (name, status)
        version = json.loads(through_nginx(name, "/readyz").stdout)["version"]
        assert version == "2.0.0", name


def test_status_shows_a_draining_slot_and_the_connections_it_still_holds(phases, playbook):
    """A handover of one host whose streams stay open (a drain of a minute): status names the draining slot and
    counts its connections; once the clients go, the drain ends."""
    web1 = TARGETS["deploy-web1"]
    with Clients([web1], ws=0, sse=3, tls_name=NAME, tls_ca=str(CA)) as held:
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


def test_every_host_answers_https_with_http2_and_redirects_http(phases):
    for name in HOSTS:
        http2 = through_nginx(name, "/readyz", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}")
        assert http2.stdout == "2 200", (name, http2.stdout, http2.stderr)
        plain = on(name).run(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' -H 'Host: {NAME}' "
                             "'http://127.0.0.1/readyz?x=1'")  # fmt: skip
        assert plain.stdout == f"301 https://{NAME}/readyz?x=1", (name, plain.stdout)
    # From outside the hosts, as a browser would: the lab's CA trusted, the name checked (SNI and Host say it).
    for target in TARGETS.values():
        assert check_through(NAME, int(target.split(":")[1]), "/readyz", [200], cafile=str(CA)) == 200, target


def test_the_app_logs_the_address_of_the_client_not_the_proxys(phases):
    """A request from web2 to web1's front door: web1's app logs web2's address (X-Forwarded-For, trusted on the
    Unix socket only nginx reaches)."""
    web1, web2 = on("deploy-web1"), on("deploy-web2")
    address1, address2 = (h.run("hostname -I").stdout.split()[0] for h in (web1, web2))
    marker = f"/readyz?from-web2={os.getpid()}"
    asked = web2.run("curl -fsS --max-time 10 --cacert %s --resolve %s:443:%s %s", HOST_CA, NAME, address1,
                     f"https://{NAME}{marker}")  # fmt: skip
    assert asked.rc == 0, asked.stderr

    def logged():
        lines = web1.run("journalctl -t live --no-pager -o cat --since -5min").stdout.splitlines()
        return [line for line in lines if f"from-web2={os.getpid()}" in line]

    lines = _wait_for(logged, timeout=30, what="the request in web1's journal")
    assert any(address2 in line for line in lines) and not any("127.0.0.1" in line for line in lines), lines


def test_the_front_doors_of_two_apps_share_each_hosts_nginx_by_name(phases):
    """live here, and the Django site of test_front_door: one nginx per host, a file per app, routed by name."""
    for name in HOSTS:
        host = on(name)
        assert host.run("nginx -t").rc == 0, name
        sites = set(host.run("ls /etc/nginx/sites-enabled").stdout.split())
        assert {"asgi-live.conf", "asgi-site.conf"} <= sites, (name, sites)
