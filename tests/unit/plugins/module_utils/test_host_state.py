"""Reading a host in one go, and the one assessment of it."""

from __future__ import annotations

import os
import sys

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import locking
from ansible_collections.asgi.deploy.plugins.module_utils.host import (
    Busy,
    audit,
    host_flock,
    link_target,
    point_link,
    swap_link,
)
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import assess, damage, read_state, release_needed
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import FakeRun, legacy_host, make_release

OLD, NEW = "1.0.0-aaaa1111", "2.0.0-bbbb2222"


def read(app, systemd, python="/nonexistent/python"):
    return read_state(app, systemd, FakeRun(), python=python)


def installed(app, live="blue"):
    """Both slots' units, <app>.service linked to ``live``; each slot's link at current."""
    os.makedirs(app.unit_dir, exist_ok=True)
    for slot in ("blue", "green"):
        with open(app.unit_path(app.units[slot]), "w") as stream:
            stream.write(f"WorkingDirectory={app.link(slot)}\nEnvironment=ASGI_SETTINGS_DIGEST=abc\n")
        swap_link(app.link(slot), link_target(app.link("current")))
    point_link(app.unit_path(app.units["app"]), app.units[live])


def test_an_empty_host_reads_as_running_nothing(app, systemd):
    state = read(app, systemd, python=sys.executable)
    assert state["live"] == "" and state["kept"] == [] and state["lock"] is None
    assert state["python"]["python"] == "{}.{}".format(*sys.version_info[:2])
    assert state["free_mb"] > 0
    verdict = assess(state, NEW, "s")
    assert verdict["first"] and verdict["needed"] and verdict["reasons"] == ["first deploy"]


def test_releases_links_lock_and_history_are_read(app, systemd):
    make_release(app, OLD, built_at="2026-11-01T00:00:00Z")
    make_release(app, NEW, built_at="2026-11-02T00:00:00Z")
    make_release(app, "3.0.0-cccc3333", finished=False)
    swap_link(app.link("current"), NEW)
    swap_link(app.link("previous"), OLD)
    installed(app)
    with open(app.applied, "w") as stream:
        stream.write("abc\n")
    locking.take(app, "r1", actor="ops")
    audit(app, {"event": "deploy", "to": NEW, "result": "success"})
    audit(app, {"event": "deploy", "to": "9-x", "result": "reverted"})
    state = read(app, systemd)
    assert (state["live"], state["live_version"], state["previous"], state["settings"]) == (NEW, "2.0.0", OLD, "abc")
    assert [r["id"] for r in state["kept"]] == [OLD, NEW]
    assert state["unfinished"] == ["3.0.0-cccc3333"]
    assert state["lock"]["run"] == "r1"
    assert state["python"] == {}
    assert state["recent"][-1]["to"] == "9-x"
    assert [(h["event"], h["to"]) for h in state["history"]] == [("deploy", NEW)]  # successful moves only
    audit(app, {"event": "deploy", "to": "7-x", "result": "success", "run": "canary", "run_started": 5.0})
    audit(app, {"event": "revert", "to": NEW, "result": "success", "run": "canary", "run_started": 5.0})
    moves = read(app, systemd)["history"]
    # Each move with its run and the controller's start time of it: the fleet orders runs by that.
    assert [(h["event"], h["run"], h["run_started"]) for h in moves[1:]] == [("deploy", "canary", 5.0),
                                                                          ("revert", "canary", 5.0)]  # fmt: skip
    assert assess(state, NEW, "abc") == {"first": False, "change": "", "healthy": True, "reasons": [], "needed": False}
    assert assess(state, NEW, "abc", force=True)["reasons"] == ["converge requested"]
    assert assess(state, OLD, "abc")["reasons"] == [f"release {NEW} -> {OLD}"]
    assert assess(state, OLD, "")["change"] == "release"  # a rollback keeps the settings
    assert assess(state, NEW, "def")["change"] == "settings"


def test_a_host_whose_unit_files_were_deleted_is_a_first_deploy_for_everyone(app, systemd):
    make_release(app, NEW)
    swap_link(app.link("current"), NEW)
    verdict = assess(read(app, systemd), NEW, "")
    assert verdict["first"] and verdict["needed"] and verdict["change"] == "both"


def test_a_current_link_to_an_unfinished_release_is_not_live(app, systemd):
    make_release(app, NEW, finished=False)
    swap_link(app.link("current"), NEW)
    state = read(app, systemd)
    assert state["live"] == "" and state["current"] == NEW
    assert any("not a finished release" in sign for sign in state["interrupted"])


