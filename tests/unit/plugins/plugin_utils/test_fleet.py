"""Fleet-wide decisions: each host's move, one rollback target from the audited history, who may take a
lock over, and what a run prints."""

from __future__ import annotations

import json

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import locking
from ansible_collections.asgi.deploy.plugins.plugin_utils import messages, moves, processes
from ansible_collections.asgi.deploy.plugins.plugin_utils.moves import FleetError, rollback_plan


def host(live, previous="", kept=None, history=()):
    kept = kept if kept is not None else [r for r in (previous, live) if r]
    return {
        "live": live,
        "previous": previous,
        "kept": [{"id": r, "version": r.split("-")[0], "built_at": r} for r in kept],
        "history": [move(*item) for item in history],
    }


def move(n, release, event="deploy", skew=0):
    """Run n's successful move of a host to ``release``: the controller started run n at n (seconds); the host's
    clock says what it says (``skew``)."""
    return {"event": event, "run": f"run{n:02d}", "run_started": float(n), "to": release,
            "time": f"2026-11-0{1 + (n + skew) % 9}T00:00:00Z"}  # fmt: skip


def deployed(*releases):
    """An audit history: the releases deployed, one a day."""
    return list(enumerate(releases, 1))


def round_result(needed, locked=False, held_by=None):
    return {"locked": locked, "held_by": held_by, "host_state": {"assessment": {"needed": needed, "reasons": []}}}


def test_after_the_first_round_trip_the_hosts_it_locked_change_and_the_others_are_done():
    results = {"web1": round_result(False), "web2": round_result(True, locked=True), "web3": {"skipped": True}}
    found = moves.lock_round(["web1", "web2", "web3"], results, "0000000000ff0001", "b")
    assert found["pending"] == ["web2"] and found["yield_to"] is None
    assert found["moves"]["web1"] == {"release": "b", "pending": False, "reasons": []}


def test_of_two_runs_that_met_the_later_one_yields_and_the_earlier_stops_only_if_it_never_let_go():
    earlier, later = "000000000100aaaa", "000000000200bbbb"
    # earlier holds web1, later got web2 first: the later run sees the earlier one and yields.
    for_later = {"web1": round_result(True, held_by={"run": earlier}), "web2": round_result(True, locked=True)}
    theirs = moves.lock_round(["web1", "web2"], for_later, later, "b")
    assert theirs["yield_to"] == {"run": earlier}
    assert "deploy lock held by run 000000000100aaaa" in processes.lock_message(theirs["yield_to"])
    assert "it started first and goes on" in processes.lock_message(theirs["yield_to"])
    # The earlier run's round trip waited for the later one to let go (the lock module): it goes on.
    for_earlier = {"web1": round_result(True, locked=True), "web2": round_result(True, locked=True)}
    mine = moves.lock_round(["web1", "web2"], for_earlier, earlier, "b")
    assert mine["yield_to"] is None and mine["pending"] == ["web1", "web2"]
    # A later run still holding web2 after that wait stops the earlier one, saying so.
    for_earlier["web2"] = round_result(True, held_by={"run": later})
    stuck = moves.lock_round(["web1", "web2"], for_earlier, earlier, "b")
    assert stuck["yield_to"] == {"run": later, "waited": True}
    assert "started after this run but did not let go within 120s" in processes.lock_message(stuck["yield_to"])
    # An unreadable lock names no run: nobody goes past it without -e asgi_force_unlock.
    blocked = moves.lock_round(["web1"], {"web1": round_result(True, held_by={"run": ""})}, earlier, "b")
    assert blocked["yield_to"] == {"run": ""}


def test_runs_whose_ids_do_not_sort_by_time_meet_in_the_order_their_locks_say_they_started():
    # Job slices share a run id of their own choosing (awx-12): the start time each lock records decides.
    holder = {"run": "000000000200bbbb", "started": 2000.0}
    assert locking.later(holder, "awx-12", 1000.0) and not locking.later(holder, "awx-12", 3000.0)
    for_sliced = {"web1": round_result(True, locked=True), "web2": round_result(True, held_by=holder)}
    assert moves.lock_round(["web1", "web2"], for_sliced, "awx-12", "b", started=1000.0)["yield_to"]["waited"]
    later = moves.lock_round(["web1", "web2"], for_sliced, "awx-12", "b", started=3000.0)
    assert later["yield_to"] == holder


