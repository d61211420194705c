"""Reading a host in one go, and what it means for a run."""

from __future__ import annotations

import os
import sys

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils import locking
from ansible_collections.asgi.deploy.plugins.module_utils.host import Busy, audit, operation_lock, swap_link
from ansible_collections.asgi.deploy.plugins.module_utils.host_state import needs, read_state
from fakes import make_release

OLD, NEW = "1.0.0-aaaa1111", "2.0.0-bbbb2222"


def test_an_empty_host_reads_as_running_nothing(app, systemd):
    state = read_state(app, systemd, python=sys.executable)
    assert state["live"] == "" and state["kept"] == [] and state["lock"] is None
    assert state["python"]["python"] == "{}.{}".format(*sys.version_info[:2])
    assert state["free_mb"] > 0
    assert needs(state, NEW, "s") == ["first deploy", "settings none -> s"]


def test_releases_links_lock_and_history_are_read(app, systemd):
    make_release(app, OLD, built_at="2026-11-01T00:00:00Z")
    make_release(app, NEW, built_at="2026-11-02T00:00:00Z")
    make_release(app, "3.0.0-cccc3333", finished=False)
    swap_link(app.link("current"), NEW)
    swap_link(app.link("previous"), OLD)
    with open(app.applied, "w") as stream:
        stream.write("abc\n")
    locking.take(app, "r1", actor="ops")
    audit(app, {"event": "deploy", "to": NEW})
    state = read_state(app, systemd, python="/nonexistent/python")
    assert (state["live"], state["live_version"], state["previous"], state["settings"]) == (NEW, "2.0.0", OLD, "abc")
    assert [r["id"] for r in state["kept"]] == [OLD, NEW]
    assert state["unfinished"] == ["3.0.0-cccc3333"]
    assert state["lock"]["run"] == "r1"
    assert state["python"] == {}
    assert state["recent"][-1]["to"] == NEW
    assert needs(state, NEW, "abc") == []
    assert needs(state, NEW, "abc", converge=True) == ["converge requested"]
    assert needs(state, OLD, "abc") == [f"release {NEW} -> {OLD}"]


def test_a_current_link_to_an_unfinished_release_is_not_live(app, systemd):
    make_release(app, NEW, finished=False)
    swap_link(app.link("current"), NEW)
    state = read_state(app, systemd)
    assert state["live"] == "" and state["current"] == NEW
    assert any("not a finished release" in sign for sign in state["interrupted"])


def test_a_running_temporary_instance_and_a_stale_main_are_signs_of_an_interrupted_run(app, systemd):
    make_release(app, OLD)
    make_release(app, NEW)
    os.makedirs(app.unit_dir)
    for which, link in (("main", "current"), ("next", "next")):
        with open(app.unit_path(app.units[which]), "w") as stream:
            stream.write(f"WorkingDirectory={app.link(link)}\nEnvironment=ASGI_SETTINGS_DIGEST=s\n")
    swap_link(app.link("current"), OLD)
    swap_link(app.link("next"), NEW)
    systemd._launch(app.units["main"])
    systemd._launch(app.units["next"])
    swap_link(app.link("current"), NEW)  # flipped after main started
    state = read_state(app, systemd)
    assert state["main"]["release"] == OLD and state["next_instance"]["release"] == NEW
    signs = " | ".join(state["interrupted"])
    assert f"demo-next.service is running (release {NEW})" in signs
    assert f"demo.service runs {OLD} but current points at {NEW}" in signs
    assert needs(state, NEW, "") == state["interrupted"]


def test_a_failed_main_needs_a_change_even_on_the_right_release(app, systemd):
    make_release(app, NEW)
    swap_link(app.link("current"), NEW)
    systemd.unit(app.units["main"]).update(ActiveState="failed")
    assert needs(read_state(app, systemd), NEW, "") == ["demo.service has failed"]


def test_one_build_or_handover_at_a_time_and_the_state_names_the_running_one(app, systemd):
    with operation_lock(app):
        assert read_state(app, systemd)["busy"] == str(os.getpid())
        with pytest.raises(Busy, match=r"still running on this host \(pid \d+\)"), operation_lock(app, wait_s=0):
            pass
    assert read_state(app, systemd)["busy"] == ""
    with operation_lock(app, wait_s=0):
        pass
