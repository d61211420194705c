"""Fleet-wide decisions: one rollback target for every host, and the status table."""

from __future__ import annotations

import pytest
from ansible_collections.asgi.deploy.plugins.plugin_utils.fleet import FleetError, rollback_plan, status_table


def host(live, previous="", kept=None):
    kept = kept if kept is not None else [r for r in (previous, live) if r]
    return {
        "live": live,
        "previous": previous,
        "kept": [{"id": r, "version": r.split("-")[0], "built_at": r} for r in kept],
    }


def test_a_uniform_fleet_goes_back_to_its_common_previous_release():
    plan = rollback_plan({"a": host("2-x", "1-x"), "b": host("2-x", "1-x")})
    assert plan["target"] == "1-x"
    assert [m["host"] for m in plan["moves"]] == ["a", "b"]
    assert plan["message"] == "rollback: every host goes to 1-x; to change: a, b"


def test_a_fleet_left_half_way_goes_back_to_where_the_rest_still_is():
    plan = rollback_plan({"a": host("2-x", "1-x"), "b": host("1-x", "0-x"), "c": host("1-x", "0-x")})
    assert plan["target"] == "1-x"
    assert plan["moves"] == [{"host": "a", "release": "1-x"}]
    assert "already there: b, c" in plan["message"]


def test_a_fleet_on_one_release_goes_to_the_newest_previous_every_host_keeps():
    states = {
        "a": host("5-x", "3-x", kept=["1-x", "3-x", "5-x"]),
        "b": host("5-x", "1-x", kept=["1-x", "5-x"]),
        "c": host("5-x", "1-x", kept=["1-x", "5-x"]),
    }
    plan = rollback_plan(states)
    assert plan["target"] == "1-x"
    states["b"]["kept"].append({"id": "3-x", "version": "3", "built_at": "3-x"})
    states["c"]["kept"].append({"id": "3-x", "version": "3", "built_at": "3-x"})
    assert rollback_plan(states)["target"] == "3-x"
    with pytest.raises(FleetError, match="no previous release is kept on every host"):
        rollback_plan({"a": host("5-x", "3-x", kept=["3-x", "5-x"]), "b": host("5-x", "1-x", kept=["1-x", "5-x"])})


def test_a_scattered_fleet_asks_for_a_version():
    states = {"a": host("3-x", "2-x"), "b": host("2-x", "1-x"), "c": host("1-x", "0-x")}
    with pytest.raises(FleetError, match=r"no single previous release .* give -e version=V"):
        rollback_plan(states)


def test_a_version_picks_the_release_every_host_keeps():
    states = {"a": host("2-x", kept=["1-x", "2-x"]), "b": host("2-x", kept=["1-x", "2-x"])}
    assert rollback_plan(states, "1")["target"] == "1-x"


def test_a_version_some_host_does_not_keep_is_refused_listing_what_it_keeps():
    states = {"a": host("2-x", kept=["1-x", "2-x"]), "b": host("2-x", kept=["2-x"])}
    with pytest.raises(FleetError, match=r"version 1 is not kept on b; kept versions: 2 "):
        rollback_plan(states, "1")


def test_a_previous_release_that_was_pruned_somewhere_is_refused():
    states = {
        "a": host("2-x", "1-x"),
        "b": host("1-x", "0-x", kept=["0-x", "1-x"]),
        "c": host("2-x", "1-x", kept=["2-x"]),
    }
    with pytest.raises(FleetError, match="no longer kept on c"):
        rollback_plan(states)


def test_the_status_table_shows_instances_locks_and_signs_of_trouble():
    state = host("2-x", "1-x")
    state.update(
        main={"active": "active", "sub": "running", "pid": 5, "release": "2-x"},
        next_instance={"active": "active", "sub": "running", "pid": 6, "release": "3-x"},
        lock={"actor": "ops", "run": "r1", "operation": "deploy", "version": "3", "age_s": 75},
        interrupted=["the temporary instance demo-next.service is running (release 3-x)"],
        busy="4242",
        recent=[
            {
                "time": "2026-11-26T10:00:00Z",
                "event": "deploy",
                "from": "1-x",
                "to": "2-x",
                "strategy": "handover",
                "result": "success",
            },
            {"time": "2026-11-26T10:05:00Z", "event": "force_unlock", "actor": "ops"},
        ],
    )
    text = status_table({"web1": state})
    assert "web1         2-x" in text and "active 2-x" in text and "active 3-x" in text and "75s" in text
    assert "web1: deploy lock held by ops (deploy 3), run r1, 75s ago" in text
    assert "web1: the temporary instance demo-next.service is running" in text
    assert "web1: a build or handover is running on the host now (pid 4242)" in text
    assert "deploy   1-x -> 2-x handover success" in text and "force_unlock by ops" in text


def test_a_lock_is_a_dead_runs_only_when_this_controller_took_it_and_its_process_is_gone(tmp_path):
    from ansible_collections.asgi.deploy.plugins.plugin_utils.fleet import dead_run

    (tmp_path / "10").mkdir()
    (tmp_path / "10/cmdline").write_bytes(b"python\0/usr/bin/ansible-playbook\0deploy.yml\0")
    (tmp_path / "11").mkdir()
    (tmp_path / "11/cmdline").write_bytes(b"vim\0")
    mine = {"controller_id": "me"}
    assert not dead_run({**mine, "pid": 10}, me="me", proc=str(tmp_path))  # still running
    assert dead_run({**mine, "pid": 11}, me="me", proc=str(tmp_path))  # pid reused by something else
    assert dead_run({**mine, "pid": 12}, me="me", proc=str(tmp_path))  # gone
    assert not dead_run({"controller_id": "other", "pid": 12}, me="me", proc=str(tmp_path))  # not ours to judge
    assert not dead_run(None, me="me")
    assert not dead_run({**mine, "pid": 12}, me="", proc=str(tmp_path))  # no machine id here
