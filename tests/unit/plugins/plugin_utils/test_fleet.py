"""Fleet-wide decisions: each host's move, one rollback target from the audited history, who may take a
lock over, and what a run prints."""

from __future__ import annotations

import json

import pytest
from ansible_collections.asgi.deploy.plugins.plugin_utils import fleet
from ansible_collections.asgi.deploy.plugins.plugin_utils.fleet import FleetError, rollback_plan


def host(live, previous="", kept=None, history=()):
    kept = kept if kept is not None else [r for r in (previous, live) if r]
    return {
        "live": live,
        "previous": previous,
        "kept": [{"id": r, "version": r.split("-")[0], "built_at": r} for r in kept],
        "history": [{"time": f"2026-11-0{n}T00:00:00Z", "to": r} for n, r in history],
    }


def deployed(*releases):
    """An audit history: the releases deployed, one a day."""
    return list(enumerate(releases, 1))


def test_a_deploy_moves_the_hosts_that_need_it_and_the_first_of_them_goes_first():
    states = {
        "web1": {"assessment": {"needed": False, "reasons": []}},
        "web2": {"assessment": {"needed": True, "reasons": ["release a -> b"]}},
        "web3": {"assessment": {"needed": True, "reasons": ["first deploy"]}},
    }
    moves = fleet.deploy_moves(["web1", "web2", "web3"], states, "b")
    assert moves["anchor"] == "web2" and moves["pending"] == ["web2", "web3"]
    assert moves["moves"]["web1"] == {"release": "b", "pending": False, "reasons": []}
    assert fleet.deploy_moves(["web1"], {"web1": {"assessment": {"needed": False}}}, "b")["anchor"] == ""


def test_a_rollback_without_a_version_steps_back_in_the_audited_history_never_forward():
    history = deployed("1-x", "2-x", "3-x")
    states = {h: host("3-x", "2-x", kept=["1-x", "2-x", "3-x"], history=history) for h in ("a", "b")}
    plan = rollback_plan(states)
    assert plan["target"] == "2-x" and plan["pending"] == ["a", "b"]
    assert "the release deployed before 3-x (1-x -> 2-x -> 3-x)" in plan["message"]
    # After that rollback the hosts run 2-x and `previous` points at 3-x: the next step back is 1-x, not 3-x.
    stepped = {h: host("2-x", "3-x", kept=["1-x", "2-x", "3-x"], history=history) for h in ("a", "b")}
    assert rollback_plan(stepped)["target"] == "1-x"


def test_a_fleet_a_failed_deploy_left_half_way_goes_back_to_where_the_rest_still_is():
    states = {
        "a": host("3-x", "2-x", kept=["2-x", "3-x"], history=deployed("1-x", "2-x", "3-x")),
        "b": host("2-x", "1-x", kept=["1-x", "2-x"], history=deployed("1-x", "2-x")),
    }
    plan = rollback_plan(states)
    assert plan["target"] == "2-x" and plan["moves"] == [{"host": "a", "release": "2-x"}]
    assert "already there: b" in plan["message"]


def test_a_release_only_some_hosts_ran_is_no_step_back_for_the_fleet():
    # 3-x stopped half way on a (on_failure=stop), then 4-x went everywhere: one step back is 2-x, not 3-x.
    states = {
        "a": host("4-x", "3-x", kept=["2-x", "3-x", "4-x"], history=deployed("1-x", "2-x", "3-x", "4-x")),
        "b": host("4-x", "2-x", kept=["2-x", "3-x", "4-x"], history=[(1, "1-x"), (2, "2-x"), (5, "4-x")]),
    }
    assert rollback_plan(states)["target"] == "2-x"
    newcomer = {**states, "c": host("4-x", kept=["4-x"], history=[(5, "4-x")])}
    with pytest.raises(FleetError, match="no release before 4-x ran on every host"):
        rollback_plan(newcomer)


def test_a_rollback_with_nothing_earlier_or_no_history_asks_for_a_version():
    with pytest.raises(FleetError, match="first release in the fleet's audited history"):
        rollback_plan({"a": host("1-x", history=deployed("1-x"))})
    with pytest.raises(FleetError, match="give -e asgi_version=V"):
        rollback_plan({"a": host("1-x")})


