"""A fleet of 100 hosts on the controller side: the decisions a run makes over every host's state - who goes on
when two runs meet, where a rollback goes, what status and the summary say, the deploy metrics - on the state 100
hosts report, with hosts' clocks up to ten minutes apart (the fleet's history is ordered by the controller's clock).
Behaviour only: which hosts, which release, how many lines and runs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.asgi.deploy.plugins.plugin_utils import messages, metrics, moves

HOSTS = [f"web{n:03d}" for n in range(1, 101)]
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MOVE_KEYS = ("event", "run", "run_started", "time", "from", "to")
# The fleet's history, run by run: (run id in start order, operation, release, hosts it moved).
HISTORY = [
    ("01a0000000000001", "deploy", "1.0.0-aaaa0001", HOSTS),
    ("01a0000000000002", "deploy", "1.1.0-aaaa0002", HOSTS),
    ("01a0000000000003", "deploy", "1.2.0-aaaa0003", HOSTS),
    ("01a0000000000004", "rollback", "1.1.0-aaaa0002", HOSTS),  # 1.2.0 is left
    ("01a0000000000005", "deploy", "1.3.0-aaaa0005", HOSTS),
    ("01a0000000000006", "deploy", "1.4.0-aaaa0006", HOSTS[:25]),  # a rollout stopped after a quarter
]


def audit_lines(host, skew):
    lines = []
    for position, (run, operation, release, moved) in enumerate(HISTORY):
        if host not in moved:
            continue
        started = T0 + timedelta(hours=position)
        when = started + timedelta(seconds=HOSTS.index(host) * 2) + skew  # the host's own, skewed clock
        before = next((r for _run, _op, r, m in reversed(HISTORY[:position]) if host in m), "")
        lines.append({"event": operation, "run": run, "run_started": started.timestamp(), "result": "success",
                      "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "from": before, "to": release, "host": host,
                      "duration_s": 2.0})  # fmt: skip
    return lines


@pytest.fixture(scope="module")
def states():
    rng = random.Random(100)  # noqa: S311 (the same fleet every run; nothing secret)
    found = {}
    for host in HOSTS:
        skew = timedelta(seconds=rng.randint(-600, 600))
        history = audit_lines(host, skew)
        live = history[-1]["to"]
        kept = sorted({line["to"] for line in history})
        found[host] = {
            "live": live,
            "previous": history[-2]["to"] if len(history) > 1 else "",
            "live_slot": "blue",
            "serving": {"state": "active", "release": live},
            "slots": {"blue": {"state": "active", "release": live}, "green": {"state": "inactive", "release": ""}},
            "kept": [{"id": r, "version": r.split("-")[0], "interpreter": True} for r in kept],
            "history": [{k: line[k] for k in MOVE_KEYS} for line in history],
            "recent": history[-2:],
            "lock": None,
            "settings_key": "ok",
        }
    return found


def test_of_two_runs_meeting_on_100_hosts_the_later_yields_and_the_earlier_stops_only_where_it_never_let_go(states):
    run, later = "01b0000000000010", "01b0000000000020"
    results = {}
    for host in HOSTS:
        state = {"assessment": {"needed": True, "reasons": ["release"]}}
        results[host] = {"host_state": state, "locked": True, "held_by": None}
    round_ = moves.lock_round(HOSTS, results, run, "1.5.0-bbbb0001")
    assert round_["yield_to"] is None and len(round_["pending"]) == 100
    # Hosts the later run still held after this run's round trip waited for it: this run stops, naming it.
    for index, host in enumerate(HOSTS):
        if index % 7 == 0:
            results[host] = {**results[host], "locked": False, "held_by": {"run": later, "actor": "ci@runner"}}
    stuck = moves.lock_round(HOSTS, results, run, "1.5.0-bbbb0001")
    assert stuck["yield_to"]["run"] == later and stuck["yield_to"]["waited"] and len(stuck["held"]) == 15
    # The later run, meeting the same fleet, yields to the earlier one, whatever it took.
    results[HOSTS[1]] = {"host_state": {}, "locked": False, "held_by": {"run": run}}
    assert moves.lock_round(HOSTS, results, later, "1.5.0-bbbb0001")["yield_to"]["run"] == run


def test_a_rollback_of_100_hosts_steps_back_over_the_history_every_host_ran(states):
    # 1.4.0 ran on a quarter of the fleet only: one step back for the fleet is 1.3.0; 1.2.0 was rolled back from.
    stack, left = moves.history_stack(states)
    assert stack[-1] == "1.4.0-aaaa0006" and left == {"1.2.0-aaaa0003"}
    plan = moves.rollback_plan(states)
    assert plan["target"] == "1.3.0-aaaa0005"
    assert plan["pending"] == HOSTS[:25] and len(plan["moves"]) == 25
    runs = moves.fleet_runs(states)
    assert [r["run"] for r in runs] == [h[0] for h in HISTORY]  # the controller's order, not the hosts' clocks
    assert [len(r["hosts"]) for r in runs] == [100, 100, 100, 100, 100, 25]


def test_status_of_100_hosts_is_one_row_each_and_names_what_needs_a_look(states):
    shown = dict(states)
    shown["web042"] = {**states["web042"], "settings_key": "empty"}
    shown["web077"] = {**states["web077"], "maintenance": {"since": "2026-11-02T15:00:00Z"}}
    lines = messages.status_lines(shown)
    rows = [line for line in lines if line.startswith("web")]
    assert len([r for r in rows if "  blue  " in r]) == 100
    assert any(line.startswith("web042: ") for line in lines)
    assert any(line.startswith("Maintenance: ON on web077 ") for line in lines)
    assert any(line.startswith("Rolled back from (never chosen by default again): 1.2.0-aaaa0003") for line in lines)


def test_the_summary_of_a_deploy_to_100_hosts_groups_them_by_move(states):
    results = {h: {"changed": i < 60, "from": states[h]["live"], "to": "1.5.0-bbbb0001", "strategy": "handover",
                   "duration_s": 1.5} for i, h in enumerate(HOSTS)}  # fmt: skip
    lines = messages.summary_lines("deploy", results, states, started=1000.0, now=1038.0)
    assert lines[0] == "deploy: 60 host(s) changed in 38 s:"
    # Two groups: the 25 hosts on 1.4.0 and the 35 others on 1.3.0; the 40 unchanged named once.
    assert sum(1 for line in lines if " -> 1.5.0-bbbb0001 (handover): " in line) == 2
    assert lines[-1].startswith("  already there: ") and lines[-1].count("web") == 40


def test_the_deploy_metrics_of_100_hosts_count_runs_not_host_lines(states):
    events = [line for host in HOSTS for line in audit_lines(host, timedelta(0))]
    figures = metrics.metrics(events, period="day")
    assert figures["deploys"] == 5 and figures["rollbacks"] == 1
    assert len(events) == 525 and figures["change_failure_rate"] == 0.2  # 1.2.0, undone by a rollback