def test_a_host_another_slice_of_the_run_holds_stops_this_slice_naming_the_overlap():
    other_slice = {"run": "awx-12", "pid": 41, "controller": "ctl-b", "started": 900.0}
    results = {"web1": round_result(True, locked=True), "web2": round_result(True, held_by=other_slice)}
    found = moves.lock_round(["web1", "web2"], results, "awx-12", "b", started=1000.0)
    assert found["yield_to"]["other_slice"]
    said = processes.lock_message(found["yield_to"])
    assert "another slice of this run" in said and "a host belongs to one slice only" in said


def test_a_rollback_in_slices_goes_to_the_release_it_pins():
    states = {h: {"live": "1.1.0-bbbbbbbb", "kept": [{"id": "1.0.0-aaaaaaaa", "version": "1.0.0"}],
                  "history": []} for h in ("web1", "web2")}  # fmt: skip
    plan = moves.rollback_plan(states, release="1.0.0-aaaaaaaa")
    assert plan["target"] == "1.0.0-aaaaaaaa" and plan["pending"] == ["web1", "web2"] and "pinned" in plan["why"]
    with pytest.raises(moves.FleetError, match=r"not of version 2\.0\.0"):
        moves.rollback_plan(states, version="2.0.0", release="1.0.0-aaaaaaaa")
    with pytest.raises(moves.FleetError, match="no longer kept"):
        moves.rollback_plan(states, release="0.9.0-cccccccc")


def test_a_rollback_without_a_version_steps_back_in_the_audited_history_never_forward():
    history = deployed("1-x", "2-x", "3-x")
    states = {h: host("3-x", "2-x", kept=["1-x", "2-x", "3-x"], history=history) for h in ("a", "b")}
    plan = rollback_plan(states)
    assert plan["target"] == "2-x" and plan["pending"] == ["a", "b"]
    assert "the release deployed before 3-x (history: 1-x -> 2-x -> 3-x)" in plan["message"]
    # After that rollback the hosts run 2-x and `previous` points at 3-x: the next step back is 1-x, not 3-x.
    back = [*history, (4, "2-x", "rollback")]
    stepped = {h: host("2-x", "3-x", kept=["1-x", "2-x", "3-x"], history=back) for h in ("a", "b")}
    assert rollback_plan(stepped)["target"] == "1-x"


def test_a_release_a_rollback_left_is_never_chosen_again_by_default():
    # 5.0.0 -> 5.0.1 -> 5.0.2, rollback (to 5.0.1), deploy 5.0.3, rollback: to 5.0.1, which ran before 5.0.3.
    history = [(1, "5.0.0-x"), (2, "5.0.1-x"), (3, "5.0.2-x"), (4, "5.0.1-x", "rollback"), (5, "5.0.3-x")]
    kept = ["5.0.0-x", "5.0.1-x", "5.0.2-x", "5.0.3-x"]
    states = {h: host("5.0.3-x", "5.0.1-x", kept=kept, history=history) for h in ("a", "b")}
    plan = rollback_plan(states)
    assert plan["target"] == "5.0.1-x", plan["message"]
    assert "rolled back from before: 5.0.2-x" in plan["message"]
    assert moves.history_stack(states) == (["5.0.0-x", "5.0.1-x", "5.0.3-x"], {"5.0.2-x"})
    shown = messages.status_table(states)
    assert "History (a rollback without a version goes one step down): 5.0.0-x -> 5.0.1-x -> 5.0.3-x" in shown
    assert "Rolled back from (never chosen by default again): 5.0.2-x" in shown


def test_the_history_is_the_controllers_order_of_runs_not_the_hosts_clocks():
    # Host b's clock runs days ahead: its lines' times would put 2-x after 3-x.
    a = [(1, "1-x"), (2, "2-x"), (3, "3-x")]
    b = [(1, "1-x", "deploy", 0), (2, "2-x", "deploy", 5), (3, "3-x", "deploy", 0)]
    states = {"a": host("3-x", "2-x", kept=["1-x", "2-x", "3-x"], history=a),
              "b": host("3-x", "2-x", kept=["1-x", "2-x", "3-x"], history=b)}  # fmt: skip
    assert moves.history_stack(states)[0] == ["1-x", "2-x", "3-x"]
    assert rollback_plan(states)["target"] == "2-x"