def test_a_version_picks_the_release_every_host_keeps():
    states = {"a": host("2-x", kept=["1-x", "2-x"]), "b": host("2-x", kept=["1-x", "2-x"])}
    plan = rollback_plan(states, "1")
    assert plan["target"] == "1-x" and "version 1, as asked" in plan["message"]


def test_a_version_some_host_does_not_keep_is_refused_listing_what_it_keeps():
    states = {"a": host("2-x", kept=["1-x", "2-x"]), "b": host("2-x", kept=["2-x"])}
    with pytest.raises(FleetError, match=r"version 1 is not kept on b; kept versions: 2 "):
        rollback_plan(states, "1")


def test_a_previous_release_that_was_pruned_somewhere_is_refused():
    history = deployed("1-x", "2-x")
    states = {"a": host("2-x", "1-x", history=history), "c": host("2-x", "1-x", kept=["2-x"], history=history)}
    with pytest.raises(FleetError, match="no longer kept on c"):
        rollback_plan(states)


def test_rollback_moves_have_the_shape_of_a_deploys():
    states = {h: host("2-x", "1-x", history=deployed("1-x", "2-x")) for h in ("a", "b")}
    moves = fleet.rollback_moves(["b", "a"], states)
    assert moves["anchor"] == "b" and moves["moves"]["a"]["release"] == "1-x" and moves["moves"]["a"]["pending"]


def test_the_status_table_fits_its_data_and_says_what_needs_a_look():
    state = host("2-x", "1-x")
    state.update(
        live_slot="green",
        serving={"unit": "demo-green.service", "active": "active", "sub": "running", "pid": 5, "release": "2-x"},
        slots={
            "blue": {"unit": "demo-blue.service", "active": "deactivating", "sub": "stop-sigterm", "pid": 6,
                     "release": "1-x", "draining": True, "connections": 12},
            "green": {"unit": "demo-green.service", "active": "active", "release": "2-x", "draining": False},
        },
        lock={"actor": "ops", "run": "r1", "operation": "deploy", "version": "3", "age_s": 75},
        interrupted=["demo-blue.service is running (release 3-x) but is not the live slot"],
        busy="4242",
        recent=[
            {"time": "2026-11-26T10:00:00Z", "event": "deploy", "from": "1-x", "to": "2-x", "strategy": "handover",
             "result": "success"},
            {"time": "2026-11-26T10:05:00Z", "event": "force_unlock", "actor": "ops"},
        ],
    )  # fmt: skip
    lines = fleet.status_lines({"web1.example.net": state, "w2": host("2-x", "1-x")})
    header, short, long = lines[:3]
    assert header.split() == ["HOST", "LIVE", "PREVIOUS", "SLOT", "SERVING", "DRAINING", "LOCK", "KEPT"]
    assert "green  active 2-x  demo-blue.service 1-x (12 conn.)" in long
    assert long.startswith("web1.example.net  2-x   1-x ") and short.startswith("w2                2-x")
    assert header.index("LIVE") == long.index("2-x")  # columns as wide as their widest cell
    text = "\n".join(lines)
    assert "web1.example.net: deploy lock held by ops (deploy 3), run r1, 75s ago" in text
    assert "web1.example.net: demo-blue.service is running (release 3-x) but is not the live slot" in text
    assert "a build, hook or handover is running on the host now (pid 4242)" in text
    assert "1-x -> 2-x handover success" in text and "force_unlock" in text
    data = fleet.fleet_status({"w2": host("2-x", "1-x")})
    assert json.loads(json.dumps(data))["w2"]["previous"] == "1-x"


def test_a_lock_is_a_dead_runs_only_when_this_controller_took_it_and_its_process_is_gone(tmp_path):
    (tmp_path / "10").mkdir()
    (tmp_path / "10/cmdline").write_bytes(b"python\0/usr/bin/ansible-playbook\0deploy.yml\0")
    (tmp_path / "11").mkdir()
    (tmp_path / "11/cmdline").write_bytes(b"vim\0")
    mine = {"controller_id": "me", "run": "r9"}
    assert fleet.dead_run({**mine, "pid": 10}, me="me", proc=str(tmp_path)) == ""  # still running
    assert fleet.dead_run({**mine, "pid": 11}, me="me", proc=str(tmp_path)) == "r9"  # pid reused by something else
    assert fleet.dead_run({**mine, "pid": 12}, me="me", proc=str(tmp_path)) == "r9"  # gone
    assert fleet.dead_run({"controller_id": "other", "pid": 12, "run": "r9"}, me="me", proc=str(tmp_path)) == ""
    assert fleet.dead_run(None, me="me") == ""
    assert fleet.dead_run({**mine, "pid": 12}, me="", proc=str(tmp_path)) == ""  # no identity here