def test_a_running_idle_slot_and_a_stale_live_one_are_signs_of_an_interrupted_run(app, systemd):
    make_release(app, OLD)
    make_release(app, NEW)
    swap_link(app.link("current"), OLD)
    installed(app)
    swap_link(app.link("green"), NEW)
    systemd._launch(app.units["blue"])
    systemd._launch(app.units["green"])
    swap_link(app.link("current"), NEW)  # flipped, but <app>.service still names blue
    state = read(app, systemd)
    assert state["live_slot"] == "blue" and state["serving"]["unit"] == "demo-blue.service"
    assert state["slots"]["blue"]["release"] == OLD and state["slots"]["green"]["release"] == NEW
    signs = " | ".join(state["interrupted"])
    assert f"demo-green.service is running (release {NEW}) but is not the live slot" in signs
    assert f"demo-blue.service runs {OLD} but current points at {NEW}" in signs
    verdict = assess(state, NEW, "")
    assert verdict["needed"] and not verdict["healthy"] and verdict["reasons"] == state["interrupted"]


def test_a_slot_that_drains_is_no_sign_of_trouble_and_says_what_it_still_holds(app, systemd):
    make_release(app, NEW)
    swap_link(app.link("current"), NEW)
    installed(app, live="green")
    systemd._launch(app.units["green"])
    systemd._launch(app.units["blue"])
    systemd.unit(app.units["blue"]).update(ActiveState="deactivating", SubState="stop-sigterm")
    systemd.held[app.units["blue"]] = 7
    with open(app.applied, "w") as stream:
        stream.write("abc\n")
    state = read(app, systemd)
    assert state["slots"]["blue"]["draining"] and state["slots"]["blue"]["connections"] == 7
    assert not state["slots"]["green"]["draining"] and state["interrupted"] == []
    assert not assess(state, NEW, "abc")["needed"]


def test_a_host_of_the_layout_before_slots_needs_a_handover_to_move_to_slots(app, systemd):
    make_release(app, NEW)
    legacy_host(app, NEW, "abc")
    systemd._launch(app.legacy_units["main"])
    state = read(app, systemd)
    assert state["live_slot"] == "legacy" and state["serving"]["unit"] == "demo.service"
    verdict = assess(state, NEW, "abc")
    assert verdict["needed"] and not verdict["first"]
    assert verdict["reasons"] == ["demo.service runs the layout before slots (it moves to blue and green)"]


def test_drift_is_a_change_main_on_other_settings_an_unloaded_unit_a_lost_interpreter(app, systemd):
    make_release(app, NEW)
    swap_link(app.link("current"), NEW)
    installed(app)
    with open(app.applied, "w") as stream:
        stream.write("other\n")
    systemd._launch(app.units["blue"])  # its unit says settings abc
    systemd.unit(app.units["socket"])["need_reload"] = True
    state = read(app, systemd)
    reasons = assess(state, NEW, "other")["reasons"]
    assert "demo-blue.service runs settings abc but other were applied" in reasons
    assert "unit files changed on disk but not loaded: demo.socket" in reasons
    assert not any("interpreter" in r for r in reasons)
    python = os.path.join(app.release_dir(NEW), "venv/bin/python")
    os.unlink(python)
    os.symlink("/nonexistent/python3", python)  # the system's Python was upgraded away
    reasons = assess(read(app, systemd), NEW, "other")["reasons"]
    assert f"the interpreter of {NEW}'s venv is gone (it is rebuilt)" in reasons


def test_a_failed_live_slot_needs_a_change_even_on_the_right_release(app, systemd):
    make_release(app, NEW)
    swap_link(app.link("current"), NEW)
    installed(app)
    systemd.unit(app.units["blue"]).update(ActiveState="failed")
    assert assess(read(app, systemd), NEW, "")["reasons"] == ["demo-blue.service has failed"]


def test_one_build_hook_or_handover_at_a_time_and_the_state_names_the_running_one(app, systemd):
    with host_flock(app):
        assert read(app, systemd)["busy"] == str(os.getpid())
        with pytest.raises(Busy, match=r"still running on this host \(pid \d+\)"), host_flock(app, wait_s=0):
            pass
    assert read(app, systemd)["busy"] == ""
    systemd.transient.append("asgi-hook-demo-before-switch.service")
    assert read(app, systemd)["hooks_running"] == ["asgi-hook-demo-before-switch.service"]


def test_the_release_role_has_work_only_where_the_release_is_missing_or_not_yet_current():
    state = {"kept": [{"id": "1.0.0-a"}, {"id": "2.0.0-b"}], "current": "1.0.0-a"}
    assert release_needed(state, "3.0.0-c")
    assert not release_needed(state, "2.0.0-b")
    assert release_needed(state, "2.0.0-b", switch=True)
    assert not release_needed(state, "1.0.0-a", switch=True)


def test_a_torn_audit_line_is_counted_and_the_next_line_never_glued_to_it(app, systemd):
    audit(app, {"event": "deploy", "to": NEW, "result": "success"})
    with open(app.audit, "a") as stream:
        stream.write('{"event": "deploy", "to": "3.0')  # cut short by a full disk
    audit(app, {"event": "unlock", "run": "r2"})
    state = read(app, systemd)
    assert state["audit_corrupt"] == 1
    assert state["recent"][-1]["event"] == "unlock"  # readable: it began on a line of its own
    assert damage(state) == ["the audit log has 1 unreadable line(s) (they are skipped)"]