def test_a_deploy_its_own_run_took_back_is_no_step_in_the_history():
    history = [(1, "1-x"), (2, "2-x"), (3, "3-x"), (3, "2-x", "revert")]
    states = {"a": host("2-x", "1-x", kept=["1-x", "2-x", "3-x"], history=history)}
    assert moves.history_stack(states)[0] == ["1-x", "2-x"]
    assert rollback_plan(states)["target"] == "1-x"


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
        "b": host("4-x", "2-x", kept=["2-x", "3-x", "4-x"], history=[(1, "1-x"), (2, "2-x"), (4, "4-x")]),
    }
    assert rollback_plan(states)["target"] == "2-x"
    newcomer = {**states, "c": host("4-x", kept=["4-x"], history=[(4, "4-x")])}
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


def test_a_rollback_reads_every_host_under_its_lock_moves_those_not_on_the_target_and_frees_the_others():
    history = deployed("1-x", "2-x")
    back, there = host("2-x", "1-x", history=history), host("1-x", "2-x", history=history)
    results = {
        h: {"locked": True, "held_by": None, "host_state": s} for h, s in (("b", back), ("a", back), ("c", there))
    }
    found = moves.rollback_round(["b", "a", "c"], results, "000000000200bbbb")
    assert found["target"] == "1-x" and found["pending"] == ["b", "a"] and found["unneeded"] == ["c"]
    assert found["moves"]["a"] == {"release": "1-x", "pending": True, "reasons": ["release 2-x -> 1-x"]}
    assert not found["moves"]["c"]["pending"] and found["yield_to"] is None
    assert found["message"].startswith("rollback: every host goes to 1-x") and "already there: c" in found["message"]
    # A host a run that started earlier holds, and that must move, makes this rollback yield to it.
    results["a"] = {"locked": False, "held_by": {"run": "000000000100aaaa"}, "host_state": back}
    assert moves.rollback_round(["b", "a", "c"], results, "000000000200bbbb")["yield_to"] == {"run": "000000000100aaaa"}
    # ...but not one that needs no move.
    results["a"], results["c"] = (
        results["c"],
        {"locked": False, "held_by": {"run": "000000000100aaaa"}, "host_state": there},
    )
    calm = moves.rollback_round(["b", "a", "c"], results, "000000000200bbbb")
    assert calm["yield_to"] is None and calm["pending"] == ["b"] and calm["unneeded"] == ["a"]
    with pytest.raises(FleetError, match="asgi_version"):
        moves.rollback_round(["a"], {"a": {"locked": True, "host_state": host("2-x")}}, "000000000200bbbb")


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
    lines = messages.status_lines({"web1.example.net": state, "w2": host("2-x", "1-x")})
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
    data = messages.fleet_status({"w2": host("2-x", "1-x")})
    assert json.loads(json.dumps(data))["w2"]["previous"] == "1-x"


def test_the_controllers_ansible_processes_are_listed_and_an_unreadable_one_makes_the_list_uncertain(tmp_path):
    (tmp_path / "10").mkdir()
    (tmp_path / "10/cmdline").write_bytes(b"python\0/usr/bin/ansible-playbook\0deploy.yml\0")
    (tmp_path / "11").mkdir()
    (tmp_path / "11/cmdline").write_bytes(b"vim\0")
    (tmp_path / "self").mkdir()
    (tmp_path / "self/mountinfo").write_text(f"22 1 0:21 / {tmp_path} rw,nosuid - proc proc rw\n")
    alive = processes.alive_runs(str(tmp_path))
    assert alive["pids"] == [10] and alive["certain"] is True
    (tmp_path / "self/mountinfo").write_text(f"22 1 0:21 / {tmp_path} rw,nosuid - proc proc rw,hidepid=invisible\n")
    assert processes.alive_runs(str(tmp_path))["certain"] is False  # other users' runs are hidden: none is judged dead


def test_a_controller_is_its_machine_id_boot_id_host_name_and_pid_namespace(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "proc/sys/kernel/random").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("boot-1\n")
    (tmp_path / "etc/machine-id").write_text("")
    assert processes.controller_id(str(tmp_path)) == ""  # an empty machine id never counts as "this controller"
    (tmp_path / "etc/machine-id").write_text("m1\n")
    first = processes.controller_id(str(tmp_path))
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("boot-2\n")
    assert first and processes.controller_id(str(tmp_path)) != first  # rebooted: another controller