def test_a_controller_is_its_machine_id_boot_id_host_name_and_pid_namespace(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "proc/sys/kernel/random").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("boot-1\n")
    (tmp_path / "etc/machine-id").write_text("")
    assert fleet.controller_id(str(tmp_path)) == ""  # an empty machine id never counts as "this controller"
    (tmp_path / "etc/machine-id").write_text("m1\n")
    first = fleet.controller_id(str(tmp_path))
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("boot-2\n")
    assert first and fleet.controller_id(str(tmp_path)) != first  # rebooted: another controller


def test_whose_lock_a_run_may_take_over():
    holder = {"run": "r1", "controller_id": "elsewhere", "pid": 1}
    assert fleet.take_over(holder) == ""  # alive or not, not ours to judge
    assert fleet.take_over(holder, "r1") == "r1"  # the user named it
    assert fleet.take_over(holder, "all") == "r1"
    assert fleet.take_over(None, "all") == ""


def test_the_summary_says_who_went_where_in_how_long_in_a_few_lines():
    results = {
        "web1": {"changed": True, "from": "1.3.2-a", "to": "1.4.0-b", "strategy": "handover", "duration_s": 4.2},
        "web2": {"changed": True, "from": "1.3.2-a", "to": "1.4.0-b", "strategy": "handover", "duration_s": 4.0},
    }
    lines = fleet.summary_lines("deploy", results, {"web1": {}, "web2": {}, "web3": {}}, started=100, now=138)
    assert lines == [
        "deploy: 2 host(s) changed in 38 s:",
        "  1.3.2-a -> 1.4.0-b (handover): web1 4.2 s, web2 4.0 s",
        "  already there: web3",
    ]
    assert fleet.summary_lines("deploy", {}, {"web1": {}}, 100, 103) == [
        "deploy: no host needed a change (1 checked, 3 s)."
    ]


def test_problems_are_said_once_with_the_hosts_that_have_them():
    grouped = fleet.grouped_problems(
        ["web1: asgi_readiness_path must start with /", "web2: asgi_readiness_path must start with /"]
    )
    assert grouped == ["asgi_readiness_path must start with / (web1, web2)"]


def test_a_failure_is_lines_with_its_own_words_first_then_the_fleet_then_the_journal():
    failed = {"msg": "deploy of 2-x failed on web2 at gate next: boom.", "journal": ["line 1", "line 2"]}
    done = fleet.outcome(
        {"web1": {"result": "success", "from": "1-x"}, "web2": {"result": "reverted", "from": "1-x"}},
        [{"__rollout_item": "web1"}],
    )
    assert done["switched"] == ["web1"] and done["went_back"] == ["web1"] and done["stayed"] == []
    lines = fleet.failure_lines("deploy", "roll", failed, "web2", done)
    assert lines == [
        "deploy: deploy of 2-x failed on web2 at gate next: boom.",
        "Hosts not yet reached were not changed.",
        "Taken back to what they ran (on_failure=revert): web1.",
        "Journal of the instance that failed:",
        "line 1",
        "line 2",
    ]
    planned = fleet.failure_lines("deploy", "plan", {"msg": "deploy: bad input", "problems": ["x (web1)"]})
    assert planned == ["deploy: bad input", "  - x (web1)", "Nothing was changed."]


def test_verify_fails_on_a_finding_or_a_host_that_could_not_be_verified():
    as_built = {"releases": {"1.0.0": {"seconds": 0.5}}, "findings": []}
    assert not fleet.verify_failed({"web1": as_built, "web2": as_built})
    found = {"releases": {"1.0.0": {}}, "findings": ["1.0.0: venv/bin/x modified"]}
    assert fleet.verify_failed({"web1": as_built, "web2": found})
    # failed_when: false leaves failed false: a host whose module failed has a msg and no releases.
    assert fleet.verify_failed({"web1": as_built, "web2": {"failed": False, "msg": "no such app"}})
    assert fleet.verify_lines({"web2": {"failed": False, "msg": "no such app"}}) == ["web2: no such app"]
    assert fleet.verify_lines({"web2": found}) == ["web2: 1.0.0: venv/bin/x modified"]
