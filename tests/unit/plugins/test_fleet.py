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


def test_a_scattered_fleet_asks_for_a_version():
    states = {"a": host("3-x", "2-x"), "b": host("2-x", "1-x"), "c": host("1-x", "0-x")}
    with pytest.raises(FleetError, match=r"no single previous release .* give -e version=V"):
        rollback_plan(states)


def test_a_version_picks_the_release_every_host_keeps():
    states = {"a": host("2-x", kept=["1-x", "2-x"]), "b": host("2-x", kept=["1-x", "2-x"])}
    assert rollback_plan(states, "1")["target"] == "1-x"


def test_a_version_some_host_does_not_keep_is_refused_listing_what_it_keeps():
    states = {"a": host("2-x", kept=["1-x", "2-x"]), "b": host("2-x", kept=["2-x"])}
    with pytest.raises(FleetError, match=r"version 1 is not kept on b; kept versions: 2 .*Nothing was changed"):
        rollback_plan(states, "1")


def test_a_previous_release_that_was_pruned_somewhere_is_refused():
    states = {"a": host("2-x", "1-x"), "b": host("2-x", "1-x", kept=["2-x"])}
    with pytest.raises(FleetError, match="no longer kept on b"):
        rollback_plan(states)


def test_the_status_table_shows_instances_locks_and_signs_of_trouble():
    state = host("2-x", "1-x")
    state.update(
        main={"active": "active", "sub": "running", "pid": 5, "release": "2-x"},
        next_instance={"active": "active", "sub": "running", "pid": 6, "release": "3-x"},
        lock={"actor": "ops", "run": "r1", "operation": "deploy", "version": "3", "age_s": 75},
        interrupted=["the temporary instance demo-next.service is running (release 3-x)"],
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
    assert "deploy   1-x -> 2-x handover success" in text and "force_unlock by ops" in text