def test_the_summary_says_who_went_where_in_how_long_in_a_few_lines():
    results = {
        "web1": {"changed": True, "from": "1.3.2-a", "to": "1.4.0-b", "strategy": "handover", "duration_s": 4.2},
        "web2": {"changed": True, "from": "1.3.2-a", "to": "1.4.0-b", "strategy": "handover", "duration_s": 4.0},
    }
    lines = messages.summary_lines("deploy", results, {"web1": {}, "web2": {}, "web3": {}}, started=100, now=138)
    assert lines == [
        "deploy: 2 host(s) changed in 38 s:",
        "  1.3.2-a -> 1.4.0-b (handover): web1 4.2 s, web2 4.0 s",
        "  already there: web3",
    ]
    assert messages.summary_lines("deploy", {}, {"web1": {}}, 100, 103) == [
        "deploy: no host needed a change (1 checked, 3 s)."
    ]


def test_problems_are_said_once_with_the_hosts_that_have_them():
    grouped = messages.grouped_problems(
        ["web1: asgi_readiness_path must start with /", "web2: asgi_readiness_path must start with /"]
    )
    assert grouped == ["asgi_readiness_path must start with / (web1, web2)"]


def test_a_failure_is_lines_with_its_own_words_first_then_the_fleet_then_the_journal():
    failed = {"msg": "deploy of 2-x failed on web2 at gate next: boom.", "journal": ["line 1", "line 2"]}
    done = messages.outcome(
        {"web1": {"result": "success", "from": "1-x"}, "web2": {"result": "reverted", "from": "1-x"}},
        [{"__rollout_item": "web1"}],
    )
    assert done["switched"] == ["web1"] and done["went_back"] == ["web1"] and done["stayed"] == []
    lines = messages.failure_lines("deploy", "roll", failed, "web2", done)
    assert lines == [
        "deploy: deploy of 2-x failed on web2 at gate next: boom.",
        "Hosts not yet reached were not changed.",
        "Taken back to what they ran (on_failure=revert): web1.",
        "Journal of the instance that failed:",
        "line 1",
        "line 2",
    ]
    planned = messages.failure_lines("deploy", "plan", {"msg": "deploy: bad input", "problems": ["x (web1)"]})
    assert planned == ["deploy: bad input", "  - x (web1)", "Nothing was changed."]


def test_verify_fails_on_a_finding_or_a_host_that_could_not_be_verified():
    as_built = {"releases": {"1.0.0": {"seconds": 0.5}}, "findings": []}
    assert not messages.verify_failed({"web1": as_built, "web2": as_built})
    found = {"releases": {"1.0.0": {}}, "findings": ["1.0.0: venv/bin/x modified"]}
    assert messages.verify_failed({"web1": as_built, "web2": found})
    # failed_when: false leaves failed false: a host whose module failed has a msg and no releases.
    assert messages.verify_failed({"web1": as_built, "web2": {"failed": False, "msg": "no such app"}})
    assert messages.verify_lines({"web2": {"failed": False, "msg": "no such app"}}) == ["web2: no such app"]
    assert messages.verify_lines({"web2": found}) == ["web2: 1.0.0: venv/bin/x modified"]


def test_a_canary_that_fails_more_than_the_others_goes_back_and_one_with_too_little_traffic_is_not_judged():
    others = {"web2": {"requests": 400, "errors": 2}, "web3": {"requests": 380, "errors": 1}}
    bad = messages.canary_verdict({"web1": {"requests": 200, "errors": 40}}, others, 0.05, 20)
    assert bad["bad"] and bad["judged"] and "the canary goes back" in bad["lines"][0]
    good = messages.canary_verdict({"web1": {"requests": 200, "errors": 1}}, others, 0.05, 20)
    assert not good["bad"] and good["judged"] and "within bounds" in good["lines"][0]
    quiet = messages.canary_verdict({"web1": {"requests": 7, "errors": 0}}, others, 0.05, 20)
    assert not quiet["bad"] and not quiet["judged"]
    assert "could not judge - 7 request(s)" in quiet["lines"][0]
    assert "rollout_canary_min_requests (20)" in quiet["lines"][0]
